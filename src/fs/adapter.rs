//! The fuser `Filesystem` over the engine.
//!
//! The FUSE threads never wait on the engine: anything that needs an answer
//! from it (stats, peer lists) or must wait (an `event` read, a `files/` read
//! of pieces not yet verified) hands its reply object to a task on the
//! engine's runtime, which answers later. Parked readers are polled every
//! [`INTERRUPT_POLL`] for a pending signal (fuser does not pass FUSE
//! interrupts on; see `../shared/fuse-notes.md`), and all are answered when
//! the filesystem shuts down.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    WriteFlags,
};
use slog::{debug, info, Logger};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::ctl::{self, CtlCommand, PeerAddress};
use super::render;
use super::tree::{self, FileTree, NodeKind, PeerNode};
use crate::engine::{Command, EngineHandle, Event, PeerId, PeerSelector, PieceSet};
use crate::metainfo::Metainfo;
use crate::storage::Storage;

/// Attributes of fixed nodes may be cached this long.
const TTL: Duration = Duration::from_secs(1);
/// How often a parked reader is checked for a fatal signal.
pub const INTERRUPT_POLL: Duration = Duration::from_millis(100);
/// A `files/` read pulls forward, in order, the missing pieces this far
/// past it, so a reader going through a file finds them there instead of
/// waiting on each (streaming): twice what the engine keeps in flight at
/// one fast peer, so the window is refilled before it runs dry.
pub const READ_AHEAD_BYTES: u64 = 32 << 20;
/// ...and at least this many pieces, for torrents with big pieces.
pub const READ_AHEAD_MIN_PIECES: u32 = 4;

/// The I/O size `files/` entries ask for (`st_blksize`): the most one FUSE
/// read carries (256 pages). A file opened while it downloads is read
/// with direct I/O, a round trip through swarmfs for every read, and
/// `cat`, `cp`, stdio and Python size their reads by this.
pub const CONTENT_BLKSIZE: u32 = 1 << 20;

/// The pieces past a read's last piece that it pulls forward.
pub fn read_ahead_pieces(piece_length: u64) -> u32 {
    ((READ_AHEAD_BYTES / piece_length.max(1)).min(u32::MAX as u64) as u32)
        .max(READ_AHEAD_MIN_PIECES)
}

/// The missing pieces, in order, among those a read of pieces
/// `first..=last` needs and the `ahead` after them (up to `count`).
pub fn pieces_to_pull(
    has: impl Fn(u32) -> bool,
    first: u32,
    last: u32,
    ahead: u32,
    count: u32,
) -> Vec<u32> {
    let end = last.saturating_add(1).saturating_add(ahead).min(count);
    (first..end).filter(|&p| !has(p)).collect()
}

/// How far past a read that missed the pieces kept in memory the data
/// file is read ahead (verified pieces only)...
pub const PREFETCH_BYTES: u64 = 16 << 20;
/// ...asked again each time a read crosses a multiple of this, not on
/// every read (each asking walks the page cache over the whole range).
pub const PREFETCH_STEP: u64 = 4 << 20;

/// The bytes of a file (`start` its offset in the torrent, `length` its
/// size) to read ahead after a read that ends at `end` (an offset in the
/// file): the runs of verified pieces among the next [`PREFETCH_BYTES`].
/// Missing pieces are skipped, never read ahead (the page cache would hold
/// their hole), but the verified ones past them are: a file that was
/// downloading before anyone read it holds pieces scattered by
/// rarest-first, and a reader that read each of those from the device
/// only when it got there fell behind the download, then read the pieces
/// the download let go behind it from the device too.
pub fn verified_after(
    has: impl Fn(u32) -> bool,
    start: u64,
    length: u64,
    end: u64,
    piece_length: u64,
) -> Vec<std::ops::Range<u64>> {
    let piece_length = piece_length.max(1);
    let limit = end.saturating_add(PREFETCH_BYTES).min(length);
    let mut runs: Vec<std::ops::Range<u64>> = Vec::new();
    let mut at = end;
    while at < limit {
        let piece = (start + at) / piece_length;
        let next = ((piece + 1) * piece_length - start).min(limit);
        if has(piece as u32) {
            match runs.last_mut() {
                Some(run) if run.end == at => run.end = next,
                _ => runs.push(at..next),
            }
        }
        at = next;
    }
    runs
}

thread_local! {
    /// A FUSE thread's buffer for the `files/` reads it answers at once:
    /// reused, so no allocation and no zeroing of every byte read.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What an open file handle reads from.
enum Open {
    /// Content generated at open (stats, peers/list, ...).
    Snapshot(Arc<Vec<u8>>),
    /// An `event` stream.
    Events(Arc<tokio::sync::Mutex<EventStream>>),
    /// `ctl`, `peers/ID/ctl`: nothing kept per handle.
    Plain,
    /// A `files/` entry read through our read handler: through the page
    /// cache (kept between opens), or direct I/O if opened while downloading.
    Cached(u64),
    /// A complete `files/` entry whose reads the kernel passes straight to
    /// the data file (FUSE passthrough); the id lives while handles use it.
    Passthrough { _backing: Arc<BackingId> },
}

struct EventStream {
    pending: Vec<u8>,
    events: broadcast::Receiver<Event>,
}

/// A torrent file: its index, length, and start in the torrent's bytes.
#[derive(Clone, Copy)]
struct FileSpan {
    index: usize,
    length: u64,
    start: u64,
}

/// Asks the supervisor to unmount (the `quit` command).
pub type QuitSender = std::sync::mpsc::Sender<()>;

pub struct SwarmFs {
    engine: EngineHandle,
    meta: Arc<Metainfo>,
    tree: FileTree,
    /// Read-only handles on the data files, for `files/`.
    data: Arc<Storage>,
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
    /// Open handles, shared with the tasks that answer opens.
    handles: Arc<Mutex<HashMap<u64, Open>>>,
    /// Whether the kernel granted FUSE passthrough (and we may use it).
    passthrough: AtomicBool,
    /// Passthrough ids by inode: every open of an inode must share one.
    backing: Mutex<HashMap<u64, Weak<BackingId>>>,
    log: Logger,
    next_handle: AtomicU64,
    /// Connected peers, kept current from the event stream.
    peers: Arc<Mutex<BTreeSet<PeerId>>>,
    /// The first piece of the last `files/` read that found its pieces
    /// there and looked ahead: one look a piece, not one a 128 KiB read.
    looked_ahead_from: AtomicU32,
    shutdown: CancellationToken,
    quit: QuitSender,
}

impl SwarmFs {
    pub fn new(
        engine: EngineHandle,
        meta: Arc<Metainfo>,
        data: Arc<Storage>,
        shutdown: CancellationToken,
        quit: QuitSender,
        log: Logger,
    ) -> SwarmFs {
        let peers: Arc<Mutex<BTreeSet<PeerId>>> = Arc::default();
        // Follow connects and disconnects so lookups need not ask the engine.
        let mut events = engine.subscribe();
        let (known, handle) = (peers.clone(), engine.clone());
        let stop = shutdown.clone();
        engine.runtime().spawn(async move {
            if let Some(list) = handle.peers().await {
                lock(&known).extend(list.iter().map(|p| p.id));
            }
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = events.recv() => e,
                };
                match event {
                    Ok(Event::Connected { id, .. }) => {
                        lock(&known).insert(id);
                    }
                    Ok(Event::Disconnected { id, .. }) => {
                        lock(&known).remove(&id);
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(list) = handle.peers().await {
                            *lock(&known) = list.iter().map(|p| p.id).collect();
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        SwarmFs {
            tree: FileTree::new(&meta),
            engine,
            meta,
            data,
            // SAFETY: getuid/getgid cannot fail.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
            mounted_at: SystemTime::now(),
            passthrough: AtomicBool::new(false),
            log,
            backing: Mutex::default(),
            handles: Arc::default(),
            next_handle: AtomicU64::new(1),
            peers,
            looked_ahead_from: AtomicU32::new(u32::MAX),
            shutdown,
            quit,
        }
    }

    fn attr(&self, ino: u64, kind: FileType, perm: u16, size: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    fn dir(&self, ino: u64) -> FileAttr {
        self.attr(ino, FileType::Directory, 0o555, 0)
    }

    /// Attributes of any node that exists now.
    fn attr_of(&self, ino: u64) -> Option<FileAttr> {
        let file = |perm| Some(self.attr(ino, FileType::RegularFile, perm, 0));
        match ino {
            tree::ROOT | tree::PEERS => Some(self.dir(ino)),
            tree::CTL => file(0o600),
            tree::EVENT | tree::STATS | tree::PEERS_LIST | tree::PEERS_BAD => file(0o444),
            tree::PIECES => Some(self.attr(
                ino,
                FileType::RegularFile,
                0o444,
                self.meta.piece_count() as u64 + 1,
            )),
            _ => {
                if let Some(index) = self.tree.index(ino) {
                    return Some(match &self.tree.node(index).kind {
                        NodeKind::Dir(_) => self.dir(ino),
                        NodeKind::File { length, .. } => FileAttr {
                            blksize: CONTENT_BLKSIZE,
                            ..self.attr(ino, FileType::RegularFile, 0o444, *length)
                        },
                    });
                }
                let (id, node) = tree::peer_of(ino)?;
                if !lock(&self.peers).contains(&id) {
                    return None;
                }
                Some(match node {
                    PeerNode::Dir => self.dir(ino),
                    PeerNode::Ctl => self.attr(ino, FileType::RegularFile, 0o200, 0),
                    PeerNode::State => self.attr(ino, FileType::RegularFile, 0o444, 0),
                })
            }
        }
    }

    /// Fixed nodes and file contents keep their attributes; peers come and go.
    fn ttl_of(ino: u64) -> Duration {
        if tree::peer_of(ino).is_some() {
            Duration::ZERO
        } else {
            TTL
        }
    }

    fn child(&self, parent: u64, name: &str) -> Option<u64> {
        match parent {
            tree::ROOT => match name {
                "ctl" => Some(tree::CTL),
                "event" => Some(tree::EVENT),
                "stats" => Some(tree::STATS),
                "pieces" => Some(tree::PIECES),
                "peers" => Some(tree::PEERS),
                "files" => Some(tree::FILES),
                _ => None,
            },
            tree::PEERS => match name {
                "list" => Some(tree::PEERS_LIST),
                "bad" => Some(tree::PEERS_BAD),
                _ => {
                    let id: PeerId = name.parse().ok()?;
                    lock(&self.peers)
                        .contains(&id)
                        .then(|| tree::peer_ino(id, PeerNode::Dir))
                }
            },
            _ => {
                if let Some(index) = self.tree.index(parent) {
                    return self.tree.child(index, name).map(FileTree::ino);
                }
                match tree::peer_of(parent)? {
                    (id, PeerNode::Dir) => match name {
                        "ctl" => Some(tree::peer_ino(id, PeerNode::Ctl)),
                        "state" => Some(tree::peer_ino(id, PeerNode::State)),
                        _ => None,
                    },
                    _ => None,
                }
            }
        }
    }

    fn entries(&self, ino: u64) -> Option<Vec<(u64, FileType, String)>> {
        let file = |ino, name: &str| (ino, FileType::RegularFile, name.to_string());
        let dir = |ino, name: &str| (ino, FileType::Directory, name.to_string());
        let mut out = Vec::new();
        match ino {
            tree::ROOT => {
                out.push(dir(tree::ROOT, "."));
                out.push(dir(tree::ROOT, ".."));
                out.push(file(tree::CTL, "ctl"));
                out.push(file(tree::EVENT, "event"));
                out.push(file(tree::STATS, "stats"));
                out.push(file(tree::PIECES, "pieces"));
                out.push(dir(tree::PEERS, "peers"));
                out.push(dir(tree::FILES, "files"));
            }
            tree::PEERS => {
                out.push(dir(tree::PEERS, "."));
                out.push(dir(tree::ROOT, ".."));
                out.push(file(tree::PEERS_LIST, "list"));
                out.push(file(tree::PEERS_BAD, "bad"));
                for id in lock(&self.peers).iter() {
                    out.push(dir(tree::peer_ino(*id, PeerNode::Dir), &id.to_string()));
                }
            }
            _ => {
                if let Some(index) = self.tree.index(ino) {
                    let node = self.tree.node(index);
                    let NodeKind::Dir(children) = &node.kind else {
                        return None;
                    };
                    let parent = if index == 0 {
                        tree::ROOT
                    } else {
                        FileTree::ino(node.parent)
                    };
                    out.push(dir(ino, "."));
                    out.push(dir(parent, ".."));
                    for (name, &child) in children {
                        let kind = match self.tree.node(child).kind {
                            NodeKind::Dir(_) => FileType::Directory,
                            NodeKind::File { .. } => FileType::RegularFile,
                        };
                        out.push((FileTree::ino(child), kind, name.clone()));
                    }
                    return Some(out);
                }
                let (id, PeerNode::Dir) = tree::peer_of(ino)? else {
                    return None;
                };
                if !lock(&self.peers).contains(&id) {
                    return None;
                }
                out.push(dir(ino, "."));
                out.push(dir(tree::PEERS, ".."));
                out.push(file(tree::peer_ino(id, PeerNode::Ctl), "ctl"));
                out.push(file(tree::peer_ino(id, PeerNode::State), "state"));
            }
        }
        Some(out)
    }

    /// Is every piece of `files/` node `ino` verified? (An empty file is.)
    fn file_complete(&self, ino: u64) -> bool {
        let Some(index) = self.tree.index(ino) else {
            return false;
        };
        let NodeKind::File { index: file, .. } = self.tree.node(index).kind else {
            return false;
        };
        let pieces = self.data.layout().pieces_of_file(file);
        self.engine.have().contains_all(pieces)
    }

    /// The passthrough id for a complete `files/` entry, when the kernel
    /// allows passthrough: reads then go from the kernel to the data file
    /// as fast as reading it directly. Not while the inode has cached opens
    /// (the kernel refuses to mix the two), and not when the data file is
    /// longer than the torrent's file (the kernel would read past our end).
    fn backing_for(&self, ino: u64, reply: &ReplyOpen) -> Option<Arc<BackingId>> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let index = self.tree.index(ino)?;
        let NodeKind::File {
            index: file,
            length,
            ..
        } = self.tree.node(index).kind
        else {
            return None;
        };
        if length == 0 || !self.file_complete(ino) {
            return None;
        }
        let mut backing = lock(&self.backing);
        if let Some(id) = backing.get(&ino).and_then(Weak::upgrade) {
            return Some(id);
        }
        let cached = lock(&self.handles)
            .values()
            .any(|o| matches!(o, Open::Cached(i) if *i == ino));
        if cached {
            return None;
        }
        let data_file = self.data.reopen_read_only(file).ok()?;
        if data_file.metadata().ok()?.len() != length {
            return None;
        }
        match reply.open_backing(&data_file) {
            Ok(id) => {
                debug!(self.log, "passthrough"; "file" => self.data.file_path(file).display().to_string());
                let id = Arc::new(id);
                backing.insert(ino, Arc::downgrade(&id));
                Some(id)
            }
            Err(e) => {
                // Not permitted (it needs CAP_SYS_ADMIN) or not supported
                // here: the read handler serves every open from now on.
                info!(self.log, "no FUSE passthrough, files/ reads go through swarmfs"; "why" => e.to_string());
                self.passthrough.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    fn add_handle(&self, open: Open) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, open);
        fh
    }

    /// Opens a generated file: `make` produces its text on the engine's
    /// runtime, and the open is answered then.
    fn open_snapshot<F>(&self, reply: ReplyOpen, make: F)
    where
        F: std::future::Future<Output = Option<String>> + Send + 'static,
    {
        let handles = self.handles.clone();
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.engine.runtime().spawn(async move {
            match make.await {
                Some(text) => {
                    lock(&handles).insert(fh, Open::Snapshot(Arc::new(text.into_bytes())));
                    reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
                }
                None => reply.error(Errno::ENOENT),
            }
        });
    }

    fn apply_ctl(&self, text: &str) -> Result<(), String> {
        let commands = ctl::parse(text)?;
        for command in commands {
            let command = match command {
                CtlCommand::Up(rate) => Command::SetUpLimit(rate),
                CtlCommand::Down(rate) => Command::SetDownLimit(rate),
                CtlCommand::Track => Command::Announce,
                CtlCommand::Connect(PeerAddress::Ip(addr)) => Command::Connect(addr),
                CtlCommand::Connect(PeerAddress::Name { host, port }) => {
                    self.connect_by_name(host, port);
                    continue;
                }
                CtlCommand::Disconnect(who) => Command::Disconnect(who),
                CtlCommand::Stop => Command::Stop,
                CtlCommand::Start => Command::Start,
                CtlCommand::Quit => {
                    let _ = self.quit.send(());
                    continue;
                }
            };
            if !self.engine.try_send(command) {
                return Err("the engine is busy or gone; try again".into());
            }
        }
        Ok(())
    }

    /// Looks `host` up on the engine's runtime, then connects to its first
    /// address; a failure is an `error` event (the write has returned).
    fn connect_by_name(&self, host: String, port: u16) {
        let engine = self.engine.clone();
        self.engine.runtime().spawn(async move {
            let lookup = tokio::net::lookup_host((host.as_str(), port));
            let found = tokio::time::timeout(Duration::from_secs(15), lookup).await;
            match found {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(addr) => {
                        engine.send(Command::Connect(addr)).await;
                    }
                    None => engine.emit(Event::Error(format!("ctl: {host} has no address"))),
                },
                Ok(Err(e)) => engine.emit(Event::Error(format!("ctl: cannot look up {host}: {e}"))),
                Err(_) => engine.emit(Event::Error(format!("ctl: looking up {host} timed out"))),
            }
        });
    }

    /// A `files/` read: from disk at once when its pieces are verified;
    /// otherwise the pieces go to the front of the queue and a task answers
    /// when they arrive.
    fn read_file(&self, file: FileSpan, offset: u64, size: u32, pid: u32, reply: ReplyData) {
        let FileSpan {
            index,
            length,
            start: stream_offset,
        } = file;
        if offset >= length || size == 0 {
            return reply.data(&[]);
        }
        let len = (length - offset).min(size as u64);
        let piece_length = self.meta.piece_length;
        let first = ((stream_offset + offset) / piece_length) as u32;
        let last = ((stream_offset + offset + len - 1) / piece_length) as u32;
        let have = self.engine.have().clone();
        // What to read ahead on disk after this read, once its pieces are
        // here: not the pieces kept in memory, which reads find there.
        let kept = self.data.kept_pieces();
        let read_on = move |have: &PieceSet| {
            if offset / PREFETCH_STEP == (offset + len) / PREFETCH_STEP {
                return Vec::new();
            }
            verified_after(
                |p| have.contains(p) && !kept.contains(p),
                stream_offset,
                length,
                offset + len,
                piece_length,
            )
        };
        let ahead = read_ahead_pieces(piece_length);
        let count = self.meta.piece_count();
        // Streaming: the piece was just verified and is still in memory
        // (perhaps not yet on disk); answer from it without a copy.
        let kept = self.data.kept_file_slice(index, offset, len as usize);
        if kept.is_some() || have.contains_all(first..last + 1) {
            // The window ahead slides with the reader, so the engine fetches
            // its next pieces before they are read.
            // Told even when nothing is missing there: the engine goes on
            // fetching in order from the reader, not rarest first.
            if self.looked_ahead_from.swap(first, Ordering::Relaxed) != first && !have.is_full() {
                let pull = pieces_to_pull(|p| have.contains(p), first, last, ahead, count);
                let _ = self.engine.try_send(Command::Read { piece: first, pull });
            }
            if let Some(kept) = kept {
                return reply.data(&kept);
            }
            // From disk: a reader that fell behind the kept pieces goes on
            // reading there, so read on ahead of it.
            self.data.prefetch(index, read_on(&have));
            return READ_BUF.with_borrow_mut(|buf| {
                if buf.len() < len as usize {
                    buf.resize(len as usize, 0);
                }
                match self
                    .data
                    .read_file_at(index, offset, &mut buf[..len as usize])
                {
                    Ok(n) => reply.data(&buf[..n]),
                    Err(_) => reply.error(Errno::EIO),
                }
            });
        }
        let data = self.data.clone();
        let urgent = pieces_to_pull(|p| have.contains(p), first, last, ahead, count);
        let engine = self.engine.clone();
        let stop = self.shutdown.clone();
        // Subscribe before the request, so no `piece` event, nor a piece
        // kept for readers before it is written, can slip between.
        let mut events = engine.subscribe();
        let mut kept_pieces = self.data.kept_pieces().watch_kept();
        let _ = engine.try_send(Command::Read {
            piece: first,
            pull: urgent,
        });
        self.engine.runtime().spawn(async move {
            let mut poll = interrupt_poll();
            loop {
                if let Some(kept) = data.kept_file_slice(index, offset, len as usize) {
                    return reply.data(&kept);
                }
                if have.contains_all(first..last + 1) {
                    let ahead = read_on(&have);
                    let read = move || -> Result<Vec<u8>, Errno> {
                        data.prefetch(index, ahead);
                        let mut buf = vec![0u8; len as usize];
                        let n = data
                            .read_file_at(index, offset, &mut buf)
                            .map_err(|_| Errno::EIO)?;
                        buf.truncate(n);
                        Ok(buf)
                    };
                    let result = tokio::task::spawn_blocking(read).await;
                    return match result {
                        Ok(Ok(buf)) => reply.data(&buf),
                        Ok(Err(e)) => reply.error(e),
                        Err(_) => reply.error(Errno::EIO),
                    };
                }
                tokio::select! {
                    _ = stop.cancelled() => return reply.error(Errno::EINTR),
                    _ = events.recv() => {}
                    Ok(()) = kept_pieces.changed() => {}
                    _ = poll.tick() => {
                        if signal_pending(pid) {
                            return reply.error(Errno::EINTR);
                        }
                    }
                }
            }
        });
    }
}

/// The ticks at which a parked read looks for a pending signal: the first
/// one [`INTERRUPT_POLL`] from now, not at once (`interval`'s first tick is
/// immediate), so that a read parked for a few milliseconds (a streaming
/// reader's, about 60 times a GiB) does not read `/proc/PID/status` for
/// nothing.
fn interrupt_poll() -> tokio::time::Interval {
    tokio::time::interval_at(tokio::time::Instant::now() + INTERRUPT_POLL, INTERRUPT_POLL)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Should a read parked for process `pid` give up with EINTR? Yes when the
/// process has a signal pending that it neither blocks nor ignores, as an
/// interruptible read would: a fatal signal (the kernel then also marks
/// SIGKILL, mask 0x100) or one it handles (dd's SIGINT, say), whose handler
/// can run only once the read returns. Also yes when the process is gone.
pub fn signal_pending(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = mask("SigPnd:") | mask("ShdPnd:");
    pending & !(mask("SigBlk:") | mask("SigIgn:")) != 0
}

impl Filesystem for SwarmFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Let the kernel read ahead as far as it will: sequential reads of
        // files/ are the common case.
        let _ = config
            .set_max_readahead(u32::MAX)
            .or_else(|max| config.set_max_readahead(max));
        // Passthrough (Linux 6.9+) for complete files; backing files may
        // sit on a stacked filesystem such as overlayfs.
        // Files opened while downloading use direct I/O; Linux 6.6+ lets
        // them be mmap()ed all the same (older kernels refuse MAP_SHARED).
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        if config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.child(parent.0, name).and_then(|ino| self.attr_of(ino)) {
            Some(attr) => reply.entry(&Self::ttl_of(attr.ino.0), &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(ino.0) {
            Some(attr) => reply.attr(&Self::ttl_of(ino.0), &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // `echo cmd > ctl` truncates first: accept that on command files only.
        let command_file =
            ino.0 == tree::CTL || matches!(tree::peer_of(ino.0), Some((_, PeerNode::Ctl)));
        match (self.attr_of(ino.0), size) {
            (Some(attr), Some(0)) if command_file => reply.attr(&Duration::ZERO, &attr),
            (Some(_), _) => reply.error(Errno::EACCES),
            (None, _) => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let ino = ino.0;
        let writing = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        let command_file =
            ino == tree::CTL || matches!(tree::peer_of(ino), Some((_, PeerNode::Ctl)));
        if writing && !command_file {
            return reply.error(Errno::EACCES);
        }
        if self.attr_of(ino).is_none() {
            return reply.error(Errno::ENOENT);
        }
        let engine = self.engine.clone();
        match ino {
            tree::STATS => self.open_snapshot(reply, async move {
                engine.stats().await.map(|s| render::stats(&s))
            }),
            tree::CTL if !writing => self.open_snapshot(reply, async move {
                engine.stats().await.map(|s| render::ctl(&s))
            }),
            tree::PEERS_LIST => self.open_snapshot(reply, async move {
                engine.known().await.map(|a| render::addresses(&a))
            }),
            tree::PEERS_BAD => self.open_snapshot(reply, async move {
                engine.bans().await.map(|b| render::bans(&b))
            }),
            tree::PIECES => {
                let text = self.engine.have().to_bitstring() + "\n";
                let fh = self.add_handle(Open::Snapshot(Arc::new(text.into_bytes())));
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            tree::EVENT => {
                // Subscribe at open, so nothing between the first line and
                // the first read is lost.
                let events = self.engine.subscribe();
                let first = format!("pieces {}\n", self.engine.have().to_bitstring());
                let stream = EventStream {
                    pending: first.into_bytes(),
                    events,
                };
                let fh = self.add_handle(Open::Events(Arc::new(tokio::sync::Mutex::new(stream))));
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            _ => match tree::peer_of(ino) {
                Some((id, PeerNode::State)) => self.open_snapshot(reply, async move {
                    let peers = engine.peers().await?;
                    peers.iter().find(|p| p.id == id).map(render::peer_state)
                }),
                _ => {
                    if self.tree.index(ino).is_none() {
                        let fh = self.add_handle(Open::Plain);
                        return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
                    }
                    if let Some(id) = self.backing_for(ino, &reply) {
                        let fh = self.add_handle(Open::Passthrough {
                            _backing: id.clone(),
                        });
                        return reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id);
                    }
                    // Torrent content never changes once verified, and reads
                    // of unverified ranges wait: the page cache is safe. But
                    // a file still downloading is most likely being streamed,
                    // read once as its pieces arrive: through the page cache
                    // that costs fresh cache pages and a second copy for each
                    // byte, on the CPU the download needs. Direct I/O
                    // answers each read straight into the reader's buffer.
                    let fh = self.add_handle(Open::Cached(ino));
                    let flags = if self.file_complete(ino) {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::FOPEN_DIRECT_IO
                    };
                    reply.opened(FileHandle(fh), flags);
                }
            },
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if let Some(index) = self.tree.index(ino.0) {
            if let NodeKind::File {
                index: file,
                length,
                offset: start,
            } = self.tree.node(index).kind
            {
                let span = FileSpan {
                    index: file,
                    length,
                    start,
                };
                return self.read_file(span, offset, size, req.pid(), reply);
            }
            return reply.error(Errno::EISDIR);
        }
        let open = {
            let table = lock(&self.handles);
            match table.get(&fh.0) {
                Some(Open::Snapshot(bytes)) => Some(Ok(bytes.clone())),
                Some(Open::Events(stream)) => Some(Err(stream.clone())),
                _ => None,
            }
        };
        match open {
            Some(Ok(bytes)) => {
                let start = (offset as usize).min(bytes.len());
                let end = (start + size as usize).min(bytes.len());
                reply.data(&bytes[start..end]);
            }
            Some(Err(stream)) => {
                let stop = self.shutdown.clone();
                let pid = req.pid();
                self.engine
                    .runtime()
                    .spawn(read_events(stream, size as usize, pid, stop, reply));
            }
            None => reply.error(Errno::EBADF),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let text = match std::str::from_utf8(data) {
            Ok(t) => t,
            Err(_) => {
                self.engine.emit(Event::Error("ctl: not UTF-8 text".into()));
                return reply.error(Errno::EINVAL);
            }
        };
        let result = match tree::peer_of(ino.0) {
            Some((id, PeerNode::Ctl)) => match text.trim() {
                "disconnect" => {
                    if self
                        .engine
                        .try_send(Command::Disconnect(PeerSelector::Id(id)))
                    {
                        Ok(())
                    } else {
                        Err("the engine is busy or gone; try again".to_string())
                    }
                }
                other => Err(format!(
                    "peer {id}: unknown command {other:?} (only: disconnect)"
                )),
            },
            _ if ino.0 == tree::CTL => self.apply_ctl(text),
            _ => return reply.error(Errno::EACCES),
        };
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(message) => {
                self.engine.emit(Event::Error(format!("ctl: {message}")));
                reply.error(Errno::EINVAL);
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.handles).remove(&fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.attr_of(ino.0) {
            Some(a) if a.kind == FileType::Directory => {
                reply.opened(FileHandle(0), FopenFlags::empty())
            }
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(entries) = self.entries(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = self.meta.total_length.div_ceil(4096);
        reply.statfs(blocks, 0, 0, self.tree.len() as u64 + 8, 0, 4096, 255, 4096);
    }
}

/// Answers one `event` read: queued lines at once, otherwise the next event.
async fn read_events(
    stream: Arc<tokio::sync::Mutex<EventStream>>,
    size: usize,
    pid: u32,
    stop: CancellationToken,
    reply: ReplyData,
) {
    let mut s = stream.lock().await;
    let mut poll = interrupt_poll();
    loop {
        // Take everything already waiting, without blocking.
        loop {
            match s.events.try_recv() {
                Ok(e) => s.pending.extend_from_slice(render::event(&e).as_bytes()),
                Err(broadcast::error::TryRecvError::Lagged(n)) => s
                    .pending
                    .extend_from_slice(format!("lost {n}\n").as_bytes()),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Closed) => {
                    if s.pending.is_empty() {
                        return reply.data(&[]); // the engine ended: end of file
                    }
                    break;
                }
            }
        }
        if !s.pending.is_empty() {
            let n = size.min(s.pending.len());
            let chunk: Vec<u8> = s.pending.drain(..n).collect();
            return reply.data(&chunk);
        }
        tokio::select! {
            _ = stop.cancelled() => return reply.data(&[]),
            e = s.events.recv() => match e {
                Ok(e) => s.pending.extend_from_slice(render::event(&e).as_bytes()),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    s.pending.extend_from_slice(format!("lost {n}\n").as_bytes())
                }
                Err(broadcast::error::RecvError::Closed) => return reply.data(&[]),
            },
            _ = poll.tick() => {
                if signal_pending(pid) {
                    return reply.error(Errno::EINTR);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        pieces_to_pull, read_ahead_pieces, signal_pending, verified_after, PREFETCH_BYTES,
        READ_AHEAD_MIN_PIECES,
    };

    #[test]
    fn the_window_ahead_is_32_mib_of_pieces_and_never_under_four() {
        assert_eq!(read_ahead_pieces(1 << 20), 32);
        assert_eq!(read_ahead_pieces(32 << 10), 1024);
        assert_eq!(read_ahead_pieces(16 << 20), READ_AHEAD_MIN_PIECES);
        // A zero piece length (refused when a torrent is read) cannot divide by zero.
        assert_eq!(read_ahead_pieces(0), 32 << 20);
    }

    #[test]
    fn a_read_pulls_what_it_needs_and_the_missing_pieces_ahead_in_order() {
        let have = |p: u32| [2, 5, 6].contains(&p);
        // Needs 1..=2 (2 is here), looks 4 past: 3..=6.
        assert_eq!(pieces_to_pull(have, 1, 2, 4, 100), vec![1, 3, 4]);
        // The window stops at the last piece.
        assert_eq!(pieces_to_pull(have, 7, 8, 10, 10), vec![7, 8, 9]);
        // Nothing missing: nothing to pull.
        assert!(pieces_to_pull(|_| true, 0, 3, 4, 100).is_empty());
        // A window as large as u32 does not overflow.
        assert_eq!(pieces_to_pull(have, 9, 9, u32::MAX, 12), vec![9, 10, 11]);
    }

    #[test]
    fn read_ahead_from_disk_covers_verified_pieces_only() {
        const MIB: u64 = 1 << 20;
        let have = |p: u32| p != 5 && p < 40;
        // A file from byte 100 of the torrent, 1 MiB pieces: a read ending
        // at 2 MiB (in piece 2) reads ahead to the end of piece 4, skips
        // piece 5 and reads on from piece 6, for PREFETCH_BYTES in all.
        assert_eq!(
            verified_after(have, 100, 30 * MIB, 2 * MIB, MIB),
            vec![
                2 * MIB..5 * MIB - 100,
                6 * MIB - 100..2 * MIB + PREFETCH_BYTES
            ]
        );
        // A read that ends in missing piece 5: from piece 6 on.
        assert_eq!(
            verified_after(have, 0, 30 * MIB, 5 * MIB + 7, MIB),
            vec![6 * MIB..5 * MIB + 7 + PREFETCH_BYTES]
        );
        // Pieces scattered (every third one here): each run read ahead on
        // its own, none of the holes.
        let scattered = |p: u32| p % 3 == 0;
        assert_eq!(
            verified_after(scattered, 0, 100 * MIB, 0, 4 * MIB),
            vec![0..4 * MIB, 12 * MIB..16 * MIB]
        );
        // All there: PREFETCH_BYTES, then the end of the file.
        assert_eq!(
            verified_after(have, 0, 100 * MIB, 6 * MIB, MIB),
            vec![6 * MIB..6 * MIB + PREFETCH_BYTES]
        );
        assert_eq!(
            verified_after(have, 0, 10 * MIB, 6 * MIB, MIB),
            vec![6 * MIB..10 * MIB]
        );
        assert!(verified_after(have, 0, 10 * MIB, 10 * MIB, MIB).is_empty());
        // Past the torrent's verified end: stops where pieces stop.
        assert_eq!(
            verified_after(have, 0, 64 * MIB, 30 * MIB, MIB),
            vec![30 * MIB..40 * MIB]
        );
        // Nothing verified ahead: nothing to read.
        assert!(verified_after(|_| false, 0, 64 * MIB, 0, MIB).is_empty());
    }

    #[test]
    fn a_running_process_has_no_signal_pending_and_a_missing_one_counts_as_gone() {
        assert!(!signal_pending(std::process::id()));
        assert!(signal_pending(u32::MAX));
    }
}
