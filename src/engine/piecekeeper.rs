//! The piecekeeper answers each peer's disk writer: "was this block requested
//! from this peer, and do we still need it?" The main loop keeps it current
//! (a request is registered *before* it is sent, so a block can never arrive
//! ahead of its registration).
//!
//! The first copy of a block to be checked wins: the answer `true` removes
//! every registration of that block, so during endgame a second copy (perhaps
//! from a bad peer) can never overwrite the first on disk.
//!
//! The design notes make it a process the writers ask over a channel; it is
//! a table behind a lock here instead, because it does no waiting of its own
//! and a channel round-trip per 16 KiB block cost more than the whole check.
//! Each operation holds the lock for one hash-map update.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use super::picker::{PeerId, Requesters};
use crate::wire::BlockRef;

/// Registrations by block, hashed with [`BlockHasher`].
type BlockTable = HashMap<BlockRef, Requesters, BuildHasherDefault<BlockHasher>>;

/// A multiply-and-shift hash of a block's three numbers. Only the main
/// loop's own requests go into the table (a peer's block merely looks one
/// up), so SipHash's defence against keys chosen to collide buys nothing
/// here, and it cost more than the table's other work for each block.
#[derive(Default)]
struct BlockHasher(u64);

impl Hasher for BlockHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(b as u32);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(23) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        // MurmurHash3's finalizer: every input bit reaches the low bits
        // (the bucket) and the top seven (hashbrown's tag).
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

/// A cloneable handle to the shared table.
#[derive(Clone, Default)]
pub struct Piecekeeper {
    expected: Arc<Mutex<BlockTable>>,
}

impl Piecekeeper {
    pub fn new() -> Piecekeeper {
        Piecekeeper::default()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BlockTable> {
        // Every update leaves the map consistent, so a poisoned lock is usable.
        self.expected.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn expect(&self, peer: PeerId, block: BlockRef) {
        let mut table = self.table();
        match table.entry(block) {
            Entry::Vacant(slot) => {
                slot.insert(Requesters::One(peer));
            }
            Entry::Occupied(mut slot) => {
                if !slot.get().contains(peer) {
                    slot.get_mut().push(peer);
                }
            }
        }
    }

    pub fn forget(&self, peer: PeerId, block: BlockRef) {
        let mut table = self.table();
        if let Some(peers) = table.get_mut(&block) {
            if peers.remove(peer) {
                table.remove(&block);
            }
        }
    }

    pub fn forget_peer(&self, peer: PeerId) {
        self.table().retain(|_, peers| !peers.remove(peer));
    }

    /// Should this block from `peer` be written? At most one `true` per registration.
    pub fn check(&self, peer: PeerId, block: BlockRef) -> bool {
        // One lookup for the test and the removal.
        match self.table().entry(block) {
            Entry::Occupied(slot) if slot.get().contains(peer) => {
                slot.remove();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(piece: u32) -> BlockRef {
        BlockRef {
            piece,
            offset: 0,
            len: 16384,
        }
    }

    #[test]
    fn block_hashes_spread_over_buckets() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<BlockHasher>::default();
        // A download's keys: 64 blocks in each of 256 pieces, offsets
        // multiples of 16 KiB. Their low 12 bits (4096 buckets) should
        // all but fill the buckets, as random hashes would (about 98%).
        let mut buckets = std::collections::HashSet::new();
        let mut tags = std::collections::HashSet::new();
        for piece in 0..256u32 {
            for block in 0..64u32 {
                let h = build.hash_one(BlockRef {
                    piece,
                    offset: block * 16384,
                    len: 16384,
                });
                buckets.insert(h & 0xfff);
                tags.insert(h >> 57);
            }
        }
        assert!(buckets.len() > 3900, "{} of 4096 buckets", buckets.len());
        assert_eq!(tags.len(), 128);
    }

    #[test]
    fn only_requested_blocks_pass_and_only_once() {
        let k = Piecekeeper::new();
        assert!(!k.check(1, b(0)), "never requested");
        k.expect(1, b(0));
        k.expect(2, b(0)); // endgame duplicate
        assert!(!k.check(3, b(0)), "requested from someone else");
        assert!(k.check(2, b(0)));
        assert!(!k.check(1, b(0)), "the first copy won");
        k.expect(1, b(1));
        k.forget(1, b(1));
        assert!(!k.check(1, b(1)), "cancelled");
        k.expect(1, b(2));
        k.expect(1, b(3));
        k.forget_peer(1);
        assert!(!k.check(1, b(2)));
        assert!(!k.check(1, b(3)));
    }
}
