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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::picker::PeerId;
use crate::wire::BlockRef;

/// A cloneable handle to the shared table.
#[derive(Clone, Default)]
pub struct Piecekeeper {
    expected: Arc<Mutex<HashMap<BlockRef, Vec<PeerId>>>>,
}

impl Piecekeeper {
    pub fn new() -> Piecekeeper {
        Piecekeeper::default()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<BlockRef, Vec<PeerId>>> {
        // Every update leaves the map consistent, so a poisoned lock is usable.
        self.expected.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn expect(&self, peer: PeerId, block: BlockRef) {
        let mut table = self.table();
        let peers = table.entry(block).or_default();
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }

    pub fn forget(&self, peer: PeerId, block: BlockRef) {
        let mut table = self.table();
        if let Some(peers) = table.get_mut(&block) {
            peers.retain(|&p| p != peer);
            if peers.is_empty() {
                table.remove(&block);
            }
        }
    }

    pub fn forget_peer(&self, peer: PeerId) {
        self.table().retain(|_, peers| {
            peers.retain(|&p| p != peer);
            !peers.is_empty()
        });
    }

    /// Should this block from `peer` be written? At most one `true` per registration.
    pub fn check(&self, peer: PeerId, block: BlockRef) -> bool {
        let mut table = self.table();
        let wanted = table.get(&block).is_some_and(|p| p.contains(&peer));
        if wanted {
            table.remove(&block);
        }
        wanted
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
