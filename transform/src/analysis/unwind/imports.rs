//! The first verdicts: which imports can unwind.

use super::{Reason, RuntimeImport, Verdicts};
use crate::abi;
use crate::error::{Error, ErrorKind, Result};
use crate::module_info::ModuleInfo;
use crate::options::{wildcard_match, Options};
use crate::OptionName;

/// Imports: the in-module runtime, or per the import list. Returns which
/// imports are the runtime's, and the verdicts with every defined function
/// still unable to unwind (only calls can change that).
pub(super) fn classify_imports(
    info: &ModuleInfo<'_>,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Option<RuntimeImport>>, Verdicts)> {
    let n = info.num_funcs() as usize;
    let n_imports = info.imports.len();
    let mut runtime_imports = vec![None; n_imports];
    let mut can_unwind = vec![false; n];
    let mut reasons = vec![Reason::NoUnwindingCalls; n];
    let import_patterns = options.imports.as_deref();
    let mut import_pattern_used = vec![false; import_patterns.map_or(0, |p| p.len())];
    for (i, imp) in info.imports.iter().enumerate() {
        if imp.module == "asyncify" {
            runtime_imports[i] = Some(runtime_import(&imp.name)?);
            reasons[i] = Reason::ImportIgnored;
            continue;
        }
        let listed = match import_patterns {
            None => true,
            Some(patterns) => matches_any(patterns, &imp.qualified(), &mut import_pattern_used),
        };
        let unwinds_as_asked = listed && !options.ignore_imports;
        // A WASIX call that unwinds (setjmp/longjmp, a context switch) starts
        // an unwind whatever the list says: its host always does. Left out,
        // its callers would run on after it in the unwinding state and the
        // program would break far from the cause, so it unwinds anyway.
        let wasix = abi::is_wasix_unwinding_import(&imp.module, &imp.name);
        if wasix && !unwinds_as_asked {
            warnings.push(format!(
                "`{}` unwinds even though {} leaves it out: WASIX hosts (and \
                 --embed-runtime) start an unwind from it",
                imp.qualified(),
                if options.ignore_imports {
                    OptionName::IgnoreImports
                } else {
                    OptionName::Imports
                }
            ));
        }
        can_unwind[i] = unwinds_as_asked || wasix;
        reasons[i] = if can_unwind[i] {
            Reason::Import
        } else {
            Reason::ImportIgnored
        };
    }
    if let Some(patterns) = import_patterns {
        warn_unused_patterns(patterns, &import_pattern_used, warnings);
    }
    Ok((
        runtime_imports,
        Verdicts {
            can_unwind,
            reasons,
        },
    ))
}

/// The in-module runtime import `asyncify.<name>`. An unknown name is refused:
/// the pass could not map it to a function it adds.
fn runtime_import(name: &str) -> Result<RuntimeImport> {
    RuntimeImport::from_name(name).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "unknown in-module runtime import `asyncify.{name}` (expected start_unwind, \
                 stop_unwind, start_rewind, stop_rewind or get_state)"
            ),
        )
    })
}

/// Whether `qualified` (`module.name`) matches any of the `patterns`, marking
/// every pattern it matches as `used`.
fn matches_any(patterns: &[String], qualified: &str, used: &mut [bool]) -> bool {
    let mut hit = false;
    for (k, p) in patterns.iter().enumerate() {
        if wildcard_match(p, qualified) {
            used[k] = true;
            hit = true;
        }
    }
    hit
}

/// Warns of import list entries that matched no import: likely typos.
fn warn_unused_patterns(patterns: &[String], used: &[bool], warnings: &mut Vec<String>) {
    for (k, p) in patterns.iter().enumerate() {
        // The preset names both the 32- and 64-bit WASIX modules; a module
        // only ever imports one of them, so those entries stay quiet.
        if !used[k] && !crate::options::WASIX_UNWINDING_IMPORTS.contains(&p.as_str()) {
            warnings.push(format!(
                "{} entry `{p}` matches no import",
                OptionName::Imports
            ));
        }
    }
}
