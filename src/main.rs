//! The `swarmfs` command: mount a torrent, or inspect, check and make torrents.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::{ArgAction, Args, Parser, Subcommand};
use slog::{debug, info, o, warn, Drain, Logger};

use std::net::{SocketAddr, ToSocketAddrs};

use swarmfs::engine::{Config, Engine, Event};
use swarmfs::metainfo::create::{create, CreateOptions};
use swarmfs::metainfo::{Metainfo, MetainfoError};
use swarmfs::storage::{check, resume, OpenMode, Storage};
use swarmfs::units::{format_size, parse_size};

/// Exit status for a failure (bad input, I/O error, unsupported request).
const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "swarmfs",
    version,
    about = "A BitTorrent client you mount as a FUSE filesystem",
    subcommand_negates_reqs = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// The .torrent file to download and seed.
    #[arg(required = true)]
    torrent: Option<PathBuf>,

    /// Where to mount the control tree.
    #[arg(required = true)]
    mountpoint: Option<PathBuf>,

    #[command(flatten)]
    mount: MountArgs,

    #[command(flatten)]
    verbosity: Verbosity,
}

/// Options of the main job, as flags or as `-o key=value,...` (FUSE style).
#[derive(Args, Default)]
struct MountArgs {
    /// Stay in the foreground (logs on stderr).
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Comma-separated options: data=DIR, port=N, bind=IP, peer=HOST:PORT,
    /// up=RATE, down=RATE, max_peers=N, log=FILE, allow_other, no_trackers, sparse,
    /// and mount(8)'s generic ones (ignored).
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// The data directory (default: the current directory).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Port to accept peers on (default 6881; 0: any free port).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// A peer to connect to (repeatable).
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// Upload limit in bytes/s (k, M, G suffixes).
    #[arg(long, value_name = "RATE", value_parser = parse_size)]
    up: Option<u64>,
    /// Download limit in bytes/s (k, M, G suffixes).
    #[arg(long, value_name = "RATE", value_parser = parse_size)]
    down: Option<u64>,
    /// Let other users use the mount (FUSE allow_other).
    #[arg(long)]
    allow_other: bool,
}

#[derive(Args)]
struct Verbosity {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Mount a self-contained demo swarm: sample content seeded and downloaded
    /// inside this process, no network needed. Stays in the foreground.
    Demo {
        /// Where to mount the downloader's control tree.
        mountpoint: PathBuf,
    },
    /// Show what a .torrent file holds.
    Info { torrent: PathBuf },
    /// Verify data against a torrent and write its resume file.
    /// Exits 0 when the data is complete, 1 when it is not.
    Check {
        torrent: PathBuf,
        /// The data directory (the one that holds the torrent's file or folder).
        #[arg(long, short, value_name = "DIR", default_value = ".")]
        data: PathBuf,
        /// Hashing threads (default: one per core).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
    },
    /// Download (and seed) a torrent without mounting; progress on stdout.
    /// Exits 0 when the download completed, 1 when interrupted before that.
    Download {
        torrent: PathBuf,
        /// The data directory (the one that holds the torrent's file or folder).
        #[arg(long, short, value_name = "DIR", default_value = ".")]
        data: PathBuf,
        /// A peer to connect to, besides the trackers' (repeatable).
        #[arg(long = "peer", value_name = "HOST:PORT")]
        peers: Vec<String>,
        /// Port to accept peers on (0: any free port).
        #[arg(long, default_value_t = 6881)]
        port: u16,
        /// Address to accept peers on (:: takes IPv6 and IPv4).
        #[arg(long, value_name = "IP", default_value = "::")]
        bind: std::net::IpAddr,
        /// Accept no incoming peers.
        #[arg(long)]
        no_listen: bool,
        /// Do not announce to the torrent's trackers.
        #[arg(long)]
        no_trackers: bool,
        /// Leave new data files sparse instead of reserving their space.
        #[arg(long)]
        sparse: bool,
        /// Keep seeding after the download completes, until interrupted.
        #[arg(long)]
        seed: bool,
        /// Upload limit in bytes/s (suffixes k, M, G; 0 = unlimited).
        #[arg(long, value_name = "RATE", value_parser = parse_size, default_value = "0")]
        up: u64,
        /// Download limit in bytes/s (suffixes k, M, G; 0 = unlimited).
        #[arg(long, value_name = "RATE", value_parser = parse_size, default_value = "0")]
        down: u64,
        /// Most peers to be connected to at once.
        #[arg(long, value_name = "N", default_value_t = 50)]
        max_peers: usize,
    },
    /// Make a .torrent of a file or a directory.
    Create {
        /// The file or directory to share.
        path: PathBuf,
        /// Tracker URL; repeat for more tiers, or give a tier as URL,URL.
        #[arg(short = 't', long = "tracker", value_name = "URL")]
        trackers: Vec<String>,
        /// Piece length in bytes, a power of two (suffixes k, M: 256k). Default: automatic.
        #[arg(long, short = 'l', value_name = "BYTES", value_parser = parse_size)]
        piece_length: Option<u64>,
        /// Mark the torrent private (BEP 27): peers only from its trackers.
        #[arg(long)]
        private: bool,
        /// A comment stored in the torrent.
        #[arg(long, short = 'c', value_name = "TEXT")]
        comment: Option<String>,
        /// Where to write the .torrent.
        #[arg(short, long, value_name = "OUT.torrent")]
        output: PathBuf,
        /// Overwrite the output file if it exists.
        #[arg(long, short = 'f')]
        force: bool,
        /// Leave out the creation date, so the same content always gives the same file.
        #[arg(long)]
        no_date: bool,
        /// Hashing threads (default: one per core).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
    },
}

/// A failure to report: what went wrong, already phrased for the user.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.is_none() {
        // The mount forks before any thread exists, so it makes its own logger.
        return match mount_command(&cli) {
            Ok(code) => code,
            Err(Failure(message)) => {
                eprintln!("swarmfs: {message}");
                ExitCode::from(EXIT_ERROR)
            }
        };
    }
    // The demo's instructions should not drown in two engines' logs.
    let verbosity = match (&cli.command, cli.verbosity.verbose, cli.verbosity.quiet) {
        (Some(Command::Demo { .. }), 0, 0) => Verbosity {
            verbose: 0,
            quiet: 1,
        },
        _ => Verbosity {
            verbose: cli.verbosity.verbose,
            quiet: cli.verbosity.quiet,
        },
    };
    let (log, _guard) = logger(&verbosity);
    let result = match cli.command {
        Some(Command::Info { torrent }) => info_command(&torrent),
        Some(Command::Demo { mountpoint }) => demo_command(&log, &mountpoint),
        Some(Command::Check {
            torrent,
            data,
            threads,
        }) => check_command(&log, &torrent, &data, threads),
        Some(Command::Create {
            path,
            trackers,
            piece_length,
            private,
            comment,
            output,
            force,
            no_date,
            threads,
        }) => {
            let options = CreateOptions {
                trackers: trackers
                    .iter()
                    .map(|tier| tier.split(',').map(str::to_owned).collect())
                    .collect(),
                piece_length,
                private,
                comment,
                created_by: Some(format!("swarmfs/{}", env!("CARGO_PKG_VERSION"))),
                creation_date: (!no_date).then(unix_now),
                threads: threads.unwrap_or(0),
                exclude: Some(output.clone()),
            };
            create_command(&log, &path, &output, force, &options)
        }
        Some(Command::Download {
            torrent,
            data,
            peers,
            port,
            bind,
            no_listen,
            no_trackers,
            sparse,
            seed,
            up,
            down,
            max_peers,
        }) => (|| {
            let mut config = Config::new(data);
            config.listen = (!no_listen).then_some(SocketAddr::new(bind, port));
            config.peers = peers
                .iter()
                .map(|p| resolve_peer(p))
                .collect::<Result<_, _>>()?;
            config.use_trackers = !no_trackers;
            config.sparse = sparse;
            config.up_limit = up;
            config.down_limit = down;
            config.max_peers = max_peers;
            download_command(&log, &torrent, config, seed)
        })(),
        None => unreachable!("handled above"),
    };
    match result {
        Ok(code) => code,
        Err(Failure(message)) => {
            drop(_guard);
            eprintln!("swarmfs: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn logger(verbosity: &Verbosity) -> (Logger, slog_async::AsyncGuard) {
    let level = match (verbosity.verbose, verbosity.quiet) {
        (0, 0) => slog::Level::Info,
        (1, _) => slog::Level::Debug,
        (v, _) if v >= 2 => slog::Level::Trace,
        (_, 1) => slog::Level::Warning,
        _ => slog::Level::Error,
    };
    let decorator = slog_term::TermDecorator::new().stderr().build();
    let drain = slog_term::CompactFormat::new(decorator).build().fuse();
    let (drain, guard) = slog_async::Async::new(drain).build_with_guard();
    let drain = slog::LevelFilter::new(drain.fuse(), level).fuse();
    (Logger::root(drain, o!()), guard)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn load(torrent: &Path) -> Result<Metainfo, Failure> {
    Metainfo::from_file(torrent).map_err(|e| match e {
        // These already name the file.
        MetainfoError::Read { .. } | MetainfoError::TooLarge { .. } => Failure(e.to_string()),
        _ => Failure(format!("{}: {e}", torrent.display())),
    })
}

fn info_command(torrent: &Path) -> Result<ExitCode, Failure> {
    let meta = load(torrent)?;
    let mut out = String::new();
    let size = |n: u64| format!("{n} ({})", format_size(n));
    out.push_str(&format!("name: {}\n", meta.name));
    out.push_str(&format!("info-hash: {}\n", meta.info_hash));
    out.push_str(&format!("size: {}\n", size(meta.total_length)));
    out.push_str(&format!("piece-length: {}\n", size(meta.piece_length)));
    out.push_str(&format!("pieces: {}\n", meta.piece_count()));
    out.push_str(&format!(
        "private: {}\n",
        if meta.private { "yes" } else { "no" }
    ));
    if let Some(comment) = &meta.comment {
        out.push_str(&format!("comment: {comment}\n"));
    }
    if let Some(created_by) = &meta.created_by {
        out.push_str(&format!("created-by: {created_by}\n"));
    }
    if let Some(date) = meta.creation_date {
        out.push_str(&format!("creation-date: {date}\n"));
    }
    for (i, tier) in meta.trackers.iter().enumerate() {
        out.push_str(&format!("tier {}: {}\n", i + 1, tier.join(" ")));
    }
    out.push_str(&format!("files: {}\n", meta.files.len()));
    for file in &meta.files {
        out.push_str(&format!(
            "{:>14} {}\n",
            file.length,
            file.relative_path().display()
        ));
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn check_command(
    log: &Logger,
    torrent: &Path,
    data: &Path,
    threads: Option<usize>,
) -> Result<ExitCode, Failure> {
    let meta = load(torrent)?;
    if !data.is_dir() {
        return Err(Failure(format!(
            "data directory {} does not exist or is not a directory",
            data.display()
        )));
    }
    let storage = Storage::open(&meta, data, OpenMode::ReadOnly)?;
    let threads = threads.unwrap_or_else(check::default_threads);
    let count = meta.piece_count();
    let started = Instant::now();
    let reported = AtomicU32::new(0);
    // Progress about every 5%, at info level so -q silences it.
    let progress = |done: u32| {
        let step = (count / 20).max(1);
        let last = reported.load(Ordering::Relaxed);
        if done >= last + step
            && reported
                .compare_exchange(last, done, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            info!(log, "checking"; "pieces" => format!("{done}/{count}"));
        }
    };
    let have = check::verify_pieces(&storage, threads, &|_| true, &progress)?;
    let seconds = started.elapsed().as_secs_f64();
    info!(log, "checked";
        "bytes" => meta.total_length,
        "seconds" => format!("{seconds:.2}"),
        "MiB/s" => format!("{:.0}", meta.total_length as f64 / (1 << 20) as f64 / seconds.max(1e-9)),
        "threads" => threads);

    let resume_path = resume::path_for(data, &meta);
    resume::record(&storage, &meta, &have, &resume_path)?;
    debug!(log, "wrote resume file"; "path" => resume_path.display().to_string());

    let have_count = have.count_ones();
    println!("have {have_count}/{count} pieces");
    if have_count == count as usize {
        return Ok(ExitCode::SUCCESS);
    }
    let layout = storage.layout();
    for (i, file) in meta.files.iter().enumerate() {
        let pieces = layout.pieces_of_file(i);
        let total = pieces.len();
        let good = pieces.filter(|&p| have[p as usize]).count();
        if good < total {
            println!(
                "incomplete {}/{} {}",
                good,
                total,
                file.relative_path().display()
            );
        }
    }
    Ok(ExitCode::from(1))
}

fn create_command(
    log: &Logger,
    path: &Path,
    output: &Path,
    force: bool,
    options: &CreateOptions,
) -> Result<ExitCode, Failure> {
    if output.exists() && !force {
        return Err(Failure(format!(
            "{} exists (use --force to overwrite it)",
            output.display()
        )));
    }
    let started = Instant::now();
    let created = create(path, options, &|_, _| {})
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    for skipped in &created.skipped {
        warn!(log, "left out (not a regular file or directory)"; "path" => skipped.display().to_string());
    }
    std::fs::write(output, &created.bytes)
        .map_err(|e| Failure(format!("cannot write {}: {e}", output.display())))?;
    let meta = &created.meta;
    info!(log, "created";
        "torrent" => output.display().to_string(),
        "files" => meta.files.len(),
        "size" => format_size(meta.total_length),
        "piece-length" => format_size(meta.piece_length),
        "seconds" => format!("{:.2}", started.elapsed().as_secs_f64()));
    println!("{}", meta.info_hash);
    Ok(ExitCode::SUCCESS)
}

/// `HOST:PORT`, with HOST a name or an address (`[::1]:6881` for IPv6).
fn resolve_peer(text: &str) -> Result<SocketAddr, Failure> {
    text.to_socket_addrs()
        .map_err(|e| Failure(format!("peer {text:?}: {e}")))?
        .next()
        .ok_or_else(|| Failure(format!("peer {text:?}: no address")))
}

fn download_command(
    log: &Logger,
    torrent: &Path,
    config: Config,
    seed: bool,
) -> Result<ExitCode, Failure> {
    let meta = load(torrent)?;
    if !config.data_dir.is_dir() {
        return Err(Failure(format!(
            "data directory {} does not exist or is not a directory",
            config.data_dir.display()
        )));
    }
    let engine = Engine::start(meta, config, log.clone())?;
    if let Some(addr) = engine.listen_addr() {
        info!(log, "listening"; "addr" => addr.to_string());
    }
    let handle = engine.handle();
    let mut events = handle.subscribe();
    let completed = engine.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| Failure(e.to_string()))?;
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| Failure(e.to_string()))?;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut done = false;
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
                event = events.recv() => match event {
                    Ok(Event::Done) => {
                        done = true;
                        println!("done");
                        if !seed { break; }
                    }
                    Ok(event) => log_event(log, &event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        debug!(log, "events lost"; "count" => n);
                    }
                    Err(_) => break,
                },
                _ = tick.tick() => {
                    let Some(s) = handle.stats().await else { break };
                    println!(
                        "{} {}/{} pieces, down {}/s, up {}/s, {} peers",
                        s.state.as_str(), s.pieces_have, s.pieces_total,
                        format_size(s.down_rate), format_size(s.up_rate), s.peers
                    );
                    if s.pieces_have == s.pieces_total && !done && s.state.as_str() == "seeding" {
                        // Complete from the start (resume file or check).
                        done = true;
                        println!("done");
                        if !seed { break; }
                    }
                }
            }
        }
        Ok::<bool, Failure>(done)
    })?;
    engine.shutdown();
    Ok(if completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn log_event(log: &Logger, event: &Event) {
    match event {
        Event::TrackerError(e) => warn!(log, "tracker"; "error" => e),
        Event::TrackerWarning(e) => warn!(log, "tracker warning"; "message" => e),
        Event::Error(e) => warn!(log, "error"; "message" => e),
        Event::Banned { addr, reason } => {
            warn!(log, "banned"; "addr" => addr.to_string(), "reason" => reason)
        }
        Event::HashFail { piece, peer } => {
            warn!(log, "hash check failed"; "piece" => piece, "peer" => peer)
        }
        _ => {}
    }
}

fn demo_command(log: &Logger, mountpoint: &Path) -> Result<ExitCode, Failure> {
    let mountpoint = mountpoint
        .canonicalize()
        .map_err(|e| Failure(format!("mount point {}: {e}", mountpoint.display())))?;
    swarmfs::fs::mount::preflight(&mountpoint, log)?;
    let dir = std::env::temp_dir().join(format!("swarmfs-demo-{}", std::process::id()));
    let result = (|| {
        let demo = swarmfs::demo::Demo::new(&dir, log)?;
        let downloader = Engine::start(demo.meta.clone(), demo.downloader_config(), log.clone())?;
        let m = mountpoint.display();
        let served = swarmfs::fs::mount::serve(
            downloader.handle(),
            std::sync::Arc::new(demo.meta.clone()),
            &demo.download_dir,
            &mountpoint,
            &swarmfs::fs::mount::MountOptions {
                allow_other: false,
                fsname: "swarmfs:demo".into(),
            },
            log,
            || {
                println!(
                    "swarmfs demo: {m} is a torrent downloading at {}/s from a second engine in this process.\n\
                     Try, in another terminal:\n\
                     \x20 cat {m}/stats\n\
                     \x20 cat {m}/event              (Ctrl-C to stop reading)\n\
                     \x20 echo 'down 1M' > {m}/ctl\n\
                     \x20 ls {m}/peers; cat {m}/peers/*/state\n\
                     \x20 cat {m}/files/swarmfs-demo/README.txt\n\
                     Stop with Ctrl-C here, echo quit > {m}/ctl, or fusermount3 -u {m}.",
                    format_size(swarmfs::demo::DEMO_RATE)
                );
            },
        );
        downloader.shutdown();
        demo.seeder.shutdown();
        served.map_err(Failure::from)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| ExitCode::SUCCESS)
}

/// Everything the main job needs, from flags and `-o` options.
struct MountSettings {
    config: Config,
    mount: swarmfs::fs::mount::MountOptions,
    log_file: Option<PathBuf>,
}

/// mount(8) passes its generic options through; they mean nothing here.
const GENERIC_MOUNT_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "diratime",
    "nodiratime",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "defaults",
    "nofail",
    "_netdev",
    "async",
    "sync",
    "default_permissions",
];

fn mount_settings(args: &MountArgs, meta: &Metainfo) -> Result<MountSettings, Failure> {
    let mut data = args.data.clone();
    let mut port = args.port;
    let mut bind: std::net::IpAddr = std::net::Ipv6Addr::UNSPECIFIED.into();
    let mut peers = args.peers.clone();
    let (mut up, mut down) = (args.up, args.down);
    let mut allow_other = args.allow_other;
    let mut max_peers = None;
    let mut log_file = None;
    let mut use_trackers = true;
    let mut sparse = false;
    for option in args.options.iter().flat_map(|o| o.split(',')) {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (option.trim(), None),
        };
        let value_of = |what: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Failure(format!("option {key} needs a value ({key}={what})")))
        };
        match key {
            "" => {}
            "data" => data = Some(PathBuf::from(value_of("DIR")?)),
            "port" => {
                port = Some(value_of("N")?.parse().map_err(|_| {
                    Failure(format!("port={}: not a port", value.unwrap_or_default()))
                })?)
            }
            "bind" => {
                bind = value_of("IP")?.parse().map_err(|_| {
                    Failure(format!(
                        "bind={}: not an IP address",
                        value.unwrap_or_default()
                    ))
                })?
            }
            "peer" => peers.push(value_of("HOST:PORT")?.to_owned()),
            "up" => up = Some(parse_size(value_of("RATE")?)?),
            "down" => down = Some(parse_size(value_of("RATE")?)?),
            "max_peers" => {
                max_peers = Some(
                    value_of("N")?
                        .parse()
                        .map_err(|_| Failure("max_peers needs a number".into()))?,
                )
            }
            "log" => log_file = Some(PathBuf::from(value_of("FILE")?)),
            "allow_other" => allow_other = true,
            "no_trackers" => use_trackers = false,
            "sparse" => sparse = true,
            generic if GENERIC_MOUNT_OPTIONS.contains(&generic) => {}
            other => return Err(Failure(format!("unknown option -o {other}"))),
        }
    }
    let data_dir = data.unwrap_or_else(|| PathBuf::from("."));
    if !data_dir.is_dir() {
        return Err(Failure(format!(
            "data directory {} does not exist or is not a directory",
            data_dir.display()
        )));
    }
    // Absolute, because a background swarmfs changes to /.
    let data_dir = data_dir
        .canonicalize()
        .map_err(|e| Failure(format!("data directory {}: {e}", data_dir.display())))?;
    let mut config = Config::new(data_dir);
    config.listen = Some(SocketAddr::new(bind, port.unwrap_or(6881)));
    config.peers = peers
        .iter()
        .map(|p| resolve_peer(p))
        .collect::<Result<_, _>>()?;
    config.up_limit = up.unwrap_or(0);
    config.down_limit = down.unwrap_or(0);
    config.use_trackers = use_trackers;
    config.sparse = sparse;
    if let Some(n) = max_peers {
        config.max_peers = n;
    }
    Ok(MountSettings {
        config,
        mount: swarmfs::fs::mount::MountOptions {
            allow_other,
            fsname: format!("swarmfs:{}", meta.name),
        },
        log_file,
    })
}

/// Where a background swarmfs logs: `-o log=FILE`, or
/// `$XDG_STATE_HOME/swarmfs/NAME.log` (`~/.local/state/swarmfs/NAME.log`).
fn default_log_file(meta: &Metainfo) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    state.join("swarmfs").join(format!("{}.log", meta.name))
}

fn mount_command(cli: &Cli) -> Result<ExitCode, Failure> {
    let (Some(torrent), Some(mountpoint)) = (cli.torrent.as_deref(), cli.mountpoint.as_deref())
    else {
        return Err(Failure(
            "usage: swarmfs TORRENT MOUNTPOINT (see --help)".into(),
        ));
    };
    let meta = load(torrent)?;
    let settings = mount_settings(&cli.mount, &meta)?;
    let mountpoint = mountpoint
        .canonicalize()
        .map_err(|e| Failure(format!("mount point {}: {e}", mountpoint.display())))?;
    if cli.mount.foreground {
        let (log, _guard) = logger(&cli.verbosity);
        swarmfs::fs::mount::preflight(&mountpoint, &log)?;
        run_mount(&log, meta, settings, &mountpoint, || {})?;
        return Ok(ExitCode::SUCCESS);
    }
    let log_file = settings
        .log_file
        .clone()
        .unwrap_or_else(|| default_log_file(&meta));
    daemonize(&log_file, |ready| {
        let (log, _guard) = logger(&cli.verbosity);
        swarmfs::fs::mount::preflight(&mountpoint, &log)?;
        run_mount(&log, meta, settings, &mountpoint, ready)
    })
}

fn run_mount(
    log: &Logger,
    meta: Metainfo,
    settings: MountSettings,
    mountpoint: &Path,
    ready: impl FnOnce(),
) -> Result<(), Failure> {
    let data_dir = settings.config.data_dir.clone();
    let engine = Engine::start(meta.clone(), settings.config, log.clone())?;
    let served = swarmfs::fs::mount::serve(
        engine.handle(),
        std::sync::Arc::new(meta),
        &data_dir,
        mountpoint,
        &settings.mount,
        log,
        ready,
    );
    // Announces `stopped` and writes the resume file, mounted or not.
    engine.shutdown();
    served.map_err(Failure::from)
}

/// Runs `work` in a detached child and returns once it reports the mount
/// ready (exit 0) or failed (its message, exit 1). The fork happens before
/// any thread or runtime starts.
fn daemonize(
    log_file: &Path,
    work: impl FnOnce(Box<dyn FnOnce()>) -> Result<(), Failure>,
) -> Result<ExitCode, Failure> {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    if let Some(dir) = log_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure(format!(
                "cannot create log directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(|e| Failure(format!("cannot open log file {}: {e}", log_file.display())))?;
    let mut fds = [0i32; 2];
    // SAFETY: pipe fills the two descriptors it is given.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(Failure(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: no other thread exists yet (no logger, no runtime), so the
    // child may go on running Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(Failure(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        ))),
        0 => {
            // The child: its own session, stdio off the terminal, logs to the file.
            // SAFETY: plain descriptor calls on descriptors we own.
            let mut status = unsafe {
                libc::close(fds[0]);
                libc::setsid();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&log), 2);
                std::fs::File::from_raw_fd(fds[1])
            };
            let _ = std::env::set_current_dir("/");
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let ready: Box<dyn FnOnce()> = Box::new(move || {
                let _ = tx.send(());
            });
            // Report readiness from a thread so `work` can go on serving.
            let mut reporter = status.try_clone().ok();
            let report = std::thread::spawn(move || {
                if rx.recv().is_ok() {
                    if let Some(f) = reporter.as_mut() {
                        let _ = f.write_all(b"ok\n");
                    }
                }
            });
            let result = work(ready);
            let _ = report.join();
            let code = match result {
                Ok(()) => 0,
                Err(Failure(message)) => {
                    let _ = status.write_all(format!("{message}\n").as_bytes());
                    eprintln!("swarmfs: {message}");
                    1
                }
            };
            drop(status);
            std::process::exit(code);
        }
        _child => {
            // SAFETY: closing our copy of the write end.
            unsafe { libc::close(fds[1]) };
            // SAFETY: the read end is ours alone.
            let mut pipe = unsafe { std::fs::File::from_raw_fd(fds[0]) };
            let mut answer = String::new();
            let mut byte = [0u8; 1];
            // Read up to the first line: "ok", or the child's error message.
            while pipe.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
                answer.push(byte[0] as char);
            }
            if answer == "ok" {
                Ok(ExitCode::SUCCESS)
            } else if answer.is_empty() {
                Err(Failure(format!(
                    "the mount did not come up; see {}",
                    log_file.display()
                )))
            } else {
                Err(Failure(answer))
            }
        }
    }
}
