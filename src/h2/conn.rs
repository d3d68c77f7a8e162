//! The server side of one HTTP/2 connection as a state machine (RFC 9113 §3.4, §5, §6):
//! bytes from the client in, [`Event`]s and bytes to send out. No socket, no timer: the
//! engine feeds [`Connection::receive`], forwards the events, and writes what
//! [`Connection::take_output`] hands it. The request rules (§8.1–8.3) are
//! `super::request`'s.
//!
//! Steps of [`Connection::receive`]:
//! 1. the client preface, matched byte by byte (§3.4; [`check_preface`] lets a cleartext
//!    listener tell HTTP/2 from HTTP/1 at the first differing byte), then a SETTINGS frame;
//! 2. frames, one at a time ([`super::frame::decode`], bounded by our
//!    SETTINGS_MAX_FRAME_SIZE);
//! 3. field blocks assembled across CONTINUATION (§6.10) into at most
//!    `max_request_header_size` bytes, refused at the first frame passing it
//!    (CVE-2024-27316), then HPACK-decoded within `max_header_list_size`;
//! 4. stream states (§5.1), SETTINGS and its ACK (§6.5.3), PING answers (§6.7), flow
//!    control in both directions with overflow detection (§6.9), RST_STREAM and GOAWAY;
//! 5. flood limits (§10.5, `super::flood`), each ending the connection with GOAWAY
//!    ENHANCE_YOUR_CALM; [`Connection::cause`] names the limit or rule a client broke.
//!
//! What must hold:
//! - Every connection error queues a GOAWAY naming the last client stream and ends the
//!   connection: later calls return the same error. Every stream error queues an
//!   RST_STREAM and reports [`Event::Reset`]; the connection goes on, unless a flood
//!   limit is passed.
//! - A field block is always HPACK-decoded, even for a stream being refused or reset,
//!   so the compression context stays in step with the client's.
//! - Memory held is bounded: one partial field block (the cap), the HPACK table (our
//!   SETTINGS_HEADER_TABLE_SIZE), and one entry per live stream, at most
//!   SETTINGS_MAX_CONCURRENT_STREAMS (a stream past it is refused with REFUSED_STREAM).

use std::collections::HashMap;

use super::error::{ErrorCode, Failure, H2Error};
use super::flood::Floods;
use super::frame::{self, setting, Decoded, Frame, DEFAULT_MAX_FRAME_SIZE, MAX_WINDOW_SIZE};
use super::hpack::{self, HeaderField};
use super::stream::{Stream, Window};

pub use super::config::{Config, DEFAULT_WINDOW};
pub use super::flood::{CONTROL_BURST, EMPTY_FRAMES_BURST, MAX_QUEUED_ANSWERS, RAPID_RESET_BURST};
pub use super::preface::{check_preface, PrefaceMatch, PREFACE};

/// What the client did, for the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new request's field list, not yet checked against §8.1–8.3: give it to
    /// `super::request::request_head`.
    RequestHeaders {
        stream: u32,
        fields: Vec<HeaderField>,
        end_stream: bool,
    },
    /// Trailers: a second field block, which ends the request.
    Trailers {
        stream: u32,
        fields: Vec<HeaderField>,
    },
    /// Request body bytes (padding removed). Call [`Connection::release`] as the
    /// application takes them, so the client's window opens again.
    Data {
        stream: u32,
        bytes: Vec<u8>,
        end_stream: bool,
    },
    /// The stream is gone: reset by the client (`remote`), or by us after a stream error.
    Reset {
        stream: u32,
        code: ErrorCode,
        remote: bool,
    },
    /// The client is going away; streams above `last_stream_id` were not processed.
    GoAway {
        last_stream_id: u32,
        code: ErrorCode,
    },
    /// The client's windows grew: output waiting on `stream` (0: any) may go on.
    WindowOpened { stream: u32 },
}

/// A field block being assembled across CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

enum Phase {
    /// Matching the preface; the count of bytes matched so far.
    Preface(usize),
    /// Preface done; the client's first frame must be SETTINGS.
    FirstSettings,
    Frames,
    /// A connection error was sent; nothing more is read.
    Failed(H2Error),
}

/// The client's settings that matter to a server.
struct PeerSettings {
    initial_window_size: u32,
    max_frame_size: u32,
}

pub struct Connection {
    config: Config,
    phase: Phase,
    streams: HashMap<u32, Stream>,
    /// The highest stream id the client opened: lower ids not in `streams` are closed.
    last_stream: u32,
    pending: Option<PendingBlock>,
    decoder: hpack::Decoder,
    encoder: hpack::Encoder,
    recv_window: Window,
    /// Connection-level bytes received and not yet released by the application.
    unreleased: u32,
    send_window: Window,
    peer: PeerSettings,
    /// Our SETTINGS were acknowledged: our initial window applies to new streams.
    settings_acked: bool,
    /// We sent GOAWAY: no new stream is accepted.
    going_away: bool,
    output: Vec<u8>,
    /// Why the connection failed (set with `Phase::Failed`).
    cause: Option<&'static str>,
    floods: Floods,
}

impl Connection {
    /// A connection whose SETTINGS (and connection WINDOW_UPDATE) are already queued.
    /// `config.max_frame_size` is brought into 16,384..=2^24-1 and the windows to at
    /// most 2^31-1 (§6.5.2).
    pub fn new(config: Config) -> Connection {
        let config = config.within_bounds();
        let mut output = Vec::new();
        frame::encode_settings(&mut output, &config.advertised());
        let mut recv_window = Window::new(DEFAULT_WINDOW);
        if config.connection_window > DEFAULT_WINDOW {
            let delta = config.connection_window - DEFAULT_WINDOW;
            frame::encode_window_update(&mut output, 0, delta);
            recv_window = Window::new(config.connection_window);
        }
        Connection {
            // Both ends start at the protocol's 4,096 (RFC 9113 §6.5.2); ours applies
            // once acknowledged.
            decoder: hpack::Decoder::new(hpack::decoder::DEFAULT_TABLE_SIZE),
            encoder: hpack::Encoder::default(),
            config,
            phase: Phase::Preface(0),
            streams: HashMap::new(),
            last_stream: 0,
            pending: None,
            recv_window,
            unreleased: 0,
            send_window: Window::new(DEFAULT_WINDOW),
            peer: PeerSettings {
                initial_window_size: DEFAULT_WINDOW,
                max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            },
            settings_acked: false,
            going_away: false,
            output,
            cause: None,
            floods: Floods::new(),
        }
    }

    /// The bytes to send, emptied. Take them only as fast as they are written (see
    /// [`MAX_QUEUED_ANSWERS`]).
    pub fn take_output(&mut self) -> Vec<u8> {
        self.floods.output_taken();
        std::mem::take(&mut self.output)
    }

    /// Whether there are bytes to send that [`Connection::take_output`] has not taken.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Why the connection failed, once it has: the flood limit or protocol rule the
    /// client broke ("rapid reset", "PING flood", "field block past
    /// max_request_header_size", ...), a short text for the engine's log. None while
    /// the connection is fine, and after a graceful [`Connection::go_away`].
    pub fn cause(&self) -> Option<&'static str> {
        self.cause
    }

    /// Whether we sent GOAWAY: after [`Connection::go_away`] or a connection error. No
    /// new stream is accepted.
    pub fn is_going_away(&self) -> bool {
        self.going_away || matches!(self.phase, Phase::Failed(_))
    }

    /// The highest stream id the client opened (what our GOAWAY names as the last one
    /// processed).
    pub fn last_stream_id(&self) -> u32 {
        self.last_stream
    }

    /// How many bytes [`Connection::send_data`] would take on `stream` now: the least of
    /// the stream's and the connection's send windows; 0 when the stream is gone or our
    /// side of it is ended.
    pub fn send_window(&self, stream: u32) -> u32 {
        let conn = self.send_window.available();
        self.streams
            .get(&stream)
            .filter(|s| s.local_open())
            .map_or(0, |s| s.send_window.available().min(conn))
    }

    /// The number of live streams.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// The state of a live stream.
    pub fn stream(&self, id: u32) -> Option<&Stream> {
        self.streams.get(&id)
    }

    /// Reads as much of `buf` as forms whole frames, appending events. Returns the bytes
    /// used: the caller keeps the rest and calls again with more. On a connection error
    /// a GOAWAY is queued and this and every later call fail with it.
    pub fn receive(&mut self, buf: &[u8], events: &mut Vec<Event>) -> Result<usize, H2Error> {
        let mut used = 0;
        if let Phase::Preface(matched) = self.phase {
            let n = (PREFACE.len() - matched).min(buf.len());
            if buf[..n] != PREFACE[matched..matched + n] {
                return Err(self.fail(Failure::protocol("bad connection preface")));
            }
            used = n;
            self.phase = if matched + n == PREFACE.len() {
                Phase::FirstSettings
            } else {
                Phase::Preface(matched + n)
            };
        }
        loop {
            match self.phase {
                Phase::Failed(e) => return Err(e),
                Phase::Preface(_) => return Ok(used),
                Phase::FirstSettings | Phase::Frames => {}
            }
            let (frame, n) = match frame::decode(&buf[used..], self.config.max_frame_size) {
                Ok(Decoded::Partial) => return Ok(used),
                Ok(Decoded::Complete(frame, n)) => (frame, n),
                Err(e) => match e.error {
                    H2Error::Connection(code) => {
                        let cause = if code == ErrorCode::FRAME_SIZE_ERROR {
                            "frame of a wrong size"
                        } else {
                            "malformed frame"
                        };
                        return Err(self.fail(Failure::new(code, cause)));
                    }
                    H2Error::Stream { stream_id, code } => {
                        let kind = frame::FrameHeader::parse(&buf[used..]).map(|h| h.kind);
                        if let Err(f) = self.on_stream_error(stream_id, code, kind, events) {
                            return Err(self.fail(f));
                        }
                        used += e.consumed;
                        continue;
                    }
                },
            };
            used += n;
            if let Err(f) = self.on_frame(frame, events) {
                return Err(self.fail(f));
            }
        }
    }

    /// Queues GOAWAY and ends the connection (§5.4.1).
    fn fail(&mut self, failure: Failure) -> H2Error {
        if let Phase::Failed(first) = self.phase {
            return first;
        }
        let error = H2Error::Connection(failure.code);
        frame::encode_goaway(&mut self.output, self.last_stream, failure.code, b"");
        self.phase = Phase::Failed(error);
        self.cause = Some(failure.cause);
        error
    }

    /// A frame the decoder refused as a stream error (§5.4.2).
    fn on_stream_error(
        &mut self,
        stream: u32,
        code: ErrorCode,
        kind: Option<u8>,
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        if self.pending.is_some() {
            // Only CONTINUATION may follow an unfinished field block.
            return Err(Failure::protocol("frame inside a field block"));
        }
        if kind == Some(frame::kind::WINDOW_UPDATE) && self.is_idle(stream) {
            // §5.1: a WINDOW_UPDATE (here with a zero increment) on an idle stream.
            return Err(Failure::protocol("WINDOW_UPDATE on an idle stream"));
        }
        self.floods.stream_error()?;
        self.reset(stream, code, events)
    }

    /// Resets a stream after a stream error (§5.4.2); an event tells the engine when the
    /// stream was one it knew.
    fn reset(
        &mut self,
        stream: u32,
        code: ErrorCode,
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        self.floods.answer("stream errors flood")?;
        frame::encode_rst_stream(&mut self.output, stream, code);
        if let Some(s) = self.streams.remove(&stream) {
            // Whatever the application had not read is released with the stream.
            self.release_connection(s.unreleased);
            events.push(Event::Reset {
                stream,
                code,
                remote: false,
            });
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame<'_>, events: &mut Vec<Event>) -> Result<(), Failure> {
        if matches!(self.phase, Phase::FirstSettings) {
            // §3.4: the preface's SETTINGS comes first.
            if !matches!(frame, Frame::Settings { ack: false, .. }) {
                return Err(Failure::protocol("first frame is not SETTINGS"));
            }
            self.phase = Phase::Frames;
        }
        if let Some(pending) = &self.pending {
            // §6.10: nothing but this stream's CONTINUATION until END_HEADERS.
            match frame {
                Frame::Continuation { stream_id, .. } if stream_id == pending.stream => {}
                _ => return Err(Failure::protocol("frame inside a field block")),
            }
        }
        match frame {
            Frame::Data {
                stream_id,
                data,
                end_stream,
                flow_len,
            } => self.on_data(stream_id, data, end_stream, flow_len, events),
            Frame::Headers {
                stream_id,
                fragment,
                end_stream,
                end_headers,
                priority,
            } => {
                if stream_id % 2 == 0 {
                    // §5.1.1: clients use odd ids
                    return Err(Failure::protocol("HEADERS on an even stream id"));
                }
                if fragment.is_empty() && !end_headers {
                    self.floods.empty_frame()?;
                }
                self.pending = Some(PendingBlock {
                    stream: stream_id,
                    end_stream,
                    block: Vec::new(),
                });
                self.append_fragment(fragment)?;
                if end_headers {
                    self.finish_block(priority.map(|p| p.dependency), events)?;
                }
                Ok(())
            }
            Frame::Continuation {
                fragment,
                end_headers,
                ..
            } => {
                if self.pending.is_none() {
                    // §6.10: no block to continue
                    return Err(Failure::protocol("CONTINUATION without HEADERS"));
                }
                if fragment.is_empty() && !end_headers {
                    self.floods.empty_frame()?;
                }
                self.append_fragment(fragment)?;
                if end_headers {
                    self.finish_block(None, events)?;
                }
                Ok(())
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => Ok(()),
            Frame::RstStream { stream_id, code } => {
                if self.is_idle(stream_id) {
                    return Err(Failure::protocol("RST_STREAM on an idle stream"));
                    // §6.4
                }
                if let Some(s) = self.streams.remove(&stream_id) {
                    self.release_connection(s.unreleased);
                    events.push(Event::Reset {
                        stream: stream_id,
                        code,
                        remote: true,
                    });
                    if s.local_open() {
                        // Reset before our response ended: the work was for nothing.
                        self.floods.client_reset()?;
                    }
                }
                Ok(())
            }
            Frame::Settings { ack: true, .. } => {
                if !self.settings_acked {
                    self.settings_acked = true;
                    self.apply_our_settings()?;
                }
                Ok(())
            }
            Frame::Settings { ack: false, .. } => {
                self.floods.settings()?;
                for (id, value) in frame.settings() {
                    self.apply_peer_setting(id, value, events)?;
                }
                frame::encode_settings_ack(&mut self.output);
                Ok(())
            }
            Frame::Ping { ack, data } => {
                if !ack {
                    self.floods.ping()?;
                    frame::encode_ping_ack(&mut self.output, data);
                }
                Ok(())
            }
            Frame::GoAway {
                last_stream_id,
                code,
                ..
            } => {
                events.push(Event::GoAway {
                    last_stream_id,
                    code,
                });
                Ok(())
            }
            Frame::WindowUpdate {
                stream_id,
                increment,
            } => self.on_window_update(stream_id, increment, events),
        }
    }

    /// A stream id the client has not opened yet (§5.1: idle).
    fn is_idle(&self, stream: u32) -> bool {
        stream > self.last_stream
    }

    fn on_data(
        &mut self,
        stream: u32,
        data: &[u8],
        end_stream: bool,
        flow_len: u32,
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        if self.is_idle(stream) {
            return Err(Failure::protocol("DATA on an idle stream")); // §5.1
        }
        if data.is_empty() && !end_stream {
            // Padding alone carries nothing either (and is given back at once).
            self.floods.empty_frame()?;
        }
        // §6.9: DATA counts against the connection window whatever the stream's state.
        if self.recv_window.consume(flow_len).is_err() {
            return Err(Failure::new(
                ErrorCode::FLOW_CONTROL_ERROR,
                "DATA past the connection window",
            ));
        }
        self.unreleased += flow_len;
        let padding = flow_len - data.len() as u32;
        let Some(s) = self.streams.get_mut(&stream) else {
            // Closed: nothing reaches the application, so the bytes are released now.
            self.release_connection(flow_len);
            return self.reset(stream, ErrorCode::STREAM_CLOSED, events);
        };
        if !s.remote_open() {
            self.release_connection(flow_len);
            return self.reset(stream, ErrorCode::STREAM_CLOSED, events);
        }
        if s.recv_window.consume(flow_len).is_err() {
            self.release_connection(flow_len);
            return self.reset(stream, ErrorCode::FLOW_CONTROL_ERROR, events);
        }
        s.unreleased += data.len() as u32;
        let closed = end_stream && s.close_remote();
        if closed {
            self.streams.remove(&stream);
        }
        // Padding never reaches the application: give it back at once.
        self.release_padding(stream, padding);
        if !data.is_empty() {
            // Body bytes for a live stream (not DATA after a reset, say).
            self.floods.useful();
        }
        if !data.is_empty() || end_stream {
            events.push(Event::Data {
                stream,
                bytes: data.to_vec(),
                end_stream,
            });
        }
        Ok(())
    }

    fn append_fragment(&mut self, fragment: &[u8]) -> Result<(), Failure> {
        let pending = self.pending.as_mut().expect("a field block is open");
        if pending.block.len() + fragment.len() > self.config.max_request_header_size {
            // CVE-2024-27316: cut the block as soon as it passes the cap. A partial block
            // cannot be decoded, so the HPACK context is lost: the connection ends.
            return Err(Failure::new(
                ErrorCode::ENHANCE_YOUR_CALM,
                "field block past max_request_header_size",
            ));
        }
        pending.block.extend_from_slice(fragment);
        Ok(())
    }

    /// A whole field block: decode it (always, for HPACK's sake), then apply it.
    fn finish_block(
        &mut self,
        dependency: Option<u32>,
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        let PendingBlock {
            stream,
            end_stream,
            block,
        } = self.pending.take().expect("a field block is open");
        let mut fields = Vec::new();
        self.decoder
            .decode(
                &block,
                self.config.max_header_list_size as usize,
                &mut fields,
            )
            .map_err(|e| {
                let cause = if e == hpack::HpackError::HeaderListTooLarge {
                    "header list past max_header_list_size"
                } else {
                    "HPACK decoding error"
                };
                Failure::new(e.h2_error().code(), cause)
            })?;
        if dependency == Some(stream) {
            // §5.3.1 (RFC 7540): a stream cannot depend on itself.
            self.last_stream = self.last_stream.max(stream);
            self.floods.stream_error()?;
            return self.reset(stream, ErrorCode::PROTOCOL_ERROR, events);
        }
        if let Some(s) = self.streams.get_mut(&stream) {
            // A second block on a live stream: trailers, which must end the stream (§8.1).
            if !s.remote_open() {
                return self.reset(stream, ErrorCode::STREAM_CLOSED, events);
            } else if !end_stream {
                return self.reset(stream, ErrorCode::PROTOCOL_ERROR, events);
            }
            if s.close_remote() {
                self.streams.remove(&stream);
            }
            events.push(Event::Trailers { stream, fields });
            self.floods.useful();
            return Ok(());
        }
        if stream <= self.last_stream {
            // §5.1: HEADERS on a closed stream. A stream error rather than a connection
            // one: the client may have sent it before our RST_STREAM reached it.
            return self.reset(stream, ErrorCode::STREAM_CLOSED, events);
        }
        self.last_stream = stream;
        if self.going_away || self.streams.len() >= self.config.max_concurrent_streams as usize {
            // §5.1.2: past our limit; or after our GOAWAY (§6.8). The client may retry it,
            // but a client that keeps opening streams past the limit is flooding.
            self.floods.refused()?;
            return self.reset(stream, ErrorCode::REFUSED_STREAM, events);
        }
        let recv = if self.settings_acked {
            self.config.initial_window_size
        } else {
            DEFAULT_WINDOW
        };
        self.streams.insert(
            stream,
            Stream::new(end_stream, recv, self.peer.initial_window_size),
        );
        events.push(Event::RequestHeaders {
            stream,
            fields,
            end_stream,
        });
        self.floods.useful();
        Ok(())
    }

    /// Our SETTINGS were acknowledged: the HPACK table limit is ours (a smaller one must
    /// be announced by the client's next block, RFC 7541 §4.2), and live streams move to
    /// our initial window (§6.9.2).
    fn apply_our_settings(&mut self) -> Result<(), Failure> {
        self.decoder
            .set_max_table_size(self.config.header_table_size as usize);
        let delta = i64::from(self.config.initial_window_size) - i64::from(DEFAULT_WINDOW);
        for s in self.streams.values_mut() {
            s.recv_window
                .grow(delta)
                .map_err(|_| Failure::new(ErrorCode::FLOW_CONTROL_ERROR, "window overflow"))?;
        }
        Ok(())
    }

    fn apply_peer_setting(
        &mut self,
        id: u16,
        value: u32,
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        match id {
            setting::INITIAL_WINDOW_SIZE => {
                // §6.9.2: every stream's send window moves by the difference.
                let delta = i64::from(value) - i64::from(self.peer.initial_window_size);
                self.peer.initial_window_size = value;
                for s in self.streams.values_mut() {
                    s.send_window.grow(delta).map_err(|_| {
                        Failure::new(ErrorCode::FLOW_CONTROL_ERROR, "window overflow")
                    })?;
                }
                if delta > 0 {
                    events.push(Event::WindowOpened { stream: 0 });
                }
            }
            setting::MAX_FRAME_SIZE => self.peer.max_frame_size = value,
            // Our encoder's table: the client's limit, capped at the default size.
            setting::HEADER_TABLE_SIZE => {
                self.encoder.set_max_table_size((value as usize).min(4096))
            }
            _ => {}
        }
        Ok(())
    }

    fn on_window_update(
        &mut self,
        stream: u32,
        increment: u32,
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        if stream == 0 {
            self.send_window
                .grow(i64::from(increment))
                .map_err(|_| Failure::new(ErrorCode::FLOW_CONTROL_ERROR, "window overflow"))?; // §6.9.1: past 2^31-1
            events.push(Event::WindowOpened { stream: 0 });
            return Ok(());
        }
        if self.is_idle(stream) {
            return Err(Failure::protocol("WINDOW_UPDATE on an idle stream")); // §5.1
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return Ok(()); // closed: may cross our RST_STREAM or END_STREAM (§6.9)
        };
        if s.send_window.grow(i64::from(increment)).is_err() {
            return self.reset(stream, ErrorCode::FLOW_CONTROL_ERROR, events);
        }
        events.push(Event::WindowOpened { stream });
        Ok(())
    }

    /// Gives `n` bytes of a stream's request body back to the client's windows once the
    /// application has taken them: WINDOW_UPDATEs are queued when half a window is due.
    pub fn release(&mut self, stream: u32, n: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            let n = n.min(s.unreleased);
            s.unreleased -= n;
            self.release_stream(stream, n);
        }
        self.release_connection(n);
    }

    fn release_padding(&mut self, stream: u32, n: u32) {
        self.release_stream(stream, n);
        self.release_connection(n);
    }

    fn release_stream(&mut self, stream: u32, n: u32) {
        let initial = if self.settings_acked {
            self.config.initial_window_size
        } else {
            DEFAULT_WINDOW
        };
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if n == 0 || !s.remote_open() {
            return;
        }
        // Batched: one WINDOW_UPDATE per half window consumed, not one per read.
        let owed = i64::from(initial) - s.recv_window.value() - i64::from(s.unreleased);
        if owed >= i64::from(initial / 2).max(1) {
            let owed = owed.min(i64::from(MAX_WINDOW_SIZE)) as u32;
            if s.recv_window.grow(i64::from(owed)).is_ok() {
                frame::encode_window_update(&mut self.output, stream, owed);
            }
        }
    }

    fn release_connection(&mut self, n: u32) {
        self.unreleased = self.unreleased.saturating_sub(n);
        let target = i64::from(self.config.connection_window.max(DEFAULT_WINDOW));
        let owed = target - self.recv_window.value() - i64::from(self.unreleased);
        if owed >= target / 2 && owed > 0 {
            let owed = owed.min(i64::from(MAX_WINDOW_SIZE)) as u32;
            if self.recv_window.grow(i64::from(owed)).is_ok() {
                frame::encode_window_update(&mut self.output, 0, owed);
            }
        }
    }

    /// Queues a response's field block (split to the client's frame size) on a live
    /// stream.
    pub fn send_headers<'f, I>(&mut self, stream: u32, fields: I, end_stream: bool)
    where
        I: IntoIterator<Item = (&'f [u8], &'f [u8])>,
    {
        let mut block = Vec::new();
        self.encoder.encode(fields, &mut block);
        frame::encode_headers(
            &mut self.output,
            stream,
            &block,
            end_stream,
            self.peer.max_frame_size,
        );
        if end_stream {
            self.end_local(stream);
        }
    }

    /// Queues as much of `data` as the client's windows and frame size allow; returns
    /// how much was taken. END_STREAM goes with the last byte only.
    pub fn send_data(&mut self, stream: u32, data: &[u8], end_stream: bool) -> usize {
        let Some(s) = self.streams.get_mut(&stream) else {
            return 0;
        };
        if !s.local_open() {
            return 0;
        }
        let room = s.send_window.available().min(self.send_window.available()) as usize;
        let n = data.len().min(room);
        // n fits both windows, so these cannot fail.
        let _ = s.send_window.consume(n as u32);
        let _ = self.send_window.consume(n as u32);
        let max = self.peer.max_frame_size as usize;
        for (i, chunk) in data[..n].chunks(max).enumerate() {
            let last = i * max + chunk.len() == data.len();
            frame::encode_data(&mut self.output, stream, chunk, end_stream && last);
        }
        if end_stream && n == data.len() {
            if n == 0 {
                frame::encode_data(&mut self.output, stream, &[], true);
            }
            self.end_local(stream);
        }
        n
    }

    fn end_local(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            if s.local_open() {
                // A response ended: worth a reset the client may make later.
                self.floods.response_ended();
            }
            if s.close_local() {
                self.streams.remove(&stream);
            }
        }
    }

    /// Resets a stream from our side (the application failed, or gave up on it).
    pub fn reset_stream(&mut self, stream: u32, code: ErrorCode) {
        frame::encode_rst_stream(&mut self.output, stream, code);
        if let Some(s) = self.streams.remove(&stream) {
            self.release_connection(s.unreleased);
        }
    }

    /// Starts a graceful close: GOAWAY naming the last stream we will process (§6.8);
    /// live streams go on, new ones are refused. The engine closes the connection once
    /// [`Connection::open_streams`] is 0.
    pub fn go_away(&mut self, code: ErrorCode) {
        frame::encode_goaway(&mut self.output, self.last_stream, code, b"");
        self.going_away = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::frame::{flag, kind, FrameHeader, FRAME_HEADER_LEN};

    /// (type, flags, stream, payload) of one frame the connection sent.
    type Sent = (u8, u8, u32, Vec<u8>);

    /// Every frame in `out`.
    fn frames(out: &[u8]) -> Vec<Sent> {
        let mut rest = out;
        let mut all = Vec::new();
        while !rest.is_empty() {
            let h = FrameHeader::parse(rest).unwrap();
            let end = FRAME_HEADER_LEN + h.length as usize;
            all.push((
                h.kind,
                h.flags,
                h.stream_id,
                rest[FRAME_HEADER_LEN..end].to_vec(),
            ));
            rest = &rest[end..];
        }
        all
    }

    fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = FrameHeader {
            length: payload.len() as u32,
            kind,
            flags,
            stream_id: stream,
        }
        .to_bytes()
        .to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut enc = hpack::Encoder::default();
        let mut out = Vec::new();
        enc.encode(
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut out,
        );
        out
    }

    const GET: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "a"),
    ];

    /// A connection past the preface and the SETTINGS exchange, its output drained.
    fn started(config: Config) -> Connection {
        let mut c = Connection::new(config);
        let mut input = PREFACE.to_vec();
        input.extend(raw(kind::SETTINGS, 0, 0, &[]));
        input.extend(raw(kind::SETTINGS, flag::ACK, 0, &[]));
        let mut events = Vec::new();
        assert_eq!(c.receive(&input, &mut events), Ok(input.len()));
        assert!(events.is_empty());
        c.take_output();
        c
    }

    fn feed(c: &mut Connection, input: &[u8]) -> (Result<usize, H2Error>, Vec<Event>, Vec<Sent>) {
        let mut events = Vec::new();
        let r = c.receive(input, &mut events);
        (r, events, frames(&c.take_output()))
    }

    fn goaway_code(out: &[Sent]) -> Option<ErrorCode> {
        out.iter()
            .find(|f| f.0 == kind::GOAWAY)
            .map(|f| ErrorCode(u32::from_be_bytes(f.3[4..8].try_into().unwrap())))
    }

    fn rst(out: &[Sent]) -> Vec<(u32, ErrorCode)> {
        out.iter()
            .filter(|f| f.0 == kind::RST_STREAM)
            .map(|f| {
                (
                    f.2,
                    ErrorCode(u32::from_be_bytes(f.3[..4].try_into().unwrap())),
                )
            })
            .collect()
    }

    #[test]
    fn preface_is_decided_byte_by_byte() {
        assert_eq!(check_preface(b"G"), PrefaceMatch::NotHttp2);
        assert_eq!(check_preface(b"GET / HTTP/1.1\r\n"), PrefaceMatch::NotHttp2);
        assert_eq!(check_preface(b""), PrefaceMatch::Partial);
        assert_eq!(check_preface(b"PRI * HTTP/2.0\r\n"), PrefaceMatch::Partial);
        assert_eq!(check_preface(b"PRI * HTTP/1.1\r\n"), PrefaceMatch::NotHttp2);
        assert_eq!(
            check_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            PrefaceMatch::Http2
        );

        // Fed one byte at a time, then a bad byte.
        let mut c = Connection::new(Config::default());
        let mut events = Vec::new();
        for &b in &PREFACE[..10] {
            assert_eq!(c.receive(&[b], &mut events), Ok(1));
        }
        assert_eq!(
            c.receive(b"X", &mut events),
            Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR))
        );
        assert_eq!(
            c.receive(b"", &mut events),
            Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR))
        );
    }

    #[test]
    fn settings_exchange_and_ping() {
        let mut c = Connection::new(Config {
            connection_window: 1 << 20,
            ..Config::default()
        });
        let out = frames(&c.take_output());
        assert_eq!(out[0].0, kind::SETTINGS);
        assert_eq!((out[1].0, out[1].2), (kind::WINDOW_UPDATE, 0));
        let mut input = PREFACE.to_vec();
        input.extend(raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]));
        input.extend(raw(kind::PING, 0, 0, b"pingpong"));
        input.extend(raw(kind::PING, flag::ACK, 0, b"ignoreme"));
        let (r, _, out) = feed(&mut c, &input);
        assert_eq!(r, Ok(input.len()));
        assert_eq!((out[0].0, out[0].1), (kind::SETTINGS, flag::ACK));
        assert_eq!(
            (out[1].0, out[1].1, &out[1].3[..]),
            (kind::PING, flag::ACK, &b"pingpong"[..])
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn first_frame_must_be_settings() {
        let mut c = Connection::new(Config::default());
        let mut input = PREFACE.to_vec();
        input.extend(raw(kind::PING, 0, 0, b"pingpong"));
        let (r, _, out) = feed(&mut c, &input);
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR)));
        assert_eq!(goaway_code(&out), Some(ErrorCode::PROTOCOL_ERROR));
    }

    #[test]
    fn request_across_continuation_then_body_and_trailers() {
        let mut c = started(Config::default());
        let b = block(GET);
        let mut input = raw(kind::HEADERS, 0, 1, &b[..3]);
        input.extend(raw(kind::CONTINUATION, 0, 1, &b[3..5]));
        input.extend(raw(kind::CONTINUATION, flag::END_HEADERS, 1, &b[5..]));
        input.extend(raw(kind::DATA, 0, 1, b"hello"));
        let (r, events, _) = feed(&mut c, &input);
        assert_eq!(r, Ok(input.len()));
        let Event::RequestHeaders {
            stream: 1,
            fields,
            end_stream: false,
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(fields.len(), 4);
        assert_eq!(
            events[1],
            Event::Data {
                stream: 1,
                bytes: b"hello".to_vec(),
                end_stream: false
            }
        );
        // Trailers, from an encoder that leaves the tables alone (a literal, not indexed).
        let mut t = Vec::new();
        hpack::Encoder::new(4096).encode_field(b"x-t", b"1", hpack::Indexing::Without, &mut t);
        let (r, events, _) = feed(
            &mut c,
            &raw(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &t),
        );
        assert!(r.is_ok());
        assert!(
            matches!(&events[0], Event::Trailers { stream: 1, fields } if fields[0].name == b"x-t")
        );
        assert_eq!(
            c.stream(1).unwrap().state,
            crate::h2::stream::StreamState::HalfClosedRemote
        );
    }

    #[test]
    fn continuation_must_not_be_interrupted() {
        let mut c = started(Config::default());
        let b = block(GET);
        let mut input = raw(kind::HEADERS, 0, 1, &b[..3]);
        input.extend(raw(kind::PING, 0, 0, b"pingpong"));
        let (r, _, out) = feed(&mut c, &input);
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR)));
        assert_eq!(goaway_code(&out), Some(ErrorCode::PROTOCOL_ERROR));

        let mut c = started(Config::default());
        let mut input = raw(kind::HEADERS, 0, 1, &b[..3]);
        input.extend(raw(kind::CONTINUATION, flag::END_HEADERS, 3, &b[3..]));
        assert_eq!(
            feed(&mut c, &input).0,
            Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR))
        );

        let mut c = started(Config::default());
        let input = raw(kind::CONTINUATION, flag::END_HEADERS, 1, &b);
        assert_eq!(
            feed(&mut c, &input).0,
            Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR))
        );
    }

    #[test]
    fn continuation_flood_is_cut_at_the_cap() {
        let cap = 4096;
        let mut c = started(Config {
            max_request_header_size: cap,
            ..Config::default()
        });
        let mut input = raw(kind::HEADERS, 0, 1, &[0x82; 1000]);
        for _ in 0..100 {
            input.extend(raw(kind::CONTINUATION, 0, 1, &[0x82; 1000]));
        }
        let (r, _, out) = feed(&mut c, &input);
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::ENHANCE_YOUR_CALM)));
        assert_eq!(goaway_code(&out), Some(ErrorCode::ENHANCE_YOUR_CALM));
        // The block held never passed the cap.
        assert!(c.pending.as_ref().is_none_or(|p| p.block.len() <= cap));
    }

    #[test]
    fn refused_streams_keep_hpack_in_step() {
        let mut c = started(Config {
            max_concurrent_streams: 1,
            ..Config::default()
        });
        let mut enc = hpack::Encoder::default();
        let mut input = Vec::new();
        for stream in [1u32, 3, 5] {
            let mut b = Vec::new();
            enc.encode(
                [
                    (&b":authority"[..], &b"example.org"[..]),
                    (&b"x-n"[..], &b"v"[..]),
                ],
                &mut b,
            );
            input.extend(raw(kind::HEADERS, flag::END_HEADERS, stream, &b));
        }
        let (r, events, out) = feed(&mut c, &input);
        assert_eq!(r, Ok(input.len()));
        assert_eq!(
            rst(&out),
            [
                (3, ErrorCode::REFUSED_STREAM),
                (5, ErrorCode::REFUSED_STREAM)
            ]
        );
        assert_eq!(events.len(), 1);
        // Stream 1 finishes; the next stream is accepted and decodes from the shared table.
        c.reset_stream(1, ErrorCode::CANCEL);
        let mut b = Vec::new();
        enc.encode([(&b":authority"[..], &b"example.org"[..])], &mut b);
        assert_eq!(b, [0xbf], "the encoder refers to its dynamic table");
        let (r, events, _) = feed(&mut c, &raw(kind::HEADERS, flag::END_HEADERS, 7, &b));
        assert!(r.is_ok());
        assert!(
            matches!(&events[0], Event::RequestHeaders { stream: 7, fields, .. } if fields[0].value == b"example.org")
        );
    }

    #[test]
    fn stream_ids_and_states() {
        let mut c = started(Config::default());
        let b = block(GET);
        assert_eq!(
            feed(&mut c, &raw(kind::HEADERS, flag::END_HEADERS, 2, &b)).0,
            Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR)),
            "even stream id"
        );
        let mut c = started(Config::default());
        assert_eq!(
            feed(&mut c, &raw(kind::DATA, 0, 1, b"x")).0,
            Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR)),
            "DATA on an idle stream"
        );
        let mut c = started(Config::default());
        assert_eq!(
            feed(&mut c, &raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8])).0,
            Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR)),
            "RST_STREAM on an idle stream"
        );
        // DATA after END_STREAM: the stream is half-closed (remote), a stream error.
        let mut c = started(Config::default());
        let mut input = raw(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &b);
        input.extend(raw(kind::DATA, 0, 1, b"late"));
        let (r, events, out) = feed(&mut c, &input);
        assert!(r.is_ok());
        assert_eq!(rst(&out), [(1, ErrorCode::STREAM_CLOSED)]);
        assert!(matches!(
            events[1],
            Event::Reset {
                stream: 1,
                remote: false,
                ..
            }
        ));
        // The client resets a stream.
        let mut c = started(Config::default());
        let mut input = raw(kind::HEADERS, flag::END_HEADERS, 1, &b);
        input.extend(raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]));
        let (_, events, _) = feed(&mut c, &input);
        assert_eq!(
            events[1],
            Event::Reset {
                stream: 1,
                code: ErrorCode::CANCEL,
                remote: true
            }
        );
        assert_eq!(c.open_streams(), 0);
    }

    #[test]
    fn receive_windows_are_enforced_and_released() {
        let mut c = started(Config::default());
        let b = block(GET);
        let mut input = raw(kind::HEADERS, flag::END_HEADERS, 1, &b);
        let chunk = vec![0u8; 16_384];
        for _ in 0..3 {
            input.extend(raw(kind::DATA, 0, 1, &chunk));
        }
        let (r, events, out) = feed(&mut c, &input);
        assert!(r.is_ok());
        assert_eq!(events.len(), 4);
        assert!(out.is_empty(), "nothing released yet");
        c.release(1, 3 * 16_384);
        let out = frames(&c.take_output());
        let updates: Vec<u32> = out
            .iter()
            .filter(|f| f.0 == kind::WINDOW_UPDATE)
            .map(|f| f.2)
            .collect();
        assert_eq!(updates, [1, 0]);

        // Past the stream's window (65,535 with 16,384-byte frames: the 4th frame), with
        // room left in the connection's.
        let mut c = started(Config {
            connection_window: 1 << 20,
            ..Config::default()
        });
        let mut input = raw(kind::HEADERS, flag::END_HEADERS, 1, &b);
        for _ in 0..4 {
            input.extend(raw(kind::DATA, 0, 1, &chunk));
        }
        let (r, _, out) = feed(&mut c, &input);
        assert!(r.is_ok());
        assert_eq!(rst(&out), [(1, ErrorCode::FLOW_CONTROL_ERROR)]);

        // Past the connection's window: two streams share 65,535.
        let mut c = started(Config::default());
        let mut input = raw(kind::HEADERS, flag::END_HEADERS, 1, &b);
        input.extend(raw(
            kind::HEADERS,
            flag::END_HEADERS,
            3,
            &[0x82, 0x86, 0x84, 0x41, 0x01, b'a'],
        ));
        for s in [1, 3, 1, 3] {
            input.extend(raw(kind::DATA, 0, s, &chunk));
        }
        let (r, _, out) = feed(&mut c, &input);
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::FLOW_CONTROL_ERROR)));
        assert_eq!(goaway_code(&out), Some(ErrorCode::FLOW_CONTROL_ERROR));
    }

    #[test]
    fn window_update_overflow() {
        let mut c = started(Config::default());
        let inc = |n: u32| n.to_be_bytes();
        let input = raw(
            kind::WINDOW_UPDATE,
            0,
            0,
            &inc(MAX_WINDOW_SIZE - 65_535 + 1),
        );
        let (r, _, out) = feed(&mut c, &input);
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::FLOW_CONTROL_ERROR)));
        assert_eq!(goaway_code(&out), Some(ErrorCode::FLOW_CONTROL_ERROR));

        let mut c = started(Config::default());
        let mut input = raw(kind::HEADERS, flag::END_HEADERS, 1, &block(GET));
        input.extend(raw(
            kind::WINDOW_UPDATE,
            0,
            1,
            &inc(MAX_WINDOW_SIZE - 65_535),
        ));
        input.extend(raw(kind::WINDOW_UPDATE, 0, 1, &inc(1)));
        let (r, _, out) = feed(&mut c, &input);
        assert!(r.is_ok());
        assert_eq!(rst(&out), [(1, ErrorCode::FLOW_CONTROL_ERROR)]);

        // A SETTINGS_INITIAL_WINDOW_SIZE increase that takes a stream past 2^31-1.
        let mut c = started(Config::default());
        let mut input = raw(kind::HEADERS, flag::END_HEADERS, 1, &block(GET));
        input.extend(raw(
            kind::WINDOW_UPDATE,
            0,
            1,
            &inc(MAX_WINDOW_SIZE - 65_535),
        ));
        input.extend(raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
        let (r, _, _) = feed(&mut c, &input);
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::FLOW_CONTROL_ERROR)));
    }

    #[test]
    fn smaller_hpack_table_applies_once_acknowledged() {
        let mut c = started(Config {
            header_table_size: 0,
            ..Config::default()
        });
        // After the ACK the client's next block must open with a size update.
        let b = block(GET);
        let (r, _, out) = feed(&mut c, &raw(kind::HEADERS, flag::END_HEADERS, 1, &b));
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::COMPRESSION_ERROR)));
        assert_eq!(goaway_code(&out), Some(ErrorCode::COMPRESSION_ERROR));
        let mut c = started(Config {
            header_table_size: 0,
            ..Config::default()
        });
        let mut enc = hpack::Encoder::default();
        enc.set_max_table_size(0);
        let mut b = Vec::new();
        enc.encode(
            GET.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut b,
        );
        let (r, events, _) = feed(&mut c, &raw(kind::HEADERS, flag::END_HEADERS, 1, &b));
        assert!(r.is_ok());
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn graceful_goaway_refuses_new_streams() {
        let mut c = started(Config::default());
        let b = block(GET);
        feed(&mut c, &raw(kind::HEADERS, flag::END_HEADERS, 1, &b))
            .0
            .unwrap();
        c.go_away(ErrorCode::NO_ERROR);
        let out = frames(&c.take_output());
        assert_eq!(out[0].0, kind::GOAWAY);
        assert_eq!(&out[0].3[..4], &1u32.to_be_bytes());
        let (r, events, out) = feed(
            &mut c,
            &raw(
                kind::HEADERS,
                flag::END_HEADERS,
                3,
                &[0x82, 0x86, 0x84, 0xbe],
            ),
        );
        assert!(r.is_ok() && events.is_empty());
        assert_eq!(rst(&out), [(3, ErrorCode::REFUSED_STREAM)]);
        assert_eq!(c.open_streams(), 1, "stream 1 still runs");
    }

    #[test]
    fn output_follows_the_peer_windows() {
        let mut c = started(Config::default());
        let mut input = raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]);
        input.extend(raw(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &block(GET),
        ));
        feed(&mut c, &input).0.unwrap();
        c.send_headers(1, [(&b":status"[..], &b"200"[..])], false);
        assert_eq!(c.send_data(1, &[b'x'; 100], true), 10);
        let out = frames(&c.take_output());
        assert_eq!(out[0].0, kind::HEADERS);
        assert_eq!((out[1].0, out[1].1, out[1].3.len()), (kind::DATA, 0, 10));
        assert_eq!(c.send_data(1, &[b'x'; 90], true), 0);
        let (_, events, _) = feed(
            &mut c,
            &raw(kind::WINDOW_UPDATE, 0, 1, &1000u32.to_be_bytes()),
        );
        assert_eq!(events, [Event::WindowOpened { stream: 1 }]);
        assert_eq!(c.send_data(1, &[b'x'; 90], true), 90);
        let out = frames(&c.take_output());
        assert_eq!((out[0].1, out[0].3.len()), (flag::END_STREAM, 90));
        assert_eq!(c.open_streams(), 0, "both sides ended");
    }

    /// Feeds `input` and takes the output, as the engine does after each read.
    fn feed_ok(c: &mut Connection, input: &[u8]) {
        let (r, _, _) = feed(c, input);
        assert_eq!(r, Ok(input.len()), "cause: {:?}", c.cause());
    }

    fn assert_calm(c: &Connection, r: Result<usize, H2Error>, out: &[Sent], cause: &str) {
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::ENHANCE_YOUR_CALM)));
        assert_eq!(goaway_code(out), Some(ErrorCode::ENHANCE_YOUR_CALM));
        assert_eq!(c.cause(), Some(cause));
        assert!(c.is_going_away());
    }

    #[test]
    fn rapid_reset_is_cut_past_the_budget() {
        let mut c = started(Config::default());
        let cancel = |stream: u32| {
            let mut input = raw(kind::HEADERS, flag::END_HEADERS, stream, &block(GET));
            input.extend(raw(kind::RST_STREAM, 0, stream, &[0, 0, 0, 8]));
            input
        };
        for i in 0..RAPID_RESET_BURST {
            feed_ok(&mut c, &cancel(2 * i + 1));
        }
        let (r, events, out) = feed(&mut c, &cancel(2 * RAPID_RESET_BURST + 1));
        assert_calm(&c, r, &out, "rapid reset");
        assert_eq!(c.last_stream_id(), 2 * RAPID_RESET_BURST + 1);
        assert!(matches!(
            events.last(),
            Some(Event::Reset { remote: true, .. })
        ));
        // All in one read, as the attack sends them: the same verdict.
        let mut c = started(Config::default());
        let input: Vec<u8> = (0..=RAPID_RESET_BURST)
            .flat_map(|i| cancel(2 * i + 1))
            .collect();
        let (r, _, out) = feed(&mut c, &input);
        assert_calm(&c, r, &out, "rapid reset");
    }

    #[test]
    fn resets_alongside_answered_requests_are_fine() {
        let mut c = started(Config::default());
        let mut stream = 1;
        for _ in 0..4 * RAPID_RESET_BURST {
            // One request answered, one cancelled: a browser's pattern at its worst.
            feed_ok(
                &mut c,
                &raw(
                    kind::HEADERS,
                    flag::END_HEADERS | flag::END_STREAM,
                    stream,
                    &block(GET),
                ),
            );
            c.send_headers(stream, [(&b":status"[..], &b"200"[..])], true);
            let mut input = raw(kind::HEADERS, flag::END_HEADERS, stream + 2, &block(GET));
            input.extend(raw(kind::RST_STREAM, 0, stream + 2, &[0, 0, 0, 8]));
            feed_ok(&mut c, &input);
            stream += 4;
        }
        // A reset after our response ended (an upload the client stops) costs nothing.
        for _ in 0..2 * RAPID_RESET_BURST {
            feed_ok(
                &mut c,
                &raw(kind::HEADERS, flag::END_HEADERS, stream, &block(GET)),
            );
            c.send_headers(stream, [(&b":status"[..], &b"413"[..])], true);
            feed_ok(&mut c, &raw(kind::RST_STREAM, 0, stream, &[0, 0, 0, 8]));
            stream += 2;
        }
        assert_eq!(c.cause(), None);
        assert_eq!(c.open_streams(), 0);
    }

    #[test]
    fn refused_streams_share_the_reset_budget() {
        let mut c = started(Config {
            max_concurrent_streams: 1,
            ..Config::default()
        });
        feed_ok(
            &mut c,
            &raw(kind::HEADERS, flag::END_HEADERS, 1, &block(GET)),
        );
        for i in 0..RAPID_RESET_BURST {
            let (r, _, out) = feed(
                &mut c,
                &raw(kind::HEADERS, flag::END_HEADERS, 2 * i + 3, &block(GET)),
            );
            assert!(r.is_ok());
            assert_eq!(rst(&out), [(2 * i + 3, ErrorCode::REFUSED_STREAM)]);
        }
        let (r, _, out) = feed(
            &mut c,
            &raw(
                kind::HEADERS,
                flag::END_HEADERS,
                2 * RAPID_RESET_BURST + 3,
                &block(GET),
            ),
        );
        assert_calm(&c, r, &out, "refused streams flood");
    }

    #[test]
    fn ping_flood() {
        let mut c = started(Config::default());
        let ping = raw(kind::PING, 0, 0, b"pingpong");
        // The preface's SETTINGS spent one already.
        for _ in 1..CONTROL_BURST {
            let (r, _, out) = feed(&mut c, &ping);
            assert!(r.is_ok());
            assert_eq!((out[0].0, out[0].1), (kind::PING, flag::ACK));
        }
        let (r, _, out) = feed(&mut c, &ping);
        assert_calm(&c, r, &out, "PING flood");
        // PING ACKs from the client are not answered and cost nothing.
        let mut c = started(Config::default());
        let acks: Vec<u8> = (0..2 * CONTROL_BURST)
            .flat_map(|_| raw(kind::PING, flag::ACK, 0, b"pingpong"))
            .collect();
        feed_ok(&mut c, &acks);
    }

    #[test]
    fn pings_are_refilled_by_requests_and_data() {
        let mut c = started(Config::default());
        let ping = raw(kind::PING, 0, 0, b"pingpong");
        feed_ok(
            &mut c,
            &raw(kind::HEADERS, flag::END_HEADERS, 1, &block(GET)),
        );
        for _ in 0..3 * CONTROL_BURST {
            let mut input = ping.clone();
            input.extend(raw(kind::DATA, 0, 1, b"x"));
            feed_ok(&mut c, &input);
            c.release(1, 1);
        }
        assert_eq!(c.cause(), None);
    }

    #[test]
    fn unread_answers_are_bounded() {
        // Budget to spare (refilled by DATA), but the engine never takes the output: the
        // PING ACKs queued are bounded all the same.
        let mut c = started(Config::default());
        let mut input = raw(kind::HEADERS, flag::END_HEADERS, 1, &block(GET));
        for _ in 0..CONTROL_BURST / 2 {
            input.extend(raw(kind::PING, 0, 0, b"pingpong"));
        }
        for _ in 0..CONTROL_BURST {
            input.extend(raw(kind::DATA, 0, 1, b"x"));
        }
        let mut events = Vec::new();
        assert_eq!(c.receive(&input, &mut events), Ok(input.len()));
        assert!(c.has_output());
        let pings: Vec<u8> = (0..MAX_QUEUED_ANSWERS)
            .flat_map(|_| raw(kind::PING, 0, 0, b"pingpong"))
            .collect();
        let r = c.receive(&pings, &mut events);
        assert!(
            c.floods.control_left() > 0,
            "the queue, not the budget, ended it"
        );
        let out = frames(&c.take_output());
        assert_eq!(
            out.iter().filter(|f| f.0 == kind::PING).count(),
            MAX_QUEUED_ANSWERS
        );
        assert_calm(&c, r, &out, "PING flood");
        assert!(!c.has_output());

        // RST_STREAMs answered to DATA on a closed stream count too.
        let mut c = started(Config::default());
        let mut input = raw(kind::HEADERS, flag::END_HEADERS, 1, &block(GET));
        input.extend(raw(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]));
        for _ in 0..=MAX_QUEUED_ANSWERS {
            input.extend(raw(kind::DATA, 0, 1, b"late"));
        }
        let (r, _, out) = feed(&mut c, &input);
        assert_calm(&c, r, &out, "stream errors flood");
    }

    #[test]
    fn settings_flood() {
        let mut c = started(Config::default());
        let settings = raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]);
        // The preface's SETTINGS spent one already.
        for _ in 1..CONTROL_BURST {
            let (r, _, out) = feed(&mut c, &settings);
            assert!(r.is_ok());
            assert_eq!((out[0].0, out[0].1), (kind::SETTINGS, flag::ACK));
        }
        let (r, _, out) = feed(&mut c, &settings);
        assert_calm(&c, r, &out, "SETTINGS flood");
    }

    #[test]
    fn empty_frames_flood() {
        // DATA without payload nor END_STREAM.
        let mut c = started(Config::default());
        feed_ok(
            &mut c,
            &raw(kind::HEADERS, flag::END_HEADERS, 1, &block(GET)),
        );
        let empty: Vec<u8> = (0..EMPTY_FRAMES_BURST)
            .flat_map(|_| raw(kind::DATA, 0, 1, b""))
            .collect();
        feed_ok(&mut c, &empty);
        let (r, _, out) = feed(&mut c, &raw(kind::DATA, 0, 1, b""));
        assert_calm(&c, r, &out, "empty frames flood");

        // Padding alone is no payload either.
        let mut c = started(Config::default());
        feed_ok(
            &mut c,
            &raw(kind::HEADERS, flag::END_HEADERS, 1, &block(GET)),
        );
        let padded: Vec<u8> = (0..=EMPTY_FRAMES_BURST)
            .flat_map(|_| raw(kind::DATA, flag::PADDED, 1, &[3, 0, 0, 0]))
            .collect();
        let (r, _, out) = feed(&mut c, &padded);
        assert_calm(&c, r, &out, "empty frames flood");

        // CONTINUATION without fragment nor END_HEADERS: the header-block cap, counted
        // in bytes, never sees them.
        let mut c = started(Config::default());
        let mut input = raw(kind::HEADERS, 0, 1, &block(GET)[..1]);
        for _ in 0..=EMPTY_FRAMES_BURST {
            input.extend(raw(kind::CONTINUATION, 0, 1, b""));
        }
        let (r, _, out) = feed(&mut c, &input);
        assert_calm(&c, r, &out, "empty frames flood");

        // An empty DATA with END_STREAM ends a body: not counted.
        let mut c = started(Config::default());
        for i in 0..2 * EMPTY_FRAMES_BURST {
            let mut input = raw(kind::HEADERS, flag::END_HEADERS, 2 * i + 1, &block(GET));
            input.extend(raw(kind::DATA, flag::END_STREAM, 2 * i + 1, b""));
            feed_ok(&mut c, &input);
            c.send_headers(2 * i + 1, [(&b":status"[..], &b"204"[..])], true);
        }
        assert_eq!(c.cause(), None);
    }

    #[test]
    fn zero_window_increments() {
        let zero = |stream: u32| raw(kind::WINDOW_UPDATE, 0, stream, &[0, 0, 0, 0]);
        // On the connection: a connection error (§6.9).
        let mut c = started(Config::default());
        let (r, _, out) = feed(&mut c, &zero(0));
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR)));
        assert_eq!(goaway_code(&out), Some(ErrorCode::PROTOCOL_ERROR));
        // On an idle stream: a connection error (§5.1), never an RST_STREAM (§6.4).
        let mut c = started(Config::default());
        let (r, _, out) = feed(&mut c, &zero(5));
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::PROTOCOL_ERROR)));
        assert!(rst(&out).is_empty());
        assert_eq!(c.cause(), Some("WINDOW_UPDATE on an idle stream"));
        // On a live stream: a stream error (§6.9), counted against the budget.
        let mut c = started(Config::default());
        feed_ok(
            &mut c,
            &raw(kind::HEADERS, flag::END_HEADERS, 1, &block(GET)),
        );
        let (r, events, out) = feed(&mut c, &zero(1));
        assert!(r.is_ok());
        assert_eq!(rst(&out), [(1, ErrorCode::PROTOCOL_ERROR)]);
        assert!(matches!(
            events[0],
            Event::Reset {
                stream: 1,
                remote: false,
                ..
            }
        ));
        // On the now closed stream, again and again.
        for _ in 1..EMPTY_FRAMES_BURST {
            feed_ok(&mut c, &zero(1));
        }
        let (r, _, out) = feed(&mut c, &zero(1));
        assert_calm(&c, r, &out, "stream errors flood");
    }

    #[test]
    fn causes_of_other_connection_errors() {
        let mut c = Connection::new(Config::default());
        assert_eq!(c.cause(), None);
        assert!(c.receive(b"GET / HTTP/1.1\r\n", &mut Vec::new()).is_err());
        assert_eq!(c.cause(), Some("bad connection preface"));

        let mut c = started(Config {
            max_request_header_size: 100,
            ..Config::default()
        });
        let mut input = raw(kind::HEADERS, 0, 1, &[0x82; 60]);
        input.extend(raw(kind::CONTINUATION, 0, 1, &[0x82; 60]));
        let (r, _, _) = feed(&mut c, &input);
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::ENHANCE_YOUR_CALM)));
        assert_eq!(c.cause(), Some("field block past max_request_header_size"));

        let mut c = started(Config::default());
        let inc = (MAX_WINDOW_SIZE - 65_535 + 1).to_be_bytes();
        let (r, _, _) = feed(&mut c, &raw(kind::WINDOW_UPDATE, 0, 0, &inc));
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::FLOW_CONTROL_ERROR)));
        assert_eq!(c.cause(), Some("window overflow"));
        // The first error sticks, with its cause.
        let (r, _, _) = feed(&mut c, &raw(kind::PING, 0, 0, b"pingpong"));
        assert_eq!(r, Err(H2Error::Connection(ErrorCode::FLOW_CONTROL_ERROR)));
        assert_eq!(c.cause(), Some("window overflow"));

        let mut c = started(Config::default());
        let (r, _, _) = feed(&mut c, &raw(kind::DATA, 0, 3, b"x"));
        assert!(r.is_err());
        assert_eq!(c.cause(), Some("DATA on an idle stream"));
    }

    #[test]
    fn graceful_stop_queries() {
        let mut c = started(Config::default());
        assert!(!c.has_output() && !c.is_going_away());
        assert_eq!(c.last_stream_id(), 0);
        feed_ok(
            &mut c,
            &raw(
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                5,
                &block(GET),
            ),
        );
        assert_eq!(c.last_stream_id(), 5);
        c.go_away(ErrorCode::NO_ERROR);
        assert!(c.is_going_away() && c.has_output());
        assert_eq!(c.cause(), None, "a graceful GOAWAY has no cause");
        c.take_output();
        assert!(!c.has_output());
    }

    #[test]
    fn send_window_is_the_least_of_both() {
        let mut c = started(Config::default());
        let mut input = raw(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 100]);
        input.extend(raw(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &block(GET),
        ));
        input.extend(raw(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            3,
            &block(GET),
        ));
        feed_ok(&mut c, &input);
        assert_eq!(c.send_window(1), 100);
        assert_eq!(c.send_window(7), 0, "no such stream");
        c.send_headers(1, [(&b":status"[..], &b"200"[..])], false);
        assert_eq!(c.send_data(1, &[0; 30], false), 30);
        assert_eq!(c.send_window(1), 70);
        // The stream's window grows past the connection's: the connection's counts.
        feed_ok(
            &mut c,
            &raw(kind::WINDOW_UPDATE, 0, 1, &1_000_000u32.to_be_bytes()),
        );
        assert_eq!(c.send_window(1), 65_535 - 30);
        assert_eq!(c.send_data(1, &[0; 10], true), 10);
        assert_eq!(c.send_window(1), 0, "our side is ended");
        c.reset_stream(3, ErrorCode::CANCEL);
        assert_eq!(c.send_window(3), 0, "gone");
    }
}
