//! Peer exchange messages (BEP 11, `ut_pex`): a bencoded dictionary of
//! compact addresses added and dropped since the last message.

use std::collections::HashMap;
use std::net::SocketAddr;

use lava_torrent::bencode::BencodeElem;

use super::compact::{decode_peers, encode_peers};
use crate::metainfo::bencode;

/// Our extension id for `ut_pex` in the extension handshake's `m`.
pub const UT_PEX: u8 = 1;
/// At most this many addresses are taken from, or put in, one message.
pub const MAX_PEX_PEERS: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pex {
    pub added: Vec<SocketAddr>,
    pub dropped: Vec<SocketAddr>,
}

/// Addresses of one family from a PEX field: at most [`MAX_PEX_PEERS`],
/// none of them unspecified; a malformed field counts as empty.
fn parse(bytes: &[u8], v6: bool) -> Vec<SocketAddr> {
    decode_peers(bytes, v6)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.ip().is_unspecified())
        .take(MAX_PEX_PEERS)
        .collect()
}

impl Pex {
    pub fn encode(&self) -> Vec<u8> {
        let added: Vec<SocketAddr> = self.added.iter().take(MAX_PEX_PEERS).copied().collect();
        let mut top = HashMap::new();
        let v4_count = added.iter().filter(|a| a.is_ipv4()).count();
        top.insert(
            "added".to_owned(),
            BencodeElem::Bytes(encode_peers(&added, false)),
        );
        top.insert("added.f".to_owned(), BencodeElem::Bytes(vec![0; v4_count]));
        top.insert(
            "added6".to_owned(),
            BencodeElem::Bytes(encode_peers(&added, true)),
        );
        top.insert(
            "added6.f".to_owned(),
            BencodeElem::Bytes(vec![0; added.len() - v4_count]),
        );
        top.insert(
            "dropped".to_owned(),
            BencodeElem::Bytes(encode_peers(&self.dropped, false)),
        );
        top.insert(
            "dropped6".to_owned(),
            BencodeElem::Bytes(encode_peers(&self.dropped, true)),
        );
        BencodeElem::Dictionary(top).encode()
    }

    pub fn decode(payload: &[u8]) -> Result<Pex, String> {
        let top = bencode::decode_dict(payload)?;
        let bytes = |key: &str| -> Vec<u8> {
            match bencode::get(&top, key) {
                Some(BencodeElem::Bytes(b)) => b.clone(),
                Some(BencodeElem::String(s)) => s.as_bytes().to_vec(),
                _ => Vec::new(),
            }
        };
        let mut added = parse(&bytes("added"), false);
        added.extend(parse(&bytes("added6"), true));
        added.truncate(MAX_PEX_PEERS);
        let mut dropped = parse(&bytes("dropped"), false);
        dropped.extend(parse(&bytes("dropped6"), true));
        Ok(Pex { added, dropped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_families() {
        let pex = Pex {
            added: vec![
                "10.0.0.1:6881".parse().unwrap(),
                "[2001:db8::1]:51413".parse().unwrap(),
            ],
            dropped: vec!["192.0.2.7:80".parse().unwrap()],
        };
        assert_eq!(Pex::decode(&pex.encode()).unwrap(), pex);
    }

    #[test]
    fn caps_and_cleans_what_peers_send() {
        let mut added = Vec::new();
        for i in 0..200u8 {
            added.extend_from_slice(&[10, 0, 0, i, 0x1a, 0xe1]);
        }
        added.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // nonsense entry
        let mut payload = format!("d5:added{}:", added.len()).into_bytes();
        payload.extend_from_slice(&added);
        payload.extend_from_slice(b"7:droppedi5ee");
        let pex = Pex::decode(&payload).unwrap();
        assert_eq!(pex.added.len(), MAX_PEX_PEERS);
        assert!(pex.dropped.is_empty());
        assert!(Pex::decode(b"i1e").is_err());
    }
}
