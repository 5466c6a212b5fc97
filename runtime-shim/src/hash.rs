//! The keyed hash that names snapshots.
//!
//! A `jmp_buf` lives in guest memory, so the guest can write any 16 bytes
//! into it, and it chooses every byte a snapshot holds (its frames, stack and
//! globals). What the name must guarantee is that a jmp_buf names one
//! snapshot: a forged or stale one must not replay a snapshot it was not
//! given. So the guest must not be able to find two different snapshots with
//! the same name (an old jmp_buf would then replay the other one), nor guess
//! a name it was not given.
//!
//! The hash is SipHash-2-4 twice, under two independent 128-bit halves of a
//! secret 256-bit key, the two 64-bit results side by side: 128 bits.
//! SipHash-2-4 is a pseudorandom function designed for exactly this use
//! (short inputs chosen by an attacker who never learns the key), so the
//! pair behaves as a random 128-bit function to the guest: even with every
//! name it was given, finding a collision takes about 2^64 snapshots, and
//! guessing a name 2^128 tries. The key never leaves the host. HMAC-SHA256
//! gave the same guarantee at four SHA-256 blocks per name, which was more
//! than half of a setjmp+longjmp on the host shim; collision resistance
//! without a key (what SHA-256 adds) is not needed, since no name is
//! computed without the key.

use core::fmt;

use crate::abi::HASH_LEN;

/// Name of a snapshot: its 128-bit keyed hash, as stored in a `jmp_buf`.
pub type SnapshotHash = [u8; HASH_LEN];

/// Secret key of the keyed hash. Random per instance unless the embedder fixes it (reproducible runs).
///
/// Deliberately not `PartialEq` nor `Display`, and its `Debug` prints no key
/// bytes, so the secret does not leak into logs or error messages.
#[derive(Clone)]
pub struct HashKey {
    /// The two SipHash keys: `k[0], k[1]` for the first half of a hash,
    /// `k[2], k[3]` for the second.
    k: [u64; 4],
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
        let k = core::array::from_fn(|i| {
            u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes"))
        });
        HashKey { k }
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// One SipHash-2-4 state (v0..v3).
#[derive(Clone, Copy)]
struct Sip([u64; 4]);

impl Sip {
    fn new(k0: u64, k1: u64) -> Sip {
        Sip([
            k0 ^ 0x736f_6d65_7073_6575,
            k1 ^ 0x646f_7261_6e64_6f6d,
            k0 ^ 0x6c79_6765_6e65_7261,
            k1 ^ 0x7465_6462_7974_6573,
        ])
    }

    #[inline(always)]
    fn round(&mut self) {
        let [mut v0, mut v1, mut v2, mut v3] = self.0;
        v0 = v0.wrapping_add(v1);
        v1 = v1.rotate_left(13) ^ v0;
        v0 = v0.rotate_left(32);
        v2 = v2.wrapping_add(v3);
        v3 = v3.rotate_left(16) ^ v2;
        v0 = v0.wrapping_add(v3);
        v3 = v3.rotate_left(21) ^ v0;
        v2 = v2.wrapping_add(v1);
        v1 = v1.rotate_left(17) ^ v2;
        v2 = v2.rotate_left(32);
        self.0 = [v0, v1, v2, v3];
    }

    /// One message word, two rounds (the "2" of SipHash-2-4).
    #[inline(always)]
    fn word(&mut self, m: u64) {
        self.0[3] ^= m;
        self.round();
        self.round();
        self.0[0] ^= m;
    }

    /// Four finalisation rounds (the "4").
    #[inline(always)]
    fn finish(mut self) -> u64 {
        self.0[2] ^= 0xff;
        for _ in 0..4 {
            self.round();
        }
        self.0[0] ^ self.0[1] ^ self.0[2] ^ self.0[3]
    }
}

/// The keyed hash, fed incrementally: SipHash-2-4 under each half of the
/// key over the same bytes, 128 bits in all (see the module documentation).
/// Bytes are gathered in a block of eight words, so that many short fields
/// cost a copy each, not a word's worth of shifting.
#[derive(Clone)]
pub(crate) struct KeyedHasher {
    a: Sip,
    b: Sip,
    /// Bytes not yet hashed (fewer than a block's).
    block: [u8; BLOCK],
    filled: usize,
    /// Bytes fed so far.
    len: u64,
}

const BLOCK: usize = 64;

impl KeyedHasher {
    pub(crate) fn new(key: &HashKey) -> KeyedHasher {
        KeyedHasher {
            a: Sip::new(key.k[0], key.k[1]),
            b: Sip::new(key.k[2], key.k[3]),
            block: [0; BLOCK],
            filled: 0,
            len: 0,
        }
    }

    /// Hashes the whole words of `bytes`; returns the bytes left over.
    #[inline(always)]
    fn words<'b>(a: &mut Sip, b: &mut Sip, bytes: &'b [u8]) -> &'b [u8] {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let m = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            a.word(m);
            b.word(m);
        }
        words.remainder()
    }

    /// Feeds one part, prefixed by its length so that part boundaries are
    /// part of the hashed message (["ab", "c"] and ["a", "bc"] differ).
    pub(crate) fn part(&mut self, bytes: &[u8]) -> &mut KeyedHasher {
        self.raw(&(bytes.len() as u64).to_le_bytes());
        self.raw(bytes)
    }

    /// Feeds bytes as they are, for fields whose length the encoding fixes.
    pub(crate) fn raw(&mut self, mut bytes: &[u8]) -> &mut KeyedHasher {
        self.len += bytes.len() as u64;
        if self.filled + bytes.len() < BLOCK {
            self.block[self.filled..self.filled + bytes.len()].copy_from_slice(bytes);
            self.filled += bytes.len();
            return self;
        }
        if self.filled > 0 {
            let take = BLOCK - self.filled;
            self.block[self.filled..].copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let block = self.block;
            Self::words(&mut self.a, &mut self.b, &block);
        }
        let rest = Self::words(&mut self.a, &mut self.b, bytes);
        self.block[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
        self
    }

    pub(crate) fn finish(mut self) -> SnapshotHash {
        let block = self.block;
        let rest = Self::words(&mut self.a, &mut self.b, &block[..self.filled]);
        // SipHash's last word: the bytes left, and the length (mod 256) in
        // the top byte.
        let mut m = (self.len & 0xff) << 56;
        for (i, &b) in rest.iter().enumerate() {
            m |= (b as u64) << (8 * i);
        }
        self.a.word(m);
        self.b.word(m);
        let mut out = [0u8; HASH_LEN];
        out[..8].copy_from_slice(&self.a.finish().to_le_bytes());
        out[8..].copy_from_slice(&self.b.finish().to_le_bytes());
        out
    }
}

/// The keyed hash of `bytes` in one go: the same as feeding them to a
/// [`KeyedHasher`] at once, without its block copies (for callers that lay
/// their fields out in one array).
pub(crate) fn keyed_hash_bytes(key: &HashKey, bytes: &[u8]) -> SnapshotHash {
    let mut a = Sip::new(key.k[0], key.k[1]);
    let mut b = Sip::new(key.k[2], key.k[3]);
    let rest = KeyedHasher::words(&mut a, &mut b, bytes);
    let mut m = (bytes.len() as u64 & 0xff) << 56;
    for (i, &byte) in rest.iter().enumerate() {
        m |= (byte as u64) << (8 * i);
    }
    a.word(m);
    b.word(m);
    let mut out = [0u8; HASH_LEN];
    out[..8].copy_from_slice(&a.finish().to_le_bytes());
    out[8..].copy_from_slice(&b.finish().to_le_bytes());
    out
}

/// The keyed hash over the parts, each prefixed by its u64 LE length
/// (unambiguous): SipHash-2-4 under each half of the key, 16 bytes.
///
/// The length prefixes make the encoding of a sequence of parts injective,
/// so two different sequences never feed the hash the same message.
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

/// For maps keyed by one integer: a jmp_buf's address, a context id, a
/// table index. One multiply folded to 64 bits (the low and high halves of
/// the 128-bit product, xored), so both the low bits (the bucket) and the
/// high bits (hashbrown's tag) depend on every bit of the key, even for
/// 8-aligned addresses. Four to five times faster than std's SipHash here,
/// which cost 6% of a setjmp+longjmp on the host shim.
///
/// Keys a guest chooses (jmp_buf addresses) could be picked to collide, as
/// the multiplier is no secret: that makes lookups slower, bounded by the
/// store's caps, and only for the guest that does it; nothing is stored
/// wrongly. The store's names, which must be unforgeable, stay keyed MACs.
#[derive(Clone, Copy, Default)]
pub(crate) struct BuildIntHash;

impl std::hash::BuildHasher for BuildIntHash {
    type Hasher = IntHasher;
    fn build_hasher(&self) -> IntHasher {
        IntHasher(0)
    }
}

/// See [`BuildIntHash`].
pub(crate) struct IntHasher(u64);

impl IntHasher {
    fn mix(&mut self, v: u64) {
        let product = u128::from(self.0 ^ v) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl std::hash::Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.mix(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
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

    #[test]
    fn int_hash_spreads_aligned_keys_over_low_and_high_bits() {
        use std::hash::BuildHasher;
        let hashes: Vec<u64> = (0..4096u64)
            .map(|i| BuildIntHash.hash_one(0x10000 + 24 * i))
            .collect();
        let low: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        let tags: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        // 4096 keys into 4096 buckets: a random function fills about 63%.
        assert!(low.len() > 2300, "{} buckets", low.len());
        assert_eq!(tags.len(), 128);
    }

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

    /// SipHash-2-4 of `msg` under `(k0, k1)` by the standard library's
    /// (deprecated, but still SipHash-2-4) implementation.
    #[allow(deprecated)]
    fn std_siphash(k0: u64, k1: u64, msg: &[u8]) -> u64 {
        use std::hash::Hasher;
        let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
        h.write(msg);
        h.finish()
    }

    #[test]
    fn fixed_key_is_reproducible() {
        // Known answer: pins the construction (SipHash-2-4 under each half
        // of the key, u64 LE length prefixes, the two results LE) so a
        // refactor cannot change the hashes that reproducible runs rely on
        // without this test noticing.
        let key: [u8; 32] = core::array::from_fn(|i| i as u8 * 3 + 1);
        let h = keyed_hash(&HashKey::fixed(key), &[b"ab", b"c"]);
        let mut msg = Vec::new();
        for part in [&b"ab"[..], &b"c"[..]] {
            msg.extend_from_slice(&(part.len() as u64).to_le_bytes());
            msg.extend_from_slice(part);
        }
        let k = |i: usize| u64::from_le_bytes(key[8 * i..8 * i + 8].try_into().unwrap());
        assert_eq!(h[..8], std_siphash(k(0), k(1), &msg).to_le_bytes());
        assert_eq!(h[8..], std_siphash(k(2), k(3), &msg).to_le_bytes());
    }

    #[test]
    fn one_go_is_the_incremental_hash() {
        let key = HashKey::fixed(core::array::from_fn(|i| i as u8 ^ 0x5c));
        let msg: Vec<u8> = (0..200u8).collect();
        for len in 0..msg.len() {
            let mut h = KeyedHasher::new(&key);
            h.raw(&msg[..len]);
            assert_eq!(
                keyed_hash_bytes(&key, &msg[..len]),
                h.finish(),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn siphash_known_answer() {
        // The SipHash paper's test vector (appendix A): key 00..0f, message
        // 00..0e, SipHash-2-4 = a129ca6149be45e5.
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = (i % 16) as u8;
        }
        let msg: Vec<u8> = (0..15).collect();
        let mut h = KeyedHasher::new(&HashKey::fixed(key));
        h.raw(&msg);
        let out = h.finish();
        assert_eq!(
            u64::from_le_bytes(out[..8].try_into().unwrap()),
            0xa129_ca61_49be_45e5
        );
        assert_eq!(out[..8], out[8..]);
    }

    #[test]
    fn incremental_feeding_is_one_message() {
        // However the bytes are split into calls, the hash is that of the
        // whole message (the standard library's SipHash-2-4 as the reference).
        let key: [u8; 32] = core::array::from_fn(|i| (i * 7 + 5) as u8);
        let k = |i: usize| u64::from_le_bytes(key[8 * i..8 * i + 8].try_into().unwrap());
        let msg: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
        for len in 0..msg.len() {
            for cut in [0, 1, 3, 7, 8, 9, 15, 16, 17] {
                let cut = cut.min(len);
                let mut h = KeyedHasher::new(&HashKey::fixed(key));
                h.raw(&msg[..cut]);
                for chunk in msg[cut..len].chunks(5) {
                    h.raw(chunk);
                }
                let out = h.finish();
                assert_eq!(out[..8], std_siphash(k(0), k(1), &msg[..len]).to_le_bytes());
                assert_eq!(out[8..], std_siphash(k(2), k(3), &msg[..len]).to_le_bytes());
            }
        }
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
