//! swarmfs in a real swarm: a real tracker (Debian's opentracker) and a real
//! other client (libtorrent, Debian's python3-libtorrent), all on 127.0.0.1.
//! Needs those packages (see README); a missing one fails the test.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use swarmfs::metainfo::create::{create, CreateOptions};

const SWARMFS: &str = env!("CARGO_BIN_EXE_swarmfs");

/// A child process killed (by PID) when dropped.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(name: &str, command: &mut Command) -> Proc {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name}: {e} (install the packages in README.md)")
            });
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child,
            lines,
        }
    }

    /// Waits for a line containing `needle`; panics with what was seen.
    fn expect_line(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        let tail = seen[seen.len().saturating_sub(30)..].join("\n");
        panic!(
            "{} did not print {needle:?} within {limit:?}; its last lines:\n{tail}",
            self.name
        );
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn signal(&self, signal: i32) {
        unsafe_kill(self.child.id(), signal);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32, signal: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts opentracker on a free port, serving only `info_hash`.
fn opentracker(dir: &Path, info_hash: &str) -> (Proc, u16) {
    // opentracker drops to user nobody: its files must be readable by all.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let whitelist = dir.join("whitelist");
    std::fs::write(&whitelist, format!("{info_hash}\n")).unwrap();
    let conf = dir.join("opentracker.conf");
    std::fs::write(
        &conf,
        format!(
            "access.whitelist {}\ntracker.rootdir /\n",
            whitelist.display()
        ),
    )
    .unwrap();
    for f in [&whitelist, &conf] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let port = free_port();
    let tracker = Proc::start(
        "opentracker",
        Command::new("opentracker").arg("-f").arg(&conf).args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
        ]),
    );
    // Ready when it accepts connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "opentracker did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (tracker, port)
}

fn lt_peer(mode: &str, torrent: &Path, data: &Path, port: u16) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lt_peer.py");
    // Debian's libtorrent binding is built for /usr/bin/python3.
    Proc::start(
        &format!("libtorrent {mode}er"),
        Command::new("/usr/bin/python3")
            .arg(script)
            .arg(mode)
            .arg(torrent)
            .arg(data)
            .arg(port.to_string())
            .arg("120"),
    )
}

fn same_tree(a: &Path, b: &Path, files: &[(&str, usize)]) {
    for (name, _) in files {
        let x = std::fs::read(a.join(name)).unwrap();
        let y = std::fs::read(b.join(name)).unwrap_or_default();
        assert!(
            x == y,
            "{name} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn swarmfs_and_libtorrent_trade_through_opentracker() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Transmission-style sizes: several files, an odd total, a short last piece.
    let files: &[(&str, usize)] = &[
        ("one.bin", 1_234_567),
        ("two/three.bin", 2_000_000),
        ("two/four.txt", 33),
    ];
    let seed_dir = root.join("seed");
    let source = common::make_tree(&seed_dir, "shared", files);

    // The tracker must know the info-hash before anyone announces, and the
    // torrent must name the tracker's port: make the torrent twice.
    // Trackers are outside the info dictionary, so the hash is the same.
    let mut options = CreateOptions {
        piece_length: Some(32 * 1024),
        ..CreateOptions::default()
    };
    let draft = create(&source, &options, &|_, _| {}).unwrap();
    let (_tracker, port) = opentracker(root, &draft.meta.info_hash.to_hex());
    options.trackers = vec![vec![format!("http://127.0.0.1:{port}/announce")]];
    let created = create(&source, &options, &|_, _| {}).unwrap();
    assert_eq!(created.meta.info_hash, draft.meta.info_hash);
    let torrent = root.join("shared.torrent");
    std::fs::write(&torrent, &created.bytes).unwrap();

    // 1. libtorrent seeds; swarmfs finds it through the tracker alone.
    let mut lt_seeder = lt_peer("seed", &torrent, &seed_dir, free_port());
    lt_seeder.expect_line("ready", Duration::from_secs(20));
    let ours = root.join("ours");
    std::fs::create_dir(&ours).unwrap();
    let swarmfs_port = free_port();
    let mut swarmfs = Proc::start(
        "swarmfs",
        Command::new(SWARMFS)
            .args(["download", "--seed", "--bind", "127.0.0.1", "--port"])
            .arg(swarmfs_port.to_string())
            .arg(&torrent)
            .arg("--data")
            .arg(&ours),
    );
    swarmfs.expect_line("done", Duration::from_secs(90));
    same_tree(&source, &ours.join("shared"), files);

    // 2. libtorrent stops seeding; a fresh libtorrent leecher can only get
    //    the data from swarmfs, again found through the tracker.
    drop(lt_seeder);
    let theirs = root.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let mut lt_leecher = lt_peer("leech", &torrent, &theirs, free_port());
    lt_leecher.expect_line("complete", Duration::from_secs(90));
    same_tree(&source, &theirs.join("shared"), files);

    // swarmfs stops cleanly on SIGTERM, exiting 0 (it completed).
    swarmfs.signal(15);
    assert_eq!(swarmfs.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn engines_find_each_other_through_opentracker_over_udp() {
    use swarmfs::engine::{Engine, Event};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let seed_dir = root.join("seed");
    let source = common::make_tree(
        &seed_dir,
        "shared",
        &[("a.bin", 700_000), ("b/c.bin", 300_003)],
    );
    let mut options = CreateOptions {
        piece_length: Some(16 * 1024),
        ..CreateOptions::default()
    };
    let draft = create(&source, &options, &|_, _| {}).unwrap();
    let (_tracker, port) = opentracker(root, &draft.meta.info_hash.to_hex());
    // Only a UDP tracker: nothing else can introduce the two engines.
    options.trackers = vec![vec![format!("udp://127.0.0.1:{port}")]];
    let meta = create(&source, &options, &|_, _| {}).unwrap().meta;

    let mut seed_config = common::config(&seed_dir, vec![]);
    seed_config.use_trackers = true;
    let seeder = common::seeder_with(&meta, seed_config);
    // Announce again now that we listen, and wait for the answer.
    let mut seeder_events = seeder.handle().subscribe();
    seeder.block_on(async {
        seeder
            .handle()
            .send(swarmfs::engine::Command::Announce)
            .await;
        loop {
            match tokio::time::timeout(Duration::from_secs(20), seeder_events.recv()).await {
                Ok(Ok(Event::Peers { .. })) => return,
                Ok(Ok(Event::TrackerError(e))) => panic!("seeder's UDP announce failed: {e}"),
                Ok(_) => {}
                Err(_) => panic!("no UDP tracker answer for the seeder"),
            }
        }
    });

    let data = root.join("leech");
    std::fs::create_dir(&data).unwrap();
    let mut leech_config = common::config(&data, vec![]);
    leech_config.use_trackers = true;
    let leecher = Engine::start(meta.clone(), leech_config, common::logger()).unwrap();
    let handle = leecher.handle();
    leecher.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while handle.stats().await.unwrap().state.as_str() != "seeding" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                handle.stats().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    leecher.shutdown();
    seeder.shutdown();
    same_tree(
        &source,
        &data.join("shared"),
        &[("a.bin", 0), ("b/c.bin", 0)],
    );
}
