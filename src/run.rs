//! `wasm-rewind run`: run a WASI preview 1 command on embedded wasmtime with
//! the WASIX stack shim, so a C program using setjmp/longjmp runs with two
//! commands: `wasm-rewind instrument`, then `wasm-rewind run`.

use crate::module_cache::ModuleCache;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use wasm_rewind_shim::driver::DEFAULT_MAX_BUFFER;
use wasm_rewind_shim::{Exit, ShimConfig, StoreLimits, WasiCommand};
use wasmtime::Engine;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Exit status when the guest traps (as a native program that aborts).
const TRAP_EXIT: u8 = 134;

/// Options of `wasm-rewind run`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  clang --target=wasm32-wasi ... -I runtime-shim/include app.c -o app.wasm
  wasm-rewind instrument app.wasm app.rw.wasm
  wasm-rewind run app.rw.wasm --env LANG=C --dir data::/data -- input.txt

Exit status: the guest's exit code (any of 0-255); 129 if a WASIX context's
entrypoint returns; 134 if it traps; 1 if it cannot start.")]
pub struct Opts {
    /// The WASI command module (`.wasm` or `.wat`), instrumented if it calls the
    /// WASIX stack or context functions (setjmp/longjmp through our setjmp.h,
    /// contexts through our wasix/context.h or ucontext.h).
    module: PathBuf,
    /// Arguments passed to the program (after its name).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
    /// An environment variable for the program, as `KEY=VALUE` (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A host directory the program may use, as `HOST` or `HOST::GUEST`
    /// (repeatable).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Fix the snapshot hash key (64 hex digits) for reproducible runs; by
    /// default it is random per run.
    #[arg(long, value_name = "HEX")]
    hash_key: Option<String>,
    /// Most snapshots (setjmp checkpoints) kept at once. Snapshots of
    /// functions that have returned are dropped at once, and those of a
    /// jmp_buf given a newer one when room is needed; a checkpoint that finds
    /// only live ones and no room fails with an error that names this flag.
    #[arg(long, value_name = "N", default_value_t = StoreLimits::default().max_snapshots)]
    max_snapshots: usize,
    /// Most bytes of snapshots kept at once (frames shared between nested
    /// checkpoints are counted once).
    #[arg(long, value_name = "BYTES", default_value_t = StoreLimits::default().max_bytes)]
    max_snapshot_memory: usize,
    /// Most bytes the unwound stack of one setjmp or longjmp may take.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BUFFER)]
    max_unwind_buffer: u64,
    /// Print what the snapshot store did to stderr when the program ends
    /// (snapshots taken, dropped, peak count and bytes), and what the WASIX
    /// contexts did, if any (created, switches, peak alive).
    #[arg(long)]
    stats: bool,
    /// Compile the module every time instead of keeping the compiled code in
    /// the cache directory ($WASM_REWIND_CACHE_DIR, else
    /// $XDG_CACHE_HOME/wasm-rewind, else ~/.cache/wasm-rewind).
    #[arg(long)]
    no_cache: bool,
}

impl Opts {
    /// Runs the program and returns its exit status.
    pub fn run(self) -> Result<ExitCode> {
        let engine = Engine::default();
        let cache = if self.no_cache {
            ModuleCache::Off
        } else {
            ModuleCache::default_dir()
        };
        let module = std::fs::read(&self.module)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(wat::parse_bytes(&bytes)?.into_owned()))
            .and_then(|wasm| cache.load(&engine, &wasm))
            .with_context(|| format!("failed to load `{}`", self.module.display()))?;
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stdio();
        let program = self
            .module
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "main.wasm".into());
        wasi.arg(&program);
        wasi.args(&self.args);
        for kv in &self.env {
            let Some((k, v)) = kv.split_once('=') else {
                bail!("--env `{kv}`: expected KEY=VALUE");
            };
            wasi.env(k, v);
        }
        for dir in &self.dirs {
            let (host, guest) = dir.split_once("::").unwrap_or((dir, dir));
            wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("--dir `{dir}`: cannot open `{host}`"))?;
        }
        let mut config = ShimConfig {
            limits: StoreLimits {
                max_snapshots: self.max_snapshots,
                max_bytes: self.max_snapshot_memory,
                ..StoreLimits::default()
            },
            max_buffer: self.max_unwind_buffer,
            ..ShimConfig::default()
        };
        if let Some(hex) = &self.hash_key {
            config.key = parse_key(hex)?;
        }
        let mut command = WasiCommand::new(&engine, &module, wasi.build_p1(), config)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot run `{}`", self.module.display()))?;
        let result = command.run();
        if self.stats {
            let s = command.shim().snapshots().stats();
            crate::say(format_args!(
                "snapshots: {} taken, {} dropped as dead, {} dropped as displaced, \
                 peak {} held, peak {} bytes",
                s.inserted, s.dropped_dead, s.dropped_displaced, s.peak_snapshots, s.peak_bytes
            ));
            let c = command.shim().contexts().stats();
            if c.created > 0 {
                crate::say(format_args!(
                    "contexts: {} created, {} switches, peak {} alive, largest suspended \
                     frames {} bytes",
                    c.created, c.switches, c.peak, c.largest_frames
                ));
            }
        }
        match result {
            Ok(exit) => {
                if let Exit::ContextEntrypointReturned(id) = exit {
                    crate::say(format_args!(
                        "error: `{program}`: {}",
                        wasm_rewind_shim::ShimError::ContextEntrypointReturned { id }
                    ));
                }
                Ok(ExitCode::from(exit.code() as u8))
            }
            Err(e) => {
                crate::say(format_args!("error: `{}` trapped: {e:?}", program));
                Ok(ExitCode::from(TRAP_EXIT))
            }
        }
    }
}

fn parse_key(hex: &str) -> Result<wasm_rewind_shim::HashKey> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<_>>()
        .filter(|b: &Vec<u8>| b.len() == 32)
        .with_context(|| format!("--hash-key `{hex}`: expected 64 hex digits"))?;
    Ok(wasm_rewind_shim::HashKey::fixed(bytes.try_into().unwrap()))
}
