//! wasm-rewind's transform: bytes in, bytes out.
//!
//! # Design
//!
//! The pass rewrites a WebAssembly module so that a call stack can be unwound
//! into a buffer and later rewound from it, with the ABI of Binaryen's Asyncify
//! (`wasm-opt --asyncify`), so hosts written for Binaryen's output drive ours
//! unchanged.
//!
//! ## ABI
//!
//! - State global `__asyncify_state`: 0 normal, 1 unwinding, 2 rewinding.
//! - Data global `__asyncify_data`: address of `{ pos, end }` (two i32, or two
//!   i64 when the buffer's memory is memory64). Frames are pushed at `pos`,
//!   upward; `end` is the limit.
//! - Exports `asyncify_start_unwind(ptr)`, `asyncify_stop_unwind()`,
//!   `asyncify_start_rewind(ptr)`, `asyncify_stop_rewind()`,
//!   `asyncify_get_state() -> i32`. The four controls trap when `pos > end`.
//! - An unwinding function returns zeros; to rewind, the host calls the same
//!   export again with the same arguments while the state is 2.
//! - Imports `asyncify.start_unwind` etc. are an in-module runtime and become
//!   calls to the functions above. A function calling `start_unwind` or
//!   `stop_rewind` is not instrumented but its callers are; a function calling
//!   `stop_unwind` or `start_rewind` is not instrumented and stops propagation.
//!
//! ## Frame format (ours; opaque to hosts)
//!
//! Each instrumented function on the unwinding stack pushes
//! `[saved locals][call index k: i32]`, innermost function first. Rewinding
//! enters the outermost function first and pops: it reads `k`, which selects
//! the layout (the set of saved locals) below it. A layout holds the locals
//! live after call `k` and the operand-stack values below the call; sites whose
//! sets are close share one layout (a superset) to keep code small, within a
//! budget per function (`instrument/plan.rs`, `choose_layouts`). `--stats`
//! reports how many sites save exactly their own set.
//!
//! Overflow: a frame that does not fit before `end` calls
//! `__wasm_rewind_buffer_overflow`, before writing anything. By default it
//! traps (`unreachable`; the trap's backtrace names it). In a module that
//! calls the WASIX stack functions it first asks the host for room through
//! the exported one-slot table `__wasm_rewind_grow_hook`: a host that can grow
//! the buffer puts a `(func (param needed))` there, which moves `end` (and
//! may move the frames and `pos`); with `--embed-runtime` it calls the
//! runtime's `grow_buffer`. `{pos, end}` are read again after the call.
//! Binaryen instead writes past `end`.
//!
//! ## Modules for a WASIX host
//!
//! A module that calls `stack_checkpoint`/`stack_restore` (or any module
//! under `--preset wasix`) is meant for a host like Wasmer, which unwinds into
//! the free part of the module's C stack in memory 0. So the buffer stays in
//! memory 0 (as Binaryen's ABI has it; `--secondary-memory` only when asked),
//! `__stack_pointer` and the stack's bounds are exported (`stack_layout.rs`
//! finds them by export, name, or prologue), `__stack_low = 0` is added when
//! the stack comes first, and a module whose stack's bottom a host could not
//! find is refused, naming the link flag.
//!
//! ## Pipeline
//!
//! 1. [`module_info`]: validate the module structure, collect its facts.
//! 2. [`analysis::scan`]: validate every body (parallel), record calls and
//!    stack-pointer prologues.
//! 3. [`analysis::unwind`]: which functions can unwind, which are instrumented,
//!    why; indirect calls narrowed by signature and by table contents.
//!    `stack_layout`: where the C stack is, for a WASIX host.
//! 4. [`instrument`]: per function (parallel) decode, plan (sites, frames,
//!    [`analysis::liveness`], layouts) and emit; see `instrument/function.rs` for
//!    the shape of an instrumented function.
//! 5. [`emit`]: write the module with the added globals, functions, exports and
//!    names; then validate it.
//!
//! With [`Options::embed_runtime`], `embed` links an in-module implementation
//! of the WASIX stack calls (`embed/runtime.wat`) into steps 4 and 5: the
//! imports are removed and their calls retargeted, and every exported entry
//! point that can unwind is wrapped in the unwind/rewind loop a host would
//! otherwise run.
//!
//! ## Choices worth knowing
//!
//! - Rewinding jumps straight to the resume point: every frame (block, loop
//!   body, if arm) holding resume points starts with nested blocks ending just
//!   before each of them and one `br_table` dispatch, so no code before the
//!   resume point runs again, and the normal path pays one state test per
//!   entry into such a frame rather than a check around every stretch of code.
//! - Arguments of the resumed call are zeros when the callee is instrumented
//!   (it restores its own locals), and the real, saved values when the callee
//!   is an import or the in-module runtime (which may read them while
//!   rewinding).
//! - Values on the operand stack below an unwinding call stay on the stack on
//!   the normal path; only the unwind path pops them into locals.
//! - `return_call*` that can unwind, in an instrumented function, becomes a
//!   call followed by `return` (the frame must survive to be saved), so deep
//!   tail recursion through such calls uses stack. Inside a `try_table` the
//!   call is wrapped in `try_table (catch_all_ref)` and rethrown past the
//!   function's handlers, which a tail call would have left behind; inside a
//!   legacy `try` it is refused. Tail calls elsewhere are untouched.
//! - Reference-typed values live across an unwinding call cannot be stored in
//!   linear memory: the function is refused with its name and the reason, as is
//!   a `call_ref` that can unwind. Everything else (multi-value, v128, memory64,
//!   several memories, bulk memory, GC types in unrelated code) passes through.

pub mod analysis;
mod builder;
mod embed;
mod emit;
mod error;
pub mod instrument;
pub mod module_info;
mod options;
mod stack_layout;

pub use builder::{FileError, Instrument};
pub use error::{Error, ErrorKind, Result};
pub use options::{wildcard_match, Options, WASIX_STACK_IMPORTS};

use analysis::unwind::UnwindAnalysis;
use instrument::{runtime, BufferGrowth, Ctx, TypeInterner};
use module_info::ModuleInfo;
use stack_layout::{StackBottom, StackLayout};
use wasm_encoder::ExportKind;

/// The result of [`instrument`]: the new module and what the pass did.
#[derive(Debug)]
pub struct Instrumented {
    /// The instrumented module, already validated.
    pub wasm: Vec<u8>,
    /// Counts and sizes, for `--stats`.
    pub stats: Stats,
    /// One entry per defined function, in index order: whether and why it was
    /// instrumented.
    pub decisions: Vec<Decision>,
    explainer: Explainer,
}

/// Counts and sizes of one run of the pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Functions defined in the input.
    pub functions: usize,
    /// Functions that were instrumented.
    pub instrumented_functions: usize,
    /// Call sites at which an unwind can start or pass through.
    pub resumable_call_sites: usize,
    /// Distinct frame layouts (sets of saved locals), summed over functions.
    pub frame_layouts: usize,
    /// Resume points whose frame holds exactly the locals live after the call
    /// (the others share a layout that is a superset, to keep code small).
    pub exact_frames: usize,
    /// Size of the input in bytes.
    pub input_size: usize,
    /// Size of the output in bytes.
    pub output_size: usize,
    /// Bytes of code `--embed-runtime` added (its functions, the two global
    /// movers and the entry wrappers); 0 without it.
    pub embedded_runtime_size: usize,
    /// Custom sections that were dropped because rewriting makes them wrong
    /// (DWARF `.debug_*`).
    pub dropped_sections: Vec<String>,
    /// Things worth telling the user that did not stop the pass (for example a
    /// list entry that matched nothing).
    pub warnings: Vec<String>,
}

/// Whether one function is instrumented, and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Index of the function in the input's function index space.
    pub index: u32,
    /// Its name from the name section, or `$<index>`.
    pub name: String,
    /// Whether it was instrumented.
    pub instrumented: bool,
    /// Why, in words: the first line of what `--explain` prints.
    pub reason: String,
}

/// What `explain` needs after the module itself is gone.
#[derive(Debug)]
struct Explainer {
    names: Vec<String>,
    n_imports: usize,
    analysis: UnwindAnalysis,
}

impl Instrumented {
    /// The chain of reasons that makes the function named `name` instrumented (or
    /// not), one line per link, ending at the import, indirect call or list entry
    /// that started it. `None` when no function has that name.
    pub fn explain(&self, name: &str) -> Option<Vec<String>> {
        let e = &self.explainer;
        let f = e.names.iter().position(|n| n == name)?;
        Some(
            e.analysis
                .explain(&e.names, e.n_imports, f as u32, usize::MAX),
        )
    }
}

/// Names a module exports or defines when it already carries an Asyncify runtime.
const INSTRUMENTED_MARKERS: &[&str] = &[
    "asyncify_start_unwind",
    "asyncify_stop_unwind",
    "asyncify_start_rewind",
    "asyncify_stop_rewind",
    "asyncify_get_state",
    "__asyncify_state",
    "__asyncify_data",
];

/// Instruments `wasm` (a binary module) so its call stack can be unwound and
/// rewound through the Asyncify ABI, as `wasm-opt --asyncify` would.
///
/// ```
/// let wasm = wat::parse_str(r#"
///     (module
///       (import "env" "sleep" (func $sleep))
///       (memory 1)
///       (func (export "run") (result i32) (call $sleep) (i32.const 42)))
/// "#).unwrap();
/// let out = wasm_rewind_transform::instrument(&wasm, &Default::default()).unwrap();
/// assert_eq!(out.stats.instrumented_functions, 1);
/// assert!(wasmparser::validate(&out.wasm).is_ok());
/// ```
pub fn instrument(wasm: &[u8], options: &Options) -> Result<Instrumented> {
    instrument_with_progress(wasm, options, &|_, _| {})
}

/// [`instrument`], calling `progress(done, total)` as the work advances: once
/// the bodies are validated, after each chunk of functions is rewritten, and
/// when the output is validated (`done == total`). The units are abstract
/// (two per function, one for writing the module), only their ratio means
/// something.
pub fn instrument_with_progress(
    wasm: &[u8],
    options: &Options,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Instrumented> {
    let info = module_info::parse_module(wasm)?;
    let total = 2 * info.bodies.len() + 1;
    progress(0, total);
    refuse_instrumented(&info)?;
    let embedding;
    let options = if options.embed_runtime {
        embedding = embed_options(options)?;
        &embedding
    } else {
        options
    };
    let scans = analysis::scan::scan_functions(&info)?;
    progress(info.bodies.len(), total);
    let analysis = analysis::unwind::analyze(&info, &scans, options)?;

    // Where the buffer lives: memory 0 unless told otherwise, as in
    // Binaryen's ABI, because a host passes `asyncify_start_unwind` an address
    // of its choosing in that memory (Wasmer: the free part of the C stack).
    let wasix = imports_wasix_stack_calls(&info);
    let secondary_memory = options.secondary_memory;
    let (memory, memory64) = match (secondary_memory, &options.memory) {
        (Some(_), Some(_)) => {
            return Err(Error::new(
                ErrorKind::BadOptions,
                "--memory and --secondary-memory exclude each other",
            ))
        }
        (Some(pages), None) => {
            if pages == 0 || pages > 65536 {
                return Err(Error::new(
                    ErrorKind::BadOptions,
                    format!("--secondary-memory={pages}: give between 1 and 65536 pages"),
                ));
            }
            (info.memories.len() as u32, false)
        }
        (None, Some(name)) => {
            let m = info.find_memory(name)?;
            (m, info.memories[m as usize].memory64)
        }
        (None, None) => match info.memories.first() {
            Some(m) => (0, m.memory64),
            None => {
                return Err(Error::new(
                    ErrorKind::BadOptions,
                    "the module has no memory to hold the unwind buffer; \
                     use --secondary-memory to add one",
                ))
            }
        },
    };
    // A module for a WASIX host: the host must find its C stack (exports),
    // and, with the buffer in memory 0, the free part of that stack.
    let stack = StackLayout::find(&info, &scans);
    let for_wasix_host = options.export_stack_globals || wasix;
    if for_wasix_host && !options.embed_runtime && secondary_memory.is_none() && memory == 0 {
        check_stack_for_wasix_host(&stack)?;
    }
    let grow_hook = wasix && !options.embed_runtime;
    let max_memory = options
        .embed_max_memory
        .unwrap_or(embed::DEFAULT_MAX_MEMORY);
    let addr = if memory64 {
        wasmparser::ValType::I64
    } else {
        wasmparser::ValType::I32
    };

    // Function indices: `asyncify.*` imports are removed, the runtime appended.
    // With --embed-runtime the WASIX stack imports go too: the embedded
    // runtime's functions, appended after the Asyncify runtime, replace them.
    let stack_calls: Vec<Option<embed::StackCall>> = (0..info.num_funcs() as usize)
        .map(|f| {
            let import = info.imports.get(f).filter(|_| options.embed_runtime)?;
            embed::stack_call(import)
        })
        .collect();
    let removed: Vec<bool> = (0..info.num_funcs() as usize)
        .map(|f| {
            analysis.runtime_imports.get(f).copied().flatten().is_some() || stack_calls[f].is_some()
        })
        .collect();
    let n_removed = removed.iter().filter(|r| **r).count() as u32;
    let funcs = runtime::layout_funcs(info.num_funcs() - n_removed, options.asserts);
    let embedded = if options.embed_runtime {
        let first = funcs.start_unwind + runtime::count(options.asserts);
        Some(embed::Embed::plan(
            &info,
            &stack,
            &analysis.instrumented,
            first,
            max_memory,
        )?)
    } else {
        None
    };
    let mut before = 0;
    let func_map: Vec<u32> = (0..info.num_funcs())
        .map(|f| {
            use analysis::unwind::RuntimeImport as R;
            let mapped = match analysis.runtime_imports.get(f as usize).copied().flatten() {
                Some(R::StartUnwind) => funcs.start_unwind,
                Some(R::StopUnwind) => funcs.stop_unwind,
                Some(R::StartRewind) => funcs.start_rewind,
                Some(R::StopRewind) => funcs.stop_rewind,
                Some(R::GetState) => funcs.get_state,
                None => match (&embedded, stack_calls[f as usize]) {
                    (Some(e), Some(call)) => e.target(call),
                    _ => f - before,
                },
            };
            if removed[f as usize] {
                before += 1;
            }
            mapped
        })
        .collect();
    let n_globals = info.globals.len() as u32;
    let (state_global, globals_from, globals_by) = if options.import_globals {
        (info.imported_globals, info.imported_globals, 2)
    } else {
        (n_globals, u32::MAX, 0)
    };

    let mut types = TypeInterner::new(&info);
    runtime::intern_types(&mut types, addr);
    if let Some(e) = &embedded {
        e.intern_types(&mut types);
    }
    let identity_indices =
        globals_by == 0 && func_map.iter().enumerate().all(|(i, &f)| f == i as u32);
    let mut ctx = Ctx {
        identity_indices,
        func_map,
        globals_from,
        globals_by,
        state_global,
        data_global: state_global + 1,
        memory,
        growth: match (&embedded, grow_hook) {
            (Some(e), _) => BufferGrowth::Call {
                func: e.grow_buffer(),
            },
            (None, true) => BufferGrowth::HostHook {
                table: info.tables.len() as u32,
            },
            (None, false) => BufferGrowth::Fixed,
        },
        memory64,
        funcs,
        types,
        asserts: options.asserts,
        runtime_import: removed.clone(),
        info: &info,
    };
    let n_bodies = info.bodies.len();
    let rewritten = instrument::rewrite_functions(&mut ctx, &analysis, &|done| {
        progress(n_bodies + done, total)
    })?;
    let mut added = runtime::build(&ctx);
    let mut embedded_runtime_size = 0;
    if let Some(e) = &embedded {
        let funcs = e.functions(&ctx)?;
        embedded_runtime_size = funcs.iter().map(|f| f.body.len()).sum();
        added.extend(funcs);
    }

    let mut exports: Vec<(String, ExportKind, u32)> = added
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            f.export.map(|name| {
                (
                    name.to_string(),
                    ExportKind::Func,
                    funcs.start_unwind + i as u32,
                )
            })
        })
        .collect();
    if options.export_globals {
        exports.push((
            "__asyncify_state".into(),
            ExportKind::Global,
            ctx.state_global,
        ));
        exports.push((
            "__asyncify_data".into(),
            ExportKind::Global,
            ctx.data_global,
        ));
    }
    if secondary_memory.is_some() {
        exports.push(("asyncify_memory".into(), ExportKind::Memory, memory));
    }
    if grow_hook {
        exports.push((
            runtime::GROW_HOOK_EXPORT.into(),
            ExportKind::Table,
            info.tables.len() as u32,
        ));
    }
    let mut extra_globals = embedded.as_ref().map(|e| e.globals()).unwrap_or_default();
    if for_wasix_host {
        exports.extend(stack_global_exports(&info, &ctx, &stack));
        if stack.bottom() == StackBottom::StackFirst && stack.low.is_none() {
            // The stack comes first: say so, rather than let the host fall
            // back on address 0 with a warning that it may corrupt memory.
            let index = ctx.extra_global(extra_globals.len());
            extra_globals.push(emit::ExtraGlobal::constant(
                "__stack_low",
                info.memories.first().is_some_and(|m| m.memory64),
                0,
            ));
            exports.push(("__stack_low".into(), ExportKind::Global, index));
        }
    }
    let mut warnings = analysis.warnings.clone();
    if embedded.as_ref().is_some_and(|e| !e.found_allocator()) {
        warnings.push(
            "--embed-runtime: no `malloc` found (by export or name): if the program calls \
             setjmp before its first malloc, wasi-libc's 2022 malloc may take the runtime's \
             memory as heap; keep the name section, or export malloc"
                .to_string(),
        );
    }

    let (out, dropped) = emit::write(
        &ctx,
        &info,
        emit::Additions {
            funcs: added,
            bodies: &rewritten.bodies,
            exports,
            import_globals: options.import_globals,
            secondary_memory,
            renumbered: n_removed > 0,
            removed,
            dropped: Vec::new(),
            entry_wrappers: embedded
                .as_ref()
                .map(|e| e.entry_wrappers())
                .unwrap_or_default(),
            extra_globals,
            grow_hook,
        },
    );
    let mut validator = wasmparser::Validator::new_with_features(module_info::features());
    if let Err(e) = validator.validate_all(&out) {
        return Err(Error::new(
            ErrorKind::Internal,
            format!(
                "wasm-rewind produced an invalid module, which is a bug in wasm-rewind \
                 (please report it with the input): {} (at offset {:#x} of the output)",
                e.message(),
                e.offset()
            ),
        ));
    }

    progress(total, total);

    let names: Vec<String> = (0..info.num_funcs())
        .map(|f| info.func_display_name(f))
        .collect();
    let decisions = decisions(&info, &analysis, &names);
    let stats = Stats {
        functions: info.bodies.len(),
        instrumented_functions: decisions.iter().filter(|d| d.instrumented).count(),
        resumable_call_sites: rewritten.sites,
        frame_layouts: rewritten.layouts,
        exact_frames: rewritten.exact_sites,
        input_size: wasm.len(),
        output_size: out.len(),
        embedded_runtime_size,
        dropped_sections: dropped,
        warnings,
    };
    let explainer = Explainer {
        names,
        n_imports: info.imports.len(),
        analysis,
    };
    Ok(Instrumented {
        wasm: out,
        stats,
        decisions,
        explainer,
    })
}

/// The options `--embed-runtime` runs with: the WASIX stack calls are the
/// only unwinding imports unless a list is given (nothing else can complete
/// an unwind without a host), and the buffer placement is the runtime's.
fn embed_options(options: &Options) -> Result<Options> {
    let clash = if options.memory.is_some() {
        Some("--memory")
    } else if options.secondary_memory.is_some() {
        Some("--secondary-memory")
    } else if options.import_globals {
        Some("--import-globals")
    } else {
        None
    };
    if let Some(flag) = clash {
        return Err(Error::new(
            ErrorKind::BadOptions,
            format!(
                "--embed-runtime places its buffer and state itself; drop {flag} \
                 (it is for a host that drives the Asyncify exports)"
            ),
        ));
    }
    let mut options = options.clone();
    if options.imports.is_none() {
        options.imports = Some(WASIX_STACK_IMPORTS.iter().map(|s| s.to_string()).collect());
    }
    Ok(options)
}

fn refuse_instrumented(info: &ModuleInfo<'_>) -> Result<()> {
    let exported = info
        .exports
        .iter()
        .map(|(n, _, _)| n.as_str())
        .find(|n| INSTRUMENTED_MARKERS.contains(n));
    let named = info
        .global_names
        .values()
        .map(|n| n.as_str())
        .find(|n| INSTRUMENTED_MARKERS.contains(n));
    if let Some(marker) = exported.or(named) {
        return Err(Error::new(
            ErrorKind::AlreadyInstrumented,
            format!(
                "the module is already instrumented for unwinding (it has `{marker}`); \
                 instrument the original module instead"
            ),
        ));
    }
    Ok(())
}

/// Whether the module imports `stack_checkpoint`, `stack_restore` or
/// `stack_rewind` from `wasix_32v1` or `wasix_64v1`.
fn imports_wasix_stack_calls(info: &ModuleInfo<'_>) -> bool {
    info.imports
        .iter()
        .any(|i| WASIX_STACK_IMPORTS.contains(&i.qualified().as_str()))
}

/// Exports for the stack globals the module has but does not export under
/// their own names.
fn stack_global_exports(
    info: &ModuleInfo<'_>,
    ctx: &Ctx<'_>,
    stack: &StackLayout,
) -> Vec<(String, ExportKind, u32)> {
    stack
        .named()
        .into_iter()
        .filter(|(name, _)| !info.exports_name(name))
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
        return Err(Error::unsupported(
            "the module does not say where its C stack begins (no `__stack_low` or \
             `__data_end` global, and its data lies below the stack), so a WASIX host such as \
             Wasmer would unwind over its data: link with -Wl,--export=__stack_low (clang 16 \
             or later; -Wl,--export=__data_end before that), or use --embed-runtime, which \
             needs neither",
        ));
    }
    Ok(())
}

fn decisions(info: &ModuleInfo<'_>, analysis: &UnwindAnalysis, names: &[String]) -> Vec<Decision> {
    (info.num_imported_funcs()..info.num_funcs())
        .map(|f| Decision {
            index: f,
            name: names[f as usize].clone(),
            instrumented: analysis.instrumented[f as usize],
            reason: analysis
                .explain(names, info.imports.len(), f, 1)
                .into_iter()
                .next()
                .unwrap_or_default(),
        })
        .collect()
}
