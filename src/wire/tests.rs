use super::*;

/// 10 pieces of 32 KiB, the last one 1000 bytes.
const G: Geometry = Geometry {
    piece_count: 10,
    piece_length: 32768,
    total_length: 9 * 32768 + 1000,
};

fn codec() -> MessageCodec {
    MessageCodec::new(G)
}

fn encode(m: Message) -> BytesMut {
    let mut out = BytesMut::new();
    codec().encode(m, &mut out).unwrap();
    out
}

fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, String> {
    let mut buf = BytesMut::from(bytes);
    let mut c = codec();
    let mut out = Vec::new();
    while let Some(m) = c.decode(&mut buf).map_err(|e| e.to_string())? {
        out.push(m);
    }
    Ok(out)
}

fn block(piece: u32, offset: u32, len: u32) -> BlockRef {
    BlockRef { piece, offset, len }
}

#[test]
fn handshake_round_trips_and_rejects_other_protocols() {
    let h = Handshake {
        reserved: [0, 0, 0, 0, 0, 0x10, 0, 0x05],
        info_hash: InfoHash([7; 20]),
        peer_id: *b"-SF0001-abcdefghijkl",
    };
    let bytes = h.encode();
    assert_eq!(&bytes[..20], b"\x13BitTorrent protocol");
    assert_eq!(Handshake::decode(&bytes).unwrap(), h);
    let mut other = bytes;
    other[1] = b'X';
    assert!(matches!(
        Handshake::decode(&other),
        Err(WireError::Protocol(_))
    ));
    let mut long = bytes;
    long[0] = 255;
    assert!(Handshake::decode(&long).is_err());
}

#[test]
fn every_message_round_trips() {
    let messages = vec![
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(9),
        Message::Bitfield(Bytes::from_static(&[0xff, 0xc0])),
        Message::Request(block(3, 16384, 16384)),
        Message::Piece {
            piece: 9,
            offset: 0,
            data: Bytes::from(vec![1u8; 1000]),
        },
        Message::Cancel(block(0, 0, 16384)),
        Message::Port(6881),
        Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"d1:v7:swarmfse"),
        },
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject(block(2, 0, 16384)),
        Message::AllowedFast(7),
        Message::Suggest(3),
    ];
    let mut wire = BytesMut::new();
    for m in &messages {
        wire.extend_from_slice(&encode(m.clone()));
    }
    assert_eq!(decode_all(&wire).unwrap(), messages);
}

#[test]
fn partial_input_waits_for_more() {
    let wire = encode(Message::Request(block(1, 0, 16384)));
    let mut c = codec();
    let mut buf = BytesMut::new();
    for (i, byte) in wire.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let got = c.decode(&mut buf).unwrap();
        assert_eq!(got.is_some(), i == wire.len() - 1);
    }
}

#[test]
fn huge_length_prefixes_are_refused_before_buffering() {
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 7][..]);
    let err = codec().decode(&mut buf).unwrap_err();
    assert!(err.to_string().contains("length 4294967295"), "{err}");
    assert!(
        buf.capacity() < 1 << 20,
        "no allocation for the claimed length"
    );
    let mut unknown = BytesMut::from(&[0x10, 0, 0, 0, 99][..]);
    assert!(codec().decode(&mut unknown).is_err());
}

#[test]
fn malformed_messages_are_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0, 0, 0, 2, 1, 0], "length 2"), // unchoke with a body
        (vec![0, 0, 0, 5, 4, 0, 0, 0, 10], "out of range"), // have past the end
        (vec![0, 0, 0, 2, 5, 0xff], "length 2"), // bitfield too short
        (vec![0, 0, 0, 3, 5, 0xff, 0xe0], "past the last piece"), // bit 10 set
        (
            vec![0, 0, 0, 13, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 1],
            "not inside",
        ), // 16 KiB + 1
        (
            vec![0, 0, 0, 13, 6, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 4, 0],
            "not inside",
        ), // past a short last piece
        (
            vec![0, 0, 0, 13, 8, 0, 0, 0, 1, 0, 0, 0x80, 0, 0, 0, 0x40, 0],
            "not inside",
        ), // cancel past piece end
        (
            vec![0, 0, 0, 13, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "not inside",
        ), // zero length
        (
            vec![0, 0, 0, 12, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "length 12",
        ),
    ];
    for (bytes, needle) in cases {
        let err = decode_all(&bytes).unwrap_err();
        assert!(err.contains(needle), "{bytes:?}: {err}");
    }
    // A piece message larger than a block is refused from its prefix alone.
    let err = decode_all(&[0, 0, 0x40, 0x0a, 7]).unwrap_err();
    assert!(err.contains("expected 9 to 16393"), "{err}");
    // A piece message that runs past the end of its piece.
    let mut bad_piece = encode(Message::Piece {
        piece: 9,
        offset: 500,
        data: Bytes::from(vec![0u8; 501]),
    });
    assert!(decode_all(&bad_piece.split()).is_err());
}

#[test]
fn unknown_messages_are_skipped_and_bitfields_with_clean_spare_bits_pass() {
    let mut wire = vec![0, 0, 0, 4, 99, 1, 2, 3];
    wire.extend_from_slice(&[0, 0, 0, 3, 5, 0xff, 0xc0]);
    let got = decode_all(&wire).unwrap();
    assert_eq!(
        got,
        vec![
            Message::Unknown { id: 99 },
            Message::Bitfield(Bytes::from_static(&[0xff, 0xc0]))
        ]
    );
}
