//! Trackers that fail every way a tracker can: HTTP 500, garbage, too slow,
//! not there at all. Each failure is an event that says what happened,
//! announces are retried with doubling waits, and peers we already know
//! keep the download going.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarmfs::engine::{Engine, Event};
use swarmfs::metainfo::create::{create, CreateOptions};
use swarmfs::metainfo::Metainfo;

use common::{config, logger, make_tree, TREE};

#[derive(Clone, Copy)]
enum Reply {
    ServerError,
    Garbage,
    /// Answers properly, but only after this long.
    Slow(Duration),
}

/// An HTTP tracker on 127.0.0.1 that answers its n-th request with
/// `replies[n]` (the last one repeating); returns its address and the time
/// of each request.
fn fake_tracker(replies: Vec<Reply>) -> (SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = times.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            seen.lock().unwrap().push(Instant::now());
            let reply = replies[n.min(replies.len() - 1)];
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body): (&str, &[u8]) = match reply {
                    Reply::ServerError => ("500 Internal Server Error", b"oops"),
                    Reply::Garbage => ("200 OK", b"<html>this is not bencode</html>"),
                    Reply::Slow(delay) => {
                        std::thread::sleep(delay);
                        ("200 OK", b"d8:intervali1800e5:peers0:e")
                    }
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            });
        }
    });
    (addr, times)
}

fn torrent_with_tracker(source: &Path, url: String) -> Metainfo {
    let options = CreateOptions {
        trackers: vec![vec![url]],
        piece_length: Some(16 * 1024),
        ..CreateOptions::default()
    };
    create(source, &options, &|_, _| {}).unwrap().meta
}

/// Tracker errors seen within `limit`, until `enough` says stop.
fn tracker_errors(
    engine: &Engine,
    limit: Duration,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut events = engine.handle().subscribe();
    engine.block_on(async {
        let mut errors = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        while !enough(&errors) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(Event::TrackerError(e))) => errors.push(e),
                Ok(Ok(_)) => {}
                _ => break,
            }
        }
        errors
    })
}

#[test]
fn failed_announces_are_events_and_are_retried_with_doubling_waits() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = make_tree(source_dir.path(), "content", TREE);
    let (tracker, times) = fake_tracker(vec![
        Reply::ServerError,
        Reply::Garbage,
        Reply::Slow(Duration::from_secs(3)),
        Reply::ServerError,
    ]);
    let url = format!("http://{tracker}/announce");
    let meta = torrent_with_tracker(&source, url.clone());
    // A seeder: complete from the start, so no `completed` announce comes
    // between the retries.
    let mut c = config(source_dir.path(), vec![]);
    c.use_trackers = true;
    c.tracker_timeout = Duration::from_millis(300);
    c.tracker_retry = Duration::from_millis(100);
    let engine = Engine::start(meta, c, logger()).unwrap();
    let errors = tracker_errors(&engine, Duration::from_secs(20), |e| e.len() >= 5);
    let times = times.lock().unwrap().clone();
    engine.shutdown();

    assert!(errors.len() >= 5, "{errors:?}");
    assert!(errors.iter().all(|e| e.starts_with(&url)), "{errors:?}");
    assert!(errors[0].contains("500"), "{}", errors[0]);
    assert!(errors[1].contains("bad response"), "{}", errors[1]);
    assert!(
        errors[2].to_lowercase().contains("timeout"),
        "{}",
        errors[2]
    );
    assert!(errors[3].contains("500"), "{}", errors[3]);
    // Waits of 100, 200, 400, 800 ms after each failure (the slow one also
    // took its 300 ms timeout): never hammering a tracker that is down.
    assert!(times.len() >= 5, "{times:?}");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let least = [100, 200, 300 + 400, 800];
    for (i, ms) in least.iter().enumerate() {
        assert!(
            gaps[i] >= Duration::from_millis(*ms),
            "gap {i} {:?} < {ms} ms: {gaps:?}",
            gaps[i]
        );
    }
    assert!(gaps[3] < Duration::from_secs(5), "{gaps:?}");
}

#[test]
fn a_download_goes_on_from_known_peers_while_the_tracker_is_down() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = make_tree(source_dir.path(), "content", TREE);
    // A port nobody listens on: connection refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/announce");
    let meta = torrent_with_tracker(&source, url.clone());
    let seeder = common::seeder_with(&meta, config(source_dir.path(), vec![]));
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path(), vec![seeder.listen_addr().unwrap()]);
    c.use_trackers = true;
    c.tracker_retry = Duration::from_millis(100);
    let leecher = Engine::start(meta.clone(), c, logger()).unwrap();
    let errors = tracker_errors(&leecher, Duration::from_secs(10), |e| e.len() >= 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let handle = leecher.handle();
    loop {
        let stats = leecher.block_on(handle.stats()).unwrap();
        if stats.pieces_have == stats.pieces_total {
            break;
        }
        assert!(Instant::now() < deadline, "not complete: {stats:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    leecher.shutdown();
    seeder.shutdown();
    assert!(errors.len() >= 2, "retried: {errors:?}");
    assert!(
        errors[0].starts_with(&url) && errors[0].to_lowercase().contains("refused"),
        "{errors:?}"
    );
    for (path, _) in TREE {
        let want = std::fs::read(source.join(path)).unwrap();
        let got = std::fs::read(data.path().join("content").join(path)).unwrap();
        assert!(want == got, "{path} differs");
    }
}
