//! The UDP tracker protocol (BEP 15): connect, then announce with the
//! connection id, both over one UDP socket, retransmitting after
//! `15 * 2^n` seconds. Blocking, like the HTTP client: the tracker task runs
//! it on tokio's blocking pool.
//!
//! A connection id is reused for its minute of validity. One announce call
//! retries up to [`UdpTrackers::retries`] times (the spec allows up to 8,
//! over an hour); past that the tracker task's own backoff takes over, so a
//! dead tracker never holds up the others for long.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::tracker::{AnnounceEvent, AnnounceRequest, AnnounceResponse, TrackerError};

const PROTOCOL_ID: u64 = 0x417_2710_1980;
const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const ERROR: u32 = 3;
/// How long a connection id may be used (BEP 15).
const CONNECTION_ID_LIFE: Duration = Duration::from_secs(60);

pub struct UdpTrackers {
    /// Connection ids by tracker address, with when they were issued.
    ids: Mutex<HashMap<SocketAddr, (u64, Instant)>>,
    /// The first retransmission timeout (15 s in BEP 15); doubles each time.
    pub base_timeout: Duration,
    /// Retransmissions per request before giving up this announce.
    pub retries: u32,
}

impl Default for UdpTrackers {
    fn default() -> UdpTrackers {
        UdpTrackers {
            ids: Mutex::new(HashMap::new()),
            base_timeout: Duration::from_secs(15),
            retries: 2,
        }
    }
}

fn transaction_id() -> u32 {
    super::random_u64() as u32
}

/// `udp://host:port[/anything]` to a socket address.
pub fn tracker_addr(url: &str) -> Result<SocketAddr, TrackerError> {
    let bad = |message: &str| TrackerError::Request {
        url: url.to_owned(),
        message: message.to_owned(),
    };
    let rest = url
        .strip_prefix("udp://")
        .ok_or_else(|| bad("not a udp:// URL"))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    host_port
        .to_socket_addrs()
        .map_err(|e| bad(&format!("cannot resolve {host_port}: {e}")))?
        .next()
        .ok_or_else(|| bad("no address"))
}

impl UdpTrackers {
    pub fn announce(
        &self,
        url: &str,
        request: &AnnounceRequest,
    ) -> Result<AnnounceResponse, TrackerError> {
        let addr = tracker_addr(url)?;
        let error = |message: String| TrackerError::Request {
            url: url.to_owned(),
            message,
        };
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).map_err(|e| error(format!("socket: {e}")))?;
        socket
            .connect(addr)
            .map_err(|e| error(format!("connect: {e}")))?;

        let cached = self
            .ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
            .filter(|(_, at)| at.elapsed() < CONNECTION_ID_LIFE)
            .map(|(id, _)| *id);
        let connection_id = match cached {
            Some(id) => id,
            None => {
                let tid = transaction_id();
                let mut packet = Vec::with_capacity(16);
                packet.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                packet.extend_from_slice(&CONNECT.to_be_bytes());
                packet.extend_from_slice(&tid.to_be_bytes());
                let reply = self.exchange(&socket, &packet, CONNECT, tid, 16, url)?;
                let id = u64::from_be_bytes(reply[8..16].try_into().expect("16 bytes checked"));
                self.ids
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(addr, (id, Instant::now()));
                id
            }
        };

        let tid = transaction_id();
        let p = request.progress;
        let event: u32 = match request.event {
            None => 0,
            Some(AnnounceEvent::Completed) => 1,
            Some(AnnounceEvent::Started) => 2,
            Some(AnnounceEvent::Stopped) => 3,
        };
        let mut packet = Vec::with_capacity(98);
        packet.extend_from_slice(&connection_id.to_be_bytes());
        packet.extend_from_slice(&ANNOUNCE.to_be_bytes());
        packet.extend_from_slice(&tid.to_be_bytes());
        packet.extend_from_slice(&request.info_hash.0);
        packet.extend_from_slice(&request.peer_id);
        packet.extend_from_slice(&p.downloaded.to_be_bytes());
        packet.extend_from_slice(&p.left.to_be_bytes());
        packet.extend_from_slice(&p.uploaded.to_be_bytes());
        packet.extend_from_slice(&event.to_be_bytes());
        packet.extend_from_slice(&0u32.to_be_bytes()); // IP: the sender's
        packet.extend_from_slice(&tid.rotate_left(16).to_be_bytes()); // key
        packet.extend_from_slice(&(request.numwant as i32).to_be_bytes());
        packet.extend_from_slice(&request.port.to_be_bytes());
        let reply = match self.exchange(&socket, &packet, ANNOUNCE, tid, 20, url) {
            Ok(reply) => reply,
            Err(e) => {
                // The id may have gone stale on the tracker's side: reconnect next time.
                self.ids
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&addr);
                return Err(e);
            }
        };
        Ok(announce_response(&reply, addr.is_ipv6()))
    }

    /// Sends `packet` until a reply with `action` and `tid` (at least `min`
    /// bytes) arrives, retransmitting after 15·2ⁿ s; an error reply ends it.
    fn exchange(
        &self,
        socket: &UdpSocket,
        packet: &[u8],
        action: u32,
        tid: u32,
        min: usize,
        url: &str,
    ) -> Result<Vec<u8>, TrackerError> {
        let mut buf = vec![0u8; 64 * 1024];
        for n in 0..=self.retries {
            let timeout = self.base_timeout * 2u32.pow(n);
            socket.send(packet).map_err(|e| TrackerError::Request {
                url: url.to_owned(),
                message: format!("send: {e}"),
            })?;
            let deadline = Instant::now() + timeout;
            // Read until the right reply or the deadline; others are stale or forged.
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                    break;
                }
                let len = match socket.recv(&mut buf) {
                    Ok(len) => len,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    // ICMP port unreachable and the like: wait out the timeout.
                    Err(_) => {
                        std::thread::sleep(left.min(Duration::from_millis(100)));
                        continue;
                    }
                };
                match judge_reply(&buf[..len], action, tid, min, url) {
                    Some(result) => return result,
                    None => continue,
                }
            }
        }
        Err(TrackerError::Request {
            url: url.to_owned(),
            message: format!("no answer after {} tries", self.retries + 1),
        })
    }
}

/// What a datagram means to a request that waits for `action` with
/// transaction `tid` (replies at least `min` bytes long): `None` when it
/// is not an answer to it (keep waiting), else the reply or the error.
pub fn judge_reply(
    packet: &[u8],
    action: u32,
    tid: u32,
    min: usize,
    url: &str,
) -> Option<Result<Vec<u8>, TrackerError>> {
    let word =
        |i: usize| u32::from_be_bytes([packet[i], packet[i + 1], packet[i + 2], packet[i + 3]]);
    if packet.len() < 8 || word(4) != tid {
        return None;
    }
    Some(match word(0) {
        ERROR => Err(TrackerError::Failure {
            url: url.to_owned(),
            reason: String::from_utf8_lossy(&packet[8..]).into_owned(),
        }),
        a if a == action && packet.len() >= min => Ok(packet.to_vec()),
        _ => Err(TrackerError::BadResponse {
            url: url.to_owned(),
            why: format!("unexpected reply of {} bytes", packet.len()),
        }),
    })
}

/// An announce reply (action, tid, interval, leechers, seeders, then
/// compact peers), at least 20 bytes. Peers come in the address family of
/// the tracker's socket; a trailing partial entry is ignored.
pub fn announce_response(reply: &[u8], v6: bool) -> AnnounceResponse {
    let interval = reply
        .get(8..12)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let size = if v6 { 18 } else { 6 };
    let entries = reply.get(20..).unwrap_or_default();
    let whole = entries.len() / size * size;
    let peers = crate::wire::compact::decode_peers(&entries[..whole], v6).unwrap_or_default();
    AnnounceResponse {
        interval: Duration::from_secs(interval.max(1) as u64),
        min_interval: None,
        peers,
        warning: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tracker::Progress;
    use crate::metainfo::InfoHash;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A scripted UDP tracker: counts connects and announces, drops the first
    /// `drop_first` packets, answers announces with one peer, or an error.
    fn fake_tracker(
        drop_first: usize,
        fail_with: Option<&'static str>,
    ) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let (connects, announces) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, a) = (connects.clone(), announces.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut seen = 0;
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                seen += 1;
                if seen <= drop_first {
                    continue;
                }
                let action = u32::from_be_bytes(buf[8..12].try_into().unwrap());
                let mut reply = Vec::new();
                if len == 16
                    && u64::from_be_bytes(buf[0..8].try_into().unwrap()) == PROTOCOL_ID
                    && action == CONNECT
                {
                    c.fetch_add(1, Ordering::SeqCst);
                    reply.extend_from_slice(&CONNECT.to_be_bytes());
                    reply.extend_from_slice(&buf[12..16]);
                    reply.extend_from_slice(&0xC0FFEEu64.to_be_bytes());
                } else if len == 98
                    && action == ANNOUNCE
                    && u64::from_be_bytes(buf[0..8].try_into().unwrap()) == 0xC0FFEE
                {
                    a.fetch_add(1, Ordering::SeqCst);
                    if let Some(message) = fail_with {
                        reply.extend_from_slice(&ERROR.to_be_bytes());
                        reply.extend_from_slice(&buf[12..16]);
                        reply.extend_from_slice(message.as_bytes());
                    } else {
                        reply.extend_from_slice(&ANNOUNCE.to_be_bytes());
                        reply.extend_from_slice(&buf[12..16]);
                        reply.extend_from_slice(&900u32.to_be_bytes());
                        reply.extend_from_slice(&[0; 8]);
                        reply.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
                    }
                } else {
                    continue;
                }
                let _ = socket.send_to(&reply, from);
            }
        });
        (addr, connects, announces)
    }

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            peer_id: [2; 20],
            port: 6881,
            progress: Progress::default(),
            event: Some(AnnounceEvent::Started),
            numwant: 50,
        }
    }

    fn client() -> UdpTrackers {
        UdpTrackers {
            base_timeout: Duration::from_millis(100),
            ..UdpTrackers::default()
        }
    }

    #[test]
    fn connects_announces_and_reuses_the_connection_id() {
        let (addr, connects, announces) = fake_tracker(0, None);
        let trackers = client();
        let url = format!("udp://{addr}/announce");
        let r = trackers.announce(&url, &request()).unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert_eq!(r.interval, Duration::from_secs(900));
        trackers.announce(&url, &request()).unwrap();
        assert_eq!(
            connects.load(Ordering::SeqCst),
            1,
            "the id is reused within its minute"
        );
        assert_eq!(announces.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn retransmits_lost_packets() {
        let (addr, connects, _) = fake_tracker(2, None);
        let r = client()
            .announce(&format!("udp://{addr}"), &request())
            .unwrap();
        assert_eq!(r.peers.len(), 1);
        assert_eq!(connects.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn error_replies_and_silence_are_errors() {
        let (addr, _, _) = fake_tracker(0, Some("torrent not registered"));
        let err = client()
            .announce(&format!("udp://{addr}"), &request())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("tracker says: torrent not registered"),
            "{err}"
        );

        let (silent, _, _) = fake_tracker(usize::MAX, None);
        let started = Instant::now();
        let err = client()
            .announce(&format!("udp://{silent}"), &request())
            .unwrap_err();
        assert!(err.to_string().contains("no answer after 3 tries"), "{err}");
        // 0.1 + 0.2 + 0.4 s: the 15·2ⁿ schedule, scaled down.
        assert!(
            started.elapsed() >= Duration::from_millis(650),
            "{:?}",
            started.elapsed()
        );
        assert!(tracker_addr("http://x/").is_err());
    }
}
