//! Which locals are live right after each resume point.
//!
//! A frame only needs the locals that some path from the call onwards reads
//! before writing; Binaryen saves the union over the whole function instead.
//! Classic backward dataflow over basic blocks, with bitsets, iterated with a
//! worklist until nothing changes. Functions with exception handling get the
//! conservative answer (every local is live), since a throw can leave a block
//! in the middle.

use crate::instrument::body::Body;
use std::collections::VecDeque;
use wasmparser::Operator;

/// A set of local indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSet {
    words: Vec<u64>,
}

impl LocalSet {
    /// The empty set over `n` locals.
    pub fn new(n: usize) -> LocalSet {
        LocalSet {
            words: vec![0; n.div_ceil(64)],
        }
    }

    /// The set of all `n` locals.
    pub fn full(n: usize) -> LocalSet {
        let mut s = LocalSet::new(n);
        for i in 0..n {
            s.insert(i as u32);
        }
        s
    }

    /// Adds `i`.
    pub fn insert(&mut self, i: u32) {
        set_bit(&mut self.words, i);
    }

    /// Removes `i`.
    pub fn remove(&mut self, i: u32) {
        clear_bit(&mut self.words, i);
    }

    /// The members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |b| bits & (1u64 << b) != 0)
                .map(move |b| (w * 64 + b) as u32)
        })
    }
}

/// Whether an operator ends a basic block (the next one starts a new block).
fn set_bit(words: &mut [u64], i: u32) {
    words[i as usize / 64] |= 1 << (i % 64);
}

fn clear_bit(words: &mut [u64], i: u32) {
    words[i as usize / 64] &= !(1 << (i % 64));
}

fn ends_block(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::End
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::BrOnNull { .. }
            | Operator::BrOnNonNull { .. }
            | Operator::BrOnCast { .. }
            | Operator::BrOnCastFail { .. }
            | Operator::Return
            | Operator::Unreachable
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. }
    )
}

/// The effect of one operator on liveness, applied backwards.
fn transfer(op: &Operator<'_>, live: &mut LocalSet) {
    match op {
        Operator::LocalGet { local_index } => live.insert(*local_index),
        Operator::LocalSet { local_index } => live.remove(*local_index),
        // `local.tee` writes its local; the value it reads comes from the stack.
        Operator::LocalTee { local_index } => live.remove(*local_index),
        _ => {}
    }
}

/// The locals live right after each operator in `points` (ascending op indices).
pub fn live_after(body: &Body<'_>, points: &[u32]) -> Vec<LocalSet> {
    let n_locals = body.locals.len();
    if body.has_exceptions {
        return points.iter().map(|_| LocalSet::full(n_locals)).collect();
    }
    let ops = &body.ops;
    let n = ops.len();

    // Basic blocks: `block_start[b]`, and the block of every op.
    let mut block_start = vec![0usize];
    let mut block_of = vec![0u32; n];
    for i in 0..n {
        block_of[i] = (block_start.len() - 1) as u32;
        if ends_block(&ops[i]) && i + 1 < n {
            block_start.push(i + 1);
        }
    }
    let n_blocks = block_start.len();
    let block_end = |b: usize| -> usize {
        if b + 1 < n_blocks {
            block_start[b + 1]
        } else {
            n
        }
    };

    // Successors, resolved with the control stack as it is at each branch.
    // A label's target is the first op after its `end`, or the first op of a loop
    // body; `None` stands for leaving the function.
    // Edges in compressed rows (successors of block b: succs[succ_start[b]..
    // succ_start[b + 1]]), and the sets below in flat bit matrices: one
    // allocation each instead of several per block.
    let mut succs: Vec<u32> = Vec::with_capacity(2 * n_blocks);
    let mut succ_start: Vec<u32> = Vec::with_capacity(n_blocks + 1);
    // The function's own frame is the outermost label; branching to it leaves.
    let mut labels: Vec<Option<usize>> = vec![None];
    let target_block = |t: Option<usize>| t.filter(|&i| i < n).map(|i| block_of[i]);
    for (b, &start) in block_start.iter().enumerate() {
        succ_start.push(succs.len() as u32);
        // Keep the label stack in step over all ops of the block.
        let end = block_end(b);
        for (i, op) in ops.iter().enumerate().take(end).skip(start) {
            let last = i + 1 == end;
            let label =
                |labels: &Vec<Option<usize>>, depth: u32| labels[labels.len() - 1 - depth as usize];
            match op {
                Operator::Block { .. } | Operator::If { .. } => {
                    labels.push(Some(body.end_of[i] as usize + 1))
                }
                Operator::Loop { .. } => labels.push(Some(i + 1)),
                Operator::End => {
                    labels.pop();
                }
                _ => {}
            }
            if !last {
                continue;
            }
            let s = &mut succs;
            let fallthrough = target_block(Some(i + 1));
            match op {
                Operator::If { .. } => {
                    s.extend(fallthrough);
                    let else_start = match body.else_of[i] {
                        u32::MAX => body.end_of[i] as usize + 1,
                        e => e as usize + 1,
                    };
                    s.extend(target_block(Some(else_start)));
                }
                Operator::Else => s.extend(target_block(Some(body.end_of[i] as usize + 1))),
                Operator::Br { relative_depth } => {
                    s.extend(target_block(label(&labels, *relative_depth)))
                }
                Operator::BrIf { relative_depth }
                | Operator::BrOnNull { relative_depth }
                | Operator::BrOnNonNull { relative_depth }
                | Operator::BrOnCast { relative_depth, .. }
                | Operator::BrOnCastFail { relative_depth, .. } => {
                    s.extend(target_block(label(&labels, *relative_depth)));
                    s.extend(fallthrough);
                }
                Operator::BrTable { targets } => {
                    for t in targets.targets().flatten() {
                        s.extend(target_block(label(&labels, t)));
                    }
                    s.extend(target_block(label(&labels, targets.default())));
                }
                Operator::Return
                | Operator::Unreachable
                | Operator::ReturnCall { .. }
                | Operator::ReturnCallIndirect { .. }
                | Operator::ReturnCallRef { .. } => {}
                _ => s.extend(fallthrough),
            }
        }
    }

    // use/def per block.
    succ_start.push(succs.len() as u32);
    let succs_of = |b: usize| &succs[succ_start[b] as usize..succ_start[b + 1] as usize];

    let words = n_locals.div_ceil(64);
    let row = |b: usize| b * words..(b + 1) * words;
    let mut uses = vec![0u64; n_blocks * words];
    let mut defs = vec![0u64; n_blocks * words];
    for b in 0..n_blocks {
        let (u, d) = (&mut uses[row(b)], &mut defs[row(b)]);
        for i in (block_start[b]..block_end(b)).rev() {
            match &ops[i] {
                Operator::LocalGet { local_index } => set_bit(u, *local_index),
                Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                    clear_bit(u, *local_index);
                    set_bit(d, *local_index);
                }
                _ => {}
            }
        }
    }
    let mut pred_start = vec![0u32; n_blocks + 1];
    for &t in &succs {
        pred_start[t as usize + 1] += 1;
    }
    for b in 0..n_blocks {
        pred_start[b + 1] += pred_start[b];
    }
    let mut preds = vec![0u32; succs.len()];
    let mut fill = pred_start.clone();
    for b in 0..n_blocks {
        for &t in succs_of(b) {
            preds[fill[t as usize] as usize] = b as u32;
            fill[t as usize] += 1;
        }
    }
    let mut live_in = vec![0u64; n_blocks * words];
    let mut live_out = vec![0u64; n_blocks * words];
    let mut inn = vec![0u64; words];
    let mut queued = vec![true; n_blocks];
    let mut work: VecDeque<u32> = (0..n_blocks as u32).rev().collect();
    while let Some(b) = work.pop_front() {
        let b = b as usize;
        queued[b] = false;
        inn.fill(0);
        for &s in succs_of(b) {
            for (w, x) in inn.iter_mut().zip(&live_in[row(s as usize)]) {
                *w |= x;
            }
        }
        live_out[row(b)].copy_from_slice(&inn);
        for ((w, d), u) in inn.iter_mut().zip(&defs[row(b)]).zip(&uses[row(b)]) {
            *w = (*w & !d) | u;
        }
        if inn[..] != live_in[row(b)] {
            live_in[row(b)].copy_from_slice(&inn);
            for &p in &preds[pred_start[b] as usize..pred_start[b + 1] as usize] {
                if !std::mem::replace(&mut queued[p as usize], true) {
                    work.push_back(p);
                }
            }
        }
    }

    let mut result = vec![LocalSet::new(n_locals); points.len()];
    let mut k = points.len();
    while k > 0 {
        let b = block_of[points[k - 1] as usize] as usize;
        let mut live = LocalSet {
            words: live_out[row(b)].to_vec(),
        };
        let mut i = block_end(b);
        while k > 0 && block_of[points[k - 1] as usize] as usize == b {
            let p = points[k - 1] as usize;
            while i > p + 1 {
                i -= 1;
                transfer(&ops[i], &mut live);
            }
            result[k - 1] = live.clone();
            k -= 1;
        }
    }
    result
}
