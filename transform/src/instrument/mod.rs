//! Rewrite phase: plan each instrumented function, then emit it, in parallel.
//!
//! Block types with parameters need entries in the type section, and their
//! indices must not depend on thread scheduling: planning (parallel) collects
//! the signatures, interning (sequential, in function order) numbers them, and
//! emission (parallel) only looks them up.

pub mod body;
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
    /// `pop_index() -> k`
    pub pop_index: u32,
    /// `pop_frame(size) -> p`
    pub pop_frame: u32,
    /// `buffer_overflow()`: traps; its name is the diagnostic.
    pub buffer_overflow: u32,
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
    /// Frame layouts over all functions.
    pub layouts: usize,
    /// Resume points whose frame holds exactly the locals live there.
    pub exact_sites: usize,
}

type Planned<'a> = Option<(body::Body<'a>, Plan, Vec<ValType>)>;

/// Defined functions planned, interned and emitted together: bounds the
/// decoded bodies held at once while keeping type numbering deterministic.
const CHUNK: usize = 256;

/// Rewrites every function that changes (instrumented, or any with `--asserts`):
/// per chunk of functions, plan in parallel, intern the block types in function
/// order, emit in parallel.
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
        layouts: 0,
        exact_sites: 0,
    };
    for start in (0..info.bodies.len()).step_by(CHUNK) {
        let range = start..(start + CHUNK).min(info.bodies.len());
        let planned = plan_functions(ctx, analysis, range)?;
        intern_block_types(&mut ctx.types, &planned);
        let chunk = emit_functions(ctx, analysis, start, planned)?;
        all.bodies.extend(chunk.bodies);
        all.sites += chunk.sites;
        all.layouts += chunk.layouts;
        all.exact_sites += chunk.exact_sites;
        done(all.bodies.len());
    }
    Ok(all)
}

/// Plans the defined functions in `range` that change.
fn plan_functions<'a>(
    ctx: &Ctx<'a>,
    analysis: &UnwindAnalysis,
    range: std::ops::Range<usize>,
) -> Result<Vec<Planned<'a>>> {
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
                return Ok(None);
            }
            let sig = info.func_sig(f);
            let mut validator = info.validator_for(i).into_validator(std::mem::take(allocs));
            let result = (|| {
                let decoded = body::decode(
                    b,
                    sig.params().len() as u32,
                    sig.params(),
                    &mut validator,
                    plan::wants_stack,
                )?;
                let plan = if instrumented {
                    plan::plan(info, analysis, &decoded, sig.results(), address_type)?
                } else {
                    Plan::empty()
                };
                Ok(Some((decoded, plan, sig.results().to_vec())))
            })();
            *allocs = validator.into_allocations();
            result.map_err(|e: Error| e.in_function(info.func_display_name(f)))
        })
        .collect()
}

/// Interns every block type the emitter will ask for, in function order.
fn intern_block_types(types: &mut TypeInterner, planned: &[Planned<'_>]) {
    let mut want = |params: &[ValType], results: &[ValType]| {
        if !params.is_empty() || results.len() > 1 {
            types.intern(params, results);
        }
    };
    for (_, plan, results) in planned.iter().flatten() {
        if plan.sites.is_empty() {
            continue;
        }
        want(&[], results);
        let mut frames: Vec<_> = plan.frames.iter().collect();
        frames.sort_by_key(|(id, _)| **id);
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
}

/// The values on the stack after a site's call: the ones below it, then results.
pub fn kept_across(site: &Site) -> Vec<ValType> {
    let mut kept = site.below.clone();
    kept.extend(&site.results);
    kept
}

/// Emits planned functions; `first` is the defined-function number of the first.
fn emit_functions(
    ctx: &Ctx<'_>,
    analysis: &UnwindAnalysis,
    first: usize,
    planned: Vec<Planned<'_>>,
) -> Result<Rewritten> {
    let imported = ctx.info.num_imported_funcs();
    let sites = planned
        .iter()
        .flatten()
        .map(|(_, p, _)| p.sites.len())
        .sum();
    let exact_sites = planned
        .iter()
        .flatten()
        .map(|(_, p, _)| p.sites.iter().filter(|s| s.exact).count())
        .sum();
    let layouts = planned
        .iter()
        .flatten()
        .map(|(_, p, _)| p.layouts.len())
        .sum();
    let bodies = planned
        .into_par_iter()
        .enumerate()
        .map(|(i, planned)| {
            let f = imported + (first + i) as u32;
            let Some((body, plan, results)) = planned else {
                return Ok(None);
            };
            let instrumented = analysis.instrumented[f as usize] && !plan.sites.is_empty();
            // The in-module runtime changes the state on purpose: no asserts there.
            let asserts = ctx.asserts && !analysis.is_runtime(f);
            function::emit(ctx, &body, &plan, &results, instrumented, asserts)
                .map(Some)
                .map_err(|e| e.in_function(ctx.info.func_display_name(f)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Rewritten {
        bodies,
        sites,
        layouts,
        exact_sites,
    })
}
