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

use crate::analysis::liveness::live_after;
use crate::analysis::unwind::{CallClass, UnwindAnalysis};
use crate::error::{Error, Result};
use crate::instrument::body::{is_block_opener, Body};
use crate::module_info::ModuleInfo;
use std::collections::HashMap;
use wasmparser::{BlockType, Operator, ValType};

/// How a site calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// `call` / `return_call`.
    Direct,
    /// `call_indirect` / `return_call_indirect`: the table index is the last operand.
    Indirect,
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
    /// `(local, type, offset)`, biggest types first so offsets stay aligned.
    pub slots: Vec<(u32, ValType, u32)>,
    /// Bytes of locals; the call index follows at this offset.
    pub size: u32,
}

/// Everything the emitter needs for one function.
pub struct Plan {
    /// The sites, in code order (`sites[k - 1]` has call index `k`).
    pub sites: Vec<Site>,
    /// Frames holding items.
    pub frames: HashMap<FrameId, Frame>,
    /// Frame layouts, shared by sites that save the same locals.
    pub layouts: Vec<Layout>,
    /// Types of the locals the rewrite adds, after the original ones.
    pub new_locals: Vec<ValType>,
    /// The local holding the call index being resumed (0 when not rewinding).
    pub resume_local: u32,
    /// The local holding the frame's address in the buffer.
    pub frame_ptr_local: u32,
}

impl Plan {
    /// Whether a tail call inside a `try_table` needs the function-level
    /// `catch_all_ref` target that rethrows past the function's handlers.
    pub fn needs_rethrow(&self) -> bool {
        self.sites.iter().any(|s| s.escapes_handlers)
    }

    /// The plan of a function that is not instrumented.
    pub fn empty() -> Plan {
        Plan {
            sites: Vec::new(),
            frames: HashMap::new(),
            layouts: Vec::new(),
            new_locals: Vec::new(),
            resume_local: 0,
            frame_ptr_local: 0,
        }
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

fn opener_block_type(op: &Operator<'_>) -> Option<BlockType> {
    match op {
        Operator::Block { blockty }
        | Operator::Loop { blockty }
        | Operator::If { blockty }
        | Operator::Try { blockty } => Some(*blockty),
        Operator::TryTable { try_table } => Some(try_table.ty),
        _ => None,
    }
}

/// Whether a reference type admits `ref.null` (non-references trivially do).
fn is_nullable(t: ValType) -> bool {
    match t {
        ValType::Ref(r) => r.is_nullable(),
        _ => true,
    }
}

/// Operators that push one value, read nothing but locals, globals or
/// immediates, and cannot trap: safe to run again during a rewind.
fn is_pure_push(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::LocalGet { .. }
            | Operator::GlobalGet { .. }
            | Operator::I32Const { .. }
            | Operator::I64Const { .. }
            | Operator::F32Const { .. }
            | Operator::F64Const { .. }
            | Operator::RefNull { .. }
            | Operator::RefFunc { .. }
    )
}

/// Whether a value of this type can be written to linear memory and zero-filled.
pub fn storable(ty: ValType) -> bool {
    !ty.is_reference_type()
}

/// Decides what to do to one instrumented function.
pub fn plan(
    info: &ModuleInfo<'_>,
    analysis: &UnwindAnalysis,
    body: &Body<'_>,
    func_results: &[ValType],
    address_type: ValType,
) -> Result<Plan> {
    let stack_at = |i: u32| {
        body.stack_before(i)
            .expect("recorded for every wanted operator")
    };
    let n_locals = body.locals.len() as u32;
    let mut pool = LocalPool {
        first: n_locals,
        types: Vec::new(),
        by_type: HashMap::new(),
    };
    let resume_local = pool.fresh(ValType::I32);
    let frame_ptr_local = pool.fresh(address_type);

    for t in func_results {
        if t.is_reference_type() && !is_nullable(*t) {
            return Err(Error::unsupported(format!(
                "the function returns a non-nullable reference ({}), and an unwinding \
                 function must return a placeholder value",
                fmt_type(*t)
            )));
        }
    }

    // 1. Sites, with the operand types around the call. Code inside a construct
    // that itself sits in unreachable code never runs: `dead` tracks that, since
    // the validator starts every new block as reachable.
    let mut sites = Vec::new();
    let mut dead = vec![false];
    // Innermost enclosing exception handler scope: none, `try_table`, legacy `try`.
    let mut handlers: Vec<Option<bool>> = vec![None];
    for (i, op) in body.ops.iter().enumerate() {
        match op {
            op if is_block_opener(op) => {
                let parent_dead = *dead.last().unwrap();
                dead.push(parent_dead || stack_at(i as u32).unreachable);
                let scope = match op {
                    Operator::TryTable { .. } => Some(false),
                    Operator::Try { .. } => Some(true),
                    _ => *handlers.last().unwrap(),
                };
                handlers.push(scope);
                continue;
            }
            Operator::End | Operator::Delegate { .. } => {
                dead.pop();
                handlers.pop();
                continue;
            }
            _ => {}
        }
        if *dead.last().unwrap_or(&true) {
            continue;
        }
        let (class, kind, ty, tail): (CallClass, CallKind, u32, bool) = match *op {
            Operator::Call { function_index } => (
                analysis.direct(function_index),
                CallKind::Direct,
                info.func_types[function_index as usize],
                false,
            ),
            Operator::ReturnCall { function_index } => (
                analysis.direct(function_index),
                CallKind::Direct,
                info.func_types[function_index as usize],
                true,
            ),
            Operator::CallIndirect {
                type_index,
                table_index,
            } => (
                analysis.indirect(type_index, table_index),
                CallKind::Indirect,
                type_index,
                false,
            ),
            Operator::ReturnCallIndirect {
                type_index,
                table_index,
            } => (
                analysis.indirect(type_index, table_index),
                CallKind::Indirect,
                type_index,
                true,
            ),
            Operator::CallRef { type_index } | Operator::ReturnCallRef { type_index } => {
                if analysis.call_ref(type_index).can_unwind
                    && !body.stack_before(i as u32).is_some_and(|s| s.unreachable)
                {
                    return Err(Error::unsupported(
                        "`call_ref` that can unwind: resuming it needs its function \
                         reference saved across the unwind, which wasm-rewind cannot \
                         store yet (use --ignore-indirect if these calls never unwind, \
                         or --remove this function)",
                    )
                    .at(body.offsets[i]));
                }
                continue;
            }
            _ => continue,
        };
        if !class.can_unwind {
            continue;
        }
        let stack = stack_at(i as u32);
        if stack.unreachable {
            continue;
        }
        let sig = info.sig(ty);
        let n_operands = sig.params().len() + usize::from(kind == CallKind::Indirect);
        let split = stack.frame_types.len() - n_operands;
        let below = stack.frame_types[..split].to_vec();
        let operands = stack.frame_types[split..].to_vec();
        let saved_operands: &[ValType] = if class.needs_real_args {
            &operands
        } else if kind == CallKind::Indirect {
            &operands[operands.len() - 1..]
        } else {
            &[]
        };
        for t in below.iter().chain(saved_operands) {
            if !storable(*t) {
                return Err(Error::unsupported(format!(
                    "a {} value is on the operand stack across a call that can unwind; \
                     reference values cannot be saved to linear memory",
                    fmt_type(*t)
                ))
                .at(body.offsets[i]));
            }
        }
        for t in sig.params() {
            if !class.needs_real_args && t.is_reference_type() && !is_nullable(*t) {
                return Err(Error::unsupported(format!(
                    "a call that can unwind takes a non-nullable reference ({}), for which \
                     a rewind has no placeholder",
                    fmt_type(*t)
                ))
                .at(body.offsets[i]));
            }
        }
        let mut used = HashMap::new();
        let below_locals = below.iter().map(|t| pool.shared(*t, &mut used)).collect();
        let operand_locals = saved_operands
            .iter()
            .map(|t| pool.shared(*t, &mut used))
            .collect();
        let escapes_handlers = tail && handlers.last().copied().flatten().is_some();
        if tail && handlers.last().copied().flatten() == Some(true) {
            return Err(Error::unsupported(
                "a `return_call` that can unwind inside a legacy `try` block: as a plain \
                 call its exceptions would reach this function's handlers",
            )
            .at(body.offsets[i]));
        }
        // Arguments of an instrumented callee are placeholders at rewind, so
        // the pure ops producing them can run again instead of being skipped.
        let mut rerun = 0;
        if !class.needs_real_args && kind == CallKind::Direct {
            while rerun < operands.len() && i > rerun && is_pure_push(&body.ops[i - 1 - rerun]) {
                rerun += 1;
            }
        }
        sites.push(Site {
            op: i as u32,
            k: sites.len() as u32 + 1,
            kind,
            needs_real_args: class.needs_real_args,
            tail,
            escapes_handlers,
            rerun,
            below,
            operands,
            results: sig.results().to_vec(),
            below_locals,
            operand_locals,
            layout: 0,
            exact: false,
        });
    }

    // 2. Frames and items: walk the structure with a stack of open frames.
    let mut frames: HashMap<FrameId, Frame> = HashMap::new();
    // (frame id, index of the construct item in its parent frame, if any)
    struct Open {
        id: FrameId,
        opener: u32,
        first_site: usize,
    }
    let mut open = vec![Open {
        id: (u32::MAX, 0),
        opener: u32::MAX,
        first_site: 0,
    }];
    let mut next_site = 0usize;
    let mut extra_live: Vec<Vec<u32>> = vec![Vec::new(); sites.len()];
    for (i, op) in body.ops.iter().enumerate() {
        let i = i as u32;
        if next_site < sites.len() && sites[next_site].op == i {
            let site = &sites[next_site];
            let parent = open.last().unwrap().id;
            let mut entry_types = site.below.clone();
            entry_types.extend(&site.operands[..site.operands.len() - site.rerun]);
            frames.entry(parent).or_insert_with(|| Frame {
                params: Vec::new(),
                items: Vec::new(),
            });
            frames.get_mut(&parent).unwrap().items.push(Item {
                op: i,
                entry_op: i - site.rerun as u32,
                direct_entry: false,
                lo: site.k,
                hi: site.k,
                entry_types,
                construct_params: Vec::new(),
                else_lo: None,
                prespill: None,
                site: Some(next_site),
            });
            next_site += 1;
            continue;
        }
        match op {
            op if is_block_opener(op) => {
                open.push(Open {
                    id: (i, 0),
                    opener: i,
                    first_site: next_site,
                });
            }
            Operator::Else => {
                let top = open.last_mut().unwrap();
                top.id = (top.opener, 1);
            }
            Operator::Catch { .. } | Operator::CatchAll | Operator::Delegate { .. } => {
                let top = open.last().unwrap();
                if next_site > top.first_site {
                    return Err(Error::unsupported(
                        "a call that can unwind inside a legacy `try` block: a rewind \
                         cannot re-enter a `catch` clause",
                    )
                    .at(body.offsets[i as usize]));
                }
                if matches!(op, Operator::Delegate { .. }) {
                    open.pop();
                }
            }
            Operator::End if open.len() > 1 => {
                let closed = open.pop().unwrap();
                if next_site == closed.first_site {
                    continue;
                }
                // The construct holds sites: it is an item of its parent frame.
                let opener = closed.opener;
                let opener_op = &body.ops[opener as usize];
                let stack = stack_at(opener);
                let (params, _) = block_sig(info, opener_block_type(opener_op).unwrap());
                let n_inputs = params.len() + usize::from(matches!(opener_op, Operator::If { .. }));
                let split = stack.frame_types.len() - n_inputs;
                let inputs = stack.frame_types[split..].to_vec();
                let below: Vec<ValType> = stack.frame_types[..split].to_vec();
                debug_assert!(!stack.unreachable, "dead constructs hold no sites");
                let else_lo = match body.else_of.get(opener as usize) {
                    Some(&e) if e != u32::MAX => sites[closed.first_site..next_site]
                        .iter()
                        .find(|s| s.op > e)
                        .map(|s| s.k),
                    _ => None,
                };
                let prespill = if below.is_empty() {
                    None
                } else {
                    for t in &below {
                        if !storable(*t) {
                            return Err(Error::unsupported(format!(
                                "a {} value is on the operand stack across a block holding \
                                 a call that can unwind",
                                fmt_type(*t)
                            ))
                            .at(body.offsets[opener as usize]));
                        }
                    }
                    let (_, results) = block_sig(info, opener_block_type(opener_op).unwrap());
                    let p = Prespill {
                        below: below.iter().map(|t| (pool.fresh(*t), *t)).collect(),
                        inputs: inputs.iter().map(|t| (pool.fresh(*t), *t)).collect(),
                        results: results.iter().map(|t| (pool.fresh(*t), *t)).collect(),
                        end: i,
                    };
                    for live in &mut extra_live[closed.first_site..next_site] {
                        live.extend(p.below.iter().map(|(l, _)| *l));
                    }
                    Some(p)
                };
                let parent = open.last().unwrap().id;
                frames.entry(parent).or_insert_with(|| Frame {
                    params: Vec::new(),
                    items: Vec::new(),
                });
                frames.get_mut(&parent).unwrap().items.push(Item {
                    op: opener,
                    entry_op: opener,
                    direct_entry: false,
                    lo: sites[closed.first_site].k,
                    hi: sites[next_site - 1].k,
                    entry_types: inputs,
                    construct_params: params,
                    else_lo,
                    prespill,
                    site: None,
                });
            }
            _ => {}
        }
    }
    // Items are pushed when constructs close, so a frame's items may be out of
    // order: sort by position.
    for (id, frame) in frames.iter_mut() {
        frame.items.sort_by_key(|it| it.op);
        if id.0 != u32::MAX {
            let (params, _) = block_sig(info, opener_block_type(&body.ops[id.0 as usize]).unwrap());
            frame.params = params;
        }
        let frame_start = match *id {
            (u32::MAX, _) => 0,
            (opener, 0) => opener + 1,
            (opener, _) => body.else_of[opener as usize] + 1,
        };
        let first = &mut frame.items[0];
        first.direct_entry = first.site.is_none()
            && first.prespill.is_none()
            && first.op == frame_start
            && matches!(
                body.ops[first.op as usize],
                Operator::Block { .. }
                    | Operator::Loop { .. }
                    | Operator::TryTable { .. }
                    | Operator::Try { .. }
            );
    }

    // 3. Liveness and layouts.
    let points: Vec<u32> = sites.iter().map(|s| s.op).collect();
    let live = live_after(body, &points);
    let mut all_types = body.locals.clone();
    all_types.extend(&pool.types);
    let mut sets: Vec<Vec<u32>> = Vec::with_capacity(sites.len());
    for (s, live) in sites.iter().zip(&live) {
        let mut set: Vec<u32> = live.iter().collect();
        for &l in &set {
            let t = body.locals[l as usize];
            if !storable(t) {
                return Err(Error::unsupported(format!(
                    "local {l} holds a {} value that is live across a call that can unwind; \
                     reference values cannot be saved to linear memory",
                    fmt_type(t)
                ))
                .at(body.offsets[s.op as usize]));
            }
        }
        set.extend(&s.below_locals);
        set.extend(&s.operand_locals);
        set.extend(&extra_live[s.k as usize - 1]);
        set.sort_unstable();
        set.dedup();
        sets.push(set);
    }
    let layouts = choose_layouts(&sets, &all_types, &mut sites);

    Ok(Plan {
        sites,
        frames,
        layouts,
        new_locals: pool.types,
        resume_local,
        frame_ptr_local,
    })
}

/// Bytes a value of this type takes in a frame.
pub fn type_size(t: ValType) -> u32 {
    match t {
        ValType::I32 | ValType::F32 => 4,
        ValType::I64 | ValType::F64 => 8,
        ValType::V128 => 16,
        ValType::Ref(_) => unreachable!("reference values are refused before layout"),
    }
}

fn make_layout(set: &[u32], types: &[ValType]) -> Layout {
    let mut locals: Vec<(u32, ValType)> = set.iter().map(|&l| (l, types[l as usize])).collect();
    locals.sort_by_key(|&(l, t)| (std::cmp::Reverse(type_size(t)), l));
    let mut offset = 0;
    let slots = locals
        .into_iter()
        .map(|(l, t)| {
            let o = offset;
            offset += type_size(t);
            (l, t, o)
        })
        .collect();
    Layout {
        slots,
        size: offset,
    }
}

/// Most layouts one function gets; sites beyond share one union layout, so a
/// function with thousands of distinct live sets stays linear.
const MAX_LAYOUTS: usize = 32;

/// Groups sites into layouts. Each site saves the locals live after it, except
/// that a set is folded into a bigger layout that contains it when that adds at
/// most `slack` slots (a few extra bytes at unwind for one less copy of the
/// save and restore code).
fn choose_layouts(sets: &[Vec<u32>], types: &[ValType], sites: &mut [Site]) -> Vec<Layout> {
    let mut distinct: Vec<&Vec<u32>> = sets.iter().collect();
    distinct.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    distinct.dedup();
    let slack = |n: usize| 2 + n / 4;
    // Chosen layouts (as sorted local lists), and the layout of each distinct set.
    let mut chosen: Vec<Vec<u32>> = Vec::new();
    let mut layout_of: HashMap<&Vec<u32>, usize> = HashMap::new();
    for set in distinct {
        let fits = chosen
            .iter()
            .position(|l| l.len() - set.len() <= slack(set.len()) && is_subset(set, l));
        let l = match fits {
            Some(l) => l,
            None if chosen.len() < MAX_LAYOUTS => {
                chosen.push(set.clone());
                chosen.len() - 1
            }
            None => {
                // Too many layouts: widen the last one to hold this set too.
                let last = chosen.last_mut().unwrap();
                last.extend(set);
                last.sort_unstable();
                last.dedup();
                chosen.len() - 1
            }
        };
        layout_of.insert(set, l);
    }
    // Separate layouts cost code; when they would cost much more than one
    // union layout for the function, the sets are close enough to share it.
    let code = |n_slots: usize| n_slots * BYTES_PER_SLOT + BYTES_PER_LAYOUT;
    let separate: usize = chosen.iter().map(|l| code(l.len())).sum();
    let mut union: Vec<u32> = chosen.concat();
    union.sort_unstable();
    union.dedup();
    if chosen.len() > 1 && separate * 100 > code(union.len()) * LAYOUT_CODE_BUDGET {
        for (s, set) in sites.iter_mut().zip(sets) {
            s.layout = 0;
            s.exact = union == *set;
        }
        return vec![make_layout(&union, types)];
    }
    for (s, set) in sites.iter_mut().zip(sets) {
        s.layout = layout_of[set];
        s.exact = chosen[s.layout] == *set;
    }
    chosen.iter().map(|l| make_layout(l, types)).collect()
}

/// Separate layouts may cost up to this percentage of the code of one union
/// layout. Measured on Lua 5.4 (every import unwinding): 100 gives 614 layouts
/// and 452 KB, 150 gives 747 layouts and 458 KB, unlimited 1072 and 489 KB.
const LAYOUT_CODE_BUDGET: usize = 150;

/// Bytes of code to save and restore one local (get/load, store/set, memarg).
const BYTES_PER_SLOT: usize = 14;
/// Bytes of code per layout besides its slots (push/pop calls, branches, blocks).
const BYTES_PER_LAYOUT: usize = 20;

/// Whether sorted `a` is a subset of sorted `b`.
fn is_subset(a: &[u32], b: &[u32]) -> bool {
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j == b.len() || b[j] != x {
            return false;
        }
    }
    true
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
