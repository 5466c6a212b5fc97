//! A checkpoint's state as plain data, independent of any engine.
//!
//! The engine binding fills a [`Snapshot`] at `stack_checkpoint` and reads it
//! back at `stack_restore`; keeping it plain data (like wizer's snapshot)
//! lets the store, the hash and their tests work without an engine.

use crate::hash::{fast_hash, keyed_hash_bytes, HashKey, KeyedHasher, SnapshotHash};

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

/// Everything `stack_restore` needs to resume a `stack_checkpoint`, and
/// what names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The unwound asyncify frames: bytes [buffer start, pos) after the unwind.
    pub frames: Vec<u8>,
    /// A digest of the live C stack, bytes [stack_pointer, stack top) at
    /// the checkpoint ([`stack_digest`]). Only the digest is kept: it is part
    /// of the snapshot's name, never written back (longjmp keeps later memory
    /// writes).
    pub stack_digest: [u8; 8],
    /// `__stack_pointer` at the checkpoint.
    pub stack_pointer: u64,
    /// The WASIX context the checkpoint ran in ([`crate::contexts`]; 0, the
    /// main context, in a program without any): a longjmp resumes it only
    /// from the same context, and its stack pointer is compared only with
    /// that context's.
    pub context: u64,
    /// The exported mutable globals other than the asyncify ones, in the
    /// instance's order (their names are the instance's, passed to
    /// [`Snapshot::hash`]).
    pub globals: Vec<GlobalValue>,
}

/// Domain separation: these bytes start every snapshot's hashed message, so a
/// snapshot hash can never equal a [`crate::hash::keyed_hash`] of other data
/// under the same key, and a future encoding can change the tag.
const SNAPSHOT_DOMAIN: &[u8] = b"wasm-rewind v6";

/// A digest of the names of a snapshot's globals, each with its length, for
/// its name: they are the instance's, the same for every snapshot of it, so
/// a fast hash keeps them apart from another instance's; the name's key
/// does the rest.
pub fn names_digest(names: &[String]) -> [u8; 8] {
    let mut bytes = Vec::with_capacity(names.iter().map(|n| n.len() + 8).sum());
    for n in names {
        bytes.extend((n.len() as u64).to_le_bytes());
        bytes.extend(n.as_bytes());
    }
    fast_hash(&bytes, 0x1319_8a2e_0370_7344).to_le_bytes()
}

/// The digest of the live C stack that [`Snapshot::stack_digest`] holds: 64
/// bits of a fast, unkeyed hash, not the keyed one.
///
/// Why that is enough: the stack's bytes only tell snapshots apart, they are
/// never restored. Two snapshots whose digests collide and whose frames,
/// stack pointer and globals are equal get one name, and restoring either
/// does exactly the same thing. The name itself stays a keyed MAC over
/// everything, so a guest still cannot forge one. A SHA-256 here took a
/// sixth of a setjmp+longjmp on the host shim when names were HMAC-SHA256.
pub fn stack_digest(stack: &[u8]) -> [u8; 8] {
    fast_hash(stack, 0x243f_6a88_85a3_08d3).to_le_bytes()
}

impl Snapshot {
    /// The snapshot's name: the keyed hash of one canonical encoding of every
    /// field: the domain tag, the frames' chained digest
    /// ([`crate::frames::frames_digest`], 16 bytes) and length (u64 LE), the
    /// stack digest (8 bytes), the stack pointer (u64 LE), the context
    /// (u64 LE), a digest of the
    /// globals' names (`names`, in order; see [`names_digest`]), the number
    /// of globals (u64 LE), then each global's typed value. Every field has a
    /// fixed length or is delimited by its type tag, so the encoding is
    /// injective; it is about ten SipHash words for a few globals, and a
    /// setjmp and its longjmp hash it twice.
    pub fn hash(&self, key: &HashKey, names: &[String]) -> SnapshotHash {
        let digest = crate::frames::frames_digest(key, &self.frames);
        self.hash_with(key, &names_digest(names), &digest)
    }

    /// [`Snapshot::hash`] with the frames' digest already known (the store
    /// keeps it per chunk list, so naming a snapshot does not hash its
    /// frames again).
    pub(crate) fn hash_with(
        &self,
        key: &HashKey,
        names_digest: &[u8; 8],
        frames_digest: &crate::frames::Digest,
    ) -> SnapshotHash {
        name_of(
            key,
            names_digest,
            frames_digest,
            self.frames.len(),
            &self.stack_digest,
            StackAt {
                pointer: self.stack_pointer,
                context: self.context,
            },
            &self.globals,
        )
    }
}

/// Where on which stack a snapshot was taken: part of its name.
pub(crate) struct StackAt {
    /// `__stack_pointer`.
    pub pointer: u64,
    /// The WASIX context.
    pub context: u64,
}

/// [`Snapshot::hash`] from its parts, for a stored snapshot whose frames
/// are not at hand as one slice.
pub(crate) fn name_of(
    key: &HashKey,
    names_digest: &[u8; 8],
    frames_digest: &crate::frames::Digest,
    frames_len: usize,
    stack_digest: &[u8; 8],
    stack_at: StackAt,
    globals: &[GlobalValue],
) -> SnapshotHash {
    // The fields laid out in one array and hashed in one go (the same bytes
    // a KeyedHasher fed field by field would hash), unless there are many
    // globals.
    const FIXED: usize = SNAPSHOT_DOMAIN.len() + 16 + 8 + 8 + 8 + 8 + 8 + 8;
    const MOST_GLOBALS: usize = 8;
    let mut buf = [0u8; FIXED + 9 * MOST_GLOBALS];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(SNAPSHOT_DOMAIN);
    put(frames_digest);
    put(&(frames_len as u64).to_le_bytes());
    put(stack_digest);
    put(&stack_at.pointer.to_le_bytes());
    put(&stack_at.context.to_le_bytes());
    put(names_digest);
    put(&(globals.len() as u64).to_le_bytes());
    if globals.len() <= MOST_GLOBALS {
        for value in globals {
            let (bytes, len) = value.encode();
            put(&bytes[..len]);
        }
        return keyed_hash_bytes(key, &buf[..at]);
    }
    let mut h = KeyedHasher::new(key);
    h.raw(&buf[..at]);
    for value in globals {
        let (bytes, len) = value.encode();
        h.raw(&bytes[..len]);
    }
    h.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["counter", "big", "ratio", "pi"].map(String::from).to_vec()
    }

    /// A small snapshot with every field non-trivial; `n` varies the data.
    pub(crate) fn sample(n: u32) -> Snapshot {
        Snapshot {
            frames: n.to_le_bytes().repeat(4),
            stack_digest: stack_digest(&[0x5a; 32]),
            stack_pointer: 65_536 - 32,
            context: 0,
            globals: vec![
                GlobalValue::I32(n as i32),
                GlobalValue::I64(-1),
                GlobalValue::F32(1.5f32.to_bits()),
                GlobalValue::F64(core::f64::consts::PI.to_bits()),
            ],
        }
    }

    fn key() -> HashKey {
        HashKey::fixed([3; 32])
    }

    #[test]
    fn hash_is_deterministic_for_a_key() {
        let n = names();
        assert_eq!(sample(1).hash(&key(), &n), sample(1).hash(&key(), &n));
        assert_ne!(
            sample(1).hash(&key(), &n),
            sample(1).hash(&HashKey::fixed([4; 32]), &n)
        );
    }

    #[test]
    fn hash_covers_every_field() {
        let n = names();
        let base = sample(1);
        let h = base.hash(&key(), &n);
        let mut variants: Vec<(&str, Snapshot, Vec<String>)> = Vec::new();

        let mut s = base.clone();
        s.frames[0] ^= 1;
        variants.push(("frames byte", s, n.clone()));
        let mut s = base.clone();
        s.frames.push(0);
        variants.push(("frames length", s, n.clone()));
        let mut s = base.clone();
        s.stack_digest = stack_digest(&[0x5b; 32]);
        variants.push(("stack bytes", s, n.clone()));
        let mut s = base.clone();
        s.stack_pointer += 1;
        variants.push(("stack pointer", s, n.clone()));
        let mut renamed = n.clone();
        renamed[0] = "counteR".to_string();
        variants.push(("global name", base.clone(), renamed));
        let mut s = base.clone();
        s.globals[0] = GlobalValue::I32(2);
        variants.push(("global value", s, n.clone()));
        let mut s = base.clone();
        s.globals[1] = GlobalValue::F64(u64::MAX);
        variants.push(("global type (same bits)", s, n.clone()));
        let mut s = base.clone();
        s.globals.pop();
        variants.push(("number of globals", s, n.clone()));
        let mut s = base.clone();
        s.globals.swap(0, 1);
        variants.push(("order of globals", s, n.clone()));
        let mut s = base.clone();
        s.frames.pop();
        variants.push(("frames' last byte", s, n.clone()));
        let mut s = base.clone();
        s.frames.insert(0, 0);
        variants.push(("frames' first byte", s, n.clone()));

        let mut seen = std::collections::HashSet::new();
        seen.insert(h);
        for (what, v, names) in &variants {
            assert!(
                seen.insert(v.hash(&key(), names)),
                "changing the {what} did not change the hash"
            );
        }
    }

    #[test]
    fn the_stack_digest_sees_every_byte() {
        let base = vec![0x5au8; 100];
        let d = stack_digest(&base);
        for i in 0..base.len() {
            let mut s = base.clone();
            s[i] ^= 1;
            assert_ne!(stack_digest(&s), d, "byte {i}");
        }
        assert_ne!(stack_digest(&base[..99]), d);
        assert_ne!(stack_digest(&[]), stack_digest(&[0]));
    }

    #[test]
    fn typed_value_tag_separates_types_with_equal_bits() {
        let n = names();
        let mut a = sample(0);
        let mut b = sample(0);
        a.globals[0] = GlobalValue::I32(0);
        b.globals[0] = GlobalValue::F32(0);
        assert_ne!(a.hash(&key(), &n), b.hash(&key(), &n));
        a.globals[1] = GlobalValue::I64(0);
        b.globals[0] = GlobalValue::I32(0);
        b.globals[1] = GlobalValue::F64(0);
        assert_ne!(a.hash(&key(), &n), b.hash(&key(), &n));
    }
}
