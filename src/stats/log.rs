//! The access log: one record per http request (per session in tcp mode), formatted and
//! written by a logger thread.
//!
//! A shard fills a [`LogRecord`] (plain data, no allocation) when an exchange ends and
//! pushes it into its own [`super::ring`]; it never formats, never writes and never
//! waits: a full ring drops the record and counts it. The logger thread drains every
//! shard's ring, formats (`log.format = "haproxy" | "json"`) and writes to
//! `log.access` (`"stdout"` or a file).

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
    /// An empty record of a request or session on `frontend`.
    pub fn new(frontend: usize) -> LogRecord {
        LogRecord {
            start_unix_us: 0,
            client: None,
            frontend: frontend as u16,
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
}

/// Starts the logger thread draining `rings` into `config.log.access` until `stop`.
pub fn start(
    config: std::sync::Arc<crate::config::Config>,
    rings: Vec<super::ring::Consumer<LogRecord>>,
    stop: std::sync::Arc<crate::worker::StopFlag>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let _ = (config, rings, stop);
    Err(std::io::Error::other("the access log is not built yet"))
}
