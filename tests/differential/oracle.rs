//! The differential oracle: a random module, instrumented under random options,
//! must behave exactly like the original, with nothing unwinding and with
//! unwinds forced at import calls.
//!
//! Shared by `tests/differential.rs` (a bounded, seeded run) and the cargo-fuzz
//! target in `fuzz/` (unbounded): both turn bytes into a [`Case`] with
//! `generate::generate` and judge it with [`check`], which instruments, then
//! for every exported function (re-exported imports aside) and three argument
//! sets runs the original on a fresh instance with a host that never unwinds,
//! and the instrumented module on fresh instances in each [`Mode`], and
//! compares results, trap or exception, the import log, and the final contents
//! of every exported memory, global and table. The host answers every import
//! from its name and arguments (`common::hash_answer`) and checks that a
//! rewind re-enters the import with the arguments of the call that unwound.
//!
//! Runs where either side exhausts the call stack are not compared (the
//! instrumented module uses more stack per frame, so the depth at which it
//! overflows differs by design) and are counted as inconclusive.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use wasm_rewind_transform::ErrorKind;
use wasmtime::{
    bail, format_err, Caller, Config, Engine, Extern, ExternType, Func, Instance, Module, OptLevel,
    Ref, Store, Trap, Val, ValType,
};

use crate::common::{backtrace_names, hash_answer, Answer, ImportCall, Value};
use crate::generate::{reexported_imports, unwindable_imports, Buffer, Case, Mode};

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

// ---------------------------------------------------------------------------
// The host
// ---------------------------------------------------------------------------

/// The store data of one run.
struct Host {
    answer: Answer,
    mode: Mode,
    /// Per import index: whether it may unwind.
    unwindable: Vec<bool>,
    /// False while instantiating (a start function never unwinds).
    armed: bool,
    buffer: Buffer,
    /// Import calls made in state 0.
    log: Vec<ImportCall>,
    /// Calls at which the host started an unwind.
    unwinds_started: usize,
    pending: Option<ImportCall>,
}

impl Host {
    fn wants_unwind(&self, import: usize, n: usize) -> bool {
        if !self.armed || !self.unwindable.get(import).copied().unwrap_or(false) {
            return false;
        }
        match self.mode {
            Mode::Never => false,
            Mode::Every => true,
            Mode::Subset(seed) => splitmix(seed ^ (n as u64).wrapping_mul(0x9e37)) & 1 == 0,
        }
    }
}

fn call_export(
    caller: &mut Caller<'_, Host>,
    name: &str,
    args: &[Val],
) -> wasmtime::Result<Vec<Val>> {
    let f = caller
        .get_export(name)
        .and_then(Extern::into_func)
        .ok_or_else(|| format_err!("no export `{name}`"))?;
    let ty = f.ty(&*caller);
    let mut out: Vec<Val> = ty.results().map(|t| Value::zero_val(&t)).collect();
    f.call(&mut *caller, args, &mut out)?;
    Ok(out)
}

/// The body of every import: answer from the arguments, or unwind (state 0);
/// finish the rewind and answer the call that unwound (state 2).
fn host_import(
    caller: &mut Caller<'_, Host>,
    index: usize,
    name: &str,
    result_types: &[ValType],
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let state = if caller.get_export("asyncify_get_state").is_some() {
        call_export(caller, "asyncify_get_state", &[])?[0].unwrap_i32()
    } else {
        0
    };
    let call = ImportCall {
        name: name.to_string(),
        args: params.iter().map(Value::from_val).collect(),
    };
    let answer = caller.data().answer.clone();
    let reply = |results: &mut [Val], call: &ImportCall| {
        for (slot, v) in results.iter_mut().zip(answer(call, result_types)) {
            *slot = v.to_val();
        }
    };
    match state {
        0 => {
            let n = caller.data().log.len();
            caller.data_mut().log.push(call.clone());
            // An import re-exported and called by the host directly has no
            // instrumented caller to unwind.
            let can = caller.get_export("asyncify_start_unwind").is_some();
            if can && caller.data().wants_unwind(index, n) {
                if caller.data().pending.is_some() {
                    bail!("`{name}` unwinds while another call is pending");
                }
                caller.data_mut().pending = Some(call);
                caller.data_mut().unwinds_started += 1;
                let ptr = caller.data().buffer.ptr_val();
                call_export(caller, "asyncify_start_unwind", &[ptr])?;
                for (slot, ty) in results.iter_mut().zip(result_types) {
                    *slot = Value::zero_val(ty);
                }
            } else {
                reply(results, &call);
            }
            Ok(())
        }
        2 => {
            call_export(caller, "asyncify_stop_rewind", &[])?;
            let pending = caller.data_mut().pending.take().ok_or_else(|| {
                format_err!("`{name}` re-entered while rewinding, nothing pending")
            })?;
            if pending != call {
                bail!("rewind re-entered {call:?}, but the call that unwound was {pending:?}");
            }
            reply(results, &pending);
            Ok(())
        }
        s => bail!("`{name}` called in asyncify state {s}"),
    }
}

/// The engine of every run: the proposals wasm-smith may use, NaNs
/// canonicalised (so float results compare bit for bit), fuel metering (so a
/// run that would loop forever ends), and no optimisation (compiling dominates
/// the time of a case).
pub fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config
                .cranelift_opt_level(OptLevel::None)
                .cranelift_nan_canonicalization(true)
                .consume_fuel(true)
                .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(32));
            Engine::new(&config).expect("wasmtime engine")
        })
        .clone()
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

struct Stats {
    unwinds: usize,
    unwinds_started: usize,
    fuel_used: u64,
}

/// Instantiates `module` and calls `export(args)` through the driver loop
/// (the loop only matters when something unwinds).
/// What every run of a case shares.
struct Setup<'a> {
    /// Per import: whether it may unwind.
    unwindable: &'a [bool],
    buffer: &'a Buffer,
    /// Exports not compared (the buffer's memory).
    skip: &'a [&'a str],
}

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
    let mut store = Store::new(
        module.engine(),
        Host {
            answer: hash_answer(),
            mode,
            unwindable: unwindable.to_vec(),
            armed: false,
            buffer: buffer.clone(),
            log: Vec::new(),
            unwinds_started: 0,
            pending: None,
        },
    );
    store.set_fuel(fuel).expect("fuel is enabled");
    let mut stats = Stats {
        unwinds: 0,
        unwinds_started: 0,
        fuel_used: 0,
    };
    let mut imports = Vec::new();
    let mut index = 0;
    for import in module.imports() {
        let name = format!("{}.{}", import.module(), import.name());
        let ty = match import.ty() {
            ExternType::Func(ty) => ty,
            // `import_globals`: the state and data globals live in the host.
            ExternType::Global(g) if name.starts_with("env.__asyncify_") => {
                let zero = Value::zero_val(g.content());
                let global = wasmtime::Global::new(&mut store, g, zero)
                    .expect("a global of the imported type");
                imports.push(global.into());
                continue;
            }
            _ => panic!("import `{name}` (wasm-smith was given functions only)"),
        };
        let result_types: Vec<ValType> = ty.results().collect();
        let i = index;
        index += 1;
        let func = Func::new(
            &mut store,
            ty.clone(),
            move |mut caller, params, results| {
                host_import(&mut caller, i, &name, &result_types, params, results)
            },
        );
        imports.push(func.into());
    }
    let mut run = Run {
        instantiated: Ok(()),
        ending: None,
        log: Vec::new(),
        memories: BTreeMap::new(),
        globals: BTreeMap::new(),
        tables: BTreeMap::new(),
    };
    let instance = match Instance::new(&mut store, module, &imports) {
        Ok(i) => i,
        Err(e) => {
            run.instantiated = Err(format!("{:?}", ending_of_error(&e)));
            stats.fuel_used = fuel - store.get_fuel().expect("fuel is enabled");
            run.log = std::mem::take(&mut store.data_mut().log);
            return (run, stats);
        }
    };
    store.data_mut().armed = true;
    run.ending = Some(
        match drive(&mut store, &instance, export, args, &mut stats) {
            Ok(results) => Ending::Returned(results.iter().map(seen).collect()),
            Err(e) => ending_of_error(&e),
        },
    );
    stats.unwinds_started = store.data().unwinds_started;
    stats.fuel_used = fuel - store.get_fuel().expect("fuel is enabled");
    run.log = std::mem::take(&mut store.data_mut().log);
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

/// Calls `export(args)` until it returns in state 0: after an unwind, stops
/// it, checks `pos`, starts the rewind and calls the export again.
fn drive(
    store: &mut Store<Host>,
    instance: &Instance,
    export: &str,
    args: &[Val],
    stats: &mut Stats,
) -> wasmtime::Result<Vec<Val>> {
    let f = instance
        .get_func(&mut *store, export)
        .ok_or_else(|| format_err!("no function `{export}`"))?;
    let ty = f.ty(&*store);
    let control =
        |store: &mut Store<Host>, name: &str, args: &[Val]| -> wasmtime::Result<Vec<Val>> {
            let g = instance
                .get_func(&mut *store, name)
                .ok_or_else(|| format_err!("no export `{name}`"))?;
            let mut out: Vec<Val> = g
                .ty(&*store)
                .results()
                .map(|t| Value::zero_val(&t))
                .collect();
            g.call(&mut *store, args, &mut out)?;
            Ok(out)
        };
    let instrumented = instance
        .get_func(&mut *store, "asyncify_get_state")
        .is_some();
    let buffer = store.data().buffer.clone();
    if instrumented {
        let memory = instance
            .get_memory(&mut *store, &buffer.memory)
            .ok_or_else(|| format_err!("no buffer memory `{}`", buffer.memory))?;
        let pos = buffer.ptr + buffer.header();
        let end = pos + buffer.size;
        let mut header = Vec::new();
        if buffer.wide {
            header.extend(pos.to_le_bytes());
            header.extend(end.to_le_bytes());
        } else {
            header.extend((pos as u32).to_le_bytes());
            header.extend((end as u32).to_le_bytes());
        }
        memory.write(&mut *store, buffer.ptr as usize, &header)?;
    }
    loop {
        if store.data().pending.is_some() {
            control(store, "asyncify_start_rewind", &[buffer.ptr_val()])?;
        }
        let mut out: Vec<Val> = ty.results().map(|t| Value::zero_val(&t)).collect();
        f.call(&mut *store, args, &mut out)?;
        if !instrumented {
            return Ok(out);
        }
        match control(store, "asyncify_get_state", &[])?[0].unwrap_i32() {
            0 => {
                if let Some(call) = store.data().pending.clone() {
                    bail!("`{export}` returned normally without resuming {call:?}");
                }
                return Ok(out);
            }
            1 => {
                control(store, "asyncify_stop_unwind", &[])?;
                if store.data().pending.is_none() {
                    bail!("`{export}` unwound but no import started it");
                }
                stats.unwinds += 1;
                if stats.unwinds > MAX_UNWINDS {
                    bail!("more than {MAX_UNWINDS} unwinds in one call");
                }
            }
            s => bail!("`{export}` returned in state {s}"),
        }
    }
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
    let engine = engine();
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
