//! The wasmtime binding: the WASIX stack imports and the driver loop.
//!
//! # How a checkpoint and a restore run
//!
//! `stack_checkpoint(env, ret)`, first entry (state 0): place the asyncify
//! buffer in the free part of the C stack, below `__stack_pointer`, and start
//! unwinding. Every instrumented function on the stack saves its frame and
//! returns, up to the export the embedder called through [`call`]. The driver
//! then stops the unwind, copies the frames, the live stack bytes and the
//! exported mutable globals into a [`Snapshot`], stores it under its keyed
//! hash, writes the hash into the jmp_buf, and rewinds the same buffer by
//! calling the export again with the same arguments. The checkpoint import is
//! re-entered while rewinding (state 2), stops the rewind and returns 0
//! through `ret`.
//!
//! `stack_restore(env, val)`: look the hash up (and re-verify it), refuse a
//! stale snapshot, unwind the current stack (its frames are discarded), then
//! the driver writes the snapshot's frames into the buffer, restores the
//! globals (`__stack_pointer` above all; linear memory is not restored, so
//! later writes to volatile locals survive, as C requires) and rewinds: the
//! stack is rebuilt as it was at the checkpoint, whose import returns `val`.
//!
//! # Where the buffer lives, and why
//!
//! In the module's `asyncify_memory` when it exports one: `wasm-rewind
//! instrument` gives every module that calls the WASIX stack functions such a
//! memory, because without link flags nothing tells where the C stack ends
//! (wasm-ld's `.bss` has no data segment), so no part of memory 0 is known to
//! be free. A separate memory cannot overlap program data, and its size bounds
//! the buffer.
//!
//! Otherwise (a module instrumented by `wasm-opt --asyncify`, which Wasmer
//! drives the same way) between `__stack_low` (or `__data_end`) and the
//! current `__stack_pointer`: the free part of the C stack. Nothing runs C code
//! while a stack unwinds or rewinds, so that memory is unused then; the
//! exported bound is the linker's, so it does not overlap `.bss`.
//!
//! Either way [`ShimConfig::max_buffer`] bounds it too, and a frame that does
//! not fit makes the instrumented code trap before writing past the end (see
//! the transform): an error the embedder sees, never corruption.

use crate::abi::{JmpBuf, JMP_BUF_HASH_OFFSET, JMP_BUF_SIZE};
use crate::error::ShimError;
use crate::hash::{HashKey, SnapshotHash};
use crate::snapshot::{GlobalValue, Snapshot};
use crate::store::{SnapshotStore, StoreLimits};
use wasmtime::{
    AsContext, AsContextMut, Caller, ExternType, Func, Global, Instance, Linker, Memory, Module,
    Mutability, Store, Val,
};

/// How a [`ShimState`] is set up.
#[derive(Clone)]
pub struct ShimConfig {
    /// Key of the snapshot hashes. Defaults to a random key per state; fix it
    /// for reproducible runs.
    pub key: HashKey,
    /// Bounds of the snapshot store. Defaults to [`StoreLimits::default`].
    pub limits: StoreLimits,
    /// Most bytes the asyncify buffer may take in the free stack. Defaults to
    /// 1 MiB; the stack's free part bounds it too.
    pub max_buffer: u64,
}

impl Default for ShimConfig {
    fn default() -> ShimConfig {
        ShimConfig {
            key: HashKey::random(),
            limits: StoreLimits::default(),
            max_buffer: 1 << 20,
        }
    }
}

/// The shim's state for one instance, kept in the store's data.
pub struct ShimState {
    snapshots: SnapshotStore,
    max_buffer: u64,
    exports: Option<Exports>,
    pending: Pending,
    /// What the rewound `stack_checkpoint` call returns through `ret`.
    resume_value: Option<u64>,
    /// `__stack_pointer` when the first export was called: the stack's top.
    stack_top: Option<u64>,
}

impl ShimState {
    /// A fresh state.
    pub fn new(config: ShimConfig) -> ShimState {
        ShimState {
            snapshots: SnapshotStore::new(config.key, config.limits),
            max_buffer: config.max_buffer,
            exports: None,
            pending: Pending::None,
            resume_value: None,
            stack_top: None,
        }
    }

    /// The snapshots taken so far (for inspection and tests).
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }
}

/// A request made by an import that the driver completes once the stack has
/// unwound.
enum Pending {
    None,
    Checkpoint {
        env: u64,
        buffer: Buffer,
    },
    Restore {
        hash: SnapshotHash,
        val: u64,
        buffer: Buffer,
    },
}

/// The asyncify data structure and buffer, in linear memory.
#[derive(Clone, Copy)]
struct Buffer {
    /// The memory holding them.
    memory: Memory,
    /// Address of `{ pos, end }`.
    data: u64,
    /// First byte of the buffer.
    start: u64,
    /// One past its last byte.
    end: u64,
}

/// The exports the shim drives, resolved once per instance.
#[derive(Clone)]
struct Exports {
    get_state: Func,
    start_unwind: Func,
    stop_unwind: Func,
    start_rewind: Func,
    stop_rewind: Func,
    /// The program's memory (jmp_bufs, the C stack).
    memory: Memory,
    stack_pointer: Global,
    /// Where the asyncify buffer goes.
    buffer: BufferPlace,
    /// Exported mutable globals a snapshot saves, by name (asyncify's own excluded).
    globals: Vec<(String, Global)>,
    /// Whether the buffer's memory is 64-bit (`{pos, end}` and `ptr` are i64).
    memory64: bool,
}

/// The two placements of the buffer (see the module documentation).
#[derive(Clone, Copy)]
enum BufferPlace {
    /// The module's own `asyncify_memory`.
    Secondary(Memory),
    /// The free stack of memory 0, above this global's value.
    FreeStack { low: Global },
}

/// Names of the exports every instrumented module has.
const CONTROL_EXPORTS: [&str; 5] = [
    "asyncify_get_state",
    "asyncify_start_unwind",
    "asyncify_stop_unwind",
    "asyncify_start_rewind",
    "asyncify_stop_rewind",
];

/// Whether `module` imports the WASIX stack calls (and so needs the shim).
pub fn needs_shim(module: &Module) -> bool {
    module.imports().any(|i| {
        matches!(i.module(), "wasix_32v1" | "wasix_64v1")
            && matches!(
                i.name(),
                "stack_checkpoint" | "stack_restore" | "stack_rewind"
            )
    })
}

/// Refuses, before anything runs, a module that calls the WASIX stack
/// functions but lacks what the shim needs, saying what to do.
pub fn check_module(module: &Module) -> Result<(), ShimError> {
    if !needs_shim(module) {
        return Ok(());
    }
    let has = |name: &str| module.get_export(name).is_some();
    if let Some(missing) = CONTROL_EXPORTS.iter().find(|n| !has(n)) {
        return Err(ShimError::NotInstrumented {
            missing: missing.to_string(),
        });
    }
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(ShimError::MissingExport {
            name: "memory".into(),
            hint: "the shim reads the jmp_buf and the stack through the exported memory".into(),
        });
    }
    match module.get_export("__stack_pointer") {
        Some(ExternType::Global(g)) if g.mutability() == Mutability::Var => {}
        _ => {
            return Err(ShimError::MissingExport {
                name: "__stack_pointer".into(),
                hint: "instrument with `wasm-rewind instrument` (it exports it when the name \
                       section has it) or link with -Wl,--export=__stack_pointer"
                    .into(),
            })
        }
    }
    if !has("asyncify_memory") && !has("__stack_low") && !has("__data_end") {
        return Err(ShimError::MissingExport {
            name: "__stack_low".into(),
            hint: "the unwind buffer needs a free region: instrument with `wasm-rewind \
                   instrument` (it gives the module an `asyncify_memory`) or link with \
                   -Wl,--export=__stack_low so the free part of the C stack is known"
                .into(),
        });
    }
    Ok(())
}

/// Adds `wasix_32v1` and `wasix_64v1` `stack_checkpoint`, `stack_restore` and
/// `stack_rewind` (another name of `stack_restore`) to `linker`. `get` finds
/// the [`ShimState`] in the store's data.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut ShimState,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        "wasix_32v1",
        "stack_checkpoint",
        move |mut caller: Caller<'_, T>, env: i32, ret: i32| -> wasmtime::Result<i32> {
            checkpoint(&mut caller, get, env as u32 as u64, ret as u32 as u64)
        },
    )?;
    linker.func_wrap(
        "wasix_64v1",
        "stack_checkpoint",
        move |mut caller: Caller<'_, T>, env: i64, ret: i64| -> wasmtime::Result<i32> {
            checkpoint(&mut caller, get, env as u64, ret as u64)
        },
    )?;
    for name in ["stack_restore", "stack_rewind"] {
        linker.func_wrap(
            "wasix_32v1",
            name,
            move |mut caller: Caller<'_, T>, env: i32, val: i64| -> wasmtime::Result<()> {
                restore(&mut caller, get, env as u32 as u64, val as u64)
            },
        )?;
        linker.func_wrap(
            "wasix_64v1",
            name,
            move |mut caller: Caller<'_, T>, env: i64, val: i64| -> wasmtime::Result<()> {
                restore(&mut caller, get, env as u64, val as u64)
            },
        )?;
    }
    Ok(())
}

/// Calls the export `name` of `instance`, running the unwind/rewind loop:
/// whenever the call returns because a checkpoint or restore unwound the
/// stack, the request is completed and the same export is called again with
/// the same arguments, until it returns normally (or traps).
pub fn call<T: 'static>(
    store: &mut Store<T>,
    instance: &Instance,
    get: fn(&mut T) -> &mut ShimState,
    name: &str,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let func = instance
        .get_func(&mut *store, name)
        .ok_or_else(|| wasmtime::format_err!("the module has no exported function `{name}`"))?;
    let Some(exports) = Exports::resolve(store, instance) else {
        // Not instrumented (or no WASIX stack calls to serve): a plain call.
        return func.call(&mut *store, params, results);
    };
    if get(store.data_mut()).stack_top.is_none() {
        let top = global_u64(&mut *store, &exports.stack_pointer);
        get(store.data_mut()).stack_top = Some(top);
    }
    get(store.data_mut()).exports = Some(exports.clone());
    loop {
        func.call(&mut *store, params, results)?;
        if call_i32(&mut *store, &exports.get_state, &[])? != 1 {
            return Ok(());
        }
        exports.stop_unwind.call(&mut *store, &[], &mut [])?;
        let pending = std::mem::replace(&mut get(store.data_mut()).pending, Pending::None);
        let buffer = match pending {
            Pending::Checkpoint { env, buffer } => {
                take_checkpoint(store, get, &exports, env, buffer)?;
                buffer
            }
            Pending::Restore { hash, val, buffer } => {
                prepare_restore(store, get, &exports, &hash, val, buffer)?;
                buffer
            }
            Pending::None => {
                return Err(ShimError::Guest {
                    message: format!(
                        "`{name}` unwound, but no stack_checkpoint or stack_restore asked for \
                         it: another import started an unwind the shim cannot complete"
                    ),
                }
                .into())
            }
        };
        start(&mut *store, &exports, &exports.start_rewind, buffer.data)?;
    }
}

impl Exports {
    fn resolve<T>(store: &mut Store<T>, instance: &Instance) -> Option<Exports> {
        let mut func = |n: &str| instance.get_func(&mut *store, n);
        let (get_state, start_unwind, stop_unwind, start_rewind, stop_rewind) = (
            func(CONTROL_EXPORTS[0])?,
            func(CONTROL_EXPORTS[1])?,
            func(CONTROL_EXPORTS[2])?,
            func(CONTROL_EXPORTS[3])?,
            func(CONTROL_EXPORTS[4])?,
        );
        let memory = instance.get_memory(&mut *store, "memory")?;
        let stack_pointer = instance.get_global(&mut *store, "__stack_pointer")?;
        let (buffer, memory64) = match instance.get_memory(&mut *store, "asyncify_memory") {
            Some(m) => (BufferPlace::Secondary(m), m.ty(&*store).is_64()),
            None => {
                let low = instance
                    .get_global(&mut *store, "__stack_low")
                    .or_else(|| instance.get_global(&mut *store, "__data_end"))?;
                (BufferPlace::FreeStack { low }, memory.ty(&*store).is_64())
            }
        };
        let names: Vec<String> = instance
            .exports(&mut *store)
            .filter_map(|e| {
                let name = e.name().to_string();
                e.into_global().map(|_| name)
            })
            .collect();
        let globals = names
            .into_iter()
            .filter(|n| !n.starts_with("__asyncify_"))
            .filter_map(|n| {
                let g = instance.get_global(&mut *store, &n)?;
                (g.ty(&*store).mutability() == Mutability::Var).then_some((n, g))
            })
            .collect();
        Some(Exports {
            get_state,
            start_unwind,
            stop_unwind,
            start_rewind,
            stop_rewind,
            memory,
            stack_pointer,
            buffer,
            globals,
            memory64,
        })
    }
}

fn global_u64(store: impl AsContextMut, g: &Global) -> u64 {
    match g.get(store) {
        Val::I32(v) => v as u32 as u64,
        Val::I64(v) => v as u64,
        _ => 0,
    }
}

fn call_i32(mut store: impl AsContextMut, f: &Func, params: &[Val]) -> wasmtime::Result<i32> {
    let mut out = [Val::I32(0)];
    f.call(&mut store, params, &mut out)?;
    Ok(out[0].unwrap_i32())
}

fn addr_val(memory64: bool, v: u64) -> Val {
    if memory64 {
        Val::I64(v as i64)
    } else {
        Val::I32(v as u32 as i32)
    }
}

/// Calls `asyncify_start_unwind` or `asyncify_start_rewind` with `data`.
fn start(mut store: impl AsContextMut, ex: &Exports, f: &Func, data: u64) -> wasmtime::Result<()> {
    f.call(&mut store, &[addr_val(ex.memory64, data)], &mut [])
}

fn read(store: impl AsContext, memory: &Memory, addr: u64, len: u64) -> Result<Vec<u8>, ShimError> {
    let data = memory.data(&store);
    let range = usize::try_from(addr)
        .ok()
        .zip(usize::try_from(addr.saturating_add(len)).ok())
        .filter(|(a, b)| a <= b && *b <= data.len());
    match range {
        Some((a, b)) => Ok(data[a..b].to_vec()),
        None => Err(ShimError::Guest {
            message: format!("address range {addr:#x}+{len} is outside linear memory"),
        }),
    }
}

fn write(
    mut store: impl AsContextMut,
    memory: &Memory,
    addr: u64,
    bytes: &[u8],
) -> Result<(), ShimError> {
    let len = bytes.len() as u64;
    let data = memory.data_mut(&mut store);
    let range = usize::try_from(addr)
        .ok()
        .zip(usize::try_from(addr.saturating_add(len)).ok())
        .filter(|(a, b)| a <= b && *b <= data.len());
    match range {
        Some((a, b)) => {
            data[a..b].copy_from_slice(bytes);
            Ok(())
        }
        None => Err(ShimError::Guest {
            message: format!("address range {addr:#x}+{len} is outside linear memory"),
        }),
    }
}

/// Writes `{ pos, end }` at `buffer.data`.
fn write_data(
    store: impl AsContextMut,
    ex: &Exports,
    buffer: &Buffer,
    pos: u64,
) -> Result<(), ShimError> {
    let mut bytes = Vec::with_capacity(16);
    if ex.memory64 {
        bytes.extend(pos.to_le_bytes());
        bytes.extend(buffer.end.to_le_bytes());
    } else {
        bytes.extend((pos as u32).to_le_bytes());
        bytes.extend((buffer.end as u32).to_le_bytes());
    }
    write(store, &buffer.memory, buffer.data, &bytes)
}

fn read_pos(store: impl AsContext, ex: &Exports, buffer: &Buffer) -> Result<u64, ShimError> {
    let width = if ex.memory64 { 8 } else { 4 };
    let b = read(store, &buffer.memory, buffer.data, width)?;
    Ok(if ex.memory64 {
        u64::from_le_bytes(b.try_into().unwrap())
    } else {
        u32::from_le_bytes(b.try_into().unwrap()) as u64
    })
}

/// Places the buffer: all of the secondary memory, or the free stack between
/// `__stack_low` and the current stack pointer; at most `max` bytes either way.
fn place_buffer(mut store: impl AsContextMut, ex: &Exports, max: u64) -> Result<Buffer, ShimError> {
    let (memory, low, high) = match ex.buffer {
        BufferPlace::Secondary(m) => (m, 0, m.data_size(&store) as u64),
        BufferPlace::FreeStack { low } => (
            ex.memory,
            global_u64(&mut store, &low),
            global_u64(&mut store, &ex.stack_pointer),
        ),
    };
    let data = low.next_multiple_of(16);
    let start = data + 16;
    let end = (high & !15).min(start.saturating_add(max));
    if end <= start {
        return Err(ShimError::BufferTooSmall {
            needed: 16,
            available: high.saturating_sub(data),
        });
    }
    Ok(Buffer {
        memory,
        data,
        start,
        end,
    })
}

fn exports_of<T>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> &mut ShimState,
) -> Result<Exports, ShimError> {
    get(caller.data_mut())
        .exports
        .clone()
        .ok_or_else(|| ShimError::Guest {
            message: "a WASIX stack call ran outside the shim's driver: call the module's exports \
                  through wasm_rewind_shim::call so unwinds can be completed"
                .into(),
        })
}

fn checkpoint<T>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> &mut ShimState,
    env: u64,
    ret: u64,
) -> wasmtime::Result<i32> {
    let ex = exports_of(caller, get)?;
    match call_i32(&mut *caller, &ex.get_state, &[])? {
        // Rewinding into this call: it returns what the driver decided.
        2 => {
            ex.stop_rewind.call(&mut *caller, &[], &mut [])?;
            let val = get(caller.data_mut()).resume_value.take().unwrap_or(0);
            write(&mut *caller, &ex.memory, ret, &val.to_le_bytes())?;
            Ok(crate::abi::Errno::Success as i32)
        }
        0 => {
            if !matches!(get(caller.data_mut()).pending, Pending::None) {
                return Err(ShimError::Guest {
                    message: "stack_checkpoint called while another request is pending".into(),
                }
                .into());
            }
            let max = get(caller.data_mut()).max_buffer;
            let buffer = place_buffer(&mut *caller, &ex, max)?;
            write_data(&mut *caller, &ex, &buffer, buffer.start)?;
            get(caller.data_mut()).pending = Pending::Checkpoint { env, buffer };
            start(&mut *caller, &ex, &ex.start_unwind, buffer.data)?;
            Ok(crate::abi::Errno::Success as i32)
        }
        s => Err(ShimError::Guest {
            message: format!("stack_checkpoint called in asyncify state {s}"),
        }
        .into()),
    }
}

fn restore<T>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> &mut ShimState,
    env: u64,
    val: u64,
) -> wasmtime::Result<()> {
    let ex = exports_of(caller, get)?;
    let state = call_i32(&mut *caller, &ex.get_state, &[])?;
    if state != 0 {
        return Err(ShimError::Guest {
            message: format!("stack_restore called in asyncify state {state}"),
        }
        .into());
    }
    let bytes: [u8; JMP_BUF_SIZE as usize] = read(&*caller, &ex.memory, env, JMP_BUF_SIZE as u64)?
        .try_into()
        .unwrap();
    let hash = JmpBuf::from_bytes(&bytes).hash;
    let sp = global_u64(&mut *caller, &ex.stack_pointer);
    let snapshot_sp = get(caller.data_mut()).snapshots.get(&hash)?.stack_pointer;
    if snapshot_sp < sp {
        return Err(ShimError::StaleSnapshot {
            snapshot_sp,
            current_sp: sp,
        }
        .into());
    }
    let max = get(caller.data_mut()).max_buffer;
    let buffer = place_buffer(&mut *caller, &ex, max)?;
    write_data(&mut *caller, &ex, &buffer, buffer.start)?;
    get(caller.data_mut()).pending = Pending::Restore { hash, val, buffer };
    start(&mut *caller, &ex, &ex.start_unwind, buffer.data)?;
    Ok(())
}

/// The stack has unwound for a checkpoint: snapshot it and rewind.
fn take_checkpoint<T>(
    store: &mut Store<T>,
    get: fn(&mut T) -> &mut ShimState,
    ex: &Exports,
    env: u64,
    buffer: Buffer,
) -> wasmtime::Result<()> {
    let pos = read_pos(&*store, ex, &buffer)?;
    let asyncify = read(
        &*store,
        &buffer.memory,
        buffer.start,
        pos.saturating_sub(buffer.start),
    )?;
    let sp = global_u64(&mut *store, &ex.stack_pointer);
    let top = get(store.data_mut()).stack_top.unwrap_or(sp).max(sp);
    let stack = read(&*store, &ex.memory, sp, top - sp)?;
    let globals = ex
        .globals
        .iter()
        .filter_map(|(n, g)| global_value(g.get(&mut *store)).map(|v| (n.clone(), v)))
        .collect();
    let snapshot = Snapshot {
        asyncify,
        stack,
        stack_pointer: sp,
        globals,
    };
    let hash = get(store.data_mut()).snapshots.insert(snapshot)?;
    write(
        &mut *store,
        &ex.memory,
        env + JMP_BUF_HASH_OFFSET as u64,
        &hash,
    )?;
    get(store.data_mut()).resume_value = Some(0);
    Ok(())
}

/// The stack has unwound for a restore: load the snapshot's frames and globals.
fn prepare_restore<T>(
    store: &mut Store<T>,
    get: fn(&mut T) -> &mut ShimState,
    ex: &Exports,
    hash: &SnapshotHash,
    val: u64,
    buffer: Buffer,
) -> wasmtime::Result<()> {
    let snapshot = get(store.data_mut()).snapshots.get(hash)?.clone();
    let len = snapshot.asyncify.len() as u64;
    if len > buffer.end - buffer.start {
        return Err(ShimError::BufferTooSmall {
            needed: len,
            available: buffer.end - buffer.start,
        }
        .into());
    }
    write(
        &mut *store,
        &buffer.memory,
        buffer.start,
        &snapshot.asyncify,
    )?;
    write_data(&mut *store, ex, &buffer, buffer.start + len)?;
    for (name, value) in &snapshot.globals {
        if let Some((_, g)) = ex.globals.iter().find(|(n, _)| n == name) {
            g.set(&mut *store, global_val(*value))?;
        }
    }
    get(store.data_mut()).resume_value = Some(val);
    Ok(())
}

fn global_value(v: Val) -> Option<GlobalValue> {
    match v {
        Val::I32(x) => Some(GlobalValue::I32(x)),
        Val::I64(x) => Some(GlobalValue::I64(x)),
        Val::F32(x) => Some(GlobalValue::F32(x)),
        Val::F64(x) => Some(GlobalValue::F64(x)),
        _ => None,
    }
}

fn global_val(v: GlobalValue) -> Val {
    match v {
        GlobalValue::I32(x) => Val::I32(x),
        GlobalValue::I64(x) => Val::I64(x),
        GlobalValue::F32(x) => Val::F32(x),
        GlobalValue::F64(x) => Val::F64(x),
    }
}
