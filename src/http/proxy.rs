//! The PROXY protocol header (haproxy's `proxy-protocol.txt`, versions 1 and 2) that an
//! L4 load balancer (HAProxy `send-proxy[-v2]`, an AWS NLB, ...) puts in front of the
//! first byte of a connection to say whose connection it relays.
//!
//! Pure protocol code like the rest of `crate::http`: [`parse`] takes the bytes received
//! so far and answers [`Status::Complete`] (how many bytes the header took, and what it
//! says), [`Status::Partial`] (need more) or a [`ProxyError`]. It performs no I/O, keeps
//! no state between calls and allocates nothing, so the engine may call it again on its
//! whole buffer after every read, and it is tested at every byte boundary and fuzzed
//! (`fuzz/fuzz_targets/proxy_header.rs`).
//!
//! What must hold:
//! - **Bounded.** A v1 line is at most [`V1_MAX_LEN`] (107) bytes with its CRLF: 107
//!   bytes without one are an error, never `Partial`. A v2 header is 16 bytes plus its
//!   length field, and a length over [`V2_MAX_BLOCK_LEN`] is refused as soon as the
//!   16 fixed bytes are in. So `Partial` is only ever answered for a buffer shorter than
//!   [`MAX_LEN`]: the engine never has to hold more to get a verdict.
//! - **Decided early.** Bytes that can no longer start an accepted header are an error
//!   at once: a plain HTTP request (or a TLS ClientHello) to a port that expects the
//!   header is refused on its first byte, not after a timeout. Within a v1 line, a field
//!   followed by its space is checked as soon as the space arrives.
//! - **Nothing after the header is consumed.** `consumed` ends exactly at the v1 CRLF or
//!   at `16 + length` for v2; the bytes after it (a TLS ClientHello, an HTTP request)
//!   belong to the connection and may already be in the same buffer.
//! - **Strict where strictness protects** (the spec: "any sequence which does not
//!   exactly match the protocol must be discarded"):
//!   - v1: `PROXY`, the protocol and the four fields separated by exactly one space;
//!     `TCP4` takes dotted quads without leading zeros (the spec forbids them, so `010`
//!     can never be read as octal) and `TCP6` takes IPv6 text only (a family that does
//!     not match its addresses is an error); ports are decimal 0-65535 without leading
//!     zeros; the line ends with CRLF and holds no other CR or LF. `TCP6` accepts what
//!     `inet_ntop` writes, including compressed groups and the `::ffff:1.2.3.4` form of
//!     a v4-mapped address (HAProxy sends that). `UNKNOWN` may be followed by anything
//!     up to the CRLF (after a space), which is ignored as the spec says.
//!   - v2: the version nibble must be 2; the command LOCAL or PROXY; for PROXY the
//!     family must be UNSPEC, INET, INET6 or UNIX and the transport UNSPEC, STREAM or
//!     DGRAM (anything else is "rejected as invalid by receivers"); the length must
//!     cover the addresses of the family; the TLVs after the addresses are skipped but
//!     must tile the rest of the header exactly (none may run past the length field, as
//!     HAProxy checks too), and a `PP2_TYPE_CRC32C` TLV is verified, which the spec
//!     makes a MUST for a receiver that supports it.
//!
//! What a header means ([`ProxyHeader`]):
//! - `Proxied { source, destination }`: a v1 `TCP4`/`TCP6` line, or a v2 PROXY command
//!   over INET/INET6 (STREAM or DGRAM: the addresses and ports are the client's either
//!   way). `source` is the client.
//! - `Local(reason)`: keep the socket's own addresses. That is the v2 LOCAL command (the
//!   balancer's own connection, e.g. its health checks) and v1 `UNKNOWN`, as the spec
//!   says; and also a v2 PROXY command whose addresses are not an IP and port: AF_UNSPEC
//!   or an unspecified transport (the spec lets the receiver use the real endpoints),
//!   and AF_UNIX. For AF_UNIX the client's address is a socket path, usually empty for
//!   a connecting client, which has no REMOTE_ADDR/REMOTE_PORT form; the spec lets a
//!   receiver fall back to UNSPEC for families it does not implement, so the connection
//!   is served with the socket's addresses and [`Local::Unix`] tells the log why.
//!   Refusing it instead would turn a balancer's Unix-socket frontend into an outage for
//!   no gain in safety: the balancer is trusted either way.
//!
//! How the engine uses it (`engine/event_loop/proxy_header.rs`):
//! 1. A connection whose peer is allowed by `proxy_protocol_from` starts in a "PROXY
//!    header" state, before the TLS handshake and before any HTTP parsing: the header is
//!    sent in clear ahead of the ClientHello. After each arrival the engine peeks at
//!    what the socket holds (never more than [`MAX_LEN`] bytes) and calls [`parse`] with
//!    the `proxy_protocol` setting as [`Accept`], under `channel_timeout` (which covers
//!    the header, the handshake and the first request head together; the spec asks
//!    for at least 3 s to cover a TCP retransmit).
//! 2. `Complete`: exactly the first `consumed` bytes are taken from the socket; the
//!    rest stays there for TLS or HTTP to read as the connection's first bytes. `Proxied` sets the connection's peer to
//!    `source`: REMOTE_ADDR/REMOTE_PORT, the access log and the metrics use it for every
//!    request of the keep-alive connection. `Local` keeps the socket's peer.
//! 3. An error, an end of stream or the timer before `Complete`: the connection is
//!    closed without a response (the peer may speak TLS, so no HTTP 400 can be assumed
//!    readable) and one line is logged with the socket's peer and the error's text. No
//!    request is ever served on it.
//! 4. A peer outside `proxy_protocol_from` is never parsed for a header: its bytes are
//!    HTTP (or TLS), and a PROXY header it sends is refused by the HTTP parser (a v2
//!    signature is not a request line, and a v1 line has no valid HTTP version). The
//!    engine may call `parse(buf, Accept::Auto)` on such a refused buffer only to log
//!    that it was a PROXY header from a peer not allowed to send one.
//!
//! How it composes with `trusted_proxy`: the two guard different hops. The address in
//! the PROXY header *becomes* REMOTE_ADDR, and `trusted_proxy` (waitress's
//! proxy-headers logic in `maitre.proxy_headers`) is then checked against that address,
//! exactly as it is against a socket peer without the PROXY protocol. So the
//! `X-Forwarded-*`/`Forwarded` headers are trusted only when the PROXY-reported peer is
//! itself a trusted proxy: an L7 proxy (which adds `X-Forwarded-For`) behind an L4
//! balancer (which adds the PROXY header) is configured with the L4 balancer in
//! `proxy_protocol_from` and the L7 proxy in `trusted_proxy`. A client reaching the
//! balancer directly cannot make its forged `X-Forwarded-For` trusted, because its own
//! address, not the balancer's, is what `trusted_proxy` sees. `proxy_protocol_from`
//! decides who may *send* a header; `trusted_proxy` never trusts a header because of the
//! socket's address once a PROXY header replaced it.

// Everything here runs on untrusted bytes: no indexing that can panic, no unchecked
// arithmetic.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Longest v1 header, CRLF included: `PROXY UNKNOWN` with two full IPv6 addresses and
/// ports (the spec's worst case).
pub const V1_MAX_LEN: usize = 107;

/// The 12 bytes every v2 header starts with. It holds a NUL and cannot start any text
/// protocol, so HTTP and TLS peers are told apart on the first differing byte.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a v2 header: signature, version/command, family/transport, length.
pub const V2_FIXED_LEN: usize = 16;

/// Largest v2 length field (addresses and TLVs) accepted. The field allows 65535; the
/// largest address block is 216 bytes (AF_UNIX), and the TLVs balancers send (ALPN,
/// authority, unique ID, an NLB's endpoint ID, HAProxy's SSL details) fit easily in the
/// rest. The bound is what the engine must buffer per connection before it knows whose
/// connection it is, so it stays small.
pub const V2_MAX_BLOCK_LEN: usize = 4096;

/// Longest v2 header accepted.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + V2_MAX_BLOCK_LEN;

/// The most bytes any accepted header takes: a buffer this long always gets a verdict.
pub const MAX_LEN: usize = V2_MAX_LEN;

const V1_PREFIX: &[u8] = b"PROXY ";

/// v2 commands (the low nibble of the 13th byte).
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;

/// v2 address block sizes by family.
const INET_BLOCK: usize = 12;
const INET6_BLOCK: usize = 36;
const UNIX_BLOCK: usize = 216;

/// The one TLV type read: a CRC32C of the whole header.
const TLV_CRC32C: u8 = 0x03;
const TLV_HEADER_LEN: usize = 3;

/// Which versions a listener accepts (the `proxy_protocol` setting: `v1`, `v2`, `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    V1,
    V2,
    /// Either, told apart by their first byte (`P` or CR).
    Auto,
}

impl Accept {
    fn v1(self) -> bool {
        matches!(self, Accept::V1 | Accept::Auto)
    }

    fn v2(self) -> bool {
        matches!(self, Accept::V2 | Accept::Auto)
    }
}

/// How far [`parse`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A whole header: the first `consumed` bytes of the buffer are the header, nothing
    /// after it was looked at.
    Complete {
        consumed: usize,
        header: ProxyHeader,
    },
    /// Everything so far can start an accepted header; read more.
    Partial,
}

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// Keep the socket's own addresses (see [`Local`] for why).
    Local(Local),
    /// The relayed connection: `source` is the client (REMOTE_ADDR/REMOTE_PORT),
    /// `destination` the address the client connected to.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
}

impl ProxyHeader {
    /// The client's address, when the header gives one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            ProxyHeader::Proxied { source, .. } => Some(*source),
            ProxyHeader::Local(_) => None,
        }
    }
}

/// Why a header leaves the socket's own addresses in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// v2 LOCAL: the balancer's own connection (typically a health check).
    Command,
    /// v1 `UNKNOWN`: the sender could not fill the line.
    Unknown,
    /// v2 PROXY with AF_UNSPEC, or with an unspecified transport: no usable address.
    Unspecified,
    /// v2 PROXY over AF_UNIX: the client's address is a socket path, not an IP and port.
    Unix,
}

/// A header that is not one: the connection must be closed. `Display` gives the text for
/// the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The bytes start neither accepted signature (a plain HTTP request, a ClientHello).
    NotProxy,
    /// A complete signature of the version the listener does not accept (1 or 2).
    VersionNotAccepted(u8),
    /// No CRLF in the first 107 bytes of a v1 line.
    V1TooLong,
    /// A CR or LF in a v1 line other than its final CRLF.
    V1LineEnd,
    /// A v1 protocol other than `TCP4`, `TCP6` or `UNKNOWN`.
    V1Protocol,
    /// Not exactly four fields after the protocol, separated by single spaces.
    V1Fields,
    /// A v1 address that is not valid text for its protocol's family.
    V1Address,
    /// A v1 port that is not a decimal 0-65535 without leading zeros.
    V1Port,
    /// A v2 signature followed by a version other than 2.
    V2Version(u8),
    /// A v2 command other than LOCAL (0) or PROXY (1).
    V2Command(u8),
    /// A v2 PROXY command with an undefined family or transport (the whole byte).
    V2Family(u8),
    /// A v2 length field over [`V2_MAX_BLOCK_LEN`].
    V2TooLong(usize),
    /// A v2 length field shorter than the addresses of its family.
    V2AddressTooShort { family: u8, len: usize },
    /// A v2 TLV that runs past the length field, or a CRC32C TLV not 4 bytes long.
    V2Tlv,
    /// A v2 CRC32C TLV that does not match the header.
    V2Checksum,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxy => {
                f.write_str("no PROXY protocol header at the start of the connection")
            }
            ProxyError::VersionNotAccepted(v) => {
                let other = if *v == 1 { 2 } else { 1 };
                write!(f, "PROXY v{v} header where only v{other} is accepted")
            }
            ProxyError::V1TooLong => {
                write!(f, "PROXY v1 header longer than {V1_MAX_LEN} bytes")
            }
            ProxyError::V1LineEnd => {
                f.write_str("PROXY v1 header with a CR or LF before its final CRLF")
            }
            ProxyError::V1Protocol => f.write_str("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN"),
            ProxyError::V1Fields => f.write_str(
                "PROXY v1 header without exactly four fields separated by single spaces",
            ),
            ProxyError::V1Address => {
                f.write_str("PROXY v1 address is not a valid address of its protocol's family")
            }
            ProxyError::V1Port => {
                f.write_str("PROXY v1 port is not a decimal 0-65535 without leading zeros")
            }
            ProxyError::V2Version(v) => write!(f, "PROXY v2 signature with version {v}, not 2"),
            ProxyError::V2Command(c) => {
                write!(f, "PROXY v2 command {c:#x} is neither LOCAL nor PROXY")
            }
            ProxyError::V2Family(b) => {
                write!(
                    f,
                    "PROXY v2 address family/transport {b:#04x} is not defined"
                )
            }
            ProxyError::V2TooLong(n) => write!(
                f,
                "PROXY v2 header announces {n} bytes of addresses and TLVs, over the \
                 {V2_MAX_BLOCK_LEN} accepted"
            ),
            ProxyError::V2AddressTooShort { family, len } => write!(
                f,
                "PROXY v2 length {len} is shorter than the addresses of family {family:#04x}"
            ),
            ProxyError::V2Tlv => f.write_str("PROXY v2 TLV malformed or past the header length"),
            ProxyError::V2Checksum => f.write_str("PROXY v2 CRC32C checksum does not match"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Parses the PROXY header at the start of `buf` (everything received on the connection
/// so far). See the module header for what is accepted and what each answer means.
pub fn parse(buf: &[u8], accept: Accept) -> Result<Status, ProxyError> {
    if buf.is_empty() {
        return Ok(Status::Partial);
    }
    let v1 = starts_like(buf, V1_PREFIX);
    let v2 = starts_like(buf, &V2_SIGNATURE);
    if v1 && accept.v1() {
        parse_v1(buf)
    } else if v2 && accept.v2() {
        parse_v2(buf)
    } else if v1 && buf.len() >= V1_PREFIX.len() {
        Err(ProxyError::VersionNotAccepted(1))
    } else if v2 && buf.len() >= V2_SIGNATURE.len() {
        Err(ProxyError::VersionNotAccepted(2))
    } else {
        Err(ProxyError::NotProxy)
    }
}

/// Whether `buf` and `prefix` agree on every byte both have.
fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    buf.iter().zip(prefix).all(|(a, b)| a == b)
}

// ------------------------------------------------------------------------------ v1

/// The v1 protocols, each with the token that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp4,
    Tcp6,
    Unknown,
}

const PROTOCOLS: [(&[u8], Proto); 3] = [
    (b"TCP4 ", Proto::Tcp4),
    (b"TCP6 ", Proto::Tcp6),
    (b"UNKNOWN", Proto::Unknown),
];

/// `buf` starts like `PROXY ` (possibly not all of it yet).
fn parse_v1(buf: &[u8]) -> Result<Status, ProxyError> {
    let window = buf.get(..V1_MAX_LEN).unwrap_or(buf);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::V1TooLong);
        }
        // A CR may only be the last byte so far (its LF still to come).
        let before_last = window.get(..window.len().saturating_sub(1)).unwrap_or(&[]);
        if before_last.contains(&b'\r') {
            return Err(ProxyError::V1LineEnd);
        }
        let rest = window.get(V1_PREFIX.len()..).unwrap_or(&[]);
        match rest.strip_suffix(b"\r") {
            // Only an LF may follow: the line is as good as whole.
            Some(line) => parse_v1_line(line).map(drop)?,
            None => check_v1_partial(rest)?,
        }
        return Ok(Status::Partial);
    };
    // The LF must end a CRLF, and there must be no other CR: `lf >= 6` as `PROXY `
    // holds none.
    let line = window
        .get(..lf)
        .and_then(|l| l.strip_suffix(b"\r"))
        .ok_or(ProxyError::V1LineEnd)?;
    let rest = line.get(V1_PREFIX.len()..).unwrap_or(&[]);
    if rest.contains(&b'\r') {
        return Err(ProxyError::V1LineEnd);
    }
    let header = parse_v1_line(rest)?;
    Ok(Status::Complete {
        consumed: lf.saturating_add(1),
        header,
    })
}

/// The protocol token at the start of `rest`, and what follows it.
fn v1_protocol(rest: &[u8]) -> Option<(Proto, &[u8])> {
    PROTOCOLS
        .iter()
        .find_map(|&(token, proto)| rest.strip_prefix(token).map(|tail| (proto, tail)))
}

/// A complete line after `PROXY `, without its CRLF.
fn parse_v1_line(rest: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let (proto, tail) = v1_protocol(rest).ok_or(ProxyError::V1Protocol)?;
    let v6 = match proto {
        // Anything after `UNKNOWN ` is ignored, as the spec says.
        Proto::Unknown if tail.is_empty() || tail.starts_with(b" ") => {
            return Ok(ProxyHeader::Local(Local::Unknown));
        }
        Proto::Unknown => return Err(ProxyError::V1Protocol),
        Proto::Tcp4 => false,
        Proto::Tcp6 => true,
    };
    let mut fields = tail.split(|&b| b == b' ');
    let mut next = || fields.next().filter(|f| !f.is_empty());
    let (Some(src), Some(dst), Some(sport), Some(dport)) = (next(), next(), next(), next()) else {
        return Err(ProxyError::V1Fields);
    };
    if fields.next().is_some() {
        return Err(ProxyError::V1Fields);
    }
    let (source, destination) = if v6 {
        let src = parse_ipv6(src).ok_or(ProxyError::V1Address)?;
        let dst = parse_ipv6(dst).ok_or(ProxyError::V1Address)?;
        let sport = parse_port(sport)?;
        let dport = parse_port(dport)?;
        (
            SocketAddr::V6(SocketAddrV6::new(src, sport, 0, 0)),
            SocketAddr::V6(SocketAddrV6::new(dst, dport, 0, 0)),
        )
    } else {
        let src = parse_ipv4(src).ok_or(ProxyError::V1Address)?;
        let dst = parse_ipv4(dst).ok_or(ProxyError::V1Address)?;
        let sport = parse_port(sport)?;
        let dport = parse_port(dport)?;
        (
            SocketAddr::V4(SocketAddrV4::new(src, sport)),
            SocketAddr::V4(SocketAddrV4::new(dst, dport)),
        )
    };
    Ok(ProxyHeader::Proxied {
        source,
        destination,
    })
}

/// An incomplete line after `PROXY ` (no CRLF yet): an error as soon as no continuation
/// can make it valid. Fields already followed by a space are checked whole; the one
/// being received only for its characters and length.
fn check_v1_partial(rest: &[u8]) -> Result<(), ProxyError> {
    let Some((proto, tail)) = v1_protocol(rest) else {
        // Not a whole token yet: it must still be able to become one.
        return if PROTOCOLS.iter().any(|(token, _)| token.starts_with(rest)) {
            Ok(())
        } else {
            Err(ProxyError::V1Protocol)
        };
    };
    let v6 = match proto {
        Proto::Unknown if tail.is_empty() || tail.starts_with(b" ") => return Ok(()),
        Proto::Unknown => return Err(ProxyError::V1Protocol),
        Proto::Tcp4 => false,
        Proto::Tcp6 => true,
    };
    let count = tail.split(|&b| b == b' ').count();
    for (i, field) in tail.split(|&b| b == b' ').enumerate() {
        let last = i.saturating_add(1) == count;
        let is_address = i < 2;
        if i >= 4 {
            return Err(ProxyError::V1Fields);
        }
        if field.is_empty() {
            if last {
                // The field has not started yet.
                return Ok(());
            }
            return Err(ProxyError::V1Fields);
        }
        if !last {
            match (is_address, v6) {
                (true, false) => parse_ipv4(field).map(drop).ok_or(ProxyError::V1Address)?,
                (true, true) => parse_ipv6(field).map(drop).ok_or(ProxyError::V1Address)?,
                (false, _) => parse_port(field).map(drop)?,
            }
            continue;
        }
        let (fits, error) = match (is_address, v6) {
            (true, false) => (
                field.len() <= 15 && field.iter().all(|&b| b.is_ascii_digit() || b == b'.'),
                ProxyError::V1Address,
            ),
            (true, true) => (
                field.len() <= IPV6_MAX_TEXT && field.iter().all(|&b| is_ipv6_char(b)),
                ProxyError::V1Address,
            ),
            (false, _) => (
                field.len() <= 5
                    && field.iter().all(u8::is_ascii_digit)
                    && !(field.len() > 1 && field.starts_with(b"0")),
                ProxyError::V1Port,
            ),
        };
        if !fits {
            return Err(error);
        }
    }
    Ok(())
}

/// A decimal number without leading zeros, at most `max`.
fn parse_decimal(text: &[u8], max: u32) -> Option<u32> {
    if text.is_empty() || text.len() > 5 || (text.len() > 1 && text.starts_with(b"0")) {
        return None;
    }
    let mut n: u32 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n
            .checked_mul(10)?
            .checked_add(u32::from(b.wrapping_sub(b'0')))?;
    }
    (n <= max).then_some(n)
}

fn parse_port(text: &[u8]) -> Result<u16, ProxyError> {
    parse_decimal(text, u32::from(u16::MAX))
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(ProxyError::V1Port)
}

/// Exactly four decimal octets 0-255 separated by single dots, without leading zeros.
fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut parts = text.split(|&b| b == b'.');
    let mut octets = [0u8; 4];
    for octet in &mut octets {
        *octet = u8::try_from(parse_decimal(parts.next()?, 255)?).ok()?;
    }
    match parts.next() {
        Some(_) => None,
        None => Some(Ipv4Addr::from(octets)),
    }
}

/// Longest IPv6 text accepted: eight groups, or six and a dotted quad
/// (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const IPV6_MAX_TEXT: usize = 45;

fn is_ipv6_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

/// IPv6 text as `inet_ntop` writes it and `inet_pton` reads it: groups of one to four
/// hex digits, at most one `::`, optionally a dotted quad in the last 32 bits. The
/// standard library's parser reads exactly that grammar (no zone, no brackets, no
/// leading zeros in the dotted quad).
fn parse_ipv6(text: &[u8]) -> Option<Ipv6Addr> {
    if text.len() > IPV6_MAX_TEXT || !text.iter().all(|&b| is_ipv6_char(b)) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

// ------------------------------------------------------------------------------ v2

/// `buf` starts like the v2 signature (possibly not all of it yet).
fn parse_v2(buf: &[u8]) -> Result<Status, ProxyError> {
    let Some(&version_command) = buf.get(V2_SIGNATURE.len()) else {
        return Ok(Status::Partial);
    };
    let version = version_command >> 4;
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    let command = version_command & 0x0f;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(ProxyError::V2Command(command));
    }
    let Some(&family) = buf.get(13) else {
        return Ok(Status::Partial);
    };
    // Under LOCAL "the family is ignored"; under PROXY an undefined one is refused.
    if command == CMD_PROXY && (family >> 4 > 3 || family & 0x0f > 2) {
        return Err(ProxyError::V2Family(family));
    }
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(Status::Partial);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX_BLOCK_LEN {
        return Err(ProxyError::V2TooLong(len));
    }
    // The size of the address block, where the family and transport fix it.
    let addresses = match family {
        _ if command == CMD_LOCAL => None,
        0x00 => Some(0),
        0x11 | 0x12 => Some(INET_BLOCK),
        0x21 | 0x22 => Some(INET6_BLOCK),
        0x31 | 0x32 => Some(UNIX_BLOCK),
        _ => None,
    };
    if addresses.is_some_and(|need| len < need) {
        return Err(ProxyError::V2AddressTooShort { family, len });
    }
    let consumed = V2_FIXED_LEN.saturating_add(len);
    let Some(header) = buf.get(..consumed) else {
        return Ok(Status::Partial);
    };
    let block = header.get(V2_FIXED_LEN..).unwrap_or(&[]);
    if command == CMD_LOCAL {
        // "discard the protocol block including the family": nothing in it is used.
        return Ok(Status::Complete {
            consumed,
            header: ProxyHeader::Local(Local::Command),
        });
    }
    if let Some(size) = addresses {
        check_tlvs(header, V2_FIXED_LEN.saturating_add(size))?;
    }
    let header = match family {
        0x11 | 0x12 => {
            let ip = |at: usize| Ipv4Addr::from(array::<4>(block, at));
            let port = |at: usize| u16::from_be_bytes(array::<2>(block, at));
            ProxyHeader::Proxied {
                source: SocketAddr::V4(SocketAddrV4::new(ip(0), port(8))),
                destination: SocketAddr::V4(SocketAddrV4::new(ip(4), port(10))),
            }
        }
        0x21 | 0x22 => {
            let ip = |at: usize| Ipv6Addr::from(array::<16>(block, at));
            let port = |at: usize| u16::from_be_bytes(array::<2>(block, at));
            ProxyHeader::Proxied {
                source: SocketAddr::V6(SocketAddrV6::new(ip(0), port(32), 0, 0)),
                destination: SocketAddr::V6(SocketAddrV6::new(ip(16), port(34), 0, 0)),
            }
        }
        0x31 | 0x32 => ProxyHeader::Local(Local::Unix),
        _ => ProxyHeader::Local(Local::Unspecified),
    };
    Ok(Status::Complete { consumed, header })
}

/// `N` bytes of `block` at `at`; the caller has checked the block is long enough (zeros
/// otherwise, never a panic).
fn array<const N: usize>(block: &[u8], at: usize) -> [u8; N] {
    block
        .get(at..at.saturating_add(N))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

/// Walks the TLVs from `start` to the end of `header`: each must fit, and a CRC32C TLV
/// must match the header.
fn check_tlvs(header: &[u8], start: usize) -> Result<(), ProxyError> {
    let mut at = start;
    while at < header.len() {
        let tlv = header.get(at..).unwrap_or(&[]);
        let (Some(&kind), Some(&hi), Some(&lo)) = (tlv.first(), tlv.get(1), tlv.get(2)) else {
            return Err(ProxyError::V2Tlv);
        };
        let value_len = usize::from(u16::from_be_bytes([hi, lo]));
        let value_at = at.saturating_add(TLV_HEADER_LEN);
        let end = value_at.saturating_add(value_len);
        if end > header.len() {
            return Err(ProxyError::V2Tlv);
        }
        if kind == TLV_CRC32C {
            if value_len != 4 {
                return Err(ProxyError::V2Tlv);
            }
            let want = u32::from_be_bytes(array::<4>(header, value_at));
            // The checksum is computed with its own field zeroed.
            let before = header.get(..value_at).unwrap_or(&[]);
            let after = header.get(end..).unwrap_or(&[]);
            let crc = !crc32c(crc32c(crc32c(!0, before), &[0; 4]), after);
            if crc != want {
                return Err(ProxyError::V2Checksum);
            }
        }
        at = end;
    }
    Ok(())
}

/// CRC32C (Castagnoli, reflected) over `bytes`, continuing from `crc` (start with `!0`,
/// finish with `!`). Bitwise: it runs only for a header that carries the TLV, at most
/// once per connection, on at most [`V2_MAX_LEN`] bytes.
fn crc32c(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82f6_3b78 & mask);
        }
    }
    crc
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn complete(buf: &[u8], accept: Accept) -> (usize, ProxyHeader) {
        match parse(buf, accept) {
            Ok(Status::Complete { consumed, header }) => (consumed, header),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn error(buf: &[u8], accept: Accept) -> ProxyError {
        match parse(buf, accept) {
            Err(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(source: &str, destination: &str) -> ProxyHeader {
        ProxyHeader::Proxied {
            source: addr(source),
            destination: addr(destination),
        }
    }

    /// Feeds `buf` one byte at a time: `Partial` for every proper prefix of the header,
    /// then the same verdict as the whole buffer, whatever follows.
    fn byte_by_byte(header: &[u8], accept: Accept) -> ProxyHeader {
        let (consumed, want) = complete(header, accept);
        assert_eq!(consumed, header.len());
        for k in 0..header.len() {
            assert_eq!(
                parse(&header[..k], accept),
                Ok(Status::Partial),
                "prefix of {k} bytes"
            );
        }
        let mut more = header.to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(complete(&more, accept), (consumed, want));
        want
    }

    /// A v2 header from its parts; the length field is computed.
    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn inet_block() -> Vec<u8> {
        let mut b = vec![192, 168, 0, 1, 192, 168, 0, 11];
        b.extend_from_slice(&56324u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    fn inet6_block() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut b = src.octets().to_vec();
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&1234u16.to_be_bytes());
        b.extend_from_slice(&80u16.to_be_bytes());
        b
    }

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut t = vec![kind];
        t.extend_from_slice(&(value.len() as u16).to_be_bytes());
        t.extend_from_slice(value);
        t
    }

    /// Fills in the CRC32C TLV (the last 4 bytes of `header`).
    fn seal(mut header: Vec<u8>) -> Vec<u8> {
        let n = header.len();
        header[n - 4..].fill(0);
        let crc = !crc32c(!0, &header);
        header[n - 4..].copy_from_slice(&crc.to_be_bytes());
        header
    }

    // --------------------------------------------------------------- v1 examples

    #[test]
    fn v1_spec_examples() {
        let cases: [(&[u8], ProxyHeader); 6] = [
            (
                b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
                proxied("192.168.0.1:56324", "192.168.0.11:443"),
            ),
            (
                b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
                proxied("255.255.255.255:65535", "255.255.255.255:65535"),
            ),
            (
                b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                  ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
                proxied(
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                ),
            ),
            (b"PROXY UNKNOWN\r\n", ProxyHeader::Local(Local::Unknown)),
            (
                b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                  ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
                ProxyHeader::Local(Local::Unknown),
            ),
            (
                b"PROXY TCP6 2001:db8::1 ::1 0 8080\r\n",
                proxied("[2001:db8::1]:0", "[::1]:8080"),
            ),
        ];
        for (line, want) in cases {
            for accept in [Accept::V1, Accept::Auto] {
                assert_eq!(byte_by_byte(line, accept), want);
            }
        }
    }

    #[test]
    fn v1_worst_case_is_exactly_107_bytes() {
        let line = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                     ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(line.len(), V1_MAX_LEN);
        assert_eq!(complete(line, Accept::V1).0, 107);
        // One byte more before the CRLF, and the line is refused once 107 bytes are in.
        let mut long = line.to_vec();
        long.insert(20, b'f');
        assert_eq!(error(&long, Accept::V1), ProxyError::V1TooLong);
        assert_eq!(error(&long[..107], Accept::V1), ProxyError::V1TooLong);
        assert_eq!(parse(&long[..106], Accept::V1), Ok(Status::Partial));
    }

    #[test]
    fn v1_without_crlf_in_107_bytes_is_refused() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(106, b'x');
        assert_eq!(parse(&line, Accept::V1), Ok(Status::Partial));
        line.push(b'x');
        assert_eq!(error(&line, Accept::V1), ProxyError::V1TooLong);
        // A CR as the 107th byte: its LF would be the 108th.
        line[106] = b'\r';
        assert_eq!(error(&line, Accept::V1), ProxyError::V1TooLong);
        line.push(b'\n');
        assert_eq!(error(&line, Accept::V1), ProxyError::V1TooLong);
        // Ending at byte 107 is fine.
        line.truncate(105);
        line.extend_from_slice(b"\r\n");
        assert_eq!(complete(&line, Accept::V1).0, 107);
    }

    #[test]
    fn v1_bytes_after_the_header_are_not_consumed() {
        let line = b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n";
        let mut buf = line.to_vec();
        buf.extend_from_slice(b"PROXY TCP4 10.0.0.3 10.0.0.4 3 4\r\nGET / HTTP/1.1\r\n");
        assert_eq!(
            complete(&buf, Accept::Auto),
            (line.len(), proxied("10.0.0.1:1", "10.0.0.2:2"))
        );
        // A CRLF or a v2 signature right behind it belongs to what follows.
        let mut buf = line.to_vec();
        buf.extend_from_slice(&V2_SIGNATURE);
        assert_eq!(complete(&buf, Accept::Auto).0, line.len());
    }

    #[test]
    fn v1_ipv4_syntax() {
        let good = [
            ("0.0.0.0", "0.0.0.0"),
            ("1.2.3.4", "1.2.3.4"),
            ("10.20.30.40", "10.20.30.40"),
            ("100.200.250.255", "100.200.250.255"),
        ];
        for (text, want) in good {
            let line = format!("PROXY TCP4 {text} {text} 1 2\r\n");
            let (_, header) = complete(line.as_bytes(), Accept::V1);
            assert_eq!(header.source(), Some(addr(&format!("{want}:1"))));
        }
        let bad = [
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.00",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4a",
            "+1.2.3.4",
            "0x1.2.3.4",
            "::1",
            "1.2.3.1000",
            "1.2.3.-1",
        ];
        for text in bad {
            let line = format!("PROXY TCP4 {text} 1.2.3.4 1 2\r\n");
            assert_eq!(
                error(line.as_bytes(), Accept::V1),
                ProxyError::V1Address,
                "{text}"
            );
            let line = format!("PROXY TCP4 1.2.3.4 {text} 1 2\r\n");
            assert_eq!(
                error(line.as_bytes(), Accept::V1),
                ProxyError::V1Address,
                "{text}"
            );
        }
    }

    #[test]
    fn v1_ipv6_syntax() {
        let good = [
            ("::", "::"),
            ("::1", "::1"),
            ("2001:DB8::Ab", "2001:db8::ab"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("0001:0002:0003:0004:0005:0006:0007:0008", "1:2:3:4:5:6:7:8"),
            ("1::", "1::"),
            ("::ffff:192.168.0.1", "::ffff:c0a8:1"),
            ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
        ];
        for (text, want) in good {
            let line = format!("PROXY TCP6 {text} ::1 1 2\r\n");
            let (_, header) = complete(line.as_bytes(), Accept::V1);
            assert_eq!(
                header.source(),
                Some(addr(&format!("[{want}]:1"))),
                "{text}"
            );
        }
        let bad = [
            "1.2.3.4",
            ":::",
            "1::2::3",
            "12345::1",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            "::g",
            "[::1]",
            "fe80::1%eth0",
            "::ffff:01.2.3.4",
            "::ffff:1.2.3",
            ":1",
            "1:",
        ];
        for text in bad {
            let line = format!("PROXY TCP6 {text} ::1 1 2\r\n");
            assert_eq!(
                error(line.as_bytes(), Accept::V1),
                ProxyError::V1Address,
                "{text}"
            );
        }
    }

    #[test]
    fn v1_family_must_match_addresses() {
        assert_eq!(
            error(b"PROXY TCP4 ::1 ::1 1 2\r\n", Accept::V1),
            ProxyError::V1Address
        );
        assert_eq!(
            error(b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", Accept::V1),
            ProxyError::V1Address
        );
        assert_eq!(
            error(b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", Accept::V1),
            ProxyError::V1Address
        );
    }

    #[test]
    fn v1_ports() {
        for (text, port) in [("0", 0), ("1", 1), ("80", 80), ("65535", 65535)] {
            let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {text} {text}\r\n");
            let (_, header) = complete(line.as_bytes(), Accept::V1);
            assert_eq!(header.source().unwrap().port(), port);
        }
        for text in [
            "65536", "99999", "100000", "00", "080", "-1", "+1", "1a", "0x50",
        ] {
            let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {text} 1\r\n");
            assert_eq!(
                error(line.as_bytes(), Accept::V1),
                ProxyError::V1Port,
                "{text}"
            );
            let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 1 {text}\r\n");
            assert_eq!(
                error(line.as_bytes(), Accept::V1),
                ProxyError::V1Port,
                "{text}"
            );
        }
    }

    #[test]
    fn v1_separators_are_single_spaces() {
        let bad: [&[u8]; 9] = [
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
            b"PROXY TCP4 \r\n",
            b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        ];
        for line in bad {
            let e = error(line, Accept::V1);
            assert!(
                matches!(e, ProxyError::V1Fields | ProxyError::V1Address),
                "{:?}: {e:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            error(b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Accept::V1),
            ProxyError::V1Protocol
        );
        assert_eq!(
            error(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Accept::V1),
            ProxyError::V1Fields
        );
    }

    #[test]
    fn v1_protocols() {
        for line in [
            &b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"[..],
            b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4\r\n",
            b"PROXY UNKNOWNX\r\n",
            b"PROXY UNKNOWN\t\r\n",
            b"PROXY \r\n",
            b"PROXY UNKNOW\r\n",
        ] {
            assert_eq!(
                error(line, Accept::V1),
                ProxyError::V1Protocol,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // Whatever follows `UNKNOWN ` is ignored, garbage included.
        assert_eq!(
            complete(b"PROXY UNKNOWN what ever\x01\xff\r\n", Accept::V1),
            (27, ProxyHeader::Local(Local::Unknown))
        );
        assert_eq!(
            complete(b"PROXY UNKNOWN \r\n", Accept::V1),
            (16, ProxyHeader::Local(Local::Unknown))
        );
    }

    #[test]
    fn v1_line_ends_only_with_crlf() {
        for line in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
            b"PROXY UNKNOWN a\rb\r\n",
            b"PROXY UNKNOWN a\nb\r\n",
            b"PROXY \n",
            b"PROXY \r\r",
        ] {
            assert_eq!(
                error(line, Accept::V1),
                ProxyError::V1LineEnd,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // A CR as the last byte so far may still get its LF.
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", Accept::V1),
            Ok(Status::Partial)
        );
    }

    #[test]
    fn v1_refused_as_soon_as_it_cannot_be_valid() {
        let cases: [(&[u8], ProxyError); 10] = [
            (b"PROXY X", ProxyError::V1Protocol),
            (b"PROXY TCP4x", ProxyError::V1Protocol),
            (b"PROXY UNKNOWNx", ProxyError::V1Protocol),
            (b"PROXY TCP4 1.2.3.x", ProxyError::V1Address),
            (b"PROXY TCP4 1234567890123456", ProxyError::V1Address),
            (b"PROXY TCP4 01.2.3.4 ", ProxyError::V1Address),
            (b"PROXY TCP6 1.2.3.4 ", ProxyError::V1Address),
            (b"PROXY TCP6 ::g", ProxyError::V1Address),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01", ProxyError::V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", ProxyError::V1Fields),
        ];
        for (buf, want) in cases {
            assert_eq!(
                error(buf, Accept::V1),
                want,
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
        assert_eq!(
            error(b"PROXY TCP4 1.2.3.4  ", Accept::V1),
            ProxyError::V1Fields
        );
        assert_eq!(
            error(b"PROXY TCP4 1.2.3.4 5.6.7.8 123456", Accept::V1),
            ProxyError::V1Port
        );
    }

    // --------------------------------------------------------------- v2 examples

    #[test]
    fn v2_proxy_inet_and_inet6() {
        for family in [0x11, 0x12] {
            let h = v2(1, family, &inet_block());
            assert_eq!(h.len(), 28);
            for accept in [Accept::V2, Accept::Auto] {
                assert_eq!(
                    byte_by_byte(&h, accept),
                    proxied("192.168.0.1:56324", "192.168.0.11:443")
                );
            }
        }
        for family in [0x21, 0x22] {
            let h = v2(1, family, &inet6_block());
            assert_eq!(h.len(), 52);
            for accept in [Accept::V2, Accept::Auto] {
                assert_eq!(
                    byte_by_byte(&h, accept),
                    proxied("[2001:db8::1]:1234", "[2001:db8::2]:80")
                );
            }
        }
    }

    #[test]
    fn v2_local_keeps_the_socket_address() {
        // HAProxy's health checks: LOCAL, UNSPEC, no addresses.
        let h = v2(0, 0x00, &[]);
        assert_eq!(
            byte_by_byte(&h, Accept::V2),
            ProxyHeader::Local(Local::Command)
        );
        assert_eq!(
            byte_by_byte(&h, Accept::Auto),
            ProxyHeader::Local(Local::Command)
        );
        // The length is honoured under LOCAL too, and the family ignored, even an
        // undefined one.
        for family in [0x11, 0x21, 0xff] {
            let h = v2(0, family, &inet_block());
            assert_eq!(
                byte_by_byte(&h, Accept::V2),
                ProxyHeader::Local(Local::Command)
            );
        }
        let mut h = v2(0, 0x00, &tlv(0x04, b"pad"));
        h.extend_from_slice(b"GET /");
        assert_eq!(complete(&h, Accept::V2).0, 22);
    }

    #[test]
    fn v2_unspec_and_unix_keep_the_socket_address() {
        assert_eq!(
            byte_by_byte(&v2(1, 0x00, &[]), Accept::V2),
            ProxyHeader::Local(Local::Unspecified)
        );
        let unix = vec![0u8; UNIX_BLOCK];
        for family in [0x31, 0x32] {
            assert_eq!(
                byte_by_byte(&v2(1, family, &unix), Accept::V2),
                ProxyHeader::Local(Local::Unix)
            );
        }
        // Valid nibbles in combinations without a fixed address block: the addresses
        // are ignored, as the spec allows for an unspecified family or transport.
        for family in [0x01, 0x02, 0x10, 0x20, 0x30] {
            assert_eq!(
                byte_by_byte(&v2(1, family, &inet_block()), Accept::V2),
                ProxyHeader::Local(Local::Unspecified),
                "{family:#x}"
            );
        }
    }

    #[test]
    fn v2_address_block_must_fit_its_family() {
        for (family, need) in [(0x11, 12), (0x21, 36), (0x31, 216)] {
            let block = vec![0u8; need - 1];
            let h = v2(1, family, &block);
            assert_eq!(
                error(&h[..16], Accept::V2),
                ProxyError::V2AddressTooShort {
                    family,
                    len: need - 1
                }
            );
        }
    }

    #[test]
    fn v2_tlvs_are_skipped_within_the_length() {
        let mut block = inet_block();
        block.extend(tlv(0x01, b"h2"));
        block.extend(tlv(0x02, b"example.com"));
        block.extend(tlv(0x04, b""));
        block.extend(tlv(0x20, &[1, 0, 0, 0, 0]));
        block.extend(tlv(0xea, &[0xaa; 300]));
        let h = v2(1, 0x11, &block);
        assert_eq!(
            byte_by_byte(&h, Accept::V2),
            proxied("192.168.0.1:56324", "192.168.0.11:443")
        );
        let mut block = inet6_block();
        block.extend(tlv(0x05, &[7; 128]));
        assert!(matches!(
            byte_by_byte(&v2(1, 0x21, &block), Accept::Auto),
            ProxyHeader::Proxied { .. }
        ));
        // TLVs after AF_UNSPEC / AF_UNIX addresses are walked too.
        assert_eq!(
            complete(&v2(1, 0x00, &tlv(0x04, b"x")), Accept::V2).1,
            ProxyHeader::Local(Local::Unspecified)
        );
    }

    #[test]
    fn v2_tlv_past_the_length_is_refused() {
        // A TLV header cut by the length field, and a value longer than what is left.
        for tail in [&[0x04][..], &[0x04, 0x00], &[0x04, 0x00, 0x02, 0xff]] {
            let mut block = inet_block();
            block.extend_from_slice(tail);
            assert_eq!(
                error(&v2(1, 0x11, &block), Accept::V2),
                ProxyError::V2Tlv,
                "{tail:?}"
            );
        }
        let mut block = vec![0u8; UNIX_BLOCK];
        block.extend_from_slice(&[0x01, 0x00, 0x05, b'h']);
        assert_eq!(error(&v2(1, 0x31, &block), Accept::V2), ProxyError::V2Tlv);
        // The bytes after the header never count as a TLV's value.
        let mut block = inet_block();
        block.extend_from_slice(&[0x01, 0x00, 0x03]);
        let mut buf = v2(1, 0x11, &block);
        buf.extend_from_slice(b"abc");
        assert_eq!(error(&buf, Accept::V2), ProxyError::V2Tlv);
    }

    #[test]
    fn v2_crc32c() {
        // The standard check value.
        assert_eq!(!crc32c(!0, b"123456789"), 0xe306_9283);
        let mut block = inet_block();
        block.extend(tlv(0x02, b"example.com"));
        block.extend(tlv(TLV_CRC32C, &[0; 4]));
        let h = seal(v2(1, 0x11, &block));
        assert_eq!(
            byte_by_byte(&h, Accept::V2),
            proxied("192.168.0.1:56324", "192.168.0.11:443")
        );
        // Any flipped bit in the length, addresses or TLVs is caught: by the checksum, or
        // before it by a stricter check. (Not the family byte, which 0x10 turns into a
        // valid header without addresses, nor the checksum TLV's type, which 0x02 turns
        // into a valid authority TLV: the checksum cannot cover its own presence.)
        let crc_type = h.len() - 7;
        for i in (14..h.len()).filter(|&i| i != crc_type) {
            let mut bad = h.clone();
            bad[i] ^= 0x01;
            assert!(
                !matches!(parse(&bad, Accept::V2), Ok(Status::Complete { .. })),
                "bit flip at {i} accepted"
            );
        }
        let mut bad = h.clone();
        bad[20] ^= 0x40;
        assert_eq!(error(&bad, Accept::V2), ProxyError::V2Checksum);
        // A checksum TLV of another size is malformed.
        let mut block = inet_block();
        block.extend(tlv(TLV_CRC32C, &[0; 3]));
        assert_eq!(error(&v2(1, 0x11, &block), Accept::V2), ProxyError::V2Tlv);
    }

    #[test]
    fn v2_version_command_family() {
        let good = v2(1, 0x11, &inet_block());
        for version in [0x00, 0x10, 0x30, 0xf0] {
            let mut h = good.clone();
            h[12] = version | 0x01;
            assert_eq!(
                error(&h[..13], Accept::V2),
                ProxyError::V2Version(version >> 4)
            );
        }
        for command in 2..16 {
            let mut h = good.clone();
            h[12] = 0x20 | command;
            assert_eq!(error(&h[..13], Accept::V2), ProxyError::V2Command(command));
        }
        for family in [0x40, 0x13, 0x41, 0xff, 0x03] {
            let mut h = good.clone();
            h[13] = family;
            assert_eq!(error(&h[..14], Accept::V2), ProxyError::V2Family(family));
        }
    }

    #[test]
    fn v2_length_is_capped() {
        let mut h = v2(0, 0x00, &vec![0; V2_MAX_BLOCK_LEN]);
        assert_eq!(
            byte_by_byte(&h, Accept::V2),
            ProxyHeader::Local(Local::Command)
        );
        assert_eq!(h.len(), V2_MAX_LEN);
        h[14..16].copy_from_slice(&(V2_MAX_BLOCK_LEN as u16 + 1).to_be_bytes());
        assert_eq!(
            error(&h[..16], Accept::V2),
            ProxyError::V2TooLong(V2_MAX_BLOCK_LEN + 1)
        );
        h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(error(&h[..16], Accept::V2), ProxyError::V2TooLong(65535));
    }

    #[test]
    fn v2_truncated_is_partial() {
        let h = v2(1, 0x21, &inet6_block());
        for k in 0..h.len() {
            assert_eq!(parse(&h[..k], Accept::Auto), Ok(Status::Partial));
        }
    }

    // --------------------------------------------------------- choosing a version

    #[test]
    fn not_a_proxy_header_is_refused_on_the_first_byte() {
        for buf in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"G",
            b"\x16\x03\x01\x02\x00",
            b"\x16",
            b"proxy TCP4",
            b"PROXX",
            b"PROXYTCP4",
            b"\r\n\r\n\x01",
            b"\r\nGET",
            b" PROXY",
        ] {
            for accept in [Accept::V1, Accept::V2, Accept::Auto] {
                assert_eq!(
                    error(buf, accept),
                    ProxyError::NotProxy,
                    "{:?} {accept:?}",
                    String::from_utf8_lossy(buf)
                );
            }
        }
        assert_eq!(parse(b"", Accept::Auto), Ok(Status::Partial));
    }

    #[test]
    fn each_version_alone() {
        let one = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        let two = v2(1, 0x11, &inet_block());
        assert_eq!(error(one, Accept::V2), ProxyError::VersionNotAccepted(1));
        assert_eq!(error(&two, Accept::V1), ProxyError::VersionNotAccepted(2));
        // Before the whole signature is in, the other version is simply not a header.
        assert_eq!(error(&one[..5], Accept::V2), ProxyError::NotProxy);
        assert_eq!(error(&two[..11], Accept::V1), ProxyError::NotProxy);
        for k in 1..=5 {
            assert_eq!(parse(&one[..k], Accept::V1), Ok(Status::Partial));
            assert_eq!(parse(&one[..k], Accept::Auto), Ok(Status::Partial));
        }
        for k in 1..=12 {
            assert_eq!(parse(&two[..k], Accept::V2), Ok(Status::Partial));
            assert_eq!(parse(&two[..k], Accept::Auto), Ok(Status::Partial));
        }
    }

    #[test]
    fn partial_is_bounded() {
        // The longest buffer still Partial is one byte short of the longest header.
        let mut v1 = b"PROXY UNKNOWN ".to_vec();
        v1.resize(V1_MAX_LEN - 1, b'a');
        assert_eq!(parse(&v1, Accept::Auto), Ok(Status::Partial));
        let h = v2(0, 0x00, &vec![0; V2_MAX_BLOCK_LEN]);
        assert_eq!(parse(&h[..MAX_LEN - 1], Accept::Auto), Ok(Status::Partial));
    }

    #[test]
    fn deterministic_random_inputs() {
        // Random mutations of valid headers: never a panic, every answer the same twice,
        // `Partial` only below MAX_LEN, and an accepted prefix stays accepted.
        let seeds: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 2\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(1, 0x11, &inet_block()),
            v2(1, 0x21, &inet6_block()),
            v2(0, 0x00, &[]),
        ];
        let mut rng = crate::http::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut buf = seeds[(rng() % seeds.len() as u64) as usize].clone();
            for _ in 0..rng() % 4 {
                let i = (rng() % buf.len() as u64) as usize;
                buf[i] = rng() as u8;
            }
            buf.truncate((rng() % (buf.len() as u64 + 1)) as usize);
            for accept in [Accept::V1, Accept::V2, Accept::Auto] {
                let verdict = parse(&buf, accept);
                assert_eq!(verdict, parse(&buf, accept));
                match verdict {
                    Ok(Status::Partial) => assert!(buf.len() < MAX_LEN),
                    Ok(Status::Complete { consumed, header }) => {
                        assert!(consumed <= buf.len());
                        assert_eq!(
                            parse(&buf[..consumed], accept),
                            Ok(Status::Complete { consumed, header })
                        );
                    }
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            ProxyError::V1TooLong.to_string(),
            "PROXY v1 header longer than 107 bytes"
        );
        assert_eq!(
            ProxyError::VersionNotAccepted(2).to_string(),
            "PROXY v2 header where only v1 is accepted"
        );
        assert_eq!(
            ProxyError::V2TooLong(5000).to_string(),
            "PROXY v2 header announces 5000 bytes of addresses and TLVs, over the 4096 accepted"
        );
    }
}
