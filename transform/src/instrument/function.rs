//! Rewrites one function according to its [`Plan`].
//!
//! The shape of an instrumented function (WAT sketch; `K` is a call index):
//!
//! ```wat
//! (func $f (param ...) (result ...)
//!   ;; rewinding: pop the call index, then this site's saved locals
//!   (if (i32.eq (global.get $__asyncify_state) (i32.const 2))
//!     (then (local.set $resume (call $pop_index))
//!           (br_table (K -> layout) ...) ;; each layout: pop_frame(size), loads)))
//!   (block $unwound
//!     (block $save_layout_n ... (block $save_layout_1
//!       (block $body (result ...)
//!         ;; every frame holding resume points starts with nested blocks that
//!         ;; end just before each of them, and one dispatch:
//!         (block $r2 (block $r1
//!             (if (local.get $resume) (then (br_table ... cases: push the
//!                 saved operand values, zero arguments, br $rN)))
//!             ...code before site 1...)
//!           (call $g) ;; site 1
//!           (if (global.get $__asyncify_state)   ;; unwinding: save and leave
//!             (then (local.set $resume (i32.const 1)) (br $save_layout_1)))
//!           ...code before site 2...)
//!         (call $h) ...)
//!       (return))
//!     ;; save_layout_1: p = push_frame(size, K); stores; (br $unwound)
//!     ...)
//!   zeros of the result types)
//! ```
//!
//! On the normal path this costs one state test at entry, one `local.get`+`if`
//! per entry into a frame holding resume points, and one `global.get`+`if` after
//! each call that can unwind. Nothing else in the function changes.

use crate::error::{Error, ErrorKind, Result};
use crate::instrument::body::Body;
use crate::instrument::plan::{CallKind, FrameId, Item, Plan, Prespill};
use crate::instrument::Ctx;
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

struct Emitter<'c, 'a> {
    ctx: &'c Ctx<'c>,
    body: &'c Body<'a>,
    plan: &'c Plan,
    out: Function,
    labels: Vec<Label>,
    next_id: u32,
    /// Label ids of the save blocks, per layout.
    save_labels: Vec<u32>,
    /// For each open frame holding items: the resume block ids, per item.
    resume_labels: Vec<(FrameId, Vec<u32>)>,
    /// Prespilled constructs by the op index of their `end`.
    prespills: HashMap<u32, &'c Prespill>,
    /// The function's result types.
    results: &'c [ValType],
    /// Whether to check after each call that nothing started unwinding.
    asserts: bool,
}

/// Emits the rewritten body of a function. With `plan == None` the function is
/// not instrumented and only gets `--asserts` checks after its calls.
pub fn emit(
    ctx: &Ctx<'_>,
    body: &Body<'_>,
    plan: &Plan,
    results: &[ValType],
    instrumented: bool,
    asserts: bool,
) -> Result<Vec<u8>> {
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
    let mut e = Emitter {
        ctx,
        body,
        plan,
        out: Function::new(locals),
        labels: vec![Label::Synth(u32::MAX)],
        next_id: 0,
        save_labels: Vec::new(),
        resume_labels: Vec::new(),
        prespills: plan
            .frames
            .values()
            .flat_map(|f| &f.items)
            .filter_map(|it| it.prespill.as_ref())
            .map(|p| (p.end, p))
            .collect(),
        results,
        asserts,
    };
    if instrumented {
        e.instrumented_body()?;
    } else {
        e.labels = vec![Label::Orig];
        e.ops(0)?;
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
        let pos = self
            .labels
            .iter()
            .rposition(|l| *l == Label::Synth(id))
            .expect("branch to an open synthetic label");
        (self.labels.len() - 1 - pos) as u32
    }

    /// Maps a relative depth of the input onto the rewritten control stack.
    fn remap_depth(&self, depth: u32) -> u32 {
        let mut seen = 0;
        for (d, l) in self.labels.iter().rev().enumerate() {
            if *l == Label::Orig {
                if seen == depth {
                    return d as u32;
                }
                seen += 1;
            }
        }
        unreachable!("validated: branch depth within the function")
    }

    fn block_type(&self, params: &[ValType], results: &[ValType]) -> Result<BlockType> {
        self.ctx.block_type(params, results)
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
        let plan = self.plan;
        let results = self.results;
        // Prologue: when rewinding, pop the call index and restore its layout.
        self.ins(Instruction::GlobalGet(self.ctx.state_global));
        self.ins(Instruction::I32Const(2));
        self.ins(Instruction::I32Eq);
        let restored = self.fresh();
        self.open(Instruction::If(BlockType::Empty), Label::Synth(restored));
        self.ins(Instruction::Call(self.ctx.funcs.pop_index));
        self.ins(Instruction::LocalSet(plan.resume_local));
        let n_layouts = plan.layouts.len();
        let layout_ids: Vec<u32> = (0..n_layouts).map(|_| self.fresh()).collect();
        for &id in layout_ids.iter().rev() {
            self.open(Instruction::Block(BlockType::Empty), Label::Synth(id));
        }
        let bad = self.fresh();
        self.open(Instruction::Block(BlockType::Empty), Label::Synth(bad));
        self.ins(Instruction::LocalGet(plan.resume_local));
        self.ins(Instruction::I32Const(1));
        self.ins(Instruction::I32Sub);
        let targets: Vec<u32> = plan
            .sites
            .iter()
            .map(|s| self.depth_of(layout_ids[s.layout]))
            .collect();
        self.ins(Instruction::BrTable(Cow::Owned(targets), 0));
        self.close();
        self.ins(Instruction::Unreachable);
        for (l, layout) in plan.layouts.iter().enumerate() {
            self.close();
            self.addr_const(layout.size);
            self.ins(Instruction::Call(self.ctx.funcs.pop_frame));
            self.ins(Instruction::LocalSet(plan.frame_ptr_local));
            for &(local, ty, offset) in &layout.slots {
                self.ins(Instruction::LocalGet(plan.frame_ptr_local));
                self.ins(self.ctx.load(ty, offset));
                self.ins(Instruction::LocalSet(local));
            }
            if l + 1 < n_layouts {
                self.ins(Instruction::Br(self.depth_of(restored)));
            }
        }
        self.close();

        // The body, wrapped in the save blocks.
        let unwound = self.fresh();
        self.open(Instruction::Block(BlockType::Empty), Label::Synth(unwound));
        self.save_labels = (0..n_layouts).map(|_| self.fresh()).collect();
        for &id in self.save_labels.clone().iter().rev() {
            self.open(Instruction::Block(BlockType::Empty), Label::Synth(id));
        }
        let bt = self.block_type(&[], results)?;
        self.open(Instruction::Block(bt), Label::Orig);
        self.frame_header((u32::MAX, 0))?;
        self.ops(0)?;
        self.ins(Instruction::Return);
        for (l, layout) in plan.layouts.iter().enumerate() {
            self.close();
            self.addr_const(layout.size);
            self.ins(Instruction::LocalGet(plan.resume_local));
            self.ins(Instruction::Call(self.ctx.funcs.push_frame));
            self.ins(Instruction::LocalSet(plan.frame_ptr_local));
            for &(local, ty, offset) in &layout.slots {
                self.ins(Instruction::LocalGet(plan.frame_ptr_local));
                self.ins(Instruction::LocalGet(local));
                self.ins(self.ctx.store(ty, offset));
            }
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

    /// Opens the resume blocks of a frame and emits its dispatch.
    fn frame_header(&mut self, id: FrameId) -> Result<()> {
        let Some(frame) = self.plan.frames.get(&id) else {
            return Ok(());
        };
        let ids: Vec<u32> = frame.items.iter().map(|_| self.fresh()).collect();
        for (item, &rid) in frame.items.iter().zip(&ids).rev() {
            let bt = self.block_type(&frame.params, &item.entry_types)?;
            self.open(Instruction::Block(bt), Label::Synth(rid));
        }
        self.resume_labels.push((id, ids.clone()));

        // Dispatch: only while rewinding ($resume != 0).
        let dispatch = self.fresh();
        self.ins(Instruction::LocalGet(self.plan.resume_local));
        self.open(Instruction::If(BlockType::Empty), Label::Synth(dispatch));
        // One case per site, or per arm of a construct item.
        struct Case<'p> {
            item: &'p Item,
            resume: u32,
            then_arm: bool,
        }
        let mut cases: Vec<Case<'_>> = Vec::new();
        let lo = frame.items[0].lo;
        let hi = frame.items.last().unwrap().hi;
        let mut case_of_k = vec![0u32; (hi - lo + 1) as usize];
        for (item, &rid) in frame.items.iter().zip(&ids) {
            let arms: Vec<(u32, u32, bool)> = match item.else_lo {
                Some(e) if e > item.lo => vec![(item.lo, e - 1, true), (e, item.hi, false)],
                Some(_) => vec![(item.lo, item.hi, false)],
                None => vec![(item.lo, item.hi, true)],
            };
            for (a, b, then_arm) in arms {
                cases.push(Case {
                    item,
                    resume: rid,
                    then_arm,
                });
                for k in a..=b {
                    case_of_k[(k - lo) as usize] = cases.len() as u32;
                }
            }
        }
        let case_ids: Vec<u32> = cases.iter().map(|_| self.fresh()).collect();
        for &cid in case_ids.iter().rev() {
            self.open(Instruction::Block(BlockType::Empty), Label::Synth(cid));
        }
        let bad = self.fresh();
        self.open(Instruction::Block(BlockType::Empty), Label::Synth(bad));
        self.ins(Instruction::LocalGet(self.plan.resume_local));
        if lo != 0 {
            self.ins(Instruction::I32Const(lo as i32));
            self.ins(Instruction::I32Sub);
        }
        // Depth of case c (1-based) is c below `bad` at depth 0.
        self.ins(Instruction::BrTable(Cow::Owned(case_of_k), 0));
        self.close();
        self.ins(Instruction::Unreachable);
        for case in &cases {
            self.close();
            let item = case.item;
            if let Some(s) = item.site {
                let site = &self.plan.sites[s];
                for &l in &site.below_locals {
                    self.ins(Instruction::LocalGet(l));
                }
                let n_saved = site.operand_locals.len();
                let n_zero = site.operands.len() - n_saved;
                for &t in &site.operands[..n_zero] {
                    self.zero(t)?;
                }
                for &l in &site.operand_locals {
                    self.ins(Instruction::LocalGet(l));
                }
                // This frame is where the rewind ends up: clear the index so
                // later entries into frames of this function run normally.
                self.ins(Instruction::I32Const(0));
                self.ins(Instruction::LocalSet(self.plan.resume_local));
            } else {
                for &t in &item.construct_params {
                    self.zero(t)?;
                }
                if matches!(self.body.ops[item.op as usize], Operator::If { .. }) {
                    self.ins(Instruction::I32Const(i32::from(case.then_arm)));
                }
            }
            self.ins(Instruction::Br(self.depth_of(case.resume)));
        }
        self.close();
        Ok(())
    }

    /// Emits the ops of the body from `start` to the end.
    fn ops(&mut self, start: usize) -> Result<()> {
        let body = self.body;
        let n = body.ops.len();
        // Items of open frames are consumed in order: the position per open
        // frame in `resume_labels`.
        let mut item_pos: Vec<usize> = self.resume_labels.iter().map(|_| 0).collect();
        for i in start..n {
            let op = &body.ops[i];
            let i32_ = i as u32;
            // Is this op the next item of the innermost frame with items?
            if let Some((fid, rids)) = self.resume_labels.last().cloned() {
                let pos = *item_pos.last().unwrap();
                let frame = &self.plan.frames[&fid];
                if pos < frame.items.len() && frame.items[pos].op == i32_ {
                    *item_pos.last_mut().unwrap() += 1;
                    let item = &frame.items[pos];
                    if let Some(p) = &item.prespill {
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
                    debug_assert_eq!(*self.labels.last().unwrap(), Label::Synth(rids[pos]));
                    self.close();
                    if pos + 1 == frame.items.len() {
                        // All items of this frame are placed; later code of the
                        // frame sits outside every resume block.
                        self.resume_labels.pop();
                        item_pos.pop();
                    }
                    if let Some(s) = item.site {
                        self.site(s)?;
                        continue;
                    }
                    // A construct: fall through to emit its opener below.
                }
            }
            match op {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::TryTable { .. }
                | Operator::Try { .. } => {
                    let ins = self.convert(op)?;
                    self.open(ins, Label::Orig);
                    let before = self.resume_labels.len();
                    self.frame_header((i32_, 0))?;
                    if self.resume_labels.len() > before {
                        item_pos.push(0);
                    }
                }
                Operator::Else => {
                    self.ins(Instruction::Else);
                    let before = self.resume_labels.len();
                    // For an `else`, `else_of` points back at its `if`.
                    self.frame_header((body.else_of[i], 1))?;
                    if self.resume_labels.len() > before {
                        item_pos.push(0);
                    }
                }
                Operator::End => {
                    if i + 1 == n {
                        // The function's final `end` closes the `$body` block (or
                        // the function itself when not instrumented).
                        self.close();
                        continue;
                    }
                    self.close();
                    if let Some(p) = self.prespill_ending_at(i32_) {
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
                        _ => unreachable!(),
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
                    let ins = self.convert(op)?;
                    self.ins(ins);
                    if self.asserts && self.can_assert_after(op) {
                        self.assert_normal();
                    }
                }
            }
        }
        Ok(())
    }

    fn prespill_ending_at(&self, end: u32) -> Option<&'c Prespill> {
        self.prespills.get(&end).copied()
    }

    /// Converts an input operator that needs no label remapping.
    fn convert(&self, op: &Operator<'a>) -> Result<Instruction<'a>> {
        let mut re = self.ctx.remap();
        let mut ins = re.instruction(op.clone()).map_err(reencode_error)?;
        if let Instruction::TryTable(bt, catches) = &mut ins {
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
            let _ = bt;
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

    /// Emits a resume point: operand spills, the call, the unwind check.
    fn site(&mut self, s: usize) -> Result<()> {
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
        self.ins(ins);
        // Unwinding? Pop the values below into locals and leave for the save block.
        self.ins(Instruction::GlobalGet(self.ctx.state_global));
        let mut kept = site.below.clone();
        kept.extend(&site.results);
        let bt = if site.below.is_empty() {
            BlockType::Empty
        } else {
            self.block_type(&kept, &kept)?
        };
        self.open(Instruction::If(bt), Label::Synth(0));
        if !site.below.is_empty() {
            for _ in &site.results {
                self.ins(Instruction::Drop);
            }
            for &l in site.below_locals.iter().rev() {
                self.ins(Instruction::LocalSet(l));
            }
        }
        self.ins(Instruction::I32Const(site.k as i32));
        self.ins(Instruction::LocalSet(self.plan.resume_local));
        let save = self.save_labels[site.layout];
        self.ins(Instruction::Br(self.depth_of(save)));
        self.close();
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
