//! Where each piece's bytes live among the torrent's files.
//!
//! A torrent's content is its files laid end to end; pieces cut that stream
//! into equal lengths (the last may be shorter), so a piece or a block can
//! span several files, and zero-length files hold no bytes at all.

use crate::metainfo::Metainfo;

/// Part of a block that lies in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index into the torrent's file list.
    pub file: usize,
    /// Byte offset within that file.
    pub file_offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    piece_length: u64,
    total_length: u64,
    /// (start offset in the stream, length), one per file, in torrent order.
    files: Vec<(u64, u64)>,
}

impl Layout {
    pub fn new(piece_length: u64, file_lengths: impl IntoIterator<Item = u64>) -> Layout {
        let mut offset = 0;
        let files = file_lengths
            .into_iter()
            .map(|len| {
                let start = offset;
                offset += len;
                (start, len)
            })
            .collect();
        Layout {
            piece_length,
            total_length: offset,
            files,
        }
    }

    pub fn of(meta: &Metainfo) -> Layout {
        Layout::new(meta.piece_length, meta.files.iter().map(|f| f.length))
    }

    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    pub fn piece_count(&self) -> u32 {
        self.total_length.div_ceil(self.piece_length) as u32
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Length of piece `index` (the last one may be short; past the end, 0).
    pub fn piece_size(&self, index: u32) -> u64 {
        let start = index as u64 * self.piece_length;
        self.total_length
            .saturating_sub(start)
            .min(self.piece_length)
    }

    /// Where file `file` starts in the torrent's stream of bytes, and its
    /// length.
    pub fn file_span(&self, file: usize) -> (u64, u64) {
        self.files[file]
    }

    /// The pieces that hold any byte of file `file` (empty for an empty file).
    pub fn pieces_of_file(&self, file: usize) -> std::ops::Range<u32> {
        let (start, len) = self.files[file];
        if len == 0 {
            return 0..0;
        }
        let first = start / self.piece_length;
        let last = (start + len - 1) / self.piece_length;
        first as u32..last as u32 + 1
    }

    /// The file segments covering `len` bytes at `offset` within piece `piece`,
    /// in order. `None` when the range is not inside the piece.
    pub fn segments(&self, piece: u32, offset: u64, len: u64) -> Option<Segments<'_>> {
        let end = offset.checked_add(len)?;
        if end > self.piece_size(piece) {
            return None;
        }
        let start = piece as u64 * self.piece_length + offset;
        // First file whose end lies beyond `start`; zero-length files are
        // passed over because they end where they start.
        let file = self.files.partition_point(|&(s, l)| s + l <= start);
        Some(Segments {
            files: &self.files,
            file,
            pos: start,
            end: start + len,
        })
    }
}

/// Iterator over the [`Segment`]s of one range; see [`Layout::segments`].
pub struct Segments<'a> {
    files: &'a [(u64, u64)],
    file: usize,
    pos: u64,
    end: u64,
}

impl Iterator for Segments<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        while self.pos < self.end {
            let &(start, len) = self.files.get(self.file)?;
            let file_end = start + len;
            if file_end <= self.pos {
                self.file += 1;
                continue;
            }
            let take = file_end.min(self.end) - self.pos;
            let segment = Segment {
                file: self.file,
                file_offset: self.pos - start,
                len: take,
            };
            self.pos += take;
            self.file += 1;
            return Some(segment);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(file: usize, file_offset: u64, len: u64) -> Segment {
        Segment {
            file,
            file_offset,
            len,
        }
    }

    #[test]
    fn maps_pieces_across_file_boundaries_and_empty_files() {
        // Files: 10, 0, 7, 0, 15 bytes; pieces of 8: 8+8+8+8 = 32 total.
        let layout = Layout::new(8, [10, 0, 7, 0, 15]);
        assert_eq!(layout.piece_count(), 4);
        let all = |p| {
            layout
                .segments(p, 0, layout.piece_size(p))
                .unwrap()
                .collect::<Vec<_>>()
        };
        assert_eq!(all(0), vec![seg(0, 0, 8)]);
        assert_eq!(all(1), vec![seg(0, 8, 2), seg(2, 0, 6)]);
        assert_eq!(all(2), vec![seg(2, 6, 1), seg(4, 0, 7)]);
        assert_eq!(all(3), vec![seg(4, 7, 8)]);
    }

    #[test]
    fn short_last_piece_and_ranges() {
        let layout = Layout::new(16, [20, 13]);
        assert_eq!(layout.piece_count(), 3);
        assert_eq!(layout.piece_size(2), 1);
        assert_eq!(layout.piece_size(3), 0);
        let s: Vec<_> = layout.segments(1, 2, 3).unwrap().collect();
        assert_eq!(s, vec![seg(0, 18, 2), seg(1, 0, 1)]);
        assert!(layout.segments(2, 0, 2).is_none());
        assert!(layout.segments(0, u64::MAX, 2).is_none());
        assert_eq!(layout.segments(2, 1, 0).unwrap().count(), 0);
    }

    #[test]
    fn leading_empty_files_are_skipped() {
        let layout = Layout::new(4, [0, 0, 5]);
        let s: Vec<_> = layout.segments(0, 0, 4).unwrap().collect();
        assert_eq!(s, vec![seg(2, 0, 4)]);
    }

    #[test]
    fn pieces_of_each_file() {
        let layout = Layout::new(8, [10, 0, 7, 0, 15]);
        assert_eq!(layout.pieces_of_file(0), 0..2);
        assert_eq!(layout.pieces_of_file(1), 0..0);
        assert_eq!(layout.pieces_of_file(2), 1..3);
        assert_eq!(layout.pieces_of_file(4), 2..4);
    }

    #[test]
    fn every_byte_is_mapped_exactly_once() {
        let lengths = [3u64, 0, 1, 17, 0, 0, 9, 32, 1];
        for piece_length in [1u64, 2, 5, 8, 16, 100] {
            let layout = Layout::new(piece_length, lengths);
            let mut seen = vec![0u8; layout.total_length() as usize];
            for p in 0..layout.piece_count() {
                for s in layout.segments(p, 0, layout.piece_size(p)).unwrap() {
                    assert!(s.len > 0);
                    let start = layout.files[s.file].0 + s.file_offset;
                    assert!(s.file_offset + s.len <= lengths[s.file]);
                    for b in start..start + s.len {
                        seen[b as usize] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "piece length {piece_length}");
        }
    }
}
