//! Health checks end to end: real origins that stop listening and start again, the proxy
//! in-process, its admin socket. What a check decides is read through the admin socket
//! (`show servers state`); what it changes is read on the wire (which origin answers,
//! which session is closed, how many probes an origin receives).
//!
//! Status changes travel from a server's owning shard to every shard on their control
//! tick (50 ms), so the admin socket may show a state a shard applies a tick later. A
//! test that needs the traffic to follow a new state waits for the traffic itself
//! ([`settle_on`]), never for a fixed time.

mod common;

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use ringproxy::runtime::Running;

/// How often a [`Switchable`] origin looks for a new connection.
const ACCEPT_POLL: Duration = Duration::from_millis(2);

/// Bound of any wait for a state the checks reach in well under a second.
const STATE_LIMIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Fixtures.

type Serve = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// An origin whose listening socket a test closes and opens again on the same address,
/// while the connections it accepted go on: its checks are then refused while its
/// established sessions live. Each connection is served by `serve` on its own thread.
struct Switchable {
    addr: SocketAddr,
    serve: Serve,
    accept: Option<(Arc<AtomicBool>, thread::JoinHandle<()>)>,
}

impl Switchable {
    /// Not listening yet: connecting to `addr` is refused until [`Switchable::open`].
    fn closed(serve: Serve) -> Switchable {
        Switchable {
            addr: refused_addr(),
            serve,
            accept: None,
        }
    }

    fn listening(serve: Serve) -> Switchable {
        let mut s = Switchable::closed(serve);
        s.open();
        s
    }

    /// Listens on `addr` (again); connections are accepted once this returns.
    fn open(&mut self) {
        assert!(self.accept.is_none(), "already listening");
        let listener = TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("bind {} again: {e}", self.addr));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, serve) = (Arc::clone(&stop), Arc::clone(&self.serve));
        let handle = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                        let serve = Arc::clone(&serve);
                        thread::spawn(move || serve(conn));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
                    Err(e) => panic!("accept: {e}"),
                }
            }
            // The listener is dropped here: from now on connecting is refused.
        });
        self.accept = Some((stop, handle));
    }

    /// Closes the listening socket (it is closed when this returns); accepted
    /// connections stay open.
    fn close(&mut self) {
        if let Some((stop, handle)) = self.accept.take() {
            stop.store(true, Ordering::SeqCst);
            handle.join().expect("accept thread");
        }
    }
}

impl Drop for Switchable {
    fn drop(&mut self) {
        self.close();
    }
}

/// Writes `greeting`, then echoes until EOF, then closes.
fn echo(greeting: &'static str) -> Serve {
    Arc::new(move |mut conn: TcpStream| {
        if conn.write_all(greeting.as_bytes()).is_err() {
            return;
        }
        if common::echo_until_eof(&mut conn) {
            let _ = conn.shutdown(Shutdown::Write);
        }
    })
}

/// Answers every request with `200` and `name` as body (keep-alive).
fn http_named(name: &'static str) -> Serve {
    Arc::new(move |stream: TcpStream| {
        let mut c = Client {
            stream,
            pending: Vec::new(),
        };
        while let Ok(Some(_)) = read_request(&mut c) {
            if c.stream.write_all(&ok(name)).is_err() {
                return;
            }
        }
        let _ = c.stream.shutdown(Shutdown::Write);
    })
}

/// A recording origin answering `GET /health` with `health` (a status) and every other
/// request with `200` and `name` as body.
fn health_origin(name: &'static str, health: u16) -> Recorder {
    http_origin(move |req, _| {
        if req.start_line().starts_with("GET /health ") {
            format!("HTTP/1.1 {health} Health\r\nContent-Length: 0\r\n\r\n").into_bytes()
        } else {
            ok(name)
        }
    })
}

/// The requests an origin received that were not health probes (probes are `/health`,
/// or send nothing at all for tcp checks).
fn client_requests(origin: &Recorder) -> Vec<String> {
    origin
        .received()
        .iter()
        .flat_map(|bytes| requests_in(bytes))
        .map(|m| m.start_line().to_string())
        .filter(|l| !l.starts_with("GET /health "))
        .collect()
}

/// A unique admin socket path for this test (removed when the proxy stops).
fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "ringproxy-health-{}-{tag}.sock",
        std::process::id()
    ))
}

/// One backend `b` of `mode` behind one frontend, with an admin socket.
struct Setup<'a> {
    tag: &'a str,
    shards: usize,
    mode: &'a str,
    /// Lines of `[[backend]]` (e.g. `check = true`, timeouts).
    backend: &'a str,
    /// Lines of `[backend.health_check]`.
    check: &'a str,
    /// Name, address and extra lines of each server.
    servers: &'a [(&'a str, SocketAddr, &'a str)],
    /// Appended at the end (e.g. another backend).
    extra: &'a str,
}

impl Setup<'_> {
    fn toml(&self, socket: &Path) -> String {
        let mut t = format!(
            "[global]\nshards = {}\npin = false\ngrace = \"1s\"\n\n[admin]\nsocket = \"{}\"\n\n\
             [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nmode = \"{mode}\"\nbackend = \"b\"\n\n\
             [[backend]]\nname = \"b\"\nmode = \"{mode}\"\n{}\n\n[backend.health_check]\n{}\n",
            self.shards,
            socket.display(),
            self.backend,
            self.check,
            mode = self.mode,
        );
        for (name, addr, lines) in self.servers {
            t.push_str(&format!(
                "\n[[backend.server]]\nname = \"{name}\"\naddress = \"{addr}\"\n{lines}\n"
            ));
        }
        t.push_str(self.extra);
        t
    }

    fn start(&self) -> Proxy {
        let socket = socket_path(self.tag);
        let running = proxy(&self.toml(&socket));
        let addr = running.frontend_addrs(0)[0];
        Proxy {
            running: Some(running),
            addr,
            socket,
        }
    }
}

/// The proxy in-process and its admin socket; stopped when dropped.
struct Proxy {
    running: Option<Running>,
    addr: SocketAddr,
    socket: PathBuf,
}

impl Proxy {
    fn admin(&self, command: &str) -> String {
        ringproxy::admin::request(&self.socket, command)
            .unwrap_or_else(|e| panic!("admin {command:?}: {e}"))
    }

    /// `b/s0` → its state, e.g. `UP 3/3`.
    fn state(&self, server: &str) -> String {
        let all = self.admin("show servers state");
        all.lines()
            .find_map(|l| l.strip_prefix(&format!("{server} ")))
            .unwrap_or_else(|| panic!("{server} not in {all:?}"))
            .to_string()
    }

    #[track_caller]
    fn wait_state(&self, server: &str, want: &str) {
        let mut last = String::new();
        let reached = eventually(STATE_LIMIT, || {
            last = self.state(server);
            last == want
        });
        assert!(reached, "{server}: {last:?}, expected {want:?}");
    }

    fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

/// Waits until `who()` answers `expected` twice in a row, then checks that the next ten
/// answers are all `expected`. With two servers in round robin (or a primary and its
/// backup), only a server that alone takes the traffic answers twice in a row: this is
/// how a test knows that every shard applied a new state.
#[track_caller]
fn settle_on(mut who: impl FnMut() -> String, expected: &str) {
    let mut seen = Vec::new();
    let settled = eventually(STATE_LIMIT, || {
        seen.push(who());
        seen.len() >= 2 && seen[seen.len() - 2..].iter().all(|w| w == expected)
    });
    assert!(settled, "never only {expected:?}: {seen:?}");
    let next: Vec<String> = (0..10).map(|_| who()).collect();
    assert!(
        next.iter().all(|w| w == expected),
        "after settling on {expected:?}: {next:?}"
    );
}

/// One request on a new connection: the body of a 200, else the status.
fn ask(addr: SocketAddr) -> String {
    let mut c = Client::new(addr);
    let r = c.exchange("GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    if r.status() == 200 {
        r.payload_str()
    } else {
        r.status().to_string()
    }
}

/// Which server greets a new tcp connection (its first line), or `""` when the proxy
/// closes it without a byte.
fn greeting(addr: SocketAddr) -> String {
    let mut c = connect(addr);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match c.read(&mut b) {
            Ok(0) => break,
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading a greeting: {e}"),
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}

/// A tcp connection through the proxy that has echoed `tag` once.
#[track_caller]
fn tunnel(addr: SocketAddr, tag: &str) -> TcpStream {
    let mut c = connect(addr);
    echo_round_trip(&mut c, tag.as_bytes());
    c
}

#[track_caller]
fn echo_round_trip(c: &mut TcpStream, bytes: &[u8]) {
    c.write_all(bytes).expect("write to the tunnel");
    let mut back = vec![0u8; bytes.len()];
    c.read_exact(&mut back).expect("echo through the tunnel");
    assert_eq!(back, bytes);
}

/// Asserts that the proxy closes `c` (EOF or reset) by `deadline` without sending a byte.
#[track_caller]
fn assert_closed_by(c: &mut TcpStream, deadline: Instant, what: &str) {
    let left = deadline.saturating_duration_since(Instant::now());
    c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 256];
    match c.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "{what}: unexpected bytes {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!("{what}: still open at the deadline")
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// on_marked_down = "shutdown-sessions".

const FAST_CHECKS: &str = "interval = \"200ms\"\nfall = 2";
/// interval × fall + 1 s: when a server whose listener closed must be DOWN and its
/// sessions closed.
const DOWN_BOUND: Duration = Duration::from_millis(200 * 2 + 1000);

#[test]
fn tunnels_to_a_server_marked_down_are_closed_with_shutdown_sessions() {
    let mut origin = Switchable::listening(echo(""));
    let servers = [("s0", origin.addr, "on_marked_down = \"shutdown-sessions\"")];
    let p = Setup {
        tag: "kill-tunnels",
        shards: 2,
        mode: "tcp",
        backend: "check = true",
        check: FAST_CHECKS,
        servers: &servers,
        extra: "",
    }
    .start();
    // Several tunnels, so that both shards likely hold some: every one must be closed.
    let mut tunnels: Vec<TcpStream> = (0..4).map(|i| tunnel(p.addr, &format!("t{i}"))).collect();
    origin.close();
    let deadline = Instant::now() + DOWN_BOUND;
    for (i, t) in tunnels.iter_mut().enumerate() {
        assert_closed_by(t, deadline, &format!("tunnel {i}"));
    }
    assert_eq!(p.state("b/s0"), "DOWN 0/2");
    p.shutdown();
}

#[test]
fn tunnels_to_a_server_marked_down_go_on_without_shutdown_sessions() {
    let mut origin = Switchable::listening(echo(""));
    let servers = [("s0", origin.addr, "")];
    let p = Setup {
        tag: "keep-tunnels",
        shards: 2,
        mode: "tcp",
        backend: "check = true\ntimeout_tunnel = \"3s\"",
        check: FAST_CHECKS,
        servers: &servers,
        extra: "",
    }
    .start();
    let mut t = tunnel(p.addr, "before");
    origin.close();
    let closed_at = Instant::now();
    p.wait_state("b/s0", "DOWN 0/2");
    // Past the time by which shutdown-sessions would have closed it: still relaying.
    thread::sleep(DOWN_BOUND.saturating_sub(closed_at.elapsed()));
    echo_round_trip(&mut t, b"after the mark-down");
    // Then idle: closed by timeout_tunnel (3 s), not before.
    let idle_from = Instant::now();
    assert_closed_by(
        &mut t,
        idle_from + Duration::from_secs(6),
        "idle tunnel after timeout_tunnel",
    );
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(2500),
        "closed after {idle:?} of idleness: before timeout_tunnel"
    );
    p.shutdown();
}

#[test]
fn request_in_flight_to_a_server_marked_down_is_closed_with_shutdown_sessions() {
    // The origin reads the request, reports it, and never answers; it reports when the
    // proxy closes its side. Checks (tcp) connect and close without a byte.
    let (got_tx, got_rx) = mpsc::channel::<String>();
    let (end_tx, end_rx) = mpsc::channel::<()>();
    let mut origin = Switchable::listening(Arc::new(move |stream: TcpStream| {
        let mut c = Client {
            stream,
            pending: Vec::new(),
        };
        if let Ok(Some(req)) = read_request(&mut c) {
            let _ = got_tx.send(req.start_line().to_string());
            let _ = take_to_eof(&mut c);
            let _ = end_tx.send(());
        }
    }));
    let servers = [("s0", origin.addr, "on_marked_down = \"shutdown-sessions\"")];
    let p = Setup {
        tag: "kill-exchange",
        shards: 2,
        mode: "http",
        backend: "check = true\ntimeout_server = \"30s\"",
        check: FAST_CHECKS,
        servers: &servers,
        extra: "",
    }
    .start();
    let mut c = connect(p.addr);
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let line = got_rx.recv_timeout(IO_TIMEOUT).expect("the origin got it");
    assert_eq!(line, "GET /slow HTTP/1.1");
    origin.close();
    let deadline = Instant::now() + DOWN_BOUND;
    assert_closed_by(&mut c, deadline, "client waiting for a response");
    assert_eq!(p.state("b/s0"), "DOWN 0/2");
    // The proxy closed the server connection too.
    end_rx
        .recv_timeout(Duration::from_secs(2))
        .expect("the origin saw its connection closed");
    p.shutdown();
}

// ---------------------------------------------------------------------------------------
// Probes.

#[test]
fn each_server_gets_one_probe_per_interval_whatever_the_number_of_shards() {
    let origins: Vec<Recorder> = (0..3).map(|_| recording_server(|_| {})).collect();
    let servers: Vec<(&str, SocketAddr, &str)> = ["s0", "s1", "s2"]
        .into_iter()
        .zip(&origins)
        .map(|(n, o)| (n, o.addr, ""))
        .collect();
    let p = Setup {
        tag: "probe-rate",
        shards: 2,
        mode: "tcp",
        backend: "check = true",
        check: "interval = \"200ms\"",
        servers: &servers,
        extra: "",
    }
    .start();
    assert!(
        eventually(STATE_LIMIT, || origins.iter().all(|o| o.accepted() >= 1)),
        "every server probed once"
    );
    let before: Vec<usize> = origins.iter().map(Recorder::accepted).collect();
    // A measurement window: 2 s at 200 ms is 10 probes per server (20 if each shard
    // probed every server).
    thread::sleep(Duration::from_secs(2));
    let probes: Vec<usize> = origins
        .iter()
        .zip(&before)
        .map(|(o, b)| o.accepted() - b)
        .collect();
    for (i, n) in probes.iter().enumerate() {
        assert!((6..=14).contains(n), "s{i}: {n} probes in 2 s: {probes:?}");
    }
    p.shutdown();
    for (i, o) in origins.iter().enumerate() {
        settle(o);
        assert_eq!(o.resets(), 0, "s{i}: a probe was closed with a reset");
        assert!(o.received_all().is_empty(), "s{i}: a tcp probe sent bytes");
    }
}

#[test]
fn http_check_sends_the_configured_request_and_marks_by_status() {
    let sick = health_origin("s0", 503);
    let well = health_origin("s1", 200);
    let servers = [("s0", sick.addr, ""), ("s1", well.addr, "")];
    let p = Setup {
        tag: "http-check",
        shards: 1,
        mode: "http",
        backend: "check = true",
        check:
            "type = \"http\"\ninterval = \"200ms\"\npath = \"/health\"\nhost = \"check.example\"\n\
                expect_status = [200]",
        servers: &servers,
        extra: "",
    }
    .start();
    p.wait_state("b/s0", "DOWN 0/2");
    p.wait_state("b/s1", "UP 3/3");
    let probe = requests_in(&well.received()[0]);
    assert_eq!(probe.len(), 1, "one request per probe: {probe:?}");
    assert_eq!(probe[0].start_line(), "GET /health HTTP/1.1");
    assert_eq!(probe[0].header("Host"), Some("check.example"));
    assert_eq!(probe[0].header("Connection"), Some("close"));
    settle_on(|| ask(p.addr), "s1");
    p.shutdown();
    for o in [&sick, &well] {
        settle(o);
        assert_eq!(o.resets(), 0);
    }
}

/// The state of a server after its first http check, `host` being the check's `host`
/// line (or nothing). The server is another ringproxy's http frontend (in front of the
/// built-in origin): like every RFC 9112 server, it answers an HTTP/1.1 request without
/// `Host` with 400.
fn state_after_first_http_check_of_a_ringproxy(tag: &str, host: &str) -> String {
    let origin = BuiltIn::start();
    let (inner, inner_addr) = http_proxy(&[origin.addr()], "", "");
    let servers = [("s0", inner_addr, "")];
    let check = format!("type = \"http\"\ninterval = \"200ms\"\n{host}");
    let p = Setup {
        tag,
        shards: 1,
        mode: "http",
        backend: "check = true",
        check: &check,
        servers: &servers,
        extra: "",
    }
    .start();
    // A checked server starts "UP 1/3" (rise 2, fall 3); the first check moves it.
    let mut state = String::new();
    assert!(
        eventually(STATE_LIMIT, || {
            state = p.state("b/s0");
            state != "UP 1/3"
        }),
        "no check result"
    );
    p.shutdown();
    inner.shutdown();
    state
}

#[test]
fn http_check_with_host_passes_on_a_ringproxy_frontend() {
    assert_eq!(
        state_after_first_http_check_of_a_ringproxy("host-set", "host = \"origin.test\""),
        "UP 3/3"
    );
}

#[test]
fn http_check_without_host_passes_on_a_ringproxy_frontend() {
    assert_eq!(
        state_after_first_http_check_of_a_ringproxy("host-unset", ""),
        "UP 3/3"
    );
}

#[test]
fn checks_go_to_check_port_and_traffic_to_the_address() {
    // s0 serves on `a` and answers checks on `health`; s1 serves on `b`, but its check
    // port is closed: DOWN, although its address would answer. Two shards: s1's owner
    // (shard 1) tells shard 0 too.
    let a = named_server("a");
    let health = recording_server(|_| {});
    let b = named_server("b");
    let closed = refused_addr();
    let s0 = format!("check_port = {}", health.addr.port());
    let s1 = format!("check_port = {}", closed.port());
    let servers = [("s0", a.addr, s0.as_str()), ("s1", b.addr, s1.as_str())];
    let p = Setup {
        tag: "check-port",
        shards: 2,
        mode: "tcp",
        backend: "check = true",
        check: "interval = \"200ms\"",
        servers: &servers,
        extra: "",
    }
    .start();
    p.wait_state("b/s1", "DOWN 0/2");
    // Three probes of s0 (200 ms apart) after s1's first: s1's DOWN has had several
    // control ticks to reach both shards.
    assert!(eventually(STATE_LIMIT, || health.accepted() >= 3));
    assert_eq!(p.state("b/s0"), "UP 3/3");
    assert_eq!(
        (a.accepted(), b.accepted()),
        (0, 0),
        "a probe went to a server's address"
    );
    for i in 0..20 {
        assert_eq!(greeting(p.addr), "a", "client {i}");
    }
    assert_eq!(b.accepted(), 0);
    p.shutdown();
}

#[test]
fn a_server_down_at_start_rises_after_rise_checks_then_takes_traffic() {
    // Fully DOWN: checked every 100 ms; going up: every 600 ms, so the half-way state
    // lasts long enough to be seen.
    let mut origin = Switchable::closed(echo("s0\n"));
    let servers = [("s0", origin.addr, "")];
    let p = Setup {
        tag: "rise",
        shards: 1,
        mode: "tcp",
        backend: "check = true",
        check: "interval = \"200ms\"\ndown_interval = \"100ms\"\nfast_interval = \"600ms\"\n\
                rise = 2\nfall = 3",
        servers: &servers,
        extra: "",
    }
    .start();
    p.wait_state("b/s0", "DOWN 0/2");
    assert_eq!(greeting(p.addr), "", "a DOWN server's client is closed");
    origin.open();
    let mut seen = vec![p.state("b/s0")];
    let up = eventually(STATE_LIMIT, || {
        let s = p.state("b/s0");
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        seen.last().map(String::as_str) == Some("UP 3/3")
    });
    assert!(up, "states seen: {seen:?}");
    assert_eq!(seen, ["DOWN 0/2", "DOWN 1/2", "UP 3/3"]);
    settle_on(|| greeting(p.addr), "s0");
    p.shutdown();
}

// ---------------------------------------------------------------------------------------
// Backup servers.

#[test]
fn backup_takes_traffic_only_while_the_primary_is_down() {
    let mut primary = Switchable::listening(http_named("primary"));
    let backup = health_origin("backup", 200);
    let servers = [
        ("primary", primary.addr, ""),
        ("backup", backup.addr, "backup = true"),
    ];
    let p = Setup {
        tag: "backup",
        shards: 1,
        mode: "http",
        backend: "check = true",
        check: "interval = \"200ms\"\nfall = 2",
        servers: &servers,
        extra: "",
    }
    .start();
    p.wait_state("b/primary", "UP 2/2");
    p.wait_state("b/backup", "UP 2/2");
    for i in 0..10 {
        assert_eq!(ask(p.addr), "primary", "request {i}");
    }
    assert_eq!(client_requests(&backup), Vec::<String>::new());

    primary.close();
    p.wait_state("b/primary", "DOWN 0/2");
    settle_on(|| ask(p.addr), "backup");

    primary.open();
    p.wait_state("b/primary", "UP 2/2");
    settle_on(|| ask(p.addr), "primary");
    p.shutdown();
}

#[test]
fn sessions_on_the_backup_are_closed_when_the_primary_comes_back() {
    let mut primary = Switchable::closed(echo("primary\n"));
    let backup = named_server("backup");
    let servers = [
        (
            "primary",
            primary.addr,
            "on_marked_up = \"shutdown-backup-sessions\"",
        ),
        ("backup", backup.addr, "backup = true"),
    ];
    let p = Setup {
        tag: "backup-kill",
        shards: 1,
        mode: "tcp",
        backend: "check = true",
        check: "interval = \"200ms\"\nfast_interval = \"100ms\"\ndown_interval = \"100ms\"",
        servers: &servers,
        extra: "",
    }
    .start();
    p.wait_state("b/primary", "DOWN 0/2");
    settle_on(|| greeting(p.addr), "backup");
    let mut c = connect(p.addr);
    let mut hello = [0u8; 7];
    c.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"backup\n");
    echo_round_trip(&mut c, b"on the backup");

    primary.open();
    // rise (2) checks 100 ms apart, two control ticks, and a second to spare.
    let deadline = Instant::now() + Duration::from_millis(100 * 3 + 1000);
    assert_closed_by(&mut c, deadline, "tunnel on the backup");
    assert_eq!(p.state("b/primary"), "UP 3/3");
    settle_on(|| greeting(p.addr), "primary");
    p.shutdown();
}

// ---------------------------------------------------------------------------------------
// No usable server.

#[test]
fn http_without_a_usable_server_answers_503() {
    // Listening, but DOWN by its http check: a request must not reach it.
    let origin = health_origin("s0", 500);
    let servers = [("s0", origin.addr, "")];
    let p = Setup {
        tag: "503",
        shards: 1,
        mode: "http",
        backend: "check = true",
        check: "type = \"http\"\ninterval = \"200ms\"\npath = \"/health\"",
        servers: &servers,
        extra: "",
    }
    .start();
    p.wait_state("b/s0", "DOWN 0/2");
    settle_on(|| ask(p.addr), "503");
    let reached = client_requests(&origin).len();
    for _ in 0..3 {
        let mut c = Client::new(p.addr);
        let r = c.exchange(get("/"));
        assert_proxy_error(&r, 503);
        c.assert_eof();
    }
    assert_eq!(
        client_requests(&origin).len(),
        reached,
        "a request reached the DOWN server"
    );
    p.shutdown();
}

#[test]
fn tcp_without_a_usable_server_closes_the_client_without_data() {
    // s0: DOWN by its checks (refused). s1: listening, but in MAINT from the start.
    let parked = named_server("parked");
    let servers = [
        ("s0", refused_addr(), ""),
        ("s1", parked.addr, "disabled = true\ncheck = false"),
    ];
    let p = Setup {
        tag: "tcp-none",
        shards: 1,
        mode: "tcp",
        backend: "check = true",
        check: "interval = \"200ms\"",
        servers: &servers,
        extra: "",
    }
    .start();
    p.wait_state("b/s0", "DOWN 0/2");
    assert_eq!(p.state("b/s1"), "MAINT");
    for i in 0..3 {
        let mut c = connect(p.addr);
        assert_closed_by(
            &mut c,
            Instant::now() + Duration::from_secs(5),
            &format!("client {i}"),
        );
    }
    assert_eq!(parked.accepted(), 0, "a server in MAINT was connected to");
    p.shutdown();
}

// ---------------------------------------------------------------------------------------
// The runtime API.

/// Runs the real binary (bounded to 10 s): exit code, stdout, stderr.
fn run_binary(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringproxy"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringproxy");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringproxy {args:?} still running after 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), out, err)
}

#[test]
fn admin_commands_take_servers_out_and_back() {
    let s0 = path_origin_named("s0");
    let s1 = path_origin_named("s1");
    let servers = [("s0", s0.addr, ""), ("s1", s1.addr, "")];
    let other = format!(
        "\n[[backend]]\nname = \"other\"\n\n[[backend.server]]\nname = \"o0\"\naddress = \"{}\"\n",
        refused_addr()
    );
    let p = Setup {
        tag: "admin",
        shards: 1,
        mode: "http",
        backend: "check = true",
        check: "interval = \"200ms\"",
        servers: &servers,
        extra: &other,
    }
    .start();
    p.wait_state("b/s0", "UP 3/3");
    p.wait_state("b/s1", "UP 3/3");
    assert_eq!(
        p.admin("show servers state"),
        "b/s0 UP 3/3\nb/s1 UP 3/3\nother/o0 UP\n"
    );
    assert_eq!(
        p.admin("show servers state b"),
        "b/s0 UP 3/3\nb/s1 UP 3/3\n"
    );
    assert_eq!(p.admin("show servers state other"), "other/o0 UP\n");
    assert_eq!(
        p.admin("show servers state nope"),
        "No such backend: 'nope'.\n"
    );
    let both = || {
        let answers: BTreeSet<String> = (0..10).map(|_| ask(p.addr)).collect();
        answers.into_iter().collect::<Vec<_>>()
    };
    assert_eq!(both(), ["s0", "s1"]);

    assert_eq!(p.admin("set server b/s1 state maint"), "");
    assert_eq!(p.state("b/s1"), "MAINT");
    settle_on(|| ask(p.addr), "s0");

    assert_eq!(p.admin("set server b/s1 state ready"), "");
    p.wait_state("b/s1", "UP 3/3");
    assert!(eventually(STATE_LIMIT, || ask(p.addr) == "s1"));
    assert_eq!(both(), ["s0", "s1"]);

    assert_eq!(p.admin("set server b/s1 state drain"), "");
    p.wait_state("b/s1", "DRAIN 3/3");
    settle_on(|| ask(p.addr), "s0");

    assert_eq!(p.admin("set server b/s1 state ready"), "");
    assert!(eventually(STATE_LIMIT, || ask(p.addr) == "s1"));

    assert_eq!(p.admin("disable server b/s0"), "");
    assert_eq!(p.state("b/s0"), "MAINT");
    settle_on(|| ask(p.addr), "s1");

    assert_eq!(p.admin("enable server b/s0"), "");
    p.wait_state("b/s0", "UP 3/3");
    assert!(eventually(STATE_LIMIT, || ask(p.addr) == "s0"));
    assert_eq!(both(), ["s0", "s1"]);

    // Errors are one line each, and change nothing.
    assert_eq!(
        p.admin("frobnicate"),
        "Unknown command: 'frobnicate' (try 'help').\n"
    );
    assert_eq!(
        p.admin("set server b/s1 state asleep"),
        "'set server <b>/<s> state' expects 'ready', 'drain' or 'maint'.\n"
    );
    assert_eq!(
        p.admin("disable server b/nope"),
        "No such server: 'b/nope' (write backend/server).\n"
    );
    assert!(p.admin("help").contains("show servers state"));
    // Several commands on one line, joined with ';'.
    assert_eq!(
        p.admin("show servers state other; show servers state other"),
        "other/o0 UP\nother/o0 UP\n"
    );

    // The same through the binary.
    let socket = p.socket.to_str().expect("UTF-8 temp path");
    let (code, out, err) = run_binary(&["status", "-s", socket]);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(out, "b/s0 UP 3/3\nb/s1 UP 3/3\nother/o0 UP\n");
    let (code, out, err) = run_binary(&["status", "-s", socket, "--backend", "other"]);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(out, "other/o0 UP\n");
    let (code, out, err) = run_binary(&["admin", "-s", socket, "disable", "server", "b/s1"]);
    assert_eq!((code, out.as_str()), (Some(0), ""), "stderr: {err}");
    assert_eq!(p.state("b/s1"), "MAINT");
    settle_on(|| ask(p.addr), "s0");

    let socket_file = p.socket.clone();
    p.shutdown();
    assert!(!socket_file.exists(), "the admin socket outlived the proxy");
    let missing = socket_path("admin-missing");
    let missing = missing.to_str().unwrap();
    let (code, out, err) = run_binary(&["status", "-s", missing]);
    assert_eq!(code, Some(1), "stdout: {out}");
    assert_eq!(out, "");
    assert!(
        err.contains("cannot reach the admin socket") && err.contains(missing),
        "stderr: {err}"
    );
}

#[test]
fn admin_socket_is_private_replaces_a_stale_file_and_refuses_a_live_one() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let path = socket_path("admin-bind");
    // A socket file left behind by a process that is gone: nothing listens on it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let toml = |p: &Path| {
        format!(
            "[global]\nshards = 1\npin = false\ngrace = \"1s\"\n\n[admin]\nsocket = \"{}\"\n\n\
             [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
             [[backend]]\nname = \"b\"\n\n[[backend.server]]\nname = \"s0\"\naddress = \"{}\"\n",
            p.display(),
            refused_addr()
        )
    };
    let first = proxy(&toml(&path));
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        ringproxy::admin::request(&path, "show servers state").unwrap(),
        "b/s0 UP\n"
    );
    // A second proxy on the same socket does not start, and leaves the first one's alone.
    let config = ringproxy::config::Config::parse(&toml(&path), Path::new("second.toml")).unwrap();
    match ringproxy::runtime::start(config) {
        Ok(second) => {
            second.shutdown();
            panic!("a second proxy started on a live admin socket");
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains(&path.display().to_string()), "{shown}");
        }
    }
    assert_eq!(
        ringproxy::admin::request(&path, "show servers state").unwrap(),
        "b/s0 UP\n"
    );
    first.shutdown();
    assert!(!path.exists());
}

#[test]
fn status_finds_the_socket_in_the_configuration() {
    let origin = path_origin_named("s0");
    let servers = [("s0", origin.addr, "")];
    let setup = Setup {
        tag: "status-config",
        shards: 1,
        mode: "http",
        backend: "",
        check: "",
        servers: &servers,
        extra: "",
    };
    let p = setup.start();
    let dir = std::env::temp_dir();
    let with_socket = dir.join(format!(
        "ringproxy-health-{}-status.toml",
        std::process::id()
    ));
    std::fs::write(&with_socket, setup.toml(&p.socket)).unwrap();
    let without = dir.join(format!(
        "ringproxy-health-{}-status-none.toml",
        std::process::id()
    ));
    std::fs::write(&without, "[global]\npin = false\n").unwrap();
    let (code, out, err) = run_binary(&["status", "-c", with_socket.to_str().unwrap()]);
    let (code_none, out_none, err_none) = run_binary(&["status", "-c", without.to_str().unwrap()]);
    let _ = std::fs::remove_file(&with_socket);
    let _ = std::fs::remove_file(&without);
    p.shutdown();
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "b/s0 UP\n"),
        "stderr: {err}"
    );
    assert_eq!(code_none, Some(2), "stdout: {out_none}");
    assert!(err_none.contains("sets no [admin] socket"), "{err_none}");
}

/// An origin answering every request with `200` and `name` (keep-alive).
fn path_origin_named(name: &'static str) -> Recorder {
    http_origin(move |_, _| ok(name))
}

#[test]
fn maint_closes_the_servers_idle_pooled_connections_with_a_fin() {
    let origin = path_origin_named("s0");
    let servers = [("s0", origin.addr, "")];
    let p = Setup {
        tag: "pool-purge",
        shards: 1,
        mode: "http",
        backend: "pool_idle_timeout = \"60s\"",
        check: "",
        servers: &servers,
        extra: "",
    }
    .start();
    let mut c = Client::new(p.addr);
    assert_eq!(c.exchange(get("/")).payload_str(), "s0");
    // The server connection is idle in the pool now (60 s before it would expire).
    assert_eq!(origin.accepted(), 1);
    assert_eq!(origin.finished(), 0);
    assert_eq!(p.admin("set server b/s0 state maint"), "");
    assert!(
        eventually(Duration::from_secs(2), || origin.finished() == 1),
        "the idle connection of a server in MAINT is still open"
    );
    assert_eq!(origin.resets(), 0, "closed with a reset");
    // And nothing goes to it any more.
    let r = c.exchange(get("/"));
    assert_proxy_error(&r, 503);
    assert_eq!(origin.accepted(), 1);
    p.shutdown();
}

#[test]
fn pooled_idle_connections_of_a_server_marked_down_by_its_checks_are_closed_with_a_fin() {
    // Healthy until told otherwise; then its checks get 503.
    let sick = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&sick);
    let origin = http_origin(move |req, _| {
        if req.start_line().starts_with("GET /health ") {
            let status = if flag.load(Ordering::SeqCst) {
                503
            } else {
                200
            };
            format!("HTTP/1.1 {status} Health\r\nContent-Length: 0\r\n\r\n").into_bytes()
        } else {
            ok("s0")
        }
    });
    let servers = [("s0", origin.addr, "")];
    let p = Setup {
        tag: "pool-purge-down",
        shards: 1,
        mode: "http",
        backend: "check = true\npool_idle_timeout = \"60s\"",
        check: "type = \"http\"\npath = \"/health\"\nhost = \"h\"\ninterval = \"200ms\"",
        servers: &servers,
        extra: "",
    }
    .start();
    p.wait_state("b/s0", "UP 3/3");
    let mut c = Client::new(p.addr);
    assert_eq!(c.exchange(get("/")).payload_str(), "s0");
    // Probes come and go; the pooled connection stays open.
    assert!(origin.finished() < origin.accepted());
    sick.store(true, Ordering::SeqCst);
    p.wait_state("b/s0", "DOWN 0/2");
    assert!(
        eventually(Duration::from_secs(2), || origin.finished()
            == origin.accepted()),
        "the idle connection of a server marked DOWN is still open"
    );
    let r = c.exchange(get("/"));
    assert_proxy_error(&r, 503);
    p.shutdown();
    settle(&origin);
    assert_eq!(origin.resets(), 0, "closed with a reset");
    assert_eq!(client_requests(&origin), ["GET / HTTP/1.1"]);
}

#[test]
fn shutdown_sessions_closes_the_servers_tunnels_only() {
    let s0 = named_server("s0");
    let s1 = named_server("s1");
    let servers = [("s0", s0.addr, ""), ("s1", s1.addr, "")];
    let p = Setup {
        tag: "shutdown-sessions",
        shards: 2,
        mode: "tcp",
        backend: "",
        check: "",
        servers: &servers,
        extra: "",
    }
    .start();
    // Round robin per shard: open tunnels until each server holds at least two.
    let mut on = [Vec::new(), Vec::new()];
    for _ in 0..40 {
        if on.iter().all(|v| v.len() >= 2) {
            break;
        }
        let mut c = connect(p.addr);
        let mut hello = [0u8; 3];
        c.read_exact(&mut hello).unwrap();
        let i = match &hello {
            b"s0\n" => 0,
            b"s1\n" => 1,
            other => panic!("greeting {other:?}"),
        };
        on[i].push(c);
    }
    assert!(on.iter().all(|v| v.len() >= 2), "tunnels per server");
    assert_eq!(p.admin("shutdown sessions server b/s0"), "");
    let deadline = Instant::now() + Duration::from_secs(2);
    for (i, c) in on[0].iter_mut().enumerate() {
        assert_closed_by(c, deadline, &format!("tunnel {i} on s0"));
    }
    for c in &mut on[1] {
        echo_round_trip(c, b"still here");
    }
    // The server itself still takes new sessions.
    assert_eq!(p.state("b/s0"), "UP");
    assert!(eventually(STATE_LIMIT, || greeting(p.addr) == "s0"));
    p.shutdown();
}

// ---------------------------------------------------------------------------------------
// Passive checks.

#[test]
fn layer7_errors_mark_the_server_down_at_error_limit() {
    let failing = http_origin(|_, _| {
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail".to_vec()
    });
    let good = path_origin_named("good");
    let servers = [("s0", failing.addr, ""), ("s1", good.addr, "")];
    // Checks every 10 s: s0's first check passes at start (tcp), the next would come
    // long after this test.
    let p = Setup {
        tag: "observe",
        shards: 1,
        mode: "http",
        backend: "check = true\nobserve = \"layer7\"\nerror_limit = 3\non_error = \"mark-down\"",
        check: "interval = \"10s\"",
        servers: &servers,
        extra: "",
    }
    .start();
    p.wait_state("b/s0", "UP 3/3");
    let mut errors = 0;
    for i in 0..20 {
        let a = ask(p.addr);
        if a == "500" {
            errors += 1;
            if errors == 2 {
                // One short of error_limit: nothing happens.
                assert!(
                    !eventually(Duration::from_millis(300), || p.state("b/s0") != "UP 3/3"),
                    "marked after 2 errors: {}",
                    p.state("b/s0")
                );
            }
            if errors == 3 {
                break;
            }
        } else {
            assert_eq!(a, "good", "request {i}");
        }
    }
    assert_eq!(errors, 3);
    p.wait_state("b/s0", "DOWN 0/2");
    // One shard: the shard that counted the errors applies the verdict in the same
    // control tick that reports it, so from now on every request goes to s1.
    for i in 0..10 {
        assert_eq!(ask(p.addr), "good", "request {i} after the mark-down");
    }
    assert_eq!(client_requests(&failing).len(), 3);
    p.shutdown();
}
