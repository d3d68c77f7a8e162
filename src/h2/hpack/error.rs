//! Why an HPACK field block could not be decoded (RFC 7541), and the HTTP/2 error it
//! becomes: always a connection COMPRESSION_ERROR (RFC 9113 §4.3), since a failed block
//! leaves the two sides' dynamic tables out of step. A leaf: the coder modules use it,
//! it uses none of them.

use crate::h2::error::{ErrorCode, H2Error};
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
