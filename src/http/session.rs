//! One client connection in http mode, request after request.
//!
//! Each exchange: read and check the request head; route it; take a server connection
//! (`Session::server_for`: an idle one from the shard's pool when `http_reuse` allows,
//! else a new one); send the rewritten head and the body; read the response head
//! (forwarding interim 1xx); write the rewritten response head and body to the client;
//! then decide, independently for each side, whether its connection stays open. A kept
//! server connection goes back to the shard's pool (or, with `http_reuse = "never"`,
//! stays with this client connection), whatever the client does next.
//!
//! Client side: HTTP/1.1 is persistent unless `Connection: close`; HTTP/1.0 only with
//! `Connection: keep-alive`, which the response then repeats. `Connection: close` is
//! written to an HTTP/1.1 client only when the proxy closes after the response (the
//! client asked, `keep_alive = "close"`, `max_keep_alive_requests`, the shard is
//! stopping, or the response cannot be framed for it). Server side: kept while the
//! server allows it, its response was framed (length or chunked) without ambiguity, the
//! server took the whole request body, the mode is `keep-alive` and `pool_max_reuse` is
//! not reached.
//!
//! Choosing the server: the one the client's persistence cookie names when it serves
//! (`[backend.cookie]`), else the balancer (fed the hash key of `source`, `uri`,
//! `hdr(name)`), waiting in the backend's queue while every usable server is at its
//! `maxconn`. An exchange in flight ends when its server's sessions are shut down
//! (`on_marked_down = "shutdown-sessions"`, watched by `ServerWatch`).
//!
//! Retries: a request is sent again, on a new connection, when it can be (idempotent and
//! held whole in the client buffer, or none of its bytes reached the server) and either a
//! reused connection failed before any response byte (the server closed it as it was
//! taken: once per request, free) or a `retry_on` event occurred (within `retries`). A
//! request whose body was streamed is never sent twice.
//!
//! Errors the proxy answers itself close the client connection afterwards, with a
//! lingering close so the response is not lost to an RST.
//!
//! Memory: a kept-alive client connection idle for [`IDLE_BUFFER_HOLD`] gives its input
//! buffer and output vector back to the shard and waits for its next request with a
//! readiness poll that holds no buffer (`Session::park`).
//!
//! TLS: a TLS frontend's client is handshaken first (`l4::accept_tls`); a server with
//! `tls` gets a handshake on each new connection (`l4::secure`), made for the request's
//! host with `sni_from_host`, and its pooled connections serve that name only. The
//! streams are [`Stream`]s: the exchange is the same, and only plain sockets splice.

use std::cell::Cell;
use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;

use super::body::{self, BodyError, Coding, Conn};
use super::cookie;
use super::head::{self, Body, Limits, Method, Parsed, Version};
use super::pool::{self, Pooled};
use super::rewrite::{self, Connection, Framing, RequestExtras, ResponseCookie};
use crate::config::{Balance, CookieMode, Frontend, HttpReuse, KeepAlive, KeyKind, Observe};
use crate::stats::log::LogRecord;
use crate::stats::{micros, Ender, Fe, Sv, Txn};
use crate::tls::Stream;
use crate::upstream::balance::{hash_ip, hash_key};
use crate::upstream::pool::{reuse_for, PoolCounters};
use crate::upstream::{ActiveSlot, TriedSet};
use crate::worker::abort::AbortHandle;
use crate::worker::{Admitted, Shard};

/// Input buffer of a server connection; also the largest response head accepted.
pub const SERVER_BUFFER: usize = 32 * 1024;

/// Smallest input buffer of a client connection (bodies are read through it too).
pub const CLIENT_BUFFER_MIN: usize = 16 * 1024;

/// How long a request with `Expect: 100-continue` waits for the server's interim answer
/// before its body is sent anyway (as curl does).
pub const EXPECT_WAIT: Duration = Duration::from_secs(1);

/// Lingering close: how long, and how many bytes, the proxy reads and discards from a
/// client it is closing with input pending, so that its last response is not destroyed
/// by an RST.
pub const LINGER_TIME: Duration = Duration::from_secs(1);
pub const LINGER_BYTES: usize = 256 * 1024;

/// Initial capacity of a session's output vector (heads and coalesced small bodies).
const OUT_CAPACITY: usize = 4096;

/// A kept-alive client connection idle this long gives its buffers back to the shard
/// until its next request shows up (most come sooner, and keep them).
pub const IDLE_BUFFER_HOLD: Duration = Duration::from_secs(1);

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Nothing pending: close.
    Close,
    /// Input may be pending (an error was answered, a body was not read): linger.
    Linger,
    /// A tunnel after `101 Switching Protocols` ran and ended.
    Tunnel,
}

/// The server connection of the current exchange (or, with `http_reuse = "never"`, the
/// one kept for this client between exchanges).
struct ServerConn {
    conn: Conn,
    backend: usize,
    /// Index of the server in its backend.
    server: usize,
    /// Requests it served before the current one (0: a new connection).
    uses: u32,
    /// The exchange's place on the server; `None` between exchanges.
    slot: Option<ActiveSlot>,
    /// The SNI it was made for (`sni_from_host` only).
    sni: Option<Box<str>>,
}

/// Why an attempt to get a response failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Writing the request failed; `nothing_sent`: not one byte was accepted.
    Send {
        nothing_sent: bool,
    },
    /// The server closed or failed before sending any byte.
    Empty,
    Timeout,
    Invalid,
    /// A final status listed in `retry_on`.
    Status,
    /// The client went away while an interim (1xx) response was passed on to it.
    ClientGone,
}

struct Session {
    shard: Rc<Shard>,
    frontend: usize,
    client: Conn,
    /// The client's address, asked of the kernel once, when first needed
    /// (`X-Forwarded-For`, `balance = "source"`).
    peer: Option<IpAddr>,
    out: Vec<u8>,
    req: head::Request,
    resp: head::Response,
    server: Option<ServerConn>,
    served: u32,
    /// Backend and server of the previous exchange (`prefer_last_server`).
    last_server: Option<(usize, usize)>,
    /// Fired when the shard begins to stop: idle connections close at once.
    stopping: AbortHandle,
    /// The (backend, server) of the current exchange, watched by [`ServerWatch`].
    using: Rc<Cell<Option<(usize, usize)>>>,
    /// When the connection was accepted (the start of its first request).
    accepted: Instant,
    /// The request in progress, as the statistics and the access log see it.
    txn: Txn,
    /// A byte of a request arrived and the request is not recorded yet.
    txn_open: bool,
    /// With the access log on: the record of the request in progress.
    log: Option<Box<LogRecord>>,
    /// TLS clients: bounds the wait for a request head (see `read_request`).
    tls_timer: Option<glommio::timer::Timer>,
    /// The request's host, lower case and without port, for servers whose TLS name
    /// comes from it (`sni_from_host`; read through [`sni_host`]); empty when there is
    /// none. Here rather than in the exchange's future, which would carry its buffer in
    /// every session; reused, so it allocates only when it grows.
    sni_host: String,
}

/// Ends a session when the server of its current exchange has its sessions shut down
/// (`on_marked_down = "shutdown-sessions"`). It follows the session's `using` cell: it is
/// polled after the session at every wake-up of the task, so its registration always
/// matches the server in use by the time anything else can run.
struct ServerWatch<'a> {
    shard: &'a Shard,
    /// (backend, server, kill slot) registered now.
    registered: Option<(usize, usize, usize)>,
}

impl ServerWatch<'_> {
    fn poll_killed(&mut self, using: Option<(usize, usize)>, cx: &std::task::Context<'_>) -> bool {
        if self.registered.map(|(b, s, _)| (b, s)) != using {
            self.unregister();
            self.registered = using.map(|(b, s)| {
                let slot = self.shard.backends[b].servers[s].kill.register();
                (b, s, slot)
            });
        }
        match self.registered {
            Some((b, s, slot)) => self.shard.backends[b].servers[s].kill.poll_killed(slot, cx),
            None => false,
        }
    }

    fn unregister(&mut self) {
        if let Some((b, s, slot)) = self.registered.take() {
            self.shard.backends[b].servers[s].kill.unregister(slot);
        }
    }
}

impl Drop for ServerWatch<'_> {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// How the servers of one request are chosen, across its attempts.
struct Pick {
    /// Servers that failed this request (retries go elsewhere).
    tried: TriedSet,
    /// `retries` left.
    budget: u32,
    /// The hash a hashing algorithm balances on.
    key: Option<u64>,
    /// The server the client's persistence cookie names.
    pinned: Option<usize>,
}

/// The SNI a connection to server `index` of `be` is made for when its `tls` takes it
/// from the request (`sni_from_host`): the request's `host`. `None` otherwise (every
/// connection to that server is alike).
fn sni_for<'h>(
    be: &crate::config::Backend,
    index: usize,
    host: Option<&'h str>,
) -> Option<&'h str> {
    match be.servers[index].tls.as_deref() {
        Some(t) if t.sni == crate::config::Sni::FromHost => host,
        _ => None,
    }
}

/// [`Session::sni_host`] as [`sni_for`] takes it (a function of the field, not a method,
/// so that it borrows the field alone).
fn sni_host(host: &str) -> Option<&str> {
    (!host.is_empty()).then_some(host)
}

/// A status that counts as a server error for `observe = "layer7"` (HAProxy's rule: 5xx
/// but 501 and 505, which say the request was not understood).
fn server_error(status: u16) -> bool {
    (500..600).contains(&status) && status != 501 && status != 505
}

/// Serves one accepted http-mode client to the end.
///
/// An `async` block rather than an `async fn`: an `async fn` keeps a second copy of its
/// arguments in its future (its parameters are moved into locals, and the space of both
/// stays reserved: 168 bytes here), and the future is the task's memory for the
/// connection's whole life.
#[allow(clippy::manual_async_fn)]
pub fn serve(admitted: Admitted, stream: TcpStream) -> impl std::future::Future<Output = ()> {
    async move {
        let (shard, frontend) = (&admitted.shard, admitted.frontend);
        let fe = &shard.config.frontends[frontend];
        let _ = stream.set_write_timeout(Some(fe.timeout_client));
        // The client's address, asked of the kernel once, and only when X-Forwarded-For or
        // the access log needs it (`balance = "source"` asks later, if still unknown).
        let logging = shard.stats.logging();
        let client = (fe.http.forward_for.is_some() || logging)
            .then(|| stream.peer_addr().ok())
            .flatten();
        let Some(stream) = crate::l4::accept_tls(shard, frontend, stream).await else {
            return;
        };
        let peer = client.map(|a| a.ip());
        let capacity = fe.http.max_header_bytes.max(CLIENT_BUFFER_MIN);
        // A block: the session ends with it, so that its memory is not kept beside the
        // closing wait's (a future holds what may still be used across each await).
        let (end, stream) = {
            let abort = shard.abort.register();
            let using = Rc::new(Cell::new(None));
            let accepted = Instant::now();
            let log = logging.then(|| {
                let mut r = Box::new(LogRecord::new(frontend as u16));
                r.client = client;
                r.http = true;
                r
            });
            let mut s = Session {
                accepted,
                txn: Txn::new(accepted),
                txn_open: false,
                log,
                using: Rc::clone(&using),
                stopping: shard.close_idle.register(),
                client: Conn::new(stream, shard.http_buffers.take(capacity)),
                shard: Rc::clone(shard),
                frontend,
                peer,
                out: Vec::with_capacity(OUT_CAPACITY),
                req: head::Request::default(),
                resp: head::Response::default(),
                server: None,
                served: 0,
                last_server: None,
                tls_timer: None,
                sni_host: String::new(),
            };
            let mut watch = ServerWatch {
                shard,
                registered: None,
            };
            let stopped_by = Cell::new(None);
            let end = futures_lite::future::or(
                s.run(),
                futures_lite::future::poll_fn(|cx| {
                    if abort.poll_fired(cx) {
                        stopped_by.set(Some(Ender::Killed));
                        return std::task::Poll::Ready(End::Close);
                    }
                    if watch.poll_killed(using.get(), cx) {
                        stopped_by.set(Some(Ender::Down));
                        return std::task::Poll::Ready(End::Close);
                    }
                    std::task::Poll::Pending
                }),
            )
            .await;
            drop(watch);
            // A request still open ended without an answer: cut short by the client, or stopped.
            s.finish(stopped_by.get().unwrap_or(Ender::Client));
            // Still in an exchange (the shard's grace period ended it): the server may be
            // sending.
            let mid_exchange = s.server.as_ref().is_some_and(|c| c.slot.is_some());
            s.drop_server(mid_exchange);
            let (stream, buf) = s.client.into_parts();
            shard.http_buffers.give(buf);
            (end, stream)
        };
        match end {
            // The tunnel closed both sides itself.
            End::Tunnel => {}
            End::Close if !stream.is_tls() => pool::close_clean(stream),
            // TLS: the client answers close_notify with its own; it is read, not reset.
            End::Close => {
                pool::shut(stream, LINGER_TIME, LINGER_BYTES).await;
            }
            // FIN, then read and discard what the client still sends (bounded), so that it
            // reads the last response before the socket is closed.
            End::Linger => {
                pool::shut(stream, LINGER_TIME, LINGER_BYTES).await;
            }
        }
    }
}

impl Session {
    fn frontend(&self) -> &Frontend {
        &self.shard.config.frontends[self.frontend]
    }

    async fn run(&mut self) -> End {
        loop {
            if let Err(end) = self.read_request().await {
                return end;
            }
            self.shard.stats.frontends[self.frontend].add(Fe::Requests as usize, 1);
            self.served += 1;
            match self.exchange().await {
                Ok(true) => {}
                Ok(false) => return End::Close,
                Err(end) => return end,
            }
        }
    }

    /// Waits for a whole request head. `Err` ends the session (quietly when the client
    /// left or stayed idle, after an error response otherwise).
    async fn read_request(&mut self) -> Result<(), End> {
        let http = &self.shard.config.frontends[self.frontend].http;
        let limits = Limits {
            max_header_bytes: http.max_header_bytes,
            max_headers: http.max_headers,
            max_request_line: http.max_request_line,
        };
        let (request_timeout, idle_timeout) =
            (http.timeout_http_request, http.timeout_http_keep_alive);
        // A new connection's first head is due within timeout_http_request of the
        // accept; a kept-alive connection may idle, then its head is due within
        // timeout_http_request of its first byte.
        let mut deadline = (self.served == 0).then(|| Instant::now() + request_timeout);
        loop {
            if !self.client.data().is_empty() {
                if !self.txn_open {
                    // The first request of a connection starts at the accept (as HAProxy's
                    // Tq), a later one at its first byte.
                    let start = if self.served == 0 {
                        self.accepted
                    } else {
                        Instant::now()
                    };
                    self.txn = Txn::new(start);
                    self.txn_open = true;
                }
                match head::parse_request(self.client.data(), &limits, &mut self.req) {
                    Ok(Parsed::Complete) => {
                        self.txn.tq = Some(micros(self.txn.start, Instant::now()));
                        self.keep_request_line();
                        return Ok(());
                    }
                    Ok(Parsed::Partial) => {}
                    Err(refusal) => return Err(self.refuse(refusal.status, refusal.reason).await),
                }
                deadline.get_or_insert_with(|| Instant::now() + request_timeout);
            }
            let idle = self.client.data().is_empty();
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => idle_timeout,
            };
            if wait.is_zero() {
                return Err(self.timed_out(idle).await);
            }
            // Between requests, the buffers are held for IDLE_BUFFER_HOLD, then parked.
            let hold = idle && self.served > 0 && wait > IDLE_BUFFER_HOLD;
            let wait = if hold { IDLE_BUFFER_HOLD } else { wait };
            self.client.stream.set_read_timeout(Some(wait));
            let read = if self.client.stream.is_tls() {
                // A TLS read returns only with a whole record, and the socket's timeout
                // starts over at every byte: a client trickling a record could hold the
                // head for hours. The wait is bounded here instead.
                let timer = self
                    .tls_timer
                    .get_or_insert_with(|| glommio::timer::Timer::new(wait));
                timer.reset(wait);
                let stopping = &self.stopping;
                let client = &mut self.client;
                futures_lite::future::or(async { Some(client.fill().await) }, async {
                    futures_lite::future::or(
                        async {
                            timer.await;
                            Some(Err(io::ErrorKind::TimedOut.into()))
                        },
                        async {
                            match idle {
                                true => stopping.fired().await,
                                false => futures_lite::future::pending::<()>().await,
                            }
                            None
                        },
                    )
                    .await
                })
                .await
            } else if idle {
                // Idle between requests: a stopping shard closes the connection now.
                let stopping = &self.stopping;
                let client = &mut self.client;
                futures_lite::future::or(async { Some(client.fill().await) }, async {
                    stopping.fired().await;
                    None
                })
                .await
            } else {
                Some(self.client.fill().await)
            };
            match read {
                None => return Err(End::Close),
                Some(Ok(0)) if idle => return Err(End::Close),
                Some(Ok(0)) => return Err(self.refuse(400, "incomplete request head").await),
                Some(Ok(_)) => {}
                Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut && hold => {
                    if !self.park(idle_timeout - IDLE_BUFFER_HOLD).await {
                        return Err(End::Close);
                    }
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(self.timed_out(idle).await)
                }
                Some(Err(_)) => return Err(End::Close),
            }
        }
    }

    /// An idle kept-alive connection without its buffers: they go back to the shard, and
    /// the wait for the next request is a readiness poll (which takes nothing from the
    /// socket and holds no buffer), for at most `wait`. True when the socket became
    /// readable (the buffers are back; the next read may find the end of the stream);
    /// false when the client stayed idle, or the shard is stopping.
    async fn park(&mut self, wait: Duration) -> bool {
        let shard = &self.shard;
        shard.http_buffers.give(self.client.park());
        self.out = Vec::new();
        // The field lists of the last request and response go too (their next fill
        // reallocates, once per wake-up from a park).
        self.req.head.fields = Vec::new();
        self.resp.head.fields = Vec::new();
        let tcp = self.client.stream.tcp();
        let stopping = &self.stopping;
        // A readiness wait (vendored glommio): no buffer is held while idle. It ignores
        // the read timeout: the wait is bounded here. Readable may also mean the end of
        // the stream, which the next read sees.
        let came = futures_lite::future::or(
            async { tcp.readable().await.is_ok() },
            futures_lite::future::or(
                async {
                    glommio::timer::sleep(wait).await;
                    false
                },
                async {
                    stopping.fired().await;
                    false
                },
            ),
        )
        .await;
        let capacity = self.frontend().http.max_header_bytes.max(CLIENT_BUFFER_MIN);
        self.client.restore(self.shard.http_buffers.take(capacity));
        // One allocation, not a series of doublings on the next response.
        self.out.reserve(OUT_CAPACITY);
        came
    }

    async fn timed_out(&mut self, idle: bool) -> End {
        if idle {
            // Nothing of a request arrived: close without a word (as HAProxy does for
            // idle keep-alive connections and pre-connects).
            End::Close
        } else {
            self.refuse_by(
                Ender::ClientTimeout,
                408,
                "the request head did not arrive in time",
            )
            .await
        }
    }

    /// Answers with one of the proxy's own errors; the connection then closes.
    async fn refuse(&mut self, status: u16, detail: &str) -> End {
        self.refuse_by(Ender::Proxy, status, detail).await
    }

    /// [`Session::refuse`], recording who ended the exchange (`ender`).
    async fn refuse_by(&mut self, ender: Ender, status: u16, detail: &str) -> End {
        if (400..500).contains(&status) {
            self.shard.stats.frontends[self.frontend].add(Fe::RequestErrors as usize, 1);
        }
        self.out.clear();
        // The method is this request's once its head parsed (a new parse clears `len`).
        let head_request = self.req.head.len > 0 && self.req.method == Method::Head;
        rewrite::error_response(&mut self.out, status, detail, head_request);
        let _ = self.client.stream.send(&self.out).await;
        self.txn.status = status;
        self.txn.bytes_out += self.out.len() as u64;
        self.out.clear();
        self.finish(ender);
        End::Linger
    }

    /// With the access log on: keeps the request line of the head just parsed (the
    /// client buffer moves on before the request is recorded).
    fn keep_request_line(&mut self) {
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let buf = self.client.data();
        let version: &[u8] = match self.req.head.version {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        };
        log.set_request_line(
            self.req.method_span.get(buf),
            self.req.target.get(buf),
            version,
        );
    }

    /// Records the request in progress, if any: statistics, and the access log.
    /// `ender`: who ended it (`Ender::Normal` for a complete exchange).
    fn finish(&mut self, ender: Ender) {
        if !self.txn_open {
            return;
        }
        self.txn_open = false;
        self.shard
            .record(self.frontend, &self.txn, ender, self.log.as_deref_mut());
        if let Some(log) = self.log.as_mut() {
            log.request_line_len = 0;
        }
    }

    /// The backend for the current request: the first matching route, else the
    /// frontend's backend.
    fn route(&self) -> Option<usize> {
        let fe = self.frontend();
        let buf = self.client.data();
        if fe.http.routes.is_empty() {
            return fe.backend;
        }
        let mut lower = [0u8; 256];
        let host = self
            .req
            .host
            .and_then(|h| head::host_without_port(h.get(buf), &mut lower));
        let path = self.req.path(buf);
        fe.http
            .routes
            .iter()
            .find(|r| {
                r.host
                    .as_ref()
                    .is_none_or(|p| host.is_some_and(|h| p.matches(h)))
                    && r.path_prefix
                        .as_ref()
                        .is_none_or(|p| path.starts_with(p.as_bytes()))
            })
            .map_or(fe.backend, |r| Some(r.backend))
    }

    /// The hash the backend's hashing algorithm balances this request on: the client's
    /// address (`source`), the path without its query (`uri`, as HAProxy's default), or
    /// the first value of a header (`hdr(name)`); `None` when there is none (the balancer
    /// then falls back to round robin).
    fn balance_key(&mut self, balance: &Balance) -> Option<u64> {
        let kind = balance.needs_key()?;
        if matches!(kind, KeyKind::Source) && self.peer.is_none() {
            self.peer = self.client.stream.peer_addr().map(|a| a.ip());
        }
        let buf = self.client.data();
        match kind {
            KeyKind::Source => self.peer.map(hash_ip),
            KeyKind::Uri => {
                let path = self.req.path(buf);
                let end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
                Some(hash_key(&path[..end]))
            }
            KeyKind::Header(name) => self
                .req
                .head
                .fields
                .iter()
                .find(|f| f.name.get(buf).eq_ignore_ascii_case(name.as_bytes()))
                .map(|f| hash_key(f.value.get(buf))),
        }
    }

    /// One request and its response. `Ok(true)`: the client connection stays open.
    async fn exchange(&mut self) -> Result<bool, End> {
        let shard = Rc::clone(&self.shard);
        let fe = &shard.config.frontends[self.frontend];
        let Some(backend) = self.route() else {
            return Err(self.refuse(503, "no backend serves this request").await);
        };
        self.txn.backend = Some(backend);
        let be = &shard.config.backends[backend];
        let mode = KeepAlive::combine(fe.http.keep_alive, be.http.keep_alive);
        let pretend = fe.http.pretend_keep_alive || be.http.pretend_keep_alive;
        let last =
            fe.http.max_keep_alive_requests != 0 && self.served >= fe.http.max_keep_alive_requests;
        let client_version = self.req.head.version;
        let mut client_keep = self.req.head.keep_alive() && !last && mode != KeepAlive::Close;
        let method = self.req.method;
        let req_body = self.req.head.body;
        let head_len = self.req.head.len;
        let upgrade = self.req.upgrade;
        let bodiless = matches!(req_body, Body::None | Body::Length(0));
        let expect = self.req.expect_continue && !bodiless && client_version == Version::Http11;
        // The whole request (head and body) is in the client buffer: it can be sent
        // again. Its length then.
        let held = match req_body {
            Body::None => Some(head_len),
            Body::Length(n) if !expect => usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_add(head_len))
                .filter(|&total| total <= self.client.data().len()),
            _ => None,
        };
        let retryable = held.is_some() && method.is_idempotent();
        let forwarded_for = fe.http.forward_for.as_ref().map(|ff| {
            self.peer
                .filter(|ip| !ff.except.iter().any(|net| net.contains(*ip)))
        });
        let extras = RequestExtras {
            framing: match req_body {
                Body::Length(n) => Framing::Length(n),
                Body::Chunked => Framing::Chunked,
                Body::None | Body::UntilClose => Framing::None,
            },
            connection: if upgrade {
                Connection::Upgrade
            } else if mode != KeepAlive::KeepAlive && !pretend {
                // Closing after this exchange: say so where HTTP/1.1 needs it.
                match client_version {
                    Version::Http11 => Connection::Close,
                    Version::Http10 => Connection::Default,
                }
            } else if client_version == Version::Http10 {
                Connection::KeepAlive
            } else {
                Connection::Default
            },
            upgrade,
            forwarded_for: forwarded_for.flatten(),
            forwarded_proto: forwarded_for.map(|_| {
                if self.client.stream.is_tls() {
                    "https"
                } else {
                    "http"
                }
            }),
            cookie: be.cookie.as_ref(),
        };
        let splice = fe.splice.then_some(&shard.relay_buffers);

        let key = self.balance_key(&be.balance);
        // Cookie stickiness: the server the client's cookie names (used when it serves).
        let pinned = be.cookie.as_ref().and_then(|c| {
            let buf = self.client.data();
            let fields = self.req.head.fields.iter();
            let cookies = fields
                .filter(|f| f.kind == head::Kind::Cookie)
                .map(|f| f.value.get(buf));
            let value = cookie::requested(cookies, c)?;
            be.servers.iter().position(|s| s.cookie.as_bytes() == value)
        });
        let mut pick = Pick {
            tried: TriedSet::default(),
            budget: be.retries,
            key,
            pinned,
        };
        // The request's host, for servers whose TLS name comes from it.
        self.sni_host.clear();
        if be.sni_from_host {
            let mut lower = [0; 256];
            let buf = self.client.data();
            let host = self
                .req
                .host
                .and_then(|h| head::host_without_port(h.get(buf), &mut lower))
                .and_then(|h| std::str::from_utf8(h).ok());
            self.sni_host.push_str(host.unwrap_or_default());
        }
        let mut race_retry = true;
        let mut fresh = false;
        let mut body_sent = true;
        loop {
            self.server_for(backend, retryable, fresh, &mut pick)
                .await?;
            let server = self.server.as_mut().expect("server_for sets it");
            let reused = server.uses > 0;
            let index = server.server;
            let counters = &shard.backends[backend].servers[index].pool;
            if reused {
                PoolCounters::add(&counters.reused);
            }
            self.out.clear();
            rewrite::request_head(&mut self.out, self.client.data(), &self.req, &extras);
            self.txn.phase = b'H';
            let mut failure = if let Some(total) = held {
                // Head and body leave together; the client buffer keeps them until the
                // response comes, for a retry.
                self.out
                    .extend_from_slice(&self.client.data()[head_len..total]);
                self.txn.bytes_in = total as u64;
                send(&mut self.out, &mut server.conn.stream).await.err()
            } else {
                // A streamed body: the head goes alone first, so that a dead connection
                // shows before any body byte is taken from the client.
                match send(&mut self.out, &mut server.conn.stream).await {
                    Err(f) => Some(f),
                    Ok(()) => {
                        self.client.consume(head_len);
                        let body = self
                            .send_body(client_version, expect, req_body, &mut body_sent)
                            .await?;
                        self.txn.bytes_in = head_len as u64 + body;
                        None
                    }
                }
            };
            let sent_at = Instant::now();
            if failure.is_none() {
                let response = self.read_response(method, client_version).await;
                if response.is_ok() {
                    self.txn.tr = Some(micros(sent_at, Instant::now()));
                }
                let state = &shard.backends[backend].servers[index];
                match response {
                    Ok(()) => {
                        shard.observe(state, Observe::Layer7, !server_error(self.resp.status))
                    }
                    Err(Failure::Empty | Failure::Timeout | Failure::Invalid) => {
                        shard.observe(state, Observe::Layer7, false)
                    }
                    Err(_) => {}
                }
                failure = match response {
                    // A listed status is retried only when it can be; else it is the
                    // answer.
                    Ok(())
                        if retryable
                            && pick.budget > 0
                            && be.http.retry_on.status(self.resp.status) =>
                    {
                        Some(Failure::Status)
                    }
                    Ok(()) => None,
                    Err(f) => Some(f),
                };
            }
            let Some(failure) = failure else { break };
            if failure == Failure::ClientGone {
                // Nothing to answer and no one to retry for.
                self.drop_server(true);
                self.finish(Ender::Client);
                return Err(End::Close);
            }
            let failed_on = shard.stats.server(backend, Some(index));

            // A replay is possible when nothing of the request reached the server, or
            // when it is idempotent and held whole.
            let nothing_sent = failure == Failure::Send { nothing_sent: true };
            let can_replay = nothing_sent || retryable;
            let before_response = matches!(failure, Failure::Send { .. } | Failure::Empty);
            let retry_on = &be.http.retry_on;
            let listed = match failure {
                Failure::Send { nothing_sent: true } => retry_on.conn_failure,
                Failure::Send {
                    nothing_sent: false,
                }
                | Failure::Empty => retry_on.empty_response,
                Failure::Timeout => retry_on.response_timeout,
                Failure::Invalid => retry_on.junk_response,
                Failure::Status | Failure::ClientGone => true,
            };
            // Input may be left on the connection unless it failed outright.
            self.drop_server(!before_response);
            let race = can_replay && reused && before_response && race_retry;
            // A pooled connection the server closed as it was taken is not the server's
            // error (and is retried for free); every other failure is.
            match failure {
                _ if race => {}
                Failure::Timeout => failed_on.add(Sv::ServerTimeouts as usize, 1),
                Failure::Status | Failure::ClientGone => {}
                _ => failed_on.add(Sv::ResponseErrors as usize, 1),
            }
            let elsewhere = if race {
                race_retry = false;
                false
            } else if can_replay && listed && pick.budget > 0 {
                pick.budget -= 1;
                let servers = shard.backends[backend].servers.len();
                pick.tried.insert(index, servers);
                // Elsewhere unless every server was tried (then the round starts over).
                pick.tried.contains(index)
            } else {
                let (ender, status, detail) = match failure {
                    Failure::Send { .. } => (Ender::Server, 502, "the server connection failed"),
                    Failure::Timeout => (
                        Ender::ServerTimeout,
                        504,
                        "the server did not answer in time",
                    ),
                    Failure::Empty => (Ender::Server, 502, "the server closed without answering"),
                    Failure::Invalid | Failure::Status | Failure::ClientGone => {
                        (Ender::Proxy, 502, "the server sent an invalid response")
                    }
                };
                return Err(self.refuse_by(ender, status, detail).await);
            };
            shard
                .stats
                .retried(&mut self.txn, backend, index, elsewhere);
            fresh = true;
        }
        if let Some(total) = held {
            self.client.consume(total);
        }

        let server = self.server.as_mut().expect("a response came from it");
        let status = self.resp.status;
        self.txn.phase = b'D';
        if status == 101 {
            if !upgrade {
                self.drop_server(true);
                return Err(self.refuse(502, "unexpected 101 response").await);
            }
            self.txn.status = 101;
            // Boxed: the tunnel's state is allocated when a connection upgrades, not
            // carried by every session.
            let ender = Box::pin(self.tunnel(be)).await;
            self.finish(ender);
            return Err(End::Tunnel);
        }

        // Frame the response for this client.
        let resp_body = self.resp.head.body;
        let (framing, coding) = match resp_body {
            Body::None if method == Method::Head || status == 304 => {
                (Framing::AsReceived, Coding::AsReceived)
            }
            Body::None => (Framing::None, Coding::AsReceived),
            Body::Length(n) => (Framing::Length(n), Coding::AsReceived),
            Body::Chunked if client_version == Version::Http11 => {
                (Framing::Chunked, Coding::AsReceived)
            }
            Body::Chunked => {
                client_keep = false;
                (Framing::None, Coding::Decode)
            }
            Body::UntilClose if client_version == Version::Http11 && client_keep => {
                (Framing::Chunked, Coding::Encode)
            }
            Body::UntilClose => {
                client_keep = false;
                (Framing::None, Coding::AsReceived)
            }
        };
        if !body_sent || self.shard.stopping.get() {
            client_keep = false;
        }
        let conn = match (client_keep, client_version) {
            (true, Version::Http10) => Connection::KeepAlive,
            (false, Version::Http11) => Connection::Close,
            _ => Connection::Default,
        };
        server.uses += 1;
        let max_reuse = be.http.pool_max_reuse;
        let server_keep = self.resp.head.keep_alive()
            && !self.resp.head.ambiguous
            && resp_body != Body::UntilClose
            && body_sent
            && mode == KeepAlive::KeepAlive
            && (max_reuse == 0 || server.uses < max_reuse);
        self.out.clear();
        let sticky = be.cookie.as_ref().map(|c| {
            let cookie = be.servers[server.server].cookie.as_bytes();
            ResponseCookie {
                settings: c,
                server: cookie,
                // Set unless the client already holds this server's cookie.
                insert: c.mode == CookieMode::Insert && pinned != Some(server.server),
            }
        });
        rewrite::response_head_with(
            &mut self.out,
            server.conn.data(),
            &self.resp,
            framing,
            conn,
            sticky,
        );
        server.conn.consume(self.resp.head.len);
        self.txn.status = status;
        self.txn.bytes_out += self.out.len() as u64;
        let forwarded = body::forward(
            &mut server.conn,
            &mut self.client.stream,
            &mut self.out,
            resp_body,
            coding,
            splice,
        )
        .await;
        match forwarded {
            Ok(n) => self.txn.bytes_out += n,
            Err(e) => {
                // Half a response was sent: nothing to answer, close both sides.
                self.drop_server(true);
                self.finish(match e {
                    BodyError::Destination(_) => Ender::Client,
                    BodyError::Source(_) | BodyError::Framing(_) => Ender::Server,
                });
                return Err(End::Close);
            }
        }
        self.txn.phase = b'L';
        self.release_server(server_keep);
        self.finish(Ender::Normal);
        if !body_sent {
            // The client may still be sending the body the server did not want.
            return Err(End::Linger);
        }
        Ok(client_keep)
    }

    /// Streams a request body the client buffer does not hold whole (after the head
    /// was sent): waits for `100 Continue` first when the client asked for it.
    /// `body_sent` is cleared when the server answered before wanting the body. Errors
    /// end the exchange: a streamed body is never sent twice.
    async fn send_body(
        &mut self,
        client_version: Version,
        expect: bool,
        req_body: Body,
        body_sent: &mut bool,
    ) -> Result<u64, End> {
        let timeout_client = self.frontend().timeout_client;
        self.client.stream.set_read_timeout(Some(timeout_client));
        if expect && !self.await_continue(client_version).await? {
            *body_sent = false;
            return Ok(0);
        }
        let server = self.server.as_mut().expect("held");
        let sent = body::forward(
            &mut self.client,
            &mut server.conn.stream,
            &mut self.out,
            req_body,
            Coding::AsReceived,
            None,
        )
        .await;
        match sent {
            Ok(n) => Ok(n),
            Err(BodyError::Destination(_)) => {
                self.drop_server(true);
                Err(self
                    .refuse_by(Ender::Server, 502, "the server connection failed")
                    .await)
            }
            Err(BodyError::Framing(reason)) => {
                self.drop_server(true);
                Err(self.refuse(400, reason).await)
            }
            Err(BodyError::Source(_)) => {
                // The client went away or stalled mid-body.
                self.drop_server(true);
                self.finish(Ender::Client);
                Err(End::Close)
            }
        }
    }

    /// After a head with `Expect: 100-continue` was sent: waits (briefly) for the
    /// server's interim response and passes it on. `Ok(false)`: the server answered
    /// finally instead; the body must not be sent.
    async fn await_continue(&mut self, client_version: Version) -> Result<bool, End> {
        let server = self.server.as_mut().expect("held");
        let flushed = body::flush(&mut self.out, &mut server.conn.stream).await;
        if flushed.is_err() {
            self.drop_server(false);
            return Err(self.refuse(502, "the server connection failed").await);
        }
        let timeout = self.shard.config.backends[server.backend].timeout_server;
        server
            .conn
            .stream
            .set_read_timeout(Some(EXPECT_WAIT.min(timeout)));
        loop {
            let server = self.server.as_mut().expect("held");
            if !server.conn.data().is_empty() {
                match head::parse_response(server.conn.data(), self.req.method, &mut self.resp) {
                    Ok(Parsed::Complete)
                        if (100..200).contains(&self.resp.status) && self.resp.status != 101 =>
                    {
                        let len = self.resp.head.len;
                        self.pass_interim(client_version).await?;
                        self.server.as_mut().expect("held").conn.consume(len);
                        return Ok(true);
                    }
                    // A final answer: it is read again by read_response.
                    Ok(Parsed::Complete) => return Ok(false),
                    Ok(Parsed::Partial) => {}
                    Err(_) => return Ok(false),
                }
            }
            let server = self.server.as_mut().expect("held");
            match server.conn.fill().await {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(true),
                Err(_) => return Ok(false),
            }
        }
    }

    /// Passes an interim (1xx) response on to an HTTP/1.1 client.
    async fn pass_interim(&mut self, client_version: Version) -> Result<(), End> {
        if client_version == Version::Http10 {
            return Ok(());
        }
        let server = self.server.as_ref().expect("held");
        self.out.clear();
        rewrite::response_head(
            &mut self.out,
            server.conn.data(),
            &self.resp,
            Framing::None,
            Connection::Default,
        );
        let r = self.client.stream.send(&self.out).await;
        self.out.clear();
        r.map_err(|_| End::Close)
    }

    /// Reads the final response head into `self.resp`, passing interim responses on.
    async fn read_response(
        &mut self,
        method: Method,
        client_version: Version,
    ) -> Result<(), Failure> {
        // Set once, before anything: the head (and then the body) may already be buffered,
        // and `await_continue` may have left a shorter bound.
        {
            let server = self.server.as_ref().expect("held");
            let timeout = self.shard.config.backends[server.backend].timeout_server;
            server.conn.stream.set_read_timeout(Some(timeout));
        }
        let mut any = false;
        loop {
            let server = self.server.as_mut().expect("held");
            if !server.conn.data().is_empty() {
                any = true;
                match head::parse_response(server.conn.data(), method, &mut self.resp) {
                    Ok(Parsed::Complete) => {
                        let status = self.resp.status;
                        if !(100..200).contains(&status) || status == 101 {
                            return Ok(());
                        }
                        let len = self.resp.head.len;
                        if self.pass_interim(client_version).await.is_err() {
                            return Err(Failure::ClientGone);
                        }
                        self.server.as_mut().expect("held").conn.consume(len);
                        continue;
                    }
                    Ok(Parsed::Partial) if server.conn.is_full() => return Err(Failure::Invalid),
                    Ok(Parsed::Partial) => {}
                    Err(_) => return Err(Failure::Invalid),
                }
            }
            let server = self.server.as_mut().expect("held");
            match server.conn.fill().await {
                Ok(0) if !any => return Err(Failure::Empty),
                Ok(0) => return Err(Failure::Invalid),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(Failure::Timeout),
                Err(_) if !any => return Err(Failure::Empty),
                Err(_) => return Err(Failure::Invalid),
            }
        }
    }

    /// Makes `self.server` a connection to a server of `backend`, with a place taken on
    /// that server: the one this client connection keeps (`http_reuse = "never"`), an
    /// idle one from the shard's pool when the reuse policy allows it for this request
    /// (`retryable`: the proxy could send it again), or a new one. `fresh`: a new one
    /// only (a retry). Connection failures go on to another server while `retry_on`
    /// has `conn-failure` and `budget` lasts; then 503.
    async fn server_for(
        &mut self,
        backend: usize,
        retryable: bool,
        fresh: bool,
        pick: &mut Pick,
    ) -> Result<(), End> {
        let Pick {
            tried,
            budget,
            key,
            pinned,
        } = pick;
        let (key, pinned) = (*key, *pinned);
        let shard = Rc::clone(&self.shard);
        let be = &shard.config.backends[backend];
        let state = &shard.backends[backend];
        if let Some(s) = self.server.as_mut() {
            if s.backend == backend
                && !fresh
                && pinned.is_none_or(|p| p == s.server)
                && s.sni.as_deref() == sni_for(be, s.server, sni_host(&self.sni_host))
            {
                if let Some(slot) = state.acquire_server(s.server) {
                    s.slot = Some(slot);
                    self.using.set(Some((backend, s.server)));
                    self.txn.server = Some(s.server);
                    self.txn.tw.get_or_insert(0);
                    self.txn.tc = Some(0);
                    return Ok(());
                }
            }
        }
        self.drop_server(false);
        let want = if fresh {
            None
        } else {
            reuse_for(be.http.reuse, self.served == 1, retryable)
        };
        loop {
            self.txn.phase = b'Q';
            let waiting = Instant::now();
            // The previous server of this client, when it has an idle connection.
            let last = match (want, self.last_server) {
                (Some(_), Some((b, i))) if be.http.prefer_last_server && b == backend => {
                    (!tried.contains(i) && shard.http_pools.idle(b, i) > 0)
                        .then(|| state.acquire_server(i))
                        .flatten()
                }
                _ => None,
            };
            let pinned = pinned
                .filter(|&i| !tried.contains(i))
                .and_then(|i| state.acquire_server(i));
            let slot = match pinned.or(last) {
                Some(slot) => slot,
                None => match state.acquire_waiting(tried, key, be.timeout_queue).await {
                    Ok(slot) => slot,
                    Err(no) => {
                        state.no_server.set(state.no_server.get() + 1);
                        self.add_wait(waiting);
                        let (ender, detail) = no.ender();
                        return Err(self.refuse_by(ender, 503, detail).await);
                    }
                },
            };
            let index = slot.index;
            let connecting = self.add_wait(waiting);
            self.txn.server = Some(index);
            self.txn.phase = b'C';
            let sni = sni_for(be, index, sni_host(&self.sni_host));
            if let Some(want) = want {
                if let Some(idle) =
                    shard
                        .http_pools
                        .checkout(backend, index, want, sni, &slot.server)
                {
                    self.server = Some(ServerConn {
                        conn: Conn::new(idle.conn.stream, shard.http_buffers.take(SERVER_BUFFER)),
                        backend,
                        server: index,
                        uses: idle.uses,
                        slot: Some(slot),
                        sni: idle.conn.sni,
                    });
                    self.using.set(Some((backend, index)));
                    self.txn.tc = Some(0);
                    return Ok(());
                }
            }
            // A new connection: TCP, then TLS when the server has it. A failed handshake
            // counts as a connection failure (HAProxy's `conn-failure` covers it too), but
            // is answered 502 when it is the last word: the server is there and refused.
            // Boxed: a connection attempt's state (TCP connect, TLS handshake) is
            // allocated when a server connection is made, not carried by every session.
            let (stream, tls_failed) = Box::pin(connect_new(&shard, &slot.server, be, sni)).await;
            match stream {
                Some(stream) => {
                    self.txn.tc = Some(micros(connecting, Instant::now()));
                    self.server = Some(ServerConn {
                        conn: Conn::new(stream, shard.http_buffers.take(SERVER_BUFFER)),
                        backend,
                        server: index,
                        uses: 0,
                        slot: Some(slot),
                        sni: sni.map(Box::from),
                    });
                    self.using.set(Some((backend, index)));
                    return Ok(());
                }
                None => {
                    tried.insert(index, state.servers.len());
                    // A certificate refused for a name the client chose fails the same
                    // way everywhere: no retry.
                    let final_failure = tls_failed == Some(true) && sni.is_some();
                    if be.http.retry_on.conn_failure && *budget > 0 && !final_failure {
                        *budget -= 1;
                        let elsewhere = tried.contains(index);
                        shard
                            .stats
                            .retried(&mut self.txn, backend, index, elsewhere);
                        continue;
                    }
                    if tls_failed.is_some() {
                        return Err(self
                            .refuse_by(
                                Ender::Server,
                                502,
                                "the TLS handshake with the server failed",
                            )
                            .await);
                    }
                    state.no_server.set(state.no_server.get() + 1);
                    return Err(self
                        .refuse_by(Ender::Server, 503, "no server is available")
                        .await);
                }
            }
        }
    }

    /// Adds the time since `since` to the request's queue time; returns now.
    fn add_wait(&mut self, since: Instant) -> Instant {
        let now = Instant::now();
        let tw = self.txn.tw.unwrap_or(0) + micros(since, now);
        self.txn.tw = Some(tw);
        now
    }

    /// After a complete exchange: the server connection goes back to the shard's pool
    /// (or stays with this client, `http_reuse = "never"`) when `keep` and nothing
    /// follows its response, else closes.
    fn release_server(&mut self, keep: bool) {
        self.using.set(None);
        let Some(mut s) = self.server.take() else {
            return;
        };
        s.slot = None;
        self.last_server = Some((s.backend, s.server));
        let extra_bytes = !s.conn.data().is_empty();
        if !keep || extra_bytes {
            self.close_server(s, extra_bytes);
        } else if self.shard.config.backends[s.backend].http.reuse == HttpReuse::Never {
            self.server = Some(s);
        } else {
            let (stream, buf) = s.conn.into_parts();
            self.shard.http_buffers.give(buf);
            let conn = Pooled { stream, sni: s.sni };
            self.shard
                .http_pools
                .checkin(&self.shard, s.backend, s.server, conn, s.uses);
        }
    }

    /// Closes the server connection, if any (see [`Session::close_server`]).
    fn drop_server(&mut self, pending: bool) {
        self.using.set(None);
        if let Some(s) = self.server.take() {
            self.close_server(s, pending);
        }
    }

    /// Closes a server connection with a FIN. `pending`: the server may still be
    /// sending (an exchange was cut short), so its input is drained first.
    fn close_server(&self, s: ServerConn, pending: bool) {
        let state = &self.shard.backends[s.backend].servers[s.server];
        let (stream, buf) = s.conn.into_parts();
        self.shard.http_buffers.give(buf);
        self.shard.http_pools.close(stream, pending, state);
    }

    /// After `101 Switching Protocols`: passes the response on, then both connections
    /// become one tunnel (the L4 relay) until either side ends it. Returns who ended it.
    async fn tunnel(&mut self, be: &crate::config::Backend) -> Ender {
        let Some(mut server) = self.server.take() else {
            return Ender::Proxy;
        };
        self.out.clear();
        rewrite::response_head(
            &mut self.out,
            server.conn.data(),
            &self.resp,
            Framing::None,
            Connection::Upgrade,
        );
        server.conn.consume(self.resp.head.len);
        self.out.extend_from_slice(server.conn.data());
        if self.client.stream.send(&self.out).await.is_err() {
            return Ender::Client;
        }
        self.out.clear();
        if !self.client.data().is_empty()
            && server.conn.stream.send(self.client.data()).await.is_err()
        {
            return Ender::Server;
        }
        for s in [&self.client.stream, &server.conn.stream] {
            s.set_read_timeout(None);
            s.set_write_timeout(None);
        }
        let shard = Rc::clone(&self.shard);
        let fe = &shard.config.frontends[self.frontend];
        let state = Rc::clone(&shard.backends[server.backend].servers[server.server]);
        let (ender, bytes) = crate::l4::tunnel(
            &shard,
            &mut self.client.stream,
            &mut server.conn.stream,
            &state,
            fe,
            be,
        )
        .await;
        self.txn.bytes_in += bytes.client_to_server;
        self.txn.bytes_out += bytes.server_to_client;
        shard.http_buffers.give(server.conn.into_buffer());
        ender
    }
}

/// A new connection to `server` of `be`, ready for requests: TCP, then TLS when the server
/// has it (for `sni`). `None` when it failed, then with `Some(certificate refused)` when
/// the TLS handshake was what failed.
async fn connect_new(
    shard: &Shard,
    server: &crate::upstream::ServerState,
    be: &crate::config::Backend,
    sni: Option<&str>,
) -> (Option<Stream>, Option<bool>) {
    let tcp = crate::l4::connect_to(shard, server, be.timeout_connect).await;
    // Always ready for splice: a pooled connection serves every frontend of the backend,
    // and some may splice.
    let Some(tcp) = tcp.filter(|t| crate::l4::prepare(t).is_ok()) else {
        return (None, None);
    };
    let _ = tcp.set_write_timeout(Some(be.timeout_server));
    match crate::l4::secure(shard, server, tcp, sni, be.timeout_connect).await {
        Ok(stream) => (Some(stream), None),
        Err(e) => (None, Some(e.failure == crate::tls::Failure::Certificate)),
    }
}

/// Sends `out` whole and clears it. `Err` says how far it got: `nothing_sent` when not
/// one byte was accepted (then the request can be sent elsewhere, whatever it is).
async fn send(out: &mut Vec<u8>, stream: &mut Stream) -> Result<(), Failure> {
    use futures_lite::AsyncWriteExt;
    let mut sent = 0;
    let result = loop {
        if sent == out.len() {
            break Ok(());
        }
        match stream.write(&out[sent..]).await {
            Ok(0) | Err(_) => {
                break Err(Failure::Send {
                    nothing_sent: sent == 0,
                })
            }
            Ok(n) => sent += n,
        }
    };
    out.clear();
    match result {
        Ok(()) => stream.flush_tls().await.map_err(|_| Failure::Send {
            nothing_sent: false,
        }),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns (without calling it).
    fn future_size<A, B, F: std::future::Future>(_f: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// An idle connection's task is the session's future, at the size of its largest
    /// state: it must stay small (README, "Idle keep-alive connections"). Under 2 KiB,
    /// glommio also allocates it inline with the task (one allocation per connection,
    /// `tests/alloc.rs`); above, in a box of its own.
    #[test]
    fn session_future_stays_small() {
        let size = future_size(serve);
        eprintln!("http session future: {size} bytes");
        assert!(
            size < 2048,
            "the http session's future grew to {size} bytes"
        );
    }
}
