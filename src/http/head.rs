//! Request and response heads: parsed with `httparse`, checked, and reduced to offsets.
//!
//! Sans-IO: functions take the bytes received so far and either report that more are
//! needed ([`Parsed::Partial`]: a state, not an error), refuse the message with the status
//! to answer ([`Refusal`]), or fill a reused [`Request`]/[`Response`] with offsets into
//! those bytes. Nothing here allocates once the reused field vectors have grown.
//!
//! The framing of every message is decided here, once, and the rest of the proxy only
//! forwards what was decided ([`Body`]): the outgoing head carries exactly one framing
//! header written from that decision (see `super::rewrite`), so a message is never
//! forwarded with framing that differs from what was parsed. Request rules (strict, as
//! HAProxy):
//! - `Content-Length` and `Transfer-Encoding` together: 400.
//! - `Content-Length` repeated (as fields or as a list) with differing values, or not a
//!   plain decimal number: 400.
//! - `Transfer-Encoding` whose last coding is not `chunked`, or with `chunked` twice: 400;
//!   other codings before a final `chunked`: 501; in an HTTP/1.0 request: 400.
//! - What `httparse` refuses: obs-fold, whitespace before the colon, control characters
//!   in names or values, a malformed request line: 400.
//! - Bare LF as a line end is accepted in heads (RFC 9112 §2.2 allows it) because the
//!   head is rewritten with CRLF on the way out, so the server never sees it; in chunked
//!   bodies, which are forwarded as received, only CRLF is accepted.
//! - HTTP/1.1 without `Host`, or with two: 400. `CONNECT`: 501.
//! - An absolute-form target whose authority is not the `Host` value: 400 (as HAProxy).
//!   The proxy routes by `Host`, while the server must use the target's authority and
//!   ignore `Host` (RFC 9112 §3.2.2): the two must name the same host.

use std::mem::MaybeUninit;

/// Most header fields a message may have (the upper bound of `max_headers`).
pub const MAX_HEADERS_LIMIT: usize = 1000;

/// Most header fields accepted in a response (servers are trusted more, not infinitely).
pub const MAX_RESPONSE_HEADERS: usize = 200;

/// A byte range of the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The span of `part`, a slice of `base`. An empty part is the empty span at 0:
    /// httparse gives a missing reason phrase, or one with obs-text, as a static `""`
    /// that does not point into `base` (found by the `response_head` fuzz target).
    fn of(base: &[u8], part: &[u8]) -> Span {
        if part.is_empty() {
            return Span::default();
        }
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        assert!(
            start <= base.len() && part.len() <= base.len() - start,
            "a span outside its buffer"
        );
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    Http10,
    #[default]
    Http11,
}

/// How a message body is delimited, as decided from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    /// No body.
    #[default]
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes (responses only).
    UntilClose,
}

/// Header fields the proxy looks at or drops; everything else is [`Kind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Other,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    Te,
    Trailer,
    ProxyConnection,
    Upgrade,
    Host,
    Expect,
    XForwardedFor,
    XForwardedProto,
    Cookie,
    SetCookie,
}

impl Kind {
    fn of(name: &[u8]) -> Kind {
        const NAMES: [(&[u8], Kind); 14] = [
            (b"content-length", Kind::ContentLength),
            (b"transfer-encoding", Kind::TransferEncoding),
            (b"connection", Kind::Connection),
            (b"keep-alive", Kind::KeepAlive),
            (b"te", Kind::Te),
            (b"trailer", Kind::Trailer),
            (b"proxy-connection", Kind::ProxyConnection),
            (b"upgrade", Kind::Upgrade),
            (b"host", Kind::Host),
            (b"expect", Kind::Expect),
            (b"x-forwarded-for", Kind::XForwardedFor),
            (b"x-forwarded-proto", Kind::XForwardedProto),
            (b"cookie", Kind::Cookie),
            (b"set-cookie", Kind::SetCookie),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
            .map_or(Kind::Other, |&(_, k)| k)
    }

    /// Hop-by-hop fields: never forwarded as received (framing and `Connection` are
    /// written by the proxy itself; `Upgrade` is written back only when upgrading).
    pub fn is_hop_by_hop(self) -> bool {
        !matches!(
            self,
            Kind::Other
                | Kind::Host
                | Kind::Expect
                | Kind::XForwardedFor
                | Kind::XForwardedProto
                | Kind::Cookie
                | Kind::SetCookie
        )
    }
}

/// One header field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub kind: Kind,
    pub name: Span,
    pub value: Span,
    /// Named by a `Connection` field: hop-by-hop, dropped.
    pub listed_in_connection: bool,
}

/// What requests and responses share.
#[derive(Debug, Default)]
pub struct Head {
    pub version: Version,
    pub fields: Vec<Field>,
    /// Length of the whole head, blank line included.
    pub len: usize,
    pub body: Body,
    /// `Connection: close` / `keep-alive` / `upgrade` tokens.
    pub conn_close: bool,
    pub conn_keep_alive: bool,
    pub conn_upgrade: bool,
    /// Both `Transfer-Encoding` and `Content-Length` were present (responses: allowed,
    /// chunked wins, but the connection is not reused).
    pub ambiguous: bool,
}

impl Head {
    /// Whether the sender allows the connection to stay open after this message.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.conn_close,
            Version::Http10 => self.conn_keep_alive && !self.conn_close,
        }
    }

    fn clear(&mut self) {
        self.fields.clear();
        self.len = 0;
        self.body = Body::None;
        self.conn_close = false;
        self.conn_keep_alive = false;
        self.conn_upgrade = false;
        self.ambiguous = false;
    }
}

/// Request methods the proxy treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Connect,
    Other,
}

impl Method {
    /// Idempotent (RFC 9110, 9.2.2): sending it twice has the effect of sending it once,
    /// so the proxy may replay it.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }

    fn of(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
}

/// A parsed request head.
#[derive(Debug, Default)]
pub struct Request {
    pub head: Head,
    pub method: Method,
    pub method_span: Span,
    /// The request target as sent (origin-form, absolute-form or `*`).
    pub target: Span,
    pub host: Option<Span>,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// An `Upgrade` field and the `upgrade` connection token (HTTP/1.1 only).
    pub upgrade: bool,
}

impl Request {
    /// The path of the target (for routing): from the first `/` of an absolute-form
    /// target, the whole target otherwise.
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let t = self.target.get(buf);
        if t.first() == Some(&b'/') {
            return t;
        }
        // absolute-form: scheme "://" authority path
        if let Some(p) = find(t, b"://") {
            let rest = &t[p + 3..];
            return rest
                .iter()
                .position(|&b| b == b'/')
                .map_or(b"/" as &[u8], |i| &rest[i..]);
        }
        t
    }
}

/// A parsed response head.
#[derive(Debug, Default)]
pub struct Response {
    pub head: Head,
    pub status: u16,
    pub reason: Span,
}

/// Whether a head is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Complete,
    /// More bytes are needed.
    Partial,
}

/// A message refused: the status to answer and why (for logs and the error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// The request limits of a frontend.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_request_line: usize,
}

/// Parses a request head from the start of `buf`.
pub fn parse_request(buf: &[u8], limits: &Limits, out: &mut Request) -> Result<Parsed, Refusal> {
    out.head.clear();
    out.host = None;
    out.expect_continue = false;
    out.upgrade = false;

    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_LIMIT];
    let headers = &mut storage[..limits.max_headers.min(MAX_HEADERS_LIMIT)];
    let mut req = httparse::Request::new(&mut []);
    let line_end = buf.iter().position(|&b| b == b'\n');
    match line_end {
        Some(n) if n > limits.max_request_line => return Err(refuse(414, "request line too long")),
        None if buf.len() > limits.max_request_line => {
            return Err(refuse(414, "request line too long"))
        }
        _ => {}
    }
    let parsed =
        httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, headers);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= limits.max_header_bytes {
                return Err(refuse(431, "request head too large"));
            }
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "too many header fields")),
        Err(httparse::Error::Version) => return Err(refuse(505, "HTTP version not supported")),
        Err(_) => return Err(refuse(400, "malformed request head")),
    };
    if len > limits.max_header_bytes {
        return Err(refuse(431, "request head too large"));
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(refuse(400, "malformed request line"));
    };
    out.method = Method::of(method.as_bytes());
    out.method_span = Span::of(buf, method.as_bytes());
    out.target = Span::of(buf, path.as_bytes());
    out.head.len = len;
    out.head.version = if version == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    if out.method == Method::Connect {
        return Err(refuse(501, "CONNECT is not supported"));
    }

    let mut framing = Framing::default();
    let mut hosts = 0;
    let mut upgrade_field = false;
    for h in req.headers.iter() {
        let field = collect_field(buf, h, &mut out.head, &mut framing)?;
        match field.kind {
            Kind::Host => {
                hosts += 1;
                out.host = Some(field.value);
            }
            Kind::Expect if trim(field.value.get(buf)).eq_ignore_ascii_case(b"100-continue") => {
                out.expect_continue = true;
            }
            Kind::Upgrade => upgrade_field = true,
            _ => {}
        }
    }
    mark_connection_listed(buf, &mut out.head);
    if hosts > 1 {
        return Err(refuse(400, "more than one Host field"));
    }
    if hosts == 0 && out.head.version == Version::Http11 {
        return Err(refuse(400, "HTTP/1.1 request without Host"));
    }
    if let (Some(host), Some(authority)) = (out.host, authority(out.target.get(buf))) {
        if !trim(host.get(buf)).eq_ignore_ascii_case(authority) {
            return Err(refuse(400, "Host differs from the target's authority"));
        }
    }
    out.upgrade = upgrade_field && out.head.conn_upgrade && out.head.version == Version::Http11;

    out.head.body = match (framing.transfer_encoding, framing.content_length) {
        (Some(_), Some(_)) => return Err(refuse(400, "both Content-Length and Transfer-Encoding")),
        (Some(_), None) if out.head.version == Version::Http10 => {
            return Err(refuse(400, "Transfer-Encoding in an HTTP/1.0 request"))
        }
        (Some(te), None) => match te.verdict() {
            TeVerdict::Chunked => Body::Chunked,
            TeVerdict::OtherThenChunked => {
                return Err(refuse(501, "transfer coding not implemented"))
            }
            TeVerdict::Invalid => return Err(refuse(400, "invalid Transfer-Encoding")),
        },
        (None, Some(n)) => Body::Length(n),
        (None, None) => Body::None,
    };
    Ok(Parsed::Complete)
}

/// Parses a response head from the start of `buf`, for a request with `method`.
pub fn parse_response(buf: &[u8], method: Method, out: &mut Response) -> Result<Parsed, Refusal> {
    out.head.clear();
    let mut storage =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        // The caller bounds a response head by its buffer.
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(_) => return Err(refuse(502, "malformed response head")),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(refuse(502, "malformed status line"));
    };
    if status < 100 {
        // Three digits, but no status (RFC 9110 §15): and rewritten as a number it
        // would lose its leading zeros (found by the `response_head` fuzz target).
        return Err(refuse(502, "malformed status line"));
    }
    out.status = status;
    out.reason = Span::of(buf, resp.reason.unwrap_or("").as_bytes());
    out.head.len = len;
    out.head.version = if version == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let mut framing = Framing::default();
    for h in resp.headers.iter() {
        collect_field(buf, h, &mut out.head, &mut framing)
            .map_err(|_| refuse(502, "invalid framing in response"))?;
    }
    mark_connection_listed(buf, &mut out.head);

    let bodiless =
        method == Method::Head || (100..200).contains(&status) || status == 204 || status == 304;
    out.head.body = if bodiless {
        Body::None
    } else {
        match (framing.transfer_encoding, framing.content_length) {
            (Some(te), cl) => {
                // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; a server
                // that sends both is not trusted with another request.
                out.head.ambiguous = cl.is_some();
                match te.verdict() {
                    TeVerdict::Chunked if out.head.version == Version::Http11 => Body::Chunked,
                    TeVerdict::Chunked | TeVerdict::OtherThenChunked | TeVerdict::Invalid => {
                        out.head.ambiguous = true;
                        Body::UntilClose
                    }
                }
            }
            (None, Some(n)) => Body::Length(n),
            (None, None) => Body::UntilClose,
        }
    };
    Ok(Parsed::Complete)
}

/// What the framing fields of a message said.
#[derive(Debug, Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: Option<Codings>,
}

/// The transfer codings of a message, as far as framing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TeVerdict {
    /// Exactly `chunked`.
    Chunked,
    /// Other codings, then `chunked` once, last.
    OtherThenChunked,
    /// The last coding is not `chunked`, or `chunked` appears twice, or a list is empty.
    Invalid,
}

fn collect_field(
    buf: &[u8],
    h: &httparse::Header<'_>,
    head: &mut Head,
    framing: &mut Framing,
) -> Result<Field, Refusal> {
    let kind = Kind::of(h.name.as_bytes());
    let field = Field {
        kind,
        name: Span::of(buf, h.name.as_bytes()),
        value: Span::of(buf, h.value),
        listed_in_connection: false,
    };
    match kind {
        Kind::ContentLength => {
            for item in h.value.split(|&b| b == b',') {
                let n = parse_decimal(trim(item)).ok_or(refuse(400, "invalid Content-Length"))?;
                match framing.content_length {
                    Some(prev) if prev != n => {
                        return Err(refuse(400, "conflicting Content-Length values"))
                    }
                    _ => framing.content_length = Some(n),
                }
            }
        }
        Kind::TransferEncoding => {
            framing
                .transfer_encoding
                .get_or_insert_with(Codings::default)
                .add(h.value);
        }
        Kind::Connection | Kind::ProxyConnection => {
            for token in h.value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    head.conn_keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") && kind == Kind::Connection {
                    head.conn_upgrade = true;
                }
            }
        }
        _ => {}
    }
    head.fields.push(field);
    Ok(field)
}

/// The codings listed by every `Transfer-Encoding` field so far, in order.
#[derive(Debug, Default, Clone, Copy)]
struct Codings {
    chunked: u32,
    others: u32,
    last_is_chunked: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) {
        for token in value
            .split(|&b| b == b',')
            .map(trim)
            .filter(|t| !t.is_empty())
        {
            let chunked = token.eq_ignore_ascii_case(b"chunked");
            if chunked {
                self.chunked += 1;
            } else {
                self.others += 1;
            }
            self.last_is_chunked = chunked;
        }
    }

    fn verdict(&self) -> TeVerdict {
        if self.chunked != 1 || !self.last_is_chunked {
            TeVerdict::Invalid
        } else if self.others > 0 {
            TeVerdict::OtherThenChunked
        } else {
            TeVerdict::Chunked
        }
    }
}

/// Marks the fields named by `Connection` tokens (other than the three the proxy acts
/// on) as hop-by-hop.
fn mark_connection_listed(buf: &[u8], head: &mut Head) {
    let Head { fields, .. } = head;
    for i in 0..fields.len() {
        if fields[i].kind != Kind::Connection {
            continue;
        }
        let value = fields[i].value.get(buf);
        for token in value.split(|&b| b == b',').map(trim) {
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive")
                || token.eq_ignore_ascii_case(b"upgrade")
            {
                continue;
            }
            for f in fields.iter_mut() {
                if f.name.get(buf).eq_ignore_ascii_case(token) && f.kind != Kind::Host {
                    f.listed_in_connection = true;
                }
            }
        }
    }
}

/// A plain decimal number (no sign, no spaces), at most 18 digits.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Without leading and trailing spaces and tabs.
pub fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// The authority of an absolute-form target (`scheme://authority/...`), without its
/// userinfo (RFC 9112 §3.2: what `Host` must then say); `None` for other forms or an
/// empty authority.
pub fn authority(target: &[u8]) -> Option<&[u8]> {
    if target.first() == Some(&b'/') {
        return None;
    }
    let rest = &target[find(target, b"://")? + 3..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    (!host.is_empty()).then_some(host)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The host of a `Host` value, lowercased into `out`, without the port.
pub fn host_without_port<'a>(value: &[u8], out: &'a mut [u8; 256]) -> Option<&'a [u8]> {
    let v = trim(value);
    let host = if v.first() == Some(&b'[') {
        let end = v.iter().position(|&b| b == b']')?;
        &v[..=end]
    } else {
        match v.iter().rposition(|&b| b == b':') {
            Some(i) => &v[..i],
            None => v,
        }
    };
    if host.len() > out.len() {
        return None;
    }
    for (o, b) in out.iter_mut().zip(host) {
        *o = b.to_ascii_lowercase();
    }
    Some(&out[..host.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_bytes: 16 * 1024,
        max_headers: 100,
        max_request_line: 8 * 1024,
    };

    fn req(text: &[u8]) -> Result<(Parsed, Request), Refusal> {
        let mut r = Request::default();
        parse_request(text, &LIMITS, &mut r).map(|p| (p, r))
    }

    fn status(text: &[u8]) -> u16 {
        req(text).err().map_or(0, |r| r.status)
    }

    #[test]
    fn framing_of_requests() {
        let (_, r) = req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(r.head.body, Body::Length(5));
        let (_, r) =
            req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert_eq!(r.head.body, Body::Length(5));
        let (_, r) =
            req(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(r.head.body, Body::Chunked);
        let (_, r) = req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(r.head.body, Body::None);
    }

    #[test]
    fn smuggling_refused() {
        let cases: &[(&[u8], u16)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHo\x00st: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 501),
            (b"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET http://a@b/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET http://a:8080/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET http://b/ HTTP/1.0\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ];
        for (text, want) in cases {
            assert_eq!(status(text), *want, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn limits() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        assert_eq!(status(long.as_bytes()), 414);
        let partial_long = format!("GET /{}", "a".repeat(9000));
        assert_eq!(status(partial_long.as_bytes()), 414);
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let text = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(status(text.as_bytes()), 431);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(17000)
        );
        assert_eq!(status(big.as_bytes()), 431);
        let (p, _) = req(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
        assert_eq!(p, Parsed::Partial);
    }

    #[test]
    fn keep_alive_and_connection_tokens() {
        let (_, r) = req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(r.head.keep_alive());
        let (_, r) = req(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!r.head.keep_alive());
        let text =
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n\r\n";
        let (_, r) = req(text).unwrap();
        assert!(!r.head.keep_alive());
        let listed: Vec<_> = r
            .head
            .fields
            .iter()
            .filter(|f| f.listed_in_connection)
            .collect();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name.get(text), b"X-Secret");
    }

    #[test]
    fn responses() {
        let mut r = Response::default();
        let text = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        parse_response(text, Method::Get, &mut r).unwrap();
        assert_eq!(r.head.body, Body::Chunked);
        assert!(r.head.ambiguous);
        parse_response(b"HTTP/1.0 200 OK\r\n\r\n", Method::Get, &mut r).unwrap();
        assert_eq!(r.head.body, Body::UntilClose);
        parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            Method::Head,
            &mut r,
        )
        .unwrap();
        assert_eq!(r.head.body, Body::None);
        parse_response(b"HTTP/1.1 304 Not Modified\r\n\r\n", Method::Get, &mut r).unwrap();
        assert_eq!(r.head.body, Body::None);
    }

    #[test]
    fn absolute_form_authority_is_the_host() {
        for text in [
            &b"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET HTTP://A:80?q HTTP/1.1\r\nHost: a:80\r\n\r\n",
            b"GET http://u:p@a/ HTTP/1.1\r\nHost:  A \r\n\r\n",
            b"GET http://b/ HTTP/1.0\r\n\r\n",
            b"GET /http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(req(text).is_ok(), "{}", String::from_utf8_lossy(text));
        }
        assert_eq!(authority(b"http://u@h:1/p"), Some(&b"h:1"[..]));
        assert_eq!(authority(b"http:///p"), None);
        assert_eq!(authority(b"/p"), None);
        assert_eq!(authority(b"*"), None);
    }

    #[test]
    fn reason_phrase_missing_or_obs_text_is_empty() {
        // From the heap, as in the proxy: the static "" httparse gives is elsewhere.
        for text in [
            &b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 \xaeK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 \r\n\r\n",
        ] {
            let buf = text.to_vec();
            let mut r = Response::default();
            parse_response(&buf, Method::Get, &mut r).unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.reason.get(&buf), b"");
        }
    }

    #[test]
    fn status_below_100_is_refused() {
        let mut r = Response::default();
        for text in [
            &b"HTTP/1.1 000 Continue\r\n\r\n"[..],
            b"HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert_eq!(
                parse_response(text, Method::Get, &mut r).map_err(|e| e.status),
                Err(502)
            );
        }
        parse_response(b"HTTP/1.1 100 Continue\r\n\r\n", Method::Get, &mut r).unwrap();
        parse_response(b"HTTP/1.1 999 Odd\r\n\r\n", Method::Get, &mut r).unwrap();
    }

    #[test]
    fn hosts() {
        let mut b = [0u8; 256];
        assert_eq!(
            host_without_port(b"Example.COM:8080", &mut b),
            Some(&b"example.com"[..])
        );
        assert_eq!(host_without_port(b"[::1]:80", &mut b), Some(&b"[::1]"[..]));
        assert_eq!(host_without_port(b" a ", &mut b), Some(&b"a"[..]));
    }
}
