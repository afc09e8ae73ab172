//! Fuzz target `request_head`: the request head parser, its framing decision, and the
//! head as ringproxy forwards it.
//!
//! Property, for any bytes: `http::head::parse_request` never panics, and when it accepts
//! a head:
//! - the head ends where the parser says: no shorter prefix is a complete head, and the
//!   head alone parses the same as with the bytes after it;
//! - the framing is unambiguous: `Chunked` only on HTTP/1.1 with `Transfer-Encoding`
//!   saying exactly `chunked` and no `Content-Length`; `Length(n)` only with
//!   `Content-Length` fields whose every item is `n` and no `Transfer-Encoding`; `None`
//!   with neither; never `UntilClose`;
//! - the rewritten head (`http::rewrite::request_head`, framing written from the
//!   decision) is CRLF-only and parses again, whole, to the same method, target, version,
//!   `Host`, upgrade and framing, with one framing field at most and the same end-to-end
//!   fields in the same order: parsed framing equals forwarded framing.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use ringproxy::http::head::{parse_request, trim, Body, Kind, Limits, Parsed, Request, Version};
use ringproxy::http::rewrite::{request_head, Connection, Framing, RequestExtras};

/// The defaults of a frontend (README, http mode).
const LIMITS: Limits = Limits {
    max_header_bytes: 16 * 1024,
    max_headers: 100,
    max_request_line: 8 * 1024,
};

/// For the rewritten head, which may be a little longer (`: ` after every name, CRLF).
const REPARSE: Limits = Limits {
    max_header_bytes: 1 << 20,
    max_headers: 1000,
    max_request_line: 1 << 20,
};

/// The items of every field of `kind`, as a list.
fn items<'a>(buf: &'a [u8], req: &Request, kind: Kind) -> Vec<&'a [u8]> {
    req.head
        .fields
        .iter()
        .filter(|f| f.kind == kind)
        .flat_map(|f| f.value.get(buf).split(|&b| b == b','))
        .map(trim)
        .collect()
}

fn check_framing(buf: &[u8], req: &Request) {
    let lengths = items(buf, req, Kind::ContentLength);
    let codings: Vec<&[u8]> = items(buf, req, Kind::TransferEncoding)
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    let has_te = req
        .head
        .fields
        .iter()
        .any(|f| f.kind == Kind::TransferEncoding);
    match req.head.body {
        Body::Chunked => {
            assert_eq!(req.head.version, Version::Http11, "chunked on HTTP/1.0");
            assert!(lengths.is_empty(), "chunked with Content-Length");
            assert!(
                codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked"),
                "chunked from codings {codings:?}"
            );
        }
        Body::Length(n) => {
            assert!(!has_te, "a length with Transfer-Encoding");
            assert!(!lengths.is_empty());
            for l in &lengths {
                let text = std::str::from_utf8(l).expect("digits");
                assert!(l.iter().all(u8::is_ascii_digit), "length item {text:?}");
                assert_eq!(text.parse::<u64>().ok(), Some(n), "length item {text:?}");
            }
        }
        Body::None => assert!(lengths.is_empty() && !has_te, "no body, yet framing fields"),
        Body::UntilClose => panic!("a request delimited by close"),
    }
}

/// (name, trimmed value) of the fields that must be forwarded, in order.
fn end_to_end<'a>(buf: &'a [u8], req: &Request, forwarded: bool) -> Vec<(&'a [u8], &'a [u8])> {
    req.head
        .fields
        .iter()
        .filter(|f| {
            let keep = match f.kind {
                Kind::Upgrade => req.upgrade,
                Kind::XForwardedFor | Kind::XForwardedProto => !forwarded,
                k => !k.is_hop_by_hop(),
            };
            keep && !f.listed_in_connection
        })
        .map(|f| (f.name.get(buf), trim(f.value.get(buf))))
        .collect()
}

fn crlf_only(head: &[u8]) -> bool {
    head.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && head[i - 1] == b'\r',
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut req = Request::default();
    let Ok(Parsed::Complete) = parse_request(data, &LIMITS, &mut req) else {
        return;
    };
    let len = req.head.len;
    assert!(len > 0 && len <= data.len());
    let mut other = Request::default();
    assert!(
        !matches!(
            parse_request(&data[..len - 1], &LIMITS, &mut other),
            Ok(Parsed::Complete)
        ),
        "a shorter prefix is a complete head"
    );
    assert_eq!(
        parse_request(&data[..len], &LIMITS, &mut other),
        Ok(Parsed::Complete)
    );
    assert_eq!((other.head.len, other.head.body), (len, req.head.body));

    check_framing(data, &req);

    // The head as forwarded: with or without X-Forwarded-For (chosen by the input).
    let forwarded = data.len().is_multiple_of(2);
    let body = req.head.body;
    let mut out = Vec::new();
    request_head(
        &mut out,
        data,
        &req,
        &RequestExtras {
            framing: match body {
                Body::Length(n) => Framing::Length(n),
                Body::Chunked => Framing::Chunked,
                Body::None | Body::UntilClose => Framing::None,
            },
            connection: if req.upgrade {
                Connection::Upgrade
            } else {
                Connection::Default
            },
            upgrade: req.upgrade,
            forwarded_for: forwarded.then_some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            forwarded_proto: forwarded.then_some("http"),
            cookie: None,
        },
    );
    assert!(
        crlf_only(&out),
        "bare CR or LF in {:?}",
        String::from_utf8_lossy(&out)
    );
    let mut again = Request::default();
    let reparsed = parse_request(&out, &REPARSE, &mut again);
    assert_eq!(
        reparsed,
        Ok(Parsed::Complete),
        "the forwarded head {:?} does not parse",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        again.head.len,
        out.len(),
        "the forwarded head has trailing bytes"
    );
    assert_eq!(again.method_span.get(&out), req.method_span.get(data));
    assert_eq!(again.target.get(&out), req.target.get(data));
    assert_eq!(again.head.version, req.head.version);
    assert_eq!(
        again.head.body, body,
        "forwarded framing differs from parsed framing"
    );
    assert_eq!(
        again.host.map(|h| trim(h.get(&out))),
        req.host.map(|h| trim(h.get(data)))
    );
    assert_eq!(again.upgrade, req.upgrade);
    let framing_fields = again
        .head
        .fields
        .iter()
        .filter(|f| matches!(f.kind, Kind::ContentLength | Kind::TransferEncoding))
        .count();
    assert_eq!(framing_fields, usize::from(body != Body::None));
    let sent: Vec<(&[u8], &[u8])> = again
        .head
        .fields
        .iter()
        .filter(|f| {
            !matches!(
                f.kind,
                Kind::ContentLength | Kind::TransferEncoding | Kind::Connection
            ) && !(forwarded && matches!(f.kind, Kind::XForwardedFor | Kind::XForwardedProto))
        })
        .map(|f| (f.name.get(&out), trim(f.value.get(&out))))
        .collect();
    assert_eq!(
        sent,
        end_to_end(data, &req, forwarded),
        "end-to-end fields changed"
    );
});
