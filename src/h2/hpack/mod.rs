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
pub mod huffman;
pub mod primitive;
pub mod table;

pub use decoder::{Decoder, HeaderField};
pub use encoder::{Encoder, Indexing};

use super::error::{ErrorCode, H2Error};
use std::fmt;

/// Why a field block could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpackError {
    /// The block ends inside a representation.
    Truncated,
    /// An integer past 2^32-1 or with too many continuation bytes.
    IntegerOverflow,
    /// Index 0, or an index past the end of the dynamic table (§2.3.3).
    BadIndex,
    /// A Huffman string with bad padding or EOS (§5.2).
    Huffman,
    /// A dynamic table size update above the SETTINGS_HEADER_TABLE_SIZE we advertised
    /// (§6.3).
    SizeUpdateTooLarge,
    /// A dynamic table size update after the first field of a block (§4.2).
    SizeUpdateNotFirst,
    /// No size update at the start of the first block after we lowered the table size (§4.2).
    SizeUpdateMissing,
    /// The decoded header list passed the caller's limit (name + value + 32 per field).
    HeaderListTooLarge,
    /// An earlier block failed: the compression context is lost.
    Poisoned,
}

impl HpackError {
    /// The scope and code to answer with (RFC 9113 §4.3).
    pub fn h2_error(self) -> H2Error {
        H2Error::Connection(ErrorCode::COMPRESSION_ERROR)
    }
}

impl fmt::Display for HpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for HpackError {}

#[cfg(test)]
mod rfc7541_tests;
