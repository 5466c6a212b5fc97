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

fn set_bit(words: &mut [u64], i: u32) {
    words[i as usize / 64] |= 1 << (i % 64);
}

fn clear_bit(words: &mut [u64], i: u32) {
    words[i as usize / 64] &= !(1 << (i % 64));
}

/// Whether an operator ends a basic block (the next one starts a new block).
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
    let blocks = Blocks::new(&body.ops);
    let succs = successors(body, &blocks);
    let preds = succs.reversed();
    let (uses, defs) = uses_and_defs(&body.ops, &blocks, n_locals);
    let live_out = solve(&succs, &preds, &uses, &defs);
    live_at_points(&body.ops, &blocks, &live_out, points, n_locals)
}

/// The basic blocks of a body.
struct Blocks {
    /// The first op of each block, ascending.
    start: Vec<usize>,
    /// The block of every op.
    of: Vec<u32>,
}

impl Blocks {
    /// Cuts `ops` after every op that ends a block.
    fn new(ops: &[Operator<'_>]) -> Blocks {
        let n = ops.len();
        let mut start = vec![0usize];
        let mut of = vec![0u32; n];
        for i in 0..n {
            of[i] = (start.len() - 1) as u32;
            if ends_block(&ops[i]) && i + 1 < n {
                start.push(i + 1);
            }
        }
        Blocks { start, of }
    }

    fn len(&self) -> usize {
        self.start.len()
    }

    /// One past the last op of block `b`.
    fn end(&self, b: usize) -> usize {
        if b + 1 < self.start.len() {
            self.start[b + 1]
        } else {
            self.of.len()
        }
    }

    /// The block that a jump to op `target` enters; `None` when it leaves the
    /// function (no target, or one past the last op).
    fn at(&self, target: Option<usize>) -> Option<u32> {
        target.filter(|&i| i < self.of.len()).map(|i| self.of[i])
    }
}

/// Edges between blocks in compressed rows (the targets of block b are
/// `targets[start[b]..start[b + 1]]`): one allocation instead of one per block.
struct Edges {
    targets: Vec<u32>,
    start: Vec<u32>,
}

impl Edges {
    /// The targets of the edges from block `b`.
    fn of(&self, b: usize) -> &[u32] {
        &self.targets[self.start[b] as usize..self.start[b + 1] as usize]
    }

    /// The same edges, reversed: predecessors from successors. A counting sort,
    /// which keeps each block's predecessors in ascending order.
    fn reversed(&self) -> Edges {
        let n_blocks = self.start.len() - 1;
        let mut start = vec![0u32; n_blocks + 1];
        for &t in &self.targets {
            start[t as usize + 1] += 1;
        }
        for b in 0..n_blocks {
            start[b + 1] += start[b];
        }
        let mut targets = vec![0u32; self.targets.len()];
        let mut fill = start.clone();
        for b in 0..n_blocks {
            for &t in self.of(b) {
                targets[fill[t as usize] as usize] = b as u32;
                fill[t as usize] += 1;
            }
        }
        Edges { targets, start }
    }
}

/// A set of locals per block, as the rows of one flat bit matrix: one
/// allocation for all blocks instead of one each.
struct BlockSets {
    bits: Vec<u64>,
    /// Words per row.
    words: usize,
}

impl BlockSets {
    /// `n_blocks` empty sets of `words` words.
    fn empty(n_blocks: usize, words: usize) -> BlockSets {
        BlockSets {
            bits: vec![0; n_blocks * words],
            words,
        }
    }

    fn row(&self, b: usize) -> &[u64] {
        &self.bits[b * self.words..(b + 1) * self.words]
    }

    fn row_mut(&mut self, b: usize) -> &mut [u64] {
        &mut self.bits[b * self.words..(b + 1) * self.words]
    }
}

/// The successors of every block, resolved with the control stack as it is at
/// each branch. A label's target is the first op after its `end`, or the first
/// op of a loop body; `None` stands for leaving the function.
fn successors(body: &Body<'_>, blocks: &Blocks) -> Edges {
    let n_blocks = blocks.len();
    let mut succs = Edges {
        targets: Vec::with_capacity(2 * n_blocks),
        start: Vec::with_capacity(n_blocks + 1),
    };
    // The function's own frame is the outermost label; branching to it leaves.
    let mut labels: Vec<Option<usize>> = vec![None];
    for (b, &start) in blocks.start.iter().enumerate() {
        succs.start.push(succs.targets.len() as u32);
        // Keep the label stack in step over all ops of the block.
        let end = blocks.end(b);
        for (i, op) in body.ops.iter().enumerate().take(end).skip(start) {
            track_labels(&mut labels, body, i, op);
            if i + 1 == end {
                block_exits(body, blocks, &labels, i, op, &mut succs.targets);
            }
        }
    }
    succs.start.push(succs.targets.len() as u32);
    succs
}

/// Keeps the label stack in step with op `i`: a `block` or `if` pushes the op
/// after its `end`, a `loop` its own first op, an `end` pops.
fn track_labels(labels: &mut Vec<Option<usize>>, body: &Body<'_>, i: usize, op: &Operator<'_>) {
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
}

/// Appends to `out` the blocks that control reaches from op `i`, the last of
/// its block: both arms of an `if`, the label of a branch (and the next op when
/// the branch is conditional), every `br_table` target, nothing after a return
/// or a trap, and otherwise the next op.
fn block_exits(
    body: &Body<'_>,
    blocks: &Blocks,
    labels: &[Option<usize>],
    i: usize,
    op: &Operator<'_>,
    out: &mut Vec<u32>,
) {
    let label = |depth: u32| labels[labels.len() - 1 - depth as usize];
    let fallthrough = blocks.at(Some(i + 1));
    match op {
        Operator::If { .. } => {
            out.extend(fallthrough);
            let else_start = match body.else_of[i] {
                u32::MAX => body.end_of[i] as usize + 1,
                e => e as usize + 1,
            };
            out.extend(blocks.at(Some(else_start)));
        }
        Operator::Else => out.extend(blocks.at(Some(body.end_of[i] as usize + 1))),
        Operator::Br { relative_depth } => out.extend(blocks.at(label(*relative_depth))),
        Operator::BrIf { relative_depth }
        | Operator::BrOnNull { relative_depth }
        | Operator::BrOnNonNull { relative_depth }
        | Operator::BrOnCast { relative_depth, .. }
        | Operator::BrOnCastFail { relative_depth, .. } => {
            out.extend(blocks.at(label(*relative_depth)));
            out.extend(fallthrough);
        }
        Operator::BrTable { targets } => {
            for t in targets.targets().flatten() {
                out.extend(blocks.at(label(t)));
            }
            out.extend(blocks.at(label(targets.default())));
        }
        Operator::Return
        | Operator::Unreachable
        | Operator::ReturnCall { .. }
        | Operator::ReturnCallIndirect { .. }
        | Operator::ReturnCallRef { .. } => {}
        _ => out.extend(fallthrough),
    }
}

/// Each block's transfer function, summarized once so that the fixpoint need
/// not walk the ops again: `uses`, the locals it reads before writing them, and
/// `defs`, those it writes (live-in = uses | (live-out & !defs)).
fn uses_and_defs(ops: &[Operator<'_>], blocks: &Blocks, n_locals: usize) -> (BlockSets, BlockSets) {
    let words = n_locals.div_ceil(64);
    let mut uses = BlockSets::empty(blocks.len(), words);
    let mut defs = BlockSets::empty(blocks.len(), words);
    for b in 0..blocks.len() {
        let (u, d) = (uses.row_mut(b), defs.row_mut(b));
        for i in (blocks.start[b]..blocks.end(b)).rev() {
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
    (uses, defs)
}

/// The locals live on leaving each block: the fixpoint of live-out(b) = the
/// union of live-in over b's successors. A worklist starts with every block, the
/// last first (liveness flows backwards), and a block whose live-in changes
/// queues its predecessors again.
fn solve(succs: &Edges, preds: &Edges, uses: &BlockSets, defs: &BlockSets) -> BlockSets {
    let n_blocks = succs.start.len() - 1;
    let words = uses.words;
    let mut live_in = BlockSets::empty(n_blocks, words);
    let mut live_out = BlockSets::empty(n_blocks, words);
    let mut inn = vec![0u64; words];
    let mut queued = vec![true; n_blocks];
    let mut work: VecDeque<u32> = (0..n_blocks as u32).rev().collect();
    while let Some(b) = work.pop_front() {
        let b = b as usize;
        queued[b] = false;
        inn.fill(0);
        for &s in succs.of(b) {
            for (w, x) in inn.iter_mut().zip(live_in.row(s as usize)) {
                *w |= x;
            }
        }
        live_out.row_mut(b).copy_from_slice(&inn);
        for ((w, d), u) in inn.iter_mut().zip(defs.row(b)).zip(uses.row(b)) {
            *w = (*w & !d) | u;
        }
        if inn[..] != *live_in.row(b) {
            live_in.row_mut(b).copy_from_slice(&inn);
            for &p in preds.of(b) {
                if !std::mem::replace(&mut queued[p as usize], true) {
                    work.push_back(p);
                }
            }
        }
    }
    live_out
}

/// The locals live right after each point: its block's live-out, carried
/// backwards over the ops after the point. Points are ascending, so each block
/// is walked once, from its end, through all its points (the last first).
fn live_at_points(
    ops: &[Operator<'_>],
    blocks: &Blocks,
    live_out: &BlockSets,
    points: &[u32],
    n_locals: usize,
) -> Vec<LocalSet> {
    let mut result = vec![LocalSet::new(n_locals); points.len()];
    let mut k = points.len();
    while k > 0 {
        let b = blocks.of[points[k - 1] as usize] as usize;
        let mut live = LocalSet {
            words: live_out.row(b).to_vec(),
        };
        let mut i = blocks.end(b);
        while k > 0 && blocks.of[points[k - 1] as usize] as usize == b {
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
