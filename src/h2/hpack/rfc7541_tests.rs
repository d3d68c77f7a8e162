//! RFC 7541 Appendix C, every example as exact bytes: C.2 (one representation of each
//! kind), C.3/C.4 (three requests, without and with Huffman coding) and C.5/C.6 (three
//! responses in a 256-byte table, so entries are evicted, without and with Huffman).
//! Each block is decoded (fields, then the dynamic table's entries and size, as the
//! appendix lists them) and each field list is encoded back to the very same bytes.

use super::{Decoder, Encoder, HeaderField, Indexing};

fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

type Fields = &'static [(&'static str, &'static str)];

struct Example {
    section: &'static str,
    block: &'static str,
    fields: Fields,
    /// The dynamic table afterwards, newest (index 62) first.
    table: Fields,
    size: usize,
}

/// Decodes and encodes a sequence of examples, each on the state the previous one left.
fn run(examples: &[Example], table_size: usize, huffman: bool) {
    let mut decoder = Decoder::new(table_size);
    let mut encoder = Encoder::new(table_size);
    encoder.set_huffman(huffman);
    for ex in examples {
        let block = unhex(ex.block);
        let mut out = Vec::new();
        let list_size = decoder.decode(&block, usize::MAX, &mut out).unwrap();
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|f| {
                (
                    std::str::from_utf8(&f.name).unwrap(),
                    std::str::from_utf8(&f.value).unwrap(),
                )
            })
            .collect();
        assert_eq!(got, ex.fields, "{}: fields", ex.section);
        assert_eq!(list_size, out.iter().map(HeaderField::size).sum::<usize>());
        let table: Vec<(&[u8], &[u8])> = decoder.table().iter().collect();
        let want: Vec<(&[u8], &[u8])> = ex
            .table
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(table, want, "{}: dynamic table", ex.section);
        assert_eq!(
            decoder.table().size(),
            ex.size,
            "{}: table size",
            ex.section
        );

        let mut encoded = Vec::new();
        encoder.encode(
            ex.fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut encoded,
        );
        assert_eq!(encoded, block, "{}: encoding", ex.section);
        assert_eq!(
            encoder.table().size(),
            ex.size,
            "{}: encoder table",
            ex.section
        );
    }
}

// C.2: each example on a fresh context.
fn single(
    block: &str,
    field: (&str, &str),
    indexing: Indexing,
    table_size: usize,
    sensitive: bool,
) {
    let block = unhex(block);
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    decoder.decode(&block, usize::MAX, &mut out).unwrap();
    assert_eq!(
        out,
        [HeaderField {
            name: field.0.into(),
            value: field.1.into(),
            sensitive
        }]
    );
    assert_eq!(decoder.table().size(), table_size);
    let mut encoder = Encoder::default();
    encoder.set_huffman(false);
    let mut encoded = Vec::new();
    encoder.encode_field(
        field.0.as_bytes(),
        field.1.as_bytes(),
        indexing,
        &mut encoded,
    );
    assert_eq!(encoded, block);
    assert_eq!(encoder.table().size(), table_size);
}

#[test]
fn c_2_1_literal_with_indexing() {
    single(
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        ("custom-key", "custom-header"),
        Indexing::Incremental,
        55,
        false,
    );
}

#[test]
fn c_2_2_literal_without_indexing() {
    single(
        "040c 2f73 616d 706c 652f 7061 7468",
        (":path", "/sample/path"),
        Indexing::Without,
        0,
        false,
    );
}

#[test]
fn c_2_3_literal_never_indexed() {
    single(
        "1008 7061 7373 776f 7264 0673 6563 7265 74",
        ("password", "secret"),
        Indexing::Never,
        0,
        true,
    );
}

#[test]
fn c_2_4_indexed() {
    single("82", (":method", "GET"), Indexing::Incremental, 0, false);
}

const REQ1: Fields = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const REQ2: Fields = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQ3: Fields = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];
const REQ_T1: Fields = &[(":authority", "www.example.com")];
const REQ_T2: Fields = &[
    ("cache-control", "no-cache"),
    (":authority", "www.example.com"),
];
const REQ_T3: Fields = &[
    ("custom-key", "custom-value"),
    ("cache-control", "no-cache"),
    (":authority", "www.example.com"),
];

fn requests(blocks: [&'static str; 3], huffman: bool, sections: [&'static str; 3]) {
    run(
        &[
            Example {
                section: sections[0],
                block: blocks[0],
                fields: REQ1,
                table: REQ_T1,
                size: 57,
            },
            Example {
                section: sections[1],
                block: blocks[1],
                fields: REQ2,
                table: REQ_T2,
                size: 110,
            },
            Example {
                section: sections[2],
                block: blocks[2],
                fields: REQ3,
                table: REQ_T3,
                size: 164,
            },
        ],
        4096,
        huffman,
    );
}

#[test]
fn c_3_requests_without_huffman() {
    requests(
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        false,
        ["C.3.1", "C.3.2", "C.3.3"],
    );
}

#[test]
fn c_4_requests_with_huffman() {
    requests(
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
        true,
        ["C.4.1", "C.4.2", "C.4.3"],
    );
}

const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const RESP1: Fields = &[
    (":status", "302"),
    ("cache-control", "private"),
    ("date", DATE1),
    ("location", LOCATION),
];
const RESP2: Fields = &[
    (":status", "307"),
    ("cache-control", "private"),
    ("date", DATE1),
    ("location", LOCATION),
];
const RESP3: Fields = &[
    (":status", "200"),
    ("cache-control", "private"),
    ("date", DATE2),
    ("location", LOCATION),
    ("content-encoding", "gzip"),
    ("set-cookie", COOKIE),
];
const RESP_T1: Fields = &[
    ("location", LOCATION),
    ("date", DATE1),
    ("cache-control", "private"),
    (":status", "302"),
];
// ":status: 302" was evicted to make room for ":status: 307".
const RESP_T2: Fields = &[
    (":status", "307"),
    ("location", LOCATION),
    ("date", DATE1),
    ("cache-control", "private"),
];
const RESP_T3: Fields = &[
    ("set-cookie", COOKIE),
    ("content-encoding", "gzip"),
    ("date", DATE2),
];

fn responses(blocks: [&'static str; 3], huffman: bool, sections: [&'static str; 3]) {
    run(
        &[
            Example {
                section: sections[0],
                block: blocks[0],
                fields: RESP1,
                table: RESP_T1,
                size: 222,
            },
            Example {
                section: sections[1],
                block: blocks[1],
                fields: RESP2,
                table: RESP_T2,
                size: 222,
            },
            Example {
                section: sections[2],
                block: blocks[2],
                fields: RESP3,
                table: RESP_T3,
                size: 215,
            },
        ],
        256,
        huffman,
    );
}

#[test]
fn c_5_responses_without_huffman() {
    responses(
        [
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d \
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 \
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e \
             3d31",
        ],
        false,
        ["C.5.1", "C.5.2", "C.5.3"],
    );
}

#[test]
fn c_6_responses_with_huffman() {
    responses(
        [
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 \
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab \
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f \
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ],
        true,
        ["C.6.1", "C.6.2", "C.6.3"],
    );
}

#[test]
fn c_1_integer_examples() {
    use super::primitive::{decode_int, encode_int};
    // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix; C.1.3: 42 at an octet boundary.
    for (value, prefix, bytes) in [
        (10, 5, &[0x0a][..]),
        (1337, 5, &[0x1f, 0x9a, 0x0a]),
        (42, 8, &[0x2a]),
    ] {
        let mut out = Vec::new();
        encode_int(value, prefix, 0, &mut out);
        assert_eq!(out, bytes);
        let mut pos = 0;
        assert_eq!(decode_int(bytes, &mut pos, prefix).unwrap(), value as u64);
        assert_eq!(pos, bytes.len());
    }
}
