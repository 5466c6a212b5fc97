//! The differential oracle: a random module, instrumented under random options,
//! must behave exactly like the original, with nothing unwinding and with
//! unwinds forced at import calls.
//!
//! Shared by `transform/tests/asyncify/differential.rs` (a bounded, seeded run) and the cargo-fuzz
//! target in `fuzz/` (unbounded): both turn bytes into a [`Case`] with
//! `generate::generate` and judge it with [`check`], which instruments, then
//! for every exported function (re-exported imports aside) and three argument
//! sets runs the original on a fresh instance with a host that never unwinds,
//! and the instrumented module on fresh instances in each [`Mode`], and
//! compares results, trap or exception, the import log, and the final contents
//! of every exported memory, global and table. The host and the driver loop
//! are the ones of the other tests (`common/`), on an engine that meters fuel:
//! the host answers every import from its name and arguments
//! (`common::hash_answer`), unwinds where the [`Mode`] says, and checks that a
//! rewind re-enters the import with the arguments of the call that unwound.
//!
//! Runs where either side exhausts the call stack are not compared (the
//! instrumented module uses more stack per frame, so the depth at which it
//! overflows differs by design) and are counted as inconclusive.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use wasm_rewind_transform::ErrorKind;
use wasmtime::{Extern, ExternType, Module, Ref, Trap, Val, ValType};

use crate::common::{
    backtrace_names, fuel_used, hash_answer, metered_engine, At, Buffer, Guest, Host, ImportCall,
    Unlinked, UnwindPolicy, Value,
};
use crate::generate::{reexported_imports, unwindable_imports, Case, Mode};

/// Wasmtime fuel of an original run: far more than the fuel global of
/// `ensure_termination` lets it use.
/// An instrumented run gets [`instrumented_fuel`].
const ENGINE_FUEL: u64 = 20_000_000;

/// The wasmtime fuel an instrumented run may use when the original used `used`
/// and made `calls` import calls: each rewind re-enters the export and runs at
/// most what the original ran up to that call again, plus the instrumentation
/// (a small factor). Running out of it means the instrumented module loops.
fn instrumented_fuel(used: u64, calls: usize) -> u64 {
    (8 * (used + 10_000))
        .saturating_mul(calls as u64 + 1)
        .min(1 << 32)
}

/// At most this many unwinds in one export call before the driver gives up.
const MAX_UNWINDS: usize = 100_000;

/// The unwind policy of `mode`: never, at every call of an import that
/// `unwindable` marks, or at those of such calls a hash of the seed and the
/// call's number selects.
fn policy(mode: Mode, unwindable: &[bool]) -> UnwindPolicy {
    let unwindable = unwindable.to_vec();
    Arc::new(move |_, at: At| {
        unwindable.get(at.import).copied().unwrap_or(false)
            && match mode {
                Mode::Never => false,
                Mode::Every => true,
                Mode::Subset(seed) => {
                    splitmix(seed ^ (at.nth as u64).wrapping_mul(0x9e37)) & 1 == 0
                }
            }
    })
}

// ---------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------

/// A value as compared: numbers by their bits, references by null-ness (two
/// instances never share a reference).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Num(Value),
    Ref { null: bool },
}

fn seen(v: &Val) -> Seen {
    match v {
        Val::FuncRef(f) => Seen::Ref { null: f.is_none() },
        Val::ExternRef(r) => Seen::Ref { null: r.is_none() },
        Val::AnyRef(r) => Seen::Ref { null: r.is_none() },
        Val::ExnRef(r) => Seen::Ref { null: r.is_none() },
        Val::ContRef(r) => Seen::Ref { null: r.is_none() },
        other => Seen::Num(Value::from_val(other)),
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ending {
    Returned(Vec<Seen>),
    Trapped(String),
    Exception,
    /// Anything else: a host error (a broken protocol) or an engine limit.
    Error(String),
}

/// What one export call did, and the state it left.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Run {
    /// Why instantiation failed (a start function trapped, a segment did not
    /// fit), if it did.
    instantiated: Result<(), String>,
    /// How the export call ended; `None` when there was no instance to call.
    ending: Option<Ending>,
    log: Vec<ImportCall>,
    memories: BTreeMap<String, Vec<u8>>,
    globals: BTreeMap<String, Seen>,
    tables: BTreeMap<String, Vec<bool>>,
}

/// Why a run cannot be compared.
fn inconclusive(run: &Run) -> Option<&'static str> {
    if let Err(e) = &run.instantiated {
        // The start function.
        if e.contains("stack overflow") {
            return Some("stack overflow");
        }
    }
    match &run.ending {
        Some(Ending::Trapped(t)) if t.contains("stack overflow") => Some("stack overflow"),
        Some(Ending::Trapped(t)) if t.contains("__wasm_rewind_buffer_overflow") => {
            Some("unwind buffer full")
        }
        _ => None,
    }
}

fn ending_of_error(e: &wasmtime::Error) -> Ending {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        let mut s = format!("{trap:?}");
        if *trap == Trap::StackOverflow {
            s = "stack overflow".into();
        }
        if backtrace_names(e)
            .iter()
            .any(|n| n == "__wasm_rewind_buffer_overflow")
        {
            s.push_str(" in __wasm_rewind_buffer_overflow");
        }
        return Ending::Trapped(s);
    }
    if e.is::<wasmtime::ThrownException>() {
        return Ending::Exception;
    }
    Ending::Error(format!("{e:#}"))
}

/// What the host counted in one run, compared apart from [`Run`] (it differs
/// between the original and the instrumented module by design).
struct Stats {
    /// Unwinds the driver saw reach it.
    unwinds: usize,
    /// Unwinds an import started: the same number, or an unwind got lost.
    unwinds_started: usize,
    /// Wasmtime fuel used (instantiating included).
    fuel_used: u64,
}

/// What every run of a case shares.
struct Setup<'a> {
    /// Per import: whether it may unwind.
    unwindable: &'a [bool],
    buffer: &'a Buffer,
    /// Exports not compared (the buffer's memory).
    skip: &'a [&'a str],
}

/// Instantiates `module` on a fresh store with `fuel` and calls
/// `export(args)` through the driver loop, unwinding at the calls `mode`
/// picks among the imports `setup` marks; returns what the call did and the
/// exports it left.
fn run_one(
    module: &Module,
    export: &str,
    args: &[Val],
    mode: Mode,
    setup: &Setup<'_>,
    fuel: u64,
) -> (Run, Stats) {
    let Setup {
        unwindable,
        buffer,
        skip,
    } = *setup;
    let host = Host::new(hash_answer(), policy(mode, unwindable))
        .with_buffer(buffer.clone())
        .with_fuel(fuel)
        .with_max_unwinds(MAX_UNWINDS);
    let mut run = Run {
        instantiated: Ok(()),
        ending: None,
        log: Vec::new(),
        memories: BTreeMap::new(),
        globals: BTreeMap::new(),
        tables: BTreeMap::new(),
    };
    let mut guest = match Guest::from_module(module, host) {
        Ok(guest) => guest,
        Err(Unlinked { error, mut store }) => {
            run.instantiated = Err(format!("{:?}", ending_of_error(&error)));
            run.log = std::mem::take(&mut store.data_mut().log);
            let stats = Stats {
                unwinds: 0,
                unwinds_started: 0,
                fuel_used: fuel_used(&store),
            };
            return (run, stats);
        }
    };
    // The driver loop only matters when something unwinds; an original has
    // no controls to drive it with.
    let ended = if guest.instrumented() {
        guest.drive_vals(export, args)
    } else {
        guest.call_vals(export, args)
    };
    run.ending = Some(match ended {
        Ok(results) => Ending::Returned(results.iter().map(seen).collect()),
        Err(e) => ending_of_error(&e),
    });
    let stats = Stats {
        unwinds: guest.host().unwinds_stopped,
        unwinds_started: guest.host().unwinds_started,
        fuel_used: guest.fuel_used(),
    };
    run.log = std::mem::take(&mut guest.host().log);
    let Guest {
        mut store,
        instance,
    } = guest;
    for exp in module.exports() {
        let name = exp.name();
        if skip.contains(&name) {
            continue;
        }
        match instance.get_export(&mut store, name) {
            Some(Extern::Memory(m)) => {
                run.memories
                    .insert(name.to_string(), m.data(&store).to_vec());
            }
            Some(Extern::Global(g)) => {
                let v = g.get(&mut store);
                run.globals.insert(name.to_string(), seen(&v));
            }
            Some(Extern::Table(t)) => {
                let n = t.size(&store);
                let nulls = (0..n)
                    .map(|i| t.get(&mut store, i).is_none_or(|r: Ref| r.is_null()))
                    .collect();
                run.tables.insert(name.to_string(), nulls);
            }
            _ => {}
        }
    }
    (run, stats)
}

// ---------------------------------------------------------------------------
// Checking a case
// ---------------------------------------------------------------------------

/// What happened to one case.
#[derive(Debug)]
pub enum Verdict {
    /// Every run agreed.
    Passed(Tally),
    /// The pass refused the module with an `Unsupported` error (the message).
    Unsupported(String),
    /// Wasmtime could not compile the original (nothing to compare).
    Skipped(String),
    /// A bug: the message says what differed; the instrumented module is
    /// attached when there is one.
    Failed {
        /// What went wrong.
        message: String,
        /// The pass's output, when it produced one.
        instrumented: Option<Vec<u8>>,
    },
}

/// Counts over passed cases.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Export calls compared (each against every mode).
    pub calls: usize,
    /// Instrumented runs compared, per mode: never, every import, a subset.
    pub runs: [usize; 3],
    /// Unwinds (and rewinds) completed.
    pub unwinds: usize,
    /// Import calls made by the originals.
    pub import_calls: usize,
    /// How the originals' calls ended: returned, trapped, threw, or failed
    /// to instantiate.
    pub endings: [usize; 4],
    /// Runs not compared (stack overflow or engine limits), by reason.
    pub inconclusive: BTreeMap<&'static str, usize>,
}

impl Tally {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Tally) {
        self.calls += other.calls;
        for (a, b) in self.runs.iter_mut().zip(other.runs) {
            *a += b;
        }
        self.unwinds += other.unwinds;
        self.import_calls += other.import_calls;
        for (a, b) in self.endings.iter_mut().zip(other.endings) {
            *a += b;
        }
        for (k, v) in &other.inconclusive {
            *self.inconclusive.entry(k).or_default() += v;
        }
    }
}

/// Instruments the case with its options and compares (catching panics of the
/// pass and of the oracle alike).
pub fn check(case: &Case) -> Verdict {
    let out = match catch_unwind(AssertUnwindSafe(|| {
        wasm_rewind_transform::instrument(&case.wasm, &case.options)
    })) {
        Err(panic) => {
            return Verdict::Failed {
                message: format!("the pass panicked: {}", panic_message(&panic)),
                instrumented: None,
            }
        }
        Ok(Err(e)) if e.kind() == ErrorKind::Unsupported => {
            return Verdict::Unsupported(e.message().to_string())
        }
        Ok(Err(e)) => {
            return Verdict::Failed {
                message: format!("the pass failed ({:?}): {e}", e.kind()),
                instrumented: None,
            }
        }
        Ok(Ok(out)) => out.wasm,
    };
    let unwindable = unwindable_imports(&case.wasm, &case.options);
    check_instrumented(case, &out, &unwindable)
}

/// Compares `instrumented` with the original of `case`, unwinding only at the
/// imports `unwindable` marks.
pub fn check_instrumented(case: &Case, instrumented: &[u8], unwindable: &[bool]) -> Verdict {
    let failed = |message: String| Verdict::Failed {
        message,
        instrumented: Some(instrumented.to_vec()),
    };
    match catch_unwind(AssertUnwindSafe(|| compare(case, instrumented, unwindable))) {
        Ok(Ok(tally)) => Verdict::Passed(tally),
        Ok(Err(Problem::Skip(why))) => Verdict::Skipped(why),
        Ok(Err(Problem::Bug(message))) => failed(message),
        Err(panic) => failed(format!("the oracle panicked: {}", panic_message(&panic))),
    }
}

enum Problem {
    Skip(String),
    Bug(String),
}

fn compare(case: &Case, instrumented: &[u8], unwindable: &[bool]) -> Result<Tally, Problem> {
    let features = wasmparser::WasmFeatures::all();
    if let Err(e) = wasmparser::Validator::new_with_features(features).validate_all(instrumented) {
        return Err(Problem::Bug(format!("the output does not validate: {e}")));
    }
    let engine = metered_engine();
    let original = Module::new(&engine, &case.wasm)
        .map_err(|e| Problem::Skip(format!("wasmtime refuses the original: {e:#}")))?;
    let ours = Module::new(&engine, instrumented)
        .map_err(|e| Problem::Bug(format!("wasmtime refuses the output: {e:#}")))?;
    let buffer_exports = [case.buffer.memory.as_str(), "asyncify_memory"];
    let setup = Setup {
        unwindable,
        buffer: &case.buffer,
        skip: &buffer_exports,
    };

    let mut tally = Tally::default();
    let mut rng = case.args_seed;
    let reexported = reexported_imports(&case.wasm);
    for exp in original.exports() {
        let ExternType::Func(ty) = exp.ty() else {
            continue;
        };
        if reexported.contains(exp.name()) {
            continue; // the host's own function: nothing of the module runs
        }
        let params: Vec<ValType> = ty.params().collect();
        let Some(zeros) = params
            .iter()
            .map(Val::default_for_ty)
            .collect::<Option<Vec<Val>>>()
        else {
            continue; // a non-nullable reference parameter: nothing to pass
        };
        let mut arg_sets = vec![zeros.clone()];
        for _ in 0..2 {
            arg_sets.push(
                params
                    .iter()
                    .zip(&zeros)
                    .map(|(t, z)| random_val(t, &mut rng).unwrap_or(*z))
                    .collect(),
            );
        }
        for args in &arg_sets {
            let (want, want_stats) = run_one(
                &original,
                exp.name(),
                args,
                Mode::Never,
                &setup,
                ENGINE_FUEL,
            );
            if want.ending == Some(Ending::Trapped("OutOfFuel".into())) {
                *tally
                    .inconclusive
                    .entry("original out of engine fuel")
                    .or_default() += 1;
                continue;
            }
            if let Some(why) = inconclusive(&want) {
                *tally.inconclusive.entry(why).or_default() += 1;
                continue;
            }
            if let Some(Ending::Error(e)) = &want.ending {
                return Err(Problem::Skip(format!("the original fails: {e}")));
            }
            tally.calls += 1;
            tally.import_calls += want.log.len();
            match &want.ending {
                Some(Ending::Returned(_)) => tally.endings[0] += 1,
                Some(Ending::Trapped(_)) => tally.endings[1] += 1,
                Some(_) => tally.endings[2] += 1,
                None => tally.endings[3] += 1,
            }
            for (m, &mode) in case.modes.iter().enumerate() {
                let (got, stats) = run_one(
                    &ours,
                    exp.name(),
                    args,
                    mode,
                    &setup,
                    instrumented_fuel(want_stats.fuel_used, want.log.len()),
                );
                if let Some(why) = inconclusive(&got) {
                    *tally.inconclusive.entry(why).or_default() += 1;
                    continue;
                }
                let what = format!("export `{}` {args:?}, {mode:?}", exp.name().escape_debug());
                if let Some(diff) = difference(&want, &got) {
                    return Err(Problem::Bug(format!("{what}: {diff}")));
                }
                if stats.unwinds != stats.unwinds_started {
                    return Err(Problem::Bug(format!(
                        "{what}: the host started {} unwinds, the driver saw {}",
                        stats.unwinds_started, stats.unwinds
                    )));
                }
                tally.runs[m.min(2)] += 1;
                tally.unwinds += stats.unwinds;
            }
        }
    }
    Ok(tally)
}

/// The first difference between two runs, in words.
fn difference(want: &Run, got: &Run) -> Option<String> {
    if want.instantiated != got.instantiated {
        return Some(format!(
            "instantiation: {:?}, want {:?}",
            got.instantiated, want.instantiated
        ));
    }
    if want.ending != got.ending {
        return Some(format!(
            "ended with {:?}, want {:?}",
            got.ending, want.ending
        ));
    }
    if want.log != got.log {
        let first = want
            .log
            .iter()
            .zip(&got.log)
            .position(|(a, b)| a != b)
            .unwrap_or(want.log.len().min(got.log.len()));
        return Some(format!(
            "import log: {} calls, want {}; first difference at call {first}: {:?}, want {:?}",
            got.log.len(),
            want.log.len(),
            got.log.get(first),
            want.log.get(first)
        ));
    }
    for (name, bytes) in &want.memories {
        match got.memories.get(name) {
            Some(b) if b == bytes => {}
            Some(b) => {
                let at = bytes.iter().zip(b).position(|(x, y)| x != y);
                return Some(format!(
                    "memory `{}`: {} bytes, want {}; first difference at {at:?}",
                    name.escape_debug(),
                    b.len(),
                    bytes.len()
                ));
            }
            None => return Some(format!("memory `{}` missing", name.escape_debug())),
        }
    }
    for (name, v) in &want.globals {
        if got.globals.get(name) != Some(v) {
            return Some(format!(
                "global `{}`: {:?}, want {v:?}",
                name.escape_debug(),
                got.globals.get(name)
            ));
        }
    }
    for (name, t) in &want.tables {
        if got.tables.get(name) != Some(t) {
            return Some(format!("table `{}` differs", name.escape_debug()));
        }
    }
    None
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".to_string())
}

/// SplitMix64: the one pseudo-random function of the oracle and the test.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An argument of type `ty`: edge values and random ones, floats finite.
fn random_val(ty: &ValType, rng: &mut u64) -> Option<Val> {
    *rng = splitmix(*rng);
    let r = *rng;
    let small = (r >> 8) % 64;
    let pick = r % 4;
    Some(match ty {
        ValType::I32 => Val::I32(match pick {
            0 => small as i32,
            1 => [-1, i32::MIN, i32::MAX, 1][(small % 4) as usize],
            _ => (r >> 16) as i32,
        }),
        ValType::I64 => Val::I64(match pick {
            0 => small as i64,
            1 => [-1, i64::MIN, i64::MAX, 1][(small % 4) as usize],
            _ => (r >> 3) as i64,
        }),
        ValType::F32 => Val::F32((((r >> 20) % 4001) as f32 / 16.0 - 125.0).to_bits()),
        ValType::F64 => Val::F64((((r >> 20) % 40001) as f64 / 64.0 - 312.5).to_bits()),
        ValType::V128 => Val::V128(((r as u128) << 64 | splitmix(r) as u128).into()),
        ValType::Ref(_) => return None,
    })
}
