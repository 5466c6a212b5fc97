//! `wasm-rewind instrument`: the pass as a post-link step, a drop-in for
//! `wasm-opt --asyncify`.
//!
//! Only argument handling lives here; every decision about the module is the
//! library's (`wasm_rewind_transform::instrument`), so the CLI cannot drift
//! from what build scripts get.

use crate::files::{Input, Output};
use crate::lists;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use wasm_rewind_transform::{with_flags, Instrumented, Options, SjljLowering};

/// Examples and exit statuses, shown at the end of `instrument --help`.
const AFTER_HELP: &str = "\
Lists (--imports, --only, --add, --remove) are comma-separated, except for commas
inside brackets, so C++ signatures like `foo(int, char)` stay whole; `*` matches any
run of characters; `@FILE` reads one entry per line. Each list flag can be repeated.

Examples:
  # Post-link step after clang: only env.sleep can unwind.
  clang --target=wasm32-wasip1 -O2 -o app.wasm app.c
  wasm-rewind instrument app.wasm -o app.async.wasm --imports env.sleep

  # For the WASIX stack_checkpoint/stack_restore calls (setjmp/longjmp), as
  # Wasmer and `wasm-rewind run` serve them. A module calling them keeps the
  # buffer in memory 0 and gets __stack_pointer and the stack's bounds
  # exported; link with -Wl,--export=__stack_low unless the stack comes first
  # (wasm-ld 22), or it is refused, since Wasmer could not find the stack.
  wasm-rewind instrument app.wasm app.rewind.wasm --preset wasix

  # What did the pass do, and why is `main` instrumented?
  wasm-rewind instrument app.wasm -o out.wasm --stats --explain main

  # wasm-opt's spelling works too (-O levels are accepted and ignored):
  wasm-rewind instrument app.wasm --asyncify -O2 \
      --pass-arg=asyncify-imports@env.sleep -o app.async.wasm

wasm-opt's pass arguments map onto the flags: asyncify-imports@LIST (--imports),
-ignore-imports, -ignore-indirect, -onlylist@ (--only), -addlist@ (--add),
-removelist@ (--remove), -propagate-addlist (--propagate-add), -asserts,
-memory@NAME, -in-secondary-memory with -secondary-memory-size@PAGES
(--secondary-memory=PAGES), -import-globals, -export-globals, -verbose (--stats).
Both --pass-arg=KEY@VALUE and --pass-arg KEY@VALUE; asyncify-relocatable and
other passes are refused.

Exit status:
  0  the output was written
  1  an error (unreadable or invalid input, refused module, bad list file, I/O);
     no output file is created or changed
  2  a usage error (unknown flag, missing or conflicting arguments)";

/// Presets for common hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Only the WASIX stack calls (`wasix_32v1`/`wasix_64v1` `stack_checkpoint`,
    /// `stack_restore`, `stack_rewind`) unwind, and `__stack_pointer` and the
    /// stack's bounds are exported for the host (Wasmer, `wasm-rewind run`).
    Wasix,
}

/// Rewrite a module so its call stack can be unwound and rewound (the Asyncify
/// ABI of `wasm-opt --asyncify`).
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Opts {
    /// Input module: `.wasm` or `.wat`, or `-` for stdin.
    #[arg(value_name = "IN")]
    input: PathBuf,

    /// Output module; `-` or absent writes to stdout (never to a terminal).
    #[arg(value_name = "OUT", conflicts_with = "output")]
    out: Option<PathBuf>,

    /// Output module (same as the OUT argument).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: Option<PathBuf>,

    /// Imports that may unwind, as `module.name` patterns (`*` wildcards);
    /// every other import is assumed not to. Default: every import may unwind.
    /// The WASIX calls that unwind (stack_checkpoint, stack_restore,
    /// stack_rewind, context_switch) always do, with a warning if left out.
    #[arg(long, value_name = "LIST", conflicts_with = "ignore_imports")]
    imports: Vec<String>,

    /// No import unwinds (only the add list, indirect calls and the in-module
    /// `asyncify.*` runtime can make a function unwind), except the WASIX
    /// calls that unwind, with a warning.
    #[arg(long)]
    ignore_imports: bool,

    /// Indirect calls (`call_indirect`, `call_ref`) never unwind.
    #[arg(long)]
    ignore_indirect: bool,

    /// Instrument exactly these functions and no others (excludes --add and
    /// --remove).
    #[arg(long, value_name = "LIST", conflicts_with_all = ["add", "remove"])]
    only: Vec<String>,

    /// Instrument these functions too, even when they cannot unwind.
    #[arg(long, value_name = "LIST")]
    add: Vec<String>,

    /// Never instrument these functions; they are assumed not to unwind, so
    /// their callers do not inherit anything from them.
    #[arg(long, value_name = "LIST")]
    remove: Vec<String>,

    /// Functions in the --add list also make their callers unwind.
    #[arg(long)]
    propagate_add: bool,

    /// Trap when a call assumed not to unwind returns while unwinding.
    #[arg(long)]
    asserts: bool,

    /// Memory holding `{pos, end}` and the buffer: export name, name-section
    /// name or index. Default: memory 0.
    #[arg(long, value_name = "NAME", conflicts_with = "secondary_memory")]
    memory: Option<String>,

    /// Put the buffer in a new memory of PAGES 64 KiB pages (1 when bare),
    /// exported as `asyncify_memory` (`wasm-rewind run` uses it; Wasmer and
    /// other hosts of the ABI do not).
    #[arg(
        long,
        value_name = "PAGES",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "1"
    )]
    secondary_memory: Option<u32>,

    /// Import `env.__asyncify_state` and `env.__asyncify_data` instead of
    /// defining the two globals.
    #[arg(long)]
    import_globals: bool,

    /// Export the globals `__asyncify_state` and `__asyncify_data`.
    #[arg(long)]
    export_globals: bool,

    /// Carry setjmp/longjmp inside the module: the WASIX stack imports are
    /// implemented in it and its exports wrapped, so it runs on any engine
    /// with plain WASI (node, browsers, wasmtime, Wasmer), with no shim.
    #[arg(long)]
    embed_runtime: bool,

    /// With --embed-runtime: the most memory its snapshots and unwind buffer
    /// may take (taken as needed); live snapshots that need more trap in
    /// `__wasm_rewind_snapshot_store_full`. Defaults to 64 MiB.
    #[arg(long, value_name = "BYTES", requires = "embed_runtime")]
    embed_max_memory: Option<u64>,

    /// How setjmp/longjmp (our setjmp.h's WASIX stack calls) are carried
    /// out: `asyncify` unwinds and rewinds the stack (Wasmer, `run`,
    /// --embed-runtime); `exceptions` lowers them to wasm exceptions
    /// (try_table/throw) inside the module, for engines with exceptions,
    /// where nothing unwinds on the normal path; `legacy-exceptions` does
    /// the same with the legacy try/catch (node 20).
    #[arg(long, value_name = "LOWERING", value_parser = parse_sjlj, default_value = "asyncify")]
    sjlj: SjljLowering,

    /// Settings for a host; --imports adds to the preset's import list.
    #[arg(long, value_enum, value_name = "PRESET")]
    preset: Option<Preset>,

    /// Print what the pass did to stderr: functions, call sites, frame
    /// layouts, sizes, dropped sections.
    #[arg(long)]
    stats: bool,

    /// Print to stdout why FUNC is (or is not) instrumented: the chain of
    /// calls down to the import, indirect call or list entry that decided it.
    #[arg(long, value_name = "FUNC")]
    explain: Vec<String>,

    /// Do not print warnings, notes or the progress bar (--stats and
    /// --explain still print).
    #[arg(long, short = 'q')]
    quiet: bool,

    /// Write a JSON report to FILE: what `inspect --json` says of the output,
    /// every function's decision and reason, and the --stats numbers.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
}

impl Opts {
    /// Runs the subcommand.
    pub fn run(self) -> Result<()> {
        let output = Output(self.output.clone().or_else(|| self.out.clone()));
        if output.is_stdout() && !self.explain.is_empty() {
            // One stream cannot carry both; refuse rather than interleave.
            bail!("--explain prints to stdout, which is taken by the module; give an output file (OUT or -o OUT)");
        }
        output.check()?;
        let options = self.options()?;
        let input = Input(self.input.clone());
        let wasm = input.read_module()?;
        let done = crate::progress::instrument(&wasm, &options, self.quiet, &input.display())
            .map_err(|e| anyhow!(with_flags(&e.to_string())))
            .with_context(|| format!("failed to instrument `{}`", input.display()))?;

        // Everything that can fail is checked before the output appears.
        let explanations = self
            .explain
            .iter()
            .map(|name| {
                let lines = done.explain(name).with_context(|| {
                    format!(
                        "--explain `{name}`: `{}` has no function of that name",
                        input.display()
                    )
                })?;
                Ok(lines.iter().map(|l| with_flags(l)).collect::<Vec<_>>())
            })
            .collect::<Result<Vec<_>>>()?;

        output.write(&done.wasm)?;
        if let Some(path) = &self.report {
            crate::report::write(path, &done)?;
        }

        if !self.quiet {
            for w in &done.stats.warnings {
                crate::say(format_args!("warning: {}", with_flags(w)));
            }
        }
        if self.stats {
            print_stats(&done)?;
        }
        let mut stdout = std::io::stdout().lock();
        for (i, lines) in explanations.iter().enumerate() {
            if i > 0 {
                writeln!(stdout)?;
            }
            for line in lines {
                writeln!(stdout, "{line}")?;
            }
        }
        stdout.flush()?;
        Ok(())
    }

    /// Builds the library's options from the flags, expanding the lists.
    fn options(&self) -> Result<Options> {
        let read = |p: &std::path::Path| std::fs::read_to_string(p);
        let mut options = match self.preset {
            Some(Preset::Wasix) => Options::wasix(),
            None => Options::default(),
        };
        let imports = lists::expand("--imports", &self.imports, read)?;
        if !imports.is_empty() {
            // Explicit imports extend a preset's list rather than replace it,
            // so `--preset wasix --imports env.sleep` keeps the WASIX calls.
            options.imports.get_or_insert_with(Vec::new).extend(imports);
        }
        options.ignore_imports = self.ignore_imports;
        options.ignore_indirect = self.ignore_indirect;
        if !self.only.is_empty() {
            options.only = Some(lists::expand("--only", &self.only, read)?);
        }
        options.add = lists::expand("--add", &self.add, read)?;
        options.remove = lists::expand("--remove", &self.remove, read)?;
        options.propagate_add = self.propagate_add;
        options.asserts = self.asserts;
        options.memory = self.memory.clone();
        options.secondary_memory = self.secondary_memory;
        options.import_globals = self.import_globals;
        options.export_globals = self.export_globals;
        options.embed_runtime = self.embed_runtime;
        options.embed_max_memory = self.embed_max_memory;
        options.sjlj = self.sjlj;
        Ok(options)
    }
}

/// `--sjlj`'s value, with the spellings the library lists.
fn parse_sjlj(name: &str) -> std::result::Result<SjljLowering, String> {
    SjljLowering::from_name(name).ok_or_else(|| {
        let all: Vec<&str> = SjljLowering::ALL.iter().map(|(_, n)| *n).collect();
        format!("expected one of: {}", all.join(", "))
    })
}

/// Prints `--stats` to stderr, one `key: value` per line so scripts can grep it.
fn print_stats(done: &Instrumented) -> Result<()> {
    let s = &done.stats;
    let ratio = s.output_size as f64 / s.input_size.max(1) as f64;
    let dropped = if s.dropped_sections.is_empty() {
        "none".to_string()
    } else {
        s.dropped_sections.join(", ")
    };
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "functions instrumented: {}/{}",
        s.instrumented_functions, s.functions
    )?;
    writeln!(err, "resumable call sites: {}", s.resumable_call_sites)?;
    writeln!(
        err,
        "calls that unwind only to longjmp (save nothing): {}",
        s.unwind_only_calls
    )?;
    writeln!(err, "frame layouts: {}", s.frame_layouts)?;
    writeln!(
        err,
        "call sites saving exactly their live locals: {}/{}",
        s.exact_frames, s.resumable_call_sites
    )?;
    writeln!(
        err,
        "size: {} -> {} bytes ({ratio:.2}x)",
        s.input_size, s.output_size
    )?;
    if s.embedded_runtime_size > 0 {
        writeln!(
            err,
            "embedded runtime: {} bytes of code",
            s.embedded_runtime_size
        )?;
    }
    writeln!(err, "dropped sections: {dropped}")?;
    Ok(())
}

/// The flags and the library's option table agree: each option with a flag
/// is a flag of `instrument`, and each flag of `instrument` is an option or
/// one of the few that only concern the command line.
#[cfg(test)]
mod agrees_with_the_option_table {
    use super::Opts;
    use clap::{Args, Command};
    use wasm_rewind_transform::OPTIONS;

    /// Flags that are not options of the pass.
    const CLI_ONLY: [&str; 6] = ["output", "preset", "stats", "explain", "quiet", "report"];

    #[test]
    fn flags_are_the_options() {
        let command = Opts::augment_args(Command::new("instrument"));
        let longs: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        for flag in OPTIONS.iter().filter_map(|s| s.flag) {
            assert!(
                longs.iter().any(|l| format!("--{l}") == flag),
                "{flag} is in the option table but not a flag: {longs:?}"
            );
        }
        for long in &longs {
            let declared = OPTIONS
                .iter()
                .any(|s| s.flag == Some(format!("--{long}").as_str()));
            assert!(
                declared || CLI_ONLY.contains(&long.as_str()),
                "--{long} is neither an option in the table nor a command-line flag"
            );
        }
    }
}
