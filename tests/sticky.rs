//! Cookie stickiness through real sockets: HAProxy's `cookie SERVERID insert indirect
//! nocache`, `rewrite` and `prefix`, each round trip byte for byte, and redispatch when
//! the pinned server leaves service.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::http::*;
use common::*;

/// Origins answering with their name; the `set_cookie` line (if any) is added to each
/// response.
fn origins(n: usize, set_cookie: Option<&'static str>) -> Vec<Recorder> {
    (0..n)
        .map(|i| {
            http_origin(move |_, _| {
                let body = format!("s{i}");
                let extra = set_cookie.map_or(String::new(), |c| format!("Set-Cookie: {c}\r\n"));
                format!(
                    "HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            })
        })
        .collect()
}

fn sticky_proxy(
    servers: &[SocketAddr],
    cookie: &str,
    extra: &str,
) -> (ringproxy::runtime::Running, SocketAddr) {
    http_proxy_with(
        1,
        extra,
        &format!("balance = \"roundrobin\"\n\n[backend.cookie]\n{cookie}"),
        &servers_toml(servers),
    )
}

fn with_cookie(cookie: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: t\r\nCookie: {cookie}\r\n\r\n")
}

#[test]
fn insert_indirect_nocache_round_trip() {
    let o = origins(2, None);
    let addrs: Vec<SocketAddr> = o.iter().map(|r| r.addr).collect();
    let (proxy, addr) = sticky_proxy(
        &addrs,
        "name = \"SERVERID\"\nmode = \"insert\"\nindirect = true\nnocache = true",
        "",
    );
    let mut c = Client::new(addr);
    let first = c.exchange(get("/"));
    let server = first.payload_str();
    assert_eq!(
        first.header("Set-Cookie"),
        Some(format!("SERVERID={server}; path=/").as_str())
    );
    assert_eq!(first.header("Cache-Control"), Some("private"));
    // Round robin would alternate; the cookie pins.
    for _ in 0..6 {
        let r = c.exchange(with_cookie(&format!("lang=en; SERVERID={server}")));
        assert_eq!(r.payload_str(), server);
        assert_eq!(r.header("Set-Cookie"), None, "indirect: already held");
        assert_eq!(r.header("Cache-Control"), None);
    }
    // indirect: the application never sees the cookie; other cookies pass.
    let index: usize = server[1..].parse().unwrap();
    settle_requests(&o[index], 7);
    let seen = requests_in(&o[index].received_all());
    assert!(
        seen.iter()
            .skip(1)
            .all(|r| r.header("Cookie") == Some("lang=en")),
        "{seen:?}"
    );
    // A cookie naming the other server moves the client, and is not set again.
    let other = if server == "s0" { "s1" } else { "s0" };
    let r = c.exchange(with_cookie(&format!("SERVERID={other}")));
    assert_eq!(r.payload_str(), other);
    assert_eq!(r.header("Set-Cookie"), None);
    // An unknown value: balanced, and given a valid cookie.
    let r = c.exchange(with_cookie("SERVERID=nobody"));
    let answered = r.payload_str();
    assert_eq!(
        r.header("Set-Cookie"),
        Some(format!("SERVERID={answered}; path=/").as_str())
    );
    proxy.shutdown();
}

/// Waits until the origin has received `n` requests.
fn settle_requests(origin: &Recorder, n: usize) {
    assert!(
        eventually(IO_TIMEOUT, || requests_in(&origin.received_all()).len()
            >= n),
        "origin got {} of {n} requests",
        requests_in(&origin.received_all()).len()
    );
}

#[test]
fn insert_drops_the_servers_own_cookie_of_that_name() {
    let o = origins(1, Some("SERVERID=from-app; path=/"));
    let (proxy, addr) = sticky_proxy(&[o[0].addr], "name = \"SERVERID\"", "");
    let r = Client::new(addr).exchange(get("/"));
    assert_eq!(r.count("Set-Cookie"), 1, "{:?}", r.head);
    assert_eq!(r.header("Set-Cookie"), Some("SERVERID=s0; path=/"));
    proxy.shutdown();
}

#[test]
fn rewrite_replaces_the_value_the_server_set() {
    let o = origins(2, Some("SERVERID=app-chose-this; path=/; HttpOnly"));
    let addrs: Vec<SocketAddr> = o.iter().map(|r| r.addr).collect();
    let toml_servers = "name = \"SERVERID\"\nmode = \"rewrite\"";
    let (proxy, addr) = sticky_proxy(&addrs, toml_servers, "");
    let mut c = Client::new(addr);
    let first = c.exchange(get("/"));
    let server = first.payload_str();
    assert_eq!(
        first.header("Set-Cookie"),
        Some(format!("SERVERID={server}; path=/; HttpOnly").as_str())
    );
    for _ in 0..4 {
        let r = c.exchange(with_cookie(&format!("SERVERID={server}")));
        assert_eq!(r.payload_str(), server);
    }
    proxy.shutdown();
}

#[test]
fn prefix_round_trip_keeps_the_application_value() {
    let o = origins(2, Some("JSESSIONID=abc123; Max-Age=60"));
    let addrs: Vec<SocketAddr> = o.iter().map(|r| r.addr).collect();
    let (proxy, addr) = sticky_proxy(&addrs, "name = \"JSESSIONID\"\nmode = \"prefix\"", "");
    let mut c = Client::new(addr);
    let first = c.exchange(get("/"));
    let server = first.payload_str();
    assert_eq!(
        first.header("Set-Cookie"),
        Some(format!("JSESSIONID={server}~abc123; Max-Age=60").as_str())
    );
    for _ in 0..4 {
        let r = c.exchange(with_cookie(&format!("JSESSIONID={server}~abc123")));
        assert_eq!(r.payload_str(), server);
    }
    let index: usize = server[1..].parse().unwrap();
    settle_requests(&o[index], 5);
    let seen = requests_in(&o[index].received_all());
    assert!(
        seen.iter()
            .skip(1)
            .all(|r| r.header("Cookie") == Some("JSESSIONID=abc123")),
        "the server sees its own value: {seen:?}"
    );
    proxy.shutdown();
}

#[test]
fn a_pinned_server_out_of_service_is_redispatched() {
    let o = origins(2, None);
    let addrs: Vec<SocketAddr> = o.iter().map(|r| r.addr).collect();
    let socket = std::env::temp_dir().join(format!("ringproxy-sticky-{}.sock", std::process::id()));
    let (proxy, addr) = sticky_proxy(
        &addrs,
        "name = \"SERVERID\"",
        &format!("[admin]\nsocket = \"{}\"\n", socket.display()),
    );
    let mut c = Client::new(addr);
    assert_eq!(c.exchange(with_cookie("SERVERID=s0")).payload_str(), "s0");
    ringproxy::admin::request(&socket, "disable server b/s0").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || c
            .exchange(with_cookie("SERVERID=s0"))
            .payload_str()
            == "s1"),
        "redispatched to s1"
    );
    let r = c.exchange(with_cookie("SERVERID=s0"));
    assert_eq!(r.payload_str(), "s1");
    assert_eq!(
        r.header("Set-Cookie"),
        Some("SERVERID=s1; path=/"),
        "re-pinned"
    );
    // DRAIN keeps persistent clients: back to s0 once enabled, then drained.
    ringproxy::admin::request(&socket, "enable server b/s0").unwrap();
    assert!(eventually(Duration::from_secs(5), || c
        .exchange(with_cookie("SERVERID=s0"))
        .payload_str()
        == "s0"));
    ringproxy::admin::request(&socket, "set server b/s0 state drain").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        assert_eq!(c.exchange(with_cookie("SERVERID=s0")).payload_str(), "s0");
        assert_eq!(c.exchange(get("/")).payload_str(), "s1", "no new clients");
    }
    proxy.shutdown();
}
