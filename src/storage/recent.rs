//! Verified pieces kept in memory for `files/` readers while someone
//! streams a file as it downloads.
//!
//! A staged piece is written past the page cache (see [`super::staging`]).
//! A reader that streams reads each piece right after it is verified: from
//! the data file, that would mean reading it back from the device (or
//! writing it through the page cache for it: fresh cache pages, and a
//! second copy). Keeping the last pieces' buffers here instead lets a read
//! copy straight from them. A read of anything else goes to the data file.
//!
//! Up to a cap. Past it, a piece a reader is done with goes first (a read
//! went through to its end, or came from a later piece: a reader that
//! reads only part of each piece moves on all the same); if no such piece
//! is kept, the one furthest into the torrent: a
//! streaming reader will need it last, and the reads that get there can
//! read it ahead from the device. (Dropping the oldest instead dropped the
//! very piece a reader held up by a missing piece needed next, whenever the
//! pieces verified behind that hole outgrew the cap.) The pieces let go
//! before a reader read them through are named to the caller, to have
//! them read back ahead of the reader (see [`LetGo`]).
//!
//! A piece is kept from the moment its hash matched, before its write
//! ([`RecentPieces::keep_unwritten`]): a reader waiting for it gets it
//! then, not when the device took the write (a third of the writes of a
//! streaming download took over 3 ms here, one in ten over 15 ms, some
//! over 50, while the reader waited and the pieces after it piled up).
//! Such a piece, let go unread before its write ended, is named to its
//! writer ([`RecentPieces::written`]), not in [`LetGo`]: reading it back
//! before it is on disk would cache what the disk held before.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use super::lock;

use super::staging::AlignedBuf;

struct Kept {
    piece: u32,
    buffer: Arc<AlignedBuf>,
    /// A read reached the piece's end, or one came from a later piece:
    /// the reader is done with it.
    passed: bool,
    /// On disk (it may be kept while its write is under way).
    written: bool,
}

struct Pieces {
    /// Oldest first.
    kept: VecDeque<Kept>,
    last_read: Option<Instant>,
    /// Pieces let go unread while their write was under way: read back
    /// once written.
    unread_unwritten: BTreeSet<u32>,
}

pub struct RecentPieces {
    pieces: Mutex<Pieces>,
    cap: usize,
    /// Bumped whenever a piece is kept, for reads waiting on one.
    kept_count: watch::Sender<u64>,
}

/// What keeping a piece let go to stay within the cap.
#[derive(Default)]
pub struct LetGo {
    /// Buffers no read is using, for reuse.
    pub buffers: Vec<AlignedBuf>,
    /// The pieces let go that no reader had read through: a streaming
    /// reader will read them, or the rest of them, from the data file.
    pub unread: Vec<u32>,
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

impl Pieces {
    /// Bytes of pieces kept.
    fn held(&self) -> usize {
        self.kept.iter().map(|k| k.buffer.len()).sum()
    }

    fn find(&mut self, piece: u64) -> Option<&mut Kept> {
        self.kept.iter_mut().find(|k| k.piece as u64 == piece)
    }

    /// A read from piece `first` up to byte `end` of the torrent happened
    /// here: the pieces before `first`, and those it read to their end, are
    /// passed.
    fn reader_at(&mut self, first: u64, end: u64, piece_length: u64) {
        for k in &mut self.kept {
            let start = k.piece as u64 * piece_length;
            k.passed |= (k.piece as u64) < first || end >= start + k.buffer.len() as u64;
        }
        self.last_read = Some(Instant::now());
    }

    /// The kept pieces as [`over_cap`] takes them: `(piece, bytes, passed)`,
    /// oldest first.
    fn sizes(&self) -> impl Iterator<Item = (u32, usize, bool)> + '_ {
        self.kept
            .iter()
            .map(|k| (k.piece, k.buffer.len(), k.passed))
    }
}

/// The pieces (`(piece, bytes, passed)`, oldest first) that go, in the
/// order they go, until the rest fit in `cap` bytes: those a reader is done
/// with, oldest first, then the furthest on (see the module's notes).
/// Letting one go may not free enough (a short last piece), so this walks
/// on until the rest fit.
fn over_cap(kept: &[(u32, usize, bool)], cap: usize) -> Vec<usize> {
    let mut held: usize = kept.iter().map(|&(_, len, _)| len).sum();
    let mut further: Vec<usize> = (0..kept.len()).filter(|&i| !kept[i].2).collect();
    further.sort_by_key(|&i| std::cmp::Reverse(kept[i].0));
    let mut gone = Vec::new();
    for i in (0..kept.len()).filter(|&i| kept[i].2).chain(further) {
        if held <= cap {
            break;
        }
        held -= kept[i].1;
        gone.push(i);
    }
    gone
}

impl RecentPieces {
    /// Keeps at most `cap` bytes of pieces.
    pub fn new(cap: usize) -> RecentPieces {
        RecentPieces {
            pieces: Mutex::new(Pieces {
                kept: VecDeque::new(),
                last_read: None,
                unread_unwritten: BTreeSet::new(),
            }),
            cap,
            kept_count: watch::Sender::new(0),
        }
    }

    /// Keeps `buffer`, the whole of verified piece `piece`, already on
    /// disk; returns what it pushes out (`buffer` itself, if it is the one
    /// to go). The engine keeps pieces before their write
    /// ([`keep_unwritten`](Self::keep_unwritten)); the tests, as written.
    #[cfg(test)]
    pub fn keep(&self, piece: u32, buffer: AlignedBuf) -> LetGo {
        self.insert(piece, Arc::new(buffer), true)
    }

    /// Keeps `buffer`, the whole of verified piece `piece`, before it is
    /// written, so that reads find it at once; returns the buffer for the
    /// write, and what keeping it pushes out. The writer calls
    /// [`written`](Self::written) when the write is done, or
    /// [`forget`](Self::forget) when it failed.
    pub fn keep_unwritten(&self, piece: u32, buffer: AlignedBuf) -> (Arc<AlignedBuf>, LetGo) {
        let buffer = Arc::new(buffer);
        (buffer.clone(), self.insert(piece, buffer, false))
    }

    /// `piece`, kept by [`keep_unwritten`](Self::keep_unwritten), is on
    /// disk. True if it was let go meanwhile before a reader read it
    /// through: the caller reads it back for the reader.
    pub fn written(&self, piece: u32) -> bool {
        let mut pieces = lock(&self.pieces);
        if let Some(k) = pieces.find(piece as u64) {
            k.written = true;
            return false;
        }
        pieces.unread_unwritten.remove(&piece)
    }

    /// Lets `piece` go, whatever readers need (its write failed: the
    /// writer takes its buffer back to write it later).
    pub fn forget(&self, piece: u32) {
        let mut pieces = lock(&self.pieces);
        pieces.kept.retain(|k| k.piece != piece);
        pieces.unread_unwritten.remove(&piece);
    }

    /// Changes each time a piece is kept: a read waiting for a piece
    /// looks again then.
    pub fn watch_kept(&self) -> watch::Receiver<u64> {
        self.kept_count.subscribe()
    }

    fn insert(&self, piece: u32, buffer: Arc<AlignedBuf>, written: bool) -> LetGo {
        let mut pieces = lock(&self.pieces);
        pieces.kept.retain(|k| k.piece != piece);
        pieces.kept.push_back(Kept {
            piece,
            buffer,
            passed: false,
            written,
        });
        let sizes: Vec<(u32, usize, bool)> = pieces.sizes().collect();
        let mut gone = over_cap(&sizes, self.cap);
        // Removed from the back, so that the indices before stay valid.
        gone.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = LetGo::default();
        for i in gone {
            let Some(k) = pieces.kept.remove(i) else {
                continue;
            };
            if !k.passed {
                if k.written {
                    out.unread.push(k.piece);
                } else {
                    pieces.unread_unwritten.insert(k.piece);
                }
            }
            // A read copying from it keeps it alive until it is done, and
            // the writer of a piece not yet written.
            if let Ok(buffer) = Arc::try_unwrap(k.buffer) {
                out.buffers.push(buffer);
            }
        }
        drop(pieces);
        self.kept_count.send_modify(|n| *n += 1);
        out
    }

    /// Copies the bytes at `start` (an offset in the torrent's stream of
    /// bytes) into `buf`, if every piece they lie in is kept; `piece_length`
    /// is the torrent's.
    pub fn read(&self, start: u64, buf: &mut [u8], piece_length: u64) -> bool {
        if buf.is_empty() || piece_length == 0 {
            return false;
        }
        let end = start + buf.len() as u64;
        let first = start / piece_length;
        let last = (end - 1) / piece_length;
        let found: Vec<Arc<AlignedBuf>> = {
            let mut pieces = lock(&self.pieces);
            let mut found = Vec::new();
            for p in first..=last {
                match pieces.find(p) {
                    Some(k) => found.push(k.buffer.clone()),
                    None => return false,
                }
            }
            // Every piece is here: the read happens.
            pieces.reader_at(first, end, piece_length);
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
        let mut pieces = lock(&self.pieces);
        let kept = pieces.find(piece)?;
        if from + len > kept.buffer.len() {
            return None;
        }
        let slice = KeptSlice {
            buffer: kept.buffer.clone(),
            range: from..from + len,
        };
        pieces.reader_at(piece, start + len as u64, piece_length);
        Some(slice)
    }

    /// Is `piece` kept?
    pub fn contains(&self, piece: u32) -> bool {
        lock(&self.pieces).kept.iter().any(|k| k.piece == piece)
    }

    /// Bytes of pieces kept.
    pub fn held(&self) -> usize {
        lock(&self.pieces).held()
    }

    /// When a read last found its bytes here.
    pub fn last_read(&self) -> Option<Instant> {
        lock(&self.pieces).last_read
    }

    /// Lets the pieces go that readers are done with.
    pub fn forget_read(&self) {
        lock(&self.pieces).kept.retain(|k| !k.passed);
    }

    /// Lets every kept piece go.
    pub fn clear(&self) {
        let mut pieces = lock(&self.pieces);
        pieces.kept.clear();
        pieces.unread_unwritten.clear();
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
        assert!(r.keep(3, piece(3, 100)).buffers.is_empty());
        assert!(r.keep(4, piece(4, 100)).buffers.is_empty());
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
    fn past_the_cap_a_piece_passed_goes_first_then_the_furthest() {
        let r = RecentPieces::new(250);
        r.keep(5, piece(5, 100));
        r.keep(6, piece(6, 100));
        // Nothing read yet: the furthest piece goes, back for reuse.
        let out = r.keep(4, piece(4, 100));
        assert_eq!(out.buffers.len(), 1);
        assert_eq!(out.buffers[0][1], 6 ^ 1, "piece 6's buffer");
        assert_eq!(out.unread, [6], "no reader reached it");
        assert!(r.contains(4) && r.contains(5) && !r.contains(6));
        // ...even the piece just verified, if it is the furthest.
        let out = r.keep(7, piece(7, 100));
        assert_eq!(out.buffers[0][1], 7 ^ 1, "piece 7's own buffer");
        assert!(!r.contains(7));
        // A read to the end of piece 4: the reader is done with it.
        assert!(r.slice(400, 100, 100).is_some());
        assert!(
            r.keep(8, piece(8, 100)).unread.is_empty(),
            "piece 4 went, read"
        );
        assert!(!r.contains(4) && r.contains(5) && r.contains(8));
        // A read that stops short of a piece's end keeps it.
        assert!(r.slice(500, 99, 100).is_some());
        r.keep(9, piece(9, 100));
        assert!(r.contains(5) && !r.contains(9));
        assert_eq!(r.held(), 200);
    }

    #[test]
    fn a_piece_further_on_than_every_kept_one_goes_itself() {
        let r = RecentPieces::new(200);
        r.keep(3, piece(3, 100));
        r.keep(5, piece(5, 100));
        // Piece 6 is the furthest on: it is the one to go, unread.
        let out = r.keep(6, piece(6, 100));
        assert_eq!(out.buffers.len(), 1);
        assert_eq!(out.unread, [6]);
        assert!(!r.contains(6) && r.contains(3) && r.contains(5));
        // Piece 4 is nearer than piece 5, which goes instead.
        let out = r.keep(4, piece(4, 100));
        assert_eq!(out.unread, [5]);
        assert!(r.contains(3) && r.contains(4));
        // Once piece 3 is read through, it goes before any piece ahead.
        assert!(r.slice(300, 100, 100).is_some());
        let out = r.keep(6, piece(6, 100));
        assert!(out.unread.is_empty(), "piece 3 was read");
        assert!(!r.contains(3) && r.contains(4) && r.contains(6));
    }

    #[test]
    fn keep_lets_go_as_many_pieces_as_it_takes_to_fit() {
        // Pieces of 100 bytes, the last (9) of 30; a cap of 250. Piece 9 is
        // read to its end before pieces 4 and 5 come.
        let kept_after_a_read_of_9 = || {
            let r = RecentPieces::new(250);
            r.keep(9, piece(9, 30));
            assert!(r.slice(900, 30, 100).is_some());
            r.keep(4, piece(4, 100));
            r.keep(5, piece(5, 100));
            r
        };
        // Letting piece 9 go frees 30 bytes, not enough: piece 6 goes
        // next, as the furthest of the rest.
        let r = kept_after_a_read_of_9();
        let out = r.keep(6, piece(6, 100));
        assert_eq!(out.buffers.len(), 2);
        assert_eq!(out.unread, [6], "piece 9 was read to its end");
        assert!(!r.contains(6) && !r.contains(9));
        // Piece 3 stays: piece 5 goes after piece 9.
        let r = kept_after_a_read_of_9();
        let out = r.keep(3, piece(3, 100));
        assert_eq!(out.buffers.len(), 2);
        assert_eq!(out.unread, [5]);
        assert!(r.contains(3) && r.contains(4) && !r.contains(5));
    }

    #[test]
    fn a_piece_kept_before_its_write_is_read_back_only_once_written() {
        let r = RecentPieces::new(200);
        let mut kept = r.watch_kept();
        let (shared, out) = r.keep_unwritten(5, piece(5, 100));
        assert!(kept.has_changed().unwrap(), "waiting reads look again");
        kept.mark_unchanged();
        assert!(out.buffers.is_empty() && out.unread.is_empty());
        assert_eq!(r.slice(510, 10, 100).expect("readable at once")[0], 5 ^ 10);
        // Still being written when pieces 3 and 4 push it out unread: not
        // named to be read back (the disk does not hold it yet), and its
        // buffer stays with the writer.
        r.keep(3, piece(3, 100));
        let out = r.keep(4, piece(4, 100));
        assert!(out.unread.is_empty() && out.buffers.is_empty());
        assert!(!r.contains(5));
        assert!(r.written(5), "the writer reads it back once written");
        assert!(!r.written(5), "once");
        assert!(Arc::try_unwrap(shared).is_ok(), "the writer's to reuse");
        // Written while kept, then pushed out: named as usual.
        let r = RecentPieces::new(200);
        let (_shared, _) = r.keep_unwritten(4, piece(4, 100));
        assert!(!r.written(4), "still kept: nothing to read back");
        r.keep(2, piece(2, 100));
        let out = r.keep(3, piece(3, 100));
        assert_eq!(out.unread, [4]);
        assert!(out.buffers.is_empty(), "the writer still holds it");
    }

    #[test]
    fn a_piece_whose_write_failed_is_no_longer_read() {
        let r = RecentPieces::new(200);
        let (shared, _) = r.keep_unwritten(5, piece(5, 100));
        r.forget(5);
        assert!(r.slice(500, 10, 100).is_none());
        assert!(!r.written(5));
        assert!(Arc::try_unwrap(shared).is_ok());
    }

    #[test]
    fn a_reader_that_moves_on_is_done_with_the_pieces_behind_it() {
        let r = RecentPieces::new(300);
        for p in 0..3 {
            r.keep(p, piece(p as u8, 100));
        }
        // The first bytes of piece 1 only: piece 0 is behind the reader,
        // piece 1 is not read to its end.
        assert!(r.slice(100, 10, 100).is_some());
        r.forget_read();
        assert!(!r.contains(0) && r.contains(1) && r.contains(2));
    }

    #[test]
    fn a_piece_in_use_is_let_go_but_not_reused() {
        let r = RecentPieces::new(150);
        r.keep(1, piece(1, 100));
        let slice = r.slice(100, 10, 100).expect("piece 1 is kept");
        let out = r.keep(0, piece(0, 100));
        assert!(out.buffers.is_empty(), "piece 1 is being read");
        assert_eq!(out.unread, [1], "only its first bytes were read");
        assert!(!r.contains(1));
        assert_eq!(slice[0], 1);
    }

    #[test]
    fn reads_are_remembered_and_pieces_passed_can_go() {
        let r = RecentPieces::new(1 << 20);
        r.keep(0, piece(0, 100));
        r.keep(1, piece(1, 100));
        assert!(r.last_read().is_none());
        let mut buf = [0u8; 120];
        assert!(r.read(0, &mut buf, 100), "through piece 0, into piece 1");
        assert!(r.last_read().is_some());
        r.forget_read();
        assert!(!r.contains(0) && r.contains(1));
        // A read that reaches a piece not kept does not happen here, and
        // marks nothing.
        assert!(!r.read(150, &mut buf[..100], 100), "piece 2 is not kept");
        r.forget_read();
        assert!(r.contains(1));
        r.clear();
        assert!(!r.contains(1));
        assert_eq!(r.held(), 0);
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
