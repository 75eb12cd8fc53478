//! Which blocks to request from which peer.
//!
//! - Random pieces until [`RANDOM_FIRST_PIECES`] are complete (a new peer
//!   gets something to trade quickly), then rarest first by an availability
//!   count kept from bitfields and haves; urgent pieces (reads waiting on
//!   them) go before both, and while someone streams (urgent pieces, or a
//!   recent read: [`Picker::stream_at`]) the pieces after them follow in
//!   order (a streaming reader gets the whole download).
//! - A piece is assigned to one peer (its owner), so a piece that fails its
//!   hash points at its sender. When the owner chokes us or leaves, the blocks
//!   it delivered stay and the piece becomes an orphan another peer adopts.
//! - Endgame: when a peer finds nothing unrequested, it may also request
//!   blocks already requested from others (up to [`ENDGAME_REQUESTERS`] at
//!   once); the first copy to arrive wins and the others are cancelled.
//! - Every received block remembers its sender, for blame on a hash failure.
//!
//! Pure state: no I/O, no clock. The main loop owns it.

use std::collections::{BTreeMap, BTreeSet};

use crate::storage::Bitfield;
use crate::wire::{BlockRef, Geometry, MAX_BLOCK};

/// Engine-assigned peer identifier, never reused while the engine runs.
pub type PeerId = u64;

pub const RANDOM_FIRST_PIECES: u32 = 4;
/// How many peers may have one block requested at once during endgame.
pub const ENDGAME_REQUESTERS: usize = 3;
/// A read's piece counts as late once this many of the next
/// [`OVERTAKE_SPAN`] pieces are verified before it.
const OVERTAKEN_BY: usize = 4;
const OVERTAKE_SPAN: usize = 32;

/// The peers a block is requested from: one nearly always, a few in
/// endgame or a rescue. One is held without an allocation: a `Vec` here
/// and in the piecekeeper cost a `malloc` and a `free` each for every
/// 16 KiB block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requesters {
    One(PeerId),
    Many(Vec<PeerId>),
}

impl Requesters {
    pub fn contains(&self, peer: PeerId) -> bool {
        match self {
            Requesters::One(p) => *p == peer,
            Requesters::Many(peers) => peers.contains(&peer),
        }
    }

    /// Is `peer` the only one?
    pub fn is_only(&self, peer: PeerId) -> bool {
        match self {
            Requesters::One(p) => *p == peer,
            Requesters::Many(peers) => peers[..] == [peer],
        }
    }

    /// How many (never none: an entry with none is dropped).
    pub fn count(&self) -> usize {
        match self {
            Requesters::One(_) => 1,
            Requesters::Many(peers) => peers.len(),
        }
    }

    /// Adds `peer` (the caller knows it is not there yet).
    pub fn push(&mut self, peer: PeerId) {
        match self {
            Requesters::One(p) => *self = Requesters::Many(vec![*p, peer]),
            Requesters::Many(peers) => peers.push(peer),
        }
    }

    /// Takes `peer` out; true if nobody is left, and the caller must then
    /// drop the whole entry.
    pub fn remove(&mut self, peer: PeerId) -> bool {
        match self {
            Requesters::One(p) => *p == peer,
            Requesters::Many(peers) => {
                peers.retain(|&p| p != peer);
                peers.is_empty()
            }
        }
    }

    /// The peers other than `peer`.
    pub fn others(&self, peer: PeerId) -> Vec<PeerId> {
        match self {
            Requesters::One(p) if *p == peer => Vec::new(),
            Requesters::One(p) => vec![*p],
            Requesters::Many(peers) => peers.iter().copied().filter(|&p| p != peer).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Missing,
    Requested(Requesters),
    Received(PeerId),
}

#[derive(Debug)]
struct Partial {
    owner: Option<PeerId>,
    blocks: Vec<Block>,
    received: usize,
}

impl Partial {
    fn complete(&self) -> bool {
        self.received == self.blocks.len()
    }
}

/// What a block's arrival means.
#[derive(Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Every block of the piece is in: it is ready for its hash check.
    pub piece_complete: bool,
    /// Other peers that had this block requested (endgame): send them cancels.
    pub cancel: Vec<PeerId>,
}

pub struct Picker {
    geometry: Geometry,
    have: Bitfield,
    have_count: u32,
    availability: Vec<u32>,
    partial: BTreeMap<u32, Partial>,
    urgent: BTreeSet<u32>,
    /// Where a reader streaming through the torrent last read, until it is
    /// told to stop ([`Picker::stop_streaming`]).
    stream_from: Option<u32>,
    rng: super::Xorshift,
}

impl Picker {
    pub fn new(geometry: Geometry, have: Bitfield, seed: u64) -> Picker {
        Picker {
            availability: vec![0; geometry.piece_count as usize],
            have_count: have.count_ones() as u32,
            geometry,
            have,
            partial: BTreeMap::new(),
            urgent: BTreeSet::new(),
            stream_from: None,
            rng: super::Xorshift::new(seed),
        }
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn have_count(&self) -> u32 {
        self.have_count
    }

    pub fn is_complete(&self) -> bool {
        self.have_count == self.geometry.piece_count
    }

    pub fn availability(&self, piece: u32) -> u32 {
        self.availability[piece as usize]
    }

    /// A peer announced its pieces (bitfield) or joined with them.
    pub fn add_peer_pieces(&mut self, pieces: &Bitfield) {
        for p in pieces.iter_ones() {
            self.availability[p] += 1;
        }
    }

    /// A peer left: its pieces no longer count, its requests are void.
    pub fn remove_peer(&mut self, peer: PeerId, pieces: &Bitfield) {
        for p in pieces.iter_ones() {
            self.availability[p] = self.availability[p].saturating_sub(1);
        }
        self.release(peer);
    }

    pub fn add_peer_piece(&mut self, piece: u32) {
        self.availability[piece as usize] += 1;
    }

    /// Does `pieces` hold anything we still need?
    pub fn wants_any(&self, pieces: &Bitfield) -> bool {
        pieces.iter_ones().any(|p| !self.have[p])
    }

    /// Is a read waiting on any piece (someone streams a file)?
    pub fn any_urgent(&self) -> bool {
        !self.urgent.is_empty()
    }

    /// Is someone streaming: a read waits, or one read recently? Pieces then
    /// come in order from the reader on, and are worth keeping in memory.
    pub fn streaming(&self) -> bool {
        self.any_urgent() || self.stream_from.is_some()
    }

    /// A reader is reading `piece`: new pieces come in order from there, also
    /// once the pieces it pulled forward are all here. Without that, the
    /// download would go back to rarest first whenever it ran ahead of the
    /// reader's window, and scatter pieces the reader finds on disk later.
    pub fn stream_at(&mut self, piece: u32) {
        self.stream_from = Some(piece);
    }

    /// The reader stopped reading: rarest first again, once no read waits.
    pub fn stop_streaming(&mut self) {
        self.stream_from = None;
    }

    /// Marks pieces as urgent (a read is waiting on them): picked before all others.
    pub fn make_urgent(&mut self, pieces: impl IntoIterator<Item = u32>) {
        for p in pieces {
            if p < self.geometry.piece_count && !self.have[p as usize] {
                self.urgent.insert(p);
            }
        }
    }

    /// The peer choked us or left: blocks requested only from it become
    /// missing again, and its pieces become orphans for others to finish.
    pub fn release(&mut self, peer: PeerId) {
        for partial in self.partial.values_mut() {
            if partial.owner == Some(peer) {
                partial.owner = None;
            }
            for block in &mut partial.blocks {
                if let Block::Requested(peers) = block {
                    if peers.remove(peer) {
                        *block = Block::Missing;
                    }
                }
            }
        }
    }

    /// A request to `peer` was withdrawn (cancelled or rejected).
    pub fn withdraw(&mut self, peer: PeerId, block: BlockRef) {
        if let Some(slot) = self.block_mut(block) {
            if let Block::Requested(peers) = slot {
                if peers.remove(peer) {
                    *slot = Block::Missing;
                }
            }
        }
    }

    /// Up to `want` blocks to request from `peer`, which has `pieces`.
    pub fn pick(&mut self, peer: PeerId, pieces: &Bitfield, want: usize) -> Vec<BlockRef> {
        let mut out = Vec::new();
        if want == 0 {
            return out;
        }
        // 0. The piece a read waits on, if its owner stalled.
        self.rescue_waited_on(peer, pieces, want, &mut out);
        if out.len() >= want {
            return out;
        }
        // 1. Pieces this peer owns; 2. orphans it can adopt.
        let owned: Vec<u32> = self
            .partial
            .iter()
            .filter(|(_, p)| p.owner == Some(peer))
            .map(|(&i, _)| i)
            .chain(
                self.partial
                    .iter()
                    .filter(|(&i, p)| p.owner.is_none() && !p.complete() && pieces[i as usize])
                    .map(|(&i, _)| i),
            )
            .collect();
        for piece in owned {
            self.take_missing(piece, peer, want, &mut out);
            if out.len() >= want {
                return out;
            }
        }
        // 3. New pieces.
        while out.len() < want {
            let Some(piece) = self.choose_new_piece(pieces) else {
                break;
            };
            let blocks = self.geometry.piece_size(piece).div_ceil(MAX_BLOCK as u64) as usize;
            self.partial.insert(
                piece,
                Partial {
                    owner: None,
                    blocks: vec![Block::Missing; blocks],
                    received: 0,
                },
            );
            self.take_missing(piece, peer, want, &mut out);
        }
        // 4. Endgame: nothing unrequested left that this peer could fetch.
        if out.is_empty() {
            self.endgame(peer, pieces, want, &mut out);
        }
        out
    }

    /// The first piece a read waits on, when pieces after it are already
    /// verified ([`OVERTAKEN_BY`] of the next [`OVERTAKE_SPAN`]), is late
    /// at its owner (a peer that stalls, as every peer does now and then for
    /// a tenth of a second): this peer asks for its blocks too, the first
    /// copy in wins and the other request is cancelled.
    fn rescue_waited_on(
        &mut self,
        peer: PeerId,
        pieces: &Bitfield,
        want: usize,
        out: &mut Vec<BlockRef>,
    ) {
        let Some(&first) = self.urgent.first() else {
            return;
        };
        if !pieces[first as usize] {
            return;
        }
        let from = first as usize + 1;
        let to = (from + OVERTAKE_SPAN).min(self.have.len());
        if from >= to || self.have[from..to].count_ones() < OVERTAKEN_BY {
            return;
        }
        let size = self.geometry.piece_size(first);
        let Some(partial) = self.partial.get_mut(&first) else {
            return;
        };
        let owner = partial.owner;
        if owner == Some(peer) {
            return;
        }
        for (i, block) in partial.blocks.iter_mut().enumerate() {
            if out.len() >= want {
                break;
            }
            match block {
                Block::Missing => *block = Block::Requested(Requesters::One(peer)),
                // Owed by the owner alone: not by an earlier rescuer.
                Block::Requested(peers) if owner.is_some_and(|o| peers.is_only(o)) => {
                    peers.push(peer)
                }
                _ => continue,
            }
            out.push(block_ref(first, i, size));
        }
    }

    fn take_missing(&mut self, piece: u32, peer: PeerId, want: usize, out: &mut Vec<BlockRef>) {
        let size = self.geometry.piece_size(piece);
        let Some(partial) = self.partial.get_mut(&piece) else {
            return;
        };
        partial.owner = Some(peer);
        for (i, block) in partial.blocks.iter_mut().enumerate() {
            if out.len() >= want {
                break;
            }
            if *block == Block::Missing {
                *block = Block::Requested(Requesters::One(peer));
                out.push(block_ref(piece, i, size));
            }
        }
    }

    fn endgame(&mut self, peer: PeerId, pieces: &Bitfield, want: usize, out: &mut Vec<BlockRef>) {
        for (&piece, partial) in self.partial.iter_mut() {
            if !pieces[piece as usize] {
                continue;
            }
            let size = self.geometry.piece_size(piece);
            for (i, block) in partial.blocks.iter_mut().enumerate() {
                if out.len() >= want {
                    return;
                }
                if let Block::Requested(peers) = block {
                    if !peers.contains(peer) && peers.count() < ENDGAME_REQUESTERS {
                        peers.push(peer);
                        out.push(block_ref(piece, i, size));
                    }
                }
            }
        }
    }

    fn choose_new_piece(&mut self, pieces: &Bitfield) -> Option<u32> {
        // Fetchable from this peer, missing, and not yet taken by anyone.
        let unclaimed =
            |p: u32| pieces[p as usize] && !self.have[p as usize] && !self.partial.contains_key(&p);
        let urgent = self.urgent.iter().copied().find(|&p| unclaimed(p));
        if urgent.is_some() {
            return urgent;
        }
        // Someone streams: the pieces after the reader's window come next,
        // in order. Picked rarest first, they would be spread over the file,
        // and a fast reader would overtake the window and find them written
        // to disk (several peers fill more than the window): streaming from
        // three seeders ran at half the download rate, the rest read back
        // from disk after the download ended.
        let from = match (self.urgent.first().copied(), self.stream_from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(from) = from.filter(|&f| f < self.geometry.piece_count) {
            let after = pieces[from as usize..]
                .iter_ones()
                .map(|i| from + i as u32)
                .find(|&p| unclaimed(p));
            if after.is_some() {
                return after;
            }
        }
        self.rarest_unclaimed(pieces)
    }

    /// A piece `pieces` has that is neither had nor taken: the least
    /// available (any, in random-first mode), ties broken uniformly.
    fn rarest_unclaimed(&mut self, pieces: &Bitfield) -> Option<u32> {
        // The candidates as a mask made a byte at a time. This runs for
        // every new piece, over every piece: testing each one against
        // `have` and `partial` made a download quadratic in its piece count
        // (3% of swarmfs's CPU for 1 GiB in 1024 pieces, four times that a
        // GiB for 4 GiB).
        let mut mask: Vec<u8> = pieces
            .as_raw_slice()
            .iter()
            .zip(self.have.as_raw_slice())
            .map(|(p, h)| p & !h)
            .collect();
        for &p in self.partial.keys() {
            if let Some(byte) = mask.get_mut(p as usize / 8) {
                *byte &= !(0x80 >> (p % 8));
            }
        }
        let count = self.geometry.piece_count as usize;
        let random_first = self.have_count < RANDOM_FIRST_PIECES;
        let availability = |p: usize| {
            if random_first {
                0
            } else {
                self.availability[p]
            }
        };
        let mut least = u32::MAX;
        let mut ties = 0u64;
        for p in ones(&mask, count) {
            let a = availability(p);
            if a < least {
                least = a;
                ties = 1;
            } else if a == least {
                ties += 1;
            }
        }
        if ties == 0 {
            return None;
        }
        let chosen = (self.rng.next_u64() % ties) as usize;
        let piece = ones(&mask, count)
            .filter(|&p| availability(p) == least)
            .nth(chosen);
        piece.map(|p| p as u32)
    }

    fn block_mut(&mut self, block: BlockRef) -> Option<&mut Block> {
        if block.offset % MAX_BLOCK != 0 {
            return None;
        }
        self.partial
            .get_mut(&block.piece)?
            .blocks
            .get_mut((block.offset / MAX_BLOCK) as usize)
    }

    /// A block arrived from `peer` (its data already written). `None` when
    /// we did not need it (already received, or not a block we track).
    pub fn received(&mut self, peer: PeerId, block: BlockRef) -> Option<Arrival> {
        let expected_len = {
            let size = self.geometry.piece_size(block.piece);
            (size - block.offset as u64).min(MAX_BLOCK as u64) as u32
        };
        if block.len != expected_len {
            return None;
        }
        let slot = self.block_mut(block)?;
        let cancel = match slot {
            Block::Received(_) => return None,
            Block::Missing => Vec::new(),
            Block::Requested(peers) => peers.others(peer),
        };
        *slot = Block::Received(peer);
        let partial = self.partial.get_mut(&block.piece)?;
        partial.received += 1;
        Some(Arrival {
            piece_complete: partial.complete(),
            cancel,
        })
    }

    /// The piece passed its hash check.
    pub fn verified(&mut self, piece: u32) {
        self.partial.remove(&piece);
        self.urgent.remove(&piece);
        if !self.have[piece as usize] {
            self.have.set(piece as usize, true);
            self.have_count += 1;
        }
    }

    /// The piece failed its hash check: it starts over, and these peers sent
    /// parts of it.
    pub fn failed(&mut self, piece: u32) -> Vec<PeerId> {
        let Some(partial) = self.partial.get_mut(&piece) else {
            return Vec::new();
        };
        let mut senders: Vec<PeerId> = partial
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Received(p) => Some(*p),
                _ => None,
            })
            .collect();
        senders.sort_unstable();
        senders.dedup();
        partial.blocks.fill(Block::Missing);
        partial.received = 0;
        partial.owner = None;
        senders
    }

    /// Pieces currently being fetched, with their owner (for `peers/N/state`).
    pub fn pieces_owned_by(&self, peer: PeerId) -> Vec<u32> {
        self.partial
            .iter()
            .filter(|(_, p)| p.owner == Some(peer))
            .map(|(&i, _)| i)
            .collect()
    }
}

/// The indices below `len` of the bits set in `mask` (most significant
/// bit first, as in a [`Bitfield`]), in order.
fn ones(mask: &[u8], len: usize) -> impl Iterator<Item = usize> + '_ {
    mask.iter()
        .enumerate()
        .filter(|&(_, &byte)| byte != 0)
        .flat_map(|(i, &byte)| {
            let mut rest = byte;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.leading_zeros() as usize;
                rest &= !(0x80 >> bit);
                Some(i * 8 + bit)
            })
        })
        .take_while(move |&p| p < len)
}

fn block_ref(piece: u32, index: usize, piece_size: u64) -> BlockRef {
    let offset = index as u64 * MAX_BLOCK as u64;
    BlockRef {
        piece,
        offset: offset as u32,
        len: (piece_size - offset).min(MAX_BLOCK as u64) as u32,
    }
}

#[cfg(test)]
mod tests;
