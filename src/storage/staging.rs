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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha1::{Digest, Sha1};

use super::hasher::Partial;
use super::lock;

/// Buffers for direct I/O start on this boundary (the largest logical block
/// size in common use).
pub const ALIGN: usize = 4096;

/// Buffers for pieces of at least this size are cut from chunks that
/// the kernel may back with transparent huge pages (see [`Chunk`]).
const CHUNKED_FROM: usize = 512 << 10;
/// The size of a huge page on x86-64 and most arm64 kernels.
const HUGE: usize = 2 << 20;
/// Buffers kept in the pool for reuse, at most (within the cap).
const MAX_POOLED: usize = 64;

/// A zeroed byte buffer whose first byte is [`ALIGN`]-aligned.
pub struct AlignedBuf {
    /// The first byte; the buffer owns `cap` bytes from here, alone.
    ptr: *mut u8,
    cap: usize,
    len: usize,
    /// Memory held, counted against the staging cap.
    footprint: usize,
    memory: Memory,
}

enum Memory {
    /// An allocation of its own (alignment slack included).
    Heap(*mut [u8]),
    /// Part of a chunk that other buffers share, kept mapped while any
    /// of them lives.
    Chunk { _alive: Arc<Chunk> },
}

// SAFETY: a buffer is the only owner of its `cap` bytes (buffers cut from
// one chunk never overlap), and it reads or writes them only through
// `&self` / `&mut self`, so it is as thread-safe as a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above.
unsafe impl Sync for AlignedBuf {}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Memory::Heap(raw) = self.memory {
            // SAFETY: `raw` came from `Box::into_raw` in `zeroed` and is
            // dropped once, here.
            drop(unsafe { Box::from_raw(raw) });
        }
    }
}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + ALIGN].into_boxed_slice();
        let start = storage.as_ptr().align_offset(ALIGN).min(ALIGN);
        let footprint = storage.len();
        // The buffer's pointer comes from the raw allocation, not from the
        // Box before it is given up.
        let raw = Box::into_raw(storage);
        // SAFETY: `start <= ALIGN`, within the `len + ALIGN` bytes.
        let ptr = unsafe { raw.cast::<u8>().add(start) };
        AlignedBuf {
            ptr,
            cap: footprint - start,
            len,
            footprint,
            memory: Memory::Heap(raw),
        }
    }

    /// A buffer of its own holding a copy of `bytes` (for a buffer another
    /// holder still shares).
    pub fn copy_of(bytes: &[u8]) -> AlignedBuf {
        let mut buffer = AlignedBuf::zeroed(bytes.len());
        buffer.copy_from_slice(bytes);
        buffer
    }

    /// Zeroed buffers of `len` bytes, as many as one allocation holds: for
    /// pieces of [`CHUNKED_FROM`] or more, those that fit in a chunk of
    /// whole huge pages (two of 1 MiB in 2 MiB); otherwise one.
    pub fn zeroed_batch(len: usize) -> Vec<AlignedBuf> {
        let slot = len.div_ceil(ALIGN).max(1) * ALIGN;
        if slot < CHUNKED_FROM {
            return vec![AlignedBuf::zeroed(len)];
        }
        let (chunk_len, count) = if slot <= HUGE {
            (HUGE, HUGE / slot)
        } else {
            (slot.div_ceil(HUGE) * HUGE, 1)
        };
        let Some(chunk) = Chunk::map(chunk_len) else {
            return vec![AlignedBuf::zeroed(len)];
        };
        let chunk = Arc::new(chunk);
        (0..count)
            .map(|i| AlignedBuf {
                // SAFETY: `i * slot + slot <= chunk_len`: inside the chunk.
                ptr: unsafe { chunk.start.add(i * slot) },
                cap: slot,
                len,
                footprint: slot,
                memory: Memory::Chunk {
                    _alive: chunk.clone(),
                },
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for `len` bytes without reallocating.
    fn fits(&self, len: usize) -> bool {
        self.cap >= len
    }

    /// Memory held, alignment slack included.
    fn footprint(&self) -> usize {
        self.footprint
    }

    fn set_len(&mut self, len: usize) {
        debug_assert!(self.fits(len));
        self.len = len;
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len <= cap` bytes from `ptr` are this buffer's,
        // initialised (zeroed when mapped or allocated).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Anonymous memory, 2 MiB-aligned and a whole number of huge pages long,
/// which the kernel is asked to back with transparent huge pages
/// (`MADV_HUGEPAGE`; where THP is off, ordinary pages). The point is the
/// `O_DIRECT` write of each piece: from 4 KiB pages scattered in physical
/// memory a 1 MiB write took 1 to 2 requests to the device and pinned 256
/// pages; from a huge page, one request, one pin. 1 GiB from one seeder
/// here, 8 downloads each: 1040 write requests instead of 1170 to 2060, the
/// device busy 0.53 to 0.85 s instead of 0.75 to 1.33 s, done in 1.99 s
/// instead of 2.13 s (medians), and streamed in 2.10 s instead of 2.32 s.
struct Chunk {
    /// The mapping, as `munmap` wants it.
    base: *mut libc::c_void,
    mapped: usize,
    /// Its first 2 MiB boundary.
    start: *mut u8,
}

// SAFETY: a chunk is plain memory; the buffers cut from it own disjoint
// parts (see `AlignedBuf`), and the chunk itself only unmaps on drop.
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn map(len: usize) -> Option<Chunk> {
        // One huge page more, so that a 2 MiB boundary lies inside.
        let mapped = len.checked_add(HUGE)?;
        // SAFETY: a fresh private anonymous mapping; nothing else refers
        // to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let offset = (base as usize).next_multiple_of(HUGE) - base as usize;
        // SAFETY: `offset < HUGE`, so `offset + len <= mapped`.
        let start = unsafe { (base as *mut u8).add(offset) };
        // Advice only: without it (THP off) the memory is ordinary pages.
        // SAFETY: the range lies inside the mapping.
        unsafe { libc::madvise(start.cast(), len, libc::MADV_HUGEPAGE) };
        Some(Chunk {
            base,
            mapped,
            start,
        })
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`; every buffer cut from it is
        // gone (they hold the Arc this drops with).
        unsafe { libc::munmap(self.base, self.mapped) };
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
    /// Hashed as its blocks land. False for a piece left for a batch hash,
    /// and once a block lands inside the hashed prefix again (the hash so
    /// far may not be of the bytes now in the buffer): then it is hashed
    /// afresh, whole, when complete.
    hashing: bool,
    sha: Sha1,
    hashed: usize,
    /// Blocks past the hashed prefix: offset to length.
    waiting: BTreeMap<usize, usize>,
}

impl Assembly {
    fn landed(&mut self, offset: usize, len: usize) {
        if !self.hashing {
            return;
        }
        if offset < self.hashed || self.waiting.contains_key(&offset) {
            self.hashing = false;
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
    /// Pieces begun from now on are left unhashed for a batch hash.
    batched: Arc<AtomicBool>,
    /// Bytes the cap grows by while pieces are hashed in batches (for the
    /// pieces waiting for theirs).
    batch_allowance: usize,
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
            batched: Arc::new(AtomicBool::new(false)),
            batch_allowance: 0,
        }
    }

    /// While pieces are hashed in batches, `bytes` more may be staged.
    pub fn with_batch_allowance(mut self, bytes: usize) -> StagedPieces {
        self.batch_allowance = bytes;
        self
    }

    /// The cap now.
    fn cap(&self) -> usize {
        if self.batched.load(Ordering::Relaxed) {
            self.cap + self.batch_allowance
        } else {
            self.cap
        }
    }

    /// Whether pieces begun from now on are hashed as their blocks land
    /// (false), or left for [`take`](Self::take) to give with nothing
    /// hashed, to be hashed many at once (true; see
    /// [`super::batch_sha1`]). Shared by every clone.
    pub fn hash_in_batches(&self, batched: bool) {
        self.batched.store(batched, Ordering::Relaxed);
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
                            hashing: !self.batched.load(Ordering::Relaxed),
                            sha: Sha1::new(),
                            hashed: 0,
                            waiting: BTreeMap::new(),
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
        while table.bytes + size + ALIGN > self.cap() {
            let dropped = table.pool.pop()?;
            table.bytes -= dropped.footprint();
        }
        let mut batch = AlignedBuf::zeroed_batch(size).into_iter();
        let buffer = batch.next()?;
        table.bytes += buffer.footprint();
        // The rest of its chunk waits in the pool for the next pieces, as
        // far as the cap allows.
        for spare in batch {
            self.pool_if_room(table, spare);
        }
        Some(buffer)
    }

    /// Pools `buffer`, not yet counted against the cap, if the cap and
    /// [`MAX_POOLED`] allow; otherwise it is freed.
    fn pool_if_room(&self, table: &mut Table, buffer: AlignedBuf) {
        if table.pool.len() < MAX_POOLED && table.bytes + buffer.footprint() <= self.cap() {
            table.bytes += buffer.footprint();
            table.pool.push(buffer);
        }
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
                Assembly {
                    buffer: AlignedBuf::copy_of(&assembly.buffer),
                    hashing: assembly.hashing,
                    sha: assembly.sha.clone(),
                    hashed: assembly.hashed,
                    waiting: BTreeMap::new(),
                }
            }
        };
        let partial = if !assembly.hashing {
            Partial::nothing()
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
        if table.pool.len() < MAX_POOLED && capacity <= self.cap() {
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
        self.pool_if_room(&mut lock(&self.table), buffer);
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

    /// Bytes the cap leaves for new pieces (pooled buffers count as room).
    pub fn room(&self) -> usize {
        let table = lock(&self.table);
        let pooled: usize = table.pool.iter().map(AlignedBuf::footprint).sum();
        (self.cap() + pooled).saturating_sub(table.bytes)
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
    fn pieces_hashed_in_batches_come_whole_and_unhashed() {
        let s = StagedPieces::new(1 << 20);
        s.hash_in_batches(true);
        let data: Vec<u8> = (0..100u32).map(|i| (i * 7) as u8).collect();
        for (offset, len) in [(0, 40), (40, 40), (80, 20)] {
            assert_eq!(
                s.put(3, 100, offset, &data[offset as usize..][..len]),
                Put::Staged
            );
        }
        let piece = s.take(3).unwrap();
        assert_eq!(&piece.buffer[..], &data[..]);
        assert_eq!(piece.partial.hashed, 0, "nothing hashed on arrival");
        assert_eq!(
            piece.partial.sha.finalize().as_slice(),
            Sha1::digest(b"").as_slice()
        );
    }

    #[test]
    fn the_cap_grows_by_the_allowance_only_while_hashing_in_batches() {
        let slot = 100 + ALIGN;
        let s = StagedPieces::new(slot).with_batch_allowance(2 * slot);
        let block = [3u8; 100];
        assert_eq!(s.put(0, 100, 0, &block), Put::Staged);
        assert_eq!(s.put(1, 100, 0, &block), Put::WriteThrough, "at the cap");
        s.hash_in_batches(true);
        assert_eq!(s.room(), 2 * slot);
        assert_eq!(s.put(2, 100, 0, &block), Put::Staged);
        assert_eq!(s.put(3, 100, 0, &block), Put::Staged);
        assert_eq!(
            s.put(4, 100, 0, &block),
            Put::WriteThrough,
            "allowance spent"
        );
        assert_eq!(s.room(), 0);
        assert_eq!(s.take(2).unwrap().partial.hashed, 0, "left for a batch");
        assert_eq!(s.take(0).unwrap().partial.hashed, 100, "begun before");
        // Back to hashing as blocks land: the cap shrinks. A pooled buffer
        // is still reused (it is counted already), but no new one is made.
        s.hash_in_batches(false);
        let three = s.take(3).unwrap();
        s.give_back(three.buffer);
        assert_eq!(s.room(), 0, "two live pieces: over the cap of one");
        assert_eq!(
            s.put(5, 100, 0, &block),
            Put::Staged,
            "in the pooled buffer"
        );
        assert_eq!(s.put(6, 100, 0, &block), Put::WriteThrough);
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
        assert_eq!(
            s.room(),
            2 * (100 + ALIGN) - (100 + ALIGN),
            "piece 1 is live"
        );
        let one = s.take(1).unwrap().buffer;
        s.detach(&one);
        assert_eq!(s.room(), 2 * (100 + ALIGN), "detached: no longer staging's");
        assert_eq!(s.bytes(), 0);
        s.adopt(one);
        assert_eq!(s.bytes(), 100 + ALIGN, "back in the pool");
        assert_eq!(s.put(5, 100, 0, &block), Put::Staged);
        assert_eq!(s.bytes(), 100 + ALIGN, "from the pool");
    }

    #[test]
    fn buffers_of_large_pieces_share_huge_page_chunks() {
        // 1 MiB pieces: two buffers a 2 MiB chunk, on its boundary, apart.
        let mut two = AlignedBuf::zeroed_batch(1 << 20);
        assert_eq!(two.len(), 2);
        let (a, b) = (two[0].as_ptr() as usize, two[1].as_ptr() as usize);
        assert_eq!(a % HUGE, 0);
        assert_eq!(b - a, 1 << 20);
        assert!(two
            .iter()
            .all(|x| x.len() == 1 << 20 && x.footprint() == 1 << 20));
        assert!(two[1].iter().all(|&byte| byte == 0), "zeroed");
        two[0].fill(1);
        two[1].fill(2);
        let second = two.pop().unwrap();
        drop(two);
        assert!(second.iter().all(|&byte| byte == 2), "outlives the other");
        // Odd sizes: whole pages, as many as fit; past 2 MiB, one a chunk.
        let odd = AlignedBuf::zeroed_batch(600_000);
        assert_eq!(odd.len(), 3);
        assert_eq!(odd[0].footprint(), 147 * ALIGN);
        let big = AlignedBuf::zeroed_batch(3 << 20);
        assert_eq!((big.len(), big[0].as_ptr() as usize % HUGE), (1, 0));
        // Small pieces: one buffer of their own, as before.
        let small = AlignedBuf::zeroed_batch(16384);
        assert_eq!((small.len(), small[0].footprint()), (1, 16384 + ALIGN));
    }

    #[test]
    fn the_rest_of_a_chunk_waits_in_the_pool_as_far_as_the_cap_allows() {
        let piece = 1 << 20;
        let s = StagedPieces::new(4 << 20);
        assert_eq!(s.put(0, piece, 0, &[1u8; 100]), Put::Staged);
        assert_eq!(
            s.bytes(),
            2 << 20,
            "the piece's buffer and its chunk's other"
        );
        assert_eq!(s.put(1, piece, 0, &[2u8; 100]), Put::Staged);
        assert_eq!(s.bytes(), 2 << 20, "the second piece took the pooled one");
        let (zero, one) = (s.take(0).unwrap().buffer, s.take(1).unwrap().buffer);
        assert_eq!(
            one.as_ptr() as usize - zero.as_ptr() as usize,
            1 << 20,
            "one chunk"
        );
        // A cap with room for one buffer only: the spare is let go.
        let tight = StagedPieces::new((1 << 20) + ALIGN);
        assert_eq!(tight.put(0, piece, 0, &[1u8; 100]), Put::Staged);
        assert_eq!(tight.bytes(), 1 << 20);
        assert_eq!(tight.put(1, piece, 0, &[1u8; 100]), Put::WriteThrough);
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
