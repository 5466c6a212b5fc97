//! `--embed-runtime`: the WASIX stack calls satisfied inside the module.
//!
//! A module whose C code calls `wasix_32v1.stack_checkpoint` and
//! `stack_restore` (our setjmp.h) normally needs a host that drives the
//! Asyncify exports (runtime-shim). With this option the output needs none:
//!
//! - the two imports (and `stack_rewind`, the other name of the restore) are
//!   removed; their calls go to functions linked in from `runtime.wat`, which
//!   keep the snapshots in a region of memory 0 taken with `memory.grow`;
//! - every exported function that can unwind (and the start function) is
//!   wrapped: the export names a wrapper that calls the original, and when it
//!   returned because the stack unwound, completes the checkpoint or restore
//!   and calls it again with the same arguments, which rewinds;
//! - the globals a jump restores (`__stack_pointer` and the exported mutable
//!   ones, as the host shim does) are saved and restored by two functions
//!   generated here for the module.
//!
//! The cost is fixed: the template's functions, two small generated ones and
//! one short wrapper per exported entry point; call sites are instrumented
//! exactly as for the host shim.
//!
//! A module that imports the WASIX context calls (`context_create`,
//! `context_switch`, `context_destroy`) gets them served too: the template's
//! context code (between its `ctx` markers) is linked in, three more small
//! functions are generated (a `call_indirect` of a table entry, the check of
//! an entry, the end of the program when an entry returns), and each wrapper
//! becomes the driver of every context (see `runtime.wat`). Without those
//! imports the output is the same, byte for byte, as before contexts existed.
//!
//! The template is ordinary WAT with `@NAME@` constants. Linking it is a
//! re-encode with its imports mapped onto the module's indices, its types
//! interned, its globals appended after the state globals and its functions
//! after the Asyncify runtime.

use crate::OptionName;
use std::collections::HashMap;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{BlockType, ConstExpr, Function, Instruction, MemArg};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, ValType};

use crate::analysis::scan::FunctionScan;
use crate::instrument::runtime::AddedFunction;
use crate::instrument::{Ctx, TypeInterner};
use crate::module_info::{FuncImport, ModuleInfo};
use crate::stack_layout::StackLayout;
use crate::{Error, ErrorKind, Result};

/// The default of [`crate::Options::embed_max_memory`]: 64 MiB, the host
/// shim's default cap on its snapshot store.
pub const DEFAULT_MAX_MEMORY: u64 = 64 << 20;
/// Bytes of a frame-chunk node (see `runtime.wat`).
const NODE_BYTES: u32 = 88;
/// Displaced snapshots kept at most (a power of two; the host shim's
/// default too).
const MAX_DISPLACED: u32 = 1024;

/// Entries of the embedded runtime's table of the last snapshot stored for
/// each jmp_buf address (a power of two): how a jmp_buf armed again is
/// recognised when its bytes were written over since (a jmp_buf in a stack
/// frame that returned and was reused, like Lua's for every `pcall`), so its
/// previous snapshot is displaced, as the host shim's map by address does.
/// 12 bytes each, taken with the runtime's first memory.
const LAST_ENTRIES: u32 = 1024;
/// How many entries from where an address hashes to it may sit in.
const LAST_PROBES: u32 = 16;

/// The template; see its header for the region's layout and the protocol.
const TEMPLATE: &str = include_str!("runtime.wat");

/// Template imports, in the template's function index order.
const TEMPLATE_FUNC_IMPORTS: &[&str] = &[
    "start_unwind",
    "stop_unwind",
    "start_rewind",
    "stop_rewind",
    "get_state",
    "save_globals",
    "restore_globals",
    "init_allocator",
];

/// Template imports added after [`TEMPLATE_FUNC_IMPORTS`] when the module
/// uses contexts (generated per module, like the global movers).
const CONTEXT_FUNC_IMPORTS: &[&str] = &["call_entry", "entry_ok", "entry_returned"];

/// Which runtime entry point a WASIX import becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackCall {
    /// `stack_checkpoint(env, ret) -> errno`
    Checkpoint,
    /// `stack_restore(env, val)` (also spelled `stack_rewind`)
    Restore,
    /// `context_create(new_context, entrypoint) -> errno`
    ContextCreate,
    /// `context_switch(target) -> errno`
    ContextSwitch,
    /// `context_destroy(id) -> errno`
    ContextDestroy,
}

impl StackCall {
    /// Whether this is one of the context calls.
    fn is_context(self) -> bool {
        matches!(
            self,
            StackCall::ContextCreate | StackCall::ContextSwitch | StackCall::ContextDestroy
        )
    }

    /// The wasm32 signature the runtime's replacement has (and the import
    /// must have, or the output would not validate).
    fn signature(self) -> (&'static [ValType], &'static [ValType]) {
        use ValType::{I32, I64};
        match self {
            StackCall::Checkpoint => (&[I32, I32], &[I32]),
            StackCall::Restore => (&[I32, I64], &[]),
            StackCall::ContextCreate => (&[I32, I32], &[I32]),
            StackCall::ContextSwitch | StackCall::ContextDestroy => (&[I64], &[I32]),
        }
    }
}

/// The runtime function a function import becomes, if it is a 32-bit WASIX
/// stack or context call.
pub fn stack_call(import: &FuncImport) -> Option<StackCall> {
    if import.module != "wasix_32v1" {
        return None;
    }
    match import.name.as_str() {
        "stack_checkpoint" => Some(StackCall::Checkpoint),
        "stack_restore" | "stack_rewind" => Some(StackCall::Restore),
        "context_create" => Some(StackCall::ContextCreate),
        "context_switch" => Some(StackCall::ContextSwitch),
        "context_destroy" => Some(StackCall::ContextDestroy),
        _ => None,
    }
}

/// What the context code needs of the module, when it imports a context
/// call.
#[derive(Clone, Debug)]
struct Contexts {
    /// The function table entrypoints index (input index): the one exported
    /// as `__indirect_function_table`, else table 0; `None` when the module
    /// has no table (every create is then EINVAL).
    table: Option<u32>,
    /// `wasi_snapshot_preview1.proc_exit` (input index), to end the program
    /// with status 129 when an entrypoint returns.
    proc_exit: Option<u32>,
    /// The slots of the table that hold a `() -> ()` function, sorted, when
    /// the module's own element segments say what every slot holds and no
    /// code of the module changes the table: `context_create` then refuses
    /// an entry of another type with EINVAL, as Wasmer does, instead of
    /// trapping at its first run (a module cannot ask a `funcref` for its
    /// type without GC's `ref.test`). A host that rewrites the exported
    /// table is not seen.
    unit_slots: Option<Vec<u32>>,
}

/// Everything decided about the embedded runtime before the functions are
/// rewritten: which functions are appended at which indices, which globals
/// are saved, which exports are wrapped.
pub struct Embed {
    template: Vec<u8>,
    /// Template function types, in template type index order.
    types: Vec<(Vec<ValType>, Vec<ValType>)>,
    /// Per template function (imports first): its template type index.
    func_types: Vec<u32>,
    /// Names of the template's defined functions, in order.
    names: Vec<String>,
    /// Template defined globals: whether each is 64-bit (all start at zero).
    globals64: Vec<bool>,
    /// Output index of the first appended function.
    first: u32,
    /// Input indices of the globals a jump restores, `__stack_pointer` first.
    saved: Vec<u32>,
    /// Input indices of the functions whose exports (or start) get a wrapper.
    wrapped: Vec<u32>,
    /// The program's `malloc` and `free`, called once before the runtime
    /// takes memory (see `runtime.wat`).
    allocator: Option<(u32, Option<u32>)>,
    /// Set when the module imports a context call: the context code is
    /// linked in.
    contexts: Option<Contexts>,
}

impl Embed {
    /// Checks that the module can carry the runtime and plans it. `first` is
    /// the output index after the Asyncify runtime's functions; `instrumented`
    /// says which input functions are.
    pub fn plan(
        info: &ModuleInfo<'_>,
        scans: &[FunctionScan],
        stack: &StackLayout,
        instrumented: &[bool],
        first: u32,
        max_memory: u64,
    ) -> Result<Embed> {
        if let Some(i) = info.imports.iter().find(|i| {
            i.module == "wasix_64v1"
                && stack_call(&FuncImport {
                    module: "wasix_32v1".into(),
                    name: i.name.clone(),
                })
                .is_some()
        }) {
            return Err(Error::unsupported(format!(
                "{} supports wasm32 modules only (this one imports `{}.{}`)",
                OptionName::EmbedRuntime,
                i.module,
                i.name
            )));
        }
        let contexts = plan_contexts(info, scans)?;
        match info.memories.first() {
            Some(m) if !m.memory64 => {}
            Some(_) => {
                return Err(Error::unsupported(format!(
                    "{} needs a 32-bit memory 0 (this module's is 64-bit)",
                    OptionName::EmbedRuntime
                )))
            }
            None => {
                return Err(Error::unsupported(format!(
                    "{} keeps its snapshots in memory 0, and this module has none",
                    OptionName::EmbedRuntime
                )))
            }
        }
        let sp = stack_pointer(info, stack)?;
        let mut saved = vec![sp];
        for (name, kind, index) in &info.exports {
            let g = *index;
            let ty = info.globals.get(g as usize);
            if *kind == ExternalKind::Global
                && g != sp
                && !saved.contains(&g)
                && ty.is_some_and(|t| t.mutable && is_numeric(t.content_type))
                && !name.starts_with("__asyncify")
            {
                saved.push(g);
            }
        }
        saved[1..].sort_unstable();

        let mut wrapped: Vec<u32> = info
            .exports
            .iter()
            .filter(|(_, kind, f)| {
                *kind == ExternalKind::Func && instrumented.get(*f as usize) == Some(&true)
            })
            .map(|(_, _, f)| *f)
            .chain(
                info.start
                    .filter(|f| instrumented.get(*f as usize) == Some(&true)),
            )
            .collect();
        wrapped.sort_unstable();
        wrapped.dedup();
        for &f in &wrapped {
            let sig = info.func_sig(f);
            if let Some(t) = sig.results().iter().find(|t| !t.is_defaultable()) {
                return Err(Error::unsupported(format!(
                    "{}: the entry point `{}` returns a non-nullable reference ({t}), which its \
                     wrapper cannot hold",
                    OptionName::EmbedRuntime,
                    info.func_display_name(f)
                )));
            }
        }

        let wat = fill_template(info, saved.len() as u32, max_memory, contexts.is_some());
        let template = wat::parse_str(&wat).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("the embedded runtime does not parse: {e}"),
            )
        })?;
        let allocator = find_allocator(info);
        let mut embed = Embed {
            template: Vec::new(),
            types: Vec::new(),
            func_types: Vec::new(),
            names: Vec::new(),
            globals64: Vec::new(),
            first,
            saved,
            wrapped,
            allocator,
            contexts,
        };
        embed.read_template(&template)?;
        embed.template = template;
        Ok(embed)
    }

    /// Collects the template's types, functions, globals and names.
    fn read_template(&mut self, wasm: &[u8]) -> Result<()> {
        let internal = |e: wasmparser::BinaryReaderError| {
            Error::new(ErrorKind::Internal, format!("embedded runtime: {e}"))
        };
        let mut exports = HashMap::new();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.map_err(internal)? {
                Payload::TypeSection(reader) => {
                    for ty in reader.into_iter_err_on_gc_types() {
                        let ty = ty.map_err(internal)?;
                        self.types
                            .push((ty.params().to_vec(), ty.results().to_vec()));
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        if let TypeRef::Func(t) = import.map_err(internal)?.ty {
                            self.func_types.push(t);
                        }
                    }
                }
                Payload::FunctionSection(reader) => {
                    for t in reader {
                        self.func_types.push(t.map_err(internal)?);
                    }
                }
                Payload::GlobalSection(reader) => {
                    for g in reader {
                        self.globals64
                            .push(g.map_err(internal)?.ty.content_type == ValType::I64);
                    }
                }
                Payload::ExportSection(reader) => {
                    for e in reader {
                        let e = e.map_err(internal)?;
                        exports.insert(e.index, e.name.to_string());
                    }
                }
                _ => {}
            }
        }
        let n_imports = self.n_imports();
        self.names = (n_imports..self.func_types.len())
            .map(|f| {
                exports.get(&(f as u32)).cloned().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("embedded runtime: function {f} is not exported"),
                    )
                })
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Number of functions the template imports.
    fn n_imports(&self) -> usize {
        TEMPLATE_FUNC_IMPORTS.len()
            + if self.contexts.is_some() {
                CONTEXT_FUNC_IMPORTS.len()
            } else {
                0
            }
    }

    /// Number of template functions the module gets.
    fn n_template(&self) -> u32 {
        self.names.len() as u32
    }

    /// Output index of a template function, by name.
    fn func(&self, name: &str) -> u32 {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .expect("the template defines its entry points");
        self.first + i as u32
    }

    /// Output index of `stack_checkpoint`'s replacement.
    pub fn checkpoint(&self) -> u32 {
        self.func("__wasm_rewind_stack_checkpoint")
    }

    /// Output index of `stack_restore`'s replacement.
    pub fn restore(&self) -> u32 {
        self.func("__wasm_rewind_stack_restore")
    }

    fn after_unwind(&self) -> u32 {
        self.func("__wasm_rewind_after_unwind")
    }

    fn save_globals(&self) -> u32 {
        self.first + self.n_template()
    }

    fn restore_globals(&self) -> u32 {
        self.first + self.n_template() + 1
    }

    fn init_allocator(&self) -> u32 {
        self.first + self.n_template() + 2
    }

    /// Output indices of the generated `call_entry`, `entry_ok` and
    /// `entry_returned` (with contexts), after `init_allocator`.
    fn context_helper(&self, i: u32) -> u32 {
        self.init_allocator() + 1 + i
    }

    /// Number of functions generated for the module before the wrappers.
    fn n_generated(&self) -> u32 {
        3 + if self.contexts.is_some() {
            CONTEXT_FUNC_IMPORTS.len() as u32
        } else {
            0
        }
    }

    /// Output index after the last function the runtime adds (its
    /// template's, the generated ones and the export wrappers).
    pub fn end(&self) -> u32 {
        self.first + self.n_template() + self.n_generated() + self.wrapped.len() as u32
    }

    /// Output index of the function the buffer's overflow calls to grow it.
    pub fn grow_buffer(&self) -> u32 {
        self.func("__wasm_rewind_grow_buffer")
    }

    /// Whether the program's allocator was found (else the runtime cannot
    /// make it set itself up before taking memory).
    pub fn found_allocator(&self) -> bool {
        self.allocator.is_some()
    }

    /// Output index where the function the WASIX import `call` maps to.
    pub fn target(&self, call: StackCall) -> u32 {
        match call {
            StackCall::Checkpoint => self.checkpoint(),
            StackCall::Restore => self.restore(),
            StackCall::ContextCreate => self.func("__wasm_rewind_context_create"),
            StackCall::ContextSwitch => self.func("__wasm_rewind_context_switch"),
            StackCall::ContextDestroy => self.func("__wasm_rewind_context_destroy"),
        }
    }

    /// Input function index to the output index of its wrapper, for the
    /// export and start sections.
    pub fn entry_wrappers(&self) -> HashMap<u32, u32> {
        let first = self.save_globals() + self.n_generated();
        self.wrapped
            .iter()
            .enumerate()
            .map(|(i, &f)| (f, first + i as u32))
            .collect()
    }

    /// Interns the template's function types (before any function is
    /// rewritten, like the Asyncify runtime's).
    pub fn intern_types(&self, types: &mut TypeInterner) {
        for (params, results) in &self.types {
            types.intern(params, results);
        }
        types.intern(&[ValType::I32], &[]);
        types.intern(&[], &[]);
        if self.contexts.is_some() {
            types.intern(&[ValType::I32], &[ValType::I32]);
        }
    }

    /// The globals the template defines, to append after the state globals
    /// (all start at zero); they come first among the extra globals.
    pub fn globals(&self) -> Vec<crate::emit::ExtraGlobal> {
        self.globals64
            .iter()
            .enumerate()
            .map(|(i, &is64)| {
                let (val_type, init) = if is64 {
                    (wasm_encoder::ValType::I64, ConstExpr::i64_const(0))
                } else {
                    (wasm_encoder::ValType::I32, ConstExpr::i32_const(0))
                };
                let ty = wasm_encoder::GlobalType {
                    val_type,
                    mutable: true,
                    shared: false,
                };
                crate::emit::ExtraGlobal {
                    name: format!("__wasm_rewind_runtime_{i}"),
                    ty,
                    init,
                }
            })
            .collect()
    }

    /// The functions to append after the Asyncify runtime's, in order: the
    /// template's, the two global movers, the entry wrappers.
    pub fn functions(&self, ctx: &Ctx<'_>) -> Result<Vec<AddedFunction>> {
        let mut out = self.link_template(ctx)?;
        let ptr_to_unit = ctx
            .types
            .get(&[ValType::I32], &[])
            .expect("interned by intern_types");
        out.push(AddedFunction {
            name: "__wasm_rewind_save_globals".into(),
            ty: ptr_to_unit,
            body: self.move_globals(ctx, true)?,
            export: None,
        });
        out.push(AddedFunction {
            name: "__wasm_rewind_restore_globals".into(),
            ty: ptr_to_unit,
            body: self.move_globals(ctx, false)?,
            export: None,
        });
        let unit = ctx.types.get(&[], &[]).expect("interned by intern_types");
        out.push(AddedFunction {
            name: "__wasm_rewind_init_allocator".into(),
            ty: unit,
            body: self.init_allocator_body(ctx),
            export: None,
        });
        if let Some(contexts) = &self.contexts {
            out.extend(context_helpers(ctx, contexts)?);
        }
        for &f in &self.wrapped {
            out.push(AddedFunction {
                name: format!("__wasm_rewind_entry_{}", ctx.info.func_display_name(f)).into(),
                ty: ctx.info.func_types[f as usize],
                body: self.wrapper(ctx, f)?,
                export: None,
            });
        }
        Ok(out)
    }

    /// The template's functions, re-encoded with the module's indices.
    fn link_template(&self, ctx: &Ctx<'_>) -> Result<Vec<AddedFunction>> {
        let f = &ctx.funcs;
        let mut funcs = vec![
            f.start_unwind,
            f.stop_unwind,
            f.start_rewind,
            f.stop_rewind,
            f.get_state,
            self.save_globals(),
            self.restore_globals(),
            self.init_allocator(),
        ];
        if self.contexts.is_some() {
            funcs.extend((0..CONTEXT_FUNC_IMPORTS.len() as u32).map(|i| self.context_helper(i)));
        }
        funcs.extend((0..self.n_template()).map(|i| self.first + i));
        let mut remap = ctx.remap();
        let sp = remap.global_index(self.saved[0]).map_err(internal)?;
        let mut globals = vec![sp];
        globals.extend((0..self.globals64.len()).map(|i| ctx.extra_global(i)));
        let types = self
            .types
            .iter()
            .map(|(p, r)| ctx.types.get(p, r).expect("interned by intern_types"))
            .collect();
        let mut linker = Linker {
            funcs,
            globals,
            types,
        };
        let mut out = Vec::new();
        let mut defined = 0;
        for payload in Parser::new(0).parse_all(&self.template) {
            if let Payload::CodeSectionEntry(body) = payload.map_err(internal)? {
                let mut func = linker
                    .new_function_with_parsed_locals(&body)
                    .map_err(internal)?;
                let mut reader = body.get_operators_reader().map_err(internal)?;
                while !reader.eof() {
                    func.instruction(&linker.parse_instruction(&mut reader).map_err(internal)?);
                }
                let index = self.n_imports() + defined;
                out.push(AddedFunction {
                    name: self.names[defined].clone().into(),
                    ty: linker.types[self.func_types[index] as usize],
                    body: func.into_raw_body(),
                    export: None,
                });
                defined += 1;
            }
        }
        Ok(out)
    }

    /// `init_allocator()`: `(call $free (call $malloc (i32.const 1)))`, so the
    /// program's allocator sets itself up before the runtime grows memory
    /// (without `free`, the byte is dropped: one small block, once); empty
    /// when the module has no `malloc` we can find.
    fn init_allocator_body(&self, ctx: &Ctx<'_>) -> Vec<u8> {
        let mut func = Function::new([]);
        if let Some((malloc, free)) = self.allocator {
            func.instruction(&Instruction::I32Const(1));
            func.instruction(&Instruction::Call(ctx.func_map[malloc as usize]));
            func.instruction(&match free {
                Some(free) => Instruction::Call(ctx.func_map[free as usize]),
                None => Instruction::Drop,
            });
        }
        func.instruction(&Instruction::End);
        func.into_raw_body()
    }

    /// `save_globals(ptr)` stores each saved global in 8 bytes at `ptr`;
    /// `restore_globals(ptr)` loads them back.
    fn move_globals(&self, ctx: &Ctx<'_>, save: bool) -> Result<Vec<u8>> {
        let mut func = Function::new([]);
        let mut remap = ctx.remap();
        for (i, &g) in self.saved.iter().enumerate() {
            let global = remap.global_index(g).map_err(internal)?;
            let offset = 8 * i as u64;
            let arg = |align| MemArg {
                offset,
                align,
                memory_index: 0,
            };
            func.instruction(&Instruction::LocalGet(0));
            let ty = ctx.info.globals[g as usize].content_type;
            if save {
                func.instruction(&Instruction::GlobalGet(global));
                func.instruction(&match ty {
                    ValType::I32 => Instruction::I32Store(arg(2)),
                    ValType::I64 => Instruction::I64Store(arg(3)),
                    ValType::F32 => Instruction::F32Store(arg(2)),
                    _ => Instruction::F64Store(arg(3)),
                });
            } else {
                func.instruction(&match ty {
                    ValType::I32 => Instruction::I32Load(arg(2)),
                    ValType::I64 => Instruction::I64Load(arg(3)),
                    ValType::F32 => Instruction::F32Load(arg(2)),
                    _ => Instruction::F64Load(arg(3)),
                });
                func.instruction(&Instruction::GlobalSet(global));
            }
        }
        func.instruction(&Instruction::End);
        Ok(func.into_raw_body())
    }

    /// The wrapper of entry point `f`: call it until it returns without
    /// having unwound; after each unwind, complete the request (which starts
    /// the rewind) and call it again with the same arguments.
    ///
    /// With contexts it drives them all: each turn calls `f` only when the
    /// main context runs (`context_run` returns 1), and otherwise lets
    /// `context_run` call the running context's entry:
    ///
    /// ```wat
    /// (loop $again
    ///   (if (call $context_run) (then (local.set $r (call $f (local.get $p)))))
    ///   (if (i32.eq (global.get $state) (i32.const 1))
    ///     (then (call $after_unwind) (br $again))))
    /// (local.get $r)
    /// ```
    fn wrapper(&self, ctx: &Ctx<'_>, f: u32) -> Result<Vec<u8>> {
        let sig = ctx.info.func_sig(f);
        let n_params = sig.params().len() as u32;
        let results = sig
            .results()
            .iter()
            .map(|t| ctx.val_type(*t))
            .collect::<Result<Vec<_>>>()?;
        let mut func = Function::new(results.iter().map(|t| (1, *t)));
        func.instruction(&Instruction::Loop(BlockType::Empty));
        let depth = if self.contexts.is_some() {
            func.instruction(&Instruction::Call(self.func("__wasm_rewind_context_run")));
            func.instruction(&Instruction::If(BlockType::Empty));
            1
        } else {
            0
        };
        for p in 0..n_params {
            func.instruction(&Instruction::LocalGet(p));
        }
        func.instruction(&Instruction::Call(ctx.func_map[f as usize]));
        for r in (0..results.len() as u32).rev() {
            func.instruction(&Instruction::LocalSet(n_params + r));
        }
        if depth == 1 {
            func.instruction(&Instruction::End);
        }
        func.instruction(&Instruction::GlobalGet(ctx.state_global));
        func.instruction(&Instruction::I32Const(1));
        func.instruction(&Instruction::I32Eq);
        func.instruction(&Instruction::If(BlockType::Empty));
        func.instruction(&Instruction::Call(self.after_unwind()));
        func.instruction(&Instruction::Br(1));
        func.instruction(&Instruction::End);
        func.instruction(&Instruction::End);
        for r in 0..results.len() as u32 {
            func.instruction(&Instruction::LocalGet(n_params + r));
        }
        func.instruction(&Instruction::End);
        Ok(func.into_raw_body())
    }
}

/// Emits `if i is in none of the runs of `slots` then return 0`: one range
/// check per run of consecutive slots (a program's `() -> ()` functions are
/// few, and wasm-ld numbers them in no particular order).
fn refuse_other_slots(f: &mut Function, slots: &[u32]) {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &slot in slots {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == slot => *last = slot,
            _ => runs.push((slot, slot)),
        }
    }
    f.instruction(&Instruction::Block(BlockType::Empty));
    for (first, last) in runs {
        // (i - first) <u (last - first + 1): i in [first, last].
        f.instruction(&Instruction::LocalGet(0));
        f.instruction(&Instruction::I32Const(first as i32));
        f.instruction(&Instruction::I32Sub);
        f.instruction(&Instruction::I32Const((last - first + 1) as i32));
        f.instruction(&Instruction::I32LtU);
        f.instruction(&Instruction::BrIf(0));
    }
    f.instruction(&Instruction::I32Const(0));
    f.instruction(&Instruction::Return);
    f.instruction(&Instruction::End);
}

/// Checks the context imports' signatures and finds what their code needs:
/// the entrypoints' table and `proc_exit`. `None` when the module imports
/// no context call.
fn plan_contexts(info: &ModuleInfo<'_>, scans: &[FunctionScan]) -> Result<Option<Contexts>> {
    let mut any = false;
    for (f, import) in info.imports.iter().enumerate() {
        let Some(call) = stack_call(import).filter(|c| c.is_context()) else {
            continue;
        };
        any = true;
        let sig = info.func_sig(f as u32);
        let (params, results) = call.signature();
        if sig.params() != params || sig.results() != results {
            return Err(Error::unsupported(format!(
                "{}: `{}.{}` is imported with the type {:?} -> {:?}, not the WASIX one \
                 {params:?} -> {results:?}",
                OptionName::EmbedRuntime,
                import.module,
                import.name,
                sig.params(),
                sig.results()
            )));
        }
    }
    if !any {
        return Ok(None);
    }
    let table = info
        .exports
        .iter()
        .find(|(name, kind, _)| *kind == ExternalKind::Table && name == "__indirect_function_table")
        .map(|(_, _, t)| *t)
        .or((!info.tables.is_empty()).then_some(0));
    if let Some(t) = table {
        let ty = info.tables[t as usize].ty;
        if ty.table64 || !ty.element_type.is_func_ref() {
            return Err(Error::unsupported(format!(
                "{}: context entrypoints are indices into table {t}, which is not a 32-bit \
                 `funcref` table ({})",
                OptionName::EmbedRuntime,
                if ty.table64 {
                    "64-bit indices"
                } else {
                    "other references"
                }
            )));
        }
    }
    let proc_exit = info
        .imports
        .iter()
        .position(|i| i.module == "wasi_snapshot_preview1" && i.name == "proc_exit")
        .map(|f| f as u32)
        .filter(|&f| {
            let sig = info.func_sig(f);
            sig.params() == [ValType::I32] && sig.results().is_empty()
        });
    let unit_slots = table.and_then(|t| unit_slots(info, scans, t));
    Ok(Some(Contexts {
        table,
        proc_exit,
        unit_slots,
    }))
}

/// The slots of table `t` holding a `() -> ()` function at instantiation,
/// when that is known and no instruction of the module changes the table.
fn unit_slots(info: &ModuleInfo<'_>, scans: &[FunctionScan], t: u32) -> Option<Vec<u32>> {
    if scans.iter().any(|s| s.mutated_tables.contains(&t)) {
        return None;
    }
    let mut by_slot: HashMap<u32, u32> = HashMap::new();
    for &(slot, f) in info.table_inits[t as usize].slots.as_ref()? {
        by_slot.insert(slot, f);
    }
    let mut slots: Vec<u32> = by_slot
        .into_iter()
        .filter(|&(_, f)| {
            let sig = info.func_sig(f);
            sig.params().is_empty() && sig.results().is_empty()
        })
        .map(|(slot, _)| slot)
        .collect();
    slots.sort_unstable();
    Some(slots)
}

/// The three functions the context code imports, generated for the module:
///
/// ```wat
/// (func $call_entry (param $i i32)            ;; the table's entry, () -> ()
///   (call_indirect (type $unit) (local.get $i)))
/// (func $entry_ok (param $i i32) (result i32) ;; in the table, not null
///   (if (result i32) (i32.lt_u (local.get $i) (table.size))
///     (then (i32.eqz (ref.is_null (table.get (local.get $i)))))
///     (else (i32.const 0))))
/// (func $__wasm_rewind_context_entrypoint_returned
///   (call $proc_exit (i32.const 129))         ;; Wasmer's status
///   (unreachable))
/// ```
///
/// Without a table every entry is refused (and none is ever called); without
/// `proc_exit` the last function only traps, its name saying why.
fn context_helpers(ctx: &Ctx<'_>, contexts: &Contexts) -> Result<Vec<AddedFunction>> {
    let unit = ctx.types.get(&[], &[]).expect("interned by intern_types");
    let ptr_to_unit = ctx
        .types
        .get(&[ValType::I32], &[])
        .expect("interned by intern_types");
    let ptr_to_i32 = ctx
        .types
        .get(&[ValType::I32], &[ValType::I32])
        .expect("interned by intern_types");
    let table = match contexts.table {
        Some(t) => Some(ctx.remap().table_index(t).map_err(internal)?),
        None => None,
    };
    let mut call_entry = Function::new([]);
    let mut entry_ok = Function::new([]);
    match table {
        Some(table) => {
            call_entry.instruction(&Instruction::LocalGet(0));
            call_entry.instruction(&Instruction::CallIndirect {
                type_index: unit,
                table_index: table,
            });
            if let Some(slots) = &contexts.unit_slots {
                refuse_other_slots(&mut entry_ok, slots);
            }
            entry_ok.instruction(&Instruction::LocalGet(0));
            entry_ok.instruction(&Instruction::TableSize(table));
            entry_ok.instruction(&Instruction::I32LtU);
            entry_ok.instruction(&Instruction::If(BlockType::Result(
                wasm_encoder::ValType::I32,
            )));
            entry_ok.instruction(&Instruction::LocalGet(0));
            entry_ok.instruction(&Instruction::TableGet(table));
            entry_ok.instruction(&Instruction::RefIsNull);
            entry_ok.instruction(&Instruction::I32Eqz);
            entry_ok.instruction(&Instruction::Else);
            entry_ok.instruction(&Instruction::I32Const(0));
            entry_ok.instruction(&Instruction::End);
        }
        None => {
            call_entry.instruction(&Instruction::Unreachable);
            entry_ok.instruction(&Instruction::I32Const(0));
        }
    }
    call_entry.instruction(&Instruction::End);
    entry_ok.instruction(&Instruction::End);
    let mut returned = Function::new([]);
    if let Some(f) = contexts.proc_exit {
        returned.instruction(&Instruction::I32Const(129));
        returned.instruction(&Instruction::Call(ctx.func_map[f as usize]));
    }
    returned.instruction(&Instruction::Unreachable);
    returned.instruction(&Instruction::End);
    Ok(vec![
        AddedFunction {
            name: "__wasm_rewind_call_entry".into(),
            ty: ptr_to_unit,
            body: call_entry.into_raw_body(),
            export: None,
        },
        AddedFunction {
            name: "__wasm_rewind_entry_ok".into(),
            ty: ptr_to_i32,
            body: entry_ok.into_raw_body(),
            export: None,
        },
        AddedFunction {
            name: "__wasm_rewind_context_entrypoint_returned".into(),
            ty: unit,
            body: returned.into_raw_body(),
            export: None,
        },
    ])
}

/// The template's indices mapped onto the output's.
struct Linker {
    funcs: Vec<u32>,
    globals: Vec<u32>,
    types: Vec<u32>,
}

impl Reencode for Linker {
    type Error = std::convert::Infallible;

    fn function_index(
        &mut self,
        func: u32,
    ) -> std::result::Result<u32, ReencodeError<Self::Error>> {
        Ok(self.funcs[func as usize])
    }

    fn global_index(
        &mut self,
        global: u32,
    ) -> std::result::Result<u32, ReencodeError<Self::Error>> {
        Ok(self.globals[global as usize])
    }

    fn type_index(&mut self, ty: u32) -> std::result::Result<u32, ReencodeError<Self::Error>> {
        Ok(self.types[ty as usize])
    }
}

/// The module's `malloc`, and `free` if it has one (a program that never
/// frees links none), by export or by name, with their C signatures
/// (`(i32) -> i32` and `(i32) -> ()`), defined in the module.
fn find_allocator(info: &ModuleInfo<'_>) -> Option<(u32, Option<u32>)> {
    let find = |name: &str, results: &[ValType]| {
        let (f, _) = info.find_named(ExternalKind::Func, name)?;
        let sig = info.func_sig(f);
        (f >= info.num_imported_funcs()
            && sig.params() == [ValType::I32]
            && sig.results() == results)
            .then_some(f)
    };
    Some((find("malloc", &[ValType::I32])?, find("free", &[])))
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("embedded runtime: {e}"))
}

fn is_numeric(t: ValType) -> bool {
    matches!(t, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64)
}

/// The module's `__stack_pointer` (see `stack_layout`). A jump must restore
/// it, and the stale check reads it.
fn stack_pointer(info: &ModuleInfo<'_>, stack: &StackLayout) -> Result<u32> {
    let g = stack.pointer.map(|p| p.index).ok_or_else(|| {
        Error::unsupported(format!(
            "{} needs the module's `__stack_pointer`, and none was found (not exported, no \
             name section, and no function prologue lowers a single global): link with \
             -Wl,--export=__stack_pointer",
            OptionName::EmbedRuntime
        ))
    })?;
    let ty = info.globals[g as usize];
    if !(ty.mutable && ty.content_type == ValType::I32) {
        return Err(Error::unsupported(format!(
            "{}: `__stack_pointer` is not a mutable i32 global",
            OptionName::EmbedRuntime
        )));
    }
    Ok(g)
}

/// The template with its constants: the sizes of its records, its memory
/// cap and the hash key; with `contexts`, its context code uncommented and a
/// snapshot's context recorded at slot +32, before its globals.
fn fill_template(info: &ModuleInfo<'_>, n_saved: u32, max_memory: u64, contexts: bool) -> String {
    let globals = 8 * n_saved;
    let cap_pages = (max_memory / 65536).clamp(1, 65536);
    let (template, slot_globals, sp_of_slot) = if contexts {
        let code = TEMPLATE.replace("(;ctx", "").replace("ctx;)", "");
        (
            code,
            40,
            "(call $sp_of (i32.load offset=32 (local.get $slot)))",
        )
    } else {
        (TEMPLATE.to_string(), 32, "(global.get $sp)")
    };
    template
        .replace("@SLOT@", &(slot_globals + globals).to_string())
        .replace("@SLOT_GLOBALS@", &slot_globals.to_string())
        .replace("@SLOT_HASHED@", &(slot_globals - 32 + globals).to_string())
        .replace("@SP_OF_SLOT@", sp_of_slot)
        .replace("@CTX@", &(24 + globals).to_string())
        .replace("@GLOBALS@", &globals.to_string())
        .replace("@NODE@", &NODE_BYTES.to_string())
        .replace("@CAP_PAGES@", &cap_pages.to_string())
        .replace("@MAX_DISPLACED@", &MAX_DISPLACED.to_string())
        .replace("@RING_BYTES@", &(8 * MAX_DISPLACED).to_string())
        .replace("@GLOBALS_ALLOC@", &globals.max(8).to_string())
        .replace("@LAST_ENTRIES@", &LAST_ENTRIES.to_string())
        .replace("@LAST_PROBES@", &LAST_PROBES.to_string())
        .replace("@LAST_MASK@", &(LAST_ENTRIES - 1).to_string())
        .replace(
            "@LAST_SHIFT@",
            &(32 - LAST_ENTRIES.trailing_zeros()).to_string(),
        )
        .replace("@LAST_BYTES@", &(12 * LAST_ENTRIES).to_string())
        .replace("@RING_MASK@", &(MAX_DISPLACED - 1).to_string())
        .replace("@KEY@", &format!("{:#x}", module_key(info.wasm)))
}

/// A hash key that differs between modules and is the same for the same
/// input, so builds stay reproducible (FNV-1a over the input, 8 bytes at a
/// time, then splitmix64's finaliser).
fn module_key(wasm: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in wasm.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= wasm.len() as u64;
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
