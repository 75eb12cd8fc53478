//! Pieces assembled in memory until they are verified, then written to disk
//! in one piece-sized write.
//!
//! Writing each 16 KiB block as it arrives puts every byte through the page
//! cache (a copy, and ext4's delayed-allocation bookkeeping per page) and the
//! kernel's writeback later: a third of a download's CPU time on a fast link.
//! A whole, page-aligned piece can instead be written with `O_DIRECT` (see
//! [`Storage::write_piece`](super::Storage::write_piece)), hashed from memory
//! on the way, and a piece that fails its hash never reaches the disk.
//!
//! Memory is capped: a piece whose first block arrives when the staged
//! buffers (live and pooled) would pass the cap is written block by block as
//! before ([`Put::WriteThrough`]), and so are its later blocks, so that no
//! piece is ever half in memory and half on disk. Buffers are pooled:
//! reusing one costs nothing, a fresh one costs a page fault per 4 KiB.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sha1::{Digest, Sha1};

use super::hasher::Partial;
use super::lock;

/// Buffers for direct I/O start on this boundary (the largest logical block
/// size in common use).
pub const ALIGN: usize = 4096;

/// A zeroed byte buffer whose first byte is [`ALIGN`]-aligned.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN).min(ALIGN);
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for `len` bytes without reallocating.
    fn fits(&self, len: usize) -> bool {
        self.storage.len() - self.start >= len
    }

    /// Memory held, alignment slack included.
    fn footprint(&self) -> usize {
        self.storage.len()
    }

    fn set_len(&mut self, len: usize) {
        debug_assert!(self.fits(len));
        self.len = len;
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// What became of a block handed to [`StagedPieces::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Copied into its piece's buffer.
    Staged,
    /// Not staged: write it to disk now (its piece is written block by block).
    WriteThrough,
    /// Its piece was taken for its hash check: a copy that came too late
    /// (a request duplicated to a second peer), to be neither staged nor
    /// written. Written through, it would land over the piece on disk
    /// after its check; staged, in a buffer nobody takes.
    Late,
}

/// A piece being assembled, hashed as far as its blocks are contiguous from
/// the start: each block is hashed as it lands (or once the gap before it
/// is filled), from the buffer, while it is still in the CPU's cache.
struct Assembly {
    buffer: AlignedBuf,
    sha: Sha1,
    hashed: usize,
    /// Blocks past the hashed prefix: offset to length.
    waiting: BTreeMap<usize, usize>,
    /// A block landed inside the hashed prefix again: the hash so far may
    /// not be of the bytes now in the buffer, so it is taken afresh.
    rehash: bool,
}

impl Assembly {
    fn landed(&mut self, offset: usize, len: usize) {
        if self.rehash {
            return;
        }
        if offset < self.hashed || self.waiting.contains_key(&offset) {
            self.rehash = true;
            self.waiting.clear();
            return;
        }
        self.waiting.insert(offset, len);
        while let Some(len) = self.waiting.remove(&self.hashed) {
            self.sha
                .update(&self.buffer[self.hashed..self.hashed + len]);
            self.hashed += len;
        }
    }
}

/// A whole piece from [`StagedPieces::take`], and its hash so far.
pub struct StagedPiece {
    pub buffer: AlignedBuf,
    /// The hash of the buffer's first `hashed` bytes.
    pub partial: Partial,
}

enum Slot {
    Memory(Arc<Mutex<Assembly>>),
    /// This round of the piece goes to disk block by block.
    Disk,
}

struct Table {
    pieces: HashMap<u32, Slot>,
    /// Pieces taken for their hash check (and not failed since): a bit a
    /// piece, not an entry, so that a torrent of millions of pieces costs
    /// no more than its bitfield.
    taken: crate::storage::Bitfield,
    pool: Vec<AlignedBuf>,
    /// Capacity of every buffer staged or pooled.
    bytes: usize,
}

/// A cloneable handle to the pieces being assembled in memory.
#[derive(Clone)]
pub struct StagedPieces {
    table: Arc<Mutex<Table>>,
    cap: usize,
}

impl StagedPieces {
    /// At most `cap` bytes of buffers, live and pooled (0: stage nothing).
    pub fn new(cap: usize) -> StagedPieces {
        StagedPieces {
            table: Arc::new(Mutex::new(Table {
                pieces: HashMap::new(),
                taken: crate::storage::Bitfield::new(),
                pool: Vec::new(),
                bytes: 0,
            })),
            cap,
        }
    }

    /// Copies `data`, the block at `offset` of `piece` (`piece_size` bytes
    /// long), into the piece's buffer, or says to write it through.
    pub fn put(&self, piece: u32, piece_size: u64, offset: u64, data: &[u8]) -> Put {
        let end = offset.checked_add(data.len() as u64);
        if end.is_none_or(|end| end > piece_size) || piece_size > usize::MAX as u64 {
            // Out of range: the write-through path reports it.
            return Put::WriteThrough;
        }
        let size = piece_size as usize;
        let buffer = {
            let mut table = lock(&self.table);
            if table.taken.get(piece as usize).is_some_and(|bit| *bit) {
                return Put::Late;
            }
            match table.pieces.get(&piece) {
                Some(Slot::Memory(buffer)) => buffer.clone(),
                Some(Slot::Disk) => return Put::WriteThrough,
                None => match self.buffer_for(&mut table, size) {
                    Some(buffer) => {
                        let assembly = Arc::new(Mutex::new(Assembly {
                            buffer,
                            sha: Sha1::new(),
                            hashed: 0,
                            waiting: BTreeMap::new(),
                            rehash: false,
                        }));
                        table.pieces.insert(piece, Slot::Memory(assembly.clone()));
                        assembly
                    }
                    None => {
                        table.pieces.insert(piece, Slot::Disk);
                        return Put::WriteThrough;
                    }
                },
            }
        };
        // The copy and the hash happen under the piece's own lock, not the
        // table's, so writers of different pieces never wait for each other.
        let mut assembly = lock(&buffer);
        if assembly.buffer.len() != size {
            return Put::WriteThrough;
        }
        let offset = offset as usize;
        assembly.buffer[offset..offset + data.len()].copy_from_slice(data);
        assembly.landed(offset, data.len());
        Put::Staged
    }

    /// A pooled or new buffer of `size` bytes, if the cap allows.
    fn buffer_for(&self, table: &mut Table, size: usize) -> Option<AlignedBuf> {
        if let Some(i) = table.pool.iter().position(|b| b.fits(size)) {
            let mut buffer = table.pool.swap_remove(i);
            buffer.set_len(size);
            return Some(buffer);
        }
        // Pooled buffers too small for this piece (only the last is shorter)
        // make room for it.
        while table.bytes + size + ALIGN > self.cap {
            let dropped = table.pool.pop()?;
            table.bytes -= dropped.footprint();
        }
        let buffer = AlignedBuf::zeroed(size);
        table.bytes += buffer.footprint();
        Some(buffer)
    }

    /// Ends this round of `piece`: its buffer and hash so far if it was
    /// staged (`None` if it was written through, or nothing of it arrived).
    /// The caller hands the buffer back with [`give_back`](Self::give_back)
    /// when done with it.
    pub fn take(&self, piece: u32) -> Option<StagedPiece> {
        let slot = {
            let mut table = lock(&self.table);
            let index = piece as usize;
            if table.taken.len() <= index {
                table.taken.resize(index + 1, false);
            }
            table.taken.set(index, true);
            table.pieces.remove(&piece)?
        };
        let Slot::Memory(shared) = slot else {
            return None;
        };
        // Every block was put before the main loop heard of it, so no put
        // is under way; a clone could only be a put that lost the race with
        // a take, which the picker never allows. Copy out in that case.
        let assembly = match Arc::try_unwrap(shared) {
            Ok(assembly) => assembly.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(shared) => {
                let assembly = lock(&shared);
                let mut buffer = AlignedBuf::zeroed(assembly.buffer.len());
                buffer.copy_from_slice(&assembly.buffer);
                Assembly {
                    buffer,
                    sha: assembly.sha.clone(),
                    hashed: assembly.hashed,
                    waiting: BTreeMap::new(),
                    rehash: assembly.rehash,
                }
            }
        };
        let partial = if assembly.rehash {
            Partial {
                hashed: 0,
                sha: Sha1::new(),
            }
        } else {
            Partial {
                hashed: assembly.hashed as u64,
                sha: assembly.sha,
            }
        };
        Some(StagedPiece {
            buffer: assembly.buffer,
            partial,
        })
    }

    /// `piece` failed its check: blocks of its next round are welcome.
    pub fn reopen(&self, piece: u32) {
        let mut table = lock(&self.table);
        let index = piece as usize;
        if index < table.taken.len() {
            table.taken.set(index, false);
        }
    }

    /// Returns a buffer from [`take`](Self::take) to the pool.
    pub fn give_back(&self, buffer: AlignedBuf) {
        let mut table = lock(&self.table);
        let capacity = buffer.footprint();
        if table.pool.len() < 64 && capacity <= self.cap {
            table.pool.push(buffer);
        } else {
            table.bytes = table.bytes.saturating_sub(capacity);
        }
    }

    /// `buffer`, from [`take`](Self::take), leaves for good (it is kept
    /// elsewhere): it no longer counts against the cap.
    pub fn detach(&self, buffer: &AlignedBuf) {
        let mut table = lock(&self.table);
        table.bytes = table.bytes.saturating_sub(buffer.footprint());
    }

    /// Takes a buffer that was detached into the pool, if the cap allows.
    pub fn adopt(&self, buffer: AlignedBuf) {
        let mut table = lock(&self.table);
        if table.pool.len() < 64 && table.bytes + buffer.footprint() <= self.cap {
            table.bytes += buffer.footprint();
            table.pool.push(buffer);
        }
    }

    /// Frees the pooled buffers (the download is over, or paused).
    pub fn release_pool(&self) {
        let mut table = lock(&self.table);
        let pooled: usize = table.pool.iter().map(AlignedBuf::footprint).sum();
        table.pool.clear();
        table.bytes -= pooled;
    }

    /// Bytes of staging buffers, live and pooled.
    pub fn bytes(&self) -> usize {
        lock(&self.table).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_in_any_order_make_the_piece() {
        let s = StagedPieces::new(1 << 20);
        let data: Vec<u8> = (0..100u32).map(|i| i as u8).collect();
        for (offset, len) in [(40, 40), (0, 40), (80, 20)] {
            assert_eq!(
                s.put(3, 100, offset, &data[offset as usize..][..len]),
                Put::Staged
            );
        }
        let piece = s.take(3).unwrap();
        assert_eq!(&piece.buffer[..], &data[..]);
        assert_eq!(piece.buffer.as_ptr() as usize % ALIGN, 0);
        assert_eq!(piece.partial.hashed, 100, "hashed as the gaps filled");
        assert_eq!(
            piece.partial.sha.finalize().as_slice(),
            Sha1::digest(&data).as_slice()
        );
        assert!(s.take(3).is_none(), "taken means gone");
    }

    #[test]
    fn over_the_cap_a_piece_is_written_through_to_its_end() {
        let s = StagedPieces::new(2 * (100 + ALIGN));
        let block = [1u8; 50];
        assert_eq!(s.put(0, 100, 0, &block), Put::Staged);
        assert_eq!(s.put(1, 100, 0, &block), Put::Staged);
        assert_eq!(s.put(2, 100, 0, &block), Put::WriteThrough);
        // Room again: piece 2 still goes to disk, never half and half.
        let zero = s.take(0).unwrap();
        assert_eq!(zero.partial.hashed, 50, "the second half never came");
        s.give_back(zero.buffer);
        assert_eq!(s.put(2, 100, 50, &block), Put::WriteThrough);
        assert!(s.take(2).is_none(), "written through: nothing staged");
        // Its next round (it failed its check) is staged, in the pooled
        // buffer.
        s.reopen(2);
        assert_eq!(s.put(2, 100, 50, &block), Put::Staged);
        assert_eq!(s.bytes(), 2 * (100 + ALIGN));
        let two = s.take(2).unwrap();
        s.give_back(two.buffer);
        s.release_pool();
        assert_eq!(s.bytes(), 100 + ALIGN, "piece 1 is still being assembled");
        let one = s.take(1).unwrap().buffer;
        s.detach(&one);
        assert_eq!(s.bytes(), 0);
        s.adopt(one);
        assert_eq!(s.bytes(), 100 + ALIGN, "back in the pool");
        assert_eq!(s.put(5, 100, 0, &block), Put::Staged);
        assert_eq!(s.bytes(), 100 + ALIGN, "from the pool");
    }

    #[test]
    fn a_pooled_buffer_is_reused_and_the_last_piece_fits_in_one() {
        let s = StagedPieces::new(1 << 20);
        assert_eq!(s.put(0, 8192, 0, &[7u8; 8192]), Put::Staged);
        let first = s.take(0).unwrap().buffer;
        let address = first.as_ptr();
        s.give_back(first);
        assert_eq!(s.put(9, 100, 0, &[5u8; 100]), Put::Staged);
        let last = s.take(9).unwrap().buffer;
        assert_eq!(last.len(), 100);
        assert_eq!(last.as_ptr(), address, "the pooled buffer");
        assert_eq!(&last[..], &[5u8; 100][..]);
    }

    #[test]
    fn a_block_landing_twice_in_the_hashed_part_starts_the_hash_afresh() {
        let s = StagedPieces::new(1 << 20);
        assert_eq!(s.put(0, 64, 0, &[1u8; 32]), Put::Staged);
        assert_eq!(s.put(0, 64, 0, &[2u8; 32]), Put::Staged);
        assert_eq!(s.put(0, 64, 32, &[3u8; 32]), Put::Staged);
        let piece = s.take(0).unwrap();
        assert_eq!(piece.partial.hashed, 0, "hashed again from the buffer");
        assert_eq!(&piece.buffer[..32], &[2u8; 32][..], "the last copy is kept");
        // Twice past a gap: the second copy is what the buffer holds, and
        // it is hashed once the gap is filled.
        assert_eq!(s.put(1, 64, 32, &[1u8; 32]), Put::Staged);
        assert_eq!(s.put(1, 64, 32, &[2u8; 32]), Put::Staged);
        assert_eq!(s.put(1, 64, 0, &[3u8; 32]), Put::Staged);
        assert_eq!(s.take(1).unwrap().partial.hashed, 0);
    }

    #[test]
    fn a_block_outside_its_piece_is_not_staged() {
        let s = StagedPieces::new(1 << 20);
        assert_eq!(s.put(0, 100, 90, &[0u8; 20]), Put::WriteThrough);
        assert_eq!(s.put(0, 100, u64::MAX, &[0u8; 2]), Put::WriteThrough);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn a_late_copy_after_the_check_is_neither_staged_nor_written() {
        let s = StagedPieces::new(1 << 20);
        assert_eq!(s.put(4, 100, 0, &[1u8; 100]), Put::Staged);
        let first = s.take(4).unwrap();
        let held = s.bytes();
        // A second peer's copy of a block, after the piece went to its check.
        assert_eq!(s.put(4, 100, 0, &[9u8; 50]), Put::Late);
        assert_eq!(s.bytes(), held, "no buffer for it");
        // A written-through piece's late copy is refused as well.
        let tiny = StagedPieces::new(0);
        assert_eq!(tiny.put(5, 100, 0, &[1u8; 50]), Put::WriteThrough);
        assert!(tiny.take(5).is_none());
        assert_eq!(tiny.put(5, 100, 50, &[9u8; 50]), Put::Late);
        // A piece that failed its check starts a new round, staged or
        // written through.
        s.give_back(first.buffer);
        s.reopen(4);
        assert_eq!(s.put(4, 100, 0, &[2u8; 100]), Put::Staged);
        assert_eq!(&s.take(4).unwrap().buffer[..], &[2u8; 100][..]);
        tiny.reopen(5);
        assert_eq!(tiny.put(5, 100, 0, &[1u8; 50]), Put::WriteThrough);
    }

    #[test]
    fn a_cap_of_zero_stages_nothing() {
        let s = StagedPieces::new(0);
        assert_eq!(s.put(0, 100, 0, &[0u8; 10]), Put::WriteThrough);
    }
}
