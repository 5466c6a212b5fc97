//! Which functions can change the Asyncify state, which are instrumented, and why.
//!
//! "Can unwind" starts at imports (per the import list), at functions that call
//! the in-module runtime's `asyncify.start_unwind` / `asyncify.stop_rewind`, at
//! indirect calls whose possible targets are unknown, and (with `--propagate-add`)
//! at the add list, and flows from callee to caller over direct calls and over
//! indirect calls that can reach the callee. A worklist, never recursion, so a
//! deep call graph cannot overflow our stack. Every decision keeps its reason, so
//! `--explain` can print the chain back to where it started.

mod exceptions;
mod imports;
mod propagate;
mod rules;
mod targets;

use crate::analysis::scan::FunctionScan;
use crate::error::Result;
use crate::module_info::ModuleInfo;
use crate::options::Options;
use crate::OptionName;
pub use exceptions::{analyze_for_exceptions, StackImports};
use imports::classify_imports;
use propagate::{propagate, CallerGraph};
use rules::{match_lists, runtime_roles, Rules};
use std::collections::HashMap;
use targets::narrow_targets;

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

/// The result of the analysis.
#[derive(Debug)]
pub struct UnwindAnalysis {
    /// Per function (imports first): a call to it can unwind.
    pub can_unwind: Vec<bool>,
    /// Per function: a call to it can unwind a stack that is rewound later
    /// (see [`rewindable`]). Where `can_unwind` holds and this does not, every
    /// unwind through the call comes from `stack_restore`, whose unwound
    /// frames every host discards.
    pub can_rewind: Vec<bool>,
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
    /// The call can unwind.
    pub can_unwind: bool,
    /// A stack it unwinds can be rewound: it is a resume point. A call that
    /// can unwind but never be rewound only has to return while unwinding.
    pub rewound: bool,
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
            rewound: can_unwind && self.can_rewind[callee as usize],
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
                rewound: false,
                needs_real_args: false,
            };
        }
        match targets {
            None | Some(Targets::Unknown) => CallClass {
                can_unwind: true,
                rewound: true,
                needs_real_args: true,
            },
            Some(Targets::Known(funcs)) => {
                let mut class = CallClass {
                    can_unwind: false,
                    rewound: false,
                    needs_real_args: false,
                };
                for &f in funcs {
                    let c = self.direct(f);
                    class.can_unwind |= c.can_unwind;
                    class.rewound |= c.rewound;
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
                         from outside the module (use {} if they never unwind)",
                        OptionName::IgnoreIndirect
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
                Reason::AddList => format!("because {} names it", OptionName::Add),
                Reason::OnlyList => format!("because {} names it", OptionName::Only),
                Reason::NotInOnlyList => {
                    format!("because {} does not name it", OptionName::Only)
                }
                Reason::RemoveList => format!("because {} names it", OptionName::Remove),
                Reason::NoUnwindingCalls => "because none of its calls can unwind".to_string(),
            };
            lines.push(format!("`{name}` {verdict} {why}").trim_end().to_string());
        }
        lines
    }
}

/// Runs the analysis over the scanned module, with options already checked
/// against each other (`Options::checked`).
///
/// Each phase needs the ones before: the imports and the options seed "can
/// unwind", the narrowed targets give the indirect edges it flows over, and the
/// options have the last word on what is instrumented.
pub fn analyze(
    info: &ModuleInfo<'_>,
    scans: &[FunctionScan],
    options: &Options,
) -> Result<UnwindAnalysis> {
    let mut warnings = Vec::new();
    let (runtime_imports, mut verdicts) = classify_imports(info, options, &mut warnings)?;
    let rules = Rules {
        n_imports: info.imports.len(),
        lists: match_lists(info, options, &mut warnings),
        roles: runtime_roles(info, scans, &runtime_imports),
    };
    let targets = narrow_targets(info, scans);
    let graph = CallerGraph::new(info, scans, options.ignore_indirect, &targets);
    let seeds = verdicts.clone();
    propagate(&mut verdicts, &rules, &graph, options.propagate_add);
    let instrumented = rules.decide(&mut verdicts);
    let can_rewind = rewindable(info, &rules, &graph, seeds, &verdicts.can_unwind);
    Ok(UnwindAnalysis {
        can_unwind: verdicts.can_unwind,
        can_rewind,
        instrumented,
        reasons: verdicts.reasons,
        runtime_imports,
        indirect_targets: targets.indirect,
        ref_targets: targets.by_ref,
        canon: targets.canon,
        ignore_indirect: options.ignore_indirect,
        warnings,
    })
}

/// Which functions a call can reach a rewound unwind through: "can unwind"
/// spread again from the same starts (`seeds`, the verdicts before
/// propagation), but without the imports whose unwinds are never rewound
/// (`stack_restore`: Wasmer, the shim and the embedded runtime all discard
/// the frames it unwinds and rewind a checkpoint's instead), and with the add
/// list always spreading. A call that can unwind only on the way to
/// `stack_restore` (a call of longjmp itself, of an error routine that only
/// longjmps, of a recursion that ends in one) then needs no frame saved and
/// no resume point.
///
/// With `--only` the lists decide alone, so every function that can unwind
/// counts as rewound; so it does in a module without such imports.
fn rewindable(
    info: &ModuleInfo<'_>,
    rules: &Rules,
    graph: &CallerGraph,
    mut seeds: Verdicts,
    can_unwind: &[bool],
) -> Vec<bool> {
    let never_rewound: Vec<usize> = (info.imports.iter().enumerate())
        .filter(|(i, imp)| {
            seeds.can_unwind[*i] && crate::abi::is_never_rewound_import(&imp.module, &imp.name)
        })
        .map(|(i, _)| i)
        .collect();
    // Without such an import (most modules but setjmp/longjmp ones) the
    // second spread would find what the first did.
    if rules.lists.only.is_some() || never_rewound.is_empty() {
        return can_unwind.to_vec();
    }
    for i in never_rewound {
        seeds.can_unwind[i] = false;
    }
    for f in rules.n_imports..seeds.can_unwind.len() {
        seeds.can_unwind[f] |= rules.lists.add[f];
    }
    propagate(&mut seeds, rules, graph, true);
    seeds
        .can_unwind
        .iter()
        .zip(can_unwind)
        .map(|(&rewound, &unwinds)| rewound && unwinds)
        .collect()
}

/// Per function (imports first), the verdict so far: whether a call to it can
/// unwind, and why. The phases refine it in turn.
#[derive(Clone)]
struct Verdicts {
    can_unwind: Vec<bool>,
    reasons: Vec<Reason>,
}
