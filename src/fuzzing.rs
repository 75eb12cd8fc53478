//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz) and for the
//! corpus replay in `tests/fuzz_corpus.rs`: each takes any bytes at all and
//! must return, without panicking, hanging or allocating without bound.
//! They drive the same code that meets untrusted input in the client.

use std::sync::OnceLock;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::metainfo::Metainfo;
use crate::storage::Resume;
use crate::wire::extension::ExtensionHandshake;
use crate::wire::pex::Pex;
use crate::wire::{Geometry, Handshake, Message, MessageCodec, HANDSHAKE_LEN};

/// A .torrent file (bencode, then every check `Metainfo` makes).
pub fn metainfo(data: &[u8]) {
    let _ = Metainfo::from_bytes(data);
}

/// A peer's byte stream: a handshake, then messages, cut into reads of
/// sizes the input chooses, for a torrent whose shape the input chooses
/// too. Every message that decodes must encode back to bytes that decode to
/// the same message; extension payloads go through their own decoders.
pub fn wire(data: &[u8]) {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    // From one piece to ~3 million (a 700 KiB bitfield), odd lengths too.
    let piece_length = 16384u64 << (shape & 0x7);
    let piece_count = 1 + ((shape as u32) >> 3).pow(4) * 97;
    let geometry = Geometry {
        piece_count,
        piece_length,
        total_length: piece_length * piece_count as u64 - (shape as u64 % 7) * 1000,
    };
    let mut rest = rest;
    if rest.len() >= HANDSHAKE_LEN {
        let (head, tail) = rest.split_at(HANDSHAKE_LEN);
        if let Ok(head) = <&[u8; HANDSHAKE_LEN]>::try_from(head) {
            let _ = Handshake::decode(head);
        }
        rest = tail;
    }
    let mut codec = MessageCodec::new(geometry);
    let mut buffer = BytesMut::new();
    let mut chunk = 1usize;
    while !rest.is_empty() {
        // Read sizes cycle through 1..64 and then big reads: message
        // boundaries fall everywhere.
        let take = chunk.min(rest.len());
        buffer.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        chunk = if chunk >= 64 { 1 } else { chunk * 2 + 1 };
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(message)) => check_round_trip(&mut codec, message),
                Ok(None) => break,
                Err(_) => return, // the peer is dropped
            }
        }
    }
}

fn check_round_trip(codec: &mut MessageCodec, message: Message) {
    if let Message::Extended { id, payload } = &message {
        if *id == 0 {
            let _ = ExtensionHandshake::decode(payload);
        } else {
            let _ = Pex::decode(payload);
        }
    }
    let mut encoded = BytesMut::new();
    codec
        .encode(message.clone(), &mut encoded)
        .expect("a decoded message encodes");
    let again = codec
        .decode(&mut encoded)
        .expect("an encoded message decodes")
        .expect("an encoded message is whole");
    assert_eq!(again, message, "decode(encode(m)) != m");
    assert!(encoded.is_empty(), "bytes left after one message");
}

/// An HTTP tracker's response body.
pub fn tracker_http(data: &[u8]) {
    let _ = crate::engine::tracker::parse_response(data);
}

/// A UDP tracker's datagram, as the answer to a connect and to an announce
/// (over IPv4 and IPv6).
pub fn tracker_udp(data: &[u8]) {
    use crate::engine::udp_tracker::{announce_response, judge_reply};
    let tid = data
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    for (action, min) in [(0u32, 16usize), (1, 20)] {
        if let Some(Ok(reply)) = judge_reply(data, action, tid, min, "udp://fuzz") {
            if action == 1 {
                let _ = announce_response(&reply, false);
                let _ = announce_response(&reply, true);
            }
        }
    }
}

/// Text written to `ctl`.
pub fn ctl(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::fs::ctl::parse(text);
    }
}

/// A resume file, for a fixed torrent of 7 pieces in 3 files.
pub fn resume(data: &[u8]) {
    let _ = Resume::decode(data, resume_torrent());
}

fn resume_torrent() -> &'static Metainfo {
    static META: OnceLock<Metainfo> = OnceLock::new();
    META.get_or_init(|| {
        let mut t = b"d4:infod5:filesl".to_vec();
        for (name, len) in [("a", 40_000), ("b", 0), ("c", 60_000)] {
            t.extend_from_slice(format!("d6:lengthi{len}e4:pathl1:{name}ee").as_bytes());
        }
        t.extend_from_slice(b"e4:name4:fuzz12:piece lengthi16384e6:pieces140:");
        t.extend_from_slice(&[7u8; 140]);
        t.extend_from_slice(b"ee");
        Metainfo::from_bytes(&t).expect("the fixed resume torrent is valid")
    })
}

/// A fuzz target: any bytes in, nothing out.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay and `contrib/fuzz.sh`.
pub const TARGETS: &[(&str, Target)] = &[
    ("metainfo", metainfo),
    ("wire", wire),
    ("tracker_http", tracker_http),
    ("tracker_udp", tracker_udp),
    ("ctl", ctl),
    ("resume", resume),
];
