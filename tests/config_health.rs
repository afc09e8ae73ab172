//! Configuration of health checks: `[backend.health_check]`, the health keys of servers
//! and backends, `[admin]`. Defaults, every key as written, inheritance from the backend,
//! and every refusal with its file, line and key.
//!
//! As in `tests/config.rs`, test texts start on line 1 of a raw string, so the line
//! numbers asserted can be read off the text itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod config_common;
use config_common::*;

use ringproxy::config::health::{default, HttpCheck};
use ringproxy::config::{
    CheckKind, Config, HealthCheck, Observe, OnMarkedDown, OnMarkedUp, ServerHealth,
};
use ringproxy::upstream::health::{Intervals, OnError};

/// A tcp backend "be" whose `[backend.health_check]` holds `lines`, from line 6 on; its
/// one server comes after.
fn checked(lines: &str) -> String {
    format!(
        "[[backend]]\nname = \"be\"\ncheck = true\n\n[backend.health_check]\n{lines}\n\n\
         [[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:7000\"\n"
    )
}

/// Like [`checked`], with `type = "http"` on line 6 and `lines` from line 7 on.
fn http_checked(lines: &str) -> String {
    checked(&format!("type = \"http\"\n{lines}"))
}

/// A backend "be" of `mode` with one server whose keys are `lines`, from line 8 on.
fn server_with(mode: &str, lines: &str) -> String {
    format!(
        "[[backend]]\nname = \"be\"\nmode = \"{mode}\"\n\n[[backend.server]]\nname = \"s1\"\n\
         address = \"127.0.0.1:7000\"\n{lines}\n"
    )
}

fn health_check(c: &Config) -> &HealthCheck {
    &c.backends[0].health_check
}

fn http(c: &Config) -> &HttpCheck {
    match &health_check(c).kind {
        CheckKind::Http(h) => h,
        CheckKind::Tcp => panic!("a tcp check"),
    }
}

fn server_health(c: &Config, i: usize) -> &ServerHealth {
    &c.backends[0].servers[i].health
}

// ---------------------------------------------------------------- defaults

#[test]
fn without_health_keys_servers_are_unchecked_with_haproxy_defaults() {
    let c = accepted(&server_with("tcp", ""));
    let two = Duration::from_secs(2);
    assert_eq!(
        *health_check(&c),
        HealthCheck {
            kind: CheckKind::Tcp,
            intervals: Intervals {
                interval: two,
                fast_interval: two,
                down_interval: two,
            },
            timeout: two,
            rise: 2,
            fall: 3,
        }
    );
    assert_eq!(default::INTERVAL, two);
    let address: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    assert_eq!(
        *server_health(&c, 0),
        ServerHealth {
            check: false,
            check_addr: address,
            check_address_set: false,
            on_marked_down: OnMarkedDown::Nothing,
            on_marked_up: OnMarkedUp::Nothing,
            slowstart: Duration::ZERO,
            observe: None,
            error_limit: 10,
            on_error: OnError::FailCheck,
        }
    );
    let s = &c.backends[0].servers[0];
    assert!(!s.backup && !s.disabled);
    assert_eq!(c.admin.socket, None);
}

#[test]
fn an_empty_health_check_table_is_the_default_one() {
    let c = accepted(&checked(""));
    assert_eq!(*health_check(&c), HealthCheck::default());
    assert!(server_health(&c, 0).check);
}

#[test]
fn timeout_and_other_intervals_follow_interval() {
    let c = accepted(&checked("interval = \"5s\""));
    let five = Duration::from_secs(5);
    let h = health_check(&c);
    assert_eq!(
        h.intervals,
        Intervals {
            interval: five,
            fast_interval: five,
            down_interval: five,
        }
    );
    assert_eq!(h.timeout, five);
}

#[test]
fn http_check_defaults_to_get_slash_expecting_2xx_and_3xx() {
    let c = accepted(&http_checked(""));
    let h = http(&c);
    assert_eq!(
        String::from_utf8_lossy(&h.request),
        "GET / HTTP/1.0\r\nUser-Agent: ringproxy-check\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(h.expect, [(200, 399)]);
    assert!(h.expects(200) && h.expects(302) && h.expects(399));
    assert!(!h.expects(199) && !h.expects(400) && !h.expects(503));
}

// ---------------------------------------------------------------- every key

#[test]
fn every_key_is_read() {
    let c = accepted(
        r#"[admin]
socket = "/run/ringproxy/admin.sock"

[[backend]]
name = "be"
mode = "http"
check = true

[backend.health_check]
type = "http"
interval = "3s"
fast_interval = "500ms"
down_interval = "10s"
timeout = "1s"
rise = 4
fall = 5
method = "HEAD"
path = "/healthz?full=1"
host = "check.example"
expect_status = [200, "300-302", "404"]

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"
check_address = "127.0.0.2"
check_port = 9000
backup = true
disabled = true
on_marked_down = "shutdown-sessions"
on_marked_up = "shutdown-backup-sessions"
slowstart = "30s"
observe = "layer7"
error_limit = 25
on_error = "sudden-death"

[[backend.server]]
name = "s2"
address = "127.0.0.1:7001"
check_address = "127.0.0.3:7100"
observe = "layer4"
on_error = "mark-down"

[[backend.server]]
name = "s3"
address = "127.0.0.1:7002"
on_error = "fastinter"
"#,
    );
    assert_eq!(
        c.admin.socket,
        Some(PathBuf::from("/run/ringproxy/admin.sock"))
    );
    let h = health_check(&c);
    assert_eq!(
        h.intervals,
        Intervals {
            interval: Duration::from_secs(3),
            fast_interval: Duration::from_millis(500),
            down_interval: Duration::from_secs(10),
        }
    );
    assert_eq!(h.timeout, Duration::from_secs(1));
    assert_eq!((h.rise, h.fall), (4, 5));
    let hc = http(&c);
    assert_eq!(
        String::from_utf8_lossy(&hc.request),
        "HEAD /healthz?full=1 HTTP/1.1\r\nHost: check.example\r\nUser-Agent: ringproxy-check\r\n\
         Connection: close\r\n\r\n"
    );
    assert_eq!(hc.expect, [(200, 200), (300, 302), (404, 404)]);
    assert!(hc.expects(301) && hc.expects(404) && !hc.expects(201) && !hc.expects(303));

    let s1 = &c.backends[0].servers[0];
    assert!(s1.backup && s1.disabled);
    assert_eq!(
        s1.health,
        ServerHealth {
            check: true,
            check_addr: "127.0.0.2:9000".parse().unwrap(),
            check_address_set: true,
            on_marked_down: OnMarkedDown::ShutdownSessions,
            on_marked_up: OnMarkedUp::ShutdownBackupSessions,
            slowstart: Duration::from_secs(30),
            observe: Some(Observe::Layer7),
            error_limit: 25,
            on_error: OnError::SuddenDeath,
        }
    );
    let s2 = server_health(&c, 1);
    assert_eq!(s2.check_addr, "127.0.0.3:7100".parse().unwrap());
    assert_eq!(s2.observe, Some(Observe::Layer4));
    assert_eq!(s2.on_error, OnError::MarkDown);
    let s3 = server_health(&c, 2);
    assert_eq!(s3.check_addr, "127.0.0.1:7002".parse().unwrap());
    assert_eq!(s3.on_error, OnError::FastInter);
}

#[test]
fn check_port_alone_keeps_the_servers_ip() {
    let c = accepted(&server_with("tcp", "check = true\ncheck_port = 8081"));
    assert_eq!(
        server_health(&c, 0).check_addr,
        "127.0.0.1:8081".parse().unwrap()
    );
}

#[test]
fn smallest_interval_and_count_bounds_are_accepted() {
    let c = accepted(&checked(
        "interval = \"10ms\"\nfast_interval = \"10ms\"\ndown_interval = \"10ms\"\n\
         rise = 1\nfall = 1000",
    ));
    let h = health_check(&c);
    assert_eq!(h.intervals.interval, default::INTERVAL_MIN);
    assert_eq!((h.rise, h.fall), (1, 1000));
}

#[test]
fn none_values_are_accepted() {
    let c = accepted(&server_with(
        "http",
        "check = true\non_marked_down = \"none\"\non_marked_up = \"none\"\nobserve = \"none\"",
    ));
    let s = server_health(&c, 0);
    assert_eq!(s.on_marked_down, OnMarkedDown::Nothing);
    assert_eq!(s.on_marked_up, OnMarkedUp::Nothing);
    assert_eq!(s.observe, None);
}

// ---------------------------------------------------------------- inheritance

#[test]
fn servers_inherit_the_backends_health_keys_and_may_override_each() {
    let c = accepted(
        r#"[[backend]]
name = "be"
mode = "http"
check = true
on_marked_down = "shutdown-sessions"
on_marked_up = "shutdown-backup-sessions"
slowstart = "10s"
observe = "layer7"
error_limit = 5
on_error = "mark-down"

[[backend.server]]
name = "inherits"
address = "127.0.0.1:7000"

[[backend.server]]
name = "overrides"
address = "127.0.0.1:7001"
check = false
on_marked_down = "none"
on_marked_up = "none"
slowstart = "1s"
observe = "none"
error_limit = 7
on_error = "fastinter"
"#,
    );
    assert_eq!(
        *server_health(&c, 0),
        ServerHealth {
            check: true,
            check_addr: "127.0.0.1:7000".parse().unwrap(),
            check_address_set: false,
            on_marked_down: OnMarkedDown::ShutdownSessions,
            on_marked_up: OnMarkedUp::ShutdownBackupSessions,
            slowstart: Duration::from_secs(10),
            observe: Some(Observe::Layer7),
            error_limit: 5,
            on_error: OnError::MarkDown,
        }
    );
    assert_eq!(
        *server_health(&c, 1),
        ServerHealth {
            check: false,
            check_addr: "127.0.0.1:7001".parse().unwrap(),
            check_address_set: false,
            on_marked_down: OnMarkedDown::Nothing,
            on_marked_up: OnMarkedUp::Nothing,
            slowstart: Duration::from_secs(1),
            observe: None,
            error_limit: 7,
            on_error: OnError::FastInter,
        }
    );
}

// ---------------------------------------------------------------- [backend.health_check] refused

#[test]
fn unknown_check_type() {
    let e = refused_at(&checked("type = \"icmp\""), 6, "backend.health_check.type");
    assert!(e.reason.contains("\"icmp\""), "{e}");
    assert!(e.reason.contains("\"tcp\" or \"http\""), "{e}");
}

#[test]
fn unknown_key_in_health_check() {
    let e = refused_at(&checked("inter = \"2s\""), 6, "backend.health_check.inter");
    assert!(e.reason.contains("unknown field `inter`"), "{e}");
}

#[test]
fn rise_and_fall_out_of_range() {
    let e = refused_at(&checked("rise = 0"), 6, "backend.health_check.rise");
    assert!(e.reason.contains("0 is out of range 1..=1000"), "{e}");
    let e = refused_at(
        &checked("rise = 2\nfall = 1001"),
        7,
        "backend.health_check.fall",
    );
    assert!(e.reason.contains("1001 is out of range 1..=1000"), "{e}");
    refused_at(&checked("fall = -1"), 6, "backend.health_check.fall");
}

#[test]
fn intervals_below_ten_milliseconds() {
    for key in ["interval", "fast_interval", "down_interval"] {
        let e = refused_at(
            &checked(&format!("{key} = \"5ms\"")),
            6,
            &format!("backend.health_check.{key}"),
        );
        assert!(e.reason.contains("at least 10ms"), "{key}: {e}");
    }
    // The line of the offending key, among others.
    refused_at(
        &checked("interval = \"1s\"\nfast_interval = \"100ms\"\ndown_interval = \"9ms\""),
        8,
        "backend.health_check.down_interval",
    );
}

#[test]
fn zero_or_malformed_durations() {
    let e = refused_at(
        &checked("interval = \"0s\""),
        6,
        "backend.health_check.interval",
    );
    assert!(e.reason.contains("greater than 0"), "{e}");
    refused_at(
        &checked("timeout = \"0ms\""),
        6,
        "backend.health_check.timeout",
    );
    refused_at(
        &checked("timeout = \"soon\""),
        6,
        "backend.health_check.timeout",
    );
    refused_at(&checked("interval = 2"), 6, "backend.health_check.interval");
}

#[test]
fn expect_status_out_of_range_reversed_or_empty() {
    for bad in [
        "99",
        "600",
        "\"400-200\"",
        "\"2xx\"",
        "\"200-\"",
        "2.5",
        "true",
    ] {
        let e = refused_at(
            &http_checked(&format!("expect_status = [{bad}]")),
            7,
            "backend.health_check.expect_status",
        );
        assert!(e.reason.contains("is not a status"), "{bad}: {e}");
    }
    let e = refused_at(
        &http_checked("expect_status = []"),
        7,
        "backend.health_check.expect_status",
    );
    assert!(e.reason.contains("lists no status"), "{e}");
    // An element on its own line is named by its line.
    refused_at(
        &http_checked("expect_status = [\n  200,\n  \"500-400\",\n]"),
        9,
        "backend.health_check.expect_status",
    );
    let c = accepted(&http_checked(
        "expect_status = [\"100-599\", \"204\", \" 301 - 302 \"]",
    ));
    assert_eq!(http(&c).expect, [(100, 599), (204, 204), (301, 302)]);
}

#[test]
fn method_must_be_an_uppercase_token() {
    for bad in ["get", "", "GE T", "GET/1"] {
        let e = refused_at(
            &http_checked(&format!("method = {bad:?}")),
            7,
            "backend.health_check.method",
        );
        assert!(e.reason.contains("is not a method"), "{bad:?}: {e}");
    }
    let c = accepted(&http_checked("method = \"OPTIONS\""));
    assert!(http(&c).request.starts_with(b"OPTIONS / HTTP/1.0\r\n"));
}

#[test]
fn path_must_start_with_a_slash_and_hold_no_spaces() {
    for bad in ["health", "", "/a b", "/a\tb"] {
        let e = refused_at(
            &http_checked(&format!("path = {bad:?}")),
            7,
            "backend.health_check.path",
        );
        assert!(e.reason.contains("must start with '/'"), "{bad:?}: {e}");
    }
}

#[test]
fn host_must_be_one_token() {
    for bad in ["", "a b", "a/b c"] {
        let e = refused_at(
            &http_checked(&format!("host = {bad:?}")),
            7,
            "backend.health_check.host",
        );
        assert!(e.reason.contains("is not a host name"), "{bad:?}: {e}");
    }
}

/// Values that would smuggle a header into the check request (CR LF).
const INJECTIONS: [(&str, &str); 3] = [
    ("method", "GET / HTTP/1.1\r\nX-Injected: 1\r\nX-A: GET"),
    ("path", "/\r\nX-Injected: 1"),
    ("host", "h\r\nX-Injected: 1"),
];

#[test]
fn header_injection_into_the_check_request_is_refused() {
    for (key, value) in INJECTIONS {
        let e = match parse(&http_checked(&format!("{key} = {value:?}"))) {
            Ok(_) => panic!("{key} = {value:?} accepted"),
            Err(e) => e,
        };
        assert_eq!(
            (e.line, e.key.as_str()),
            (7, format!("backend.health_check.{key}").as_str()),
            "{e}"
        );
    }
}

#[test]
fn control_characters_in_a_refused_value_keep_the_message_on_one_line() {
    let mut cases: Vec<(String, usize, String)> = INJECTIONS
        .iter()
        .map(|(key, value)| {
            (
                http_checked(&format!("{key} = {value:?}")),
                7,
                format!("backend.health_check.{key}"),
            )
        })
        .collect();
    cases.push((
        checked("type = \"tcp\\nhttp\""),
        6,
        "backend.health_check.type".into(),
    ));
    cases.push((
        server_with("tcp", "on_marked_down = \"none\\r\\nok\""),
        8,
        "backend.server.on_marked_down".into(),
    ));
    let mut spanning = Vec::new();
    for (text, line, key) in &cases {
        let e = parse(text).expect_err("refused");
        assert_eq!((e.line, &e.key), (*line, key), "{e}");
        if e.to_string().contains(['\r', '\n']) {
            spanning.push(e.to_string());
        }
    }
    assert!(
        spanning.is_empty(),
        "messages over several lines: {spanning:#?}"
    );
}

#[test]
fn http_only_keys_need_type_http() {
    for (line, key) in [
        ("method = \"GET\"", "method"),
        ("path = \"/health\"", "path"),
        ("host = \"h\"", "host"),
        ("expect_status = [200]", "expect_status"),
    ] {
        // With type = "tcp" written, and with the default type.
        for text in [checked(&format!("type = \"tcp\"\n{line}")), checked(line)] {
            let at = text.lines().position(|l| l == line).unwrap() + 1;
            let e = refused_at(&text, at, &format!("backend.health_check.{key}"));
            assert!(e.reason.contains("needs type = \"http\""), "{key}: {e}");
        }
    }
}

// ---------------------------------------------------------------- server keys refused

#[test]
fn observe_needs_check() {
    let e = refused_at(
        &server_with("http", "observe = \"layer7\""),
        8,
        "backend.server.observe",
    );
    assert!(e.reason.contains("check = true"), "{e}");
    refused_at(
        &server_with("tcp", "check = false\nobserve = \"layer4\""),
        9,
        "backend.server.observe",
    );
    // Set on the backend: named at the backend's line, for the server that is not checked.
    refused_at(
        r#"[[backend]]
name = "be"
observe = "layer4"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"
"#,
        3,
        "backend.server.observe",
    );
}

#[test]
fn observe_layer7_needs_an_http_backend() {
    let e = refused_at(
        &server_with("tcp", "check = true\nobserve = \"layer7\""),
        9,
        "backend.server.observe",
    );
    assert!(e.reason.contains("mode = \"http\""), "{e}");
    // layer4 is fine in tcp mode.
    let c = accepted(&server_with("tcp", "check = true\nobserve = \"layer4\""));
    assert_eq!(server_health(&c, 0).observe, Some(Observe::Layer4));
}

#[test]
fn check_address_and_port_need_check() {
    let e = refused_at(
        &server_with("tcp", "check_address = \"127.0.0.2\""),
        8,
        "backend.server.check_address",
    );
    assert!(e.reason.contains("check = true"), "{e}");
    let e = refused_at(
        &server_with("tcp", "check = false\ncheck_port = 9000"),
        9,
        "backend.server.check_port",
    );
    assert!(e.reason.contains("check = true"), "{e}");
}

#[test]
fn check_port_and_address_must_be_valid() {
    for bad in ["0", "65536", "-1"] {
        let e = refused_at(
            &server_with("tcp", &format!("check = true\ncheck_port = {bad}")),
            9,
            "backend.server.check_port",
        );
        assert!(e.reason.contains("out of range 1..=65535"), "{bad}: {e}");
    }
    refused_at(
        &server_with("tcp", "check = true\ncheck_address = \"not an address\""),
        9,
        "backend.server.check_address",
    );
}

#[test]
fn unknown_words_are_refused_with_the_choices() {
    for (line, key, choices) in [
        (
            "on_marked_down = \"kill\"",
            "on_marked_down",
            "\"shutdown-sessions\" or \"none\"",
        ),
        (
            "on_marked_up = \"shutdown-sessions\"",
            "on_marked_up",
            "\"shutdown-backup-sessions\" or \"none\"",
        ),
        (
            "observe = \"layer5\"",
            "observe",
            "\"layer4\" or \"layer7\" or \"none\"",
        ),
        (
            "on_error = \"explode\"",
            "on_error",
            "\"fastinter\" or \"fail-check\" or \"sudden-death\" or \"mark-down\"",
        ),
    ] {
        let e = refused_at(
            &server_with("http", &format!("check = true\n{line}")),
            9,
            &format!("backend.server.{key}"),
        );
        assert!(e.reason.contains("unknown value"), "{key}: {e}");
        assert!(e.reason.contains(choices), "{key}: {e}");
    }
}

#[test]
fn error_limit_and_slowstart_must_be_valid() {
    let e = refused_at(
        &server_with("http", "check = true\nerror_limit = 0"),
        9,
        "backend.server.error_limit",
    );
    assert!(e.reason.contains("0 is out of range 1..=1000"), "{e}");
    refused_at(
        &server_with("http", "check = true\nerror_limit = 1001"),
        9,
        "backend.server.error_limit",
    );
    refused_at(
        &server_with("http", "slowstart = \"fast\""),
        8,
        "backend.server.slowstart",
    );
    refused_at(
        &server_with("http", "slowstart = \"0s\""),
        8,
        "backend.server.slowstart",
    );
}

#[test]
fn health_keys_on_the_backend_are_checked_too() {
    refused_at(
        r#"[[backend]]
name = "be"
check = true
on_marked_down = "sometimes"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"
"#,
        4,
        "backend.server.on_marked_down",
    );
}

#[test]
fn wrong_types_of_flags_name_the_key() {
    refused_at(
        &server_with("tcp", "backup = \"yes\""),
        8,
        "backend.server.backup",
    );
    refused_at(
        &server_with("tcp", "disabled = 1"),
        8,
        "backend.server.disabled",
    );
    refused_at(
        &server_with("tcp", "check = \"on\""),
        8,
        "backend.server.check",
    );
}

// ---------------------------------------------------------------- [admin]

#[test]
fn empty_admin_socket() {
    let e = refused_at("[admin]\nsocket = \"\"\n", 2, "admin.socket");
    assert!(e.reason.contains("empty"), "{e}");
    refused_at("[admin]\nport = 9999\n", 2, "admin.port");
    let c = accepted("[admin]\n");
    assert_eq!(c.admin.socket, None);
}
