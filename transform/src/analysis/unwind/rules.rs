//! What the options and the in-module runtime decide about a function,
//! whatever its calls: they bound where "can unwind" may flow, and have the
//! last word on what is instrumented.

use super::{Reason, RuntimeImport, Verdicts};
use crate::analysis::scan::FunctionScan;
use crate::module_info::ModuleInfo;
use crate::options::{wildcard_match, Options};
use crate::OptionName;

/// The function lists, per function (imports first): whether each names it.
pub(super) struct Lists {
    pub(super) add: Vec<bool>,
    pub(super) remove: Vec<bool>,
    /// `None` without `--only`.
    pub(super) only: Option<Vec<bool>>,
}

/// Function lists, matched against name-section names. Warns of entries that
/// match no function, which are likely typos.
pub(super) fn match_lists(
    info: &ModuleInfo<'_>,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Lists {
    let add = match_list(info, &options.add, OptionName::Add, warnings);
    let remove = match_list(info, &options.remove, OptionName::Remove, warnings);
    let only = options
        .only
        .as_ref()
        .map(|list| match_list(info, list, OptionName::Only, warnings));
    Lists { add, remove, only }
}

fn match_list(
    info: &ModuleInfo<'_>,
    list: &[String],
    what: OptionName,
    warnings: &mut Vec<String>,
) -> Vec<bool> {
    let n = info.num_funcs() as usize;
    let n_imports = info.imports.len();
    let mut hits = vec![false; n];
    for p in list {
        let mut any = false;
        for (f, hit) in hits.iter_mut().enumerate().skip(n_imports) {
            if let Some(name) = info.func_names.get(&(f as u32)) {
                if wildcard_match(p, name) {
                    *hit = true;
                    any = true;
                }
            }
        }
        if !any {
            warnings.push(format!("{what} entry `{p}` matches no function"));
        }
    }
    hits
}

/// A function's role in the in-module runtime.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Role {
    Plain,
    /// Calls `asyncify.start_unwind` or `asyncify.stop_rewind`.
    Bottom,
    /// Calls `asyncify.stop_unwind` or `asyncify.start_rewind`.
    Top,
}

/// Roles in the in-module runtime, per function (imports first). Calling a
/// top control makes a function the top, even if it calls a bottom one too.
pub(super) fn runtime_roles(
    info: &ModuleInfo<'_>,
    scans: &[FunctionScan],
    runtime_imports: &[Option<RuntimeImport>],
) -> Vec<Role> {
    let n_imports = info.imports.len();
    let mut role = vec![Role::Plain; info.num_funcs() as usize];
    for (i, scan) in scans.iter().enumerate() {
        let f = n_imports + i;
        for &(callee, _) in &scan.calls {
            match runtime_imports.get(callee as usize).copied().flatten() {
                Some(RuntimeImport::StartUnwind | RuntimeImport::StopRewind)
                    if role[f] == Role::Plain =>
                {
                    role[f] = Role::Bottom
                }
                Some(RuntimeImport::StopUnwind | RuntimeImport::StartRewind) => role[f] = Role::Top,
                _ => {}
            }
        }
    }
    role
}

/// The lists and the roles, which propagation and the final decisions obey.
pub(super) struct Rules {
    pub(super) n_imports: usize,
    pub(super) lists: Lists,
    pub(super) roles: Vec<Role>,
}

impl Rules {
    /// Whether the analysis may mark a defined function as unwinding through a call.
    pub(super) fn propagates_into(&self, f: usize) -> bool {
        f >= self.n_imports
            && !self.lists.remove[f]
            && self.roles[f] != Role::Top
            && self.lists.only.is_none()
    }

    /// Final decisions per defined function: which are instrumented. The lists
    /// and the runtime override what propagation found.
    pub(super) fn decide(&self, verdicts: &mut Verdicts) -> Vec<bool> {
        let Verdicts {
            can_unwind,
            reasons,
        } = verdicts;
        let Lists { add, remove, only } = &self.lists;
        let n = can_unwind.len();
        let mut instrumented = vec![false; n];
        for f in self.n_imports..n {
            if remove[f] {
                can_unwind[f] = false;
                reasons[f] = Reason::RemoveList;
            } else if let Some(only) = only {
                can_unwind[f] = only[f];
                instrumented[f] = only[f];
                reasons[f] = if only[f] {
                    Reason::OnlyList
                } else {
                    Reason::NotInOnlyList
                };
            } else if self.roles[f] != Role::Plain {
                // The in-module runtime is never instrumented.
            } else if can_unwind[f] {
                instrumented[f] = true;
            } else if add[f] {
                can_unwind[f] = true;
                instrumented[f] = true;
                reasons[f] = Reason::AddList;
            }
        }
        instrumented
    }
}
