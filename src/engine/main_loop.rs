//! The main event loop: the single owner of the swarm's state (pieces we have
//! and need, who has what, who we request what from, known and connected
//! peers, choke and interest states both ways, transfer rates).
//!
//! Everything else is a task that sends it messages: peer tasks (through one
//! bounded channel), the listener and dial tasks (handshaken connections),
//! the tracker task, and blocking work (hash checks, resume writes). The loop
//! never waits on a peer: control messages go out with `try_send`, and a peer
//! whose queue is full is disconnected.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use slog::{debug, info, warn, Logger};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::batch_hasher::{BatchHasher, Unhashed};
use super::choker::{self, Candidate, Choker};
use super::peer::{self, FromPeer, PeerContext, PeerInput};
use super::picker::{PeerId, Picker};
use super::piecekeeper::Piecekeeper;
use super::ratelimit::RateLimiter;
use super::tracker::{self, AnnounceEvent, Progress, TrackerCommand, TrackerReport, TrackerTask};
use super::{
    random_u64, BanInfo, Command, Config, EngineError, Event, PeerInfo, PeerSelector, PieceSet,
    State, Stats,
};
use crate::metainfo::Metainfo;
use crate::storage::batch_sha1::{self, LANES};
use crate::storage::hasher::Partial;
use crate::storage::recent::RecentPieces;
use crate::storage::staging::{AlignedBuf, StagedPiece};
use crate::storage::{check, resume, Bitfield, KeptPieces, OpenMode, Storage};
use crate::storage::{PieceHashers, StagedPieces};
use crate::wire::extension::ExtensionHandshake;
use crate::wire::pex::{Pex, MAX_PEX_PEERS, UT_PEX};
use crate::wire::{BlockRef, Geometry, Handshake, Message, EXTENSION_PROTOCOL, FAST_EXTENSION};

/// Inputs from all peer tasks share this queue.
const PEER_INPUT_QUEUE: usize = 512;
/// A peer may queue this many requests with us; more and it is dropped.
pub const MAX_QUEUED_REQUESTS: usize = 500;
/// After a failed write, how long to wait before trying the disk again.
pub const DISK_RETRY: Duration = Duration::from_secs(30);
/// Requests we keep outstanding at a peer: at least / at most.
const MIN_PIPELINE: usize = 16;
const MAX_PIPELINE: usize = 1000;
/// While a read waits (someone streams) and several peers send, the bytes
/// requested from all of them at once, at most. Each peer serves its
/// requests in order, so pieces handed out in order to several peers finish
/// up to their pipelines apart: with a second's worth at each (16 MiB
/// here), the pieces after the one a reader waits on outran the pieces kept
/// in memory for it ([`crate::storage::disk::RECENT_CAP`]) and the reader
/// read them back from a disk busy with the download's writes. Half of
/// that keeps most of them in (3 seeders: 110 to 190 MiB of a GiB read
/// back). A quarter kept more in (50 to 110 MiB) but left the pipelines
/// short of what fast peers send: 0.82 to 0.88 of the plain download's
/// speed against 0.87 to 0.89 with half, in three runs of 8 to 12 pairs.
/// One peer alone delivers in the order asked, so it keeps its full
/// pipeline (see [`streaming_depth`]).
const STREAMING_IN_FLIGHT: usize = crate::storage::disk::RECENT_CAP / 2;
/// Connect and handshake must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Incoming connections still in their handshake, at most: a flood of
/// connections that never handshake is closed at once past this.
pub const MAX_HANDSHAKING: usize = 64;
/// As [`MAX_HANDSHAKING`], from one IP address: one host holding its
/// connections open cannot take every slot.
pub const MAX_HANDSHAKING_PER_IP: usize = 8;
/// How long a peer that connected to us has to send its handshake.
const INCOMING_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a proven bad peer stays banned.
const BAN_TIME: Duration = Duration::from_secs(600);
/// A peer with this many hash-failure strikes is banned.
const MAX_STRIKES: u32 = 3;
/// Memory for pieces assembled before they are written (see
/// `storage::staging`): 16 pieces of the common 1 MiB, enough for several
/// fast peers each filling a few pieces at once (1 GiB from one seeder
/// over loopback never had more than 8 MiB staged). Past it, pieces are
/// written block by block.
const STAGING_CAP: usize = 16 << 20;
/// Pieces up to this long are hashed in batches where the CPU can (see
/// [`BatchHasher`]); staging then has room for two full batches more
/// ([`LANES`] pieces each): one gathering while the one before is hashed
/// and written. With room for one, the pieces waiting for their writes
/// left too little for assembly: in a streaming download from one seeder,
/// 62 of 1024 pieces went alone, at 2.5 times the CPU a byte.
const MAX_BATCHED_PIECE: u64 = 1 << 20;
/// The staging memory kept free for pieces being assembled while pieces
/// wait for a batch hash: a batch is hashed early rather than eat into it.
const ASSEMBLY_ROOM: usize = 8 << 20;
/// Verified pieces are recorded in the resume file at most this often.
const RESUME_INTERVAL: Duration = Duration::from_secs(5);
/// A reader that has not read for this long stopped streaming: rarest
/// first again (a player that pauses to buffer resumes well within it).
const STREAM_IDLE: Duration = Duration::from_secs(5);
/// Wait before dialing an address again after a failure (doubles each time).
const REDIAL_DELAY: Duration = Duration::from_secs(30);

/// Results of blocking work, back to the loop.
enum Work {
    Checked(Result<Bitfield, String>),
    Verified { piece: u32, verdict: Verdict },
    Saved(Result<(), String>),
}

/// How a completed piece's check went.
enum Verdict {
    /// Its hash matched, and it is on disk.
    Good,
    /// Its hash did not match.
    Bad,
    /// Reading it back failed.
    ReadFailed(String),
    /// It was verified in memory, but writing it failed: the bytes are
    /// kept, to be written when writes are retried.
    WriteFailed { error: String, buffer: AlignedBuf },
}

/// A connection from the listener or a dial task.
enum Connection {
    Established {
        stream: TcpStream,
        addr: SocketAddr,
        theirs: Handshake,
        outgoing: bool,
    },
    Failed {
        addr: SocketAddr,
        error: String,
    },
}

struct Peer {
    addr: SocketAddr,
    peer_id: [u8; 20],
    client: String,
    control: mpsc::Sender<Message>,
    cancel: CancellationToken,
    pieces: Bitfield,
    /// The peer speaks the extension protocol (BEP 10).
    extensions: bool,
    /// Requests the peer queues (its `reqq`); we never have more outstanding.
    reqq: Option<u32>,
    /// Both sides speak the fast extension (BEP 6).
    fast: bool,
    /// Pieces the peer lets us request while it chokes us (BEP 6).
    allowed_fast: Bitfield,
    /// We dialled it, so `addr` is where it listens.
    outgoing: bool,
    /// Its message id for `ut_pex`, if it speaks peer exchange (BEP 11).
    pex_id: Option<u8>,
    /// The port it listens on (its extension handshake's `p`).
    listen_port: Option<u16>,
    /// The addresses our last PEX message to it described as connected.
    pex_sent: BTreeSet<SocketAddr>,
    /// When its last PEX message was taken (they are rate-limited).
    pex_taken_at: Option<Instant>,
    /// When we last sent it a PEX message: the first goes out within a
    /// second of its extension handshake, then at most one per interval.
    pex_sent_at: Option<Instant>,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// Our requests at the peer.
    outstanding: HashSet<BlockRef>,
    /// The peer's requests to us, in order.
    their_requests: VecDeque<BlockRef>,
    upload_waiter: Option<oneshot::Sender<Vec<BlockRef>>>,
    down: RateWindow,
    up: RateWindow,
    downloaded: u64,
    uploaded: u64,
    last_heard: Instant,
    strikes: u32,
}

struct Known {
    next_attempt: Instant,
    failures: u32,
    /// The address is our own listener (seen in a handshake): never dial it.
    is_self: bool,
}

struct Ban {
    until: Instant,
    reason: String,
}

struct TrackerRun {
    commands: mpsc::Sender<TrackerCommand>,
    cancel: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

pub struct MainLoop {
    meta: Arc<Metainfo>,
    geometry: Geometry,
    config: Config,
    log: Logger,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<Event>,
    storage: Arc<Storage>,
    resume_path: PathBuf,
    state: State,
    picker: Picker,
    choker: Choker,
    keeper: Piecekeeper,
    hashers: PieceHashers,
    staging: StagedPieces,
    /// Where complete staged pieces are hashed, many at once (None: each
    /// is hashed as its blocks land, and finished alone).
    batch_hasher: Option<BatchHasher>,
    /// Pieces verified in memory whose write failed (a full disk): kept
    /// whole, and written when writes are retried.
    unwritten: BTreeMap<u32, AlignedBuf>,
    peers: BTreeMap<PeerId, Peer>,
    known: BTreeMap<SocketAddr, Known>,
    connecting: HashSet<SocketAddr>,
    banned: BTreeMap<SocketAddr, Ban>,
    banned_ids: HashSet<[u8; 20]>,
    next_id: PeerId,
    handshake: Handshake,
    listener: Option<TcpListener>,
    listen: Option<SocketAddr>,
    up: Arc<RateLimiter>,
    down: Arc<RateLimiter>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    peer_tx: mpsc::Sender<FromPeer>,
    peer_rx: mpsc::Receiver<FromPeer>,
    conn_tx: mpsc::Sender<Connection>,
    conn_rx: mpsc::Receiver<Connection>,
    work_tx: mpsc::Sender<Work>,
    work_rx: mpsc::Receiver<Work>,
    reports_tx: mpsc::Sender<TrackerReport>,
    reports_rx: mpsc::Receiver<TrackerReport>,
    progress: watch::Sender<Progress>,
    tracker: Option<TrackerRun>,
    downloaded: u64,
    uploaded: u64,
    down_total: RateWindow,
    up_total: RateWindow,
    resume_dirty: bool,
    /// A block write failed (a full or failing disk): no new requests until
    /// a retry ([`DISK_RETRY`] later, or `start`) writes a block again.
    disk_error: Option<DiskError>,
    refusals: RefusalNotices,
    saving: bool,
    last_save: Instant,
    /// When a `files/` read last told us where it reads (streaming).
    last_read: Option<Instant>,
    /// Peers to drop at the end of this turn (a full queue, a violation).
    doomed: Vec<(PeerId, String)>,
    /// Connections that arrived during the start-up check, admitted after it.
    waiting: Vec<Connection>,
    /// The verified pieces, shared with readers outside the engine.
    have_set: Arc<PieceSet>,
    quit: Option<oneshot::Sender<()>>,
}

/// The last failed write, and whether requests are paused because of it.
struct DiskError {
    message: String,
    since: Instant,
    /// A retry is under way: requests flow until a write fails or succeeds.
    retrying: bool,
}

/// `-SF0100-` and 12 random alphanumerics.
fn new_peer_id() -> [u8; 20] {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = *b"-SF0100-000000000000";
    let mut r = random_u64();
    for b in &mut id[8..] {
        *b = ALPHABET[(r % ALPHABET.len() as u64) as usize];
        r = r.rotate_right(7) ^ random_u64();
    }
    id
}

/// Ends the check of `piece`, staged whole in `buffer`: written (see
/// [`write_verified`]) if its hash `matches`, else its buffer goes back.
fn finish_staged(
    storage: &Storage,
    staging: &StagedPieces,
    piece: u32,
    buffer: AlignedBuf,
    matches: bool,
    for_readers: bool,
) -> Verdict {
    if matches {
        write_verified(storage, staging, piece, buffer, for_readers)
    } else {
        staging.give_back(buffer);
        Verdict::Bad
    }
}

/// Writes `buffer`, piece `piece` verified in memory, and keeps it for
/// streaming readers or returns it to the staging pool; on a failed write
/// the buffer comes back in the verdict, to be written later.
fn write_verified(
    storage: &Storage,
    staging: &StagedPieces,
    piece: u32,
    buffer: AlignedBuf,
    for_readers: bool,
) -> Verdict {
    if !for_readers {
        if let Err(e) = storage.write_piece(piece, &buffer) {
            return Verdict::WriteFailed {
                error: e.to_string(),
                buffer,
            };
        }
        staging.give_back(buffer);
        return Verdict::Good;
    }
    // A streaming reader will read this piece: it is kept in memory for
    // the reader from now on, before the write (a reader waiting for it
    // waited for the device too: a third of the writes took over 3 ms
    // while a reader streamed, one in ten over 15 ms). If there is no room
    // (the reader lags, and the kept pieces are all still ahead of it) it
    // goes at once, and is read back into the page cache once written, in
    // the background (see `Storage::keep_for_readers`): read back only
    // when the reader got there, at the pace of a device busy with the
    // download's writes, the reader fell further behind until the download
    // ended (seen: 640 of 1024 reads). Either way it is written past the
    // page cache: written through it, it cost the download a copy and the
    // kernel's writeback.
    let (shared, let_go) = storage.keep_for_readers(piece, buffer);
    let written = storage.write_piece(piece, &shared);
    if written.is_ok() {
        // Buffers of pieces kept for readers no longer count as staging's.
        staging.detach(&shared);
    }
    for old in let_go {
        staging.adopt(old);
    }
    match written {
        Ok(()) => {
            storage.written_for_readers(piece);
            // Let go already, and no read copying from it: back for reuse.
            if let Ok(buffer) = Arc::try_unwrap(shared) {
                staging.adopt(buffer);
            }
            Verdict::Good
        }
        Err(e) => {
            // Still staging's, whole, for the retry.
            storage.unkeep(piece);
            // A read copying from it this moment keeps it shared.
            let buffer =
                Arc::try_unwrap(shared).unwrap_or_else(|shared| AlignedBuf::copy_of(&shared));
            Verdict::WriteFailed {
                error: e.to_string(),
                buffer,
            }
        }
    }
}

impl MainLoop {
    pub async fn new(
        meta: Metainfo,
        config: Config,
        log: Logger,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Event>,
    ) -> Result<
        (
            MainLoop,
            Option<SocketAddr>,
            Arc<PieceSet>,
            Arc<RecentPieces>,
        ),
        EngineError,
    > {
        let geometry = Geometry {
            piece_count: meta.piece_count(),
            piece_length: meta.piece_length,
            total_length: meta.total_length,
        };
        let resume_path = resume::path_for(&config.data_dir, &meta);
        // Trust must be judged before opening, which creates and extends files.
        let trusted = resume::trusted_have(&config.data_dir, &meta, &resume_path);
        let mode = if config.sparse {
            OpenMode::CreateSparse
        } else {
            OpenMode::Create
        };
        let storage = Arc::new(Storage::open(&meta, &config.data_dir, mode)?);
        for (path, why) in storage.unreserved() {
            warn!(log, "space not reserved; the download may run out of room"; "file" => path.display().to_string(), "error" => why);
        }
        let (listener, listen) = match config.listen {
            Some(addr) => {
                let listener = match TcpListener::bind(addr).await {
                    // No IPv6 here: the IPv4 wildcard on the same port instead.
                    Err(e)
                        if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED
                            && e.kind() != std::io::ErrorKind::AddrInUse =>
                    {
                        let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
                        TcpListener::bind(v4).await
                    }
                    other => other,
                }
                .map_err(|source| EngineError::Listen { addr, source })?;
                let local = listener
                    .local_addr()
                    .map_err(|source| EngineError::Listen { addr, source })?;
                (Some(listener), Some(local))
            }
            None => (None, None),
        };
        let (peer_tx, peer_rx) = mpsc::channel(PEER_INPUT_QUEUE);
        let (conn_tx, conn_rx) = mpsc::channel(64);
        let (work_tx, work_rx) = mpsc::channel(64);
        let (reports_tx, reports_rx) = mpsc::channel(16);
        let (progress, _) = watch::channel(Progress::default());
        let our_id = new_peer_id();
        let (state, have) = match trusted {
            Ok(have) => {
                info!(log, "resume file trusted"; "pieces" => have.count_ones());
                (State::Downloading, have)
            }
            // Fresh files: no hashing a gigabyte of holes to find nothing.
            Err(_) if storage.found_no_data() => {
                info!(log, "no existing data to check");
                (
                    State::Downloading,
                    Bitfield::repeat(false, geometry.piece_count as usize),
                )
            }
            Err(why) => {
                info!(log, "checking existing data"; "why" => why);
                (
                    State::Checking,
                    Bitfield::repeat(false, geometry.piece_count as usize),
                )
            }
        };
        let batch_hashing = batch_sha1::available() && geometry.piece_length <= MAX_BATCHED_PIECE;
        let (staging, batch_hasher) = if batch_hashing {
            let allowance = 2 * LANES * geometry.piece_length as usize;
            let staging = StagedPieces::new(STAGING_CAP).with_batch_allowance(allowance);
            let (storage, staging_, work) = (storage.clone(), staging.clone(), work_tx.clone());
            // Pieces held for a batch must not leave the pieces being
            // assembled without memory (they would be written block by
            // block, through the page cache: seen with three seeders).
            let pressure = staging.clone();
            let short_of_memory = move || pressure.room() < ASSEMBLY_ROOM;
            let hasher = BatchHasher::spawn(LANES, short_of_memory, move |p: Unhashed, digest| {
                let matches = storage.piece_hash_is(p.piece, &digest);
                let verdict = finish_staged(
                    &storage,
                    &staging_,
                    p.piece,
                    p.buffer,
                    matches,
                    p.for_readers,
                );
                let _ = work.blocking_send(Work::Verified {
                    piece: p.piece,
                    verdict,
                });
            });
            (staging, Some(hasher))
        } else {
            (StagedPieces::new(STAGING_CAP), None)
        };
        let mut main = MainLoop {
            picker: Picker::new(geometry, have.clone(), random_u64()),
            choker: Choker::new(random_u64()),
            keeper: Piecekeeper::new(),
            hashers: PieceHashers::new(),
            staging,
            batch_hasher,
            unwritten: BTreeMap::new(),
            handshake: Handshake {
                reserved: {
                    let mut r = [0u8; 8];
                    r[EXTENSION_PROTOCOL.0] |= EXTENSION_PROTOCOL.1;
                    r[FAST_EXTENSION.0] |= FAST_EXTENSION.1;
                    r
                },
                info_hash: meta.info_hash,
                peer_id: our_id,
            },
            up: Arc::new(RateLimiter::new(config.up_limit)),
            down: Arc::new(RateLimiter::new(config.down_limit)),
            meta: Arc::new(meta),
            geometry,
            config,
            log,
            commands,
            events,
            storage,
            resume_path,
            state,
            peers: BTreeMap::new(),
            known: BTreeMap::new(),
            connecting: HashSet::new(),
            banned: BTreeMap::new(),
            banned_ids: HashSet::new(),
            next_id: 1,
            listener,
            listen,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            peer_tx,
            peer_rx,
            conn_tx,
            conn_rx,
            work_tx,
            work_rx,
            reports_tx,
            reports_rx,
            progress,
            tracker: None,
            downloaded: 0,
            uploaded: 0,
            down_total: RateWindow::default(),
            up_total: RateWindow::default(),
            resume_dirty: false,
            disk_error: None,
            refusals: RefusalNotices::default(),
            saving: false,
            last_save: Instant::now(),
            last_read: None,
            doomed: Vec::new(),
            waiting: Vec::new(),
            have_set: Arc::new(PieceSet::new(&have)),
            quit: None,
        };
        let now = Instant::now();
        for addr in main.config.peers.clone() {
            main.known.insert(addr, Known::new(now));
        }
        let have_set = main.have_set.clone();
        let kept = main.storage.kept_pieces();
        Ok((main, listen, have_set, kept))
    }

    pub async fn run(mut self) {
        if let Some(listener) = self.listener.take() {
            self.tasks.spawn(accept_loop(
                listener,
                self.handshake.clone(),
                self.conn_tx.clone(),
                self.events.clone(),
                self.cancel.clone(),
            ));
        }
        if self.state == State::Checking {
            let storage = self.storage.clone();
            let work = self.work_tx.clone();
            tokio::task::spawn_blocking(move || {
                let have =
                    check::verify_pieces(&storage, check::default_threads(), &|_| true, &|_| {});
                let _ = work.blocking_send(Work::Checked(have.map_err(|e| e.to_string())));
            });
        } else {
            // Files may have been created: record them, then go.
            self.resume_dirty = true;
            self.ready().await;
        }

        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut choke_round = tokio::time::interval(choker::ROUND);
        choke_round.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command).await,
                    // Every handle is gone: nobody can ask us to quit, so quit.
                    None => break,
                },
                Some(input) = self.peer_rx.recv() => self.peer_input(input).await,
                Some(connection) = self.conn_rx.recv() => self.connection(connection).await,
                Some(work) = self.work_rx.recv() => self.work(work).await,
                Some(report) = self.reports_rx.recv() => self.tracker_report(report).await,
                _ = second.tick() => self.each_second().await,
                _ = choke_round.tick() => self.choke_round(),
            }
            self.drop_doomed().await;
            if self.quit.is_some() {
                break;
            }
        }
        self.shutdown().await;
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// The data is checked: announce and connect.
    async fn ready(&mut self) {
        if self.picker.is_complete() {
            self.state = State::Seeding;
        } else if self.state == State::Checking {
            self.state = State::Downloading;
        }
        self.start_tracker();
        for connection in std::mem::take(&mut self.waiting) {
            self.connection(connection).await;
        }
        self.dial().await;
    }

    async fn work(&mut self, work: Work) {
        match work {
            Work::Checked(Ok(have)) => {
                let total = self.geometry.piece_count;
                info!(self.log, "check finished"; "have" => have.count_ones(), "pieces" => total);
                self.emit(Event::Checked {
                    have: have.count_ones() as u32,
                    total,
                });
                for piece in have.iter_ones() {
                    self.have_set.insert(piece as u32);
                }
                self.picker = Picker::new(self.geometry, have, random_u64());
                self.resume_dirty = true;
                if self.state == State::Checking {
                    self.ready().await;
                }
            }
            Work::Checked(Err(e)) => {
                warn!(self.log, "check failed"; "error" => &e);
                self.emit(Event::Error(format!("checking data: {e}")));
                // Nothing can be trusted: stay stopped rather than seed bad data.
                self.state = State::Stopped;
            }
            Work::Verified { piece, verdict } => self.verified(piece, verdict).await,
            Work::Saved(result) => {
                self.saving = false;
                if let Err(e) = result {
                    warn!(self.log, "resume file not written"; "error" => &e);
                    self.emit(Event::Error(format!("writing resume file: {e}")));
                    self.resume_dirty = true;
                }
            }
        }
    }

    fn start_tracker(&mut self) {
        if !self.config.use_trackers || self.meta.trackers.is_empty() || self.tracker.is_some() {
            return;
        }
        let (commands, commands_rx) = mpsc::channel(8);
        let cancel = self.cancel.child_token();
        let task = TrackerTask {
            tiers: self.meta.trackers.clone(),
            info_hash: self.meta.info_hash,
            peer_id: self.handshake.peer_id,
            port: self.listen.map_or(0, |a| a.port()),
            progress: self.progress.subscribe(),
            commands: commands_rx,
            reports: self.reports_tx.clone(),
            cancel: cancel.clone(),
            first_backoff: self.config.tracker_retry,
            announce: {
                let udp = Arc::new(super::udp_tracker::UdpTrackers::default());
                let timeout = self.config.tracker_timeout;
                Arc::new(move |url: &str, request: &tracker::AnnounceRequest| {
                    tracker::announce_any(&udp, url, request, timeout)
                })
            },
        };
        self.update_progress();
        let join = tokio::spawn(task.run());
        self.tracker = Some(TrackerRun {
            commands,
            cancel,
            join,
        });
    }

    /// Stops the tracker task, which announces `stopped` (bounded in time).
    async fn stop_tracker(&mut self) {
        if let Some(run) = self.tracker.take() {
            run.cancel.cancel();
            let _ = run.join.await;
        }
    }

    fn tell_tracker(&self, event: Option<AnnounceEvent>) {
        if let Some(run) = &self.tracker {
            let _ = run.commands.try_send(TrackerCommand::Announce(event));
        }
    }

    async fn tracker_report(&mut self, report: TrackerReport) {
        match report {
            TrackerReport::Peers { url, peers } => {
                let now = Instant::now();
                let mut new = 0;
                for addr in peers {
                    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                    if Some(addr) == self.listen || self.known.contains_key(&addr) {
                        continue;
                    }
                    self.known.insert(addr, Known::new(now));
                    new += 1;
                }
                debug!(self.log, "tracker answered"; "url" => url, "new" => new);
                self.emit(Event::Peers { new });
                // At once, not at the next tick: a reader may be waiting.
                if new > 0 {
                    self.dial().await;
                }
            }
            TrackerReport::Warning { url, message } => {
                self.emit(Event::TrackerWarning(format!("{url}: {message}")));
            }
            TrackerReport::Error(e) => {
                debug!(self.log, "tracker error"; "error" => e.to_string());
                self.emit(Event::TrackerError(e.to_string()));
            }
        }
    }

    fn update_progress(&self) {
        let _ = self.progress.send(Progress {
            uploaded: self.uploaded,
            downloaded: self.downloaded,
            left: self.meta.total_length - self.have_bytes(),
        });
    }

    fn have_bytes(&self) -> u64 {
        let count = self.picker.have_count() as u64;
        let last = self.geometry.piece_count as usize - 1;
        let mut bytes = count * self.geometry.piece_length;
        if self.picker.have()[last] {
            bytes -= self.geometry.piece_length - self.geometry.piece_size(last as u32);
        }
        bytes
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Connect(addr) => {
                self.known
                    .entry(addr)
                    .and_modify(|k| {
                        k.next_attempt = Instant::now();
                        k.failures = 0;
                    })
                    .or_insert_with(|| Known::new(Instant::now()));
                self.dial().await;
            }
            Command::Disconnect(selector) => {
                let id = match selector {
                    PeerSelector::Id(id) => self.peers.contains_key(&id).then_some(id),
                    PeerSelector::Addr(addr) => self
                        .peers
                        .iter()
                        .find(|(_, p)| p.addr == addr)
                        .map(|(&id, _)| id),
                };
                if let Some(id) = id {
                    self.disconnect(id, "disconnected by user".into()).await;
                }
            }
            Command::SetUpLimit(rate) => {
                self.config.up_limit = rate;
                self.up.set_rate(rate);
            }
            Command::SetDownLimit(rate) => {
                self.config.down_limit = rate;
                self.down.set_rate(rate);
            }
            Command::Announce => self.tell_tracker(None),
            Command::Stop => {
                if self.state != State::Stopped {
                    self.state = State::Stopped;
                    self.stop_tracker().await;
                    for id in self.peers.keys().copied().collect::<Vec<_>>() {
                        self.disconnect(id, "stopped".into()).await;
                    }
                    self.emit(Event::Stopped);
                }
            }
            Command::Start => {
                if self.disk_error.is_some() {
                    self.retry_disk().await;
                }
                if self.state == State::Stopped {
                    let now = Instant::now();
                    for k in self.known.values_mut() {
                        k.next_attempt = now;
                    }
                    self.state = State::Downloading;
                    self.emit(Event::Started);
                    self.ready().await;
                }
            }
            Command::Read { piece, pull } => {
                self.picker.stream_at(piece);
                self.last_read = Some(Instant::now());
                self.choose_hashing();
                if !pull.is_empty() {
                    self.picker.make_urgent(pull);
                    self.fill_all_requests().await;
                }
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::Known(reply) => {
                let mut addrs: Vec<SocketAddr> = self
                    .known
                    .iter()
                    .filter(|(_, k)| !k.is_self)
                    .map(|(a, _)| *a)
                    .chain(self.peers.values().map(|p| p.addr))
                    .collect();
                addrs.sort();
                addrs.dedup();
                let _ = reply.send(addrs);
            }
            Command::Bans(reply) => {
                let now = Instant::now();
                let bans = self
                    .banned
                    .iter()
                    .map(|(&addr, ban)| BanInfo {
                        addr,
                        until: std::time::SystemTime::now()
                            + ban.until.saturating_duration_since(now),
                        reason: ban.reason.clone(),
                    })
                    .collect();
                let _ = reply.send(bans);
            }
            Command::Quit(reply) => self.quit = Some(reply),
        }
    }

    fn stats(&self) -> Stats {
        let have = self.have_bytes();
        let down_rate = self.down_total.rate();
        let left = self.meta.total_length - have;
        Stats {
            name: self.meta.name.clone(),
            info_hash: self.meta.info_hash,
            state: self.state,
            size: self.meta.total_length,
            have,
            pieces_have: self.picker.have_count(),
            pieces_total: self.geometry.piece_count,
            downloaded: self.downloaded,
            uploaded: self.uploaded,
            down_rate,
            up_rate: self.up_total.rate(),
            peers: self.peers.len(),
            known: self.known.values().filter(|k| !k.is_self).count(),
            eta: match (left, down_rate) {
                (0, _) => Some(0),
                (_, 0) => None,
                (left, rate) => Some(left.div_ceil(rate)),
            },
            up_limit: self.config.up_limit,
            down_limit: self.config.down_limit,
            listen: self.listen,
            clients: self.client_counts(),
            disk_error: self.disk_error.as_ref().map(|e| e.message.clone()),
        }
    }

    /// A block could not be written. The first failure pauses requesting
    /// (blocks already requested still arrive, and fail quietly); verified
    /// pieces are untouched, and the block is simply needed again.
    fn write_failed(&mut self, piece: u32, error: String) {
        let message = format!("writing piece {piece}: {error}");
        match &mut self.disk_error {
            Some(e) if !e.retrying => return,
            Some(e) => {
                // The retry failed too: wait again, quietly.
                e.retrying = false;
                e.since = Instant::now();
                e.message = message;
                return;
            }
            None => {}
        }
        let retry = self.config.disk_retry.as_secs();
        warn!(self.log, "write failed, requests paused"; "piece" => piece, "error" => &error);
        self.emit(Event::Error(format!(
            "{message}; downloading paused, retried every {retry} s or on `start`"
        )));
        self.disk_error = Some(DiskError {
            message,
            since: Instant::now(),
            retrying: false,
        });
    }

    /// Lets requests flow again to see whether the disk takes writes.
    async fn retry_disk(&mut self) {
        if let Some(e) = &mut self.disk_error {
            e.retrying = true;
            debug!(self.log, "retrying writes");
        }
        let keep_for_readers = self.picker.streaming();
        for (piece, buffer) in std::mem::take(&mut self.unwritten) {
            let (storage, staging) = (self.storage.clone(), self.staging.clone());
            let work = self.work_tx.clone();
            tokio::task::spawn_blocking(move || {
                let verdict = write_verified(&storage, &staging, piece, buffer, keep_for_readers);
                let _ = work.blocking_send(Work::Verified { piece, verdict });
            });
        }
        self.fill_all_requests().await;
    }

    /// The pieces kept for a reader go once it has not read them for
    /// [`STREAM_IDLE`] (called when no more are being kept: the download
    /// is over, or nobody streams).
    fn forget_kept_pieces_unless_read(&self) {
        let kept = self.storage.kept_pieces();
        if kept.held() > 0 && kept.last_read().is_none_or(|t| t.elapsed() >= STREAM_IDLE) {
            self.storage.forget_kept_pieces(KeptPieces::All);
        }
    }

    async fn fill_all_requests(&mut self) {
        for id in self.peers.keys().copied().collect::<Vec<_>>() {
            self.fill_requests(id).await;
        }
    }

    fn client_counts(&self) -> Vec<(String, usize)> {
        let mut counts = BTreeMap::<&str, usize>::new();
        for p in self.peers.values() {
            *counts.entry(p.client.as_str()).or_default() += 1;
        }
        let mut clients: Vec<_> = counts.into_iter().map(|(c, n)| (c.to_owned(), n)).collect();
        // Stable: equal counts stay in name order.
        clients.sort_by_key(|c| std::cmp::Reverse(c.1));
        clients
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        self.peers
            .iter()
            .map(|(&id, p)| PeerInfo {
                id,
                addr: p.addr,
                client: p.client.clone(),
                am_choking: p.am_choking,
                am_interested: p.am_interested,
                peer_choking: p.peer_choking,
                peer_interested: p.peer_interested,
                down_rate: p.down.rate(),
                up_rate: p.up.rate(),
                downloaded: p.downloaded,
                uploaded: p.uploaded,
                have: p.pieces.count_ones() as u32,
                requests: p.outstanding.len(),
                fetching: self.picker.pieces_owned_by(id),
            })
            .collect()
    }

    /// Dials known addresses while there is room.
    async fn dial(&mut self) {
        if matches!(self.state, State::Stopped | State::Checking) {
            return;
        }
        let now = Instant::now();
        let connected: HashSet<SocketAddr> = self.peers.values().map(|p| p.addr).collect();
        let room = self
            .config
            .max_peers
            .saturating_sub(self.peers.len() + self.connecting.len());
        let candidates: Vec<SocketAddr> = self
            .known
            .iter()
            .filter(|(addr, k)| {
                !k.is_self
                    && k.next_attempt <= now
                    && !connected.contains(addr)
                    && !self.connecting.contains(addr)
                    && !self.banned.contains_key(addr)
            })
            .map(|(&addr, _)| addr)
            .take(room)
            .collect();
        for addr in candidates {
            self.connecting.insert(addr);
            let ours = self.handshake.clone();
            let conn_tx = self.conn_tx.clone();
            let cancel = self.cancel.clone();
            self.tasks.spawn(async move {
                let result = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = peer::dial(addr, &ours, CONNECT_TIMEOUT) => r,
                };
                let connection = match result {
                    Ok((stream, theirs)) => Connection::Established {
                        stream,
                        addr,
                        theirs,
                        outgoing: true,
                    },
                    Err(e) => Connection::Failed {
                        addr,
                        error: e.to_string(),
                    },
                };
                let _ = conn_tx.send(connection).await;
            });
        }
    }

    async fn connection(&mut self, connection: Connection) {
        if self.state == State::Checking {
            // Bounded by the connection limit; they are admitted when ready.
            if self.waiting.len() < self.config.max_peers {
                self.waiting.push(connection);
            }
            return;
        }
        let (stream, addr, theirs, outgoing) = match connection {
            Connection::Failed { addr, error } => {
                self.connecting.remove(&addr);
                if let Some(k) = self.known.get_mut(&addr) {
                    k.failures += 1;
                    k.next_attempt =
                        Instant::now() + REDIAL_DELAY * 2u32.pow(k.failures.min(6) - 1);
                }
                debug!(self.log, "dial failed"; "addr" => addr, "error" => error);
                return;
            }
            Connection::Established {
                stream,
                addr,
                theirs,
                outgoing,
            } => (stream, addr, theirs, outgoing),
        };
        if outgoing {
            self.connecting.remove(&addr);
        }
        let refuse = if theirs.peer_id == self.handshake.peer_id {
            if let Some(k) = self.known.get_mut(&addr) {
                k.is_self = true;
            }
            Some("connected to ourselves")
        } else if self.state == State::Stopped {
            Some("stopped")
        } else if self.banned.contains_key(&addr) || self.banned_ids.contains(&theirs.peer_id) {
            Some("banned")
        } else if let Some((&old_id, old)) =
            self.peers.iter().find(|(_, p)| p.peer_id == theirs.peer_id)
        {
            if replaces_existing(
                &self.handshake.peer_id,
                &theirs.peer_id,
                outgoing,
                old.outgoing,
            ) {
                self.disconnect(old_id, "replaced by a simultaneous connection".into())
                    .await;
                None
            } else {
                Some("already connected")
            }
        } else if self.peers.len() >= self.config.max_peers {
            Some("connection limit reached")
        } else {
            None
        };
        if let Some(why) = refuse {
            debug!(self.log, "connection refused"; "addr" => addr, "why" => why);
            // Worth telling: the limit and bans (not our own or doubled
            // connections, which are routine).
            if matches!(why, "connection limit reached" | "banned") {
                if let Some(quiet) = self.refusals.due(Instant::now()) {
                    let reason = if quiet > 0 {
                        format!("{why} (and {quiet} more refused)")
                    } else {
                        why.to_string()
                    };
                    self.emit(Event::Refused { addr, reason });
                }
            }
            return;
        }
        if let Some(k) = self.known.get_mut(&addr) {
            k.failures = 0;
        }

        let id = self.next_id;
        self.next_id += 1;
        let cancel = self.cancel.child_token();
        let ctx = PeerContext {
            id,
            geometry: self.geometry,
            storage: self.storage.clone(),
            keeper: self.keeper.clone(),
            hashers: self.hashers.clone(),
            staging: self.staging.clone(),
            main: self.peer_tx.clone(),
            up: self.up.clone(),
            down: self.down.clone(),
            cancel: cancel.clone(),
            keepalive: self.config.keepalive,
        };
        let control = peer::spawn(ctx, stream, &self.tasks);
        let client = peer::client_name(&theirs.peer_id);
        info!(self.log, "peer connected"; "id" => id, "addr" => addr, "client" => &client, "outgoing" => outgoing);
        self.peers.insert(
            id,
            Peer {
                addr,
                peer_id: theirs.peer_id,
                client: client.clone(),
                control,
                cancel,
                pieces: Bitfield::repeat(false, self.geometry.piece_count as usize),
                extensions: theirs.reserved[EXTENSION_PROTOCOL.0] & EXTENSION_PROTOCOL.1 != 0,
                reqq: None,
                fast: theirs.reserved[FAST_EXTENSION.0] & FAST_EXTENSION.1 != 0,
                outgoing,
                pex_id: None,
                listen_port: None,
                pex_sent: BTreeSet::new(),
                pex_taken_at: None,
                pex_sent_at: None,
                allowed_fast: Bitfield::repeat(false, self.geometry.piece_count as usize),
                am_choking: true,
                am_interested: false,
                peer_choking: true,
                peer_interested: false,
                outstanding: HashSet::new(),
                their_requests: VecDeque::new(),
                upload_waiter: None,
                down: RateWindow::default(),
                up: RateWindow::default(),
                downloaded: 0,
                uploaded: 0,
                last_heard: Instant::now(),
                strikes: 0,
            },
        );
        self.emit(Event::Connected { id, addr, client });
        let fast = self.peers.get(&id).is_some_and(|p| p.fast);
        if fast && self.picker.is_complete() {
            self.send(id, Message::HaveAll);
        } else if fast && self.picker.have_count() == 0 {
            self.send(id, Message::HaveNone);
        } else if self.picker.have_count() > 0 {
            let mut bits = self.picker.have().clone();
            bits.set_uninitialized(false);
            let bytes = bytes::Bytes::from(bits.into_vec());
            self.send(id, Message::Bitfield(bytes));
        }
        if self.peers.get(&id).is_some_and(|p| p.extensions) {
            let mut extensions = std::collections::HashMap::new();
            // BEP 27: private torrents get their peers from their trackers only.
            if self.pex_allowed() {
                extensions.insert("ut_pex".to_owned(), UT_PEX);
            }
            let ours = ExtensionHandshake {
                client: Some(format!("swarmfs {}", env!("CARGO_PKG_VERSION"))),
                port: self.listen.map(|a| a.port()),
                reqq: Some(MAX_QUEUED_REQUESTS as u32),
                extensions,
            };
            self.send(
                id,
                Message::Extended {
                    id: 0,
                    payload: ours.encode().into(),
                },
            );
        }
    }

    /// Queues a message for a peer; a peer whose queue is full is dropped.
    fn send(&mut self, id: PeerId, message: Message) {
        if let Some(peer) = self.peers.get(&id) {
            // A closed queue means the peer's tasks already ended; their
            // own reason is on its way and is the one worth reporting.
            if let Err(mpsc::error::TrySendError::Full(_)) = peer.control.try_send(message) {
                self.doomed.push((id, "not reading its messages".into()));
            }
        }
    }

    async fn drop_doomed(&mut self) {
        while let Some((id, reason)) = self.doomed.pop() {
            self.disconnect(id, reason).await;
        }
    }

    async fn disconnect(&mut self, id: PeerId, reason: String) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        peer.cancel.cancel();
        // Not straight back: a user's disconnect should hold, and a peer
        // that hung up should not be hammered.
        if let Some(k) = self.known.get_mut(&peer.addr) {
            k.next_attempt = Instant::now() + REDIAL_DELAY;
        }
        self.picker.remove_peer(id, &peer.pieces);
        self.keeper.forget_peer(id);
        info!(self.log, "peer disconnected"; "id" => id, "addr" => peer.addr, "reason" => &reason);
        self.emit(Event::Disconnected {
            id,
            addr: peer.addr,
            reason,
        });
        // Blocks it left half-fetched can go to others now.
        for other in self.peers.keys().copied().collect::<Vec<_>>() {
            self.fill_requests(other).await;
        }
    }

    async fn peer_input(&mut self, FromPeer { id, input }: FromPeer) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return; // already disconnected
        };
        peer.last_heard = Instant::now();
        match input {
            PeerInput::Message(message) => self.message(id, message).await,
            PeerInput::BlockWritten(block) => {
                self.writes_work().await;
                self.block_arrived(id, block).await
            }
            PeerInput::BlockStaged(block) => self.block_arrived(id, block).await,
            PeerInput::BlockDiscarded(block) => {
                if peer.outstanding.remove(&block) {
                    self.picker.withdraw(id, block);
                }
                self.fill_requests(id).await;
            }
            PeerInput::WriteFailed(block, error) => {
                peer.outstanding.remove(&block);
                self.picker.withdraw(id, block);
                self.write_failed(block.piece, error);
            }
            PeerInput::UploadSlot(reply) => {
                peer.upload_waiter = Some(reply);
                self.serve(id);
            }
            PeerInput::Uploaded(bytes) => {
                peer.uploaded += bytes;
                peer.up.add(bytes);
                self.uploaded += bytes;
                self.up_total.add(bytes);
            }
            PeerInput::Closed(reason) => self.disconnect(id, reason).await,
        }
    }

    async fn message(&mut self, id: PeerId, message: Message) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        slog::trace!(self.log, "received"; "peer" => id, "message" => message.name());
        let fast_message = matches!(
            message,
            Message::HaveAll
                | Message::HaveNone
                | Message::Reject(_)
                | Message::AllowedFast(_)
                | Message::Suggest(_)
        );
        if fast_message && !peer.fast {
            let reason = format!(
                "protocol error: {} without the fast extension",
                message.name()
            );
            self.doomed.push((id, reason));
            return;
        }
        match message {
            Message::HaveAll => {
                let all = Bitfield::repeat(true, self.geometry.piece_count as usize);
                let new: Bitfield = all.clone() & !peer.pieces.clone();
                self.picker.add_peer_pieces(&new);
                peer.pieces = all;
                self.update_interest(id);
                self.fill_requests(id).await;
            }
            Message::HaveNone | Message::Suggest(_) => {}
            Message::Reject(block) => {
                if peer.outstanding.remove(&block) {
                    self.picker.withdraw(id, block);
                    self.keeper.forget(id, block);
                }
                self.fill_requests(id).await;
            }
            Message::AllowedFast(piece) => {
                peer.allowed_fast.set(piece as usize, true);
                self.fill_requests(id).await;
            }
            Message::Extended { id: 0, payload } => {
                // A malformed handshake only means we learn nothing from it.
                if let Ok(theirs) = ExtensionHandshake::decode(&payload) {
                    if let Some(client) = theirs.client {
                        peer.client = client;
                    }
                    peer.reqq = theirs.reqq;
                    peer.listen_port = theirs.port;
                    peer.pex_id = theirs.extensions.get("ut_pex").copied().filter(|&i| i != 0);
                }
            }
            Message::Extended {
                id: UT_PEX,
                payload,
            } if self.config.pex && !self.meta.private => {
                // Rate-limited: a peer may not flood us with addresses.
                let now = Instant::now();
                if peer
                    .pex_taken_at
                    .is_some_and(|t| now.duration_since(t) < self.config.pex_interval / 2)
                {
                    return;
                }
                peer.pex_taken_at = Some(now);
                if let Ok(pex) = Pex::decode(&payload) {
                    let mut new = 0;
                    for addr in pex.added {
                        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                        if Some(addr) != self.listen && !self.known.contains_key(&addr) {
                            self.known.insert(addr, Known::new(now));
                            new += 1;
                        }
                    }
                    if new > 0 {
                        self.emit(Event::Peers { new });
                        self.dial().await;
                    }
                }
            }
            Message::Extended { .. } => {} // extensions we did not offer
            Message::KeepAlive | Message::Port(_) | Message::Unknown { .. } => {}
            Message::Piece { .. } => {} // the disk writer turns these into BlockWritten
            Message::Choke => {
                peer.peer_choking = true;
                let outstanding: Vec<BlockRef> = peer.outstanding.drain().collect();
                self.picker.release(id);
                for block in outstanding {
                    self.keeper.forget(id, block);
                }
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                self.choose_hashing();
                self.fill_requests(id).await;
            }
            Message::Interested => {
                peer.peer_interested = true;
                let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
                if unchoked < self.config.upload_slots + 1 {
                    self.set_choking(id, false);
                }
            }
            Message::NotInterested => peer.peer_interested = false,
            Message::Have(piece) => {
                if !peer.pieces[piece as usize] {
                    peer.pieces.set(piece as usize, true);
                    self.picker.add_peer_piece(piece);
                }
                self.update_interest(id);
                self.fill_requests(id).await;
            }
            Message::Bitfield(bytes) => {
                // BEP 3 wants one, first. Clients send keep-alives or an
                // extension handshake before it, and aria2 sends fresh
                // bitfields instead of runs of haves: each adds its pieces.
                let mut bits = Bitfield::from_vec(bytes.to_vec());
                bits.truncate(self.geometry.piece_count as usize);
                let new: Bitfield = bits.clone() & !peer.pieces.clone();
                self.picker.add_peer_pieces(&new);
                peer.pieces |= bits;
                self.update_interest(id);
                self.fill_requests(id).await;
            }
            Message::Request(block) => {
                if peer.am_choking || !self.picker.have()[block.piece as usize] {
                    // BEP 3 drops such requests silently; BEP 6 says so.
                    if peer.fast {
                        self.send(id, Message::Reject(block));
                    }
                    return;
                }
                if peer.their_requests.len() >= MAX_QUEUED_REQUESTS {
                    self.doomed.push((
                        id,
                        format!("more than {MAX_QUEUED_REQUESTS} queued requests"),
                    ));
                    return;
                }
                if !peer.their_requests.contains(&block) {
                    peer.their_requests.push_back(block);
                }
                self.serve(id);
            }
            Message::Cancel(block) => peer.their_requests.retain(|b| *b != block),
        }
    }

    /// Hands the peer's disk reader its next block, if it is waiting and may have one.
    fn serve(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.am_choking || peer.upload_waiter.is_none() {
            return;
        }
        if peer.their_requests.is_empty() {
            return;
        }
        let take = peer.their_requests.len().min(peer::UPLOAD_BATCH);
        let blocks: Vec<BlockRef> = peer.their_requests.drain(..take).collect();
        if let Some(waiter) = peer.upload_waiter.take() {
            let _ = waiter.send(blocks);
        }
    }

    fn set_choking(&mut self, id: PeerId, choke: bool) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.am_choking == choke {
            return;
        }
        peer.am_choking = choke;
        if choke {
            // A choke discards pending requests: BEP 6 peers are told which.
            let dropped: Vec<BlockRef> = peer.their_requests.drain(..).collect();
            let fast = peer.fast;
            self.send(id, Message::Choke);
            if fast {
                for block in dropped {
                    self.send(id, Message::Reject(block));
                }
            }
        } else {
            self.send(id, Message::Unchoke);
            self.serve(id);
        }
    }

    fn update_interest(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let wanted = !self.picker.is_complete() && self.picker.wants_any(&peer.pieces);
        if wanted != peer.am_interested {
            peer.am_interested = wanted;
            let message = if wanted {
                Message::Interested
            } else {
                Message::NotInterested
            };
            self.send(id, message);
        }
    }

    /// Tops up our requests at a peer that has unchoked us.
    async fn fill_requests(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !peer.am_interested || self.state == State::Stopped {
            return;
        }
        if self.disk_error.as_ref().is_some_and(|e| !e.retrying) {
            return;
        }
        // Enough requests to cover about a second at the peer's recent rate.
        let depth = (peer.down.recent_rate() as usize / crate::wire::MAX_BLOCK as usize
            + MIN_PIPELINE)
            .clamp(MIN_PIPELINE, MAX_PIPELINE)
            .min(peer.reqq.map_or(usize::MAX, |q| q as usize));
        let depth = if self.picker.any_urgent() {
            let sending = self
                .peers
                .values()
                .filter(|p| p.am_interested && !p.peer_choking)
                .count();
            streaming_depth(depth, sending)
        } else {
            depth
        };
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let want = depth.saturating_sub(peer.outstanding.len());
        // Top up once a quarter of the pipeline is free, not after every
        // block: requests then leave in groups, one write for several.
        if want == 0 || (want < depth / 4 && !peer.outstanding.is_empty()) {
            return;
        }
        // While choked, only allowed-fast pieces (BEP 6) may be requested.
        let blocks = if peer.peer_choking {
            let allowed: Bitfield = peer.pieces.clone() & peer.allowed_fast.clone();
            if !allowed.any() {
                return;
            }
            self.picker.pick(id, &allowed, want)
        } else {
            // Borrowed, not cloned: this runs for every block received.
            self.picker.pick(id, &peer.pieces, want)
        };
        for block in blocks {
            // Registered before it is sent, so it cannot arrive unexpected.
            self.keeper.expect(id, block);
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.outstanding.insert(block);
            }
            self.send(id, Message::Request(block));
        }
    }

    /// A write reached the disk: if writes were failing, they work again.
    async fn writes_work(&mut self) {
        if self.disk_error.as_ref().is_some_and(|e| e.retrying) {
            self.disk_error = None;
            info!(self.log, "writes work again");
            self.emit(Event::WritesResumed);
            self.fill_all_requests().await;
        }
    }

    /// A requested block is on disk or staged in memory.
    async fn block_arrived(&mut self, id: PeerId, block: BlockRef) {
        let bytes = block.len as u64;
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.outstanding.remove(&block);
            peer.downloaded += bytes;
            peer.down.add(bytes);
        }
        self.downloaded += bytes;
        self.down_total.add(bytes);
        if let Some(arrival) = self.picker.received(id, block) {
            for other in arrival.cancel {
                if let Some(p) = self.peers.get_mut(&other) {
                    p.outstanding.remove(&block);
                }
                // Its copy, should it still come, is not wanted.
                self.keeper.forget(other, block);
                self.send(other, Message::Cancel(block));
            }
            if arrival.piece_complete {
                self.verify(block.piece);
            }
        }
        self.fill_requests(id).await;
    }

    /// Whether pieces begun from now on wait for a batch hash: only while
    /// someone streams from one sending peer. There the one disk writer
    /// that copies and hashes every block is what the read waits on, and
    /// batches saved a fifth of a streaming read's time. A plain download
    /// was no faster (7% slower with one seeder, the seeder taking 10% more
    /// CPU a GiB; unexplained), and with several peers the pieces held for
    /// batches left too little staging memory for the pieces being
    /// assembled (see docs/performance.md). Called when a read starts, a
    /// peer unchokes us, and a piece is complete.
    fn choose_hashing(&self) {
        if self.batch_hasher.is_none() {
            return;
        }
        let sending = self
            .peers
            .values()
            .filter(|p| p.am_interested && !p.peer_choking)
            .count();
        self.staging
            .hash_in_batches(self.picker.streaming() && sending <= 1);
    }

    fn verify(&self, piece: u32) {
        let storage = self.storage.clone();
        let work = self.work_tx.clone();
        // Taken here, so a piece that fails starts its next round afresh.
        let partial = self.hashers.take(piece);
        let mut staged = self.staging.take(piece);
        let staging = self.staging.clone();
        // Someone streams a file (pieces come in order from where it reads)
        // and will read this piece soon: it stays in memory for the read.
        let keep_for_readers = self.picker.streaming();
        self.choose_hashing();
        if let Some(hasher) = &self.batch_hasher {
            if let Some(whole) = staged.take_if(|s| s.partial.hashed == 0) {
                let unhashed = Unhashed {
                    piece,
                    buffer: whole.buffer,
                    for_readers: keep_for_readers,
                };
                // Nothing requested is still on its way (the download's last
                // piece): its batch is hashed now, not held for company.
                let more_coming = self.peers.values().any(|p| !p.outstanding.is_empty());
                let queued = if more_coming {
                    hasher.hash(unhashed)
                } else {
                    hasher.hash_last(unhashed)
                };
                match queued {
                    Ok(()) => return,
                    // Shutting down: hashed here then.
                    Err(back) => {
                        staged = Some(StagedPiece {
                            buffer: back.buffer,
                            partial: Partial::nothing(),
                        })
                    }
                }
            }
        }
        tokio::task::spawn_blocking(move || {
            let verdict = match staged {
                Some(StagedPiece { buffer, partial }) => {
                    let matches = storage.staged_hash_matches(piece, partial, &buffer);
                    finish_staged(&storage, &staging, piece, buffer, matches, keep_for_readers)
                }
                None => match storage.verify_rest(piece, partial) {
                    Ok(true) => Verdict::Good,
                    Ok(false) => Verdict::Bad,
                    Err(e) => Verdict::ReadFailed(e.to_string()),
                },
            };
            let _ = work.blocking_send(Work::Verified { piece, verdict });
        });
    }

    async fn verified(&mut self, piece: u32, verdict: Verdict) {
        match verdict {
            Verdict::WriteFailed { error, buffer } => {
                // Verified bytes are not thrown away for the disk's fault:
                // the piece waits, whole, for the next retry of writes.
                self.unwritten.insert(piece, buffer);
                self.write_failed(piece, error);
            }
            Verdict::Good => {
                // A staged piece was just written: proof the disk takes writes.
                self.writes_work().await;
                self.picker.verified(piece);
                self.have_set.insert(piece);
                self.resume_dirty = true;
                self.emit(Event::Piece(piece));
                let ids: Vec<PeerId> = self.peers.keys().copied().collect();
                for &id in &ids {
                    let has = self
                        .peers
                        .get(&id)
                        .is_some_and(|p| p.pieces[piece as usize]);
                    if !has {
                        self.send(id, Message::Have(piece));
                    }
                    self.update_interest(id);
                }
                if self.picker.is_complete() && self.state == State::Downloading {
                    info!(self.log, "download complete");
                    // Nothing more to assemble: the pooled buffers go back,
                    // and the kept pieces a streaming reader is done with.
                    // The rest it reads from memory still, if it goes on
                    // reading: read back from the device they would cost
                    // a reader that lags behind the last pieces their time.
                    self.staging.release_pool();
                    self.storage.forget_kept_pieces(KeptPieces::Read);
                    self.forget_kept_pieces_unless_read();
                    self.state = State::Seeding;
                    self.emit(Event::Done);
                    self.tell_tracker(Some(AnnounceEvent::Completed));
                    self.save_resume();
                }
            }
            Verdict::Bad => {
                self.staging.reopen(piece);
                let senders = self.picker.failed(piece);
                warn!(self.log, "piece failed its hash check"; "piece" => piece, "senders" => format!("{senders:?}"));
                let sole = senders.len() == 1;
                for id in senders {
                    self.emit(Event::HashFail { piece, peer: id });
                    let strikes = self.peers.get_mut(&id).map(|p| {
                        p.strikes += 1;
                        p.strikes
                    });
                    if sole || strikes.is_some_and(|s| s >= MAX_STRIKES) {
                        self.ban(id, format!("sent corrupt data for piece {piece}"))
                            .await;
                    }
                }
                for id in self.peers.keys().copied().collect::<Vec<_>>() {
                    self.fill_requests(id).await;
                }
            }
            Verdict::ReadFailed(e) => {
                self.staging.reopen(piece);
                self.picker.failed(piece);
                self.emit(Event::Error(format!("verifying piece {piece}: {e}")));
            }
        }
    }

    async fn ban(&mut self, id: PeerId, reason: String) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let addr = peer.addr;
        self.banned_ids.insert(peer.peer_id);
        self.banned.insert(
            addr,
            Ban {
                until: Instant::now() + BAN_TIME,
                reason: reason.clone(),
            },
        );
        warn!(self.log, "peer banned"; "addr" => addr, "reason" => &reason);
        self.emit(Event::Banned {
            addr,
            reason: reason.clone(),
        });
        self.disconnect(id, format!("banned: {reason}")).await;
    }

    fn choke_round(&mut self) {
        if self.state == State::Stopped {
            return;
        }
        let seeding = self.picker.is_complete();
        let candidates: Vec<Candidate> = self
            .peers
            .iter()
            .map(|(&id, p)| Candidate {
                id,
                interested: p.peer_interested,
                rate: if seeding { p.up.rate() } else { p.down.rate() },
            })
            .collect();
        let unchoke = self.choker.round(
            &candidates,
            self.config.upload_slots,
            std::time::Instant::now(),
        );
        for id in self.peers.keys().copied().collect::<Vec<_>>() {
            self.set_choking(id, !unchoke.contains(&id));
        }
    }

    async fn each_second(&mut self) {
        let now = Instant::now();
        self.down_total.tick();
        self.up_total.tick();
        let mut silent = Vec::new();
        for (&id, peer) in self.peers.iter_mut() {
            peer.down.tick();
            peer.up.tick();
            if now.duration_since(peer.last_heard) > self.config.silence_limit {
                silent.push(id);
            }
        }
        for id in silent {
            let limit = self.config.silence_limit.as_secs();
            self.disconnect(id, format!("silent for {limit} s")).await;
        }
        self.banned.retain(|_, ban| ban.until > now);
        if self
            .last_read
            .is_some_and(|t| now.duration_since(t) >= STREAM_IDLE)
        {
            self.last_read = None;
            self.picker.stop_streaming();
        }
        if self.state != State::Downloading || !self.picker.streaming() {
            self.forget_kept_pieces_unless_read();
        }
        if self.pex_allowed() {
            self.send_pex(now);
        }
        if self
            .disk_error
            .as_ref()
            .is_some_and(|e| !e.retrying && now.duration_since(e.since) >= self.config.disk_retry)
        {
            self.retry_disk().await;
        }
        self.update_progress();
        self.dial().await;
        if self.resume_dirty && now.duration_since(self.last_save) >= RESUME_INTERVAL {
            self.save_resume();
        }
    }

    /// BEP 27: private torrents get their peers from their trackers only.
    fn pex_allowed(&self) -> bool {
        self.config.pex && !self.meta.private
    }

    /// Tells each peer that speaks `ut_pex`, and is due a message, which
    /// peers joined and left since our last message to it. Only addresses
    /// peers listen on are shared: those we dialled, and incoming peers that
    /// told us their port.
    fn send_pex(&mut self, now: Instant) {
        let listening: BTreeSet<SocketAddr> = self
            .peers
            .values()
            .filter_map(|p| {
                if p.outgoing {
                    Some(p.addr)
                } else {
                    p.listen_port.map(|port| SocketAddr::new(p.addr.ip(), port))
                }
            })
            .collect();
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let Some(pex_id) = peer.pex_id else {
                continue;
            };
            if peer
                .pex_sent_at
                .is_some_and(|t| now.duration_since(t) < self.config.pex_interval)
            {
                continue;
            }
            let own = if peer.outgoing {
                Some(peer.addr)
            } else {
                peer.listen_port
                    .map(|port| SocketAddr::new(peer.addr.ip(), port))
            };
            let current: BTreeSet<SocketAddr> = listening
                .iter()
                .filter(|a| Some(**a) != own)
                .copied()
                .collect();
            let added: Vec<SocketAddr> = current
                .difference(&peer.pex_sent)
                .take(MAX_PEX_PEERS)
                .copied()
                .collect();
            let dropped: Vec<SocketAddr> = peer
                .pex_sent
                .difference(&current)
                .take(MAX_PEX_PEERS)
                .copied()
                .collect();
            if added.is_empty() && dropped.is_empty() {
                continue;
            }
            peer.pex_sent_at = Some(now);
            for a in &added {
                peer.pex_sent.insert(*a);
            }
            for d in &dropped {
                peer.pex_sent.remove(d);
            }
            let payload = Pex { added, dropped }.encode();
            self.send(
                id,
                Message::Extended {
                    id: pex_id,
                    payload: payload.into(),
                },
            );
        }
    }

    /// Writes the resume file in the background (one write at a time).
    fn save_resume(&mut self) {
        if self.saving || self.state == State::Checking {
            return;
        }
        self.saving = true;
        self.resume_dirty = false;
        self.last_save = Instant::now();
        let (storage, meta, path) = (
            self.storage.clone(),
            self.meta.clone(),
            self.resume_path.clone(),
        );
        // The snapshot is taken now, before the data sync inside `record`.
        let have = self.picker.have().clone();
        let work = self.work_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = resume::record(&storage, &meta, &have, &path).map_err(|e| e.to_string());
            let _ = work.blocking_send(Work::Saved(result));
        });
    }

    async fn shutdown(mut self) {
        self.stop_tracker().await;
        for id in self.peers.keys().copied().collect::<Vec<_>>() {
            self.disconnect(id, "shutting down".into()).await;
        }
        self.cancel.cancel();
        // Wait for a background resume write, then write the final one.
        while self.saving {
            match self.work_rx.recv().await {
                Some(Work::Saved(_)) | None => self.saving = false,
                Some(_) => {}
            }
        }
        if self.state != State::Checking {
            let (storage, meta, path) = (
                self.storage.clone(),
                self.meta.clone(),
                self.resume_path.clone(),
            );
            let have = self.picker.have().clone();
            let saved =
                tokio::task::spawn_blocking(move || resume::record(&storage, &meta, &have, &path))
                    .await;
            match saved {
                Ok(Ok(())) => {
                    debug!(self.log, "resume file written"; "path" => self.resume_path.display().to_string())
                }
                Ok(Err(e)) => warn!(self.log, "resume file not written"; "error" => e.to_string()),
                Err(e) => warn!(self.log, "resume file not written"; "error" => e.to_string()),
            }
        }
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(2), self.tasks.wait())
            .await
            .is_err()
        {
            warn!(self.log, "tasks still running at shutdown"; "count" => self.tasks.len());
        }
        debug!(self.log, "engine stopped");
        self.emit(Event::Stopped);
        if let Some(reply) = self.quit.take() {
            let _ = reply.send(());
        }
    }
}

impl Known {
    fn new(now: Instant) -> Known {
        Known {
            next_attempt: now,
            failures: 0,
            is_self: false,
        }
    }
}

/// Two peers that dial each other at once end up with two connections, and
/// each must keep the same one, or each drops the one the other kept: both
/// keep the connection opened by the side with the lower peer id. Does a new
/// connection (`new_outgoing`: we dialled it) replace the existing one?
fn replaces_existing(
    ours: &[u8; 20],
    theirs: &[u8; 20],
    new_outgoing: bool,
    old_outgoing: bool,
) -> bool {
    let keep_outgoing = ours < theirs;
    new_outgoing == keep_outgoing && old_outgoing != keep_outgoing
}

async fn accept_loop(
    listener: TcpListener,
    ours: Handshake,
    conn_tx: mpsc::Sender<Connection>,
    events: broadcast::Sender<Event>,
    cancel: CancellationToken,
) {
    let handshaking = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKING));
    let per_ip: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut refusals = RefusalNotices::default();
    loop {
        let (mut stream, addr) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                // A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d.
                Ok((s, a)) => (s, SocketAddr::new(a.ip().to_canonical(), a.port())),
                // Out of file descriptors and the like: pause rather than spin.
                Err(_) => { tokio::time::sleep(Duration::from_millis(100)).await; continue; }
            },
        };
        let slot = HandshakeSlot::take(&handshaking, &per_ip, addr.ip());
        let Some(slot) = slot else {
            drop(stream);
            if let Some(quiet) = refusals.due(Instant::now()) {
                let _ = events.send(Event::Refused {
                    addr,
                    reason: format!(
                        "too many handshakes under way ({MAX_HANDSHAKING}, \
                         {MAX_HANDSHAKING_PER_IP} from one address; and {quiet} more refused)"
                    ),
                });
            }
            continue;
        };
        let ours = ours.clone();
        let conn_tx = conn_tx.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let shaken = tokio::select! {
                _ = cancel.cancelled() => return,
                r = tokio::time::timeout(
                    INCOMING_HANDSHAKE_TIMEOUT,
                    peer::answer_handshake(&mut stream, &ours),
                ) => r,
            };
            drop(slot);
            if let Ok(Ok(theirs)) = shaken {
                let _ = conn_tx
                    .send(Connection::Established {
                        stream,
                        addr,
                        theirs,
                        outgoing: false,
                    })
                    .await;
            }
        });
    }
}

/// A place among the incoming connections still handshaking: one of
/// [`MAX_HANDSHAKING`] and one of its address's [`MAX_HANDSHAKING_PER_IP`],
/// both given back on drop.
struct HandshakeSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    per_ip: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl HandshakeSlot {
    fn take(
        all: &Arc<tokio::sync::Semaphore>,
        per_ip: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
    ) -> Option<HandshakeSlot> {
        let permit = all.clone().try_acquire_owned().ok()?;
        let mut counts = per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= MAX_HANDSHAKING_PER_IP {
            return None;
        }
        *count += 1;
        Some(HandshakeSlot {
            _permit: permit,
            per_ip: per_ip.clone(),
            ip,
        })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut counts = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// At most one `refused` event a second: a flood of connections must not
/// become a flood of events. Counts the refusals it kept quiet.
#[derive(Default)]
struct RefusalNotices {
    last: Option<Instant>,
    quiet: u64,
}

impl RefusalNotices {
    /// `Some(refusals kept quiet since the last notice)` when one is due.
    fn due(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.quiet += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.quiet))
    }
}

/// Bytes per second over the last [`RateWindow::SECONDS`] seconds.
#[derive(Debug, Default, Clone)]
pub struct RateWindow {
    buckets: [u64; RateWindow::SECONDS],
    current: usize,
}

impl RateWindow {
    pub const SECONDS: usize = 10;

    pub fn add(&mut self, bytes: u64) {
        self.buckets[self.current] += bytes;
    }

    /// Starts a new second.
    pub fn tick(&mut self) {
        self.current = (self.current + 1) % Self::SECONDS;
        self.buckets[self.current] = 0;
    }

    pub fn rate(&self) -> u64 {
        self.buckets.iter().sum::<u64>() / Self::SECONDS as u64
    }

    /// The rate over the last two seconds, for quick reactions.
    pub fn recent_rate(&self) -> u64 {
        let previous = (self.current + Self::SECONDS - 1) % Self::SECONDS;
        (self.buckets[self.current] + self.buckets[previous]) / 2
    }
}

/// Requests to keep outstanding at each of `sending` peers while a read
/// waits, for a peer whose own pipeline would be `depth`: several peers
/// share [`STREAMING_IN_FLIGHT`]. A peer sending alone keeps `depth`: it
/// serves its requests in order, so its pieces arrive in the order the
/// reader reads them whatever the depth, and capping it only left both
/// ends idle (1 GiB from one seeder: 0.83 of the plain download's speed
/// with the cap, 0.90 without, over 10 pairs).
fn streaming_depth(depth: usize, sending: usize) -> usize {
    if sending <= 1 {
        return depth;
    }
    depth.min((STREAMING_IN_FLIGHT / crate::wire::MAX_BLOCK as usize / sending).max(MIN_PIPELINE))
}

#[cfg(test)]
mod tests {
    use super::{
        replaces_existing, streaming_depth, write_verified, Verdict, MIN_PIPELINE,
        STREAMING_IN_FLIGHT,
    };
    use crate::metainfo::create::{create, CreateOptions};
    use crate::storage::{OpenMode, Put, StagedPieces, Storage};
    use crate::wire::MAX_BLOCK;

    #[test]
    fn a_failed_write_for_a_reader_hands_the_whole_piece_back_and_keeps_nothing() {
        // A torrent of one 48 KiB file in 16 KiB pieces, opened read-only:
        // every write fails.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("content");
        let bytes: Vec<u8> = (0..3 * 16384u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let options = CreateOptions {
            piece_length: Some(16384),
            ..CreateOptions::default()
        };
        let meta = create(&file, &options, &|_, _| {}).unwrap().meta;
        let storage = Storage::open(&meta, dir.path(), OpenMode::ReadOnly).unwrap();
        let staging = StagedPieces::new(1 << 20);
        let piece = &bytes[16384..2 * 16384];
        assert_eq!(staging.put(1, 16384, 0, piece), Put::Staged);
        let buffer = staging.take(1).unwrap().buffer;
        let counted = staging.bytes();
        match write_verified(&storage, &staging, 1, buffer, true) {
            Verdict::WriteFailed { buffer, .. } => assert!(buffer[..] == piece[..]),
            _ => panic!("a write to read-only data succeeded"),
        }
        assert!(
            storage.kept_file_slice(0, 16384, 100).is_none(),
            "no read finds a piece that is not on disk"
        );
        assert_eq!(staging.bytes(), counted, "still staging's, for the retry");
    }

    #[test]
    fn peers_streaming_share_a_budget_of_requests() {
        let full = 1000;
        for sending in 2..=8 {
            let bytes = streaming_depth(full, sending) * sending * MAX_BLOCK as usize;
            assert!(bytes <= STREAMING_IN_FLIGHT, "{sending} peers: {bytes}");
            assert!(bytes > STREAMING_IN_FLIGHT - sending * MAX_BLOCK as usize);
        }
        // Among many peers, each still keeps a pipeline worth the name.
        assert_eq!(streaming_depth(full, 1000), MIN_PIPELINE);
        // A share never raises a peer's own, smaller, pipeline.
        assert_eq!(streaming_depth(MIN_PIPELINE, 2), MIN_PIPELINE);
    }

    #[test]
    fn a_peer_streaming_alone_keeps_its_pipeline() {
        for depth in [MIN_PIPELINE, 600, 1000] {
            assert_eq!(streaming_depth(depth, 1), depth);
            // Nobody else unchoked us: the peer asking is the one sending.
            assert_eq!(streaming_depth(depth, 0), depth);
        }
    }

    #[test]
    fn both_ends_keep_the_same_of_two_simultaneous_connections() {
        let (low, high) = ([1u8; 20], [2u8; 20]);
        // Connection X is dialled by `low`, Y by `high`; either may arrive
        // second at either end. Each end's kept connection after both arrive:
        for x_first_at_low in [true, false] {
            for x_first_at_high in [true, false] {
                // At `low`, X is outgoing and Y incoming.
                let low_keeps_x = if x_first_at_low {
                    !replaces_existing(&low, &high, false, true) // Y arrives second
                } else {
                    replaces_existing(&low, &high, true, false) // X arrives second
                };
                // At `high`, X is incoming and Y outgoing.
                let high_keeps_x = if x_first_at_high {
                    !replaces_existing(&high, &low, true, false)
                } else {
                    replaces_existing(&high, &low, false, true)
                };
                assert_eq!(
                    low_keeps_x, high_keeps_x,
                    "{x_first_at_low} {x_first_at_high}"
                );
                assert!(low_keeps_x, "the lower id's connection is the one kept");
            }
        }
        // A second connection in the same direction never replaces the first.
        assert!(!replaces_existing(&low, &high, true, true));
        assert!(!replaces_existing(&low, &high, false, false));
    }
}
