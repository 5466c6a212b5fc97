//! Embedding the shim in a wasmtime host: run a WASI command that uses
//! setjmp/longjmp (built against `runtime-shim/include/setjmp.h` and
//! instrumented by `wasm-rewind instrument`).
//!
//! ```sh
//! cargo run -p wasm-rewind-shim --features wasi --example embed -- app.rw.wasm [args...]
//! ```
//!
//! `WasiCommand` does the three steps that matter: it refuses a module the
//! shim cannot serve (`check_module`), adds the WASIX stack imports next to
//! WASI (`add_to_linker`), and calls the entry point through `call`, which
//! completes every checkpoint and restore by re-entering the export. An
//! embedder with its own store data uses those three directly.

use wasm_rewind_shim::{ShimConfig, WasiCommand};
use wasmtime::{Engine, Module};
use wasmtime_wasi::WasiCtxBuilder;

fn main() -> wasmtime::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: embed APP.wasm [ARGS...]");
        std::process::exit(2);
    };
    let engine = Engine::default();
    let module = Module::from_file(&engine, path)?;
    let wasi = WasiCtxBuilder::new().inherit_stdio().args(&args).build_p1();
    let mut command = WasiCommand::new(&engine, &module, wasi, ShimConfig::default())?;
    let exit = command.run()?;
    std::process::exit(exit.code())
}
