//! Fuzz target `response_head`: the response head parser, its framing decision, and the
//! head as ringproxy sends it to the client.
//!
//! The first byte chooses the request method (GET, HEAD, POST) and the client's version;
//! the rest is the server's bytes. Property, for any bytes: `http::head::parse_response`
//! never panics, and when it accepts a head:
//! - the head ends where the parser says (no shorter prefix is complete, the head alone
//!   parses the same);
//! - the framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; else
//!   `Chunked` only on HTTP/1.1 with `Transfer-Encoding` saying exactly `chunked`;
//!   otherwise any `Transfer-Encoding` means until close (and the connection is not
//!   reused); `Length(n)` only with `Content-Length` items all `n`; else until close;
//! - the rewritten head (`http::rewrite::response_head`, framed for the client as the
//!   session frames it) is CRLF-only, and parses again, whole, to the same status and
//!   reason and to the framing the client is meant to read: parsed framing equals
//!   forwarded framing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringproxy::http::head::{
    parse_response, trim, Body, Kind, Method, Parsed, Response, Version, MAX_RESPONSE_HEADERS,
};
use ringproxy::http::rewrite::{response_head, Connection, Framing};

fn items<'a>(buf: &'a [u8], resp: &Response, kind: Kind) -> Vec<&'a [u8]> {
    resp.head
        .fields
        .iter()
        .filter(|f| f.kind == kind)
        .flat_map(|f| f.value.get(buf).split(|&b| b == b','))
        .map(trim)
        .collect()
}

fn check_framing(buf: &[u8], resp: &Response, method: Method) {
    let status = resp.status;
    let bodiless =
        method == Method::Head || (100..200).contains(&status) || status == 204 || status == 304;
    let lengths = items(buf, resp, Kind::ContentLength);
    let has_te = resp
        .head
        .fields
        .iter()
        .any(|f| f.kind == Kind::TransferEncoding);
    let codings: Vec<&[u8]> = items(buf, resp, Kind::TransferEncoding)
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    let only_chunked = codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked");
    let expected = if bodiless {
        Body::None
    } else if has_te {
        if only_chunked && resp.head.version == Version::Http11 {
            Body::Chunked
        } else {
            Body::UntilClose
        }
    } else if let Some(first) = lengths.first() {
        let n: u64 = std::str::from_utf8(first)
            .unwrap()
            .parse()
            .expect("a length");
        for l in &lengths {
            assert!(l.iter().all(u8::is_ascii_digit), "length item {l:?}");
            assert_eq!(std::str::from_utf8(l).unwrap().parse::<u64>().ok(), Some(n));
        }
        Body::Length(n)
    } else {
        Body::UntilClose
    };
    assert_eq!(resp.head.body, expected, "framing decision");
    if !bodiless && has_te && (!lengths.is_empty() || expected == Body::UntilClose) {
        assert!(resp.head.ambiguous, "an ambiguous response marked reusable");
    }
}

fn crlf_only(head: &[u8]) -> bool {
    head.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && head[i - 1] == b'\r',
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let method = [Method::Get, Method::Head, Method::Post][usize::from(selector & 3) % 3];
    let client = if selector & 4 == 0 {
        Version::Http11
    } else {
        Version::Http10
    };
    let client_keep = selector & 8 == 0;

    let mut resp = Response::default();
    let Ok(Parsed::Complete) = parse_response(data, method, &mut resp) else {
        return;
    };
    let len = resp.head.len;
    assert!(len > 0 && len <= data.len());
    let mut other = Response::default();
    assert!(
        !matches!(
            parse_response(&data[..len - 1], method, &mut other),
            Ok(Parsed::Complete)
        ),
        "a shorter prefix is a complete head"
    );
    assert_eq!(
        parse_response(&data[..len], method, &mut other),
        Ok(Parsed::Complete)
    );
    assert_eq!((other.head.len, other.head.body), (len, resp.head.body));
    // Spans point into the buffer.
    let _ = resp.reason.get(data);

    check_framing(data, &resp, method);

    // Framed for the client as `http::session` does it; what the client then reads.
    let status = resp.status;
    let (framing, client_reads) = match resp.head.body {
        Body::None if method == Method::Head || status == 304 => (Framing::AsReceived, Body::None),
        Body::None => (Framing::None, Body::None),
        Body::Length(n) => (Framing::Length(n), Body::Length(n)),
        Body::Chunked if client == Version::Http11 => (Framing::Chunked, Body::Chunked),
        Body::Chunked => (Framing::None, Body::UntilClose),
        Body::UntilClose if client == Version::Http11 && client_keep => {
            (Framing::Chunked, Body::Chunked)
        }
        Body::UntilClose => (Framing::None, Body::UntilClose),
    };
    let conn = if client_keep {
        Connection::Default
    } else {
        Connection::Close
    };
    let mut out = Vec::new();
    response_head(&mut out, data, &resp, framing, conn);
    assert!(
        crlf_only(&out),
        "bare CR or LF in {:?}",
        String::from_utf8_lossy(&out)
    );
    if resp.head.fields.len() + 2 > MAX_RESPONSE_HEADERS {
        // The client has no such bound; this parser cannot read it back.
        return;
    }
    let mut again = Response::default();
    let reparsed = parse_response(&out, method, &mut again);
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
    assert_eq!(again.status, status);
    assert_eq!(again.reason.get(&out), resp.reason.get(data));
    assert_eq!(
        again.head.version,
        Version::Http11,
        "responses say HTTP/1.1"
    );
    assert_eq!(
        again.head.body, client_reads,
        "forwarded framing differs from parsed framing"
    );
    if framing != Framing::AsReceived {
        let framing_fields = again
            .head
            .fields
            .iter()
            .filter(|f| matches!(f.kind, Kind::ContentLength | Kind::TransferEncoding))
            .count();
        assert!(framing_fields <= 1, "more than one framing field forwarded");
    }
});
