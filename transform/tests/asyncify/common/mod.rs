//! A test host for the Asyncify ABI, written only against the ABI.
//!
//! Nothing here knows which tool instrumented a module: the same code drives
//! `wasm-opt --asyncify` output and ours, which is how the tests show that "a host
//! written for Binaryen drives ours unchanged". It is the one host of the ABI,
//! general enough for every test that drives a module: the ABI and corpus
//! tests (memory 0, i32 pointers), the feature tests (a buffer in any exported
//! memory, memory64, imported or exported state globals, proposals) and the
//! differential oracle (fuel, random unwinds, reference values). The pieces,
//! one file each:
//!
//! - `instrument`: [`instrument_ours`] and [`instrument_binaryen`] turn WAT or
//!   wasm into an instrumented module (the second shells out to `wasm-opt`,
//!   which must be installed: a missing tool fails the test, it never skips it);
//! - `value`: [`Value`], a wasm number that compares and prints;
//! - `buffer`: [`Buffer`], where `{pos, end}` and the buffer live (memory,
//!   address, size, 32 or 64 bits);
//! - `imports`: what an import call is ([`ImportCall`]), how it answers
//!   ([`Answer`]) and whether it unwinds ([`UnwindPolicy`]);
//! - `engine`: the wasmtime engines ([`engine`], and [`metered_engine`] with
//!   fuel);
//! - `host`: [`Host`], the store data, and the body of every import: the
//!   import side of the protocol, the log of every import call, the state
//!   globals it provides or watches;
//! - `guest`: [`Guest`], one instance plus typed access to its memories and
//!   to the five `asyncify_*` exports, and [`run_original`], the reference run
//!   that never unwinds;
//! - `driver`: [`run_coroutines`], the driver loop (unwind, stop, switch,
//!   rewind, call the same export again) over one or several buffers;
//!   [`Guest::drive`] is the one-coroutine case;
//! - `traps`: what a trap looks like from the host.
//!
//! The import protocol follows Binaryen's documentation: in state 0 an import that
//! wants to sleep records the call, calls `asyncify_start_unwind(ptr)` and returns
//! zeros; when the export is called again under `asyncify_start_rewind(ptr)` the
//! import is re-entered in state 2, calls `asyncify_stop_rewind()` and returns the
//! real answer for the call it recorded. The re-entry must pass the same
//! arguments as the call that unwound (Binaryen's output does, and a host may
//! read them then); the host checks that, and computes the answer from the call
//! recorded at unwind time.

// Each test crate uses a different part of this module, so some items and
// some of the re-exports below go unused in any one of them.
#![allow(dead_code, unused_imports)]

mod buffer;
mod driver;
mod engine;
mod guest;
mod host;
mod imports;
mod instrument;
mod traps;
mod value;

pub use buffer::*;
pub use driver::*;
pub use engine::*;
pub use guest::*;
pub use host::*;
pub use imports::*;
pub use instrument::*;
pub use traps::*;
pub use value::*;

#[path = "../../../../tests/process/mod.rs"]
pub mod process;
pub use process::wasm_opt;
