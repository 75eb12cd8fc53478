//! `swarmfs demo`: a self-contained swarm for a first look. Sample content
//! is made in a temporary directory, seeded by one engine on 127.0.0.1, and
//! downloaded (rate-limited, so there is something to watch) by a second
//! engine whose control tree is mounted. No network, no other software.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::engine::{Config, Engine};
use crate::metainfo::create::{create, CreateOptions};
use crate::metainfo::Metainfo;

/// Download rate of the demo, so a download takes a few seconds to watch.
pub const DEMO_RATE: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot make the sample content in {path}: {source}")]
    Content {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the sample torrent: {0}")]
    Torrent(#[from] crate::metainfo::create::CreateError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

/// A seeding engine over freshly made sample content.
pub struct Demo {
    pub dir: PathBuf,
    pub meta: Metainfo,
    pub seeder: Engine,
    /// Where the downloader keeps its data.
    pub download_dir: PathBuf,
}

impl Demo {
    /// Makes ~33 MB of sample content under `dir` and starts its seeder.
    pub fn new(dir: &Path, log: &slog::Logger) -> Result<Demo, DemoError> {
        let content = dir.join("seed").join("swarmfs-demo");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DemoError::Content { path, source }
        };
        std::fs::create_dir_all(content.join("more")).map_err(io(&content))?;
        std::fs::write(
            content.join("README.txt"),
            "This file came to you through BitTorrent, from a second engine\n\
             in the same swarmfs process. Try: cat stats, cat event, ls peers.\n",
        )
        .map_err(io(&content))?;
        let numbers: String = (1..=200_000).map(|n| format!("{n}\n")).collect();
        std::fs::write(content.join("numbers.txt"), numbers).map_err(io(&content))?;
        let mut noise =
            std::fs::File::create(content.join("more/noise.bin")).map_err(io(&content))?;
        let mut rng = crate::engine::Xorshift::new(0x9E37_79B9_7F4A_7C15);
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..32 {
            for chunk in block.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
            }
            noise.write_all(&block).map_err(io(&content))?;
        }
        std::fs::File::create(content.join("more/empty")).map_err(io(&content))?;

        let options = CreateOptions {
            piece_length: Some(256 * 1024),
            comment: Some("swarmfs demo".into()),
            ..CreateOptions::default()
        };
        let meta = create(&content, &options, &|_, _| {})?.meta;
        let mut config = Config::new(dir.join("seed"));
        config.listen = Some("127.0.0.1:0".parse().expect("a socket address"));
        config.use_trackers = false;
        let seeder = Engine::start(meta.clone(), config, log.clone())?;
        let download_dir = dir.join("download");
        std::fs::create_dir_all(&download_dir).map_err(io(&download_dir))?;
        Ok(Demo {
            dir: dir.to_owned(),
            meta,
            seeder,
            download_dir,
        })
    }

    /// The downloader's configuration: the seeder as its only peer.
    pub fn downloader_config(&self) -> Config {
        let mut config = Config::new(self.download_dir.clone());
        config.listen = Some("127.0.0.1:0".parse().expect("a socket address"));
        config.peers = self.seeder.listen_addr().into_iter().collect();
        config.use_trackers = false;
        config.down_limit = DEMO_RATE;
        config
    }
}
