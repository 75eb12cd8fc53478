//! The `ctl` file's command language: one command per line.
//!
//! ```text
//! up RATE | down RATE        limits in bytes/s (k, M, G suffixes; 0 = none)
//! track                      announce to the trackers now
//! connect HOST:PORT          connect to a peer (HOST: an IP or a name)
//! disconnect ID|IP:PORT      drop a peer
//! stop | start               leave / rejoin the swarm
//! quit                       unmount and exit
//! ```
//!
//! Blank lines and lines starting with `#` are ignored. A write is parsed
//! whole before anything is applied, so a bad line changes nothing.
//! Parsing never touches the network: a host name is looked up later, by
//! the engine, so a slow resolver cannot stall the write (or the mount).

use std::net::SocketAddr;

use crate::engine::PeerSelector;
use crate::units::parse_size;

/// Where `connect` goes: an address, or a name still to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddress {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlCommand {
    Up(u64),
    Down(u64),
    Track,
    Connect(PeerAddress),
    Disconnect(PeerSelector),
    Stop,
    Start,
    Quit,
}

/// Parses every line of `text`; the first bad line is the error.
pub fn parse(text: &str) -> Result<Vec<CtlCommand>, String> {
    let mut commands = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        commands.push(parse_line(line)?);
    }
    Ok(commands)
}

fn parse_line(line: &str) -> Result<CtlCommand, String> {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or_default();
    let argument = words.next();
    if words.next().is_some() {
        return Err(format!("too many words in {line:?}"));
    }
    let need = |what: &str| argument.ok_or_else(|| format!("{verb} needs {what}"));
    let none = |command: CtlCommand| match argument {
        None => Ok(command),
        Some(_) => Err(format!("{verb} takes no argument")),
    };
    match verb {
        "up" => Ok(CtlCommand::Up(
            parse_size(need("a rate")?).map_err(|e| e.to_string())?,
        )),
        "down" => Ok(CtlCommand::Down(
            parse_size(need("a rate")?).map_err(|e| e.to_string())?,
        )),
        "track" => none(CtlCommand::Track),
        "connect" => Ok(CtlCommand::Connect(peer_address(need("HOST:PORT")?)?)),
        "disconnect" => {
            let target = need("a peer ID or HOST:PORT")?;
            match target.parse::<u64>() {
                Ok(id) => Ok(CtlCommand::Disconnect(PeerSelector::Id(id))),
                Err(_) => Ok(CtlCommand::Disconnect(PeerSelector::Addr(
                    target
                        .parse()
                        .map_err(|_| format!("{target:?} is neither a peer ID nor IP:PORT"))?,
                ))),
            }
        }
        "stop" => none(CtlCommand::Stop),
        "start" => none(CtlCommand::Start),
        "quit" => none(CtlCommand::Quit),
        _ => Err(format!("unknown command {verb:?}")),
    }
}

fn peer_address(text: &str) -> Result<PeerAddress, String> {
    if let Ok(addr) = text.parse() {
        return Ok(PeerAddress::Ip(addr));
    }
    let bad = || format!("{text:?} is not HOST:PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    // A DNS name: letters, digits, '-', '.', '_'; at most 253 characters.
    let name_like = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !name_like || port == 0 {
        return Err(bad());
    }
    Ok(PeerAddress::Name {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let text =
            "up 1M\ndown 0\n\n# comment\ntrack\nconnect 127.0.0.1:6881\nconnect [::1]:7000\n\
                    disconnect 12\ndisconnect 10.0.0.1:80\nstop\nstart\nquit\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                CtlCommand::Up(1 << 20),
                CtlCommand::Down(0),
                CtlCommand::Track,
                CtlCommand::Connect(PeerAddress::Ip("127.0.0.1:6881".parse().unwrap())),
                CtlCommand::Connect(PeerAddress::Ip("[::1]:7000".parse().unwrap())),
                CtlCommand::Disconnect(PeerSelector::Id(12)),
                CtlCommand::Disconnect(PeerSelector::Addr("10.0.0.1:80".parse().unwrap())),
                CtlCommand::Stop,
                CtlCommand::Start,
                CtlCommand::Quit,
            ]
        );
        assert_eq!(
            parse("  up   256k  ").unwrap(),
            vec![CtlCommand::Up(256 << 10)]
        );
        assert_eq!(
            parse("connect peer-1.example.org:6881").unwrap(),
            vec![CtlCommand::Connect(PeerAddress::Name {
                host: "peer-1.example.org".into(),
                port: 6881
            })]
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        for (text, needle) in [
            ("bogus", "unknown command \"bogus\""),
            ("up", "up needs a rate"),
            ("up fast", "not a byte count"),
            ("track now", "takes no argument"),
            ("connect nowhere", "not HOST:PORT"),
            ("connect 1.2.3.4", "not HOST:PORT"),
            ("connect a/b:1", "not HOST:PORT"),
            ("connect host:0", "not HOST:PORT"),
            ("disconnect host:1", "neither a peer ID nor IP:PORT"),
            ("disconnect", "needs a peer ID"),
            ("up 1 2", "too many words"),
            ("up 1M\nbogus\n", "unknown command"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
