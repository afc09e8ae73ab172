//! tcp mode end to end: real clients, the proxy in-process, real origin servers.
//! Every behaviour is checked with splice forwarding and with the copy fallback: the two
//! engines must be indistinguishable from outside.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const ENGINES: [(&str, bool); 2] = [("splice", true), ("copy", false)];

fn splice_line(splice: bool) -> String {
    format!("splice = {splice}")
}

/// A server that accepts one connection and hands it (with a read timeout) to `serve` on
/// its own thread; joining the handle returns what `serve` returned.
fn one_shot_server<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        serve(c)
    });
    (addr, handle)
}

#[test]
fn sixty_four_mib_each_way_arrive_intact() {
    const LEN: usize = 64 << 20;
    for (engine, splice) in ENGINES {
        let (origin, from_client) = sink_source_server(2, LEN);
        let (proxy, addr) = tcp_proxy(&[origin], 1, &splice_line(splice));
        let client = connect(addr);
        let mut writer = client.try_clone().unwrap();
        let w = thread::spawn(move || {
            send_stream(&mut writer, 1, LEN).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut reader = client;
        let got_by_client = hash_stream(&mut reader).unwrap();
        w.join().unwrap();
        let got_by_server = from_client.recv_timeout(IO_TIMEOUT).unwrap();
        assert_eq!(
            got_by_server,
            expected(1, LEN),
            "{engine}: client -> server"
        );
        assert_eq!(
            got_by_client,
            expected(2, LEN),
            "{engine}: server -> client"
        );
        proxy.shutdown();
    }
}

#[test]
fn client_half_close_reaches_server_and_reply_still_flows() {
    for (engine, splice) in ENGINES {
        // The server reads to EOF (which only a forwarded FIN gives it), then answers.
        let (origin, server) = one_shot_server(|mut c| {
            let got = read_to_end(&mut c).unwrap();
            c.write_all(format!("got {} bytes", got.len()).as_bytes())
                .unwrap();
            got
        });
        let (proxy, addr) = tcp_proxy(&[origin], 1, &splice_line(splice));
        let mut client = connect(addr);
        client.write_all(b"request body").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let reply = read_to_end(&mut client).unwrap();
        assert_eq!(reply, b"got 12 bytes", "{engine}");
        assert_eq!(server.join().unwrap(), b"request body", "{engine}");
        proxy.shutdown();
    }
}

#[test]
fn server_half_close_reaches_client_and_upload_still_flows() {
    for (engine, splice) in ENGINES {
        let (origin, server) = one_shot_server(|mut c| {
            c.write_all(b"banner").unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            read_to_end(&mut c).unwrap()
        });
        let (proxy, addr) = tcp_proxy(&[origin], 1, &splice_line(splice));
        let mut client = connect(addr);
        // The server's FIN arrives as EOF after the banner...
        assert_eq!(read_to_end(&mut client).unwrap(), b"banner", "{engine}");
        // ...while the client's direction still carries data.
        client.write_all(b"still uploading").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(server.join().unwrap(), b"still uploading", "{engine}");
        proxy.shutdown();
    }
}

#[test]
fn refused_first_server_is_retried_on_the_second() {
    let dead = refused_addr();
    let alive = named_server("alive");
    let (proxy, addr) = tcp_proxy(&[dead, alive.addr], 1, "retries = 1");
    // Round robin starts on each server in turn: every client must still reach "alive".
    for i in 0..6 {
        let mut c = connect(addr);
        let mut greeting = [0u8; 6];
        c.read_exact(&mut greeting)
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(&greeting, b"alive\n");
        c.write_all(b"ping").unwrap();
        let mut echo = [0u8; 4];
        c.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"ping");
    }
    assert_eq!(alive.accepted(), 6);
    proxy.shutdown();
}

#[test]
fn no_reachable_server_closes_the_client() {
    let (proxy, addr) = tcp_proxy(&[refused_addr(), refused_addr()], 1, "retries = 3");
    let mut c = connect(addr);
    // Closed without a byte: EOF (or a reset if our write raced the close).
    match c.read(&mut [0u8; 16]) {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    proxy.shutdown();
}

#[test]
fn connect_timeout_moves_on_to_the_next_server() {
    let hole = blackhole();
    let alive = named_server("alive");
    let (proxy, addr) = tcp_proxy(
        &[hole.addr, alive.addr],
        1,
        "timeout_connect = \"300ms\"\nretries = 1",
    );
    // First pick is the blackhole (round robin starts at server 0).
    let start = Instant::now();
    let mut c = connect(addr);
    let mut greeting = [0u8; 6];
    c.read_exact(&mut greeting).unwrap();
    let waited = start.elapsed();
    assert_eq!(&greeting, b"alive\n");
    assert!(
        waited >= Duration::from_millis(300),
        "answered after {waited:?}: the blackhole was not tried first"
    );
    proxy.shutdown();
}

#[test]
fn connect_timeout_without_retry_closes_the_client() {
    let hole = blackhole();
    let (proxy, addr) = tcp_proxy(&[hole.addr], 1, "timeout_connect = \"200ms\"\nretries = 0");
    let start = Instant::now();
    let mut c = connect(addr);
    let r = c.read(&mut [0u8; 16]);
    let waited = start.elapsed();
    assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
    assert!(
        waited >= Duration::from_millis(200),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "closed after {waited:?}");
    proxy.shutdown();
}

#[test]
fn a_thousand_concurrent_connections() {
    const N: usize = 1000;
    for (engine, splice) in ENGINES {
        let origin = echo_server();
        let (proxy, addr) = tcp_proxy(&[origin.addr], 2, &splice_line(splice));
        let mut clients: Vec<TcpStream> = (0..N).map(|_| connect(addr)).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("client-{i:06}").as_bytes()).unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let mut buf = [0u8; 13];
            c.read_exact(&mut buf)
                .unwrap_or_else(|e| panic!("{engine}: client {i}: {e}"));
            assert_eq!(buf, *format!("client-{i:06}").as_bytes(), "{engine}");
        }
        assert!(
            eventually(Duration::from_secs(10), || origin.accepted() == N),
            "{engine}: {} accepted",
            origin.accepted()
        );
        for c in &clients {
            c.shutdown(Shutdown::Write).unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(
                read_to_end(c).unwrap(),
                b"",
                "{engine}: client {i} after FIN"
            );
        }
        proxy.shutdown();
    }
}

#[test]
fn idle_tunnel_is_closed_after_timeout_tunnel_but_activity_keeps_it_open() {
    for (engine, splice) in ENGINES {
        let origin = echo_server();
        let (proxy, addr) = tcp_proxy(
            &[origin.addr],
            1,
            &format!("timeout_tunnel = \"400ms\"\n{}", splice_line(splice)),
        );
        // Active for well over the timeout: every 100 ms a ping.
        let mut busy = connect(addr);
        for _ in 0..12 {
            busy.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            busy.read_exact(&mut b).unwrap();
            thread::sleep(Duration::from_millis(100));
        }
        // Then silent: closed by the proxy.
        let start = Instant::now();
        assert_eq!(busy.read(&mut [0u8; 1]).unwrap_or(0), 0, "{engine}");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(250),
            "{engine}: closed after {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(5),
            "{engine}: closed after {waited:?}"
        );
        proxy.shutdown();
    }
}

#[test]
fn half_closed_tunnel_is_bounded_by_server_fin_timeout() {
    for (engine, splice) in ENGINES {
        // A server that never answers and never closes.
        let (tx, rx) = mpsc::channel::<()>();
        let (origin, _server) = one_shot_server(move |_c| {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        });
        let (proxy, addr) = tcp_proxy(
            &[origin],
            1,
            &format!("timeout_server_fin = \"300ms\"\n{}", splice_line(splice)),
        );
        let mut c = connect(addr);
        c.write_all(b"bye").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let start = Instant::now();
        let r = c.read(&mut [0u8; 1]);
        let waited = start.elapsed();
        assert!(matches!(r, Ok(0)) || r.is_err(), "{engine}: {r:?}");
        assert!(
            waited >= Duration::from_millis(200),
            "{engine}: closed after {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(5),
            "{engine}: closed after {waited:?} (tunnel timeout is 1h)"
        );
        drop(tx);
        proxy.shutdown();
    }
}

#[test]
fn maxconn_full_server_is_skipped() {
    let a = named_server("a");
    let b = named_server("b");
    let toml = format!(
        "[global]\nshards = 1\npin = false\n\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
         [[backend]]\nname = \"b\"\n\n[[backend.server]]\nname = \"a\"\naddress = \"{}\"\nmaxconn = 1\n\n\
         [[backend.server]]\nname = \"b\"\naddress = \"{}\"\nweight = 0\n",
        a.addr, b.addr
    );
    // b has weight 0: it takes nothing. a takes one session at a time.
    let proxy = proxy(&toml);
    let addr = proxy.frontend_addrs(0)[0];
    let mut first = connect(addr);
    let mut g = [0u8; 2];
    first.read_exact(&mut g).unwrap();
    assert_eq!(&g, b"a\n");
    // a is full: the second client finds no server and is closed.
    let mut second = connect(addr);
    assert_eq!(second.read(&mut [0u8; 4]).unwrap_or(0), 0);
    // Once the first session ends, a takes sessions again.
    drop(first);
    assert!(eventually(Duration::from_secs(5), || {
        let mut c = connect(addr);
        let mut g = [0u8; 2];
        c.read_exact(&mut g).is_ok() && &g == b"a\n"
    }));
    assert_eq!(b.accepted(), 0);
    proxy.shutdown();
}

#[test]
fn leastconn_sends_a_new_session_to_the_idle_server() {
    let a = named_server("a");
    let b = named_server("b");
    let toml = format!(
        "[global]\nshards = 1\npin = false\n\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
         [[backend]]\nname = \"b\"\nbalance = \"leastconn\"\n\n[[backend.server]]\nname = \"a\"\naddress = \"{}\"\n\n\
         [[backend.server]]\nname = \"b\"\naddress = \"{}\"\n",
        a.addr, b.addr
    );
    let proxy = proxy(&toml);
    let addr = proxy.frontend_addrs(0)[0];
    let greet = |c: &mut TcpStream| {
        let mut g = [0u8; 2];
        c.read_exact(&mut g).unwrap();
        g[0]
    };
    // Hold two sessions: one on each server.
    let mut held = vec![connect(addr), connect(addr)];
    let names = [greet(&mut held[0]), greet(&mut held[1])];
    let mut sorted = names;
    sorted.sort();
    assert_eq!(sorted, [b'a', b'b']);
    // End the session on "a" cleanly; once the client has seen the end, the proxy has
    // released its place (same shard, same task, before any new accept runs).
    let on_a = names.iter().position(|&n| n == b'a').unwrap();
    let mut ending = held.remove(on_a);
    ending.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut ending).unwrap(), b"");
    // a: 0 sessions, b: 1. The next two both go to "a" (0 < 1, then tie broken toward
    // whoever is next after a... so only the first is certain).
    let mut next = connect(addr);
    assert_eq!(greet(&mut next), b'a');
    // a: 1, b: 1; add one more on whichever, then the least loaded must be the other.
    let mut third = connect(addr);
    let third_on = greet(&mut third);
    let mut fourth = connect(addr);
    let fourth_on = greet(&mut fourth);
    assert_ne!(
        third_on, fourth_on,
        "with a tie broken, the next pick evens the load"
    );
    drop((held, next, third, fourth));
    proxy.shutdown();
}

#[test]
fn stop_drains_established_sessions_and_refuses_new_ones() {
    let origin = echo_server();
    let (proxy, addr) = tcp_proxy(&[origin.addr], 1, "");
    let mut c = connect(addr);
    c.write_all(b"one").unwrap();
    let mut b = [0u8; 3];
    c.read_exact(&mut b).unwrap();
    proxy.stop();
    // New connections are refused once the listener is closed.
    assert!(eventually(Duration::from_secs(3), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
    }));
    // The established session still works during the grace period.
    c.write_all(b"two").unwrap();
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"two");
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut c).unwrap(), b"");
    let start = Instant::now();
    proxy.wait();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "drained session still counted"
    );
}

#[test]
fn a_fin_after_a_quiet_spell_starts_the_fin_clock_afresh() {
    for (engine, splice) in ENGINES {
        // The server answers 100 ms after the client's FIN.
        let (origin, _server) = one_shot_server(|mut c| {
            let got = read_to_end(&mut c).unwrap();
            thread::sleep(Duration::from_millis(100));
            c.write_all(&got).unwrap();
        });
        let defaults = format!(
            "timeout_tunnel = \"5s\"\ntimeout_server_fin = \"500ms\"\n{}",
            splice_line(splice)
        );
        let (proxy, addr) = tcp_proxy(&[origin], 1, &defaults);
        let mut c = connect(addr);
        c.write_all(b"late question").unwrap();
        // Quiet for longer than timeout_server_fin, shorter than timeout_tunnel; then the
        // FIN alone: the server has 500 ms from now, not from the last byte.
        thread::sleep(Duration::from_millis(800));
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut c).unwrap(), b"late question", "{engine}");
        proxy.shutdown();
    }
}

#[test]
fn sessions_still_open_when_grace_ends_are_closed() {
    let origin = echo_server();
    let toml = format!(
        "[global]\nshards = 2\npin = false\ngrace = \"300ms\"\n\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
         [[backend]]\nname = \"b\"\n\n[[backend.server]]\nname = \"s\"\naddress = \"{}\"\n",
        origin.addr
    );
    let proxy = proxy(&toml);
    let addr = proxy.frontend_addrs(0)[0];
    let mut clients: Vec<TcpStream> = (0..20).map(|_| connect(addr)).collect();
    for c in &mut clients {
        c.write_all(b"hi").unwrap();
        let mut b = [0u8; 2];
        c.read_exact(&mut b).unwrap();
    }
    let start = Instant::now();
    proxy.shutdown();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "stopped after {waited:?}: grace not honoured"
    );
    assert!(waited < Duration::from_secs(3), "stopped after {waited:?}");
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.read(&mut [0u8; 1]);
        assert!(
            matches!(r, Ok(0)) || r.is_err(),
            "client {i} still open: {r:?}"
        );
    }
}
