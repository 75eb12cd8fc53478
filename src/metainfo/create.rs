//! Making a .torrent from a file or a directory (`swarmfs create`).
//!
//! Directory entries are taken in byte order of their names, so the same tree
//! always gives the same torrent. Hidden files are included (they are content
//! too); symlinks to files are followed, symlinks to directories and special
//! files are left out and reported, so a link loop cannot make the walk endless.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use lava_torrent::bencode::BencodeElem;

use super::{check_component, FileEntry, InfoHash, Metainfo, MetainfoError};
use crate::storage::{check, OpenMode, Storage, StorageError};

/// Smallest and largest piece lengths chosen automatically.
pub const MIN_AUTO_PIECE_LENGTH: u64 = 16 * 1024;
pub const MAX_AUTO_PIECE_LENGTH: u64 = 16 * 1024 * 1024;
/// Automatic piece lengths aim at no more than this many pieces: enough for
/// good swarming, few enough to keep the .torrent small.
pub const TARGET_PIECE_COUNT: u64 = 2000;

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Tracker URLs by tier; the first URL becomes `announce`.
    pub trackers: Vec<Vec<String>>,
    /// `None` picks one from the total size ([`auto_piece_length`]).
    pub piece_length: Option<u64>,
    pub private: bool,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// Hashing threads (0 = one per core).
    pub threads: usize,
    /// A path never to include (the output file, when it lies inside the source).
    pub exclude: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} has no files to share")]
    NoFiles(PathBuf),
    #[error("{0} holds only empty files: a torrent needs at least one byte")]
    NoData(PathBuf),
    #[error("cannot include {path}: {why}")]
    BadName { path: PathBuf, why: String },
    #[error("piece length {0} is not a power of two between 16 KiB and 512 MiB")]
    BadPieceLength(u64),
    #[error("while hashing: {0} (did a file change?)")]
    Hashing(#[from] StorageError),
    #[error("the torrent made is not valid: {0}")]
    Invalid(#[from] MetainfoError),
}

/// A finished torrent: its bytes, as written to the .torrent file, and what
/// they mean.
#[derive(Debug)]
pub struct Created {
    pub bytes: Vec<u8>,
    pub meta: Metainfo,
    /// Entries left out of the walk (directory symlinks, special files).
    pub skipped: Vec<PathBuf>,
}

/// The power of two that gives at most [`TARGET_PIECE_COUNT`] pieces, kept
/// between [`MIN_AUTO_PIECE_LENGTH`] and [`MAX_AUTO_PIECE_LENGTH`].
pub fn auto_piece_length(total: u64) -> u64 {
    let mut length = MIN_AUTO_PIECE_LENGTH;
    while length < MAX_AUTO_PIECE_LENGTH && total.div_ceil(length) > TARGET_PIECE_COUNT {
        length *= 2;
    }
    length
}

/// Makes a torrent of `source` (a file or a directory).
pub fn create(
    source: &Path,
    options: &CreateOptions,
    progress: &(dyn Fn(u32, u32) + Sync),
) -> Result<Created, CreateError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| CreateError::Read { path, source }
    };
    let source = source.canonicalize().map_err(read_error(source))?;
    let metadata = std::fs::metadata(&source).map_err(read_error(&source))?;
    let name = name_of(&source)?;
    let root = source.parent().unwrap_or(Path::new("/")).to_owned();
    let exclude = options.exclude.as_ref().and_then(|p| p.canonicalize().ok());

    let mut skipped = Vec::new();
    let mut relative = Vec::new();
    let multi_file = metadata.is_dir();
    if multi_file {
        walk(
            &source,
            &mut Vec::new(),
            exclude.as_deref(),
            &mut relative,
            &mut skipped,
        )?;
    } else if metadata.is_file() {
        relative.push((Vec::new(), metadata.len()));
    } else {
        return Err(CreateError::NoFiles(source));
    }
    if relative.is_empty() {
        return Err(CreateError::NoFiles(source));
    }

    let mut files = Vec::with_capacity(relative.len());
    let mut offset = 0u64;
    for (components, length) in &relative {
        let mut path = vec![name.clone()];
        path.extend(components.iter().cloned());
        files.push(FileEntry {
            path,
            length: *length,
            offset,
        });
        offset += length;
    }
    let total_length = offset;
    if total_length == 0 {
        return Err(CreateError::NoData(source));
    }
    let piece_length = match options.piece_length {
        Some(n) if n.is_power_of_two() && (16 * 1024..=super::MAX_PIECE_LENGTH).contains(&n) => n,
        Some(n) => return Err(CreateError::BadPieceLength(n)),
        None => auto_piece_length(total_length),
    };

    // Hash through the same storage code that later verifies the download.
    let mut draft = Metainfo {
        info_hash: InfoHash([0; 20]),
        name: name.clone(),
        piece_length,
        piece_hashes: Vec::new(),
        files,
        multi_file,
        total_length,
        trackers: Vec::new(),
        private: options.private,
        comment: None,
        created_by: None,
        creation_date: None,
    };
    let storage = Storage::open(&draft, &root, OpenMode::ReadOnly)?;
    let count = storage.piece_count();
    let threads = match options.threads {
        0 => check::default_threads(),
        n => n,
    };
    draft.piece_hashes = check::hash_pieces(&storage, threads, &|done| progress(done, count))?;

    let bytes = encode(&draft, &relative, options);
    let meta = Metainfo::from_bytes(&bytes)?;
    Ok(Created {
        bytes,
        meta,
        skipped,
    })
}

fn name_of(path: &Path) -> Result<String, CreateError> {
    let bad = |why: &str| CreateError::BadName {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let name = path
        .file_name()
        .ok_or_else(|| bad("it has no name (the root directory?)"))?;
    let name = name.to_str().ok_or_else(|| bad("its name is not UTF-8"))?;
    check_component(name, name).map_err(|e| bad(&e.to_string()))?;
    Ok(name.to_owned())
}

/// Collects the regular files under `dir` as (components below the source,
/// length), in byte order of names at each level.
fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    exclude: Option<&Path>,
    out: &mut Vec<(Vec<String>, u64)>,
    skipped: &mut Vec<PathBuf>,
) -> Result<(), CreateError> {
    let read_error = |source| CreateError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    entries.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
    for entry in entries {
        let path = entry.path();
        if Some(path.as_path()) == exclude {
            continue;
        }
        let file_type = entry.file_type().map_err(read_error)?;
        let followed = if file_type.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Some(m),
                _ => None,
            }
        } else {
            None
        };
        if file_type.is_dir() || file_type.is_file() || followed.is_some() {
            let name = name_of(&path)?;
            prefix.push(name);
            if file_type.is_dir() {
                walk(&path, prefix, exclude, out, skipped)?;
            } else {
                let length = match followed {
                    Some(m) => m.len(),
                    None => entry.metadata().map_err(read_error)?.len(),
                };
                out.push((prefix.clone(), length));
            }
            prefix.pop();
        } else {
            skipped.push(path);
        }
    }
    Ok(())
}

fn string(s: &str) -> BencodeElem {
    BencodeElem::String(s.to_owned())
}

fn encode(meta: &Metainfo, relative: &[(Vec<String>, u64)], options: &CreateOptions) -> Vec<u8> {
    let mut info = HashMap::new();
    info.insert("name".to_owned(), string(&meta.name));
    info.insert(
        "piece length".to_owned(),
        BencodeElem::Integer(meta.piece_length as i64),
    );
    info.insert(
        "pieces".to_owned(),
        BencodeElem::Bytes(meta.piece_hashes.concat()),
    );
    if meta.multi_file {
        let files = relative
            .iter()
            .map(|(components, length)| {
                let mut file = HashMap::new();
                file.insert("length".to_owned(), BencodeElem::Integer(*length as i64));
                file.insert(
                    "path".to_owned(),
                    BencodeElem::List(components.iter().map(|c| string(c)).collect()),
                );
                BencodeElem::Dictionary(file)
            })
            .collect();
        info.insert("files".to_owned(), BencodeElem::List(files));
    } else {
        info.insert(
            "length".to_owned(),
            BencodeElem::Integer(meta.total_length as i64),
        );
    }
    if options.private {
        info.insert("private".to_owned(), BencodeElem::Integer(1));
    }

    let mut top = HashMap::new();
    top.insert("info".to_owned(), BencodeElem::Dictionary(info));
    let tiers: Vec<&Vec<String>> = options.trackers.iter().filter(|t| !t.is_empty()).collect();
    if let Some(first) = tiers.first().and_then(|t| t.first()) {
        top.insert("announce".to_owned(), string(first));
    }
    if tiers.iter().map(|t| t.len()).sum::<usize>() > 1 {
        let list = tiers
            .iter()
            .map(|tier| BencodeElem::List(tier.iter().map(|u| string(u)).collect()))
            .collect();
        top.insert("announce-list".to_owned(), BencodeElem::List(list));
    }
    if let Some(comment) = &options.comment {
        top.insert("comment".to_owned(), string(comment));
    }
    if let Some(created_by) = &options.created_by {
        top.insert("created by".to_owned(), string(created_by));
    }
    if let Some(date) = options.creation_date {
        top.insert("creation date".to_owned(), BencodeElem::Integer(date));
    }
    BencodeElem::Dictionary(top).encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_piece_length_targets_about_2000_pieces() {
        assert_eq!(auto_piece_length(1), 16 * 1024);
        assert_eq!(auto_piece_length(30 << 20), 16 * 1024);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        assert_eq!(auto_piece_length(4 << 30), 4 << 20);
        assert_eq!(auto_piece_length(1 << 50), MAX_AUTO_PIECE_LENGTH);
    }
}
