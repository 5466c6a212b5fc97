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
//!
//! # Where the buffer lives
//!
//! In the module's own `asyncify_memory` when it has one (`instrument
//! --secondary-memory`): all of it is the buffer's.
//!
//! Otherwise in memory 0, as Binaryen's ABI has it, in a window the shim
//! borrows at the top of that memory for the length of one request: it saves
//! the window's bytes, lets the frames be written there, and writes the bytes
//! back once the rewind has reached the checkpoint call again. Nothing else
//! touches memory in between (an unwinding or rewinding function only moves
//! its frame; the host reads the C stack, which lies below the window, and
//! writes the jmp_buf and `ret` only after giving the window back), so the
//! window may overlap anything, heap included, and can never corrupt it.
//! Owning pages instead is not safe: the malloc of wasi-libc (the 2022 one
//! Debian ships) takes everything from `__heap_base` to the end of memory as
//! its first heap the first time it runs, so pages a host grows before the
//! program's first malloc become the program's. The free part of the C stack,
//! which Wasmer uses, is safe but small exactly when unwinds are large (deep
//! nesting), and needs link-time bounds.
//!
//! The window starts at twice the size of the last unwind (at least 4 KiB),
//! so a request copies about what it unwinds. When a frame does not fit,
//! the instrumented code calls the module's grow hook (`__wasm_rewind_grow_hook`,
//! which `instrument` adds to modules calling the WASIX stack functions), and
//! [`grow`] extends the window by growing memory 0, up to
//! [`ShimConfig::max_buffer`]. A module without the hook (Binaryen's output)
//! gets a fixed window of [`FIXED_WINDOW`] bytes at the very end of memory, so
//! an overflowing frame traps out of bounds rather than writing over data.

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
    /// Most bytes the asyncify buffer may grow to (the frames of one unwind).
    /// Defaults to [`DEFAULT_MAX_BUFFER`].
    pub max_buffer: u64,
}

/// The default [`ShimConfig::max_buffer`]: 64 MiB of frames, far more than
/// the deepest C program we know unwinds (Lua at its C-stack limit, about
/// 200 nested calls, needs well under 1 MiB), and still a bound on what a
/// runaway guest can make the host copy.
pub const DEFAULT_MAX_BUFFER: u64 = 64 << 20;

/// The window given to a module without a grow hook (Binaryen's output),
/// which cannot ask for more room: 1 MiB, or [`ShimConfig::max_buffer`] if
/// smaller.
pub const FIXED_WINDOW: u64 = 1 << 20;

/// The smallest window borrowed for a request.
const MIN_WINDOW: u64 = 4096;

/// Bytes of the `{pos, end}` structure at the window's start (two u64 at
/// most; kept 16 for both widths so the buffer stays 16-aligned).
const HEADER: u64 = 16;

impl Default for ShimConfig {
    fn default() -> ShimConfig {
        ShimConfig {
            key: HashKey::random(),
            limits: StoreLimits::default(),
            max_buffer: DEFAULT_MAX_BUFFER,
        }
    }
}

/// The shim's state for one instance.
pub struct ShimState {
    snapshots: SnapshotStore,
    max_buffer: u64,
    pending: Pending,
    /// The buffer of the request under way.
    window: Option<Window>,
    /// Bytes the last unwind took: the next window is twice that.
    last_unwind: u64,
    /// The hash to write into a jmp_buf once the window is given back.
    jmp_buf_write: Option<(u64, SnapshotHash)>,
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
            window: None,
            last_unwind: 0,
            jmp_buf_write: None,
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
    Checkpoint { env: u64 },
    Restore { hash: SnapshotHash, val: u64 },
}

/// The asyncify data structure `{ pos, end }` at `data`, the buffer
/// `[start, end)` after it, and, when it is borrowed from the program's
/// memory, the bytes it held.
struct Window {
    data: u64,
    start: u64,
    end: u64,
    /// The bytes of `[data, end)` before the request, to write back; `None`
    /// when the memory is the buffer's own.
    saved: Option<Vec<u8>>,
    /// The highest address the frames reached: what must be written back.
    high_water: u64,
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
    /// Whether [`Mem::Buffer`] is a memory of its own (`asyncify_memory`),
    /// rather than the program's memory, where the buffer is borrowed.
    fn buffer_memory_is_dedicated(&self) -> bool;
    /// Whether the module has the grow hook, so [`grow`] can be called when a
    /// frame does not fit.
    fn has_grow_hook(&self) -> bool;
    /// Size in bytes of [`Mem::Buffer`].
    fn buffer_memory_size(&mut self) -> u64;
    /// Grows [`Mem::Buffer`] by `pages` 64 KiB pages.
    fn grow_buffer_memory(&mut self, pages: u64) -> Result<(), ShimError>;
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
            give_back_window(g)?;
            if let Some((env, hash)) = g.shim().jmp_buf_write.take() {
                g.write(Mem::Program, env + JMP_BUF_HASH_OFFSET as u64, &hash)?;
            }
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
            let data = borrow_window(g, 0)?;
            g.shim().pending = Pending::Checkpoint { env };
            g.start_unwind(data)?;
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
    let snapshot = g.shim().snapshots.get(&hash)?;
    let (snapshot_sp, frames) = (snapshot.stack_pointer, snapshot.asyncify.len() as u64);
    if snapshot_sp < sp {
        return Err(ShimError::StaleSnapshot {
            snapshot_sp,
            current_sp: sp,
        }
        .into());
    }
    let data = borrow_window(g, frames)?;
    g.shim().pending = Pending::Restore { hash, val };
    g.start_unwind(data)?;
    Ok(())
}

/// The grow hook: a frame of `needed` bytes does not fit in the buffer of
/// the unwind under way. Extends the buffer by growing its memory (at least
/// doubling it), up to [`ShimConfig::max_buffer`].
pub fn grow<G: Guest>(g: &mut G, needed: u64) -> Result<(), G::Error> {
    let Some(w) = g.shim().window.as_ref() else {
        return Err(guest_error(
            "the unwind buffer's grow hook was called with no unwind under way",
        ));
    };
    let (data, start, end) = (w.data, w.start, w.end);
    let pos = read_pos(g, data)?;
    let want = pos.saturating_add(needed);
    if want <= end {
        return Ok(());
    }
    let max = g.shim().max_buffer;
    let used = pos.saturating_sub(start);
    if used.saturating_add(needed) > max {
        return Err(ShimError::BufferTooSmall {
            needed: used.saturating_add(needed),
            available: max,
        }
        .into());
    }
    // The window reaches the end of the memory (see `borrow_window`), so
    // growing the memory extends it in place.
    let size = g.buffer_memory_size();
    let target = want.max(start + 2 * (end - start)).min(start + max);
    let pages = target.saturating_sub(size).div_ceil(PAGE);
    g.grow_buffer_memory(pages)?;
    let new_end = g.buffer_memory_size().min(start + max) & !15;
    let w = g.shim().window.as_mut().expect("checked above");
    if let Some(saved) = &mut w.saved {
        // The new pages are fresh zeros; give them back as such.
        saved.resize((new_end - w.data) as usize, 0);
    }
    w.end = new_end;
    write_header(g, data, pos, new_end)?;
    Ok(())
}

/// Bytes in a WebAssembly page.
const PAGE: u64 = 65536;

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
    let Some(w) = g.shim().window.as_ref() else {
        return Err(no_request(export));
    };
    let (data, start) = (w.data, w.start);
    let pos = read_pos(g, data)?;
    let shim = g.shim();
    shim.last_unwind = pos.saturating_sub(start);
    if let Some(w) = shim.window.as_mut() {
        w.high_water = w.high_water.max(pos);
    }
    match std::mem::replace(&mut g.shim().pending, Pending::None) {
        Pending::Checkpoint { env } => take_checkpoint(g, env, start, pos)?,
        Pending::Restore { hash, val } => prepare_restore(g, &hash, val)?,
        Pending::None => return Err(no_request(export)),
    }
    let data = g.shim().window.as_ref().expect("kept for the rewind").data;
    g.start_rewind(data)?;
    Ok(true)
}

fn no_request<E: From<ShimError>>(export: &str) -> E {
    guest_error(&format!(
        "`{export}` unwound, but no stack_checkpoint or stack_restore asked for it: \
         another import started an unwind the shim cannot complete"
    ))
}

/// Call when an export trapped: forgets the pending checkpoint or restore,
/// whose stack is gone (so the state can serve a new instance), and returns
/// the size of the buffer it was unwinding into, if one was pending. A
/// borrowed window is left as it is: the instance that trapped is not run
/// again by the shim.
pub fn after_trap(shim: &mut ShimState) -> Option<u64> {
    shim.resume_value = None;
    shim.jmp_buf_write = None;
    let window = shim.window.take();
    match std::mem::replace(&mut shim.pending, Pending::None) {
        Pending::None => None,
        Pending::Checkpoint { .. } | Pending::Restore { .. } => window.map(|w| w.end - w.start),
    }
}

fn guest_error<E: From<ShimError>>(message: &str) -> E {
    ShimError::Guest {
        message: message.to_string(),
    }
    .into()
}

/// Places `{pos, end}` and a buffer of at least `frames` bytes (see the
/// module documentation for where), writes `pos = start` and returns the
/// address of `{pos, end}`.
fn borrow_window<G: Guest>(g: &mut G, frames: u64) -> Result<u64, ShimError> {
    if g.shim().window.is_some() {
        return Err(ShimError::Guest {
            message: "a stack_checkpoint or stack_restore ran while another was under way".into(),
        });
    }
    let max = g.shim().max_buffer;
    if frames > max {
        return Err(ShimError::BufferTooSmall {
            needed: frames,
            available: max,
        });
    }
    let (data, end, saved) = if g.buffer_memory_is_dedicated() {
        let size = g.buffer_memory_size();
        if size < HEADER + frames {
            return Err(ShimError::BufferTooSmall {
                needed: frames,
                available: size.saturating_sub(HEADER),
            });
        }
        (0, (size & !15).min(HEADER + max), None)
    } else {
        let capacity = if g.has_grow_hook() {
            (2 * g.shim().last_unwind).max(MIN_WINDOW)
        } else {
            FIXED_WINDOW
        }
        .min(max)
        .max(frames);
        let len = (HEADER + capacity).next_multiple_of(16);
        // At the end of memory, above the C stack (the host reads the stack
        // while the window is out), growing memory when it is too small.
        let floor = g.shim().stack_top.unwrap_or(0).next_multiple_of(16);
        let size = g.buffer_memory_size();
        if size < floor.saturating_add(len) {
            g.grow_buffer_memory((floor + len - size).div_ceil(PAGE))?;
        }
        let end = g.buffer_memory_size() & !15;
        let data = end - len;
        (data, end, Some(g.read(Mem::Buffer, data, len)?))
    };
    let start = data + HEADER;
    write_header(g, data, start, end)?;
    g.shim().window = Some(Window {
        data,
        start,
        end,
        saved,
        high_water: data + HEADER,
    });
    Ok(data)
}

/// Gives the window back: writes back the bytes it borrowed, up to where
/// the frames reached.
fn give_back_window<G: Guest>(g: &mut G) -> Result<(), ShimError> {
    let Some(w) = g.shim().window.take() else {
        return Ok(());
    };
    if let Some(saved) = &w.saved {
        let len = (w.high_water.min(w.end) - w.data) as usize;
        g.write(Mem::Buffer, w.data, &saved[..len])?;
    }
    Ok(())
}

/// Writes `{ pos, end }` at `data`.
fn write_header<G: Guest>(g: &mut G, data: u64, pos: u64, end: u64) -> Result<(), ShimError> {
    let mut bytes = Vec::with_capacity(16);
    if g.buffer_is_64() {
        bytes.extend(pos.to_le_bytes());
        bytes.extend(end.to_le_bytes());
    } else {
        bytes.extend((pos as u32).to_le_bytes());
        bytes.extend((end as u32).to_le_bytes());
    }
    g.write(Mem::Buffer, data, &bytes)
}

fn read_pos<G: Guest>(g: &mut G, data: u64) -> Result<u64, ShimError> {
    Ok(if g.buffer_is_64() {
        let b = g.read(Mem::Buffer, data, 8)?;
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    } else {
        let b = g.read(Mem::Buffer, data, 4)?;
        u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64
    })
}

/// The stack has unwound for a checkpoint into `[start, pos)`: snapshot it.
/// The frames stay in the buffer for the rewind that follows.
fn take_checkpoint<G: Guest>(g: &mut G, env: u64, start: u64, pos: u64) -> Result<(), G::Error> {
    let asyncify = g.read(Mem::Buffer, start, pos.saturating_sub(start))?;
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
    // Written once the window is given back: the jmp_buf may lie inside it.
    g.shim().jmp_buf_write = Some((env, hash));
    g.shim().resume_value = Some(0);
    Ok(())
}

/// The stack has unwound for a restore: put the snapshot's frames in the
/// buffer and restore its globals.
fn prepare_restore<G: Guest>(g: &mut G, hash: &SnapshotHash, val: u64) -> Result<(), G::Error> {
    let snapshot = g.shim().snapshots.get(hash)?.clone();
    let len = snapshot.asyncify.len() as u64;
    let w = g.shim().window.as_mut().expect("borrowed by restore");
    // `restore` borrowed room for these frames; the unwind may have grown it.
    debug_assert!(len <= w.end - w.start);
    let (data, start, end) = (w.data, w.start, w.end);
    w.high_water = w.high_water.max(start + len);
    g.write(Mem::Buffer, start, &snapshot.asyncify)?;
    write_header(g, data, start + len, end)?;
    for (name, value) in &snapshot.globals {
        g.set_global(name, *value)?;
    }
    g.shim().resume_value = Some(val);
    Ok(())
}
