//! Rewrites one function according to its [`Plan`].
//!
//! The shape of an instrumented function (WAT sketch; `K` is a call index):
//!
//! ```wat
//! (func $f (param ...) (result ...)
//!   (block $unwound
//!     (block $save_layout_n (result i32) ... (block $save_layout_1 (result i32)
//!       (block $body (result ...)
//!         ;; a frame (block, loop body, if arm) holding resume points starts
//!         ;; with nested blocks ending just before each of them, and a dispatch
//!         ;; that runs only while rewinding (state 2, which ends inside the
//!         ;; resumed call):
//!         (block $r2 (block $r1
//!             (if (global.get $__asyncify_state)      ;; 0 or 2 at entry
//!               (then
//!                 ;; the body's first dispatch also holds the prologue: pop
//!                 ;; the call index, then the saved locals of its layout
//!                 (local.set $resume (call $pop_index))
//!                 ;; one layout: restore it; several: br_table (K -> layout)
//!                 ;; then (call $restore_<shape>) local.sets... (see
//!                 ;; frame_helpers; big layouts: pop_frame and loads inline)
//!                 ;; then by $resume: push the saved stack values,
//!                 (br $r1 or $r2)))
//!             ...code before site 1...)
//!           (call $g)                                          ;; site 1
//!           (br_if $save_layout_1 (i32.const 1) (global.get $__asyncify_state))
//!           (drop)
//!           ...code before site 2...)
//!         (call $h) ...)
//!       (return))
//!     ;; save_layout_1: local.gets; (call $save_<shape>) (K is on the
//!     ;; stack; big layouts: push_frame and stores inline); (br $unwound)
//!     ...)
//!   zeros of the result types)
//! ```
//!
//! The prologue shares the state test of the body's first dispatch when
//! nothing comes between them (else it is an `if` of its own before the first
//! operator). Besides one test less on every call, the restored locals then
//! flow only to the resume points, not into the normal path, so they do not
//! keep the function's parameters alive across the prologue's calls.
//!
//! A `block` or `loop` that opens its frame is entered by falling through, and
//! the enclosing frame hands its dispatch cases down to it; so a chain of
//! nested blocks (every C `switch` compiles to one) costs one state test where
//! it is entered, not one per block. A call that opens its frame, with nothing
//! before it but the operand producers a rewind runs again, is entered by
//! falling through too, and needs no dispatch. On the normal path an
//! instrumented function pays one state test at entry, one `global.get`+`if`
//! per entry into another frame with a dispatch, and a `global.get`+`br_if`
//! after each call that can unwind. Nothing else changes.
//!
//! A call that can unwind but is never resumed ([`Plan::unwind_only`]: only
//! `stack_restore` lies beyond it) is followed by `(br_if $unwound
//! (global.get $__asyncify_state))` alone, which saves nothing; a function
//! with no other such calls has no prologue, dispatch or save blocks.

use crate::error::{Error, ErrorKind, Result};
use crate::instrument::body::{is_block_opener, Body};
use crate::instrument::plan::{CallKind, FrameId, Item, Plan, Prespill};
use crate::instrument::{Ctx, Lowering};

mod exceptions;
use std::borrow::Cow;
use std::collections::HashMap;
use wasm_encoder::reencode::Reencode;
use wasm_encoder::{BlockType, Function, Instruction, MemArg};
use wasmparser::{Operator, ValType};

/// A label on the emitter's control stack: one of the input's own blocks, or one
/// the rewrite added (with an id to find it by).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    Orig,
    Synth(u32),
}

/// The emitter's control stack, with O(1) lookups of both kinds of label so
/// deep nesting costs nothing per branch.
#[derive(Default)]
struct Labels {
    stack: Vec<Label>,
    /// Positions in `stack` of the input's own labels, bottom first.
    orig: Vec<usize>,
    /// Position in `stack` of each synthetic label, by id (ids are small and
    /// dense: a vector, not a map, since every branch the rewrite adds looks
    /// one up).
    synth: Vec<u32>,
}

impl Labels {
    fn push(&mut self, label: Label) {
        match label {
            Label::Orig => self.orig.push(self.stack.len()),
            Label::Synth(id) => {
                let id = id as usize;
                if self.synth.len() <= id {
                    self.synth.resize(id + 1, u32::MAX);
                }
                self.synth[id] = self.stack.len() as u32;
            }
        }
        self.stack.push(label);
    }

    fn pop(&mut self) {
        match self.stack.pop() {
            Some(Label::Orig) => {
                self.orig.pop();
            }
            Some(Label::Synth(id)) => {
                self.synth[id as usize] = u32::MAX;
            }
            None => unreachable!("more ends than blocks"),
        }
    }

    fn top(&self) -> Option<&Label> {
        self.stack.last()
    }

    /// Depth of the synthetic label `id` from the top.
    fn depth_of(&self, id: u32) -> u32 {
        let pos = self.synth[id as usize];
        debug_assert_ne!(pos, u32::MAX, "label {id} is not open");
        (self.stack.len() - 1 - pos as usize) as u32
    }

    /// Maps a relative depth of the input onto the rewritten control stack.
    fn remap(&self, depth: u32) -> u32 {
        let pos = self.orig[self.orig.len() - 1 - depth as usize];
        (self.stack.len() - 1 - pos) as u32
    }
}

/// One dispatch case: a site, or one arm of a construct item, with the call
/// indices `lo..=hi` that lead to it.
struct Case<'p> {
    item: &'p Item,
    resume: u32,
    then_arm: bool,
    lo: u32,
    hi: u32,
}

/// In [`Emitter::site_at`]: the op is a call that unwinds but is never
/// resumed.
const UNWIND_ONLY: u32 = u32::MAX - 1;

struct Emitter<'c, 'a> {
    ctx: &'c Ctx<'c>,
    body: &'c Body<'a>,
    plan: &'c Plan,
    out: Function,
    labels: Labels,
    next_id: u32,
    /// Label ids of the save blocks, per layout.
    save_labels: Vec<u32>,
    /// Label of the block that rethrows exceptions caught around converted
    /// tail calls, outside every handler of the function.
    rethrow_label: Option<u32>,
    /// Per op index: the label id of the resume block that ends there, or
    /// `u32::MAX`. Dense, as is `site_at`: both are read at every operator.
    resume_ends: Vec<u32>,
    /// Per op index: the site whose call it is, [`UNWIND_ONLY`] for a call
    /// in [`Plan::unwind_only`], or `u32::MAX`.
    site_at: Vec<u32>,
    /// Label of the block an unwinding function leaves by (`$unwound`).
    unwound: u32,
    /// Prespilled constructs by the op index of their opener and of their `end`.
    prespill_open: HashMap<u32, &'c Prespill>,
    prespill_close: HashMap<u32, &'c Prespill>,
    /// The function's result types.
    results: &'c [ValType],
    /// Whether to check after each call that nothing started unwinding.
    asserts: bool,
    /// Dispatch cases handed down by enclosing frames to the frame that opens
    /// next (see [`Emitter::frame_header`]).
    deferred: Vec<Case<'c>>,
    /// The rewind's prologue ([`Emitter::restore`]) is still to be emitted:
    /// set while the body's first frame header is emitted.
    prologue_pending: bool,
}

/// Emits the rewritten body of a function: instrumented per `plan` when
/// `instrumented`, else unchanged but for `--asserts` checks after its calls.
pub fn emit(
    ctx: &Ctx<'_>,
    body: &Body<'_>,
    plan: &Plan,
    results: &[ValType],
    instrumented: bool,
    asserts: bool,
) -> Result<Vec<u8>> {
    // Engines (and wasmparser, which keeps its limit private) refuse a
    // function with more than 50,000 locals; say so rather than emit a
    // module that fails validation.
    let total = body.locals.len() + plan.new_locals.len();
    let limit = 50_000;
    if total > limit {
        return Err(Error::unsupported(format!(
            "instrumenting needs {} more locals, which makes {total}, over the \
             {limit} locals a function may have",
            plan.new_locals.len()
        )));
    }
    let mut locals: Vec<(u32, wasm_encoder::ValType)> = Vec::new();
    let declared = body.locals[body.num_params as usize..]
        .iter()
        .chain(&plan.new_locals);
    for t in declared {
        let t = ctx.val_type(*t)?;
        match locals.last_mut() {
            Some((n, last)) if *last == t => *n += 1,
            _ => locals.push((1, t)),
        }
    }
    let prespills: Vec<&Prespill> = plan
        .frames
        .values()
        .flat_map(|f| &f.items)
        .filter_map(|it| it.prespill.as_ref())
        .collect();
    let mut e = Emitter {
        ctx,
        body,
        plan,
        out: Function::new(locals),
        labels: Labels::default(),
        next_id: 0,
        save_labels: Vec::new(),
        rethrow_label: None,
        resume_ends: vec![u32::MAX; body.ops.len()],
        site_at: {
            let mut at = vec![u32::MAX; body.ops.len()];
            for (i, s) in plan.sites.iter().enumerate() {
                at[s.op as usize] = i as u32;
            }
            for &op in &plan.unwind_only {
                at[op as usize] = UNWIND_ONLY;
            }
            at
        },
        unwound: 0,
        prespill_open: plan
            .frames
            .values()
            .flat_map(|f| &f.items)
            .filter_map(|it| it.prespill.as_ref().map(|p| (it.op, p)))
            .collect(),
        prespill_close: prespills.iter().map(|p| (p.end, *p)).collect(),
        results,
        asserts,
        deferred: Vec::new(),
        prologue_pending: false,
    };
    if instrumented {
        e.labels.push(Label::Synth(0));
        e.instrumented_body()?;
        debug_assert!(
            e.deferred.is_empty(),
            "a deferred dispatch was never emitted"
        );
    } else {
        e.labels.push(Label::Orig);
        e.ops()?;
    }
    Ok(e.out.into_raw_body())
}

impl<'c, 'a> Emitter<'c, 'a> {
    fn ins(&mut self, i: Instruction<'_>) {
        self.out.instruction(&i);
    }

    fn fresh(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn open(&mut self, i: Instruction<'_>, label: Label) {
        self.ins(i);
        self.labels.push(label);
    }

    fn close(&mut self) {
        self.ins(Instruction::End);
        self.labels.pop();
    }

    /// Depth of the synthetic label `id` from the top of the control stack.
    fn depth_of(&self, id: u32) -> u32 {
        self.labels.depth_of(id)
    }

    /// Maps a relative depth of the input onto the rewritten control stack.
    fn remap_depth(&self, depth: u32) -> u32 {
        self.labels.remap(depth)
    }

    fn zero(&mut self, t: ValType) -> Result<()> {
        let i = match t {
            ValType::I32 => Instruction::I32Const(0),
            ValType::I64 => Instruction::I64Const(0),
            ValType::F32 => Instruction::F32Const(0.0f32.into()),
            ValType::F64 => Instruction::F64Const(0.0f64.into()),
            ValType::V128 => Instruction::V128Const(0),
            ValType::Ref(r) => {
                let mut re = self.ctx.remap();
                Instruction::RefNull(re.heap_type(r.heap_type()).map_err(reencode_error)?)
            }
        };
        self.ins(i);
        Ok(())
    }

    fn addr_const(&mut self, v: u32) {
        if self.ctx.memory64 {
            self.ins(Instruction::I64Const(v as i64));
        } else {
            self.ins(Instruction::I32Const(v as i32));
        }
    }

    fn instrumented_body(&mut self) -> Result<()> {
        if let Lowering::Exceptions(x) = self.ctx.lowering {
            return self.exceptions_body(&x);
        }
        let plan = self.plan;
        let results = self.results;
        let n_layouts = plan.layouts.len();
        // The body, wrapped in the save blocks, which receive the call index.
        let unwound = self.fresh();
        self.unwound = unwound;
        self.open(Instruction::Block(BlockType::Empty), Label::Synth(unwound));
        self.save_labels = (0..n_layouts).map(|_| self.fresh()).collect();
        for &id in self.save_labels.clone().iter().rev() {
            self.open(
                Instruction::Block(BlockType::Result(wasm_encoder::ValType::I32)),
                Label::Synth(id),
            );
        }
        if plan.needs_rethrow() {
            // (block $rethrow (result exnref) ...body... (return)) (throw_ref)
            let id = self.fresh();
            self.rethrow_label = Some(id);
            let exnref = wasm_encoder::ValType::Ref(wasm_encoder::RefType::EXNREF);
            self.open(
                Instruction::Block(BlockType::Result(exnref)),
                Label::Synth(id),
            );
        }
        let bt = self.ctx.block_type(&[], results)?;
        self.open(Instruction::Block(bt), Label::Orig);
        // The prologue goes into the body frame's dispatch when it has one
        // right here, else it stands alone before the first operator. A
        // function without sites is never rewound: it has none.
        self.prologue_pending = !plan.sites.is_empty();
        self.frame_header((u32::MAX, 0))?;
        if self.prologue_pending {
            // At entry the state is 0 or 2 (nothing calls into code while it
            // unwinds), so testing it for non-zero is enough.
            self.prologue_pending = false;
            self.ins(Instruction::GlobalGet(self.ctx.state_global));
            let id = self.fresh();
            self.open(Instruction::If(BlockType::Empty), Label::Synth(id));
            self.restore(Some(id));
            self.close();
        }
        self.ops()?;
        self.ins(Instruction::Return);
        if self.rethrow_label.is_some() {
            self.close();
            self.ins(Instruction::ThrowRef);
        }
        for l in 0..n_layouts {
            self.close();
            // The call index arrives on the stack.
            self.save_layout(l);
            if l + 1 < n_layouts {
                self.ins(Instruction::Br(self.depth_of(unwound)));
            }
        }
        self.close();
        for &t in results {
            self.zero(t)?;
        }
        self.ins(Instruction::End);
        Ok(())
    }

    /// The rewind's prologue, run when the state says rewinding: pops the
    /// call index into `$resume`, then restores the saved locals of its
    /// layout (chosen by a `br_table` when there are several). `done` is a
    /// label whose end is right after it, when one is open; else one is
    /// added.
    fn restore(&mut self, done: Option<u32>) {
        let plan = self.plan;
        self.ins(Instruction::Call(self.ctx.funcs.pop_index));
        self.ins(Instruction::LocalSet(plan.resume_local));
        let n_layouts = plan.layouts.len();
        if n_layouts <= 1 {
            if n_layouts == 1 {
                self.restore_layout(0);
            }
            return;
        }
        let restored = match done {
            Some(id) => id,
            None => {
                let id = self.fresh();
                self.open(Instruction::Block(BlockType::Empty), Label::Synth(id));
                id
            }
        };
        let layout_ids: Vec<u32> = (0..n_layouts).map(|_| self.fresh()).collect();
        for &id in layout_ids.iter().rev() {
            self.open(Instruction::Block(BlockType::Empty), Label::Synth(id));
        }
        self.ins(Instruction::LocalGet(plan.resume_local));
        self.ins(Instruction::I32Const(1));
        self.ins(Instruction::I32Sub);
        let targets: Vec<u32> = plan
            .sites
            .iter()
            .map(|s| self.depth_of(layout_ids[s.layout]))
            .collect();
        // Call indices come from our own frames; anything else is a
        // corrupted buffer, which lands on the last layout.
        let default = self.depth_of(layout_ids[n_layouts - 1]);
        self.ins(Instruction::BrTable(Cow::Owned(targets), default));
        for l in 0..n_layouts {
            self.close();
            self.restore_layout(l);
            if l + 1 < n_layouts {
                self.ins(Instruction::Br(self.depth_of(restored)));
            }
        }
        if done.is_none() {
            self.close();
        }
    }

    /// `p = pop_frame(size)`, then each saved local from its slot; nothing
    /// for an empty layout (popping 0 bytes only returns the position).
    fn restore_layout(&mut self, l: usize) {
        let (plan, layout) = (self.plan, &self.plan.layouts[l]);
        if layout.slots.is_empty() {
            return;
        }
        if let Some(helper) = self.ctx.helpers.restore(&layout.shape()) {
            // The helper leaves the slots on the stack, in order.
            self.ins(Instruction::Call(helper));
            for &(local, _, _) in layout.slots.iter().rev() {
                self.ins(Instruction::LocalSet(local));
            }
            return;
        }
        self.addr_const(layout.size);
        self.ins(Instruction::Call(self.ctx.funcs.pop_frame));
        self.ins(Instruction::LocalSet(plan.frame_ptr_local));
        for &(local, ty, offset) in &layout.slots {
            self.ins(Instruction::LocalGet(plan.frame_ptr_local));
            self.ins(self.ctx.load(ty, offset));
            self.ins(Instruction::LocalSet(local));
        }
    }

    /// `p = push_frame(K, size)` (K is on the stack), then each saved local
    /// into its slot: by the shape's helper when it has one.
    fn save_layout(&mut self, l: usize) {
        let (plan, layout) = (self.plan, &self.plan.layouts[l]);
        if let Some(helper) = self.ctx.helpers.save(&layout.shape()) {
            for &(local, _, _) in &layout.slots {
                self.ins(Instruction::LocalGet(local));
            }
            self.ins(Instruction::Call(helper));
            return;
        }
        self.addr_const(layout.size);
        self.ins(Instruction::Call(self.ctx.funcs.push_frame));
        self.ins(Instruction::LocalSet(plan.frame_ptr_local));
        for &(local, ty, offset) in &layout.slots {
            self.ins(Instruction::LocalGet(plan.frame_ptr_local));
            self.ins(Instruction::LocalGet(local));
            self.ins(self.ctx.store(ty, offset));
        }
    }

    /// Opens the resume blocks of a frame and emits its dispatch.
    ///
    /// A frame whose first item is a `block` or `loop` opening it (compiler
    /// output nests dozens: every C `switch` is one such chain) does not emit
    /// its own dispatch: it hands its cases down to that construct's frame,
    /// which dispatches for both. A rewind reaches the inner frame's header
    /// anyway, by falling through, and branches from there to any enclosing
    /// resume block are valid; so a chain of n nested frames costs the normal
    /// path one state test instead of n.
    fn frame_header(&mut self, id: FrameId) -> Result<()> {
        let plan = self.plan;
        let inherited = std::mem::take(&mut self.deferred);
        let Some(frame) = plan.frames.get(&id) else {
            return self.dispatch(inherited, true);
        };
        if let [item] = &frame.items[..] {
            let one_arm = item.else_lo.is_none_or(|e| e <= item.lo);
            if inherited.is_empty()
                && !item.direct_entry
                && item.prespill.is_none()
                && frame.params.is_empty()
                && one_arm
            {
                return self.resume_arm(item);
            }
        }
        // Resume blocks for every item but one entered by falling through.
        let rids: Vec<Option<u32>> = frame
            .items
            .iter()
            .map(|it| (!it.direct_entry).then(|| self.fresh()))
            .collect();
        for (item, rid) in frame.items.iter().zip(&rids).rev() {
            if let Some(rid) = *rid {
                let bt = self.ctx.block_type(&frame.params, &item.entry_types)?;
                self.open(Instruction::Block(bt), Label::Synth(rid));
                self.resume_ends[item.entry_op as usize] = rid;
            }
        }

        // This frame's cases, in call-index order; the inherited ones (from
        // enclosing frames, all past this frame's indices) come after them.
        let mut cases: Vec<Case<'c>> = Vec::new();
        for (item, rid) in frame.items.iter().zip(&rids) {
            let Some(rid) = *rid else { continue };
            let arms: Vec<(u32, u32, bool)> = match item.else_lo {
                Some(e) if e > item.lo => vec![(item.lo, e - 1, true), (e, item.hi, false)],
                Some(_) => vec![(item.lo, item.hi, false)],
                None => vec![(item.lo, item.hi, true)],
            };
            for (lo, hi, then_arm) in arms {
                cases.push(Case {
                    item,
                    resume: rid,
                    then_arm,
                    lo,
                    hi,
                });
            }
        }
        cases.extend(inherited);
        let first = &frame.items[0];
        if first.direct_entry
            && matches!(
                self.body.ops[first.op as usize],
                Operator::Block { .. } | Operator::Loop { .. }
            )
        {
            self.deferred = cases;
            return Ok(());
        }
        self.dispatch(cases, first.direct_entry)
    }

    /// The resume block and dispatch of a frame with one item to resume (and
    /// no parameters), in one construct that is 4 bytes smaller:
    /// `(if (result ...) (rewinding) (then push what the item needs) (else
    /// code before the item))`, closed where the item starts.
    fn resume_arm(&mut self, item: &'c Item) -> Result<()> {
        let rid = self.fresh();
        let bt = self.ctx.block_type(&[], &item.entry_types)?;
        self.resuming();
        self.open(Instruction::If(bt), Label::Synth(rid));
        self.resume_ends[item.entry_op as usize] = rid;
        if self.prologue_pending {
            self.prologue_pending = false;
            self.restore(None);
        }
        // An `if` item resumed in its else arm only has no indices in its
        // then arm (see `frame_header`).
        self.case_values(item, item.else_lo.is_none())?;
        self.ins(Instruction::Else);
        Ok(())
    }

    /// Emits the dispatch of `cases` (ascending, contiguous call-index
    /// intervals), which runs only while rewinding. With `falls_through`,
    /// indices below the first case belong to the construct that follows,
    /// entered by falling through.
    fn dispatch(&mut self, cases: Vec<Case<'c>>, falls_through: bool) -> Result<()> {
        if cases.is_empty() {
            return Ok(());
        }
        // At a frame entry the state is 0 or 2: the rewind ends (state 0)
        // inside the call it resumes, so frames entered after it, in a loop
        // say, run normally although $resume still holds the index. The normal
        // path pays for the state test alone.
        let dispatch = self.fresh();
        self.resuming();
        self.open(Instruction::If(BlockType::Empty), Label::Synth(dispatch));
        if self.prologue_pending {
            // The function's first dispatch, with nothing before it: the
            // prologue shares its state test, and on the rewind path the
            // restored locals flow only to the resume points, never into
            // the normal path's code.
            self.prologue_pending = false;
            self.restore(None);
        }
        let lo = cases[0].lo;
        let hi = cases.last().unwrap().hi;
        if falls_through {
            self.ins(Instruction::LocalGet(self.plan.resume_local));
            self.ins(Instruction::I32Const(lo as i32));
            self.ins(Instruction::I32LtU);
            self.ins(Instruction::BrIf(0));
        }
        // A br_table costs a byte per call index in range and a block per
        // case that pushes values; a binary search on the interval bounds
        // costs 7 to 9 bytes (get, const, lt_u, then br_if or if and end) per
        // case after the first. Either runs only while rewinding, so the
        // smaller wins: the search when the range is large next to the cases
        // (a frame whose later item is a big construct). The factor 11 gave
        // the smallest Lua and SQLite (8 to 30 tried).
        let range = (hi - lo + 1) as usize;
        if cases.len() == 1 {
            self.case(cases[0].item, cases[0].resume, cases[0].then_arm)?;
        } else if range + 3 * cases.len() + 8 > 11 * (cases.len() - 1) {
            self.search(&cases)?;
        } else {
            // A case with values to push gets a block whose end is followed
            // by its code; the table branches straight to the resume block
            // of the others.
            let boxed: Vec<Option<u32>> = cases
                .iter()
                .map(|c| (!self.pushes_nothing(c.item)).then(|| self.fresh()))
                .collect();
            for cid in boxed.iter().rev().flatten() {
                self.open(Instruction::Block(BlockType::Empty), Label::Synth(*cid));
            }
            self.ins(Instruction::LocalGet(self.plan.resume_local));
            if lo != 0 {
                self.ins(Instruction::I32Const(lo as i32));
                self.ins(Instruction::I32Sub);
            }
            let target: Vec<u32> = cases
                .iter()
                .zip(&boxed)
                .map(|(case, cid)| self.depth_of(cid.unwrap_or(case.resume)))
                .collect();
            let mut targets: Vec<u32> = Vec::with_capacity(range);
            for (case, &t) in cases.iter().zip(&target) {
                targets.extend(std::iter::repeat_n(t, (case.hi - case.lo + 1) as usize));
            }
            // Call indices come from our own frames; anything else is a
            // corrupted buffer, which lands on the last case.
            let default = *target.last().unwrap();
            self.ins(Instruction::BrTable(Cow::Owned(targets), default));
            for (case, cid) in cases.iter().zip(&boxed) {
                if cid.is_some() {
                    self.close();
                    self.case(case.item, case.resume, case.then_arm)?;
                }
            }
        }
        self.close();
        Ok(())
    }

    /// Dispatches among `cases` (ascending, contiguous intervals) by comparing
    /// the call index with interval bounds.
    fn search(&mut self, cases: &[Case<'_>]) -> Result<()> {
        if let [case] = cases {
            return self.case(case.item, case.resume, case.then_arm);
        }
        let mid = cases.len() / 2;
        self.ins(Instruction::LocalGet(self.plan.resume_local));
        self.ins(Instruction::I32Const(cases[mid].lo as i32));
        self.ins(Instruction::I32LtU);
        match &cases[..mid] {
            [left] if self.pushes_nothing(left.item) => {
                self.ins(Instruction::BrIf(self.depth_of(left.resume)));
            }
            left => {
                // Every case ends in a branch, so the right half needs no
                // `else`: it is reached only when the test fails.
                let id = self.fresh();
                self.open(Instruction::If(BlockType::Empty), Label::Synth(id));
                self.search(left)?;
                self.close();
            }
        }
        self.search(&cases[mid..])
    }

    /// Whether resuming `item` needs no values on the stack: its case is
    /// only a branch to its resume block.
    fn pushes_nothing(&self, item: &Item) -> bool {
        match item.site {
            Some(s) => {
                let site = &self.plan.sites[s];
                site.below_locals.is_empty() && site.operands.len() == site.rerun
            }
            None => {
                item.construct_params.is_empty()
                    && !matches!(self.body.ops[item.op as usize], Operator::If { .. })
            }
        }
    }

    /// One dispatch case: push what the resume block must produce, branch to it.
    fn case(&mut self, item: &Item, resume: u32, then_arm: bool) -> Result<()> {
        self.case_values(item, then_arm)?;
        self.ins(Instruction::Br(self.depth_of(resume)));
        Ok(())
    }

    /// What the resume point of `item` needs on the stack: the values below
    /// its call and its saved operands (placeholders for the others), or a
    /// construct's parameters and, for an `if`, the arm to take.
    fn case_values(&mut self, item: &Item, then_arm: bool) -> Result<()> {
        if let Some(s) = item.site {
            let site = &self.plan.sites[s];
            for &l in &site.below_locals {
                self.ins(Instruction::LocalGet(l));
            }
            let n_zero = site.operands.len() - site.rerun - site.operand_locals.len();
            for &t in &site.operands[..n_zero] {
                self.zero(t)?;
            }
            for &l in &site.operand_locals {
                self.ins(Instruction::LocalGet(l));
            }
        } else {
            for &t in &item.construct_params {
                self.zero(t)?;
            }
            if matches!(self.body.ops[item.op as usize], Operator::If { .. }) {
                self.ins(Instruction::I32Const(i32::from(then_arm)));
            }
        }
        Ok(())
    }

    /// Emits the ops of the body.
    fn ops(&mut self) -> Result<()> {
        let body = self.body;
        let n = body.ops.len();
        for i in 0..n {
            let op = &body.ops[i];
            let iu = i as u32;
            // A rewind re-enters here: close the resume block (after moving the
            // values below a prespilled construct into locals).
            let rid = self.resume_ends[i];
            if rid != u32::MAX {
                if let Some(p) = self.prespill_open.get(&iu).copied() {
                    for &(l, _) in p.inputs.iter().rev() {
                        self.ins(Instruction::LocalSet(l));
                    }
                    for &(l, _) in p.below.iter().rev() {
                        self.ins(Instruction::LocalSet(l));
                    }
                    for &(l, _) in &p.inputs {
                        self.ins(Instruction::LocalGet(l));
                    }
                }
                debug_assert_eq!(self.labels.top(), Some(&Label::Synth(rid)));
                self.close();
            }
            match self.site_at[i] {
                u32::MAX => {}
                UNWIND_ONLY => {
                    self.unwind_only_call(i)?;
                    continue;
                }
                s => {
                    self.site(s as usize)?;
                    continue;
                }
            }
            match op {
                op if is_block_opener(op) => {
                    // A try_table's catch clauses name labels: re-encoded.
                    if !matches!(op, Operator::TryTable { .. }) && self.copy_as_is(i) {
                        self.labels.push(Label::Orig);
                    } else {
                        let ins = self.convert(op)?;
                        self.open(ins, Label::Orig);
                    }
                    self.frame_header((iu, 0))?;
                }
                Operator::Else => {
                    self.ins(Instruction::Else);
                    // For an `else`, `else_of` points back at its `if`.
                    self.frame_header((body.else_of[i], 1))?;
                }
                Operator::End => {
                    // The function's final `end` closes `$body` (or the function
                    // itself when not instrumented).
                    self.close();
                    let closing = if self.prespill_close.is_empty() {
                        None
                    } else {
                        self.prespill_close.get(&iu).copied()
                    };
                    if let Some(p) = closing {
                        for &(l, _) in p.results.iter().rev() {
                            self.ins(Instruction::LocalSet(l));
                        }
                        for &(l, _) in &p.below {
                            self.ins(Instruction::LocalGet(l));
                        }
                        for &(l, _) in &p.results {
                            self.ins(Instruction::LocalGet(l));
                        }
                    }
                }
                Operator::Delegate { relative_depth } => {
                    // `delegate` ends the `try` and names a label outside it.
                    self.labels.pop();
                    self.ins(Instruction::Delegate(self.remap_depth(*relative_depth)));
                }
                Operator::Rethrow { relative_depth } => {
                    self.ins(Instruction::Rethrow(self.remap_depth(*relative_depth)))
                }
                Operator::Br { relative_depth } => {
                    self.ins(Instruction::Br(self.remap_depth(*relative_depth)))
                }
                Operator::BrIf { relative_depth } => {
                    self.ins(Instruction::BrIf(self.remap_depth(*relative_depth)))
                }
                Operator::BrOnNull { relative_depth } => {
                    self.ins(Instruction::BrOnNull(self.remap_depth(*relative_depth)))
                }
                Operator::BrOnNonNull { relative_depth } => {
                    self.ins(Instruction::BrOnNonNull(self.remap_depth(*relative_depth)))
                }
                Operator::BrOnCast { relative_depth, .. }
                | Operator::BrOnCastFail { relative_depth, .. } => {
                    let d = self.remap_depth(*relative_depth);
                    let mut ins = self.convert(op)?;
                    match &mut ins {
                        Instruction::BrOnCast { relative_depth, .. }
                        | Instruction::BrOnCastFail { relative_depth, .. } => *relative_depth = d,
                        _ => unreachable!("converted from a br_on_cast"),
                    }
                    self.ins(ins);
                }
                Operator::BrTable { targets } => {
                    let ts: Vec<u32> = targets
                        .targets()
                        .map(|t| t.map(|t| self.remap_depth(t)))
                        .collect::<Result<_, _>>()?;
                    let d = self.remap_depth(targets.default());
                    self.ins(Instruction::BrTable(Cow::Owned(ts), d));
                }
                _ => {
                    // Branches, whose depths change, are handled above.
                    if !self.copy_as_is(i) {
                        let ins = self.convert(op)?;
                        self.ins(ins);
                    }
                    if self.asserts && self.can_assert_after(op) {
                        self.assert_normal();
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies operator `i` as the input encodes it, when no index in it
    /// changes and its encoding is compact; says whether it did. Most operators
    /// qualify, and copying skips decoding and re-encoding them.
    fn copy_as_is(&mut self, i: usize) -> bool {
        if !self.ctx.identity_indices {
            return false;
        }
        match self.body.compact_op_bytes(i) {
            Some(bytes) => {
                self.out.raw(bytes.iter().copied());
                true
            }
            None => false,
        }
    }

    /// Converts an input operator that needs no label remapping.
    fn convert(&self, op: &Operator<'a>) -> Result<Instruction<'a>> {
        let mut re = self.ctx.remap();
        let mut ins = re.instruction(op.clone()).map_err(reencode_error)?;
        if let Instruction::TryTable(_, catches) = &mut ins {
            // Catch labels are relative to the enclosing context of the try_table.
            let fixed: Vec<wasm_encoder::Catch> = catches
                .iter()
                .map(|c| match *c {
                    wasm_encoder::Catch::One { tag, label } => wasm_encoder::Catch::One {
                        tag,
                        label: self.remap_depth(label),
                    },
                    wasm_encoder::Catch::OneRef { tag, label } => wasm_encoder::Catch::OneRef {
                        tag,
                        label: self.remap_depth(label),
                    },
                    wasm_encoder::Catch::All { label } => wasm_encoder::Catch::All {
                        label: self.remap_depth(label),
                    },
                    wasm_encoder::Catch::AllRef { label } => wasm_encoder::Catch::AllRef {
                        label: self.remap_depth(label),
                    },
                })
                .collect();
            *catches = Cow::Owned(fixed);
        }
        Ok(ins)
    }

    /// Calls after which `--asserts` checks the state: all but calls to the
    /// in-module runtime imports, whose purpose is to change it.
    fn can_assert_after(&self, op: &Operator<'_>) -> bool {
        match op {
            Operator::Call { function_index } => !self.ctx.runtime_import[*function_index as usize],
            Operator::CallIndirect { .. } | Operator::CallRef { .. } => true,
            _ => false,
        }
    }

    fn assert_normal(&mut self) {
        self.ins(Instruction::GlobalGet(self.ctx.state_global));
        self.ins(Instruction::If(BlockType::Empty));
        self.ins(Instruction::Call(self.ctx.funcs.assert_failed));
        self.ins(Instruction::End);
    }

    /// Pushes whether the function is being re-entered at a resume point:
    /// the state global under Asyncify (rewinding, 2, is non-zero), the
    /// resume local under an exceptions lowering (set by a caught jump).
    fn resuming(&mut self) {
        match self.ctx.lowering {
            Lowering::Asyncify => self.ins(Instruction::GlobalGet(self.ctx.state_global)),
            Lowering::Exceptions(_) => self.ins(Instruction::LocalGet(self.plan.resume_local)),
        }
    }

    /// Emits a call that can unwind a stack that is never rewound: the call
    /// as it is, then, unwinding, a branch out of the function, which saves
    /// nothing (the values below the call are dropped with it). A tail call
    /// stays one: its callee returns to our caller, which checks.
    fn unwind_only_call(&mut self, i: usize) -> Result<()> {
        let op = &self.body.ops[i];
        if !self.copy_as_is(i) {
            let ins = self.convert(op)?;
            self.ins(ins);
        }
        if !matches!(
            op,
            Operator::ReturnCall { .. }
                | Operator::ReturnCallIndirect { .. }
                | Operator::ReturnCallRef { .. }
        ) {
            self.ins(Instruction::GlobalGet(self.ctx.state_global));
            self.ins(Instruction::BrIf(self.depth_of(self.unwound)));
        }
        Ok(())
    }

    /// Emits a resume point: operand spills, the call, the unwind check.
    fn site(&mut self, s: usize) -> Result<()> {
        if let Lowering::Exceptions(x) = self.ctx.lowering {
            return self.exceptions_site(s, &x);
        }
        let site = &self.plan.sites[s];
        let op = &self.body.ops[site.op as usize];
        if site.needs_real_args && !site.operand_locals.is_empty() {
            // Copy the operands into locals, leaving them on the stack:
            // set the upper ones, tee the first, get the upper ones back.
            let (first, upper) = site.operand_locals.split_first().unwrap();
            for &l in upper.iter().rev() {
                self.ins(Instruction::LocalSet(l));
            }
            self.ins(Instruction::LocalTee(*first));
            for &l in upper {
                self.ins(Instruction::LocalGet(l));
            }
        } else if site.kind == CallKind::Indirect {
            self.ins(Instruction::LocalTee(site.operand_locals[0]));
        }
        let call = match *op {
            Operator::ReturnCall { function_index } => Operator::Call { function_index },
            Operator::ReturnCallIndirect {
                type_index,
                table_index,
            } => Operator::CallIndirect {
                type_index,
                table_index,
            },
            ref other => other.clone(),
        };
        let ins = self.convert(&call)?;
        if site.escapes_handlers {
            // A tail call left this function's handlers behind; the plain call
            // must too: catch everything right around it and rethrow outside.
            let rethrow = self.rethrow_label.expect("planned with needs_rethrow");
            let bt = self.ctx.block_type(&site.operands, &site.results)?;
            let catch = wasm_encoder::Catch::AllRef {
                label: self.depth_of(rethrow),
            };
            let id = self.fresh();
            self.open(
                Instruction::TryTable(bt, Cow::Owned(vec![catch])),
                Label::Synth(id),
            );
            self.ins(ins);
            self.close();
        } else {
            self.ins(ins);
        }
        // Unwinding? Leave for the save block with the call index.
        let save = self.save_labels[site.layout];
        if site.below.is_empty() {
            self.ins(Instruction::I32Const(site.k as i32));
            self.ins(Instruction::GlobalGet(self.ctx.state_global));
            self.ins(Instruction::BrIf(self.depth_of(save)));
            self.ins(Instruction::Drop);
        } else {
            // The values below the call are out of reach of a branch: pop them
            // into locals first (only on this path).
            self.ins(Instruction::GlobalGet(self.ctx.state_global));
            let kept = super::kept_across(site);
            let bt = self.ctx.block_type(&kept, &kept)?;
            let check = self.fresh();
            self.open(Instruction::If(bt), Label::Synth(check));
            for _ in &site.results {
                self.ins(Instruction::Drop);
            }
            for &l in site.below_locals.iter().rev() {
                self.ins(Instruction::LocalSet(l));
            }
            self.ins(Instruction::I32Const(site.k as i32));
            self.ins(Instruction::Br(self.depth_of(save)));
            self.close();
        }
        if site.tail {
            self.ins(Instruction::Return);
        }
        Ok(())
    }
}

fn reencode_error(e: wasm_encoder::reencode::Error<std::convert::Infallible>) -> Error {
    Error::new(ErrorKind::Unsupported, format!("cannot re-encode: {e}"))
}

/// A memory argument for a frame slot.
pub fn mem_arg(offset: u32, size: u32, memory_index: u32) -> MemArg {
    MemArg {
        offset: offset as u64,
        align: size.min(4).trailing_zeros(),
        memory_index,
    }
}
