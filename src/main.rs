//! The `wasm-rewind` command line: a thin layer over `wasm_rewind_transform`.
//!
//! One module per subcommand (`instrument.rs`), plus the shared input/output
//! handling (`files.rs`) and list parsing (`lists.rs`). Errors are reported
//! like wasm-tools does: `error:` and a numbered `Caused by:` chain, exit
//! status 1; clap's usage errors exit with 2.

mod files;
mod instrument;
mod lists;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Shown at the end of the top-level `--help`.
const AFTER_HELP: &str = "\
Examples:
  wasm-rewind instrument app.wasm -o app.async.wasm --imports env.sleep
  wasm-rewind instrument app.wasm app.rewind.wasm --preset wasix
  wasm-rewind instrument app.wasm -o out.wasm --stats --explain main

Exit status: 0 success, 1 error, 2 usage error.";

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
    /// Run a WASI command on embedded wasmtime with the WASIX stack shim
    /// (setjmp/longjmp through runtime-shim/include/setjmp.h).
    Run(run::Opts),
}

impl Command {
    /// Runs the subcommand; `run` passes the guest's exit status through.
    fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Instrument(opts) => opts.run().map(|()| ExitCode::SUCCESS),
            Command::Run(opts) => opts.run(),
        }
    }
}

fn main() -> ExitCode {
    // `parse` prints usage errors and exits with status 2, and prints
    // --help/--version and exits with 0.
    let err = match Cli::parse().command.run() {
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
        eprintln!("{}", render_error(&err));
    }
    ExitCode::FAILURE
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
