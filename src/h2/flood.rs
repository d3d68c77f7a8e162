//! The flood limits of an HTTP/2 connection (RFC 9113 §10.5): frames that cost the
//! server without doing it any good, counted so that a client sending them without end
//! gets GOAWAY ENHANCE_YOUR_CALM. `super::conn` calls `Floods` as frames arrive.
//!
//! The flood budgets count frames, not time: no clock here, the same input always gives
//! the same verdict, and a client cannot buy credit by waiting. Each is a token bucket
//! refilled by frames that are worth their cost, so a busy honest client never runs dry:
//! - rapid reset (CVE-2023-44487): a stream the client resets before we ended our
//!   response, or one we refuse (past SETTINGS_MAX_CONCURRENT_STREAMS, or after our
//!   GOAWAY), spends from [`RAPID_RESET_BURST`]; each response we end gives one back.
//!   Every reset stream may have started the application for nothing, so resets can
//!   outrun completed responses by the burst only, whatever the pace.
//! - SETTINGS and PING floods (CVE-2019-9512, CVE-2019-9515): each one the client sends
//!   (not an ACK) spends from [`CONTROL_BURST`]; a request, trailers or a DATA frame
//!   with payload gives one back.
//! - empty frames (CVE-2019-9518) and other stream errors: DATA without payload or
//!   END_STREAM, HEADERS or CONTINUATION without fragment or END_HEADERS, and frames
//!   whose decoding fails as a stream error (a zero WINDOW_UPDATE increment, a bad
//!   PRIORITY) spend from [`EMPTY_FRAMES_BURST`], refilled as [`CONTROL_BURST`].
//! - queued answers: the SETTINGS ACKs, PING ACKs and RST_STREAMs queued in reply to the
//!   client and not yet taken by `Connection::take_output` are at most
//!   [`MAX_QUEUED_ANSWERS`]. This bounds memory only if the engine stops reading from a
//!   client while output it took is still unwritten: a client that sends without
//!   reading must not make the server buffer without end.
//!
//! `Connection::cause` names the limit (or rule) a failed connection broke, for the log.
//!
//! What must hold: an honest client, however busy, never runs a budget dry (each is
//! refilled by the useful work it pays for); a flood is cut after at most its burst.

use super::error::{ErrorCode, Failure};

/// Streams reset by the client before our response ended, or refused, beyond the
/// responses we ended (rapid reset). A browser cancels some requests (navigation,
/// prefetch), each after others completed; the attack resets every stream it opens.
pub const RAPID_RESET_BURST: u32 = 200;

/// SETTINGS and PING frames from the client beyond the requests and DATA it sends. A
/// client sends one SETTINGS per change and a PING now and then (liveness, RTT); a
/// keep-alive PING on an otherwise idle connection spends it slowly, and the engine's
/// idle timeout ends such a connection long before.
pub const CONTROL_BURST: u32 = 1000;

/// Empty DATA/HEADERS/CONTINUATION frames and stream-level frame errors beyond the
/// requests and DATA the client sends: a client has no reason to send any.
pub const EMPTY_FRAMES_BURST: u32 = 1000;

/// Answers (SETTINGS ACK, PING ACK, RST_STREAM) queued and not yet taken by
/// `Connection::take_output`: what a client that sends without reading can pile up.
pub const MAX_QUEUED_ANSWERS: usize = 1000;

/// A token bucket counted in frames (see the module's header).
#[derive(Clone, Copy, Debug)]
struct Budget {
    left: u32,
    burst: u32,
}

impl Budget {
    fn new(burst: u32) -> Budget {
        Budget { left: burst, burst }
    }

    /// Spends one token: Err, a connection error ENHANCE_YOUR_CALM, when none is left.
    fn spend(&mut self, cause: &'static str) -> Result<(), Failure> {
        match self.left.checked_sub(1) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(Failure::new(ErrorCode::ENHANCE_YOUR_CALM, cause)),
        }
    }

    fn refill(&mut self) {
        self.left = (self.left + 1).min(self.burst);
    }
}

/// The flood counters of one connection.
#[derive(Debug)]
pub(crate) struct Floods {
    resets: Budget,
    control: Budget,
    empty_frames: Budget,
    /// Answers queued since the engine last took the output.
    queued_answers: usize,
}

impl Floods {
    pub(crate) fn new() -> Floods {
        Floods {
            resets: Budget::new(RAPID_RESET_BURST),
            control: Budget::new(CONTROL_BURST),
            empty_frames: Budget::new(EMPTY_FRAMES_BURST),
            queued_answers: 0,
        }
    }

    /// The client reset a stream before our response ended.
    pub(crate) fn client_reset(&mut self) -> Result<(), Failure> {
        self.resets.spend("rapid reset")
    }

    /// We refuse a stream (past SETTINGS_MAX_CONCURRENT_STREAMS, or after our GOAWAY).
    pub(crate) fn refused(&mut self) -> Result<(), Failure> {
        self.resets.spend("refused streams flood")
    }

    /// We ended a response: worth a reset the client may make later.
    pub(crate) fn response_ended(&mut self) {
        self.resets.refill();
    }

    /// A PING (not an ACK), whose ACK is about to be queued.
    pub(crate) fn ping(&mut self) -> Result<(), Failure> {
        self.control.spend("PING flood")?;
        self.answer("PING flood")
    }

    /// A SETTINGS (not an ACK), whose ACK is about to be queued.
    pub(crate) fn settings(&mut self) -> Result<(), Failure> {
        self.control.spend("SETTINGS flood")?;
        self.answer("SETTINGS flood")
    }

    /// DATA without payload nor END_STREAM, HEADERS or CONTINUATION without fragment
    /// nor END_HEADERS.
    pub(crate) fn empty_frame(&mut self) -> Result<(), Failure> {
        self.empty_frames.spend("empty frames flood")
    }

    /// A frame the client got wrong in a way that costs it only its stream.
    pub(crate) fn stream_error(&mut self) -> Result<(), Failure> {
        self.empty_frames.spend("stream errors flood")
    }

    /// An answer is about to be queued in reply to the client: Err instead when
    /// [`MAX_QUEUED_ANSWERS`] are queued already.
    pub(crate) fn answer(&mut self, cause: &'static str) -> Result<(), Failure> {
        if self.queued_answers >= MAX_QUEUED_ANSWERS {
            return Err(Failure::new(ErrorCode::ENHANCE_YOUR_CALM, cause));
        }
        self.queued_answers += 1;
        Ok(())
    }

    /// A frame worth its cost (a request, trailers, DATA with payload): the control and
    /// empty-frame budgets get one back.
    pub(crate) fn useful(&mut self) {
        self.control.refill();
        self.empty_frames.refill();
    }

    /// The engine took the output: the answers in it are on their way.
    pub(crate) fn output_taken(&mut self) {
        self.queued_answers = 0;
    }

    #[cfg(test)]
    pub(crate) fn control_left(&self) -> u32 {
        self.control.left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_spend_and_refill_up_to_their_burst() {
        let mut b = Budget::new(2);
        b.refill();
        assert_eq!(b.left, 2, "never past the burst");
        assert!(b.spend("x").is_ok() && b.spend("x").is_ok());
        let e = b.spend("x").unwrap_err();
        assert_eq!((e.code, e.cause), (ErrorCode::ENHANCE_YOUR_CALM, "x"));
        b.refill();
        assert!(b.spend("x").is_ok());
    }

    #[test]
    fn answers_are_counted_until_taken() {
        let mut f = Floods::new();
        for _ in 0..MAX_QUEUED_ANSWERS {
            f.answer("a").unwrap();
        }
        assert_eq!(f.answer("a").unwrap_err().cause, "a");
        f.output_taken();
        assert!(f.answer("a").is_ok());
    }
}
