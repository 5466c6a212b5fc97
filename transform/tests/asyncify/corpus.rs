//! Every module in `corpus/wat/` keeps its meaning when instrumented.
//!
//! For each `corpus/wat/*.wat` (the directory is read when the tests run, so a
//! new file is picked up without touching this one) the original module is run
//! with a deterministic host: every import answers a hash of its name and
//! arguments and logs the call. That run is the reference. Then each instrumented
//! module (ours with default options, and Binaryen's `--asyncify` with its
//! defaults, through the very same host code) is run twice:
//!
//! - with a host that never unwinds: same results, same import log, same memory
//!   outside the reserved region `[0xF000, 0x10000)`;
//! - with an unwind and rewind forced at every import call: the same again, and
//!   exactly one unwind per import call.
//!
//! `corpus/README.md` states the conventions a corpus module follows;
//! `corpus_modules_follow_the_conventions` checks them. The Binaryen test proves
//! the harness; the ours test proves the pass.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use crate::common::*;
use wasmtime::ValType;

/// One corpus module.
struct Case {
    /// File stem, e.g. `fib`.
    name: String,
    /// The module, as wasm.
    wasm: Vec<u8>,
    /// Arguments of `run`, from an optional `;; args: 1 2` line.
    args: Vec<Value>,
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus/wat")
}

/// All corpus modules, sorted by name.
fn corpus() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus/wat exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wat"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "corpus/wat/ holds no .wat file");
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("readable corpus file");
            let wasm = wat::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let args = text
                .lines()
                .find_map(|l| l.trim().strip_prefix(";; args:"))
                .map(|a| {
                    a.split_whitespace()
                        .map(|x| Value::I32(x.parse().expect("`;; args:` takes i32s")))
                        .collect()
                })
                .unwrap_or_default();
            Case { name, wasm, args }
        })
        .collect()
}

/// What one run of `run` produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    results: Vec<Value>,
    log: Vec<ImportCall>,
    /// Memory 0 with the reserved region zeroed.
    memory: Vec<u8>,
}

fn outside_reserved(mut memory: Vec<u8>) -> Vec<u8> {
    let end = memory.len().min(RESERVED_END as usize);
    memory[RESERVED_START as usize..end].fill(0);
    memory
}

/// The reference: the original module called once, nothing unwinds.
fn original(case: &Case) -> Outcome {
    let (mut guest, results, log) = run_original(&case.wasm, hash_answer(), "run", &case.args)
        .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
    Outcome {
        results,
        log,
        memory: guest.memory_bytes("memory"),
    }
}

/// Runs an instrumented module through the driver; returns the outcome and the
/// number of unwinds.
fn run_instrumented(case: &Case, wasm: &[u8], policy: UnwindPolicy) -> (Outcome, usize) {
    let mut guest = Guest::new(wasm, Host::new(hash_answer(), policy))
        .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
    let run = guest
        .drive("run", &case.args)
        .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
    let outcome = Outcome {
        results: run.results,
        log: run.log,
        memory: outside_reserved(guest.memory_bytes("memory")),
    };
    (outcome, run.unwinds)
}

/// Checks one instrumented module against the reference; returns a message per
/// difference.
fn compare(case: &Case, tool: Tool, wasm: &[u8]) -> Vec<String> {
    let reference = original(case);
    let expected = Outcome {
        memory: outside_reserved(reference.memory.clone()),
        ..reference
    };
    let mut problems = Vec::new();
    for (mode, policy) in [
        ("never unwinding", never()),
        ("unwinding at every import", always()),
    ] {
        let (got, unwinds) = run_instrumented(case, wasm, policy);
        let what = format!("{} ({tool:?}, {mode})", case.name);
        if got.results != expected.results {
            problems.push(format!(
                "{what}: results {:?}, want {:?}",
                got.results, expected.results
            ));
        }
        if got.log != expected.log {
            let first = got.log.iter().zip(&expected.log).position(|(a, b)| a != b);
            problems.push(format!(
                "{what}: import log differs ({} calls, want {}; first difference at {first:?})",
                got.log.len(),
                expected.log.len()
            ));
        }
        if got.memory != expected.memory {
            let first = got
                .memory
                .iter()
                .zip(&expected.memory)
                .position(|(a, b)| a != b);
            problems.push(format!(
                "{what}: memory outside the reserved region differs (first at {first:#x?})"
            ));
        }
        let want_unwinds = if mode == "never unwinding" {
            0
        } else {
            expected.log.len()
        };
        if unwinds != want_unwinds {
            problems.push(format!("{what}: {unwinds} unwinds, want {want_unwinds}"));
        }
    }
    problems
}

/// Runs `compare` on every module, catching panics so one broken module does not
/// hide the others; fails listing every problem.
fn check_corpus(tool: Tool, instrument: impl Fn(&[u8]) -> Vec<u8>) {
    let mut problems = Vec::new();
    let cases = corpus();
    for case in &cases {
        let result = catch_unwind(AssertUnwindSafe(|| {
            let wasm = instrument(&case.wasm);
            compare(case, tool, &wasm)
        }));
        match result {
            Ok(p) => problems.extend(p),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".to_string());
                problems.push(format!("{} ({tool:?}): panicked: {msg}", case.name));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} corpus modules failed with {tool:?}:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}

#[test]
fn corpus_modules_follow_the_conventions() {
    for case in corpus() {
        let name = &case.name;
        let module = wasmtime::Module::new(&engine(), &case.wasm)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(
            module
                .get_export("memory")
                .is_some_and(|e| e.memory().is_some()),
            "{name}: exports no memory `memory`"
        );
        let number =
            |t: &ValType| matches!(t, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64);
        for import in module.imports() {
            assert_eq!(
                import.module(),
                "env",
                "{name}: import from `{}`",
                import.module()
            );
            let ty = import
                .ty()
                .func()
                .cloned()
                .unwrap_or_else(|| panic!("{name}: `env.{}` is not a function", import.name()));
            assert!(
                ty.params().all(|t| number(&t)) && ty.results().all(|t| number(&t)),
                "{name}: `env.{}` has a non-number type",
                import.name()
            );
        }
        let run = module
            .get_export("run")
            .and_then(|e| e.func().cloned())
            .unwrap_or_else(|| panic!("{name}: exports no function `run`"));
        assert!(
            run.params().all(|t| matches!(t, ValType::I32)),
            "{name}: `run` params"
        );
        let results: Vec<ValType> = run.results().collect();
        assert!(
            matches!(results[..], [ValType::I32] | [ValType::I64]),
            "{name}: `run` must return one i32 or i64"
        );
        assert_eq!(
            run.params().len(),
            case.args.len(),
            "{name}: `;; args:` count"
        );

        // Deterministic, calls the host, leaves the reserved region alone.
        let first = original(&case);
        assert!(!first.log.is_empty(), "{name}: makes no import call");
        assert_eq!(original(&case), first, "{name}: not deterministic");
        assert!(
            first.memory[RESERVED_START as usize..RESERVED_END as usize]
                .iter()
                .all(|&b| b == 0),
            "{name}: writes into the reserved region [0xF000, 0x10000)"
        );
    }
}

#[test]
fn corpus_binaryen_preserves_behaviour() {
    check_corpus(Tool::Binaryen, |wasm| instrument_binaryen(wasm, &[]));
}

#[test]
fn corpus_ours_preserves_behaviour() {
    if binaryen_only() {
        return;
    }
    check_corpus(Tool::Ours, |wasm| {
        instrument_ours(wasm, &wasm_rewind_transform::Options::default())
    });
}

/// The check has teeth: a module instrumented so that no import may unwind
/// (Binaryen's `asyncify-ignore-imports`, our `ignore_imports`) does not survive
/// the forced unwinds, and `compare` says so.
#[test]
fn a_module_that_cannot_unwind_is_caught() {
    let case = corpus()
        .into_iter()
        .find(|c| c.name == "fib")
        .expect("corpus/wat/fib.wat");
    let detected = |tool: Tool, wasm: &[u8]| {
        match catch_unwind(AssertUnwindSafe(|| compare(&case, tool, wasm))) {
            Ok(problems) => !problems.is_empty(),
            Err(_) => true, // the host refused a call made while unwinding
        }
    };
    let binaryen = instrument_binaryen(&case.wasm, &["--pass-arg=asyncify-ignore-imports"]);
    assert!(detected(Tool::Binaryen, &binaryen));
    if binaryen_only() {
        return;
    }
    let ours = instrument_ours(
        &case.wasm,
        &wasm_rewind_transform::Options {
            ignore_imports: true,
            ..Default::default()
        },
    );
    assert!(detected(Tool::Ours, &ours));
}

/// The same with `asserts` on (Binaryen's `asyncify-asserts`): the checks it
/// adds never fire on a correct run.
#[test]
fn corpus_with_asserts_preserves_behaviour() {
    check_corpus(Tool::Binaryen, |wasm| {
        instrument_binaryen(wasm, &["--pass-arg=asyncify-asserts"])
    });
    if binaryen_only() {
        return;
    }
    let options = wasm_rewind_transform::Options {
        asserts: true,
        ..Default::default()
    };
    check_corpus(Tool::Ours, |wasm| instrument_ours(wasm, &options));
}
