//! The `ringproxy` binary as a user runs it: `check`, `--help`, refused configurations,
//! startup failures, and a graceful stop on SIGTERM.
//!
//! Every child process is owned by a [`Proc`], which kills and reaps it when dropped, so a
//! failing assertion never leaves a proxy running. Every wait is a bounded polling loop.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::process::*;

const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------- helpers

/// One frontend on `bind` in front of one server at `server`; one unpinned shard.
fn proxy_config(bind: &str, server: &str) -> String {
    format!(
        r#"[global]
shards = 1
pin = false
grace = "5s"

[[frontend]]
name = "fe"
bind = ["{bind}"]
backend = "be"

[[backend]]
name = "be"
timeout_connect = "1s"

[[backend.server]]
name = "s1"
address = "{server}"
"#
    )
}

/// Asserts `stderr` is exactly one line `PATH:LINE: KEY: reason`.
#[track_caller]
fn assert_one_error_line(stderr: &str, path: &str, line: usize, key: &str) {
    let prefix = format!("{path}:{line}: {key}: ");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr:?}");
    assert!(stderr.ends_with('\n'), "stderr: {stderr:?}");
    assert!(
        stderr.starts_with(&prefix),
        "stderr {stderr:?} does not start with {prefix:?}"
    );
    assert!(
        stderr.trim_end().len() > prefix.len(),
        "no reason: {stderr:?}"
    );
}

#[track_caller]
fn echo_round_trip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).expect("write through the proxy");
    let mut back = vec![0u8; msg.len()];
    stream
        .read_exact(&mut back)
        .expect("read the echo through the proxy");
    assert_eq!(back, msg);
}

// ---------------------------------------------------------------- check and help

#[test]
fn check_valid_config_prints_summary() {
    let r = run(&["check", "--config", "configs/tcp.toml"]);
    assert_eq!(r.status.code(), Some(0), "stderr: {}", r.stderr);
    assert!(
        r.stdout
            .starts_with("configs/tcp.toml: ok: 1 frontend(s), 1 backend(s), 2 server(s)\n"),
        "stdout: {}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("frontend db (Tcp) on 127.0.0.1:5000 -> backend db-servers"),
        "{}",
        r.stdout
    );
    assert_eq!(r.stderr, "");
}

#[test]
fn check_counts_every_section() {
    let r = run(&["check", "-c", "configs/leastconn.toml"]);
    assert_eq!(r.status.code(), Some(0), "stderr: {}", r.stderr);
    assert!(
        r.stdout
            .starts_with("configs/leastconn.toml: ok: 2 frontend(s), 1 backend(s), 2 server(s)\n"),
        "stdout: {}",
        r.stdout
    );
}

#[test]
fn check_refused_config_exits_2_with_one_line() {
    let cfg = TempConfig::new("check-bad", "[global]\npin = false\nshards = 0\n");
    let r = run(&["check", "-c", cfg.arg()]);
    assert_eq!(r.status.code(), Some(2), "stderr: {}", r.stderr);
    assert_one_error_line(&r.stderr, cfg.arg(), 3, "global.shards");
    assert_eq!(r.stdout, "");
}

#[test]
fn check_missing_file_exits_2() {
    let r = run(&["check", "-c", "configs/no-such-file.toml"]);
    assert_eq!(r.status.code(), Some(2), "stderr: {}", r.stderr);
    assert_one_error_line(&r.stderr, "configs/no-such-file.toml", 0, "(file)");
}

#[test]
fn help_lists_subcommands() {
    let r = run(&["--help"]);
    assert_eq!(r.status.code(), Some(0), "stderr: {}", r.stderr);
    assert!(r.stdout.contains("check"), "{}", r.stdout);
    assert!(r.stdout.contains("origin"), "{}", r.stdout);
    assert!(r.stdout.contains("--config"), "{}", r.stdout);
}

#[test]
fn run_with_refused_config_exits_2() {
    let cfg = TempConfig::new(
        "run-bad",
        "[global]\nshards = 1\npin = false\n\n[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"nope\"\n",
    );
    let r = run(&["-c", cfg.arg()]);
    assert_eq!(r.status.code(), Some(2), "stderr: {}", r.stderr);
    assert_one_error_line(&r.stderr, cfg.arg(), 8, "frontend.backend");
}

// ---------------------------------------------------------------- startup failures

#[test]
fn port_in_use_fails_the_start_without_panic() {
    // Held for the whole test, without SO_REUSEPORT: the proxy's bind must fail.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind holder");
    let addr = holder.local_addr().unwrap();
    let cfg = TempConfig::new("in-use", &proxy_config(&addr.to_string(), "127.0.0.1:9"));
    let r = run(&["-c", cfg.arg()]);
    assert_eq!(r.status.code(), Some(1), "stderr: {}", r.stderr);
    assert!(r.stderr.contains("in use"), "stderr: {}", r.stderr);
    assert!(r.stderr.contains(&addr.to_string()), "stderr: {}", r.stderr);
    assert!(r.stderr.contains("\"fe\""), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "stderr: {}", r.stderr);
    drop(holder);
}

#[test]
fn more_pinned_shards_than_cpus_fails_the_start() {
    // 1024 is the largest accepted value, so this holds on any machine that runs tests.
    let cfg = TempConfig::new(
        "too-many-shards",
        r#"[global]
shards = 1024
pin = true

[[frontend]]
name = "fe"
bind = ["127.0.0.1:0"]
backend = "be"

[[backend]]
name = "be"

[[backend.server]]
name = "s1"
address = "127.0.0.1:9"
"#,
    );
    let r = run(&["-c", cfg.arg()]);
    assert_eq!(r.status.code(), Some(1), "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("global.shards = 1024"),
        "stderr: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("global.pin = false"),
        "stderr: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "stderr: {}", r.stderr);
}

// ---------------------------------------------------------------- graceful stop

#[test]
fn sigterm_stops_accepting_and_drains_established_sessions() {
    let echo = echo_server();
    let proxy: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = TempConfig::new(
        "graceful",
        &proxy_config(&proxy.to_string(), &echo.to_string()),
    );
    let mut p = Proc::spawn(&["-c", cfg.arg()]);

    // Wait until the proxy accepts; that first connection is the client.
    let mut client = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(proxy) {
            client = Some(s);
            break;
        }
        if let Some(status) = p.exited() {
            panic!("ringproxy exited early ({status}): {}", p.stderr());
        }
        std::thread::sleep(POLL);
    }
    let mut client = client.expect("the proxy never accepted a connection within 5 s");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    echo_round_trip(&mut client, b"before the signal");

    // SAFETY: kill(2) with the pid of a child we own and have not reaped.
    let r = unsafe { libc::kill(p.pid(), libc::SIGTERM) };
    assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());

    // New connections are refused once the shard has seen the stop (50 ms tick).
    let mut refused = false;
    for _ in 0..40 {
        match TcpStream::connect(proxy) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            Err(e) => panic!("unexpected connect error: {e}"),
            Ok(s) => drop(s),
        }
        std::thread::sleep(POLL);
    }
    assert!(refused, "the proxy still accepts 2 s after SIGTERM");
    assert!(
        p.exited().is_none(),
        "ringproxy exited before its session ended"
    );

    // The established session still relays both ways.
    echo_round_trip(&mut client, b"after the signal");
    drop(client);

    // Last session gone: the process ends, well before the 5 s grace period.
    let status = p.wait_for_exit(Duration::from_secs(10));
    let stderr = p.stderr();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("listening on {proxy}")),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("draining"), "stderr: {stderr}");
    assert!(stderr.contains("ringproxy: stopped"), "stderr: {stderr}");
    assert!(
        !stderr.contains("grace period"),
        "drain waited for the grace period: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn config_paths_are_shown_as_given() {
    // The summary names the file as the user wrote it, relative paths included.
    let r = run(&[
        "check",
        "-c",
        Path::new("configs").join("demo.toml").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(0), "stderr: {}", r.stderr);
    assert!(
        r.stdout
            .starts_with("configs/demo.toml: ok: 1 frontend(s), 1 backend(s), 2 server(s)\n"),
        "{}",
        r.stdout
    );
}
