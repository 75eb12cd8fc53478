//! swarmfs: a BitTorrent client mounted as a FUSE filesystem.
//!
//! - [`metainfo`]: .torrent files, read ([`metainfo::Metainfo`]) and made
//!   ([`metainfo::create`]).
//! - [`storage`]: pieces on disk, hash checking and the resume file.
//! - [`demo`]: the self-contained swarm behind `swarmfs demo`.
//! - [`engine`]: the swarm engine (peers, trackers, picking, choking).
//! - [`fs`]: the FUSE adapter over the engine.
//! - [`wire`]: the peer wire protocol codec (no sockets).
//! - [`units`]: byte sizes and rates as people write them (`256k`, `1.5M`).
//! - [`fuzzing`]: the fuzz targets' entry points (see `fuzz/`).

pub mod demo;
pub mod engine;
pub mod fs;
pub mod fuzzing;
pub mod metainfo;
pub mod storage;
pub mod units;
pub mod wire;

/// Lowercase hex of `bytes`, as info-hashes and checksums are shown.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
