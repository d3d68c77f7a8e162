//! The server's settings and limits for one HTTP/2 connection (RFC 9113 §6.5.2), and the
//! SETTINGS frame that advertises them.
//!
//! What must hold: what is advertised is within the protocol's bounds (a frame size in
//! 16,384..=2^24-1, windows at most 2^31-1), whatever the configuration asked for.

use super::frame::{self, setting, DEFAULT_MAX_FRAME_SIZE, MAX_WINDOW_SIZE};

/// The default initial window of streams and of the connection (§6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;

/// The server's settings and limits for one connection.
#[derive(Clone, Debug)]
pub struct Config {
    /// SETTINGS_MAX_CONCURRENT_STREAMS we advertise and enforce.
    pub max_concurrent_streams: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE we advertise: what a client may send per stream
    /// before the application has read it.
    pub initial_window_size: u32,
    /// The connection-level receive window (opened with a WINDOW_UPDATE at the start).
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE we advertise and enforce.
    pub max_frame_size: u32,
    /// SETTINGS_HEADER_TABLE_SIZE we advertise: the HPACK decoder's table limit.
    pub header_table_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE we advertise and enforce when decoding.
    pub max_header_list_size: u32,
    /// The most bytes of one compressed field block (HEADERS + CONTINUATION) we take.
    pub max_request_header_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_concurrent_streams: 100,
            initial_window_size: DEFAULT_WINDOW,
            connection_window: DEFAULT_WINDOW,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            header_table_size: 4096,
            max_header_list_size: 262_144,
            max_request_header_size: 262_144,
        }
    }
}

impl Config {
    /// The configuration brought within the protocol's bounds (§6.5.2): the frame size
    /// into 16,384..=2^24-1, the windows to at most 2^31-1.
    pub(crate) fn within_bounds(mut self) -> Config {
        self.max_frame_size = self
            .max_frame_size
            .clamp(DEFAULT_MAX_FRAME_SIZE, frame::MAX_MAX_FRAME_SIZE);
        self.initial_window_size = self.initial_window_size.min(MAX_WINDOW_SIZE);
        self.connection_window = self.connection_window.min(MAX_WINDOW_SIZE);
        self
    }

    /// The parameters of our SETTINGS frame (no server push, ever).
    pub(crate) fn advertised(&self) -> [(u16, u32); 6] {
        [
            (setting::ENABLE_PUSH, 0),
            (setting::MAX_CONCURRENT_STREAMS, self.max_concurrent_streams),
            (setting::INITIAL_WINDOW_SIZE, self.initial_window_size),
            (setting::MAX_FRAME_SIZE, self.max_frame_size),
            (setting::HEADER_TABLE_SIZE, self.header_table_size),
            (setting::MAX_HEADER_LIST_SIZE, self.max_header_list_size),
        ]
    }
}
