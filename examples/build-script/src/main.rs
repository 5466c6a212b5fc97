//! Runs the C program `build.rs` compiled and instrumented, on wasmtime with
//! WASI and the wasm-rewind shim (its setjmp/longjmp go through the shim's
//! `stack_checkpoint`/`stack_restore`). The program's exit status becomes
//! ours.

use wasm_rewind_shim::{add_to_linker, call, check_module, ShimConfig, ShimState};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// The instrumented module, built by `build.rs`.
const COUNTDOWN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/countdown.rw.wasm"));

/// The store's data: WASI and the shim.
struct Host {
    wasi: WasiP1Ctx,
    shim: ShimState,
}

fn shim(host: &mut Host) -> &mut ShimState {
    &mut host.shim
}

fn main() -> wasmtime::Result<()> {
    let engine = Engine::default();
    let module = Module::new(&engine, COUNTDOWN)?;
    // Refuses, with what to do, a module the shim could not serve.
    check_module(&module)?;
    let wasi = WasiCtxBuilder::new()
        .inherit_stdio()
        .arg("countdown")
        .build_p1();
    let host = Host {
        wasi,
        shim: ShimState::new(ShimConfig::default()),
    };
    let mut store = Store::new(&engine, host);
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi)?;
    add_to_linker(&mut linker, shim)?;
    let instance = linker.instantiate(&mut store, &module)?;
    // `call` completes every checkpoint and restore by re-entering `_start`.
    match call(&mut store, &instance, shim, "_start", &[], &mut []) {
        Ok(()) => Ok(()),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => std::process::exit(exit.0),
            None => Err(e),
        },
    }
}
