//! Embedding the shim in a wasmtime host: run a WASI command that uses
//! setjmp/longjmp (built against `runtime-shim/include/setjmp.h` and
//! instrumented by `wasm-rewind instrument`).
//!
//! ```sh
//! cargo run -p wasm-rewind-shim --example embed -- app.rw.wasm [args...]
//! ```
//!
//! The three steps that matter: refuse a module the shim cannot serve
//! (`check_module`), add the WASIX stack imports next to WASI
//! (`add_to_linker`), and call the entry point through `call`, which completes
//! every checkpoint and restore by re-entering the export.

use wasm_rewind_shim::{add_to_linker, call, check_module, ShimConfig, ShimState};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

/// The store's data: WASI and the shim, side by side.
struct Host {
    wasi: WasiP1Ctx,
    shim: ShimState,
}

fn shim(host: &mut Host) -> &mut ShimState {
    &mut host.shim
}

fn main() -> wasmtime::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: embed APP.wasm [ARGS...]");
        std::process::exit(2);
    };
    let engine = Engine::default();
    let module = Module::from_file(&engine, path)?;
    check_module(&module)?;

    let wasi = WasiCtxBuilder::new().inherit_stdio().args(&args).build_p1();
    let mut store = Store::new(
        &engine,
        Host {
            wasi,
            shim: ShimState::new(ShimConfig::default()),
        },
    );
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi)?;
    add_to_linker(&mut linker, shim)?;
    let instance = linker.instantiate(&mut store, &module)?;

    match call(&mut store, &instance, shim, "_start", &[], &mut []) {
        Ok(()) => Ok(()),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => std::process::exit(exit.0),
            None => Err(e),
        },
    }
}
