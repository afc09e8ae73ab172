//! The access log: one record per http request (per session in tcp mode), formatted and
//! written by a logger thread.
//!
//! A shard fills a [`LogRecord`] (plain data, no allocation) when an exchange ends and
//! pushes it into its own [`super::ring`]; it never formats, never writes and never
//! waits: a full ring drops the record and counts it. The logger thread ([`start`],
//! [`logger`]) drains every shard's ring, formats ([`format_haproxy`], [`format_json`]:
//! `log.format = "haproxy" | "json"`) and writes to `log.access` (`"stdout"` or a file).
//!
//! This module owns the record (the contract between the shards and the logger thread)
//! and the helpers a shard uses to fill it, which never allocate, lock or make a system
//! call; formatting ([`mod@format`]) and the thread ([`logger`]) live in the submodules.

pub mod format;
pub mod logger;

pub use format::{format_haproxy, format_json};
pub use logger::start;

use std::net::SocketAddr;

/// Longest request line kept in a record (longer ones are cut).
pub const REQUEST_LINE_MAX: usize = 200;

/// One finished request (http) or session (tcp), as the shard saw it.
#[derive(Clone, Copy)]
pub struct LogRecord {
    /// When it began (the accept for a connection's first request and in tcp mode, else
    /// the first byte of the request), Unix time in microseconds.
    pub start_unix_us: u64,
    /// The client's address (`None` if the kernel would not tell).
    pub client: Option<SocketAddr>,
    /// Indices into `config.frontends`, `config.backends`, `backend.servers`.
    pub frontend: u16,
    pub backend: Option<u16>,
    pub server: Option<u16>,
    /// http mode (request line, status and Tq/Tr present) or tcp mode.
    pub http: bool,
    /// HAProxy's timers, in microseconds; `None` when the phase was not reached (logged
    /// as -1): Tq request head received, Tw waiting in the queue, Tc connecting, Tr
    /// server response head after the request was sent, Tt total.
    pub tq: Option<u32>,
    pub tw: Option<u32>,
    pub tc: Option<u32>,
    pub tr: Option<u32>,
    pub tt: u64,
    /// Status sent to the client (0 in tcp mode or when none was sent).
    pub status: u16,
    /// Bytes read from the client, and sent to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// HAProxy's two-letter termination state: who ended it (`-` normally, `C` client,
    /// `S` server, `P` proxy, `R` resource, `D` server marked down, `K` killed, `c`/`s`
    /// client/server timeout) and in which phase (`R` request, `Q` queue, `C` connect,
    /// `H` response head, `D` data, `L` last data, `-` normally).
    pub term: [u8; 2],
    /// Attempts beyond the first.
    pub retries: u8,
    /// Sessions open when it ended: on the shard, its frontend, its backend, its server.
    pub conns: [u32; 4],
    /// `METHOD target HTTP/x.y`, cut at [`REQUEST_LINE_MAX`] bytes.
    pub request_line: [u8; REQUEST_LINE_MAX],
    pub request_line_len: u8,
}

impl LogRecord {
    /// An empty record of frontend `frontend` (a tcp session until `http` is set): every
    /// timer absent, counts zero, termination `--`, no request line. A `const fn` over
    /// plain data, so a shard can start one per exchange at no cost and fill what it
    /// learns.
    pub const fn new(frontend: u16) -> LogRecord {
        LogRecord {
            start_unix_us: 0,
            client: None,
            frontend,
            backend: None,
            server: None,
            http: false,
            tq: None,
            tw: None,
            tc: None,
            tr: None,
            tt: 0,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            term: *b"--",
            retries: 0,
            conns: [0; 4],
            request_line: [0; REQUEST_LINE_MAX],
            request_line_len: 0,
        }
    }

    /// Stores `METHOD target VERSION` (single spaces), cut at [`REQUEST_LINE_MAX`] bytes.
    /// The bytes are kept as they came (escaping is the formatter's job), so a shard can
    /// pass slices of its request head without looking at them.
    pub fn set_request_line(&mut self, method: &[u8], target: &[u8], version: &[u8]) {
        let mut len = 0;
        for (i, part) in [method, target, version].into_iter().enumerate() {
            if i > 0 {
                len = self.append_request_line(len, b" ");
            }
            len = self.append_request_line(len, part);
        }
        // REQUEST_LINE_MAX fits in a u8 (checked at compile time below).
        self.request_line_len = len as u8;
    }

    /// Copies what fits of `bytes` after the first `len` bytes; returns the new length.
    fn append_request_line(&mut self, len: usize, bytes: &[u8]) -> usize {
        let n = bytes.len().min(REQUEST_LINE_MAX - len);
        self.request_line[len..len + n].copy_from_slice(&bytes[..n]);
        len + n
    }

    /// Fills in what `txn` knew when `ender` ended it after `tt` µs (the client, the
    /// request line and the sessions open are the caller's).
    pub fn fill(&mut self, txn: &super::Txn, tt: u64, ender: super::Ender, clock: &super::Clock) {
        let clamp = |us: Option<u64>| us.map(|u| u.min(u64::from(u32::MAX)) as u32);
        self.start_unix_us = clock.unix_us(txn.start);
        self.backend = txn.backend.map(|b| b as u16);
        self.server = txn.server.map(|s| s as u16);
        self.tq = clamp(txn.tq);
        self.tw = clamp(txn.tw);
        self.tc = clamp(txn.tc);
        self.tr = clamp(txn.tr);
        self.tt = tt;
        self.status = txn.status;
        self.bytes_in = txn.bytes_in;
        self.bytes_out = txn.bytes_out;
        self.term = super::term(ender, txn.phase);
        self.retries = txn.retries;
    }

    /// The request line as stored (empty when none was set: tcp mode, or a request whose
    /// head could not be parsed).
    pub fn request_line(&self) -> &[u8] {
        // `min`: the field is public; a bad length must not make the logger panic.
        &self.request_line[..usize::from(self.request_line_len).min(REQUEST_LINE_MAX)]
    }
}

impl Default for LogRecord {
    /// [`LogRecord::new`] for frontend 0.
    fn default() -> LogRecord {
        LogRecord::new(0)
    }
}

const _: () = assert!(REQUEST_LINE_MAX <= u8::MAX as usize);

/// The configuration the submodules' tests format against: http frontend `web` → backend
/// `app` (server `s1`), tcp frontend `db` → backend `dbs` (server `pg1`).
#[cfg(test)]
fn test_config() -> crate::config::Config {
    const TEXT: &str = r#"
        [[frontend]]
        name = "web"
        bind = ["127.0.0.1:0"]
        mode = "http"
        backend = "app"

        [[frontend]]
        name = "db"
        bind = ["127.0.0.1:0"]
        mode = "tcp"
        backend = "dbs"

        [[backend]]
        name = "app"
        mode = "http"
        [[backend.server]]
        name = "s1"
        address = "127.0.0.1:9001"

        [[backend]]
        name = "dbs"
        mode = "tcp"
        [[backend.server]]
        name = "pg1"
        address = "127.0.0.1:5432"
    "#;
    crate::config::Config::parse(TEXT, std::path::Path::new("t.toml")).expect("test config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_record_is_empty() {
        let r = LogRecord::new(3);
        assert_eq!(r.frontend, 3);
        assert_eq!(r.term, *b"--");
        assert!(r.request_line().is_empty());
        assert!(r.tq.is_none() && r.tw.is_none() && r.tc.is_none() && r.tr.is_none());
        assert_eq!(LogRecord::default().frontend, 0);
    }

    #[test]
    fn request_line_is_joined_with_spaces() {
        let mut r = LogRecord::new(0);
        r.set_request_line(b"GET", b"/index.html?a=1", b"HTTP/1.1");
        assert_eq!(r.request_line(), b"GET /index.html?a=1 HTTP/1.1");
        r.set_request_line(b"PUT", b"/", b"HTTP/1.0");
        assert_eq!(
            r.request_line(),
            b"PUT / HTTP/1.0",
            "a second call replaces the first"
        );
    }

    #[test]
    fn request_line_is_cut_at_the_limit() {
        let mut r = LogRecord::new(0);
        let target = vec![b'a'; 500];
        r.set_request_line(b"GET", &target, b"HTTP/1.1");
        assert_eq!(r.request_line().len(), REQUEST_LINE_MAX);
        assert!(r.request_line().starts_with(b"GET aaa"));
        assert!(r.request_line()[4..].iter().all(|&b| b == b'a'));

        // Cut exactly after the target: the space before the version is the last byte.
        let target = vec![b'/'; REQUEST_LINE_MAX - 5];
        r.set_request_line(b"GET", &target, b"HTTP/1.1");
        assert_eq!(r.request_line().len(), REQUEST_LINE_MAX);
        assert_eq!(r.request_line().last(), Some(&b' '));
    }
}
