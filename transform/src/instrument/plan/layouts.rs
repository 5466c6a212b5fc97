//! Phase 3 of a plan: what each site saves, and the frame layouts it saves
//! them in.

use super::{fmt_type, storable, Layout, Site};
use crate::analysis::liveness::live_after;
use crate::error::{Error, Result};
use crate::instrument::body::Body;
use std::collections::HashMap;
use wasmparser::ValType;

/// The locals each site saves, sorted: those live after its call, those holding
/// its operand stack, and the prespills around it (`held_across`).
///
/// Refuses a live reference local, which linear memory cannot hold.
pub(super) fn saved_locals(
    body: &Body<'_>,
    sites: &[Site],
    held_across: &[Vec<u32>],
) -> Result<Vec<Vec<u32>>> {
    let points: Vec<u32> = sites.iter().map(|s| s.op).collect();
    let live = live_after(body, &points);
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
        set.extend(&held_across[s.k as usize - 1]);
        set.sort_unstable();
        set.dedup();
        sets.push(set);
    }
    Ok(sets)
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
    // By type, in `Shape` order (which is by size, biggest first, so offsets
    // stay aligned), then by local: layouts with the same number of locals
    // of each type share their save and restore helpers.
    locals.sort_by_key(|&(l, t)| (super::shape_class(t), l));
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
pub(super) fn choose_layouts(
    sets: &[Vec<u32>],
    types: &[ValType],
    sites: &mut [Site],
) -> Vec<Layout> {
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
/// layout. Measured on Lua 5.4 (every import unwinding), before the frame
/// helpers: 100 gave 614 layouts and 452 KB, 150 gave 747 layouts and 458
/// KB, unlimited 1072 and 489 KB.
///
/// The cost model counts inline code even for layouts whose shape has
/// helpers (about 4 bytes a local, not 14). Counting that would pick more,
/// smaller layouts (Lua 0.8% smaller, SQLite 0.4%), but with those frames
/// Lua's deepest scripts (`deep_recursion.lua`, `msgh_recursion.lua`) fit in
/// the free C stack Wasmer 7.4.2 unwinds into, and Wasmer then exits with
/// statuses like 160 or 16 and no output, where it now stops cleanly (45)
/// at the first frame that does not fit; that is not understood yet.
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
