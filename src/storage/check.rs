//! Hashing pieces on every core: checking existing data, and hashing new
//! content for `swarmfs create`.
//!
//! Workers take pieces in ascending order from a shared counter, so the files
//! are still read almost sequentially (good for read-ahead on a cold cache)
//! while each core hashes its own piece. The `sha1` crate uses the CPU's SHA
//! extensions when it has them.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use sha1::{Digest, Sha1};

use super::disk::{Storage, StorageError};
use super::{lock, Bitfield};

/// How many hashing threads to use: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    let results = for_each_piece(storage.piece_count(), threads, progress, |piece, buf| {
        if want(piece) {
            storage.verify_piece(piece, buf)
        } else {
            Ok(false)
        }
    })?;
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
    for_each_piece(storage.piece_count(), threads, progress, |piece, buf| {
        buf.resize(layout.piece_size(piece) as usize, 0);
        storage.read_block(piece, 0, buf)?;
        Ok(Sha1::digest(&buf[..]).into())
    })
}

/// Runs `work` for pieces `0..count` on `threads` threads, each with its own
/// reusable buffer, and returns the results in piece order. The first error
/// stops every worker.
fn for_each_piece<T: Send + Default + Clone>(
    count: u32,
    threads: usize,
    progress: &(dyn Fn(u32) + Sync),
    work: impl Fn(u32, &mut Vec<u8>) -> Result<T, StorageError> + Sync,
) -> Result<Vec<T>, StorageError> {
    let results: Mutex<Vec<T>> = Mutex::new(vec![T::default(); count as usize]);
    let next = AtomicU32::new(0);
    let done = AtomicU32::new(0);
    let failure: Mutex<Option<StorageError>> = Mutex::new(None);
    let stop = AtomicBool::new(false);

    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let piece = next.fetch_add(1, Ordering::Relaxed);
                    if piece >= count {
                        break;
                    }
                    match work(piece, &mut buf) {
                        Ok(value) => lock(&results)[piece as usize] = value,
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            lock(&failure).get_or_insert(e);
                            break;
                        }
                    }
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                }
            });
        }
    });

    if let Some(e) = lock(&failure).take() {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}
