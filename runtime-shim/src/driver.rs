//! The unwind/rewind state machine, independent of any engine.
//!
//! An engine binding implements [`Guest`] for one instrumented instance (its
//! `asyncify_*` exports, its memories, its globals) and calls [`checkpoint`]
//! and [`restore`] from its WASIX imports and [`begin`] / [`after_return`]
//! around every call of an export. Everything the shim decides lives here; the
//! binding only moves bytes and calls functions.
//!
//! # How a checkpoint and a restore run
//!
//! `stack_checkpoint(env, ret)`, first entry (state 0): place the asyncify
//! buffer and start unwinding. Every instrumented function on the stack saves
//! its frame and returns, up to the export. [`after_return`] then stops the
//! unwind, copies the frames, the live stack bytes and the exported mutable
//! globals into a [`Snapshot`], stores it under its keyed hash, writes the hash
//! into the jmp_buf, and starts rewinding the same buffer: the binding calls
//! the export again with the same arguments. The checkpoint import is
//! re-entered while rewinding (state 2), stops the rewind and returns 0
//! through `ret`.
//!
//! `stack_restore(env, val)`: look the hash up (and re-verify it), refuse a
//! stale snapshot, unwind the current stack (its frames are discarded); then
//! [`after_return`] writes the snapshot's frames into the buffer, restores the
//! globals (`__stack_pointer` above all; linear memory is not restored, so
//! later writes to volatile locals survive, as C requires) and rewinds: the
//! stack is rebuilt as it was at the checkpoint, whose import returns `val`.

use crate::abi::{Errno, JmpBuf, JMP_BUF_HASH_OFFSET, JMP_BUF_SIZE};
use crate::error::ShimError;
use crate::hash::{HashKey, SnapshotHash};
use crate::snapshot::{GlobalValue, Snapshot};
use crate::store::{SnapshotStore, StoreLimits};

/// How a [`ShimState`] is set up.
#[derive(Clone)]
pub struct ShimConfig {
    /// Key of the snapshot hashes. Defaults to a random key per state; fix it
    /// for reproducible runs.
    pub key: HashKey,
    /// Bounds of the snapshot store. Defaults to [`StoreLimits::default`].
    pub limits: StoreLimits,
    /// Most bytes the asyncify buffer may take. Defaults to 1 MiB; the region
    /// the guest offers (see [`Guest::buffer_region`]) bounds it too.
    pub max_buffer: u64,
}

impl Default for ShimConfig {
    fn default() -> ShimConfig {
        ShimConfig {
            key: HashKey::random(),
            limits: StoreLimits::default(),
            max_buffer: 1 << 20,
        }
    }
}

/// The shim's state for one instance.
pub struct ShimState {
    snapshots: SnapshotStore,
    max_buffer: u64,
    pending: Pending,
    /// What the rewound `stack_checkpoint` call returns through `ret`.
    resume_value: Option<u64>,
    /// `__stack_pointer` when the first export was called: the stack's top.
    stack_top: Option<u64>,
    /// What the engine binding resolved for this instance (its export
    /// handles), kept here so imports can find it; opaque to the driver.
    pub(crate) binding: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl ShimState {
    /// A fresh state.
    pub fn new(config: ShimConfig) -> ShimState {
        ShimState {
            snapshots: SnapshotStore::new(config.key, config.limits),
            max_buffer: config.max_buffer,
            pending: Pending::None,
            resume_value: None,
            stack_top: None,
            binding: None,
        }
    }

    /// The snapshots taken so far (for inspection and tests).
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }
}

/// A request made by an import, completed once the stack has unwound.
enum Pending {
    None,
    Checkpoint {
        env: u64,
        buffer: Buffer,
    },
    Restore {
        hash: SnapshotHash,
        val: u64,
        buffer: Buffer,
    },
}

/// The asyncify data structure `{ pos, end }` and the buffer after it.
#[derive(Clone, Copy)]
struct Buffer {
    data: u64,
    start: u64,
    end: u64,
}

/// Which linear memory an access is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mem {
    /// The program's memory: jmp_bufs, `ret`, the C stack.
    Program,
    /// The memory holding the asyncify buffer (the same one or a secondary one).
    Buffer,
}

/// What the state machine needs from an engine: one instrumented instance.
pub trait Guest {
    /// The engine's error (traps); shim errors convert into it.
    type Error: From<ShimError>;
    /// The shim's state for this instance.
    fn shim(&mut self) -> &mut ShimState;
    /// `asyncify_get_state()`.
    fn state(&mut self) -> Result<i32, Self::Error>;
    /// `asyncify_start_unwind(data)`.
    fn start_unwind(&mut self, data: u64) -> Result<(), Self::Error>;
    /// `asyncify_stop_unwind()`.
    fn stop_unwind(&mut self) -> Result<(), Self::Error>;
    /// `asyncify_start_rewind(data)`.
    fn start_rewind(&mut self, data: u64) -> Result<(), Self::Error>;
    /// `asyncify_stop_rewind()`.
    fn stop_rewind(&mut self) -> Result<(), Self::Error>;
    /// Reads `len` bytes at `addr`; out of bounds is an error, never a panic.
    fn read(&mut self, mem: Mem, addr: u64, len: u64) -> Result<Vec<u8>, ShimError>;
    /// Writes `bytes` at `addr`; out of bounds is an error, never a panic.
    fn write(&mut self, mem: Mem, addr: u64, bytes: &[u8]) -> Result<(), ShimError>;
    /// The current `__stack_pointer`.
    fn stack_pointer(&mut self) -> u64;
    /// The `[low, high)` range of [`Mem::Buffer`] that is free for the buffer
    /// right now.
    fn buffer_region(&mut self) -> (u64, u64);
    /// Whether [`Mem::Buffer`] is 64-bit (`{pos, end}` are then two u64).
    fn buffer_is_64(&self) -> bool;
    /// The exported mutable globals a snapshot saves, by name.
    fn globals(&mut self) -> Vec<(String, GlobalValue)>;
    /// Sets one of them back.
    fn set_global(&mut self, name: &str, value: GlobalValue) -> Result<(), Self::Error>;
}

/// `stack_checkpoint(env, ret)`: starts a checkpoint (state 0) or ends the
/// rewind into this call (state 2), writing the value it returns to `ret`.
pub fn checkpoint<G: Guest>(g: &mut G, env: u64, ret: u64) -> Result<Errno, G::Error> {
    match g.state()? {
        2 => {
            g.stop_rewind()?;
            let val = g.shim().resume_value.take().unwrap_or(0);
            g.write(Mem::Program, ret, &val.to_le_bytes())?;
            Ok(Errno::Success)
        }
        0 => {
            if !matches!(g.shim().pending, Pending::None) {
                return Err(guest_error(
                    "stack_checkpoint called while another request is pending",
                ));
            }
            let buffer = place_buffer(g)?;
            g.shim().pending = Pending::Checkpoint { env, buffer };
            g.start_unwind(buffer.data)?;
            Ok(Errno::Success)
        }
        s => Err(guest_error(&format!(
            "stack_checkpoint called in asyncify state {s}"
        ))),
    }
}

/// `stack_restore(env, val)`: checks the jmp_buf and starts unwinding the
/// current stack, to be replaced by the checkpoint's.
pub fn restore<G: Guest>(g: &mut G, env: u64, val: u64) -> Result<(), G::Error> {
    let state = g.state()?;
    if state != 0 {
        return Err(guest_error(&format!(
            "stack_restore called in asyncify state {state}"
        )));
    }
    let bytes: [u8; JMP_BUF_SIZE as usize] = g
        .read(Mem::Program, env, JMP_BUF_SIZE as u64)?
        .try_into()
        .expect("read returns the length asked for");
    let hash = JmpBuf::from_bytes(&bytes).hash;
    let sp = g.stack_pointer();
    let snapshot_sp = g.shim().snapshots.get(&hash)?.stack_pointer;
    if snapshot_sp < sp {
        return Err(ShimError::StaleSnapshot {
            snapshot_sp,
            current_sp: sp,
        }
        .into());
    }
    let buffer = place_buffer(g)?;
    g.shim().pending = Pending::Restore { hash, val, buffer };
    g.start_unwind(buffer.data)?;
    Ok(())
}

/// Call before calling an export: remembers where the stack starts.
pub fn begin<G: Guest>(g: &mut G) {
    if g.shim().stack_top.is_none() {
        let sp = g.stack_pointer();
        g.shim().stack_top = Some(sp);
    }
}

/// Call after an export returned. `Ok(false)`: it finished. `Ok(true)`: it
/// returned because the stack unwound for a checkpoint or restore, which is
/// now complete and the rewind has started: call the same export again with
/// the same arguments.
pub fn after_return<G: Guest>(g: &mut G, export: &str) -> Result<bool, G::Error> {
    if g.state()? != 1 {
        return Ok(false);
    }
    g.stop_unwind()?;
    let buffer = match std::mem::replace(&mut g.shim().pending, Pending::None) {
        Pending::Checkpoint { env, buffer } => {
            take_checkpoint(g, env, buffer)?;
            buffer
        }
        Pending::Restore { hash, val, buffer } => {
            prepare_restore(g, &hash, val, buffer)?;
            buffer
        }
        Pending::None => {
            return Err(guest_error(&format!(
                "`{export}` unwound, but no stack_checkpoint or stack_restore asked for it: \
                 another import started an unwind the shim cannot complete"
            )))
        }
    };
    g.start_rewind(buffer.data)?;
    Ok(true)
}

/// Call when an export trapped: forgets the pending checkpoint or restore,
/// whose stack is gone (so the state can serve a new instance), and returns
/// the size of the buffer it was unwinding into, if one was pending.
pub fn after_trap(shim: &mut ShimState) -> Option<u64> {
    shim.resume_value = None;
    match std::mem::replace(&mut shim.pending, Pending::None) {
        Pending::None => None,
        Pending::Checkpoint { buffer, .. } | Pending::Restore { buffer, .. } => {
            Some(buffer.end - buffer.start)
        }
    }
}

fn guest_error<E: From<ShimError>>(message: &str) -> E {
    ShimError::Guest {
        message: message.to_string(),
    }
    .into()
}

/// Places `{pos, end}` and the buffer in the free region, at most
/// `max_buffer` bytes, and writes `pos = start`.
fn place_buffer<G: Guest>(g: &mut G) -> Result<Buffer, ShimError> {
    let (low, high) = g.buffer_region();
    let data = low.next_multiple_of(16);
    let start = data + 16;
    let end = (high & !15).min(start.saturating_add(g.shim().max_buffer));
    if end <= start {
        return Err(ShimError::BufferTooSmall {
            needed: 16,
            available: high.saturating_sub(data),
        });
    }
    let buffer = Buffer { data, start, end };
    write_data(g, &buffer, start)?;
    Ok(buffer)
}

/// Writes `{ pos, end }` at `buffer.data`.
fn write_data<G: Guest>(g: &mut G, buffer: &Buffer, pos: u64) -> Result<(), ShimError> {
    let mut bytes = Vec::with_capacity(16);
    if g.buffer_is_64() {
        bytes.extend(pos.to_le_bytes());
        bytes.extend(buffer.end.to_le_bytes());
    } else {
        bytes.extend((pos as u32).to_le_bytes());
        bytes.extend((buffer.end as u32).to_le_bytes());
    }
    g.write(Mem::Buffer, buffer.data, &bytes)
}

fn read_pos<G: Guest>(g: &mut G, buffer: &Buffer) -> Result<u64, ShimError> {
    Ok(if g.buffer_is_64() {
        let b = g.read(Mem::Buffer, buffer.data, 8)?;
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    } else {
        let b = g.read(Mem::Buffer, buffer.data, 4)?;
        u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64
    })
}

/// The stack has unwound for a checkpoint: snapshot it.
fn take_checkpoint<G: Guest>(g: &mut G, env: u64, buffer: Buffer) -> Result<(), G::Error> {
    let pos = read_pos(g, &buffer)?;
    let asyncify = g.read(Mem::Buffer, buffer.start, pos.saturating_sub(buffer.start))?;
    let sp = g.stack_pointer();
    let top = g.shim().stack_top.unwrap_or(sp).max(sp);
    let stack = g.read(Mem::Program, sp, top - sp)?;
    let globals = g.globals();
    let snapshot = Snapshot {
        asyncify,
        stack,
        stack_pointer: sp,
        globals,
    };
    let hash = g.shim().snapshots.insert(snapshot)?;
    g.write(Mem::Program, env + JMP_BUF_HASH_OFFSET as u64, &hash)?;
    g.shim().resume_value = Some(0);
    Ok(())
}

/// The stack has unwound for a restore: load the snapshot's frames and globals.
fn prepare_restore<G: Guest>(
    g: &mut G,
    hash: &SnapshotHash,
    val: u64,
    buffer: Buffer,
) -> Result<(), G::Error> {
    let snapshot = g.shim().snapshots.get(hash)?.clone();
    let len = snapshot.asyncify.len() as u64;
    if len > buffer.end - buffer.start {
        return Err(ShimError::BufferTooSmall {
            needed: len,
            available: buffer.end - buffer.start,
        }
        .into());
    }
    g.write(Mem::Buffer, buffer.start, &snapshot.asyncify)?;
    write_data(g, &buffer, buffer.start + len)?;
    for (name, value) in &snapshot.globals {
        g.set_global(name, *value)?;
    }
    g.shim().resume_value = Some(val);
    Ok(())
}
