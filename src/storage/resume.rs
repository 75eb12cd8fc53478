//! The resume file: which pieces are verified, and what the files looked like
//! when that was true. Format: `docs/resume-file.md`.
//!
//! The invariant: a piece is never marked verified in the resume file unless
//! its bytes are durably on disk. [`record`] keeps it by syncing the data
//! before it writes, and by writing to a temporary file that is fsynced and
//! then renamed over the old one, so a crash at any moment leaves either the
//! old or the new resume file, never a mix.
//!
//! A resume file is trusted only when every file's size and modification time
//! still match what it recorded; anything else (no file, a damaged file,
//! another torrent's file, a touched data file) means a full hash check.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::disk::{stamp_of, FileStamp, Storage, StorageError};
use super::Bitfield;
use crate::metainfo::{InfoHash, Metainfo};

const MAGIC: &str = "swarmfs-resume 1";

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("cannot {op} resume file {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("resume file {path} is damaged: {why}")]
    Damaged { path: PathBuf, why: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The contents of a resume file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub info_hash: InfoHash,
    pub have: Bitfield,
    /// One per torrent file, `None` where the file did not exist.
    pub stamps: Vec<Option<FileStamp>>,
}

/// Where the resume file of `meta` lives: beside the data, `NAME.torrent.pieces`.
pub fn path_for(data_dir: &Path, meta: &Metainfo) -> PathBuf {
    data_dir.join(format!("{}.torrent.pieces", meta.name))
}

/// The current stamps of the torrent's files under `data_dir`.
pub fn current_stamps(
    data_dir: &Path,
    meta: &Metainfo,
) -> Result<Vec<Option<FileStamp>>, StorageError> {
    meta.files
        .iter()
        .map(|f| stamp_of(&data_dir.join(f.relative_path())))
        .collect()
}

impl Resume {
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{MAGIC}\ninfo-hash {}\n", self.info_hash);
        let mut bytes = self.have.clone();
        bytes.set_uninitialized(false);
        let bits = crate::hex(bytes.as_raw_slice());
        text.push_str(&format!("pieces {} {bits}\n", self.have.len()));
        text.push_str(&format!("files {}\n", self.stamps.len()));
        for (i, stamp) in self.stamps.iter().enumerate() {
            match stamp {
                Some(s) => text.push_str(&format!("file {i} {} {}\n", s.size, s.mtime_ns)),
                None => text.push_str(&format!("file {i} - -\n")),
            }
        }
        let sum = crate::hex(&Sha1::digest(text.as_bytes()));
        text.push_str(&format!("sha1 {sum}\n"));
        text.into_bytes()
    }

    /// Parses a resume file and checks that it belongs to `meta`.
    pub fn decode(bytes: &[u8], meta: &Metainfo) -> Result<Resume, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let body_end = text
            .rfind("sha1 ")
            .filter(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
            .ok_or("no sha1 line")?;
        let (body, sum_line) = text.split_at(body_end);
        let sum = crate::hex(&Sha1::digest(body.as_bytes()));
        if sum_line != format!("sha1 {sum}\n") {
            return Err("checksum does not match".into());
        }

        let mut lines = body.lines();
        let mut next = |what: &str| lines.next().ok_or_else(|| format!("missing {what} line"));
        if next("first")? != MAGIC {
            return Err(format!("first line is not {MAGIC:?}"));
        }
        let info_hash = next("info-hash")?
            .strip_prefix("info-hash ")
            .and_then(InfoHash::from_hex)
            .ok_or("bad info-hash line")?;
        if info_hash != meta.info_hash {
            return Err(format!("it is for another torrent ({info_hash})"));
        }

        let pieces_line = next("pieces")?;
        let mut words = pieces_line.split(' ');
        let (Some("pieces"), Some(count), Some(hex), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err("bad pieces line".into());
        };
        let count: usize = count.parse().map_err(|_| "bad piece count")?;
        if count != meta.piece_count() as usize {
            return Err(format!(
                "it has {count} pieces, the torrent {}",
                meta.piece_count()
            ));
        }
        if hex.len() != count.div_ceil(8) * 2 {
            return Err("bitfield has the wrong length".into());
        }
        let raw = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| "bitfield is not hex")?;
        let mut have = Bitfield::from_vec(raw);
        if have[count..].any() {
            return Err("bits set past the last piece".into());
        }
        have.truncate(count);

        let files_line = next("files")?;
        let file_count: usize = files_line
            .strip_prefix("files ")
            .and_then(|n| n.parse().ok())
            .ok_or("bad files line")?;
        if file_count != meta.files.len() {
            return Err(format!(
                "it has {file_count} files, the torrent {}",
                meta.files.len()
            ));
        }
        let mut stamps = Vec::with_capacity(file_count);
        for i in 0..file_count {
            let line = next("file")?;
            let words: Vec<&str> = line.split(' ').collect();
            let stamp = match words.as_slice() {
                ["file", n, "-", "-"] if n.parse() == Ok(i) => None,
                ["file", n, size, mtime] if n.parse() == Ok(i) => Some(FileStamp {
                    size: size.parse().map_err(|_| format!("bad size for file {i}"))?,
                    mtime_ns: mtime
                        .parse()
                        .map_err(|_| format!("bad mtime for file {i}"))?,
                }),
                _ => return Err(format!("bad line for file {i}")),
            };
            stamps.push(stamp);
        }
        if lines.next().is_some() {
            return Err("unexpected lines after the file list".into());
        }
        Ok(Resume {
            info_hash,
            have,
            stamps,
        })
    }

    /// Reads the resume file at `path`: `Ok(None)` when there is none.
    pub fn load(path: &Path, meta: &Metainfo) -> Result<Option<Resume>, ResumeError> {
        // A resume file is a few lines plus two hex digits per 8 pieces and one
        // line per file; anything much larger is not ours.
        let limit = 4096 + meta.piece_count() as u64 / 4 + meta.files.len() as u64 * 64;
        let bytes = match read_limited(path, limit) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ResumeError::Io {
                    op: "read",
                    path: path.to_owned(),
                    source: e,
                })
            }
        };
        Resume::decode(&bytes, meta)
            .map(Some)
            .map_err(|why| ResumeError::Damaged {
                path: path.to_owned(),
                why,
            })
    }

    /// Writes the resume file atomically: temp file, fsync, rename, fsync dir.
    pub fn save(&self, path: &Path) -> Result<(), ResumeError> {
        let io_error = |op, source| ResumeError::Io {
            op,
            path: path.to_owned(),
            source,
        };
        let tmp = temp_path(path);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_error("create", e))?;
        file.write_all(&self.encode())
            .map_err(|e| io_error("write", e))?;
        file.sync_all().map_err(|e| io_error("sync", e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| io_error("rename", e))?;
        // The rename itself is durable only once the directory is synced.
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync directory of", e))?;
        Ok(())
    }
}

/// The temporary file a record is written to before the rename: per
/// process, so two programs sharing a data directory never write into each
/// other's half-written record.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "resume file is too large",
        ));
    }
    Ok(bytes)
}

/// Records `have` as the verified pieces of `storage`'s torrent, keeping the
/// invariant: the data is synced before the record that names it is written,
/// and `have` must only hold pieces verified before this call.
pub fn record(
    storage: &Storage,
    meta: &Metainfo,
    have: &Bitfield,
    path: &Path,
) -> Result<(), ResumeError> {
    storage.sync()?;
    let resume = Resume {
        info_hash: meta.info_hash,
        have: have.clone(),
        stamps: storage.stamps()?,
    };
    resume.save(path)
}

/// The verified pieces named by the resume file at `path`, if it can be
/// trusted: it exists, is intact, belongs to `meta`, and every data file under
/// `data_dir` still has the size and mtime it recorded. Otherwise the reason
/// it cannot, for the log.
pub fn trusted_have(data_dir: &Path, meta: &Metainfo, path: &Path) -> Result<Bitfield, String> {
    let resume = match Resume::load(path, meta) {
        Ok(Some(resume)) => resume,
        Ok(None) => return Err(format!("no resume file at {}", path.display())),
        Err(e) => return Err(e.to_string()),
    };
    let now = current_stamps(data_dir, meta).map_err(|e| e.to_string())?;
    let layout = super::Layout::of(meta);
    for (i, (then, now)) in resume.stamps.iter().zip(&now).enumerate() {
        let name = meta.files[i].relative_path();
        if then != now {
            return Err(format!(
                "{} changed since the resume file was written",
                name.display()
            ));
        }
        // A verified piece cannot live in a file that does not exist.
        if now.is_none() && layout.pieces_of_file(i).any(|p| resume.have[p as usize]) {
            return Err(format!(
                "it marks pieces of the missing file {} as verified",
                name.display()
            ));
        }
    }
    Ok(resume.have)
}
