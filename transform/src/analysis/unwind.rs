//! Which functions can change the Asyncify state, which are instrumented, and why.
//!
//! "Can unwind" starts at imports (per the import list), at functions that call
//! the in-module runtime's `asyncify.start_unwind` / `asyncify.stop_rewind`, at
//! indirect calls whose possible targets are unknown, and (with `--propagate-add`)
//! at the add list, and flows from callee to caller over direct calls and over
//! indirect calls that can reach the callee. A worklist, never recursion, so a
//! deep call graph cannot overflow our stack. Every decision keeps its reason, so
//! `--explain` can print the chain back to where it started.

use crate::analysis::scan::FunctionScan;
use crate::error::{Error, ErrorKind, Result};
use crate::module_info::ModuleInfo;
use crate::options::{wildcard_match, Options};
use std::collections::{HashMap, VecDeque};

/// The in-module runtime imports (`asyncify.*`), which become direct calls to the
/// functions the pass adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeImport {
    /// `asyncify.start_unwind(ptr)`
    StartUnwind,
    /// `asyncify.stop_unwind()`
    StopUnwind,
    /// `asyncify.start_rewind(ptr)`
    StartRewind,
    /// `asyncify.stop_rewind()`
    StopRewind,
    /// `asyncify.get_state() -> i32`
    GetState,
}

impl RuntimeImport {
    fn from_name(name: &str) -> Option<RuntimeImport> {
        Some(match name {
            "start_unwind" => RuntimeImport::StartUnwind,
            "stop_unwind" => RuntimeImport::StopUnwind,
            "start_rewind" => RuntimeImport::StartRewind,
            "stop_rewind" => RuntimeImport::StopRewind,
            "get_state" => RuntimeImport::GetState,
            _ => return None,
        })
    }
}

/// Why a function ended up as it did. The first link of the `--explain` chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// An import that may unwind (it matched the import list, or there is none).
    Import,
    /// An import that cannot unwind.
    ImportIgnored,
    /// Calls `callee` at `offset`, and the callee can unwind.
    Calls { callee: u32, offset: usize },
    /// Has an indirect call at `offset` that can reach `target` (`None`: the
    /// possible targets are unknown, e.g. the table is imported or exported).
    Indirect { target: Option<u32>, offset: usize },
    /// Calls `asyncify.start_unwind` or `asyncify.stop_rewind` itself: it is part
    /// of the in-module runtime; not instrumented, but its callers are.
    RuntimeBottom,
    /// Calls `asyncify.stop_unwind` or `asyncify.start_rewind`: it drives the
    /// unwind loop; not instrumented and it stops propagation.
    RuntimeTop,
    /// Named by `--add`.
    AddList,
    /// Named by `--only`.
    OnlyList,
    /// Not named by `--only`.
    NotInOnlyList,
    /// Named by `--remove`.
    RemoveList,
    /// No call in it can unwind.
    NoUnwindingCalls,
}

/// The possible targets of an indirect call, after narrowing.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Code outside the module can supply the callee.
    Unknown,
    /// Exactly these functions can be called.
    Known(Vec<u32>),
}

/// Identifies a target set: `call_indirect` by (signature, table), or
/// `call_ref` by signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum TargetKey {
    Indirect(u32, u32),
    Ref(u32),
}

/// The result of the analysis.
#[derive(Debug)]
pub struct UnwindAnalysis {
    /// Per function (imports first): a call to it can unwind.
    pub can_unwind: Vec<bool>,
    /// Per function: it is rewritten by the pass.
    pub instrumented: Vec<bool>,
    /// Per function: why.
    pub reasons: Vec<Reason>,
    /// Per function import: whether it is an `asyncify.*` runtime import.
    pub runtime_imports: Vec<Option<RuntimeImport>>,
    /// Narrowed targets per `(canonical signature, table)` of `call_indirect`.
    indirect_targets: HashMap<(u32, u32), Targets>,
    /// Narrowed targets per canonical signature of `call_ref`.
    ref_targets: HashMap<u32, Targets>,
    /// Canonical signature id per type index.
    canon: Vec<u32>,
    /// Whether indirect calls are assumed never to unwind.
    ignore_indirect: bool,
    /// Warnings (list entries that matched nothing).
    pub warnings: Vec<String>,
}

/// What a resumable call site needs at rewind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallClass {
    /// The call can unwind: it is a resume point.
    pub can_unwind: bool,
    /// A callee that is not instrumented by us (an import, or the in-module
    /// runtime) can be reached: it is re-entered during rewind and may read its
    /// arguments, so they must be the original ones rather than zeros.
    pub needs_real_args: bool,
}

impl UnwindAnalysis {
    /// Whether defined function `f` is part of the in-module runtime (it calls
    /// `asyncify.*` controls itself).
    pub fn is_runtime(&self, f: u32) -> bool {
        matches!(
            self.reasons[f as usize],
            Reason::RuntimeBottom | Reason::RuntimeTop
        )
    }

    /// Classifies a direct call to `callee`.
    pub fn direct(&self, callee: u32) -> CallClass {
        let can_unwind = self.can_unwind[callee as usize];
        CallClass {
            can_unwind,
            needs_real_args: can_unwind && !self.instrumented[callee as usize],
        }
    }

    /// Classifies `call_indirect` of type `ty` through `table`.
    pub fn indirect(&self, ty: u32, table: u32) -> CallClass {
        self.classify(self.indirect_targets.get(&(self.canon[ty as usize], table)))
    }

    /// Classifies `call_ref` of type `ty`.
    pub fn call_ref(&self, ty: u32) -> CallClass {
        self.classify(self.ref_targets.get(&self.canon[ty as usize]))
    }

    fn classify(&self, targets: Option<&Targets>) -> CallClass {
        if self.ignore_indirect {
            return CallClass {
                can_unwind: false,
                needs_real_args: false,
            };
        }
        match targets {
            None | Some(Targets::Unknown) => CallClass {
                can_unwind: true,
                needs_real_args: true,
            },
            Some(Targets::Known(funcs)) => {
                let mut class = CallClass {
                    can_unwind: false,
                    needs_real_args: false,
                };
                for &f in funcs {
                    let c = self.direct(f);
                    class.can_unwind |= c.can_unwind;
                    class.needs_real_args |= c.needs_real_args;
                }
                class
            }
        }
    }

    /// The `--explain` chain for function `f`, one line per link, at most
    /// `limit` links. `names` holds every function's display name.
    pub fn explain(&self, names: &[String], n_imports: usize, f: u32, limit: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut cur = Some(f);
        while let Some(g) = cur {
            if !seen.insert(g) || lines.len() >= limit {
                break;
            }
            let name = &names[g as usize];
            let verdict = if (g as usize) < n_imports {
                if self.can_unwind[g as usize] {
                    "is an import that may unwind"
                } else {
                    "is an import that cannot unwind"
                }
            } else if self.instrumented[g as usize] {
                "is instrumented"
            } else if self.can_unwind[g as usize] {
                "is not instrumented but may unwind"
            } else {
                "is not instrumented"
            };
            cur = None;
            let why = match &self.reasons[g as usize] {
                Reason::Import => "(it matches the import list, or no list was given)".to_string(),
                Reason::ImportIgnored => "(it does not match the import list)".to_string(),
                Reason::Calls { callee, offset } => {
                    cur = Some(*callee);
                    format!(
                        "because it calls `{}` (at offset {offset:#x})",
                        names[*callee as usize]
                    )
                }
                Reason::Indirect { target, offset } => match target {
                    Some(t) => {
                        cur = Some(*t);
                        format!(
                            "because its indirect call at offset {offset:#x} can reach `{}`",
                            names[*t as usize]
                        )
                    }
                    None => format!(
                        "because its indirect call at offset {offset:#x} can reach functions \
                         from outside the module (use --ignore-indirect if they never unwind)"
                    ),
                },
                Reason::RuntimeBottom => {
                    "because it calls `asyncify.start_unwind` or `asyncify.stop_rewind` \
                     (it is part of the in-module runtime; its callers are instrumented)"
                        .to_string()
                }
                Reason::RuntimeTop => "because it calls `asyncify.stop_unwind` or \
                                       `asyncify.start_rewind` (it drives the unwind loop)"
                    .to_string(),
                Reason::AddList => "because --add names it".to_string(),
                Reason::OnlyList => "because --only names it".to_string(),
                Reason::NotInOnlyList => "because --only does not name it".to_string(),
                Reason::RemoveList => "because --remove names it".to_string(),
                Reason::NoUnwindingCalls => "because none of its calls can unwind".to_string(),
            };
            lines.push(format!("`{name}` {verdict} {why}").trim_end().to_string());
        }
        lines
    }
}

/// Runs the analysis over the scanned module.
pub fn analyze(
    info: &ModuleInfo<'_>,
    scans: &[FunctionScan],
    options: &Options,
) -> Result<UnwindAnalysis> {
    if options.only.is_some() && (!options.add.is_empty() || !options.remove.is_empty()) {
        return Err(Error::new(
            ErrorKind::BadOptions,
            "--only cannot be combined with --add or --remove (it already decides every function)",
        ));
    }
    let n = info.num_funcs() as usize;
    let n_imports = info.imports.len();
    let mut warnings = Vec::new();

    // Imports: the in-module runtime, or per the import list.
    let mut runtime_imports = vec![None; n_imports];
    let mut can_unwind = vec![false; n];
    let mut reasons = vec![Reason::NoUnwindingCalls; n];
    let import_patterns = options.imports.as_deref();
    let mut import_pattern_used = vec![false; import_patterns.map_or(0, |p| p.len())];
    for (i, imp) in info.imports.iter().enumerate() {
        if imp.module == "asyncify" {
            match RuntimeImport::from_name(&imp.name) {
                Some(r) => {
                    runtime_imports[i] = Some(r);
                    reasons[i] = Reason::ImportIgnored;
                    continue;
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                        "unknown in-module runtime import `asyncify.{}` (expected start_unwind, \
                             stop_unwind, start_rewind, stop_rewind or get_state)",
                        imp.name
                    ),
                    ))
                }
            }
        }
        let qualified = imp.qualified();
        let listed = match import_patterns {
            None => true,
            Some(patterns) => {
                let mut hit = false;
                for (k, p) in patterns.iter().enumerate() {
                    if wildcard_match(p, &qualified) {
                        import_pattern_used[k] = true;
                        hit = true;
                    }
                }
                hit
            }
        };
        can_unwind[i] = listed && !options.ignore_imports;
        reasons[i] = if can_unwind[i] {
            Reason::Import
        } else {
            Reason::ImportIgnored
        };
    }
    if let Some(patterns) = import_patterns {
        for (k, p) in patterns.iter().enumerate() {
            // The preset names both the 32- and 64-bit WASIX modules; a module
            // only ever imports one of them, so those entries stay quiet.
            if !import_pattern_used[k] && !crate::options::WASIX_STACK_IMPORTS.contains(&p.as_str())
            {
                warnings.push(format!("--imports entry `{p}` matches no import"));
            }
        }
    }

    // Function lists, matched against name-section names.
    let matcher = |list: &[String], what: &str, warnings: &mut Vec<String>| -> Vec<bool> {
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
    };
    let add = matcher(&options.add, "--add", &mut warnings);
    let remove = matcher(&options.remove, "--remove", &mut warnings);
    let only = options
        .only
        .as_ref()
        .map(|list| matcher(list, "--only", &mut warnings));

    // Roles in the in-module runtime.
    #[derive(Clone, Copy, PartialEq)]
    enum Role {
        Plain,
        Bottom,
        Top,
    }
    let mut role = vec![Role::Plain; n];
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

    // Narrow indirect calls: canonical signatures, then target sets.
    let mut canon_ids: HashMap<&wasmparser::FuncType, u32> = HashMap::new();
    let canon: Vec<u32> = info
        .types
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
        .collect();
    let mut escaped: Vec<u32> = info.passive_elem_funcs.clone();
    for init in &info.table_inits {
        escaped.extend(&init.funcs);
    }
    for scan in scans {
        escaped.extend(&scan.ref_funcs);
    }
    escaped.sort_unstable();
    escaped.dedup();
    let mut mutated = vec![false; info.tables.len()];
    for scan in scans {
        for &t in &scan.mutated_tables {
            mutated[t as usize] = true;
        }
    }
    let func_canon = |f: u32| canon[info.func_types[f as usize] as usize];
    let mut indirect_targets: HashMap<(u32, u32), Targets> = HashMap::new();
    let mut ref_targets: HashMap<u32, Targets> = HashMap::new();
    for scan in scans {
        for &(ty, table, _) in &scan.indirect_calls {
            let c = canon[ty as usize];
            indirect_targets.entry((c, table)).or_insert_with(|| {
                let t = &info.tables[table as usize];
                if t.open || (mutated[table as usize] && info.refs_cross_boundary) {
                    return Targets::Unknown;
                }
                let pool: &[u32] = if mutated[table as usize] {
                    &escaped
                } else {
                    &info.table_inits[table as usize].funcs
                };
                let mut funcs: Vec<u32> = pool
                    .iter()
                    .copied()
                    .filter(|&f| func_canon(f) == c)
                    .collect();
                funcs.sort_unstable();
                funcs.dedup();
                Targets::Known(funcs)
            });
        }
        for &(ty, _) in &scan.ref_calls {
            let c = canon[ty as usize];
            ref_targets.entry(c).or_insert_with(|| {
                if info.refs_cross_boundary {
                    return Targets::Unknown;
                }
                Targets::Known(
                    escaped
                        .iter()
                        .copied()
                        .filter(|&f| func_canon(f) == c)
                        .collect(),
                )
            });
        }
    }

    // Reverse edges: callee -> (caller, how). Indirect calls go through one
    // node per target set ("key"), so the edges stay linear in sites plus
    // targets rather than their product.
    let mut callers: Vec<Vec<(u32, Reason)>> = vec![Vec::new(); n];
    let mut key_ids: HashMap<TargetKey, usize> = HashMap::new();
    // Per key: the sites (caller, offset) that call through it.
    let mut key_callers: Vec<Vec<(u32, usize)>> = Vec::new();
    // Per function: the keys whose targets include it.
    let mut func_keys: Vec<Vec<usize>> = vec![Vec::new(); n];
    // Functions with an indirect call whose targets are unknown.
    let mut unknown_indirect: Vec<(u32, usize)> = Vec::new();
    for (i, scan) in scans.iter().enumerate() {
        let f = (n_imports + i) as u32;
        for &(callee, offset) in &scan.calls {
            callers[callee as usize].push((f, Reason::Calls { callee, offset }));
        }
        if options.ignore_indirect {
            continue;
        }
        let sites = scan
            .indirect_calls
            .iter()
            .map(|&(ty, table, offset)| {
                let key = TargetKey::Indirect(canon[ty as usize], table);
                (
                    key,
                    indirect_targets.get(&(canon[ty as usize], table)),
                    offset,
                )
            })
            .chain(scan.ref_calls.iter().map(|&(ty, offset)| {
                let key = TargetKey::Ref(canon[ty as usize]);
                (key, ref_targets.get(&canon[ty as usize]), offset)
            }));
        for (key, targets, offset) in sites {
            match targets {
                None | Some(Targets::Unknown) => unknown_indirect.push((f, offset)),
                Some(Targets::Known(funcs)) => {
                    let key = *key_ids.entry(key).or_insert_with(|| {
                        key_callers.push(Vec::new());
                        for &t in funcs {
                            func_keys[t as usize].push(key_callers.len() - 1);
                        }
                        key_callers.len() - 1
                    });
                    key_callers[key].push((f, offset));
                }
            }
        }
    }

    // Whether the analysis may mark a defined function as unwinding through a call.
    let propagates_into = |f: usize| -> bool {
        f >= n_imports && !remove[f] && role[f] != Role::Top && only.is_none()
    };

    let mut queue = VecDeque::new();
    queue.extend((0..n as u32).filter(|&f| can_unwind[f as usize]));
    for f in n_imports..n {
        if role[f] == Role::Bottom && !remove[f] {
            can_unwind[f] = true;
            reasons[f] = Reason::RuntimeBottom;
            queue.push_back(f as u32);
        } else if role[f] == Role::Top {
            reasons[f] = Reason::RuntimeTop;
        }
        if add[f] && options.propagate_add && !can_unwind[f] && propagates_into(f) {
            can_unwind[f] = true;
            reasons[f] = Reason::AddList;
            queue.push_back(f as u32);
        }
    }
    for &(f, offset) in &unknown_indirect {
        if !can_unwind[f as usize] && propagates_into(f as usize) {
            can_unwind[f as usize] = true;
            reasons[f as usize] = Reason::Indirect {
                target: None,
                offset,
            };
            queue.push_back(f);
        }
    }
    let mut key_fired = vec![false; key_callers.len()];
    while let Some(g) = queue.pop_front() {
        let mut reached: Vec<(u32, Reason)> = callers[g as usize].clone();
        for &key in &func_keys[g as usize] {
            if std::mem::replace(&mut key_fired[key], true) {
                continue;
            }
            reached.extend(key_callers[key].iter().map(|&(f, offset)| {
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
            let c = caller as usize;
            if !can_unwind[c] && propagates_into(c) {
                can_unwind[c] = true;
                reasons[c] = how;
                queue.push_back(caller);
            }
        }
    }

    // Final decisions per defined function.
    let mut instrumented = vec![false; n];
    for f in n_imports..n {
        if remove[f] {
            can_unwind[f] = false;
            reasons[f] = Reason::RemoveList;
        } else if let Some(only) = &only {
            can_unwind[f] = only[f];
            instrumented[f] = only[f];
            reasons[f] = if only[f] {
                Reason::OnlyList
            } else {
                Reason::NotInOnlyList
            };
        } else if role[f] != Role::Plain {
            // The in-module runtime is never instrumented.
        } else if can_unwind[f] {
            instrumented[f] = true;
        } else if add[f] {
            can_unwind[f] = true;
            instrumented[f] = true;
            reasons[f] = Reason::AddList;
        }
    }

    Ok(UnwindAnalysis {
        can_unwind,
        instrumented,
        reasons,
        runtime_imports,
        indirect_targets,
        ref_targets,
        canon,
        ignore_indirect: options.ignore_indirect,
        warnings,
    })
}
