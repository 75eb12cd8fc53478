//! Kill a writer at many moments and show the resume file's invariant holds:
//! it is never torn, and it never marks a piece verified whose bytes are not
//! on disk. Also shows that restarts do not fetch verified pieces again.
//!
//! The test binary plays both parts (`harness = false`): run plainly it is the
//! parent; run as `resume_crash child TORRENT DATA SOURCE_ROOT` it is a writer
//! that behaves like a downloader (random piece order, a corrupt copy first
//! now and then, resume records every few pieces), printing `wrote P` for each
//! piece it completes. The parent SIGKILLs it at pseudo-random moments.
//!
//! A SIGKILL keeps the page cache, so this shows atomicity and ordering of
//! the file operations; durability across power loss rests on the fsyncs in
//! `resume::record` (data first, then the temp file, then the directory).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use swarmfs::metainfo::Metainfo;
use swarmfs::storage::resume::{self, Resume};
use swarmfs::storage::{check, OpenMode, Storage};

const KILLS: usize = 30;
const PIECE: u64 = 16 * 1024;
const BLOCK: usize = 4096;
/// Record the resume file after this many new pieces.
const RECORD_EVERY: usize = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(
            Path::new(&args[2]),
            Path::new(&args[3]),
            Path::new(&args[4]),
        );
        return ExitCode::SUCCESS;
    }
    // cargo test passes harness flags (e.g. --quiet); there is one test here.
    match parent() {
        Ok(summary) => {
            println!("resume_crash: {summary}");
            println!("1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("resume_crash FAILED: {message}");
            println!("0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

fn parent() -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let source_root = dir.path().join("source");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let files: Vec<(String, usize)> = (0..5)
        .map(|i| (format!("f{i}.bin"), 150_000 + i * 33_333))
        .collect();
    let tree: Vec<(&str, usize)> = files.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    let source = common::make_tree(&source_root, "content", &tree);
    let (meta, bytes) = common::torrent_of(&source, PIECE);
    let torrent = dir.path().join("content.torrent");
    std::fs::write(&torrent, bytes).map_err(|e| e.to_string())?;
    let resume_path = resume::path_for(&data, &meta);

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let run = |kill_after: Option<Duration>| -> Result<(Vec<u32>, bool), String> {
        let mut child = Command::new(&exe)
            .arg("child")
            .args([&torrent, &data, &source_root])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn writer: {e}"))?;
        let finished = match kill_after {
            Some(delay) => {
                std::thread::sleep(delay);
                let finished = child.try_wait().map_err(|e| e.to_string())?.is_some();
                let _ = child.kill(); // SIGKILL
                finished
            }
            None => true,
        };
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let wrote = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("wrote ").and_then(|p| p.parse().ok()))
            .collect();
        let status = child.wait().map_err(|e| e.to_string())?;
        if kill_after.is_none() && !status.success() {
            return Err(format!("writer failed: {status}"));
        }
        Ok((wrote, finished))
    };

    let mut rng = 0x5eed_u64;
    let mut fetched = 0usize;
    let mut states = std::collections::BTreeSet::new();
    // Pieces some resume file has marked verified: never to be written again.
    let mut recorded = std::collections::BTreeSet::new();
    let refetched = |wrote: &[u32], recorded: &std::collections::BTreeSet<u32>| match wrote
        .iter()
        .find(|p| recorded.contains(p))
    {
        Some(p) => Err(format!(
            "piece {p} was fetched again after it was recorded verified"
        )),
        None => Ok(()),
    };
    for kill in 0..KILLS {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(5 + (rng >> 33) % 60);
        let (wrote, finished) = run(Some(delay))?;
        fetched += wrote.len();
        refetched(&wrote, &recorded)?;
        let marked = check_invariant(&meta, &data, &resume_path)
            .map_err(|e| format!("after kill {kill} at {delay:?}: {e}"))?;
        states.insert(marked.len());
        recorded.extend(marked);
        if finished {
            break;
        }
    }
    let (wrote, _) = run(None)?;
    fetched += wrote.len();
    refetched(&wrote, &recorded)?;
    let marked = check_invariant(&meta, &data, &resume_path)?.len();
    if marked != meta.piece_count() as usize {
        return Err(format!(
            "finished with {marked}/{} pieces recorded",
            meta.piece_count()
        ));
    }
    for (name, _) in &files {
        let a = std::fs::read(source.join(name)).map_err(|e| e.to_string())?;
        let b = std::fs::read(data.join("content").join(name)).map_err(|e| e.to_string())?;
        if a != b {
            return Err(format!("{name} differs from the source"));
        }
    }
    // A restart re-checks data it cannot trust, so a piece is fetched again
    // only when a kill interrupted it before it was complete on disk.
    let bound = meta.piece_count() as usize + KILLS;
    if fetched > bound {
        return Err(format!(
            "{fetched} pieces fetched, more than {bound}: verified pieces were fetched again"
        ));
    }
    if states.len() < 5 {
        return Err(format!(
            "kills landed in only {} distinct states: {states:?}",
            states.len()
        ));
    }
    Ok(format!(
        "{} pieces, {} distinct recorded states across kills, {fetched} pieces fetched in all",
        meta.piece_count(),
        states.len()
    ))
}

/// The resume file, if any, parses and every piece it marks verifies on disk.
/// Returns the pieces it marks.
fn check_invariant(meta: &Metainfo, data: &Path, resume_path: &Path) -> Result<Vec<u32>, String> {
    let Some(resume) = Resume::load(resume_path, meta).map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    let store = Storage::open(meta, data, OpenMode::ReadOnly).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    for piece in resume.have.iter_ones() {
        if !store
            .verify_piece(piece as u32, &mut buf)
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "piece {piece} is marked verified but its data is wrong"
            ));
        }
    }
    Ok(resume.have.iter_ones().map(|p| p as u32).collect())
}

/// The writer: a downloader's start-up and piece loop, without the network.
fn child(torrent: &Path, data: &Path, source_root: &Path) {
    let meta = Metainfo::from_file(torrent).expect("torrent");
    let resume_path = resume::path_for(data, &meta);
    let trusted = resume::trusted_have(data, &meta, &resume_path);
    let store = Storage::open(&meta, data, OpenMode::Create).expect("open data");
    let mut have = match trusted {
        Ok(have) => have,
        Err(_) => check::verify_pieces(&store, 2, &|_| true, &|_| {}).expect("check"),
    };
    let source = Storage::open(&meta, source_root, OpenMode::ReadOnly).expect("open source");

    let mut order: Vec<u32> = have.iter_zeros().map(|p| p as u32).collect();
    let mut rng = Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64;
    for i in (1..order.len()).rev() {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (rng >> 33) as usize % (i + 1));
    }
    let mut out = std::io::stdout().lock();
    let mut piece_buf = Vec::new();
    let mut since_record = 0;
    for piece in order {
        let size = meta.piece_size(piece) as usize;
        piece_buf.resize(size, 0);
        source
            .read_block(piece, 0, &mut piece_buf)
            .expect("read source");
        let mut check_buf = Vec::new();
        // Now and then a bad peer's copy arrives first and fails the check;
        // record right after, so kills land just after failures too.
        if piece % 5 == 0 {
            let mut bad = piece_buf.clone();
            bad[size / 2] ^= 0xff;
            write_piece(&store, piece, &bad);
            assert!(!store.verify_piece(piece, &mut check_buf).expect("verify"));
            resume::record(&store, &meta, &have, &resume_path).expect("record");
        }
        write_piece(&store, piece, &piece_buf);
        assert!(store.verify_piece(piece, &mut check_buf).expect("verify"));
        have.set(piece as usize, true);
        writeln!(out, "wrote {piece}").expect("stdout");
        out.flush().expect("stdout");
        since_record += 1;
        if since_record >= RECORD_EVERY {
            resume::record(&store, &meta, &have, &resume_path).expect("record");
            since_record = 0;
        }
    }
    resume::record(&store, &meta, &have, &resume_path).expect("record");
}

/// Writes a whole piece in blocks, slowly enough that kills land mid-piece.
fn write_piece(store: &Storage, piece: u32, data: &[u8]) {
    for (i, block) in data.chunks(BLOCK).enumerate() {
        store
            .write_block(piece, (i * BLOCK) as u64, block)
            .expect("write block");
        std::thread::sleep(Duration::from_micros(1500));
    }
}
