//! Reload without loss, and a graceful stop under load, through the real binary: `SIGHUP`
//! and `ringproxy reload` (the admin socket) while clients keep sending; an invalid file
//! refused with its reason while the running configuration keeps serving; connections
//! established before a reload finish on the old configuration (kept-alive ones after
//! their next response, tunnels when they end); frontends added and removed.
//!
//! Origins tag their answers ("a", "b") so a client can tell which configuration served
//! it. Every client read is bounded by a timeout; every loop by a count or a deadline.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::http::{self as h, Msg};
use common::process::*;
use common::Recorder;

const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// An origin whose every answer has the body `tag`.
fn tagged(tag: &'static str) -> Recorder {
    h::http_origin(move |_, _| h::ok(tag))
}

fn admin_socket(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "ringproxy-reload-{}-{tag}.sock",
        std::process::id()
    ))
}

/// Two unpinned shards; one http frontend per `(name, bind, origin)`; the admin socket.
fn config(admin: &Path, frontends: &[(&str, SocketAddr, SocketAddr)]) -> String {
    let mut t = format!(
        "[global]\nshards = 2\npin = false\ngrace = \"2s\"\n\n[admin]\nsocket = \"{}\"\n",
        admin.display()
    );
    for (name, bind, origin) in frontends {
        t.push_str(&format!(
            "\n[[frontend]]\nname = \"{name}\"\nbind = [\"{bind}\"]\nmode = \"http\"\nbackend = \"{name}-be\"\n\
             \n[[backend]]\nname = \"{name}-be\"\nmode = \"http\"\n\
             \n[[backend.server]]\nname = \"s\"\naddress = \"{origin}\"\n"
        ));
    }
    t
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts `ringproxy -c FILE` and waits until `addr` accepts.
fn start(cfg: &TempConfig, addr: SocketAddr) -> Proc {
    let mut p = Proc::spawn(&["-c", cfg.arg()]);
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return p;
        }
        if let Some(status) = p.exited() {
            panic!("ringproxy exited early ({status}): {}", p.stderr());
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("the proxy did not accept on {addr} within 5 s");
}

fn hup(p: &Proc) {
    // SAFETY: kill(2) with the pid of a child we own and have not reaped.
    let r = unsafe { libc::kill(p.pid(), libc::SIGHUP) };
    assert_eq!(r, 0, "kill: {}", io::Error::last_os_error());
}

/// `ringproxy reload --socket PATH`.
fn reload_cmd(admin: &Path) -> Run {
    run(&["reload", "--socket", admin.to_str().unwrap()])
}

/// A kept-alive client: one connection, opened again when the proxy closes it between
/// requests (after a response with `Connection: close`).
struct Client {
    addr: SocketAddr,
    conn: Option<h::Client>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, conn: None }
    }

    /// One GET; the response, or what went wrong (then the connection is kept, with
    /// what it received).
    fn get(&mut self) -> io::Result<Msg> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(self.addr)?;
            stream.set_read_timeout(Some(READ_TIMEOUT))?;
            stream.set_nodelay(true)?;
            self.conn = Some(h::Client {
                stream,
                pending: Vec::new(),
            });
        }
        let c = self.conn.as_mut().unwrap();
        c.stream.write_all(h::get("/").as_bytes())?;
        let r = h::read_response(c, false);
        // After an error the connection stays, for the caller to look at.
        let last = matches!(&r, Ok(m) if m.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")));
        if last {
            self.conn = None;
        }
        r
    }
}

/// What a load thread saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    errors: AtomicUsize,
    /// Responses whose body was "b".
    b: AtomicUsize,
}

/// `threads` clients sending GETs in a loop until `stop` (kept alive, or one connection per
/// request with `close`); the first errors are printed.
fn load(
    addr: SocketAddr,
    threads: usize,
    close: bool,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let (stop, tally) = (Arc::clone(stop), Arc::clone(tally));
            thread::spawn(move || {
                let mut c = Client::new(addr);
                while !stop.load(Ordering::Relaxed) {
                    if close {
                        c.conn = None;
                    }
                    match c.get() {
                        Ok(m) if m.status() == 200 => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            if m.payload_str() == "b" {
                                tally.b.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        other => {
                            let n = tally.errors.fetch_add(1, Ordering::Relaxed);
                            if n < 5 {
                                eprintln!(
                                    "client error: {:?}",
                                    other.map(|m| m.start_line().to_string())
                                );
                            }
                            c.conn = None;
                        }
                    }
                }
            })
        })
        .collect()
}

/// The body a new connection gets.
fn fresh_body(addr: SocketAddr) -> String {
    let m = Client::new(addr)
        .get()
        .expect("a response on a new connection");
    assert_eq!(m.status(), 200);
    m.payload_str()
}

#[test]
fn twenty_reloads_under_load_lose_nothing() {
    let (a, b) = (tagged("a"), tagged("b"));
    let admin = admin_socket("load");
    let bind = local(free_port());
    let cfg = TempConfig::new("load", &config(&admin, &[("web", bind, a.addr)]));
    let mut p = start(&cfg, bind);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = load(bind, 6, false, &stop, &tally);
    clients.extend(load(bind, 2, true, &stop, &tally));

    let started = Instant::now();
    for i in 0..20 {
        thread::sleep(Duration::from_millis(150));
        let origin = if i % 2 == 0 { b.addr } else { a.addr };
        std::fs::write(&cfg.path, config(&admin, &[("web", bind, origin)])).unwrap();
        if i % 2 == 0 {
            let r = reload_cmd(&admin);
            assert!(r.status.success(), "reload {i}: {} {}", r.stdout, r.stderr);
            assert!(r.stdout.starts_with("reload "), "reload {i}: {}", r.stdout);
        } else {
            hup(&p);
        }
    }
    // The last reload (SIGHUP, back to "a") is applied within the main thread's poll.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, errors, from_b) = (
        tally.ok.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.b.load(Ordering::Relaxed),
    );
    eprintln!(
        "20 reloads in {:?}: {ok} responses, {errors} errors, {from_b} from the second origin",
        started.elapsed()
    );
    assert_eq!(errors, 0, "client-visible errors across reloads");
    assert!(ok > 1000, "too little traffic to mean anything: {ok}");
    assert!(from_b > 0, "no request ever went to the reloaded backend");
    assert_eq!(
        fresh_body(bind),
        "a",
        "new connections use the last configuration"
    );

    // SAFETY: kill(2) with the pid of a child we own and have not reaped.
    unsafe { libc::kill(p.pid(), libc::SIGTERM) };
    let status = p.wait_for_exit(Duration::from_secs(10));
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("ringproxy: reload ") && !l.contains("refused"))
            .count(),
        20,
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn an_invalid_file_is_refused_and_the_running_configuration_stays() {
    let (a, b) = (tagged("a"), tagged("b"));
    let admin = admin_socket("invalid");
    let bind = local(free_port());
    let cfg = TempConfig::new("invalid", &config(&admin, &[("web", bind, a.addr)]));
    let mut p = start(&cfg, bind);
    let mut kept = Client::new(bind);
    assert_eq!(kept.get().unwrap().payload_str(), "a");

    // Line 3 of the file: a duration that is not one.
    let valid = config(&admin, &[("web", bind, b.addr)]);
    let invalid = valid.replace("grace = \"2s\"", "grace = \"soon\"");
    assert_ne!(invalid, valid);
    std::fs::write(&cfg.path, &invalid).unwrap();
    let r = reload_cmd(&admin);
    assert_eq!(r.status.code(), Some(2), "{} {}", r.stdout, r.stderr);
    let expected = format!("{}:4: global.grace: ", cfg.arg());
    assert!(
        r.stderr.starts_with("Reload refused: ") && r.stderr.contains(&expected),
        "the refusal names the file, line and key: {:?}",
        r.stderr
    );
    hup(&p);
    thread::sleep(Duration::from_millis(300));
    // Still the first configuration, on the same connection and on a new one.
    assert_eq!(kept.get().unwrap().payload_str(), "a");
    assert_eq!(fresh_body(bind), "a");

    // Fixed: applied.
    std::fs::write(&cfg.path, &valid).unwrap();
    let r = reload_cmd(&admin);
    assert!(r.status.success(), "{} {}", r.stdout, r.stderr);
    assert_eq!(fresh_body(bind), "b");

    // SAFETY: kill(2) with the pid of a child we own and have not reaped.
    unsafe { libc::kill(p.pid(), libc::SIGTERM) };
    p.wait_for_exit(Duration::from_secs(10));
    let stderr = p.stderr();
    assert!(
        stderr.contains("reload refused, the running configuration stays"),
        "the refused SIGHUP is logged: {stderr}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("ringproxy: reload ") && !l.contains("refused"))
            .count(),
        1,
        "stderr: {stderr}"
    );
}

#[test]
fn established_connections_finish_on_the_old_configuration() {
    let (a, b) = (tagged("a"), tagged("b"));
    let (echo_a, echo_b) = (echo_server(), echo_server());
    let admin = admin_socket("established");
    let (web, tcp) = (local(free_port()), local(free_port()));
    let text = |origin: SocketAddr, echo: SocketAddr| {
        format!(
            "{}\n[[frontend]]\nname = \"tcp\"\nbind = [\"{tcp}\"]\nmode = \"tcp\"\nbackend = \"echo\"\n\
             \n[[backend]]\nname = \"echo\"\nmode = \"tcp\"\n\n[[backend.server]]\nname = \"e\"\naddress = \"{echo}\"\n",
            config(&admin, &[("web", web, origin)])
        )
    };
    let cfg = TempConfig::new("established", &text(a.addr, echo_a));
    let mut p = start(&cfg, web);

    let mut busy = Client::new(web);
    assert_eq!(busy.get().unwrap().payload_str(), "a");
    let mut tunnel = TcpStream::connect(tcp).unwrap();
    tunnel.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let echo = |t: &mut TcpStream, msg: &[u8]| {
        t.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        t.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    };
    echo(&mut tunnel, b"before");

    std::fs::write(&cfg.path, text(b.addr, echo_b)).unwrap();
    let r = reload_cmd(&admin);
    assert!(r.status.success(), "{} {}", r.stdout, r.stderr);

    // The kept-alive connection is answered by the old configuration until the old
    // shards have seen the reload (their next control tick), the last answer marked so,
    // then closed cleanly.
    let mut last = None;
    for _ in 0..50 {
        let m = busy
            .get()
            .expect("a request on a connection from before the reload");
        assert_eq!(m.payload_str(), "a");
        if m.header("connection") == Some("close") {
            last = Some(m);
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        last.is_some(),
        "no Connection: close within 500 ms of the reload"
    );
    assert!(
        busy.conn.is_none(),
        "the client closed after Connection: close"
    );
    // New connections: the new configuration.
    assert_eq!(fresh_body(web), "b");
    // The tunnel goes on, to the same server.
    echo(&mut tunnel, b"after the reload");
    let mut fresh_tunnel = TcpStream::connect(tcp).unwrap();
    fresh_tunnel.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    echo(&mut fresh_tunnel, b"new");
    drop(fresh_tunnel);
    drop(tunnel);

    // SAFETY: kill(2) with the pid of a child we own and have not reaped.
    unsafe { libc::kill(p.pid(), libc::SIGTERM) };
    let status = p.wait_for_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr: {}", p.stderr());
}

#[test]
fn a_reload_adds_and_removes_frontends() {
    let (a, b) = (tagged("a"), tagged("b"));
    let admin = admin_socket("frontends");
    let (one, two) = (local(free_port()), local(free_port()));
    let cfg = TempConfig::new("frontends", &config(&admin, &[("one", one, a.addr)]));
    let mut p = start(&cfg, one);
    assert!(
        TcpStream::connect(two).is_err(),
        "nothing listens on {two} yet"
    );

    std::fs::write(
        &cfg.path,
        config(&admin, &[("one", one, a.addr), ("two", two, b.addr)]),
    )
    .unwrap();
    assert!(reload_cmd(&admin).status.success());
    assert_eq!(fresh_body(one), "a");
    assert_eq!(fresh_body(two), "b");

    std::fs::write(&cfg.path, config(&admin, &[("two", two, b.addr)])).unwrap();
    assert!(reload_cmd(&admin).status.success());
    assert_eq!(fresh_body(two), "b");
    let refused = (0..40).any(|_| {
        let r = TcpStream::connect(one);
        thread::sleep(Duration::from_millis(25));
        matches!(r, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
    });
    assert!(
        refused,
        "{one} still accepts after its frontend was removed"
    );

    // SAFETY: kill(2) with the pid of a child we own and have not reaped.
    unsafe { libc::kill(p.pid(), libc::SIGTERM) };
    p.wait_for_exit(Duration::from_secs(10));
}

#[test]
fn a_stop_under_load_ends_only_between_requests() {
    let a = tagged("a");
    let admin = admin_socket("stop");
    let bind = local(free_port());
    let cfg = TempConfig::new("stop", &config(&admin, &[("web", bind, a.addr)]));
    let mut p = start(&cfg, bind);
    let truncated = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (truncated, closed, ok) =
                (Arc::clone(&truncated), Arc::clone(&closed), Arc::clone(&ok));
            thread::spawn(move || {
                let mut c = Client::new(bind);
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    match c.get() {
                        Ok(m) if m.status() == 200 && m.payload_str() == "a" => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(m) => panic!("unexpected response: {}", m.start_line()),
                        // Refused: the proxy is gone.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
                        Err(e) => {
                            // A close before any byte of a response is the stop between
                            // two requests; anything else is a response cut short.
                            let pending = c.conn.as_ref().map_or(0, |c| c.pending.len());
                            if pending > 0 {
                                truncated.fetch_add(1, Ordering::Relaxed);
                                eprintln!("cut short after {pending} bytes: {e}");
                            } else {
                                closed.fetch_add(1, Ordering::Relaxed);
                            }
                            c.conn = None;
                        }
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) with the pid of a child we own and have not reaped.
    unsafe { libc::kill(p.pid(), libc::SIGTERM) };
    let status = p.wait_for_exit(Duration::from_secs(10));
    for c in clients {
        c.join().unwrap();
    }
    eprintln!(
        "stop under load: {} responses, {} closes between requests, {} cut short",
        ok.load(Ordering::Relaxed),
        closed.load(Ordering::Relaxed),
        truncated.load(Ordering::Relaxed)
    );
    assert_eq!(status.code(), Some(0), "stderr: {}", p.stderr());
    assert!(ok.load(Ordering::Relaxed) > 100);
    assert_eq!(
        truncated.load(Ordering::Relaxed),
        0,
        "responses cut short by the stop"
    );
}

/// `ringproxy admin --socket PATH WORDS...`: its answer (it must succeed).
fn admin_cmd(admin: &Path, words: &str) -> String {
    let mut args = vec!["admin", "--socket", admin.to_str().unwrap()];
    args.extend(words.split(' '));
    let r = run(&args);
    assert!(r.status.success(), "{words}: {} {}", r.stdout, r.stderr);
    r.stdout
}

/// Two shards, one frontend "web" on `bind`, its backend "web-be" with servers "a"
/// (weight `wa`) and "b" on the two origins.
fn two_servers(admin: &Path, bind: SocketAddr, a: SocketAddr, b: SocketAddr, wa: u32) -> String {
    format!(
        "[global]\nshards = 2\npin = false\ngrace = \"2s\"\n\n[admin]\nsocket = \"{}\"\n\
         \n[[frontend]]\nname = \"web\"\nbind = [\"{bind}\"]\nmode = \"http\"\nbackend = \"web-be\"\n\
         \n[[backend]]\nname = \"web-be\"\nmode = \"http\"\n\
         \n[[backend.server]]\nname = \"a\"\naddress = \"{a}\"\nweight = {wa}\n\
         \n[[backend.server]]\nname = \"b\"\naddress = \"{b}\"\n",
        admin.display()
    )
}

/// Server `server`'s weight now, from `show stat` (HAProxy's CSV).
fn weight_of(admin: &Path, server: &str) -> String {
    let csv = admin_cmd(admin, "show stat");
    let (header, rows) = h::stat_table(&csv);
    let column = header.iter().position(|h| *h == "weight").unwrap();
    let row = rows
        .iter()
        .find(|r| r[..2] == ["web-be", server])
        .unwrap_or_else(|| panic!("no row for {server}: {csv}"));
    row[column].to_owned()
}

/// Bodies of `n` requests, each on a new connection (so both shards answer).
fn bodies(addr: SocketAddr, n: usize) -> Vec<String> {
    (0..n).map(|_| fresh_body(addr)).collect()
}

#[test]
fn runtime_states_and_weights_survive_a_reload_unless_the_file_changed_them() {
    let (a, b) = (tagged("a"), tagged("b"));
    let admin = admin_socket("carry");
    let bind = local(free_port());
    let cfg = TempConfig::new("carry", &two_servers(&admin, bind, a.addr, b.addr, 4));
    let mut p = start(&cfg, bind);
    assert!(
        bodies(bind, 8).iter().any(|t| t == "b"),
        "b serves at first"
    );

    // The operator takes b out and halves a's weight; a reload of the same file keeps both.
    assert_eq!(admin_cmd(&admin, "set server web-be/b state maint"), "");
    assert_eq!(admin_cmd(&admin, "set weight web-be/a 50%"), "");
    assert!(bodies(bind, 8).iter().all(|t| t == "a"));
    let r = reload_cmd(&admin);
    assert!(r.status.success(), "{} {}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("runtime weight or state kept for 2 server(s)"),
        "{}",
        r.stdout
    );
    let state = admin_cmd(&admin, "show servers state web-be");
    assert!(state.contains("web-be/b MAINT"), "{state}");
    assert!(bodies(bind, 16).iter().all(|t| t == "a"), "b stayed out");
    assert_eq!(weight_of(&admin, "a"), "2", "a's weight: 50% of 4");

    // A second reload of the same file still keeps them (the record carries on).
    let r = reload_cmd(&admin);
    assert!(r.stdout.contains("kept for 2 server(s)"), "{}", r.stdout);
    assert!(
        bodies(bind, 16).iter().all(|t| t == "a"),
        "b stayed out after reload 2"
    );

    // The file now changes a's weight: the file wins for a (its runtime weight is
    // dropped); b's entry did not change, so it stays in MAINT until the operator says.
    std::fs::write(&cfg.path, two_servers(&admin, bind, a.addr, b.addr, 6)).unwrap();
    let r = reload_cmd(&admin);
    assert!(r.stdout.contains("kept for 1 server(s)"), "{}", r.stdout);
    assert_eq!(weight_of(&admin, "a"), "6");
    assert!(bodies(bind, 16).iter().all(|t| t == "a"), "b still out");
    assert_eq!(admin_cmd(&admin, "enable server web-be/b"), "");
    assert!(bodies(bind, 16).iter().any(|t| t == "b"), "b serves again");

    // SAFETY: kill(2) with the pid of a child we own and have not reaped.
    unsafe { libc::kill(p.pid(), libc::SIGTERM) };
    p.wait_for_exit(Duration::from_secs(10));
}
