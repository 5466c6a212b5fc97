//! Narrowing indirect calls: which functions each `call_indirect` and
//! `call_ref` can reach, so that only the callers of functions that can unwind
//! become unwinding themselves.

use super::Targets;
use crate::analysis::scan::FunctionScan;
use crate::module_info::ModuleInfo;
use std::collections::HashMap;

/// The narrowed target sets of a module's indirect calls.
pub(super) struct TargetSets {
    /// Canonical signature id per type index.
    pub(super) canon: Vec<u32>,
    /// Per `(canonical signature, table)` of `call_indirect`.
    pub(super) indirect: HashMap<(u32, u32), Targets>,
    /// Per canonical signature of `call_ref`.
    pub(super) by_ref: HashMap<u32, Targets>,
}

/// Narrow indirect calls: canonical signatures, then target sets, one per
/// signature (and table) that some call uses.
pub(super) fn narrow_targets(info: &ModuleInfo<'_>, scans: &[FunctionScan]) -> TargetSets {
    let canon = canonical_signatures(info);
    let escaped = escaped_funcs(info, scans);
    let mutated = mutated_tables(info, scans);
    let mut indirect: HashMap<(u32, u32), Targets> = HashMap::new();
    let mut by_ref: HashMap<u32, Targets> = HashMap::new();
    for scan in scans {
        for &(ty, table, _) in &scan.indirect_calls {
            let c = canon[ty as usize];
            indirect
                .entry((c, table))
                .or_insert_with(|| table_targets(info, &canon, table, c, &mutated, &escaped));
        }
        for &(ty, _) in &scan.ref_calls {
            let c = canon[ty as usize];
            by_ref
                .entry(c)
                .or_insert_with(|| ref_targets(info, &canon, c, &escaped));
        }
    }
    TargetSets {
        canon,
        indirect,
        by_ref,
    }
}

/// Canonical signature id per type index: equal signatures share an id, since
/// a call can reach a function of any type index with the same signature.
fn canonical_signatures(info: &ModuleInfo<'_>) -> Vec<u32> {
    let mut canon_ids: HashMap<&wasmparser::FuncType, u32> = HashMap::new();
    info.types
        .iter()
        .map(|t| match t {
            // With subtyping a call can reach functions of other (sub)types:
            // treat every signature as one, which only widens the target sets.
            _ if info.has_subtyping => 0,
            Some(sig) => {
                let next = canon_ids.len() as u32;
                *canon_ids.entry(sig).or_insert(next)
            }
            None => u32::MAX,
        })
        .collect()
}

/// The functions whose references can be taken at run time (sorted): the
/// only ones a mutated table or a `call_ref` can reach from inside.
fn escaped_funcs(info: &ModuleInfo<'_>, scans: &[FunctionScan]) -> Vec<u32> {
    let mut escaped: Vec<u32> = info.passive_elem_funcs.clone();
    for init in &info.table_inits {
        escaped.extend(&init.funcs);
    }
    for scan in scans {
        escaped.extend(&scan.ref_funcs);
    }
    escaped.sort_unstable();
    escaped.dedup();
    escaped
}

/// Per table: whether some function writes to it, so that its initial
/// contents no longer bound what it holds.
fn mutated_tables(info: &ModuleInfo<'_>, scans: &[FunctionScan]) -> Vec<bool> {
    let mut mutated = vec![false; info.tables.len()];
    for scan in scans {
        for &t in &scan.mutated_tables {
            mutated[t as usize] = true;
        }
    }
    mutated
}

/// The canonical signature of function `f`.
fn func_canon(info: &ModuleInfo<'_>, canon: &[u32], f: u32) -> u32 {
    canon[info.func_types[f as usize] as usize]
}

/// What a `call_indirect` of canonical signature `c` through `table` can reach.
fn table_targets(
    info: &ModuleInfo<'_>,
    canon: &[u32],
    table: u32,
    c: u32,
    mutated: &[bool],
    escaped: &[u32],
) -> Targets {
    let t = &info.tables[table as usize];
    if t.open || (mutated[table as usize] && info.refs_cross_boundary) {
        return Targets::Unknown;
    }
    let pool: &[u32] = if mutated[table as usize] {
        escaped
    } else {
        &info.table_inits[table as usize].funcs
    };
    let mut funcs: Vec<u32> = pool
        .iter()
        .copied()
        .filter(|&f| func_canon(info, canon, f) == c)
        .collect();
    funcs.sort_unstable();
    funcs.dedup();
    Targets::Known(funcs)
}

/// What a `call_ref` of canonical signature `c` can reach.
fn ref_targets(info: &ModuleInfo<'_>, canon: &[u32], c: u32, escaped: &[u32]) -> Targets {
    if info.refs_cross_boundary {
        return Targets::Unknown;
    }
    Targets::Known(
        escaped
            .iter()
            .copied()
            .filter(|&f| func_canon(info, canon, f) == c)
            .collect(),
    )
}
