//! The bounded store of snapshots, keyed by their keyed hash.
//!
//! A guest decides how often it calls `setjmp`, so what the store holds is
//! capped, in snapshots and in bytes. What it may drop to stay within the
//! caps follows from which snapshots a `longjmp` can still reach:
//!
//! - **Dead**: taken in a frame that has returned. At a new checkpoint, a
//!   snapshot whose stack pointer is below the current one is dead (the
//!   stack grows down), and it is dropped at once: a `longjmp` to it is
//!   undefined behaviour in C.
//! - **Displaced**: its jmp_buf was given another snapshot by a later
//!   `setjmp`. A program may still hold a copy of the old jmp_buf (some
//!   exception libraries save and restore one around a `setjmp`), so it is
//!   kept, but it is the first to go when room is needed, oldest first. A
//!   displaced snapshot whose jmp_buf holds it again by then (the program
//!   copied it back) is live again and stays.
//! - **Live**: everything else. A live snapshot is never dropped. When the
//!   live snapshots alone would exceed a cap, the checkpoint fails at once
//!   with [`ShimError::SnapshotLimit`], which names the cap.
//!
//! Frames are kept in a [`FrameStore`], where snapshots share what their
//! frames have in common, so k nested checkpoints cost memory in proportion
//! to k. The live C stack is kept as a digest only: it is hashed into the
//! snapshot's name, never written back (longjmp keeps memory as it is).
//!
//! Lookups are by a hash the guest supplies, so every `get` re-verifies the
//! snapshot against it; a guest can only name a snapshot it was given.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use crate::error::{ShimError, SnapshotLimitKind};
use crate::frames::{FrameStore, NodeId};
use crate::hash::{BuildIdentity, BuildIntHash};
use crate::hash::{HashKey, SnapshotHash};
use crate::snapshot::{name_of, names_digest, GlobalValue, Snapshot, StackAt};

/// A min-heap of (stack pointer, seq, hash).
type SpHeap = BinaryHeap<Reverse<(u64, u64, SnapshotHash)>>;

/// Caps on what one store holds; both apply at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most snapshots kept at once. A value of 0 is treated as 1: a
    /// checkpoint must at least be able to keep its own snapshot.
    pub max_snapshots: usize,
    /// Most bytes kept at once, as counted by [`SnapshotStore::bytes`].
    pub max_bytes: usize,
    /// Most displaced snapshots kept (those whose jmp_buf a later `setjmp`
    /// gave another), beyond which the oldest go even when there is room:
    /// a program reaches one only through a copy of its old jmp_buf, which
    /// it keeps for a handful of them at most.
    pub max_displaced: usize,
}

impl Default for StoreLimits {
    /// 65,536 snapshots, 64 MiB, 1,024 displaced.
    ///
    /// Why: dead snapshots go at once and displaced ones when room is
    /// needed, so the caps bound live ones: the deepest real nesting we know
    /// (an interpreter at its C-stack limit inside an error handler at its
    /// limit, about 400 live checkpoints; a C program 1,000 `setjmp`s deep)
    /// stays far below both, while a runaway guest still costs the host at
    /// most 64 MiB. Shared frames make a live snapshot cost a few hundred
    /// bytes, so the byte cap is the one a real program meets first.
    fn default() -> StoreLimits {
        StoreLimits {
            max_snapshots: 65_536,
            max_bytes: 64 << 20,
            max_displaced: 1024,
        }
    }
}

/// One stored snapshot and its bookkeeping.
struct Entry {
    frames: Option<NodeId>,
    frames_len: usize,
    stack_digest: [u8; 8],
    stack_pointer: u64,
    /// The context it was taken in.
    context: u64,
    globals: Box<[GlobalValue]>,
    /// The jmp_buf it was stored for.
    env: u64,
    /// Order of insertion: tells a displaced entry from a later one with the
    /// same hash.
    seq: u64,
    /// Whether a later checkpoint gave its jmp_buf another snapshot.
    displaced: bool,
}

/// Bytes an entry costs besides its frames: the entry, its place in the
/// maps (hash, key and control byte at hashbrown's maximum load), and its
/// globals.
fn entry_bytes(globals: usize) -> usize {
    std::mem::size_of::<Entry>()
        + (std::mem::size_of::<SnapshotHash>() + 8 + 1) * 8 / 7 * 3
        + globals * std::mem::size_of::<GlobalValue>()
}

/// A snapshot as [`SnapshotStore::get`] gives it back: verified, frames
/// rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// The unwound frames, as the buffer held them.
    pub frames: Vec<u8>,
    /// `__stack_pointer` at the checkpoint.
    pub stack_pointer: u64,
    /// The globals to restore, in the order the snapshot took them.
    pub globals: Vec<GlobalValue>,
}

/// What the store holds and has done, for reports and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Snapshots inserted (identical ones once).
    pub inserted: u64,
    /// Dropped because their frame returned.
    pub dropped_dead: u64,
    /// Dropped, displaced, to make room.
    pub dropped_displaced: u64,
    /// Most snapshots held at once.
    pub peak_snapshots: usize,
    /// Most bytes held at once.
    pub peak_bytes: usize,
}

/// Snapshots by keyed hash, bounded in count and bytes; see the module
/// documentation for what is dropped when.
pub struct SnapshotStore {
    key: HashKey,
    limits: StoreLimits,
    /// By name. Names are keyed MACs, which a guest cannot choose, so their
    /// own bytes are the table's hash (a guest's lookups only probe).
    entries: HashMap<SnapshotHash, Entry, BuildIdentity>,
    frames: FrameStore,
    /// Per context, (stack pointer, seq, hash): the order dead snapshots
    /// are found in. A min-heap on the stack pointer. Entries removed
    /// otherwise stay until they come up (their seq no longer matches), and
    /// the heaps are rebuilt when such leftovers outnumber the live ones.
    /// Per context because each WASIX context has a C stack of its own:
    /// stack pointers are comparable only within one.
    by_sp: HashMap<u64, SpHeap, BuildIntHash>,
    /// Entries in all of `by_sp`'s heaps.
    by_sp_len: usize,
    /// The snapshot each jmp_buf was last given.
    by_env: HashMap<u64, SnapshotHash, BuildIntHash>,
    /// Displaced snapshots, oldest first, with their seq (an entry no longer
    /// there, or there with another seq, is skipped).
    displaced: VecDeque<(SnapshotHash, u64)>,
    seq: u64,
    /// Bytes of the entries (the frames count theirs).
    entry_bytes: usize,
    stats: StoreStats,
    /// The names of the globals last hashed and their digest: the same
    /// for every snapshot of an instance, so computed once.
    names: (Vec<String>, [u8; 8]),
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SnapshotStore {
    /// An empty store hashing with `key` and bounded by `limits` (with
    /// `max_snapshots` raised to 1 if it is 0).
    pub fn new(key: HashKey, limits: StoreLimits) -> SnapshotStore {
        let limits = StoreLimits {
            max_snapshots: limits.max_snapshots.max(1),
            ..limits
        };
        SnapshotStore {
            frames: FrameStore::new(key.clone()),
            key,
            limits,
            entries: HashMap::default(),
            by_sp: HashMap::default(),
            by_sp_len: 0,
            by_env: HashMap::default(),
            displaced: VecDeque::new(),
            seq: 0,
            entry_bytes: 0,
            stats: StoreStats::default(),
            names: (Vec::new(), names_digest(&[])),
        }
    }

    /// The key snapshots are hashed with.
    pub fn key(&self) -> &HashKey {
        &self.key
    }

    /// Stores `snapshot`, taken for the jmp_buf at `env`, and returns its
    /// name. `global_names` are the names of its globals (hashed into the
    /// name). First drops the dead snapshots (stack pointer below this one's,
    /// in the same context)
    /// and marks the jmp_buf's previous snapshot displaced; then, if the new
    /// one does not fit, drops displaced snapshots, oldest first, skipping
    /// those `is_current(env, hash)` says their jmp_buf holds again. If it
    /// still does not fit, nothing is stored and the error names the cap.
    pub fn insert(
        &mut self,
        snapshot: &Snapshot,
        global_names: &[String],
        env: u64,
        mut is_current: impl FnMut(u64, &SnapshotHash) -> bool,
    ) -> Result<SnapshotHash, ShimError> {
        self.drop_dead_below(snapshot.context, snapshot.stack_pointer);
        // The frames first: their list's digest is part of the name.
        let frames = self.frames.insert(&snapshot.frames);
        let names = self.names_digest(global_names);
        let hash = snapshot.hash_with(&self.key, &names, &self.frames.digest(frames));
        if let Some(previous) = self.by_env.insert(env, hash) {
            if previous != hash {
                self.displace(previous);
            }
        }
        if let Some(entry) = self.entries.get_mut(&hash) {
            // Identical snapshot: stored once. It is the current one now.
            entry.displaced = false;
            entry.env = env;
            self.frames.release(frames);
            return Ok(hash);
        }
        // Room, as if the frames were not shared (an upper bound).
        let size = entry_bytes(snapshot.globals.len())
            + snapshot.frames.len().div_ceil(crate::frames::CHUNK) * crate::frames::NODE_BYTES;
        if let Err(e) = self.make_room(size, env, &mut is_current) {
            self.frames.release(frames);
            return Err(e);
        }
        self.seq += 1;
        let entry = Entry {
            frames,
            frames_len: snapshot.frames.len(),
            stack_digest: snapshot.stack_digest,
            stack_pointer: snapshot.stack_pointer,
            context: snapshot.context,
            globals: snapshot.globals.clone().into_boxed_slice(),
            env,
            seq: self.seq,
            displaced: false,
        };
        self.entry_bytes += entry_bytes(entry.globals.len());
        self.by_sp.entry(entry.context).or_default().push(Reverse((
            entry.stack_pointer,
            entry.seq,
            hash,
        )));
        self.by_sp_len += 1;
        self.entries.insert(hash, entry);
        if self.by_sp_len > 2 * self.entries.len() + 64 {
            self.rebuild_by_sp();
        }
        self.stats.inserted += 1;
        self.stats.peak_snapshots = self.stats.peak_snapshots.max(self.entries.len());
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.bytes());
        Ok(hash)
    }

    /// The snapshot stored under `hash`, its frames rebuilt and the whole of
    /// it re-verified against the hash (ShimError::UnknownSnapshot if absent
    /// or dropped, ShimError::CorruptedSnapshot if it no longer hashes to
    /// its name).
    pub fn get(
        &mut self,
        hash: &SnapshotHash,
        global_names: &[String],
    ) -> Result<Restored, ShimError> {
        let mut out = Restored {
            frames: Vec::new(),
            stack_pointer: 0,
            globals: Vec::new(),
        };
        self.get_into(hash, global_names, &mut out)?;
        Ok(out)
    }

    /// [`SnapshotStore::get`] into `out`, whose allocations are reused.
    pub fn get_into(
        &mut self,
        hash: &SnapshotHash,
        global_names: &[String],
        out: &mut Restored,
    ) -> Result<(), ShimError> {
        let names = self.names_digest(global_names);
        let entry = self
            .entries
            .get(hash)
            .ok_or(ShimError::UnknownSnapshot { hash: *hash })?;
        out.frames.clear();
        out.globals.clear();
        let chunks_intact = self.frames.read(entry.frames, &mut out.frames);
        // Every chunk as stored (checksums), and the name over the chunks'
        // digest and the rest: a restore replays only what it was named for.
        let intact = chunks_intact
            && out.frames.len() == entry.frames_len
            && name_of(
                &self.key,
                &names,
                &self.frames.digest(entry.frames),
                entry.frames_len,
                &entry.stack_digest,
                StackAt {
                    pointer: entry.stack_pointer,
                    context: entry.context,
                },
                &entry.globals,
            ) == *hash;
        if !intact {
            out.frames.clear();
            return Err(ShimError::CorruptedSnapshot { hash: *hash });
        }
        out.stack_pointer = entry.stack_pointer;
        out.globals.extend_from_slice(&entry.globals);
        Ok(())
    }

    /// The digest of `names`, computed again only when they change.
    fn names_digest(&mut self, names: &[String]) -> [u8; 8] {
        if self.names.0 != names {
            self.names = (names.to_vec(), names_digest(names));
        }
        self.names.1
    }

    /// The stack pointer a stored snapshot was taken at, without verifying
    /// it (the stale check before a restore).
    pub fn stack_pointer_of(&self, hash: &SnapshotHash) -> Option<u64> {
        self.entries.get(hash).map(|e| e.stack_pointer)
    }

    /// The context a stored snapshot was taken in, without verifying it
    /// (the check that a longjmp stays in its context).
    pub fn context_of(&self, hash: &SnapshotHash) -> Option<u64> {
        self.entries.get(hash).map(|e| e.context)
    }

    /// Drops every snapshot taken in `context`, which was destroyed: no
    /// longjmp can reach them any more.
    pub fn drop_context(&mut self, context: u64) {
        let Some(heap) = self.by_sp.remove(&context) else {
            return;
        };
        self.by_sp_len -= heap.len();
        for Reverse((_, seq, hash)) in heap {
            if self.entries.get(&hash).is_some_and(|e| e.seq == seq) {
                self.remove(&hash);
                self.stats.dropped_dead += 1;
            }
        }
    }

    /// Whether a snapshot is stored under `hash`.
    pub fn contains(&self, hash: &SnapshotHash) -> bool {
        self.entries.contains_key(hash)
    }

    /// Number of snapshots stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no snapshot is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes stored: the entries and the frame nodes (shared nodes once).
    pub fn bytes(&self) -> usize {
        self.entry_bytes + self.frames.bytes()
    }

    /// The limits in force (`max_snapshots` at least 1).
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Counts of what the store did.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// For tests: corrupts a stored snapshot's frames in place (flips one
    /// bit of its first chunk), or its stack digest when it has no frames.
    /// Returns whether a snapshot was stored under `hash`.
    #[doc(hidden)]
    pub fn corrupt_for_testing(&mut self, hash: &SnapshotHash) -> bool {
        let Some(entry) = self.entries.get_mut(hash) else {
            return false;
        };
        match entry.frames {
            Some(node) => self.frames.corrupt(node),
            None => entry.stack_digest[0] ^= 1,
        }
        true
    }

    /// Drops every snapshot of `context` taken below `sp`: their frames
    /// have returned.
    fn drop_dead_below(&mut self, context: u64, sp: u64) {
        while let Some(heap) = self.by_sp.get_mut(&context) {
            match heap.peek() {
                Some(&Reverse((entry_sp, seq, hash))) if entry_sp < sp => {
                    heap.pop();
                    self.by_sp_len -= 1;
                    if self.entries.get(&hash).is_some_and(|e| e.seq == seq) {
                        self.remove(&hash);
                        self.stats.dropped_dead += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// The heaps of stack pointers again, from the entries alone.
    fn rebuild_by_sp(&mut self) {
        self.by_sp.clear();
        for (h, e) in &self.entries {
            self.by_sp
                .entry(e.context)
                .or_default()
                .push(Reverse((e.stack_pointer, e.seq, *h)));
        }
        self.by_sp_len = self.entries.len();
    }

    fn displace(&mut self, hash: SnapshotHash) {
        if let Some(entry) = self.entries.get_mut(&hash) {
            if !entry.displaced {
                entry.displaced = true;
                self.displaced.push_back((hash, entry.seq));
            }
        }
        // The queue may hold entries since dropped or put back: only real
        // displaced ones count, and those beyond the cap go, oldest first.
        while self.displaced.len() > self.limits.max_displaced {
            let Some((hash, seq)) = self.displaced.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&hash)
                .is_some_and(|e| e.seq == seq && e.displaced)
            {
                self.remove(&hash);
                self.stats.dropped_displaced += 1;
            }
        }
    }

    /// Drops displaced snapshots until one more of `size` bytes fits. The
    /// jmp_buf at `env` is about to be given the new snapshot, so the one it
    /// still holds does not count as current.
    fn make_room(
        &mut self,
        size: usize,
        env: u64,
        is_current: &mut impl FnMut(u64, &SnapshotHash) -> bool,
    ) -> Result<(), ShimError> {
        let mut kept = Vec::new();
        let fits = |s: &SnapshotStore| {
            s.entries.len() < s.limits.max_snapshots && s.bytes() + size <= s.limits.max_bytes
        };
        while !fits(self) {
            let Some((hash, seq)) = self.displaced.pop_front() else {
                break;
            };
            let Some(entry) = self.entries.get(&hash) else {
                continue;
            };
            if entry.seq != seq || !entry.displaced {
                continue;
            }
            if entry.env != env && is_current(entry.env, &hash) {
                // The program put it back in its jmp_buf: live again.
                kept.push(hash);
                continue;
            }
            self.remove(&hash);
            self.stats.dropped_displaced += 1;
        }
        for hash in kept {
            if let Some(e) = self.entries.get_mut(&hash) {
                e.displaced = false;
                self.by_env.insert(e.env, hash);
            }
        }
        if fits(self) {
            return Ok(());
        }
        Err(if self.entries.len() >= self.limits.max_snapshots {
            ShimError::SnapshotLimit {
                kind: SnapshotLimitKind::Count,
                limit: self.limits.max_snapshots as u64,
                live: self.entries.len() as u64,
            }
        } else {
            ShimError::SnapshotLimit {
                kind: SnapshotLimitKind::Bytes,
                limit: self.limits.max_bytes as u64,
                live: self.bytes() as u64,
            }
        })
    }

    fn remove(&mut self, hash: &SnapshotHash) {
        let Some(entry) = self.entries.remove(hash) else {
            return;
        };
        if self.by_env.get(&entry.env) == Some(hash) {
            self.by_env.remove(&entry.env);
        }
        self.frames.release(entry.frames);
        self.entry_bytes -= entry_bytes(entry.globals.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_snapshots: usize, max_bytes: usize) -> SnapshotStore {
        SnapshotStore::new(
            HashKey::fixed([9; 32]),
            StoreLimits {
                max_snapshots,
                max_bytes,
                ..StoreLimits::default()
            },
        )
    }

    const NAMES: &[String] = &[];

    /// A snapshot `levels` frames of 100 bytes deep, at the stack pointer a
    /// frame of 64 bytes per level gives, varied by `n`.
    /// `n` goes in the innermost frame, where what differs between
    /// nested checkpoints is.
    fn nested(levels: usize, n: u8) -> Snapshot {
        let frames = std::iter::once(n)
            .chain(
                (0..levels)
                    .rev()
                    .flat_map(|l| (0..100u8).map(move |i| i.wrapping_add(l as u8))),
            )
            .collect();
        Snapshot {
            frames,
            stack_digest: [n; 8],
            stack_pointer: (1 << 20) - 64 * levels as u64,
            context: 0,
            globals: vec![GlobalValue::I32(n as i32)],
        }
    }

    fn never(_: u64, _: &SnapshotHash) -> bool {
        false
    }

    /// The invariants every operation must keep.
    fn check(s: &SnapshotStore) {
        assert!(s.by_sp_len <= 2 * s.entries.len() + 64);
        assert_eq!(
            s.by_sp_len,
            s.by_sp.values().map(|h| h.len()).sum::<usize>()
        );
        assert!(s.len() <= s.limits.max_snapshots);
        assert!(s.bytes() <= s.limits.max_bytes);
        for (h, e) in &s.entries {
            assert!(s.by_sp[&e.context]
                .iter()
                .any(|Reverse(k)| *k == (e.stack_pointer, e.seq, *h)));
        }
    }

    #[test]
    fn default_limits() {
        let l = StoreLimits::default();
        assert_eq!(l.max_snapshots, 65_536);
        assert_eq!(l.max_bytes, 64 * 1024 * 1024);
        assert_eq!(l.max_displaced, 1024);
    }

    #[test]
    fn insert_then_get_returns_the_snapshot() {
        let mut s = store(8, 1 << 20);
        let snap = nested(3, 1);
        let h = s.insert(&snap, NAMES, 100, never).unwrap();
        assert_eq!(h, snap.hash(s.key(), NAMES));
        let r = s.get(&h, NAMES).unwrap();
        assert_eq!(r.frames, snap.frames);
        assert_eq!(r.stack_pointer, snap.stack_pointer);
        assert_eq!(r.globals, snap.globals);
        assert_eq!(s.len(), 1);
        check(&s);
    }

    #[test]
    fn identical_snapshots_are_stored_once() {
        let mut s = store(8, 1 << 20);
        let a = s.insert(&nested(3, 1), NAMES, 100, never).unwrap();
        let bytes = s.bytes();
        let b = s.insert(&nested(3, 1), NAMES, 200, never).unwrap();
        assert_eq!(a, b);
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), bytes);
        check(&s);
    }

    #[test]
    fn nested_checkpoints_cost_memory_in_proportion_to_depth() {
        let per_level = |k: usize| {
            let mut s = store(1 << 20, 1 << 30);
            for level in 1..=k {
                s.insert(&nested(level, 7), NAMES, level as u64 * 100, never)
                    .unwrap();
            }
            assert_eq!(s.len(), k, "all live: each is deeper than the last");
            check(&s);
            s.bytes() as f64 / k as f64
        };
        let (at10, at1000) = (per_level(10), per_level(1000));
        assert!(
            at1000 <= 1.5 * at10,
            "bytes per level: {at10} at 10 levels, {at1000} at 1000"
        );
        // Without sharing, 1000 levels would hold 1000 * 1001 / 2 frames.
        assert!(at1000 < 1000.0, "{at1000} bytes per level");
    }

    #[test]
    fn snapshots_below_the_stack_pointer_are_dropped_as_dead() {
        let mut s = store(100, 1 << 20);
        let deep = s.insert(&nested(10, 1), NAMES, 100, never).unwrap();
        let deeper = s.insert(&nested(11, 2), NAMES, 200, never).unwrap();
        // Back out to 5 levels: both frames returned.
        let shallow = s.insert(&nested(5, 3), NAMES, 300, never).unwrap();
        assert!(!s.contains(&deep) && !s.contains(&deeper));
        assert!(s.contains(&shallow));
        assert_eq!(s.stats().dropped_dead, 2);
        assert_eq!(
            s.get(&deep, NAMES),
            Err(ShimError::UnknownSnapshot { hash: deep })
        );
        check(&s);
    }

    /// `nested(levels, n)` taken in `context`, whose stack lies `offset`
    /// bytes below the main one's.
    fn in_context(levels: usize, n: u8, context: u64, offset: u64) -> Snapshot {
        let mut snap = nested(levels, n);
        snap.context = context;
        snap.stack_pointer -= offset;
        snap
    }

    #[test]
    fn liveness_compares_stack_pointers_only_within_a_context() {
        let mut s = store(100, 1 << 20);
        // Context 1's stack lies far below main's (a malloc'd stack): its
        // snapshots' stack pointers are all below main's, and still live.
        let main_deep = s.insert(&nested(10, 1), NAMES, 100, never).unwrap();
        let ctx_deep = s
            .insert(&in_context(10, 2, 1, 1 << 19), NAMES, 200, never)
            .unwrap();
        let main_shallow = s.insert(&nested(5, 3), NAMES, 300, never).unwrap();
        assert!(s.contains(&ctx_deep), "another context's snapshot is live");
        assert!(!s.contains(&main_deep), "main's deeper one returned");
        assert_eq!(s.context_of(&ctx_deep), Some(1));
        assert_eq!(s.context_of(&main_shallow), Some(0));
        // Back out in context 1: its deep one is dead, main's stays.
        let ctx_shallow = s
            .insert(&in_context(5, 4, 1, 1 << 19), NAMES, 400, never)
            .unwrap();
        assert!(!s.contains(&ctx_deep) && s.contains(&main_shallow));
        check(&s);
        // Destroying context 1 drops its snapshots only.
        s.drop_context(1);
        assert!(!s.contains(&ctx_shallow) && s.contains(&main_shallow));
        assert_eq!(s.stats().dropped_dead, 3);
        check(&s);
    }

    #[test]
    fn the_same_frames_in_two_contexts_are_two_snapshots() {
        let mut s = store(100, 1 << 20);
        let a = s
            .insert(&in_context(3, 1, 1, 0), NAMES, 100, never)
            .unwrap();
        let b = s
            .insert(&in_context(3, 1, 2, 0), NAMES, 200, never)
            .unwrap();
        assert_ne!(a, b);
        assert_eq!((s.context_of(&a), s.context_of(&b)), (Some(1), Some(2)));
        check(&s);
    }

    #[test]
    fn live_snapshots_are_never_dropped_and_the_limit_is_an_error() {
        let mut s = store(3, 1 << 20);
        let live: Vec<_> = (1..=3)
            .map(|l| {
                s.insert(&nested(l, l as u8), NAMES, l as u64, never)
                    .unwrap()
            })
            .collect();
        let err = s.insert(&nested(4, 4), NAMES, 4, never).unwrap_err();
        assert_eq!(
            err,
            ShimError::SnapshotLimit {
                kind: SnapshotLimitKind::Count,
                limit: 3,
                live: 3
            }
        );
        for h in &live {
            assert!(s.get(h, NAMES).is_ok());
        }
        check(&s);
    }

    #[test]
    fn the_byte_limit_is_an_error_too() {
        let mut s = store(100, 4096);
        let mut err = None;
        for l in 1..100 {
            if let Err(e) = s.insert(&nested(l, l as u8), NAMES, l as u64, never) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(
            err,
            Some(ShimError::SnapshotLimit {
                kind: SnapshotLimitKind::Bytes,
                limit: 4096,
                ..
            })
        ));
        check(&s);
    }

    #[test]
    fn displaced_snapshots_make_room_oldest_first() {
        let mut s = store(4, 1 << 20);
        // One frame, one jmp_buf re-armed: each setjmp displaces the last.
        let mut hashes = Vec::new();
        for n in 0..10u8 {
            hashes.push(s.insert(&nested(2, n), NAMES, 64, never).unwrap());
            check(&s);
        }
        assert_eq!(s.len(), 4);
        assert!(hashes[6..].iter().all(|h| s.contains(h)));
        assert_eq!(s.stats().dropped_displaced, 6);
    }

    #[test]
    fn displaced_snapshots_beyond_their_cap_go_even_with_room() {
        let mut s = SnapshotStore::new(
            HashKey::fixed([9; 32]),
            StoreLimits {
                max_displaced: 3,
                ..StoreLimits::default()
            },
        );
        for n in 0..10u8 {
            s.insert(&nested(2, n), NAMES, 64, never).unwrap();
        }
        // The current one and three displaced.
        assert_eq!(s.len(), 4);
        assert_eq!(s.stats().dropped_displaced, 6);
        check(&s);
    }

    #[test]
    fn a_displaced_snapshot_put_back_in_its_jmp_buf_is_live_again() {
        let mut s = store(2, 1 << 20);
        let saved = s.insert(&nested(2, 1), NAMES, 64, never).unwrap();
        // The program copies the jmp_buf away, re-arms it, then copies the
        // old one back: the first snapshot is current again.
        let inner = s.insert(&nested(2, 2), NAMES, 64, never).unwrap();
        let current = |env: u64, h: &SnapshotHash| env == 64 && *h == saved;
        let err = s.insert(&nested(2, 3), NAMES, 128, current).unwrap_err();
        assert!(matches!(err, ShimError::SnapshotLimit { .. }), "{err:?}");
        assert!(s.contains(&saved) && s.contains(&inner));
        check(&s);
    }

    #[test]
    fn a_ring_of_jmp_bufs_re_armed_stays_bounded() {
        let mut s = store(256, 1 << 20);
        let mut current: HashMap<u64, SnapshotHash> = HashMap::new();
        for round in 0..20_000u32 {
            let env = 1000 + (round % 64) as u64 * 24;
            let snap = Snapshot {
                frames: round.to_le_bytes().repeat(30),
                stack_digest: [0; 8],
                stack_pointer: 4096,
                context: 0,
                globals: vec![],
            };
            let h = s
                .insert(&snap, NAMES, env, |e, h| current.get(&e) == Some(h))
                .unwrap();
            current.insert(env, h);
            assert!(s.len() <= 256);
        }
        // The 64 current ones are all there.
        for h in current.values() {
            assert!(s.get(h, NAMES).is_ok());
        }
        check(&s);
    }

    #[test]
    fn corrupted_snapshot_is_detected() {
        let mut s = store(8, 1 << 20);
        let h = s.insert(&nested(3, 1), NAMES, 8, never).unwrap();
        assert!(s.corrupt_for_testing(&h));
        assert_eq!(
            s.get(&h, NAMES),
            Err(ShimError::CorruptedSnapshot { hash: h })
        );
        assert!(!s.corrupt_for_testing(&[0; 16]));
        let empty = Snapshot {
            frames: vec![],
            stack_digest: [0; 8],
            stack_pointer: 8,
            context: 0,
            globals: vec![],
        };
        let h = s.insert(&empty, NAMES, 16, never).unwrap();
        assert!(s.corrupt_for_testing(&h));
        assert_eq!(
            s.get(&h, NAMES),
            Err(ShimError::CorruptedSnapshot { hash: h })
        );
    }

    #[test]
    fn forged_hash_is_unknown() {
        let mut s = store(8, 1 << 20);
        for n in 0..8 {
            s.insert(&nested(1, n), NAMES, 8 * n as u64, never).unwrap();
        }
        for _ in 0..100 {
            let mut forged = [0u8; 16];
            getrandom::fill(&mut forged).unwrap();
            assert_eq!(
                s.get(&forged, NAMES),
                Err(ShimError::UnknownSnapshot { hash: forged })
            );
        }
        let other_key = nested(1, 3).hash(&HashKey::fixed([8; 32]), NAMES);
        assert!(s.get(&other_key, NAMES).is_err());
        check(&s);
    }

    #[test]
    fn zero_snapshot_limit_still_keeps_one() {
        let mut s = store(0, 1 << 20);
        assert_eq!(s.limits().max_snapshots, 1);
        s.insert(&nested(1, 1), NAMES, 8, never).unwrap();
        // Re-arming the same jmp_buf displaces the first: room is made.
        let b = s.insert(&nested(1, 2), NAMES, 8, never).unwrap();
        assert!(s.contains(&b));
        assert_eq!(s.len(), 1);
        check(&s);
    }
}
