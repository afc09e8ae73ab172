//! Faults end to end (issue 9, Reliability): servers killed and restarted under load,
//! a server that accepts and never answers, servers that reset inside a response or
//! answer garbage, and the keep-alive race with a server that closes idle connections
//! after 1 s. Origins are written here with std threads ([`Origin`]): each can be killed
//! (its listener and every accepted connection, with RST or FIN) and restarted on the
//! same port, and counts what happened to it. Clients are real sockets that count every
//! outcome, so a test can say exactly how many requests failed and why.
//!
//! Every wait is bounded: client reads by [`IO_TIMEOUT`], load runs by a deadline,
//! conditions by [`eventually`].

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use socket2::SockRef;

/// Bound of any wait for something that takes well under a second.
const SETTLE: Duration = Duration::from_secs(5);

/// Idle pooled connections outlive every wait of a test, so a connection that closes
/// was closed for what it did, never for its age.
const LONG_POOL: &str = "pool_idle_timeout = \"60s\"";

// ---------------------------------------------------------------------------------------
// Origins that fail on purpose.

/// How a killed origin ends its accepted connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// `SO_LINGER` 0, then close: an RST, as when a host vanishes or a process is killed
    /// with unread input.
    Rst,
    /// Close: a FIN (an RST if a request was waiting unread), as when a process exits.
    Fin,
}

/// What every connection of an [`Origin`] shares.
struct Shared {
    name: &'static str,
    accepted: AtomicUsize,
    /// Requests other than health checks that were answered.
    answered: AtomicUsize,
    /// Connections the proxy closed (EOF while waiting for a request or a close).
    closed_by_peer: AtomicUsize,
    /// Connections this origin closed because they were idle ([`Peer::idle_close`]).
    idle_closes: AtomicUsize,
    /// Idle closes a request raced with: it arrived after the origin's FIN, or was
    /// waiting unread when it closed.
    raced: AtomicUsize,
    killed: AtomicBool,
    live: Mutex<Live>,
}

/// The connections open now, so that a kill can end them.
#[derive(Default)]
struct Live {
    next_id: usize,
    conns: Vec<LiveConn>,
}

struct LiveConn {
    id: usize,
    /// A duplicate of the connection's socket: shutting it down wakes the thread
    /// serving it.
    stream: TcpStream,
    /// Requests answered on it (0: the proxy's request on it is its first).
    responses: Arc<AtomicUsize>,
    /// It carried a health check.
    check: Arc<AtomicBool>,
}

/// One accepted connection, as its handler sees it.
struct Peer {
    stream: TcpStream,
    /// Accept order on this origin (0 for the first).
    index: usize,
    pending: Vec<u8>,
    shared: Arc<Shared>,
    responses: Arc<AtomicUsize>,
    check: Arc<AtomicBool>,
    /// Close with an RST when the handler returns.
    reset: bool,
}

impl Wire for Peer {
    fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }
    fn fill(&mut self) -> io::Result<usize> {
        read_into(&mut self.stream, &mut self.pending)
    }
}

fn path_of(m: &Msg) -> String {
    m.start_line().split(' ').nth(1).unwrap_or("").to_string()
}

impl Peer {
    fn killed(&self) -> bool {
        self.shared.killed.load(Ordering::SeqCst)
    }

    /// The next request; `None` at EOF, on an error, or once the origin is killed.
    fn request(&mut self) -> Option<Msg> {
        let m = match read_request(self) {
            Ok(Some(m)) => m,
            Ok(None) => {
                if !self.killed() {
                    self.shared.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                }
                return None;
            }
            Err(_) => return None,
        };
        if self.killed() {
            return None;
        }
        if path_of(&m) == "/health" {
            self.check.store(true, Ordering::SeqCst);
        }
        Some(m)
    }

    fn answer(&mut self, bytes: &[u8]) -> bool {
        !self.killed() && self.stream.write_all(bytes).is_ok()
    }

    /// The body of this origin's answers: its name and the connection's index.
    fn signature(&self) -> String {
        format!("{}/{}", self.shared.name, self.index)
    }

    /// Answers one request: a health check with `200` and close (`false`: the
    /// connection is done), any other with `200` and [`Peer::signature`].
    fn answer_request(&mut self, req: &Msg) -> bool {
        if path_of(req) == "/health" {
            self.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return false;
        }
        let body = self.signature();
        if !self.answer(&ok(&body)) {
            return false;
        }
        self.responses.fetch_add(1, Ordering::SeqCst);
        self.shared.answered.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Serves requests until EOF (keep-alive).
    fn serve(&mut self) {
        while let Some(req) = self.request() {
            if !self.answer_request(&req) {
                return;
            }
        }
    }

    /// Reads until the proxy closes (bounded by the read timeout); counts the close.
    fn wait_close(&mut self) {
        loop {
            match self.fill() {
                Ok(0) => {
                    if !self.killed() {
                        self.shared.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                    }
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// Reads the request and never answers; waits for the proxy to close.
    fn hang(&mut self) {
        if self.request().is_some() {
            self.wait_close();
        }
    }

    /// Reads the request, sends `bytes`, lets the proxy read them, then resets.
    fn reset_after(&mut self, bytes: &[u8]) {
        if self.request().is_some() && self.answer(bytes) {
            thread::sleep(Duration::from_millis(50));
        }
        self.reset = true;
    }

    /// Like Node.js's http server (`keepAliveTimeout`): serves requests, each after
    /// `work`, and closes a connection that stays idle for `idle` (to the millisecond).
    /// Even connections close with a FIN and then read what still comes (a request sent
    /// as the FIN was on its way: a race); odd ones simply close (a request that comes
    /// later is refused by the kernel's RST).
    fn serve_closing_idle(&mut self, idle: Duration, work: Duration) {
        loop {
            if self.pending.is_empty() {
                if !readable_within(&self.stream, idle) {
                    return self.idle_close();
                }
                match self.fill() {
                    Ok(0) => {
                        self.shared.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            let Some(req) = self.request() else { return };
            thread::sleep(work);
            if !self.answer_request(&req) {
                return;
            }
        }
    }

    fn idle_close(&mut self) {
        self.shared.idle_closes.fetch_add(1, Ordering::SeqCst);
        let raced = if self.index.is_multiple_of(2) {
            let _ = self.stream.shutdown(Shutdown::Write);
            self.stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .ok();
            let mut any = false;
            while matches!(self.fill(), Ok(n) if n > 0) {
                any = true;
            }
            any
        } else {
            // What waits unread now makes the close an RST.
            self.stream.set_nonblocking(true).is_ok()
                && matches!(self.stream.peek(&mut [0u8; 1]), Ok(n) if n > 0)
        };
        if raced {
            self.shared.raced.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Whether `stream` has something to read (bytes, EOF or an error) within `limit`,
/// measured by `poll(2)`, whose timer is precise to well under a millisecond (a read
/// timeout counts in scheduler ticks and may fire several milliseconds late).
fn readable_within(stream: &TcpStream, limit: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `fd` is one valid pollfd that lives across the call, and the count says
    // one; the descriptor stays open (borrowed from `stream`) for the call's duration.
    let n = unsafe { libc::poll(&mut fd, 1, ms) };
    n != 0
}

type Handler = Arc<dyn Fn(&mut Peer) + Send + Sync>;

/// A threaded HTTP origin on 127.0.0.1 that a test can kill and restart on the same
/// port. Each connection runs `handler` on a thread of its own.
struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handler: Handler,
    /// The listener (a duplicate, to shut it down) and the accept thread.
    listening: Option<(socket2::Socket, thread::JoinHandle<()>)>,
}

impl Origin {
    fn start(name: &'static str, handler: impl Fn(&mut Peer) + Send + Sync + 'static) -> Origin {
        let shared = Arc::new(Shared {
            name,
            accepted: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
            closed_by_peer: AtomicUsize::new(0),
            idle_closes: AtomicUsize::new(0),
            raced: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
            live: Mutex::default(),
        });
        let mut o = Origin {
            addr: "127.0.0.1:0".parse().unwrap(),
            shared,
            handler: Arc::new(handler),
            listening: None,
        };
        o.listen();
        o
    }

    /// An origin whose connections all [`Peer::serve`].
    fn serving(name: &'static str) -> Origin {
        Origin::start(name, Peer::serve)
    }

    fn listen(&mut self) {
        assert!(self.listening.is_none(), "already listening");
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // The same port again, whatever its closed connections left in TIME_WAIT.
        socket.set_reuse_address(true).unwrap();
        socket
            .bind(&self.addr.into())
            .unwrap_or_else(|e| panic!("bind {}: {e}", self.addr));
        socket.listen(1024).unwrap();
        self.addr = socket.local_addr().unwrap().as_socket().unwrap();
        let listener: TcpListener = socket.try_clone().unwrap().into();
        self.shared.killed.store(false, Ordering::SeqCst);
        let (shared, handler) = (Arc::clone(&self.shared), Arc::clone(&self.handler));
        let accept = thread::spawn(move || loop {
            let conn = match listener.accept() {
                Ok((conn, _)) => conn,
                // Shut down by a kill: EINVAL.
                Err(_) if shared.killed.load(Ordering::SeqCst) => return,
                Err(_) => {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            serve_connection(&shared, &handler, conn);
        });
        self.listening = Some((socket, accept));
    }

    /// Kills the origin: stops listening (connecting is refused from now on), then ends
    /// every accepted connection as `how` says, at once. Returns how many connections
    /// were carrying a request that was their first (the proxy's exchange on a new
    /// connection, which it does not send again by default) or had not shown what they
    /// carry yet: the requests a kill may cost.
    fn kill(&mut self, how: Kill) -> usize {
        let conns = {
            let mut live = self.shared.live.lock().unwrap();
            self.shared.killed.store(true, Ordering::SeqCst);
            if let Some((listener, _)) = &self.listening {
                // Stops listening and wakes the accept thread (EINVAL); connections
                // waiting in the accept queue are reset by the kernel.
                let _ = listener.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut live.conns)
        };
        if let Some((_, accept)) = self.listening.take() {
            accept.join().expect("accept thread");
        }
        let fresh = conns
            .iter()
            .filter(|c| c.responses.load(Ordering::SeqCst) == 0 && !c.check.load(Ordering::SeqCst))
            .count();
        for c in &conns {
            match how {
                Kill::Rst => {
                    let _ = SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
                    // Wakes the thread reading it, which then drops its end: the last
                    // close, with linger 0, sends the RST.
                    let _ = c.stream.shutdown(Shutdown::Read);
                }
                Kill::Fin => {
                    let _ = c.stream.shutdown(Shutdown::Both);
                }
            }
        }
        fresh
    }

    /// Listens again on the same address.
    fn restart(&mut self) {
        self.listen();
    }

    fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::SeqCst)
    }

    fn closed_by_peer(&self) -> usize {
        self.shared.closed_by_peer.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.kill(Kill::Fin);
    }
}

/// Registers an accepted connection (or resets it if the origin was killed meanwhile)
/// and serves it on a thread of its own.
fn serve_connection(shared: &Arc<Shared>, handler: &Handler, conn: TcpStream) {
    let responses = Arc::new(AtomicUsize::new(0));
    let check = Arc::new(AtomicBool::new(false));
    let (id, index) = {
        let mut live = shared.live.lock().unwrap();
        if shared.killed.load(Ordering::SeqCst) {
            let _ = SockRef::from(&conn).set_linger(Some(Duration::ZERO));
            return;
        }
        let index = shared.accepted.fetch_add(1, Ordering::SeqCst);
        let id = live.next_id;
        live.next_id += 1;
        live.conns.push(LiveConn {
            id,
            stream: conn.try_clone().expect("dup"),
            responses: Arc::clone(&responses),
            check: Arc::clone(&check),
        });
        (id, index)
    };
    let (shared, handler) = (Arc::clone(shared), Arc::clone(handler));
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            conn.set_read_timeout(Some(IO_TIMEOUT)).ok();
            conn.set_write_timeout(Some(IO_TIMEOUT)).ok();
            let mut peer = Peer {
                stream: conn,
                index,
                pending: Vec::new(),
                shared: Arc::clone(&shared),
                responses,
                check,
                reset: false,
            };
            handler(&mut peer);
            // The duplicate goes first, so that dropping the stream is the last close.
            shared.live.lock().unwrap().conns.retain(|c| c.id != id);
            if peer.reset {
                let _ = SockRef::from(&peer.stream).set_linger(Some(Duration::ZERO));
            }
        })
        .expect("spawn");
}

// ---------------------------------------------------------------------------------------
// Clients that count.

/// Outcomes of many requests: successes by origin, failures by cause.
#[derive(Default)]
struct Tally {
    ok: Mutex<BTreeMap<String, usize>>,
    errors: Mutex<BTreeMap<String, usize>>,
}

impl Tally {
    fn ok(&self, origin: &str) {
        *self
            .ok
            .lock()
            .unwrap()
            .entry(origin.to_string())
            .or_default() += 1;
    }

    fn error(&self, cause: String) {
        *self.errors.lock().unwrap().entry(cause).or_default() += 1;
    }

    fn oks(&self) -> usize {
        self.ok.lock().unwrap().values().sum()
    }

    fn error_count(&self) -> usize {
        self.errors.lock().unwrap().values().sum()
    }

    fn errors(&self) -> BTreeMap<String, usize> {
        self.errors.lock().unwrap().clone()
    }
}

/// One keep-alive client that reconnects after a failure or a close.
struct Counting {
    addr: SocketAddr,
    /// Requests go to `{prefix}r{n}`.
    prefix: &'static str,
    client: Option<Client>,
    sent: usize,
}

impl Counting {
    fn new(addr: SocketAddr) -> Counting {
        Counting::on(addr, "/")
    }

    fn on(addr: SocketAddr, prefix: &'static str) -> Counting {
        Counting {
            addr,
            prefix,
            client: None,
            sent: 0,
        }
    }

    /// Sends one GET and records its outcome in `tally`.
    fn request(&mut self, tally: &Tally) {
        if self.send(tally) {
            self.receive(tally);
        }
    }

    /// Sends one GET (on a new connection if needed); `false`, with the failure
    /// recorded, when it could not be sent.
    fn send(&mut self, tally: &Tally) -> bool {
        self.sent += 1;
        let request = get(&format!("{}r{}", self.prefix, self.sent));
        let c = self.client.get_or_insert_with(|| Client::new(self.addr));
        match c.stream.write_all(request.as_bytes()) {
            Ok(()) => true,
            Err(e) => {
                tally.error(format!("send: {:?}", e.kind()));
                self.client = None;
                false
            }
        }
    }

    /// Reads the response to the request sent and records its outcome.
    fn receive(&mut self, tally: &Tally) {
        let c = self.client.as_mut().expect("a request was sent");
        match response(c) {
            Ok((origin, close)) => {
                tally.ok(&origin);
                if close {
                    self.client = None;
                }
            }
            Err(cause) => {
                tally.error(cause);
                self.client = None;
            }
        }
    }
}

/// The response to one GET: `Ok((origin name, the proxy closes after it))` for a `200`
/// from an [`Origin`], else the cause of the failure.
fn response(c: &mut Client) -> Result<(String, bool), String> {
    let r = read_response(c, false).map_err(|e| format!("response: {:?}", e.kind()))?;
    if r.status() != 200 {
        return Err(format!("status {}", r.status()));
    }
    let body = r.payload_str();
    let origin = body.split('/').next().unwrap_or("").to_string();
    if origin.is_empty() {
        return Err(format!("unexpected body {body:?}"));
    }
    Ok((origin, r.header("Connection") == Some("close")))
}

/// Proxy statistics from `GET /metrics` on the statistics listener: series → value.
fn metrics(admin: SocketAddr) -> HashMap<String, f64> {
    let mut s = connect(admin);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: stats\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_to_end(&mut s).unwrap()).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").expect("a head");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// A server counter: `ringproxy_server_{name}{backend=...,server=...}`.
fn server_counter(m: &HashMap<String, f64>, name: &str, backend: &str, server: &str) -> f64 {
    let series = format!("ringproxy_server_{name}{{backend=\"{backend}\",server=\"{server}\"}}");
    *m.get(&series)
        .unwrap_or_else(|| panic!("no series {series}"))
}

/// Requests the frontend has finished (recorded when the response was sent).
const DONE: &str = "ringproxy_frontend_total_seconds_count{frontend=\"f\"}";

/// Waits until the proxy's statistics account for `requests` finished requests; returns
/// them then.
fn metrics_after(admin: SocketAddr, requests: usize) -> HashMap<String, f64> {
    let mut last = HashMap::new();
    let reached = eventually(Duration::from_secs(10), || {
        last = metrics(admin);
        last.get(DONE).copied().unwrap_or(0.0) >= requests as f64
    });
    assert!(
        reached,
        "statistics show {:?} finished requests, expected {requests}",
        last.get(DONE)
    );
    last
}

/// A value in `lo..=hi` from `rng`.
fn uniform(rng: &mut Prng, lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    rng.fill(&mut b);
    lo + u64::from_le_bytes(b) % (hi - lo + 1)
}

// ---------------------------------------------------------------------------------------
// 1. Servers killed and restarted during load.

#[test]
fn a_server_killed_and_restarted_under_load_costs_only_requests_it_could_not_retry() {
    let mut a = Origin::serving("a");
    let b = Origin::serving("b");
    let backend = "check = true\n\n[backend.health_check]\ntype = \"http\"\npath = \"/health\"\n\
                   interval = \"100ms\"\ntimeout = \"1s\"\nrise = 2\nfall = 2\n";
    let top = "[admin]\nlisten = \"127.0.0.1:0\"\nstats_interval = \"100ms\"\n";
    let (proxy, addr) = http_proxy_with(2, top, backend, &servers_toml(&[a.addr, b.addr]));
    let admin = proxy.admin_addr().expect("statistics listener");

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(30);
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (tally, stop) = (Arc::clone(&tally), Arc::clone(&stop));
            thread::spawn(move || {
                let mut c = Counting::new(addr);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    c.request(&tally);
                    thread::sleep(Duration::from_micros(300));
                }
                c.sent
            })
        })
        .collect();

    let mut fresh = 0;
    let mut rounds = Vec::new();
    thread::sleep(Duration::from_secs(1));
    for how in [Kill::Rst, Kill::Fin] {
        assert!(
            eventually(SETTLE, || a.answered() > 0 && b.answered() > 0),
            "both servers take traffic before the kill"
        );
        let errors_before = tally.error_count();
        let killed_at = Instant::now();
        let cost = a.kill(how);
        fresh += cost;
        // Traffic goes on to b; connecting to a is refused and retried there.
        thread::sleep(Duration::from_millis(700));
        let answered_dead = a.answered();
        a.restart();
        let restarted = Instant::now();
        assert!(
            eventually(SETTLE, || a.answered() > answered_dead),
            "{how:?}: the restarted server gets no traffic"
        );
        let (back, since_kill) = (restarted.elapsed(), killed_at.elapsed());
        thread::sleep(Duration::from_millis(500));
        rounds.push(format!(
            "{how:?}: {cost} request(s) at risk, {} client error(s) since the kill, \
             back in service {back:?} after the restart ({since_kill:?} after the kill)",
            tally.error_count() - errors_before,
        ));
    }
    stop.store(true, Ordering::SeqCst);
    let sent: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();

    let oks = tally.ok.lock().unwrap().clone();
    let errors = tally.errors();
    let failed = tally.error_count();
    let m = metrics_after(admin, sent - failed);
    println!("killed and restarted under load: {sent} requests, ok by server {oks:?}");
    println!("  errors by cause {errors:?}; at risk (first request of a connection) {fresh}");
    for r in &rounds {
        println!("  {r}");
    }
    for s in ["s0", "s1"] {
        println!(
            "  proxy, server {s}: retries {}, redispatches {}, response errors {}, \
             connect errors {}, connections {}",
            server_counter(&m, "retries_total", "b", s),
            server_counter(&m, "redispatches_total", "b", s),
            server_counter(&m, "response_errors_total", "b", s),
            server_counter(&m, "connect_errors_total", "b", s),
            server_counter(&m, "connections_total", "b", s),
        );
    }

    assert_eq!(sent, oks.values().sum::<usize>() + failed);
    assert!(sent > 2000, "the load ran: {sent} requests");
    // A GET on a reused connection that dies before its response is sent again (free
    // retry), and one meeting the closed listener goes to b (conn-failure, within
    // `retries`). Only a GET that was the first request of a new connection to a and
    // got no answer is answered 502 (`empty-response` is not in the default `retry_on`):
    // at most one per such connection.
    for cause in errors.keys() {
        assert_eq!(cause, "status 502", "unexpected failure: {errors:?}");
    }
    assert!(
        failed <= fresh,
        "{failed} client errors, but only {fresh} requests were at risk: {errors:?}"
    );
    assert!(oks.get("b").copied().unwrap_or(0) > 0);
    // The dead server was tried, refused, and its requests went to b.
    assert!(server_counter(&m, "redispatches_total", "b", "s0") > 0.0);
    // Both still serve, and the proxy is healthy.
    let mut c = Client::new(addr);
    let mut seen = Vec::new();
    for i in 0..4 {
        let r = c.exchange(get(&format!("/after{i}")));
        assert_eq!(r.status(), 200, "{:?}", r.head);
        seen.push(r.payload_str().split('/').next().unwrap().to_string());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["a", "b"], "round robin over both servers again");
    drop(c);
    proxy.shutdown();
}

// ---------------------------------------------------------------------------------------
// 2. A server that accepts and never answers.

#[test]
fn a_server_that_never_answers_costs_one_504_and_nothing_else() {
    // Its first connection reads the request and never answers; later ones serve.
    let origin = Origin::start("o", |p| if p.index == 0 { p.hang() } else { p.serve() });
    let (proxy, addr) = http_proxy(
        &[origin.addr],
        "",
        &format!("{LONG_POOL}\ntimeout_server = \"1s\""),
    );
    let mut stuck = Client::new(addr);
    let start = Instant::now();
    stuck.send(get("/stuck"));
    assert!(eventually(SETTLE, || origin.accepted() == 1));
    // Meanwhile another client is served on a new connection: nothing waits on the
    // stuck exchange.
    let mut other = Client::new(addr);
    for i in 0..5 {
        let r = other.exchange(get(&format!("/other{i}")));
        assert_eq!(r.status(), 200, "{:?}", r.head);
        assert_eq!(r.payload_str(), "o/1");
    }
    stuck.stream.set_nonblocking(true).unwrap();
    let nothing_yet = matches!(
        stuck.stream.peek(&mut [0u8; 1]),
        Err(ref e) if e.kind() == io::ErrorKind::WouldBlock
    );
    stuck.stream.set_nonblocking(false).unwrap();
    assert!(
        nothing_yet,
        "the stuck request was answered before timeout_server ({:?})",
        start.elapsed()
    );
    let r = stuck.response();
    let waited = start.elapsed();
    assert_proxy_error(&r, 504);
    stuck.assert_eof();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
        "504 after {waited:?}"
    );
    // The proxy closed the silent connection: it was not pooled.
    assert!(
        eventually(SETTLE, || origin.closed_by_peer() == 1),
        "the silent connection is still open"
    );
    // A fresh client and the same one again are served on the pooled good connection.
    let mut next = Client::new(addr);
    for i in 0..3 {
        let r = next.exchange(get(&format!("/next{i}")));
        assert_eq!(r.status(), 200, "{:?}", r.head);
        assert_eq!(r.payload_str(), "o/1");
    }
    assert_eq!(origin.accepted(), 2);
    drop((other, next));
    proxy.shutdown();
}

// ---------------------------------------------------------------------------------------
// 3. Resets inside a response.

/// Sends `n` requests on a new client connection, each expecting `200` and `body`.
fn served(addr: SocketAddr, n: usize, body: &str) {
    let mut c = Client::new(addr);
    for i in 0..n {
        let r = c.exchange(get(&format!("/after{i}")));
        assert_eq!(r.status(), 200, "{:?}", r.head);
        assert_eq!(r.payload_str(), body);
    }
}

#[test]
fn a_reset_inside_the_response_head_is_a_short_502() {
    let origin = Origin::start("o", |p| {
        if p.index == 0 {
            p.reset_after(b"HTTP/1.1 200 OK\r\nContent-");
        } else {
            p.serve();
        }
    });
    let (proxy, addr) = http_proxy(&[origin.addr], "", LONG_POOL);
    let mut c = Client::new(addr);
    let start = Instant::now();
    let r = c.exchange(get("/"));
    assert_proxy_error(&r, 502);
    c.assert_eof();
    assert!(start.elapsed() < SETTLE, "{:?}", start.elapsed());
    served(addr, 3, "o/1");
    assert_eq!(origin.accepted(), 2);
    proxy.shutdown();
}

#[test]
fn a_reset_inside_the_response_body_closes_the_client_and_nothing_else() {
    // A short body (copied through the buffer) and a long one (spliced past 64 KiB).
    for (len, cut) in [(100usize, 50usize), (1_000_000, 300_000)] {
        let origin = Origin::start("o", move |p| {
            if p.index == 0 {
                let mut resp =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").into_bytes();
                resp.extend_from_slice(&origin_bytes(cut));
                p.reset_after(&resp);
            } else {
                p.serve();
            }
        });
        let (proxy, addr) = http_proxy(&[origin.addr], "", LONG_POOL);
        let mut c = Client::new(addr);
        c.send(get("/"));
        let start = Instant::now();
        let head = read_head(&mut c).unwrap().expect("a head");
        assert_eq!(
            head,
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")
        );
        // The client learns of the failure the only way left: the connection ends
        // (FIN or RST) before the body does, and soon.
        let mut body = std::mem::take(&mut c.pending);
        let mut buf = vec![0u8; 64 * 1024];
        let end = loop {
            match c.stream.read(&mut buf) {
                Ok(0) => break "EOF".to_string(),
                Ok(n) => body.extend_from_slice(&buf[..n]),
                Err(e) => break format!("{:?}", e.kind()),
            }
        };
        let took = start.elapsed();
        println!(
            "reset after {cut} of {len} body bytes: the client got {} bytes, then {end} \
             after {took:?}",
            body.len()
        );
        assert!(
            end == "EOF" || end == "ConnectionReset",
            "{len}: the client connection did not end: {end}"
        );
        assert!(took < SETTLE, "{len}: {took:?}");
        assert!(body.len() <= cut, "{len}: {} bytes", body.len());
        assert_eq!(body, origin_bytes(body.len()), "{len}: bytes changed");
        served(addr, 3, "o/1");
        assert_eq!(origin.accepted(), 2, "{len}");
        proxy.shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// 4. Garbage.

/// Bytes that are not HTTP.
const GARBAGE: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http \r\n\r\n";

#[test]
fn garbage_instead_of_a_response_is_a_502_and_its_connection_is_closed() {
    // The garbage connection stays open on the origin's side: only the proxy can end it.
    let origin = Origin::start("o", |p| {
        if p.index == 0 {
            if p.request().is_some() && p.answer(GARBAGE) {
                p.wait_close();
            }
        } else {
            p.serve();
        }
    });
    let (proxy, addr) = http_proxy(&[origin.addr], "", LONG_POOL);
    let mut c = Client::new(addr);
    let r = c.exchange(get("/"));
    assert_proxy_error(&r, 502);
    c.assert_eof();
    assert!(
        eventually(SETTLE, || origin.closed_by_peer() == 1),
        "the garbage connection is still open"
    );
    served(addr, 3, "o/1");
    assert_eq!(origin.accepted(), 2);
    proxy.shutdown();
}

#[test]
fn garbage_after_a_response_or_while_idle_keeps_the_connection_out_of_the_pool() {
    for idle in [false, true] {
        let origin = Origin::start("o", move |p| {
            if p.index != 0 {
                return p.serve();
            }
            if p.request().is_none() {
                return;
            }
            let answered = if idle {
                // A whole response, then bytes nobody asked for while it is pooled.
                p.answer(&ok("o/0")) && {
                    thread::sleep(Duration::from_millis(100));
                    p.answer(GARBAGE)
                }
            } else {
                p.answer(&[ok("o/0"), GARBAGE.to_vec()].concat())
            };
            if answered {
                p.wait_close();
            }
        });
        let (proxy, addr) = http_proxy(&[origin.addr], "", LONG_POOL);
        let mut c = Client::new(addr);
        let r = c.exchange(get("/first"));
        assert_eq!(r.status(), 200, "{:?}", r.head);
        assert_eq!(r.payload_str(), "o/0");
        assert!(
            eventually(SETTLE, || origin.closed_by_peer() == 1),
            "idle {idle}: the connection that sent garbage is still open"
        );
        // The same client goes on, on a new server connection.
        let r = c.exchange(get("/second"));
        assert_eq!(r.status(), 200, "{:?}", r.head);
        assert_eq!(r.payload_str(), "o/1", "idle {idle}");
        drop(c);
        served(addr, 2, "o/1");
        assert_eq!(origin.accepted(), 2, "idle {idle}");
        proxy.shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// 5. The keep-alive race under load.

/// Duration of the keep-alive race run.
const RACE_RUN: Duration = Duration::from_secs(60);

#[test]
fn a_server_closing_idle_connections_after_1s_costs_no_request_under_load() {
    // The origin closes connections idle for 1 s, and each answer takes it 1 ms (so that
    // requests in flight together need a connection each). The proxy keeps idle
    // connections for its default pool_idle_timeout (4 s): they die on the origin's
    // timer, and some as a request is sent on them.
    let origin = Origin::start("o", |p| {
        p.serve_closing_idle(Duration::from_secs(1), Duration::from_millis(1))
    });
    // Two backends on the same origin, so two pools per shard: the steady load and the
    // loners use "b"; the bursts use "burst", whose connections then serve nothing but
    // the bursts and sit idle for one burst interval, about the origin's timeout.
    let toml = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\nstats_interval = \"100ms\"\n\n\
         [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"b\"\n\n\
         [[frontend.route]]\npath_prefix = \"/burst/\"\nbackend = \"burst\"\n\n\
         [[backend]]\nname = \"b\"\nmode = \"http\"\n\n\
         [[backend.server]]\nname = \"s0\"\naddress = \"{o}\"\n\n\
         [[backend]]\nname = \"burst\"\nmode = \"http\"\n\n\
         [[backend.server]]\nname = \"s0\"\naddress = \"{o}\"\n",
        GLOBAL.replace("shards = 1", "shards = 2"),
        o = origin.addr
    );
    let proxy = proxy(&toml);
    let addr = proxy.frontend_addrs(0)[0];
    let admin = proxy.admin_addr().expect("statistics listener");
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let end = start + RACE_RUN;
    let mut threads = Vec::new();
    // Steady load: 8 clients at 250 requests per second each, on fixed schedules spread
    // over the period (a request every 0.5 ms).
    let steady = 8;
    let period = Duration::from_millis(4);
    for i in 0..steady {
        let tally = Arc::clone(&tally);
        threads.push(thread::spawn(move || {
            let mut c = Counting::new(addr);
            let mut next = start + period * i / steady;
            while Instant::now() < end {
                next += period;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else if now - next > Duration::from_millis(100) {
                    // Starved: start the schedule again rather than burst.
                    next = now;
                }
                c.request(&tally);
            }
            c.sent
        }));
    }
    // Bursts: one thread sends a request on each of its 32 client connections, then
    // reads the 32 responses: 32 requests in flight at once, each on a server connection
    // of the "burst" pool that was idle since the previous burst. Bursts start 999 to
    // 1003 ms apart, so that the idle time the origin sees on those connections (the
    // interval less the 1 ms of work and the spread of the burst) falls on both sides
    // of its 1 s, and now and then right on it.
    let burst = 32;
    let bursts = Arc::clone(&tally);
    threads.push(thread::spawn(move || {
        let mut clients: Vec<Counting> =
            (0..burst).map(|_| Counting::on(addr, "/burst/")).collect();
        let mut rng = Prng::new(9);
        let mut next = start;
        loop {
            next += Duration::from_micros(uniform(&mut rng, 999_000, 1_003_000));
            thread::sleep(next.saturating_duration_since(Instant::now()));
            if Instant::now() >= end {
                return clients.iter().map(|c| c.sent).sum();
            }
            let sent: Vec<bool> = clients.iter_mut().map(|c| c.send(&bursts)).collect();
            for (c, sent) in clients.iter_mut().zip(sent) {
                if sent {
                    c.receive(&bursts);
                }
            }
        }
    }));
    // Loners: 8 clients each sending every 900..=1100 ms.
    for seed in 0..8 {
        let tally = Arc::clone(&tally);
        threads.push(thread::spawn(move || {
            let mut c = Counting::new(addr);
            let mut rng = Prng::new(100 + seed);
            while Instant::now() < end {
                thread::sleep(Duration::from_millis(uniform(&mut rng, 900, 1100)));
                c.request(&tally);
            }
            c.sent
        }));
    }
    let sent: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let took = start.elapsed();
    let m = metrics_after(admin, sent);
    let errors = tally.errors();
    let v =
        |name: &str| server_counter(&m, name, "b", "s0") + server_counter(&m, name, "burst", "s0");
    let (idle_closes, raced) = (
        origin.shared.idle_closes.load(Ordering::SeqCst),
        origin.shared.raced.load(Ordering::SeqCst),
    );
    println!(
        "keep-alive race: {sent} requests in {took:?} ({:.0}/s), errors {errors:?}",
        sent as f64 / took.as_secs_f64()
    );
    println!(
        "  origin: {} connections, {idle_closes} closed idle after 1 s, {raced} of them \
         raced by a request",
        origin.accepted(),
    );
    println!(
        "  proxy: retries {} (burst pool {}), response errors {}, connections {}, \
         reused {}, idle closed by the server {}, expired {}",
        v("retries_total"),
        server_counter(&m, "retries_total", "burst", "s0"),
        v("response_errors_total"),
        v("connections_total"),
        v("pool_reused_total"),
        v("pool_closed_by_server_total"),
        v("pool_expired_total"),
    );
    assert!(errors.is_empty(), "client-visible errors: {errors:?}");
    assert_eq!(tally.oks(), sent);
    // About 2 000 per second were asked for; a starved machine may fall behind.
    assert!(
        sent as f64 >= 1_000.0 * RACE_RUN.as_secs_f64(),
        "the load did not run: {sent} requests"
    );
    // The origin's timer did close pooled connections under the proxy, and requests
    // met connections it was closing.
    assert!(idle_closes > 0 && v("pool_closed_by_server_total") > 0.0);
    assert!(
        raced > 0,
        "no request met a closing connection: the race was not run"
    );
    // Each such request was sent again, never answered 502.
    assert!(
        v("retries_total") >= raced as f64,
        "fewer retries than races the origin saw"
    );
    proxy.shutdown();
}
