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

/// A logger for engines under test: silent unless SWARMFS_TEST_LOG is set.
pub fn logger() -> slog::Logger {
    use slog::Drain;
    if std::env::var_os("SWARMFS_TEST_LOG").is_some() {
        let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
        let drain = slog_term::FullFormat::new(decorator).build();
        return slog::Logger::root(std::sync::Mutex::new(drain).fuse(), slog::o!());
    }
    slog::Logger::root(slog::Discard, slog::o!())
}

/// An engine config on 127.0.0.1 with the given peers and no trackers.
pub fn config(data: &Path, peers: Vec<std::net::SocketAddr>) -> swarmfs::engine::Config {
    let mut c = swarmfs::engine::Config::new(data.to_owned());
    c.listen = Some("127.0.0.1:0".parse().unwrap());
    c.peers = peers;
    c.use_trackers = false;
    c
}

/// Waits until an engine has finished its start-up check.
pub fn wait_ready(engine: &swarmfs::engine::Engine) {
    let handle = engine.handle();
    engine.block_on(async {
        for _ in 0..500 {
            if handle.stats().await.unwrap().state.as_str() != "checking" {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("still checking after 5 s");
    })
}

/// A seeding engine over `data`, ready to accept peers.
pub fn seeder_with(meta: &Metainfo, config: swarmfs::engine::Config) -> swarmfs::engine::Engine {
    let engine = swarmfs::engine::Engine::start(meta.clone(), config, logger()).unwrap();
    wait_ready(&engine);
    engine
}

/// The payload of a `bitfield` message from a peer that has all `pieces`:
/// every bit set but the spare bits of the last byte.
pub fn all_pieces_bits(pieces: usize) -> Vec<u8> {
    let mut bits = vec![0xffu8; pieces.div_ceil(8)];
    if pieces % 8 != 0 {
        if let Some(last) = bits.last_mut() {
            *last = 0xff << (8 - pieces % 8);
        }
    }
    bits
}

/// A peer-wire message as it goes on the wire: length, id, payload.
pub fn wire_message(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut msg = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    msg.push(id);
    msg.extend_from_slice(payload);
    msg
}
