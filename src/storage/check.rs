//! Hashing pieces on every core: checking existing data, and hashing new
//! content for `swarmfs create`.
//!
//! Workers take pieces in ascending order from a shared counter, so the files
//! are still read almost sequentially (good for read-ahead on a cold cache)
//! while each core hashes its own run of them, many at once where the CPU
//! can (see [`batch_sha1`]); otherwise one by one with the `sha1` crate,
//! which uses the CPU's SHA extensions when it has them.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use super::batch_sha1;
use super::disk::{Storage, StorageError};
use super::{lock, Bitfield};

/// How many hashing threads to use: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Bytes of pieces one worker holds to hash them together, at most.
const GROUP_BYTES: u64 = 16 << 20;

/// How many consecutive pieces of `piece_length` a worker takes at once:
/// enough to fill the lanes of [`batch_sha1`] where the CPU has them (the
/// memory permitting), else one.
fn group_size(piece_length: u64) -> u32 {
    if !batch_sha1::available() {
        return 1;
    }
    (GROUP_BYTES / piece_length.max(1)).clamp(1, batch_sha1::LANES as u64) as u32
}

/// Verifies the pieces for which `want(piece)` is true and returns the ones
/// whose data matches. `progress` is called after each piece with the number
/// done so far (from any worker thread).
pub fn verify_pieces(
    storage: &Storage,
    threads: usize,
    want: &(dyn Fn(u32) -> bool + Sync),
    progress: &(dyn Fn(u32) + Sync),
) -> Result<Bitfield, StorageError> {
    let group = group_size(storage.layout().piece_length());
    let results = for_each_group(
        storage.piece_count(),
        group,
        threads,
        progress,
        |pieces, bufs| {
            let mut present = Vec::new();
            for (piece, buf) in pieces.clone().zip(bufs.iter_mut()) {
                if want(piece) && storage.read_piece(piece, buf)? {
                    present.push(piece);
                }
            }
            let first = pieces.start;
            let messages: Vec<&[u8]> = present
                .iter()
                .map(|&p| &bufs[(p - first) as usize][..])
                .collect();
            let mut verified = vec![false; pieces.len()];
            for (piece, digest) in present.iter().zip(batch_sha1::digests(&messages)) {
                verified[(piece - first) as usize] = storage.piece_hash_is(*piece, &digest);
            }
            Ok(verified)
        },
    )?;
    Ok(results.into_iter().collect())
}

/// Computes the SHA-1 of every piece. All data must be present: a missing or
/// short file is an error (for `create`, it means a file changed meanwhile).
pub fn hash_pieces(
    storage: &Storage,
    threads: usize,
    progress: &(dyn Fn(u32) + Sync),
) -> Result<Vec<[u8; 20]>, StorageError> {
    let layout = storage.layout();
    let group = group_size(layout.piece_length());
    for_each_group(
        storage.piece_count(),
        group,
        threads,
        progress,
        |pieces, bufs| {
            for (piece, buf) in pieces.zip(bufs.iter_mut()) {
                buf.resize(layout.piece_size(piece) as usize, 0);
                storage.read_block(piece, 0, buf)?;
            }
            let messages: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
            Ok(batch_sha1::digests(&messages))
        },
    )
}

/// Runs `work` for runs of up to `group` consecutive pieces of `0..count`
/// on `threads` threads, each with its own reusable buffers (one a piece
/// of the run, the slice given exactly as long as the run), and returns
/// the results (one a piece) in piece order. The first error stops every
/// worker.
fn for_each_group<T: Send + Default + Clone>(
    count: u32,
    group: u32,
    threads: usize,
    progress: &(dyn Fn(u32) + Sync),
    work: impl Fn(Range<u32>, &mut [Vec<u8>]) -> Result<Vec<T>, StorageError> + Sync,
) -> Result<Vec<T>, StorageError> {
    let group = group.max(1);
    let results: Mutex<Vec<T>> = Mutex::new(vec![T::default(); count as usize]);
    let next = AtomicU32::new(0);
    let done = AtomicU32::new(0);
    let failure: Mutex<Option<StorageError>> = Mutex::new(None);
    let stop = AtomicBool::new(false);

    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut bufs: Vec<Vec<u8>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let first = next.fetch_add(group, Ordering::Relaxed);
                    if first >= count {
                        break;
                    }
                    let pieces = first..first.saturating_add(group).min(count);
                    bufs.resize_with(pieces.len(), Vec::new);
                    match work(pieces.clone(), &mut bufs[..pieces.len()]) {
                        Ok(values) => {
                            let mut results = lock(&results);
                            for (piece, value) in pieces.clone().zip(values) {
                                results[piece as usize] = value;
                            }
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            lock(&failure).get_or_insert(e);
                            break;
                        }
                    }
                    for _ in pieces {
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                }
            });
        }
    });

    if let Some(e) = lock(&failure).take() {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}
