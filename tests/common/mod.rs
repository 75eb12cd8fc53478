//! Helpers shared by the integration tests: deterministic content and torrents.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use swarmfs::metainfo::create::{create, CreateOptions};
use swarmfs::metainfo::Metainfo;

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes a tree of files under `root/name`: (relative path, length) pairs.
pub fn make_tree(root: &Path, name: &str, files: &[(&str, usize)]) -> PathBuf {
    let top = root.join(name);
    for (i, (path, len)) in files.iter().enumerate() {
        let path = top.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes(i as u64 + 1, *len)).unwrap();
    }
    top
}

/// A torrent of `source` with the given piece length, and its bytes.
pub fn torrent_of(source: &Path, piece_length: u64) -> (Metainfo, Vec<u8>) {
    let options = CreateOptions {
        trackers: vec![vec!["http://127.0.0.1:1/announce".into()]],
        piece_length: Some(piece_length),
        ..CreateOptions::default()
    };
    let created = create(source, &options, &|_, _| {}).unwrap();
    (created.meta, created.bytes)
}

/// The multi-file layout most tests use: files that straddle piece
/// boundaries, an empty file, a nested directory, an odd total length.
pub const TREE: &[(&str, usize)] = &[
    ("a.bin", 40_000),
    ("empty", 0),
    ("sub/b.bin", 16_384),
    ("sub/deeper/c.bin", 70_001),
    ("z.txt", 5),
];
