//! Backend connection pools end to end: server connections shared by all clients of a
//! shard, reuse policies, safe retries when a server closes an idle connection, the
//! keep-alive modes of each side, and clean (FIN, never RST) closes. Origins are real
//! sockets that count their connections and report any reset they see.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::*;
use common::*;

/// Asserts that every origin connection ended with a FIN from the proxy: none was reset
/// while the origin read it.
fn assert_no_reset(origin: &Recorder) {
    settle(origin);
    assert_eq!(origin.resets(), 0, "the proxy reset an origin connection");
}

/// The paths of the requests each origin connection received, in accept order.
fn paths_by_connection(origin: &Recorder) -> Vec<Vec<String>> {
    origin
        .received()
        .iter()
        .map(|bytes| {
            requests_in(bytes)
                .iter()
                .map(|m| m.start_line().split(' ').nth(1).unwrap_or("").to_string())
                .collect()
        })
        .collect()
}

fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

fn post_close(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
    )
}

/// An origin like Node.js's http server: it closes a connection idle for `idle`
/// (`keepAliveTimeout`), answering each request with its path.
fn node_style_origin(idle: Duration) -> Recorder {
    recording_server(move |c| loop {
        if c.pending.is_empty() {
            c.stream.set_read_timeout(Some(idle)).ok();
            match c.fill() {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            c.stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        }
        let Ok(Some(req)) = read_request(c) else {
            return;
        };
        let path = req.start_line().split(' ').nth(1).unwrap_or("").to_string();
        if c.write_all(&ok(&path)).is_err() {
            return;
        }
    })
}

// ---------------------------------------------------------------------------------------
// The 502 race.

#[test]
fn node_style_idle_close_never_becomes_a_502() {
    // The server closes idle connections after 1 s, the proxy's pool keeps them for
    // 10 s: the proxy must notice closed ones, and retry on a new connection when the
    // server closes one as a request is sent on it. Requests come about every second,
    // with jitter, so some land right at the server's close.
    let origin = node_style_origin(Duration::from_secs(1));
    let (proxy, addr) = http_proxy(&[origin.addr], "", "pool_idle_timeout = \"10s\"");
    let mut rng = Prng::new(7);
    let mut c = Client::new(addr);
    let rounds = 60;
    for i in 0..rounds {
        let r = c.exchange(get(&format!("/r{i}")));
        assert_eq!(r.status(), 200, "round {i}: {:?}", r.head);
        assert_eq!(r.payload_str(), format!("/r{i}"));
        let mut jitter = [0u8; 1];
        rng.fill(&mut jitter);
        // 900..1100 ms.
        std::thread::sleep(Duration::from_millis(
            900 + u64::from(jitter[0]) * 200 / 255,
        ));
    }
    drop(c);
    proxy.shutdown();
    assert_no_reset(&origin);
    // Every request reached the origin; one that reached it twice was a retry, and the
    // retry was the first request of a new connection.
    let conns = paths_by_connection(&origin);
    for i in 0..rounds {
        let path = format!("/r{i}");
        let places: Vec<(usize, usize)> = conns
            .iter()
            .enumerate()
            .flat_map(|(ci, reqs)| {
                reqs.iter()
                    .enumerate()
                    .filter(|(_, p)| **p == path)
                    .map(move |(ri, _)| (ci, ri))
            })
            .collect();
        assert!(!places.is_empty(), "{path} never reached the origin");
        for &(ci, ri) in &places[1..] {
            assert_eq!(
                ri, 0,
                "{path} retried on a connection already used: {conns:?}"
            );
            assert!(ci > places[0].0, "{path} retried on an older connection");
        }
    }
}

#[test]
fn pool_idle_timeout_below_the_servers_closes_first() {
    // Server: 2 s. Proxy pool: 300 ms. The proxy closes each idle connection (FIN)
    // long before the server would, so a request never meets a closing server.
    let origin = node_style_origin(Duration::from_secs(2));
    let (proxy, addr) = http_proxy(&[origin.addr], "", "pool_idle_timeout = \"300ms\"");
    let mut c = Client::new(addr);
    assert_eq!(c.exchange(get("/1")).status(), 200);
    // The origin sees the proxy close its connection well before its own 2 s.
    let start = Instant::now();
    assert!(eventually(IO_TIMEOUT, || origin.finished() == 1));
    assert!(
        start.elapsed() < Duration::from_millis(1800),
        "the proxy did not close the idle connection first ({:?})",
        start.elapsed()
    );
    // The client connection is untouched; the next request opens a new server connection.
    assert_eq!(c.exchange(get("/2")).status(), 200);
    assert_eq!(origin.accepted(), 2);
    drop(c);
    proxy.shutdown();
    assert_no_reset(&origin);
}

#[test]
fn idle_connection_closed_by_the_server_leaves_the_pool_at_once() {
    // The origin answers one request per connection, then closes it (FIN).
    let origin = recording_server(|c| {
        if let Ok(Some(req)) = read_request(c) {
            let path = req.start_line().split(' ').nth(1).unwrap_or("").to_string();
            let _ = c.write_all(&ok(&path));
        }
    });
    let (proxy, addr) = http_proxy(&[origin.addr], "", "pool_idle_timeout = \"60s\"");
    let mut c = Client::new(addr);
    assert_eq!(c.exchange(get("/1")).payload_str(), "/1");
    // The proxy answers the server's FIN with its own at once (no request needed).
    assert!(eventually(Duration::from_secs(2), || origin.finished() == 1));
    // The next request goes straight to a new connection: no retry was needed.
    assert_eq!(c.exchange(get("/2")).payload_str(), "/2");
    drop(c);
    proxy.shutdown();
    assert_no_reset(&origin);
    assert_eq!(paths_by_connection(&origin), [vec!["/1"], vec!["/2"]]);
}

#[test]
fn post_whose_body_reached_a_dying_connection_is_not_replayed() {
    // A first client leaves an idle connection in the pool; the server then reads the
    // next request on it and dies without answering.
    let origin = recording_server(|c| {
        if let Ok(Some(req)) = read_request(c) {
            let path = req.start_line().split(' ').nth(1).unwrap_or("").to_string();
            let _ = c.write_all(&ok(&path));
            let _ = read_request(c);
        }
    });
    let (proxy, addr) = http_proxy(&[origin.addr], "", "http_reuse = \"always\"");
    let mut first = Client::new(addr);
    assert_eq!(first.exchange(get_close("/warm")).status(), 200);
    first.assert_eof();
    let mut c = Client::new(addr);
    let r = c.exchange("POST /pay HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\n12345");
    assert_proxy_error(&r, 502);
    c.assert_eof();
    proxy.shutdown();
    assert_no_reset(&origin);
    // The POST reached the server once, on the reused connection, and never again.
    assert_eq!(paths_by_connection(&origin), [vec!["/warm", "/pay"]]);
}

#[test]
fn get_on_a_dying_reused_connection_is_replayed_on_a_new_one() {
    let origin = recording_server(|c| {
        if let Ok(Some(req)) = read_request(c) {
            let path = req.start_line().split(' ').nth(1).unwrap_or("").to_string();
            let _ = c.write_all(&ok(&path));
            let _ = read_request(c);
        }
    });
    let (proxy, addr) = http_proxy(&[origin.addr], "", "");
    let mut first = Client::new(addr);
    assert_eq!(first.exchange(get_close("/warm")).status(), 200);
    first.assert_eof();
    // A new client's first GET may take the pooled connection (the proxy can retry it).
    let mut c = Client::new(addr);
    assert_eq!(c.exchange(get_close("/x")).payload_str(), "/x");
    c.assert_eof();
    proxy.shutdown();
    assert_no_reset(&origin);
    assert_eq!(
        paths_by_connection(&origin),
        [vec!["/warm", "/x"], vec!["/x"]]
    );
}

// ---------------------------------------------------------------------------------------
// Sharing across clients.

#[test]
fn one_shot_clients_share_pooled_connections() {
    let origin = path_origin();
    let shards = 2;
    let pool_max_idle = 2;
    let (proxy, addr) = http_proxy_on(
        shards,
        &[origin.addr],
        "",
        &format!("pool_max_idle = {pool_max_idle}"),
    );
    for i in 0..500 {
        let mut c = Client::new(addr);
        let r = c.exchange(get_close(&format!("/{i}")));
        assert_eq!(r.status(), 200);
        assert_eq!(r.payload_str(), format!("/{i}"));
        assert_eq!(r.header("Connection"), Some("close"));
        c.assert_eof();
    }
    let accepted = origin.accepted();
    assert!(
        accepted <= pool_max_idle * shards,
        "{accepted} origin connections for 500 one-shot clients"
    );
    // The client's Connection: close never reached the server.
    assert!(!origin
        .received_all()
        .windows(17)
        .any(|w| w.eq_ignore_ascii_case(b"connection: close")));
    proxy.shutdown();
    assert_no_reset(&origin);
}

#[test]
fn http_reuse_policies_decide_which_first_requests_share() {
    // One client sends two GETs (its connection then has served two requests), then
    // two one-shot clients each POST once.
    fn run(policy: &str) -> usize {
        let origin = path_origin();
        let (proxy, addr) = http_proxy(&[origin.addr], "", &format!("http_reuse = \"{policy}\""));
        let mut c = Client::new(addr);
        assert_eq!(c.exchange(get("/a")).status(), 200);
        assert_eq!(c.exchange(get_close("/b")).status(), 200);
        c.assert_eof();
        for p in ["/p1", "/p2"] {
            let mut c = Client::new(addr);
            assert_eq!(c.exchange(post_close(p)).status(), 200);
            c.assert_eof();
        }
        // A later request of a client connection may share under safe too.
        let mut c = Client::new(addr);
        assert_eq!(c.exchange(post_close("/first")).status(), 200);
        let accepted = origin.accepted();
        drop(c);
        proxy.shutdown();
        assert_no_reset(&origin);
        accepted
    }
    // never: every client connection has its own server connection.
    assert_eq!(run("never"), 4);
    // safe: a first POST cannot be retried, so it never takes a shared connection.
    assert_eq!(run("safe"), 4);
    // aggressive: it may take one that has served two requests.
    assert_eq!(run("aggressive"), 1);
    // always: any.
    assert_eq!(run("always"), 1);
}

#[test]
fn later_requests_share_under_safe() {
    let origin = path_origin();
    let (proxy, addr) = http_proxy(&[origin.addr], "", "");
    let mut warm = Client::new(addr);
    assert_eq!(warm.exchange(get_close("/warm")).status(), 200);
    warm.assert_eof();
    // First request (a GET, retryable) and a later POST both go on the pooled one.
    let mut c = Client::new(addr);
    assert_eq!(c.exchange(get("/g")).status(), 200);
    assert_eq!(c.exchange(post_close("/p")).status(), 200);
    c.assert_eof();
    assert_eq!(origin.accepted(), 1);
    proxy.shutdown();
    assert_no_reset(&origin);
}

#[test]
fn server_closing_every_other_response_never_closes_the_client() {
    let origin = recording_server(|c| {
        let mut n = 0;
        while let Ok(Some(req)) = read_request(c) {
            n += 1;
            let path = req.start_line().split(' ').nth(1).unwrap_or("").to_string();
            let mut resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", path.len());
            if n % 2 == 0 {
                resp.push_str("Connection: close\r\n");
            }
            resp.push_str("\r\n");
            resp.push_str(&path);
            if c.write_all(resp.as_bytes()).is_err() || n % 2 == 0 {
                return;
            }
        }
    });
    let (proxy, addr) = http_proxy(&[origin.addr], "", "");
    let mut c = Client::new(addr);
    for i in 0..20 {
        let r = c.exchange(get(&format!("/{i}")));
        assert_eq!(r.status(), 200);
        assert_eq!(r.payload_str(), format!("/{i}"));
        assert_eq!(r.header("Connection"), None, "{:?}", r.head);
    }
    assert_eq!(origin.accepted(), 10);
    // Still open.
    assert_eq!(c.exchange(get("/last")).payload_str(), "/last");
    drop(c);
    proxy.shutdown();
    assert_no_reset(&origin);
}

#[test]
fn pool_max_reuse_closes_a_connection_after_its_requests() {
    let origin = path_origin();
    let (proxy, addr) = http_proxy(&[origin.addr], "", "pool_max_reuse = 3");
    let mut c = Client::new(addr);
    for i in 0..7 {
        assert_eq!(c.exchange(get(&format!("/{i}"))).status(), 200);
    }
    drop(c);
    proxy.shutdown();
    assert_no_reset(&origin);
    assert_eq!(
        paths_by_connection(&origin),
        [vec!["/0", "/1", "/2"], vec!["/3", "/4", "/5"], vec!["/6"]]
    );
}

#[test]
fn prefer_last_server_keeps_a_client_on_its_server() {
    let a = http_origin(|_, _| ok("a"));
    let b = http_origin(|_, _| ok("b"));
    let servers: [SocketAddr; 2] = [a.addr, b.addr];
    // Round robin alternates without it.
    let (proxy, addr) = http_proxy(&servers, "", "");
    let mut c = Client::new(addr);
    let seen: Vec<String> = (0..4).map(|_| c.exchange(get("/")).payload_str()).collect();
    assert_eq!(seen, ["a", "b", "a", "b"]);
    drop(c);
    proxy.shutdown();
    // With it, a client stays on the server of its previous request.
    let (proxy, addr) = http_proxy(&servers, "", "prefer_last_server = true");
    let mut c = Client::new(addr);
    let first = c.exchange(get("/")).payload_str();
    for _ in 0..5 {
        assert_eq!(c.exchange(get("/")).payload_str(), first);
    }
    drop(c);
    proxy.shutdown();
    assert_no_reset(&a);
    assert_no_reset(&b);
}

// ---------------------------------------------------------------------------------------
// Retries.

#[test]
fn retry_on_status_retries_idempotent_requests_on_another_server() {
    let sick = http_origin(|_, _| {
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nsick".to_vec()
    });
    let well = http_origin(|_, _| ok("well"));
    let servers = [sick.addr, well.addr];
    let (proxy, addr) = http_proxy(&servers, "", "retry_on = [503]\nretries = 1");
    let mut c = Client::new(addr);
    // Round robin starts on the sick server; the GET is retried on the other.
    let r = c.exchange(get("/"));
    assert_eq!(r.payload_str(), "well", "{:?}", r.head);
    drop(c);
    proxy.shutdown();
    // A POST is not idempotent: the 503 is the answer.
    let (proxy, addr) = http_proxy(&servers, "", "retry_on = [503]\nretries = 1");
    let mut c = Client::new(addr);
    let r = c.exchange("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(r.status(), 503);
    assert_eq!(r.payload_str(), "sick");
    drop(c);
    proxy.shutdown();
    assert_no_reset(&sick);
    assert_no_reset(&well);
}

#[test]
fn retry_on_empty_response_only_when_listed() {
    // The first server closes every connection without answering.
    let mute = recording_server(|c| {
        let _ = read_request(c);
    });
    let well = http_origin(|_, _| ok("well"));
    let servers = [mute.addr, well.addr];
    let (proxy, addr) = http_proxy(&servers, "", "retry_on = [\"empty-response\"]");
    let mut c = Client::new(addr);
    assert_eq!(c.exchange(get("/")).payload_str(), "well");
    drop(c);
    proxy.shutdown();
    // Not listed (the default is conn-failure only): 502.
    let (proxy, addr) = http_proxy(&servers, "", "");
    let mut c = Client::new(addr);
    assert_proxy_error(&c.exchange(get("/")), 502);
    drop(c);
    proxy.shutdown();
    assert_no_reset(&mute);
    assert_no_reset(&well);
}

#[test]
fn refused_connections_go_to_another_server_within_retries() {
    let well = path_origin();
    let servers = [refused_addr(), well.addr];
    let (proxy, addr) = http_proxy(&servers, "", "retries = 1");
    let mut c = Client::new(addr);
    for i in 0..4 {
        assert_eq!(c.exchange(get(&format!("/{i}"))).status(), 200);
    }
    drop(c);
    proxy.shutdown();
    // retry_on without conn-failure: a refused connection is final.
    let (proxy, addr) = http_proxy(&servers, "", "retry_on = [\"none\"]");
    let mut c = Client::new(addr);
    assert_proxy_error(&c.exchange(get("/")), 503);
    drop(c);
    proxy.shutdown();
    assert_no_reset(&well);
}

// ---------------------------------------------------------------------------------------
// Keep-alive modes, byte by byte.

/// One mode's run: two requests from one client, `request` and then a second one
/// unless the first response closes. Returns (what the origin received on its first
/// connection, the first response, whether the client connection was closed after it,
/// origin connections accepted).
fn mode_run(defaults: &str, frontend: &str, request: &str) -> (String, Msg, bool, usize) {
    let origin = path_origin();
    let (proxy, addr) = http_proxy(&[origin.addr], frontend, defaults);
    let mut c = Client::new(addr);
    let r = c.exchange(request);
    assert_eq!(r.status(), 200, "{:?}", r.head);
    let closed = r.header("Connection") == Some("close")
        || (request.contains("HTTP/1.0") && r.header("Connection").is_none());
    if closed {
        c.assert_eof();
    } else {
        assert_eq!(c.exchange(get("/again")).status(), 200);
        drop(c);
    }
    let accepted = origin.accepted();
    proxy.shutdown();
    assert_no_reset(&origin);
    let first = String::from_utf8_lossy(&origin.received()[0]).into_owned();
    (first, r, closed, accepted)
}

#[test]
fn keep_alive_mode_keeps_both_sides() {
    let (sent, r, closed, accepted) = mode_run("", "", &get("/k"));
    assert_eq!(
        sent,
        "GET /k HTTP/1.1\r\nHost: test\r\n\r\nGET /again HTTP/1.1\r\nHost: test\r\n\r\n"
    );
    assert_eq!(r.head, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    assert!(!closed);
    assert_eq!(accepted, 1);
}

#[test]
fn server_close_mode_closes_only_the_server_side() {
    let (sent, r, closed, accepted) = mode_run("keep_alive = \"server-close\"", "", &get("/s"));
    assert_eq!(
        sent,
        "GET /s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(r.head, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    assert!(!closed);
    assert_eq!(accepted, 2, "one server connection per request");
}

#[test]
fn server_close_with_pretend_keep_alive_does_not_tell_the_server() {
    let (sent, r, closed, accepted) = mode_run(
        "keep_alive = \"server-close\"\npretend_keep_alive = true",
        "",
        &get("/p"),
    );
    assert_eq!(sent, "GET /p HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(r.head, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    assert!(!closed);
    assert_eq!(accepted, 2, "closed after the response all the same");
}

#[test]
fn close_mode_closes_both_sides() {
    let (sent, r, closed, accepted) = mode_run("keep_alive = \"close\"", "", &get("/c"));
    assert_eq!(
        sent,
        "GET /c HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        r.head,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    );
    assert!(closed);
    assert_eq!(accepted, 1);
}

#[test]
fn close_mode_with_pretend_keep_alive() {
    let (sent, r, closed, _) = mode_run(
        "keep_alive = \"close\"\npretend_keep_alive = true",
        "",
        &get("/c"),
    );
    assert_eq!(sent, "GET /c HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(
        r.head,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    );
    assert!(closed);
}

#[test]
fn modes_combine_with_close_strongest() {
    // Frontend server-close, backend (defaults) keep-alive: server-close.
    let (sent, _, closed, accepted) = mode_run("", "keep_alive = \"server-close\"", &get("/m"));
    assert!(sent.contains("Connection: close\r\n"), "{sent:?}");
    assert!(!closed);
    assert_eq!(accepted, 2);
    // Frontend close beats a server-close default.
    let (_, r, closed, _) = mode_run(
        "keep_alive = \"server-close\"",
        "keep_alive = \"close\"",
        &get("/m"),
    );
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(closed);
}

#[test]
fn http10_client_in_server_close_mode() {
    // HTTP/1.0 closes by default: nothing to say to the server; the client asked for
    // keep-alive and keeps it.
    let (sent, r, closed, accepted) = mode_run(
        "keep_alive = \"server-close\"",
        "",
        "GET /o HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(sent, "GET /o HTTP/1.0\r\n\r\n");
    assert_eq!(
        r.head,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
    );
    assert!(!closed);
    assert_eq!(accepted, 2);
}

#[test]
fn shutdown_closes_pooled_connections_with_fin() {
    let origin = path_origin();
    let (proxy, addr) = http_proxy(&[origin.addr], "", "pool_idle_timeout = \"60s\"");
    // Several concurrent clients leave several idle connections.
    let mut clients: Vec<Client> = (0..4).map(|_| Client::new(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(get(&format!("/{i}")));
    }
    for c in &mut clients {
        assert_eq!(c.response().status(), 200);
    }
    drop(clients);
    assert!(origin.accepted() >= 1);
    proxy.shutdown();
    assert_no_reset(&origin);
}

#[test]
fn client_leaving_mid_response_does_not_reset_the_server() {
    // The origin sends a head and 100 bytes, pauses while the client leaves, then the
    // remaining 256 KiB. The proxy, unable to deliver them, drains them from the server
    // before closing, so the server sees a FIN, not a reset.
    let origin = recording_server(|c| {
        if read_request(c).ok().flatten().is_none() {
            return;
        }
        let len = 100 + 256 * 1024;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
        let _ = c.write_all(&[head.as_bytes(), &[b'z'; 100]].concat());
        std::thread::sleep(Duration::from_millis(300));
        let _ = c.write_all(&vec![b'z'; len - 100]);
        let _ = read_request(c);
    });
    let (proxy, addr) = http_proxy(&[origin.addr], "splice = false", "");
    let mut c = Client::new(addr);
    c.send(get("/big"));
    let r = read_head_only(&mut c);
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r:?}");
    drop(c);
    assert!(eventually(IO_TIMEOUT, || origin.finished() == 1));
    proxy.shutdown();
    assert_no_reset(&origin);
}

/// Reads a response head and 100 body bytes, no more.
fn read_head_only(c: &mut Client) -> String {
    let mut r = read_response(c, true).expect("a head");
    r.body = c.bytes(100);
    r.head
}

/// A pooled server connection opened for a frontend that copies bodies, then taken by a
/// frontend that splices them: the splice must never block the shard while the server
/// pauses mid-body (it did, when only splicing frontends made their server sockets
/// non-blocking). Another client of the same shard is answered during the pause.
#[test]
fn a_pooled_connection_taken_by_a_splicing_frontend_never_blocks_the_shard() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const HALF: usize = 100_000;
    let resumed = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let origin = {
        let resumed = Arc::clone(&resumed);
        recording_server(move |c| {
            while let Ok(Some(req)) = read_request(c) {
                if req.start_line().starts_with("GET /big ") {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 2 * HALF);
                    let _ = c.write_all(head.as_bytes());
                    let _ = c.write_all(&vec![b'a'; HALF]);
                    // Pause mid-body until the test says so (bounded).
                    let _ = release_rx
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(10));
                    resumed.store(true, Ordering::SeqCst);
                    let _ = c.write_all(&vec![b'b'; HALF]);
                } else if c.write_all(&ok("small")).is_err() {
                    return;
                }
            }
        })
    };
    let toml = format!(
        "{GLOBAL}\n[[frontend]]\nname = \"copy\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"b\"\nsplice = false\n\n\
         [[frontend]]\nname = \"splice\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"b\"\nsplice = true\n\n\
         [[backend]]\nname = \"b\"\nmode = \"http\"\nhttp_reuse = \"always\"\n{}",
        servers_toml(&[origin.addr])
    );
    let running = proxy(&toml);
    let (copy, splice) = (running.frontend_addrs(0)[0], running.frontend_addrs(1)[0]);

    // The copying frontend opens the server connection, which goes to the pool.
    let mut first = Client::new(copy);
    assert_eq!(first.exchange(get("/small")).status(), 200);
    drop(first);
    assert!(eventually(IO_TIMEOUT, || origin.finished() == 0
        && origin.accepted() == 1));

    // The splicing frontend takes it for a large body; the server pauses halfway.
    let mut big = Client::new(splice);
    big.send(get("/big"));
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    while seen.len() < HALF {
        let n = std::io::Read::read(&mut big.stream, &mut buf).expect("first half");
        assert!(n > 0, "closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        origin.accepted(),
        1,
        "the big request reused the pooled connection"
    );

    // Meanwhile another client of the (only) shard is answered.
    let mut other = Client::new(copy);
    assert_eq!(other.exchange(get("/small")).status(), 200);
    assert!(
        !resumed.load(Ordering::SeqCst),
        "the shard answered only once the server resumed: it was blocked"
    );
    release_tx.send(()).unwrap();
    let head = find(&seen, b"\r\n\r\n").expect("a head") + 4;
    let rest = big.bytes(2 * HALF - (seen.len() - head));
    assert!(rest.ends_with(b"bbb"), "the whole body came");
    running.shutdown();
}
