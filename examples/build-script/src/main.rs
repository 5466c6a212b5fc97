//! Runs the C program `build.rs` compiled and instrumented, on wasmtime with
//! WASI and the wasm-rewind shim (its setjmp/longjmp go through the shim's
//! `stack_checkpoint`/`stack_restore`). The program's exit status becomes
//! ours.

use wasm_rewind_shim::{ShimConfig, WasiCommand};
use wasmtime::{Engine, Module};
use wasmtime_wasi::WasiCtxBuilder;

/// The instrumented module, built by `build.rs`.
const COUNTDOWN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/countdown.rw.wasm"));

fn main() -> wasmtime::Result<()> {
    let engine = Engine::default();
    let module = Module::new(&engine, COUNTDOWN)?;
    let wasi = WasiCtxBuilder::new()
        .inherit_stdio()
        .arg("countdown")
        .build_p1();
    // Refuses, with what to do, a module the shim could not serve; then
    // `run` completes every checkpoint and restore by re-entering `_start`.
    let mut command = WasiCommand::new(&engine, &module, wasi, ShimConfig::default())?;
    let exit = command.run()?;
    std::process::exit(exit.code())
}
