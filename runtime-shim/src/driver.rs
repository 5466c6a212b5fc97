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
//! unwind, puts the frames, the digest of the live stack bytes and the
//! exported mutable globals in a [`Snapshot`], stores it under its keyed
//! hash, and starts rewinding the same buffer: the binding calls the export
//! again with the same arguments. The checkpoint import is re-entered while
//! rewinding (state 2): it stops the rewind, gives the buffer's window back,
//! writes the hash into the jmp_buf and returns 0 through `ret`.
//!
//! `stack_restore(env, val)`: look the hash up (and re-verify it), refuse a
//! stale snapshot, unwind the current stack (its frames are discarded); then
//! [`after_return`] writes the snapshot's frames into the buffer, restores the
//! globals (`__stack_pointer` above all; linear memory is not restored, so
//! later writes to volatile locals survive, as C requires) and rewinds: the
//! stack is rebuilt as it was at the checkpoint, whose import returns `val`.
//!
//! # How a context switch runs
//!
//! `context_switch(target)` (WASIX contexts, [`crate::contexts`]) unwinds the
//! running context to its root, the call the binding made: the export for
//! the main context, a table entry for the others. [`after_return`] keeps
//! its frames and globals, then either tells the binding to call the
//! target's entrypoint (it never ran) or puts the target's frames in the
//! buffer, restores its globals and rewinds it: the binding calls the
//! target's root, and the rewind ends in the target's own `context_switch`,
//! which returns 0. A checkpoint or restore inside a context unwinds to that
//! context's root only, so the rest works as without contexts; a longjmp to
//! another context's setjmp is refused.
//!
//! # Where the buffer lives
//!
//! See [`crate::window`]: a window borrowed at the top of memory 0 and given
//! back after the request, or the module's own `asyncify_memory`.

use crate::abi::{Errno, JmpBuf, JMP_BUF_HASH_OFFSET, JMP_BUF_SIZE};
use crate::contexts::{self, Contexts, Resumption, Root, StackBounds};
use crate::error::ShimError;
use crate::hash::{HashKey, SnapshotHash};
use crate::snapshot::{stack_digest, GlobalValue, Snapshot};
use crate::store::{Restored, SnapshotStore, StoreLimits};
use crate::window::{read_pos, write_header, Window, WindowSizing};

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
/// the deepest C program we know unwinds (Lua at its C-stack limit inside an
/// error handler at its limit needs well under 1 MiB), and still a bound on
/// what a runaway guest can make the host copy.
pub const DEFAULT_MAX_BUFFER: u64 = 64 << 20;

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
    /// Taken out for the length of an insert, which reads guest memory.
    snapshots: Option<SnapshotStore>,
    max_buffer: u64,
    pending: Pending,
    /// The Asyncify state as the driver left it: the driver makes every
    /// change (an in-module runtime cannot coexist with a host that drives
    /// the exports), so it need not call `asyncify_get_state` to know it,
    /// which would cost a call into the guest each time. The real state is
    /// read once when an export returns normally, to catch an unwind nobody
    /// asked the shim for.
    state: i32,
    /// The buffer of the request under way.
    window: Option<Window>,
    sizing: WindowSizing,
    /// The hash to write into a jmp_buf once the window is given back.
    jmp_buf_write: Option<(u64, SnapshotHash)>,
    /// What the rewound `stack_checkpoint` call returns through `ret`.
    resume_value: Option<u64>,
    /// `__stack_pointer` when the first export was called: the stack's top.
    stack_top: Option<u64>,
    /// Scratch space for the stack bytes and the frames of a checkpoint.
    scratch: Vec<u8>,
    /// A checkpoint's globals and a restore's snapshot, kept between
    /// requests so that neither allocates.
    spare_globals: Vec<GlobalValue>,
    spare_restored: Restored,
    /// The WASIX contexts and which one runs.
    contexts: Contexts,
    /// What the engine binding resolved for this instance (its export
    /// handles), kept here so imports can find it; opaque to the driver.
    pub(crate) binding: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl ShimState {
    /// A fresh state.
    pub fn new(config: ShimConfig) -> ShimState {
        ShimState {
            snapshots: Some(SnapshotStore::new(config.key, config.limits)),
            max_buffer: config.max_buffer,
            pending: Pending::None,
            state: 0,
            window: None,
            sizing: WindowSizing::default(),
            jmp_buf_write: None,
            resume_value: None,
            stack_top: None,
            scratch: Vec::new(),
            spare_globals: Vec::new(),
            spare_restored: Restored::default(),
            contexts: Contexts::new(),
            binding: None,
        }
    }

    /// The snapshots taken so far (for inspection and tests).
    pub fn snapshots(&self) -> &SnapshotStore {
        self.snapshots
            .as_ref()
            .expect("only taken during an insert")
    }

    /// The WASIX contexts (for inspection and `--stats`).
    pub fn contexts(&self) -> &Contexts {
        &self.contexts
    }

    fn store(&mut self) -> &mut SnapshotStore {
        self.snapshots
            .as_mut()
            .expect("only taken during an insert")
    }
}

/// A request made by an import, completed once the stack has unwound.
enum Pending {
    None,
    /// The live C stack's digest is taken when the request is made: the
    /// unwind does not change the stack, and the borrowed window may lie
    /// over a context's stack (in the heap) once frames are in it.
    Checkpoint {
        env: u64,
        stack_pointer: u64,
        stack_digest: [u8; 8],
    },
    Restore {
        snapshot: Restored,
        val: u64,
    },
    Switch {
        target: u64,
    },
}

/// What the binding does once an export or entrypoint has returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The export finished: return its results.
    Finished,
    /// Call this root (with the export's arguments for [`Root::Export`]):
    /// a rewind has started, or a context starts at its entrypoint.
    Call(Root),
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
    /// Appends the `len` bytes at `addr` to `out`; out of bounds is an
    /// error, never a panic.
    fn read_into(
        &mut self,
        mem: Mem,
        addr: u64,
        len: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), ShimError>;
    /// Fills `out` with the bytes at `addr`; out of bounds is an error.
    fn read_exact(&mut self, mem: Mem, addr: u64, out: &mut [u8]) -> Result<(), ShimError>;
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
    /// The names of the exported mutable globals a snapshot saves.
    fn global_names(&self) -> std::sync::Arc<[String]>;
    /// Their values, in the order of [`Guest::global_names`], into `out`.
    fn globals(&mut self, out: &mut Vec<GlobalValue>);
    /// Sets them back, in the same order.
    fn set_globals(&mut self, values: &[GlobalValue]) -> Result<(), Self::Error>;
    /// Whether entry `index` of the module's function table is a function
    /// of type `() -> ()`, which a context can start at.
    fn entry_is_callable(&mut self, index: u32) -> bool;
}

/// `stack_checkpoint(env, ret)`: starts a checkpoint (state 0) or ends the
/// rewind into this call (state 2), writing the value it returns to `ret`.
pub fn checkpoint<G: Guest>(g: &mut G, env: u64, ret: u64) -> Result<Errno, G::Error> {
    match g.shim().state {
        2 => {
            g.stop_rewind()?;
            g.shim().state = 0;
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
            let (stack_pointer, stack_digest) = running_stack_digest(g)?;
            let data = borrow_window(g, 0, false)?;
            g.shim().pending = Pending::Checkpoint {
                env,
                stack_pointer,
                stack_digest,
            };
            g.start_unwind(data)?;
            g.shim().state = 1;
            Ok(Errno::Success)
        }
        s => Err(guest_error(&format!(
            "stack_checkpoint called in asyncify state {s}"
        ))),
    }
}

/// `stack_restore(env, val)`: checks the jmp_buf (the snapshot it names is
/// verified once, here) and starts unwinding the current stack, to be
/// replaced by the checkpoint's.
pub fn restore<G: Guest>(g: &mut G, env: u64, val: u64) -> Result<(), G::Error> {
    let state = g.shim().state;
    if state != 0 {
        return Err(guest_error(&format!(
            "stack_restore called in asyncify state {state}"
        )));
    }
    let mut bytes = [0u8; JMP_BUF_SIZE as usize];
    g.read_exact(Mem::Program, env, &mut bytes)?;
    let hash = JmpBuf::from_bytes(&bytes).hash;
    let sp = g.stack_pointer();
    let current = g.shim().contexts.running();
    if let Some(set_in) = g.shim().store().context_of(&hash) {
        if set_in != current {
            return Err(ShimError::LongjmpAcrossContexts { set_in, current }.into());
        }
    }
    // Stack pointers compare within one context only, which the check
    // above makes sure of.
    if let Some(snapshot_sp) = g.shim().store().stack_pointer_of(&hash) {
        if snapshot_sp < sp {
            return Err(ShimError::StaleSnapshot {
                snapshot_sp,
                current_sp: sp,
            }
            .into());
        }
    }
    let names = g.global_names();
    let mut snapshot = std::mem::take(&mut g.shim().spare_restored);
    g.shim().store().get_into(&hash, &names, &mut snapshot)?;
    let data = borrow_window(g, snapshot.frames.len() as u64, true)?;
    g.shim().pending = Pending::Restore { snapshot, val };
    g.start_unwind(data)?;
    g.shim().state = 1;
    Ok(())
}

/// `context_create(new_context_ptr, entrypoint)`: a new context that will
/// start at table entry `entry`, its id written at `ptr`. EINVAL when the
/// entry is not a `() -> ()` function of the table, EFAULT when `ptr` is
/// not writable. The 32 bytes at `ptr` may be our header's descriptor,
/// which names the context's stack ([`StackBounds::from_descriptor`]).
pub fn context_create<G: Guest>(g: &mut G, ptr: u64, entry: u32) -> Result<Errno, G::Error> {
    let state = g.shim().state;
    if state != 0 {
        return Err(guest_error(&format!(
            "context_create called in asyncify state {state}"
        )));
    }
    if !g.entry_is_callable(entry) {
        return Ok(Errno::Inval);
    }
    let mut id_field = [0u8; 8];
    if g.read_exact(Mem::Program, ptr, &mut id_field).is_err() {
        return Ok(Errno::Fault);
    }
    let mut descriptor = [0u8; contexts::DESCRIPTOR_SIZE];
    let stack = g
        .read_exact(Mem::Program, ptr, &mut descriptor)
        .ok()
        .and_then(|()| StackBounds::from_descriptor(&descriptor));
    let id = g.shim().contexts.create(entry, stack);
    g.write(Mem::Program, ptr, &id.to_le_bytes())?;
    Ok(Errno::Success)
}

/// `context_switch(target)`: errors and a switch to the running context
/// return at once; otherwise the running context unwinds (state 0), to be
/// resumed when a switch to it rewinds into this call (state 2), which then
/// returns 0.
pub fn context_switch<G: Guest>(g: &mut G, target: u64) -> Result<Errno, G::Error> {
    match g.shim().state {
        2 => {
            g.stop_rewind()?;
            g.shim().state = 0;
            give_back_window(g)?;
            Ok(Errno::Success)
        }
        0 => {
            if !matches!(g.shim().pending, Pending::None) {
                return Err(guest_error(
                    "context_switch called while another request is pending",
                ));
            }
            match g.shim().contexts.check_switch(target) {
                Err(errno) => return Ok(errno),
                Ok(false) => return Ok(Errno::Success),
                Ok(true) => {}
            }
            // Room for the target's frames, which the same window takes
            // once the running context's are copied out.
            let frames = g.shim().contexts.frames_len(target) as u64;
            let data = borrow_window(g, frames, true)?;
            g.shim().pending = Pending::Switch { target };
            g.start_unwind(data)?;
            g.shim().state = 1;
            Ok(Errno::Success)
        }
        s => Err(guest_error(&format!(
            "context_switch called in asyncify state {s}"
        ))),
    }
}

/// `context_destroy(id)`: EINVAL for the running or the main context, 0 for
/// an unknown one; otherwise the context and its snapshots are dropped (no
/// guest code runs).
pub fn context_destroy<G: Guest>(g: &mut G, id: u64) -> Result<Errno, G::Error> {
    match g.shim().contexts.destroy(id) {
        Err(errno) => Ok(errno),
        Ok(dropped) => {
            if dropped {
                g.shim().store().drop_context(id);
            }
            Ok(Errno::Success)
        }
    }
}

/// The grow hook: a frame of `needed` bytes does not fit in the buffer of
/// the unwind under way; give it room (see [`crate::window`]).
pub fn grow<G: Guest>(g: &mut G, needed: u64) -> Result<(), G::Error> {
    let Some(mut window) = g.shim().window.take() else {
        return Err(guest_error(
            "the unwind buffer's grow hook was called with no unwind under way",
        ));
    };
    let result = read_pos(g, window.data).and_then(|pos| {
        let max = g.shim().max_buffer;
        let mut sizing = std::mem::take(&mut g.shim().sizing);
        let r = window.grow(g, &mut sizing, pos, needed, max);
        g.shim().sizing = sizing;
        r
    });
    g.shim().window = Some(window);
    Ok(result?)
}

/// Call before calling an export: remembers where the stack starts.
pub fn begin<G: Guest>(g: &mut G) {
    if g.shim().stack_top.is_none() {
        let sp = g.stack_pointer();
        g.shim().stack_top = Some(sp);
    }
}

/// Call after an export (or a context's entrypoint) returned.
/// [`Next::Finished`]: the export finished. [`Next::Call`]: it returned
/// because the stack unwound for a checkpoint, restore or context switch,
/// which is now complete: call that root (the export again with the same
/// arguments, or a context's entrypoint).
pub fn after_return<G: Guest>(g: &mut G, export: &str) -> Result<Next, G::Error> {
    if g.shim().state != 1 {
        // A normal return, as far as the shim knows: make sure.
        if g.state()? == 1 {
            return Err(no_request(export));
        }
        let returned = g.shim().contexts.running();
        end_contexts(g.shim());
        if returned != contexts::MAIN {
            return Err(ShimError::ContextEntrypointReturned { id: returned }.into());
        }
        return Ok(Next::Finished);
    }
    if let Pending::Switch { target } = g.shim().pending {
        return match switch_contexts(g, export, target) {
            Ok(next) => Ok(next),
            Err(e) => {
                g.shim().pending = Pending::None;
                g.shim().state = 0;
                let _ = g.stop_unwind();
                Err(e)
            }
        };
    }
    // The unwind is not stopped before the rewind starts: stopping it only
    // sets the state to 0 (and checks `pos <= end`, which starting the
    // rewind checks too), and no guest code runs in between, so going from
    // 1 to 2 directly saves a call into the guest. On an error, it is
    // stopped, so the instance is left in the normal state.
    let data = match complete(g, export) {
        Ok(data) => data,
        Err(e) => {
            g.shim().state = 0;
            let _ = g.stop_unwind();
            return Err(e);
        }
    };
    g.start_rewind(data)?;
    g.shim().state = 2;
    Ok(Next::Call(g.shim().contexts.running_root()))
}

/// The running context has unwound for a switch to `target`: keep its
/// frames and globals, then start the target or rewind it.
fn switch_contexts<G: Guest>(g: &mut G, export: &str, target: u64) -> Result<Next, G::Error> {
    let (data, start, pos) = unwound(g, export)?;
    g.shim().pending = Pending::None;
    let mut frames = std::mem::take(&mut g.shim().scratch);
    frames.clear();
    g.read_into(Mem::Buffer, start, pos.saturating_sub(start), &mut frames)?;
    let mut globals = std::mem::take(&mut g.shim().spare_globals);
    globals.clear();
    g.globals(&mut globals);
    let shim = g.shim();
    let resumption = shim.contexts.switch(target, &mut frames, &mut globals);
    let result = match resumption {
        Resumption::Start(root) => {
            // No rewind: the entrypoint is called in the normal state, with
            // the window given back.
            g.shim().state = 0;
            g.stop_unwind()?;
            give_back_window(g)?;
            Ok(Next::Call(root))
        }
        Resumption::Rewind(root) => {
            rewind_frames(g, &frames, &globals)?;
            g.start_rewind(data)?;
            g.shim().state = 2;
            Ok(Next::Call(root))
        }
    };
    g.shim().scratch = frames;
    g.shim().spare_globals = globals;
    result
}

/// Puts `frames` at the start of the borrowed window's buffer and restores
/// `globals`, ready for a rewind.
fn rewind_frames<G: Guest>(
    g: &mut G,
    frames: &[u8],
    globals: &[GlobalValue],
) -> Result<(), G::Error> {
    let len = frames.len() as u64;
    let w = g.shim().window.as_mut().expect("borrowed by the request");
    // The request borrowed room for these frames; the unwind may have grown it.
    debug_assert!(len <= w.end - w.start);
    let (data, start, end) = (w.data, w.start, w.end);
    w.reached(start + len);
    g.write(Mem::Buffer, start, frames)?;
    write_header(g, data, start + len, end)?;
    g.set_globals(globals)?;
    Ok(())
}

/// The export finished or trapped: only the main context is left, and the
/// snapshots of the others are dropped with them.
fn end_contexts(shim: &mut ShimState) {
    // Another context runs only if one exists.
    if !shim.contexts.any_besides_main() {
        return;
    }
    for id in shim.contexts.reset() {
        shim.store().drop_context(id);
    }
}

/// The stack pointer, and the digest of the running context's live C
/// stack: bytes from the stack pointer to its stack's top (the main
/// stack's, or the one our header's descriptor named; none when the
/// context's stack is unknown).
fn running_stack_digest<G: Guest>(g: &mut G) -> Result<(u64, [u8; 8]), ShimError> {
    let sp = g.stack_pointer();
    let shim = g.shim();
    let top = if shim.contexts.running() == contexts::MAIN {
        shim.stack_top.unwrap_or(sp)
    } else {
        shim.contexts.running_stack().map_or(sp, |b| b.high)
    }
    .max(sp);
    let mut scratch = std::mem::take(&mut g.shim().scratch);
    scratch.clear();
    let read = g.read_into(Mem::Program, sp, top - sp, &mut scratch);
    let digest = stack_digest(&scratch);
    g.shim().scratch = scratch;
    read.map(|()| (sp, digest))
}

/// The stack has unwound for the pending request: complete it, and return
/// the buffer's address for the rewind.
fn complete<G: Guest>(g: &mut G, export: &str) -> Result<u64, G::Error> {
    let (data, start, pos) = unwound(g, export)?;
    match std::mem::replace(&mut g.shim().pending, Pending::None) {
        Pending::Checkpoint {
            env,
            stack_pointer,
            stack_digest,
        } => take_checkpoint(g, env, (stack_pointer, stack_digest), start, pos)?,
        Pending::Restore { snapshot, val } => prepare_restore(g, snapshot, val)?,
        Pending::None | Pending::Switch { .. } => return Err(no_request(export)),
    }
    Ok(data)
}

/// The unwind of the pending request has ended: the buffer's `{pos, end}`
/// address, where its frames start and where they end. Remembers how much
/// it unwound, to size the next window of the same kind.
fn unwound<G: Guest>(g: &mut G, export: &str) -> Result<(u64, u64, u64), G::Error> {
    let Some((data, start)) = g.shim().window.as_ref().map(|w| (w.data, w.start)) else {
        return Err(no_request(export));
    };
    let pos = read_pos(g, data)?;
    let shim = g.shim();
    let unwound = pos.saturating_sub(start);
    match shim.pending {
        Pending::Checkpoint { .. } => shim.sizing.last_checkpoint_unwind = unwound,
        Pending::Restore { .. } | Pending::Switch { .. } => {
            shim.sizing.last_restore_unwind = unwound
        }
        Pending::None => {}
    }
    shim.sizing.largest_unwind = shim.sizing.largest_unwind.max(unwound);
    if let Some(w) = shim.window.as_mut() {
        w.reached(pos);
    }
    Ok((data, start, pos))
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
    shim.state = 0;
    shim.jmp_buf_write = None;
    end_contexts(shim);
    let window = shim.window.take();
    match std::mem::replace(&mut shim.pending, Pending::None) {
        Pending::None => None,
        Pending::Checkpoint { .. } | Pending::Restore { .. } | Pending::Switch { .. } => {
            window.map(|w| w.end - w.start)
        }
    }
}

fn guest_error<E: From<ShimError>>(message: &str) -> E {
    ShimError::Guest {
        message: message.to_string(),
    }
    .into()
}

/// Borrows the window for a request whose frames need `frames` bytes, and
/// returns the address of its `{pos, end}`.
fn borrow_window<G: Guest>(g: &mut G, frames: u64, restore: bool) -> Result<u64, ShimError> {
    if g.shim().window.is_some() {
        return Err(ShimError::Guest {
            message: "a stack_checkpoint or stack_restore ran while another was under way".into(),
        });
    }
    let (max, floor) = (g.shim().max_buffer, g.shim().stack_top.unwrap_or(0));
    let mut sizing = std::mem::take(&mut g.shim().sizing);
    let window = Window::borrow(g, &mut sizing, frames, floor, max, restore);
    g.shim().sizing = sizing;
    let window = window?;
    let data = window.data;
    g.shim().window = Some(window);
    Ok(data)
}

fn give_back_window<G: Guest>(g: &mut G) -> Result<(), ShimError> {
    let Some(window) = g.shim().window.take() else {
        return Ok(());
    };
    let mut sizing = std::mem::take(&mut g.shim().sizing);
    let result = window.give_back(g, &mut sizing);
    g.shim().sizing = sizing;
    result
}

/// The stack has unwound for a checkpoint into `[start, pos)`: snapshot it.
/// The frames stay in the buffer for the rewind that follows.
/// `stack` is the stack pointer and live-stack digest taken at the request
/// (an unwind changes neither).
fn take_checkpoint<G: Guest>(
    g: &mut G,
    env: u64,
    stack: (u64, [u8; 8]),
    start: u64,
    pos: u64,
) -> Result<(), G::Error> {
    let (sp, digest) = stack;
    let mut scratch = std::mem::take(&mut g.shim().scratch);
    scratch.clear();
    g.read_into(Mem::Buffer, start, pos.saturating_sub(start), &mut scratch)?;
    let mut globals = std::mem::take(&mut g.shim().spare_globals);
    globals.clear();
    g.globals(&mut globals);
    let snapshot = Snapshot {
        frames: scratch,
        stack_digest: digest,
        stack_pointer: sp,
        context: g.shim().contexts.running(),
        globals,
    };
    let names = g.global_names();
    let mut store = g.shim().snapshots.take().expect("not taken twice");
    // A displaced snapshot whose jmp_buf holds its hash again is live.
    let inserted = store.insert(&snapshot, &names, env, |env, hash| {
        let mut held = [0u8; 16];
        g.read_exact(Mem::Program, env + JMP_BUF_HASH_OFFSET as u64, &mut held)
            .is_ok_and(|()| held == *hash)
    });
    g.shim().snapshots = Some(store);
    g.shim().scratch = snapshot.frames;
    g.shim().spare_globals = snapshot.globals;
    let hash = inserted?;
    // Written once the window is given back: the jmp_buf may lie inside it.
    g.shim().jmp_buf_write = Some((env, hash));
    g.shim().resume_value = Some(0);
    Ok(())
}

/// The stack has unwound for a restore: put the snapshot's frames in the
/// buffer and restore its globals.
fn prepare_restore<G: Guest>(g: &mut G, snapshot: Restored, val: u64) -> Result<(), G::Error> {
    rewind_frames(g, &snapshot.frames, &snapshot.globals)?;
    let shim = g.shim();
    shim.resume_value = Some(val);
    shim.spare_restored = snapshot;
    Ok(())
}
