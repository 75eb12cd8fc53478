//! The extension protocol's handshake (BEP 10): a bencoded dictionary sent as
//! extended message 0. We send and read `v` (client name), `p` (listen port)
//! and `reqq` (how many requests the sender queues); `m` lists extensions,
//! of which we offer none yet, and unknown keys are ignored.

use std::collections::HashMap;

use lava_torrent::bencode::BencodeElem;

use crate::metainfo::bencode;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionHandshake {
    /// The client's name and version.
    pub client: Option<String>,
    /// The port it listens on.
    pub port: Option<u16>,
    /// How many outstanding requests it queues before dropping them.
    pub reqq: Option<u32>,
    /// Extension names it supports, with its message ids for them.
    pub extensions: HashMap<String, u8>,
}

impl ExtensionHandshake {
    pub fn encode(&self) -> Vec<u8> {
        let mut top = HashMap::new();
        let m = self
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), BencodeElem::Integer(*v as i64)))
            .collect();
        top.insert("m".to_owned(), BencodeElem::Dictionary(m));
        if let Some(client) = &self.client {
            top.insert("v".to_owned(), BencodeElem::String(client.clone()));
        }
        if let Some(port) = self.port {
            top.insert("p".to_owned(), BencodeElem::Integer(port as i64));
        }
        if let Some(reqq) = self.reqq {
            top.insert("reqq".to_owned(), BencodeElem::Integer(reqq as i64));
        }
        BencodeElem::Dictionary(top).encode()
    }

    /// Reads a peer's handshake; fields that are absent or mistyped are None.
    pub fn decode(payload: &[u8]) -> Result<ExtensionHandshake, String> {
        let top = bencode::decode_dict(payload)?;
        let get = |key: &str| bencode::get(&top, key);
        let int = |key: &str| match get(key) {
            Some(BencodeElem::Integer(n)) => Some(*n),
            _ => None,
        };
        let client = match get("v") {
            Some(BencodeElem::String(s)) => Some(s.clone()),
            Some(BencodeElem::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        let mut extensions = HashMap::new();
        if let Some(BencodeElem::Dictionary(m)) = get("m") {
            for (name, id) in m {
                if let BencodeElem::Integer(id) = id {
                    if let Ok(id) = u8::try_from(*id) {
                        extensions.insert(name.clone(), id);
                    }
                }
            }
        }
        Ok(ExtensionHandshake {
            client: client.map(|c| c.chars().filter(|c| !c.is_control()).take(64).collect()),
            port: int("p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0),
            reqq: int("reqq")
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n > 0),
            extensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_other_clients() {
        let ours = ExtensionHandshake {
            client: Some("swarmfs 0.1.0".into()),
            port: Some(6881),
            reqq: Some(500),
            extensions: HashMap::new(),
        };
        assert_eq!(ExtensionHandshake::decode(&ours.encode()).unwrap(), ours);
        // libtorrent-style, with keys we do not know and extensions we do not speak.
        let theirs = b"d1:md11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei1234e1:pi51413e4:reqqi250e1:v18:libtorrent/2.0.8.06:yourip4:\x7f\x00\x00\x01e";
        let h = ExtensionHandshake::decode(theirs).unwrap();
        assert_eq!(h.client.as_deref(), Some("libtorrent/2.0.8.0"));
        assert_eq!(h.port, Some(51413));
        assert_eq!(h.reqq, Some(250));
        assert_eq!(h.extensions.get("ut_pex"), Some(&1));
    }

    #[test]
    fn odd_values_are_ignored_not_fatal() {
        let h = ExtensionHandshake::decode(b"d1:pi-1e4:reqqi0e1:vi5ee").unwrap();
        assert_eq!(h, ExtensionHandshake::default());
        assert!(ExtensionHandshake::decode(b"li1ee").is_err());
        assert!(ExtensionHandshake::decode(b"d1:v").is_err());
        let long = format!("d1:v{}:{}e", 500, "x\n".repeat(250));
        let h = ExtensionHandshake::decode(long.as_bytes()).unwrap();
        assert_eq!(h.client.unwrap().len(), 64);
    }
}
