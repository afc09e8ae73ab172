//! Server `maxconn` and the backend queue through real sockets: the limit holds under
//! 500 concurrent clients (the origins count their concurrency), queued sessions are
//! served in arrival order, `timeout_queue` and `maxqueue` give 503 (http) or a close
//! (tcp).

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::http::*;
use common::*;

fn queue_proxy(
    shards: usize,
    servers: &[(std::net::SocketAddr, u32)],
    backend: &str,
) -> (ringproxy::runtime::Running, std::net::SocketAddr) {
    let servers: String = servers
        .iter()
        .enumerate()
        .map(|(i, (addr, maxconn))| {
            format!("\n[[backend.server]]\nname = \"s{i}\"\naddress = \"{addr}\"\nmaxconn = {maxconn}\n")
        })
        .collect();
    http_proxy_with(shards, "", backend, &servers)
}

/// An origin that holds each request for `hold` and counts how many it holds at once.
fn counting_origin(hold: Duration) -> (Recorder, Arc<AtomicUsize>) {
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (n, m) = (Arc::clone(&now), Arc::clone(&max));
    let origin = http_origin(move |_, _| {
        let c = n.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(c, Ordering::SeqCst);
        thread::sleep(hold);
        // Before the response leaves: the proxy may send the next request right after.
        n.fetch_sub(1, Ordering::SeqCst);
        ok("held")
    });
    (origin, max)
}

#[test]
fn maxconn_is_never_exceeded_under_500_concurrent_clients() {
    let (o0, max0) = counting_origin(Duration::from_millis(5));
    let (o1, max1) = counting_origin(Duration::from_millis(5));
    let (proxy, addr) = queue_proxy(2, &[(o0.addr, 10), (o1.addr, 6)], "timeout_queue = \"60s\"");
    let clients: Vec<_> = (0..500)
        .map(|i| {
            thread::Builder::new()
                .stack_size(1024 * 1024)
                .spawn(move || {
                    let mut c = Client::new(addr);
                    let r = c.exchange(format!(
                        "GET /{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    ));
                    r.status()
                })
                .unwrap()
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let (m0, m1) = (max0.load(Ordering::SeqCst), max1.load(Ordering::SeqCst));
    assert!(m0 <= 10, "s0 held {m0} requests at once (maxconn 10)");
    assert!(m1 <= 6, "s1 held {m1} requests at once (maxconn 6)");
    // The limit was reached, so the queue was used: the test is not vacuous.
    assert!(
        m0 >= 5 && m1 >= 3,
        "concurrency {m0}/{m1}: the limit was never reached"
    );
    proxy.shutdown();
}

#[test]
fn queued_requests_are_served_in_arrival_order() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    let origin = http_origin(move |req, _| {
        seen.lock().unwrap().push(req.start_line().to_string());
        thread::sleep(Duration::from_millis(150));
        ok("x")
    });
    let (proxy, addr) = queue_proxy(1, &[(origin.addr, 1)], "timeout_queue = \"10s\"");
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(thread::spawn(move || {
            Client::new(addr)
                .exchange(format!("GET /{i} HTTP/1.1\r\nHost: t\r\n\r\n"))
                .status()
        }));
        // Let each request reach the proxy's queue before the next.
        thread::sleep(Duration::from_millis(30));
    }
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    let order = order.lock().unwrap().clone();
    let expected: Vec<String> = (0..5).map(|i| format!("GET /{i} HTTP/1.1")).collect();
    assert_eq!(order, expected);
    proxy.shutdown();
}

#[test]
fn queue_timeout_gives_503_then_the_server_serves_again() {
    let (origin, _) = counting_origin(Duration::from_millis(1500));
    let (proxy, addr) = queue_proxy(1, &[(origin.addr, 1)], "timeout_queue = \"200ms\"");
    let holder = thread::spawn(move || Client::new(addr).exchange(get("/hold")).status());
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let r = Client::new(addr).exchange(get("/waits"));
    let waited = start.elapsed();
    assert_proxy_error(&r, 503);
    assert!(
        r.payload_str().contains("timeout_queue"),
        "{}",
        r.payload_str()
    );
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1200),
        "waited {waited:?} for a 200ms queue timeout"
    );
    assert_eq!(holder.join().unwrap(), 200);
    assert_eq!(Client::new(addr).exchange(get("/after")).status(), 200);
    proxy.shutdown();
}

#[test]
fn full_queue_gives_503_at_once() {
    let (origin, _) = counting_origin(Duration::from_millis(1000));
    let (proxy, addr) = queue_proxy(
        1,
        &[(origin.addr, 1)],
        "timeout_queue = \"10s\"\nmaxqueue = 1",
    );
    let holder = thread::spawn(move || Client::new(addr).exchange(get("/hold")).status());
    thread::sleep(Duration::from_millis(100));
    let queued = thread::spawn(move || Client::new(addr).exchange(get("/queued")).status());
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let r = Client::new(addr).exchange(get("/refused"));
    assert_proxy_error(&r, 503);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(r.payload_str().contains("queue"), "{}", r.payload_str());
    assert_eq!(holder.join().unwrap(), 200);
    assert_eq!(queued.join().unwrap(), 200, "the queued one was served");
    proxy.shutdown();
}

#[test]
fn tcp_sessions_wait_for_a_slot_or_are_closed_after_timeout_queue() {
    let server = echo_server();
    let toml = format!(
        "[global]\nshards = 1\npin = false\ngrace = \"2s\"\n\n\
         [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
         [[backend]]\nname = \"b\"\ntimeout_queue = \"3s\"\n\n\
         [[backend.server]]\nname = \"s0\"\naddress = \"{}\"\nmaxconn = 1\n",
        server.addr
    );
    let proxy = proxy(&toml);
    let addr = proxy.frontend_addrs(0)[0];
    let mut first = connect(addr);
    first.write_all(b"one").unwrap();
    let mut buf = [0u8; 3];
    first.read_exact(&mut buf).unwrap();
    // The second waits in the queue: its bytes are not echoed while the first holds the
    // only slot.
    let mut second = connect(addr);
    second.write_all(b"two").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(second.read(&mut buf).is_err(), "served beyond maxconn");
    assert_eq!(server.accepted(), 1);
    drop(first);
    second.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two", "served once the slot freed");

    // Now the slot stays taken: a third is closed after timeout_queue.
    let start = Instant::now();
    let mut third = connect(addr);
    let mut rest = Vec::new();
    let n = third.read_to_end(&mut rest).unwrap_or(0);
    assert_eq!(n, 0);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    drop(second);
    proxy.shutdown();
}
