//! The four tasks of one peer connection, as in the design notes:
//!
//! ```text
//!  socket ─▶ net reader ─(4)─▶ disk writer ─▶ main loop
//!  socket ◀─ net writer ◀─(control, first)── main loop
//!                       ◀─(bulk, 4)── disk reader ◀─(one block at a time)─ main loop
//! ```
//!
//! The reader→writer channel is small so a slow disk stops us reading the
//! socket (TCP then slows the peer) instead of growing a buffer. The disk
//! writer asks the piecekeeper before writing, so only requested, still
//! needed blocks reach the disk. The net writer sends control messages
//! ahead of bulk data, and on a `choke` it flushes the data still queued.
//! The first task to fail cancels the others and reports why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::picker::PeerId;
use super::piecekeeper::Piecekeeper;
use super::ratelimit::RateLimiter;
use crate::storage::{PieceHashers, Put, StagedPieces, Storage};
use crate::wire::{BlockRef, Geometry, Handshake, Message, MessageCodec, HANDSHAKE_LEN};

/// Messages between the net reader and the disk writer.
const READ_QUEUE: usize = 8;
/// Blocks the disk reader asks the main loop for at once.
pub const UPLOAD_BATCH: usize = 8;
/// Blocks read from disk waiting for the net writer.
const BULK_QUEUE: usize = UPLOAD_BATCH;
/// Control messages (requests, haves, chokes) waiting for the net writer. A
/// peer that lets this fill up is not reading from its socket.
pub const CONTROL_QUEUE: usize = 1024;
/// Socket reads ask for this much at a time.
const READ_CHUNK: usize = 256 * 1024;
/// A batch of writes (and their hashing) that takes longer than this moves
/// the peer's next writes off the async runtime.
const SLOW_WRITE: Duration = Duration::from_millis(2);

/// What a peer's tasks tell the main loop.
#[derive(Debug)]
pub enum PeerInput {
    /// Any message but `piece`, in the order received.
    Message(Message),
    /// A requested block is on disk.
    BlockWritten(BlockRef),
    /// A requested block is in its piece's buffer in memory (written with
    /// the piece once it is verified).
    BlockStaged(BlockRef),
    /// A block arrived that was not requested from this peer or is no longer needed.
    BlockDiscarded(BlockRef),
    /// Writing a requested block failed (disk full, I/O error).
    WriteFailed(BlockRef, String),
    /// The disk reader wants the next blocks to upload (at most
    /// [`UPLOAD_BATCH`]); drop `reply` for none.
    UploadSlot(oneshot::Sender<Vec<BlockRef>>),
    /// The net writer sent a block of this many bytes.
    Uploaded(u64),
    /// The connection is over; the reason, for the event stream.
    Closed(String),
}

/// A message to the main loop from peer `id`.
#[derive(Debug)]
pub struct FromPeer {
    pub id: PeerId,
    pub input: PeerInput,
}

/// Everything a peer's tasks share.
#[derive(Clone)]
pub struct PeerContext {
    pub id: PeerId,
    pub geometry: Geometry,
    pub storage: Arc<Storage>,
    pub keeper: Piecekeeper,
    pub hashers: PieceHashers,
    pub staging: StagedPieces,
    pub main: mpsc::Sender<FromPeer>,
    pub up: Arc<RateLimiter>,
    pub down: Arc<RateLimiter>,
    pub cancel: CancellationToken,
    /// Send a keep-alive after this long without writing anything.
    pub keepalive: Duration,
}

impl PeerContext {
    async fn tell(&self, input: PeerInput) -> bool {
        self.main
            .send(FromPeer { id: self.id, input })
            .await
            .is_ok()
    }

    /// Ends the connection for `reason`, unless it already ended.
    async fn close(&self, reason: String) {
        if !self.cancel.is_cancelled() {
            self.cancel.cancel();
            self.tell(PeerInput::Closed(reason)).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("handshake: {0}")]
    Handshake(std::io::Error),
    #[error("handshake: {0}")]
    Protocol(#[from] crate::wire::WireError),
    #[error("handshake for another torrent")]
    WrongTorrent,
    #[error("timed out")]
    Timeout,
}

/// Exchanges handshakes on a connection we made, and checks that the peer
/// is in our torrent.
pub async fn handshake(
    stream: &mut TcpStream,
    ours: &Handshake,
) -> Result<Handshake, ConnectError> {
    stream
        .write_all(&ours.encode())
        .await
        .map_err(ConnectError::Handshake)?;
    read_handshake(stream, ours).await
}

/// On a connection made to us: reads the peer's handshake first and
/// answers only one for our torrent, so a scanner learns nothing (not our
/// peer id, not that we serve anything) from a wrong info-hash.
pub async fn answer_handshake(
    stream: &mut TcpStream,
    ours: &Handshake,
) -> Result<Handshake, ConnectError> {
    let theirs = read_handshake(stream, ours).await?;
    stream
        .write_all(&ours.encode())
        .await
        .map_err(ConnectError::Handshake)?;
    Ok(theirs)
}

async fn read_handshake(
    stream: &mut TcpStream,
    ours: &Handshake,
) -> Result<Handshake, ConnectError> {
    let mut theirs = [0u8; HANDSHAKE_LEN];
    stream
        .read_exact(&mut theirs)
        .await
        .map_err(ConnectError::Handshake)?;
    let theirs = Handshake::decode(&theirs)?;
    if theirs.info_hash != ours.info_hash {
        return Err(ConnectError::WrongTorrent);
    }
    Ok(theirs)
}

/// Connects to `addr` and handshakes, within `limit`.
pub async fn dial(
    addr: SocketAddr,
    ours: &Handshake,
    limit: Duration,
) -> Result<(TcpStream, Handshake), ConnectError> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(ConnectError::Connect)?;
        let theirs = handshake(&mut stream, ours).await?;
        Ok((stream, theirs))
    };
    tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| ConnectError::Timeout)?
}

/// Starts the four tasks for an established connection; returns the control
/// channel to its net writer.
pub fn spawn(ctx: PeerContext, stream: TcpStream, tasks: &TaskTracker) -> mpsc::Sender<Message> {
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let (to_disk, from_net) = mpsc::channel(READ_QUEUE);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (bulk_tx, bulk_rx) = mpsc::channel(BULK_QUEUE);
    tasks.spawn(net_reader(ctx.clone(), read_half, to_disk));
    tasks.spawn(disk_writer(ctx.clone(), from_net));
    tasks.spawn(disk_reader(ctx.clone(), bulk_tx));
    tasks.spawn(net_writer(ctx, write_half, control_rx, bulk_rx));
    control_tx
}

async fn net_reader(ctx: PeerContext, mut socket: OwnedReadHalf, to_disk: mpsc::Sender<Message>) {
    let mut codec = MessageCodec::new(ctx.geometry);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let reason = loop {
        // Hand over every complete message before reading more.
        match codec.decode(&mut buf) {
            Ok(Some(message)) => {
                if let Message::Piece { data, .. } = &message {
                    ctx.down.acquire(data.len()).await;
                }
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return,
                    sent = to_disk.send(message) => if sent.is_err() { return },
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break format!("protocol error: {e}"),
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            read = socket.read_buf(&mut buf) => match read {
                Ok(0) => break "connection closed by peer".to_string(),
                Ok(_) => {}
                Err(e) => break format!("read: {e}"),
            },
        }
    };
    ctx.close(reason).await;
}

async fn disk_writer(ctx: PeerContext, mut from_net: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(READ_QUEUE);
    let mut slow_disk = false;
    loop {
        let first = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            m = from_net.recv() => match m { Some(m) => m, None => return },
        };
        // Whatever else is queued goes in the same trip to the blocking pool.
        batch.push(first);
        while let Ok(m) = from_net.try_recv() {
            batch.push(m);
        }
        // Vet blocks now, in arrival order; write the wanted ones together.
        let vetted: Vec<(Message, bool)> = batch
            .drain(..)
            .map(|m| {
                let wanted = match &m {
                    Message::Piece {
                        piece,
                        offset,
                        data,
                    } => ctx.keeper.check(
                        ctx.id,
                        BlockRef {
                            piece: *piece,
                            offset: *offset,
                            len: data.len() as u32,
                        },
                    ),
                    _ => false,
                };
                (m, wanted)
            })
            .collect();
        let inputs = if vetted.iter().any(|(_, wanted)| *wanted) {
            // Writes into the page cache take microseconds: done here they
            // save two thread hand-offs a batch (a third of the CPU time of
            // a download). A write that took long (a disk that makes us wait)
            // sends the next ones to the blocking pool, off the runtime.
            let started = std::time::Instant::now();
            let inputs = if slow_disk {
                let writer = ctx.clone();
                match tokio::task::spawn_blocking(move || write_blocks(&writer, vetted)).await {
                    Ok(inputs) => inputs,
                    Err(e) => return ctx.close(format!("disk writer: {e}")).await,
                }
            } else {
                write_blocks(&ctx, vetted)
            };
            slow_disk = started.elapsed() > SLOW_WRITE;
            inputs
        } else {
            vetted.into_iter().map(|(m, _)| unwritten(m)).collect()
        };
        for input in inputs {
            if !ctx.tell(input).await {
                return;
            }
        }
    }
}

/// Stages the wanted blocks in memory, or writes them (each run of adjacent
/// ones in one vectored write) and hashes them as they go; every message
/// becomes its input for the main loop, in arrival order.
fn write_blocks(ctx: &PeerContext, vetted: Vec<(Message, bool)>) -> Vec<PeerInput> {
    let (storage, hashers) = (&*ctx.storage, &ctx.hashers);
    let mut inputs = Vec::with_capacity(vetted.len());
    let mut run: Vec<(BlockRef, Bytes)> = Vec::new();
    for (message, wanted) in vetted {
        match message {
            Message::Piece {
                piece,
                offset,
                data,
            } if wanted => {
                let block = BlockRef {
                    piece,
                    offset,
                    len: data.len() as u32,
                };
                let piece_size = ctx.geometry.piece_size(piece);
                let settled = match ctx.staging.put(piece, piece_size, offset as u64, &data) {
                    Put::Staged => Some(PeerInput::BlockStaged(block)),
                    // Its piece went to its check already: dropped.
                    Put::Late => Some(PeerInput::BlockDiscarded(block)),
                    Put::WriteThrough => None,
                };
                if let Some(input) = settled {
                    write_run(storage, hashers, &mut run, &mut inputs);
                    inputs.push(input);
                    continue;
                }
                let adjacent = run.last().is_none_or(|(last, _)| {
                    last.piece == piece && last.offset + last.len == offset
                });
                if !adjacent {
                    write_run(storage, hashers, &mut run, &mut inputs);
                }
                run.push((block, data));
            }
            other => {
                write_run(storage, hashers, &mut run, &mut inputs);
                inputs.push(unwritten(other));
            }
        }
    }
    write_run(storage, hashers, &mut run, &mut inputs);
    inputs
}

/// Writes back-to-back blocks of one piece with one call, then hashes them.
fn write_run(
    storage: &Storage,
    hashers: &PieceHashers,
    run: &mut Vec<(BlockRef, Bytes)>,
    inputs: &mut Vec<PeerInput>,
) {
    let Some(&(first, _)) = run.first() else {
        return;
    };
    let slices: Vec<&[u8]> = run.iter().map(|(_, data)| data.as_ref()).collect();
    match storage.write_blocks(first.piece, first.offset as u64, &slices) {
        Ok(()) => {
            for (block, data) in run.drain(..) {
                hashers.feed(block.piece, block.offset as u64, &data);
                inputs.push(PeerInput::BlockWritten(block));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for (block, _) in run.drain(..) {
                inputs.push(PeerInput::WriteFailed(block, message.clone()));
            }
        }
    }
}

/// The input for a message that is not written: a discarded block, or a
/// message for the main loop.
fn unwritten(message: Message) -> PeerInput {
    match message {
        Message::Piece {
            piece,
            offset,
            data,
        } => PeerInput::BlockDiscarded(BlockRef {
            piece,
            offset,
            len: data.len() as u32,
        }),
        other => PeerInput::Message(other),
    }
}

async fn disk_reader(ctx: PeerContext, bulk: mpsc::Sender<Message>) {
    loop {
        let (reply, answer) = oneshot::channel();
        if !ctx.tell(PeerInput::UploadSlot(reply)).await {
            return;
        }
        let blocks = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            b = answer => match b { Ok(b) => b, Err(_) => return },
        };
        let storage = ctx.storage.clone();
        let read = tokio::task::spawn_blocking(move || {
            blocks
                .into_iter()
                .map(|block| {
                    let mut data = vec![0u8; block.len as usize];
                    storage
                        .read_block(block.piece, block.offset as u64, &mut data)
                        .map(|()| Message::Piece {
                            piece: block.piece,
                            offset: block.offset,
                            data: Bytes::from(data),
                        })
                })
                .collect::<Result<Vec<Message>, _>>()
        })
        .await;
        let messages = match read {
            Ok(Ok(messages)) => messages,
            Ok(Err(e)) => return ctx.close(format!("reading a block to upload: {e}")).await,
            Err(e) => return ctx.close(format!("reading a block to upload: {e}")).await,
        };
        for message in messages {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                sent = bulk.send(message) => if sent.is_err() { return },
            }
        }
    }
}

async fn net_writer(
    ctx: PeerContext,
    mut socket: OwnedWriteHalf,
    mut control: mpsc::Receiver<Message>,
    mut bulk: mpsc::Receiver<Message>,
) {
    let mut codec = MessageCodec::new(ctx.geometry);
    let mut buf = BytesMut::new();
    let reason = loop {
        let idle = tokio::time::sleep(ctx.keepalive);
        let mut uploaded = 0u64;
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            m = control.recv() => {
                let Some(first) = m else { return };
                // Batch whatever control messages are queued into one write.
                let mut next = Some(first);
                while let Some(message) = next {
                    if message == Message::Choke {
                        // Flush data queued for a peer we just choked.
                        while bulk.try_recv().is_ok() {}
                    }
                    let _ = codec.encode(message, &mut buf);
                    next = control.try_recv().ok();
                }
            }
            m = bulk.recv() => {
                let Some(first) = m else { return };
                // Blocks already queued go out in the same write.
                let mut next = Some(first);
                while let Some(message) = next {
                    if let Message::Piece { data, .. } = &message {
                        ctx.up.acquire(data.len()).await;
                        uploaded += data.len() as u64;
                    }
                    let _ = codec.encode(message, &mut buf);
                    next = bulk.try_recv().ok();
                }
            }
            _ = idle => {
                let _ = codec.encode(Message::KeepAlive, &mut buf);
            }
        }
        if let Err(e) = socket.write_all(&buf).await {
            break format!("write: {e}");
        }
        buf.clear();
        if uploaded > 0 && !ctx.tell(PeerInput::Uploaded(uploaded)).await {
            return;
        }
    };
    ctx.close(reason).await;
}

/// A readable client name from a peer id (Azureus style `-XXvvvv-`), or
/// the id's printable prefix.
pub fn client_name(peer_id: &[u8; 20]) -> String {
    if peer_id[0] == b'-' && peer_id[7] == b'-' {
        let code = &peer_id[1..3];
        let version: String = peer_id[3..7].iter().map(|&b| b as char).collect();
        let name = match code {
            b"SF" => "swarmfs",
            b"TR" => "Transmission",
            b"LT" => "libtorrent",
            b"lt" => "rtorrent",
            b"qB" => "qBittorrent",
            b"DE" => "Deluge",
            b"UT" => "µTorrent",
            b"AZ" => "Vuze",
            b"RQ" | b"rQ" => "rqbit",
            _ => "",
        };
        if !name.is_empty() && version.chars().all(|c| c.is_ascii_alphanumeric()) {
            return format!("{name} {version}");
        }
    }
    if peer_id.starts_with(b"A2-") {
        return "aria2".to_string();
    }
    let printable: String = peer_id
        .iter()
        .take_while(|b| b.is_ascii_graphic())
        .map(|&b| b as char)
        .collect();
    if printable.is_empty() {
        "unknown".to_string()
    } else {
        printable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names() {
        assert_eq!(client_name(b"-TR3000-abcdefghijkl"), "Transmission 3000");
        assert_eq!(client_name(b"-LT2080-abcdefghijkl"), "libtorrent 2080");
        assert_eq!(client_name(b"A2-1-36-0-abcdefghij"), "aria2");
        assert_eq!(client_name(&[0; 20]), "unknown");
    }
}
