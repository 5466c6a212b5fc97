//! The WASIX contexts of one instance, as plain data: which exist, which
//! runs, and what a suspended one needs to run again.
//!
//! A context is a call stack of its own. The main context (id 0) is the
//! export the host called; every other one starts at an entrypoint, a
//! `() -> ()` function of the module's table. Only one runs at a time. A
//! suspended context is kept as the frames its unwind left in the asyncify
//! buffer and its exported mutable globals (`__stack_pointer` first, so it
//! finds its own C stack again); [`crate::driver`] switches by unwinding the
//! running one and rewinding (or starting) the target.
//!
//! Semantics are Wasmer's (`docs/contexts.md`): ids count up from 1 and are
//! never reused; switching to the running context does nothing; switching
//! to a destroyed, unknown or finished one is EINVAL; destroying the running
//! or the main context is EINVAL, an unknown one is a no-op.

use std::collections::HashMap;

use crate::abi::Errno;
use crate::hash::BuildIntHash;
use crate::snapshot::GlobalValue;

/// The id of the main context.
pub const MAIN: u64 = 0;

/// Bytes of the descriptor our `<wasix/context.h>` passes as
/// `new_context_ptr`: `+0 u64 id` (the host writes it), `+8 u32 magic`,
/// `+12 u32 version`, `+16 u64 stack low`, `+24 u64 stack high`.
pub const DESCRIPTOR_SIZE: usize = 32;
/// The descriptor's magic, "WRCX" in memory.
pub const DESCRIPTOR_MAGIC: u32 = 0x5843_5257;
/// The descriptor version this shim reads.
pub const DESCRIPTOR_VERSION: u32 = 1;

/// Where a context's C stack lies: `[low, high)`, `high` its first stack
/// pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackBounds {
    /// Lowest address of the stack.
    pub low: u64,
    /// One past its highest address: the stack pointer it starts with.
    pub high: u64,
}

impl StackBounds {
    /// The bounds a descriptor names, when `bytes` is one of ours (magic
    /// and version match, `low < high`). Anything else, such as the plain
    /// `u64` wasix-libc's wrapper passes, names none: the context then has
    /// no known stack top, which only makes its checkpoints' stack digest
    /// empty.
    pub fn from_descriptor(bytes: &[u8; DESCRIPTOR_SIZE]) -> Option<StackBounds> {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let (low, high) = (u64_at(16), u64_at(24));
        (u32_at(8) == DESCRIPTOR_MAGIC && u32_at(12) == DESCRIPTOR_VERSION && low < high)
            .then_some(StackBounds { low, high })
    }
}

/// What runs a context from its bottom frame: the call the driver makes to
/// start it, and makes again to rewind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// The export the host called (the main context).
    Export,
    /// The function at this index of the module's table.
    Entry(u32),
}

/// Where a context is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Created, never run: a switch starts it at its entrypoint.
    NotStarted,
    /// Stopped in its own `context_switch`: a switch rewinds it.
    Suspended,
    /// The one running.
    Running,
}

/// One context.
struct Context {
    state: State,
    root: Root,
    stack: Option<StackBounds>,
    /// The frames its last unwind left in the buffer.
    frames: Vec<u8>,
    /// Its globals when it was suspended.
    globals: Vec<GlobalValue>,
}

/// What a switch does once the running context has unwound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumption {
    /// Call the target's entrypoint: it has never run.
    Start(Root),
    /// Rewind the target: put the frames [`Contexts::switch`] handed back
    /// in the buffer, restore the globals, and call this root again.
    Rewind(Root),
}

/// Counts of what the contexts did, for `--stats` and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContextStats {
    /// Contexts created.
    pub created: u64,
    /// Switches that unwound one context and resumed another.
    pub switches: u64,
    /// Most contexts alive at once, the main one included.
    pub peak: usize,
    /// Most bytes of frames a suspended context kept.
    pub largest_frames: usize,
}

/// The contexts of an instance.
pub struct Contexts {
    by_id: HashMap<u64, Context, BuildIntHash>,
    running: u64,
    next_id: u64,
    stats: ContextStats,
}

impl Default for Contexts {
    fn default() -> Contexts {
        Contexts::new()
    }
}

impl Contexts {
    /// Only the main context, running.
    pub fn new() -> Contexts {
        let mut by_id = HashMap::default();
        by_id.insert(MAIN, Context::new(Root::Export, None, State::Running));
        Contexts {
            by_id,
            running: MAIN,
            next_id: 1,
            stats: ContextStats {
                peak: 1,
                ..ContextStats::default()
            },
        }
    }

    /// The id of the running context.
    pub fn running(&self) -> u64 {
        self.running
    }

    /// What runs the running context.
    pub fn running_root(&self) -> Root {
        self.by_id[&self.running].root
    }

    /// The stack bounds of the running context, when known.
    pub fn running_stack(&self) -> Option<StackBounds> {
        self.by_id[&self.running].stack
    }

    /// Whether any context besides the main one exists.
    pub fn any_besides_main(&self) -> bool {
        self.by_id.len() > 1
    }

    /// A new context that will start at table entry `entry`; returns its id.
    pub fn create(&mut self, entry: u32, stack: Option<StackBounds>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_id.insert(
            id,
            Context::new(Root::Entry(entry), stack, State::NotStarted),
        );
        self.stats.created += 1;
        self.stats.peak = self.stats.peak.max(self.by_id.len());
        id
    }

    /// Whether `context_switch(target)` must unwind: `Ok(true)` when the
    /// target is another context that can run, `Ok(false)` when it is the
    /// running one (nothing to do), `Err(EINVAL)` when it is unknown,
    /// destroyed or finished.
    pub fn check_switch(&self, target: u64) -> Result<bool, Errno> {
        if target == self.running {
            return Ok(false);
        }
        match self.by_id.get(&target) {
            Some(c) if c.state != State::Running => Ok(true),
            _ => Err(Errno::Inval),
        }
    }

    /// The frames `target` will need in the buffer (0 if it never ran).
    pub fn frames_len(&self, target: u64) -> usize {
        self.by_id.get(&target).map_or(0, |c| c.frames.len())
    }

    /// The running context has unwound, leaving `frames` and `globals`:
    /// they become its state, `target` (checked with
    /// [`Contexts::check_switch`]) becomes the running one, and the result
    /// says how to resume it. For a [`Resumption::Rewind`], `frames` and
    /// `globals` hold the target's on return; otherwise they are empty.
    /// Buffers are swapped, not copied, so a switch allocates nothing once
    /// each context has run.
    pub fn switch(
        &mut self,
        target: u64,
        frames: &mut Vec<u8>,
        globals: &mut Vec<GlobalValue>,
    ) -> Resumption {
        self.stats.switches += 1;
        self.stats.largest_frames = self.stats.largest_frames.max(frames.len());
        let current = self.by_id.get_mut(&self.running).expect("running exists");
        current.state = State::Suspended;
        std::mem::swap(&mut current.frames, frames);
        std::mem::swap(&mut current.globals, globals);
        self.running = target;
        let next = self
            .by_id
            .get_mut(&target)
            .expect("checked by check_switch");
        let started = next.state == State::Suspended;
        next.state = State::Running;
        // The running context's own buffers hold nothing it needs: they are
        // refilled when it is suspended again.
        std::mem::swap(&mut next.frames, frames);
        std::mem::swap(&mut next.globals, globals);
        if started {
            Resumption::Rewind(next.root)
        } else {
            frames.clear();
            globals.clear();
            Resumption::Start(next.root)
        }
    }

    /// `context_destroy(id)`: EINVAL for the running or the main context;
    /// `Ok(true)` when a context was dropped, `Ok(false)` for an unknown or
    /// already destroyed id (a no-op, as on Wasmer).
    pub fn destroy(&mut self, id: u64) -> Result<bool, Errno> {
        if id == self.running || id == MAIN {
            return Err(Errno::Inval);
        }
        Ok(self.by_id.remove(&id).is_some())
    }

    /// Back to only the main context, running: the export returned or
    /// trapped, and the other contexts' stacks went with it. Returns the ids
    /// dropped.
    pub fn reset(&mut self) -> Vec<u64> {
        let dropped: Vec<u64> = self
            .by_id
            .keys()
            .copied()
            .filter(|&id| id != MAIN)
            .collect();
        self.by_id.retain(|&id, _| id == MAIN);
        let main = self.by_id.get_mut(&MAIN).expect("main exists");
        main.state = State::Running;
        main.frames.clear();
        main.globals.clear();
        self.running = MAIN;
        dropped
    }

    /// Counts of what the contexts did.
    pub fn stats(&self) -> ContextStats {
        self.stats
    }
}

impl Context {
    fn new(root: Root, stack: Option<StackBounds>, state: State) -> Context {
        Context {
            state,
            root,
            stack,
            frames: Vec::new(),
            globals: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(magic: u32, version: u32, low: u64, high: u64) -> [u8; DESCRIPTOR_SIZE] {
        let mut d = [0u8; DESCRIPTOR_SIZE];
        d[8..12].copy_from_slice(&magic.to_le_bytes());
        d[12..16].copy_from_slice(&version.to_le_bytes());
        d[16..24].copy_from_slice(&low.to_le_bytes());
        d[24..32].copy_from_slice(&high.to_le_bytes());
        d
    }

    #[test]
    fn only_our_descriptor_names_a_stack() {
        let ours = descriptor(DESCRIPTOR_MAGIC, 1, 0x1000, 0x2000);
        assert_eq!(
            StackBounds::from_descriptor(&ours),
            Some(StackBounds {
                low: 0x1000,
                high: 0x2000
            })
        );
        assert_eq!(&ours[8..12], b"WRCX");
        for other in [
            descriptor(DESCRIPTOR_MAGIC ^ 1, 1, 0x1000, 0x2000),
            descriptor(DESCRIPTOR_MAGIC, 2, 0x1000, 0x2000),
            descriptor(DESCRIPTOR_MAGIC, 1, 0x2000, 0x2000),
            [0u8; DESCRIPTOR_SIZE],
        ] {
            assert_eq!(StackBounds::from_descriptor(&other), None);
        }
    }

    #[test]
    fn ids_count_up_and_are_never_reused() {
        let mut c = Contexts::new();
        assert_eq!(c.create(5, None), 1);
        assert_eq!(c.create(6, None), 2);
        assert_eq!(c.destroy(2), Ok(true));
        assert_eq!(c.create(7, None), 3);
        assert_eq!(c.check_switch(2), Err(Errno::Inval));
        assert_eq!(c.check_switch(99), Err(Errno::Inval));
    }

    #[test]
    fn a_switch_starts_then_rewinds_and_keeps_each_contexts_state() {
        let mut c = Contexts::new();
        let a = c.create(5, None);
        assert_eq!(c.check_switch(MAIN), Ok(false));
        assert_eq!(c.check_switch(a), Ok(true));
        let (mut frames, mut globals) = (b"main frames".to_vec(), vec![GlobalValue::I32(1000)]);
        assert_eq!(
            c.switch(a, &mut frames, &mut globals),
            Resumption::Start(Root::Entry(5))
        );
        assert!(frames.is_empty() && globals.is_empty());
        assert_eq!(c.running(), a);
        assert_eq!(c.running_root(), Root::Entry(5));
        assert_eq!(c.frames_len(MAIN), 11);
        let (mut frames, mut globals) = (b"a".to_vec(), vec![GlobalValue::I32(500)]);
        assert_eq!(
            c.switch(MAIN, &mut frames, &mut globals),
            Resumption::Rewind(Root::Export)
        );
        assert_eq!(
            (&frames[..], &globals[..]),
            (&b"main frames"[..], &[GlobalValue::I32(1000)][..])
        );
        let (mut frames, mut globals) = (b"main again".to_vec(), globals);
        assert_eq!(
            c.switch(a, &mut frames, &mut globals),
            Resumption::Rewind(Root::Entry(5))
        );
        assert_eq!(
            (&frames[..], &globals[..]),
            (&b"a"[..], &[GlobalValue::I32(500)][..])
        );
        assert_eq!(c.frames_len(MAIN), 10);
        assert_eq!(c.stats().switches, 3);
    }

    #[test]
    fn the_running_and_the_main_context_cannot_be_destroyed() {
        let mut c = Contexts::new();
        let a = c.create(1, None);
        assert_eq!(c.destroy(MAIN), Err(Errno::Inval));
        c.switch(a, &mut Vec::new(), &mut Vec::new());
        assert_eq!(c.destroy(a), Err(Errno::Inval));
        assert_eq!(c.destroy(MAIN), Err(Errno::Inval));
        assert_eq!(c.destroy(42), Ok(false));
        assert_eq!(c.reset(), vec![a]);
        assert_eq!(c.running(), MAIN);
        assert!(!c.any_besides_main());
        assert_eq!(c.check_switch(a), Err(Errno::Inval));
    }
}
