//! One HTTP/2 stream as the server sees it (RFC 9113 §5.1), and the flow-control window
//! arithmetic (§5.2, §6.9) shared by streams and the connection.
//!
//! A server never pushes, so of §5.1's states only idle, open, half-closed (remote),
//! half-closed (local) and closed occur; reserved states never do. Idle and closed
//! streams have no [`Stream`] value: the connection knows them from the highest stream
//! id the client opened (§5.1.1: ids below it that are not live are closed).
//!
//! What must hold: a window never passes 2^31-1 (§6.9.1: an increase past it is a
//! FLOW_CONTROL_ERROR); it may go negative only through a SETTINGS_INITIAL_WINDOW_SIZE
//! decrease (§6.9.2); a receive window never lets the peer send more than we allowed.

use super::frame::MAX_WINDOW_SIZE;

/// §5.1 states with a live stream behind them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// Both sides may send.
    Open,
    /// The client ended its side (END_STREAM received); we may still send.
    HalfClosedRemote,
    /// We ended our side; the client may still send.
    HalfClosedLocal,
}

/// A flow-control window (§6.9.1), signed because a settings change can take it below 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window(i64);

/// A window increase that would pass 2^31-1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowOverflow;

impl Window {
    pub fn new(size: u32) -> Window {
        Window(i64::from(size))
    }

    /// What may be sent (or received) now; 0 when the window is negative.
    pub fn available(self) -> u32 {
        self.0.clamp(0, i64::from(MAX_WINDOW_SIZE)) as u32
    }

    pub fn value(self) -> i64 {
        self.0
    }

    /// Opens the window by `n` (a WINDOW_UPDATE, or a settings increase when `n` is the
    /// delta); fails when the result would pass 2^31-1.
    pub fn grow(&mut self, n: i64) -> Result<(), WindowOverflow> {
        let next = self.0 + n;
        if next > i64::from(MAX_WINDOW_SIZE) {
            return Err(WindowOverflow);
        }
        self.0 = next;
        Ok(())
    }

    /// Takes `n` bytes out of the window; fails when they do not fit.
    pub fn consume(&mut self, n: u32) -> Result<(), WindowOverflow> {
        if i64::from(n) > self.0 {
            return Err(WindowOverflow);
        }
        self.0 -= i64::from(n);
        Ok(())
    }
}

/// A live stream.
#[derive(Clone, Debug)]
pub struct Stream {
    pub state: StreamState,
    /// What the client may still send us on this stream.
    pub recv_window: Window,
    /// What we may still send the client on this stream.
    pub send_window: Window,
    /// Bytes the client sent that the application has not yet released (see
    /// `Connection::release`); a WINDOW_UPDATE is sent as they are.
    pub unreleased: u32,
}

impl Stream {
    pub fn new(end_stream: bool, recv_window: u32, send_window: u32) -> Stream {
        Stream {
            state: if end_stream {
                StreamState::HalfClosedRemote
            } else {
                StreamState::Open
            },
            recv_window: Window::new(recv_window),
            send_window: Window::new(send_window),
            unreleased: 0,
        }
    }

    /// Whether the client may still send on this stream.
    pub fn remote_open(&self) -> bool {
        matches!(self.state, StreamState::Open | StreamState::HalfClosedLocal)
    }

    /// Whether we may still send on this stream.
    pub fn local_open(&self) -> bool {
        matches!(
            self.state,
            StreamState::Open | StreamState::HalfClosedRemote
        )
    }

    /// The client ended its side. Returns true when the stream is now closed.
    pub fn close_remote(&mut self) -> bool {
        match self.state {
            StreamState::Open => {
                self.state = StreamState::HalfClosedRemote;
                false
            }
            _ => true,
        }
    }

    /// We ended our side. Returns true when the stream is now closed.
    pub fn close_local(&mut self) -> bool {
        match self.state {
            StreamState::Open => {
                self.state = StreamState::HalfClosedLocal;
                false
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds() {
        let mut w = Window::new(65_535);
        assert_eq!(w.grow(i64::from(MAX_WINDOW_SIZE) - 65_535), Ok(()));
        assert_eq!(w.grow(1), Err(WindowOverflow));
        assert_eq!(w.available(), MAX_WINDOW_SIZE);
        let mut w = Window::new(10);
        assert_eq!(w.consume(11), Err(WindowOverflow));
        assert_eq!(w.consume(10), Ok(()));
        w.grow(-5).unwrap();
        assert_eq!((w.value(), w.available()), (-5, 0));
    }

    #[test]
    fn state_transitions() {
        let mut s = Stream::new(false, 1, 1);
        assert!(s.remote_open() && s.local_open());
        assert!(!s.close_remote());
        assert!(!s.remote_open() && s.local_open());
        assert!(s.close_local());
        let mut s = Stream::new(false, 1, 1);
        assert!(!s.close_local());
        assert!(s.remote_open() && !s.local_open());
        assert!(s.close_remote());
    }
}
