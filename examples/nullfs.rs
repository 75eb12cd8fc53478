//! A FUSE filesystem that holds one file, `data`, whose reads are answered
//! from memory the way swarmfs answers a streaming read (direct I/O,
//! 1 MiB `st_blksize`, 4 FUSE threads): the least a read through FUSE
//! can cost on this host. contrib/bench runs a plain download next to a
//! read of it, to show what any FUSE reader takes from a download that
//! shares the cores.
//!
//! Usage: nullfs MOUNTPOINT BYTES [SPAN]
//!
//! Reads are answered from a buffer of SPAN bytes (default 64 MiB, a
//! multiple of 1 MiB), so that, as in a download, the bytes a reply
//! carries are not all in the CPU's cache.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};

const DATA: u64 = 2;
const CHUNK: usize = 1 << 20;
const TTL: Duration = Duration::from_secs(60);

struct NullFs {
    size: u64,
    /// What reads are answered from: byte `i` of the file is
    /// `source[i % source.len()]`.
    source: Vec<u8>,
}

impl NullFs {
    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, perm, size, blksize) = if ino == DATA {
            (FileType::RegularFile, 0o444, self.size, CHUNK as u32)
        } else {
            (FileType::Directory, 0o555, 0, 4096)
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize,
        }
    }
}

impl Filesystem for NullFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == 1 && name == "data" {
            reply.entry(&TTL, &self.attr(DATA), Generation(0))
        } else {
            reply.error(Errno::ENOENT)
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            1 | DATA => reply.attr(&TTL, &self.attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 == DATA {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO)
        } else {
            reply.error(Errno::EISDIR)
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let end = (offset + size as u64).min(self.size);
        let start = (offset % self.source.len() as u64) as usize;
        let len = end.saturating_sub(offset) as usize;
        let len = len.min(self.source.len() - start);
        reply.data(&self.source[start..start + len])
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != 1 {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (1, FileType::Directory, "."),
            (1, FileType::Directory, ".."),
            (DATA, FileType::RegularFile, "data"),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (mountpoint, size, span) = match &args[..] {
        [_, m, size] => (m, size.parse::<u64>()?, 64 << 20),
        [_, m, size, span] => (m, size.parse::<u64>()?, span.parse::<usize>()?),
        _ => return Err("usage: nullfs MOUNTPOINT BYTES [SPAN]".into()),
    };
    if span == 0 || span % CHUNK != 0 {
        return Err("SPAN must be a positive multiple of 1 MiB".into());
    }
    let source = (0..span).map(|i| (i * 7 % 251) as u8).collect();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("nullfs".into()),
        MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(4);
    let session = fuser::Session::new(NullFs { size, source }, mountpoint, &config)?;
    session.run()?;
    Ok(())
}
