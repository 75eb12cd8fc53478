//! Reading, writing and verifying blocks in the torrent's files.
//!
//! Positional I/O (`pread`/`pwrite`) on shared handles: every method takes
//! `&self`, so the hash checker's threads and, later, the per-peer disk tasks
//! can use one `Storage` at once. Writers never overlap because each block
//! belongs to exactly one place in one piece.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha1::{Digest, Sha1};

use super::hasher::Partial;
use super::layout::Layout;
use super::recent::{KeptSlice, RecentPieces};
use super::staging::{AlignedBuf, ALIGN};
use crate::metainfo::Metainfo;

/// Which pieces kept for readers [`Storage::forget_kept_pieces`] lets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptPieces {
    All,
    /// Those readers are done with (read to the end, or left behind).
    Read,
}

/// Memory for verified pieces kept for streaming readers: the 32 MiB a
/// `files/` read pulls forward.
pub const RECENT_CAP: usize = 32 << 20;

/// The most one `POSIX_FADV_WILLNEED` asks for (see [`Storage::prefetch`]):
/// no more than the kernel reads for one when the device's read-ahead and
/// I/O size are small (128 KiB and 1280 KiB are common defaults).
const PREFETCH_CHUNK: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is missing")]
    Missing { path: PathBuf },
    #[error("{path} is shorter than the torrent says")]
    Short { path: PathBuf },
    #[error("{path} exists but is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("block at piece {piece} offset {offset} length {len} is outside the torrent")]
    OutOfRange { piece: u32, offset: u64, len: u64 },
    #[error("storage was opened read-only")]
    ReadOnly,
    #[error("{path} is a symbolic link; swarmfs follows no links inside the data directory, so a torrent's files cannot end up outside it")]
    Symlink { path: PathBuf },
}

impl StorageError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> StorageError {
        StorageError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// True when the data simply is not there yet (as opposed to a failing disk).
    pub fn is_absent_data(&self) -> bool {
        matches!(
            self,
            StorageError::Missing { .. } | StorageError::Short { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open what exists; missing files count as missing data. Used by `check`.
    ReadOnly,
    /// Create missing directories and files, reserving the space of a new
    /// file where the filesystem can (see [`create_file`]), and extend short
    /// files (sparse).
    Create,
    /// As `Create`, but new files are sparse too (`-o sparse`): their
    /// blocks are allocated as pieces are written.
    CreateSparse,
}

/// What a file looked like on disk: enough to notice that it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
}

impl FileStamp {
    pub fn of(metadata: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size: metadata.len(),
            mtime_ns: metadata.mtime() as i128 * 1_000_000_000 + metadata.mtime_nsec() as i128,
        }
    }
}

struct StoredFile {
    path: PathBuf,
    /// `path` below the data directory.
    relative: PathBuf,
    handle: Option<File>,
    /// The same file opened with `O_DIRECT`, where the filesystem allows it.
    direct: Option<File>,
    /// A direct write was refused (alignment the device does not take):
    /// use `handle` from then on.
    direct_refused: AtomicBool,
    /// Written since the last `sync`.
    dirty: AtomicBool,
    /// Held bytes before we opened it (it existed and was not empty).
    had_data: bool,
    /// Why its space could not be reserved when it was created, if the
    /// filesystem could have (no room, say): it is sparse instead.
    unreserved: Option<String>,
}

impl StoredFile {
    /// The handle to write with, marking the file as written since the last
    /// `sync`.
    fn handle_for_write(&self) -> Result<&File, StorageError> {
        let handle = self.handle.as_ref().ok_or_else(|| StorageError::Missing {
            path: self.path.clone(),
        })?;
        self.dirty.store(true, Ordering::Release);
        Ok(handle)
    }
}

pub struct Storage {
    layout: Layout,
    /// Verified pieces kept for readers while someone streams (shared
    /// with the filesystem's read-only `Storage`).
    recent: Arc<RecentPieces>,
    piece_hashes: Vec<[u8; 20]>,
    files: Vec<StoredFile>,
    writable: bool,
    root: PathBuf,
}

impl Storage {
    /// Opens the torrent's files under `root` (the data directory).
    pub fn open(meta: &Metainfo, root: &Path, mode: OpenMode) -> Result<Storage, StorageError> {
        let layout = Layout::of(meta);
        let mut files = Vec::with_capacity(meta.files.len());
        for entry in &meta.files {
            let relative = entry.relative_path();
            let path = root.join(&relative);
            let (handle, direct, had_data, unreserved) = match mode {
                OpenMode::ReadOnly => (open_existing(root, &relative)?, None, true, None),
                OpenMode::Create | OpenMode::CreateSparse => {
                    let reserve = mode == OpenMode::Create;
                    let CreatedFile {
                        file,
                        had_data,
                        unreserved,
                    } = create_file(root, &relative, entry.length, reserve)?;
                    // Not every filesystem takes O_DIRECT (older tmpfs,
                    // some FUSE ones): then every write goes through the
                    // page cache.
                    let direct = open_beneath(root, &relative, Access::WriteDirect).ok();
                    (Some(file), direct, had_data, unreserved)
                }
            };
            files.push(StoredFile {
                path,
                relative,
                handle,
                direct,
                direct_refused: AtomicBool::new(false),
                dirty: AtomicBool::new(false),
                had_data,
                unreserved,
            });
        }
        Ok(Storage {
            layout,
            recent: Arc::new(RecentPieces::new(RECENT_CAP)),
            piece_hashes: meta.piece_hashes.clone(),
            files,
            writable: mode != OpenMode::ReadOnly,
            root: root.to_owned(),
        })
    }

    /// The files created without their space reserved although the
    /// filesystem reserves space (it had too little room, say), and why:
    /// a download into them may run out of room later.
    pub fn unreserved(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.files
            .iter()
            .filter_map(|f| Some((f.path.as_path(), f.unreserved.as_deref()?)))
    }

    /// True when every file was missing or empty before we opened it: there
    /// is nothing on disk to hash-check.
    pub fn found_no_data(&self) -> bool {
        self.files.iter().all(|f| !f.had_data)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn piece_count(&self) -> u32 {
        self.layout.piece_count()
    }

    pub fn file_path(&self, file: usize) -> &Path {
        &self.files[file].path
    }

    /// A fresh read-only handle on file `file`, found the same link-free
    /// way as at open (for FUSE passthrough, which wants its own handle).
    pub fn reopen_read_only(&self, file: usize) -> Result<File, StorageError> {
        let entry = &self.files[file];
        let handle = open_beneath(&self.root, &entry.relative, Access::Read)?;
        regular_file_metadata(&handle, &entry.path)?;
        Ok(handle)
    }

    /// Fills `buf` with the bytes at `offset` in piece `piece`.
    pub fn read_block(&self, piece: u32, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let segments = self.segments(piece, offset, buf.len() as u64)?;
        let mut done = 0usize;
        for s in segments {
            let file = &self.files[s.file];
            let Some(handle) = &file.handle else {
                return Err(StorageError::Missing {
                    path: file.path.clone(),
                });
            };
            let part = &mut buf[done..done + s.len as usize];
            handle.read_exact_at(part, s.file_offset).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    StorageError::Short {
                        path: file.path.clone(),
                    }
                } else {
                    StorageError::io("read", &file.path, e)
                }
            })?;
            done += s.len as usize;
        }
        Ok(())
    }

    /// Reads from file `file` (an index into the torrent's files) at `offset`,
    /// as much as fits in `buf` and the file holds; returns the bytes read.
    pub fn read_file_at(
        &self,
        file: usize,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StorageError> {
        let (start, length) = self.layout.file_span(file);
        if offset < length {
            let n = ((length - offset) as usize).min(buf.len());
            if self
                .recent
                .read(start + offset, &mut buf[..n], self.layout.piece_length())
            {
                return Ok(n);
            }
        }
        let stored = &self.files[file];
        let handle = stored
            .handle
            .as_ref()
            .ok_or_else(|| StorageError::Missing {
                path: stored.path.clone(),
            })?;
        let mut done = 0;
        while done < buf.len() {
            match handle.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StorageError::io("read", &stored.path, e)),
            }
        }
        Ok(done)
    }

    /// Asks the kernel to read `ranges` of file `file` into the page cache,
    /// without waiting (for a reader about to read them from disk).
    pub fn prefetch(&self, file: usize, ranges: impl IntoIterator<Item = std::ops::Range<u64>>) {
        use std::os::fd::AsRawFd;
        let Some(handle) = self.files.get(file).and_then(|f| f.handle.as_ref()) else {
            return;
        };
        for range in ranges {
            // One piece of advice a chunk: the kernel reads at most the
            // device's read-ahead size of each (8 MiB here, 128 KiB by
            // default), and drops the rest of a longer range.
            let mut at = range.start;
            while at < range.end {
                let len = (range.end - at).min(PREFETCH_CHUNK);
                // Advice: whatever it returns, the read that follows is the same.
                unsafe {
                    libc::posix_fadvise(
                        handle.as_raw_fd(),
                        at as libc::off_t,
                        len as libc::off_t,
                        libc::POSIX_FADV_WILLNEED,
                    );
                }
                at += len;
            }
        }
    }

    /// Up to `len` bytes of file `file` at `offset` straight from a piece
    /// kept in memory (no copy), if they all lie in one; `None` otherwise
    /// (read them with [`Storage::read_file_at`]), and past the end.
    pub fn kept_file_slice(&self, file: usize, offset: u64, len: usize) -> Option<KeptSlice> {
        let (start, length) = self.layout.file_span(file);
        if offset >= length {
            return None;
        }
        let n = ((length - offset) as usize).min(len);
        self.recent
            .slice(start + offset, n, self.layout.piece_length())
    }

    /// Writes `data` at `offset` in piece `piece`.
    pub fn write_block(&self, piece: u32, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if !self.writable {
            return Err(StorageError::ReadOnly);
        }
        let segments = self.segments(piece, offset, data.len() as u64)?;
        let mut done = 0usize;
        for s in segments {
            let file = &self.files[s.file];
            let handle = file.handle_for_write()?;
            handle
                .write_all_at(&data[done..done + s.len as usize], s.file_offset)
                .map_err(|e| StorageError::io("write", &file.path, e))?;
            done += s.len as usize;
        }
        Ok(())
    }

    /// Writes `blocks`, which lie back to back from `offset` in `piece`, with
    /// as few system calls as the files allow (one `pwritev` per file
    /// touched), instead of one per block.
    pub fn write_blocks(
        &self,
        piece: u32,
        offset: u64,
        blocks: &[&[u8]],
    ) -> Result<(), StorageError> {
        if !self.writable {
            return Err(StorageError::ReadOnly);
        }
        let total: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        let mut cursor = Cursor::new(blocks);
        for s in self.segments(piece, offset, total)? {
            let file = &self.files[s.file];
            let handle = file.handle_for_write()?;
            let slices = cursor.take(s.len as usize);
            write_all_vectored_at(handle, slices, s.file_offset)
                .map_err(|e| StorageError::io("write", &file.path, e))?;
        }
        Ok(())
    }

    /// Writes `data`, the whole of piece `piece`, held in memory (see
    /// [`super::staging`]). Page-aligned stretches go past the page cache
    /// (`O_DIRECT`): that saves copying each byte into the cache and the
    /// kernel's writeback of it later. The rest, and files that refuse
    /// direct I/O, are written through the page cache.
    pub fn write_piece(&self, piece: u32, data: &[u8]) -> Result<(), StorageError> {
        if !self.writable {
            return Err(StorageError::ReadOnly);
        }
        let mut done = 0usize;
        for s in self.segments(piece, 0, data.len() as u64)? {
            let file = &self.files[s.file];
            let handle = file.handle_for_write()?;
            let part = &data[done..done + s.len as usize];
            done += s.len as usize;
            let aligned =
                (part.as_ptr() as usize % ALIGN == 0) && s.file_offset % ALIGN as u64 == 0;
            let direct_len = if aligned {
                part.len() / ALIGN * ALIGN
            } else {
                0
            };
            let mut written = 0;
            if let Some(direct) = &file.direct {
                if direct_len > 0 && !file.direct_refused.load(Ordering::Relaxed) {
                    match direct.write_all_at(&part[..direct_len], s.file_offset) {
                        Ok(()) => written = direct_len,
                        // The device wants a larger alignment than ALIGN.
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                            file.direct_refused.store(true, Ordering::Relaxed);
                        }
                        Err(e) => return Err(StorageError::io("write", &file.path, e)),
                    }
                }
            }
            if written < part.len() {
                handle
                    .write_all_at(&part[written..], s.file_offset + written as u64)
                    .map_err(|e| StorageError::io("write", &file.path, e))?;
            }
        }
        Ok(())
    }

    /// Keeps verified piece `piece` (all of it, in `buffer`) in memory for
    /// `files/` reads, if there is room for it, from now on: before its
    /// write, for which it returns the buffer. Also returns the buffers let
    /// go to make room, `buffer` itself if `piece` is the one to go. Pieces
    /// let go that a reader has yet to read are read ahead from the data
    /// file (see [`Storage::read_ahead_piece`]) once they are on disk: the
    /// writer calls [`written_for_readers`](Self::written_for_readers) when
    /// the write is done, or [`unkeep`](Self::unkeep) when it failed.
    pub fn keep_for_readers(
        &self,
        piece: u32,
        buffer: AlignedBuf,
    ) -> (Arc<AlignedBuf>, Vec<AlignedBuf>) {
        let (shared, let_go) = self.recent.keep_unwritten(piece, buffer);
        for unread in let_go.unread {
            self.read_ahead_piece(unread);
        }
        (shared, let_go.buffers)
    }

    /// `piece`, kept by [`keep_for_readers`](Self::keep_for_readers), is
    /// on disk: read back for the reader if it was let go unread meanwhile.
    pub fn written_for_readers(&self, piece: u32) {
        if self.recent.written(piece) {
            self.read_ahead_piece(piece);
        }
    }

    /// `piece`, kept by [`keep_for_readers`](Self::keep_for_readers), is
    /// not on disk after all (its write failed): no read finds it any more.
    pub fn unkeep(&self, piece: u32) {
        self.recent.forget(piece);
    }

    /// Asks the kernel to read piece `piece` from the data files into the
    /// page cache, without waiting: for a streaming reader that will read
    /// it from there, a piece written past the page cache and not kept in
    /// memory. Read back now, in the background, it is in the cache when
    /// the reader gets to it; read back then, each read waited on a device
    /// busy with the download's writes. With 3 seeders, the reader's last
    /// byte came 0.02 s after the download's end with these read-aheads
    /// (and pieces with no room in memory written past the page cache),
    /// 0.08 s without (and written through it); medians of 8 pairs.
    pub fn read_ahead_piece(&self, piece: u32) {
        let len = self.layout.piece_size(piece);
        if let Ok(segments) = self.segments(piece, 0, len) {
            for s in segments {
                self.prefetch(
                    s.file,
                    std::iter::once(s.file_offset..s.file_offset + s.len),
                );
            }
        }
    }

    /// The pieces kept for readers, to share with another `Storage` of the
    /// same torrent and data.
    pub fn kept_pieces(&self) -> Arc<RecentPieces> {
        self.recent.clone()
    }

    /// Reads from now on look in `kept` (another `Storage`'s pieces kept for
    /// readers) before the data file.
    pub fn with_kept_pieces(mut self, kept: Arc<RecentPieces>) -> Storage {
        self.recent = kept;
        self
    }

    /// Lets pieces kept for readers go.
    pub fn forget_kept_pieces(&self, which: KeptPieces) {
        match which {
            KeptPieces::All => self.recent.clear(),
            KeptPieces::Read => self.recent.forget_read(),
        }
    }

    /// Does `piece`, whole in memory in `data`, have the SHA-1 the torrent
    /// names? What was hashed of it as its blocks came (`partial`) is not
    /// hashed again.
    pub fn staged_hash_matches(&self, piece: u32, partial: Partial, data: &[u8]) -> bool {
        let (hashed, mut sha) = Partial::resume(Some(partial), data.len() as u64);
        sha.update(&data[hashed as usize..]);
        let digest: [u8; 20] = sha.finalize().into();
        self.piece_hash_is(piece, &digest)
    }

    /// Finishes the hash of `piece` from what was hashed while it was
    /// written (`partial`, possibly nothing), reading the rest from disk.
    pub fn verify_rest(&self, piece: u32, partial: Option<Partial>) -> Result<bool, StorageError> {
        let size = self.layout.piece_size(piece);
        let (mut hashed, mut sha) = Partial::resume(partial, size);
        let mut buf = vec![0u8; (size - hashed).min(READ_BACK_CHUNK) as usize];
        while hashed < size {
            let n = (size - hashed).min(READ_BACK_CHUNK) as usize;
            match self.read_block(piece, hashed, &mut buf[..n]) {
                Ok(()) => {}
                Err(e) if e.is_absent_data() => return Ok(false),
                Err(e) => return Err(e),
            }
            sha.update(&buf[..n]);
            hashed += n as u64;
        }
        let digest: [u8; 20] = sha.finalize().into();
        Ok(self.piece_hash_is(piece, &digest))
    }

    /// Reads piece `piece` into `buf` and checks its SHA-1. Data that is not
    /// there (missing or short files) is simply not verified; a failing disk
    /// is an error.
    pub fn verify_piece(&self, piece: u32, buf: &mut Vec<u8>) -> Result<bool, StorageError> {
        Ok(self.read_piece(piece, buf)? && self.hash_matches(piece, buf))
    }

    /// Reads piece `piece` into `buf` (resized to the piece): false if its
    /// data is not there (missing or short files); a failing disk is an
    /// error.
    pub fn read_piece(&self, piece: u32, buf: &mut Vec<u8>) -> Result<bool, StorageError> {
        let size = self.layout.piece_size(piece) as usize;
        buf.resize(size, 0);
        match self.read_block(piece, 0, buf) {
            Ok(()) => Ok(true),
            Err(e) if e.is_absent_data() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Is `digest` the SHA-1 the torrent names for `piece`?
    pub fn piece_hash_is(&self, piece: u32, digest: &[u8; 20]) -> bool {
        self.piece_hashes.get(piece as usize) == Some(digest)
    }

    /// Does `data` (a whole piece) have the SHA-1 the torrent names?
    pub fn hash_matches(&self, piece: u32, data: &[u8]) -> bool {
        self.piece_hash_is(piece, &Sha1::digest(data).into())
    }

    /// Makes every write so far durable (fdatasync on each written file).
    /// Call before recording pieces as verified in the resume file.
    pub fn sync(&self) -> Result<(), StorageError> {
        for file in &self.files {
            // Clear first: a write racing with the sync sets it again.
            if file.dirty.swap(false, Ordering::AcqRel) {
                if let Some(handle) = &file.handle {
                    if let Err(e) = handle.sync_data() {
                        file.dirty.store(true, Ordering::Release);
                        return Err(StorageError::io("sync", &file.path, e));
                    }
                }
            }
        }
        Ok(())
    }

    /// The current size and mtime of every file (`None` for a missing one).
    pub fn stamps(&self) -> Result<Vec<Option<FileStamp>>, StorageError> {
        self.files.iter().map(|f| stamp_of(&f.path)).collect()
    }

    fn segments(
        &self,
        piece: u32,
        offset: u64,
        len: u64,
    ) -> Result<super::layout::Segments<'_>, StorageError> {
        self.layout
            .segments(piece, offset, len)
            .ok_or(StorageError::OutOfRange { piece, offset, len })
    }
}

/// How much of a piece verification reads back at a time.
const READ_BACK_CHUNK: u64 = 256 * 1024;

/// Walks a list of buffers as one byte stream, handing out slices.
struct Cursor<'a> {
    blocks: &'a [&'a [u8]],
    index: usize,
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn new(blocks: &'a [&'a [u8]]) -> Cursor<'a> {
        Cursor {
            blocks,
            index: 0,
            offset: 0,
        }
    }

    /// The next `len` bytes, as slices of the buffers.
    fn take(&mut self, mut len: usize) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while len > 0 && self.index < self.blocks.len() {
            let block = self.blocks[self.index];
            let n = (block.len() - self.offset).min(len);
            out.push(&block[self.offset..self.offset + n]);
            self.offset += n;
            len -= n;
            if self.offset == block.len() {
                self.index += 1;
                self.offset = 0;
            }
        }
        out
    }
}

/// `pwritev` until every byte of `slices` is written at `offset`.
fn write_all_vectored_at(file: &File, mut slices: Vec<&[u8]>, mut offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // The kernel takes at most IOV_MAX (1024) buffers a call.
    const IOV_MAX: usize = 1024;
    slices.retain(|s| !s.is_empty());
    let mut first = 0;
    while first < slices.len() {
        let iov: Vec<libc::iovec> = slices[first..slices.len().min(first + IOV_MAX)]
            .iter()
            .map(|s| libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            })
            .collect();
        let offset_arg = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: every iovec points into a live slice of `slices` for the
        // length of the call, and the kernel only reads from them.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                offset_arg,
            )
        };
        if written < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        offset += written as u64;
        // Drop what was written; a partly written slice keeps its tail.
        let mut left = written as usize;
        while left > 0 {
            let n = slices[first].len();
            if left >= n {
                left -= n;
                first += 1;
            } else {
                slices[first] = &slices[first][left..];
                left = 0;
            }
        }
    }
    Ok(())
}

/// Stats `path` without following a final symlink's target's absence into an
/// error: a missing file is `None`.
pub fn stamp_of(path: &Path) -> Result<Option<FileStamp>, StorageError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(FileStamp::of(&m))),
        Ok(_) => Err(StorageError::NotAFile {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("stat", path, e)),
    }
}

/// The metadata of an open file, which must be a regular file.
fn regular_file_metadata(file: &File, path: &Path) -> Result<std::fs::Metadata, StorageError> {
    let metadata = file
        .metadata()
        .map_err(|e| StorageError::io("stat", path, e))?;
    if !metadata.is_file() {
        return Err(StorageError::NotAFile {
            path: path.to_owned(),
        });
    }
    Ok(metadata)
}

fn open_existing(root: &Path, relative: &Path) -> Result<Option<File>, StorageError> {
    let path = root.join(relative);
    match open_beneath(root, relative, Access::Read) {
        Ok(file) => {
            regular_file_metadata(&file, &path)?;
            Ok(Some(file))
        }
        Err(StorageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A data file opened for the download by [`create_file`].
struct CreatedFile {
    file: File,
    /// It existed and held bytes.
    had_data: bool,
    /// Why its space could not be reserved, where the filesystem reserves.
    unreserved: Option<String>,
}

/// Opens or creates the file, extended to `length`.
///
/// With `reserve`, a new (empty) file has its whole length reserved
/// (`fallocate`): blocks allocated but unwritten, read as zeros. A full disk then shows when the
/// download starts, not halfway, the file lies in few extents, and, on
/// ext4, `O_DIRECT` writes into allocated blocks take the file's lock
/// shared: into a sparse file each held it alone until the device was
/// done, so piece writes went to the device one at a time and a block
/// written through the page cache waited behind them (see
/// docs/performance.md). Where the filesystem cannot reserve (tmpfs of
/// old, some FUSE ones) or the room is not there, the file is sparse as
/// before; the reason for the latter is kept for a warning.
fn create_file(
    root: &Path,
    relative: &Path,
    length: u64,
    reserve: bool,
) -> Result<CreatedFile, StorageError> {
    let path = root.join(relative);
    std::fs::create_dir_all(root).map_err(|e| StorageError::io("create directory", root, e))?;
    let file = open_beneath(root, relative, Access::Create)?;
    let metadata = regular_file_metadata(&file, &path)?;
    let mut unreserved = None;
    let mut size = metadata.len();
    if reserve && size == 0 && length > 0 {
        match allocate(&file, length) {
            // It has its length now.
            Ok(()) => size = length,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {}
            Err(e) => unreserved = Some(e.to_string()),
        }
    }
    // Extend, never truncate: bytes past the torrent's length are the
    // user's, and shrinking a file could destroy data another torrent shares.
    if size < length {
        file.set_len(length)
            .map_err(|e| StorageError::io("extend", &path, e))?;
    }
    Ok(CreatedFile {
        file,
        had_data: metadata.len() > 0,
        unreserved,
    })
}

/// Allocates `length` bytes of `file` from its start, and sets its size.
fn allocate(file: &File, length: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let length =
        libc::off_t::try_from(length).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: a plain system call on a descriptor `file` owns.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    /// Read and write; missing directories and the file are made.
    Create,
    /// Write with `O_DIRECT`, past the page cache; the file exists.
    WriteDirect,
}

/// Opens `relative` under `root` one component at a time, never following a
/// symbolic link (`O_NOFOLLOW` on every step): a link planted in the data
/// directory, before or while we run, cannot send a torrent's bytes, or
/// reads of them, outside it. `root` itself is the user's choice and may be
/// a link. `access` says how the file is opened (and whether missing
/// directories and the file are made).
fn open_beneath(root: &Path, relative: &Path, access: Access) -> Result<File, StorageError> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Component;

    let names: Vec<&std::ffi::OsStr> = relative
        .components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(StorageError::io(
                "open",
                &root.join(relative),
                io::Error::new(io::ErrorKind::InvalidInput, "not a plain relative path"),
            )),
        })
        .collect::<Result<_, _>>()?;
    let Some((file_name, dirs)) = names.split_last() else {
        return Err(StorageError::NotAFile {
            path: root.to_owned(),
        });
    };
    let mut dir = File::open(root).map_err(|e| StorageError::io("open", root, e))?;
    let mut path = root.to_owned();
    let c_name = |name: &std::ffi::OsStr, path: &Path| {
        CString::new(name.as_bytes()).map_err(|_| {
            StorageError::io(
                "open",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "NUL in a file name"),
            )
        })
    };
    // A refusal to follow shows as ELOOP (or ENOTDIR with O_DIRECTORY);
    // say which it was.
    let explain = |dir: &File, name: &CString, path: &Path, op, err: io::Error| {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, NUL-terminated name, and a stat buffer we own.
        let rc = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            StorageError::Symlink {
                path: path.to_owned(),
            }
        } else {
            StorageError::io(op, path, err)
        }
    };
    for name in dirs {
        path.push(name);
        let c = c_name(name, &path)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid directory fd and NUL-terminated name.
        let mut fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
        if fd < 0
            && access == Access::Create
            && io::Error::last_os_error().kind() == io::ErrorKind::NotFound
        {
            // SAFETY: as above.
            let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o777) };
            if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::AlreadyExists {
                return Err(StorageError::io(
                    "create directory",
                    &path,
                    io::Error::last_os_error(),
                ));
            }
            // SAFETY: as above.
            fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
        }
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(explain(&dir, &c, &path, "open directory", err));
        }
        // SAFETY: a fresh fd that nothing else owns.
        dir = unsafe { File::from_raw_fd(fd) };
    }
    path.push(file_name);
    let c = c_name(file_name, &path)?;
    let flags = libc::O_NOFOLLOW
        | libc::O_CLOEXEC
        | match access {
            Access::Read => libc::O_RDONLY,
            Access::Create => libc::O_RDWR | libc::O_CREAT,
            Access::WriteDirect => libc::O_WRONLY | libc::O_DIRECT,
        };
    // SAFETY: valid directory fd and NUL-terminated name; mode for O_CREAT.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o666 as libc::c_uint) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return Err(explain(&dir, &c, &path, "open", err));
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}
