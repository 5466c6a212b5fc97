//! The keyed hash that names snapshots.
//!
//! A `jmp_buf` lives in guest memory, so the guest can write any 16 bytes
//! into it. Keying the hash with a host secret means a guest cannot compute
//! the name of a snapshot it did not get from `stack_checkpoint`, and the host
//! re-verifies a snapshot against its name before restoring it. HMAC-SHA256 is
//! used rather than a bare `SHA-256(key || data)` because HMAC is the standard
//! construction that stays a MAC under length extension; WASIX only requires
//! the 16 bytes to come from a SHA-256, which they do.

use core::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::abi::HASH_LEN;

/// Name of a snapshot: the first 16 bytes of its keyed hash, as stored in a
/// `jmp_buf`.
pub type SnapshotHash = [u8; HASH_LEN];

/// Secret key of the keyed hash. Random per instance unless the embedder fixes it (reproducible runs).
///
/// Deliberately not `PartialEq` nor `Display`, and its `Debug` prints no key
/// bytes, so the secret does not leak into logs or error messages.
#[derive(Clone)]
pub struct HashKey {
    /// HMAC keyed with the secret, its key blocks already absorbed: each
    /// hash clones it rather than keying HMAC again (two SHA-256 blocks saved
    /// per snapshot).
    mac: Hmac<Sha256>,
}

impl HashKey {
    /// A fresh key from the operating system's random source; what an
    /// instance should use unless runs must be reproducible.
    ///
    /// # Panics
    ///
    /// If the OS random source fails (it essentially never does on hosted
    /// platforms). Falling back to a predictable key would silently let
    /// guests forge snapshot names, so this refuses instead; an embedder
    /// without a random source can pass its own key to [`HashKey::fixed`].
    pub fn random() -> HashKey {
        let mut bytes = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut bytes) {
            panic!(
                "wasm-rewind-shim: the OS random source failed ({e}); \
                 cannot make a secret snapshot key. Use HashKey::fixed with \
                 your own random bytes instead"
            );
        }
        HashKey::fixed(bytes)
    }

    /// A key chosen by the embedder, so that snapshot hashes (and the
    /// `jmp_buf` contents a guest can observe) are the same from run to run.
    /// A fixed key known to the guest lets it forge hashes of data it can
    /// predict; use it for tests and reproducible runs, not untrusted guests.
    pub fn fixed(bytes: [u8; 32]) -> HashKey {
        // HMAC takes keys of any length, so this cannot fail.
        let mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("HMAC accepts keys of any length");
        HashKey { mac }
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// Incremental form of [`keyed_hash`], so callers with many parts (a
/// snapshot's globals) need not collect them into a slice first.
pub(crate) struct KeyedHasher {
    mac: Hmac<Sha256>,
}

impl KeyedHasher {
    pub(crate) fn new(key: &HashKey) -> KeyedHasher {
        KeyedHasher {
            mac: key.mac.clone(),
        }
    }

    /// Feeds one part, prefixed by its length so that part boundaries are
    /// part of the hashed message (["ab", "c"] and ["a", "bc"] differ).
    pub(crate) fn part(&mut self, bytes: &[u8]) -> &mut KeyedHasher {
        self.mac.update(&(bytes.len() as u64).to_le_bytes());
        self.mac.update(bytes);
        self
    }

    /// Feeds bytes as they are, for fields whose length the encoding fixes.
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut KeyedHasher {
        self.mac.update(bytes);
        self
    }

    pub(crate) fn finish(self) -> SnapshotHash {
        let full = self.mac.finalize().into_bytes();
        let mut out = [0u8; HASH_LEN];
        out.copy_from_slice(&full[..HASH_LEN]);
        out
    }
}

/// HMAC-SHA256 over the parts, each prefixed by its u64 LE length (unambiguous), truncated to 16 bytes.
///
/// The length prefixes make the encoding of a sequence of parts injective,
/// so two different sequences never feed HMAC the same message.
pub fn keyed_hash(key: &HashKey, parts: &[&[u8]]) -> SnapshotHash {
    let mut hasher = KeyedHasher::new(key);
    for part in parts {
        hasher.part(part);
    }
    hasher.finish()
}

/// A fast, unkeyed 64-bit hash (words multiplied into the state, then
/// splitmix64's finaliser), for what needs no key: checksums of stored
/// bytes, the digest of a C stack that is never restored. `seed` keeps the
/// uses apart.
pub(crate) fn fast_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
    }
    for &b in words.remainder() {
        h = (h ^ b as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(31);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// For maps whose keys are already hashes that no guest can choose: the
/// frame index's digest prefixes, the store's snapshot names (keyed MACs).
#[derive(Clone, Copy, Default)]
pub(crate) struct BuildIdentity;

impl std::hash::BuildHasher for BuildIdentity {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// See [`BuildIdentity`]: the last 8 bytes written are the hash.
pub(crate) struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Lower-case hex of a snapshot hash, as error messages and logs print it.
pub fn hash_hex(hash: &SnapshotHash) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(2 * HASH_LEN);
    for b in hash {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> HashKey {
        HashKey::fixed([n; 32])
    }

    #[test]
    fn same_data_and_key_give_same_hash() {
        let a = keyed_hash(&key(1), &[b"hello", b"world"]);
        let b = keyed_hash(&key(1), &[b"hello", b"world"]);
        assert_eq!(a, b);
    }

    #[test]
    fn different_key_gives_different_hash() {
        let a = keyed_hash(&key(1), &[b"hello"]);
        let b = keyed_hash(&key(2), &[b"hello"]);
        assert_ne!(a, b);
    }

    #[test]
    fn different_data_gives_different_hash() {
        let a = keyed_hash(&key(1), &[b"hello"]);
        let b = keyed_hash(&key(1), &[b"hellp"]);
        assert_ne!(a, b);
        let empty = keyed_hash(&key(1), &[]);
        let one_empty = keyed_hash(&key(1), &[b""]);
        let two_empty = keyed_hash(&key(1), &[b"", b""]);
        assert_ne!(empty, one_empty);
        assert_ne!(one_empty, two_empty);
    }

    #[test]
    fn part_boundaries_matter() {
        let a = keyed_hash(&key(1), &[b"ab", b"c"]);
        let b = keyed_hash(&key(1), &[b"a", b"bc"]);
        let c = keyed_hash(&key(1), &[b"abc"]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn fixed_key_is_reproducible() {
        // Known answer: pins the construction (HMAC-SHA256, u64 LE length
        // prefixes, first 16 bytes) so a refactor cannot change the hashes
        // that reproducible runs rely on without this test noticing.
        let h = keyed_hash(&HashKey::fixed([7; 32]), &[b"ab", b"c"]);
        assert_eq!(h, keyed_hash(&HashKey::fixed([7; 32]), &[b"ab", b"c"]));
        let mut msg = Vec::new();
        for part in [&b"ab"[..], &b"c"[..]] {
            msg.extend_from_slice(&(part.len() as u64).to_le_bytes());
            msg.extend_from_slice(part);
        }
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).unwrap();
        mac.update(&msg);
        assert_eq!(&h[..], &mac.finalize().into_bytes()[..16]);
    }

    #[test]
    fn hmac_sha256_known_answer() {
        // RFC 4231 test case 2 (key "Jefe"), to show the primitive is the
        // standard HMAC-SHA256.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let out = mac.finalize().into_bytes();
        assert_eq!(
            hash_hex(out[..16].try_into().unwrap()),
            "5bdcc146bf60754e6a042426089575c7"
        );
    }

    #[test]
    fn random_keys_differ() {
        let a = keyed_hash(&HashKey::random(), &[b"x"]);
        let b = keyed_hash(&HashKey::random(), &[b"x"]);
        assert_ne!(a, b);
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let s = format!("{:?}", HashKey::fixed([0xab; 32]));
        assert!(!s.contains("ab"), "{s}");
        assert!(!s.contains("171"), "{s}");
        assert!(s.contains("redacted"));
    }

    #[test]
    fn hex_is_lowercase_and_full_length() {
        let h: SnapshotHash = core::array::from_fn(|i| i as u8 * 17);
        assert_eq!(hash_hex(&h), "00112233445566778899aabbccddeeff");
    }
}
