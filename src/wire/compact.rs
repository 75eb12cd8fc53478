//! Compact peer addresses (BEP 23, BEP 7): 4 bytes of IPv4 or 16 of IPv6,
//! then 2 bytes of port, big-endian. Used by trackers and peer exchange.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn entry_len(v6: bool) -> usize {
    if v6 {
        18
    } else {
        6
    }
}

/// Decodes a run of compact addresses of one family; `None` when the
/// length is not a whole number of entries. Port 0 entries are skipped.
pub fn decode_peers(bytes: &[u8], v6: bool) -> Option<Vec<SocketAddr>> {
    let size = entry_len(v6);
    if bytes.len() % size != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(size)
            .filter_map(|c| {
                let ip: IpAddr = if v6 {
                    Ipv6Addr::from(<[u8; 16]>::try_from(&c[..16]).ok()?).into()
                } else {
                    Ipv4Addr::new(c[0], c[1], c[2], c[3]).into()
                };
                let port = u16::from_be_bytes([c[size - 2], c[size - 1]]);
                (port != 0).then_some(SocketAddr::new(ip, port))
            })
            .collect(),
    )
}

/// Encodes the addresses of one family (the others are left out).
pub fn encode_peers(addrs: &[SocketAddr], v6: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(addrs.len() * entry_len(v6));
    for a in addrs {
        match (a.ip(), v6) {
            (IpAddr::V4(ip), false) => out.extend_from_slice(&ip.octets()),
            (IpAddr::V6(ip), true) => out.extend_from_slice(&ip.octets()),
            _ => continue,
        }
        out.extend_from_slice(&a.port().to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_lengths() {
        let v4: Vec<SocketAddr> = vec!["10.1.2.3:6881".parse().unwrap()];
        let v6: Vec<SocketAddr> = vec!["[2001:db8::2]:80".parse().unwrap()];
        let both: Vec<SocketAddr> = v4.iter().chain(&v6).copied().collect();
        assert_eq!(decode_peers(&encode_peers(&both, false), false), Some(v4));
        assert_eq!(decode_peers(&encode_peers(&both, true), true), Some(v6));
        assert_eq!(decode_peers(&[1, 2, 3, 4, 5], false), None);
        assert_eq!(decode_peers(&[1, 2, 3, 4, 0, 0], false), Some(vec![]));
    }
}
