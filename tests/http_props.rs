//! Property tests (proptest) of the http framing code, the proxy's fuzz target: request
//! heads built from a grammar full of framing traps, then mutated at random bytes.
//!
//! Properties:
//! - parsing never panics, whatever the bytes and wherever they are cut;
//! - a head parsed whole parses the same when it arrives in two parts;
//! - what is forwarded has the framing that was parsed: the rewritten head, parsed again,
//!   yields the same body framing, has exactly one framing field (or none), and carries
//!   no hop-by-hop field;
//! - the chunked decoder never panics, reads the same message whole or byte by byte, and
//!   never reads past the end of the message.

use proptest::prelude::*;

use ringproxy::http::chunked::{Decoder, Piece};
use ringproxy::http::head::{parse_request, Body, Kind, Limits, Parsed, Request};
use ringproxy::http::rewrite::{request_head, Connection, Framing, RequestExtras};

const LIMITS: Limits = Limits {
    max_header_bytes: 16 * 1024,
    max_headers: 100,
    max_request_line: 8 * 1024,
};

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Host: example.com".to_string()),
        Just("Host: other".to_string()),
        (0u64..100_000).prop_map(|n| format!("Content-Length: {n}")),
        Just("Content-Length: 5, 5".to_string()),
        Just("Content-Length: 5, 6".to_string()),
        Just("Content-Length: -1".to_string()),
        Just("Content-Length:  7 ".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Transfer-Encoding: gzip, chunked".to_string()),
        Just("Transfer-Encoding: chunked, gzip".to_string()),
        Just("Transfer-Encoding: Chunked".to_string()),
        Just("Transfer-Encoding: xchunked".to_string()),
        Just("Transfer-Encoding:".to_string()),
        Just("Connection: close".to_string()),
        Just("Connection: keep-alive, X-Hop".to_string()),
        Just("Connection: Upgrade".to_string()),
        Just("Upgrade: websocket".to_string()),
        Just("X-Hop: secret".to_string()),
        Just("Keep-Alive: 300".to_string()),
        Just("TE: trailers".to_string()),
        Just("Trailer: X".to_string()),
        Just("Proxy-Connection: keep-alive".to_string()),
        Just("Expect: 100-continue".to_string()),
        Just("X-Forwarded-For: 10.0.0.1".to_string()),
        "[A-Za-z-]{1,12}: [ -~]{0,20}",
    ]
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just("GET"),
            Just("POST"),
            Just("HEAD"),
            Just("PUT"),
            Just("CONNECT")
        ],
        prop_oneof![Just("/"), Just("/a?b=c"), Just("http://h/x"), Just("*")],
        prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")],
        proptest::collection::vec(field(), 0..8),
        prop_oneof![Just("\r\n"), Just("\n")],
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(m, t, v, fields, eol, tail)| {
            let mut s = format!("{m} {t} {v}{eol}");
            for f in fields {
                s.push_str(&f);
                s.push_str(eol);
            }
            s.push_str(eol);
            let mut b = s.into_bytes();
            b.extend_from_slice(&tail);
            b
        })
}

/// A request with some of its bytes replaced.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        request(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    )
        .prop_map(|(mut b, edits)| {
            for (at, byte) in edits {
                if !b.is_empty() {
                    let i = at % b.len();
                    b[i] = byte;
                }
            }
            b
        })
}

fn parse(bytes: &[u8]) -> (Result<Parsed, u16>, Request) {
    let mut r = Request::default();
    let p = parse_request(bytes, &LIMITS, &mut r).map_err(|e| e.status);
    (p, r)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics_and_is_split_invariant(bytes in mutated(), cut in any::<usize>()) {
        let (whole, req) = parse(&bytes);
        let cut = cut % (bytes.len() + 1);
        let (first, _) = parse(&bytes[..cut]);
        if let Ok(Parsed::Complete) = whole {
            // A prefix of a complete head is either the same complete head (the cut is
            // inside the body) or not complete yet; never a refusal of something valid.
            if cut < req.head.len {
                prop_assert_eq!(first, Ok(Parsed::Partial));
            } else {
                prop_assert_eq!(first, Ok(Parsed::Complete));
            }
        }
    }

    #[test]
    fn forwarded_framing_is_the_parsed_framing(bytes in mutated()) {
        let (parsed, req) = parse(&bytes);
        if parsed != Ok(Parsed::Complete) {
            return Ok(());
        }
        let framing = match req.head.body {
            Body::Length(n) => Framing::Length(n),
            Body::Chunked => Framing::Chunked,
            Body::None | Body::UntilClose => Framing::None,
        };
        let mut out = Vec::new();
        request_head(&mut out, &bytes, &req, &RequestExtras {
            framing,
            connection: Connection::Default,
            upgrade: req.upgrade,
            forwarded_for: Some("127.0.0.1".parse().unwrap()),
            forwarded_proto: Some("http"),
            cookie: None,
        });
        let (again, req2) = parse(&out);
        prop_assert_eq!(again, Ok(Parsed::Complete), "{}", String::from_utf8_lossy(&out));
        prop_assert_eq!(req2.head.len, out.len());
        prop_assert_eq!(req2.head.body, req.head.body);
        let framing_fields = req2.head.fields.iter()
            .filter(|f| matches!(f.kind, Kind::ContentLength | Kind::TransferEncoding))
            .count();
        prop_assert!(framing_fields <= 1, "{}", String::from_utf8_lossy(&out));
        for f in &req2.head.fields {
            let allowed = matches!(f.kind, Kind::ContentLength | Kind::TransferEncoding)
                || (f.kind == Kind::Upgrade && req.upgrade)
                || !f.kind.is_hop_by_hop();
            prop_assert!(allowed, "hop-by-hop {:?} forwarded: {}", f.kind, String::from_utf8_lossy(&out));
            let named_by_connection = req.head.fields.iter().any(|g| {
                g.listed_in_connection && g.name.get(&bytes).eq_ignore_ascii_case(f.name.get(&out))
            });
            prop_assert!(!named_by_connection, "a field named by Connection was forwarded");
        }
        prop_assert!(!out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "bare LF forwarded");
    }

    #[test]
    fn chunked_decoder_is_total_and_split_invariant(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
        ext in prop_oneof![Just(""), Just(";a=b"), Just(" ;x")],
        trailer in prop_oneof![Just(""), Just("X-T: 1\r\n")],
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut body = Vec::new();
        let mut payload = Vec::new();
        for c in &chunks {
            body.extend_from_slice(format!("{:x}{ext}\r\n", c.len()).as_bytes());
            body.extend_from_slice(c);
            body.extend_from_slice(b"\r\n");
            payload.extend_from_slice(c);
        }
        body.extend_from_slice(format!("0\r\n{trailer}\r\n").as_bytes());
        let message_len = body.len();
        let valid = edits.is_empty();
        let mut input = body.clone();
        for (at, byte) in edits {
            let i = at % input.len();
            input[i] = byte;
        }
        input.extend_from_slice(&tail);

        let whole = decode(&input, usize::MAX);
        let bytewise = decode(&input, 1);
        prop_assert_eq!(&whole, &bytewise);
        if let Ok((data, used)) = whole {
            prop_assert!(used <= input.len());
            if valid {
                prop_assert_eq!(data, payload);
                prop_assert_eq!(used, message_len, "the decoder stops at the end of the message");
            }
        } else {
            prop_assert!(!valid, "a valid body was refused");
        }
    }
}

/// Decodes feeding at most `step` bytes at a time: (payload, bytes used) once complete.
fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), &'static str> {
    let mut d = Decoder::default();
    let mut pos = 0;
    let mut data = Vec::new();
    while !d.is_done() {
        if pos == input.len() {
            return Err("incomplete");
        }
        let end = pos + step.min(input.len() - pos);
        let piece = d.step(&input[pos..end]).map_err(|e| e.0)?;
        match piece {
            Some(Piece::Data(n)) => {
                data.extend_from_slice(&input[pos..pos + n]);
                pos += n;
            }
            Some(Piece::Framing(n)) | Some(Piece::End(n)) => pos += n,
            None => return Err("no progress"),
        }
    }
    Ok((data, pos))
}
