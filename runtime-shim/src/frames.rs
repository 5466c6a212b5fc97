//! The unwound frames of every stored snapshot, with what they have in
//! common stored once.
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
//! Nodes are reference-counted (by snapshots and by the nodes before them)
//! and freed when the last reference goes.

use std::collections::HashMap;

/// Bytes per chunk: small enough that a level's own frames waste little,
/// large enough that a node's bookkeeping stays below its data.
pub const CHUNK: usize = 64;

/// A node of the frame lists.
pub type NodeId = u32;

/// One chunk and the node of the chunk after it (outwards).
struct Node {
    data: [u8; CHUNK],
    len: u8,
    outer: Option<NodeId>,
    refs: u32,
    /// The key this node has in the index, if it is there.
    key: Option<u64>,
}

/// Bytes the store counts for a node: the node itself and an index entry
/// (key, value and hashbrown's control byte, at its maximum load).
pub const NODE_BYTES: usize = std::mem::size_of::<Option<Node>>() + (8 + 4 + 1) * 8 / 7;

/// Frame lists, hash-consed.
#[derive(Default)]
pub struct FrameStore {
    nodes: Vec<Option<Node>>,
    free: Vec<NodeId>,
    /// (hash of the bytes and of the outer node) -> node.
    index: HashMap<u64, NodeId, BuildIdentity>,
    live: usize,
}

impl FrameStore {
    /// An empty store.
    pub fn new() -> FrameStore {
        FrameStore::default()
    }

    /// Stores `frames` and returns the list's first (innermost) node, with
    /// a reference held for the caller; `None` for no frames.
    pub fn insert(&mut self, frames: &[u8]) -> Option<NodeId> {
        let mut outer = None;
        let mut end = frames.len();
        while end > 0 {
            let start = end.saturating_sub(CHUNK);
            outer = Some(self.intern(&frames[start..end], outer));
            end = start;
        }
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
            if let Some(key) = n.key {
                self.index.remove(&key);
            }
            self.free.push(id);
            self.live -= 1;
            next = n.outer;
        }
    }

    /// Appends the frames of the list starting at `node` to `out`.
    pub fn read(&self, node: Option<NodeId>, out: &mut Vec<u8>) {
        let mut next = node;
        while let Some(id) = next {
            let n = self.nodes[id as usize].as_ref().expect("live node");
            out.extend_from_slice(&n.data[..n.len as usize]);
            next = n.outer;
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
        let key = chunk_key(bytes, outer);
        if let Some(&id) = self.index.get(&key) {
            let n = self.nodes[id as usize].as_ref().expect("indexed node");
            if n.outer == outer && &n.data[..n.len as usize] == bytes {
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
        // A key already taken by other bytes (a 64-bit collision) leaves the
        // new node out of the index: correct, only not shared.
        let indexed = !self.index.contains_key(&key);
        let node = Node {
            data,
            len: bytes.len() as u8,
            outer,
            refs: 1,
            key: indexed.then_some(key),
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

/// A 64-bit key of a chunk and its outer node: FNV-style mixing of 8-byte
/// words, finished by splitmix64. Not keyed: a guest that makes keys collide
/// only loses sharing (see `intern`).
fn chunk_key(bytes: &[u8], outer: Option<NodeId>) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64 ^ outer.map_or(u64::MAX, u64::from);
    h ^= (bytes.len() as u64) << 32;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(0x0100_0000_01b3);
        h = h.rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// For maps whose keys are already hashes that no guest can choose: the
/// index's chunk keys, the store's snapshot names (keyed MACs).
#[derive(Clone, Copy, Default)]
pub(crate) struct BuildIdentity;

impl std::hash::BuildHasher for BuildIdentity {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

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

    fn read(s: &FrameStore, node: Option<NodeId>) -> Vec<u8> {
        let mut out = Vec::new();
        s.read(node, &mut out);
        out
    }

    #[test]
    fn a_list_reads_back_as_stored() {
        let mut s = FrameStore::new();
        for len in [0, 1, 63, 64, 65, 128, 1000] {
            let f: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let n = s.insert(&f);
            assert_eq!(read(&s, n), f, "{len} bytes");
            s.release(n);
        }
        assert!(s.is_empty());
        assert!(s.index.is_empty());
    }

    #[test]
    fn nested_frames_share_their_common_end() {
        let mut s = FrameStore::new();
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
        assert!(s.is_empty());
        assert!(s.free.len() == s.nodes.len());
    }

    #[test]
    fn identical_lists_are_one_list() {
        let mut s = FrameStore::new();
        let a = s.insert(&frames(20));
        let n = s.len();
        let b = s.insert(&frames(20));
        assert_eq!(a, b);
        assert_eq!(s.len(), n);
        s.release(a);
        assert_eq!(read(&s, b), frames(20));
        s.release(b);
        assert!(s.is_empty());
    }

    #[test]
    fn releasing_one_list_keeps_what_another_shares() {
        let mut s = FrameStore::new();
        let outer = s.insert(&frames(10));
        let inner = s.insert(&frames(30));
        s.release(outer);
        assert_eq!(read(&s, inner), frames(30));
        let again = s.insert(&frames(10));
        assert_eq!(read(&s, again), frames(10));
        s.release(inner);
        s.release(again);
        assert!(s.is_empty());
    }
}
