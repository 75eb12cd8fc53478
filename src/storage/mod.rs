//! Storage: the torrent's bytes on disk.
//!
//! - [`layout`]: which file ranges make up each piece ([`Layout`]).
//! - [`disk`]: [`Storage`] opens the files under a data directory and reads,
//!   writes and verifies blocks.
//! - [`check`]: hash-checks existing data on every core.
//! - [`batch_sha1`]: SHA-1 of many pieces at once, with AVX-512.
//! - [`staging`]: assembles pieces in memory, to verify them there and write
//!   each in one go, past the page cache.
//! - [`recent`]: keeps the last verified pieces in memory for readers
//!   while someone streams.
//! - [`hasher`]: hashes pieces written block by block (when staging is full)
//!   as they are written, to verify them without reading them back.
//! - [`resume`]: the crash-safe resume file that saves a recheck at start-up.

pub mod batch_sha1;
pub mod check;
pub mod disk;
pub mod hasher;
pub mod layout;
pub mod recent;
pub mod resume;
pub mod staging;

pub use disk::{FileStamp, KeptPieces, OpenMode, Storage, StorageError};
pub use hasher::PieceHashers;
pub use layout::{Layout, Segment};
pub use resume::{Resume, ResumeError};
pub use staging::{Put, StagedPieces};

/// One bit per piece, most significant bit first: the order of the wire
/// protocol's `bitfield` message.
pub type Bitfield = bitvec::vec::BitVec<u8, bitvec::order::Msb0>;

/// Locks `m`. Every holder in this module leaves its state whole at each
/// step, so a lock poisoned by a panic elsewhere is still usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
