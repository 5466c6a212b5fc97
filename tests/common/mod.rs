//! A test host for the Asyncify ABI, written only against the ABI.
//!
//! Nothing here knows which tool instrumented a module: the same code drives
//! `wasm-opt --asyncify` output and ours, which is how the tests show that "a host
//! written for Binaryen drives ours unchanged". The pieces:
//!
//! - [`instrument_ours`] and [`instrument_binaryen`] turn WAT or wasm into an
//!   instrumented module (the second shells out to `wasm-opt`, which must be
//!   installed: a missing tool fails the test, it never skips it);
//! - [`Host`] is the store data: how every import answers ([`Answer`]), which
//!   import calls unwind ([`UnwindPolicy`]), which imports call back into an
//!   export, and the log of every import call;
//! - [`Guest`] is one instance plus typed access to its memory and to the five
//!   `asyncify_*` exports;
//! - [`run_coroutines`] is the driver loop (unwind, stop, switch, rewind, call the
//!   same export again) over one or several `{pos, end}` buffers;
//!   [`Guest::drive`] is the one-coroutine case.
//!
//! The import protocol follows Binaryen's documentation: in state 0 an import that
//! wants to sleep records the call, calls `asyncify_start_unwind(ptr)` and returns
//! zeros; when the export is called again under `asyncify_start_rewind(ptr)` the
//! import is re-entered in state 2, calls `asyncify_stop_rewind()` and returns the
//! real answer for the call it recorded. The re-entry must pass the same
//! arguments as the call that unwound (Binaryen's output does, and a host may
//! read them then); the host checks that, and computes the answer from the call
//! recorded at unwind time.

#![allow(dead_code)] // each test crate uses a different part of this module

use std::process::Command;
use std::sync::Arc;

use wasmtime::{
    bail, format_err, Caller, Config, Engine, Extern, Func, Instance, Module, Result, Store, Val,
    ValType, WasmBacktrace,
};

/// Where the corpus convention puts the asyncify data structure: bytes
/// `[0xF000, 0x10000)` of memory 0 are never touched by a corpus module.
pub const RESERVED_START: u32 = 0xF000;
/// One past the last reserved byte.
pub const RESERVED_END: u32 = 0x1_0000;

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/// A wasm value that can be compared and printed (floats by their bits, so NaNs
/// compare exactly and nothing is lost in a log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// An `f32`, as its bits.
    F32(u32),
    /// An `f64`, as its bits.
    F64(u64),
    /// A `v128`.
    V128(u128),
}

impl Value {
    /// A `Value::F32` holding `x`.
    pub fn f32(x: f32) -> Value {
        Value::F32(x.to_bits())
    }

    /// A `Value::F64` holding `x`.
    pub fn f64(x: f64) -> Value {
        Value::F64(x.to_bits())
    }

    /// Converts from wasmtime; reference values are not used by these tests.
    pub fn from_val(val: &Val) -> Value {
        match val {
            Val::I32(x) => Value::I32(*x),
            Val::I64(x) => Value::I64(*x),
            Val::F32(x) => Value::F32(*x),
            Val::F64(x) => Value::F64(*x),
            Val::V128(x) => Value::V128(x.as_u128()),
            other => panic!("reference value {other:?} in an ABI test"),
        }
    }

    /// Converts to wasmtime.
    pub fn to_val(self) -> Val {
        match self {
            Value::I32(x) => Val::I32(x),
            Value::I64(x) => Val::I64(x),
            Value::F32(x) => Val::F32(x),
            Value::F64(x) => Val::F64(x),
            Value::V128(x) => Val::V128(x.into()),
        }
    }

    /// The zero of a type (what an unwinding import returns).
    pub fn zero_val(ty: &ValType) -> Val {
        Val::default_for_ty(ty).unwrap_or_else(|| panic!("no default value for {ty}"))
    }

    /// The bits of the value, for hashing.
    pub fn bits(self) -> u128 {
        match self {
            Value::I32(x) => x as u32 as u128,
            Value::I64(x) => x as u64 as u128,
            Value::F32(x) => x as u128,
            Value::F64(x) => x as u128,
            Value::V128(x) => x,
        }
    }
}

/// Converts wasmtime values to [`Value`]s.
pub fn values(vals: &[Val]) -> Vec<Value> {
    vals.iter().map(Value::from_val).collect()
}

// ---------------------------------------------------------------------------
// Instrumenting
// ---------------------------------------------------------------------------

/// WAT or wasm bytes to wasm bytes.
pub fn to_wasm(wat_or_wasm: impl AsRef<[u8]>) -> Vec<u8> {
    wat::parse_bytes(wat_or_wasm.as_ref())
        .unwrap_or_else(|e| panic!("test input does not parse: {e}"))
        .into_owned()
}

/// Instruments with our pass.
pub fn instrument_ours(
    wat_or_wasm: impl AsRef<[u8]>,
    options: &wasm_rewind_transform::Options,
) -> Vec<u8> {
    let wasm = to_wasm(wat_or_wasm);
    let out = wasm_rewind_transform::instrument(&wasm, options)
        .unwrap_or_else(|e| panic!("wasm-rewind failed to instrument: {e}"));
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&out.wasm)
        .unwrap_or_else(|e| panic!("wasm-rewind produced an invalid module: {e}"));
    out.wasm
}

/// Our options equivalent to `--pass-arg=asyncify-imports@<imports>`.
pub fn ours_with_imports(imports: &[&str]) -> wasm_rewind_transform::Options {
    wasm_rewind_transform::Options {
        imports: Some(imports.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

#[path = "../process/mod.rs"]
pub mod process;
pub use process::wasm_opt;

/// The features every input may use; Binaryen needs them spelled out.
const BINARYEN_FEATURES: &[&str] = &[
    "--enable-mutable-globals",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-bulk-memory",
    "--enable-multivalue",
    "--enable-simd",
];

/// Runs `wasm-opt in.wasm --asyncify <extra args> -o out.wasm` (with the feature
/// flags the corpus needs) and returns the output. Panics, with wasm-opt's stderr,
/// when the tool is missing or fails: a missing tool is a failed test, not a skip.
pub fn instrument_binaryen(wat_or_wasm: impl AsRef<[u8]>, extra_args: &[&str]) -> Vec<u8> {
    let wasm = to_wasm(wat_or_wasm);
    let dir = tempfile::tempdir().expect("temporary directory");
    let input = dir.path().join("in.wasm");
    let output = dir.path().join("out.wasm");
    std::fs::write(&input, &wasm).expect("write wasm-opt input");
    let mut cmd = Command::new(wasm_opt());
    cmd.arg(&input)
        .args(BINARYEN_FEATURES)
        .arg("--asyncify")
        .args(extra_args)
        .arg("-o")
        .arg(&output);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {:?} (install binaryen or set WASM_OPT): {e}",
            wasm_opt()
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&output).expect("read wasm-opt output")
}

/// Which tool instrumented a module (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `wasm-opt --asyncify`.
    Binaryen,
    /// `wasm_rewind_transform::instrument`.
    Ours,
}

/// Instruments `wat` with both tools so that only `imports` may unwind and calls
/// `check` on each result, Binaryen's first (so the harness itself is proven even
/// while our pass is unfinished).
///
/// `WASM_REWIND_TEST_TOOLS=binaryen` runs only Binaryen's half: a debugging aid
/// for the harness itself, never a default (both tools always run otherwise).
pub fn with_both(wat: &str, imports: &[&str], mut check: impl FnMut(Tool, &[u8])) {
    let list = format!("--pass-arg=asyncify-imports@{}", imports.join(","));
    let binaryen = instrument_binaryen(wat, &[&list]);
    check(Tool::Binaryen, &binaryen);
    if binaryen_only() {
        return;
    }
    let ours = instrument_ours(wat, &ours_with_imports(imports));
    check(Tool::Ours, &ours);
}

/// Whether `WASM_REWIND_TEST_TOOLS=binaryen` asks to test only the harness.
pub fn binaryen_only() -> bool {
    std::env::var("WASM_REWIND_TEST_TOOLS").is_ok_and(|v| v == "binaryen")
}

// ---------------------------------------------------------------------------
// The host
// ---------------------------------------------------------------------------

/// One call of an import, as the module made it in state 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImportCall {
    /// `module.name`, e.g. `env.sleep`.
    pub name: String,
    /// The arguments.
    pub args: Vec<Value>,
}

/// Computes an import's results from the call and the result types.
pub type Answer = Arc<dyn Fn(&ImportCall, &[ValType]) -> Vec<Value> + Send + Sync>;

/// Decides whether the `n`th import call (counting from 0, over the whole life of
/// the store) unwinds.
pub type UnwindPolicy = Arc<dyn Fn(&ImportCall, usize) -> bool + Send + Sync>;

/// An [`UnwindPolicy`] that never unwinds (the reference run).
pub fn never() -> UnwindPolicy {
    Arc::new(|_, _| false)
}

/// An [`UnwindPolicy`] that unwinds at every import call.
pub fn always() -> UnwindPolicy {
    Arc::new(|_, _| true)
}

/// An [`UnwindPolicy`] that unwinds at every call of the import `name`.
pub fn at_import(name: &'static str) -> UnwindPolicy {
    Arc::new(move |call, _| call.name == name)
}

/// An [`Answer`] from a plain function of the call (one result).
pub fn answer(f: impl Fn(&ImportCall) -> Value + Send + Sync + 'static) -> Answer {
    Arc::new(move |call, results| match results.len() {
        0 => vec![],
        1 => vec![f(call)],
        n => panic!("answer() covers one result, {} has {n}", call.name),
    })
}

/// FNV-1a over the import name and the argument bits: the deterministic host of
/// the corpus tests.
pub fn hash_call(call: &ImportCall) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for b in call.name.bytes() {
        eat(b);
    }
    for a in &call.args {
        for b in a.bits().to_le_bytes() {
            eat(b);
        }
    }
    h
}

/// The corpus host's answer: every result derived from [`hash_call`]. Integers use
/// the full range; floats are small finite multiples of 1/8 (never NaN, so
/// results cannot depend on NaN canonicalisation).
pub fn hash_answer() -> Answer {
    Arc::new(|call, results| {
        let h = hash_call(call);
        results
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                let h = h.rotate_left(13 * i as u32);
                match ty {
                    ValType::I32 => Value::I32(h as i32),
                    ValType::I64 => Value::I64(h as i64),
                    ValType::F32 => Value::f32(((h % 2001) as f32 - 1000.0) / 8.0),
                    ValType::F64 => Value::f64(((h % 20001) as f64 - 10000.0) / 16.0),
                    other => panic!("corpus import result of type {other}"),
                }
            })
            .collect()
    })
}

/// The store data: how imports behave, and what they saw.
pub struct Host {
    /// Every import call made in state 0, in order (re-entries while rewinding are
    /// not calls: the module is only resuming the call already logged).
    pub log: Vec<ImportCall>,
    /// How many import calls were made in state 0 over the store's life.
    pub calls: usize,
    /// The results of an import call.
    pub answer: Answer,
    /// Which calls unwind.
    pub unwind: UnwindPolicy,
    /// Imports that call back into an export (`("env.callback", "helper")`): the
    /// host calls the export with the import's arguments and returns its results.
    pub callbacks: Vec<(String, String)>,
    /// Address of the `{pos, end}` structure of the running coroutine.
    pub data_ptr: Option<u32>,
    /// The call that unwound and waits for its answer: set by the import when it
    /// starts an unwind, taken by the driver, handed back before the rewind.
    pub pending: Option<ImportCall>,
    /// How many times an import was re-entered in state 2 and stopped the rewind.
    pub rewinds_completed: usize,
}

impl Host {
    /// A host where every import answers with `answer` and `unwind` decides.
    pub fn new(answer: Answer, unwind: UnwindPolicy) -> Host {
        Host {
            log: Vec::new(),
            calls: 0,
            answer,
            unwind,
            callbacks: Vec::new(),
            data_ptr: None,
            pending: None,
            rewinds_completed: 0,
        }
    }

    /// Adds a callback import (see [`Host::callbacks`]).
    pub fn with_callback(mut self, import: &str, export: &str) -> Host {
        self.callbacks
            .push((import.to_string(), export.to_string()));
        self
    }
}

fn export_func(caller: &mut Caller<'_, Host>, name: &str) -> Option<Func> {
    caller.get_export(name).and_then(Extern::into_func)
}

fn call_in_caller(caller: &mut Caller<'_, Host>, name: &str, args: &[Val]) -> Result<Vec<Val>> {
    let f = export_func(caller, name).ok_or_else(|| format_err!("no export `{name}`"))?;
    let ty = f.ty(&*caller);
    let mut out: Vec<Val> = ty.results().map(|t| Value::zero_val(&t)).collect();
    f.call(&mut *caller, args, &mut out)?;
    Ok(out)
}

/// The body of every host import.
fn host_import(
    caller: &mut Caller<'_, Host>,
    name: &str,
    result_types: &[ValType],
    params: &[Val],
    results: &mut [Val],
) -> Result<()> {
    let state = match export_func(caller, "asyncify_get_state") {
        Some(_) => call_in_caller(caller, "asyncify_get_state", &[])?[0].unwrap_i32(),
        None => 0,
    };
    let answer = caller.data().answer.clone();
    let fill = |results: &mut [Val], vals: Vec<Value>| -> Result<()> {
        if vals.len() != results.len() {
            bail!(
                "answer for `{name}` has {} values, want {}",
                vals.len(),
                results.len()
            );
        }
        for (slot, v) in results.iter_mut().zip(vals) {
            *slot = v.to_val();
        }
        Ok(())
    };
    match state {
        0 => {
            let call = ImportCall {
                name: name.to_string(),
                args: values(params),
            };
            let n = caller.data().calls;
            caller.data_mut().calls += 1;
            caller.data_mut().log.push(call.clone());
            let callback = caller
                .data()
                .callbacks
                .iter()
                .find(|(import, _)| import == name)
                .map(|(_, export)| export.clone());
            if let Some(export) = callback {
                let out = call_in_caller(caller, &export, params)?;
                results.clone_from_slice(&out);
                return Ok(());
            }
            let unwind = caller.data().unwind.clone();
            if unwind(&call, n) {
                let ptr = caller.data().data_ptr.ok_or_else(|| {
                    format_err!("`{name}` wants to unwind but no asyncify buffer is set up")
                })?;
                if export_func(caller, "asyncify_start_unwind").is_none() {
                    bail!("`{name}` wants to unwind but the module is not instrumented");
                }
                if caller.data().pending.is_some() {
                    bail!("`{name}` unwinds while another call is pending");
                }
                caller.data_mut().pending = Some(call);
                call_in_caller(caller, "asyncify_start_unwind", &[Val::I32(ptr as i32)])?;
                for (slot, ty) in results.iter_mut().zip(result_types) {
                    *slot = Value::zero_val(ty);
                }
            } else {
                fill(results, answer(&call, result_types))?;
            }
            Ok(())
        }
        2 => {
            call_in_caller(caller, "asyncify_stop_rewind", &[])?;
            let call = caller.data_mut().pending.take().ok_or_else(|| {
                format_err!("`{name}` re-entered while rewinding, but no call is pending")
            })?;
            if call.name != name {
                bail!(
                    "rewind resumed `{name}` but the call that unwound was `{}`",
                    call.name
                );
            }
            // Binaryen's output re-enters the import with the arguments of the
            // call that unwound (its saved locals feed the call again). A host
            // may rely on that, e.g. to write a result through a pointer
            // argument when the rewind arrives, so we hold ours to it too.
            let again = values(params);
            if again != call.args {
                bail!(
                    "rewind re-entered `{name}` with {again:?}, but the call that unwound \
                     passed {:?}",
                    call.args
                );
            }
            caller.data_mut().rewinds_completed += 1;
            fill(results, answer(&call, result_types))
        }
        s => bail!("`{name}` called in asyncify state {s}"),
    }
}

// ---------------------------------------------------------------------------
// The guest
// ---------------------------------------------------------------------------

/// One instance of a module, with the host's imports.
pub struct Guest {
    /// The store (its data is the [`Host`]).
    pub store: Store<Host>,
    /// The instance.
    pub instance: Instance,
}

/// One wasmtime engine per test process is enough.
pub fn engine() -> Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(64));
            Engine::new(&config).expect("wasmtime engine")
        })
        .clone()
}

impl Guest {
    /// Instantiates `wasm` (or WAT) with a host function for every function
    /// import; any other kind of import is an error.
    pub fn new(wasm: impl AsRef<[u8]>, host: Host) -> Result<Guest> {
        let engine = engine();
        let module = Module::new(&engine, wasm.as_ref())?;
        let mut store = Store::new(&engine, host);
        let mut imports = Vec::new();
        for import in module.imports() {
            let name = format!("{}.{}", import.module(), import.name());
            let Some(ty) = import.ty().func().cloned() else {
                bail!("import `{name}` is not a function");
            };
            let result_types: Vec<ValType> = ty.results().collect();
            let func = Func::new(
                &mut store,
                ty.clone(),
                move |mut caller, params, results| {
                    host_import(&mut caller, &name, &result_types, params, results)
                },
            );
            imports.push(func.into());
        }
        let instance = Instance::new(&mut store, &module, &imports)?;
        Ok(Guest { store, instance })
    }

    /// The host data.
    pub fn host(&mut self) -> &mut Host {
        self.store.data_mut()
    }

    /// Calls export `name` once (no driver loop) and returns its results.
    pub fn call(&mut self, name: &str, args: &[Value]) -> Result<Vec<Value>> {
        let f = self
            .instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| format_err!("no exported function `{name}`"))?;
        let ty = f.ty(&self.store);
        let args: Vec<Val> = args.iter().map(|v| v.to_val()).collect();
        let mut out: Vec<Val> = ty.results().map(|t| Value::zero_val(&t)).collect();
        f.call(&mut self.store, &args, &mut out)?;
        Ok(values(&out))
    }

    /// `asyncify_get_state()`.
    pub fn state(&mut self) -> Result<i32> {
        match self.call("asyncify_get_state", &[])?[..] {
            [Value::I32(s)] => Ok(s),
            ref other => bail!("asyncify_get_state returned {other:?}"),
        }
    }

    /// `asyncify_start_unwind(ptr)`.
    pub fn start_unwind(&mut self, ptr: u32) -> Result<()> {
        self.call("asyncify_start_unwind", &[Value::I32(ptr as i32)])
            .map(drop)
    }

    /// `asyncify_stop_unwind()`.
    pub fn stop_unwind(&mut self) -> Result<()> {
        self.call("asyncify_stop_unwind", &[]).map(drop)
    }

    /// `asyncify_start_rewind(ptr)`.
    pub fn start_rewind(&mut self, ptr: u32) -> Result<()> {
        self.call("asyncify_start_rewind", &[Value::I32(ptr as i32)])
            .map(drop)
    }

    /// `asyncify_stop_rewind()`.
    pub fn stop_rewind(&mut self) -> Result<()> {
        self.call("asyncify_stop_rewind", &[]).map(drop)
    }

    /// Memory 0 (the module must export it as `memory`).
    pub fn memory(&mut self) -> wasmtime::Memory {
        self.instance
            .get_memory(&mut self.store, "memory")
            .expect("the module exports its memory as `memory`")
    }

    /// A copy of all of memory 0.
    pub fn memory_bytes(&mut self) -> Vec<u8> {
        let m = self.memory();
        m.data(&self.store).to_vec()
    }

    /// Writes bytes into memory 0.
    pub fn write_bytes(&mut self, addr: u32, bytes: &[u8]) {
        let m = self.memory();
        m.write(&mut self.store, addr as usize, bytes)
            .expect("write in bounds");
    }

    /// Reads a little-endian u32 from memory 0.
    pub fn read_u32(&mut self, addr: u32) -> u32 {
        let m = self.memory();
        let mut b = [0; 4];
        m.read(&self.store, addr as usize, &mut b)
            .expect("read in bounds");
        u32::from_le_bytes(b)
    }

    /// Writes a little-endian u32 into memory 0.
    pub fn write_u32(&mut self, addr: u32, value: u32) {
        self.write_bytes(addr, &value.to_le_bytes());
    }

    /// Sets up `{pos, end}` at `ptr` for a buffer of `size` bytes right after it,
    /// as the ABI asks: `pos = ptr + 8`, `end = ptr + 8 + size`.
    pub fn init_buffer(&mut self, ptr: u32, size: u32) {
        self.write_u32(ptr, ptr + 8);
        self.write_u32(ptr + 4, ptr + 8 + size);
    }

    /// `(pos, end)` of the structure at `ptr`.
    pub fn buffer(&mut self, ptr: u32) -> (u32, u32) {
        (self.read_u32(ptr), self.read_u32(ptr + 4))
    }

    /// Runs export `name` to completion through the driver loop with the whole
    /// reserved region as its buffer.
    pub fn drive(&mut self, name: &str, args: &[Value]) -> Result<Finished> {
        let co = Coroutine::new(
            name,
            args,
            RESERVED_START,
            RESERVED_END - RESERVED_START - 8,
        );
        Ok(run_coroutines(self, &[co])?.remove(0))
    }
}

// ---------------------------------------------------------------------------
// The driver loop and the coroutine scheduler
// ---------------------------------------------------------------------------

/// One coroutine: an export call with its own `{pos, end}` structure and buffer.
#[derive(Clone, Debug)]
pub struct Coroutine {
    /// The export to call.
    pub export: String,
    /// Its arguments (the same on every re-entry).
    pub args: Vec<Value>,
    /// Address of its `{pos, end}` structure; the buffer follows it.
    pub data_ptr: u32,
    /// Size of its buffer in bytes.
    pub buffer_size: u32,
}

impl Coroutine {
    /// A coroutine calling `export(args)` with its structure at `data_ptr`.
    pub fn new(export: &str, args: &[Value], data_ptr: u32, buffer_size: u32) -> Coroutine {
        Coroutine {
            export: export.to_string(),
            args: args.to_vec(),
            data_ptr,
            buffer_size,
        }
    }
}

/// What one coroutine did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The export's results on the call that returned in state 0.
    pub results: Vec<Value>,
    /// How many times it unwound (and so was resumed).
    pub unwinds: usize,
    /// The import calls it made, in order.
    pub log: Vec<ImportCall>,
    /// The most buffer bytes one unwind used (`pos - (ptr + 8)` after it).
    pub max_buffer_used: u32,
}

/// Runs the coroutines round robin: each runs until it unwinds or returns, then
/// the next one gets a turn; an unwound coroutine is resumed on its next turn by
/// `asyncify_start_rewind(its ptr)` and a new call of its export with its
/// arguments. Returns when all have returned, in the order given.
///
/// Checks the ABI on the way: state 1 after an unwinding return, `pos` within
/// `[ptr + 8, end]` after every unwind, state 0 and no pending call after the
/// rewind reached the import.
pub fn run_coroutines(guest: &mut Guest, coroutines: &[Coroutine]) -> Result<Vec<Finished>> {
    struct Slot {
        pending: Option<ImportCall>,
        done: Option<Vec<Value>>,
        unwinds: usize,
        log: Vec<ImportCall>,
        max_used: u32,
    }
    let mut slots: Vec<Slot> = coroutines
        .iter()
        .map(|_| Slot {
            pending: None,
            done: None,
            unwinds: 0,
            log: Vec::new(),
            max_used: 0,
        })
        .collect();
    for co in coroutines {
        guest.init_buffer(co.data_ptr, co.buffer_size);
    }
    while slots.iter().any(|s| s.done.is_none()) {
        for (co, slot) in coroutines.iter().zip(&mut slots) {
            if slot.done.is_some() {
                continue;
            }
            let ptr = co.data_ptr;
            guest.host().data_ptr = Some(ptr);
            let resuming = slot.pending.is_some();
            if resuming {
                guest.host().pending = slot.pending.take();
                guest.start_rewind(ptr)?;
            }
            let results = guest.call(&co.export, &co.args)?;
            slot.log.append(&mut guest.host().log);
            match guest.state()? {
                0 => {
                    if let Some(call) = guest.host().pending.take() {
                        bail!(
                            "`{}` returned normally without resuming {call:?}",
                            co.export
                        );
                    }
                    slot.done = Some(results);
                }
                1 => {
                    guest.stop_unwind()?;
                    let (pos, end) = guest.buffer(ptr);
                    if pos < ptr + 8 || pos > end {
                        bail!(
                            "after an unwind pos = {pos:#x} is outside [{:#x}, {end:#x}]",
                            ptr + 8
                        );
                    }
                    slot.max_used = slot.max_used.max(pos - (ptr + 8));
                    slot.unwinds += 1;
                    slot.pending = Some(guest.host().pending.take().ok_or_else(|| {
                        format_err!("`{}` unwound but no host import started it", co.export)
                    })?);
                }
                s => bail!("`{}` returned in state {s}", co.export),
            }
        }
    }
    Ok(slots
        .into_iter()
        .map(|s| Finished {
            results: s.done.expect("all done"),
            unwinds: s.unwinds,
            log: s.log,
            max_buffer_used: s.max_used,
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Traps
// ---------------------------------------------------------------------------

/// The function names on the wasm backtrace of an error (innermost first), empty
/// when the error carries none.
pub fn backtrace_names(err: &wasmtime::Error) -> Vec<String> {
    err.downcast_ref::<WasmBacktrace>()
        .map(|bt| {
            bt.frames()
                .iter()
                .map(|f| f.func_name().unwrap_or("<unnamed>").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The trap code of an error, if it is a wasm trap.
pub fn trap_code(err: &wasmtime::Error) -> Option<wasmtime::Trap> {
    err.downcast_ref::<wasmtime::Trap>().copied()
}
