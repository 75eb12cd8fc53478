//! The peer wire protocol (BEP 3): the handshake and the length-prefixed
//! messages, as a tokio-util codec over `BytesMut`. No sockets here.
//!
//! Every message is checked against the torrent's geometry before it is
//! accepted: a length prefix is judged before its body is buffered (a 4 GiB
//! prefix is refused at once, never allocated), bitfields must have the right
//! size and no spare bits set, and block references must lie inside a piece
//! and be at most [`MAX_BLOCK`] long. Any violation is a [`WireError`], after
//! which the connection is dropped.

pub mod compact;
pub mod extension;
pub mod pex;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::metainfo::InfoHash;

pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;
/// The block size we request, and the largest block we serve or accept.
pub const MAX_BLOCK: u32 = 16 * 1024;
/// Messages we do not understand (extensions) are skipped up to this size.
pub const MAX_UNKNOWN_MESSAGE: u32 = 1024 * 1024;
/// Reserved-byte bit for the extension protocol (BEP 10): byte 5, 0x10.
pub const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
/// Reserved-byte bit for the fast extension (BEP 6): byte 7, 0x04.
pub const FAST_EXTENSION: (usize, u8) = (7, 0x04);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("handshake names protocol {0:?}, not BitTorrent")]
    Protocol(String),
    #[error("message type {id} has length {len}, expected {expected}")]
    BadLength { id: u8, len: u32, expected: String },
    #[error("message of {0} bytes is larger than allowed")]
    TooLarge(u32),
    #[error("bitfield has bits set past the last piece")]
    SpareBits,
    #[error("piece index {0} is out of range")]
    PieceOutOfRange(u32),
    #[error(
        "block (piece {piece}, offset {offset}, length {len}) is not inside the piece or too long"
    )]
    BadBlock { piece: u32, offset: u32, len: u32 },
}

/// A reference to a block: `len` bytes at `offset` in piece `piece`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub piece: u32,
    pub offset: u32,
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
}

impl Handshake {
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = PROTOCOL.len() as u8;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    pub fn decode(bytes: &[u8; HANDSHAKE_LEN]) -> Result<Handshake, WireError> {
        if bytes[0] as usize != PROTOCOL.len() || &bytes[1..20] != PROTOCOL {
            let len = (bytes[0] as usize).min(HANDSHAKE_LEN - 1);
            let shown = String::from_utf8_lossy(&bytes[1..1 + len]).into_owned();
            return Err(WireError::Protocol(shown));
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&bytes[20..28]);
        let mut info_hash = [0u8; 20];
        info_hash.copy_from_slice(&bytes[28..48]);
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&bytes[48..68]);
        Ok(Handshake {
            reserved,
            info_hash: InfoHash(info_hash),
            peer_id,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// Raw bitfield bytes, most significant bit first; size checked.
    Bitfield(Bytes),
    Request(BlockRef),
    Piece {
        piece: u32,
        offset: u32,
        data: Bytes,
    },
    Cancel(BlockRef),
    /// DHT port (BEP 5): parsed and ignored.
    Port(u16),
    /// Extension protocol (BEP 10): extension id (0 = handshake) and payload.
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// Fast extension (BEP 6): the sender has every piece / none.
    HaveAll,
    HaveNone,
    /// Fast extension: a request the sender will not serve.
    Reject(BlockRef),
    /// Fast extension: a piece the receiver may request even while choked.
    AllowedFast(u32),
    /// Fast extension: a hint to fetch this piece; we ignore it.
    Suggest(u32),
    /// A message type we do not speak (an extension); skipped.
    Unknown {
        id: u8,
    },
}

impl Message {
    pub fn name(&self) -> &'static str {
        match self {
            Message::KeepAlive => "keep-alive",
            Message::Choke => "choke",
            Message::Unchoke => "unchoke",
            Message::Interested => "interested",
            Message::NotInterested => "not interested",
            Message::Have(_) => "have",
            Message::Bitfield(_) => "bitfield",
            Message::Request(_) => "request",
            Message::Piece { .. } => "piece",
            Message::Cancel(_) => "cancel",
            Message::Port(_) => "port",
            Message::Extended { .. } => "extended",
            Message::HaveAll => "have all",
            Message::HaveNone => "have none",
            Message::Reject(_) => "reject",
            Message::AllowedFast(_) => "allowed fast",
            Message::Suggest(_) => "suggest",
            Message::Unknown { .. } => "unknown",
        }
    }
}

/// What the codec needs to know of the torrent to judge messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub piece_count: u32,
    pub piece_length: u64,
    pub total_length: u64,
}

impl Geometry {
    pub fn piece_size(&self, piece: u32) -> u64 {
        let start = piece as u64 * self.piece_length;
        self.total_length
            .saturating_sub(start)
            .min(self.piece_length)
    }

    pub fn bitfield_len(&self) -> usize {
        (self.piece_count as usize).div_ceil(8)
    }

    /// Is `block` a block one may request: inside its piece, 1 to MAX_BLOCK bytes?
    pub fn check_block(&self, block: BlockRef) -> Result<(), WireError> {
        if block.piece >= self.piece_count {
            return Err(WireError::PieceOutOfRange(block.piece));
        }
        let end = block.offset as u64 + block.len as u64;
        if block.len == 0 || block.len > MAX_BLOCK || end > self.piece_size(block.piece) {
            return Err(WireError::BadBlock {
                piece: block.piece,
                offset: block.offset,
                len: block.len,
            });
        }
        Ok(())
    }
}

/// Encodes and decodes messages after the handshake.
#[derive(Debug, Clone)]
pub struct MessageCodec {
    geometry: Geometry,
}

impl MessageCodec {
    pub fn new(geometry: Geometry) -> MessageCodec {
        MessageCodec { geometry }
    }

    /// The exact or largest length (after the prefix) a message type may have.
    fn check_length(&self, id: u8, len: u32) -> Result<(), WireError> {
        let exact = |expected: u32| {
            if len == expected {
                Ok(())
            } else {
                Err(WireError::BadLength {
                    id,
                    len,
                    expected: expected.to_string(),
                })
            }
        };
        match id {
            0..=3 => exact(1),
            4 => exact(5),
            5 => exact(1 + self.geometry.bitfield_len() as u32),
            6 | 8 => exact(13),
            7 if (9..=9 + MAX_BLOCK).contains(&len) => Ok(()),
            7 => Err(WireError::BadLength {
                id,
                len,
                expected: format!("9 to {}", 9 + MAX_BLOCK),
            }),
            9 => exact(3),
            13 | 17 => exact(5),
            14 | 15 => exact(1),
            16 => exact(13),
            20 if (2..=MAX_UNKNOWN_MESSAGE).contains(&len) => Ok(()),
            20 => Err(WireError::BadLength {
                id,
                len,
                expected: format!("2 to {MAX_UNKNOWN_MESSAGE}"),
            }),
            _ if len <= MAX_UNKNOWN_MESSAGE => Ok(()),
            _ => Err(WireError::TooLarge(len)),
        }
    }
}

fn block_ref(body: &mut BytesMut) -> BlockRef {
    BlockRef {
        piece: body.get_u32(),
        offset: body.get_u32(),
        len: body.get_u32(),
    }
}

impl Decoder for MessageCodec {
    type Item = Message;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, std::io::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if len == 0 {
            src.advance(4);
            return Ok(Some(Message::KeepAlive));
        }
        if src.len() < 5 {
            return Ok(None);
        }
        let id = src[4];
        // Judge the length before waiting for (and buffering) the body.
        self.check_length(id, len).map_err(invalid)?;
        let total = 4 + len as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(5);
        let mut body = src.split_to(len as usize - 1);
        let g = &self.geometry;
        let message = match id {
            0 => Message::Choke,
            1 => Message::Unchoke,
            2 => Message::Interested,
            3 => Message::NotInterested,
            4 => {
                let piece = body.get_u32();
                if piece >= g.piece_count {
                    return Err(invalid(WireError::PieceOutOfRange(piece)));
                }
                Message::Have(piece)
            }
            5 => {
                let spare = g.bitfield_len() * 8 - g.piece_count as usize;
                let last = body.last().copied().unwrap_or(0);
                if spare > 0 && last & ((1u8 << spare) - 1) != 0 {
                    return Err(invalid(WireError::SpareBits));
                }
                Message::Bitfield(body.freeze())
            }
            6 | 8 | 16 => {
                let block = block_ref(&mut body);
                g.check_block(block).map_err(invalid)?;
                match id {
                    6 => Message::Request(block),
                    8 => Message::Cancel(block),
                    _ => Message::Reject(block),
                }
            }
            13 | 17 => {
                let piece = body.get_u32();
                if piece >= g.piece_count {
                    return Err(invalid(WireError::PieceOutOfRange(piece)));
                }
                if id == 13 {
                    Message::Suggest(piece)
                } else {
                    Message::AllowedFast(piece)
                }
            }
            14 => Message::HaveAll,
            15 => Message::HaveNone,
            7 => {
                let piece = body.get_u32();
                let offset = body.get_u32();
                let data = body.freeze();
                let block = BlockRef {
                    piece,
                    offset,
                    len: data.len() as u32,
                };
                g.check_block(block).map_err(invalid)?;
                Message::Piece {
                    piece,
                    offset,
                    data,
                }
            }
            9 => Message::Port(body.get_u16()),
            20 => {
                let id = body.get_u8();
                Message::Extended {
                    id,
                    payload: body.freeze(),
                }
            }
            id => Message::Unknown { id },
        };
        Ok(Some(message))
    }
}

fn invalid(e: WireError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl Encoder<Message> for MessageCodec {
    type Error = std::io::Error;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let simple = |dst: &mut BytesMut, id: u8| {
            dst.put_u32(1);
            dst.put_u8(id);
        };
        let block = |dst: &mut BytesMut, id: u8, b: BlockRef| {
            dst.put_u32(13);
            dst.put_u8(id);
            dst.put_u32(b.piece);
            dst.put_u32(b.offset);
            dst.put_u32(b.len);
        };
        match message {
            Message::KeepAlive => dst.put_u32(0),
            Message::Choke => simple(dst, 0),
            Message::Unchoke => simple(dst, 1),
            Message::Interested => simple(dst, 2),
            Message::NotInterested => simple(dst, 3),
            Message::Have(piece) => {
                dst.put_u32(5);
                dst.put_u8(4);
                dst.put_u32(piece);
            }
            Message::Bitfield(bits) => {
                dst.put_u32(1 + bits.len() as u32);
                dst.put_u8(5);
                dst.put_slice(&bits);
            }
            Message::Request(b) => block(dst, 6, b),
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                dst.reserve(13 + data.len());
                dst.put_u32(9 + data.len() as u32);
                dst.put_u8(7);
                dst.put_u32(piece);
                dst.put_u32(offset);
                dst.put_slice(&data);
            }
            Message::Cancel(b) => block(dst, 8, b),
            Message::Port(port) => {
                dst.put_u32(3);
                dst.put_u8(9);
                dst.put_u16(port);
            }
            Message::Extended { id, payload } => {
                dst.put_u32(2 + payload.len() as u32);
                dst.put_u8(20);
                dst.put_u8(id);
                dst.put_slice(&payload);
            }
            Message::HaveAll => simple(dst, 14),
            Message::HaveNone => simple(dst, 15),
            Message::Reject(b) => block(dst, 16, b),
            Message::AllowedFast(piece) | Message::Suggest(piece) => {
                dst.put_u32(5);
                dst.put_u8(if matches!(message, Message::Suggest(_)) {
                    13
                } else {
                    17
                });
                dst.put_u32(piece);
            }
            Message::Unknown { id } => simple(dst, id),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
