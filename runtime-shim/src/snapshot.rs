//! A checkpoint's state as plain data, independent of any engine.
//!
//! The engine binding fills a [`Snapshot`] at `stack_checkpoint` and reads it
//! back at `stack_restore`; keeping it plain data (like wizer's snapshot)
//! lets the store, the hash and their tests work without an engine.

use core::mem::size_of;

use crate::hash::{HashKey, KeyedHasher, SnapshotHash};

/// Value of a WebAssembly global, floats kept as their bit patterns so that
/// equality, hashing and NaN payloads are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlobalValue {
    /// An `i32` global.
    I32(i32),
    /// An `i64` global.
    I64(i64),
    /// An `f32` global, as `f32::to_bits`.
    F32(u32),
    /// An `f64` global, as `f64::to_bits`.
    F64(u64),
}

impl GlobalValue {
    /// Type tag and little-endian value: the canonical bytes hashed for a
    /// global. The tag keeps `I32(0)` and `F32(0)` apart.
    fn encode(self) -> ([u8; 9], usize) {
        let mut b = [0u8; 9];
        let len = match self {
            GlobalValue::I32(v) => {
                b[0] = 0x7f; // the value types' binary encodings
                b[1..5].copy_from_slice(&v.to_le_bytes());
                5
            }
            GlobalValue::I64(v) => {
                b[0] = 0x7e;
                b[1..9].copy_from_slice(&v.to_le_bytes());
                9
            }
            GlobalValue::F32(v) => {
                b[0] = 0x7d;
                b[1..5].copy_from_slice(&v.to_le_bytes());
                5
            }
            GlobalValue::F64(v) => {
                b[0] = 0x7c;
                b[1..9].copy_from_slice(&v.to_le_bytes());
                9
            }
        };
        (b, len)
    }
}

/// Everything `stack_restore` needs to resume a `stack_checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The unwound asyncify frames: bytes [buffer start, pos) after the unwind.
    pub asyncify: Vec<u8>,
    /// The live C stack: bytes [stack_pointer, stack top) at the checkpoint (hashed, never written back: longjmp keeps later memory writes).
    pub stack: Vec<u8>,
    /// `__stack_pointer` at the checkpoint.
    pub stack_pointer: u64,
    /// Exported mutable globals other than the asyncify ones, by export name, in a stable order.
    pub globals: Vec<(String, GlobalValue)>,
}

/// Domain separation: these bytes start every snapshot's hashed message, so a
/// snapshot hash can never equal a [`crate::hash::keyed_hash`] of other data
/// under the same key, and a future encoding can change the tag.
const SNAPSHOT_DOMAIN: &[u8] = b"wasm-rewind snapshot v1";

impl Snapshot {
    /// The snapshot's name: the keyed hash of one canonical encoding of every
    /// field, each a length-prefixed part (so no field's bytes can be
    /// mistaken for another's): domain tag, asyncify, stack, stack pointer
    /// (u64 LE), number of globals (u64 LE), then each global's name and
    /// typed value. Globals are hashed in their order in `globals`, which the
    /// capture keeps stable.
    pub fn hash(&self, key: &HashKey) -> SnapshotHash {
        let mut h = KeyedHasher::new(key);
        h.part(SNAPSHOT_DOMAIN)
            .part(&self.asyncify)
            .part(&self.stack)
            .part(&self.stack_pointer.to_le_bytes())
            .part(&(self.globals.len() as u64).to_le_bytes());
        for (name, value) in &self.globals {
            let (bytes, len) = value.encode();
            h.part(name.as_bytes()).part(&bytes[..len]);
        }
        h.finish()
    }

    /// What the snapshot costs in the store: the struct itself, the bytes of
    /// both vectors, one `(String, GlobalValue)` slot per global and its
    /// name's bytes. Counts lengths, not capacities; the store shrinks the
    /// vectors to fit on insert so the two agree. The fixed part means even an
    /// empty snapshot is not free, so the byte limit alone bounds the count.
    pub fn byte_size(&self) -> usize {
        let names: usize = self.globals.iter().map(|(n, _)| n.len()).sum();
        size_of::<Snapshot>()
            + self.asyncify.len()
            + self.stack.len()
            + self.globals.len() * size_of::<(String, GlobalValue)>()
            + names
    }

    /// Drops spare capacity so that [`Snapshot::byte_size`] is what the
    /// snapshot really holds on to.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.asyncify.shrink_to_fit();
        self.stack.shrink_to_fit();
        for (name, _) in &mut self.globals {
            name.shrink_to_fit();
        }
        self.globals.shrink_to_fit();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small snapshot with every field non-trivial; `n` varies the data.
    pub(crate) fn sample(n: u32) -> Snapshot {
        Snapshot {
            asyncify: n.to_le_bytes().repeat(4),
            stack: vec![0x5a; 32],
            stack_pointer: 65_536 - 32,
            globals: vec![
                ("counter".to_string(), GlobalValue::I32(n as i32)),
                ("big".to_string(), GlobalValue::I64(-1)),
                ("ratio".to_string(), GlobalValue::F32(1.5f32.to_bits())),
                (
                    "pi".to_string(),
                    GlobalValue::F64(core::f64::consts::PI.to_bits()),
                ),
            ],
        }
    }

    fn key() -> HashKey {
        HashKey::fixed([3; 32])
    }

    #[test]
    fn hash_is_deterministic_for_a_key() {
        assert_eq!(sample(1).hash(&key()), sample(1).hash(&key()));
        assert_ne!(
            sample(1).hash(&key()),
            sample(1).hash(&HashKey::fixed([4; 32]))
        );
    }

    #[test]
    fn hash_covers_every_field() {
        let base = sample(1);
        let h = base.hash(&key());
        let mut variants: Vec<(&str, Snapshot)> = Vec::new();

        let mut s = base.clone();
        s.asyncify[0] ^= 1;
        variants.push(("asyncify byte", s));
        let mut s = base.clone();
        s.asyncify.push(0);
        variants.push(("asyncify length", s));
        let mut s = base.clone();
        s.stack[31] ^= 0x80;
        variants.push(("stack byte", s));
        let mut s = base.clone();
        s.stack.pop();
        variants.push(("stack length", s));
        let mut s = base.clone();
        s.stack_pointer += 1;
        variants.push(("stack pointer", s));
        let mut s = base.clone();
        s.globals[0].0 = "counteR".to_string();
        variants.push(("global name", s));
        let mut s = base.clone();
        s.globals[0].1 = GlobalValue::I32(2);
        variants.push(("global value", s));
        let mut s = base.clone();
        s.globals[1].1 = GlobalValue::F64(u64::MAX);
        variants.push(("global type (same bits)", s));
        let mut s = base.clone();
        s.globals.pop();
        variants.push(("number of globals", s));
        let mut s = base.clone();
        s.globals.swap(0, 1);
        variants.push(("order of globals", s));
        // Moving a byte from the asyncify buffer to the stack keeps the
        // concatenation the same; only the boundaries tell them apart.
        let mut s = base.clone();
        let b = s.asyncify.pop().unwrap();
        s.stack.insert(0, b);
        variants.push(("asyncify/stack boundary", s));

        let mut seen = std::collections::HashSet::new();
        seen.insert(h);
        for (what, v) in &variants {
            assert!(
                seen.insert(v.hash(&key())),
                "changing the {what} did not change the hash"
            );
        }
    }

    #[test]
    fn typed_value_tag_separates_types_with_equal_bits() {
        let mut a = sample(0);
        let mut b = sample(0);
        a.globals[0].1 = GlobalValue::I32(0);
        b.globals[0].1 = GlobalValue::F32(0);
        assert_ne!(a.hash(&key()), b.hash(&key()));
        a.globals[1].1 = GlobalValue::I64(0);
        b.globals[0].1 = GlobalValue::I32(0);
        b.globals[1].1 = GlobalValue::F64(0);
        assert_ne!(a.hash(&key()), b.hash(&key()));
    }

    #[test]
    fn byte_size_counts_vectors_and_names() {
        let empty = Snapshot {
            asyncify: vec![],
            stack: vec![],
            stack_pointer: 0,
            globals: vec![],
        };
        let base = empty.byte_size();
        assert_eq!(base, size_of::<Snapshot>());
        assert!(base > 0);
        let s = Snapshot {
            asyncify: vec![0; 100],
            stack: vec![0; 1000],
            stack_pointer: 0,
            globals: vec![("abcde".to_string(), GlobalValue::I32(0))],
        };
        assert_eq!(
            s.byte_size(),
            base + 100 + 1000 + size_of::<(String, GlobalValue)>() + 5
        );
    }

    #[test]
    fn shrink_to_fit_keeps_data() {
        let mut s = sample(9);
        s.stack.reserve(1 << 20);
        let before = s.clone();
        s.shrink_to_fit();
        assert_eq!(s, before);
        assert!(s.stack.capacity() < 1 << 20);
    }
}
