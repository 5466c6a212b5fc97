//! The shim on wasmtime, with small WAT guests that call the WASIX stack
//! functions the way our setjmp.h does, instrumented by the transform with
//! default options. One test binary: `guest` is what both parts share.
//!
//! - `wasmtime_host`: what a correct guest gets (values, refusals of forged
//!   and stale jmp_bufs, bounded stores, the buffer's place, Binaryen's
//!   output);
//! - `abuse`: what an abusive guest gets (garbage, stale and foreign
//!   jmp_bufs, millions of setjmps, buffers too small): an error the host can
//!   match on, bounded memory, and a fresh instance that still works.

mod abuse;
mod guest;
/// The tool lookups the repository's tests share (here: Binaryen's wasm-opt).
#[path = "../../../tests/process/mod.rs"]
mod process;
mod wasmtime_host;
