//! The HTTP/2 frame layer (RFC 9113 §4 frame format, §6 frame definitions): a decoder
//! that takes a byte slice and answers [`Decoded::Complete`] (a frame borrowing from the
//! slice, and how many bytes it used), [`Decoded::Partial`] or an [`DecodeError`], and
//! encoders for the frames a server sends.
//!
//! What must hold:
//! - The decoder allocates nothing: a frame's payload is a slice of the input. A frame
//!   whose declared length passes the SETTINGS_MAX_FRAME_SIZE we advertised is refused
//!   from its 9-byte header alone (§4.2), so a caller never buffers more than one frame of
//!   `9 + max_frame_size` bytes before it gets an answer.
//! - Every length, padding and stream-identifier rule of §4–§6 is checked here, with the
//!   code and scope the RFC gives it (§4.2: a frame size error in a frame that can change
//!   the connection's state — one on stream 0, SETTINGS, or one carrying a field block —
//!   is a connection error). A stream error carries the number of bytes the frame took,
//!   so the caller resets that stream and decodes on.
//! - Frames of unknown type are returned as [`Frame::Unknown`] and otherwise ignored
//!   (§4.1, §5.5); unknown flags and the reserved bit of stream identifiers are ignored.
//! - PUSH_PROMISE is only recognised to be refused: a client never pushes (§8.4), so a
//!   server receiving one answers with a connection PROTOCOL_ERROR.
//!
//! Rules that need the connection's state (what a stream's state allows, that a header
//! block is followed only by its CONTINUATION frames, HEADERS that depend on their own
//! stream, flow-control windows) belong to the connection state machine above this layer.

use super::error::{ErrorCode, H2Error};

/// The fixed frame header: 24-bit length, type, flags, reserved bit + 31-bit stream id.
pub const FRAME_HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value and its lowest allowed value (§6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// SETTINGS_MAX_FRAME_SIZE's highest allowed value, 2^24-1 (§6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// The largest flow-control window and window increment, 2^31-1 (§6.9.1).
pub const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;

/// Frame type codes (§6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (§6); which apply depends on the type.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS parameter identifiers (§6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// The 9-byte frame header (§4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length, 24 bits.
    pub length: u32,
    pub kind: u8,
    pub flags: u8,
    /// The stream identifier with the reserved bit cleared.
    pub stream_id: u32,
}

impl FrameHeader {
    /// Reads the header from the first 9 bytes of `buf` (`None` when shorter).
    pub fn parse(buf: &[u8]) -> Option<FrameHeader> {
        let h: &[u8; FRAME_HEADER_LEN] = buf.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        Some(FrameHeader {
            length: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream_id: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & MAX_WINDOW_SIZE,
        })
    }

    /// The header's 9 bytes. `length` must fit 24 bits and `stream_id` 31 bits.
    pub fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        debug_assert!(self.length <= MAX_MAX_FRAME_SIZE);
        debug_assert!(self.stream_id <= MAX_WINDOW_SIZE);
        let len = self.length.to_be_bytes();
        let id = (self.stream_id & MAX_WINDOW_SIZE).to_be_bytes();
        [
            len[1], len[2], len[3], self.kind, self.flags, id[0], id[1], id[2], id[3],
        ]
    }

    fn has(self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A stream dependency (§5.3.2, deprecated by RFC 9113 but still parsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority {
    pub exclusive: bool,
    pub dependency: u32,
    /// The weight field as sent (the weight minus one).
    pub weight: u8,
}

impl Priority {
    fn parse(b: &[u8]) -> Priority {
        let raw = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        Priority {
            exclusive: raw & 0x8000_0000 != 0,
            dependency: raw & MAX_WINDOW_SIZE,
            weight: b[4],
        }
    }

    fn to_bytes(self) -> [u8; 5] {
        let raw = (self.dependency & MAX_WINDOW_SIZE) | if self.exclusive { 1 << 31 } else { 0 };
        let r = raw.to_be_bytes();
        [r[0], r[1], r[2], r[3], self.weight]
    }
}

/// One decoded frame; payloads borrow from the decoder's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream_id: u32,
        /// The data without padding.
        data: &'a [u8],
        end_stream: bool,
        /// The whole payload length, padding included: what flow control counts (§6.1).
        flow_len: u32,
    },
    Headers {
        stream_id: u32,
        /// This frame's fragment of the field block, without padding.
        fragment: &'a [u8],
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
    },
    Priority {
        stream_id: u32,
        priority: Priority,
    },
    RstStream {
        stream_id: u32,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        /// The parameters, validated; read them with [`Frame::settings`].
        params: &'a [u8],
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream_id: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    WindowUpdate {
        /// 0 for the connection's window.
        stream_id: u32,
        /// 1..=2^31-1.
        increment: u32,
    },
    Continuation {
        stream_id: u32,
        fragment: &'a [u8],
        end_headers: bool,
    },
    /// A frame of a type this code does not know: to be ignored (§4.1, §5.5), except that
    /// it may not interrupt a field block (§6.10), which the connection checks.
    Unknown {
        kind: u8,
        stream_id: u32,
    },
}

impl<'a> Frame<'a> {
    /// The parameters of a SETTINGS frame, in order (empty for other frames). Unknown
    /// identifiers are included: the caller ignores them (§6.5.2).
    pub fn settings(&self) -> impl Iterator<Item = (u16, u32)> + 'a {
        let params: &'a [u8] = match *self {
            Frame::Settings { params, .. } => params,
            _ => &[],
        };
        params.chunks_exact(6).map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            )
        })
    }

    /// The stream this frame belongs to (0 for connection frames).
    pub fn stream_id(&self) -> u32 {
        match *self {
            Frame::Data { stream_id, .. }
            | Frame::Headers { stream_id, .. }
            | Frame::Priority { stream_id, .. }
            | Frame::RstStream { stream_id, .. }
            | Frame::WindowUpdate { stream_id, .. }
            | Frame::Continuation { stream_id, .. }
            | Frame::Unknown { stream_id, .. } => stream_id,
            Frame::Settings { .. } | Frame::Ping { .. } | Frame::GoAway { .. } => 0,
        }
    }
}

/// What the decoder made of its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A frame, and the number of bytes it took from the front of the input.
    Complete(Frame<'a>, usize),
    /// Not a whole frame yet; call again with more bytes (the ones given are kept).
    Partial,
}

/// A frame the RFC says must be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub error: H2Error,
    /// For a stream error, the length of the offending frame: skip it and decode on.
    /// Meaningless for a connection error, after which nothing more is read.
    pub consumed: usize,
}

fn conn(code: ErrorCode) -> DecodeError {
    DecodeError {
        error: H2Error::Connection(code),
        consumed: 0,
    }
}

/// Decodes one frame from the front of `buf`. `max_frame_size` is the
/// SETTINGS_MAX_FRAME_SIZE we advertised (16,384 until the peer has acknowledged a
/// larger one). A frame declaring a longer payload is refused before its payload
/// arrives.
pub fn decode(buf: &[u8], max_frame_size: u32) -> Result<Decoded<'_>, DecodeError> {
    let Some(head) = FrameHeader::parse(buf) else {
        return Ok(Decoded::Partial);
    };
    if head.length > max_frame_size {
        // §4.2; escalated to the connection for every type: the payload is not read.
        return Err(conn(ErrorCode::FRAME_SIZE_ERROR));
    }
    let total = FRAME_HEADER_LEN + head.length as usize;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..total) else {
        return Ok(Decoded::Partial);
    };
    let frame = decode_payload(head, payload).map_err(|error| DecodeError {
        error,
        consumed: total,
    })?;
    Ok(Decoded::Complete(frame, total))
}

/// Checks a frame's payload against the rules of its type (§6).
fn decode_payload(head: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, H2Error> {
    use ErrorCode as E;
    let c = H2Error::Connection;
    let stream_id = head.stream_id;
    let stream_err = |code| H2Error::Stream { stream_id, code };
    match head.kind {
        kind::DATA => {
            if stream_id == 0 {
                return Err(c(E::PROTOCOL_ERROR)); // §6.1
            }
            let data = strip_padding(head, payload)?;
            Ok(Frame::Data {
                stream_id,
                data,
                end_stream: head.has(flag::END_STREAM),
                flow_len: head.length,
            })
        }
        kind::HEADERS => {
            if stream_id == 0 {
                return Err(c(E::PROTOCOL_ERROR)); // §6.2
            }
            let mut rest = strip_padding(head, payload)?;
            let priority = if head.has(flag::PRIORITY) {
                // The padding was taken off first; what is left must still hold the
                // 5 priority bytes, else the padding ran into them (§6.2: PROTOCOL_ERROR).
                if rest.len() < 5 {
                    return Err(if payload.len() < 5 + usize::from(head.has(flag::PADDED)) {
                        c(E::FRAME_SIZE_ERROR)
                    } else {
                        c(E::PROTOCOL_ERROR)
                    });
                }
                let p = Priority::parse(&rest[..5]);
                rest = &rest[5..];
                Some(p)
            } else {
                None
            };
            Ok(Frame::Headers {
                stream_id,
                fragment: rest,
                end_stream: head.has(flag::END_STREAM),
                end_headers: head.has(flag::END_HEADERS),
                priority,
            })
        }
        kind::PRIORITY => {
            if stream_id == 0 {
                return Err(c(E::PROTOCOL_ERROR)); // §6.3
            }
            if payload.len() != 5 {
                return Err(stream_err(E::FRAME_SIZE_ERROR)); // §6.3: a stream error
            }
            let priority = Priority::parse(payload);
            if priority.dependency == stream_id {
                return Err(stream_err(E::PROTOCOL_ERROR)); // §5.3.1 (RFC 7540)
            }
            Ok(Frame::Priority {
                stream_id,
                priority,
            })
        }
        kind::RST_STREAM => {
            if stream_id == 0 {
                return Err(c(E::PROTOCOL_ERROR)); // §6.4
            }
            let Ok(code) = <[u8; 4]>::try_from(payload) else {
                return Err(c(E::FRAME_SIZE_ERROR)); // §6.4: a connection error
            };
            Ok(Frame::RstStream {
                stream_id,
                code: ErrorCode(u32::from_be_bytes(code)),
            })
        }
        kind::SETTINGS => {
            if stream_id != 0 {
                return Err(c(E::PROTOCOL_ERROR)); // §6.5
            }
            let ack = head.has(flag::ACK);
            if ack && !payload.is_empty() {
                return Err(c(E::FRAME_SIZE_ERROR)); // §6.5
            }
            if payload.len() % 6 != 0 {
                return Err(c(E::FRAME_SIZE_ERROR)); // §6.5
            }
            for p in payload.chunks_exact(6) {
                let id = u16::from_be_bytes([p[0], p[1]]);
                let value = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
                check_setting(id, value)?;
            }
            Ok(Frame::Settings {
                ack,
                params: payload,
            })
        }
        // §8.4: a client cannot push; a server treats PUSH_PROMISE as a connection
        // PROTOCOL_ERROR, whatever its payload.
        kind::PUSH_PROMISE => Err(c(E::PROTOCOL_ERROR)),
        kind::PING => {
            if stream_id != 0 {
                return Err(c(E::PROTOCOL_ERROR)); // §6.7
            }
            let Ok(data) = <[u8; 8]>::try_from(payload) else {
                return Err(c(E::FRAME_SIZE_ERROR)); // §6.7
            };
            Ok(Frame::Ping {
                ack: head.has(flag::ACK),
                data,
            })
        }
        kind::GOAWAY => {
            if stream_id != 0 {
                return Err(c(E::PROTOCOL_ERROR)); // §6.8
            }
            if payload.len() < 8 {
                return Err(c(E::FRAME_SIZE_ERROR)); // §4.2: too short, stream 0
            }
            let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            Ok(Frame::GoAway {
                last_stream_id: last & MAX_WINDOW_SIZE,
                code: ErrorCode(code),
                debug: &payload[8..],
            })
        }
        kind::WINDOW_UPDATE => {
            let Ok(raw) = <[u8; 4]>::try_from(payload) else {
                return Err(c(E::FRAME_SIZE_ERROR)); // §6.9: a connection error
            };
            let increment = u32::from_be_bytes(raw) & MAX_WINDOW_SIZE;
            if increment == 0 {
                // §6.9: on a stream a stream error, on the connection a connection one.
                return Err(if stream_id == 0 {
                    c(E::PROTOCOL_ERROR)
                } else {
                    stream_err(E::PROTOCOL_ERROR)
                });
            }
            Ok(Frame::WindowUpdate {
                stream_id,
                increment,
            })
        }
        kind::CONTINUATION => {
            if stream_id == 0 {
                return Err(c(E::PROTOCOL_ERROR)); // §6.10
            }
            Ok(Frame::Continuation {
                stream_id,
                fragment: payload,
                end_headers: head.has(flag::END_HEADERS),
            })
        }
        other => Ok(Frame::Unknown {
            kind: other,
            stream_id,
        }),
    }
}

/// Takes the Pad Length byte and the padding off a DATA or HEADERS payload (§6.1, §6.2).
fn strip_padding(head: FrameHeader, payload: &[u8]) -> Result<&[u8], H2Error> {
    if !head.has(flag::PADDED) {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        // Too small to hold the mandatory Pad Length field (§4.2).
        return Err(H2Error::Connection(ErrorCode::FRAME_SIZE_ERROR));
    };
    // §6.1/§6.2: padding as long as the payload or longer is a connection PROTOCOL_ERROR.
    let Some(keep) = rest.len().checked_sub(usize::from(pad)) else {
        return Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR));
    };
    Ok(&rest[..keep])
}

/// The value rules of §6.5.2; unknown identifiers are accepted (and ignored later).
fn check_setting(id: u16, value: u32) -> Result<(), H2Error> {
    let bad = match id {
        setting::ENABLE_PUSH if value > 1 => ErrorCode::PROTOCOL_ERROR,
        setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW_SIZE => ErrorCode::FLOW_CONTROL_ERROR,
        setting::MAX_FRAME_SIZE
            if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) =>
        {
            ErrorCode::PROTOCOL_ERROR
        }
        _ => return Ok(()),
    };
    Err(H2Error::Connection(bad))
}

// ----------------------------------------------------------------------------- encoders

fn put_header(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream_id: u32) {
    let length = u32::try_from(length).expect("frame payload over 2^24-1");
    out.extend_from_slice(
        &FrameHeader {
            length,
            kind,
            flags,
            stream_id,
        }
        .to_bytes(),
    );
}

/// A SETTINGS frame with these parameters.
pub fn encode_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    put_header(out, params.len() * 6, kind::SETTINGS, 0, 0);
    for &(id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// The acknowledgement of the peer's SETTINGS (§6.5.3).
pub fn encode_settings_ack(out: &mut Vec<u8>) {
    put_header(out, 0, kind::SETTINGS, flag::ACK, 0);
}

/// A field block as one HEADERS frame followed by as many CONTINUATION frames as
/// `max_frame_size` (the peer's SETTINGS_MAX_FRAME_SIZE) requires; END_HEADERS on the last.
pub fn encode_headers(
    out: &mut Vec<u8>,
    stream_id: u32,
    block: &[u8],
    end_stream: bool,
    max_frame_size: u32,
) {
    let max = (max_frame_size.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE)) as usize;
    let mut chunks = block.chunks(max).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= flag::END_HEADERS;
    }
    put_header(out, first.len(), kind::HEADERS, flags, stream_id);
    out.extend_from_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        put_header(out, chunk.len(), kind::CONTINUATION, flags, stream_id);
        out.extend_from_slice(chunk);
    }
}

/// The 9-byte header of a DATA frame carrying `len` bytes, for callers that write the
/// payload from their own buffer. `len` must not pass the peer's SETTINGS_MAX_FRAME_SIZE.
pub fn data_header(stream_id: u32, len: usize, end_stream: bool) -> [u8; FRAME_HEADER_LEN] {
    FrameHeader {
        length: u32::try_from(len).expect("DATA payload over 2^24-1"),
        kind: kind::DATA,
        flags: if end_stream { flag::END_STREAM } else { 0 },
        stream_id,
    }
    .to_bytes()
}

/// A DATA frame; `data` must not pass the peer's SETTINGS_MAX_FRAME_SIZE.
pub fn encode_data(out: &mut Vec<u8>, stream_id: u32, data: &[u8], end_stream: bool) {
    out.extend_from_slice(&data_header(stream_id, data.len(), end_stream));
    out.extend_from_slice(data);
}

/// A WINDOW_UPDATE (stream 0 for the connection); `increment` in 1..=2^31-1.
pub fn encode_window_update(out: &mut Vec<u8>, stream_id: u32, increment: u32) {
    debug_assert!((1..=MAX_WINDOW_SIZE).contains(&increment));
    put_header(out, 4, kind::WINDOW_UPDATE, 0, stream_id);
    out.extend_from_slice(&(increment & MAX_WINDOW_SIZE).to_be_bytes());
}

/// The answer to a PING: the same 8 bytes with ACK (§6.7).
pub fn encode_ping_ack(out: &mut Vec<u8>, data: [u8; 8]) {
    put_header(out, 8, kind::PING, flag::ACK, 0);
    out.extend_from_slice(&data);
}

/// RST_STREAM with this code (§6.4).
pub fn encode_rst_stream(out: &mut Vec<u8>, stream_id: u32, code: ErrorCode) {
    put_header(out, 4, kind::RST_STREAM, 0, stream_id);
    out.extend_from_slice(&code.0.to_be_bytes());
}

/// GOAWAY naming the last stream we will process, with optional debug data (§6.8).
pub fn encode_goaway(out: &mut Vec<u8>, last_stream_id: u32, code: ErrorCode, debug: &[u8]) {
    put_header(out, 8 + debug.len(), kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream_id & MAX_WINDOW_SIZE).to_be_bytes());
    out.extend_from_slice(&code.0.to_be_bytes());
    out.extend_from_slice(debug);
}

impl Frame<'_> {
    /// Writes this frame as a sender would, without padding (so decoding the result gives
    /// back the same frame, except for `flow_len`, which is then the data's length).
    /// [`Frame::Unknown`] has no payload to write and is written as an empty frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Frame::Data {
                stream_id,
                data,
                end_stream,
                ..
            } => encode_data(out, stream_id, data, end_stream),
            Frame::Headers {
                stream_id,
                fragment,
                end_stream,
                end_headers,
                priority,
            } => {
                let mut flags = 0;
                if end_stream {
                    flags |= flag::END_STREAM;
                }
                if end_headers {
                    flags |= flag::END_HEADERS;
                }
                let prio = priority.map(Priority::to_bytes);
                if prio.is_some() {
                    flags |= flag::PRIORITY;
                }
                let len = fragment.len() + prio.map_or(0, |p| p.len());
                put_header(out, len, kind::HEADERS, flags, stream_id);
                if let Some(p) = prio {
                    out.extend_from_slice(&p);
                }
                out.extend_from_slice(fragment);
            }
            Frame::Priority {
                stream_id,
                priority,
            } => {
                put_header(out, 5, kind::PRIORITY, 0, stream_id);
                out.extend_from_slice(&priority.to_bytes());
            }
            Frame::RstStream { stream_id, code } => encode_rst_stream(out, stream_id, code),
            Frame::Settings { ack, params } => {
                put_header(
                    out,
                    params.len(),
                    kind::SETTINGS,
                    if ack { flag::ACK } else { 0 },
                    0,
                );
                out.extend_from_slice(params);
            }
            Frame::Ping { ack, data } => {
                put_header(out, 8, kind::PING, if ack { flag::ACK } else { 0 }, 0);
                out.extend_from_slice(&data);
            }
            Frame::GoAway {
                last_stream_id,
                code,
                debug,
            } => encode_goaway(out, last_stream_id, code, debug),
            Frame::WindowUpdate {
                stream_id,
                increment,
            } => encode_window_update(out, stream_id, increment),
            Frame::Continuation {
                stream_id,
                fragment,
                end_headers,
            } => {
                let flags = if end_headers { flag::END_HEADERS } else { 0 };
                put_header(out, fragment.len(), kind::CONTINUATION, flags, stream_id);
                out.extend_from_slice(fragment);
            }
            Frame::Unknown { kind, stream_id } => put_header(out, 0, kind, 0, stream_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = DEFAULT_MAX_FRAME_SIZE;

    fn raw(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = FrameHeader {
            length: payload.len() as u32,
            kind,
            flags,
            stream_id: stream_id & MAX_WINDOW_SIZE,
        }
        .to_bytes()
        .to_vec();
        out[5] |= (stream_id >> 24) as u8 & 0x80; // the reserved bit, as a peer may send it
        out.extend_from_slice(payload);
        out
    }

    fn ok(buf: &[u8]) -> Frame<'_> {
        match decode(buf, MAX) {
            Ok(Decoded::Complete(frame, used)) => {
                assert_eq!(used, buf.len());
                frame
            }
            other => panic!("{other:?}"),
        }
    }

    fn conn_err(buf: &[u8]) -> ErrorCode {
        match decode(buf, MAX) {
            Err(DecodeError {
                error: H2Error::Connection(code),
                ..
            }) => code,
            other => panic!("{other:?}"),
        }
    }

    fn stream_err(buf: &[u8]) -> (u32, ErrorCode) {
        match decode(buf, MAX) {
            Err(DecodeError {
                error: H2Error::Stream { stream_id, code },
                consumed,
            }) => {
                assert_eq!(consumed, buf.len(), "a stream error says how much to skip");
                (stream_id, code)
            }
            other => panic!("{other:?}"),
        }
    }

    use ErrorCode as E;

    #[test]
    fn partial_until_whole_and_oversize_refused_from_the_header() {
        let f = raw(kind::PING, 0, 0, &[1; 8]);
        for cut in 0..f.len() {
            assert_eq!(decode(&f[..cut], MAX), Ok(Decoded::Partial), "cut at {cut}");
        }
        // Trailing bytes are left for the next call.
        let mut two = f.clone();
        two.extend_from_slice(&f[..3]);
        assert!(matches!(decode(&two, MAX), Ok(Decoded::Complete(_, 17))));
        // A header declaring 16,385 bytes is refused with no payload at hand.
        let head = FrameHeader {
            length: MAX + 1,
            kind: kind::DATA,
            flags: 0,
            stream_id: 1,
        }
        .to_bytes();
        assert_eq!(conn_err(&head), E::FRAME_SIZE_ERROR);
        // ...but accepted once a larger SETTINGS_MAX_FRAME_SIZE is in force.
        assert_eq!(decode(&head, MAX + 1), Ok(Decoded::Partial));
    }

    #[test]
    fn reserved_bit_and_unknown_types_are_ignored() {
        let f = raw(kind::WINDOW_UPDATE, 0xff, 0x8000_0003, &[0x80, 0, 0, 9]);
        assert_eq!(
            ok(&f),
            Frame::WindowUpdate {
                stream_id: 3,
                increment: 9
            }
        );
        assert_eq!(
            ok(&raw(0xfa, 0xff, 5, b"whatever")),
            Frame::Unknown {
                kind: 0xfa,
                stream_id: 5
            }
        );
    }

    #[test]
    fn data_and_padding() {
        let f = raw(
            kind::DATA,
            flag::PADDED | flag::END_STREAM,
            1,
            &[3, b'h', b'i', 0, 0, 0],
        );
        assert_eq!(
            ok(&f),
            Frame::Data {
                stream_id: 1,
                data: b"hi",
                end_stream: true,
                flow_len: 6
            }
        );
        // All padding, no data: allowed.
        assert!(matches!(
            ok(&raw(kind::DATA, flag::PADDED, 1, &[2, 0, 0])),
            Frame::Data { data: [], .. }
        ));
        assert_eq!(
            conn_err(&raw(kind::DATA, flag::PADDED, 1, &[3, 0, 0])),
            E::PROTOCOL_ERROR
        );
        assert_eq!(
            conn_err(&raw(kind::DATA, flag::PADDED, 1, &[])),
            E::FRAME_SIZE_ERROR
        );
        assert_eq!(conn_err(&raw(kind::DATA, 0, 0, b"x")), E::PROTOCOL_ERROR);
    }

    #[test]
    fn headers_with_padding_and_priority() {
        let payload = [1, 0x80, 0, 0, 3, 15, b'a', b'b', 0];
        let f = raw(
            kind::HEADERS,
            flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
            5,
            &payload,
        );
        assert_eq!(
            ok(&f),
            Frame::Headers {
                stream_id: 5,
                fragment: b"ab",
                end_stream: false,
                end_headers: true,
                priority: Some(Priority {
                    exclusive: true,
                    dependency: 3,
                    weight: 15
                }),
            }
        );
        assert_eq!(
            conn_err(&raw(kind::HEADERS, flag::PRIORITY, 1, &[0, 0, 0, 3])),
            E::FRAME_SIZE_ERROR
        );
        // The padding eats into the priority fields.
        assert_eq!(
            conn_err(&raw(
                kind::HEADERS,
                flag::PADDED | flag::PRIORITY,
                1,
                &[2, 0, 0, 0, 3, 15]
            )),
            E::PROTOCOL_ERROR
        );
        assert_eq!(
            conn_err(&raw(kind::HEADERS, flag::PADDED, 1, &[2, b'a'])),
            E::PROTOCOL_ERROR
        );
        assert_eq!(conn_err(&raw(kind::HEADERS, 0, 0, b"a")), E::PROTOCOL_ERROR);
    }

    #[test]
    fn priority_rst_stream_continuation() {
        assert_eq!(
            stream_err(&raw(kind::PRIORITY, 0, 7, &[0, 0, 0, 1])),
            (7, E::FRAME_SIZE_ERROR)
        );
        assert_eq!(
            stream_err(&raw(kind::PRIORITY, 0, 7, &[0, 0, 0, 7, 0])),
            (7, E::PROTOCOL_ERROR)
        );
        assert_eq!(
            conn_err(&raw(kind::PRIORITY, 0, 0, &[0, 0, 0, 1, 0])),
            E::PROTOCOL_ERROR
        );
        assert!(matches!(
            ok(&raw(kind::PRIORITY, 0, 7, &[0, 0, 0, 1, 0])),
            Frame::Priority { .. }
        ));

        assert_eq!(
            ok(&raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8])),
            Frame::RstStream {
                stream_id: 1,
                code: E::CANCEL
            }
        );
        assert_eq!(
            conn_err(&raw(kind::RST_STREAM, 0, 1, &[0, 0, 8])),
            E::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_err(&raw(kind::RST_STREAM, 0, 0, &[0, 0, 0, 8])),
            E::PROTOCOL_ERROR
        );

        assert_eq!(
            conn_err(&raw(kind::CONTINUATION, flag::END_HEADERS, 0, b"a")),
            E::PROTOCOL_ERROR
        );
        assert_eq!(
            ok(&raw(kind::CONTINUATION, flag::END_HEADERS, 3, b"a")),
            Frame::Continuation {
                stream_id: 3,
                fragment: b"a",
                end_headers: true
            }
        );
    }

    #[test]
    fn push_promise_is_refused() {
        assert_eq!(
            conn_err(&raw(
                kind::PUSH_PROMISE,
                flag::END_HEADERS,
                1,
                &[0, 0, 0, 2]
            )),
            E::PROTOCOL_ERROR
        );
    }

    #[test]
    fn settings_rules() {
        let mut out = Vec::new();
        encode_settings(
            &mut out,
            &[(setting::MAX_CONCURRENT_STREAMS, 100), (0x99, 7)],
        );
        let f = ok(&out);
        assert_eq!(f.settings().collect::<Vec<_>>(), [(3, 100), (0x99, 7)]);
        out.clear();
        encode_settings_ack(&mut out);
        assert_eq!(
            ok(&out),
            Frame::Settings {
                ack: true,
                params: &[]
            }
        );

        assert_eq!(
            conn_err(&raw(kind::SETTINGS, flag::ACK, 0, &[0, 3, 0, 0, 0, 1])),
            E::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_err(&raw(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0])),
            E::FRAME_SIZE_ERROR
        );
        assert_eq!(conn_err(&raw(kind::SETTINGS, 0, 1, &[])), E::PROTOCOL_ERROR);
        let bad = |id: u16, value: u32| {
            let mut out = Vec::new();
            encode_settings(&mut out, &[(id, value)]);
            decode(&out, MAX).map(|_| ()).map_err(|e| e.error)
        };
        assert_eq!(
            bad(setting::ENABLE_PUSH, 2),
            Err(H2Error::Connection(E::PROTOCOL_ERROR))
        );
        assert_eq!(
            bad(setting::INITIAL_WINDOW_SIZE, 1 << 31),
            Err(H2Error::Connection(E::FLOW_CONTROL_ERROR))
        );
        assert!(bad(setting::INITIAL_WINDOW_SIZE, MAX_WINDOW_SIZE).is_ok());
        assert_eq!(
            bad(setting::MAX_FRAME_SIZE, MAX - 1),
            Err(H2Error::Connection(E::PROTOCOL_ERROR))
        );
        assert_eq!(
            bad(setting::MAX_FRAME_SIZE, 1 << 24),
            Err(H2Error::Connection(E::PROTOCOL_ERROR))
        );
        assert!(bad(setting::MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE).is_ok());
    }

    #[test]
    fn ping_goaway_window_update() {
        let mut out = Vec::new();
        encode_ping_ack(&mut out, *b"12345678");
        assert_eq!(
            ok(&out),
            Frame::Ping {
                ack: true,
                data: *b"12345678"
            }
        );
        assert_eq!(
            conn_err(&raw(kind::PING, 0, 0, &[0; 7])),
            E::FRAME_SIZE_ERROR
        );
        assert_eq!(conn_err(&raw(kind::PING, 0, 1, &[0; 8])), E::PROTOCOL_ERROR);

        out.clear();
        encode_goaway(&mut out, 41, E::ENHANCE_YOUR_CALM, b"calm");
        assert_eq!(
            ok(&out),
            Frame::GoAway {
                last_stream_id: 41,
                code: E::ENHANCE_YOUR_CALM,
                debug: b"calm"
            }
        );
        assert_eq!(
            conn_err(&raw(kind::GOAWAY, 0, 0, &[0; 7])),
            E::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_err(&raw(kind::GOAWAY, 0, 3, &[0; 8])),
            E::PROTOCOL_ERROR
        );

        out.clear();
        encode_window_update(&mut out, 0, MAX_WINDOW_SIZE);
        assert_eq!(
            ok(&out),
            Frame::WindowUpdate {
                stream_id: 0,
                increment: MAX_WINDOW_SIZE
            }
        );
        assert_eq!(
            conn_err(&raw(kind::WINDOW_UPDATE, 0, 1, &[0, 0, 0, 0, 1])),
            E::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_err(&raw(kind::WINDOW_UPDATE, 0, 0, &[0x80, 0, 0, 0])),
            E::PROTOCOL_ERROR
        );
        assert_eq!(
            stream_err(&raw(kind::WINDOW_UPDATE, 0, 9, &[0, 0, 0, 0])),
            (9, E::PROTOCOL_ERROR)
        );

        out.clear();
        encode_rst_stream(&mut out, 3, E::REFUSED_STREAM);
        assert_eq!(
            ok(&out),
            Frame::RstStream {
                stream_id: 3,
                code: E::REFUSED_STREAM
            }
        );
        assert_eq!(
            format!("{:?} {:?}", E::REFUSED_STREAM, ErrorCode(0x77)),
            "REFUSED_STREAM ErrorCode(0x77)"
        );
    }

    #[test]
    fn headers_split_into_continuations() {
        let block: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        encode_headers(&mut out, 1, &block, true, MAX);
        let mut rest = &out[..];
        let mut got = Vec::new();
        let mut kinds = Vec::new();
        while !rest.is_empty() {
            let Ok(Decoded::Complete(frame, used)) = decode(rest, MAX) else {
                panic!()
            };
            match frame {
                Frame::Headers {
                    fragment,
                    end_stream,
                    end_headers,
                    ..
                } => {
                    assert!(end_stream);
                    kinds.push(("H", fragment.len(), end_headers));
                    got.extend_from_slice(fragment);
                }
                Frame::Continuation {
                    fragment,
                    end_headers,
                    ..
                } => {
                    kinds.push(("C", fragment.len(), end_headers));
                    got.extend_from_slice(fragment);
                }
                other => panic!("{other:?}"),
            }
            rest = &rest[used..];
        }
        assert_eq!(got, block);
        assert_eq!(
            kinds,
            [
                ("H", 16_384, false),
                ("C", 16_384, false),
                ("C", 7_232, true)
            ]
        );

        out.clear();
        encode_headers(&mut out, 3, &[], false, MAX);
        assert_eq!(out, raw(kind::HEADERS, flag::END_HEADERS, 3, &[]));
    }

    #[test]
    fn data_encoders() {
        let mut out = Vec::new();
        encode_data(&mut out, 7, b"body", true);
        assert_eq!(&out[..9], &data_header(7, 4, true));
        assert_eq!(
            ok(&out),
            Frame::Data {
                stream_id: 7,
                data: b"body",
                end_stream: true,
                flow_len: 4
            }
        );
    }
}
