//! Where everything the pass adds goes, decided in one step before any
//! function is rewritten: the buffer's memory, the function and global index
//! spaces, the embedded runtime's place, the exports a host looks for.
//!
//! Every later step (rewriting bodies, building the runtime, writing the
//! module) reads these decisions and makes none of its own, so an index can
//! only disagree with itself if this file says so.

use crate::abi;
use crate::analysis::scan::FunctionScan;
use crate::analysis::unwind::{RuntimeImport, UnwindAnalysis};
use crate::embed::{self, Embed, StackCall};
use crate::emit::ExtraGlobal;
use crate::error::{Error, ErrorKind, Result};
use crate::instrument::frame_helpers::FrameHelpers;
use crate::instrument::runtime::{self, AddedFunction};
use crate::instrument::{BufferGrowth, Ctx, Lowering, RuntimeFuncs, TypeInterner};
use crate::module_info::ModuleInfo;
use crate::options::{OptionName, Options};
use crate::stack_layout::{StackBottom, StackLayout};
use wasm_encoder::ExportKind;
use wasmparser::ValType;

/// Which memory holds the `{pos, end}` header and the buffer.
///
/// Memory 0 unless told otherwise, as in Binaryen's ABI, because a host
/// passes `asyncify_start_unwind` an address of its choosing in that memory
/// (Wasmer: the free part of the C stack).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BufferPlacement {
    /// The memory's index in the output.
    pub memory: u32,
    /// Whether it is a memory64 (pointers are i64).
    pub memory64: bool,
    /// A memory of this many pages is added for the buffer
    /// (`--secondary-memory`).
    pub secondary_pages: Option<u32>,
}

impl BufferPlacement {
    /// Finds the buffer's memory. Needs only the module's header sections, so
    /// a wrong `--memory` is reported before any body is read.
    pub fn decide(info: &ModuleInfo<'_>, options: &Options) -> Result<BufferPlacement> {
        let secondary_pages = options.secondary_memory;
        let (memory, memory64) = match (secondary_pages, &options.memory) {
            (Some(_), _) => (info.memories.len() as u32, false),
            (None, Some(name)) => {
                let m = info.find_memory(name)?;
                (m, info.memories[m as usize].memory64)
            }
            (None, None) => match info.memories.first() {
                Some(m) => (0, m.memory64),
                None => {
                    return Err(Error::new(
                        ErrorKind::BadOptions,
                        format!(
                            "the module has no memory to hold the unwind buffer; use {} to add \
                             one",
                            OptionName::SecondaryMemory
                        ),
                    ))
                }
            },
        };
        Ok(BufferPlacement {
            memory,
            memory64,
            secondary_pages,
        })
    }
}

/// Every index the output uses, and the context the rewrite runs in.
pub(crate) struct OutputLayout<'m> {
    /// Index maps, the added functions' and globals' places, the types the
    /// pass interns: what the rewrite of each body needs.
    pub ctx: Ctx<'m>,
    /// Where the buffer lives.
    pub buffer: BufferPlacement,
    /// Where the C stack is, for a WASIX host.
    pub stack: StackLayout,
    /// The module is meant for a WASIX host (it calls the stack functions,
    /// or `--preset wasix` asked for it): export the stack's globals.
    pub for_wasix_host: bool,
    /// Export the one-slot table through which a host grows the buffer.
    pub grow_hook: bool,
    /// Per input function: removed from the output (an `asyncify.*` import,
    /// or a WASIX stack import the embedded runtime replaces).
    pub removed: Vec<bool>,
    /// The embedded runtime, with `--embed-runtime`.
    pub embedded: Option<Embed>,
}

impl<'m> OutputLayout<'m> {
    /// Decides the layout. Refuses a module meant for a WASIX host whose C
    /// stack that host could not find safely.
    pub fn decide(
        info: &'m ModuleInfo<'m>,
        scans: &[FunctionScan],
        analysis: &UnwindAnalysis,
        options: &Options,
        buffer: BufferPlacement,
    ) -> Result<OutputLayout<'m>> {
        let wasix = imports_wasix_unwinding_calls(info);
        // A module for a WASIX host: the host must find its C stack
        // (exports), and, with the buffer in memory 0, the free part of it.
        let stack = StackLayout::find(info, scans);
        let for_wasix_host = options.export_stack_globals || wasix;
        if for_wasix_host
            && !options.embed_runtime
            && buffer.secondary_pages.is_none()
            && buffer.memory == 0
        {
            check_stack_for_wasix_host(&stack)?;
        }
        let grow_hook = wasix && !options.embed_runtime;

        let FunctionLayout {
            funcs,
            func_map,
            removed,
            embedded,
        } = FunctionLayout::decide(info, scans, &stack, analysis, options)?;

        // Global indices: the state globals follow the input's, unless they
        // are imported, which moves every defined global up by two.
        let (state_global, globals_from, globals_by) = if options.import_globals {
            (info.imported_globals, info.imported_globals, 2)
        } else {
            (info.globals.len() as u32, u32::MAX, 0)
        };

        let types = added_types(info, buffer.memory64, embedded.as_ref());
        let identity_indices =
            globals_by == 0 && func_map.iter().enumerate().all(|(i, &f)| f == i as u32);
        let growth = match (&embedded, grow_hook) {
            (Some(e), _) => BufferGrowth::Call {
                func: e.grow_buffer(),
            },
            (None, true) => BufferGrowth::HostHook {
                table: info.tables.len() as u32,
            },
            (None, false) => BufferGrowth::Fixed,
        };
        // The frame helpers come after every other added function.
        let helpers_first = match &embedded {
            Some(e) => e.end(),
            None => funcs.start_unwind + runtime::count(options.asserts),
        };
        let ctx = Ctx {
            helpers: FrameHelpers::new(helpers_first),
            identity_indices,
            func_map,
            globals_from,
            globals_by,
            state_global,
            data_global: state_global + 1,
            memory: buffer.memory,
            growth,
            memory64: buffer.memory64,
            funcs,
            types,
            asserts: options.asserts,
            runtime_import: removed.clone(),
            info,
            lowering: Lowering::Asyncify,
        };
        Ok(OutputLayout {
            ctx,
            buffer,
            stack,
            for_wasix_host,
            grow_hook,
            removed,
            embedded,
        })
    }

    /// What the user should know about this layout that does not stop the
    /// pass.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.embedded.as_ref().is_some_and(|e| !e.found_allocator()) {
            warnings.push(format!(
                "{}: no `malloc` found (by export or name): if the program calls setjmp \
                 before its first malloc, wasi-libc's 2022 malloc may take the runtime's \
                 memory as heap; keep the name section, or export malloc",
                OptionName::EmbedRuntime
            ));
        }
        warnings
    }

    /// Whether any function index changes (imports were removed).
    pub fn renumbered(&self) -> bool {
        self.removed.iter().any(|r| *r)
    }

    /// The exports and globals the pass adds, given the added functions (in
    /// index order from `funcs.start_unwind`).
    pub fn exports_and_globals(
        &self,
        added: &[AddedFunction],
        options: &Options,
    ) -> (Vec<(String, ExportKind, u32)>, Vec<ExtraGlobal>) {
        if let Lowering::Exceptions(_) = self.ctx.lowering {
            return (
                Vec::new(),
                crate::exceptions_layout::added_globals(&self.ctx),
            );
        }
        let info = self.ctx.info;
        let mut exports: Vec<(String, ExportKind, u32)> = added
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let index = self.ctx.funcs.start_unwind + i as u32;
                f.export
                    .map(|name| (name.to_string(), ExportKind::Func, index))
            })
            .collect();
        if options.export_globals {
            exports.push((
                abi::STATE_GLOBAL.into(),
                ExportKind::Global,
                self.ctx.state_global,
            ));
            exports.push((
                abi::DATA_GLOBAL.into(),
                ExportKind::Global,
                self.ctx.data_global,
            ));
        }
        if self.buffer.secondary_pages.is_some() {
            exports.push((
                abi::SECONDARY_MEMORY_EXPORT.into(),
                ExportKind::Memory,
                self.buffer.memory,
            ));
        }
        if self.grow_hook {
            exports.push((
                abi::GROW_HOOK_EXPORT.into(),
                ExportKind::Table,
                info.tables.len() as u32,
            ));
        }
        let mut globals = self
            .embedded
            .as_ref()
            .map(|e| e.globals())
            .unwrap_or_default();
        if self.for_wasix_host {
            exports.extend(self.stack_global_exports());
            if self.stack.bottom() == StackBottom::StackFirst && self.stack.low.is_none() {
                // The stack comes first: say so, rather than let the host
                // fall back on address 0 with a warning that it may corrupt
                // memory.
                let index = self.ctx.extra_global(globals.len());
                globals.push(ExtraGlobal::constant(
                    "__stack_low",
                    info.memories.first().is_some_and(|m| m.memory64),
                    0,
                ));
                exports.push(("__stack_low".into(), ExportKind::Global, index));
            }
        }
        (exports, globals)
    }

    /// Exports for the stack globals the module has but does not export
    /// under their own names.
    fn stack_global_exports(&self) -> Vec<(String, ExportKind, u32)> {
        let ctx = &self.ctx;
        self.stack
            .named()
            .into_iter()
            .filter(|(name, _)| !ctx.info.exports_name(name))
            .map(|(name, g)| {
                let index = if g.index >= ctx.globals_from {
                    g.index + ctx.globals_by
                } else {
                    g.index
                };
                (name.to_string(), ExportKind::Global, index)
            })
            .collect()
    }
}

/// The function index space of the output.
struct FunctionLayout {
    /// Where the Asyncify runtime's functions go.
    funcs: RuntimeFuncs,
    /// Input function index -> output function index.
    func_map: Vec<u32>,
    /// Per input function: removed from the output.
    removed: Vec<bool>,
    /// The embedded runtime, with `--embed-runtime`, placed after the
    /// Asyncify runtime.
    embedded: Option<Embed>,
}

impl FunctionLayout {
    /// `asyncify.*` imports are removed, the runtime appended. With
    /// --embed-runtime the WASIX stack imports go too: the embedded
    /// runtime's functions, appended after the Asyncify runtime, replace
    /// them.
    fn decide(
        info: &ModuleInfo<'_>,
        scans: &[FunctionScan],
        stack: &StackLayout,
        analysis: &UnwindAnalysis,
        options: &Options,
    ) -> Result<FunctionLayout> {
        let n_funcs = info.num_funcs() as usize;
        let stack_calls: Vec<Option<StackCall>> = (0..n_funcs)
            .map(|f| {
                let import = info.imports.get(f).filter(|_| options.embed_runtime)?;
                embed::stack_call(import)
            })
            .collect();
        let runtime_import = |f: usize| analysis.runtime_imports.get(f).copied().flatten();
        let removed: Vec<bool> = (0..n_funcs)
            .map(|f| runtime_import(f).is_some() || stack_calls[f].is_some())
            .collect();
        let n_removed = removed.iter().filter(|r| **r).count() as u32;
        let funcs = runtime::layout_funcs(info.num_funcs() - n_removed, options.asserts);
        let embedded = if options.embed_runtime {
            let first = funcs.start_unwind + runtime::count(options.asserts);
            let max_memory = options
                .embed_max_memory
                .unwrap_or(embed::DEFAULT_MAX_MEMORY);
            Some(Embed::plan(
                info,
                scans,
                stack,
                &analysis.instrumented,
                first,
                max_memory,
            )?)
        } else {
            None
        };
        let mut before = 0;
        let func_map: Vec<u32> = (0..n_funcs)
            .map(|f| {
                let mapped = match runtime_import(f) {
                    Some(RuntimeImport::StartUnwind) => funcs.start_unwind,
                    Some(RuntimeImport::StopUnwind) => funcs.stop_unwind,
                    Some(RuntimeImport::StartRewind) => funcs.start_rewind,
                    Some(RuntimeImport::StopRewind) => funcs.stop_rewind,
                    Some(RuntimeImport::GetState) => funcs.get_state,
                    None => match (&embedded, stack_calls[f]) {
                        (Some(e), Some(call)) => e.target(call),
                        _ => f as u32 - before,
                    },
                };
                if removed[f] {
                    before += 1;
                }
                mapped
            })
            .collect();
        Ok(FunctionLayout {
            funcs,
            func_map,
            removed,
            embedded,
        })
    }
}

/// The types of the functions the pass adds, interned before any block type
/// so that their indices do not depend on the functions being rewritten.
fn added_types(info: &ModuleInfo<'_>, memory64: bool, embedded: Option<&Embed>) -> TypeInterner {
    let mut types = TypeInterner::new(info);
    let addr = if memory64 { ValType::I64 } else { ValType::I32 };
    runtime::intern_types(&mut types, addr);
    if let Some(e) = embedded {
        e.intern_types(&mut types);
    }
    types
}

/// Whether the module imports a WASIX call that unwinds (`stack_checkpoint`,
/// `stack_restore`, `stack_rewind`, `context_switch`) from `wasix_32v1` or
/// `wasix_64v1`: a host (ours or Wasmer) will drive its unwinds.
fn imports_wasix_unwinding_calls(info: &ModuleInfo<'_>) -> bool {
    info.imports
        .iter()
        .any(|i| abi::is_wasix_unwinding_import(&i.module, &i.name))
}

/// Refuses a module whose C stack a WASIX host (Wasmer) could not find
/// safely, naming the link flags that fix it.
fn check_stack_for_wasix_host(stack: &StackLayout) -> Result<()> {
    if stack.pointer.is_none() {
        return Err(Error::unsupported(
            "cannot find the module's `__stack_pointer` (not exported, no name section, and no \
             function prologue lowers a single global), and a WASIX host such as Wasmer needs it \
             to checkpoint the stack: link with -Wl,--export=__stack_pointer",
        ));
    }
    if stack.bottom() == StackBottom::Unknown {
        return Err(Error::unsupported(format!(
            "the module does not say where its C stack begins (no `__stack_low` or \
             `__data_end` global, and its data lies below the stack), so a WASIX host such as \
             Wasmer would unwind over its data: link with -Wl,--export=__stack_low (clang 16 \
             or later; -Wl,--export=__data_end before that), or use {}, which needs neither",
            OptionName::EmbedRuntime
        )));
    }
    Ok(())
}
