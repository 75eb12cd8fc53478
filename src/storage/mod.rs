//! Storage: the torrent's bytes on disk.
//!
//! - [`layout`]: which file ranges make up each piece ([`Layout`]).
//! - [`disk`]: [`Storage`] opens the files under a data directory and reads,
//!   writes and verifies blocks.
//! - [`check`]: hash-checks existing data on every core.
//! - [`staging`]: assembles pieces in memory, to verify them there and write
//!   each in one go, past the page cache.
//! - [`hasher`]: hashes pieces written block by block (when staging is full)
//!   as they are written, to verify them without reading them back.
//! - [`resume`]: the crash-safe resume file that saves a recheck at start-up.

pub mod check;
pub mod disk;
pub mod hasher;
pub mod layout;
pub mod resume;
pub mod staging;

pub use disk::{FileStamp, OpenMode, Storage, StorageError};
pub use hasher::PieceHashers;
pub use layout::{Layout, Segment};
pub use resume::{Resume, ResumeError};
pub use staging::{Put, StagedPieces};

/// One bit per piece, most significant bit first: the order of the wire
/// protocol's `bitfield` message.
pub type Bitfield = bitvec::vec::BitVec<u8, bitvec::order::Msb0>;
