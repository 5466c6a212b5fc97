//! Phase 1 of a plan: the sites, with the operand types around each call.

use super::{fmt_type, is_nullable, stack_at, storable, CallKind, LocalPool, Site};
use crate::analysis::unwind::{CallClass, UnwindAnalysis};
use crate::error::{Error, Result};
use crate::instrument::body::{is_block_opener, Body};
use crate::module_info::ModuleInfo;
use crate::OptionName;
use std::collections::HashMap;
use wasmparser::{Operator, ValType};

/// The calls of a function that can unwind.
pub(super) struct Calls {
    /// The sites: reachable calls that can unwind a stack that is rewound
    /// later, in code order.
    pub sites: Vec<Site>,
    /// Op indices of the reachable calls that can unwind only stacks that are
    /// never rewound (see [`CallClass::rewound`]): they need nothing but to
    /// leave the function while unwinding.
    pub unwind_only: Vec<u32>,
}

/// Finds the sites: the reachable calls that can unwind, in code order, with
/// the locals that hold their operand stack across an unwind; and the calls
/// that unwind but are never resumed.
///
/// Refuses what a rewind could not restore: reference values on the stack
/// across such a call, non-nullable references among the placeholder
/// arguments, and the calls a rewind cannot re-enter.
pub(super) fn find_sites(
    info: &ModuleInfo<'_>,
    analysis: &UnwindAnalysis,
    body: &Body<'_>,
    pool: &mut LocalPool,
) -> Result<Calls> {
    let mut sites = Vec::new();
    let mut unwind_only = Vec::new();
    let mut scopes = Scopes::new();
    for (i, op) in body.ops.iter().enumerate() {
        if scopes.step_over(body, i, op) || scopes.dead() {
            continue;
        }
        let Some(call) = classify_call(info, analysis, body, i, op)? else {
            continue;
        };
        if !call.class.can_unwind || stack_at(body, i as u32).unreachable {
            continue;
        }
        if !call.class.rewound {
            unwind_only.push(i as u32);
            continue;
        }
        let k = sites.len() as u32 + 1;
        sites.push(new_site(info, body, pool, &call, k, scopes.handler())?);
    }
    Ok(Calls { sites, unwind_only })
}

/// The constructs around the operator being walked. Code inside a construct
/// that itself sits in unreachable code never runs: `dead` tracks that, since
/// the validator starts every new block as reachable.
struct Scopes {
    /// Per open construct (the function body first): its code never runs.
    dead: Vec<bool>,
    /// Innermost enclosing exception handler scope: none, `try_table`, legacy `try`.
    handlers: Vec<Option<bool>>,
}

impl Scopes {
    fn new() -> Scopes {
        Scopes {
            dead: vec![false],
            handlers: vec![None],
        }
    }

    /// Follows op `i` if it opens or closes a construct, and says whether it
    /// did: such an operator is never a call.
    fn step_over(&mut self, body: &Body<'_>, i: usize, op: &Operator<'_>) -> bool {
        match op {
            op if is_block_opener(op) => {
                let parent_dead = *self.dead.last().unwrap();
                self.dead
                    .push(parent_dead || stack_at(body, i as u32).unreachable);
                let scope = match op {
                    Operator::TryTable { .. } => Some(false),
                    Operator::Try { .. } => Some(true),
                    _ => *self.handlers.last().unwrap(),
                };
                self.handlers.push(scope);
                true
            }
            Operator::End | Operator::Delegate { .. } => {
                self.dead.pop();
                self.handlers.pop();
                true
            }
            _ => false,
        }
    }

    /// Whether the code here never runs (past the body's `end` too).
    fn dead(&self) -> bool {
        *self.dead.last().unwrap_or(&true)
    }

    /// The innermost enclosing handler scope: `Some(true)` for a legacy `try`,
    /// `Some(false)` for a `try_table`.
    fn handler(&self) -> Option<bool> {
        self.handlers.last().copied().flatten()
    }
}

/// A call operator and what the analysis says about it.
struct Call {
    /// Index of the call operator.
    op: usize,
    class: CallClass,
    kind: CallKind,
    /// The callee's type index.
    ty: u32,
    /// A `return_call*`.
    tail: bool,
}

/// Classifies op `i` if it is a call that could be a site (`None` otherwise).
///
/// A `call_ref` is never a site: one that can unwind a stack that is rewound
/// later, and can run, is refused, since its function reference would have
/// to be saved across the unwind. One whose callees reach `stack_restore`
/// and never `stack_checkpoint` is an unwind-only call like any other.
fn classify_call(
    info: &ModuleInfo<'_>,
    analysis: &UnwindAnalysis,
    body: &Body<'_>,
    i: usize,
    op: &Operator<'_>,
) -> Result<Option<Call>> {
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
            let class = analysis.call_ref(type_index);
            if class.rewound && !body.stack_before(i as u32).is_some_and(|s| s.unreachable) {
                return Err(Error::unsupported(format!(
                    "`call_ref` that can unwind: resuming it needs its function reference \
                     saved across the unwind, which wasm-rewind cannot store yet (use {} if \
                     these calls never unwind, or name this function in {})",
                    OptionName::IgnoreIndirect,
                    OptionName::Remove
                ))
                .at(body.offsets[i]));
            }
            let tail = matches!(op, Operator::ReturnCallRef { .. });
            (class, CallKind::Ref, type_index, tail)
        }
        _ => return Ok(None),
    };
    Ok(Some(Call {
        op: i,
        class,
        kind,
        ty,
        tail,
    }))
}

/// The site of a reachable call that can unwind, with call index `k`.
/// `handler` is the innermost exception handler scope around it.
fn new_site(
    info: &ModuleInfo<'_>,
    body: &Body<'_>,
    pool: &mut LocalPool,
    call: &Call,
    k: u32,
    handler: Option<bool>,
) -> Result<Site> {
    let stack = stack_at(body, call.op as u32);
    let sig = info.sig(call.ty);
    let n_operands = sig.params().len() + usize::from(call.kind == CallKind::Indirect);
    let split = stack.frame_types.len() - n_operands;
    let below = stack.frame_types[..split].to_vec();
    let operands = stack.frame_types[split..].to_vec();
    let saved_operands = saved_operands(call, &operands);
    refuse_unrestorable(body, call, handler, &below, saved_operands, sig.params())?;
    let mut used = HashMap::new();
    let below_locals = below.iter().map(|t| pool.shared(*t, &mut used)).collect();
    let operand_locals = saved_operands
        .iter()
        .map(|t| pool.shared(*t, &mut used))
        .collect();
    Ok(Site {
        op: call.op as u32,
        k,
        kind: call.kind,
        needs_real_args: call.class.needs_real_args,
        tail: call.tail,
        escapes_handlers: call.tail && handler.is_some(),
        rerun: rerun_count(body, call, operands.len()),
        below,
        operands,
        results: sig.results().to_vec(),
        below_locals,
        operand_locals,
        layout: 0,
        exact: false,
    })
}

/// The operands a call saves: all of them when a callee may read its real
/// arguments at rewind, else only an indirect call's table index, which
/// picks the callee again.
fn saved_operands<'o>(call: &Call, operands: &'o [ValType]) -> &'o [ValType] {
    if call.class.needs_real_args {
        operands
    } else if call.kind == CallKind::Indirect {
        &operands[operands.len() - 1..]
    } else {
        &[]
    }
}

/// Refuses a site a rewind could not restore: a reference value it would have
/// to save, a non-nullable reference argument it would have to invent, or a
/// tail call whose exceptions would reach a legacy `try` once it is a plain call.
fn refuse_unrestorable(
    body: &Body<'_>,
    call: &Call,
    handler: Option<bool>,
    below: &[ValType],
    saved_operands: &[ValType],
    params: &[ValType],
) -> Result<()> {
    let at = body.offsets[call.op];
    for t in below.iter().chain(saved_operands) {
        if !storable(*t) {
            return Err(Error::unsupported(format!(
                "a {} value is on the operand stack across a call that can unwind; \
                 reference values cannot be saved to linear memory",
                fmt_type(*t)
            ))
            .at(at));
        }
    }
    for t in params {
        if !call.class.needs_real_args && t.is_reference_type() && !is_nullable(*t) {
            return Err(Error::unsupported(format!(
                "a call that can unwind takes a non-nullable reference ({}), for which \
                 a rewind has no placeholder",
                fmt_type(*t)
            ))
            .at(at));
        }
    }
    if call.tail && handler == Some(true) {
        return Err(Error::unsupported(
            "a `return_call` that can unwind inside a legacy `try` block: as a plain \
             call its exceptions would reach this function's handlers",
        )
        .at(at));
    }
    Ok(())
}

/// How many of the `n_operands` producers right before the call a rewind runs
/// again. Arguments of an instrumented callee are placeholders at rewind, so
/// the pure ops producing them can run again instead of being skipped.
fn rerun_count(body: &Body<'_>, call: &Call, n_operands: usize) -> usize {
    let i = call.op;
    let mut rerun = 0;
    if !call.class.needs_real_args && call.kind == CallKind::Direct {
        while rerun < n_operands && i > rerun && is_pure_push(&body.ops[i - 1 - rerun]) {
            rerun += 1;
        }
    }
    rerun
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
