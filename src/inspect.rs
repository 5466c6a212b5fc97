//! `wasm-rewind inspect`: what a module is, for people and scripts.
//!
//! Whether it is instrumented (by us or by Binaryen), which functions are and
//! which imports can unwind, what the WASIX stack shim will need, and sizes.
//! The facts come from the library (`wasm_rewind_transform::inspect`); this
//! file only prints them.

use crate::files::Input;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use wasm_rewind_transform::inspect::{inspect, Facts};
use wasm_rewind_transform::with_flags;

/// Options of `wasm-rewind inspect`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
For a module that is not instrumented, the functions and imports listed are what
`wasm-rewind instrument` would choose with its default options (every import may
unwind); for an instrumented one they are read from its code.

Examples:
  wasm-rewind inspect app.wasm
  wasm-rewind inspect app.rw.wasm --json | jq .shim

Exit status:
  0  the module was read and described
  1  an error (unreadable or invalid module)
  2  a usage error")]
pub struct Opts {
    /// The module: `.wasm` or `.wat`, or `-` for stdin.
    #[arg(value_name = "MODULE")]
    module: PathBuf,
    /// Print JSON (one object; fields described in the README) instead of
    /// text.
    #[arg(long)]
    json: bool,
}

impl Opts {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let input = Input(self.module.clone());
        let wasm = input.read_module()?;
        let facts = cli_facts(&wasm)?;
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, &facts)?;
            writeln!(out)?;
        } else {
            write!(out, "{}", human(&input.display(), &facts))?;
        }
        out.flush()?;
        Ok(())
    }
}

/// The library's facts, with options named by their flags.
pub fn cli_facts(wasm: &[u8]) -> Result<Facts> {
    let mut facts = inspect(wasm).context("cannot read the module")?;
    for problem in &mut facts.shim.problems {
        *problem = with_flags(problem);
    }
    Ok(facts)
}

/// At most this many names per list in the text output (`--json` has all).
const SHOWN: usize = 20;

fn names(list: &[String]) -> String {
    if list.is_empty() {
        return "none".to_string();
    }
    let mut text = list
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        text.push_str(&format!(
            ", ... ({} more; --json lists all)",
            list.len() - SHOWN
        ));
    }
    text
}

/// The text report, one `key: value` line per fact so it can be grepped.
pub fn human(name: &str, f: &Facts) -> String {
    let mut t = String::new();
    let by = match (f.instrumented_by.as_deref(), &f.wasm_rewind_version) {
        (Some("wasm-rewind"), Some(v)) => format!("yes, by wasm-rewind {v}"),
        (Some(who), _) => format!("yes, by {who}"),
        (None, _) => "no".to_string(),
    };
    let (verb, note) = if f.basis == "code" {
        ("instrumented", "")
    } else {
        ("would be instrumented", " (default options)")
    };
    t.push_str(&format!("module: {name}\n"));
    t.push_str(&format!("instrumented: {by}\n"));
    t.push_str(&format!(
        "functions: {} defined, {} imported\n",
        f.functions.defined, f.functions.imported
    ));
    t.push_str(&format!(
        "functions {verb}{note}: {} ({})\n",
        f.functions.instrumented.len(),
        names(&f.functions.instrumented)
    ));
    t.push_str(&format!(
        "imports that can unwind{note}: {}\n",
        names(&f.unwinding_imports)
    ));
    if f.sjlj.is_some() {
        t.push_str(
            "setjmp/longjmp: lowered to wasm exceptions (needs an engine with exceptions)\n",
        );
    }
    let s = &f.shim;
    if s.wasix_imports.is_empty() {
        t.push_str("shim: not needed (no WASIX stack or context imports)\n");
    } else {
        t.push_str(&format!(
            "shim: needed for {}\n",
            s.wasix_imports.join(", ")
        ));
        t.push_str(&format!("  __stack_pointer: {}\n", s.stack_pointer));
        t.push_str(&format!(
            "  memory exported: {}\n",
            if s.memory_exported { "yes" } else { "no" }
        ));
        t.push_str(&format!("  unwind buffer: {}\n", s.buffer));
        t.push_str(&format!("  stack bottom for Wasmer: {}\n", s.stack_bottom));
        if let Some(bytes) = s.c_stack_bytes {
            t.push_str(&format!(
                "  C stack: {bytes} bytes (Wasmer unwinds into the part not in use; \
                 link with -Wl,-z,stack-size=N for deeper nesting)\n"
            ));
        }
        let yes = |b: bool| if b { "yes" } else { "no" };
        t.push_str(&format!("  ready to run: {}\n", yes(s.ready)));
        t.push_str(&format!("  ready for Wasmer: {}\n", yes(s.wasmer_ready)));
        for p in &s.problems {
            t.push_str(&format!("  problem: {p}\n"));
        }
    }
    let z = &f.sizes;
    t.push_str(&format!(
        "size: {} bytes (code {}, data {}, custom {})\n",
        z.total, z.code, z.data, z.custom
    ));
    for (name, size) in &z.custom_sections {
        t.push_str(&format!("  custom section {name}: {size} bytes\n"));
    }
    t
}
