//! The pass's output run under wasmtime with the Asyncify ABI driven from
//! the host: one test binary for the library's end-to-end tests, sharing
//! one host (`common`).
//!
//! - `abi`: the ABI as Binaryen documents it, the same host driving our
//!   output and Binaryen's;
//! - `corpus`: the WAT corpus (`corpus/wat`), against the original module
//!   run by a host that never unwinds;
//! - `features`: proposals and options beyond the defaults (memory64,
//!   several memories, tail calls, exceptions, imported state globals...);
//! - `differential`: random modules (wasm-smith) under random options and
//!   unwinding modes, against the original; the cargo-fuzz target in `fuzz/`
//!   runs the same oracle (`generate`, `oracle`) without bound;
//! - `setjmp_differential`: random setjmp-shaped programs, the exceptions
//!   lowering against the embedded runtime;
//! - `exceptions`: setjmp/longjmp lowered to wasm exceptions (`--sjlj`), run
//!   with no host at all.

mod common;
#[path = "differential/generate.rs"]
mod generate;
#[path = "differential/oracle.rs"]
mod oracle;

mod abi;
mod corpus;
mod differential;
mod exceptions;
mod features;
#[path = "differential/setjmp.rs"]
mod setjmp_differential;
