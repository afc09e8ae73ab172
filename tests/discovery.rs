//! DNS discovery through real sockets, driven by `global.hosts_file` (a hosts(5) file the
//! proxy reads at every resolution, before the system resolver): origins on 127.0.0.1,
//! .2 and .3 (all loopback) behind one name; the file changes and the proxy follows,
//! keeping the sessions on addresses that stay.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// An echo server on `ip` and `port` that first sends `name` and a newline.
fn named_on(ip: &str, port: u16, name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind((ip, port)).expect("bind loopback alias");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(IO_TIMEOUT)).ok();
                if conn.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn hosts_path(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ringproxy-{test}-{}.hosts", std::process::id()))
}

/// Who answers a new connection through the proxy.
fn who(addr: SocketAddr) -> String {
    let mut line = String::new();
    BufReader::new(connect(addr)).read_line(&mut line).unwrap();
    line.trim().to_string()
}

fn answering(addr: SocketAddr, n: usize) -> HashSet<String> {
    (0..n).map(|_| who(addr)).collect()
}

#[test]
fn servers_follow_the_name_and_sessions_on_staying_addresses_survive() {
    // One port on three loopback addresses.
    let a = named_on("127.0.0.1", 0, "a");
    let port = a.port();
    named_on("127.0.0.2", port, "b");
    named_on("127.0.0.3", port, "c");
    let hosts = hosts_path("discovery");
    std::fs::write(&hosts, "127.0.0.1 app.test\n127.0.0.2 app.test\n").unwrap();
    let socket = hosts.with_extension("sock");
    let toml = format!(
        "[global]\nshards = 2\npin = false\ngrace = \"1s\"\nhosts_file = \"{}\"\n\n\
         [admin]\nsocket = \"{}\"\n\n\
         [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
         [[backend]]\nname = \"b\"\n\n\
         [[backend.server]]\nname = \"app\"\naddress = \"app.test:{port}\"\nresolve = \"100ms\"\nslots = 3\n",
        hosts.display(),
        socket.display()
    );
    let proxy = proxy(&toml);
    let addr = proxy.frontend_addrs(0)[0];
    let state = || ringproxy::admin::request(&socket, "show servers state").unwrap();
    assert_eq!(state(), "b/app1 UP\nb/app2 UP\nb/app3 MAINT (resolution)\n");
    assert_eq!(answering(addr, 12), HashSet::from(["a".into(), "b".into()]));

    // A tunnel through b, which stays.
    let mut held = loop {
        let mut s = connect(addr);
        let mut line = [0u8; 2];
        s.read_exact(&mut line).unwrap();
        if &line == b"b\n" {
            break s;
        }
    };

    // The name now gives b and c: a leaves, c takes the free slot, b keeps its own.
    std::fs::write(&hosts, "127.0.0.2 app.test\n127.0.0.3 app.test\n").unwrap();
    let expected: HashSet<String> = HashSet::from(["b".into(), "c".into()]);
    assert!(
        eventually(Duration::from_secs(5), || answering(addr, 8) == expected),
        "the proxy follows the name"
    );
    assert_eq!(answering(addr, 12), expected);
    // a's slot went free and c took it; b kept its own.
    assert_eq!(state(), "b/app1 UP\nb/app2 UP\nb/app3 MAINT (resolution)\n");
    held.write_all(b"still").unwrap();
    let mut echo = [0u8; 5];
    held.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"still", "the session on b went on");

    // A name that stops resolving (the file no longer names it, and the system
    // resolver does not know `.test` names) keeps the current addresses.
    std::fs::write(&hosts, "# nothing\n").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(answering(addr, 12), expected);
    proxy.shutdown();
    std::fs::remove_file(&hosts).ok();
}

#[test]
fn discovery_keys_are_checked_at_load() {
    let bad = |server: &str| {
        let toml = format!(
            "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
             [[backend]]\nname = \"b\"\n\n[[backend.server]]\nname = \"app\"\n{server}\n"
        );
        ringproxy::config::Config::parse(&toml, std::path::Path::new("t.toml"))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        bad("address = \"127.0.0.1:80\"\nslots = 3"),
        "t.toml:12: backend.server.slots: needs resolve = \"<interval>\""
    );
    assert!(bad("address = \"app.test\"\nresolve = \"1s\"").contains("has no port"));
    assert!(
        bad("address = \"app.test:80\"\nresolve = \"1s\"\nslots = 0")
            .contains("backend.server.slots: 0 is out of range 1..=1024")
    );
    assert!(bad("address = \"app.test:80\"\nresolve = \"0s\"").contains("backend.server.resolve"));
}
