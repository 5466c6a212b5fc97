//! The wasmtime binding: the WASIX stack imports and the driver loop.
//!
//! It implements the engine-neutral [`crate::driver::Guest`] for an
//! instance; the state machine itself is in [`crate::driver`].
//!
//! Where the buffer lives is the driver's choice (see [`crate::driver`]): a
//! borrowed window at the top of memory 0, or the module's `asyncify_memory`.
//! This binding also installs the host side of the grow hook: a function in
//! the module's `__wasm_rewind_grow_hook` table that [`driver::grow`]s the
//! buffer when a frame does not fit.

use crate::contexts::Root;
use crate::driver::{self, Guest, Mem, Next, ShimState};
use crate::error::ShimError;
use crate::snapshot::GlobalValue;
use std::sync::Arc;
use wasm_rewind_transform::abi;
use wasm_rewind_transform::inspect::{unmet_shim_requirement, ExportShape, ShimRequirement};
use wasmtime::{
    AsContextMut, Caller, ExternType, Func, Global, Instance, Linker, Memory, Module, Mutability,
    Ref, Store, Table, TypedFunc, Val,
};

/// The exports the shim drives, resolved once per instance.
struct Exports {
    get_state: TypedFunc<(), i32>,
    /// `asyncify_start_unwind` / `start_rewind`, with an i32 or i64 pointer.
    start_unwind: AddrFunc,
    stop_unwind: TypedFunc<(), ()>,
    start_rewind: AddrFunc,
    stop_rewind: TypedFunc<(), ()>,
    /// The program's memory (jmp_bufs, the C stack).
    memory: Memory,
    stack_pointer: Global,
    /// The module's own `asyncify_memory`, when it has one: the buffer's.
    buffer_memory: Option<Memory>,
    /// The grow hook's table, when the module has one.
    grow_hook: Option<Table>,
    /// The function table contexts start from (`__indirect_function_table`,
    /// which Wasmer requires too), when exported.
    function_table: Option<Table>,
    /// Exported mutable globals a snapshot saves (asyncify's own excluded),
    /// and their names in the same order.
    globals: Vec<Global>,
    global_names: Arc<[String]>,
    /// Whether the buffer's memory is 64-bit (`{pos, end}` and `ptr` are i64).
    memory64: bool,
}

/// A control export taking the buffer's address.
#[derive(Clone)]
enum AddrFunc {
    I32(TypedFunc<i32, ()>),
    I64(TypedFunc<i64, ()>),
}

/// Whether `module` imports the WASIX stack or context calls (and so needs
/// the shim).
pub fn needs_shim(module: &Module) -> bool {
    module.imports().any(|i| {
        abi::is_wasix_stack_import(i.module(), i.name())
            || abi::is_wasix_context_import(i.module(), i.name())
    })
}

/// Refuses, before anything runs, a module that calls the WASIX stack
/// functions but lacks what the shim needs, saying what to do.
pub fn check_module(module: &Module) -> Result<(), ShimError> {
    if !needs_shim(module) {
        return Ok(());
    }
    let shape = |name: &str| {
        Some(match module.get_export(name)? {
            ExternType::Func(_) => ExportShape::Func,
            ExternType::Memory(_) => ExportShape::Memory,
            ExternType::Global(g) => ExportShape::Global {
                mutable: g.mutability() == Mutability::Var,
            },
            _ => ExportShape::Other,
        })
    };
    match unmet_shim_requirement(shape) {
        None => {}
        Some(ShimRequirement::Instrumented { missing }) => {
            // Context calls without any stack call: most likely lowered with
            // `--sjlj exceptions`, which unwinds nothing; "instrument it" alone
            // would send the user round in a circle.
            let stack_calls = module
                .imports()
                .any(|i| abi::is_wasix_stack_import(i.module(), i.name()));
            if !stack_calls {
                return Err(ShimError::MissingExport {
                    name: missing.to_string(),
                    hint: "the module calls the WASIX context functions, and switching \
                           contexts unwinds the stack: instrument it with `wasm-rewind \
                           instrument` and the default lowering (a module lowered with \
                           --sjlj exceptions unwinds nothing; only a host that switches \
                           stacks itself, such as Wasmer, can run its contexts)"
                        .into(),
                });
            }
            return Err(ShimError::NotInstrumented {
                missing: missing.to_string(),
            });
        }
        Some(unmet) => {
            return Err(ShimError::MissingExport {
                name: unmet.export().into(),
                hint: unmet.hint().into(),
            })
        }
    }
    Ok(())
}

impl Exports {
    fn resolve<T>(store: &mut Store<T>, instance: &Instance) -> Option<Exports> {
        let memory = instance.get_memory(&mut *store, "memory")?;
        let buffer_memory = instance.get_memory(&mut *store, abi::SECONDARY_MEMORY_EXPORT);
        let memory64 = buffer_memory.unwrap_or(memory).ty(&*store).is_64();
        let mut typed0 = |n: &str| instance.get_typed_func::<(), ()>(&mut *store, n).ok();
        let (stop_unwind, stop_rewind) = (typed0(abi::STOP_UNWIND)?, typed0(abi::STOP_REWIND)?);
        let get_state = instance
            .get_typed_func::<(), i32>(&mut *store, abi::GET_STATE)
            .ok()?;
        let mut addr = |n: &str| {
            if memory64 {
                instance
                    .get_typed_func::<i64, ()>(&mut *store, n)
                    .ok()
                    .map(AddrFunc::I64)
            } else {
                instance
                    .get_typed_func::<i32, ()>(&mut *store, n)
                    .ok()
                    .map(AddrFunc::I32)
            }
        };
        let (start_unwind, start_rewind) = (addr(abi::START_UNWIND)?, addr(abi::START_REWIND)?);
        let stack_pointer = instance.get_global(&mut *store, "__stack_pointer")?;
        let grow_hook = instance.get_table(&mut *store, GROW_HOOK);
        let function_table = instance.get_table(&mut *store, FUNCTION_TABLE);
        let names: Vec<String> = instance
            .exports(&mut *store)
            .filter_map(|e| {
                let name = e.name().to_string();
                e.into_global().map(|_| name)
            })
            .collect();
        let (global_names, globals): (Vec<String>, Vec<Global>) = names
            .into_iter()
            .filter(|n| !n.starts_with("__asyncify_"))
            .filter_map(|n| {
                let g = instance.get_global(&mut *store, &n)?;
                let numeric = global_value(g.get(&mut *store)).is_some();
                (g.ty(&*store).mutability() == Mutability::Var && numeric).then_some((n, g))
            })
            .unzip();
        Some(Exports {
            get_state,
            start_unwind,
            stop_unwind,
            start_rewind,
            stop_rewind,
            memory,
            stack_pointer,
            buffer_memory,
            grow_hook,
            function_table,
            globals,
            global_names: global_names.into(),
            memory64,
        })
    }
}

/// Export name of the transform's grow hook table.
const GROW_HOOK: &str = "__wasm_rewind_grow_hook";
/// Export name of the function table (wasm-ld's, with `--export-table`),
/// where context entrypoints are looked up, as Wasmer does.
const FUNCTION_TABLE: &str = "__indirect_function_table";

/// Puts the host's grow function in the module's grow hook, once per
/// instance (the slot is null until then).
fn install_grow_hook<T: 'static>(
    store: &mut Store<T>,
    exports: &Exports,
    get: fn(&mut T) -> &mut ShimState,
) -> wasmtime::Result<()> {
    let Some(table) = exports.grow_hook else {
        return Ok(());
    };
    if table.get(&mut *store, 0).is_some_and(|r| !r.is_null()) {
        return Ok(());
    }
    let func = if exports.memory64 {
        Func::wrap(
            &mut *store,
            move |caller: Caller<'_, T>, needed: i64| -> wasmtime::Result<()> {
                let mut g = WasmtimeGuest::from_caller(caller, get)?;
                driver::grow(&mut g, needed as u64)
            },
        )
    } else {
        Func::wrap(
            &mut *store,
            move |caller: Caller<'_, T>, needed: i32| -> wasmtime::Result<()> {
                let mut g = WasmtimeGuest::from_caller(caller, get)?;
                driver::grow(&mut g, needed as u32 as u64)
            },
        )
    };
    table.set(&mut *store, 0, Ref::Func(Some(func)))
}

/// Adds `wasix_32v1` and `wasix_64v1` `stack_checkpoint`, `stack_restore` and
/// `stack_rewind` (another name of `stack_restore`), and the context calls
/// `context_create`, `context_switch` and `context_destroy`, to `linker`.
/// `get` finds the [`ShimState`] in the store's data.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut ShimState,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        "wasix_32v1",
        "stack_checkpoint",
        move |caller: Caller<'_, T>, env: i32, ret: i32| -> wasmtime::Result<i32> {
            let mut g = WasmtimeGuest::from_caller(caller, get)?;
            Ok(driver::checkpoint(&mut g, env as u32 as u64, ret as u32 as u64)? as i32)
        },
    )?;
    linker.func_wrap(
        "wasix_64v1",
        "stack_checkpoint",
        move |caller: Caller<'_, T>, env: i64, ret: i64| -> wasmtime::Result<i32> {
            let mut g = WasmtimeGuest::from_caller(caller, get)?;
            Ok(driver::checkpoint(&mut g, env as u64, ret as u64)? as i32)
        },
    )?;
    for name in ["stack_restore", "stack_rewind"] {
        linker.func_wrap(
            "wasix_32v1",
            name,
            move |caller: Caller<'_, T>, env: i32, val: i64| -> wasmtime::Result<()> {
                let mut g = WasmtimeGuest::from_caller(caller, get)?;
                driver::restore(&mut g, env as u32 as u64, val as u64)
            },
        )?;
        linker.func_wrap(
            "wasix_64v1",
            name,
            move |caller: Caller<'_, T>, env: i64, val: i64| -> wasmtime::Result<()> {
                let mut g = WasmtimeGuest::from_caller(caller, get)?;
                driver::restore(&mut g, env as u64, val as u64)
            },
        )?;
    }
    add_context_calls(linker, get)
}

/// The WASIX context calls, for both module names (only `context_create`'s
/// pointer differs in width).
fn add_context_calls<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut ShimState,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        "wasix_32v1",
        "context_create",
        move |caller: Caller<'_, T>, ptr: i32, entry: i32| -> wasmtime::Result<i32> {
            let mut g = WasmtimeGuest::from_caller(caller, get)?;
            Ok(driver::context_create(&mut g, ptr as u32 as u64, entry as u32)? as i32)
        },
    )?;
    linker.func_wrap(
        "wasix_64v1",
        "context_create",
        move |caller: Caller<'_, T>, ptr: i64, entry: i32| -> wasmtime::Result<i32> {
            let mut g = WasmtimeGuest::from_caller(caller, get)?;
            Ok(driver::context_create(&mut g, ptr as u64, entry as u32)? as i32)
        },
    )?;
    for module in ["wasix_32v1", "wasix_64v1"] {
        linker.func_wrap(
            module,
            "context_switch",
            move |caller: Caller<'_, T>, target: i64| -> wasmtime::Result<i32> {
                let mut g = WasmtimeGuest::from_caller(caller, get)?;
                Ok(driver::context_switch(&mut g, target as u64)? as i32)
            },
        )?;
        linker.func_wrap(
            module,
            "context_destroy",
            move |caller: Caller<'_, T>, id: i64| -> wasmtime::Result<i32> {
                let mut g = WasmtimeGuest::from_caller(caller, get)?;
                Ok(driver::context_destroy(&mut g, id as u64)? as i32)
            },
        )?;
    }
    Ok(())
}

/// Calls the export `name` of `instance`, running the unwind/rewind loop:
/// whenever the call returns because a checkpoint, restore or context switch
/// unwound the stack, the request is completed and the root of the context
/// that runs next is called (the same export again with the same arguments,
/// or a context's entrypoint), until the export returns normally (or traps).
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
    let exports = Arc::new(exports);
    get(store.data_mut()).binding = Some(Box::new(exports.clone()));
    install_grow_hook(store, &exports, get)?;
    driver::begin(&mut WasmtimeGuest {
        cx: &mut *store,
        ex: exports.clone(),
        get,
    });
    // An export without parameters or results (`_start`, most reactors'
    // entry points) is called through its typed form, which skips the
    // dynamic type checks on each of the re-entries a jump makes.
    let typed = (params.is_empty() && results.is_empty())
        .then(|| func.typed::<(), ()>(&*store).ok())
        .flatten();
    let mut entries = Entrypoints::default();
    let mut root = Root::Export;
    loop {
        let called = match (root, &typed) {
            (Root::Export, Some(f)) => f.call(&mut *store, ()),
            (Root::Export, None) => func.call(&mut *store, params, results),
            (Root::Entry(index), _) => entries
                .get(store, &exports, index)
                .and_then(|f| f.call(&mut *store, ())),
        };
        if let Err(e) = called {
            return Err(trapped(e, get(store.data_mut())));
        }
        let mut g = WasmtimeGuest {
            cx: &mut *store,
            ex: exports.clone(),
            get,
        };
        match driver::after_return(&mut g, name)? {
            Next::Finished => return Ok(()),
            Next::Call(next) => root = next,
        }
    }
}

/// Context entrypoints as typed functions, looked up once per index (a
/// program that switches a million times calls a few entrypoints again and
/// again to rewind them).
#[derive(Default)]
struct Entrypoints(std::collections::HashMap<u32, TypedFunc<(), ()>, crate::hash::BuildIntHash>);

impl Entrypoints {
    fn get<T>(
        &mut self,
        store: &mut Store<T>,
        exports: &Exports,
        index: u32,
    ) -> wasmtime::Result<TypedFunc<(), ()>> {
        if let Some(f) = self.0.get(&index) {
            return Ok(f.clone());
        }
        // `context_create` checked the entry; if the table changed since,
        // this is an error like any bad indirect call. Once looked up, an
        // index keeps its function for the rest of the export's call, so a
        // context goes on running what it started with even if its slot is
        // rewritten (Wasmer resolves the entry once too, at create).
        let func = exports
            .function_table
            .and_then(|t| t.get(&mut *store, u64::from(index)))
            .and_then(|r| r.as_func().flatten().copied())
            .ok_or_else(|| {
                wasmtime::format_err!("context entrypoint {index} is no longer in the table")
            })?;
        let typed = func.typed::<(), ()>(&*store)?;
        self.0.insert(index, typed.clone());
        Ok(typed)
    }
}

/// The error of an export that trapped. A trap in the transform's overflow
/// function while the shim was unwinding means the frames did not fit the
/// buffer: that becomes [`ShimError::BufferTooSmall`] (with `needed` only known
/// to exceed `available`: the frame that did not fit is not visible to the
/// host), so hosts can match on it instead of reading a backtrace.
fn trapped(e: wasmtime::Error, shim: &mut ShimState) -> wasmtime::Error {
    let Some(available) = driver::after_trap(shim) else {
        return e;
    };
    let overflowed = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|bt| bt.frames().first())
        .and_then(|f| f.func_name())
        .is_some_and(|n| n == "__wasm_rewind_buffer_overflow");
    if overflowed {
        e.context(ShimError::BufferTooSmall {
            needed: available + 1,
            available,
        })
    } else {
        e
    }
}

/// A store or a caller: a context that also hands out the host data.
trait HostData: AsContextMut {
    fn host_data(&mut self) -> &mut Self::Data;
}

impl<T> HostData for Caller<'_, T> {
    fn host_data(&mut self) -> &mut T {
        self.data_mut()
    }
}

impl<T> HostData for &mut Store<T> {
    fn host_data(&mut self) -> &mut T {
        self.data_mut()
    }
}

/// An instance seen through a store or a caller, for the driver.
struct WasmtimeGuest<C: HostData> {
    cx: C,
    ex: Arc<Exports>,
    get: fn(&mut C::Data) -> &mut ShimState,
}

impl<'a, T> WasmtimeGuest<Caller<'a, T>> {
    /// The guest calling an import; its exports were resolved by [`call`].
    fn from_caller(
        mut caller: Caller<'a, T>,
        get: fn(&mut T) -> &mut ShimState,
    ) -> Result<Self, ShimError> {
        let ex = get(caller.data_mut())
            .binding
            .as_ref()
            .and_then(|b| b.downcast_ref::<Arc<Exports>>())
            .cloned()
            .ok_or_else(|| ShimError::Guest {
                message: "a WASIX stack call ran outside the shim's driver: call the module's \
                          exports through wasm_rewind_shim::call so unwinds can be completed"
                    .into(),
            })?;
        Ok(WasmtimeGuest {
            cx: caller,
            ex,
            get,
        })
    }
}

impl<C: HostData> WasmtimeGuest<C> {
    fn memory(&self, mem: Mem) -> Memory {
        match (mem, self.ex.buffer_memory) {
            (Mem::Buffer, Some(m)) => m,
            _ => self.ex.memory,
        }
    }

    fn call_addr(&mut self, f: &AddrFunc, data: u64) -> wasmtime::Result<()> {
        match f {
            AddrFunc::I32(f) => f.call(&mut self.cx, data as u32 as i32),
            AddrFunc::I64(f) => f.call(&mut self.cx, data as i64),
        }
    }
}

impl<C: HostData> Guest for WasmtimeGuest<C> {
    type Error = wasmtime::Error;

    fn shim(&mut self) -> &mut ShimState {
        (self.get)(self.cx.host_data())
    }

    fn state(&mut self) -> wasmtime::Result<i32> {
        self.ex.get_state.call(&mut self.cx, ())
    }

    fn start_unwind(&mut self, data: u64) -> wasmtime::Result<()> {
        let ex = self.ex.clone();
        self.call_addr(&ex.start_unwind, data)
    }

    fn stop_unwind(&mut self) -> wasmtime::Result<()> {
        self.ex.stop_unwind.call(&mut self.cx, ())
    }

    fn start_rewind(&mut self, data: u64) -> wasmtime::Result<()> {
        let ex = self.ex.clone();
        self.call_addr(&ex.start_rewind, data)
    }

    fn stop_rewind(&mut self) -> wasmtime::Result<()> {
        self.ex.stop_rewind.call(&mut self.cx, ())
    }

    fn read_into(
        &mut self,
        mem: Mem,
        addr: u64,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), ShimError> {
        let data = self.memory(mem).data(&self.cx);
        match byte_range(addr, len, data.len()) {
            Some((a, b)) => {
                out.extend_from_slice(&data[a..b]);
                Ok(())
            }
            None => Err(out_of_bounds(addr, len)),
        }
    }

    fn read_exact(&mut self, mem: Mem, addr: u64, out: &mut [u8]) -> Result<(), ShimError> {
        let data = self.memory(mem).data(&self.cx);
        match byte_range(addr, out.len() as u64, data.len()) {
            Some((a, b)) => {
                out.copy_from_slice(&data[a..b]);
                Ok(())
            }
            None => Err(out_of_bounds(addr, out.len() as u64)),
        }
    }

    fn write(&mut self, mem: Mem, addr: u64, bytes: &[u8]) -> Result<(), ShimError> {
        let memory = self.memory(mem);
        let data = memory.data_mut(&mut self.cx);
        match byte_range(addr, bytes.len() as u64, data.len()) {
            Some((a, b)) => {
                data[a..b].copy_from_slice(bytes);
                Ok(())
            }
            None => Err(out_of_bounds(addr, bytes.len() as u64)),
        }
    }

    fn stack_pointer(&mut self) -> u64 {
        global_u64(&mut self.cx, &self.ex.stack_pointer)
    }

    fn buffer_memory_is_dedicated(&self) -> bool {
        self.ex.buffer_memory.is_some()
    }

    fn has_grow_hook(&self) -> bool {
        self.ex.grow_hook.is_some()
    }

    fn buffer_memory_size(&mut self) -> u64 {
        self.memory(Mem::Buffer).data_size(&self.cx) as u64
    }

    fn grow_buffer_memory(&mut self, pages: u64) -> Result<(), ShimError> {
        let memory = self.memory(Mem::Buffer);
        memory
            .grow(&mut self.cx, pages)
            .map(|_| ())
            .map_err(|e| ShimError::Guest {
                message: format!(
                    "cannot grow the memory holding the unwind buffer by {pages} pages: {e}"
                ),
            })
    }

    fn buffer_is_64(&self) -> bool {
        self.ex.memory64
    }

    fn global_names(&self) -> Arc<[String]> {
        self.ex.global_names.clone()
    }

    fn globals(&mut self, out: &mut Vec<GlobalValue>) {
        for g in &self.ex.globals {
            // Resolve kept only numeric globals, so this always has a value.
            out.extend(global_value(g.get(&mut self.cx)));
        }
    }

    fn entry_is_callable(&mut self, index: u32) -> bool {
        let Some(table) = self.ex.function_table else {
            return false;
        };
        match table.get(&mut self.cx, u64::from(index)) {
            Some(Ref::Func(Some(f))) => {
                let ty = f.ty(&self.cx);
                ty.params().len() == 0 && ty.results().len() == 0
            }
            _ => false,
        }
    }

    fn set_globals(&mut self, values: &[GlobalValue]) -> wasmtime::Result<()> {
        let ex = self.ex.clone();
        for (g, v) in ex.globals.iter().zip(values) {
            g.set(&mut self.cx, global_val(*v))?;
        }
        Ok(())
    }
}

/// `addr..addr + len` as indices into a memory of `size` bytes, if inside it.
fn byte_range(addr: u64, len: u64, size: usize) -> Option<(usize, usize)> {
    let a = usize::try_from(addr).ok()?;
    let b = usize::try_from(addr.checked_add(len)?).ok()?;
    (b <= size).then_some((a, b))
}

fn out_of_bounds(addr: u64, len: u64) -> ShimError {
    ShimError::Guest {
        message: format!("address range {addr:#x}+{len} is outside linear memory"),
    }
}

fn global_u64(store: impl AsContextMut, g: &Global) -> u64 {
    match g.get(store) {
        Val::I32(v) => v as u32 as u64,
        Val::I64(v) => v as u64,
        _ => 0,
    }
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
