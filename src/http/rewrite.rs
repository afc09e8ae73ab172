//! Outgoing heads, written into a reused buffer from a parsed head and a few decisions.
//!
//! Sans-IO. Every head leaves the proxy rewritten, never copied: the start line is
//! rebuilt, each end-to-end field is written as `name: value` CRLF, hop-by-hop fields
//! (`Connection`, those it names, `Keep-Alive`, `TE`, `Trailer`, `Proxy-Connection`, and
//! `Upgrade` unless upgrading) are dropped, and the framing and `Connection` fields are
//! written from what the proxy decided. So a peer never sees bare-LF lines, framing that
//! differs from what was parsed, or a hop-by-hop field meant for the proxy. With cookie
//! stickiness, `Cookie` and `Set-Cookie` fields are edited on the way (`super::cookie`).
//!
//! Also here: the proxy's own responses ([`error_response`]), in one place.

use std::net::IpAddr;

use super::head::{Field, Kind, Request, Response, Version};
use crate::config::CookieSettings;

/// The framing field written on an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// None (no body, or a body delimited by closing the connection).
    None,
    Length(u64),
    Chunked,
    /// The message's own `Content-Length`/`Transfer-Encoding` fields, unchanged (responses
    /// to HEAD and 304s, which describe a body that is not sent).
    AsReceived,
}

/// The `Connection` field written on an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// No field: the version's default applies.
    Default,
    KeepAlive,
    Close,
    Upgrade,
}

/// What the request to the server gets beyond the client's end-to-end fields.
#[derive(Debug, Clone, Copy)]
pub struct RequestExtras<'a> {
    pub framing: Framing,
    pub connection: Connection,
    /// Keep the `Upgrade` field (the request asks for an upgrade).
    pub upgrade: bool,
    /// Append this address to `X-Forwarded-For`.
    pub forwarded_for: Option<IpAddr>,
    /// Set `X-Forwarded-Proto` to this (replacing the client's).
    pub forwarded_proto: Option<&'static str>,
    /// The backend's cookie stickiness: `Cookie` fields are edited as it says.
    pub cookie: Option<&'a CookieSettings>,
}

/// What a response's cookies become (`[backend.cookie]`).
#[derive(Debug, Clone, Copy)]
pub struct ResponseCookie<'a> {
    pub settings: &'a CookieSettings,
    /// The cookie value of the server that answered.
    pub server: &'a [u8],
    /// insert mode: set the cookie on this response.
    pub insert: bool,
}

/// Writes the request head to send to the server.
pub fn request_head(out: &mut Vec<u8>, buf: &[u8], req: &Request, x: &RequestExtras<'_>) {
    out.extend_from_slice(req.method_span.get(buf));
    out.push(b' ');
    out.extend_from_slice(req.target.get(buf));
    out.extend_from_slice(match req.head.version {
        Version::Http10 => b" HTTP/1.0\r\n",
        Version::Http11 => b" HTTP/1.1\r\n",
    });
    let mut prior_xff = false;
    for f in &req.head.fields {
        let keep = match f.kind {
            Kind::Upgrade => x.upgrade,
            Kind::XForwardedFor => x.forwarded_for.is_none(),
            Kind::XForwardedProto => x.forwarded_proto.is_none(),
            k => !k.is_hop_by_hop(),
        };
        if keep && !f.listed_in_connection {
            match (f.kind, x.cookie) {
                (Kind::Cookie, Some(c)) => {
                    super::cookie::request_field(out, f.name.get(buf), f.value.get(buf), c)
                }
                _ => field(out, buf, f),
            }
        }
        prior_xff |= f.kind == Kind::XForwardedFor;
    }
    framing(out, buf, &req.head.fields, x.framing);
    if let Some(ip) = x.forwarded_for {
        // One field: the client's own entries first, then the address it came from.
        out.extend_from_slice(b"X-Forwarded-For: ");
        if prior_xff {
            for f in req
                .head
                .fields
                .iter()
                .filter(|f| f.kind == Kind::XForwardedFor)
            {
                out.extend_from_slice(super::head::trim(f.value.get(buf)));
                out.extend_from_slice(b", ");
            }
        }
        use std::io::Write;
        let _ = write!(out, "{ip}\r\n");
    }
    if let Some(proto) = x.forwarded_proto {
        out.extend_from_slice(b"X-Forwarded-Proto: ");
        out.extend_from_slice(proto.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    connection(out, x.connection);
    out.extend_from_slice(b"\r\n");
}

/// Writes the response head to send to the client. The status line always says
/// HTTP/1.1: the proxy's own version, whatever the server spoke.
pub fn response_head(
    out: &mut Vec<u8>,
    buf: &[u8],
    resp: &Response,
    framing_out: Framing,
    conn: Connection,
) {
    response_head_with(out, buf, resp, framing_out, conn, None)
}

/// [`response_head`], with the cookies edited for stickiness.
pub fn response_head_with(
    out: &mut Vec<u8>,
    buf: &[u8],
    resp: &Response,
    framing_out: Framing,
    conn: Connection,
    cookie: Option<ResponseCookie<'_>>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    decimal(out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(resp.reason.get(buf));
    out.extend_from_slice(b"\r\n");
    for f in &resp.head.fields {
        let keep = match f.kind {
            Kind::Upgrade => conn == Connection::Upgrade,
            k => !k.is_hop_by_hop(),
        };
        if keep && !f.listed_in_connection {
            match (f.kind, cookie) {
                (Kind::SetCookie, Some(c)) => super::cookie::response_field(
                    out,
                    f.name.get(buf),
                    f.value.get(buf),
                    c.settings,
                    c.server,
                ),
                _ => field(out, buf, f),
            }
        }
    }
    if let Some(c) = cookie.filter(|c| c.insert) {
        super::cookie::insert_fields(out, c.settings, c.server);
    }
    framing(out, buf, &resp.head.fields, framing_out);
    connection(out, conn);
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, buf: &[u8], f: &Field) {
    write_field(out, f.name.get(buf), f.value.get(buf));
}

/// Writes one header field line, `name: value` and CRLF.
pub(super) fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn framing(out: &mut Vec<u8>, buf: &[u8], fields: &[Field], framing: Framing) {
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::AsReceived => {
            for f in fields {
                if matches!(f.kind, Kind::ContentLength | Kind::TransferEncoding) {
                    field(out, buf, f);
                }
            }
        }
    }
}

fn connection(out: &mut Vec<u8>, c: Connection) {
    out.extend_from_slice(match c {
        Connection::Default => b"",
        Connection::KeepAlive => b"Connection: keep-alive\r\n",
        Connection::Close => b"Connection: close\r\n",
        Connection::Upgrade => b"Connection: upgrade\r\n",
    });
}

/// Appends `n` in decimal.
pub fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` in hexadecimal (chunk sizes).
pub fn hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The reason phrase of a status the proxy itself answers with.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        400 => "Bad Request",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Writes one of the proxy's own error responses: a short plain-text body and
/// `Connection: close` (the proxy closes the client connection after it). To a HEAD
/// request (`head_request`), the same head without the body.
pub fn error_response(out: &mut Vec<u8>, status: u16, detail: &str, head_request: bool) {
    let reason = reason(status);
    let body_len = 3 + 1 + reason.len() + 2 + detail.len() + 1;
    out.extend_from_slice(b"HTTP/1.1 ");
    decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(
        b"\r\nContent-Type: text/plain\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Length: ",
    );
    decimal(out, body_len as u64);
    out.extend_from_slice(b"\r\n\r\n");
    if head_request {
        return;
    }
    decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(detail.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::super::head::{parse_request, parse_response, Limits, Method};
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_bytes: 16 * 1024,
        max_headers: 100,
        max_request_line: 8 * 1024,
    };

    #[test]
    fn request_drops_hop_by_hop_and_writes_framing() {
        let text = b"POST /p HTTP/1.1\nHost: a\nConnection: keep-alive, X-Hop\nX-Hop: 1\nKeep-Alive: 5\nTE: trailers\nUpgrade: h2c\nX-Forwarded-For: 1.1.1.1\nContent-Length: 3, 3\nX-End: e\n\n";
        let mut r = Request::default();
        parse_request(text, &LIMITS, &mut r).unwrap();
        let mut out = Vec::new();
        request_head(
            &mut out,
            text,
            &r,
            &RequestExtras {
                framing: Framing::Length(3),
                connection: Connection::Default,
                upgrade: false,
                forwarded_for: Some("127.0.0.1".parse().unwrap()),
                forwarded_proto: Some("http"),
                cookie: None,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p HTTP/1.1\r\nHost: a\r\nX-End: e\r\nContent-Length: 3\r\n\
             X-Forwarded-For: 1.1.1.1, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn response_always_http11() {
        let text = b"HTTP/1.0 200 Fine\r\nServer: s\r\nConnection: close\r\n\r\n";
        let mut r = Response::default();
        parse_response(text, Method::Get, &mut r).unwrap();
        let mut out = Vec::new();
        response_head(&mut out, text, &r, Framing::Chunked, Connection::Default);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 Fine\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn error_body_length_is_exact() {
        let mut out = Vec::new();
        error_response(&mut out, 503, "no server is available", false);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        let mut head_only = Vec::new();
        error_response(&mut head_only, 503, "no server is available", true);
        assert_eq!(head_only, format!("{head}\r\n\r\n").as_bytes());
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        decimal(&mut out, 0);
        out.push(b' ');
        decimal(&mut out, 18446744073709551615);
        out.push(b' ');
        hex(&mut out, 0x1a2b);
        assert_eq!(out, b"0 18446744073709551615 1a2b");
    }
}
