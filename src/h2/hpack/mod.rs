//! HPACK, header compression for HTTP/2 (RFC 7541): a [`Decoder`] for the field blocks a
//! client sends and an [`Encoder`] for the ones a server answers with.
//!
//! Written here rather than taken from a crate. The sans-I/O candidates on crates.io are
//! `hpack` (0.3.0, no longer maintained), its fork `fluke-hpack` (now `loona-hpack`, kept
//! for one server and pulling in `tracing`) and `httlib-hpack` (0.1.x, which can cap the
//! number of fields but not their size); none stops decoding at a header-list size limit,
//! so the HPACK-bomb defence would wrap them after the memory was spent. The `h2` crate's
//! HPACK is internal to it and the crate needs tokio. HPACK is small and fully specified,
//! with test vectors (Appendix C), so owning it costs little and puts the bounds inside
//! the decoding loop.
//!
//! Layout: [`primitive`] (integers and strings, §5), [`huffman`] (§5.2, Appendix B),
//! [`table`] (static and dynamic tables, §2.3, §4, Appendix A), [`decoder`] and
//! [`encoder`] (field representations, §6).
//!
//! What must hold: a decoder error leaves the compression context unknown, so every
//! [`HpackError`] is a connection error of type COMPRESSION_ERROR (RFC 9113 §4.3) and the
//! decoder refuses further blocks; memory held or produced never passes the dynamic
//! table limit we advertised plus the caller's header-list limit.

pub mod decoder;
pub mod encoder;
mod error;
pub mod huffman;
pub mod primitive;
pub mod table;

pub use decoder::{Decoder, HeaderField};
pub use encoder::{Encoder, Indexing};
pub use error::HpackError;

#[cfg(test)]
mod rfc7541_tests;
