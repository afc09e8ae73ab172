//! Differential desync test: the same raw requests, sent to ringproxy in front of a
//! recording origin that parses what it receives on its own, strictly.
//!
//! Every case of [`CASES`] is a raw byte string (one request, or a pipelined pair) sent on
//! a fresh client connection. The origin ([`StrictOrigin`]) parses with a small strict
//! parser of its own (RFC 9112: CRLF only, one framing field, `chunked` alone, syntax of
//! every line) and answers each request it completes with a `200` whose body names it
//! (`METHOD target body-length`). The property, for every case:
//! - **forwarded**: for every request ringproxy forwards, the origin sees exactly one
//!   request with the same method, target and version, the same header fields minus
//!   hop-by-hop ones (`Connection`, the fields it names, `Keep-Alive`, `TE`, `Trailer`,
//!   `Proxy-Connection`, `Upgrade`) and framing ones (`Content-Length`,
//!   `Transfer-Encoding`: ringproxy writes one of its own from what it parsed), the same
//!   framing kind and the same body; the client gets the origin's answers in order; and
//!   nothing else reaches the origin (no smuggled request, nothing it finds malformed);
//! - **refused**: ringproxy answers with its own error (status as README documents,
//!   `Connection: close`) and closes; the origin sees nothing of the refused request
//!   (refused at the head) or at most an incomplete prefix of it on a connection
//!   ringproxy then closes (refused in the body: the head was already forwarded);
//! - **aborted**: the client half-closes inside a body it announced (a huge chunk or
//!   length): ringproxy closes without an answer, and the origin completes no request.
//!
//! The expected outcome of each case is decided from README's documented semantics
//! ("Request smuggling, refused HAProxy-strict", "Framing is decided once and
//! rewritten") and RFC 9112, and given with its reason in the table. The *intended*
//! request a forwarded case is compared with is read from the client's bytes by a third,
//! lenient parser ([`intended`]): bare LF accepted, lists of equal lengths accepted.
//!
//! One proxy (one shard, `forward_for` off, `http_reuse = "never"` so that each client
//! connection has server connections of its own, closed with it) and one origin serve
//! all cases in turn; what the origin saw during a case is what it recorded from the
//! case's start until a sentinel request sent after the case was answered and every
//! origin connection was over (see [`run_case`]).

#[path = "../common/mod.rs"]
mod common;
mod strict;

use std::net::Shutdown;
use std::time::Duration;

use common::http::*;
use strict::{intended, Delimited, Event, Seen, StrictOrigin};

/// How long a client waits for any one read before calling the case failed.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Sent after each case (see [`run_case`]); never a case of its own.
const SENTINEL: &str = "GET /sentinel HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

// ---------------------------------------------------------------------------------------
// The cases.

/// What must happen to a case.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Every request of the case is forwarded (this many) and answered by the origin.
    Forwarded(usize),
    /// The first `forwarded` requests are forwarded and answered; the next one is refused
    /// with `status` and the connection closed.
    Refused {
        forwarded: usize,
        status: u16,
        stage: Stage,
    },
    /// The client half-closes inside the body: no answer, no complete request at the
    /// origin.
    Aborted,
}

/// Where a refusal happens, hence what the origin may have seen of the refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// At the head: nothing reaches the origin.
    Head,
    /// In a chunked body: the head and the chunks before the bad line may have reached
    /// the origin, as an incomplete message on a connection ringproxy then closes.
    Body,
}

use Outcome::{Aborted, Forwarded};

const fn refused(status: u16) -> Outcome {
    Outcome::Refused {
        forwarded: 0,
        status,
        stage: Stage::Head,
    }
}

const fn refused_in_body() -> Outcome {
    Outcome::Refused {
        forwarded: 0,
        status: 400,
        stage: Stage::Body,
    }
}

const fn refused_after(forwarded: usize, status: u16) -> Outcome {
    Outcome::Refused {
        forwarded,
        status,
        stage: Stage::Head,
    }
}

struct Case {
    name: &'static str,
    raw: &'static [u8],
    outcome: Outcome,
    /// Why this outcome (README rule or RFC 9112 section).
    why: &'static str,
}

const fn case(name: &'static str, raw: &'static [u8], outcome: Outcome, why: &'static str) -> Case {
    Case {
        name,
        raw,
        outcome,
        why,
    }
}

/// The table: controls, CL.TE / TE.CL / TE.TE, Content-Length forms, chunk sizes,
/// control characters, Host and targets, pipelined pairs, and bodies that never end.
const CASES: &[Case] = &[
    // --- Benign controls.
    case("get", b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n\r\n", Forwarded(1), "plain request"),
    case("post-cl", b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", Forwarded(1), "RFC 9112 6.3 rule 6"),
    case("post-chunked", b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", Forwarded(1), "RFC 9112 7.1; extensions and trailers pass through"),
    case("get-with-cl-body", b"GET /g HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", Forwarded(1), "a GET may have a body; framed like any other"),
    case("post-cl-zero", b"POST /z HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", Forwarded(1), "empty body"),
    case("http10-no-host", b"GET /old HTTP/1.0\r\nX-A: 1\r\n\r\n", Forwarded(1), "Host is required of HTTP/1.1 only (RFC 9112 3.2)"),
    case("http10-keep-alive-cl", b"POST /old HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", Forwarded(1), "HTTP/1.0 body by length"),
    case("bare-lf-head", b"GET /lf HTTP/1.1\nHost: t\nX-A: 1\n\n", Forwarded(1), "README: bare LF accepted in heads, rewritten with CRLF (RFC 9112 2.2)"),
    case("leading-empty-line", b"\r\nGET /e HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(1), "RFC 9112 2.2: an empty line before the request line is ignored"),
    case("connection-names-field", b"GET /h HTTP/1.1\r\nHost: t\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-End: e\r\n\r\n", Forwarded(1), "hop-by-hop fields dropped (README)"),
    case("connection-names-content-length", b"POST /c HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello", Forwarded(1), "framing is written from what was parsed, whatever Connection names"),
    case("connection-names-transfer-encoding", b"POST /c HTTP/1.1\r\nHost: t\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", Forwarded(1), "framing is written from what was parsed, whatever Connection names"),
    case("chunked-leading-zeros", b"POST /z HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n0\r\n\r\n", Forwarded(1), "chunk-size = 1*HEXDIG (RFC 9112 7.1)"),
    case("chunked-bws-extension", b"POST /z HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n", Forwarded(1), "BWS before a chunk extension (RFC 9112 7.1.1)"),
    case("chunked-trailer-framing-names", b"POST /t HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nContent-Length: 99\r\n\r\n", Forwarded(1), "trailers never frame the message (RFC 9110 6.5.1)"),
    // --- CL.TE and TE.CL.
    case("cl-te", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", refused(400), "README: Content-Length with Transfer-Encoding: 400 (RFC 9112 6.3 rule 3)"),
    case("te-cl", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", refused(400), "README: Content-Length with Transfer-Encoding: 400"),
    case("cl-te-xchunked", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n1\r\nZ\r\n", refused(400), "both fields present: 400 whatever the coding"),
    case("cl-te-http10", b"POST / HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", refused(400), "README: both present: 400"),
    case("cl-te-te-named-by-connection", b"POST / HTTP/1.1\r\nHost: t\r\nConnection: Transfer-Encoding\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", refused(400), "both fields present: 400, before any hop-by-hop field is dropped"),
    case("te-http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", refused(400), "README: Transfer-Encoding in an HTTP/1.0 request: 400 (RFC 9112 6.1)"),
    // --- TE.TE: obfuscated Transfer-Encoding.
    case("te-value-case", b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ChUnKeD\r\n\r\n3\r\nabc\r\n0\r\n\r\n", Forwarded(1), "coding names are case-insensitive (RFC 9112 7); rewritten as `chunked`"),
    case("te-name-case", b"POST /c HTTP/1.1\r\nHost: t\r\ntRANSFER-eNCODING: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", Forwarded(1), "field names are case-insensitive (RFC 9110 5.1)"),
    case("te-spaces-around-value", b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:    chunked   \r\n\r\n3\r\nabc\r\n0\r\n\r\n", Forwarded(1), "OWS around a value is not part of it (RFC 9112 5)"),
    case("te-tabs-around-value", b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\tchunked\t\r\n\r\n3\r\nabc\r\n0\r\n\r\n", Forwarded(1), "OWS includes HTAB"),
    case("te-empty-list-element", b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: , chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", Forwarded(1), "empty list elements are ignored (RFC 9110 5.6.1)"),
    case("te-after-bare-lf", b"POST /c HTTP/1.1\r\nHost: t\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", Forwarded(1), "bare LF ends the X-A line (README); TE is a field, rewritten"),
    case("te-space-before-colon", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", refused(400), "README: whitespace before a colon: 400 (RFC 9112 5.1)"),
    case("te-space-inside-token", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chun ked\r\n\r\n0\r\n\r\n", refused(400), "README: last coding not `chunked`: 400"),
    case("te-duplicate-fields", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", refused(400), "README: `chunked` twice: 400 (RFC 9112 6.1)"),
    case("te-duplicate-list", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", refused(400), "README: `chunked` twice: 400"),
    case("te-chunked-identity", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", refused(400), "README: last coding not `chunked`: 400 (RFC 9112 6.3 rule 4)"),
    case("te-chunked-then-other-field", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n", refused(400), "fields combine into one list (RFC 9110 5.3): last coding `x`: 400"),
    case("te-other-then-chunked-field", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", refused(501), "README: codings before a final `chunked`: 501"),
    case("te-identity-chunked", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", refused(501), "README: codings before a final `chunked`: 501"),
    case("te-xchunked", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", refused(400), "README: last coding not `chunked`: 400"),
    case("te-quoted", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", refused(400), "a quoted string is not the token `chunked`"),
    case("te-parameter", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", refused(400), "`chunked` takes no parameter: not `chunked`"),
    case("te-comma-only", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ,\r\n\r\n0\r\n\r\n", refused(400), "README: an empty coding list: last coding not `chunked`"),
    case("te-empty", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \r\n\r\n0\r\n\r\n", refused(400), "README: an empty coding list: last coding not `chunked`"),
    case("te-vertical-tab", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", refused(400), "README: control characters in values: 400"),
    case("te-obs-fold", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", refused(400), "README: obs-fold: 400 (RFC 9112 5.2)"),
    case("te-line-starts-with-space", b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: t\r\n\r\n0\r\n\r\n", refused(400), "whitespace before the first field: reject (RFC 9112 2.2)"),
    case("te-behind-bare-cr", b"POST / HTTP/1.1\r\nHost: t\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", refused(400), "README: control characters (a bare CR) in values: 400 (RFC 9112 2.2)"),
    // --- Content-Length forms.
    case("cl-plus", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello", refused(400), "README: a non-decimal length: 400 (RFC 9110 8.6: 1*DIGIT)"),
    case("cl-minus", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\nhello", refused(400), "README: a non-decimal length: 400"),
    case("cl-hex", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello", refused(400), "README: a non-decimal length: 400"),
    case("cl-leading-spaces", b"POST /s HTTP/1.1\r\nHost: t\r\nContent-Length:     5\r\n\r\nhello", Forwarded(1), "leading spaces are OWS, not part of the value (RFC 9112 5)"),
    case("cl-leading-tab", b"POST /s HTTP/1.1\r\nHost: t\r\nContent-Length:\t5\t\r\n\r\nhello", Forwarded(1), "OWS includes HTAB"),
    case("cl-space-inside", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1 5\r\n\r\nhello", refused(400), "README: a non-decimal length: 400"),
    case("cl-leading-zeros", b"POST /z HTTP/1.1\r\nHost: t\r\nContent-Length: 005\r\n\r\nhello", Forwarded(1), "1*DIGIT allows leading zeros; rewritten as 5"),
    case("cl-empty", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: \r\n\r\nhello", refused(400), "README: a non-decimal length: 400"),
    case("cl-trailing-comma", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5,\r\n\r\nhello", refused(400), "README: a non-decimal length (an empty item): 400"),
    case("cl-list-equal", b"POST /l HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello", Forwarded(1), "RFC 9112 6.3 rule 5: a list of identical values may be accepted; rewritten as one"),
    case("cl-fields-equal", b"POST /l HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello", Forwarded(1), "identical repeated values, as above"),
    case("cl-list-differ", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!", refused(400), "README: differing Content-Length values: 400"),
    case("cl-fields-differ", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nContent-Length: 5\r\n\r\nhello!", refused(400), "README: differing Content-Length values: 400"),
    case("cl-overflow", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551621\r\n\r\nhello", refused(400), "a length past u64 (2^64 + 5 would wrap to 5): refused, never wrapped"),
    case("cl-19-digits", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0000000000000000005\r\n\r\nhello", refused(400), "README: more than 18 digits is refused as non-decimal (a bound, not a wrap)"),
    // --- Chunk sizes.
    case("chunk-size-17-digits", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", refused_in_body(), "README: invalid chunk size (overflow of 64 bits would wrap to 5)"),
    case("chunk-size-17-fs", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n", refused_in_body(), "README: invalid chunk size (more than 16 hex digits)"),
    case("chunk-size-negative", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", refused_in_body(), "README: invalid chunk size"),
    case("chunk-size-0x", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", refused_in_body(), "README: invalid chunk size"),
    case("chunk-size-leading-space", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", refused_in_body(), "README: invalid chunk size"),
    case("chunk-size-bare-lf", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", refused_in_body(), "README: chunk lines not ended by CRLF: 400"),
    case("chunk-data-bare-lf", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", refused_in_body(), "README: chunk lines not ended by CRLF: 400"),
    case("chunk-data-overrun", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", refused_in_body(), "data longer than its size: not followed by CRLF: 400"),
    case("chunk-extension-bare-cr", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n", refused_in_body(), "README: chunk lines not ended by CRLF (a bare CR): 400"),
    case("chunk-extension-nul", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00b\r\nhello\r\n0\r\n\r\n", refused_in_body(), "control characters in an extension: 400"),
    case("chunk-trailer-bare-lf", b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\n\r\n", refused_in_body(), "README: only CRLF in chunked bodies"),
    case("chunk-size-huge", b"POST /huge HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nhello", Aborted, "a valid 63-bit size: both sides stream it; the client gives up"),
    case("chunk-size-32-bit-wrap", b"POST /wrap HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100000005\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n", Aborted, "0x100000005 is not 5: what follows is chunk data, never a request"),
    case("cl-huge", b"POST /huge HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999999999999\r\n\r\nhello", Aborted, "18 digits is a valid length: streamed until the client gives up"),
    // --- NUL and CR in heads.
    case("nul-in-value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n", refused(400), "README: control characters in values: 400 (RFC 9110 5.5)"),
    case("nul-in-name", b"GET / HTTP/1.1\r\nHost: t\r\nX-\x00A: a\r\n\r\n", refused(400), "README: control characters in names: 400"),
    case("nul-in-target", b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n", refused(400), "a malformed request line: 400"),
    case("cr-in-value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", refused(400), "README: a bare CR in a value: 400 (RFC 9112 2.2)"),
    case("cr-in-name", b"GET / HTTP/1.1\r\nHost: t\r\nX-\rA: a\r\n\r\n", refused(400), "README: control characters in names: 400"),
    case("cr-in-request-line", b"GET /a\r HTTP/1.1\r\nHost: t\r\n\r\n", refused(400), "a malformed request line: 400"),
    case("two-spaces-in-request-line", b"GET  /a HTTP/1.1\r\nHost: t\r\n\r\n", refused(400), "request-line = method SP target SP version (RFC 9112 3)"),
    case("empty-field-name", b"GET / HTTP/1.1\r\nHost: t\r\n: a\r\n\r\n", refused(400), "field-name = token: not empty"),
    // --- Host and targets.
    case("host-missing", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", refused(400), "README: HTTP/1.1 without exactly one Host: 400 (RFC 9112 3.2)"),
    case("host-duplicate", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", refused(400), "README: HTTP/1.1 without exactly one Host: 400"),
    case("host-duplicate-same", b"GET / HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n", refused(400), "README: HTTP/1.1 without exactly one Host: 400"),
    case("absolute-form", b"GET http://t/abs?q=1 HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(1), "a server accepts absolute-form (RFC 9112 3.2.2); target forwarded as is"),
    case("absolute-form-userinfo", b"GET http://u@t/abs HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(1), "the authority without userinfo is the Host (RFC 9112 3.2)"),
    case("absolute-form-no-host", b"GET http://t/abs HTTP/1.1\r\n\r\n", refused(400), "README: HTTP/1.1 without Host: 400, whatever the target"),
    case("absolute-form-other-host", b"GET http://internal.example/admin HTTP/1.1\r\nHost: public.example\r\n\r\n", refused(400), "README: the target's authority must be the Host: the proxy routes by Host, the server uses the target (RFC 9112 3.2.2)"),
    case("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(1), "asterisk-form (RFC 9112 3.2.4)"),
    case("version-1.2", b"GET / HTTP/1.2\r\nHost: t\r\n\r\n", refused(505), "README: versions other than 1.0 and 1.1: 505"),
    case("version-lowercase", b"GET / http/1.1\r\nHost: t\r\n\r\n", refused(505), "HTTP-name is case-sensitive (RFC 9112 2.3): not a version ringproxy speaks"),
    case("connect", b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", refused(501), "README: CONNECT: 501"),
    // --- Pipelined pairs.
    case("pipelined-get-get", b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(2), "README: pipelined requests are answered in order"),
    case("pipelined-cl-get", b"POST /1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(2), "the length ends the body exactly"),
    case("pipelined-chunked-get", b"POST /1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(2), "the last chunk ends the body exactly"),
    case("pipelined-cl-crlf-get", b"POST /1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(2), "an extra CRLF after a body is an empty line before the next request (RFC 9112 2.2)"),
    case("pipelined-cl-hides-request", b"POST /1 HTTP/1.1\r\nHost: t\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(1), "the length covers the inner request: it is body"),
    case("pipelined-chunk-hides-request", b"POST /1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n\r\n0\r\n\r\n", Forwarded(1), "the chunk covers the inner request: it is body"),
    case("pipelined-http10-keep-alive", b"GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", Forwarded(2), "README: HTTP/1.0 with keep-alive is persistent"),
    case("pipelined-upgrade-refused-then-get", b"GET /1 HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(2), "README: a tunnel only after 101; the origin answers 200, so HTTP goes on (h2c smuggling)"),
    case("pipelined-get-cl-te", b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nPOST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", refused_after(1, 400), "the first is served; the second is CL.TE: 400"),
    case("pipelined-get-garbage", b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\n", refused_after(1, 400), "the first is served; the second is not a request line: 400"),
    case("pipelined-close-then-get", b"GET /1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(1), "after `Connection: close` nothing more is read (RFC 9112 9.6)"),
    case("pipelined-http10-then-get", b"GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n", Forwarded(1), "HTTP/1.0 without keep-alive closes after its response (README)"),
];

// ---------------------------------------------------------------------------------------
// Running a case.

/// Runs one case; the list of what went wrong (empty: the case passed).
fn run_case(addr: std::net::SocketAddr, origin: &StrictOrigin, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let events_before = origin.events().len();
    let conns_before = origin.recorder.accepted();

    let mut c = Client::new(addr);
    c.stream
        .set_read_timeout(Some(CLIENT_READ_TIMEOUT))
        .unwrap();
    c.send(case.raw);
    let forwarded = match case.outcome {
        Outcome::Forwarded(n) => n,
        Outcome::Refused { forwarded, .. } => forwarded,
        Outcome::Aborted => 0,
    };
    let wanted = intended(case.raw, forwarded);
    if matches!(case.outcome, Outcome::Aborted) {
        c.stream.shutdown(Shutdown::Write).unwrap();
    }

    // The client's side: the origin's answers in order, then the refusal or the end.
    for (i, want) in wanted.iter().enumerate() {
        match read_response(&mut c, false) {
            Ok(r) if r.status() == 200 && r.payload_str() == want.answer_body() => {}
            Ok(r) => problems.push(format!(
                "response {i}: {:?} {:?}, expected 200 {:?}",
                r.head,
                r.payload_str(),
                want.answer_body()
            )),
            Err(e) => problems.push(format!("response {i}: none ({e})")),
        }
    }
    match case.outcome {
        Outcome::Refused { status, .. } => match read_response(&mut c, false) {
            Ok(r) => {
                let own_error = r.status() == status
                    && r.header("Connection") == Some("close")
                    && r.body.starts_with(status.to_string().as_bytes());
                if !own_error {
                    problems.push(format!(
                        "expected ringproxy's {status}, got {:?} {:?}",
                        r.head,
                        r.payload_str()
                    ));
                }
            }
            Err(e) => problems.push(format!("expected ringproxy's {status}, got none ({e})")),
        },
        Outcome::Forwarded(_) => {
            let _ = c.stream.shutdown(Shutdown::Write);
        }
        Outcome::Aborted => {}
    }
    match take_to_eof(&mut c) {
        Ok(rest) if rest.is_empty() => {}
        Ok(rest) => problems.push(format!(
            "more from the proxy: {:?}",
            String::from_utf8_lossy(&rest)
        )),
        Err(e) => problems.push(format!("no EOF from the proxy: {e}")),
    }
    drop(c);

    // The origin's side. A connection the proxy opened may still wait in the origin's
    // accept queue (the client can be done before the origin thread ran): a sentinel
    // request, on a connection of its own and so queued after every connection of the
    // case, is answered only once they were all accepted. Then every one must be over.
    let mut sentinel = Client::new(addr);
    let answer = sentinel.exchange(SENTINEL);
    assert_eq!(answer.payload_str(), "GET /sentinel 0", "the sentinel");
    sentinel.assert_eof();
    settle(&origin.recorder);
    let events: Vec<Event> = origin.events()[events_before..]
        .iter()
        .filter(|e| !matches!(e, Event::Request(s) if s.target == "/sentinel"))
        .cloned()
        .collect();
    let new_conns = origin.recorder.accepted() - conns_before - 1;
    let mut requests = Vec::new();
    for e in &events {
        match e {
            Event::Request(seen) => requests.push(seen.clone()),
            Event::Malformed { conn, reason, rest } => problems.push(format!(
                "the origin got malformed bytes on connection {conn} ({reason}): {:?}",
                String::from_utf8_lossy(rest)
            )),
            Event::Truncated { conn, got } => {
                let allowed = match case.outcome {
                    Outcome::Aborted => true,
                    Outcome::Refused { stage, .. } => stage == Stage::Body,
                    Outcome::Forwarded(_) => false,
                };
                if !allowed {
                    problems.push(format!(
                        "the origin got an incomplete message on connection {conn}: {:?}",
                        String::from_utf8_lossy(got)
                    ));
                }
            }
        }
    }
    if requests.len() != wanted.len() {
        problems.push(format!(
            "the origin completed {} request(s), expected {}: {:?}",
            requests.len(),
            wanted.len(),
            requests
                .iter()
                .map(|r| format!("{} {}", r.method, r.target))
                .collect::<Vec<_>>()
        ));
    }
    for (i, (got, want)) in requests.iter().zip(&wanted).enumerate() {
        if (&got.method, &got.target, &got.version) != (&want.method, &want.target, &want.version) {
            problems.push(format!(
                "request {i}: origin saw {} {} {}, client sent {} {} {}",
                got.method, got.target, got.version, want.method, want.target, want.version
            ));
        }
        if got.end_to_end() != want.end_to_end() {
            problems.push(format!(
                "request {i}: fields differ: origin {:?}, client {:?}",
                got.end_to_end(),
                want.end_to_end()
            ));
        }
        let framing_matches = match (got.delimited, want.delimited) {
            (Delimited::None, Delimited::None) | (Delimited::Chunked, Delimited::Chunked) => true,
            (Delimited::Length(a), Delimited::Length(b)) => a == b,
            _ => false,
        };
        if !framing_matches || got.payload != want.payload {
            problems.push(format!(
                "request {i}: body differs: origin {:?} {:?}, client {:?} {:?}",
                got.delimited,
                String::from_utf8_lossy(&got.payload),
                want.delimited,
                String::from_utf8_lossy(&want.payload)
            ));
        }
    }
    if let Outcome::Refused {
        forwarded: 0,
        stage: Stage::Head,
        ..
    } = case.outcome
    {
        if new_conns != 0 {
            problems.push(format!(
                "refused at the head, yet the origin accepted {new_conns} connection(s)"
            ));
        }
    }
    problems
}

/// Runs `cases` against one proxy and origin; panics with every divergence.
fn run_cases(cases: &[&Case]) {
    let origin = StrictOrigin::start();
    let (proxy, addr) = http_proxy(
        &[origin.recorder.addr],
        "forward_for = { enabled = false }",
        "http_reuse = \"never\"",
    );
    let mut failures = Vec::new();
    for case in cases {
        let problems = run_case(addr, &origin, case);
        eprintln!(
            "{:<36} {:<28} {}",
            case.name,
            describe(case.outcome),
            if problems.is_empty() { "ok" } else { "FAILED" }
        );
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({}; {}):\n  sent {:?}\n  {}",
                case.name,
                describe(case.outcome),
                case.why,
                String::from_utf8_lossy(case.raw),
                problems.join("\n  ")
            ));
        }
    }
    assert_eq!(
        origin.recorder.resets(),
        0,
        "the proxy reset origin connections"
    );
    proxy.shutdown();
    assert!(
        failures.is_empty(),
        "{} of {} case(s) diverged:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn describe(outcome: Outcome) -> String {
    match outcome {
        Outcome::Forwarded(n) => format!("forwarded {n}"),
        Outcome::Refused {
            forwarded,
            status,
            stage,
        } => {
            let at = match stage {
                Stage::Head => "",
                Stage::Body => " in body",
            };
            if forwarded > 0 {
                format!("forwarded {forwarded}, then {status}{at}")
            } else {
                format!("{status}{at}")
            }
        }
        Outcome::Aborted => "aborted by the client".into(),
    }
}

#[test]
fn desync_cases_forward_exactly_or_refuse() {
    run_cases(&CASES.iter().collect::<Vec<_>>());
}

/// The reference reader itself, on a case whose reading is known.
#[test]
fn intended_reads_pipelined_requests() {
    let got = intended(
        b"\r\nPOST /1 HTTP/1.1\nHost: t\nContent-Length: 5, 5\n\nhelloGET /2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        2,
    );
    assert_eq!(got.len(), 2);
    assert_eq!(
        (
            got[0].target.as_str(),
            got[0].delimited,
            &got[0].payload[..]
        ),
        ("/1", Delimited::Length(5), &b"hello"[..])
    );
    assert_eq!(
        (
            got[1].target.as_str(),
            got[1].delimited,
            &got[1].payload[..]
        ),
        ("/2", Delimited::Chunked, &b"abc"[..])
    );
    let fields = [
        ("Host", "t"),
        ("Connection", "x-a"),
        ("X-A", "1"),
        ("X-B", "2"),
    ];
    let seen = Seen {
        method: "GET".into(),
        target: "/".into(),
        version: "HTTP/1.1".into(),
        fields: fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        delimited: Delimited::None,
        payload: Vec::new(),
    };
    assert_eq!(
        seen.end_to_end(),
        vec![("Host".into(), "t".into()), ("X-B".into(), "2".into())]
    );
}
