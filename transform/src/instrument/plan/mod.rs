//! What to do to one function, decided before any byte is written: its resume
//! points, the frames (blocks) that hold them, the locals each resume point must
//! save, and the fresh locals the rewrite needs.
//!
//! Terms used throughout `instrument/`:
//! - a *site* is a call that can unwind (a resume point), numbered `k = 1..`
//!   in code order;
//! - a *frame* is a sequence of code with its own operand stack: the function
//!   body, a block, a loop body, an arm of an `if`;
//! - an *item* of a frame is a site directly in it, or a construct (block, loop,
//!   if, try_table) in it that holds sites: the places a rewind must jump to.

mod frames;
mod layouts;
mod sites;

use crate::analysis::unwind::UnwindAnalysis;
use crate::error::{Error, Result};
use crate::instrument::body::{Body, StackBefore};
use crate::module_info::ModuleInfo;
use frames::find_frames;
pub use layouts::type_size;
use layouts::{choose_layouts, saved_locals};
use sites::find_sites;
use std::collections::HashMap;
use wasmparser::{BlockType, Operator, ValType};

/// How a call calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// `call` / `return_call`.
    Direct,
    /// `call_indirect` / `return_call_indirect`: the table index is the last operand.
    Indirect,
    /// `call_ref` / `return_call_ref`: never a site, only a call that
    /// unwinds and is never resumed (one that would be resumed is refused:
    /// its function reference would have to be saved across the unwind).
    Ref,
}

/// One resume point.
#[derive(Clone, Debug)]
pub struct Site {
    /// Index of the call operator.
    pub op: u32,
    /// The call index stored in the frame (1-based, in code order).
    pub k: u32,
    /// Direct or indirect.
    pub kind: CallKind,
    /// Whether a callee that reads its real arguments during rewind can be reached.
    pub needs_real_args: bool,
    /// A `return_call*` turned into a call followed by `return`.
    pub tail: bool,
    /// The tail call sits inside a `try_table`: the call is wrapped so that the
    /// callee's exceptions still skip this function's handlers, as they did
    /// when the call was a tail call.
    pub escapes_handlers: bool,
    /// Types on the frame's operand stack below the call's operands.
    pub below: Vec<ValType>,
    /// Types of the call's operands (arguments, then the table index if indirect).
    pub operands: Vec<ValType>,
    /// The call's result types.
    pub results: Vec<ValType>,
    /// Operand producers right before the call that a rewind runs again: pure,
    /// cannot trap, and feed only placeholder arguments.
    pub rerun: usize,
    /// Locals holding `below` on the unwind path and during rewind.
    pub below_locals: Vec<u32>,
    /// Locals holding the operands, when the real ones are needed at rewind
    /// (all operands), or the table index of an indirect call (just that one).
    pub operand_locals: Vec<u32>,
    /// Index into [`Plan::layouts`] of the frame layout this site saves.
    pub layout: usize,
    /// Whether that layout holds exactly what this site needs (else a superset).
    pub exact: bool,
}

/// Identifies a frame: the opener's op index (`u32::MAX` for the function body)
/// and which arm (1 for the `else` arm of an `if`).
pub type FrameId = (u32, u8);

/// An item of a frame: where a rewind jumps to.
#[derive(Clone, Debug)]
pub struct Item {
    /// Op index of the call or of the construct's opener.
    pub op: u32,
    /// The sites inside it, as a range of call indices `lo..=hi`.
    pub lo: u32,
    /// See `lo`.
    pub hi: u32,
    /// Op index where the item's resume block ends: where a rewind re-enters the
    /// frame. For a site, pure operand producers before the call (`local.get`,
    /// constants) are re-run instead of being pushed as placeholders.
    pub entry_op: u32,
    /// The construct opens its frame (no code before it): a rewind simply falls
    /// into it, so it needs no resume block and no dispatch case.
    pub direct_entry: bool,
    /// Types the resume block must produce: the frame's stack at `entry_op`.
    pub entry_types: Vec<ValType>,
    /// For a construct: the construct's parameter types (dummy zeros at rewind).
    pub construct_params: Vec<ValType>,
    /// For an `if` construct: the first call index in its `else` arm, if any.
    pub else_lo: Option<u32>,
    /// For a construct entered with values of the frame below its inputs: locals
    /// that hold those values across the construct, and temporaries.
    pub prespill: Option<Prespill>,
    /// The site, when the item is a call.
    pub site: Option<usize>,
}

/// Values of a frame that sit below a construct holding sites. They would be
/// lost when an unwind branches out of the construct, so the rewrite keeps them
/// in locals around it (rare in compiler output).
#[derive(Clone, Debug)]
pub struct Prespill {
    /// Locals for the values below, bottom first, and their types.
    pub below: Vec<(u32, ValType)>,
    /// Temporaries for the construct's inputs while the values below are stored.
    pub inputs: Vec<(u32, ValType)>,
    /// Temporaries for the construct's results while the values are restored.
    pub results: Vec<(u32, ValType)>,
    /// Op index of the construct's `end`.
    pub end: u32,
}

/// A frame that holds items.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Types on the stack when the frame starts (its block parameters).
    pub params: Vec<ValType>,
    /// The items, in code order.
    pub items: Vec<Item>,
}

/// The locals one group of sites saves, with their offsets in the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `(local, type, offset)`, in [`Shape`] order of their types (biggest
    /// first, so offsets stay aligned), then by local.
    pub slots: Vec<(u32, ValType, u32)>,
    /// Bytes of locals; the call index follows at this offset.
    pub size: u32,
}

/// How many slots of each type a layout has, in slot order: `v128`, `i64`,
/// `f64`, `i32`, `f32`. Layouts of one shape have the same offsets for their
/// slots, whichever locals fill them, so they can share the code that saves
/// and restores them.
pub type Shape = [u32; 5];

/// The storable types in [`Shape`] order: by size, biggest first, so slots
/// laid out in this order stay aligned.
pub const SHAPE_ORDER: [ValType; 5] = [
    ValType::V128,
    ValType::I64,
    ValType::F64,
    ValType::I32,
    ValType::F32,
];

/// The position in a [`Shape`] of a storable type.
pub fn shape_class(t: ValType) -> usize {
    SHAPE_ORDER
        .iter()
        .position(|&o| o == t)
        .expect("reference values are refused before layout")
}

/// The types of a [`Shape`]'s slots, in order.
pub fn shape_types(shape: &Shape) -> Vec<ValType> {
    SHAPE_ORDER
        .iter()
        .zip(shape)
        .flat_map(|(&t, &n)| std::iter::repeat_n(t, n as usize))
        .collect()
}

impl Layout {
    /// The number of slots of each type.
    pub fn shape(&self) -> Shape {
        let mut shape = [0; 5];
        for &(_, t, _) in &self.slots {
            shape[shape_class(t)] += 1;
        }
        shape
    }
}

/// Everything the emitter needs for one function.
pub struct Plan {
    /// The sites, in code order (`sites[k - 1]` has call index `k`).
    pub sites: Vec<Site>,
    /// Op indices of the calls that can unwind but are never resumed (only
    /// `stack_restore` lies beyond them): while unwinding, the function just
    /// leaves after them, saving nothing.
    pub unwind_only: Vec<u32>,
    /// Frames holding items.
    pub frames: HashMap<FrameId, Frame>,
    /// Frame layouts, shared by sites that save the same locals.
    pub layouts: Vec<Layout>,
    /// Types of the locals the rewrite adds, after the original ones.
    pub new_locals: Vec<ValType>,
    /// The local holding the call index being resumed (0 when not rewinding).
    pub resume_local: u32,
    /// The local holding the frame's address in the buffer (under an
    /// exceptions lowering: the address of the jmp_buf a caught jump names).
    pub frame_ptr_local: u32,
    /// Under an exceptions lowering: the locals holding this invocation's
    /// number (0 until it calls setjmp) and the value a caught jump delivers.
    pub exception_locals: Option<(u32, u32)>,
}

impl Plan {
    /// Whether the function has calls that can unwind: it is rewritten.
    pub fn unwinds(&self) -> bool {
        !self.sites.is_empty() || !self.unwind_only.is_empty()
    }

    /// Whether a tail call inside a `try_table` needs the function-level
    /// `catch_all_ref` target that rethrows past the function's handlers.
    pub fn needs_rethrow(&self) -> bool {
        self.sites.iter().any(|s| s.escapes_handlers)
    }

    /// The plan of a function that is not instrumented.
    pub fn empty() -> Plan {
        Plan {
            sites: Vec::new(),
            unwind_only: Vec::new(),
            frames: HashMap::new(),
            layouts: Vec::new(),
            new_locals: Vec::new(),
            resume_local: 0,
            frame_ptr_local: 0,
            exception_locals: None,
        }
    }

    /// Adapts the plan to an exceptions lowering, for a function with
    /// `n_body_locals` locals of its own.
    ///
    /// Under Asyncify one site at a time is unwound or rewound, so sites share
    /// the locals holding their operands and the values below them. A jump
    /// lands at a setjmp long after the call filled them, and another setjmp
    /// of the same function may have run in between: each site gets locals of
    /// its own. Nothing is saved to a buffer, so there are no layouts.
    pub fn for_exceptions(&mut self, n_body_locals: u32) -> Result<()> {
        let fresh = |ty: ValType, new_locals: &mut Vec<ValType>| {
            new_locals.push(ty);
            n_body_locals + new_locals.len() as u32 - 1
        };
        for site in &mut self.sites {
            if site.escapes_handlers || site.operand_locals.len() != site.operands.len() {
                return Err(Error::unsupported(
                    "a call to `stack_checkpoint` that is not a plain call (a tail call, or \
                 one whose operands are not kept); the exceptions lowering cannot resume \
                 at it",
                ));
            }
            for (l, t) in site.below_locals.iter_mut().zip(&site.below) {
                *l = fresh(*t, &mut self.new_locals);
            }
            for (l, t) in site.operand_locals.iter_mut().zip(&site.operands) {
                *l = fresh(*t, &mut self.new_locals);
            }
            site.layout = 0;
            site.exact = true;
        }
        self.layouts.clear();
        let id = fresh(ValType::I64, &mut self.new_locals);
        let val = fresh(ValType::I64, &mut self.new_locals);
        self.exception_locals = Some((id, val));
        Ok(())
    }
}

/// Allocates fresh locals, reusing per-type slots between sites: only one site
/// is ever being unwound or rewound at a time.
struct LocalPool {
    first: u32,
    types: Vec<ValType>,
    by_type: HashMap<ValType, Vec<u32>>,
}

impl LocalPool {
    /// A pool whose locals follow the function's `n_locals` own ones.
    fn after(n_locals: u32) -> LocalPool {
        LocalPool {
            first: n_locals,
            types: Vec::new(),
            by_type: HashMap::new(),
        }
    }

    fn fresh(&mut self, ty: ValType) -> u32 {
        self.types.push(ty);
        self.first + self.types.len() as u32 - 1
    }

    /// The `nth` shared local of type `ty` for the current site.
    fn shared(&mut self, ty: ValType, used: &mut HashMap<ValType, usize>) -> u32 {
        let n = used.entry(ty).or_insert(0);
        let have = self.by_type.get(&ty).map_or(0, |v| v.len());
        if *n == have {
            let l = self.fresh(ty);
            self.by_type.entry(ty).or_default().push(l);
        }
        let l = self.by_type[&ty][*n];
        *n += 1;
        l
    }
}

/// Which operators need their operand stack recorded while decoding.
pub fn wants_stack(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Call { .. }
            | Operator::ReturnCall { .. }
            | Operator::CallIndirect { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. }
            | Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. }
            | Operator::Try { .. }
    )
}

/// The parameter and result types of a block type.
pub fn block_sig(info: &ModuleInfo<'_>, bt: BlockType) -> (Vec<ValType>, Vec<ValType>) {
    match bt {
        BlockType::Empty => (vec![], vec![]),
        BlockType::Type(t) => (vec![], vec![t]),
        BlockType::FuncType(i) => {
            let sig = info.sig(i);
            (sig.params().to_vec(), sig.results().to_vec())
        }
    }
}

/// Whether a reference type admits `ref.null` (non-references trivially do).
fn is_nullable(t: ValType) -> bool {
    match t {
        ValType::Ref(r) => r.is_nullable(),
        _ => true,
    }
}

/// Whether a value of this type can be written to linear memory and zero-filled.
pub fn storable(ty: ValType) -> bool {
    !ty.is_reference_type()
}

/// Decides what to do to one instrumented function.
///
/// Each phase needs the one before: the frames are made of the sites, and what
/// a site saves depends on the frames around it.
pub fn plan(
    info: &ModuleInfo<'_>,
    analysis: &UnwindAnalysis,
    body: &Body<'_>,
    func_results: &[ValType],
    address_type: ValType,
) -> Result<Plan> {
    refuse_non_nullable_results(func_results)?;
    let mut pool = LocalPool::after(body.locals.len() as u32);
    let resume_local = pool.fresh(ValType::I32);
    let frame_ptr_local = pool.fresh(address_type);
    let calls = find_sites(info, analysis, body, &mut pool)?;
    if calls.sites.is_empty() {
        // Never rewound: no resume index, no frame, so none of their locals.
        pool.types.clear();
    }
    let mut sites = calls.sites;
    let frames = find_frames(info, body, &sites, &mut pool)?;
    let saved = saved_locals(body, &sites, &frames.held_across)?;
    let layouts = choose_layouts(&saved, &all_local_types(body, &pool), &mut sites);
    Ok(Plan {
        sites,
        unwind_only: calls.unwind_only,
        frames: frames.frames,
        layouts,
        new_locals: pool.types,
        resume_local,
        frame_ptr_local,
        exception_locals: None,
    })
}

/// Refuses a function whose results include a non-nullable reference: an
/// unwinding function returns placeholder values, and such a type has none.
fn refuse_non_nullable_results(func_results: &[ValType]) -> Result<()> {
    for t in func_results {
        if t.is_reference_type() && !is_nullable(*t) {
            return Err(Error::unsupported(format!(
                "the function returns a non-nullable reference ({}), and an unwinding \
                 function must return a placeholder value",
                fmt_type(*t)
            )));
        }
    }
    Ok(())
}

/// The types of every local once the rewrite is done: the function's own,
/// then the fresh ones. Layouts are chosen last, so none are added after.
fn all_local_types(body: &Body<'_>, pool: &LocalPool) -> Vec<ValType> {
    let mut all_types = body.locals.clone();
    all_types.extend(&pool.types);
    all_types
}

/// The operand stack recorded before op `i`.
fn stack_at<'b>(body: &'b Body<'_>, i: u32) -> &'b StackBefore {
    body.stack_before(i)
        .expect("recorded for every wanted operator")
}

/// A value type as WAT writes it, for messages.
pub fn fmt_type(t: ValType) -> String {
    match t {
        ValType::I32 => "i32".into(),
        ValType::I64 => "i64".into(),
        ValType::F32 => "f32".into(),
        ValType::F64 => "f64".into(),
        ValType::V128 => "v128".into(),
        ValType::Ref(r) => format!("{r}"),
    }
}
