//! Rewrite phase: decode, plan and emit each function, in parallel.
//!
//! Block types with parameters need entries in the type section, and their
//! indices must not depend on thread scheduling: a function whose block types
//! are all in the type section already is emitted right after planning; the
//! others wait until the end of their chunk, where their new types are
//! interned sequentially in function order, then are emitted.

pub mod body;
pub mod frame_helpers;
pub mod function;
pub mod plan;
pub mod runtime;

use crate::analysis::unwind::UnwindAnalysis;
use crate::error::{Error, ErrorKind, Result};
use crate::module_info::ModuleInfo;
use plan::{Plan, Site};
use rayon::prelude::*;
use std::collections::HashMap;
use std::convert::Infallible;
use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{BlockType, Instruction};
use wasmparser::{FuncValidatorAllocations, ValType};

/// Index of each function the pass adds (in the output's index space).
#[derive(Clone, Copy, Debug, Default)]
pub struct RuntimeFuncs {
    /// `asyncify_start_unwind(ptr)`
    pub start_unwind: u32,
    /// `asyncify_stop_unwind()`
    pub stop_unwind: u32,
    /// `asyncify_start_rewind(ptr)`
    pub start_rewind: u32,
    /// `asyncify_stop_rewind()`
    pub stop_rewind: u32,
    /// `asyncify_get_state() -> i32`
    pub get_state: u32,
    /// `push_frame(k, size) -> p`: reserve a frame, trap if it does not fit.
    pub push_frame: u32,
    /// `pop_index() -> k`: traps (in `truncated_buffer`) on the overflow mark.
    pub pop_index: u32,
    /// `pop_frame(size) -> p`
    pub pop_frame: u32,
    /// `buffer_overflow(needed)`: asks the grow hook for room, or marks the
    /// buffer and traps; its name is the diagnostic.
    pub buffer_overflow: u32,
    /// `truncated_buffer()`: traps; a rewind found the overflow mark.
    pub truncated_buffer: u32,
    /// `assert_failed()`: traps (only with `--asserts`).
    pub assert_failed: u32,
}

/// Interned function types the pass appends to the type section.
#[derive(Default)]
pub struct TypeInterner {
    /// Number of types in the input (new ones come after).
    pub base: u32,
    /// Existing function types by signature, reused when they match.
    existing: HashMap<(Vec<ValType>, Vec<ValType>), u32>,
    /// New types, in order.
    pub added: Vec<(Vec<ValType>, Vec<ValType>)>,
    map: HashMap<(Vec<ValType>, Vec<ValType>), u32>,
}

impl TypeInterner {
    /// An interner over the types of `info`.
    pub fn new(info: &ModuleInfo<'_>) -> TypeInterner {
        let mut existing = HashMap::new();
        for (i, t) in info.types.iter().enumerate() {
            if let Some(sig) = t {
                existing
                    .entry((sig.params().to_vec(), sig.results().to_vec()))
                    .or_insert(i as u32);
            }
        }
        TypeInterner {
            base: info.types.len() as u32,
            existing,
            ..TypeInterner::default()
        }
    }

    /// The type index of this signature, adding it if needed.
    pub fn intern(&mut self, params: &[ValType], results: &[ValType]) -> u32 {
        let key = (params.to_vec(), results.to_vec());
        if let Some(&i) = self.existing.get(&key) {
            return i;
        }
        if let Some(&i) = self.map.get(&key) {
            return i;
        }
        let i = self.base + self.added.len() as u32;
        self.added.push(key.clone());
        self.map.insert(key, i);
        i
    }

    /// The type index of a signature already interned.
    pub fn get(&self, params: &[ValType], results: &[ValType]) -> Option<u32> {
        let key = (params.to_vec(), results.to_vec());
        self.existing
            .get(&key)
            .or_else(|| self.map.get(&key))
            .copied()
    }
}

/// Index remapping for operators copied from the input.
#[derive(Clone, Copy)]
pub struct Remap<'c> {
    funcs: &'c [u32],
    globals_from: u32,
    globals_by: u32,
}

impl Reencode for Remap<'_> {
    type Error = Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError<Infallible>> {
        Ok(self.funcs[func as usize])
    }

    fn global_index(&mut self, global: u32) -> Result<u32, ReencodeError<Infallible>> {
        Ok(if global >= self.globals_from {
            global + self.globals_by
        } else {
            global
        })
    }
}

/// What the buffer's overflow function does when a frame does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferGrowth {
    /// Traps: the buffer is what the host gave.
    Fixed,
    /// Asks the host through the grow hook, this table of the output (see
    /// `runtime::GROW_HOOK_EXPORT`).
    HostHook {
        /// Output index of the hook's table.
        table: u32,
    },
    /// Calls this function of the output (the embedded runtime's).
    Call {
        /// Its output index.
        func: u32,
    },
}

/// What an instrumented function becomes.
#[derive(Clone, Copy, Debug)]
pub enum Lowering {
    /// Its resume points unwind into and rewind from the Asyncify buffer.
    Asyncify,
    /// Its `stack_checkpoint` calls become points it resumes at when it
    /// catches a longjmp thrown as a wasm exception (`--sjlj exceptions`).
    Exceptions(ExceptionLowering),
}

/// The output indices an exceptions lowering uses (see
/// `instrument/function/exceptions.rs` for the code it emits).
#[derive(Clone, Copy, Debug)]
pub struct ExceptionLowering {
    /// The tag a longjmp throws: `(param jmp_buf_address i64_value)`.
    pub tag: u32,
    /// Legacy `try`/`catch` instead of `try_table`.
    pub legacy: bool,
    /// `__stack_pointer`, set back to its value at setjmp when a jump lands
    /// (the frames the exception passed through never ran their epilogues).
    pub stack_pointer: u32,
    /// An i64 global counting the invocations that called setjmp: each gets
    /// its own number, written into the jmp_buf, so a jump lands only in the
    /// invocation that filled it.
    pub invocation_counter: u32,
}

/// Where things are in the output module; shared by all function rewrites.
pub struct Ctx<'m> {
    /// Old function index -> new function index.
    pub func_map: Vec<u32>,
    /// Defined globals move up by this much when the state globals are imported.
    pub globals_from: u32,
    /// See `globals_from`.
    pub globals_by: u32,
    /// `__asyncify_state` in the output.
    pub state_global: u32,
    /// `__asyncify_data` in the output.
    pub data_global: u32,
    /// The memory holding the buffer.
    pub memory: u32,
    /// What a frame that does not fit in the buffer does.
    pub growth: BufferGrowth,
    /// Whether that memory is 64-bit (pointers are i64).
    pub memory64: bool,
    /// The added functions.
    pub funcs: RuntimeFuncs,
    /// Block and function types the pass adds.
    pub types: TypeInterner,
    /// `--asserts`.
    pub asserts: bool,
    /// Per input function: an `asyncify.*` runtime import (no assert after
    /// calls to it: changing the state is its purpose).
    pub runtime_import: Vec<bool>,
    /// The module.
    pub info: &'m ModuleInfo<'m>,
    /// What instrumented functions become.
    pub lowering: Lowering,
    /// No function or global index changes: operators are copied as they are
    /// encoded in the input, without decoding and re-encoding them.
    pub identity_indices: bool,
    /// The save and restore helpers of the frame layouts, added as functions
    /// are rewritten.
    pub helpers: frame_helpers::FrameHelpers,
}

impl Ctx<'_> {
    /// A reencoder applying this context's index changes.
    pub fn remap(&self) -> Remap<'_> {
        Remap {
            funcs: &self.func_map,
            globals_from: self.globals_from,
            globals_by: self.globals_by,
        }
    }

    /// The output index of the `i`-th global the pass defines after the two
    /// state globals: they follow every input global and the state globals,
    /// whether those are imported (then counted among the imports) or not.
    pub fn extra_global(&self, i: usize) -> u32 {
        self.info.globals.len() as u32 + self.state_globals() + i as u32
    }

    /// How many state globals the output defines or imports: two for the
    /// Asyncify ABI, none for an exceptions lowering (nothing unwinds).
    pub fn state_globals(&self) -> u32 {
        match self.lowering {
            Lowering::Asyncify => 2,
            Lowering::Exceptions(_) => 0,
        }
    }

    /// The address type of the buffer's memory.
    pub fn address_type(&self) -> ValType {
        if self.memory64 {
            ValType::I64
        } else {
            ValType::I32
        }
    }

    /// Converts a value type.
    pub fn val_type(&self, t: ValType) -> Result<wasm_encoder::ValType> {
        self.remap()
            .val_type(t)
            .map_err(|e| Error::new(ErrorKind::Unsupported, format!("cannot re-encode: {e}")))
    }

    /// The block type for a block from `params` to `results`.
    pub fn block_type(&self, params: &[ValType], results: &[ValType]) -> Result<BlockType> {
        if params.is_empty() {
            match results {
                [] => return Ok(BlockType::Empty),
                [t] => return Ok(BlockType::Result(self.val_type(*t)?)),
                _ => {}
            }
        }
        self.types
            .get(params, results)
            .map(BlockType::FunctionType)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "block type was not interned"))
    }

    fn mem_arg(&self, offset: u32, size: u32) -> wasm_encoder::MemArg {
        function::mem_arg(offset, size, self.memory)
    }

    /// Loads a value of type `t` from `offset` past the address on the stack.
    pub fn load(&self, t: ValType, offset: u32) -> Instruction<'static> {
        let size = plan::type_size(t);
        let m = self.mem_arg(offset, size);
        match t {
            ValType::I32 => Instruction::I32Load(m),
            ValType::I64 => Instruction::I64Load(m),
            ValType::F32 => Instruction::F32Load(m),
            ValType::F64 => Instruction::F64Load(m),
            ValType::V128 => Instruction::V128Load(m),
            ValType::Ref(_) => unreachable!("reference values are refused before layout"),
        }
    }

    /// Stores a value of type `t` at `offset` past the address below it.
    pub fn store(&self, t: ValType, offset: u32) -> Instruction<'static> {
        let size = plan::type_size(t);
        let m = self.mem_arg(offset, size);
        match t {
            ValType::I32 => Instruction::I32Store(m),
            ValType::I64 => Instruction::I64Store(m),
            ValType::F32 => Instruction::F32Store(m),
            ValType::F64 => Instruction::F64Store(m),
            ValType::V128 => Instruction::V128Store(m),
            ValType::Ref(_) => unreachable!("reference values are refused before layout"),
        }
    }
}

/// The rewritten bodies of defined functions (`None`: unchanged) and counts.
pub struct Rewritten {
    /// One entry per defined function.
    pub bodies: Vec<Option<Vec<u8>>>,
    /// Resume points over all functions.
    pub sites: usize,
    /// Calls that unwind but are never resumed, over all functions.
    pub unwind_only: usize,
    /// Frame layouts over all functions.
    pub layouts: usize,
    /// Resume points whose frame holds exactly the locals live there.
    pub exact_sites: usize,
}

/// A function decoded and planned, waiting for its new block types to be
/// interned before it can be emitted.
type Planned<'a> = (body::Body<'a>, Plan, Vec<ValType>);

/// What became of one defined function in the parallel step.
enum Step<'a> {
    /// Unchanged (`None`) or rewritten, with its site and layout counts.
    Done(Option<Vec<u8>>, Counts),
    /// Needs block types not yet in the type section, or frame helpers not
    /// yet added: emitted after interning them.
    Deferred(Box<Planned<'a>>),
}

/// Sites, layouts and exact sites of one plan.
#[derive(Clone, Copy, Default)]
struct Counts {
    sites: usize,
    unwind_only: usize,
    layouts: usize,
    exact_sites: usize,
}

impl Counts {
    fn of(plan: &Plan) -> Counts {
        Counts {
            sites: plan.sites.len(),
            unwind_only: plan.unwind_only.len(),
            layouts: plan.layouts.len(),
            exact_sites: plan.sites.iter().filter(|s| s.exact).count(),
        }
    }
}

/// Defined functions handled together: the unit of progress reports, and the
/// point where block types needed by the deferred functions are interned.
const CHUNK: usize = 256;

/// Rewrites every function that changes (instrumented, or any with `--asserts`).
///
/// Per chunk of functions, in parallel, each function is decoded, planned and
/// emitted in one step, so its decoded body is freed at once and its memory
/// reused for the next on the same thread. The few functions that need a block
/// type the type section does not have yet (block parameters, multi-value), or
/// the helpers of a layout shape not seen before ([`frame_helpers`]), are set
/// aside; their types and helpers are interned in function order, so numbering
/// never depends on scheduling, and they are emitted after.
///
/// `done(n)` is called after each chunk with the number of functions done so
/// far, for progress reports.
pub fn rewrite_functions(
    ctx: &mut Ctx<'_>,
    analysis: &UnwindAnalysis,
    done: &dyn Fn(usize),
) -> Result<Rewritten> {
    let info = ctx.info;
    let mut all = Rewritten {
        bodies: Vec::with_capacity(info.bodies.len()),
        sites: 0,
        unwind_only: 0,
        layouts: 0,
        exact_sites: 0,
    };
    for start in (0..info.bodies.len()).step_by(CHUNK) {
        let range = start..(start + CHUNK).min(info.bodies.len());
        let steps = plan_and_emit(ctx, analysis, range)?;
        let mut deferred: Vec<(usize, Planned<'_>)> = Vec::new();
        let mut bodies: Vec<Option<Vec<u8>>> = Vec::with_capacity(steps.len());
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Done(body, counts) => {
                    all.add(counts);
                    bodies.push(body);
                }
                Step::Deferred(planned) => {
                    all.add(Counts::of(&planned.1));
                    deferred.push((i, *planned));
                    bodies.push(None);
                }
            }
        }
        if !deferred.is_empty() {
            for (_, (_, plan, results)) in &deferred {
                for_each_block_type(plan, results, true, |params, results| {
                    ctx.types.intern(params, results);
                });
                for layout in &plan.layouts {
                    ctx.helpers.intern(&layout.shape(), &mut ctx.types);
                }
            }
            let ctx = &*ctx;
            let emitted = deferred
                .into_par_iter()
                .map(|(i, (body, plan, results))| {
                    emit_one(ctx, analysis, start + i, &body, &plan, &results).map(|b| (i, b))
                })
                .collect::<Result<Vec<_>>>()?;
            for (i, body) in emitted {
                bodies[i] = Some(body);
            }
        }
        all.bodies.extend(bodies);
        done(all.bodies.len());
    }
    Ok(all)
}

impl Rewritten {
    fn add(&mut self, counts: Counts) {
        self.sites += counts.sites;
        self.unwind_only += counts.unwind_only;
        self.layouts += counts.layouts;
        self.exact_sites += counts.exact_sites;
    }
}

/// Decodes, plans and (unless it needs new block types) emits each defined
/// function in `range` that changes.
fn plan_and_emit<'a>(
    ctx: &Ctx<'a>,
    analysis: &UnwindAnalysis,
    range: std::ops::Range<usize>,
) -> Result<Vec<Step<'a>>> {
    let info = ctx.info;
    let (asserts, address_type) = (ctx.asserts, ctx.address_type());
    let imported = info.num_imported_funcs();
    info.bodies[range.clone()]
        .par_iter()
        .zip(range)
        .map_init(FuncValidatorAllocations::default, |allocs, (b, i)| {
            let f = imported + i as u32;
            let instrumented = analysis.instrumented[f as usize];
            if !instrumented && !asserts {
                return Ok(Step::Done(None, Counts::default()));
            }
            let sig = info.func_sig(f);
            let mut validator = info.validator_for(i).into_validator(std::mem::take(allocs));
            let decoded = body::decode(
                b,
                sig.params().len() as u32,
                sig.params(),
                &mut validator,
                plan::wants_stack,
            );
            *allocs = validator.into_allocations();
            let step = (|| {
                let decoded = decoded?;
                let plan = if instrumented {
                    let mut plan =
                        plan::plan(info, analysis, &decoded, sig.results(), address_type)?;
                    if let Lowering::Exceptions(_) = ctx.lowering {
                        plan.for_exceptions(decoded.locals.len() as u32)?;
                    }
                    plan
                } else {
                    Plan::empty()
                };
                let mut interned = plan.layouts.iter().all(|l| ctx.helpers.has(&l.shape()));
                for_each_block_type(&plan, sig.results(), false, |params, results| {
                    interned &= ctx.types.get(params, results).is_some();
                });
                if !interned {
                    let planned = (decoded, plan, sig.results().to_vec());
                    return Ok(Step::Deferred(Box::new(planned)));
                }
                let body = emit_one(ctx, analysis, i, &decoded, &plan, sig.results())?;
                Ok(Step::Done(Some(body), Counts::of(&plan)))
            })();
            step.map_err(|e: Error| e.in_function(info.func_display_name(f)))
        })
        .collect()
}

/// Emits defined function number `i`.
fn emit_one(
    ctx: &Ctx<'_>,
    analysis: &UnwindAnalysis,
    i: usize,
    body: &body::Body<'_>,
    plan: &Plan,
    results: &[ValType],
) -> Result<Vec<u8>> {
    let f = ctx.info.num_imported_funcs() + i as u32;
    let instrumented = analysis.instrumented[f as usize] && plan.unwinds();
    // The in-module runtime changes the state on purpose: no asserts there.
    let asserts = ctx.asserts && !analysis.is_runtime(f);
    function::emit(ctx, body, plan, results, instrumented, asserts)
        .map_err(|e| e.in_function(ctx.info.func_display_name(f)))
}

/// Calls `want` with every block type with parameters or several results
/// (those need a type-section entry) the emitter will ask for in a function.
/// In a fixed order when `ordered` (interning numbers them in call order);
/// checking whether they all exist needs none, and skips sorting the frames.
fn for_each_block_type(
    plan: &Plan,
    results: &[ValType],
    ordered: bool,
    mut want: impl FnMut(&[ValType], &[ValType]),
) {
    let mut want = |params: &[ValType], results: &[ValType]| {
        if !params.is_empty() || results.len() > 1 {
            want(params, results);
        }
    };
    if !plan.unwinds() {
        return;
    }
    want(&[], results);
    let mut frames: Vec<_> = plan.frames.iter().collect();
    if ordered {
        frames.sort_by_key(|(id, _)| **id);
    }
    for (_, frame) in frames {
        for item in frame.items.iter().filter(|it| !it.direct_entry) {
            want(&frame.params, &item.entry_types);
        }
    }
    for site in &plan.sites {
        if site.escapes_handlers {
            want(&site.operands, &site.results);
        }
        if !site.below.is_empty() {
            let kept = kept_across(site);
            want(&kept, &kept);
        }
    }
}

/// The values on the stack after a site's call: the ones below it, then results.
pub fn kept_across(site: &Site) -> Vec<ValType> {
    let mut kept = site.below.clone();
    kept.extend(&site.results);
    kept
}
