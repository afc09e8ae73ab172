//! TLS end to end, on real sockets with certificates made at test time (see
//! `common/tls.rs`):
//!
//! - termination on a frontend: certificate choice by SNI (exact and wildcard names, the
//!   first certificate as default), chains, session resumption (TLS 1.3 tickets on one
//!   and on two shards, TLS 1.2 session ids and tickets), `min_version`, ALPN, the
//!   handshake timeout, and 64 MiB each way through a TLS-terminating tcp frontend;
//! - TLS to backends: verification against a CA with or without SNI, refusals (expired,
//!   wrong name, unknown CA) as a 502 that says "TLS", `verify = "none"`, pooled TLS
//!   connections shared by one-shot clients, and `sni_from_host` keeping one connection
//!   per TLS identity;
//! - configuration: bad certificate files refused by `Config::parse`, naming the file.

mod common;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::http::*;
use common::tls::*;
use common::*;
use ringproxy::config::Config;
use ringproxy::runtime::Running;
use rustls::{HandshakeKind, ProtocolVersion};

/// A proxy with one TLS-terminating frontend "f" in front of backend "b" (same mode).
struct Front<'a> {
    shards: usize,
    /// "http" or "tcp".
    mode: &'a str,
    /// `frontend.tls.certificates`, in order (the first is the default).
    certs: &'a [&'a Leaf],
    /// More lines of `[frontend.tls]`.
    tls: &'a str,
    /// More lines of the `[[frontend]]` table.
    frontend: &'a str,
    /// Lines of `[defaults]`.
    defaults: &'a str,
}

impl<'a> Front<'a> {
    fn http(certs: &'a [&'a Leaf]) -> Front<'a> {
        Front {
            shards: 1,
            mode: "http",
            certs,
            tls: "",
            frontend: "",
            defaults: "",
        }
    }

    fn toml(&self, servers: &[SocketAddr]) -> String {
        let global = GLOBAL.replace("shards = 1", &format!("shards = {}", self.shards));
        let certs: Vec<String> = self.certs.iter().map(|l| l.toml()).collect();
        format!(
            "{global}\n[defaults]\n{defaults}\n\n\
             [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nmode = \"{mode}\"\nbackend = \"b\"\n{frontend}\n\
             [frontend.tls]\ncertificates = [{certs}]\n{tls}\n\n\
             [[backend]]\nname = \"b\"\nmode = \"{mode}\"\n{servers}",
            defaults = self.defaults,
            mode = self.mode,
            frontend = self.frontend,
            certs = certs.join(", "),
            tls = self.tls,
            servers = servers_toml(servers),
        )
    }

    fn start(&self, servers: &[SocketAddr]) -> (Running, SocketAddr) {
        let running = proxy(&self.toml(servers));
        let addr = running.frontend_addrs(0)[0];
        (running, addr)
    }
}

/// The `tls = { ... }` line of a backend: enabled, trusting `pki`'s CA, plus `extra`
/// (e.g. `sni = "origin.test"`).
fn backend_tls(pki: &Pki, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { ", " };
    format!(
        "tls = {{ enabled = true, ca = {}{sep}{extra} }}",
        toml_path(&pki.ca_pem)
    )
}

/// A plain http frontend in front of backend "b" with its `backend` lines and `origin`.
fn tls_backend_proxy(shards: usize, backend: &str, origin: SocketAddr) -> (Running, SocketAddr) {
    http_proxy_with(shards, "", backend, &servers_toml(&[origin]))
}

fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

fn get_host(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

#[track_caller]
fn connect_ok(
    addr: SocketAddr,
    sni: Option<&str>,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> TlsClient {
    tls_connect(addr, sni, config).unwrap_or_else(|e| panic!("handshake with SNI {sni:?}: {e}"))
}

/// One GET of `path` over `c`, answered 200 with the path (by [`path_origin`]).
#[track_caller]
fn assert_path_served(c: &mut TlsClient, path: &str) {
    let r = c.exchange(get(path));
    assert_eq!(r.status(), 200, "{:?}", r.head);
    assert_eq!(r.payload_str(), path);
}

// ---------------------------------------------------------------------------------------
// Certificate selection.

#[test]
fn sni_selects_the_matching_certificate_among_three() {
    let pki = Pki::new("sni");
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["b.test"]);
    let wild = pki.leaf("wild", &["*.wild.test"]);
    let origin = path_origin();
    let (proxy, addr) = Front::http(&[&a, &b, &wild]).start(&[origin.addr]);
    for (sni, leaf, path) in [
        ("a.test", &a, "/a"),
        ("b.test", &b, "/b"),
        ("x.wild.test", &wild, "/x"),
    ] {
        // A fresh client config each time: no session to resume.
        let config = client_config(&pki, BOTH, &[]);
        let mut c = connect_ok(addr, Some(sni), &config);
        assert!(
            c.peer_leaf() == leaf.der,
            "SNI {sni}: the proxy presented another certificate"
        );
        assert!(valid_for(&c.peer_leaf(), sni), "{sni}");
        assert_path_served(&mut c, path);
    }
    proxy.shutdown();
}

#[test]
fn missing_or_unknown_sni_gets_the_first_certificate() {
    let pki = Pki::new("default");
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["b.test"]);
    let wild = pki.leaf("wild", &["*.wild.test"]);
    let origin = path_origin();
    // The first certificate is the default, whichever it is.
    for (order, default) in [([&a, &b, &wild], &a), ([&wild, &b, &a], &wild)] {
        let (proxy, addr) = Front::http(&order).start(&[origin.addr]);
        // No SNI; a name no certificate has; the wildcard's parent, and a name two
        // labels under it (a wildcard stands for exactly one label).
        for sni in [
            None,
            Some("unknown.test"),
            Some("wild.test"),
            Some("y.x.wild.test"),
        ] {
            let config = client_config(&pki, BOTH, &[]);
            let mut c = connect_ok(addr, sni, &config);
            assert!(
                c.peer_leaf() == default.der,
                "SNI {sni:?}: not the first certificate"
            );
            assert_path_served(&mut c, "/default");
        }
        // A known name still gets its own.
        let config = client_config(&pki, BOTH, &[]);
        let c = connect_ok(addr, Some("b.test"), &config);
        assert!(c.peer_leaf() == b.der, "b.test");
        drop(c);
        proxy.shutdown();
    }
}

#[test]
fn certificate_file_holding_a_chain_sends_the_intermediate() {
    let pki = Pki::new("chain");
    let leaf = pki.chained_leaf("chained", &["chain.test"]);
    let origin = path_origin();
    let (proxy, addr) = Front::http(&[&leaf]).start(&[origin.addr]);
    // The client trusts only the root: the handshake succeeds only with the
    // intermediate sent after the leaf.
    let config = client_config(&pki, BOTH, &[]);
    let mut c = connect_ok(addr, Some("chain.test"), &config);
    assert!(
        c.peer_chain() == leaf.chain(),
        "chain sent is not leaf + intermediate"
    );
    assert_path_served(&mut c, "/chain");
    drop(c);
    proxy.shutdown();
}

// ---------------------------------------------------------------------------------------
// Resumption.

/// How a handshake went, HelloRetryRequest or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handshake {
    Full,
    Resumed,
}

impl From<HandshakeKind> for Handshake {
    fn from(k: HandshakeKind) -> Handshake {
        match k {
            HandshakeKind::Resumed => Handshake::Resumed,
            _ => Handshake::Full,
        }
    }
}

/// Connects `n` times with one client config (so one session cache), doing one exchange
/// on each (which also reads any TLS 1.3 tickets); returns how each handshake went and
/// its version.
fn connect_n_times(
    addr: SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
    n: usize,
) -> Vec<(Handshake, ProtocolVersion)> {
    (0..n)
        .map(|i| {
            let mut c = connect_ok(addr, Some("a.test"), config);
            assert_path_served(&mut c, &format!("/{i}"));
            let seen = (c.handshake_kind().into(), c.version());
            c.close();
            seen
        })
        .collect()
}

#[test]
fn tls13_session_resumes_on_one_shard() {
    let pki = Pki::new("resume13");
    let a = pki.leaf("a", &["a.test"]);
    let origin = path_origin();
    let (proxy, addr) = Front {
        tls: "tickets = true",
        ..Front::http(&[&a])
    }
    .start(&[origin.addr]);
    let config = client_config(&pki, TLS13_ONLY, &[]);
    let seen = connect_n_times(addr, &config, 2);
    assert_eq!(
        seen,
        [
            (Handshake::Full, ProtocolVersion::TLSv1_3),
            (Handshake::Resumed, ProtocolVersion::TLSv1_3)
        ]
    );
    proxy.shutdown();
}

#[test]
fn tls12_session_resumes_by_session_id_or_ticket_and_not_when_both_are_off() {
    let pki = Pki::new("resume12");
    let a = pki.leaf("a", &["a.test"]);
    let origin = path_origin();
    for (tls, second) in [
        ("session_cache = 4096\ntickets = false", Handshake::Resumed),
        ("session_cache = 0\ntickets = true", Handshake::Resumed),
        ("session_cache = 0\ntickets = false", Handshake::Full),
    ] {
        let (proxy, addr) = Front {
            tls,
            ..Front::http(&[&a])
        }
        .start(&[origin.addr]);
        let config = client_config(&pki, TLS12_ONLY, &[]);
        let seen = connect_n_times(addr, &config, 2);
        assert_eq!(
            seen,
            [
                (Handshake::Full, ProtocolVersion::TLSv1_2),
                (second, ProtocolVersion::TLSv1_2)
            ],
            "with {tls:?}"
        );
        proxy.shutdown();
    }
}

#[test]
fn tls13_tickets_resume_on_every_shard() {
    // Connections land on either shard (SO_REUSEPORT hashes each one): with the ticket
    // key shared, every connection after the first resumes, whichever shard issued the
    // ticket it presents. No session cache: tickets alone must do it.
    let pki = Pki::new("resume-shards");
    let a = pki.leaf("a", &["a.test"]);
    let origin = path_origin();
    let (proxy, addr) = Front {
        shards: 2,
        tls: "session_cache = 0\ntickets = true",
        ..Front::http(&[&a])
    }
    .start(&[origin.addr]);
    let config = client_config(&pki, TLS13_ONLY, &[]);
    let seen = connect_n_times(addr, &config, 16);
    let kinds: Vec<Handshake> = seen.iter().map(|s| s.0).collect();
    assert_eq!(kinds[0], Handshake::Full);
    assert!(
        kinds[1..].iter().all(|k| *k == Handshake::Resumed),
        "not all resumed: {kinds:?}"
    );
    proxy.shutdown();
}

// ---------------------------------------------------------------------------------------
// Versions and ALPN.

#[test]
fn min_version_13_refuses_a_tls12_only_client() {
    let pki = Pki::new("minver");
    let a = pki.leaf("a", &["a.test"]);
    let origin = path_origin();
    // By default TLS 1.2 is accepted: the TLS-1.2-only client works.
    let (proxy, addr) = Front::http(&[&a]).start(&[origin.addr]);
    let mut c = connect_ok(addr, Some("a.test"), &client_config(&pki, TLS12_ONLY, &[]));
    assert_eq!(c.version(), ProtocolVersion::TLSv1_2);
    assert_path_served(&mut c, "/12");
    drop(c);
    proxy.shutdown();

    let (proxy, addr) = Front {
        tls: "min_version = \"1.3\"",
        ..Front::http(&[&a])
    }
    .start(&[origin.addr]);
    let refused = tls_connect(addr, Some("a.test"), &client_config(&pki, TLS12_ONLY, &[]));
    assert!(
        refused.is_err(),
        "a TLS-1.2-only client completed a handshake with min_version = \"1.3\""
    );
    for versions in [TLS13_ONLY, BOTH] {
        let mut c = connect_ok(addr, Some("a.test"), &client_config(&pki, versions, &[]));
        assert_eq!(c.version(), ProtocolVersion::TLSv1_3);
        assert_path_served(&mut c, "/13");
    }
    proxy.shutdown();
}

#[test]
fn alpn_settles_on_http11_in_http_mode_and_on_nothing_in_tcp_mode() {
    let pki = Pki::new("alpn");
    let a = pki.leaf("a", &["a.test"]);
    let origin = path_origin();
    let (proxy, addr) = Front::http(&[&a]).start(&[origin.addr]);
    let config = client_config(&pki, BOTH, &["h2", "http/1.1"]);
    let mut c = connect_ok(addr, Some("a.test"), &config);
    assert_eq!(c.alpn().as_deref(), Some("http/1.1"));
    assert_path_served(&mut c, "/alpn");
    drop(c);
    // A client that offers nothing still gets HTTP/1.1 served.
    let mut c = connect_ok(addr, Some("a.test"), &client_config(&pki, BOTH, &[]));
    assert_eq!(c.alpn(), None);
    assert_path_served(&mut c, "/plain");
    drop(c);
    proxy.shutdown();

    let echo = echo_server();
    let (proxy, addr) = Front {
        mode: "tcp",
        ..Front::http(&[&a])
    }
    .start(&[echo.addr]);
    let mut c = connect_ok(addr, Some("a.test"), &config);
    assert_eq!(c.alpn(), None, "tcp mode negotiated a protocol by default");
    c.send("ping");
    assert_eq!(take(&mut c, 4).expect("echo"), b"ping");
    drop(c);
    proxy.shutdown();
}

// ---------------------------------------------------------------------------------------
// Handshake timeout.

/// Whether the proxy closed `s` (EOF or reset) within `limit`; how long it took.
fn closed_within(s: &mut std::net::TcpStream, limit: Duration) -> (bool, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (true, start.elapsed()),
            // An alert is fine; keep reading to the close.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (true, start.elapsed()),
            Err(_) => return (false, start.elapsed()),
        }
    }
}

#[test]
fn client_silent_during_the_handshake_is_closed_after_timeout_client_handshake() {
    let pki = Pki::new("hs-timeout");
    let a = pki.leaf("a", &["a.test"]);
    let origin = path_origin();
    let line = "timeout_client_handshake = \"300ms\"";
    // On the frontend, and inherited from [defaults].
    for (frontend, defaults) in [(line, ""), ("", line)] {
        let (proxy, addr) = Front {
            frontend,
            defaults,
            ..Front::http(&[&a])
        }
        .start(&[origin.addr]);
        // Says nothing at all.
        let mut silent = connect(addr);
        let (closed, after) = closed_within(&mut silent, Duration::from_secs(5));
        assert!(closed, "silent client still open after {after:?}");
        assert!(
            after >= Duration::from_millis(200),
            "closed after {after:?}: before the timeout"
        );
        // Sends the first bytes of a ClientHello record, then nothing.
        let mut partial = connect(addr);
        partial
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
            .unwrap();
        let (closed, after) = closed_within(&mut partial, Duration::from_secs(5));
        assert!(closed, "stalled ClientHello still open after {after:?}");
        // A completed handshake is not bound by it: idle for longer, then served.
        let mut c = connect_ok(addr, Some("a.test"), &client_config(&pki, BOTH, &[]));
        thread::sleep(Duration::from_secs(1));
        assert_path_served(&mut c, "/after-idle");
        drop(c);
        proxy.shutdown();
    }
}

#[test]
fn a_tls_client_idle_past_the_buffer_hold_is_served() {
    let pki = Pki::new("idle-hold");
    let a = pki.leaf("a", &["a.test"]);
    let origin = path_origin();
    let (proxy, addr) = Front::http(&[&a]).start(&[origin.addr]);
    let mut c = connect_ok(addr, Some("a.test"), &client_config(&pki, BOTH, &[]));
    assert_path_served(&mut c, "/first");
    thread::sleep(Duration::from_millis(1500));
    assert_path_served(&mut c, "/after-idle");
    assert_path_served(&mut c, "/again");
    drop(c);
    proxy.shutdown();
}

#[test]
fn a_request_head_trickled_inside_one_tls_record_is_cut_off_in_time() {
    // The socket's own timeout starts over at every byte, and a TLS read returns only
    // with a whole record: timeout_http_request must still bound the head. (No byte of
    // the request was decrypted, so, as for a plain client that sent nothing, the proxy
    // closes without a 408.)
    let pki = Pki::new("hs-trickle");
    let a = pki.leaf("a", &["a.test"]);
    let origin = path_origin();
    let (proxy, addr) = Front {
        frontend: "timeout_http_request = \"1s\"",
        ..Front::http(&[&a])
    }
    .start(&[origin.addr]);
    let mut c = connect_ok(addr, Some("a.test"), &client_config(&pki, BOTH, &[]));
    // One record holding a whole request, sent a byte every 100 ms (it would take
    // several seconds).
    c.stream
        .conn
        .writer()
        .write_all(b"GET /slow HTTP/1.1\r\nHost: a.test\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n")
        .unwrap();
    let mut record = Vec::new();
    while c.stream.conn.wants_write() {
        c.stream.conn.write_tls(&mut record).unwrap();
    }
    let start = Instant::now();
    for b in &record[..record.len() - 1] {
        if c.stream.sock.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(4) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the proxy took the trickle for {took:?}"
    );
    match c.fill() {
        Ok(0) | Err(_) => {}
        Ok(_) => panic!(
            "unexpected answer: {:?}",
            String::from_utf8_lossy(&c.pending)
        ),
    }
    assert!(start.elapsed() < Duration::from_secs(4));
    assert_eq!(origin.accepted(), 0, "nothing reached the origin");
    proxy.shutdown();
}

// ---------------------------------------------------------------------------------------
// tcp mode.

#[test]
fn tcp_mode_tls_termination_carries_64_mib_each_way_intact() {
    const LEN: usize = 64 << 20;
    let pki = Pki::new("tcp");
    let a = pki.leaf("a", &["a.test"]);
    let (origin, from_client) = sink_source_server(2, LEN);
    let (proxy, addr) = Front {
        mode: "tcp",
        ..Front::http(&[&a])
    }
    .start(&[origin]);
    let c = connect_ok(addr, Some("a.test"), &client_config(&pki, BOTH, &[]));
    assert!(c.peer_leaf() == a.der);
    // Both directions at once, the client ending its side with close_notify and FIN.
    let got_by_client = c.duplex(1, LEN, IO_TIMEOUT).expect("duplex transfer");
    let got_by_server = from_client
        .recv_timeout(IO_TIMEOUT)
        .expect("the server saw the end of the client's stream");
    assert_eq!(got_by_server, expected(1, LEN), "client -> server");
    assert_eq!(got_by_client, expected(2, LEN), "server -> client");
    proxy.shutdown();
}

// ---------------------------------------------------------------------------------------
// TLS to backends.

#[test]
fn backend_tls_verifies_the_origin_against_the_ca_and_sends_sni() {
    let pki = Pki::new("be-ok");
    let origin = tls_origin(&pki.leaf("origin", &["origin.test"]));
    let (proxy, addr) =
        tls_backend_proxy(1, &backend_tls(&pki, "sni = \"origin.test\""), origin.addr);
    let mut c = Client::new(addr);
    for path in ["/one", "/two"] {
        let r = c.exchange(get(path));
        assert_eq!(r.status(), 200, "{:?}", r.head);
        assert_eq!(r.payload_str(), path);
    }
    drop(c);
    proxy.shutdown();
    origin.settle();
    let conns = origin.connections();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0].sni.as_deref(), Some("origin.test"));
    assert!(conns[0].kind.is_some(), "{conns:?}");
    let paths: Vec<&str> = conns[0].requests.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(paths, ["/one", "/two"]);
}

#[test]
fn backend_tls_without_sni_sends_none_and_checks_only_the_chain() {
    let pki = Pki::new("be-nosni");
    // The name matches nothing the proxy could know: only the chain is checked.
    let origin = tls_origin(&pki.leaf("origin", &["other.test"]));
    let (proxy, addr) = tls_backend_proxy(1, &backend_tls(&pki, ""), origin.addr);
    let r = Client::new(addr).exchange(get("/nosni"));
    assert_eq!(r.status(), 200, "{:?} {:?}", r.head, r.payload_str());
    assert_eq!(r.payload_str(), "/nosni");
    proxy.shutdown();
    origin.settle();
    let conns = origin.connections();
    assert!(!conns.is_empty());
    assert!(conns.iter().all(|c| c.sni.is_none()), "SNI sent: {conns:?}");
}

#[test]
fn backend_certificate_failing_verification_is_a_502_that_says_tls() {
    let pki = Pki::new("be-bad");
    let stranger = Pki::new("be-stranger");
    let cases = [
        ("expired", pki.expired_leaf("expired", &["origin.test"])),
        ("wrong name", pki.leaf("other", &["other.test"])),
        ("unknown CA", stranger.leaf("stranger", &["origin.test"])),
    ];
    for (what, leaf) in &cases {
        let origin = tls_origin(leaf);
        let (proxy, addr) =
            tls_backend_proxy(1, &backend_tls(&pki, "sni = \"origin.test\""), origin.addr);
        let mut c = Client::new(addr);
        let r = c.exchange(get("/refused"));
        assert_proxy_error(&r, 502);
        assert!(
            r.payload_str().contains("TLS"),
            "{what}: the 502 does not say TLS: {:?}",
            r.payload_str()
        );
        drop(c);
        proxy.shutdown();
        origin.settle();
        // The proxy did try, and no handshake completed nor request reached the origin.
        assert!(origin.accepted() >= 1, "{what}: the proxy never connected");
        assert_eq!(
            origin.handshakes(None),
            0,
            "{what}: {:?}",
            origin.connections()
        );
        assert_eq!(origin.requests(), 0, "{what}");
    }
}

#[test]
fn verify_none_accepts_a_wrong_name_and_an_expired_certificate() {
    let pki = Pki::new("be-none");
    for leaf in [
        pki.leaf("other", &["other.test"]),
        pki.expired_leaf("expired", &["origin.test"]),
    ] {
        let origin = tls_origin(&leaf);
        let (proxy, addr) = tls_backend_proxy(
            1,
            &backend_tls(&pki, "sni = \"origin.test\", verify = \"none\""),
            origin.addr,
        );
        let r = Client::new(addr).exchange(get("/unverified"));
        assert_eq!(r.status(), 200, "{:?} {:?}", r.head, r.payload_str());
        assert_eq!(r.payload_str(), "/unverified");
        proxy.shutdown();
        origin.settle();
        // The SNI is still sent.
        let conns = origin.connections();
        assert_eq!(conns[0].sni.as_deref(), Some("origin.test"), "{conns:?}");
    }
}

#[test]
fn one_shot_clients_share_pooled_tls_connections() {
    let pki = Pki::new("be-pool");
    let origin = tls_origin(&pki.leaf("origin", &["origin.test"]));
    let (shards, pool_max_idle) = (2, 1);
    let (proxy, addr) = tls_backend_proxy(
        shards,
        &format!(
            "{}\npool_max_idle = {pool_max_idle}",
            backend_tls(&pki, "sni = \"origin.test\"")
        ),
        origin.addr,
    );
    let clients = 200;
    for i in 0..clients {
        let mut c = Client::new(addr);
        let r = c.exchange(get_close(&format!("/{i}")));
        assert_eq!(r.status(), 200, "client {i}: {:?}", r.head);
        assert_eq!(r.payload_str(), format!("/{i}"));
        c.assert_eof();
    }
    // Sequential clients and a warm pool: one connection per shard carries everything.
    let accepted = origin.accepted();
    assert!(
        accepted <= pool_max_idle * shards,
        "{accepted} TLS connections to the origin for {clients} one-shot clients"
    );
    let full = origin.handshakes(None) - origin.handshakes(Some(HandshakeKind::Resumed));
    assert!(full <= pool_max_idle * shards, "{:?}", origin.connections());
    assert_eq!(origin.requests(), clients);
    proxy.shutdown();
    origin.settle();
    // The pooled connections closed at shutdown answered close_notify unreset.
    assert_eq!(origin.resets(), 0, "{:?}", origin.connections());
}

#[test]
fn tls_server_connections_close_without_reset() {
    // server-close: the proxy closes its TLS connection after every response; the origin
    // answers the proxy's close_notify with its own, which must be read, not reset.
    let pki = Pki::new("be-close");
    let origin = tls_origin(&pki.leaf("origin", &["origin.test"]));
    let (proxy, addr) = tls_backend_proxy(
        1,
        &format!(
            "{}\nkeep_alive = \"server-close\"",
            backend_tls(&pki, "sni = \"origin.test\"")
        ),
        origin.addr,
    );
    let mut c = Client::new(addr);
    for i in 0..20 {
        let r = c.exchange(get(&format!("/{i}")));
        assert_eq!(r.status(), 200, "request {i}: {:?}", r.head);
    }
    drop(c);
    assert!(
        eventually(IO_TIMEOUT, || origin.finished() == 20),
        "{} of 20 origin connections over",
        origin.finished()
    );
    assert_eq!(origin.accepted(), 20, "one connection per request");
    assert_eq!(origin.resets(), 0, "{:?}", origin.connections());
    proxy.shutdown();
}

#[test]
fn sni_from_host_keeps_one_connection_per_host() {
    let pki = Pki::new("be-host");
    let origin = tls_origin(&pki.leaf("origin", &["origin.test", "alt.test"]));
    let (proxy, addr) =
        tls_backend_proxy(1, &backend_tls(&pki, "sni_from_host = true"), origin.addr);
    // The port of the Host is not part of the SNI.
    let hosts = [
        ("origin.test:8443", "origin.test"),
        ("alt.test", "alt.test"),
    ];
    // One-shot clients, hosts alternating.
    for round in 0..3 {
        for (host, _) in hosts {
            let mut c = Client::new(addr);
            let path = format!("/{round}/{host}");
            let r = c.exchange(format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            ));
            assert_eq!(r.status(), 200, "{host}: {:?}", r.head);
            assert_eq!(r.payload_str(), path);
        }
    }
    // Pooled per identity: one connection per host, each reused.
    assert_eq!(origin.accepted(), 2, "{:?}", origin.connections());
    // One client, hosts alternating on its connection.
    let mut c = Client::new(addr);
    for i in 0..4 {
        let (host, _) = hosts[i % 2];
        let path = format!("/ka/{i}");
        let r = c.exchange(get_host(&path, host));
        assert_eq!(r.status(), 200, "{host}: {:?}", r.head);
        assert_eq!(r.payload_str(), path);
    }
    drop(c);
    proxy.shutdown();
    origin.settle();
    let conns = origin.connections();
    assert_eq!(origin.requests(), 10);
    for conn in &conns {
        let sni = conn.sni.as_deref().expect("SNI sent");
        for (host, path) in &conn.requests {
            let bare = host.split(':').next().unwrap_or("");
            assert_eq!(
                bare, sni,
                "{path} (Host {host}) went over a connection made for {sni}"
            );
        }
    }
    let mut snis: Vec<&str> = conns.iter().filter_map(|c| c.sni.as_deref()).collect();
    snis.sort_unstable();
    snis.dedup();
    assert_eq!(snis, ["alt.test", "origin.test"]);
}

#[test]
fn server_tls_table_replaces_the_backends_wholesale() {
    // The backend says TLS with SNI; s0's own table says TLS without SNI (nothing of the
    // backend's is kept), s1's says no TLS at all.
    let pki = Pki::new("be-server");
    let secured = tls_origin(&pki.leaf("origin", &["origin.test"]));
    let plain_origin = path_origin();
    let servers = format!(
        "\n[[backend.server]]\nname = \"s0\"\naddress = \"{}\"\n\
         tls = {{ enabled = true, ca = {} }}\n\
         \n[[backend.server]]\nname = \"s1\"\naddress = \"{}\"\ntls = {{ enabled = false }}\n",
        secured.addr,
        toml_path(&pki.ca_pem),
        plain_origin.addr,
    );
    let (proxy, addr) = http_proxy_with(
        1,
        "",
        &format!(
            "balance = \"roundrobin\"\n{}",
            backend_tls(&pki, "sni = \"origin.test\"")
        ),
        &servers,
    );
    for i in 0..4 {
        let mut c = Client::new(addr);
        let r = c.exchange(get_close(&format!("/{i}")));
        assert_eq!(
            r.status(),
            200,
            "request {i}: {:?} {:?}",
            r.head,
            r.payload_str()
        );
        assert_eq!(r.payload_str(), format!("/{i}"));
    }
    proxy.shutdown();
    secured.settle();
    settle(&plain_origin);
    let conns = secured.connections();
    assert_eq!(secured.requests(), 2, "{conns:?}");
    assert!(
        conns.iter().all(|c| c.sni.is_none()),
        "SNI inherited: {conns:?}"
    );
    // s1 received plain HTTP.
    let plain_requests: usize = plain_origin
        .received()
        .iter()
        .map(|bytes| requests_in(bytes).len())
        .sum();
    assert_eq!(plain_requests, 2);
}

#[test]
fn check_tls_probes_the_server_over_tls() {
    let pki = Pki::new("be-check");
    let origin = tls_origin(&pki.leaf("origin", &["origin.test"]));
    let backend = format!(
        "{}\ncheck = true\ncheck_tls = true\n\n[backend.health_check]\n\
         type = \"http\"\ninterval = \"100ms\"\npath = \"/health\"\n",
        backend_tls(&pki, "sni = \"origin.test\"")
    );
    let (proxy, addr) = tls_backend_proxy(1, &backend, origin.addr);
    // Probes arrive as requests inside completed TLS handshakes.
    let probes = || {
        origin
            .connections()
            .iter()
            .filter(|c| c.kind.is_some())
            .flat_map(|c| c.requests.iter())
            .filter(|(_, path)| path == "/health")
            .count()
    };
    assert!(
        eventually(Duration::from_secs(5), || probes() >= 3),
        "{:?}",
        origin.connections()
    );
    // And the server, checked up, serves.
    let r = Client::new(addr).exchange(get("/served"));
    assert_eq!(r.status(), 200, "{:?} {:?}", r.head, r.payload_str());
    assert_eq!(r.payload_str(), "/served");
    proxy.shutdown();
    origin.settle();
}

#[test]
fn backend_resumption_resumes_new_connections_to_the_same_server() {
    // http_reuse = "never": each one-shot client gets a new server connection, which
    // resumes the session of an earlier one only with `resumption = true`.
    let pki = Pki::new("be-resume");
    for (resumption, later) in [(true, Handshake::Resumed), (false, Handshake::Full)] {
        let origin = tls_origin(&pki.leaf("origin", &["origin.test"]));
        let backend = format!(
            "http_reuse = \"never\"\n{}",
            backend_tls(
                &pki,
                &format!("sni = \"origin.test\", resumption = {resumption}")
            )
        );
        let (proxy, addr) = tls_backend_proxy(1, &backend, origin.addr);
        for i in 0..3 {
            let mut c = Client::new(addr);
            let r = c.exchange(get_close(&format!("/{i}")));
            assert_eq!(r.status(), 200, "{:?} {:?}", r.head, r.payload_str());
            c.assert_eof();
        }
        proxy.shutdown();
        origin.settle();
        let kinds: Vec<Option<Handshake>> = origin
            .connections()
            .iter()
            .map(|c| c.kind.map(Handshake::from))
            .collect();
        assert_eq!(
            kinds,
            [Some(Handshake::Full), Some(later), Some(later)],
            "resumption = {resumption}"
        );
    }
}

#[test]
fn backend_client_certificate_is_presented_to_an_origin_that_requires_one() {
    let pki = Pki::new("be-mtls");
    let client = pki.leaf("proxy-client", &["proxy.test"]);
    let origin = tls_origin_with(&pki.leaf("origin", &["origin.test"]), Some(&pki));
    let with_cert = format!(
        "sni = \"origin.test\", client_cert = {}, client_key = {}",
        toml_path(&client.cert),
        toml_path(&client.key)
    );
    let (proxy, addr) = tls_backend_proxy(1, &backend_tls(&pki, &with_cert), origin.addr);
    let r = Client::new(addr).exchange(get("/mtls"));
    assert_eq!(r.status(), 200, "{:?} {:?}", r.head, r.payload_str());
    assert_eq!(r.payload_str(), "/mtls");
    proxy.shutdown();
    origin.settle();
    let conns = origin.connections();
    assert!(
        conns
            .iter()
            .all(|c| c.client_cert.as_ref() == Some(&client.der)),
        "{conns:?}"
    );

    // Without one, the origin refuses the connection: no request reaches it.
    let origin = tls_origin_with(&pki.leaf("origin", &["origin.test"]), Some(&pki));
    let (proxy, addr) =
        tls_backend_proxy(1, &backend_tls(&pki, "sni = \"origin.test\""), origin.addr);
    let r = Client::new(addr).exchange(get("/anonymous"));
    assert_proxy_error(&r, 502);
    proxy.shutdown();
    origin.settle();
    assert_eq!(origin.requests(), 0, "{:?}", origin.connections());
}

// ---------------------------------------------------------------------------------------
// Configuration.

#[test]
fn bad_certificate_files_are_refused_naming_the_file() {
    let pki = Pki::new("config");
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["b.test"]);
    let missing = pki.dir().join("missing.pem");
    let missing_key = pki.dir().join("missing.key");
    let garbage = pki.write("garbage.pem", "this is not PEM\n");
    let entry = |cert: &Path, key: &Path| {
        format!("{{ cert = {}, key = {} }}", toml_path(cert), toml_path(key))
    };
    let text = |certs: &[String]| {
        format!(
            "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"b\"\n\
             [frontend.tls]\ncertificates = [{}]\n\n\
             [[backend]]\nname = \"b\"\nmode = \"http\"\n\n\
             [[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:7000\"\n",
            certs.join(", ")
        )
    };
    let parse = |t: &str| Config::parse(t, Path::new("test.toml"));
    // The same text with good files loads: what is refused below is the file alone.
    let good = text(&[a.toml(), b.toml()]);
    if let Err(e) = parse(&good) {
        panic!("good certificates refused: {e}");
    }
    let cases: Vec<(&str, Vec<String>, Vec<&Path>)> = vec![
        (
            "key of another certificate",
            vec![entry(&a.cert, &b.key)],
            vec![&a.cert, &b.key],
        ),
        (
            "certificate file missing",
            vec![entry(&missing, &a.key)],
            vec![&missing],
        ),
        (
            "key file missing",
            vec![entry(&a.cert, &missing_key)],
            vec![&missing_key],
        ),
        (
            "no certificate in the PEM (a key)",
            vec![entry(&a.key, &a.key)],
            vec![&a.key],
        ),
        (
            "not PEM at all",
            vec![entry(&garbage, &a.key)],
            vec![&garbage],
        ),
        (
            "second entry bad",
            vec![a.toml(), entry(&missing, &b.key)],
            vec![&missing],
        ),
    ];
    for (what, certs, named) in cases {
        let e = match parse(&text(&certs)) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e,
        };
        let shown = e.to_string();
        assert_eq!(e.key, "frontend.tls.certificates", "{what}: {shown}");
        assert!(
            named.iter().any(|p| shown.contains(p.to_str().unwrap())),
            "{what}: {shown:?} names none of {named:?}"
        );
        assert!(!e.reason.is_empty(), "{what}: no reason");
    }
}
