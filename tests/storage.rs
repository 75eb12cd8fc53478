//! Storage against real files: blocks across file boundaries, verification,
//! the resume file's trust rules.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use swarmfs::storage::resume::{self, Resume};
use swarmfs::storage::{
    check, Bitfield, KeptPieces, OpenMode, PieceHashers, Put, StagedPieces, Storage,
};

use common::{make_tree, torrent_of, TREE};

const PIECE: u64 = 16 * 1024;

/// Every file of the torrent holds the same bytes under both directories.
fn assert_same_files(
    meta: &swarmfs::metainfo::Metainfo,
    source: &std::path::Path,
    data: &std::path::Path,
) {
    for f in &meta.files {
        let a = std::fs::read(source.join(f.relative_path())).unwrap();
        let b = std::fs::read(data.join(f.relative_path())).unwrap();
        assert!(a == b, "{:?} differs", f.path);
    }
}

/// Every piece verifies, and the files are the source's.
fn assert_complete_copy(
    meta: &swarmfs::metainfo::Metainfo,
    store: &Storage,
    source: &std::path::Path,
    data: &std::path::Path,
) {
    let all = check::verify_pieces(store, 2, &|_| true, &|_| {}).unwrap();
    assert_eq!(all.count_ones(), meta.piece_count() as usize);
    assert_same_files(meta, source, data);
}

#[test]
fn download_layout_round_trips_blocks_across_files() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = make_tree(source_dir.path(), "content", TREE);
    let (meta, _) = torrent_of(&source, PIECE);
    let seed = Storage::open(&meta, source_dir.path(), OpenMode::ReadOnly).unwrap();

    // A fresh data directory: Create makes every file, the empty one too.
    let data = tempfile::tempdir().unwrap();
    let store = Storage::open(&meta, data.path(), OpenMode::Create).unwrap();
    for f in &meta.files {
        let on_disk = std::fs::metadata(data.path().join(f.relative_path())).unwrap();
        assert_eq!(on_disk.len(), f.length, "{:?}", f.path);
    }
    let none = check::verify_pieces(&store, 2, &|_| true, &|_| {}).unwrap();
    assert_eq!(none.count_ones(), 0);

    // Copy piece by piece in 16 KiB blocks, in reverse, with odd block sizes
    // at the end of each piece to cross file boundaries mid-block.
    let mut block = vec![0u8; 7000];
    for piece in (0..meta.piece_count()).rev() {
        let size = meta.piece_size(piece);
        let mut offset = 0;
        while offset < size {
            let len = (size - offset).min(block.len() as u64) as usize;
            seed.read_block(piece, offset, &mut block[..len]).unwrap();
            store.write_block(piece, offset, &block[..len]).unwrap();
            offset += len as u64;
        }
    }
    assert_complete_copy(&meta, &store, source_dir.path(), data.path());
}

#[test]
fn new_files_have_their_space_reserved_unless_sparse_and_existing_ones_are_only_extended() {
    use std::os::unix::fs::MetadataExt;
    let source_dir = tempfile::tempdir().unwrap();
    let source = make_tree(source_dir.path(), "content", TREE);
    let (meta, _) = torrent_of(&source, PIECE);
    let data = tempfile::tempdir().unwrap();
    // A user's file already there, shorter than the torrent's: its bytes
    // stay, and it is extended, not reserved (it is not ours to fill).
    std::fs::create_dir_all(data.path().join("content")).unwrap();
    std::fs::write(data.path().join("content/a.bin"), b"user bytes").unwrap();

    let store = Storage::open(&meta, data.path(), OpenMode::Create).unwrap();
    assert_eq!(store.unreserved().count(), 0);
    let on_disk = |name: &str| std::fs::metadata(data.path().join("content").join(name)).unwrap();
    for (name, len) in [
        ("sub/b.bin", 16_384),
        ("sub/deeper/c.bin", 70_001),
        ("z.txt", 5),
    ] {
        let m = on_disk(name);
        assert_eq!(m.len(), len, "{name}");
        assert!(
            m.blocks() * 512 >= len,
            "{name}: {} bytes allocated",
            m.blocks() * 512
        );
    }
    let a = on_disk("a.bin");
    assert_eq!(a.len(), 40_000);
    assert!(
        a.blocks() * 512 < 40_000,
        "a.bin was filled: {} bytes allocated",
        a.blocks() * 512
    );
    let bytes = std::fs::read(data.path().join("content/a.bin")).unwrap();
    assert_eq!(&bytes[..10], b"user bytes");
    assert!(bytes[10..].iter().all(|&b| b == 0));
    // Reserved space reads as zeros: nothing is had before it is written.
    let none = check::verify_pieces(&store, 2, &|_| true, &|_| {}).unwrap();
    assert_eq!(none.count_ones(), 0);

    // `-o sparse`: new files get their length and no blocks.
    let sparse = tempfile::tempdir().unwrap();
    let store = Storage::open(&meta, sparse.path(), OpenMode::CreateSparse).unwrap();
    let m = std::fs::metadata(sparse.path().join("content/sub/deeper/c.bin")).unwrap();
    assert_eq!(m.len(), 70_001);
    assert_eq!(m.blocks(), 0);
    let none = check::verify_pieces(&store, 2, &|_| true, &|_| {}).unwrap();
    assert_eq!(none.count_ones(), 0);
}

#[test]
fn verification_finds_exactly_the_damaged_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_tree(dir.path(), "content", TREE);
    let (meta, _) = torrent_of(&source, PIECE);
    // Flip a byte at stream offset 50_000 (sub/b.bin at 10_000: piece 3) and
    // remove z.txt (last piece).
    let b = OpenOptions::new()
        .write(true)
        .open(source.join("sub/b.bin"))
        .unwrap();
    b.write_all_at(b"\xff", 10_000).unwrap();
    std::fs::remove_file(source.join("z.txt")).unwrap();

    let store = Storage::open(&meta, dir.path(), OpenMode::ReadOnly).unwrap();
    let have = check::verify_pieces(&store, 2, &|_| true, &|_| {}).unwrap();
    let missing: Vec<usize> = have.iter_zeros().collect();
    let last = meta.piece_count() as usize - 1;
    assert_eq!(missing, vec![3, last]);
    assert!(
        store.write_block(0, 0, b"x").is_err(),
        "read-only storage accepted a write"
    );
}

#[test]
fn verification_in_runs_of_pieces_finds_exactly_the_damaged_and_unwanted_ones() {
    // 45 pieces and a short last one: several full runs of pieces hashed
    // together and a short run at the end, on CPUs that hash in batches.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("content");
    std::fs::create_dir(&source).unwrap();
    let bytes: Vec<u8> = (0..45 * PIECE as u32 + 1234)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(source.join("one.bin"), &bytes[..300_000]).unwrap();
    std::fs::write(source.join("two.bin"), &bytes[300_000..]).unwrap();
    let (meta, _) = torrent_of(&source, PIECE);
    assert_eq!(meta.piece_count(), 46);
    // Damage pieces 0, 17 and the last; leave 30 out of the check.
    let file = OpenOptions::new()
        .write(true)
        .open(source.join("one.bin"))
        .unwrap();
    file.write_at(b"\xff\x00", 10).unwrap();
    file.write_at(b"!", 17 * PIECE + 5).unwrap();
    let file = OpenOptions::new()
        .write(true)
        .open(source.join("two.bin"))
        .unwrap();
    file.write_at(b"?", (bytes.len() - 300_001) as u64).unwrap();

    let store = Storage::open(&meta, dir.path(), OpenMode::ReadOnly).unwrap();
    let calls = std::sync::atomic::AtomicU32::new(0);
    let have = check::verify_pieces(&store, 2, &|p| p != 30, &|_| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    let missing: Vec<usize> = have.iter_zeros().collect();
    assert_eq!(missing, vec![0, 17, 30, 45]);
    assert_eq!(calls.into_inner(), 46, "progress once a piece");
}

#[test]
fn out_of_range_blocks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_tree(dir.path(), "content", TREE);
    let (meta, _) = torrent_of(&source, PIECE);
    let store = Storage::open(&meta, dir.path(), OpenMode::ReadOnly).unwrap();
    let last = meta.piece_count() - 1;
    let mut buf = vec![0u8; 16];
    assert!(store.read_block(last + 1, 0, &mut buf).is_err());
    assert!(store.read_block(0, PIECE - 8, &mut buf).is_err());
    assert!(store
        .read_block(last, meta.piece_size(last), &mut buf)
        .is_err());
}

fn recorded(meta: &swarmfs::metainfo::Metainfo, data: &std::path::Path) -> Bitfield {
    let store = Storage::open(meta, data, OpenMode::ReadOnly).unwrap();
    let have = check::verify_pieces(&store, 2, &|_| true, &|_| {}).unwrap();
    resume::record(&store, meta, &have, &resume::path_for(data, meta)).unwrap();
    have
}

#[test]
fn resume_file_is_trusted_only_while_the_data_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_tree(dir.path(), "content", TREE);
    let (meta, _) = torrent_of(&source, PIECE);
    let path = resume::path_for(dir.path(), &meta);
    assert!(resume::trusted_have(dir.path(), &meta, &path)
        .unwrap_err()
        .contains("no resume file"));

    let have = recorded(&meta, dir.path());
    assert_eq!(have.count_ones(), meta.piece_count() as usize);
    assert_eq!(
        resume::trusted_have(dir.path(), &meta, &path).unwrap(),
        have
    );

    // Touch a file's contents (same size): the mtime moves, trust is gone.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let f = OpenOptions::new()
        .write(true)
        .open(source.join("a.bin"))
        .unwrap();
    f.write_all_at(b"\0", 0).unwrap();
    drop(f);
    let why = resume::trusted_have(dir.path(), &meta, &path).unwrap_err();
    assert!(why.contains("content/a.bin changed"), "{why}");

    // Record again, then remove a file: trust is gone again.
    recorded(&meta, dir.path());
    assert!(resume::trusted_have(dir.path(), &meta, &path).is_ok());
    std::fs::remove_file(source.join("z.txt")).unwrap();
    assert!(resume::trusted_have(dir.path(), &meta, &path).is_err());
}

#[test]
fn damaged_or_foreign_resume_files_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_tree(dir.path(), "content", TREE);
    let (meta, _) = torrent_of(&source, PIECE);
    let path = resume::path_for(dir.path(), &meta);
    recorded(&meta, dir.path());
    let good = std::fs::read(&path).unwrap();

    // Any single flipped byte is caught by the checksum line or the parser.
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x20;
        let decoded = Resume::decode(&bad, &meta);
        assert!(decoded.is_err(), "flipped byte {i} was accepted");
    }
    // Truncations (a torn write, were the rename not atomic) likewise.
    for end in 0..good.len() {
        assert!(
            Resume::decode(&good[..end], &meta).is_err(),
            "prefix of {end} bytes accepted"
        );
    }
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let why = resume::trusted_have(dir.path(), &meta, &path).unwrap_err();
    assert!(why.contains("damaged"), "{why}");

    // Another torrent's resume file under this one's name.
    let other_dir = tempfile::tempdir().unwrap();
    let other = make_tree(other_dir.path(), "content", &[("a.bin", 30_000)]);
    let (other_meta, _) = torrent_of(&other, PIECE);
    recorded(&other_meta, other_dir.path());
    std::fs::copy(resume::path_for(other_dir.path(), &other_meta), &path).unwrap();
    let why = resume::trusted_have(dir.path(), &meta, &path).unwrap_err();
    assert!(why.contains("another torrent"), "{why}");
}

#[test]
fn resume_encoding_round_trips_partial_bitfields() {
    let dir = tempfile::tempdir().unwrap();
    let source = make_tree(dir.path(), "content", TREE);
    let (meta, _) = torrent_of(&source, PIECE);
    let store = Storage::open(&meta, dir.path(), OpenMode::ReadOnly).unwrap();
    let mut have = Bitfield::repeat(false, meta.piece_count() as usize);
    have.set(1, true);
    have.set(meta.piece_count() as usize - 1, true);
    let original = Resume {
        info_hash: meta.info_hash,
        have,
        stamps: store.stamps().unwrap(),
    };
    let decoded = Resume::decode(&original.encode(), &meta).unwrap();
    assert_eq!(decoded, original);
}

#[test]
fn vectored_writes_across_files_verify_with_and_without_the_running_hash() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = make_tree(source_dir.path(), "content", TREE);
    // Pieces larger than some files, so a piece's blocks span several files.
    let (meta, _) = torrent_of(&source, 4 * PIECE);
    let seed = Storage::open(&meta, source_dir.path(), OpenMode::ReadOnly).unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = Storage::open(&meta, data.path(), OpenMode::Create).unwrap();
    assert!(
        store.found_no_data(),
        "a fresh directory holds nothing to check"
    );
    let hashers = PieceHashers::new();
    for piece in 0..meta.piece_count() {
        let size = meta.piece_size(piece) as usize;
        let mut whole = vec![0u8; size];
        seed.read_block(piece, 0, &mut whole).unwrap();
        let whole = Bytes::from(whole);
        // Odd-sized blocks, written three at a time, in two runs out of order.
        let blocks: Vec<(usize, Bytes)> = (0..size)
            .step_by(5000)
            .map(|o| (o, whole.slice(o..(o + 5000).min(size))))
            .collect();
        let (first, second) = blocks.split_at(blocks.len() / 2);
        for run in [second, first] {
            for chunk in run.chunks(3) {
                let slices: Vec<&[u8]> = chunk.iter().map(|(_, b)| b.as_ref()).collect();
                store
                    .write_blocks(piece, chunk[0].0 as u64, &slices)
                    .unwrap();
                for (o, b) in chunk {
                    hashers.feed(piece, *o as u64, b);
                }
            }
        }
        // Every other piece is checked from the running hash, the rest from disk.
        let partial = if piece % 2 == 0 {
            hashers.take(piece)
        } else {
            None
        };
        assert!(store.verify_rest(piece, partial).unwrap(), "piece {piece}");
        hashers.take(piece);
        assert_eq!(
            hashers.held_bytes(),
            0,
            "nothing held once a piece is taken"
        );
    }
    assert_same_files(&meta, source_dir.path(), data.path());
    // A corrupted byte on disk fails a piece verified from disk.
    let first = data.path().join(meta.files[0].relative_path());
    let file = OpenOptions::new().write(true).open(&first).unwrap();
    file.write_at(b"\xff", 3).unwrap();
    assert!(!store.verify_rest(0, None).unwrap());
    let reopened = Storage::open(&meta, data.path(), OpenMode::Create).unwrap();
    assert!(!reopened.found_no_data());
}

/// Pieces staged in memory and written whole: page-aligned stretches go
/// past the page cache, the rest (pieces that straddle files at odd
/// offsets, a short last piece) through it; the bytes are the same.
#[test]
fn whole_pieces_from_memory_land_byte_for_byte_across_files() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = make_tree(source_dir.path(), "content", TREE);
    for piece_length in [PIECE, 4 * PIECE] {
        let (meta, _) = torrent_of(&source, piece_length);
        let seed = Storage::open(&meta, source_dir.path(), OpenMode::ReadOnly).unwrap();
        let data = tempfile::tempdir().unwrap();
        let store = Storage::open(&meta, data.path(), OpenMode::Create).unwrap();
        let staging = StagedPieces::new(1 << 20);
        for piece in (0..meta.piece_count()).rev() {
            let size = meta.piece_size(piece);
            let mut whole = vec![0u8; size as usize];
            seed.read_block(piece, 0, &mut whole).unwrap();
            let offsets: Vec<u64> = (0..size).step_by(5000).collect();
            for &offset in offsets.iter().rev() {
                let end = (offset + 5000).min(size) as usize;
                let put = staging.put(piece, size, offset, &whole[offset as usize..end]);
                assert_eq!(put, Put::Staged);
            }
            let staged = staging.take(piece).unwrap();
            let buffer = staged.buffer;
            assert!(
                store.staged_hash_matches(piece, staged.partial, &buffer),
                "piece {piece}"
            );
            store.write_piece(piece, &buffer).unwrap();
            staging.give_back(buffer);
        }
        assert_complete_copy(&meta, &store, source_dir.path(), data.path());
    }
}

/// Which of `len` bytes of `path` from its start are in the page cache, a
/// flag a 4 KiB page.
fn resident_pages(path: &std::path::Path, len: usize) -> Vec<bool> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let pages = len.div_ceil(4096);
    let mut flags = vec![0u8; pages];
    // SAFETY: a read-only shared mapping of an open file, unmapped below;
    // mincore writes one byte a page into `flags`, which has that many.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED);
        assert_eq!(libc::mincore(map, len, flags.as_mut_ptr()), 0);
        libc::munmap(map, len);
    }
    flags.iter().map(|f| f & 1 == 1).collect()
}

/// A staged piece goes past the page cache (where the filesystem takes
/// O_DIRECT, as ext4, xfs and btrfs do); a streaming reader reads the
/// pieces kept for it from memory, other pieces from the data file.
#[test]
fn staged_pieces_go_past_the_page_cache_and_kept_ones_are_read_from_memory() {
    let source_dir = tempfile::tempdir().unwrap();
    let size = 256 * 1024 + 100;
    let source = make_tree(source_dir.path(), "content", &[("one.bin", size)]);
    let (meta, _) = torrent_of(&source, 64 * 1024);
    let seed = Storage::open(&meta, source_dir.path(), OpenMode::ReadOnly).unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = Storage::open(&meta, data.path(), OpenMode::Create).unwrap();
    let staging = StagedPieces::new(1 << 20);
    let path = data.path().join(meta.files[0].relative_path());
    for piece in 0..meta.piece_count() {
        let len = meta.piece_size(piece);
        let mut whole = vec![0u8; len as usize];
        seed.read_block(piece, 0, &mut whole).unwrap();
        assert_eq!(staging.put(piece, len, 0, &whole), Put::Staged);
        let buffer = staging.take(piece).unwrap().buffer;
        // Pieces 2 and 3 are kept for a reader, from before their write;
        // piece 4 is the short tail.
        if piece == 2 || piece == 3 {
            let (shared, let_go) = store.keep_for_readers(piece, buffer);
            assert!(let_go.is_empty());
            let start = piece as u64 * 64 * 1024;
            let early = store
                .kept_file_slice(0, start, 100)
                .expect("readable before written");
            assert!(early[..] == whole[..100]);
            store.write_piece(piece, &shared).unwrap();
            store.written_for_readers(piece);
            staging.detach(&shared);
        } else {
            store.write_piece(piece, &buffer).unwrap();
            staging.give_back(buffer);
        }
    }
    let resident = resident_pages(&path, 256 * 1024);
    // tmpfs takes O_DIRECT but keeps every byte in the page cache anyway.
    let on_tmpfs = {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::ffi::CString::new(data.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path and a statfs buffer we own.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statfs(dir.as_ptr(), &mut st) }, 0);
        st.f_type == libc::TMPFS_MAGIC
    };
    let direct_possible = {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .is_ok()
    };
    if direct_possible && !on_tmpfs {
        assert!(resident.iter().all(|r| !r), "pieces cached: {resident:?}");
    } else {
        eprintln!("O_DIRECT refused, or tmpfs: every write went through the cache");
        assert!(resident.iter().all(|r| *r), "{resident:?}");
    }
    let want = std::fs::read(source.join("one.bin")).unwrap();
    assert!(std::fs::read(&path).unwrap() == want);
    // Spoil pieces 2 and 3 on disk: reads of them still return what was
    // verified, from memory; a read of piece 1 comes from the file.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xee; 2 * 64 * 1024], 2 * 64 * 1024)
        .unwrap();
    file.write_all_at(&[0xee; 10], 64 * 1024).unwrap();
    let mut buf = vec![0u8; 100_000];
    let n = store.read_file_at(0, 140_000, &mut buf).unwrap();
    assert_eq!(n, 100_000);
    assert!(buf[..] == want[140_000..240_000], "kept pieces 2 and 3");
    let n = store.read_file_at(0, 64 * 1024, &mut buf[..10]).unwrap();
    assert_eq!((n, &buf[..10]), (10, &[0xee; 10][..]), "piece 1 from disk");
    // The filesystem reads through its own read-only Storage, sharing them.
    let reader = Storage::open(&meta, data.path(), OpenMode::ReadOnly)
        .unwrap()
        .with_kept_pieces(store.kept_pieces());
    buf.fill(0);
    reader.read_file_at(0, 140_000, &mut buf).unwrap();
    assert!(buf[..] == want[140_000..240_000], "kept pieces, shared");
    // A read inside one kept piece can be answered without a copy; one
    // that spans two, or reaches a piece not kept, cannot.
    let slice = reader.kept_file_slice(0, 140_000, 40_000).unwrap();
    assert!(slice[..] == want[140_000..180_000], "slice of kept piece 2");
    assert!(reader.kept_file_slice(0, 140_000, 100_000).is_none());
    assert!(reader.kept_file_slice(0, 60_000, 10_000).is_none());
    assert!(
        reader.kept_file_slice(0, size as u64, 10).is_none(),
        "past the end"
    );
    // Reads went through piece 2 to its end, not through piece 3: only
    // piece 2 goes with the pieces reads are done with.
    store.forget_kept_pieces(KeptPieces::Read);
    assert!(reader.kept_file_slice(0, 140_000, 40_000).is_none());
    assert!(reader.kept_file_slice(0, 200_000, 10_000).is_some());
    store.forget_kept_pieces(KeptPieces::All);
    assert!(reader.kept_file_slice(0, 200_000, 10_000).is_none());
    assert!(
        slice[..] == want[140_000..180_000],
        "a slice outlives forgetting"
    );
    assert!(reader.kept_file_slice(0, 140_000, 40_000).is_none());
    let n = reader.read_file_at(0, 140_000, &mut buf).unwrap();
    assert_eq!((n, buf[0]), (100_000, 0xee), "from disk once let go");
    let n = store.read_file_at(0, 140_000, &mut buf).unwrap();
    assert_eq!((n, buf[0]), (100_000, 0xee), "from disk once let go");
}

/// Links planted in the data directory (by another user, an archive, a
/// previous torrent) must not let a torrent write, or read, outside it.
#[test]
fn symlinks_in_the_data_directory_are_never_followed() {
    use std::os::unix::fs::symlink;
    use swarmfs::storage::StorageError;

    let source_dir = tempfile::tempdir().unwrap();
    let source = make_tree(source_dir.path(), "content", TREE);
    let (meta, _) = torrent_of(&source, PIECE);
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();

    // 1. The torrent's top directory is a link to somewhere else.
    let data = tempfile::tempdir().unwrap();
    symlink(outside.path(), data.path().join("content")).unwrap();
    for mode in [OpenMode::Create, OpenMode::ReadOnly] {
        match Storage::open(&meta, data.path(), mode) {
            Err(StorageError::Symlink { path }) => assert_eq!(path, data.path().join("content")),
            Err(e) => panic!("{mode:?}: wrong error {e}"),
            Ok(_) => panic!("{mode:?}: followed the link"),
        }
    }
    let message = Storage::open(&meta, data.path(), OpenMode::Create)
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("symbolic link"), "{message}");
    // 2. A directory deeper down is a link.
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("content")).unwrap();
    symlink(outside.path(), data.path().join("content/sub")).unwrap();
    assert!(matches!(
        Storage::open(&meta, data.path(), OpenMode::Create),
        Err(StorageError::Symlink { .. })
    ));
    // 3. A file is a link to a file outside.
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("content")).unwrap();
    symlink(&victim, data.path().join("content/z.txt")).unwrap();
    assert!(matches!(
        Storage::open(&meta, data.path(), OpenMode::Create),
        Err(StorageError::Symlink { .. })
    ));
    // Nothing outside was created, extended or written.
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let names: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("victim")]);
    // A data directory that is itself a link is the user's choice: followed.
    let real = tempfile::tempdir().unwrap();
    let via = tempfile::tempdir().unwrap();
    symlink(real.path(), via.path().join("data")).unwrap();
    let store = Storage::open(&meta, &via.path().join("data"), OpenMode::Create).unwrap();
    assert!(real.path().join("content/sub/deeper/c.bin").is_file());
    assert!(store.reopen_read_only(0).is_ok());
}
