//! HTTP on the wire for the tests, read strictly: messages, raw clients, recording
//! origins that answer HTTP, and the proxy configured in http mode.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use super::*;
use ringproxy::origin::{self, Origin, OriginOptions};
use ringproxy::runtime::Running;

// ---------------------------------------------------------------------------------------
// HTTP on the wire, read strictly (test side).

/// Something bytes arrive on: a client socket, an origin's connection, or a byte slice.
pub trait Wire {
    fn pending(&mut self) -> &mut Vec<u8>;
    /// Reads more bytes into `pending`; `Ok(0)` at EOF.
    fn fill(&mut self) -> io::Result<usize>;
}

impl Wire for RecordedConn {
    fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }
    fn fill(&mut self) -> io::Result<usize> {
        RecordedConn::fill(self)
    }
}

/// Bytes already received (e.g. what an origin recorded), read as a wire that then ends.
pub struct Bytes(Vec<u8>);

impl Wire for Bytes {
    fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
    fn fill(&mut self) -> io::Result<usize> {
        Ok(0)
    }
}

/// One `read` from `r`, appended to `pending` (a [`Wire::fill`] for a plain reader).
pub fn read_into(r: &mut impl Read, pending: &mut Vec<u8>) -> io::Result<usize> {
    let mut buf = [0u8; 64 * 1024];
    let n = r.read(&mut buf)?;
    pending.extend_from_slice(&buf[..n]);
    Ok(n)
}

/// `show stat` output (HAProxy's CSV): the column names and the rows, split on commas.
pub fn stat_table(csv: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .expect("a header line")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    (header, lines.map(|l| l.split(',').collect()).collect())
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

pub fn eof(what: &str, pending: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("EOF {what}; pending {:?}", String::from_utf8_lossy(pending)),
    )
}

/// The next head (start line to blank line), or `None` at a clean EOF.
pub fn read_head(w: &mut impl Wire) -> io::Result<Option<String>> {
    loop {
        if let Some(i) = find(w.pending(), b"\r\n\r\n") {
            let head: Vec<u8> = w.pending().drain(..i + 4).collect();
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        if w.fill()? == 0 {
            if w.pending().is_empty() {
                return Ok(None);
            }
            return Err(eof("inside a head", w.pending()));
        }
    }
}

pub fn take(w: &mut impl Wire, n: usize) -> io::Result<Vec<u8>> {
    while w.pending().len() < n {
        if w.fill()? == 0 {
            return Err(eof(&format!("with {n} bytes expected"), w.pending()));
        }
    }
    Ok(w.pending().drain(..n).collect())
}

/// One line, CRLF included.
pub fn take_line(w: &mut impl Wire) -> io::Result<Vec<u8>> {
    loop {
        if let Some(i) = find(w.pending(), b"\r\n") {
            return Ok(w.pending().drain(..i + 2).collect());
        }
        if w.fill()? == 0 {
            return Err(eof("inside a line", w.pending()));
        }
    }
}

pub fn take_to_eof(w: &mut impl Wire) -> io::Result<Vec<u8>> {
    while w.fill()? > 0 {}
    Ok(std::mem::take(w.pending()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads a body: (bytes as on the wire, payload).
pub fn read_body(w: &mut impl Wire, framing: Framing) -> io::Result<(Vec<u8>, Vec<u8>)> {
    match framing {
        Framing::None => Ok((Vec::new(), Vec::new())),
        Framing::Length(n) => {
            let b = take(w, n)?;
            Ok((b.clone(), b))
        }
        Framing::UntilClose => {
            let b = take_to_eof(w)?;
            Ok((b.clone(), b))
        }
        Framing::Chunked => {
            let (mut raw, mut payload) = (Vec::new(), Vec::new());
            loop {
                let line = take_line(w)?;
                raw.extend_from_slice(&line);
                let digits: String = line
                    .iter()
                    .take_while(|b| b.is_ascii_hexdigit())
                    .map(|&b| b as char)
                    .collect();
                let size = usize::from_str_radix(&digits, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk line {:?}", String::from_utf8_lossy(&line)),
                    )
                })?;
                if size == 0 {
                    loop {
                        let t = take_line(w)?;
                        raw.extend_from_slice(&t);
                        if t == b"\r\n" {
                            return Ok((raw, payload));
                        }
                    }
                }
                let data = take(w, size + 2)?;
                assert_eq!(&data[size..], b"\r\n", "chunk not ended by CRLF");
                payload.extend_from_slice(&data[..size]);
                raw.extend_from_slice(&data);
            }
        }
    }
}

/// One message as it crossed the wire.
#[derive(Debug)]
pub struct Msg {
    /// Start line, fields and the blank line, as received.
    pub head: String,
    /// Body bytes as received (chunk framing included).
    pub body: Vec<u8>,
    /// The body decoded.
    pub payload: Vec<u8>,
}

impl Msg {
    pub fn start_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or("")
    }

    pub fn status(&self) -> u16 {
        self.start_line()
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {:?}", self.head))
    }

    pub fn fields(&self) -> Vec<(&str, &str)> {
        self.head
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                (n, v.trim())
            })
            .collect()
    }

    /// The first field called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.fields()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn count(&self, name: &str) -> usize {
        self.fields()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn raw(&self) -> Vec<u8> {
        [self.head.as_bytes(), &self.body].concat()
    }

    pub fn payload_str(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The next request (head and body as its framing says), or `None` at a clean EOF.
pub fn read_request(w: &mut impl Wire) -> io::Result<Option<Msg>> {
    let Some(head) = read_head(w)? else {
        return Ok(None);
    };
    let mut m = Msg {
        head,
        body: Vec::new(),
        payload: Vec::new(),
    };
    let framing = if m
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked
    } else if let Some(n) = m.header("Content-Length") {
        Framing::Length(n.parse().expect("numeric Content-Length"))
    } else {
        Framing::None
    };
    (m.body, m.payload) = read_body(w, framing)?;
    Ok(Some(m))
}

/// The next response; `head_request`: it answers a HEAD (no body whatever it says).
pub fn read_response(w: &mut impl Wire, head_request: bool) -> io::Result<Msg> {
    let Some(head) = read_head(w)? else {
        return Err(eof("before a response", &[]));
    };
    let mut m = Msg {
        head,
        body: Vec::new(),
        payload: Vec::new(),
    };
    let status = m.status();
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else if m
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked
    } else if let Some(n) = m.header("Content-Length") {
        Framing::Length(n.parse().expect("numeric Content-Length"))
    } else {
        Framing::UntilClose
    };
    (m.body, m.payload) = read_body(w, framing)?;
    Ok(m)
}

/// Every request in `bytes` (what an origin connection received).
pub fn requests_in(bytes: &[u8]) -> Vec<Msg> {
    let mut w = Bytes(bytes.to_vec());
    let mut out = Vec::new();
    while let Some(m) = read_request(&mut w).expect("well-framed requests") {
        out.push(m);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Clients, origins, proxies.

/// A raw client connection.
pub struct Client {
    pub stream: std::net::TcpStream,
    pub pending: Vec<u8>,
}

impl Wire for Client {
    fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }
    fn fill(&mut self) -> io::Result<usize> {
        read_into(&mut self.stream, &mut self.pending)
    }
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            stream: connect(addr),
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("send");
    }

    pub fn response(&mut self) -> Msg {
        read_response(self, false).unwrap_or_else(|e| panic!("no response: {e}"))
    }

    pub fn head_response(&mut self) -> Msg {
        read_response(self, true).unwrap_or_else(|e| panic!("no response: {e}"))
    }

    pub fn exchange(&mut self, request: impl AsRef<[u8]>) -> Msg {
        self.send(request);
        self.response()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        take(self, n).unwrap_or_else(|e| panic!("{n} bytes: {e}"))
    }

    /// Asserts that nothing more arrives and the proxy closed with FIN; then closes too
    /// (so that a lingering close on the proxy's side ends at once).
    pub fn assert_eof(mut self) {
        assert!(
            self.pending.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&self.pending)
        );
        match self.fill() {
            Ok(0) => {}
            Ok(_) => panic!(
                "expected EOF, got {:?}",
                String::from_utf8_lossy(&self.pending)
            ),
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A recording origin that answers each request with `answer(request, connection index)`,
/// and closes after a response that says `Connection: close`.
pub fn http_origin(answer: impl Fn(&Msg, usize) -> Vec<u8> + Send + Sync + 'static) -> Recorder {
    recording_server(move |c| {
        while let Ok(Some(req)) = read_request(c) {
            let resp = answer(&req, c.index);
            if c.write_all(&resp).is_err() || contains(&resp, b"Connection: close") {
                return;
            }
        }
    })
}

/// An origin answering every request with `200` and the request's path as body.
pub fn path_origin() -> Recorder {
    http_origin(|req, _| ok(req.start_line().split(' ').nth(1).unwrap_or("")))
}

/// The built-in origin, stopped when dropped.
pub struct BuiltIn(pub Option<Origin>);

impl BuiltIn {
    pub fn start() -> BuiltIn {
        let o = origin::start(&OriginOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            body_bytes: None,
            shards: 1,
        })
        .expect("origin starts");
        BuiltIn(Some(o))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.as_ref().expect("running").addr()
    }

    pub fn accepted(&self) -> u64 {
        self.0.as_ref().expect("running").accepted()
    }
}

impl Drop for BuiltIn {
    fn drop(&mut self) {
        if let Some(o) = self.0.take() {
            o.stop();
            o.wait();
        }
    }
}

/// What the built-in origin sends for `GET /bytes/n`: 64 KiB blocks of a-z.
pub fn origin_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + ((i % 65536) % 26) as u8).collect()
}

pub const GLOBAL: &str = "[global]\nshards = 1\npin = false\ngrace = \"2s\"\n";

pub fn servers_toml(servers: &[SocketAddr]) -> String {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| format!("\n[[backend.server]]\nname = \"s{i}\"\naddress = \"{s}\"\n"))
        .collect()
}

/// A one-frontend, one-backend http proxy over `servers`, with extra frontend and
/// `[defaults]` lines, on one shard.
pub fn http_proxy(servers: &[SocketAddr], frontend: &str, defaults: &str) -> (Running, SocketAddr) {
    http_proxy_on(1, servers, frontend, defaults)
}

pub fn http_proxy_on(
    shards: usize,
    servers: &[SocketAddr],
    frontend: &str,
    defaults: &str,
) -> (Running, SocketAddr) {
    let global = GLOBAL.replace("shards = 1", &format!("shards = {shards}"));
    let toml = format!(
        "{global}\n[defaults]\n{defaults}\n\n\
         [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"b\"\n{frontend}\n\n\
         [[backend]]\nname = \"b\"\nmode = \"http\"\n{}",
        servers_toml(servers)
    );
    let running = proxy(&toml);
    let addr = running.frontend_addrs(0)[0];
    (running, addr)
}

/// An http proxy on `shards` shards: `top` (sections such as `[admin]`), frontend "f" on
/// an ephemeral port, and backend "b" with its `backend` lines (sub-tables allowed) then
/// the `servers` sections (see [`servers_toml`]).
pub fn http_proxy_with(
    shards: usize,
    top: &str,
    backend: &str,
    servers: &str,
) -> (Running, SocketAddr) {
    let global = GLOBAL.replace("shards = 1", &format!("shards = {shards}"));
    let toml = format!(
        "{global}\n{top}\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"b\"\n\n\
         [[backend]]\nname = \"b\"\nmode = \"http\"\n{backend}\n{servers}"
    );
    let running = proxy(&toml);
    let addr = running.frontend_addrs(0)[0];
    (running, addr)
}

/// Checks one of the proxy's own error responses.
pub fn assert_proxy_error(r: &Msg, status: u16) {
    assert_eq!(r.status(), status, "{:?}", r.head);
    assert!(
        r.start_line().starts_with(&format!("HTTP/1.1 {status} ")),
        "{:?}",
        r.head
    );
    assert_eq!(r.header("Connection"), Some("close"), "{:?}", r.head);
    assert_eq!(r.count("Content-Length"), 1, "{:?}", r.head);
    assert_eq!(
        r.header("Content-Length"),
        Some(r.body.len().to_string().as_str())
    );
    assert!(
        r.body.starts_with(status.to_string().as_bytes()) && r.body.len() < 200,
        "{:?}",
        r.payload_str()
    );
}

/// Waits until every connection the origin accepted is over (so what it received is final).
pub fn settle(origin: &Recorder) {
    assert!(
        eventually(IO_TIMEOUT, || origin.finished() == origin.accepted()),
        "origin connections still open: {} of {}",
        origin.accepted() - origin.finished(),
        origin.accepted()
    );
}
