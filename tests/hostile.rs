//! Peers that lie or break the protocol, scripted over 127.0.0.1 against a
//! real engine that also has an honest seeder: the bad peer is dropped or
//! banned, the download completes, and the events say why.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use swarmfs::engine::{Engine, Event};
use swarmfs::metainfo::Metainfo;

use common::{config, logger};

/// Our side of a handshake, made by the library's own encoder.
fn handshake(reserved: [u8; 8], info_hash: [u8; 20], peer_id: &[u8; 20]) -> [u8; 68] {
    swarmfs::wire::Handshake {
        reserved,
        info_hash: swarmfs::metainfo::InfoHash(info_hash),
        peer_id: *peer_id,
    }
    .encode()
}

#[derive(Clone, Copy)]
enum Behaviour {
    /// Claims every piece and answers requests with garbage of the right length.
    Corrupt,
    /// Sends a `have` for a piece past the end after the bitfield.
    HaveOutOfRange,
    /// Announces a 4 GiB message.
    HugeLength,
    /// A bitfield with a bit set past the last piece.
    SpareBits,
    /// A bitfield one byte short.
    ShortBitfield,
    /// Sends blocks nobody asked for (garbage), and never unchokes.
    Unsolicited,
    /// Sends half of the first block asked for, then resets the connection.
    ResetMidBlock,
}

/// A scripted peer listening on 127.0.0.1; serves one connection at a time
/// until the test ends. Returns its address.
fn fake_peer(meta: &Metainfo, behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let info_hash = meta.info_hash.0;
    let pieces = meta.piece_count() as usize;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = serve(stream, info_hash, pieces, behaviour);
            });
        }
    });
    addr
}

fn serve(
    mut s: TcpStream,
    info_hash: [u8; 20],
    pieces: usize,
    behaviour: Behaviour,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs)?;
    s.write_all(&handshake([0; 8], info_hash, b"-XX0001-hostilepeer0"))?;
    // A full bitfield with clean spare bits.
    let mut bits = common::all_pieces_bits(pieces);
    match behaviour {
        Behaviour::SpareBits => *bits.last_mut().unwrap() = 0xff,
        Behaviour::ShortBitfield => {
            bits.pop();
        }
        _ => {}
    }
    s.write_all(&common::wire_message(5, &bits))?;
    match behaviour {
        Behaviour::HaveOutOfRange => {
            let mut have = vec![0, 0, 0, 5, 4];
            have.extend_from_slice(&(pieces as u32 + 7).to_be_bytes());
            s.write_all(&have)?;
        }
        Behaviour::HugeLength => s.write_all(&[0xff, 0xff, 0xff, 0xf0, 7, 0, 0])?,
        Behaviour::Unsolicited => {
            for offset in [0u32, 16384, 0] {
                let mut block = (9 + 16384u32).to_be_bytes().to_vec();
                block.push(7);
                block.extend_from_slice(&0u32.to_be_bytes());
                block.extend_from_slice(&offset.to_be_bytes());
                block.extend(std::iter::repeat_n(0x5Au8, 16384));
                s.write_all(&block)?;
            }
        }
        _ => {}
    }
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)?;
        match body.first() {
            Some(2) if matches!(behaviour, Behaviour::Unsolicited) => {}
            Some(2) => s.write_all(&[0, 0, 0, 1, 1])?, // interested -> unchoke
            Some(6) if matches!(behaviour, Behaviour::ResetMidBlock) => {
                let mut half = (9 + 16384u32).to_be_bytes().to_vec();
                half.push(7);
                half.extend_from_slice(&body[1..9]);
                half.extend(std::iter::repeat_n(0xA5u8, 8192));
                s.write_all(&half)?;
                reset(&s);
                return Ok(());
            }
            Some(6) => {
                let piece = &body[1..5];
                let offset = &body[5..9];
                let block_len = u32::from_be_bytes(body[9..13].try_into().unwrap()) as usize;
                let mut reply = ((9 + block_len) as u32).to_be_bytes().to_vec();
                reply.push(7);
                reply.extend_from_slice(piece);
                reply.extend_from_slice(offset);
                reply.extend(std::iter::repeat_n(0xA5u8, block_len));
                s.write_all(&reply)?;
            }
            _ => {}
        }
    }
}

/// Closes `s` with a reset (RST) rather than an orderly FIN: linger 0.
fn reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size we pass.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Runs a leecher against an honest (rate-limited) seeder and a fake peer,
/// and returns the leecher's events until it is done.
fn download_with(behaviour: Behaviour) -> (Vec<Event>, SocketAddr) {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(
        source_dir.path(),
        "content",
        &[("a.bin", 600_000), ("b.bin", 300_001)],
    );
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let mut honest_config = config(source_dir.path(), vec![]);
    // Slow enough that the fake peer is asked for pieces too.
    honest_config.up_limit = 400 * 1024;
    let honest = common::seeder_with(&meta, honest_config);
    let fake = fake_peer(&meta, behaviour);

    let data = tempfile::tempdir().unwrap();
    let leecher = Engine::start(
        meta.clone(),
        config(data.path(), vec![fake, honest.listen_addr().unwrap()]),
        logger(),
    )
    .unwrap();
    let handle = leecher.handle();
    let mut events = handle.subscribe();
    let seen = leecher.block_on(async {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(Event::Done)) => return seen,
                Ok(Ok(e)) => seen.push(e),
                Ok(Err(e)) => panic!("event stream: {e}"),
                Err(_) => panic!("not done in time: {seen:?}"),
            }
        }
    });
    leecher.shutdown();
    honest.shutdown();
    for f in &meta.files {
        let a = std::fs::read(source_dir.path().join(f.relative_path())).unwrap();
        let b = std::fs::read(data.path().join(f.relative_path())).unwrap();
        assert!(a == b, "{} differs", f.relative_path().display());
    }
    (seen, fake)
}

/// A corrupt peer alone while a read waits: the pieces it sends are
/// checked as a streaming download's are (in batches, on a CPU with
/// AVX-512), fail, and get it banned; nothing of its is verified.
#[test]
fn a_corrupt_peer_alone_while_streaming_is_banned_and_nothing_verified() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 900_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let fake = fake_peer(&meta, Behaviour::Corrupt);
    let data = tempfile::tempdir().unwrap();
    let leecher = Engine::start(meta.clone(), config(data.path(), vec![]), logger()).unwrap();
    let handle = leecher.handle();
    let mut events = handle.subscribe();
    let seen = leecher.block_on(async {
        handle
            .send(swarmfs::engine::Command::Read {
                piece: 0,
                pull: (0..4).collect(),
            })
            .await;
        handle.send(swarmfs::engine::Command::Connect(fake)).await;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(e @ Event::Banned { .. })) => {
                    seen.push(e);
                    return seen;
                }
                Ok(Ok(e)) => seen.push(e),
                Ok(Err(e)) => panic!("event stream: {e}"),
                Err(_) => panic!("not banned in time: {seen:?}"),
            }
        }
    });
    leecher.shutdown();
    assert!(
        seen.iter().any(|e| matches!(e, Event::HashFail { .. })),
        "no hash failure seen: {seen:?}"
    );
    assert!(
        matches!(seen.last(), Some(Event::Banned { addr, reason }) if *addr == fake && reason.contains("corrupt")),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Piece(_))),
        "a corrupt piece was verified: {seen:?}"
    );
}

#[test]
fn a_peer_sending_corrupt_blocks_is_banned_and_the_download_completes() {
    let (events, fake) = download_with(Behaviour::Corrupt);
    let hash_fails = events
        .iter()
        .filter(|e| matches!(e, Event::HashFail { .. }))
        .count();
    assert!(hash_fails >= 1, "no hash failure seen: {events:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::Banned { addr, reason } if *addr == fake && reason.contains("corrupt"))),
        "the corrupt peer was not banned: {events:?}"
    );
    // Banned means it stays away: no later connection from that address.
    let banned_at = events
        .iter()
        .position(|e| matches!(e, Event::Banned { .. }))
        .unwrap();
    assert!(
        !events[banned_at..]
            .iter()
            .any(|e| matches!(e, Event::Connected { addr, .. } if *addr == fake)),
        "reconnected to a banned peer"
    );
}

#[test]
fn a_peer_sending_a_malformed_message_is_dropped_without_harm() {
    for behaviour in [
        Behaviour::HaveOutOfRange,
        Behaviour::HugeLength,
        Behaviour::SpareBits,
        Behaviour::ShortBitfield,
    ] {
        let (events, fake) = download_with(behaviour);
        let dropped = events.iter().find_map(|e| match e {
            Event::Disconnected { addr, reason, .. } if *addr == fake => Some(reason.clone()),
            _ => None,
        });
        let reason = dropped.unwrap_or_else(|| panic!("fake peer not dropped: {events:?}"));
        assert!(reason.contains("protocol error"), "{reason}");
        assert!(!events.iter().any(|e| matches!(e, Event::HashFail { .. })));
    }
}

/// Connects to `addr` as a leecher, handshakes, and says it is interested.
fn leech_from(addr: SocketAddr, meta: &Metainfo) -> TcpStream {
    leech_with(addr, meta, [0; 8], b"-XX0001-greedypeer00")
}

/// As [`leech_from`], with these reserved bytes in the handshake.
fn leech_with(
    addr: SocketAddr,
    meta: &Metainfo,
    reserved: [u8; 8],
    peer_id: &[u8; 20],
) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&handshake(reserved, meta.info_hash.0, peer_id))
        .unwrap();
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).unwrap();
    s.write_all(&[0, 0, 0, 1, 2]).unwrap(); // interested
    s
}

/// Reads messages until one with `id` arrives; false if the connection ends first.
fn read_until(s: &mut TcpStream, id: u8) -> bool {
    loop {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return false;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if s.read_exact(&mut body).is_err() {
            return false;
        }
        if body.first() == Some(&id) {
            return true;
        }
    }
}

#[test]
fn a_peer_queueing_too_many_requests_is_dropped() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 12_000_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let mut c = config(source_dir.path(), vec![]);
    c.up_limit = 64 * 1024; // so the queue cannot drain as fast as it fills
    let seeder = common::seeder_with(&meta, c);
    let mut events = seeder.handle().subscribe();
    let mut s = leech_from(seeder.listen_addr().unwrap(), &meta);
    assert!(
        read_until(&mut s, 1),
        "a free slot unchokes an interested peer"
    );
    let mut flood = Vec::new();
    for piece in 0..700u32 {
        flood.extend_from_slice(&[0, 0, 0, 13, 6]);
        flood.extend_from_slice(&piece.to_be_bytes());
        flood.extend_from_slice(&0u32.to_be_bytes());
        flood.extend_from_slice(&16384u32.to_be_bytes());
    }
    s.write_all(&flood).unwrap();
    let reason = seeder.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Ok(Event::Disconnected { reason, .. })) => return reason,
                Ok(Ok(_)) => {}
                other => panic!("no disconnect: {other:?}"),
            }
        }
    });
    assert_eq!(reason, "more than 500 queued requests");
    seeder.shutdown();
}

#[test]
fn requests_while_choked_are_ignored() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 100_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let mut c = config(source_dir.path(), vec![]);
    c.upload_slots = 0; // nobody but the optimistic slot, which is not due yet
    let seeder = common::seeder_with(&meta, c);
    let addr = seeder.listen_addr().unwrap();
    // Take the one immediate unchoke with a first peer, then ask as a second.
    let mut first = leech_from(addr, &meta);
    assert!(read_until(&mut first, 1));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s.write_all(&handshake(
        [0; 8],
        meta.info_hash.0,
        b"-XX0001-chokedpeer00",
    ))
    .unwrap();
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).unwrap();
    // A request without being unchoked: no piece may come back.
    s.write_all(&[0, 0, 0, 13, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0])
        .unwrap();
    assert!(!read_until(&mut s, 7), "served a piece to a choked peer");
    let peers = seeder.block_on(seeder.handle().peers()).unwrap();
    assert_eq!(peers.len(), 2, "the choked peer is ignored, not dropped");
    seeder.shutdown();
}

#[test]
fn keep_alives_are_sent_and_silent_peers_dropped() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 50_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let mut c = config(source_dir.path(), vec![]);
    c.keepalive = Duration::from_millis(500);
    c.silence_limit = Duration::from_secs(2);
    let seeder = common::seeder_with(&meta, c);
    let mut events = seeder.handle().subscribe();
    // Handshake, then say nothing at all (slowloris).
    let mut s = leech_from(seeder.listen_addr().unwrap(), &meta);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    let mut keepalives = 0;
    let mut buf = [0u8; 4];
    // Bitfield first, then keep-alives (length 0) until we are dropped.
    while s.read_exact(&mut buf).is_ok() {
        let len = u32::from_be_bytes(buf) as usize;
        if len == 0 {
            keepalives += 1;
        } else {
            let mut body = vec![0u8; len];
            if s.read_exact(&mut body).is_err() {
                break;
            }
        }
    }
    let dropped_after = started.elapsed();
    assert!(keepalives >= 2, "{keepalives} keep-alives");
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(5)).contains(&dropped_after),
        "dropped after {dropped_after:?}"
    );
    let reason = seeder.block_on(async {
        loop {
            if let Ok(Event::Disconnected { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    });
    assert_eq!(reason, "silent for 2 s");
    seeder.shutdown();
}

#[test]
fn a_peers_reqq_caps_our_outstanding_requests() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 2_000_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pieces = meta.piece_count() as usize;
    let info_hash = meta.info_hash.0;
    // A peer that speaks BEP 10, says reqq 2, has everything, unchokes, and
    // never answers a request: it counts them and reports the count.
    let counter = std::thread::spawn(move || -> (usize, String) {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut theirs = [0u8; 68];
        s.read_exact(&mut theirs).unwrap();
        assert_ne!(
            theirs[25] & 0x10,
            0,
            "swarmfs advertises the extension protocol"
        );
        s.write_all(&handshake(
            [0, 0, 0, 0, 0, 0x10, 0, 0],
            info_hash,
            b"-XX0001-reqqtwopeer0",
        ))
        .unwrap();
        let ext = b"d1:md6:ut_fooi7ee4:reqqi2e1:v9:TinyPeer1e";
        let msg = common::wire_message(20, &[&[0u8][..], ext].concat());
        let bitfield = common::wire_message(5, &common::all_pieces_bits(pieces));
        // The extension handshake first, as some clients do, then the bitfield.
        s.write_all(&msg).unwrap();
        s.write_all(&bitfield).unwrap();
        s.write_all(&[0, 0, 0, 1, 1]).unwrap(); // unchoke
        let mut requests = 0;
        let mut their_ext = String::new();
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                return (requests, their_ext);
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            if s.read_exact(&mut body).is_err() {
                return (requests, their_ext);
            }
            match body.first() {
                Some(6) => requests += 1,
                Some(20) => their_ext = String::from_utf8_lossy(&body[2..]).into_owned(),
                _ => {}
            }
        }
    });
    let data = tempfile::tempdir().unwrap();
    let leecher = Engine::start(meta.clone(), config(data.path(), vec![addr]), logger()).unwrap();
    // While the scripted peer is still connected (it hangs up after 2 s of
    // silence), its name comes from its `v`.
    let handle = leecher.handle();
    let client = leecher.block_on(async {
        for _ in 0..100 {
            if let Some(p) = handle.peers().await.unwrap().first() {
                if p.client == "TinyPeer1" {
                    return p.client.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        String::new()
    });
    let (requests, their_ext) = counter.join().unwrap();
    leecher.shutdown();
    assert_eq!(requests, 2, "requests outstanding at a peer with reqq 2");
    assert!(
        their_ext.contains("1:v13:swarmfs "),
        "our handshake: {their_ext}"
    );
    assert!(
        their_ext.contains("4:reqqi500e"),
        "our handshake: {their_ext}"
    );
    assert_eq!(client, "TinyPeer1");
}

const FAST: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 0x04];

#[test]
fn fast_peers_get_have_all_and_rejects_for_requests_we_drop() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 100_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let mut c = config(source_dir.path(), vec![]);
    c.upload_slots = 0;
    let seeder = common::seeder_with(&meta, c);
    let addr = seeder.listen_addr().unwrap();
    // The one immediate unchoke goes to a first peer.
    let mut first = leech_from(addr, &meta);
    assert!(read_until(&mut first, 1));
    // A fast peer: a complete seeder announces itself with have-all (14), and
    // a request while choked is answered with reject (16), not silence.
    let mut s = leech_with(addr, &meta, FAST, b"-XX0001-fastleecher0");
    assert!(read_until(&mut s, 14), "no have-all from a complete seeder");
    s.write_all(&[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0])
        .unwrap();
    assert!(
        read_until(&mut s, 16),
        "no reject for a request while choked"
    );
    seeder.shutdown();
}

#[test]
fn fast_messages_from_a_peer_without_the_extension_drop_it() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 100_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let seeder = common::seeder_with(&meta, config(source_dir.path(), vec![]));
    let mut events = seeder.handle().subscribe();
    let mut s = leech_from(seeder.listen_addr().unwrap(), &meta);
    s.write_all(&[0, 0, 0, 1, 14]).unwrap(); // have all, not negotiated
    let reason = seeder.block_on(async {
        loop {
            if let Ok(Event::Disconnected { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    });
    assert_eq!(
        reason,
        "protocol error: have all without the fast extension"
    );
    seeder.shutdown();
}

#[test]
fn allowed_fast_pieces_are_requested_while_choked() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 500_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let info_hash = meta.info_hash.0;
    // A fast seeder that never unchokes but allows piece 3: it records the
    // pieces requested from it.
    let peer = std::thread::spawn(move || -> Vec<u32> {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut theirs = [0u8; 68];
        s.read_exact(&mut theirs).unwrap();
        assert_ne!(
            theirs[27] & 0x04,
            0,
            "swarmfs advertises the fast extension"
        );
        s.write_all(&handshake(FAST, info_hash, b"-XX0001-fastseeder00"))
            .unwrap();
        s.write_all(&[0, 0, 0, 1, 14]).unwrap(); // have all
        s.write_all(&[0, 0, 0, 5, 17, 0, 0, 0, 3]).unwrap(); // allowed fast: 3
        let mut requested = Vec::new();
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                return requested;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            if s.read_exact(&mut body).is_err() {
                return requested;
            }
            if body.first() == Some(&6) {
                requested.push(u32::from_be_bytes(body[1..5].try_into().unwrap()));
            }
        }
    });
    let data = tempfile::tempdir().unwrap();
    let leecher = Engine::start(meta.clone(), config(data.path(), vec![addr]), logger()).unwrap();
    let requested = peer.join().unwrap();
    leecher.shutdown();
    assert!(
        !requested.is_empty(),
        "nothing requested from an allowed-fast piece"
    );
    assert!(
        requested.iter().all(|&p| p == 3),
        "requested while choked: {requested:?}"
    );
}

#[test]
fn blocks_nobody_asked_for_are_ignored() {
    let (events, fake) = download_with(Behaviour::Unsolicited);
    assert!(
        !events.iter().any(|e| matches!(e, Event::HashFail { .. })),
        "unsolicited garbage reached a piece: {events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Banned { addr, .. } if *addr == fake)),
        "{events:?}"
    );
}

#[test]
fn a_connection_reset_mid_block_costs_only_that_peer() {
    let (events, fake) = download_with(Behaviour::ResetMidBlock);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Disconnected { addr, .. } if *addr == fake)),
        "{events:?}"
    );
    // The half block was never written as data: no piece failed.
    assert!(!events.iter().any(|e| matches!(e, Event::HashFail { .. })));
}

fn disconnect_reason(
    engine: &Engine,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
) -> String {
    engine.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Ok(Event::Disconnected { reason, .. })) => return reason,
                Ok(Ok(_)) => {}
                other => panic!("no disconnect: {other:?}"),
            }
        }
    })
}

#[test]
fn a_wrong_info_hash_or_a_bad_request_ends_the_connection() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 100_000)]);
    let (meta, _) = common::torrent_of(&source, 32 * 1024);
    let seeder = common::seeder_with(&meta, config(source_dir.path(), vec![]));
    let addr = seeder.listen_addr().unwrap();

    // Another torrent's info-hash: closed without our handshake.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&handshake([0; 8], [0x77; 20], b"-XX0001-wronghash000"))
        .unwrap();
    let mut buf = [0u8; 68];
    assert!(
        s.read_exact(&mut buf).is_err(),
        "answered a wrong info-hash"
    );

    // Requests no client may make: longer than 16 KiB, past the end of the
    // piece (the last one is short), for a piece past the end.
    let last = meta.piece_count() - 1;
    let bad = [
        (0u32, 0u32, 32 * 1024u32),
        (last, 16 * 1024, 16 * 1024),
        (last + 1, 0, 16 * 1024),
    ];
    let mut events = seeder.handle().subscribe();
    for (i, (piece, offset, len)) in bad.into_iter().enumerate() {
        let mut id = *b"-XX0001-badrequest00";
        id[19] = b'0' + i as u8;
        let mut s = leech_with(addr, &meta, [0; 8], &id);
        assert!(read_until(&mut s, 1), "not unchoked");
        let mut request = vec![0, 0, 0, 13, 6];
        for field in [piece, offset, len] {
            request.extend_from_slice(&field.to_be_bytes());
        }
        s.write_all(&request).unwrap();
        assert!(!read_until(&mut s, 7), "served request {i}");
        let reason = disconnect_reason(&seeder, &mut events);
        assert!(reason.contains("protocol error"), "request {i}: {reason}");
    }
    let peers = seeder.block_on(seeder.handle().peers()).unwrap();
    assert!(peers.is_empty(), "{peers:?}");
    seeder.shutdown();
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A thousand connections, handshaking and leaving at once, and a couple
/// of hundred that connect and say nothing, while a download runs: the
/// download is unaffected, the connection limits hold, memory stays flat,
/// and the events say what was refused (without one event per refusal).
#[test]
fn a_thousand_connections_leave_a_running_download_alone() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 4_000_000)]);
    let (meta, _) = common::torrent_of(&source, 64 * 1024);
    let mut honest = config(source_dir.path(), vec![]);
    honest.up_limit = 1024 * 1024; // about 4 s: the flood runs mid-download
    let seeder = common::seeder_with(&meta, honest);
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), vec![seeder.listen_addr().unwrap()]);
    c.max_peers = 20;
    let victim = Engine::start(meta.clone(), c, logger()).unwrap();
    let handle = victim.handle();
    let mut events = handle.subscribe();
    // Connected to the seeder first, as a running download would be.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while victim.block_on(handle.stats()).unwrap().peers == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no connection to the seeder"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss_before = rss_kib();
    let target = victim.listen_addr().unwrap();
    let info_hash = meta.info_hash.0;
    let flood = std::thread::spawn(move || {
        // A thousand handshakes; the first 50 connections held open (more
        // than the limit of 20), the rest dropped once answered.
        let mut accepted = 0;
        let mut held = Vec::new();
        for i in 0..1000u32 {
            let Ok(mut s) = TcpStream::connect(target) else {
                continue;
            };
            let mut id = *b"-XX0001-flood0000000";
            id[12..16].copy_from_slice(&i.to_be_bytes());
            let _ = s.write_all(&handshake([0; 8], info_hash, &id));
            s.set_read_timeout(Some(Duration::from_millis(500))).ok();
            let mut theirs = [0u8; 68];
            if s.read_exact(&mut theirs).is_ok() {
                accepted += 1;
            }
            if i < 50 {
                held.push(s);
            }
        }
        // Then connections that never send a byte, held open.
        let mut silent = Vec::new();
        for _ in 0..200 {
            if let Ok(s) = TcpStream::connect(target) {
                silent.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        silent.extend(held);
        (silent, accepted)
    });
    let mut peak_peers = 0;
    while !flood.is_finished() {
        peak_peers = peak_peers.max(victim.block_on(handle.stats()).unwrap().peers);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (silent, answered) = flood.join().unwrap();
    let done_by = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = victim.block_on(handle.stats()).unwrap();
        peak_peers = peak_peers.max(stats.peers);
        if stats.pieces_have == stats.pieces_total {
            break;
        }
        assert!(
            std::time::Instant::now() < done_by,
            "download stalled: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_after = rss_kib();
    let stats = victim.block_on(handle.stats()).unwrap();
    drop(silent);
    let mut refused = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Refused { reason, .. } = e {
            refused.push(reason);
        }
    }
    victim.shutdown();
    seeder.shutdown();
    let got = std::fs::read(data.path().join("content/a.bin")).unwrap();
    assert!(
        got == std::fs::read(source.join("a.bin")).unwrap(),
        "data differs"
    );
    assert!(peak_peers <= 20, "{peak_peers} peers at once, limit 20");
    assert!(answered >= 19, "only {answered} handshakes answered");
    assert!(
        refused
            .iter()
            .any(|r| r.contains("too many handshakes under way")),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|r| r.contains("connection limit reached")),
        "{refused:?}"
    );
    assert!(
        refused.len() < 100,
        "one event per refusal: {}",
        refused.len()
    );
    // Incoming addresses are not kept as peers to dial.
    assert!(stats.known <= 2, "known {}", stats.known);
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

/// Slowloris with a pulse: a byte every 300 ms, never a whole message.
/// Bytes are not messages: the peer is as silent as one that sends nothing.
#[test]
fn a_peer_trickling_bytes_is_dropped_as_silent() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = common::make_tree(source_dir.path(), "content", &[("a.bin", 50_000)]);
    let (meta, _) = common::torrent_of(&source, 16 * 1024);
    let mut c = config(source_dir.path(), vec![]);
    c.silence_limit = Duration::from_secs(2);
    let seeder = common::seeder_with(&meta, c);
    let mut events = seeder.handle().subscribe();
    let mut s = leech_from(seeder.listen_addr().unwrap(), &meta);
    // The start of a 16 KiB `piece` message, one byte at a time.
    let message = [
        0u8, 0, 0x40, 0x09, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7,
    ];
    let started = std::time::Instant::now();
    let mut sent = 0;
    for byte in message {
        if s.write_all(&[byte]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(300));
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let reason = disconnect_reason(&seeder, &mut events);
    assert_eq!(reason, "silent for 2 s", "after {sent} bytes");
    assert!(started.elapsed() < Duration::from_secs(6));
    seeder.shutdown();
}
