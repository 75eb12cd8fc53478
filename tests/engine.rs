//! Swarm engines exchanging real torrents over 127.0.0.1: bytes compared with
//! the source, resume files written, hostile peers handled.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use swarmfs::engine::{Command, Engine, Event, PeerSelector};
use swarmfs::metainfo::Metainfo;
use swarmfs::storage::resume;

use common::{config, logger};

fn seeder(meta: &Metainfo, data: &Path) -> Engine {
    common::seeder_with(meta, config(data, vec![]))
}

/// Waits for `Done` (or for completion seen in stats), failing after `limit`.
fn wait_done(engine: &Engine, limit: Duration) -> Vec<Event> {
    let handle = engine.handle();
    let mut events = handle.subscribe();
    engine.block_on(async {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let stats = handle.stats().await.expect("engine running");
            if stats.pieces_have == stats.pieces_total {
                return seen;
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(Event::Done)) => {
                    seen.push(Event::Done);
                    return seen;
                }
                Ok(Ok(e)) => seen.push(e),
                Ok(Err(_)) => {}
                Err(_) => panic!(
                    "not done after {limit:?}: {:?}\nevents: {seen:?}",
                    handle.stats().await
                ),
            }
        }
    })
}

fn same_files(meta: &Metainfo, a: &Path, b: &Path) {
    for f in &meta.files {
        let x = std::fs::read(a.join(f.relative_path())).unwrap();
        let y = std::fs::read(b.join(f.relative_path())).unwrap();
        assert!(x == y, "{} differs", f.relative_path().display());
    }
}

const BIG_TREE: &[(&str, usize)] = &[
    ("a.bin", 1_500_000),
    ("empty", 0),
    ("sub/b.bin", 262_144),
    ("sub/deeper/c.bin", 2_345_679),
    ("z.txt", 5),
];

#[test]
fn three_seeders_and_one_leecher_exchange_a_multi_file_torrent() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", BIG_TREE);
    let (meta, _) = common::torrent_of(&source, 32 * 1024);

    let seeders: Vec<Engine> = (0..3).map(|_| seeder(&meta, source_dir.path())).collect();
    let addrs: Vec<SocketAddr> = seeders.iter().map(|s| s.listen_addr().unwrap()).collect();

    let data = tempfile::tempdir().unwrap();
    let leecher = Engine::start(meta.clone(), config(data.path(), addrs), logger()).unwrap();
    let events = wait_done(&leecher, Duration::from_secs(60));
    let stats = leecher.block_on(leecher.handle().stats()).unwrap();
    assert_eq!(stats.pieces_have, meta.piece_count());
    assert_eq!(stats.state.as_str(), "seeding");
    let peers = leecher.block_on(leecher.handle().peers()).unwrap();
    assert_eq!(peers.len(), 3, "connected to all three seeders");
    // The name comes from the extension handshake's `v` (BEP 10).
    let version = format!("swarmfs {}", env!("CARGO_PKG_VERSION"));
    assert!(peers.iter().all(|p| p.client == version), "{peers:?}");
    let from_each: Vec<u64> = peers.iter().map(|p| p.downloaded).collect();
    leecher.shutdown();
    for s in seeders {
        s.shutdown();
    }
    same_files(&meta, source_dir.path(), data.path());
    assert!(
        data.path().join("content/empty").is_file(),
        "empty files are created"
    );
    // The resume file records every piece, and is trusted at the next start.
    let have =
        resume::trusted_have(data.path(), &meta, &resume::path_for(data.path(), &meta)).unwrap();
    assert_eq!(have.count_ones(), meta.piece_count() as usize);
    let connected = events
        .iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    let pieces = events
        .iter()
        .filter(|e| matches!(e, Event::Piece(_)))
        .count();
    assert!(connected <= 3 && pieces > 0, "{events:?}");
    assert!(
        from_each.iter().filter(|&&b| b > 0).count() >= 2,
        "blocks came from several seeders: {from_each:?}"
    );
}

#[test]
fn a_leecher_seeds_what_it_has_to_another_leecher() {
    // seeder -> A -> B: B only knows A, so every byte B gets passed through A.
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", common::TREE);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let seeder = seeder(&meta, source_dir.path());
    let a_dir = tempfile::tempdir().unwrap();
    let mut a_config = config(a_dir.path(), vec![seeder.listen_addr().unwrap()]);
    a_config.pex = false; // else A tells the seeder of B, and it dials B
    let a = Engine::start(meta.clone(), a_config, logger()).unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let mut b_config = config(b_dir.path(), vec![a.listen_addr().unwrap()]);
    b_config.pex = false; // else A tells B of the seeder
    let b = Engine::start(meta.clone(), b_config, logger()).unwrap();
    wait_done(&b, Duration::from_secs(60));
    let a_stats = a.block_on(a.handle().stats()).unwrap();
    assert!(
        a_stats.uploaded >= meta.total_length,
        "A uploaded {}",
        a_stats.uploaded
    );
    b.shutdown();
    a.shutdown();
    seeder.shutdown();
    same_files(&meta, source_dir.path(), b_dir.path());
}

#[test]
fn a_restarted_leecher_trusts_its_resume_file() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", common::TREE);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let seeder = seeder(&meta, source_dir.path());
    let data = tempfile::tempdir().unwrap();
    let leecher = Engine::start(
        meta.clone(),
        config(data.path(), vec![seeder.listen_addr().unwrap()]),
        logger(),
    )
    .unwrap();
    wait_done(&leecher, Duration::from_secs(60));
    leecher.shutdown();
    seeder.shutdown();
    // Alone now, with no peers: it must start complete, from the resume file.
    let again = Engine::start(meta.clone(), config(data.path(), vec![]), logger()).unwrap();
    let stats = again.block_on(again.handle().stats()).unwrap();
    assert_eq!(stats.state.as_str(), "seeding");
    assert_eq!(stats.pieces_have, meta.piece_count());
    assert_eq!(stats.downloaded, 0);
    again.shutdown();
}

#[test]
fn download_limit_paces_the_transfer_and_can_be_lifted_while_running() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 2_000_000)]);
    let (meta, _) = common::torrent_of(&source, 32 * 1024);
    let seeder = seeder(&meta, source_dir.path());
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), vec![seeder.listen_addr().unwrap()]);
    c.down_limit = 256 * 1024;
    let leecher = Engine::start(meta.clone(), c, logger()).unwrap();
    let handle = leecher.handle();
    let (have_at_2s, rate) = leecher.block_on(async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = handle.stats().await.unwrap();
        (s.have, s.down_limit)
    });
    assert_eq!(rate, 256 * 1024);
    // 2 s at 256 KiB/s, plus one burst: well under the 2 MB total.
    assert!(
        have_at_2s <= 900_000,
        "{have_at_2s} bytes after 2 s at 256 KiB/s"
    );
    let started = std::time::Instant::now();
    leecher.block_on(handle.send(Command::SetDownLimit(0)));
    wait_done(&leecher, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "unlimited took {:?}",
        started.elapsed()
    );
    leecher.shutdown();
    seeder.shutdown();
}

/// A leecher downloading at 1 MiB/s into `data`, with no peers yet.
fn slow_leecher(meta: &Metainfo, data: &Path) -> Engine {
    let mut c = config(data, vec![]);
    c.down_limit = 1 << 20;
    Engine::start(meta.clone(), c, logger()).unwrap()
}

/// The first `count` pieces a slow leecher verifies from three seeders of
/// a 123-piece torrent, after a `files/` read of `piece` told it so
/// (`pull`: the pieces the read pulls forward, as the filesystem asks).
fn first_verified_after_a_read(piece: u32, pull: Vec<u32>, count: usize) -> Vec<u32> {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 4_000_000)]);
    let (meta, _) = common::torrent_of(&source, 32 * 1024);
    let seeders: Vec<Engine> = (0..3).map(|_| seeder(&meta, source_dir.path())).collect();
    let data = tempfile::tempdir().unwrap();
    // Slow enough that the window's pieces are still missing while every
    // peer's first requests are picked.
    let leecher = slow_leecher(&meta, data.path());
    let handle = leecher.handle();
    let mut events = handle.subscribe();
    let verified = leecher.block_on(async {
        handle.send(Command::Read { piece, pull }).await;
        for s in &seeders {
            handle
                .send(Command::Connect(s.listen_addr().unwrap()))
                .await;
        }
        let mut verified = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while verified.len() < count {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(Event::Piece(p))) => verified.push(p),
                Ok(_) => {}
                Err(_) => panic!("{count} pieces not verified in time: {verified:?}"),
            }
        }
        verified
    });
    leecher.shutdown();
    for s in seeders {
        s.shutdown();
    }
    verified
}

/// Streaming from one peer: the case where complete pieces wait to be
/// hashed in batches (on a CPU with AVX-512). Every piece is verified once,
/// the download completes, and the data is the seeder's, byte for byte.
#[test]
fn streaming_from_one_seeder_verifies_every_piece_once() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(
        source_dir.path(),
        "content",
        &[("a.bin", 3_000_000), ("b.bin", 1_234_567)],
    );
    // 130 pieces, the last one short: several full batches and a partial one.
    let (meta, _) = common::torrent_of(&source, 32 * 1024);
    let seed = seeder(&meta, source_dir.path());
    let data = tempfile::tempdir().unwrap();
    let leecher = Engine::start(meta.clone(), config(data.path(), vec![]), logger()).unwrap();
    let handle = leecher.handle();
    let mut events = handle.subscribe();
    let verified = leecher.block_on(async {
        // A read waits on the first pieces before the peer connects.
        handle
            .send(Command::Read {
                piece: 0,
                pull: (0..4).collect(),
            })
            .await;
        handle
            .send(Command::Connect(seed.listen_addr().unwrap()))
            .await;
        let mut verified = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(Event::Piece(p))) => verified.push(p),
                Ok(Ok(Event::Done)) => return verified,
                Ok(Ok(Event::HashFail { piece, .. })) => panic!("piece {piece} failed"),
                Ok(_) => {}
                Err(_) => panic!("not done in time: {} verified", verified.len()),
            }
        }
    });
    leecher.shutdown();
    seed.shutdown();
    let mut sorted = verified.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), verified.len(), "a piece verified twice");
    assert_eq!(sorted, (0..meta.piece_count()).collect::<Vec<_>>());
    for f in &meta.files {
        let a = std::fs::read(source_dir.path().join(f.relative_path())).unwrap();
        let b = std::fs::read(data.path().join(f.relative_path())).unwrap();
        assert!(a == b, "{} differs", f.relative_path().display());
    }
}

/// Streaming from several peers: while a read waits on the first pieces,
/// the pieces after them are fetched in order by every peer, not spread
/// over the torrent rarest first (a reader would meet those only after the
/// download, on disk).
#[test]
fn with_a_read_waiting_several_seeders_fetch_in_order() {
    // The reader's window, as a files/ read at offset 0 asks for it.
    let verified = first_verified_after_a_read(0, (0..4).collect(), 20);
    // 123 pieces; picked rarest first (here: at random) past the window,
    // most of these would lie beyond 40.
    assert!(
        verified.iter().all(|&p| p < 40),
        "the first pieces verified: {verified:?}"
    );
}

/// A reader whose window holds nothing missing (the download got there
/// first) still has the download go on in order from where it reads, not
/// rarest first.
#[test]
fn a_reader_with_nothing_missing_ahead_still_gets_pieces_in_order() {
    let verified = first_verified_after_a_read(60, Vec::new(), 20);
    assert!(
        verified.iter().all(|&p| (60..100).contains(&p)),
        "the first pieces verified: {verified:?}"
    );
}

#[test]
fn stop_disconnects_everyone_and_start_resumes() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 3_000_000)]);
    let (meta, _) = common::torrent_of(&source, 32 * 1024);
    let seeder = seeder(&meta, source_dir.path());
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), vec![seeder.listen_addr().unwrap()]);
    c.down_limit = 512 * 1024;
    let leecher = Engine::start(meta.clone(), c, logger()).unwrap();
    let handle = leecher.handle();
    let mut events = handle.subscribe();
    leecher.block_on(async {
        // Wait for the connection, then stop.
        loop {
            if let Ok(Event::Connected { .. }) = events.recv().await {
                break;
            }
        }
        handle.send(Command::Stop).await;
        loop {
            match events.recv().await {
                Ok(Event::Stopped) => break,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let s = handle.stats().await.unwrap();
        assert_eq!(s.state.as_str(), "stopped");
        assert_eq!(s.peers, 0);
        let have = s.have;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let s = handle.stats().await.unwrap();
        assert_eq!(s.peers, 0, "stopped engines do not dial");
        assert_eq!(s.have, have, "nothing arrives while stopped");
        handle.send(Command::SetDownLimit(0)).await;
        handle.send(Command::Start).await;
    });
    wait_done(&leecher, Duration::from_secs(30));
    leecher.shutdown();
    seeder.shutdown();
    same_files(&meta, source_dir.path(), data.path());
}

#[test]
fn disconnect_by_id_and_connect_by_address() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 200_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let seeder = seeder(&meta, source_dir.path());
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), vec![]);
    c.down_limit = 64 * 1024;
    let leecher = Engine::start(meta.clone(), c, logger()).unwrap();
    let handle = leecher.handle();
    let mut events = handle.subscribe();
    let addr = seeder.listen_addr().unwrap();
    leecher.block_on(async {
        assert!(handle.peers().await.unwrap().is_empty());
        handle.send(Command::Connect(addr)).await;
        let id = loop {
            if let Ok(Event::Connected {
                id,
                addr: a,
                client,
            }) = events.recv().await
            {
                assert_eq!(a, addr);
                assert!(client.starts_with("swarmfs"), "{client}");
                break id;
            }
        };
        let peers = handle.peers().await.unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].id, id);
        handle.send(Command::Disconnect(PeerSelector::Id(id))).await;
        loop {
            if let Ok(Event::Disconnected {
                id: gone, reason, ..
            }) = events.recv().await
            {
                assert_eq!(gone, id);
                assert_eq!(reason, "disconnected by user");
                break;
            }
        }
        // The disconnect holds: the dialer does not reconnect at once.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(handle.peers().await.unwrap().is_empty());
    });
    leecher.shutdown();
    seeder.shutdown();
}

#[test]
fn engines_trade_over_ipv6_and_dual_stack_listeners_take_ipv4() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", common::TREE);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    // A seeder on [::] (dual stack), reached over ::1 by one leecher and
    // over 127.0.0.1 by another.
    let mut c = config(source_dir.path(), vec![]);
    c.listen = Some("[::]:0".parse().unwrap());
    let seeder = common::seeder_with(&meta, c);
    let port = seeder.listen_addr().unwrap().port();
    for (peer, seen_as) in [
        (format!("[::1]:{port}"), "::1"),
        (format!("127.0.0.1:{port}"), "127.0.0.1"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut c = config(data.path(), vec![peer.parse().unwrap()]);
        c.listen = None;
        let leecher = Engine::start(meta.clone(), c, logger()).unwrap();
        wait_done(&leecher, Duration::from_secs(30));
        // The seeder sees its IPv4 peer as 127.0.0.1, not ::ffff:127.0.0.1.
        let peers = seeder.block_on(seeder.handle().peers()).unwrap();
        let ips: Vec<String> = peers.iter().map(|p| p.addr.ip().to_string()).collect();
        assert!(
            ips.iter().any(|ip| ip == seen_as),
            "seeder's view over {peer}: {ips:?}"
        );
        assert!(!ips.iter().any(|ip| ip.starts_with("::ffff:")), "{ips:?}");
        leecher.shutdown();
        same_files(&meta, source_dir.path(), data.path());
    }
    seeder.shutdown();
}

/// A seeds; B knows A; C knows only B. Returns whether C and A got connected
/// (in either direction: A may learn of C first) within `limit`, which only
/// peer exchange through B can bring about.
fn c_meets_a_through_b(private: bool, limit: Duration) -> bool {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 3_000_000)]);
    let options = swarmfs::metainfo::create::CreateOptions {
        piece_length: Some(16 * 1024),
        private,
        ..Default::default()
    };
    let meta = swarmfs::metainfo::create::create(&source, &options, &|_, _| {})
        .unwrap()
        .meta;
    let fast_pex = |mut c: swarmfs::engine::Config| {
        c.pex_interval = Duration::from_secs(1);
        c.down_limit = 256 * 1024; // keep everyone busy long enough
        c
    };
    let mut a_config = fast_pex(config(source_dir.path(), vec![]));
    a_config.down_limit = 0;
    let a = common::seeder_with(&meta, a_config);
    let a_addr = a.listen_addr().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let b = Engine::start(
        meta.clone(),
        fast_pex(config(b_dir.path(), vec![a_addr])),
        logger(),
    )
    .unwrap();
    let c_dir = tempfile::tempdir().unwrap();
    let b_addr = b.listen_addr().unwrap();
    let c = Engine::start(
        meta.clone(),
        fast_pex(config(c_dir.path(), vec![b_addr])),
        logger(),
    )
    .unwrap();
    let handle = c.handle();
    let met = c.block_on(async {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            // C knows only B: a second peer can only be A.
            let peers = handle.peers().await.unwrap();
            if peers.iter().any(|p| p.addr == a_addr) || peers.len() >= 2 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    c.shutdown();
    b.shutdown();
    a.shutdown();
    met
}

#[test]
fn peer_exchange_introduces_peers() {
    assert!(
        c_meets_a_through_b(false, Duration::from_secs(10)),
        "C never met A through B's PEX"
    );
}

#[test]
fn private_torrents_exchange_no_peers() {
    assert!(
        !c_meets_a_through_b(true, Duration::from_secs(4)),
        "PEX in a private torrent"
    );
}

/// A peer that serves every request with the torrent's real bytes but one
/// piece, the first it is asked for, which it never sends (a peer stalled
/// on that piece). Tells `first` which piece that is.
fn stalling_peer(
    meta: &Metainfo,
    content: Vec<u8>,
    first: std::sync::mpsc::Sender<u32>,
) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let info_hash = meta.info_hash;
    let pieces = meta.piece_count() as usize;
    let piece_length = meta.piece_length as usize;
    std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut theirs = [0u8; 68];
        s.read_exact(&mut theirs)?;
        let ours = swarmfs::wire::Handshake {
            reserved: [0; 8],
            info_hash,
            peer_id: *b"-XX0001-stallingpeer",
        };
        s.write_all(&ours.encode())?;
        s.write_all(&common::wire_message(5, &common::all_pieces_bits(pieces)))?;
        let mut stalled = None;
        loop {
            let mut len = [0u8; 4];
            s.read_exact(&mut len)?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body)?;
            match body.first() {
                Some(2) => s.write_all(&[0, 0, 0, 1, 1])?, // interested -> unchoke
                Some(6) => {
                    let field = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap());
                    let (piece, offset, len) = (field(1), field(5), field(9));
                    if *stalled.get_or_insert_with(|| {
                        let _ = first.send(piece);
                        piece
                    }) == piece
                    {
                        continue;
                    }
                    let at = piece as usize * piece_length + offset as usize;
                    let mut reply = (9 + len).to_be_bytes().to_vec();
                    reply.push(7);
                    reply.extend_from_slice(&body[1..9]);
                    reply.extend_from_slice(&content[at..at + len as usize]);
                    s.write_all(&reply)?;
                }
                _ => {}
            }
        }
    });
    addr
}

/// A read waits on a piece whose peer stalls on it while sending the
/// pieces after it: another peer is asked for it, and the read goes on
/// long before the download ends (it would otherwise wait for the endgame).
#[test]
fn a_read_waiting_on_a_stalled_peer_is_served_by_another() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 4_000_000)]);
    let (meta, _) = common::torrent_of(&source, 32 * 1024);
    let content = std::fs::read(source.join("a.bin")).unwrap();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let stalling = stalling_peer(&meta, content, first_tx);
    let honest = seeder(&meta, source_dir.path());
    let data = tempfile::tempdir().unwrap();
    // Slow enough that the honest peer joins while most pieces are missing.
    let leecher = slow_leecher(&meta, data.path());
    let handle = leecher.handle();
    let mut events = handle.subscribe();
    let (stalled, verified) = leecher.block_on(async {
        // The reader's window, as a files/ read at offset 0 asks for it.
        handle
            .send(Command::Read {
                piece: 0,
                pull: (0..4).collect(),
            })
            .await;
        handle.send(Command::Connect(stalling)).await;
        let stalled =
            tokio::task::spawn_blocking(move || first_rx.recv_timeout(Duration::from_secs(10)))
                .await
                .unwrap()
                .expect("the stalling peer was asked for a piece");
        handle
            .send(Command::Connect(honest.listen_addr().unwrap()))
            .await;
        let mut verified = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !verified.contains(&stalled) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(Event::Piece(p))) => verified.push(p),
                Ok(_) => {}
                Err(_) => panic!("piece {stalled} not verified in time: {verified:?}"),
            }
        }
        (stalled, verified)
    });
    assert_eq!(stalled, 0, "the piece the read waits on goes first");
    // 123 pieces: without a second peer asked, piece 0 would come last.
    assert!(
        verified.len() < 40,
        "piece 0 came after {} others: {verified:?}",
        verified.len() - 1
    );
    let done = wait_done(&leecher, Duration::from_secs(60));
    leecher.shutdown();
    honest.shutdown();
    assert!(!done.iter().any(|e| matches!(e, Event::HashFail { .. })));
    same_files(&meta, source_dir.path(), data.path());
}
