//! The unwound frames of every stored snapshot, with what they have in
//! common stored once, and the digest that names them.
//!
//! An unwind writes the innermost frame first, so the frames of the outer
//! functions, which nested checkpoints share, are at the end of the buffer.
//! A snapshot's frames are cut into chunks of [`CHUNK`] bytes counted from
//! the end (the first chunk, the innermost, may be shorter) and kept as a
//! list from the innermost chunk outwards, each node pointing at the node
//! of the chunk after it. Nodes are hash-consed on (their bytes, the node
//! after them): two snapshots whose frames end the same way share the nodes
//! of that common end, so k nested checkpoints store the outer frames once
//! and each level costs its own frames plus less than two chunks, not the
//! whole stack again.
//!
//! Each node carries a keyed hash (the snapshot names' own, see
//! [`crate::hash`]) chained over its bytes and the digest of the node after
//! it ([`chunk_digest`]), so the first node's digest commits to all the
//! frames ([`frames_digest`] computes the same from bytes), and a snapshot's
//! name needs only that digest, not the frames. The guest chooses the
//! frames' bytes, so the digest must be one it cannot make collide (two
//! lists with one digest would share nodes and replay the wrong frames):
//! being keyed with the host's secret, it is. A node's digest
//! is computed once, when it is made; an insert finds the end its frames
//! share with the previous insert by comparing bytes (a `memcmp`), so a
//! checkpoint at depth k hashes only its new chunks. Each node also keeps a
//! fast checksum of its bytes, which [`FrameStore::read`] checks: a restore
//! replays only bytes that are as they were stored.
//!
//! Nodes are reference-counted (by snapshots, by the nodes before them, and
//! by the store's copy of the last list inserted) and freed when the last
//! reference goes.

use std::collections::HashMap;

use crate::hash::{fast_hash, keyed_hash_bytes, BuildIdentity, HashKey};

/// Bytes per chunk: small enough that a level's own frames waste little,
/// large enough that a node's bookkeeping stays below its data.
pub const CHUNK: usize = 64;

/// A node of the frame lists.
pub type NodeId = u32;

/// The digest of no frames.
pub const EMPTY_DIGEST: Digest = [0; 16];

/// A chained digest of chunks (see [`chunk_digest`]).
pub type Digest = [u8; 16];

/// Domain separation for chunk digests.
const CHUNK_DOMAIN: &[u8] = b"wasm-rewind frames v1";

/// The chained digest of one chunk followed by the chunks whose digest is
/// `outer`: the keyed hash of a domain tag, `outer`, the chunk's length and
/// its bytes (the tag and `outer` have fixed lengths and the length comes
/// before the bytes, so the encoding is injective).
///
/// # Panics
///
/// If `bytes` is longer than a chunk ([`CHUNK`]).
pub fn chunk_digest(key: &HashKey, bytes: &[u8], outer: &Digest) -> Digest {
    let mut buf = [0u8; CHUNK_DOMAIN.len() + 16 + 1 + CHUNK];
    let head = CHUNK_DOMAIN.len() + 16 + 1;
    assert!(bytes.len() <= CHUNK, "a chunk is at most {CHUNK} bytes");
    buf[..CHUNK_DOMAIN.len()].copy_from_slice(CHUNK_DOMAIN);
    buf[CHUNK_DOMAIN.len()..head - 1].copy_from_slice(outer);
    buf[head - 1] = bytes.len() as u8;
    buf[head..head + bytes.len()].copy_from_slice(bytes);
    keyed_hash_bytes(key, &buf[..head + bytes.len()])
}

/// The digest of `frames`, as the store's first node of them carries it:
/// chunks from the end, each chained over the next.
pub fn frames_digest(key: &HashKey, frames: &[u8]) -> Digest {
    let mut digest = EMPTY_DIGEST;
    let mut end = frames.len();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        digest = chunk_digest(key, &frames[start..end], &digest);
        end = start;
    }
    digest
}

/// One chunk and the node of the chunk after it (outwards).
struct Node {
    data: [u8; CHUNK],
    len: u8,
    outer: Option<NodeId>,
    refs: u32,
    /// Chained digest (see [`chunk_digest`]).
    digest: Digest,
    /// [`checksum`] of the bytes when stored.
    check: u64,
    /// Whether this node is the one the index names for its digest.
    indexed: bool,
}

/// Bytes the store counts for a node: the node itself and an index entry
/// (key, value and hashbrown's control byte, at its maximum load).
pub const NODE_BYTES: usize = std::mem::size_of::<Option<Node>>() + (8 + 4 + 1) * 8 / 7;

/// The last list inserted, kept to find what the next one shares with it.
#[derive(Default)]
struct Last {
    frames: Vec<u8>,
    /// Its nodes, outermost first (the node `i` chunks from the end).
    nodes: Vec<NodeId>,
}

/// Frame lists, hash-consed.
pub struct FrameStore {
    /// The key of the chunk digests (the snapshot names').
    key: HashKey,
    nodes: Vec<Option<Node>>,
    free: Vec<NodeId>,
    /// First 8 bytes of a node's digest -> node.
    index: HashMap<u64, NodeId, BuildIdentity>,
    live: usize,
    /// Holds a reference to its first node.
    last: Option<Last>,
}

impl FrameStore {
    /// An empty store whose digests are keyed with `key`.
    pub fn new(key: HashKey) -> FrameStore {
        FrameStore {
            key,
            nodes: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            live: 0,
            last: None,
        }
    }

    /// Stores `frames` and returns the list's first (innermost) node, with
    /// a reference held for the caller; `None` for no frames.
    pub fn insert(&mut self, frames: &[u8]) -> Option<NodeId> {
        let chunks = frames.len().div_ceil(CHUNK);
        // The last list's allocations are reused for this one.
        let mut last = self.last.take().unwrap_or_default();
        let previous_head = last.nodes.last().copied();
        // The chunks this list shares with the last one, counted from the
        // end: equal bytes at equal distances from the end.
        let n = last.nodes.len().min(chunks);
        let mut shared = 0;
        while shared < n && chunk_at(frames, shared) == chunk_at(&last.frames, shared) {
            shared += 1;
        }
        last.nodes.truncate(shared);
        let mut outer = None;
        if let Some(&id) = last.nodes.last() {
            // Still alive: the previous list holds it until released below.
            self.retain(id);
            outer = Some(id);
        }
        for i in shared..chunks {
            let id = self.intern(chunk_at(frames, i), outer);
            last.nodes.push(id);
            outer = Some(id);
        }
        // Keep this list as the last one (with a reference of its own).
        if let Some(head) = outer {
            self.retain(head);
        }
        last.frames.clear();
        last.frames.extend_from_slice(frames);
        self.last = Some(last);
        self.release(previous_head);
        outer
    }

    /// Adds a reference to `node` (another snapshot naming the same list).
    pub fn retain(&mut self, node: NodeId) {
        self.node_mut(node).refs += 1;
    }

    /// Drops one reference to the list starting at `node`, freeing the nodes
    /// no longer referenced.
    pub fn release(&mut self, node: Option<NodeId>) {
        let mut next = node;
        while let Some(id) = next {
            let n = self.node_mut(id);
            n.refs -= 1;
            if n.refs > 0 {
                return;
            }
            let n = self.nodes[id as usize].take().expect("live node");
            if n.indexed {
                self.index.remove(&key_of(&n.digest));
            }
            self.free.push(id);
            self.live -= 1;
            next = n.outer;
        }
    }

    /// Appends the frames of the list starting at `node` to `out`, checking
    /// each chunk against the checksum it was stored with; `false` when one
    /// no longer matches (host memory went bad).
    pub fn read(&self, node: Option<NodeId>, out: &mut Vec<u8>) -> bool {
        let mut next = node;
        while let Some(id) = next {
            let n = self.nodes[id as usize].as_ref().expect("live node");
            let bytes = &n.data[..n.len as usize];
            if checksum(bytes) != n.check {
                return false;
            }
            out.extend_from_slice(bytes);
            next = n.outer;
        }
        true
    }

    /// The chained digest of the list starting at `node` (of all its frames).
    pub fn digest(&self, node: Option<NodeId>) -> Digest {
        match node {
            Some(id) => self.nodes[id as usize].as_ref().expect("live node").digest,
            None => EMPTY_DIGEST,
        }
    }

    /// Nodes stored.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no node is stored.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes the nodes take, as the store counts them.
    pub fn bytes(&self) -> usize {
        self.live * NODE_BYTES
    }

    /// For tests: flips a bit of the first node's data, as host memory
    /// corruption would.
    #[doc(hidden)]
    pub fn corrupt(&mut self, node: NodeId) {
        self.node_mut(node).data[0] ^= 1;
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id as usize].as_mut().expect("live node")
    }

    /// The node for `bytes` followed by `outer`: an existing one (one more
    /// reference) or a new one (which takes over the caller's reference to
    /// `outer`; an existing one already holds its own, so the caller's is
    /// dropped).
    fn intern(&mut self, bytes: &[u8], outer: Option<NodeId>) -> NodeId {
        let digest = chunk_digest(&self.key, bytes, &self.digest(outer));
        let key = key_of(&digest);
        if let Some(&id) = self.index.get(&key) {
            let n = self.nodes[id as usize].as_ref().expect("indexed node");
            if n.digest == digest {
                self.retain(id);
                // The found node holds its own reference to `outer`.
                if let Some(o) = outer {
                    self.node_mut(o).refs -= 1;
                }
                return id;
            }
        }
        let mut data = [0u8; CHUNK];
        data[..bytes.len()].copy_from_slice(bytes);
        // A key already taken by another digest (a 64-bit collision) leaves
        // the new node out of the index: correct, only not shared.
        let indexed = !self.index.contains_key(&key);
        let node = Node {
            data,
            len: bytes.len() as u8,
            outer,
            refs: 1,
            digest,
            check: checksum(bytes),
            indexed,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = Some(node);
                id
            }
            None => {
                self.nodes.push(Some(node));
                (self.nodes.len() - 1) as NodeId
            }
        };
        if indexed {
            self.index.insert(key, id);
        }
        self.live += 1;
        id
    }
}

/// Chunk `i` counted from the end of `frames` (the last may be shorter).
fn chunk_at(frames: &[u8], i: usize) -> &[u8] {
    let end = frames.len() - i * CHUNK;
    &frames[end.saturating_sub(CHUNK)..end]
}

/// The index key of a digest: its first 8 bytes.
fn key_of(digest: &Digest) -> u64 {
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The checksum a node keeps of its bytes: it catches bytes that changed in
/// host memory, which is all it is for.
fn checksum(bytes: &[u8]) -> u64 {
    fast_hash(bytes, 0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(levels: usize) -> Vec<u8> {
        // Innermost first: level `levels - 1` ... level 0, 100 bytes each.
        (0..levels)
            .rev()
            .flat_map(|l| (0..100).map(move |i| (l * 7 + i) as u8))
            .collect()
    }

    fn key() -> HashKey {
        HashKey::fixed([9; 32])
    }

    fn read(s: &FrameStore, node: Option<NodeId>) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(s.read(node, &mut out), "intact");
        out
    }

    /// Drops the store's own reference to the last list, as if it were
    /// replaced, so the tests can see every node go.
    fn forget_last(s: &mut FrameStore) {
        if let Some(last) = s.last.take() {
            s.release(last.nodes.last().copied());
        }
    }

    #[test]
    fn a_list_reads_back_as_stored() {
        let mut s = FrameStore::new(key());
        for len in [0, 1, 63, 64, 65, 128, 1000] {
            let f: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let n = s.insert(&f);
            assert_eq!(read(&s, n), f, "{len} bytes");
            assert_eq!(s.digest(n), frames_digest(&key(), &f), "{len} bytes");
            s.release(n);
        }
        forget_last(&mut s);
        assert!(s.is_empty());
        assert!(s.index.is_empty());
    }

    #[test]
    fn nested_frames_share_their_common_end() {
        let mut s = FrameStore::new(key());
        let mut heads = Vec::new();
        for levels in 1..=1000 {
            heads.push(s.insert(&frames(levels)));
        }
        // Each level adds its 100 bytes plus at most two partial chunks.
        let per_level = s.len() as f64 / 1000.0;
        assert!(per_level <= 4.0, "{per_level} nodes per level");
        for (i, h) in heads.iter().enumerate() {
            assert_eq!(read(&s, *h), frames(i + 1));
        }
        for h in heads {
            s.release(h);
        }
        forget_last(&mut s);
        assert!(s.is_empty());
        assert!(s.free.len() == s.nodes.len());
    }

    #[test]
    fn identical_lists_are_one_list() {
        let mut s = FrameStore::new(key());
        let a = s.insert(&frames(20));
        let n = s.len();
        let b = s.insert(&frames(20));
        assert_eq!(a, b);
        assert_eq!(s.len(), n);
        s.release(a);
        assert_eq!(read(&s, b), frames(20));
        s.release(b);
        forget_last(&mut s);
        assert!(s.is_empty());
    }

    #[test]
    fn releasing_one_list_keeps_what_another_shares() {
        let mut s = FrameStore::new(key());
        let outer = s.insert(&frames(10));
        let inner = s.insert(&frames(30));
        s.release(outer);
        assert_eq!(read(&s, inner), frames(30));
        let again = s.insert(&frames(10));
        assert_eq!(read(&s, again), frames(10));
        s.release(inner);
        s.release(again);
        forget_last(&mut s);
        assert!(s.is_empty());
    }

    #[test]
    fn siblings_share_through_the_index_too() {
        // Not the last list, but an older one: found by digest.
        let mut s = FrameStore::new(key());
        let a = s.insert(&frames(30));
        let n = s.len();
        let _other = s.insert(&[7u8; 500]);
        let b = s.insert(&frames(30));
        assert_eq!(a, b);
        assert_eq!(s.len(), n + 500usize.div_ceil(CHUNK));
    }

    #[test]
    fn a_changed_byte_is_caught_on_read() {
        let mut s = FrameStore::new(key());
        let a = s.insert(&frames(3)).unwrap();
        s.corrupt(a);
        assert!(!s.read(Some(a), &mut Vec::new()));
    }
}
