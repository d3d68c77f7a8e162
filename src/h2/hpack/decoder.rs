//! The HPACK decoder (RFC 7541 §3, §6): one field block in, header fields out.
//!
//! What must hold:
//! - The header-list size (name + value + 32 per field, as SETTINGS_MAX_HEADER_LIST_SIZE
//!   counts it, RFC 9113 §6.5.2) never passes the caller's limit: decoding stops with
//!   [`HpackError::HeaderListTooLarge`] at the first field that would pass it, and a
//!   literal is refused before it is copied when it cannot fit. So one small indexed
//!   reference repeated to a large table entry (the HPACK bomb) costs at most the limit.
//! - The dynamic table never grows past the SETTINGS_HEADER_TABLE_SIZE we advertised: a
//!   size update above it is an error (§6.3), as is a size update after the first field
//!   of a block (§4.2), or a missing one after we lowered the setting.
//! - After any error the compression context is unknown, so the decoder refuses every
//!   later block; the connection ends with COMPRESSION_ERROR (RFC 9113 §4.3).

use super::error::HpackError;
use super::primitive::{decode_int, decode_string};
use super::table::{entry_size, lookup, DynamicTable, ENTRY_OVERHEAD};

/// The SETTINGS_HEADER_TABLE_SIZE both ends start with (RFC 9113 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// How a field block decoded by [`Decoder::decode_past_limit`] came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Every field, whose header-list size is this.
    Whole(usize),
    /// The header list passed the limit: fields from there on were dropped.
    PastLimit,
}

/// One decoded field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderField {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    /// Sent as "never indexed" (§6.2.3): an intermediary must forward it the same way.
    pub sensitive: bool,
}

impl HeaderField {
    /// The size §4.1 counts for this field.
    pub fn size(&self) -> usize {
        entry_size(&self.name, &self.value)
    }
}

#[derive(Clone, Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The SETTINGS_HEADER_TABLE_SIZE in force: size updates may not pass it.
    limit: usize,
    /// We lowered `limit` below the table's size: the next block must open with an update.
    update_required: bool,
    poisoned: bool,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new(DEFAULT_TABLE_SIZE)
    }
}

impl Decoder {
    /// A decoder for a connection where we advertised `max_table_size` as
    /// SETTINGS_HEADER_TABLE_SIZE (4,096 if we did not send it).
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: DynamicTable::new(max_table_size),
            limit: max_table_size,
            update_required: false,
            poisoned: false,
        }
    }

    /// Applies a new SETTINGS_HEADER_TABLE_SIZE of ours, once the peer has acknowledged
    /// it (blocks sent before its acknowledgement may still use the old size).
    pub fn set_max_table_size(&mut self, max_table_size: usize) {
        self.limit = max_table_size;
        if self.table.max_size() > max_table_size {
            self.update_required = true;
        }
    }

    /// The dynamic table, for inspection.
    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Decodes a complete field block, appending its fields to `out`. Returns the block's
    /// header-list size, which is at most `max_list_size`.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        out: &mut Vec<HeaderField>,
    ) -> Result<usize, HpackError> {
        if self.poisoned {
            return Err(HpackError::Poisoned);
        }
        let result = match self.decode_block(block, max_list_size, false, out) {
            Ok(Decoded::Whole(total)) => Ok(total),
            Ok(Decoded::PastLimit) => Err(HpackError::HeaderListTooLarge),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// As [`Decoder::decode`], but a header list past `max_list_size` does not end the
    /// decoding: the rest of the block is decoded for the dynamic table's sake (the
    /// compression context stays in step with the peer's, so the connection can go
    /// on), its fields are dropped rather than kept, and the answer is
    /// [`Decoded::PastLimit`] (a server answers 431 on that stream, RFC 9113 §10.5.1).
    /// Memory stays bounded: a literal costs at most its bytes in the block, and a
    /// reference to a table entry costs nothing once past the limit.
    pub fn decode_past_limit(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        out: &mut Vec<HeaderField>,
    ) -> Result<Decoded, HpackError> {
        if self.poisoned {
            return Err(HpackError::Poisoned);
        }
        let result = self.decode_block(block, max_list_size, true, out);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Decodes `block`; past `limit`, fails (`lenient` off) or goes on dropping fields.
    fn decode_block(
        &mut self,
        block: &[u8],
        limit: usize,
        lenient: bool,
        out: &mut Vec<HeaderField>,
    ) -> Result<Decoded, HpackError> {
        let mut pos = 0;
        let mut total = 0usize;
        let mut past = false;
        let mut fields_seen = false;
        while pos < block.len() {
            let first = block[pos];
            if self.update_required && first & 0xe0 != 0x20 {
                return Err(HpackError::SizeUpdateMissing);
            }
            if first & 0x80 != 0 {
                // §6.1 indexed field.
                let index = decode_int(block, &mut pos, 7)?;
                let (name, value) = self.get(index)?;
                match admit(total, entry_size(name, value), limit) {
                    Ok(t) if !past => {
                        total = t;
                        out.push(HeaderField {
                            name: name.to_vec(),
                            value: value.to_vec(),
                            sensitive: false,
                        });
                    }
                    Ok(_) => {}
                    Err(_) if lenient => past = true,
                    Err(e) => return Err(e),
                }
            } else if first & 0xe0 == 0x20 {
                // §6.3 dynamic table size update.
                if fields_seen {
                    return Err(HpackError::SizeUpdateNotFirst);
                }
                let size = decode_int(block, &mut pos, 5)?;
                if size > self.limit as u64 {
                    return Err(HpackError::SizeUpdateTooLarge);
                }
                self.table.set_max_size(size as usize);
                self.update_required = false;
                continue;
            } else {
                // §6.2 literals: with incremental indexing (01), never indexed (0001),
                // without indexing (0000).
                let (prefix, indexing, sensitive) = if first & 0xc0 == 0x40 {
                    (6, true, false)
                } else {
                    (4, false, first & 0x10 != 0)
                };
                let index = decode_int(block, &mut pos, prefix)?;
                // Room left for the name and value of this field. When lenient, a
                // literal is decoded whatever the limit says (`admit` judges the field
                // after), bounded by what the block holds: a Huffman code takes at
                // least 5 bits a byte.
                let in_block = block.len().saturating_mul(2);
                let room = if lenient {
                    in_block
                } else {
                    limit
                        .checked_sub(total + ENTRY_OVERHEAD)
                        .ok_or(HpackError::HeaderListTooLarge)?
                };
                let name = if index == 0 {
                    decode_string(block, &mut pos, room)?
                } else {
                    self.get(index)?.0.to_vec()
                };
                let room = if lenient {
                    in_block
                } else {
                    room.checked_sub(name.len())
                        .ok_or(HpackError::HeaderListTooLarge)?
                };
                let value = decode_string(block, &mut pos, room)?;
                let admitted = admit(total, entry_size(&name, &value), limit);
                if indexing {
                    self.table.insert(&name, &value);
                }
                match admitted {
                    Ok(t) if !past => {
                        total = t;
                        out.push(HeaderField {
                            name,
                            value,
                            sensitive,
                        });
                    }
                    Ok(_) => {}
                    Err(_) if lenient => past = true,
                    Err(e) => return Err(e),
                }
            }
            fields_seen = true;
        }
        Ok(if past {
            Decoded::PastLimit
        } else {
            Decoded::Whole(total)
        })
    }

    fn get(&self, index: u64) -> Result<(&[u8], &[u8]), HpackError> {
        let index = usize::try_from(index).map_err(|_| HpackError::BadIndex)?;
        lookup(&self.table, index).ok_or(HpackError::BadIndex)
    }
}

/// Adds a field's size to the running total, failing when it passes the limit.
fn admit(total: usize, size: usize, limit: usize) -> Result<usize, HpackError> {
    match total.checked_add(size) {
        Some(t) if t <= limit => Ok(t),
        _ => Err(HpackError::HeaderListTooLarge),
    }
}

#[cfg(test)]
mod tests {
    use super::super::primitive::encode_int;
    use super::super::{Encoder, Indexing};
    use super::*;

    fn decode(d: &mut Decoder, block: &[u8], limit: usize) -> Result<Vec<HeaderField>, HpackError> {
        let mut out = Vec::new();
        d.decode(block, limit, &mut out).map(|_| out)
    }

    #[test]
    fn past_the_limit_the_block_is_still_decoded_for_the_table() {
        let mut enc = crate::h2::hpack::Encoder::default();
        let mut d = Decoder::new(4096);
        let big = vec![b'v'; 300];
        let mut block = Vec::new();
        enc.encode(
            [(&b"a"[..], &b"1"[..]), (b"x-big", &big), (b"b", b"2")],
            &mut block,
        );
        let mut out = Vec::new();
        assert_eq!(
            d.decode_past_limit(&block, 100, &mut out),
            Ok(Decoded::PastLimit)
        );
        assert_eq!(out.len(), 1, "fields past the limit are dropped");
        // Both encoder and decoder indexed x-big: a reference to it decodes.
        let mut block = Vec::new();
        enc.encode([(&b"x-big"[..], &big[..])], &mut block);
        assert!(block.len() < 4, "a reference to the table entry");
        let mut out = Vec::new();
        assert_eq!(
            d.decode_past_limit(&block, 4096, &mut out),
            Ok(Decoded::Whole(32 + 5 + 300))
        );
        assert_eq!(out[0].value, big);
    }

    #[test]
    fn indexed_bomb_stops_at_the_limit() {
        // One large entry, then a one-byte reference to it repeated: the classic bomb.
        let mut block = vec![0x40, 0x01, b'x'];
        encode_int(4000, 7, 0, &mut block);
        block.extend(std::iter::repeat(b'v').take(4000));
        block.extend(std::iter::repeat(0xbe).take(10_000));
        let limit = 16 * 1024;
        let mut d = Decoder::default();
        let mut out = Vec::new();
        assert_eq!(
            d.decode(&block, limit, &mut out),
            Err(HpackError::HeaderListTooLarge)
        );
        assert!(out.iter().map(HeaderField::size).sum::<usize>() <= limit);
        assert_eq!(out.len(), 4, "stopped at the first field past the limit");
        assert_eq!(decode(&mut d, &[0x82], limit), Err(HpackError::Poisoned));
    }

    #[test]
    fn literal_past_the_limit_is_refused_before_copying() {
        let mut block = vec![0x00];
        encode_int(1_000, 7, 0, &mut block);
        block.extend(std::iter::repeat(b'n').take(1_000));
        block.push(0x00);
        let mut d = Decoder::default();
        assert_eq!(
            decode(&mut d, &block, 500),
            Err(HpackError::HeaderListTooLarge)
        );
        // Exactly at the limit is allowed: 1000 + 0 + 32.
        assert_eq!(
            decode(&mut Decoder::default(), &block, 1_032)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            decode(&mut Decoder::default(), &block, 1_031),
            Err(HpackError::HeaderListTooLarge)
        );
        // Huffman strings too: "www.example.com" as a value, with a limit one short.
        let mut enc = Encoder::default();
        let mut block = Vec::new();
        enc.encode_field(b"h", b"www.example.com", Indexing::Without, &mut block);
        assert_eq!(
            decode(&mut Decoder::default(), &block, 48).unwrap().len(),
            1
        );
        assert_eq!(
            decode(&mut Decoder::default(), &block, 47),
            Err(HpackError::HeaderListTooLarge)
        );
    }

    #[test]
    fn size_updates() {
        let mut too_big = Vec::new();
        encode_int(4097, 5, 0x20, &mut too_big);
        assert_eq!(
            decode(&mut Decoder::default(), &too_big, 1 << 20),
            Err(HpackError::SizeUpdateTooLarge)
        );
        assert_eq!(
            decode(&mut Decoder::default(), &[0x82, 0x20], 1 << 20),
            Err(HpackError::SizeUpdateNotFirst)
        );
        // Two updates at the start are fine; the table follows them.
        let mut d = Decoder::default();
        assert_eq!(
            decode(&mut d, &[0x20, 0x3f, 0x01, 0x82], 1 << 20)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(d.table().max_size(), 32);
        // Lowering our setting: the next block must open with an update that obeys it.
        let mut d = Decoder::default();
        decode(&mut d, &[0x41, 0x01, b'a'], 1 << 20).unwrap();
        d.set_max_table_size(0);
        assert_eq!(
            decode(&mut d.clone(), &[0x82], 1 << 20),
            Err(HpackError::SizeUpdateMissing)
        );
        assert_eq!(
            decode(&mut d.clone(), &[0x21, 0x82], 1 << 20),
            Err(HpackError::SizeUpdateTooLarge)
        );
        assert_eq!(decode(&mut d, &[0x20, 0x82], 1 << 20).unwrap().len(), 1);
        assert!(d.table().is_empty());
    }

    #[test]
    fn table_never_passes_its_size() {
        let mut d = Decoder::new(64);
        // 1 + 30 + 32 = 63 fits; a second one evicts the first; a 65-byte one empties it.
        let mut block = vec![0x40, 0x01, b'a', 30];
        block.extend([b'v'; 30]);
        block.extend([0x40, 0x01, b'b', 30]);
        block.extend([b'w'; 30]);
        decode(&mut d, &block, 1 << 20).unwrap();
        assert_eq!((d.table().len(), d.table().size()), (1, 63));
        assert_eq!(d.table().get(0).unwrap().0, b"b");
        let mut block = vec![0x40, 0x01, b'c', 32];
        block.extend([b'x'; 32]);
        decode(&mut d, &block, 1 << 20).unwrap();
        assert!(d.table().is_empty());
    }

    #[test]
    fn malformed_blocks() {
        let cases: [(&[u8], HpackError); 7] = [
            (&[0x80], HpackError::BadIndex),
            (&[0xbe], HpackError::BadIndex),
            (
                &[0x7f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
                HpackError::IntegerOverflow,
            ),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                HpackError::IntegerOverflow,
            ),
            (&[0x40, 0x05, b'a'], HpackError::Truncated),
            (&[0xff], HpackError::Truncated),
            (&[0x00, 0x81, 0x00, 0x00], HpackError::Huffman),
        ];
        for (block, err) in cases {
            assert_eq!(
                decode(&mut Decoder::default(), block, 1 << 20),
                Err(err),
                "{block:02x?}"
            );
        }
    }

    #[test]
    fn encoder_announces_size_changes() {
        let mut enc = Encoder::default();
        let mut dec = Decoder::default();
        enc.set_max_table_size(0);
        enc.set_max_table_size(256);
        let mut block = Vec::new();
        enc.encode([(&b"x-a"[..], &b"1"[..])], &mut block);
        // Smallest of the interval first, then the final size (§4.2).
        assert_eq!(&block[..4], &[0x20, 0x3f, 0xe1, 0x01]);
        let fields = decode(&mut dec, &block, 1 << 20).unwrap();
        assert_eq!(fields[0].name, b"x-a");
        assert_eq!(dec.table().max_size(), 256);
        // Sensitive fields stay out of both tables.
        let mut block = Vec::new();
        enc.encode_field(b"authorization", b"secret", Indexing::Never, &mut block);
        let fields = decode(&mut dec, &block, 1 << 20).unwrap();
        assert!(fields[0].sensitive);
        assert_eq!(dec.table().len(), 1);
        assert_eq!(enc.table().len(), 1);
    }
}
