//! Fuzz target `chunked`: the incremental chunked decoder (`http::chunked::Decoder`).
//!
//! The first bytes choose where the input is cut (as reads would deliver it); the rest is
//! a body. Property, for any bytes and any cuts:
//! - `Decoder::step` never panics, every piece it returns takes at least one byte and no
//!   more than it was given, and nothing is returned once the body has ended;
//! - fed in pieces, the decoder reports exactly what it reports fed whole: the same
//!   payload, the same end of the body (or the same error at the same byte);
//! - the decoded payload is never longer than the input;
//! - a body it accepts is read the same by a reference decoder written from RFC 9112
//!   §7.1 (size, optional extensions, CRLF, data, CRLF, ..., last chunk, trailers, CRLF):
//!   same payload, same end. The proxy forwards chunked bodies as received, so this is
//!   the property that matters: the server reads the body where the proxy did.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::http::chunked::{ChunkError, Decoder, Piece};

/// What a decoder made of a body: the payload, and where the body ended (or the error
/// and the offset of the bytes it was given when it failed).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    payload: Vec<u8>,
    end: Result<Option<usize>, (ChunkError, usize)>,
}

/// Feeds `input` to a decoder, revealing it up to each of `cuts` in turn (then whole).
fn decode(input: &[u8], cuts: &[usize]) -> Outcome {
    let mut d = Decoder::default();
    let mut payload = Vec::new();
    let mut pos = 0;
    let mut limits = cuts.iter().copied().chain(std::iter::once(input.len()));
    let mut avail = limits.next().unwrap_or(input.len());
    loop {
        if pos == avail {
            match limits.next() {
                Some(next) => {
                    avail = next.max(avail);
                    continue;
                }
                None => {
                    // Input exhausted: the body did not end.
                    return Outcome {
                        payload,
                        end: Ok(None),
                    };
                }
            }
        }
        let given = &input[pos..avail];
        match d.step(given) {
            Err(e) => {
                return Outcome {
                    payload,
                    end: Err((e, pos)),
                }
            }
            Ok(None) => panic!("no piece from {} bytes of an unfinished body", given.len()),
            Ok(Some(piece)) => {
                let n = match piece {
                    Piece::Data(n) | Piece::Framing(n) | Piece::End(n) => n,
                };
                assert!(
                    n >= 1 && n <= given.len(),
                    "{piece:?} of {} bytes",
                    given.len()
                );
                if let Piece::Data(n) = piece {
                    payload.extend_from_slice(&given[..n]);
                }
                pos += n;
                if let Piece::End(_) = piece {
                    assert!(d.is_done());
                    assert_eq!(d.step(&input[pos..]), Ok(None), "a piece after the end");
                    return Outcome {
                        payload,
                        end: Ok(Some(pos)),
                    };
                }
            }
        }
    }
}

/// The reference: RFC 9112 §7.1, CRLF only. Lenient where ringproxy is stricter
/// (extension and trailer contents, lengths): it only has to agree on accepted bodies.
/// `None`: not a complete body.
fn reference(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let line = |at: usize| -> Option<(&[u8], usize)> {
        let rel = input[at..].windows(2).position(|w| w == b"\r\n")?;
        Some((&input[at..at + rel], at + rel + 2))
    };
    let mut at = 0;
    let mut payload = Vec::new();
    loop {
        let (size_line, next) = line(at)?;
        let digits = size_line
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 || digits > 16 {
            return None;
        }
        let size = u64::from_str_radix(std::str::from_utf8(&size_line[..digits]).ok()?, 16).ok()?;
        at = next;
        if size == 0 {
            loop {
                let (trailer, next) = line(at)?;
                at = next;
                if trailer.is_empty() {
                    return Some((payload, at));
                }
            }
        }
        let size = usize::try_from(size).ok()?;
        let data_end = at.checked_add(size)?;
        if input.len() < data_end.checked_add(2)? || &input[data_end..data_end + 2] != b"\r\n" {
            return None;
        }
        payload.extend_from_slice(&input[at..data_end]);
        at = data_end + 2;
    }
}

fuzz_target!(|input: &[u8]| {
    // First byte: how many cut bytes follow (0..=7); each cut is an offset into the body.
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let n = usize::from(n & 7).min(rest.len());
    let (cut_bytes, body) = rest.split_at(n);
    let mut cuts: Vec<usize> = cut_bytes
        .iter()
        .map(|&c| usize::from(c) * body.len() / 256)
        .collect();
    cuts.sort_unstable();

    let whole = decode(body, &[]);
    assert!(whole.payload.len() <= body.len());
    let split = decode(body, &cuts);
    assert_eq!(
        split.payload, whole.payload,
        "payload depends on the cuts {cuts:?}"
    );
    match (&whole.end, &split.end) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "end depends on the cuts {cuts:?}"),
        // The error is the same, at a byte within what each run was given: the whole run
        // is given everything at once, so only the message and the payload before it
        // must agree.
        (Err((a, _)), Err((b, _))) => assert_eq!(a, b, "error depends on the cuts {cuts:?}"),
        (a, b) => panic!("whole: {a:?}, cut at {cuts:?}: {b:?}"),
    }
    let byte_by_byte = decode(body, &(0..body.len()).collect::<Vec<_>>());
    assert_eq!(byte_by_byte.payload, whole.payload);
    match (&whole.end, &byte_by_byte.end) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err((a, _)), Err((b, _))) => assert_eq!(a, b),
        (a, b) => panic!("whole: {a:?}, byte by byte: {b:?}"),
    }

    if let Ok(Some(end)) = whole.end {
        let (payload, ref_end) =
            reference(body).expect("the reference refuses a body ringproxy accepts");
        assert_eq!(payload, whole.payload, "payload differs from the reference");
        assert_eq!(ref_end, end, "the body ends elsewhere for the reference");
    }
});
