//! A WASI preview 1 command with the WASIX stack shim beside WASI: the one
//! host that `wasm-rewind run`, the examples and the tests build on, so
//! what it takes to run an instrumented C program is written once.
//!
//! Behind the `wasi` feature, which brings in `wasmtime-wasi`.

use crate::driver::{ShimConfig, ShimState};
use crate::error::ShimError;
use crate::wasmtime_host::{add_to_linker, call, check_module};
use wasmtime::{Engine, Instance, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::I32Exit;

/// What the store holds: WASI and the shim, side by side.
pub struct WasiHost {
    /// The WASI preview 1 context (arguments, environment, stdio, files).
    pub wasi: WasiP1Ctx,
    /// The shim's state: its snapshot store and configuration.
    pub shim: ShimState,
}

/// The shim's part of a [`WasiHost`], for [`add_to_linker`] and [`call`].
pub fn shim_of(host: &mut WasiHost) -> &mut ShimState {
    &mut host.shim
}

/// An instantiated WASI command, ready to run its `_start`.
pub struct WasiCommand {
    store: Store<WasiHost>,
    instance: Instance,
}

/// How a command ended without trapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `_start` returned: status 0.
    Returned,
    /// The program called `proc_exit` with this status.
    Status(i32),
    /// The entrypoint of this WASIX context returned, which ends the
    /// program with status 129, as on Wasmer.
    ContextEntrypointReturned(u64),
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            Exit::Returned => 0,
            Exit::Status(code) => code,
            Exit::ContextEntrypointReturned(_) => ShimError::CONTEXT_RETURNED_STATUS,
        }
    }
}

impl WasiCommand {
    /// Checks that the shim can serve `module` (refusing, with what to do,
    /// one that calls the WASIX stack functions but is not instrumented or
    /// lacks an export), links WASI and the shim, and instantiates it.
    pub fn new(
        engine: &Engine,
        module: &Module,
        wasi: WasiP1Ctx,
        config: ShimConfig,
    ) -> wasmtime::Result<WasiCommand> {
        check_module(module)?;
        let mut store = Store::new(
            engine,
            WasiHost {
                wasi,
                shim: ShimState::new(config),
            },
        );
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut WasiHost| &mut h.wasi)?;
        // wasmtime-wasi turns an exit status of 126 or more into a trap; a
        // native process may exit with any status up to 255, and so may
        // ours: 129 is what Wasmer gives a context whose entrypoint returned,
        // and our `<wasix/context.h>` exits with it.
        linker.allow_shadowing(true);
        linker.func_wrap(
            "wasi_snapshot_preview1",
            "proc_exit",
            |status: i32| -> wasmtime::Result<()> { Err(I32Exit(status).into()) },
        )?;
        linker.allow_shadowing(false);
        add_to_linker(&mut linker, shim_of)?;
        let instance = linker.instantiate(&mut store, module)?;
        Ok(WasiCommand { store, instance })
    }

    /// Runs `_start` through the shim, which completes every checkpoint and
    /// restore by re-entering it. A trap, or an error of the shim, is the
    /// error.
    pub fn run(&mut self) -> wasmtime::Result<Exit> {
        match call(
            &mut self.store,
            &self.instance,
            shim_of,
            "_start",
            &[],
            &mut [],
        ) {
            Ok(()) => Ok(Exit::Returned),
            Err(e) => {
                if let Some(exit) = e.downcast_ref::<I32Exit>() {
                    return Ok(Exit::Status(exit.0));
                }
                match e.downcast_ref::<ShimError>() {
                    Some(ShimError::ContextEntrypointReturned { id }) => {
                        Ok(Exit::ContextEntrypointReturned(*id))
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// The shim's state, e.g. its snapshot store's statistics after a run.
    pub fn shim(&self) -> &ShimState {
        &self.store.data().shim
    }
}
