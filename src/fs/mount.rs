//! Mounting the control tree and taking it down again.
//!
//! [`serve`] mounts, reports readiness, serves until the mount goes away,
//! and returns. The mount goes away by `fusermount3 -u`/`umount` from
//! outside, or from inside: `quit` on `ctl`, SIGINT or SIGTERM ask the
//! supervisor thread, which first answers every parked read (so no reader
//! keeps the mount busy), then unmounts, detaching lazily if something still
//! holds a file open.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuser::{MountOption, SessionACL};
use slog::{info, warn, Logger};
use tokio_util::sync::CancellationToken;

use super::adapter::SwarmFs;
use crate::engine::EngineHandle;
use crate::metainfo::Metainfo;
use crate::storage::{OpenMode, Storage};

/// FUSE request threads: enough that a slow disk read never holds up `ls`.
const FUSE_THREADS: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// Let other users in (FUSE `allow_other`).
    pub allow_other: bool,
    /// What `mount` and `df` show as the source.
    pub fsname: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount point {0} does not exist or is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot mount on {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the data files: {0}")]
    Data(#[from] crate::storage::StorageError),
    #[error(
        "mount point {0} is busy: something is mounted there already (fusermount3 -u it first)"
    )]
    Busy(PathBuf),
    #[error("/dev/fuse is not available: {0} (is the fuse module loaded, fuse3 installed?)")]
    NoFuse(std::io::Error),
}

/// Checks what can be checked before anything starts: a usable mount point
/// (detaching a stale one left by a killed swarmfs) and /dev/fuse.
pub fn preflight(mountpoint: &Path, log: &Logger) -> Result<(), MountError> {
    match std::fs::metadata(mountpoint) {
        Ok(m) if m.is_dir() => {
            // A mount point sits on another device than its parent (or is /).
            use std::os::unix::fs::MetadataExt;
            let parent = std::fs::metadata(mountpoint.join(".."));
            if parent.is_ok_and(|p| p.dev() != m.dev() || p.ino() == m.ino()) {
                return Err(MountError::Busy(mountpoint.to_owned()));
            }
        }
        Ok(_) => return Err(MountError::NotADirectory(mountpoint.to_owned())),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            warn!(log, "detaching a stale mount"; "path" => mountpoint.display().to_string());
            detach(mountpoint);
        }
        Err(_) => return Err(MountError::NotADirectory(mountpoint.to_owned())),
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(MountError::NoFuse)?;
    Ok(())
}

/// Lazily unmounts `path` (like `fusermount3 -uz`).
pub fn detach(path: &Path) {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a valid NUL-terminated path; umount2 has no other requirements.
    let done = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0;
    if !done {
        // Not root: the setuid helper may do it.
        let _ = std::process::Command::new("fusermount3")
            .arg("-uz")
            .arg(path)
            .status();
    }
}

/// Mounts the tree for `engine` on `mountpoint`, calls `ready` once the mount
/// exists, and serves until it is unmounted. `quit` fires on SIGINT/SIGTERM
/// too. Returns after the mount is gone.
pub fn serve(
    engine: EngineHandle,
    meta: Arc<Metainfo>,
    data_dir: &Path,
    mountpoint: &Path,
    options: &MountOptions,
    log: &Logger,
    ready: impl FnOnce(),
) -> Result<(), MountError> {
    // The engine keeps freshly verified pieces in memory for streaming
    // readers: reads look there first.
    let data = Arc::new(
        Storage::open(&meta, data_dir, OpenMode::ReadOnly)?
            .with_kept_pieces(engine.kept_pieces().clone()),
    );
    let shutdown = CancellationToken::new();
    let (quit_tx, quit_rx) = std::sync::mpsc::channel::<()>();
    let fs = SwarmFs::new(
        engine.clone(),
        meta,
        data,
        shutdown.clone(),
        quit_tx.clone(),
        log.clone(),
    );

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(options.fsname.clone()),
        MountOption::Subtype("swarmfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoSuid,
        MountOption::NoDev,
    ];
    config.acl = if options.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(FUSE_THREADS);
    let mut session =
        fuser::Session::new(fs, mountpoint, &config).map_err(|source| MountError::Mount {
            path: mountpoint.to_owned(),
            source,
        })?;
    info!(log, "mounted"; "path" => mountpoint.display().to_string());
    ready();

    // SIGINT and SIGTERM ask for the same clean exit as `quit`.
    let signals = {
        let quit = quit_tx.clone();
        engine.runtime().spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            let _ = quit.send(());
        })
    };

    let finished = Arc::new(AtomicBool::new(false));
    let mut unmounter = session.unmount_callable();
    let supervisor = {
        let (finished, shutdown, log) = (finished.clone(), shutdown.clone(), log.clone());
        let path = mountpoint.to_owned();
        std::thread::Builder::new()
            .name("swarmfs-supervisor".into())
            .spawn(move || {
                if quit_rx.recv().is_err() || finished.load(Ordering::Acquire) {
                    return;
                }
                info!(log, "unmounting"; "path" => path.display().to_string());
                // Answer parked readers first, so they do not hold the mount busy.
                shutdown.cancel();
                std::thread::sleep(Duration::from_millis(100));
                if let Err(e) = unmounter.unmount() {
                    warn!(log, "unmount failed, detaching"; "error" => e.to_string());
                    detach(&path);
                }
            })
            .ok()
    };

    let result = session.run();
    finished.store(true, Ordering::Release);
    shutdown.cancel();
    signals.abort();
    // Wake the supervisor if it is still waiting; it sees `finished` and leaves.
    let _ = quit_tx.send(());
    if let Some(supervisor) = supervisor {
        let _ = supervisor.join();
    }
    if let Err(e) = result {
        warn!(log, "FUSE session ended with an error"; "error" => e.to_string());
    }
    info!(log, "unmounted"; "path" => mountpoint.display().to_string());
    Ok(())
}
