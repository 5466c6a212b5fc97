//! The wasmtime engines the hosts run modules on (one of each per test
//! process: compiling an engine is not free, and modules of one engine cannot
//! be instantiated in a store of another).

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use wasmtime::{Config, Engine, OptLevel};

/// The engine of the ABI, corpus and feature tests: the proposals the
/// instrumented test modules use (memory64, multi-memory, tail calls,
/// exceptions) and backtraces deep enough to name the function that trapped
/// below a recursion.
pub fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config
                .wasm_memory64(true)
                .wasm_multi_memory(true)
                .wasm_tail_call(true)
                .wasm_exceptions(true)
                .wasm_backtrace_max_frames(NonZeroUsize::new(64));
            Engine::new(&config).expect("wasmtime engine with memory64, tail calls, exceptions")
        })
        .clone()
}

/// The engine of the differential oracle: the proposals wasm-smith may use
/// (wasmtime's defaults), NaNs canonicalised (so float results compare bit for
/// bit), fuel metering (so a run that would loop forever ends; every store
/// needs [`Host::fuel`](super::Host::fuel)), and no optimisation (compiling
/// dominates the time of a random case).
pub fn metered_engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config
                .cranelift_opt_level(OptLevel::None)
                .cranelift_nan_canonicalization(true)
                .consume_fuel(true)
                .wasm_backtrace_max_frames(NonZeroUsize::new(32));
            Engine::new(&config).expect("wasmtime engine with fuel")
        })
        .clone()
}
