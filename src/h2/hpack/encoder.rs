//! The HPACK encoder (RFC 7541 §6): header fields in, one field block out.
//!
//! Policy: a field found whole in the static or the dynamic table is sent as an index
//! (§6.1); otherwise as a literal with incremental indexing (§6.2.1) naming the table's
//! entry when the name is there (static table first), unless the caller asks for no
//! indexing or never-indexing (for secrets, §7.1.3). Strings are Huffman-coded when that
//! is no longer. This policy reproduces the encodings of Appendix C exactly.
//!
//! What must hold: the encoder's dynamic table never passes the size it was told the
//! peer allows (SETTINGS_HEADER_TABLE_SIZE of the peer, or less), and every change of
//! that size is announced at the start of the next block, the smallest value of the
//! interval first (§4.2), so the peer's decoder stays in step with ours.

use super::primitive::{encode_int, encode_string};
use super::table::{DynamicTable, STATIC_TABLE};

/// How a literal may be indexed by the decoder (§6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    /// Added to the dynamic table (§6.2.1).
    Incremental,
    /// Not added (§6.2.2).
    Without,
    /// Not added here nor by any intermediary (§6.2.3).
    Never,
}

#[derive(Clone, Debug)]
pub struct Encoder {
    table: DynamicTable,
    huffman: bool,
    /// Size updates to announce at the start of the next block: the smallest size since
    /// the last block, then the current one.
    pending: Option<(usize, usize)>,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new(super::decoder::DEFAULT_TABLE_SIZE)
    }
}

impl Encoder {
    /// An encoder whose dynamic table may hold `max_table_size` (the peer's initial
    /// SETTINGS_HEADER_TABLE_SIZE, 4,096, unless we already know better).
    pub fn new(max_table_size: usize) -> Encoder {
        Encoder {
            table: DynamicTable::new(max_table_size),
            huffman: true,
            pending: None,
        }
    }

    /// Whether strings are Huffman-coded when no longer than the raw string (on by default).
    pub fn set_huffman(&mut self, on: bool) {
        self.huffman = on;
    }

    /// Changes the table size, at most the peer's SETTINGS_HEADER_TABLE_SIZE; the change
    /// is announced at the start of the next block.
    pub fn set_max_table_size(&mut self, size: usize) {
        let min = match self.pending {
            Some((min, _)) => min.min(size),
            None => self.table.max_size().min(size),
        };
        self.pending = Some((min, size));
        self.table.set_max_size(size);
    }

    /// The dynamic table, for inspection.
    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Encodes a whole block of fields, all with incremental indexing.
    pub fn encode<'f, I>(&mut self, fields: I, out: &mut Vec<u8>)
    where
        I: IntoIterator<Item = (&'f [u8], &'f [u8])>,
    {
        for (name, value) in fields {
            self.encode_field(name, value, Indexing::Incremental, out);
        }
    }

    /// Appends one field. The first field of a block carries any pending size update.
    pub fn encode_field(
        &mut self,
        name: &[u8],
        value: &[u8],
        indexing: Indexing,
        out: &mut Vec<u8>,
    ) {
        if let Some((min, size)) = self.pending.take() {
            encode_int(min, 5, 0x20, out);
            if size != min {
                encode_int(size, 5, 0x20, out);
            }
        }
        let (exact, name_index) = self.find(name, value);
        if indexing != Indexing::Never {
            if let Some(index) = exact {
                encode_int(index, 7, 0x80, out);
                return;
            }
        }
        let (prefix, first) = match indexing {
            Indexing::Incremental => (6, 0x40),
            Indexing::Without => (4, 0x00),
            Indexing::Never => (4, 0x10),
        };
        match name_index {
            Some(index) => encode_int(index, prefix, first, out),
            None => {
                encode_int(0, prefix, first, out);
                encode_string(name, self.huffman, out);
            }
        }
        encode_string(value, self.huffman, out);
        if indexing == Indexing::Incremental {
            self.table.insert(name, value);
        }
    }

    /// The index of an entry equal to the field, and of one with its name: static table
    /// first, then dynamic.
    fn find(&self, name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
        let mut name_index = None;
        for (i, &(n, v)) in STATIC_TABLE.iter().enumerate() {
            if n == name {
                if v == value {
                    return (Some(i + 1), Some(i + 1));
                }
                name_index.get_or_insert(i + 1);
            }
        }
        for (i, (n, v)) in self.table.iter().enumerate() {
            if n == name {
                if v == value {
                    return (Some(i + 62), name_index.or(Some(i + 62)));
                }
                name_index.get_or_insert(i + 62);
            }
        }
        (None, name_index)
    }
}
