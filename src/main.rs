//! The `wasm-rewind` command line: a thin layer over `wasm_rewind_transform`.
//!
//! One module per subcommand (`instrument.rs`, `inspect.rs`, `run.rs`), plus
//! the shared input/output handling (`files.rs`), list parsing (`lists.rs`),
//! wasm-opt's spelling (`wasm_opt_args.rs`), module facts (the library's `inspect`), the
//! `--report` JSON (`report.rs`), the progress bar (`progress.rs`) and the
//! compiled-module cache of `run` (`module_cache.rs`). Errors
//! are reported like wasm-tools does: `error:` and a numbered `Caused by:`
//! chain, exit status 1; usage errors exit with 2.

mod files;
mod inspect;
mod instrument;
mod lists;
mod module_cache;
mod progress;
mod report;
mod run;
mod wasm_opt_args;

use clap::{Parser, Subcommand};

/// The pass allocates many small vectors from rayon's threads: glibc's
/// malloc and free took about a fifth of `instrument`'s time on SQLite.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// Shown at the end of the top-level `--help`.
const AFTER_HELP: &str = "\
Examples:
  # A C project (clang or wasi-sdk) using setjmp/longjmp, post-link:
  clang --target=wasm32-wasi -I runtime-shim/include -O2 app.c -o app.wasm
  wasm-rewind instrument app.wasm app.rw.wasm
  wasm-rewind run app.rw.wasm -- ARGS

  # In place of `wasm-opt --asyncify` (same pass arguments):
  wasm-rewind instrument app.wasm --asyncify --pass-arg=asyncify-imports@env.sleep -o out.wasm

  # What is in a module, and what the shim needs:
  wasm-rewind inspect app.rw.wasm

  # A Rust build script: wasm_rewind_transform::Instrument::new().run_file(IN, OUT)
  #   (see examples/build-script/build.rs)
  # A wasmtime embedder: wasm_rewind_shim::{add_to_linker, call, check_module}
  #   (see runtime-shim/examples/embed.rs)

Exit status:
  0  success
  1  an error (unreadable, invalid or refused module, I/O); no output is written
  2  a usage error (unknown flag, missing or conflicting arguments)
  `run` exits with the program's status, 134 if it traps.";

/// Rewrites WebAssembly modules so their call stacks can be unwound and
/// rewound (Binaryen's Asyncify ABI; a drop-in for `wasm-opt --asyncify`).
#[derive(Parser, Debug)]
#[command(name = "wasm-rewind", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands, one module each.
#[derive(Subcommand, Debug)]
enum Command {
    /// Rewrite a module so its call stack can be unwound and rewound
    /// (Binaryen's Asyncify ABI).
    Instrument(instrument::Opts),
    /// Describe a module: instrumented or not (by us or Binaryen), which
    /// functions and imports unwind, what the shim needs, sizes.
    Inspect(inspect::Opts),
    /// Run a WASI command on embedded wasmtime with the WASIX stack shim
    /// (setjmp/longjmp through runtime-shim/include/setjmp.h).
    Run(run::Opts),
}

impl Command {
    /// Runs the subcommand; `run` passes the guest's exit status through.
    fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Instrument(opts) => opts.run().map(|()| ExitCode::SUCCESS),
            Command::Inspect(opts) => opts.run().map(|()| ExitCode::SUCCESS),
            Command::Run(opts) => opts.run(),
        }
    }
}

fn main() -> ExitCode {
    // wasm-opt's spelling (`--asyncify`, `--pass-arg=asyncify-*`) becomes
    // ours before clap sees it; a pass argument we cannot map is a usage
    // error, like an unknown flag.
    let translated = match wasm_opt_args::translate(std::env::args_os().collect()) {
        Ok(t) => t,
        Err(e) => {
            say(render_error(&e));
            return ExitCode::from(2);
        }
    };
    // `parse` prints usage errors and exits with status 2, and prints
    // --help/--version and exits with 0.
    let cli = Cli::parse_from(translated.args.iter());
    let quiet = translated.args.iter().any(|a| a == "--quiet" || a == "-q");
    if !quiet {
        for note in &translated.notes {
            say(format_args!("note: {note}"));
        }
    }
    let err = match cli.command.run() {
        Ok(code) => return code,
        Err(e) => e,
    };
    // The reader went away (`| head`): nothing useful can be said on a
    // closed pipe, and a message about it would only be noise.
    let broken_pipe = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if !broken_pipe {
        say(render_error(&err));
    }
    ExitCode::FAILURE
}

/// Writes `line` and a newline to stderr. A closed stderr (`2>&-`, a reader
/// that went away) loses the message, but must not turn the exit status
/// into a panic's 101 as `eprintln!` would.
pub(crate) fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `error: <what>`, then every cause on its own numbered line.
fn render_error(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}");
    let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        out.push_str("\n\nCaused by:");
        for (i, cause) in causes.iter().enumerate() {
            out.push_str(&format!("\n    {i}: {cause}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{render_error, Cli};
    use anyhow::Context;

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn errors_have_a_numbered_cause_chain() {
        let err = Err::<(), _>(std::io::Error::from(std::io::ErrorKind::NotFound))
            .context("inner")
            .context("outer")
            .unwrap_err();
        let text = render_error(&err);
        assert!(
            text.starts_with("error: outer\n\nCaused by:\n    0: inner\n    1: "),
            "{text}"
        );
    }
}
