//! "Can unwind" flowing from callees to their callers, over a graph of reverse
//! call edges.

use super::rules::{Role, Rules};
use super::targets::TargetSets;
use super::{Reason, Targets, Verdicts};
use crate::analysis::scan::FunctionScan;
use crate::module_info::ModuleInfo;
use std::collections::{HashMap, VecDeque};

/// Reverse edges: callee -> (caller, how). Indirect calls go through one
/// node per target set ("key"), so the edges stay linear in sites plus
/// targets rather than their product.
pub(super) struct CallerGraph {
    /// Per function: its direct callers, and the reason each would record.
    callers: Vec<Vec<(u32, Reason)>>,
    /// Per key: the sites (caller, offset) that call through it.
    key_callers: Vec<Vec<(u32, usize)>>,
    /// Per function: the keys whose targets include it.
    func_keys: Vec<Vec<usize>>,
    /// Functions with an indirect call whose targets are unknown.
    unknown_indirect: Vec<(u32, usize)>,
}

/// Identifies a target set: `call_indirect` by (signature, table), or
/// `call_ref` by signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum TargetKey {
    Indirect(u32, u32),
    Ref(u32),
}

impl CallerGraph {
    /// The graph of the module's calls; without indirect edges when indirect
    /// calls are assumed never to unwind.
    pub(super) fn new(
        info: &ModuleInfo<'_>,
        scans: &[FunctionScan],
        ignore_indirect: bool,
        targets: &TargetSets,
    ) -> CallerGraph {
        let n = info.num_funcs() as usize;
        let n_imports = info.imports.len();
        let canon = &targets.canon;
        let mut graph = CallerGraph {
            callers: vec![Vec::new(); n],
            key_callers: Vec::new(),
            func_keys: vec![Vec::new(); n],
            unknown_indirect: Vec::new(),
        };
        let mut key_ids: HashMap<TargetKey, usize> = HashMap::new();
        for (i, scan) in scans.iter().enumerate() {
            let f = (n_imports + i) as u32;
            for &(callee, offset) in &scan.calls {
                graph.callers[callee as usize].push((f, Reason::Calls { callee, offset }));
            }
            if ignore_indirect {
                continue;
            }
            let sites = scan
                .indirect_calls
                .iter()
                .map(|&(ty, table, offset)| {
                    let key = TargetKey::Indirect(canon[ty as usize], table);
                    (
                        key,
                        targets.indirect.get(&(canon[ty as usize], table)),
                        offset,
                    )
                })
                .chain(scan.ref_calls.iter().map(|&(ty, offset)| {
                    let key = TargetKey::Ref(canon[ty as usize]);
                    (key, targets.by_ref.get(&canon[ty as usize]), offset)
                }));
            for (key, set, offset) in sites {
                graph.add_indirect(&mut key_ids, f, key, set, offset);
            }
        }
        graph
    }

    /// Adds an indirect call by `caller` at `offset` through `key`, whose
    /// target set is `set` (`None`: never narrowed, so unknown).
    fn add_indirect(
        &mut self,
        key_ids: &mut HashMap<TargetKey, usize>,
        caller: u32,
        key: TargetKey,
        set: Option<&Targets>,
        offset: usize,
    ) {
        match set {
            None | Some(Targets::Unknown) => self.unknown_indirect.push((caller, offset)),
            Some(Targets::Known(funcs)) => {
                let key = *key_ids.entry(key).or_insert_with(|| {
                    self.key_callers.push(Vec::new());
                    for &t in funcs {
                        self.func_keys[t as usize].push(self.key_callers.len() - 1);
                    }
                    self.key_callers.len() - 1
                });
                self.key_callers[key].push((caller, offset));
            }
        }
    }
}

/// Spreads "can unwind" from the functions that start it to every caller the
/// rules let it reach, breadth first, recording for each the reason it was
/// reached by first.
pub(super) fn propagate(
    verdicts: &mut Verdicts,
    rules: &Rules,
    graph: &CallerGraph,
    propagate_add: bool,
) {
    let mut queue = seed(verdicts, rules, graph, propagate_add);
    let mut key_fired = vec![false; graph.key_callers.len()];
    while let Some(g) = queue.pop_front() {
        let mut reached: Vec<(u32, Reason)> = graph.callers[g as usize].clone();
        // A key's callers are reached through its first target that unwinds;
        // later targets would find them marked already.
        for &key in &graph.func_keys[g as usize] {
            if std::mem::replace(&mut key_fired[key], true) {
                continue;
            }
            reached.extend(graph.key_callers[key].iter().map(|&(f, offset)| {
                (
                    f,
                    Reason::Indirect {
                        target: Some(g),
                        offset,
                    },
                )
            }));
        }
        for (caller, how) in reached {
            mark(verdicts, rules, &mut queue, caller, how);
        }
    }
}

/// The functions that start the flow, in the order they are followed: the
/// imports that can unwind, the in-module runtime's bottom, the add list
/// (with `--propagate-add`), and the callers of unknown indirect targets.
fn seed(
    verdicts: &mut Verdicts,
    rules: &Rules,
    graph: &CallerGraph,
    propagate_add: bool,
) -> VecDeque<u32> {
    let n = verdicts.can_unwind.len();
    let mut queue = VecDeque::new();
    queue.extend((0..n as u32).filter(|&f| verdicts.can_unwind[f as usize]));
    for f in rules.n_imports..n {
        if rules.roles[f] == Role::Bottom && !rules.lists.remove[f] {
            verdicts.can_unwind[f] = true;
            verdicts.reasons[f] = Reason::RuntimeBottom;
            queue.push_back(f as u32);
        } else if rules.roles[f] == Role::Top {
            verdicts.reasons[f] = Reason::RuntimeTop;
        }
        if rules.lists.add[f] && propagate_add {
            mark(verdicts, rules, &mut queue, f as u32, Reason::AddList);
        }
    }
    for &(f, offset) in &graph.unknown_indirect {
        let how = Reason::Indirect {
            target: None,
            offset,
        };
        mark(verdicts, rules, &mut queue, f, how);
    }
    queue
}

/// Marks `f` as unwinding because of `how`, and queues it to spread further,
/// unless it was marked already or the rules keep it out.
fn mark(verdicts: &mut Verdicts, rules: &Rules, queue: &mut VecDeque<u32>, f: u32, how: Reason) {
    let c = f as usize;
    if !verdicts.can_unwind[c] && rules.propagates_into(c) {
        verdicts.can_unwind[c] = true;
        verdicts.reasons[c] = how;
        queue.push_back(f);
    }
}
