//! The batch hasher: a task that gathers complete pieces and hashes them
//! many at once (see [`crate::storage::batch_sha1`]), on the blocking pool.
//!
//! SHA-1 is half of a fast download's CPU time. On a CPU with AVX-512,
//! sixteen pieces hashed side by side cost 2.5 times less a byte than one
//! at a time with the CPU's SHA instructions; but a download from one
//! peer completes its pieces one after another, in order, so sixteen are
//! only at hand if each waits for the next. This task holds a piece for
//! at most [`HOLD`] (or until the batch is full, the memory for
//! assembling pieces runs short, or the sender says no other piece is on
//! its way: [`BatchHasher::hash_last`]): while one batch is hashed, the next
//! gathers, so under load batches fill by themselves, and a slow
//! download's pieces are held no longer than that.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::storage::batch_sha1::{self, Digest20};
use crate::storage::staging::AlignedBuf;

/// The longest a piece waits for others to fill its batch. At 700 MB/s,
/// 1 MiB pieces come every 1.5 ms: 16 in 24 ms. A reader waiting for the
/// piece (streaming) waits this much more, once per batch.
pub const HOLD: Duration = Duration::from_millis(25);

/// A complete piece, in memory, waiting for its hash.
pub struct Unhashed {
    pub piece: u32,
    pub buffer: AlignedBuf,
    /// Keep it in memory for a streaming reader once verified.
    pub for_readers: bool,
}

/// A piece queued, and whether others are on their way to fill its batch.
struct Job {
    piece: Unhashed,
    more_coming: bool,
}

/// The sending side: pieces go in, never blocking the sender (their
/// number is bounded by the staging memory their buffers come from).
#[derive(Clone)]
pub struct BatchHasher {
    jobs: mpsc::UnboundedSender<Job>,
}

impl BatchHasher {
    /// Starts the task on the current runtime. Batches hold at most
    /// `max_batch` pieces, and are hashed at once when `short_of_memory`
    /// says so (the pieces held keep new ones from being assembled in
    /// memory); each piece, once hashed, goes with its SHA-1 to `hashed`,
    /// called on the blocking pool (it may write to disk).
    pub fn spawn<S, F>(max_batch: usize, short_of_memory: S, hashed: F) -> BatchHasher
    where
        S: Fn() -> bool + Send + 'static,
        F: Fn(Unhashed, Digest20) + Clone + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, max_batch.max(1), short_of_memory, hashed));
        BatchHasher { jobs: tx }
    }

    /// Queues `piece` for hashing; it may wait up to [`HOLD`] for others.
    /// Returns it if the task is gone (the engine is shutting down).
    pub fn hash(&self, piece: Unhashed) -> Result<(), Unhashed> {
        self.send(piece, true)
    }

    /// Queues `piece`, the last one on its way for now (the download's last
    /// piece, say): its batch is hashed at once, not held for pieces that
    /// are not coming. Returns it if the task is gone.
    pub fn hash_last(&self, piece: Unhashed) -> Result<(), Unhashed> {
        self.send(piece, false)
    }

    fn send(&self, piece: Unhashed, more_coming: bool) -> Result<(), Unhashed> {
        self.jobs
            .send(Job { piece, more_coming })
            .map_err(|e| e.0.piece)
    }
}

async fn run<S, F>(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    max_batch: usize,
    short_of_memory: S,
    hashed: F,
) where
    S: Fn() -> bool,
    F: Fn(Unhashed, Digest20) + Clone + Send + 'static,
{
    while let Some(first) = jobs.recv().await {
        let deadline = Instant::now() + HOLD;
        let mut more_coming = first.more_coming;
        let mut batch = vec![first.piece];
        while more_coming && batch.len() < max_batch && !short_of_memory() {
            // Those already queued join at once: no need to wait for them.
            let job = match jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, jobs.recv()).await {
                        Ok(Some(job)) => job,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            more_coming = job.more_coming;
            batch.push(job.piece);
        }
        let hashing = tokio::task::spawn_blocking(move || {
            let messages: Vec<&[u8]> = batch.iter().map(|p| &p.buffer[..]).collect();
            let digests = batch_sha1::digests(&messages);
            batch.into_iter().zip(digests).collect::<Vec<_>>()
        });
        // Awaited before the next batch is gathered: what comes meanwhile
        // makes that batch fuller.
        let Ok(done) = hashing.await else {
            // The runtime is shutting down. (Or hashing panicked, a bug:
            // that batch's pieces stay unverified, and the pieces sent
            // after are hashed by the sender, which finds the task gone.)
            return;
        };
        for (piece, digest) in done {
            let hashed = hashed.clone();
            // One task a piece: their writes go to disk side by side.
            tokio::task::spawn_blocking(move || hashed(piece, digest));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use sha1::{Digest, Sha1};

    use super::*;

    fn piece_bytes(piece: u32, len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(31).wrapping_add(piece * 101) >> 3) as u8)
            .collect()
    }

    /// A hasher of batches of up to 16, never short of memory, that
    /// reports each piece hashed, with its digest.
    fn reporting_hasher() -> (BatchHasher, mpsc::UnboundedReceiver<(u32, Digest20)>) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let hasher = BatchHasher::spawn(
            16,
            || false,
            move |p: Unhashed, digest| {
                let _ = done_tx.send((p.piece, digest));
            },
        );
        (hasher, done_rx)
    }

    /// The next report, within seconds.
    async fn next<T>(reports: &mut mpsc::UnboundedReceiver<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), reports.recv())
            .await
            .expect("hashed")
            .expect("the task lives")
    }

    #[tokio::test]
    async fn every_piece_comes_back_once_with_its_own_hash() {
        let got = Arc::new(Mutex::new(BTreeMap::new()));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let sink = got.clone();
        let hasher = BatchHasher::spawn(
            16,
            || false,
            move |p: Unhashed, digest| {
                let mut got = sink.lock().unwrap();
                assert!(got.insert(p.piece, (p.buffer.to_vec(), digest)).is_none());
                let _ = done_tx.send(());
            },
        );
        // More than a batch, of two lengths (a torrent's last piece is
        // shorter), sent in bursts so that batches of several sizes form.
        let count = 40u32;
        for piece in 0..count {
            let len = if piece == count - 1 { 5000 } else { 1 << 16 };
            let buffer = AlignedBuf::copy_of(&piece_bytes(piece, len));
            let unhashed = Unhashed {
                piece,
                buffer,
                for_readers: false,
            };
            assert!(hasher.hash(unhashed).is_ok());
            if piece % 9 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        for _ in 0..count {
            tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
                .await
                .expect("every piece is hashed within the hold")
                .expect("the task lives");
        }
        let got = got.lock().unwrap();
        assert_eq!(got.len(), count as usize);
        for (&piece, (bytes, digest)) in got.iter() {
            let len = if piece == count - 1 { 5000 } else { 1 << 16 };
            assert_eq!(bytes, &piece_bytes(piece, len));
            assert_eq!(&Sha1::digest(bytes)[..], &digest[..], "piece {piece}");
        }
    }

    #[tokio::test]
    async fn short_of_memory_a_piece_is_hashed_without_waiting() {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let hasher = BatchHasher::spawn(
            16,
            || true,
            move |p: Unhashed, _| {
                let _ = done_tx.send(p.piece);
            },
        );
        let start = std::time::Instant::now();
        let unhashed = Unhashed {
            piece: 2,
            buffer: AlignedBuf::copy_of(&piece_bytes(2, 1 << 14)),
            for_readers: false,
        };
        assert!(hasher.hash(unhashed).is_ok());
        let piece = next(&mut done_rx).await;
        assert_eq!(piece, 2);
        assert!(start.elapsed() < HOLD, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_lone_piece_is_not_held_much_past_the_hold() {
        let (hasher, mut done_rx) = reporting_hasher();
        let start = std::time::Instant::now();
        let bytes = piece_bytes(7, 1 << 14);
        let unhashed = Unhashed {
            piece: 7,
            buffer: AlignedBuf::copy_of(&bytes),
            for_readers: true,
        };
        assert!(hasher.hash(unhashed).is_ok());
        let (piece, digest) = next(&mut done_rx).await;
        assert_eq!(piece, 7);
        assert_eq!(&Sha1::digest(&bytes)[..], &digest[..]);
        assert!(start.elapsed() >= HOLD, "it waited for company");
        assert!(start.elapsed() < HOLD * 20, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn the_last_piece_on_its_way_is_hashed_with_its_batch_at_once() {
        let (hasher, mut done_rx) = reporting_hasher();
        let start = std::time::Instant::now();
        // Three pieces, the third the last on its way: a batch of three,
        // not held for thirteen more.
        for piece in 0..3u32 {
            let unhashed = Unhashed {
                piece,
                buffer: AlignedBuf::copy_of(&piece_bytes(piece, 1 << 14)),
                for_readers: false,
            };
            let queued = if piece == 2 {
                hasher.hash_last(unhashed)
            } else {
                hasher.hash(unhashed)
            };
            assert!(queued.is_ok());
        }
        let mut got = Vec::new();
        for _ in 0..3 {
            let (piece, digest) = next(&mut done_rx).await;
            assert_eq!(&Sha1::digest(piece_bytes(piece, 1 << 14))[..], &digest[..]);
            got.push(piece);
        }
        got.sort();
        assert_eq!(got, [0, 1, 2]);
        assert!(start.elapsed() < HOLD, "held: {:?}", start.elapsed());
    }
}
