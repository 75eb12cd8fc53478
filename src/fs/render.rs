//! The text of the generated files and of `event` lines: stable,
//! line-oriented, `key value` where it is a record. Documented in
//! `docs/filesystem.md`; change both together.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use crate::engine::{BanInfo, Event, PeerInfo, State, Stats};

/// Makes a message safe for one line.
/// `text` made safe for one line of a control file: newlines become
/// spaces, and other control characters (a terminal escape in a peer's
/// client name, say) are written as `\xNN` / `\u{NNNN}`.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

pub fn stats(s: &Stats) -> String {
    let mut out = String::new();
    let eta = s.eta.map_or("-".to_string(), |e| e.to_string());
    let _ = write!(
        out,
        "name {}\ninfohash {}\nstate {}\nsize {}\nhave {}\npieces {}/{}\ndownloaded {}\nuploaded {}\n\
         down_rate {}\nup_rate {}\npeers {}\nknown {}\neta {}\nup_limit {}\ndown_limit {}\n",
        one_line(&s.name),
        s.info_hash,
        s.state.as_str(),
        s.size,
        s.have,
        s.pieces_have,
        s.pieces_total,
        s.downloaded,
        s.uploaded,
        s.down_rate,
        s.up_rate,
        s.peers,
        s.known,
        eta,
        s.up_limit,
        s.down_limit,
    );
    // Only while downloading is paused by it; the message holds spaces.
    if let Some(error) = &s.disk_error {
        let _ = writeln!(out, "disk_error {}", one_line(error));
    }
    // Last, and the name last on its line: client names hold spaces.
    for (client, count) in &s.clients {
        let _ = writeln!(out, "client {count} {}", one_line(client));
    }
    out
}

/// What reading `ctl` shows: the settings, as commands that restore them.
pub fn ctl(s: &Stats) -> String {
    let run = if s.state == State::Stopped {
        "stop"
    } else {
        "start"
    };
    format!("up {}\ndown {}\n{run}\n", s.up_limit, s.down_limit)
}

fn flag(b: bool) -> u8 {
    b as u8
}

pub fn peer_state(p: &PeerInfo) -> String {
    let fetching = if p.fetching.is_empty() {
        "-".to_string()
    } else {
        p.fetching
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "addr {}\nclient {}\nam_choking {}\nam_interested {}\npeer_choking {}\npeer_interested {}\n\
         down_rate {}\nup_rate {}\ndownloaded {}\nuploaded {}\nhave {}\nrequests {}\nfetching {}\n",
        p.addr,
        one_line(&p.client),
        flag(p.am_choking),
        flag(p.am_interested),
        flag(p.peer_choking),
        flag(p.peer_interested),
        p.down_rate,
        p.up_rate,
        p.downloaded,
        p.uploaded,
        p.have,
        p.requests,
        fetching,
    )
}

pub fn addresses(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| format!("{a}\n")).collect()
}

pub fn bans(bans: &[BanInfo]) -> String {
    bans.iter()
        .map(|b| {
            let until = b
                .until
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{} {} {}\n", b.addr, until, one_line(&b.reason))
        })
        .collect()
}

/// The `event` line for an engine event, with its newline.
pub fn event(e: &Event) -> String {
    let line = match e {
        Event::Checked { have, total } => format!("checked {have}/{total}"),
        Event::Connected { id, addr, .. } => format!("connected {id} {addr}"),
        Event::Disconnected { id, addr, reason } => {
            format!("disconnected {id} {addr} {}", one_line(reason))
        }
        Event::Peers { new } => format!("peers {new}"),
        Event::Piece(n) => format!("piece {n}"),
        Event::HashFail { piece, peer } => format!("hashfail {piece} {peer}"),
        Event::Banned { addr, reason } => format!("banned {addr} {}", one_line(reason)),
        Event::Refused { addr, reason } => format!("refused {addr} {}", one_line(reason)),
        Event::Done => "done".to_string(),
        Event::TrackerError(m) => format!("tracker error {}", one_line(m)),
        Event::TrackerWarning(m) => format!("tracker warning {}", one_line(m)),
        Event::Error(m) => format!("error {}", one_line(m)),
        Event::WritesResumed => "writes resumed".to_string(),
        Event::Stopped => "stopped".to_string(),
        Event::Started => "started".to_string(),
    };
    line + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::InfoHash;

    #[test]
    fn event_lines() {
        let addr: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        assert_eq!(
            event(&Event::Connected {
                id: 3,
                addr,
                client: "x".into()
            }),
            "connected 3 127.0.0.1:6881\n"
        );
        assert_eq!(
            event(&Event::Disconnected {
                id: 3,
                addr,
                reason: "read: reset\nby peer".into()
            }),
            "disconnected 3 127.0.0.1:6881 read: reset by peer\n"
        );
        assert_eq!(event(&Event::Piece(42)), "piece 42\n");
        assert_eq!(
            event(&Event::HashFail { piece: 1, peer: 9 }),
            "hashfail 1 9\n"
        );
        assert_eq!(
            event(&Event::Error("ctl: unknown command".into())),
            "error ctl: unknown command\n"
        );
        assert_eq!(event(&Event::Done), "done\n");
        assert_eq!(
            event(&Event::Error("a\x1b[2Jb\nc\u{85}d\te".into())),
            "error a\\x1b[2Jb c\\u{0085}d\\x09e\n"
        );
    }

    #[test]
    fn stats_and_ctl_text() {
        let s = Stats {
            name: "n".into(),
            info_hash: InfoHash([0xab; 20]),
            state: State::Downloading,
            size: 100,
            have: 40,
            pieces_have: 4,
            pieces_total: 10,
            downloaded: 50,
            uploaded: 7,
            down_rate: 5,
            up_rate: 1,
            peers: 2,
            known: 3,
            eta: None,
            up_limit: 0,
            down_limit: 1024,
            listen: None,
            clients: vec![
                ("libtorrent/2.0.8.0".into(), 2),
                ("Transmission 3.00".into(), 1),
            ],
            disk_error: None,
        };
        let text = stats(&s);
        assert!(text.starts_with("name n\ninfohash abab"));
        assert!(text.contains("\npieces 4/10\n"));
        assert!(text.contains("\neta -\n"));
        assert!(text.ends_with(
            "up_limit 0\ndown_limit 1024\nclient 2 libtorrent/2.0.8.0\nclient 1 Transmission 3.00\n"
        ));
        assert_eq!(ctl(&s), "up 0\ndown 1024\nstart\n");
        let full = Stats {
            disk_error: Some("writing piece 3: No space left on device".into()),
            clients: vec![],
            ..s
        };
        assert!(stats(&full)
            .ends_with("down_limit 1024\ndisk_error writing piece 3: No space left on device\n"));
        assert_eq!(event(&Event::WritesResumed), "writes resumed\n");
    }
}
