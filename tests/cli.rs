//! The `swarmfs` command as a user runs it: outputs, exit codes, messages.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

const SWARMFS: &str = env!("CARGO_BIN_EXE_swarmfs");

fn swarmfs(args: &[&str]) -> Output {
    Command::new(SWARMFS).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A sample tree and a torrent of it (made by `swarmfs create`).
fn setup(dir: &Path) -> std::path::PathBuf {
    let source = common::make_tree(dir, "sample", common::TREE);
    let torrent = dir.join("sample.torrent");
    let out = swarmfs(&[
        "-q",
        "create",
        s(&source),
        "-t",
        "http://127.0.0.1:6969/announce",
        "-l",
        "16k",
        "-o",
        s(&torrent),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    torrent
}

#[test]
fn info_lists_everything_a_user_needs() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = setup(dir.path());
    let out = swarmfs(&["info", s(&torrent)]);
    assert!(out.status.success());
    let text = stdout(&out);
    let hash = swarmfs::metainfo::Metainfo::from_file(&torrent)
        .unwrap()
        .info_hash
        .to_hex();
    for line in [
        "name: sample\n".to_string(),
        format!("info-hash: {hash}\n"),
        "size: 126390 (123.43 KiB)\n".into(),
        "piece-length: 16384 (16 KiB)\n".into(),
        "pieces: 8\n".into(),
        "private: no\n".into(),
        "tier 1: http://127.0.0.1:6969/announce\n".into(),
        "files: 5\n".into(),
        "         40000 sample/a.bin\n".into(),
        "             0 sample/empty\n".into(),
        "         70001 sample/sub/deeper/c.bin\n".into(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn bad_torrents_get_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.torrent");
    std::fs::write(&junk, b"<html>not a torrent</html>").unwrap();
    let out = swarmfs(&["info", s(&junk)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "swarmfs: {}: not valid bencode at byte 0: a .torrent file must start with a dictionary ('d')\n",
            junk.display()
        )
    );

    let missing = dir.path().join("missing.torrent");
    let out = swarmfs(&["info", s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("swarmfs: cannot read {}: ", missing.display())),
        "{err}"
    );

    let unsafe_path = dir.path().join("escape.torrent");
    std::fs::write(
        &unsafe_path,
        format!(
            "d4:infod5:filesld6:lengthi1e4:pathl2:..6:passwdeee4:name1:x12:piece lengthi16384e6:pieces20:{}ee",
            "a".repeat(20)
        ),
    )
    .unwrap();
    let out = swarmfs(&["check", s(&unsafe_path), "--data", s(dir.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unsafe file path \"../passwd\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_reports_complete_and_incomplete_data_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = setup(dir.path());
    let out = swarmfs(&["-q", "check", s(&torrent), "--data", s(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "have 8/8 pieces\n");
    let resume = dir.path().join("sample.torrent.pieces");
    assert!(resume.is_file(), "check writes the resume file");

    // Damage one byte of c.bin (stream offset 56_384 + 20_000 = piece 4).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("sample/sub/deeper/c.bin"))
        .unwrap();
    f.write_all_at(b"!", 20_000).unwrap();
    let out = swarmfs(&["-q", "check", s(&torrent), "--data", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "have 7/8 pieces\nincomplete 4/5 sample/sub/deeper/c.bin\n"
    );

    // An empty data directory: nothing there, nothing created by check.
    let empty = tempfile::tempdir().unwrap();
    let out = swarmfs(&["-q", "check", s(&torrent), "--data", s(empty.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("have 0/8 pieces\n"));
    assert!(
        !empty.path().join("sample").exists(),
        "check must not create data files"
    );

    let out = swarmfs(&["check", s(&torrent), "--data", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("data directory /nonexistent/dir does not exist"));
}

#[test]
fn check_logs_progress_and_speed_unless_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = setup(dir.path());
    let out = swarmfs(&["check", s(&torrent), "--data", s(dir.path())]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("checked"), "{}", stderr(&out));
    assert!(stderr(&out).contains("MiB/s"));
    let out = swarmfs(&["-q", "check", s(&torrent), "--data", s(dir.path())]);
    assert_eq!(stderr(&out), "");
}

#[test]
fn create_refuses_what_it_cannot_make() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = setup(dir.path());
    let source = dir.path().join("sample");

    let out = swarmfs(&["create", s(&source), "-o", s(&torrent)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("exists (use --force"),
        "{}",
        stderr(&out)
    );
    let out = swarmfs(&["-q", "create", s(&source), "-o", s(&torrent), "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = swarmfs(&[
        "create",
        s(&source),
        "-l",
        "1000",
        "-o",
        "/tmp/never.torrent",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a power of two"),
        "{}",
        stderr(&out)
    );

    let empty = dir.path().join("emptydir");
    std::fs::create_dir(&empty).unwrap();
    let out = swarmfs(&["create", s(&empty), "-o", s(&dir.path().join("e.torrent"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("has no files to share"),
        "{}",
        stderr(&out)
    );

    std::fs::write(empty.join("zero"), b"").unwrap();
    let out = swarmfs(&["create", s(&empty), "-o", s(&dir.path().join("e.torrent"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("only empty files"),
        "{}",
        stderr(&out)
    );

    let out = swarmfs(&[
        "create",
        "/nonexistent",
        "-o",
        s(&dir.path().join("n.torrent")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read /nonexistent"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn create_picks_a_piece_length_and_skips_its_own_output() {
    let dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(dir.path(), "big", &[("one", 3_000_000), ("two", 2_000_000)]);
    // The output inside the source must not end up in the torrent.
    let inside = source.join("big.torrent");
    let out = swarmfs(&["-q", "create", s(&source), "--no-date", "-o", s(&inside)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = swarmfs::metainfo::Metainfo::from_file(&inside).unwrap();
    assert_eq!(meta.files.len(), 2);
    // 5 MB in at most 2000 pieces: 4 KiB would be too many, 16 KiB is the floor.
    assert_eq!(meta.piece_length, 16 * 1024);
    assert_eq!(meta.creation_date, None);
    assert_eq!(meta.trackers, Vec::<Vec<String>>::new());

    // The same tree made again without a date is byte-identical.
    let first = std::fs::read(&inside).unwrap();
    let out = swarmfs(&[
        "-q",
        "create",
        s(&source),
        "--no-date",
        "-f",
        "-o",
        s(&inside),
    ]);
    assert!(out.status.success());
    assert!(std::fs::read(&inside).unwrap() == first);
}

#[test]
fn mounting_refuses_bad_input_before_forking() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = setup(dir.path());
    let out = swarmfs(&[s(&torrent), "/nonexistent/mountpoint"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("mount point /nonexistent/mountpoint"),
        "{}",
        stderr(&out)
    );
    let out = swarmfs(&["/nonexistent.torrent", s(dir.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read /nonexistent.torrent"));
    let out = swarmfs(&[s(&torrent), s(dir.path()), "-o", "data=/nonexistent/data"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("data directory /nonexistent/data does not exist"));
    let out = swarmfs(&[s(&torrent), s(dir.path()), "-o", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown option -o frobnicate"),
        "{}",
        stderr(&out)
    );
    let out = swarmfs(&[s(&torrent), s(dir.path()), "-o", "port=notaport"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("port=notaport: not a port"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_arguments_prints_usage() {
    let out = swarmfs(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("Usage: swarmfs"), "{err}");
    assert!(err.contains("create"), "{err}");
}
