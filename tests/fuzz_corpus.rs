//! The fuzz targets without cargo fuzz (which needs a nightly toolchain):
//! every input in `fuzz/corpus/TARGET/` and every crasher kept in
//! `fuzz/regressions/TARGET/` runs through its target, then a few thousand
//! deterministic mutations of them do. A panic fails the test.

use std::path::{Path, PathBuf};

use swarmfs::fuzzing::TARGETS;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

#[test]
fn every_target_has_a_seed_corpus() {
    for (name, _) in TARGETS {
        assert!(!inputs(name).is_empty(), "fuzz/corpus/{name}/ is empty");
    }
}

#[test]
fn the_corpus_and_the_kept_crashers_pass() {
    for (name, target) in TARGETS {
        for (path, bytes) in inputs(name) {
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{name}: {} panics", path.display());
        }
    }
}

#[test]
fn the_seeds_are_valid_where_they_should_be() {
    // So that mutations start from inputs that reach deep into the code.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let torrent = std::fs::read(corpus.join("metainfo/multi.torrent")).unwrap();
    swarmfs::metainfo::Metainfo::from_bytes(&torrent).unwrap();
    let reply = std::fs::read(corpus.join("tracker_http/compact")).unwrap();
    let parsed = swarmfs::engine::tracker::parse_response(&reply).unwrap();
    assert_eq!(parsed.peers.len(), 4);
    let lines = std::fs::read_to_string(corpus.join("ctl/commands")).unwrap();
    assert_eq!(swarmfs::fs::ctl::parse(&lines).unwrap().len(), 10);
}

/// xorshift64*: reproducible mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bit flips, interesting bytes and lengths, cuts, duplications and
/// splices of two inputs: a small stand-in for libFuzzer's mutators.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] = [0, 0xff, 0x7f, 0x80, b'e', b':', b'i', b'l', b'd', b'0'][rng.below(10)];
            }
            2 if data.len() >= at + 4 => {
                let v: u32 =
                    [0, 1, 0xffff_ffff, 0x7fff_ffff, 0x4000, 0x4001, 0xffff_fff0][rng.below(7)];
                data[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            3 => data.truncate(at),
            4 => {
                let end = (at + rng.below(64)).min(data.len());
                let copy = data[at..end].to_vec();
                let to = rng.below(data.len() + 1);
                data.splice(to..to, copy);
            }
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + rng.below(128)).min(other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                let digits = (rng.next() % 100_000).to_string();
                data.splice(at..at, digits.bytes());
            }
        }
    }
    data
}

#[test]
fn mutations_of_the_corpus_pass() {
    const PER_TARGET: usize = 200_000;
    for (name, target) in TARGETS {
        let seeds: Vec<Vec<u8>> = inputs(name).into_iter().map(|(_, b)| b).collect();
        let mut rng = Rng(0x5EED ^ name.len() as u64);
        let started = std::time::Instant::now();
        for i in 0..PER_TARGET {
            let a = &seeds[rng.below(seeds.len())];
            let b = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, a, b);
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(
                outcome.is_ok(),
                "{name}: mutation {i} panics; input (hex): {}",
                swarmfs::hex(&input)
            );
        }
        eprintln!("{name}: {PER_TARGET} mutations in {:?}", started.elapsed());
    }
}
