//! The analysis under an exceptions lowering of setjmp/longjmp
//! ([`crate::SjljLowering::Exceptions`]).
//!
//! Nothing unwinds. A longjmp becomes a `throw` that passes through every
//! frame as it is, so the only functions rewritten are those that call
//! `stack_checkpoint` themselves, and each such call is their only kind of
//! resume point: where the function re-enters when it catches a jump meant
//! for it.

use super::{Reason, UnwindAnalysis};
use crate::abi;
use crate::analysis::scan::FunctionScan;
use crate::error::{Error, Result};
use crate::module_info::ModuleInfo;
use crate::OptionName;
use std::collections::HashMap;

/// The WASIX stack imports of a module, by function index.
#[derive(Clone, Debug, Default)]
pub struct StackImports {
    /// `stack_checkpoint`.
    pub checkpoint: Option<u32>,
    /// `stack_restore`, and `stack_rewind`, its other name (a module may
    /// import both).
    pub restore: Vec<u32>,
}

impl StackImports {
    /// Finds them among the imports of `info`.
    pub fn find(info: &ModuleInfo<'_>) -> StackImports {
        let mut found = StackImports::default();
        for (f, import) in info.imports.iter().enumerate() {
            if !abi::is_wasix_stack_import(&import.module, &import.name) {
                continue;
            }
            if import.name == "stack_checkpoint" {
                found.checkpoint = Some(f as u32);
            } else {
                found.restore.push(f as u32);
            }
        }
        found
    }

    /// Whether input function `f` is one of them.
    pub fn contains(&self, f: u32) -> bool {
        self.checkpoint == Some(f) || self.restore.contains(&f)
    }
}

/// The analysis of an exceptions lowering: the callers of `stack_checkpoint`
/// are instrumented, and only calls to it are sites.
///
/// Refuses a module that takes `stack_checkpoint` by address (a table, an
/// element segment, `ref.func`, an export): a call through it could not
/// become a resume point.
pub fn analyze_for_exceptions(
    info: &ModuleInfo<'_>,
    scans: &[FunctionScan],
) -> Result<UnwindAnalysis> {
    let imports = StackImports::find(info);
    let n_imports = info.imports.len();
    let n_funcs = info.num_funcs() as usize;
    let mut can_unwind = vec![false; n_funcs];
    let mut instrumented = vec![false; n_funcs];
    let mut reasons = vec![Reason::NoUnwindingCalls; n_funcs];
    for reason in &mut reasons[..n_imports] {
        *reason = Reason::ImportIgnored;
    }
    if let Some(checkpoint) = imports.checkpoint {
        refuse_taken_by_address(info, scans, checkpoint)?;
        can_unwind[checkpoint as usize] = true;
        reasons[checkpoint as usize] = Reason::Import;
        for (i, scan) in scans.iter().enumerate() {
            let f = n_imports + i;
            if let Some(&(_, offset)) = scan.calls.iter().find(|(c, _)| *c == checkpoint) {
                instrumented[f] = true;
                reasons[f] = Reason::Calls {
                    callee: checkpoint,
                    offset,
                };
            }
        }
    }
    // Nothing unwinds in this lowering, so a context switch can only be
    // served by a host that switches stacks itself.
    let warnings = info
        .imports
        .iter()
        .filter(|i| abi::is_wasix_context_import(&i.module, &i.name) && i.name == "context_switch")
        .map(|i| {
            format!(
                "`{}.{}` stays an import that cannot unwind under {}: only a host that \
                 switches stacks itself (Wasmer) can run this module's contexts; `wasm-rewind \
                 run` and --embed-runtime need the default lowering",
                i.module,
                i.name,
                OptionName::Sjlj
            )
        })
        .collect();
    Ok(UnwindAnalysis {
        can_rewind: can_unwind.clone(),
        can_unwind,
        instrumented,
        reasons,
        runtime_imports: vec![None; n_imports],
        indirect_targets: HashMap::new(),
        ref_targets: HashMap::new(),
        canon: vec![0; info.types.len()],
        // Indirect calls never reach the checkpoint: refused above.
        ignore_indirect: true,
        warnings,
    })
}

fn refuse_taken_by_address(
    info: &ModuleInfo<'_>,
    scans: &[FunctionScan],
    checkpoint: u32,
) -> Result<()> {
    let in_table = info
        .table_inits
        .iter()
        .any(|t| t.funcs.contains(&checkpoint))
        || info.passive_elem_funcs.contains(&checkpoint);
    let by_ref = scans.iter().any(|s| s.ref_funcs.contains(&checkpoint));
    let exported = info
        .exports
        .iter()
        .any(|(_, kind, index)| *kind == wasmparser::ExternalKind::Func && *index == checkpoint);
    if in_table || by_ref || exported {
        return Err(Error::unsupported(format!(
            "`stack_checkpoint` is taken by address (in a table, by `ref.func` or as an \
             export), and under {} only a direct call to it can become the point a longjmp \
             lands at; call setjmp directly, or keep the default lowering",
            OptionName::Sjlj
        )));
    }
    Ok(())
}
