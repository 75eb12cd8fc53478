//! The swarm engine: downloads and seeds one torrent, in the shape of the
//! design notes, as tokio tasks on the engine's own runtime.
//!
//! - [`main_loop`]: the one owner of swarm state; everything else sends it
//!   messages.
//! - [`peer`]: per connection a net reader, disk writer, disk reader and net
//!   writer; [`piecekeeper`] vets blocks for the disk writers.
//! - [`tracker`], [`udp_tracker`]: announces (HTTP, HTTPS, UDP); the dialer
//!   and listener live in the main loop.
//! - [`picker`], [`choker`], [`ratelimit`]: pure policy, unit tested.
//!
//! The outside (the FUSE adapter, the CLI, tests) drives an [`Engine`] through
//! an [`EngineHandle`]: [`Command`]s on a bounded queue, [`Event`]s on a
//! broadcast channel, and snapshots answered over oneshot channels.

pub mod batch_hasher;
pub mod choker;
pub mod main_loop;
pub mod peer;
pub mod picker;
pub mod piecekeeper;
pub mod ratelimit;
pub mod tracker;
pub mod udp_tracker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use slog::Logger;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::metainfo::{InfoHash, Metainfo};
pub use picker::PeerId;

/// A random number, fresh each call (std's per-process random hash keys):
/// for peer ids, transaction ids, and seeds of the picker's and choker's
/// generators. Not for anything secret.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

/// A small, fast generator (xorshift64) for the picker's and choker's
/// random choices and tracker shuffles: seeded by [`random_u64`].
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Commands queued from the outside; the queue is bounded.
pub const COMMAND_QUEUE: usize = 64;
/// Events a slow subscriber may fall behind by before it loses some.
pub const EVENT_BUFFER: usize = 4096;

#[derive(Debug, Clone)]
pub struct Config {
    /// The directory that holds the torrent's file or folder.
    pub data_dir: PathBuf,
    /// Where to accept peers; `None` accepts none (a pure leecher). The
    /// default `[::]` takes IPv6 and IPv4 (dual stack); where IPv6 is off,
    /// the engine falls back to `0.0.0.0` on the same port.
    pub listen: Option<SocketAddr>,
    /// Peers to connect to besides the trackers'.
    pub peers: Vec<SocketAddr>,
    pub max_peers: usize,
    /// Bytes/s, 0 = unlimited.
    pub up_limit: u64,
    pub down_limit: u64,
    /// Announce to the torrent's trackers.
    pub use_trackers: bool,
    /// New data files are sparse, not reserved whole when created.
    pub sparse: bool,
    /// Unchoke slots (tit-for-tat), besides the optimistic one.
    pub upload_slots: usize,
    /// Send a keep-alive after this long without sending anything.
    pub keepalive: Duration,
    /// Drop a peer we have heard nothing from for this long.
    pub silence_limit: Duration,
    /// Peer exchange (BEP 11); never for private torrents.
    pub pex: bool,
    /// How often peer exchange messages go out to a peer, at most.
    pub pex_interval: Duration,
    /// After a failed write, how long until writes are tried again.
    pub disk_retry: Duration,
    /// An HTTP announce that takes longer than this has failed.
    pub tracker_timeout: Duration,
    /// The wait after a failed announce (doubling with each further one).
    pub tracker_retry: Duration,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            listen: Some(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 6881))),
            peers: Vec::new(),
            max_peers: 50,
            up_limit: 0,
            down_limit: 0,
            use_trackers: true,
            sparse: false,
            upload_slots: choker::SLOTS,
            keepalive: Duration::from_secs(90),
            silence_limit: Duration::from_secs(120),
            pex: true,
            pex_interval: Duration::from_secs(60),
            disk_retry: main_loop::DISK_RETRY,
            tracker_timeout: tracker::ANNOUNCE_TIMEOUT,
            tracker_retry: tracker::FIRST_BACKOFF,
        }
    }
}

/// Selects a peer by id or by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSelector {
    Id(PeerId),
    Addr(SocketAddr),
}

#[derive(Debug)]
pub enum Command {
    Connect(SocketAddr),
    Disconnect(PeerSelector),
    SetUpLimit(u64),
    SetDownLimit(u64),
    /// Announce to the trackers now.
    Announce,
    /// Disconnect everyone and announce `stopped`; keep the engine.
    Stop,
    /// Undo `Stop`.
    Start,
    /// A `files/` read of `piece`: fetch `pull` before all others (the
    /// read waits on them, or the reader soon will), and go on in order
    /// from `piece` while the reader keeps reading.
    Read {
        piece: u32,
        pull: Vec<u32>,
    },
    Stats(oneshot::Sender<Stats>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Bans(oneshot::Sender<Vec<BanInfo>>),
    /// Every known peer address: from trackers, `connect`, and connected peers.
    Known(oneshot::Sender<Vec<SocketAddr>>),
    /// Stop, write the resume file, and end the engine; answered when done.
    Quit(oneshot::Sender<()>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The hash check at start-up finished.
    Checked {
        have: u32,
        total: u32,
    },
    Connected {
        id: PeerId,
        addr: SocketAddr,
        client: String,
    },
    Disconnected {
        id: PeerId,
        addr: SocketAddr,
        reason: String,
    },
    /// A tracker gave us `new` addresses we did not know.
    Peers {
        new: usize,
    },
    Piece(u32),
    HashFail {
        piece: u32,
        peer: PeerId,
    },
    Banned {
        addr: SocketAddr,
        reason: String,
    },
    /// An incoming connection was turned away (at most one event a second;
    /// the reason counts the others).
    Refused {
        addr: SocketAddr,
        reason: String,
    },
    /// Every piece is verified.
    Done,
    TrackerError(String),
    TrackerWarning(String),
    /// Something went wrong that the user should know (disk errors, resume file).
    Error(String),
    /// A write succeeded after a failed one: downloading goes on.
    WritesResumed,
    Stopped,
    Started,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Checking,
    Downloading,
    Seeding,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Checking => "checking",
            State::Downloading => "downloading",
            State::Seeding => "seeding",
            State::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub name: String,
    pub info_hash: InfoHash,
    pub state: State,
    pub size: u64,
    /// Bytes in verified pieces.
    pub have: u64,
    pub pieces_have: u32,
    pub pieces_total: u32,
    /// Payload bytes written (verified or not) and sent since start.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Bytes/s over the last 10 s.
    pub down_rate: u64,
    pub up_rate: u64,
    pub peers: usize,
    pub known: usize,
    /// Seconds to completion at the current rate.
    pub eta: Option<u64>,
    pub up_limit: u64,
    pub down_limit: u64,
    /// Where we accept peers, if we do.
    pub listen: Option<SocketAddr>,
    /// The connected peers' client names and how many run each, most
    /// common first.
    pub clients: Vec<(String, usize)>,
    /// The last failed write while downloading is paused because of it.
    pub disk_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub client: String,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub down_rate: u64,
    pub up_rate: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    /// Pieces the peer has.
    pub have: u32,
    /// Our requests outstanding at the peer.
    pub requests: usize,
    /// Pieces we are fetching from it.
    pub fetching: Vec<u32>,
}

/// A banned address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    pub addr: SocketAddr,
    pub until: std::time::SystemTime,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start the engine's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// The verified pieces, readable from any thread without asking the engine
/// (the filesystem checks it on every read). Only the main loop sets bits,
/// and only after a piece passed its hash check.
#[derive(Debug)]
pub struct PieceSet {
    words: Vec<std::sync::atomic::AtomicU64>,
    len: u32,
    count: std::sync::atomic::AtomicU32,
}

impl PieceSet {
    pub fn new(have: &crate::storage::Bitfield) -> PieceSet {
        let set = PieceSet {
            words: (0..have.len().div_ceil(64))
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            len: have.len() as u32,
            count: std::sync::atomic::AtomicU32::new(0),
        };
        for piece in have.iter_ones() {
            set.insert(piece as u32);
        }
        set
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, piece: u32) -> bool {
        piece < self.len
            && self.words[piece as usize / 64].load(std::sync::atomic::Ordering::Acquire)
                & (1 << (piece % 64))
                != 0
    }

    pub fn insert(&self, piece: u32) {
        if piece < self.len {
            let bit = 1 << (piece % 64);
            let before =
                self.words[piece as usize / 64].fetch_or(bit, std::sync::atomic::Ordering::Release);
            if before & bit == 0 {
                self.count
                    .fetch_add(1, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// Every piece is verified.
    pub fn is_full(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Acquire) == self.len
    }

    /// Every piece in `pieces` is verified.
    pub fn contains_all(&self, mut pieces: std::ops::Range<u32>) -> bool {
        pieces.all(|p| self.contains(p))
    }

    /// One `0`/`1` per piece.
    pub fn to_bitstring(&self) -> String {
        (0..self.len)
            .map(|p| if self.contains(p) { '1' } else { '0' })
            .collect()
    }
}

/// A cloneable way to talk to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    have: std::sync::Arc<PieceSet>,
    kept: std::sync::Arc<crate::storage::recent::RecentPieces>,
    runtime: tokio::runtime::Handle,
}

impl EngineHandle {
    /// The verified pieces, kept current by the engine.
    pub fn have(&self) -> &std::sync::Arc<PieceSet> {
        &self.have
    }

    /// Verified pieces the engine keeps in memory for streaming readers;
    /// give them to the filesystem's own `Storage` to read from.
    pub fn kept_pieces(&self) -> &std::sync::Arc<crate::storage::recent::RecentPieces> {
        &self.kept
    }

    /// The engine's runtime, for tasks that answer on its behalf.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Publishes an event to every subscriber (e.g. a rejected ctl line).
    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Queues a command; false when the engine has ended.
    pub async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
    }

    /// Queues a command without waiting (for callers outside the runtime);
    /// false when the engine has ended or its queue is full.
    pub fn try_send(&self, command: Command) -> bool {
        self.commands.try_send(command).is_ok()
    }

    /// Sends a query and waits for its answer; `None` when the engine has ended.
    async fn ask<T>(&self, query: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.send(query(tx)).await;
        rx.await.ok()
    }

    pub async fn stats(&self) -> Option<Stats> {
        self.ask(Command::Stats).await
    }

    pub async fn peers(&self) -> Option<Vec<PeerInfo>> {
        self.ask(Command::Peers).await
    }

    pub async fn known(&self) -> Option<Vec<SocketAddr>> {
        self.ask(Command::Known).await
    }

    pub async fn bans(&self) -> Option<Vec<BanInfo>> {
        self.ask(Command::Bans).await
    }
}

/// A running engine on its own tokio runtime.
pub struct Engine {
    runtime: Option<tokio::runtime::Runtime>,
    handle: EngineHandle,
    main: Option<tokio::task::JoinHandle<()>>,
    listen: Option<SocketAddr>,
}

impl Engine {
    /// Opens the data, binds the listener and starts the engine. The hash
    /// check of existing data (when the resume file cannot be trusted) runs
    /// in the engine, with state `checking`.
    pub fn start(meta: Metainfo, config: Config, log: Logger) -> Result<Engine, EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("swarmfs-engine")
            .enable_all()
            .build()
            .map_err(EngineError::Runtime)?;
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (main_loop, listen, have, kept) = runtime.block_on(main_loop::MainLoop::new(
            meta,
            config,
            log,
            commands,
            events.clone(),
        ))?;
        let handle = EngineHandle {
            commands: commands_tx,
            events,
            have,
            kept,
            runtime: runtime.handle().clone(),
        };
        let main = runtime.spawn(main_loop.run());
        Ok(Engine {
            runtime: Some(runtime),
            handle,
            main: Some(main),
            listen,
        })
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// The address peers can reach us at (with the real port when 0 was asked).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// Runs `future` on the engine's runtime (for callers on plain threads).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match &self.runtime {
            Some(rt) => rt.block_on(future),
            None => unreachable!("the runtime lives until drop"),
        }
    }

    /// Waits until the engine ends by itself (after a `Quit` from anyone).
    pub fn wait(&mut self) {
        if let (Some(rt), Some(main)) = (&self.runtime, self.main.take()) {
            let _ = rt.block_on(main);
        }
    }

    /// Stops the engine: announces `stopped`, writes the resume file, and
    /// closes every connection.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        if let Some(rt) = &self.runtime {
            let handle = self.handle.clone();
            rt.block_on(async move {
                let (tx, rx) = oneshot::channel();
                if handle.send(Command::Quit(tx)).await {
                    let _ = rx.await;
                }
            });
        }
        self.wait();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            self.shutdown_inner();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PieceSet;

    #[test]
    fn a_piece_set_counts_each_piece_once_and_knows_when_it_is_full() {
        let mut have = crate::storage::Bitfield::repeat(false, 3);
        have.set(1, true);
        let set = PieceSet::new(&have);
        assert!(!set.is_full() && set.contains(1));
        set.insert(0);
        set.insert(0);
        set.insert(7);
        assert!(
            !set.is_full(),
            "0 twice and a piece past the end count once and not"
        );
        set.insert(2);
        assert!(set.is_full() && set.contains_all(0..3));
        assert_eq!(set.to_bitstring(), "111");
    }
}
