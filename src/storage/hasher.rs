//! SHA-1 of pieces as their blocks are written, so that a piece downloaded
//! in order is verified without reading it back from disk (a second pass
//! over every byte, and as many read syscalls as writes). Only for pieces
//! written block by block, when the memory for staging pieces whole (see
//! [`super::staging`]) is spent.
//!
//! The disk writers feed each block right after writing it. Peers answer
//! requests out of order at times (libtorrent's disk threads do), so a block
//! past the hashed prefix is held (a reference to the received buffer, not a
//! copy) until the gap is filled, up to a memory cap; what is not hashed by
//! the time the piece is complete is read back from disk. Each piece's state
//! has its own lock, so writers of different pieces never wait for each
//! other's hashing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use sha1::{Digest, Sha1};

use super::lock;

/// Bytes of out-of-order blocks held across all pieces, at most.
const MAX_HELD: usize = 16 << 20;

/// The hash of a piece's first `hashed` bytes.
pub struct Partial {
    pub hashed: u64,
    pub sha: Sha1,
}

impl Partial {
    /// Nothing hashed yet.
    pub fn nothing() -> Partial {
        Partial {
            hashed: 0,
            sha: Sha1::new(),
        }
    }

    /// Where to go on hashing a piece of `size` bytes from: the bytes
    /// `partial` covers and its state, or the start when there is none (or
    /// it claims more than the piece holds).
    pub fn resume(partial: Option<Partial>, size: u64) -> (u64, Sha1) {
        match partial {
            Some(p) if p.hashed <= size => (p.hashed, p.sha),
            _ => (0, Sha1::new()),
        }
    }
}

/// A piece being hashed: the prefix so far, and blocks past a gap.
struct Progress {
    partial: Partial,
    held: BTreeMap<u64, Bytes>,
    /// A block was written twice (peers racing for it, or a bad peer's
    /// block replaced). Which copy is on disk depends on the order of the
    /// writes, not of the feeds, so only reading it back can tell.
    poisoned: bool,
}

/// A cloneable handle to the table of pieces being hashed.
#[derive(Clone, Default)]
pub struct PieceHashers {
    pieces: Arc<Mutex<HashMap<u32, Arc<Mutex<Progress>>>>>,
    held: Arc<AtomicUsize>,
}

impl PieceHashers {
    pub fn new() -> PieceHashers {
        PieceHashers::default()
    }

    /// Takes in a block of `piece` at `offset` that was just written.
    pub fn feed(&self, piece: u32, offset: u64, data: &Bytes) {
        let progress = lock(&self.pieces)
            .entry(piece)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Progress {
                    partial: Partial::nothing(),
                    held: BTreeMap::new(),
                    poisoned: false,
                }))
            })
            .clone();
        let mut progress = lock(&progress);
        let p = &mut *progress;
        if p.poisoned {
            return;
        }
        if offset < p.partial.hashed || p.held.contains_key(&offset) {
            p.poisoned = true;
            let held: usize = p.held.values().map(Bytes::len).sum();
            self.held.fetch_sub(held, Ordering::Relaxed);
            p.held.clear();
            return;
        }
        if p.partial.hashed == offset {
            p.partial.sha.update(data);
            p.partial.hashed += data.len() as u64;
            // The gap may be filled: hash what was waiting on it.
            while let Some(next) = p.held.remove(&p.partial.hashed) {
                self.held.fetch_sub(next.len(), Ordering::Relaxed);
                p.partial.sha.update(&next);
                p.partial.hashed += next.len() as u64;
            }
        } else if self.held.fetch_add(data.len(), Ordering::Relaxed) + data.len() <= MAX_HELD {
            p.held.insert(offset, data.clone());
        } else {
            // Over the cap: read back at verification instead.
            self.held.fetch_sub(data.len(), Ordering::Relaxed);
        }
    }

    /// Removes and returns what was hashed of `piece` (None: read it all
    /// back): at verification, so each round of a piece starts afresh.
    pub fn take(&self, piece: u32) -> Option<Partial> {
        let progress = lock(&self.pieces).remove(&piece)?;
        // A writer may still hold a clone for a moment; it has finished its
        // update when the lock is ours.
        let mut guard = lock(&progress);
        let held: usize = guard.held.values().map(Bytes::len).sum();
        self.held.fetch_sub(held, Ordering::Relaxed);
        guard.held.clear();
        if guard.poisoned {
            return None;
        }
        Some(Partial {
            hashed: guard.partial.hashed,
            sha: guard.partial.sha.clone(),
        })
    }

    /// Bytes held in memory for out-of-order blocks.
    pub fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_in_any_order_hash_the_piece_and_nothing_stays_held() {
        let h = PieceHashers::new();
        let data = Bytes::from((0..80u32).map(|i| i as u8).collect::<Vec<u8>>());
        let block = |i: u64| data.slice(i as usize * 16..(i as usize + 1) * 16);
        for i in [2u64, 0, 4, 1] {
            h.feed(0, i * 16, &block(i));
        }
        assert_eq!(h.held_bytes(), 16, "block 4 waits for block 3");
        let p = h.take(0).unwrap();
        assert_eq!(p.hashed, 48);
        assert_eq!(
            p.sha.finalize().as_slice(),
            Sha1::digest(&data[..48]).as_slice()
        );
        assert_eq!(h.held_bytes(), 0, "taking a piece lets its held blocks go");
        assert!(h.take(0).is_none(), "taken means gone");
        for i in [1u64, 0, 2, 3, 4] {
            h.feed(7, i * 16, &block(i));
        }
        let p = h.take(7).unwrap();
        assert_eq!(p.hashed, 80);
        assert_eq!(p.sha.finalize().as_slice(), Sha1::digest(&data).as_slice());
    }

    #[test]
    fn a_block_written_twice_leaves_the_piece_to_be_read_back() {
        let h = PieceHashers::new();
        let data = Bytes::from(vec![7u8; 64]);
        let other = Bytes::from(vec![9u8; 16]);
        h.feed(0, 0, &data.slice(0..16));
        h.feed(0, 0, &other); // hashed already: which copy is on disk?
        h.feed(0, 16, &data.slice(16..32));
        assert!(h.take(0).is_none());
        h.feed(1, 32, &data.slice(32..48));
        h.feed(1, 32, &other); // held, then written again
        assert_eq!(h.held_bytes(), 0);
        assert!(h.take(1).is_none());
    }

    #[test]
    fn held_blocks_stop_at_the_cap() {
        let h = PieceHashers::new();
        let big = Bytes::from(vec![1u8; MAX_HELD / 2 + 1]);
        h.feed(0, 1 << 30, &big);
        h.feed(1, 1 << 30, &big);
        assert_eq!(h.held_bytes(), big.len(), "the second is over the cap");
        h.take(0);
        h.take(1);
        assert_eq!(h.held_bytes(), 0);
    }
}
