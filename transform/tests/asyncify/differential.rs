//! Differential testing with wasm-smith: random modules, instrumented under
//! random options, behave exactly like the originals (see
//! `differential/generate.rs` for what is generated and
//! `differential/oracle.rs` for what is compared).
//!
//! The run is bounded and seeded, so CI is reproducible: case `i` is built
//! from the bytes SplitMix64 derives from `base + i`. Two environment
//! variables widen or move it:
//!
//! - `WASM_REWIND_DIFF_SEED` — the base seed (default 0);
//! - `WASM_REWIND_DIFF_CASES` — how many cases (default [`DEFAULT_CASES`]).
//!
//! A failing case prints its seed and writes the original, the instrumented
//! module and a description to `target/tmp/differential/seed-N.*`;
//! `WASM_REWIND_DIFF_SEED=N WASM_REWIND_DIFF_CASES=1` reruns just that case.
//! The cargo-fuzz target in `fuzz/` runs the same oracle without bound.

use std::path::PathBuf;

use crate::common::Buffer;
use crate::generate::{self, Case, Mode};
use crate::oracle::{self, splitmix, Tally, Verdict};
use arbitrary::Unstructured;
use wasm_rewind_transform::Options;

/// Cases in the default run: a few thousand, well under a minute.
const DEFAULT_CASES: u64 = 2000;

/// Bytes of input per case (wasm-smith stops drawing when they run out).
const BYTES_PER_CASE: usize = 4096;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The input bytes of the case with this seed.
fn case_bytes(seed: u64) -> Vec<u8> {
    let mut state = splitmix(seed);
    let mut bytes = Vec::with_capacity(BYTES_PER_CASE);
    while bytes.len() < BYTES_PER_CASE {
        state = splitmix(state);
        bytes.extend(state.to_le_bytes());
    }
    bytes
}

/// Writes what reproduces a failure under `target/tmp/differential/`; returns the
/// path prefix.
fn save_failure(seed: u64, case: &Case, message: &str, instrumented: Option<&[u8]>) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("differential");
    std::fs::create_dir_all(&dir).expect("create target/tmp/differential");
    let base = dir.join(format!("seed-{seed}"));
    std::fs::write(base.with_extension("wasm"), &case.wasm).expect("write the original");
    if let Some(out) = instrumented {
        std::fs::write(base.with_extension("instrumented.wasm"), out)
            .expect("write the instrumented module");
    }
    std::fs::write(
        base.with_extension("txt"),
        format!("seed {seed}\noptions: {}\n{message}\n", case.describe()),
    )
    .expect("write the description");
    base
}

/// What the generated modules and options contain, counted over the run (a
/// case counts once per row), so a run shows what it covered.
#[derive(Debug, Default)]
struct Coverage {
    rows: std::collections::BTreeMap<&'static str, u64>,
}

impl Coverage {
    fn note(&mut self, case: &Case) {
        let mut seen = std::collections::BTreeSet::new();
        let mut memories = 0;
        let mut results: Vec<usize> = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&case.wasm) {
            use wasmparser::{Operator as O, Payload as P};
            match payload {
                Ok(P::ImportSection(r)) if r.count() > 0 => {
                    seen.insert("imports");
                }
                Ok(P::TableSection(r)) if r.count() > 0 => {
                    seen.insert("tables");
                }
                Ok(P::ExportSection(r)) => {
                    let tables = r.into_iter().flatten();
                    if tables
                        .filter(|e| e.kind == wasmparser::ExternalKind::Table)
                        .count()
                        > 0
                    {
                        seen.insert("exported tables");
                    }
                }
                Ok(P::MemorySection(r)) => {
                    for m in r.into_iter().flatten() {
                        memories += 1;
                        if m.memory64 {
                            seen.insert("a 64-bit memory");
                        } else {
                            seen.insert("a 32-bit memory");
                        }
                    }
                }
                Ok(P::TypeSection(r)) => {
                    results = r
                        .into_iter_err_on_gc_types()
                        .map(|ty| ty.map_or(0, |t| t.results().len()))
                        .collect();
                }
                Ok(P::FunctionSection(r)) => {
                    for ty in r.into_iter().flatten() {
                        if results.get(ty as usize).is_some_and(|&n| n > 1) {
                            seen.insert("multi-value functions");
                        }
                    }
                }
                Ok(P::CodeSectionEntry(body)) => {
                    let Ok(mut ops) = body.get_operators_reader() else {
                        continue;
                    };
                    while let Ok(op) = ops.read() {
                        let row = match op {
                            O::Loop { .. } => "loops",
                            O::CallIndirect { .. } | O::ReturnCallIndirect { .. } => {
                                "indirect calls"
                            }
                            O::ReturnCall { .. } => "tail calls",
                            O::TryTable { .. } => "try_table",
                            O::MemoryCopy { .. } | O::MemoryFill { .. } => "bulk memory",
                            _ => continue,
                        };
                        seen.insert(row);
                    }
                }
                _ => {}
            }
        }
        // The appended buffer memory is one of them.
        let own = memories - usize::from(case.options.memory.is_some());
        if own > 1 {
            seen.insert("several memories");
        }
        let o = &case.options;
        for (on, row) in [
            (o.imports.is_some(), "option: an import list"),
            (o.ignore_indirect, "option: ignore_indirect"),
            (o.asserts, "option: asserts"),
            (o.export_globals, "option: export_globals"),
            (o.import_globals, "option: import_globals"),
            (!o.add.is_empty(), "option: an add list"),
            (!o.remove.is_empty(), "option: a remove list"),
            (o.secondary_memory.is_some(), "buffer: secondary memory"),
            (
                o.memory.is_some() && !case.buffer.wide,
                "buffer: a 32-bit memory",
            ),
            (case.buffer.wide, "buffer: a 64-bit memory"),
        ] {
            if on {
                seen.insert(row);
            }
        }
        for row in seen {
            *self.rows.entry(row).or_default() += 1;
        }
    }
}

/// Counts of a whole run.
#[derive(Default)]
struct Totals {
    cases: u64,
    not_generated: u64,
    passed: u64,
    unsupported: u64,
    skipped: u64,
    skipped_reasons: std::collections::BTreeMap<String, u64>,
    tally: Tally,
    unsupported_reasons: std::collections::BTreeMap<String, u64>,
    failures: Vec<String>,
    coverage: Coverage,
}

/// The first words of an `Unsupported` message, to group them.
fn reason_key(message: &str) -> String {
    // Drop what names a function or a type: keep the sentence.
    let mut key = String::new();
    for (i, part) in message.split('`').enumerate() {
        key.push_str(if i % 2 == 0 { part } else { "_" });
    }
    let key = key.split(';').next().unwrap_or_default().trim();
    // "a (ref (id 3)) value is ...": one key for every reference type.
    // "local 3 holds a funcref value ...": one key for every local and type.
    if let Some((_, rest)) = key.split_once(" value is ") {
        format!("a reference value is {rest}")
    } else if let Some((_, rest)) = key.split_once(" value that is ") {
        format!("a local holds a reference value that is {rest}")
    } else {
        key.to_string()
    }
}

fn run_cases(base: u64, count: u64) -> Totals {
    let mut t = Totals::default();
    for seed in base..base + count {
        t.cases += 1;
        let bytes = case_bytes(seed);
        let Ok(case) = generate::generate(&mut Unstructured::new(&bytes)) else {
            t.not_generated += 1;
            continue;
        };
        t.coverage.note(&case);
        match oracle::check(&case) {
            Verdict::Passed(tally) => {
                t.passed += 1;
                t.tally.add(&tally);
            }
            Verdict::Unsupported(why) => {
                t.unsupported += 1;
                *t.unsupported_reasons.entry(reason_key(&why)).or_default() += 1;
            }
            Verdict::Skipped(why) => {
                t.skipped += 1;
                *t.skipped_reasons.entry(reason_key(&why)).or_default() += 1;
            }
            Verdict::Failed {
                message,
                instrumented,
            } => {
                let path = save_failure(seed, &case, &message, instrumented.as_deref());
                t.failures.push(format!(
                    "seed {seed} ({}): {message}\n  saved as {}.*",
                    case.describe(),
                    path.display()
                ));
            }
        }
    }
    t
}

#[test]
fn random_modules_keep_their_behaviour() {
    let base = env_u64("WASM_REWIND_DIFF_SEED", 0);
    let count = env_u64("WASM_REWIND_DIFF_CASES", DEFAULT_CASES);
    let t = run_cases(base, count);
    let x = &t.tally;
    println!(
        "differential: {} cases from seed {base}: {} passed, {} unsupported, {} skipped, \
         {} not generated, {} failed",
        t.cases,
        t.passed,
        t.unsupported,
        t.skipped,
        t.not_generated,
        t.failures.len()
    );
    println!(
        "differential: {} export calls compared; instrumented runs: {} never unwinding, \
         {} unwinding at every import, {} at a subset; {} unwinds, {} import calls; \
         originals returned {}, trapped {}, threw {}, failed to instantiate {}; \
         inconclusive runs {:?}",
        x.calls,
        x.runs[0],
        x.runs[1],
        x.runs[2],
        x.unwinds,
        x.import_calls,
        x.endings[0],
        x.endings[1],
        x.endings[2],
        x.endings[3],
        x.inconclusive
    );
    println!(
        "differential: unsupported by reason {:?}",
        t.unsupported_reasons
    );
    println!("differential: skipped by reason {:?}", t.skipped_reasons);
    println!("differential: cases with {:?}", t.coverage.rows);
    assert!(
        t.failures.is_empty(),
        "{} of {} cases failed:\n{}",
        t.failures.len(),
        t.cases,
        t.failures.join("\n")
    );
    // A run of some size means something: most cases were compared, with
    // unwinds. (A single case, rerun to reproduce, need not unwind.)
    if count >= 100 {
        assert!(
            t.passed * 2 > t.cases,
            "only {} of {} cases were compared",
            t.passed,
            t.cases
        );
        assert!(x.unwinds > 0, "no case unwound");
    }
    if count >= 500 {
        for row in [
            "imports",
            "tables",
            "indirect calls",
            "loops",
            "multi-value functions",
            "a 32-bit memory",
            "a 64-bit memory",
            "several memories",
            "option: ignore_indirect",
            "option: a remove list",
            "buffer: a 64-bit memory",
        ] {
            assert!(
                t.coverage.rows.get(row).is_some_and(|&n| n > 0),
                "no case had {row}"
            );
        }
    }
}

/// The oracle has teeth: it passes a correct instrumentation and catches one
/// that cannot unwind where it is made to (`ignore_imports`, then unwound at
/// anyway) and one that computes something else with nothing unwinding.
#[test]
fn the_oracle_catches_broken_instrumentation() {
    let module = |address: i32| {
        wat::parse_str(format!(
            r#"(module
                (import "env" "ask" (func $ask (param i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "run") (param i32) (result i32) (local i32)
                  (local.set 1 (call $ask (local.get 0)))
                  (i32.store (i32.const {address}) (local.get 1))
                  (i32.add (local.get 1) (call $ask (i32.const 7)))))"#
        ))
        .expect("test module parses")
    };
    let options = |ignore_imports| Options {
        secondary_memory: Some(1),
        ignore_imports,
        ..Options::default()
    };
    let case = Case {
        wasm: module(16),
        options: options(false),
        buffer: Buffer::new("asyncify_memory", 0, 65536 - 8),
        modes: vec![Mode::Never, Mode::Every],
        args_seed: 1,
    };
    match oracle::check(&case) {
        Verdict::Passed(t) => assert!(t.unwinds >= 2, "{t:?}"),
        other => panic!("a correct instrumentation failed: {other:?}"),
    }
    let not_unwinding = wasm_rewind_transform::instrument(&case.wasm, &options(true))
        .expect("instruments")
        .wasm;
    assert!(matches!(
        oracle::check_instrumented(&case, &not_unwinding, &[true]),
        Verdict::Failed { .. }
    ));
    let elsewhere = wasm_rewind_transform::instrument(&module(20), &options(false))
        .expect("instruments")
        .wasm;
    match oracle::check_instrumented(&case, &elsewhere, &[false]) {
        Verdict::Failed { message, .. } => assert!(message.contains("memory"), "{message}"),
        other => panic!("a different store was not caught: {other:?}"),
    }
}
