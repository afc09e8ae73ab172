//! Balancing algorithms end to end: the key each hashing algorithm uses (path without
//! query, a header, the client address), their stability, round-robin fallback without a
//! key, random spreading, and consistent hashing keeping other servers' keys when one
//! leaves. The distributions over many picks are unit tests in `upstream::balance`.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::time::Duration;

use common::http::*;
use common::*;

/// Origins that answer with their own name.
fn named_origins(n: usize) -> (Vec<Recorder>, Vec<SocketAddr>) {
    let origins: Vec<Recorder> = (0..n)
        .map(|i| http_origin(move |_, _| ok(&format!("s{i}"))))
        .collect();
    let addrs = origins.iter().map(|o| o.addr).collect();
    (origins, addrs)
}

fn balanced_proxy(
    servers: &[SocketAddr],
    backend: &str,
    extra: &str,
) -> (ringproxy::runtime::Running, SocketAddr) {
    http_proxy_with(1, extra, backend, &servers_toml(servers))
}

/// Which server answered `request`.
fn who(client: &mut Client, request: &str) -> String {
    let r = client.exchange(request);
    assert_eq!(r.status(), 200, "{:?}", r.head);
    r.payload_str()
}

#[test]
fn uri_hash_pins_each_path_whatever_its_query() {
    let (_origins, addrs) = named_origins(3);
    for hash_type in ["map-based", "consistent"] {
        let (proxy, addr) = balanced_proxy(
            &addrs,
            &format!("balance = \"uri\"\nhash_type = \"{hash_type}\""),
            "",
        );
        let mut client = Client::new(addr);
        let mut used = HashSet::new();
        for p in 0..30 {
            let first = who(&mut client, &get(&format!("/item/{p}")));
            for q in 0..3 {
                let again = who(&mut client, &get(&format!("/item/{p}?page={q}")));
                assert_eq!(again, first, "{hash_type}: /item/{p}?page={q}");
            }
            used.insert(first);
        }
        assert!(used.len() >= 2, "{hash_type}: 30 paths all on {used:?}");
        proxy.shutdown();
    }
}

#[test]
fn header_hash_pins_each_value_and_falls_back_to_round_robin() {
    let (_origins, addrs) = named_origins(2);
    let (proxy, addr) = balanced_proxy(&addrs, "balance = \"hdr(X-User)\"", "");
    let mut client = Client::new(addr);
    let mut used = HashSet::new();
    for u in 0..20 {
        let req = format!("GET / HTTP/1.1\r\nHost: t\r\nx-user: user{u}\r\n\r\n");
        let first = who(&mut client, &req);
        for _ in 0..3 {
            assert_eq!(who(&mut client, &req), first, "user{u}");
        }
        used.insert(first);
    }
    assert_eq!(used.len(), 2, "20 users spread over both servers");
    // Without the header: round robin, so both servers answer in turn.
    let rr: Vec<String> = (0..4).map(|_| who(&mut client, &get("/"))).collect();
    assert_ne!(rr[0], rr[1], "{rr:?}");
    assert_eq!(rr[0], rr[2], "{rr:?}");
    proxy.shutdown();
}

#[test]
fn source_hash_pins_a_client_address_in_tcp_mode() {
    let servers: Vec<Server> = (0..3).map(|i| named_server(&format!("s{i}"))).collect();
    let mut toml = "[global]\nshards = 2\npin = false\ngrace = \"2s\"\n\n\
        [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
        [[backend]]\nname = \"b\"\nbalance = \"source\"\n"
        .to_string();
    for (i, s) in servers.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[backend.server]]\nname = \"s{i}\"\naddress = \"{}\"\n",
            s.addr
        ));
    }
    let proxy = proxy(&toml);
    let addr = proxy.frontend_addrs(0)[0];
    let mut names = HashSet::new();
    for _ in 0..20 {
        let mut line = String::new();
        BufReader::new(connect(addr))
            .read_line(&mut line)
            .expect("greeting");
        names.insert(line);
    }
    // Both shards hash the same address to the same server.
    assert_eq!(names.len(), 1, "one client address, one server: {names:?}");
    proxy.shutdown();
}

#[test]
fn random_spreads_over_every_server() {
    let (_origins, addrs) = named_origins(2);
    let (proxy, addr) = balanced_proxy(&addrs, "balance = \"random\"", "");
    let mut client = Client::new(addr);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        *counts.entry(who(&mut client, &get("/"))).or_default() += 1;
    }
    // Two choices, the less loaded wins: with one request at a time both are idle, so
    // the first draw decides; each server gets about half.
    for name in ["s0", "s1"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((50..=150).contains(&n), "{counts:?}");
    }
    proxy.shutdown();
}

#[test]
fn consistent_hashing_keeps_other_servers_keys_when_one_leaves() {
    let (_origins, addrs) = named_origins(4);
    let socket =
        std::env::temp_dir().join(format!("ringproxy-balance-{}.sock", std::process::id()));
    let (proxy, addr) = balanced_proxy(
        &addrs,
        "balance = \"uri\"\nhash_type = \"consistent\"",
        &format!("[admin]\nsocket = \"{}\"\n", socket.display()),
    );
    let mut client = Client::new(addr);
    let paths: Vec<String> = (0..200).map(|p| format!("/k/{p}")).collect();
    let before: Vec<String> = paths.iter().map(|p| who(&mut client, &get(p))).collect();
    assert!(before.iter().any(|s| s == "s1"), "s1 holds some keys");

    let answer = ringproxy::admin::request(&socket, "set server b/s1 state maint").unwrap();
    assert_eq!(answer, "");
    assert!(
        eventually(Duration::from_secs(5), || who(
            &mut client,
            &get(&paths[before.iter().position(|s| s == "s1").unwrap()])
        ) != "s1"),
        "s1 leaves"
    );
    let after: Vec<String> = paths.iter().map(|p| who(&mut client, &get(p))).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        if b == "s1" {
            assert_ne!(a, "s1", "{}", paths[i]);
        } else {
            assert_eq!(a, b, "{} moved though its server stayed", paths[i]);
        }
    }
    proxy.shutdown();
}
