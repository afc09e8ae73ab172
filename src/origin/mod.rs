//! The built-in origin: a small, fast HTTP/1.1 server for demos, tests and benchmarks.
//!
//! Owns its own executors (unpinned: it shares the machine with the proxy and the load
//! generator) and listeners. Every request gets the fixed body (`--body-bytes N`, default
//! `Hello, world!`), except `GET /bytes/N`, which gets N bytes. Keep-alive follows HTTP:
//! 1.1 persists unless `Connection: close`; 1.0 only with `Connection: keep-alive`, which
//! is then echoed. Pipelined requests are answered in order with one write per batch.
//! Request bodies with `Content-Length` are read and discarded; chunked request bodies are
//! not supported (501, then close). It is not a general web server and never will be.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

use crate::runtime::sockets::bind_reuseport;
use crate::worker::StopFlag;

/// The default body: the same 13 bytes the benchmark anchors serve.
pub const DEFAULT_BODY: &[u8] = b"Hello, world!";
/// Largest `GET /bytes/N` served (1 GiB).
pub const MAX_BYTES_RESPONSE: u64 = 1 << 30;
/// Read buffer per connection; also the largest request head accepted.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// How long a closing connection waits for the client's FIN before closing anyway.
const CLOSE_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct OriginOptions {
    pub listen: SocketAddr,
    /// Size of the fixed body; `None` is [`DEFAULT_BODY`].
    pub body_bytes: Option<usize>,
    pub shards: usize,
}

/// A running origin.
pub struct Origin {
    addr: SocketAddr,
    stop: Arc<StopFlag>,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
    accepted: Arc<AtomicU64>,
}

impl Origin {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (all shards).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.request();
    }

    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts an origin; returns once it is listening.
pub fn start(options: &OriginOptions) -> io::Result<Origin> {
    let shards = options.shards.max(1);
    let listeners = bind_reuseport(options.listen, shards)?;
    let addr = listeners[0].local_addr()?;
    let body: Arc<[u8]> = match options.body_bytes {
        None => DEFAULT_BODY.into(),
        Some(n) => pattern(n).into(),
    };
    let stop = Arc::new(StopFlag::default());
    let accepted = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let (stop, accepted, body) = (Arc::clone(&stop), Arc::clone(&accepted), Arc::clone(&body));
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("origin-{i}"))
            .io_memory(crate::runtime::IO_MEMORY_BYTES)
            .spawn(move || async move {
                use std::os::fd::{FromRawFd, IntoRawFd};
                // SAFETY: a bound, listening socket we own, handed to glommio whole.
                let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
                let responses = Rc::new(Responses::new(&body));
                let task = glommio::spawn_local(async move {
                    loop {
                        let Ok(stream) = listener.accept().await else {
                            glommio::timer::sleep(crate::worker::ACCEPT_ERROR_BACKOFF).await;
                            continue;
                        };
                        accepted.fetch_add(1, Ordering::Relaxed);
                        let responses = Rc::clone(&responses);
                        glommio::spawn_local(async move {
                            let _ = serve(stream, &responses).await;
                        })
                        .detach();
                    }
                });
                while !stop.is_requested() {
                    glommio::timer::sleep(crate::worker::STOP_POLL_INTERVAL).await;
                }
                task.cancel().await;
            })
            .map_err(|e| io::Error::other(e.to_string()))?;
        threads.push(ex);
    }
    Ok(Origin {
        addr,
        stop,
        threads,
        accepted,
    })
}

/// `n` bytes of printable text (so a curl of it is readable).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Pre-built fixed responses: built once per shard, copied into the output per request.
struct Responses {
    body: Box<[u8]>,
    /// Head for HTTP/1.1 keep-alive (no Connection header).
    head_11: Vec<u8>,
    head_10_keep_alive: Vec<u8>,
    head_close: Vec<u8>,
    chunk: Box<[u8]>,
}

impl Responses {
    fn new(body: &[u8]) -> Self {
        let head = |conn: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nServer: ringproxy-origin\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{conn}\r\n",
                body.len()
            )
            .into_bytes()
        };
        Responses {
            body: body.into(),
            head_11: head(""),
            head_10_keep_alive: head("Connection: keep-alive\r\n"),
            head_close: head("Connection: close\r\n"),
            chunk: pattern(64 * 1024).into(),
        }
    }
}

/// How a request wants its connection treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Persist {
    KeepAlive11,
    KeepAlive10,
    Close,
}

async fn serve(mut stream: TcpStream, r: &Responses) -> io::Result<()> {
    // TCP_NODELAY comes from the listener (`bind_reuseport`).
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut filled = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    // Bytes of a request body still to be read and discarded.
    let mut skip: u64 = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut pos = 0usize;
        let mut close = false;
        loop {
            if skip > 0 {
                let take = skip.min((filled - pos) as u64) as usize;
                pos += take;
                skip -= take as u64;
                if skip > 0 {
                    break;
                }
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let used = match req.parse(&buf[pos..filled]) {
                Ok(httparse::Status::Complete(used)) => used,
                Ok(httparse::Status::Partial) => {
                    if pos == 0 && filled == buf.len() {
                        out.extend_from_slice(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        close = true;
                    }
                    break;
                }
                Err(_) => {
                    out.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    close = true;
                    break;
                }
            };
            pos += used;
            let mut persist = if req.version == Some(1) {
                Persist::KeepAlive11
            } else {
                Persist::Close
            };
            let mut content_length = 0u64;
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("connection") {
                    let v = h.value;
                    if v.eq_ignore_ascii_case(b"close") {
                        persist = Persist::Close;
                    } else if v.eq_ignore_ascii_case(b"keep-alive") && req.version == Some(0) {
                        persist = Persist::KeepAlive10;
                    }
                } else if h.name.eq_ignore_ascii_case("content-length") {
                    content_length = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    out.extend_from_slice(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    close = true;
                }
            }
            if close {
                break;
            }
            skip = content_length;
            let head_only = req.method == Some("HEAD");
            let path = req.path.unwrap_or("/");
            if let Some(n) = path
                .strip_prefix("/bytes/")
                .and_then(|n| n.parse::<u64>().ok())
            {
                let n = n.min(MAX_BYTES_RESPONSE);
                let conn = match persist {
                    Persist::KeepAlive11 => "",
                    Persist::KeepAlive10 => "Connection: keep-alive\r\n",
                    Persist::Close => "Connection: close\r\n",
                };
                out.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\nServer: ringproxy-origin\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n{conn}\r\n").as_bytes(),
                );
                if !head_only {
                    stream.write_all(&out).await?;
                    out.clear();
                    let mut left = n;
                    while left > 0 {
                        let take = left.min(r.chunk.len() as u64) as usize;
                        stream.write_all(&r.chunk[..take]).await?;
                        left -= take as u64;
                    }
                }
            } else {
                out.extend_from_slice(match persist {
                    Persist::KeepAlive11 => &r.head_11,
                    Persist::KeepAlive10 => &r.head_10_keep_alive,
                    Persist::Close => &r.head_close,
                });
                if !head_only {
                    out.extend_from_slice(&r.body);
                }
            }
            if persist == Persist::Close {
                close = true;
                break;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            stream.shutdown(std::net::Shutdown::Write).await?;
            // Drain what the client still sends so that closing does not reset.
            let drain = async {
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await? > 0 {}
                Ok(())
            };
            let _ = glommio::timer::timeout(CLOSE_DRAIN_TIMEOUT, drain).await;
            return Ok(());
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
    }
}
