//! Torrent metainfo (.torrent files, BEP 3 and BEP 12).
//!
//! - [`Metainfo::from_bytes`] loads and validates a .torrent: lava_torrent reads
//!   the fields, [`bencode`] finds the raw `info` bytes for the info-hash and
//!   says where a syntax error is, and this module checks what neither does
//!   (piece count against total length, unsafe paths).
//! - [`create`] makes new torrents from files on disk.
//!
//! File paths are kept as lists of components relative to the data directory,
//! the torrent's name first, so nothing outside the data directory can be
//! named.

pub mod bencode;
pub mod create;

use std::fmt;
use std::path::{Path, PathBuf};

use lava_torrent::bencode::BencodeElem;
use sha1::{Digest, Sha1};

use bencode::get;

/// Piece lengths above this are refused: a piece is hashed in one buffer, and
/// no client makes pieces this large.
pub const MAX_PIECE_LENGTH: u64 = 512 * 1024 * 1024;

/// A .torrent larger than this is refused before it is read into memory.
pub const MAX_TORRENT_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// The SHA-1 of the bencoded info dictionary: a torrent's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    pub fn from_hex(text: &str) -> Option<InfoHash> {
        let bytes = text.as_bytes();
        if bytes.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(InfoHash(out))
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components under the data directory, starting with the torrent's
    /// name. Each is checked by [`check_component`].
    pub path: Vec<String>,
    pub length: u64,
    /// Where the file starts in the torrent's concatenated content.
    pub offset: u64,
}

impl FileEntry {
    /// The file's path relative to the data directory.
    pub fn relative_path(&self) -> PathBuf {
        self.path.iter().collect()
    }
}

/// A validated torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    pub name: String,
    pub piece_length: u64,
    pub piece_hashes: Vec<[u8; 20]>,
    /// In the torrent's order; a single-file torrent has one entry, `[name]`.
    pub files: Vec<FileEntry>,
    /// True when the torrent has a `files` list (content under a directory).
    pub multi_file: bool,
    pub total_length: u64,
    /// Tracker URLs by tier (BEP 12). From `announce-list` when present,
    /// otherwise the single `announce` URL as the one tier.
    pub trackers: Vec<Vec<String>>,
    pub private: bool,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetainfoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes, larger than any .torrent file should be")]
    TooLarge { path: PathBuf, size: u64 },
    #[error(transparent)]
    Syntax(#[from] bencode::SyntaxError),
    #[error("the top-level dictionary has no \"info\" key")]
    NoInfo,
    #[error("{0}")]
    Invalid(String),
    #[error("unsafe file path {path:?}: {why}")]
    UnsafePath { path: String, why: &'static str },
}

fn invalid(message: impl Into<String>) -> MetainfoError {
    MetainfoError::Invalid(message.into())
}

impl Metainfo {
    /// Reads and validates a .torrent file.
    pub fn from_file(path: &Path) -> Result<Metainfo, MetainfoError> {
        let read_error = |source| MetainfoError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > MAX_TORRENT_FILE_SIZE {
            return Err(MetainfoError::TooLarge {
                path: path.to_owned(),
                size,
            });
        }
        let bytes = std::fs::read(path).map_err(read_error)?;
        Metainfo::from_bytes(&bytes)
    }

    /// Validates a .torrent held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let scanned = bencode::scan_torrent(bytes)?;
        let info_span = scanned.info.ok_or(MetainfoError::NoInfo)?;
        let info_hash = InfoHash(Sha1::digest(&bytes[info_span]).into());

        // lava_torrent decodes the canonical copy (it refuses unsorted keys).
        // Its `Torrent` reader is not used: it rejects `pieces` strings that
        // happen to be valid UTF-8, and joins path components before they can
        // be checked ("/etc" would replace the path, "a/b" split in two).
        let mut values =
            BencodeElem::from_bytes(&scanned.canonical).map_err(|e| invalid(e.to_string()))?;
        let top = values.pop().ok_or(MetainfoError::NoInfo)?;
        let info = get(&top, "info").ok_or(MetainfoError::NoInfo)?;
        if !is_dict(info) {
            return Err(invalid("\"info\" is not a dictionary"));
        }

        let name = text(info, "name", "\"info\"")?;
        check_component(&name, &name)?;
        let piece_length = match get(info, "piece length") {
            Some(BencodeElem::Integer(n)) if *n > 0 => *n as u64,
            Some(BencodeElem::Integer(_)) => {
                return Err(invalid("\"piece length\" must be positive"))
            }
            Some(_) => return Err(invalid("\"piece length\" is not an integer")),
            None => return Err(invalid("\"info\" has no \"piece length\"")),
        };
        if piece_length > MAX_PIECE_LENGTH {
            return Err(invalid(format!(
                "\"piece length\" {piece_length} is larger than the {MAX_PIECE_LENGTH} bytes swarmfs supports"
            )));
        }
        let pieces: &[u8] = match get(info, "pieces") {
            Some(BencodeElem::Bytes(b)) => b,
            Some(BencodeElem::String(s)) => s.as_bytes(),
            Some(_) => return Err(invalid("\"pieces\" is not a string")),
            None => return Err(invalid("\"info\" has no \"pieces\"")),
        };
        if pieces.len() % 20 != 0 {
            return Err(invalid(format!(
                "\"pieces\" is {} bytes long, not a multiple of 20",
                pieces.len()
            )));
        }
        let piece_hashes: Vec<[u8; 20]> = pieces
            .chunks_exact(20)
            .map(|c| c.try_into().unwrap_or([0; 20]))
            .collect();

        let (files, multi_file) = match (get(info, "length"), get(info, "files")) {
            (Some(_), Some(_)) => {
                return Err(invalid("\"info\" has both \"length\" and \"files\""))
            }
            (None, None) => return Err(invalid("\"info\" has neither \"length\" nor \"files\"")),
            (Some(length), None) => {
                let length = file_length(length)?;
                let file = FileEntry {
                    path: vec![name.clone()],
                    length,
                    offset: 0,
                };
                (vec![file], false)
            }
            (None, Some(list)) => (file_list(list, &name)?, true),
        };
        let total_length = files.last().map_or(0, |f| f.offset + f.length);
        if total_length == 0 {
            return Err(invalid("the torrent holds no data (total length 0)"));
        }
        check_distinct_paths(&files)?;
        let expected_pieces = total_length.div_ceil(piece_length);
        if piece_hashes.len() as u64 != expected_pieces {
            return Err(invalid(format!(
                "\"pieces\" has {} hashes, but {total_length} bytes in pieces of {piece_length} need {expected_pieces}",
                piece_hashes.len()
            )));
        }
        if expected_pieces > u32::MAX as u64 {
            return Err(invalid("more pieces than a 32-bit index can name"));
        }

        Ok(Metainfo {
            info_hash,
            private: matches!(get(info, "private"), Some(BencodeElem::Integer(1))),
            trackers: trackers(&top)?,
            comment: optional_text(&top, "comment"),
            created_by: optional_text(&top, "created by"),
            creation_date: match get(&top, "creation date") {
                Some(BencodeElem::Integer(n)) => Some(*n),
                _ => None,
            },
            name,
            piece_length,
            piece_hashes,
            files,
            multi_file,
            total_length,
        })
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_hashes.len() as u32
    }

    /// Length of piece `index`: `piece_length`, except for a shorter last piece.
    pub fn piece_size(&self, index: u32) -> u64 {
        let start = index as u64 * self.piece_length;
        (self.total_length - start).min(self.piece_length)
    }
}

fn is_dict(value: &BencodeElem) -> bool {
    matches!(
        value,
        BencodeElem::Dictionary(_) | BencodeElem::RawDictionary(_)
    )
}

fn string_value(value: &BencodeElem, what: &str) -> Result<String, MetainfoError> {
    match value {
        BencodeElem::String(s) => Ok(s.clone()),
        BencodeElem::Bytes(_) => Err(invalid(format!("{what} is not valid UTF-8"))),
        _ => Err(invalid(format!("{what} is not a string"))),
    }
}

/// A required string field of `dict` (called `dict_name` in messages).
fn text(dict: &BencodeElem, key: &str, dict_name: &str) -> Result<String, MetainfoError> {
    let value = get(dict, key).ok_or_else(|| invalid(format!("{dict_name} has no \"{key}\"")))?;
    string_value(value, &format!("\"{key}\""))
}

/// An optional, informational string: ignored when mistyped.
fn optional_text(dict: &BencodeElem, key: &str) -> Option<String> {
    match get(dict, key)? {
        BencodeElem::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn file_length(value: &BencodeElem) -> Result<u64, MetainfoError> {
    match value {
        BencodeElem::Integer(n) if *n >= 0 => Ok(*n as u64),
        BencodeElem::Integer(_) => Err(invalid("a \"length\" is negative")),
        _ => Err(invalid("a \"length\" is not an integer")),
    }
}

fn file_list(list: &BencodeElem, name: &str) -> Result<Vec<FileEntry>, MetainfoError> {
    let BencodeElem::List(list) = list else {
        return Err(invalid("\"files\" is not a list"));
    };
    if list.is_empty() {
        return Err(invalid("\"files\" is an empty list"));
    }
    let mut files = Vec::with_capacity(list.len());
    let mut offset = 0u64;
    for (i, file) in list.iter().enumerate() {
        if !is_dict(file) {
            return Err(invalid(format!("\"files\" entry {i} is not a dictionary")));
        }
        let length = file_length(
            get(file, "length")
                .ok_or_else(|| invalid(format!("\"files\" entry {i} has no \"length\"")))?,
        )?;
        let components = match get(file, "path") {
            Some(BencodeElem::List(c)) if c.is_empty() => {
                return Err(invalid(format!(
                    "\"files\" entry {i} has an empty \"path\""
                )))
            }
            Some(BencodeElem::List(c)) => c,
            Some(_) => {
                return Err(invalid(format!(
                    "\"files\" entry {i}: \"path\" is not a list"
                )))
            }
            None => return Err(invalid(format!("\"files\" entry {i} has no \"path\""))),
        };
        let mut path = vec![name.to_owned()];
        for component in components {
            path.push(string_value(component, "a file path component")?);
        }
        let shown = path[1..].join("/");
        for component in &path[1..] {
            check_component(component, &shown)?;
        }
        files.push(FileEntry {
            path,
            length,
            offset,
        });
        offset = offset
            .checked_add(length)
            .ok_or_else(|| invalid("total length overflows 64 bits"))?;
    }
    Ok(files)
}

/// Tracker tiers: `announce-list` (BEP 12) when it names any URL, else `announce`.
fn trackers(top: &BencodeElem) -> Result<Vec<Vec<String>>, MetainfoError> {
    if let Some(list) = get(top, "announce-list") {
        let BencodeElem::List(tiers) = list else {
            return Err(invalid("\"announce-list\" is not a list"));
        };
        let mut out = Vec::new();
        for tier in tiers {
            let BencodeElem::List(urls) = tier else {
                return Err(invalid("an \"announce-list\" tier is not a list"));
            };
            let urls = urls
                .iter()
                .map(|u| string_value(u, "an \"announce-list\" URL"))
                .collect::<Result<Vec<_>, _>>()?;
            let urls: Vec<String> = urls.into_iter().filter(|u| !u.is_empty()).collect();
            if !urls.is_empty() {
                out.push(urls);
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    match get(top, "announce") {
        None => Ok(Vec::new()),
        Some(url) => {
            let url = string_value(url, "\"announce\"")?;
            Ok(if url.is_empty() {
                Vec::new()
            } else {
                vec![vec![url]]
            })
        }
    }
}

/// Refuses a path component that could name something outside its directory
/// or that no file system can hold.
pub fn check_component(component: &str, whole_path: &str) -> Result<(), MetainfoError> {
    let why = if component.is_empty() {
        Some("empty component")
    } else if component == "." || component == ".." {
        Some("'.' or '..' component")
    } else if component.contains('/') {
        Some("component contains '/'")
    } else if component.contains('\0') {
        Some("component contains a NUL byte")
    } else if component.contains('\\') {
        // A Windows client would read this as a separator; refuse it so the
        // torrent means the same everywhere.
        Some("component contains '\\'")
    } else if component.len() > 255 {
        Some("component longer than 255 bytes")
    } else {
        None
    };
    match why {
        Some(why) => Err(MetainfoError::UnsafePath {
            path: whole_path.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// Two files at one path, or a file that is also another file's directory,
/// would overwrite each other's data.
fn check_distinct_paths(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut paths: Vec<&[String]> = files.iter().map(|f| f.path.as_slice()).collect();
    paths.sort();
    for pair in paths.windows(2) {
        if pair[1].starts_with(pair[0]) {
            return Err(MetainfoError::UnsafePath {
                path: pair[1].join("/"),
                why: "it collides with another file of the torrent",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
