//! `instrument --report FILE.json`: the facts `inspect` gives about the
//! output, with the pass's own answers in place of what `inspect` reads from
//! code (the instrumented functions from its decisions, the unwinding imports
//! from its analysis), plus every
//! per-function decision and the `--stats` numbers.

use crate::files::Output;
use crate::inspect::cli_facts;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use wasm_rewind_transform::inspect::Facts;
use wasm_rewind_transform::{with_flags, Instrumented};

/// The JSON document.
#[derive(Serialize)]
struct Report<'a> {
    /// The output module, as `inspect --json` describes it.
    module: Facts,
    /// One entry per defined function of the input, in index order.
    decisions: Vec<Decision<'a>>,
    /// The `--stats` numbers.
    stats: Stats<'a>,
}

/// [`wasm_rewind_transform::Decision`] for serde.
#[derive(Serialize)]
struct Decision<'a> {
    index: u32,
    name: &'a str,
    instrumented: bool,
    reason: String,
}

/// [`wasm_rewind_transform::Stats`] for serde.
#[derive(Serialize)]
struct Stats<'a> {
    functions: usize,
    instrumented_functions: usize,
    resumable_call_sites: usize,
    unwind_only_calls: usize,
    frame_layouts: usize,
    exact_frames: usize,
    input_size: usize,
    output_size: usize,
    dropped_sections: &'a [String],
    warnings: Vec<String>,
}

/// Writes the report for one run of the pass to `path` (atomically, as the
/// module itself).
pub fn write(path: &Path, done: &Instrumented) -> Result<()> {
    let mut module = cli_facts(&done.wasm).context("cannot describe the output for --report")?;
    module.functions.instrumented = done
        .decisions
        .iter()
        .filter(|d| d.instrumented)
        .map(|d| d.name.clone())
        .collect();
    module.unwinding_imports = done.unwinding_imports.clone();
    module.basis = "pass".to_string();
    let s = &done.stats;
    let report = Report {
        module,
        decisions: done
            .decisions
            .iter()
            .map(|d| Decision {
                index: d.index,
                name: &d.name,
                instrumented: d.instrumented,
                reason: with_flags(&d.reason),
            })
            .collect(),
        stats: Stats {
            functions: s.functions,
            instrumented_functions: s.instrumented_functions,
            resumable_call_sites: s.resumable_call_sites,
            unwind_only_calls: s.unwind_only_calls,
            frame_layouts: s.frame_layouts,
            exact_frames: s.exact_frames,
            input_size: s.input_size,
            output_size: s.output_size,
            dropped_sections: &s.dropped_sections,
            warnings: s.warnings.iter().map(|w| with_flags(w)).collect(),
        },
    };
    let mut json = serde_json::to_vec_pretty(&report)?;
    json.push(b'\n');
    Output(Some(path.to_path_buf()))
        .write(&json)
        .context("cannot write the --report file")
}
