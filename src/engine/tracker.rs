//! Talking to trackers: HTTP(S) announces (BEP 3, compact peers BEP 23) and
//! the task that announces on schedule.
//!
//! The announce itself is blocking (ureq) and runs on tokio's blocking pool.
//! The task tries the tiers in order, each tier's URLs in order (BEP 12),
//! reports peers and errors to the main loop, and retries failures with
//! exponential backoff; nothing a tracker does stops the torrent.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lava_torrent::bencode::BencodeElem;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metainfo::{bencode, InfoHash};
use crate::wire::compact::decode_peers;

/// Interval to use when a tracker gives none, or an absurd one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);
/// Never announce more often than this, whatever the tracker says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// First retry delay after a failure; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(15);
pub const MAX_BACKOFF: Duration = Duration::from_secs(1800);
/// A tracker that takes longer than this has failed.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(20);
/// Responses larger than this are refused.
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TrackerError {
    #[error("{url}: {message}")]
    Request { url: String, message: String },
    #[error("{url}: tracker says: {reason}")]
    Failure { url: String, reason: String },
    #[error("{url}: bad response: {why}")]
    BadResponse { url: String, why: String },
    #[error("{0}: unsupported tracker protocol")]
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceEvent {
    Started,
    Completed,
    Stopped,
}

impl AnnounceEvent {
    fn as_str(self) -> &'static str {
        match self {
            AnnounceEvent::Started => "started",
            AnnounceEvent::Completed => "completed",
            AnnounceEvent::Stopped => "stopped",
        }
    }
}

/// Transfer totals the announce reports, kept current by the main loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
}

#[derive(Debug, Clone)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub progress: Progress,
    pub event: Option<AnnounceEvent>,
    pub numwant: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    pub peers: Vec<SocketAddr>,
    pub warning: Option<String>,
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The full announce URL for `request` at tracker `base`.
pub fn announce_url(base: &str, request: &AnnounceRequest) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    let p = request.progress;
    let mut url = format!(
        "{base}{separator}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}",
        percent_encode(&request.info_hash.0),
        percent_encode(&request.peer_id),
        request.port,
        p.uploaded,
        p.downloaded,
        p.left,
        request.numwant,
    );
    if let Some(event) = request.event {
        url.push_str("&event=");
        url.push_str(event.as_str());
    }
    url
}

/// The system's CA bundle on Debian and its kin.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The certificates an https:// tracker must chain to, read once: the PEM
/// file named by `SSL_CERT_FILE` (the variable OpenSSL and curl honour),
/// else the system bundle, so local CAs work as they do for other clients,
/// else the Mozilla roots built into the binary.
fn tls_roots() -> &'static ureq::tls::RootCerts {
    static ROOTS: std::sync::OnceLock<ureq::tls::RootCerts> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let path = std::env::var_os("SSL_CERT_FILE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| SYSTEM_CA_BUNDLE.into());
        std::fs::read(&path)
            .ok()
            .and_then(|pem| certificates_in(&pem))
            .unwrap_or(ureq::tls::RootCerts::WebPki)
    })
}

/// The certificates in a PEM file, or None if it holds none.
fn certificates_in(pem: &[u8]) -> Option<ureq::tls::RootCerts> {
    let certs: Vec<_> = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    (!certs.is_empty()).then(|| ureq::tls::RootCerts::new_with_certs(&certs))
}

/// One blocking HTTP(S) announce.
pub fn announce_http(
    base: &str,
    request: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    let url = announce_url(base, request);
    let error = |message: String| TrackerError::Request {
        url: base.to_owned(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(tls_roots().clone())
                .build(),
        )
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("swarmfs/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut response = agent.get(&url).call().map_err(|e| error(e.to_string()))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_vec()
        .map_err(|e| error(e.to_string()))?;
    if !status.is_success() {
        return Err(error(format!("HTTP status {status}")));
    }
    parse_response(&body).map_err(|e| match e {
        ParseError::Failure(reason) => TrackerError::Failure {
            url: base.to_owned(),
            reason,
        },
        ParseError::Bad(why) => TrackerError::BadResponse {
            url: base.to_owned(),
            why,
        },
    })
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The tracker answered with a `failure reason`.
    Failure(String),
    Bad(String),
}

/// Parses a bencoded announce response.
pub fn parse_response(body: &[u8]) -> Result<AnnounceResponse, ParseError> {
    let bad = |why: &str| ParseError::Bad(why.to_owned());
    let scanned = bencode::scan_torrent(body).map_err(|e| ParseError::Bad(e.to_string()))?;
    let mut values =
        BencodeElem::from_bytes(&scanned.canonical).map_err(|e| ParseError::Bad(e.to_string()))?;
    let top = values.pop().ok_or_else(|| bad("empty"))?;
    let get = |key: &str| match &top {
        BencodeElem::Dictionary(d) => d.get(key),
        BencodeElem::RawDictionary(d) => d.get(key.as_bytes()),
        _ => None,
    };
    let text = |value: &BencodeElem| match value {
        BencodeElem::String(s) => Some(s.clone()),
        BencodeElem::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    if let Some(reason) = get("failure reason").and_then(text) {
        return Err(ParseError::Failure(reason));
    }
    let seconds = |key: &str| match get(key) {
        Some(BencodeElem::Integer(n)) if *n > 0 => Some(Duration::from_secs(*n as u64)),
        _ => None,
    };
    let mut peers = Vec::new();
    match get("peers") {
        Some(BencodeElem::Bytes(b)) => peers.extend(
            decode_peers(b, false).ok_or_else(|| bad("compact peers not a multiple of 6 bytes"))?,
        ),
        Some(BencodeElem::String(s)) => peers.extend(
            decode_peers(s.as_bytes(), false)
                .ok_or_else(|| bad("compact peers not a multiple of 6 bytes"))?,
        ),
        Some(BencodeElem::List(list)) => peers.extend(list.iter().filter_map(dictionary_peer)),
        Some(_) => return Err(bad("\"peers\" is neither a string nor a list")),
        None => {}
    }
    match get("peers6") {
        Some(BencodeElem::Bytes(b)) => peers.extend(
            decode_peers(b, true)
                .ok_or_else(|| bad("compact peers6 not a multiple of 18 bytes"))?,
        ),
        Some(BencodeElem::String(s)) => peers.extend(
            decode_peers(s.as_bytes(), true)
                .ok_or_else(|| bad("compact peers6 not a multiple of 18 bytes"))?,
        ),
        _ => {}
    }
    Ok(AnnounceResponse {
        interval: seconds("interval").unwrap_or(DEFAULT_INTERVAL),
        min_interval: seconds("min interval"),
        peers,
        warning: get("warning message").and_then(text),
    })
}

/// A peer in the original (non-compact) form: `{ip, port, peer id}`.
fn dictionary_peer(value: &BencodeElem) -> Option<SocketAddr> {
    let BencodeElem::Dictionary(d) = value else {
        return None;
    };
    let ip: IpAddr = match d.get("ip")? {
        BencodeElem::String(s) => s.parse().ok()?,
        _ => return None,
    };
    let port = match d.get("port")? {
        BencodeElem::Integer(n) if (1..=65535).contains(n) => *n as u16,
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Announces to any supported tracker URL: `http://`, `https://`, `udp://`
/// (HTTP gives up after `timeout`; UDP follows BEP 15's own retry timing).
pub fn announce_any(
    udp: &super::udp_tracker::UdpTrackers,
    url: &str,
    request: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        announce_http(url, request, timeout)
    } else if url.starts_with("udp://") {
        udp.announce(url, request)
    } else {
        Err(TrackerError::Unsupported(url.to_owned()))
    }
}

/// Performs one announce to one tracker URL (blocking).
pub type AnnounceFn =
    Arc<dyn Fn(&str, &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> + Send + Sync>;

/// What the tracker task tells the main loop.
#[derive(Debug)]
pub enum TrackerReport {
    Peers { url: String, peers: Vec<SocketAddr> },
    Warning { url: String, message: String },
    Error(TrackerError),
}

/// What the main loop asks of the tracker task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerCommand {
    /// Announce now (the `track` command), with this event if any.
    Announce(Option<AnnounceEvent>),
}

pub struct TrackerTask {
    pub tiers: Vec<Vec<String>>,
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub progress: watch::Receiver<Progress>,
    pub commands: mpsc::Receiver<TrackerCommand>,
    pub reports: mpsc::Sender<TrackerReport>,
    pub cancel: CancellationToken,
    /// The announce function (HTTP by default; tests can substitute).
    pub announce: AnnounceFn,
    /// The wait after a failed announce; it doubles with each further
    /// failure, up to [`MAX_BACKOFF`].
    pub first_backoff: Duration,
}

impl TrackerTask {
    /// Announces `started`, then on schedule, until cancelled; then `stopped`.
    pub async fn run(mut self) {
        // BEP 12: the URLs of a tier are tried in a random order.
        shuffle_tiers(&mut self.tiers, super::random_u64());
        let mut event = Some(AnnounceEvent::Started);
        let mut backoff = self.first_backoff;
        loop {
            let wait = match self.announce_once(event).await {
                Ok(response) => {
                    backoff = self.first_backoff;
                    event = None;
                    response
                        .interval
                        .max(response.min_interval.unwrap_or(MIN_INTERVAL))
                        .max(MIN_INTERVAL)
                }
                Err(()) => {
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                command = self.commands.recv() => match command {
                    Some(TrackerCommand::Announce(e)) => {
                        // `completed` and `stopped` replace a pending `started`.
                        if e.is_some() { event = e; }
                    }
                    None => break,
                },
            }
        }
        // A polite goodbye, bounded so shutdown never hangs on a dead tracker.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.announce_once(Some(AnnounceEvent::Stopped)),
        )
        .await;
    }

    /// Tries every tracker in tier order until one answers.
    async fn announce_once(
        &mut self,
        event: Option<AnnounceEvent>,
    ) -> Result<AnnounceResponse, ()> {
        let request = AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            port: self.port,
            progress: *self.progress.borrow(),
            event,
            numwant: if event == Some(AnnounceEvent::Stopped) {
                0
            } else {
                200
            },
        };
        for t in 0..self.tiers.len() {
            for u in 0..self.tiers[t].len() {
                let url = self.tiers[t][u].clone();
                let announce = self.announce.clone();
                let (url2, request2) = (url.clone(), request.clone());
                let result = tokio::task::spawn_blocking(move || announce(&url2, &request2))
                    .await
                    .unwrap_or_else(|e| {
                        Err(TrackerError::Request {
                            url: url.clone(),
                            message: e.to_string(),
                        })
                    });
                match result {
                    Ok(response) => {
                        // BEP 12: a tracker that answered moves to the front of its tier.
                        let answered = self.tiers[t].remove(u);
                        self.tiers[t].insert(0, answered);
                        if let Some(message) = &response.warning {
                            let _ = self
                                .reports
                                .send(TrackerReport::Warning {
                                    url: url.clone(),
                                    message: message.clone(),
                                })
                                .await;
                        }
                        let _ = self
                            .reports
                            .send(TrackerReport::Peers {
                                url,
                                peers: response.peers.clone(),
                            })
                            .await;
                        return Ok(response);
                    }
                    Err(e) => {
                        let _ = self.reports.send(TrackerReport::Error(e)).await;
                    }
                }
            }
        }
        Err(())
    }
}

/// Shuffles each tier in place (Fisher-Yates with a xorshift generator).
pub fn shuffle_tiers(tiers: &mut [Vec<String>], seed: u64) {
    let mut rng = super::Xorshift::new(seed);
    for tier in tiers {
        for i in (1..tier.len()).rev() {
            tier.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_file_without_certificates_trusts_nothing_from_it() {
        assert!(certificates_in(b"").is_none());
        assert!(certificates_in(b"not pem at all").is_none());
        let key_only = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
        assert!(certificates_in(key_only).is_none());
    }

    #[test]
    fn tiers_are_shuffled_within_but_never_across() {
        let tiers = vec![
            vec!["a".to_string(), "b".to_string(), "c".to_string()],
            vec!["z".to_string()],
        ];
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let mut t = tiers.clone();
            shuffle_tiers(&mut t, seed);
            let mut sorted = t[0].clone();
            sorted.sort();
            assert_eq!(sorted, tiers[0]);
            assert_eq!(t[1], tiers[1]);
            firsts.insert(t[0][0].clone());
        }
        assert_eq!(firsts.len(), 3, "every URL comes first sometimes");
    }

    #[test]
    fn parses_compact_and_dictionary_peers() {
        let body = b"d8:completei1e10:incompletei2e8:intervali900e12:min intervali60e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e";
        let r = parse_response(body).unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ]
        );
        let dict = b"d8:intervali60e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti7000eed2:ip3:::14:porti7001eed2:ip5:bogus4:porti1eeee";
        let r = parse_response(dict).unwrap();
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:7000".parse().unwrap(),
                "[::1]:7001".parse().unwrap()
            ]
        );
    }

    #[test]
    fn surfaces_failures_and_warnings_and_refuses_garbage() {
        assert_eq!(
            parse_response(b"d14:failure reason9:not founde"),
            Err(ParseError::Failure("not found".into()))
        );
        let r = parse_response(b"d8:intervali60e5:peers0:15:warning message4:slowe").unwrap();
        assert_eq!(r.warning.as_deref(), Some("slow"));
        assert!(matches!(
            parse_response(b"<html>500</html>"),
            Err(ParseError::Bad(_))
        ));
        assert!(matches!(
            parse_response(b"d5:peers5:abcdee"),
            Err(ParseError::Bad(_))
        ));
        assert!(matches!(
            parse_response(b"d5:peersi1ee"),
            Err(ParseError::Bad(_))
        ));
    }

    #[test]
    fn builds_announce_urls_with_binary_fields_escaped() {
        let request = AnnounceRequest {
            info_hash: InfoHash([0xab; 20]),
            peer_id: *b"-SF0010-abc.def~ghi ",
            port: 6881,
            progress: Progress {
                uploaded: 1,
                downloaded: 2,
                left: 3,
            },
            event: Some(AnnounceEvent::Started),
            numwant: 50,
        };
        let url = announce_url("http://t/announce?key=1", &request);
        assert_eq!(
            url,
            format!(
                "http://t/announce?key=1&info_hash={}&peer_id=-SF0010-abc.def~ghi%20&port=6881&uploaded=1&downloaded=2&left=3&compact=1&numwant=50&event=started",
                "%AB".repeat(20)
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_backs_off_on_errors_and_tries_the_next_tier() {
        use std::sync::Mutex;
        type Calls = Vec<(String, Option<AnnounceEvent>)>;
        let calls: Arc<Mutex<Calls>> = Arc::default();
        let seen = calls.clone();
        let (_progress_tx, progress) = watch::channel(Progress::default());
        let (command_tx, commands) = mpsc::channel(4);
        let (reports, mut report_rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let task = TrackerTask {
            tiers: vec![vec!["http://down/a".into()], vec!["http://up/a".into()]],
            info_hash: InfoHash([1; 20]),
            peer_id: [2; 20],
            port: 1,
            progress,
            commands,
            reports,
            cancel: cancel.clone(),
            first_backoff: FIRST_BACKOFF,
            announce: Arc::new(move |url: &str, r: &AnnounceRequest| {
                seen.lock().unwrap().push((url.to_owned(), r.event));
                if url.contains("down") {
                    Err(TrackerError::Request {
                        url: url.into(),
                        message: "refused".into(),
                    })
                } else {
                    Ok(AnnounceResponse {
                        interval: Duration::from_secs(100),
                        min_interval: None,
                        peers: vec!["127.0.0.1:9".parse().unwrap()],
                        warning: None,
                    })
                }
            }),
        };
        let handle = tokio::spawn(task.run());
        assert!(matches!(
            report_rx.recv().await,
            Some(TrackerReport::Error(_))
        ));
        assert!(matches!(
            report_rx.recv().await,
            Some(TrackerReport::Peers { .. })
        ));
        command_tx
            .send(TrackerCommand::Announce(Some(AnnounceEvent::Completed)))
            .await
            .unwrap();
        report_rx.recv().await;
        report_rx.recv().await;
        cancel.cancel();
        handle.await.unwrap();
        let calls = calls.lock().unwrap().clone();
        let events: Vec<Option<AnnounceEvent>> = calls.iter().map(|c| c.1).collect();
        assert_eq!(calls[0].0, "http://down/a");
        assert_eq!(calls[1].0, "http://up/a");
        assert_eq!(
            events[..2],
            [Some(AnnounceEvent::Started), Some(AnnounceEvent::Started)]
        );
        assert_eq!(
            events[2..4],
            [
                Some(AnnounceEvent::Completed),
                Some(AnnounceEvent::Completed)
            ]
        );
        assert_eq!(events.last(), Some(&Some(AnnounceEvent::Stopped)));
    }
}
