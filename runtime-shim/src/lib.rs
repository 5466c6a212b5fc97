//! Host side of wasm-rewind: the WASIX `stack_checkpoint` / `stack_restore`
//! syscalls (setjmp/longjmp) on a module instrumented for stack unwinding
//! and rewinding with the Binaryen Asyncify ABI.
//!
//! At `stack_checkpoint` the host unwinds the guest to its entry export,
//! captures a [`Snapshot`] (the unwound asyncify frames, the live C stack and
//! the mutable globals), stores it in a bounded [`SnapshotStore`] under its
//! keyed hash, writes that hash into the guest's [`JmpBuf`] and rewinds at
//! once. At `stack_restore` it looks the hash up, re-verifies the data,
//! restores the globals and rewinds into the checkpoint call, which then
//! returns the `longjmp` value. Linear memory is never written back: longjmp
//! keeps later writes to memory.
//!
//! The modules below are engine-neutral plain data and logic, testable
//! without an engine:
//! - [`abi`]: the WASIX `jmp_buf` layout and errno values;
//! - [`hash`]: the keyed hash (SipHash-2-4 under two keys, 16 bytes) and its
//!   secret key;
//! - [`snapshot`]: a checkpoint's state and its canonical hash;
//! - [`frames`]: the unwound frames of all snapshots, shared where they end
//!   the same way;
//! - [`store`]: the snapshot store, bounded in count and bytes; it drops
//!   dead snapshots at once, displaced ones when room is needed, live ones
//!   never;
//! - [`error`]: [`ShimError`], each with a WASIX errno and a message saying
//!   what to do.
//!
//! [`driver`] is the unwind/rewind state machine, written against a small
//! [`driver::Guest`] trait; [`wasmtime_host`] implements it for wasmtime: [`add_to_linker`] provides the
//! imports, [`call`] runs an export with the unwind/rewind loop, and
//! [`check_module`] refuses a module that lacks what the shim needs.
//!
//! # Embedding
//!
//! ```no_run
//! use wasm_rewind_shim::{add_to_linker, call, check_module, ShimConfig, ShimState};
//! use wasmtime::{Engine, Linker, Module, Store};
//!
//! struct Host { shim: ShimState }
//! fn shim(h: &mut Host) -> &mut ShimState { &mut h.shim }
//!
//! # fn main() -> wasmtime::Result<()> {
//! let engine = Engine::default();
//! // A module instrumented by `wasm-rewind instrument` that uses setjmp.h.
//! let module = Module::from_file(&engine, "app.rw.wasm")?;
//! check_module(&module)?;
//! let mut store = Store::new(&engine, Host { shim: ShimState::new(ShimConfig::default()) });
//! let mut linker = Linker::new(&engine);
//! add_to_linker(&mut linker, shim)?;
//! let instance = linker.instantiate(&mut store, &module)?;
//! call(&mut store, &instance, shim, "run", &[], &mut [])?;
//! # Ok(()) }
//! ```
//!
//! `examples/embed.rs` runs a WASI program this way, with wasmtime-wasi.

pub mod abi;
pub mod error;
pub mod frames;
pub mod hash;
pub mod snapshot;
pub mod store;

pub mod contexts;
pub mod driver;
pub mod window;
// The engine binding depends on the modules above, never the reverse.
#[cfg(feature = "wasi")]
pub mod wasi_command;
pub mod wasmtime_host;

pub use abi::{Errno, JmpBuf, HASH_LEN, JMP_BUF_SIZE};
pub use driver::{ShimConfig, ShimState};
pub use error::{ShimError, SnapshotLimitKind};
pub use hash::{hash_hex, keyed_hash, HashKey, SnapshotHash};
pub use snapshot::{GlobalValue, Snapshot};
pub use store::{Restored, SnapshotStore, StoreLimits, StoreStats};
#[cfg(feature = "wasi")]
pub use wasi_command::{Exit, WasiCommand, WasiHost};
pub use wasmtime_host::{add_to_linker, call, check_module, needs_shim};
