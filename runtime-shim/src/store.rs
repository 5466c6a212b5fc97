//! The bounded store of snapshots, keyed by their keyed hash.
//!
//! A guest decides how often it calls `setjmp`, so the store must never grow
//! with it: both the number of snapshots and their bytes are capped, and the
//! least recently used snapshot is evicted to make room. Evicting is safe in
//! the sense that matters: a `longjmp` to an evicted snapshot is a clean
//! [`ShimError::UnknownSnapshot`], never undefined behaviour. The jmp_bufs a
//! program still uses are the recently used ones, so LRU keeps them.
//!
//! Lookups are by a hash the guest supplies, so every `get` re-verifies the
//! snapshot against it; a guest can only name a snapshot it was given.

use std::collections::{BTreeMap, HashMap};

use crate::error::ShimError;
use crate::hash::{HashKey, SnapshotHash};
use crate::snapshot::Snapshot;

/// Caps on what one store holds; both apply at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most snapshots kept at once. A value of 0 is treated as 1: a
    /// checkpoint must at least be able to keep its own snapshot.
    pub max_snapshots: usize,
    /// Most bytes kept at once, as counted by [`Snapshot::byte_size`]; also
    /// the largest single snapshot accepted.
    pub max_bytes: usize,
}

impl Default for StoreLimits {
    /// 1024 snapshots and 64 MiB.
    ///
    /// Why: a C program has few live `jmp_buf`s at a time (error handlers,
    /// a handful of coroutines), and each live one is recently used, so 1024
    /// leaves room for stale ones before eviction touches a live one. A
    /// snapshot is dominated by the live C stack, at most the stack size;
    /// wasm-ld's default stack is 64 KiB, so 64 MiB holds all 1024 even if
    /// every one captures a full default stack, while keeping a misbehaving
    /// guest's cost to the host at a fixed, modest amount per instance.
    fn default() -> StoreLimits {
        StoreLimits {
            max_snapshots: 1024,
            max_bytes: 64 << 20,
        }
    }
}

/// One stored snapshot and its bookkeeping.
#[derive(Debug)]
struct Entry {
    snapshot: Snapshot,
    /// `snapshot.byte_size()` when stored, so eviction need not recompute it.
    bytes: usize,
    /// Key of this entry in [`SnapshotStore::lru`].
    last_use: u64,
}

/// Snapshots by keyed hash, bounded in count and bytes, least recently used
/// evicted first. All operations are O(log n) plus the cost of hashing the
/// snapshot involved.
#[derive(Debug)]
pub struct SnapshotStore {
    key: HashKey,
    limits: StoreLimits,
    entries: HashMap<SnapshotHash, Entry>,
    /// Use counter -> hash, oldest first: the eviction order. Counters are
    /// unique, so this is a total order; a u64 cannot wrap in practice.
    lru: BTreeMap<u64, SnapshotHash>,
    /// The last use counter handed out.
    clock: u64,
    /// Sum of the entries' `bytes`.
    bytes: usize,
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
            key,
            limits,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
            bytes: 0,
        }
    }

    /// The key snapshots are hashed with.
    pub fn key(&self) -> &HashKey {
        &self.key
    }

    /// Stores `snapshot` under its keyed hash and returns the hash. Identical snapshots are stored once (inserting again only marks it recently used). Evicts least-recently-used snapshots until within both limits. A snapshot larger than max_bytes alone is an error (ShimError::SnapshotTooLarge), never stored.
    ///
    /// The snapshot's vectors are shrunk to fit first, so the bytes counted
    /// are the bytes held.
    pub fn insert(&mut self, mut snapshot: Snapshot) -> Result<SnapshotHash, ShimError> {
        snapshot.shrink_to_fit();
        let size = snapshot.byte_size();
        if size > self.limits.max_bytes {
            return Err(ShimError::SnapshotTooLarge {
                bytes: size,
                max_bytes: self.limits.max_bytes,
            });
        }
        let hash = snapshot.hash(&self.key);
        if let Some(entry) = self.entries.get_mut(&hash) {
            // Already stored. Keeping the fresh copy rather than the old one
            // costs nothing and repairs an entry whose data went bad.
            self.bytes = self.bytes - entry.bytes + size;
            entry.snapshot = snapshot;
            entry.bytes = size;
            self.touch(&hash);
            // Only a repaired entry can change size; it is now the most
            // recently used, so this evicts others, never it.
            self.evict_until_fits(0, 0);
            return Ok(hash);
        }
        self.evict_until_fits(1, size);
        self.clock += 1;
        self.lru.insert(self.clock, hash);
        self.entries.insert(
            hash,
            Entry {
                snapshot,
                bytes: size,
                last_use: self.clock,
            },
        );
        self.bytes += size;
        Ok(hash)
    }

    /// The snapshot stored under `hash`, re-verified against the hash (ShimError::UnknownSnapshot if absent or evicted, ShimError::CorruptedSnapshot if its data no longer hashes to it). Marks it recently used.
    pub fn get(&mut self, hash: &SnapshotHash) -> Result<&Snapshot, ShimError> {
        let entry = self
            .entries
            .get_mut(hash)
            .ok_or(ShimError::UnknownSnapshot { hash: *hash })?;
        if entry.snapshot.hash(&self.key) != *hash {
            return Err(ShimError::CorruptedSnapshot { hash: *hash });
        }
        self.lru.remove(&entry.last_use);
        self.clock += 1;
        self.lru.insert(self.clock, *hash);
        entry.last_use = self.clock;
        Ok(&entry.snapshot)
    }

    /// Whether a snapshot is stored under `hash`, without verifying it or
    /// marking it used (for tests and diagnostics).
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

    /// Bytes stored, as counted by [`Snapshot::byte_size`]; at most
    /// `limits().max_bytes`.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The limits in force (`max_snapshots` at least 1).
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// For tests: corrupts a stored snapshot's data in place (flips one bit,
    /// keeping its size), so the verification path of [`SnapshotStore::get`]
    /// can be tested from this crate and from the engine binding's tests.
    /// Returns whether a snapshot was stored under `hash`.
    #[doc(hidden)]
    pub fn corrupt_for_testing(&mut self, hash: &SnapshotHash) -> bool {
        let Some(entry) = self.entries.get_mut(hash) else {
            return false;
        };
        let s = &mut entry.snapshot;
        if let Some(b) = s.stack.first_mut() {
            *b ^= 1;
        } else if let Some(b) = s.asyncify.first_mut() {
            *b ^= 1;
        } else {
            s.stack_pointer ^= 1;
        }
        true
    }

    /// Moves `hash` (which must be stored) to the most recently used end.
    fn touch(&mut self, hash: &SnapshotHash) {
        let entry = self.entries.get_mut(hash).expect("touch of a stored hash");
        self.lru.remove(&entry.last_use);
        self.clock += 1;
        self.lru.insert(self.clock, *hash);
        entry.last_use = self.clock;
    }

    /// Evicts least recently used snapshots until `extra_count` more
    /// snapshots of `extra_bytes` in all fit within both limits (the caller
    /// has checked `extra_bytes <= max_bytes`, so emptying the store always
    /// suffices).
    fn evict_until_fits(&mut self, extra_count: usize, extra_bytes: usize) {
        while self.entries.len() + extra_count > self.limits.max_snapshots
            || self.bytes + extra_bytes > self.limits.max_bytes
        {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            let entry = self
                .entries
                .remove(&oldest)
                .expect("every LRU slot names a stored snapshot");
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tests::sample;
    use crate::snapshot::GlobalValue;
    use std::time::{Duration, Instant};

    fn store(max_snapshots: usize, max_bytes: usize) -> SnapshotStore {
        SnapshotStore::new(
            HashKey::fixed([9; 32]),
            StoreLimits {
                max_snapshots,
                max_bytes,
            },
        )
    }

    /// The invariants every operation must keep.
    fn check(s: &SnapshotStore) {
        assert_eq!(s.lru.len(), s.entries.len());
        assert_eq!(
            s.bytes,
            s.entries
                .values()
                .map(|e| e.snapshot.byte_size())
                .sum::<usize>()
        );
        assert!(s.len() <= s.limits.max_snapshots);
        assert!(s.bytes <= s.limits.max_bytes);
        for (t, h) in &s.lru {
            assert_eq!(s.entries[h].last_use, *t);
        }
    }

    #[test]
    fn default_limits() {
        let l = StoreLimits::default();
        assert_eq!(l.max_snapshots, 1024);
        assert_eq!(l.max_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn insert_then_get_returns_the_snapshot() {
        let mut s = store(8, 1 << 20);
        assert!(s.is_empty());
        let h = s.insert(sample(1)).unwrap();
        assert_eq!(h, sample(1).hash(s.key()));
        assert_eq!(s.get(&h).unwrap(), &sample(1));
        assert_eq!(s.len(), 1);
        assert!(!s.is_empty());
        assert_eq!(s.bytes(), sample(1).byte_size());
        check(&s);
    }

    #[test]
    fn identical_snapshots_are_stored_once() {
        let mut s = store(8, 1 << 20);
        let a = s.insert(sample(1)).unwrap();
        let b = s.insert(sample(1)).unwrap();
        assert_eq!(a, b);
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), sample(1).byte_size());
        check(&s);
    }

    #[test]
    fn count_limit_evicts_least_recently_used() {
        let mut s = store(3, 1 << 20);
        let a = s.insert(sample(1)).unwrap();
        let b = s.insert(sample(2)).unwrap();
        let c = s.insert(sample(3)).unwrap();
        // Use order now a, b, c; getting a makes b the oldest.
        s.get(&a).unwrap();
        let d = s.insert(sample(4)).unwrap();
        assert!(!s.contains(&b), "b was least recently used");
        assert!(s.contains(&a) && s.contains(&c) && s.contains(&d));
        assert_eq!(s.get(&b), Err(ShimError::UnknownSnapshot { hash: b }));
        // Re-inserting c counts as a use: order a, d, c; so a goes next.
        s.insert(sample(3)).unwrap();
        let e = s.insert(sample(5)).unwrap();
        assert!(!s.contains(&a));
        assert!(s.contains(&c) && s.contains(&d) && s.contains(&e));
        // Then d, then c.
        s.insert(sample(6)).unwrap();
        assert!(!s.contains(&d));
        s.insert(sample(7)).unwrap();
        assert!(!s.contains(&c));
        assert_eq!(s.len(), 3);
        check(&s);
    }

    #[test]
    fn byte_limit_evicts_least_recently_used() {
        let size = sample(0).byte_size();
        let mut s = store(100, size * 5 / 2);
        let a = s.insert(sample(1)).unwrap();
        let b = s.insert(sample(2)).unwrap();
        assert_eq!(s.bytes(), 2 * size);
        s.get(&a).unwrap();
        let c = s.insert(sample(3)).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.contains(&a) && !s.contains(&b) && s.contains(&c));
        assert!(s.bytes() <= s.limits().max_bytes);

        // A big snapshot may push out several small ones.
        let mut big = sample(4);
        big.stack.resize(big.stack.len() + size, 0);
        let h = s.insert(big).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.contains(&h));
        check(&s);
    }

    #[test]
    fn too_large_snapshot_is_refused_and_store_unchanged() {
        let mut s = store(8, 4096);
        let a = s.insert(sample(1)).unwrap();
        let mut big = sample(2);
        big.stack = vec![1; 4096];
        let bytes = big.byte_size();
        assert_eq!(
            s.insert(big),
            Err(ShimError::SnapshotTooLarge {
                bytes,
                max_bytes: 4096
            })
        );
        assert_eq!(s.len(), 1);
        assert!(s.contains(&a));
        check(&s);

        // Exactly max_bytes is accepted.
        let mut exact = sample(3);
        exact
            .stack
            .resize(exact.stack.len() + 4096 - exact.byte_size(), 0);
        assert_eq!(exact.byte_size(), 4096);
        let h = s.insert(exact).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.contains(&h));
        check(&s);
    }

    #[test]
    fn bytes_count_held_data_not_spare_capacity() {
        let mut s = store(8, 1 << 20);
        let mut snap = sample(1);
        snap.stack.reserve(1 << 16);
        s.insert(snap).unwrap();
        let h = sample(1).hash(s.key());
        assert!(s.entries[&h].snapshot.stack.capacity() < 1 << 16);
        check(&s);
    }

    #[test]
    fn unknown_hash_is_an_error() {
        let mut s = store(8, 1 << 20);
        let h = sample(1).hash(s.key());
        assert_eq!(s.get(&h), Err(ShimError::UnknownSnapshot { hash: h }));
        s.insert(sample(2)).unwrap();
        assert_eq!(s.get(&h), Err(ShimError::UnknownSnapshot { hash: h }));
        assert_eq!(s.get(&h).unwrap_err().errno(), crate::abi::Errno::Inval);
    }

    #[test]
    fn forged_hash_is_unknown() {
        let mut s = store(8, 1 << 20);
        for n in 0..8 {
            s.insert(sample(n)).unwrap();
        }
        for _ in 0..100 {
            let mut forged = [0u8; 16];
            getrandom::fill(&mut forged).unwrap();
            assert_eq!(
                s.get(&forged),
                Err(ShimError::UnknownSnapshot { hash: forged })
            );
        }
        // The right data hashed under another key is a forgery too.
        let other_key = sample(3).hash(&HashKey::fixed([8; 32]));
        assert!(s.get(&other_key).is_err());
        assert_eq!(s.len(), 8);
        check(&s);
    }

    #[test]
    fn corrupted_snapshot_is_detected_and_reinsert_repairs_it() {
        let mut s = store(8, 1 << 20);
        let h = s.insert(sample(1)).unwrap();
        assert!(s.corrupt_for_testing(&h));
        assert_eq!(s.get(&h), Err(ShimError::CorruptedSnapshot { hash: h }));
        assert_eq!(s.get(&h), Err(ShimError::CorruptedSnapshot { hash: h }));
        check(&s);
        assert_eq!(s.insert(sample(1)).unwrap(), h);
        assert_eq!(s.get(&h).unwrap(), &sample(1));
        assert_eq!(s.len(), 1);
        check(&s);
        assert!(!s.corrupt_for_testing(&[0; 16]));

        // Empty vectors: the stack pointer is what gets corrupted.
        let empty = crate::Snapshot {
            asyncify: vec![],
            stack: vec![],
            stack_pointer: 8,
            globals: vec![],
        };
        let h = s.insert(empty).unwrap();
        assert!(s.corrupt_for_testing(&h));
        assert_eq!(s.get(&h), Err(ShimError::CorruptedSnapshot { hash: h }));
    }

    #[test]
    fn zero_snapshot_limit_still_keeps_one() {
        let mut s = store(0, 1 << 20);
        assert_eq!(s.limits().max_snapshots, 1);
        let a = s.insert(sample(1)).unwrap();
        assert!(s.get(&a).is_ok());
        let b = s.insert(sample(2)).unwrap();
        assert!(!s.contains(&a) && s.contains(&b));
        check(&s);
    }

    /// A program calling setjmp in a loop: the store stays bounded however
    /// many distinct snapshots it makes, and each insert is cheap.
    #[test]
    fn hundred_thousand_distinct_inserts_stay_within_limits() {
        for limits in [
            StoreLimits::default(),
            StoreLimits {
                max_snapshots: 100,
                max_bytes: 1 << 20,
            },
            StoreLimits {
                max_snapshots: 1 << 20,
                max_bytes: 50 * sample(0).byte_size(),
            },
        ] {
            let make = |n: u32| {
                let mut snap = sample(n);
                snap.globals.push(("i".into(), GlobalValue::I32(n as i32)));
                snap
            };
            let size = make(0).byte_size();
            let start = Instant::now();
            let mut s = SnapshotStore::new(HashKey::random(), limits);
            let mut last = [0; 16];
            for n in 0..100_000u32 {
                last = s.insert(make(n)).unwrap();
                assert!(s.len() <= limits.max_snapshots);
                assert!(s.bytes() <= limits.max_bytes);
            }
            check(&s);
            assert!(s.get(&last).is_ok(), "the newest snapshot is kept");
            // Full, but no fuller: eviction stops as soon as the new one fits.
            assert_eq!(s.len(), limits.max_snapshots.min(limits.max_bytes / size));
            // Generous: well under a second in practice even unoptimized;
            // a quadratic store would take minutes.
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{:?} for 100k inserts",
                start.elapsed()
            );
        }
    }

    #[test]
    fn hundred_thousand_identical_inserts_store_one() {
        let mut s = store(1024, 64 << 20);
        let mut hashes = std::collections::HashSet::new();
        for _ in 0..100_000 {
            hashes.insert(s.insert(sample(7)).unwrap());
        }
        assert_eq!(hashes.len(), 1);
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), sample(7).byte_size());
        check(&s);
    }
}
