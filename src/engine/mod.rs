//! The engine: sockets, the event loop, connections and the hand-offs to worker threads.
//! It knows HTTP framing (through `crate::http`) but nothing of Python or WSGI.

pub mod access_log;
pub mod balance;
pub mod body;
pub mod channel;
pub mod config;
pub mod dispatch;
pub mod errors;
pub mod event_loop;
pub mod heartbeat;
pub mod http2;
pub mod metrics;
pub mod metrics_listener;
pub mod outbuf;
pub mod process_stats;
pub mod proxy_protocol;
pub mod stats;
pub mod status_page;
pub mod sys;
pub mod tls;
pub mod transport;
