//! The `proxy_protocol` and `proxy_protocol_from` settings as the engine holds them:
//! which header versions are accepted, and which peers must send one.
//!
//! What must hold:
//! - only a peer that [`Sources::allows`] is ever read for a PROXY header, and such a
//!   peer gets no request served without one (`event_loop/proxy_header.rs`); so an
//!   address in a header is believed only from the peers the operator listed;
//! - an IPv4 entry matches an IPv4 peer whether the listening socket shows it as
//!   `1.2.3.4` or, on a dual-stack socket, as `::ffff:1.2.3.4`;
//! - a Unix-socket peer has no address: it is allowed only by the word `unix`, never by
//!   `*` or a network, so that turning the setting on for TCP balancers does not make
//!   a local Unix-socket client (a sidecar, a health check) send a header it does not
//!   know of.

use std::net::IpAddr;

use crate::engine::channel::Peer;
use crate::http::proxy::Accept;

/// What the engine does about the PROXY protocol when it is on.
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    /// The `proxy_protocol` setting: `v1`, `v2` or `auto`.
    pub accept: Accept,
    /// The `proxy_protocol_from` setting.
    pub from: Sources,
}

/// The peers that must start their connections with a PROXY header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// Networks, each an address and a prefix length.
    nets: Vec<(IpAddr, u8)>,
    /// `*`: every IP peer.
    any_ip: bool,
    /// `unix`: the connections to a Unix socket.
    unix: bool,
}

impl Sources {
    /// Reads the entries as `maitre.converters.as_peer_list` writes them: `*`, `unix`,
    /// an address, or a network `ADDRESS/PREFIX` (an address alone is a network of
    /// itself).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Sources, String> {
        let mut sources = Sources::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            match entry {
                "*" => sources.any_ip = true,
                "unix" => sources.unix = true,
                _ => sources.nets.push(parse_net(entry).ok_or_else(|| {
                    format!("{entry:?} is not an IP address, a network (CIDR), '*' or 'unix'")
                })?),
            }
        }
        Ok(sources)
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && !self.any_ip && !self.unix
    }

    /// Whether `peer` must send a PROXY header (and may).
    pub fn allows(&self, peer: &Peer) -> bool {
        match peer.inet_addr() {
            None => self.unix,
            Some(addr) => {
                let ip = addr.ip().to_canonical();
                self.any_ip || self.nets.iter().any(|&(net, len)| contains(net, len, ip))
            }
        }
    }
}

fn parse_net(entry: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match entry.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (entry, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
            len.parse::<u8>().ok().filter(|&l| l <= max)?
        }
        Some(_) => return None,
    };
    // An IPv4-mapped network is its IPv4 network, as peers are compared canonically.
    match addr {
        IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => Some((IpAddr::V4(v4), len - 96)),
            None => Some((addr, len)),
        },
        _ => Some((addr, len)),
    }
}

/// Whether `ip` is in the network `net`/`len`.
fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// The address a header's source is served as: an IPv4 client relayed as a v4-mapped
/// IPv6 address (a dual-stack balancer's `TCP6 ::ffff:1.2.3.4`) is its IPv4 address,
/// as REMOTE_ADDR, the access log and `trusted_proxy` expect.
pub fn canonical(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    std::net::SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> Peer {
        Peer::inet(s.parse().unwrap())
    }

    #[test]
    fn addresses_and_networks() {
        let s = Sources::parse(&["127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32"]).unwrap();
        assert!(s.allows(&peer("127.0.0.1:5")));
        assert!(!s.allows(&peer("127.0.0.2:5")));
        assert!(s.allows(&peer("10.200.1.1:5")));
        assert!(!s.allows(&peer("11.0.0.1:5")));
        assert!(s.allows(&peer("[2001:db8:1::7]:5")));
        assert!(!s.allows(&peer("[2001:db9::7]:5")));
        // A dual-stack socket shows an IPv4 peer mapped.
        assert!(s.allows(&peer("[::ffff:10.1.2.3]:5")));
        assert!(!s.allows(&Peer::Unix));
    }

    #[test]
    fn an_address_alone_is_itself() {
        let s = Sources::parse(&["::1", "192.0.2.7"]).unwrap();
        assert!(s.allows(&peer("[::1]:1")));
        assert!(!s.allows(&peer("[::2]:1")));
        assert!(s.allows(&peer("192.0.2.7:1")));
        assert!(!s.allows(&peer("192.0.2.8:1")));
    }

    #[test]
    fn any_and_unix_are_apart() {
        let any = Sources::parse(&["*"]).unwrap();
        assert!(any.allows(&peer("203.0.113.9:1")));
        assert!(any.allows(&peer("[2001:db8::1]:1")));
        assert!(!any.allows(&Peer::Unix));
        let unix = Sources::parse(&["unix"]).unwrap();
        assert!(unix.allows(&Peer::Unix));
        assert!(!unix.allows(&peer("127.0.0.1:1")));
    }

    #[test]
    fn zero_prefix_and_mapped_networks() {
        let all4 = Sources::parse(&["0.0.0.0/0"]).unwrap();
        assert!(all4.allows(&peer("1.2.3.4:1")));
        assert!(!all4.allows(&peer("[2001:db8::1]:1")));
        let mapped = Sources::parse(&["::ffff:10.0.0.0/104"]).unwrap();
        assert!(mapped.allows(&peer("10.9.9.9:1")));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "::1/129",
            "host",
            "1/x",
        ] {
            assert!(Sources::parse(&[bad]).is_err(), "{bad:?}");
        }
        assert!(Sources::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn mapped_sources_are_served_as_ipv4() {
        assert_eq!(
            canonical("[::ffff:192.0.2.1]:80".parse().unwrap()),
            "192.0.2.1:80".parse().unwrap()
        );
        assert_eq!(
            canonical("[2001:db8::1]:80".parse().unwrap()),
            "[2001:db8::1]:80".parse().unwrap()
        );
    }
}
