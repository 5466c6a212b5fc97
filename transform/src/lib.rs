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
//! [`instrument_with_progress`] is this sequence, one step per line:
//!
//! 1. `Options::checked`: the options against each other, before any body
//!    is read.
//! 2. `module_info`: validate the module structure, collect its facts;
//!    refuse a module that is already instrumented ([`inspect`]'s
//!    recogniser); `layout::BufferPlacement`: which memory holds the buffer.
//! 3. `analysis::scan`: validate every body (parallel), record calls and
//!    stack-pointer prologues.
//! 4. `analysis::unwind`: which functions can unwind, which are
//!    instrumented, why; indirect calls narrowed by signature and by table
//!    contents.
//! 5. `layout::OutputLayout`: every index the output uses (functions,
//!    globals, added types, exports), and `stack_layout`: where the C stack
//!    is, for a WASIX host.
//! 6. `instrument`: per function (parallel) decode, plan (sites, frames,
//!    `analysis::liveness`, layouts) and emit; see `instrument/function.rs`
//!    for the shape of an instrumented function.
//! 7. `emit`: write the module with the added globals, functions, exports
//!    and names; then validate it.
//!
//! With [`Options::embed_runtime`], `embed` links an in-module implementation
//! of the WASIX stack calls (`embed/runtime.wat`) into steps 5 to 7: the
//! imports are removed and their calls retargeted, and every exported entry
//! point that can unwind is wrapped in the unwind/rewind loop a host would
//! otherwise run. When the module imports the WASIX context calls, their
//! implementation is linked in too and each wrapper drives every context
//! (a switch is one more kind of unwind).
//!
//! With [`Options::sjlj`] set to an exceptions lowering, steps 4 and 5 are
//! `analysis::unwind::analyze_for_exceptions` (the callers of
//! `stack_checkpoint` are the only functions rewritten, its calls the only
//! sites) and `exceptions_layout` (the WASIX imports become a function
//! that throws a tag and one that traps; one counter global; no state
//! globals, exports or buffer); step 6 emits the same frames and dispatch,
//! keyed on a local set by the function's own catch
//! (`instrument/function/exceptions.rs`).
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

pub mod abi;
mod analysis;
mod atomic_file;
mod builder;
mod embed;
mod emit;
mod error;
mod exceptions_layout;
pub mod inspect;
mod instrument;
mod layout;
mod module_info;
mod options;
mod stack_layout;

pub use atomic_file::write_file_atomically;
pub use builder::{FileError, Instrument};
pub use error::{Error, ErrorKind, Result};
pub use module_info::features;
pub use options::{
    wildcard_match, with_flags, OptionName, OptionSpec, Options, SjljLowering, OPTIONS,
    WASIX_CONTEXT_IMPORTS, WASIX_STACK_IMPORTS, WASIX_UNWINDING_IMPORTS,
};

use analysis::unwind::UnwindAnalysis;
use instrument::{runtime, Lowering};
use layout::{BufferPlacement, OutputLayout};
use module_info::ModuleInfo;

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
    /// The imports the pass treated as able to unwind, as `module.name`, in
    /// import order.
    pub unwinding_imports: Vec<String>,
    explainer: Explainer,
}

/// Counts and sizes of one run of the pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Functions defined in the input.
    pub functions: usize,
    /// Functions that were instrumented.
    pub instrumented_functions: usize,
    /// Call sites at which an unwind can start or pass through, and which a
    /// rewind can resume.
    pub resumable_call_sites: usize,
    /// Call sites an unwind can pass through that are never resumed: every
    /// unwind through them comes from `stack_restore` (longjmp), whose frames
    /// are discarded. They save nothing.
    pub unwind_only_calls: usize,
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
    let options = options.checked()?;
    let info = module_info::parse_module(wasm)?;
    refuse_instrumented(&info)?;
    let buffer = BufferPlacement::decide(&info, &options)?;
    let n_bodies = info.bodies.len();
    let total = 2 * n_bodies + 1;
    progress(0, total);

    let scans = analysis::scan::scan_functions(&info)?;
    progress(n_bodies, total);
    let (analysis, mut layout) = if options.sjlj.uses_exceptions() {
        let analysis = analysis::unwind::analyze_for_exceptions(&info, &scans)?;
        let layout = exceptions_layout::decide(&info, &scans, &options, buffer)?;
        (analysis, layout)
    } else {
        let analysis = analysis::unwind::analyze(&info, &scans, &options)?;
        let layout = OutputLayout::decide(&info, &scans, &analysis, &options, buffer)?;
        (analysis, layout)
    };
    let rewritten = instrument::rewrite_functions(&mut layout.ctx, &analysis, &|done| {
        progress(n_bodies + done, total)
    })?;
    let written = write(&layout, &rewritten.bodies, &options)?;
    validate_output(&written.wasm)?;
    progress(total, total);
    let warnings = [analysis.warnings.clone(), layout.warnings()].concat();
    Ok(outcome(
        &info,
        analysis,
        &rewritten,
        written,
        warnings,
        wasm.len(),
    ))
}

/// The module the pass wrote, and what writing it measured.
struct Written {
    wasm: Vec<u8>,
    /// Bytes of code of the embedded runtime (0 without it).
    embedded_runtime_size: usize,
    /// Custom sections dropped because rewriting makes them wrong.
    dropped: Vec<String>,
}

/// What the caller gets: the module, the decisions and their reasons, and
/// the numbers of `--stats`.
fn outcome(
    info: &ModuleInfo<'_>,
    analysis: UnwindAnalysis,
    rewritten: &instrument::Rewritten,
    written: Written,
    warnings: Vec<String>,
    input_size: usize,
) -> Instrumented {
    let names: Vec<String> = (0..info.num_funcs())
        .map(|f| info.func_display_name(f))
        .collect();
    let decisions = decisions(info, &analysis, &names);
    let stats = Stats {
        functions: info.bodies.len(),
        instrumented_functions: decisions.iter().filter(|d| d.instrumented).count(),
        resumable_call_sites: rewritten.sites,
        unwind_only_calls: rewritten.unwind_only,
        frame_layouts: rewritten.layouts,
        exact_frames: rewritten.exact_sites,
        input_size,
        output_size: written.wasm.len(),
        embedded_runtime_size: written.embedded_runtime_size,
        dropped_sections: written.dropped,
        warnings,
    };
    Instrumented {
        wasm: written.wasm,
        stats,
        decisions,
        unwinding_imports: unwinding_imports(info, &analysis),
        explainer: Explainer {
            names,
            n_imports: info.imports.len(),
            analysis,
        },
    }
}

/// Builds the added functions and writes the module.
fn write(
    layout: &OutputLayout<'_>,
    bodies: &[Option<Vec<u8>>],
    options: &Options,
) -> Result<Written> {
    let ctx = &layout.ctx;
    let (mut added, tags) = match ctx.lowering {
        Lowering::Asyncify => (runtime::build(ctx), Vec::new()),
        Lowering::Exceptions(x) => (
            exceptions_layout::added_functions(ctx, &x),
            exceptions_layout::added_tags(ctx),
        ),
    };
    let mut embedded_runtime_size = 0;
    if let Some(e) = &layout.embedded {
        let funcs = e.functions(ctx)?;
        embedded_runtime_size = funcs.iter().map(|f| f.body.len()).sum();
        added.extend(funcs);
    }
    let helpers = ctx.helpers.functions(ctx);
    if !helpers.is_empty() {
        // Bodies already call the helpers at the index the layout gave them.
        if ctx.funcs.start_unwind + added.len() as u32 != ctx.helpers.first() {
            return Err(Error::new(
                ErrorKind::Internal,
                "the frame helpers were not placed where their callers expect them",
            ));
        }
        added.extend(helpers);
    }
    let (exports, extra_globals) = layout.exports_and_globals(&added, options);
    let (out, dropped) = emit::write(
        ctx,
        ctx.info,
        emit::Additions {
            funcs: added,
            bodies,
            exports,
            import_globals: options.import_globals,
            secondary_memory: layout.buffer.secondary_pages,
            renumbered: layout.renumbered(),
            removed: layout.removed.clone(),
            dropped: Vec::new(),
            entry_wrappers: layout
                .embedded
                .as_ref()
                .map(|e| e.entry_wrappers())
                .unwrap_or_default(),
            extra_globals,
            grow_hook: layout.grow_hook,
            tags,
        },
    );
    Ok(Written {
        wasm: out,
        embedded_runtime_size,
        dropped,
    })
}

/// Validates the output: an invalid module is our bug, never the user's.
fn validate_output(out: &[u8]) -> Result<()> {
    let mut validator = wasmparser::Validator::new_with_features(module_info::features());
    validator.validate_all(out).map(|_| ()).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!(
                "wasm-rewind produced an invalid module, which is a bug in wasm-rewind \
                 (please report it with the input): {} (at offset {:#x} of the output)",
                e.message(),
                e.offset()
            ),
        )
    })
}

fn refuse_instrumented(info: &ModuleInfo<'_>) -> Result<()> {
    let exports = info.exports.iter().map(|(n, _, _)| n.as_str());
    let global_names = info.global_names.values().map(|n| n.as_str());
    if let Some(marker) = inspect::instrumentation_marker(exports, global_names) {
        return Err(Error::new(
            ErrorKind::AlreadyInstrumented,
            format!(
                "the module is already instrumented by wasm-rewind or Binaryen (it has \
                 `{marker}`); instrument the original module instead"
            ),
        ));
    }
    Ok(())
}

/// The imports the analysis found able to unwind, as `module.name`.
fn unwinding_imports(info: &ModuleInfo<'_>, analysis: &UnwindAnalysis) -> Vec<String> {
    info.imports
        .iter()
        .enumerate()
        .filter(|(i, _)| analysis.can_unwind[*i])
        .map(|(_, imp)| imp.qualified())
        .collect()
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
