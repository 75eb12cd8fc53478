//! Verified pieces kept in memory for `files/` readers while someone
//! streams a file as it downloads.
//!
//! A staged piece is written past the page cache (see [`super::staging`]).
//! A reader that streams reads each piece right after it is verified: from
//! the data file, that would mean writing the piece into the page cache
//! for it (the dearest copy of all: fresh cache pages) and reading it back
//! out. Keeping the last pieces' buffers here instead lets a read copy
//! straight from them. The most recent pieces are kept, up to a cap; a
//! read of anything else goes to the data file.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::lock;

use super::staging::AlignedBuf;

pub struct RecentPieces {
    pieces: Mutex<VecDeque<(u32, Arc<AlignedBuf>)>>,
    cap: usize,
}

/// Part of a kept piece; the piece stays alive while this does.
pub struct KeptSlice {
    buffer: Arc<AlignedBuf>,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for KeptSlice {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buffer[self.range.clone()]
    }
}

impl RecentPieces {
    /// Keeps at most `cap` bytes of pieces.
    pub fn new(cap: usize) -> RecentPieces {
        RecentPieces {
            pieces: Mutex::new(VecDeque::new()),
            cap,
        }
    }

    /// Keeps `buffer`, the whole of verified piece `piece`; returns the
    /// buffers of the oldest pieces it pushes out that no read is using,
    /// for reuse.
    pub fn keep(&self, piece: u32, buffer: AlignedBuf) -> Vec<AlignedBuf> {
        let mut pieces = lock(&self.pieces);
        pieces.retain(|(p, _)| *p != piece);
        pieces.push_back((piece, Arc::new(buffer)));
        let mut held: usize = pieces.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::new();
        while held > self.cap {
            let Some((_, oldest)) = pieces.pop_front() else {
                break;
            };
            held -= oldest.len();
            // A read copying from it keeps it alive until it is done.
            if let Ok(buffer) = Arc::try_unwrap(oldest) {
                out.push(buffer);
            }
        }
        out
    }

    /// Copies the bytes at `start` (an offset in the torrent's stream of
    /// bytes) into `buf`, if every piece they lie in is kept; `piece_length`
    /// is the torrent's.
    pub fn read(&self, start: u64, buf: &mut [u8], piece_length: u64) -> bool {
        if buf.is_empty() || piece_length == 0 {
            return false;
        }
        let first = start / piece_length;
        let last = (start + buf.len() as u64 - 1) / piece_length;
        let found: Vec<Arc<AlignedBuf>> = {
            let pieces = lock(&self.pieces);
            if pieces.is_empty() {
                return false;
            }
            let mut found = Vec::new();
            for p in first..=last {
                match pieces.iter().find(|(q, _)| *q as u64 == p) {
                    Some((_, b)) => found.push(b.clone()),
                    None => return false,
                }
            }
            found
        };
        // Copied outside the lock: the Arcs keep the buffers alive.
        let mut done = 0usize;
        for (i, piece) in found.iter().enumerate() {
            let piece_start = (first + i as u64) * piece_length;
            let from = (start + done as u64 - piece_start) as usize;
            let n = (piece.len() - from.min(piece.len())).min(buf.len() - done);
            if n == 0 {
                return false;
            }
            buf[done..done + n].copy_from_slice(&piece[from..from + n]);
            done += n;
        }
        done == buf.len()
    }

    /// The bytes at `start` (an offset in the torrent's stream of bytes),
    /// `len` of them, without a copy, if they lie in one kept piece.
    pub fn slice(&self, start: u64, len: usize, piece_length: u64) -> Option<KeptSlice> {
        if len == 0 || piece_length == 0 {
            return None;
        }
        let piece = start / piece_length;
        let from = (start - piece * piece_length) as usize;
        let pieces = lock(&self.pieces);
        let (_, buffer) = pieces.iter().find(|(q, _)| *q as u64 == piece)?;
        if from + len > buffer.len() {
            return None;
        }
        Some(KeptSlice {
            buffer: buffer.clone(),
            range: from..from + len,
        })
    }

    /// Lets every kept piece go.
    pub fn clear(&self) {
        lock(&self.pieces).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(fill: u8, len: usize) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(len);
        b.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = fill ^ i as u8);
        b
    }

    #[test]
    fn reads_within_and_across_kept_pieces() {
        let r = RecentPieces::new(1 << 20);
        assert!(r.keep(3, piece(3, 100)).is_empty());
        assert!(r.keep(4, piece(4, 100)).is_empty());
        let mut buf = [0u8; 50];
        assert!(r.read(310, &mut buf, 100));
        assert_eq!(buf[0], 3 ^ 10);
        assert!(r.read(380, &mut buf, 100), "across pieces 3 and 4");
        assert_eq!((buf[19], buf[20]), (3 ^ 99, 4));
        assert!(!r.read(250, &mut buf, 100), "piece 2 is not kept");
        assert!(!r.read(480, &mut buf, 100), "piece 5 is not kept");
        let s = r.slice(410, 50, 100).expect("inside piece 4");
        assert_eq!((s.len(), s[0], s[49]), (50, 4 ^ 10, 4 ^ 59));
        assert!(
            r.slice(380, 50, 100).is_none(),
            "a slice never spans pieces"
        );
        assert!(r.slice(480, 21, 100).is_none(), "past the piece's end");
        assert!(r.slice(510, 1, 100).is_none(), "piece 5 is not kept");
    }

    #[test]
    fn the_oldest_pieces_go_past_the_cap_and_come_back_for_reuse() {
        let r = RecentPieces::new(250);
        r.keep(0, piece(0, 100));
        r.keep(1, piece(1, 100));
        let out = r.keep(2, piece(2, 100));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][1], 1, "piece 0's buffer");
        let mut buf = [0u8; 10];
        assert!(!r.read(0, &mut buf, 100));
        assert!(r.read(100, &mut buf, 100));
        r.clear();
        assert!(!r.read(100, &mut buf, 100));
    }

    #[test]
    fn a_short_last_piece_does_not_read_past_its_end() {
        let r = RecentPieces::new(1 << 20);
        r.keep(2, piece(2, 30));
        let mut buf = [0u8; 40];
        assert!(!r.read(200, &mut buf, 100));
        assert!(r.read(200, &mut buf[..30], 100));
    }
}
