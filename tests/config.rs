//! Configuration loading: every shipped file loads, every validation rule refuses with the
//! right key and line, and a valid file yields the values it says (defaults, inheritance,
//! per-section overrides).
//!
//! Test texts start on line 1 of a raw string, so the line numbers asserted below can be
//! read off the text itself. Where a test needs a valid backend it appends [`BACKEND`]
//! *after* its own text, which leaves the test's line numbers unchanged.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::time::Duration;

mod config_common;
use config_common::*;

use ringproxy::config::{default, Balance, Config, HashType, KeyKind, Mode, Shards};

/// A valid backend named "be", appended after a test's own lines.
const BACKEND: &str = r#"
[[backend]]
name = "be"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"
"#;

/// `text` followed by the valid backend "be".
fn with_backend(text: &str) -> String {
    format!("{text}{BACKEND}")
}

// ---------------------------------------------------------------- shipped files

#[test]
fn every_shipped_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.source, path);
        assert!(
            !config.frontends.is_empty(),
            "{} has no frontend",
            path.display()
        );
        loaded += 1;
    }
    assert!(
        loaded >= 3,
        "only {loaded} config file(s) in {}",
        dir.display()
    );
}

#[test]
fn shipped_tcp_config_values() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tcp.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.global.shards, Shards::Auto);
    assert_eq!(c.global.grace, Duration::from_secs(10));
    assert!(c.global.pin);
    assert_eq!(c.frontends.len(), 1);
    assert_eq!(
        c.frontends[0].binds,
        vec!["127.0.0.1:5000".parse::<SocketAddr>().unwrap()]
    );
    let servers = &c.backends[0].servers;
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0].maxconn, NonZeroU32::new(500));
    assert_eq!(servers[1].maxconn, None);
    // "localhost:6001" is resolved at load.
    assert!(
        servers[1].address.ip().is_loopback(),
        "{}",
        servers[1].address
    );
    assert_eq!(servers[1].address.port(), 6001);
    assert_eq!(servers[1].weight, 2);
}

#[test]
fn load_of_a_missing_file_is_refused_with_line_0() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/does-not-exist.toml");
    let e = Config::load(&path).expect_err("missing file loaded");
    assert_eq!(e.file, path);
    assert_eq!(e.line, 0);
    assert_eq!(e.key, "(file)");
    assert!(e.reason.starts_with("cannot read"), "{e}");
}

#[test]
fn load_names_the_file_in_errors() {
    let path =
        std::env::temp_dir().join(format!("ringproxy-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, "[global]\nshards = 0\n").unwrap();
    let result = Config::load(&path);
    std::fs::remove_file(&path).unwrap();
    let e = result.expect_err("shards = 0 accepted");
    assert_eq!(e.file, path);
    assert_eq!((e.line, e.key.as_str()), (2, "global.shards"));
    assert!(e
        .to_string()
        .starts_with(&format!("{}:2: global.shards: ", path.display())));
}

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_key_at_top_level() {
    let e = refused_at(
        r#"# shards belongs in [global]
shards = 2

[global]
pin = false
"#,
        2,
        "shards",
    );
    assert!(e.reason.contains("unknown field `shards`"), "{e}");
}

#[test]
fn unknown_key_in_global() {
    let e = refused_at(
        r#"[global]
shards = 1
threads = 4
"#,
        3,
        "global.threads",
    );
    assert!(e.reason.contains("unknown field `threads`"), "{e}");
}

#[test]
fn unknown_key_in_defaults() {
    refused_at(
        r#"[defaults]
timeout_connect = "1s"
timeout_idle = "1s"
"#,
        3,
        "defaults.timeout_idle",
    );
}

#[test]
fn unknown_key_in_frontend() {
    // A server-side setting is not allowed in a frontend.
    refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
backend = "be"
timeout_server = "1s"
"#,
        ),
        5,
        "frontend.timeout_server",
    );
}

#[test]
fn unknown_key_in_backend() {
    // A client-side setting is not allowed in a backend.
    refused_at(
        r#"[[backend]]
name = "be"
timeout_client = "1s"
"#,
        3,
        "backend.timeout_client",
    );
}

#[test]
fn unknown_key_in_server() {
    refused_at(
        r#"[[backend]]
name = "be"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"
bakcup = true
"#,
        7,
        "backend.server.bakcup",
    );
}

// ---------------------------------------------------------------- serde-level errors

#[test]
fn wrong_type_names_the_key() {
    refused_at("[defaults]\nretries = \"3\"\n", 2, "defaults.retries");
    refused_at("[global]\npin = \"yes\"\n", 2, "global.pin");
    let e = refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = "127.0.0.1:8080"
backend = "be"
"#,
        ),
        3,
        "frontend.bind",
    );
    assert!(e.reason.contains("expected a sequence"), "{e}");
}

#[test]
fn missing_required_key_names_the_table() {
    let e = refused_at(
        r#"[global]
shards = 1

[[frontend]]
bind = ["127.0.0.1:8080"]
backend = "be"
"#,
        4,
        "frontend",
    );
    assert!(e.reason.contains("missing field `name`"), "{e}");
}

#[test]
fn toml_syntax_error() {
    let e = refused_at(
        r#"[global]
shards = 1

[[frontend]]
name = "web
bind = ["127.0.0.1:8080"]
"#,
        5,
        "frontend.name",
    );
    assert!(e.reason.contains("string"), "{e}");
}

// ---------------------------------------------------------------- names and references

#[test]
fn duplicate_frontend_name() {
    let e = refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
backend = "be"

[[frontend]]
name = "web"
bind = ["127.0.0.1:8081"]
backend = "be"
"#,
        ),
        7,
        "frontend.name",
    );
    assert!(e.reason.contains("duplicate frontend name \"web\""), "{e}");
}

#[test]
fn duplicate_backend_name() {
    let e = refused_at(
        r#"[[backend]]
name = "be"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"

[[backend]]
name = "be"
"#,
        9,
        "backend.name",
    );
    assert!(e.reason.contains("duplicate backend name \"be\""), "{e}");
}

#[test]
fn duplicate_server_name_within_a_backend() {
    let e = refused_at(
        r#"[[backend]]
name = "be"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7001"
"#,
        9,
        "backend.server.name",
    );
    assert!(e.reason.contains("\"s1\""), "{e}");
}

#[test]
fn same_server_name_in_two_backends_is_fine() {
    let c = accepted(
        r#"[[backend]]
name = "a"
[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"

[[backend]]
name = "b"
[[backend.server]]
name = "s1"
address = "127.0.0.1:7001"
"#,
    );
    assert_eq!(c.backends.len(), 2);
    assert_eq!(c.backends[1].servers[0].address.port(), 7001);
}

#[test]
fn invalid_name() {
    refused_at(
        &with_backend(
            "[[frontend]]\nname = \"my web\"\nbind = [\"127.0.0.1:8080\"]\nbackend = \"be\"\n",
        ),
        2,
        "frontend.name",
    );
}

#[test]
fn unknown_backend_reference() {
    let e = refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
backend = "nope"
"#,
        ),
        4,
        "frontend.backend",
    );
    assert!(e.reason.contains("\"nope\""), "{e}");
}

#[test]
fn frontend_without_backend() {
    // Refused at the frontend's name: there is no `backend` line to point at.
    refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
"#,
        ),
        2,
        "frontend.backend",
    );
}

// ---------------------------------------------------------------- addresses

fn frontend_binding(bind: &str) -> String {
    with_backend(&format!(
        "[[frontend]]\nname = \"web\"\nbind = [{bind}]\nbackend = \"be\"\n"
    ))
}

#[test]
fn bind_without_port_or_host() {
    let e = refused_at(&frontend_binding("\"nonsense\""), 3, "frontend.bind");
    assert!(e.reason.contains("no port"), "{e}");
    let e = refused_at(&frontend_binding("\"127.0.0.1\""), 3, "frontend.bind");
    assert!(e.reason.contains("no port"), "{e}");
}

#[test]
fn bind_with_invalid_ip() {
    let e = refused_at(&frontend_binding("\"999.1.1.1:80\""), 3, "frontend.bind");
    assert!(e.reason.contains("999.1.1.1:80"), "{e}");
}

#[test]
fn bad_address_in_a_multiline_bind_list_names_its_own_line() {
    refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = [
    "127.0.0.1:8080",
    "nonsense",
]
backend = "be"
"#,
        ),
        5,
        "frontend.bind",
    );
}

#[test]
fn empty_bind_list() {
    let e = refused_at(&frontend_binding(""), 3, "frontend.bind");
    assert!(e.reason.contains("at least one"), "{e}");
}

#[test]
fn same_address_twice_in_one_frontend() {
    let e = refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = [
    "127.0.0.1:8080",
    "127.0.0.1:8080",
]
backend = "be"
"#,
        ),
        5,
        "frontend.bind",
    );
    assert!(e.reason.contains("listed twice"), "{e}");
}

#[test]
fn same_address_in_two_frontends() {
    let e = refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
backend = "be"

[[frontend]]
name = "web2"
bind = ["127.0.0.1:8081", "127.0.0.1:8080"]
backend = "be"
"#,
        ),
        8,
        "frontend.bind",
    );
    assert!(
        e.reason
            .contains("127.0.0.1:8080 is already bound by frontend \"web\""),
        "{e}"
    );
}

fn server_at(address: &str) -> String {
    format!("[[backend]]\nname = \"be\"\n\n[[backend.server]]\nname = \"s1\"\naddress = \"{address}\"\n")
}

#[test]
fn bad_server_address() {
    let e = refused_at(&server_at("127.0.0.1:http"), 6, "backend.server.address");
    assert!(e.reason.contains("not a valid address"), "{e}");
    let e = refused_at(&server_at("db1"), 6, "backend.server.address");
    assert!(e.reason.contains("no port"), "{e}");
    let e = refused_at(&server_at("127.0.0.1:0"), 6, "backend.server.address");
    assert!(e.reason.contains("port 0"), "{e}");
}

// ---------------------------------------------------------------- durations

#[test]
fn duration_without_unit() {
    let e = refused_at(
        "[defaults]\ntimeout_connect = \"5\"\n",
        2,
        "defaults.timeout_connect",
    );
    assert!(e.reason.contains("no unit"), "{e}");
}

#[test]
fn duration_with_unknown_unit() {
    let e = refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
backend = "be"
timeout_client = "5x"
"#,
        ),
        5,
        "frontend.timeout_client",
    );
    assert!(e.reason.contains("unknown unit \"x\""), "{e}");
}

#[test]
fn zero_duration() {
    let e = refused_at(
        r#"[[backend]]
name = "be"
timeout_tunnel = "0s"
"#,
        3,
        "backend.timeout_tunnel",
    );
    assert!(e.reason.contains("greater than 0"), "{e}");
}

#[test]
fn absurd_duration() {
    let e = refused_at(
        "[defaults]\ntimeout_tunnel = \"366d\"\n",
        2,
        "defaults.timeout_tunnel",
    );
    assert!(e.reason.contains("at most 365d"), "{e}");
    let e = refused_at(
        "[global]\ngrace = \"200000000000000d\"\n",
        2,
        "global.grace",
    );
    assert!(e.reason.contains("at most 365d"), "{e}");
}

#[test]
fn empty_duration() {
    let e = refused_at("[global]\nshards = 1\ngrace = \"\"\n", 3, "global.grace");
    assert!(e.reason.contains("empty"), "{e}");
}

// ---------------------------------------------------------------- numeric ranges

#[test]
fn retries_out_of_range() {
    let e = refused_at("[defaults]\nretries = -1\n", 2, "defaults.retries");
    assert!(e.reason.contains("-1 is out of range 0..=100"), "{e}");
    let e = refused_at(
        "[[backend]]\nname = \"be\"\nretries = 101\n",
        3,
        "backend.retries",
    );
    assert!(e.reason.contains("101 is out of range 0..=100"), "{e}");
}

#[test]
fn retries_bounds_are_accepted() {
    let c = accepted("[defaults]\nretries = 0\n\n[[backend]]\nname = \"be\"\nretries = 100\n");
    assert_eq!(c.backends[0].retries, 100);
    let c = accepted("[defaults]\nretries = 0\n\n[[backend]]\nname = \"be\"\n");
    assert_eq!(c.backends[0].retries, 0);
}

fn server_with(line: &str) -> String {
    format!("[[backend]]\nname = \"be\"\n\n[[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:7000\"\n{line}\n")
}

#[test]
fn weight_out_of_range() {
    let e = refused_at(&server_with("weight = -1"), 7, "backend.server.weight");
    assert!(e.reason.contains("-1 is out of range 0..=256"), "{e}");
    let e = refused_at(&server_with("weight = 257"), 7, "backend.server.weight");
    assert!(e.reason.contains("257 is out of range 0..=256"), "{e}");
}

#[test]
fn weight_bounds_are_accepted() {
    assert_eq!(
        accepted(&server_with("weight = 0")).backends[0].servers[0].weight,
        0
    );
    assert_eq!(
        accepted(&server_with("weight = 256")).backends[0].servers[0].weight,
        256
    );
}

#[test]
fn negative_maxconn() {
    refused_at(&server_with("maxconn = -1"), 7, "backend.server.maxconn");
}

#[test]
fn maxconn_of_the_process_and_of_frontends() {
    let c = accepted(&with_backend(
        r#"[global]
maxconn = 1000

[[frontend]]
name = "capped"
bind = ["127.0.0.1:0"]
backend = "be"
maxconn = 10

[[frontend]]
name = "zero"
bind = ["127.0.0.1:0"]
backend = "be"
maxconn = 0

[[frontend]]
name = "absent"
bind = ["127.0.0.1:0"]
backend = "be"
"#,
    ));
    assert_eq!(c.global.maxconn, NonZeroU32::new(1000));
    assert_eq!(c.frontends[0].maxconn, NonZeroU32::new(10));
    assert_eq!(c.frontends[1].maxconn, None, "maxconn 0 means unlimited");
    assert_eq!(
        c.frontends[2].maxconn, None,
        "maxconn absent means unlimited"
    );
    let c = accepted(&with_backend(
        "[global]
maxconn = 4294967295
",
    ));
    assert_eq!(c.global.maxconn, NonZeroU32::new(u32::MAX));
}

#[test]
fn maxconn_negative_or_too_large() {
    let frontend = "[[frontend]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n";
    for (text, line, key, reason) in [
        (
            "[global]\nmaxconn = -1\n".to_string(),
            2,
            "global.maxconn",
            "-1 is out of range 0..=4294967295",
        ),
        (
            "[global]\npin = false\nmaxconn = 4294967296\n".to_string(),
            3,
            "global.maxconn",
            "4294967296 is out of range 0..=4294967295",
        ),
        (
            format!("{frontend}maxconn = -5\n"),
            5,
            "frontend.maxconn",
            "-5 is out of range 0..=4294967295",
        ),
        (
            format!("{frontend}maxconn = 10000000000\n"),
            5,
            "frontend.maxconn",
            "10000000000 is out of range 0..=4294967295",
        ),
        (
            format!("{frontend}maxconn = \"10\"\n"),
            5,
            "frontend.maxconn",
            "invalid type",
        ),
    ] {
        let e = refused_at(&with_backend(&text), line, key);
        assert!(e.reason.contains(reason), "{e}");
    }
    // Only the process and frontends have one (servers too); [defaults] does not.
    let e = refused_at("[defaults]\nmaxconn = 5\n", 2, "defaults.maxconn");
    assert!(e.reason.contains("unknown field"), "{e}");
}

#[test]
fn shards_zero_or_not_a_number() {
    let e = refused_at("[global]\npin = false\nshards = 0\n", 3, "global.shards");
    assert!(e.reason.contains("1..=1024"), "{e}");
    refused_at("[global]\nshards = \"many\"\n", 2, "global.shards");
    refused_at("[global]\nshards = 1025\n", 2, "global.shards");
}

// ---------------------------------------------------------------- modes and algorithms

#[test]
fn mode_udp_is_unknown() {
    let e = refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
mode = "udp"
backend = "be"
"#,
        ),
        4,
        "frontend.mode",
    );
    assert!(e.reason.contains("unknown mode \"udp\""), "{e}");
}

#[test]
fn http_frontend_needs_http_backend() {
    let e = refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
mode = "http"
backend = "be"
"#,
        ),
        5,
        "frontend.backend",
    );
    assert!(e.reason.contains("Tcp mode"), "{e}");
}

#[test]
fn unknown_balance() {
    // HAProxy's "first" is not implemented.
    let e = refused_at(
        "[[backend]]\nname = \"be\"\nbalance = \"first\"\n",
        3,
        "backend.balance",
    );
    assert!(e.reason.contains("unknown algorithm \"first\""), "{e}");
    for accepted in [
        "\"roundrobin\"",
        "\"leastconn\"",
        "\"random\"",
        "\"source\"",
        "\"uri\"",
        "\"hdr(<name>)\"",
    ] {
        assert!(e.reason.contains(accepted), "{accepted} not listed: {e}");
    }
    // Names are HAProxy's, lower case, without arguments we do not implement.
    for other in [
        "RoundRobin",
        "uri whole",
        "hdr(host) use_domain_only",
        "hdr(x",
        "hdr",
    ] {
        refused_at(
            &format!("[[backend]]\nname = \"be\"\nbalance = \"{other}\"\n"),
            3,
            "backend.balance",
        );
    }
}

#[test]
fn every_balance_algorithm_is_accepted() {
    for (text, mode, want) in [
        ("roundrobin", "tcp", Balance::RoundRobin),
        ("leastconn", "tcp", Balance::LeastConn),
        ("random", "tcp", Balance::Random),
        ("source", "tcp", Balance::Source),
        ("uri", "http", Balance::Uri),
        (
            "hdr(X-User)",
            "http",
            Balance::Header {
                name: "x-user".into(),
            },
        ),
    ] {
        let c = accepted(&backend_with(mode, &format!("balance = \"{text}\"")));
        let b = &c.backends[0];
        assert_eq!(b.balance, want, "{text}");
        assert_eq!(b.hash_type, HashType::MapBased, "{text}: the default");
        assert_eq!(b.balance.to_string(), text.to_ascii_lowercase());
    }
}

#[test]
fn hashing_algorithms_name_their_key() {
    let key = |text: &str| {
        let c = accepted(&backend_with("http", &format!("balance = \"{text}\"")));
        c.backends[0].balance.clone()
    };
    assert_eq!(key("roundrobin").needs_key(), None);
    assert_eq!(key("leastconn").needs_key(), None);
    assert_eq!(key("random").needs_key(), None);
    assert_eq!(key("source").needs_key(), Some(KeyKind::Source));
    assert_eq!(key("uri").needs_key(), Some(KeyKind::Uri));
    assert_eq!(
        key("hdr(Cookie)").needs_key(),
        Some(KeyKind::Header("cookie")),
        "lower-cased: header names are case-insensitive"
    );
    assert_eq!(
        key("hdr(x-api_key.v2~)").needs_key(),
        Some(KeyKind::Header("x-api_key.v2~"))
    );
}

#[test]
fn hdr_needs_a_valid_header_name() {
    let e = refused_at(
        &backend_with("http", "balance = \"hdr()\""),
        4,
        "backend.balance",
    );
    assert!(e.reason.contains("needs a header name"), "{e}");
    for bad in ["x user", "x:user", "(x)", "é"] {
        let e = refused_at(
            &backend_with("http", &format!("balance = \"hdr({bad})\"")),
            4,
            "backend.balance",
        );
        assert!(
            e.reason
                .contains(&format!("\"{bad}\" is not a valid header name")),
            "{e}"
        );
    }
}

#[test]
fn uri_and_hdr_need_an_http_backend() {
    for text in ["uri", "hdr(x-user)"] {
        let e = refused_at(
            &backend_with("tcp", &format!("balance = \"{text}\"")),
            4,
            "backend.balance",
        );
        assert!(e.reason.contains("needs mode = \"http\""), "{e}");
    }
}

#[test]
fn hash_type_values() {
    for (balance, mode) in [("source", "tcp"), ("uri", "http"), ("hdr(x-user)", "http")] {
        for (text, want) in [
            ("map-based", HashType::MapBased),
            ("consistent", HashType::Consistent),
        ] {
            let c = accepted(&backend_with(
                mode,
                &format!("balance = \"{balance}\"\nhash_type = \"{text}\""),
            ));
            assert_eq!(c.backends[0].hash_type, want, "{balance} {text}");
        }
    }
    let e = refused_at(
        &backend_with("tcp", "balance = \"source\"\nhash_type = \"ring\""),
        5,
        "backend.hash_type",
    );
    assert!(
        e.reason
            .contains("unknown hash type \"ring\" (expected \"map-based\" or \"consistent\")"),
        "{e}"
    );
}

#[test]
fn hash_type_needs_a_hashing_algorithm() {
    for balance in ["roundrobin", "leastconn", "random"] {
        let e = refused_at(
            &backend_with(
                "tcp",
                &format!("balance = \"{balance}\"\nhash_type = \"consistent\""),
            ),
            5,
            "backend.hash_type",
        );
        assert!(
            e.reason.contains("only applies to balance = \"source\""),
            "{e}"
        );
        assert!(e.reason.contains(&format!("is \"{balance}\"")), "{e}");
    }
    // The default algorithm (roundrobin) too.
    let e = refused_at(
        &backend_with("tcp", "hash_type = \"map-based\""),
        4,
        "backend.hash_type",
    );
    assert!(e.reason.contains("is \"roundrobin\""), "{e}");
}

#[test]
fn summary_names_the_algorithm() {
    let c = accepted(&backend_with(
        "http",
        "balance = \"hdr(X-User)\"\nhash_type = \"consistent\"",
    ));
    let summary = c.summary();
    assert!(
        summary.contains(
            "  backend hb (Http, hdr(x-user), hash_type consistent): s1=127.0.0.1:7000 w1\n"
        ),
        "{summary}"
    );
    let summary = accepted(FULL).summary();
    assert!(
        summary.contains("  backend first (Tcp, leastconn): "),
        "{summary}"
    );
}

// ---------------------------------------------------------------- a valid configuration

const FULL: &str = r#"
[global]
shards = 3
grace = "1m30s"
pin = false

[defaults]
timeout_connect = "250ms"
timeout_client = "20s"
timeout_server = "40s"
timeout_tunnel = "2h"
timeout_client_fin = "7s"
timeout_server_fin = "8s"
retries = 2

[[frontend]]
name = "plain"
bind = ["127.0.0.1:8080", "[::1]:8080"]
backend = "second"

[[frontend]]
name = "tuned"
bind = ["127.0.0.1:8081"]
mode = "tcp"
backend = "first"
timeout_client = "1s"
timeout_client_fin = "2s"
splice = false

[[backend]]
name = "first"
balance = "leastconn"
retries = 0
timeout_tunnel = "10m"
timeout_connect = "1d"

[[backend.server]]
name = "a"
address = "127.0.0.1:7000"
maxconn = 0

[[backend.server]]
name = "b"
address = "127.0.0.1:7001"
weight = 5
maxconn = 500

[[backend]]
name = "second"
mode = "tcp"

[[backend.server]]
name = "c"
address = "[::1]:7002"
"#;

#[test]
fn global_values() {
    let c = accepted(FULL);
    assert_eq!(
        c.global.shards,
        Shards::Count(NonZeroUsize::new(3).unwrap())
    );
    assert_eq!(c.global.grace, Duration::from_secs(90));
    assert!(!c.global.pin);
    assert_eq!(c.source, Path::new("t.toml"));
}

#[test]
fn frontend_inherits_defaults() {
    let c = accepted(FULL);
    let f = &c.frontends[0];
    assert_eq!(f.name, "plain");
    let binds: Vec<SocketAddr> = vec![
        "127.0.0.1:8080".parse().unwrap(),
        "[::1]:8080".parse().unwrap(),
    ];
    assert_eq!(f.binds, binds);
    assert_eq!(f.mode, Mode::Tcp);
    assert_eq!(c.backends[f.backend.unwrap()].name, "second");
    assert_eq!(f.backend, Some(1));
    assert_eq!(f.timeout_client, Duration::from_secs(20));
    assert_eq!(f.timeout_client_fin, Duration::from_secs(7));
    assert!(f.splice, "splice defaults to true");
}

#[test]
fn frontend_overrides() {
    let c = accepted(FULL);
    let f = &c.frontends[1];
    assert_eq!(f.name, "tuned");
    assert_eq!(f.backend, Some(0));
    assert_eq!(f.timeout_client, Duration::from_secs(1));
    assert_eq!(f.timeout_client_fin, Duration::from_secs(2));
    assert!(!f.splice);
}

#[test]
fn backend_overrides() {
    let c = accepted(FULL);
    let b = &c.backends[0];
    assert_eq!(b.name, "first");
    assert_eq!(b.balance, Balance::LeastConn);
    assert_eq!(b.retries, 0);
    assert_eq!(b.timeout_tunnel, Duration::from_secs(600));
    assert_eq!(b.timeout_connect, Duration::from_secs(86_400));
    // Not overridden: inherited from [defaults].
    assert_eq!(b.timeout_server, Duration::from_secs(40));
    assert_eq!(b.timeout_server_fin, Duration::from_secs(8));
}

#[test]
fn backend_inherits_defaults() {
    let c = accepted(FULL);
    let b = &c.backends[1];
    assert_eq!(b.name, "second");
    assert_eq!(b.mode, Mode::Tcp);
    assert_eq!(b.balance, Balance::RoundRobin);
    assert_eq!(b.retries, 2);
    assert_eq!(b.timeout_connect, Duration::from_millis(250));
    assert_eq!(b.timeout_server, Duration::from_secs(40));
    assert_eq!(b.timeout_server_fin, Duration::from_secs(8));
    assert_eq!(b.timeout_tunnel, Duration::from_secs(7200));
    assert_eq!(c.backend_index("second"), Some(1));
    assert_eq!(c.backend_index("third"), None);
}

#[test]
fn server_values() {
    let c = accepted(FULL);
    let s = &c.backends[0].servers;
    assert_eq!(s.len(), 2);
    assert_eq!(
        (s[0].name.as_str(), s[0].address),
        ("a", "127.0.0.1:7000".parse().unwrap())
    );
    assert_eq!(s[0].weight, 1, "weight defaults to 1");
    assert_eq!(s[0].maxconn, None, "maxconn 0 means unlimited");
    assert_eq!(s[1].weight, 5);
    assert_eq!(s[1].maxconn, NonZeroU32::new(500));
    let c2 = &c.backends[1].servers[0];
    assert_eq!(c2.address, "[::1]:7002".parse::<SocketAddr>().unwrap());
    assert_eq!(c2.maxconn, None, "maxconn absent means unlimited");
}

#[test]
fn built_in_defaults_without_global_or_defaults() {
    let c = accepted(&with_backend(
        "[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:8080\"]\nbackend = \"be\"\n",
    ));
    assert_eq!(c.global.shards, Shards::Auto);
    assert_eq!(c.global.grace, default::GRACE);
    assert!(c.global.pin);
    assert_eq!(c.global.maxconn, None);
    let f = &c.frontends[0];
    assert_eq!(f.maxconn, None);
    assert_eq!(f.timeout_client, default::TIMEOUT_CLIENT);
    assert_eq!(f.timeout_client_fin, default::TIMEOUT_CLIENT_FIN);
    assert!(f.splice);
    let b = &c.backends[0];
    assert_eq!(b.balance, Balance::RoundRobin);
    assert_eq!(b.timeout_connect, default::TIMEOUT_CONNECT);
    assert_eq!(b.timeout_server, default::TIMEOUT_SERVER);
    assert_eq!(b.timeout_server_fin, default::TIMEOUT_SERVER_FIN);
    assert_eq!(b.timeout_tunnel, default::TIMEOUT_TUNNEL);
    assert_eq!(b.retries, default::RETRIES);
    assert_eq!(b.servers[0].weight, default::WEIGHT);
    // The documented values, so that a changed constant is noticed here.
    assert_eq!(default::GRACE, Duration::from_secs(10));
    assert_eq!(default::TIMEOUT_CONNECT, Duration::from_secs(5));
    assert_eq!(default::RETRIES, 3);
}

#[test]
fn shards_auto_and_absent() {
    assert_eq!(
        accepted("[global]\nshards = \"auto\"\n").global.shards,
        Shards::Auto
    );
    assert_eq!(
        accepted("[global]\npin = true\n").global.shards,
        Shards::Auto
    );
    assert_eq!(
        accepted("[global]\nshards = 1024\n").global.shards,
        Shards::Count(NonZeroUsize::new(1024).unwrap())
    );
}

#[test]
fn splice_default_can_be_turned_off_in_defaults() {
    let c = accepted(&with_backend(
        r#"[defaults]
splice = false

[[frontend]]
name = "off"
bind = ["127.0.0.1:8080"]
backend = "be"

[[frontend]]
name = "on"
bind = ["127.0.0.1:8081"]
backend = "be"
splice = true
"#,
    ));
    assert!(!c.frontends[0].splice);
    assert!(c.frontends[1].splice);
}

#[test]
fn summary_counts() {
    let c = accepted(FULL);
    let summary = c.summary();
    assert!(
        summary.starts_with("t.toml: ok: 2 frontend(s), 2 backend(s), 3 server(s)\n"),
        "{summary}"
    );
    assert!(
        summary.contains("frontend tuned (Tcp) on 127.0.0.1:8081 -> backend first"),
        "{summary}"
    );
}

// ---------------------------------------------------------------- known defect

/// A comment after a table header leaks into the key of a serde-level error:
/// `Ctx::key_at_line` strips only the brackets, so `[defaults]   # c` yields the key
/// `defaults]   # c.retries`. configs/tcp.toml itself has such a header.
#[test]
fn serde_error_under_a_commented_header() {
    refused_at(
        r#"[defaults]                   # inherited by every section
retries = "3"
"#,
        2,
        "defaults.retries",
    );
}

// ---------------------------------------------------------------- http mode

/// A valid http backend named "hb", appended after a test's own lines.
const HTTP_BACKEND: &str = r#"
[[backend]]
name = "hb"
mode = "http"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"
"#;

fn with_http_backend(text: &str) -> String {
    format!("{text}{HTTP_BACKEND}")
}

#[test]
fn http_defaults_and_inheritance() {
    let c = accepted(&with_http_backend(
        r#"[defaults]
timeout_http_request = "3s"
max_headers = 50

[[frontend]]
name = "a"
bind = ["127.0.0.1:0"]
mode = "http"
backend = "hb"

[[frontend]]
name = "b"
bind = ["127.0.0.1:0"]
mode = "http"
backend = "hb"
timeout_http_request = "1s"
timeout_http_keep_alive = "2s"
max_keep_alive_requests = 0
max_header_bytes = 4096
max_request_line = 1024
"#,
    ));
    let (a, b) = (&c.frontends[0].http, &c.frontends[1].http);
    assert_eq!(c.frontends[0].mode, Mode::Http);
    assert_eq!(a.timeout_http_request, Duration::from_secs(3));
    assert_eq!(a.timeout_http_keep_alive, default::TIMEOUT_HTTP_KEEP_ALIVE);
    assert_eq!(a.max_headers, 50);
    assert_eq!(a.max_header_bytes, default::MAX_HEADER_BYTES);
    assert_eq!(a.max_request_line, default::MAX_REQUEST_LINE);
    assert_eq!(a.max_keep_alive_requests, default::MAX_KEEP_ALIVE_REQUESTS);
    assert!(a.routes.is_empty() && a.forward_for.is_none());
    assert_eq!(b.timeout_http_request, Duration::from_secs(1));
    assert_eq!(b.timeout_http_keep_alive, Duration::from_secs(2));
    assert_eq!(b.max_keep_alive_requests, 0);
    assert_eq!(b.max_headers, 50);
    assert_eq!(b.max_header_bytes, 4096);
    assert_eq!(b.max_request_line, 1024);
}

#[test]
fn http_limits_out_of_range() {
    let head =
        "[[frontend]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"hb\"\n";
    for (line, key, value) in [
        ("max_headers = 0", "frontend.max_headers", "0"),
        ("max_headers = 1001", "frontend.max_headers", "1001"),
        ("max_header_bytes = 100", "frontend.max_header_bytes", "100"),
        (
            "max_keep_alive_requests = -1",
            "frontend.max_keep_alive_requests",
            "-1",
        ),
        ("max_request_line = 10", "frontend.max_request_line", "10"),
        (
            "timeout_http_request = \"0s\"",
            "frontend.timeout_http_request",
            "",
        ),
        (
            "timeout_http_keep_alive = \"5\"",
            "frontend.timeout_http_keep_alive",
            "",
        ),
    ] {
        let text = with_http_backend(&format!("{head}{line}\n"));
        let e = refused_at(&text, 6, key);
        assert!(e.reason.contains(value), "{e}");
    }
    // the request line may not exceed the head
    let text = with_http_backend(&format!(
        "{head}max_header_bytes = 2048\nmax_request_line = 4096\n"
    ));
    refused_at(&text, 7, "frontend.max_request_line");
    refused_at(
        &with_http_backend("[defaults]\nmax_headers = 5000\n"),
        2,
        "defaults.max_headers",
    );
}

#[test]
fn routes_are_resolved_in_order() {
    let c = accepted(&with_http_backend(
        r#"[[frontend]]
name = "a"
bind = ["127.0.0.1:0"]
mode = "http"

[[frontend.route]]
host = "API.Example.com"
backend = "hb"

[[frontend.route]]
host = "*.static.test"
path_prefix = "/img/"
backend = "hb"
"#,
    ));
    use ringproxy::config::HostPattern;
    let f = &c.frontends[0];
    assert_eq!(f.backend, None, "routes only: unmatched requests get 503");
    assert_eq!(f.http.routes.len(), 2);
    assert_eq!(
        f.http.routes[0].host,
        Some(HostPattern::Exact("api.example.com".into()))
    );
    let suffix = f.http.routes[1].host.as_ref().unwrap();
    assert!(suffix.matches(b"a.static.test") && suffix.matches(b"a.b.static.test"));
    assert!(!suffix.matches(b"static.test") && !suffix.matches(b"xstatic.test"));
    assert_eq!(f.http.routes[1].path_prefix.as_deref(), Some("/img/"));
}

#[test]
fn bad_routes_refused() {
    let head = "[[frontend]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"hb\"\n\n[[frontend.route]]\n";
    for (lines, line, key, reason) in [
        (
            "host = \"a:80\"\nbackend = \"hb\"\n",
            8,
            "frontend.route.host",
            "not a host name",
        ),
        (
            "host = \"a.*.b\"\nbackend = \"hb\"\n",
            8,
            "frontend.route.host",
            "not a host name",
        ),
        (
            "path_prefix = \"v2\"\nbackend = \"hb\"\n",
            8,
            "frontend.route.path_prefix",
            "start with '/'",
        ),
        (
            "host = \"a\"\nbackend = \"nope\"\n",
            9,
            "frontend.route.backend",
            "no backend is named",
        ),
        (
            "backend = \"hb\"\n",
            8,
            "frontend.route",
            "needs host or path_prefix",
        ),
        (
            "host = \"a\"\nbackend = \"hb\"\nweight = 1\n",
            10,
            "frontend.route.weight",
            "unknown field",
        ),
    ] {
        let e = refused_at(&with_http_backend(&format!("{head}{lines}")), line, key);
        assert!(e.reason.contains(reason), "{e}");
    }
    // a route to a tcp backend
    let text = format!(
        "{head}host = \"a\"\nbackend = \"be\"\n{}",
        with_http_backend(BACKEND)
    );
    let e = refused_at(&text, 9, "frontend.route.backend");
    assert!(e.reason.contains("Tcp mode"), "{e}");
    // no backend and no route
    let e = refused_at(
        &with_http_backend(
            "[[frontend]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n",
        ),
        2,
        "frontend.backend",
    );
    assert!(e.reason.contains("names no backend"), "{e}");
}

#[test]
fn routes_and_forward_for_need_http() {
    let e = refused_at(
        &with_backend(
            "[[frontend]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n[[frontend.route]]\nhost = \"a\"\nbackend = \"be\"\n",
        ),
        8,
        "frontend.route",
    );
    assert!(e.reason.contains("mode = \"http\""), "{e}");
    let e = refused_at(
        &with_backend(
            "[[frontend]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\nforward_for = { enabled = true }\n",
        ),
        5,
        "frontend.forward_for",
    );
    assert!(e.reason.contains("mode = \"http\""), "{e}");
}

#[test]
fn forward_for_networks() {
    let c = accepted(&with_http_backend(
        r#"[[frontend]]
name = "a"
bind = ["127.0.0.1:0"]
mode = "http"
backend = "hb"
forward_for = { enabled = true, except = ["10.0.0.0/8", "::1", "fd00::/8"] }
"#,
    ));
    let ff = c.frontends[0].http.forward_for.as_ref().expect("enabled");
    let has = |ip: &str| ff.except.iter().any(|n| n.contains(ip.parse().unwrap()));
    assert!(has("10.1.2.3") && has("::1") && has("fd12::1") && has("::ffff:10.0.0.1"));
    assert!(!has("11.0.0.1") && !has("127.0.0.1") && !has("::2"));

    let c = accepted(&with_http_backend(
        "[[frontend]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"hb\"\nforward_for = { enabled = false }\n",
    ));
    assert!(c.frontends[0].http.forward_for.is_none());

    for bad in ["10.0.0.0/33", "10.0.0/8", "example.com"] {
        let text = with_http_backend(&format!(
            "[[frontend]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"hb\"\nforward_for = {{ except = [\"{bad}\"] }}\n"
        ));
        let e = refused_at(&text, 6, "frontend.forward_for.except");
        assert!(e.reason.contains(bad), "{e}");
    }
}

// ---------------------------------------------------------------- backend connection pools

use ringproxy::config::{HttpReuse, KeepAlive, RetryOn};

/// A backend "hb" in `mode` whose own keys, `lines`, start on line 4; a server follows.
fn backend_with(mode: &str, lines: &str) -> String {
    format!(
        "[[backend]]\nname = \"hb\"\nmode = \"{mode}\"\n{lines}\n\n[[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:7000\"\n"
    )
}

/// An http backend "hb" whose own keys, `lines`, start on line 4.
fn pool_backend(lines: &str) -> String {
    backend_with("http", lines)
}

/// An http frontend "a" to "hb" whose own keys, `lines`, start on line 6; the http
/// backend "hb" follows.
fn http_frontend_with(lines: &str) -> String {
    with_http_backend(&format!(
        "[[frontend]]\nname = \"a\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"hb\"\n{lines}\n"
    ))
}

/// The `retry_on` of backend "hb" with `retry_on = {list}` on line 4.
fn retry_on(list: &str) -> RetryOn {
    accepted(&pool_backend(&format!("retry_on = {list}")))
        .backends
        .remove(0)
        .http
        .retry_on
}

#[test]
fn pool_settings_default_when_absent() {
    let c = accepted(&http_frontend_with(""));
    let h = &c.backends[0].http;
    assert_eq!(h.reuse, HttpReuse::Safe);
    assert_eq!(h.pool_max_idle, 64);
    assert_eq!(h.pool_idle_timeout, Duration::from_secs(4));
    assert_eq!(h.pool_max_reuse, 0, "0 is unlimited");
    assert_eq!(h.retry_on, RetryOn::conn_failure_only());
    let r = &h.retry_on;
    assert!(r.conn_failure, "conn-failure is retried by default");
    assert!(!r.empty_response && !r.junk_response && !r.response_timeout);
    assert!(r.statuses.is_empty() && !r.status(503));
    assert_eq!(h.keep_alive, KeepAlive::KeepAlive);
    assert!(!h.pretend_keep_alive);
    assert!(!h.prefer_last_server);
    let f = &c.frontends[0].http;
    assert_eq!(f.keep_alive, KeepAlive::KeepAlive);
    assert!(!f.pretend_keep_alive);
    // The documented values, so that a changed constant is noticed here.
    assert_eq!(default::POOL_MAX_IDLE, 64);
    assert_eq!(default::POOL_IDLE_TIMEOUT, Duration::from_secs(4));
    assert_eq!(default::POOL_MAX_IDLE_MAX, 100_000);
}

#[test]
fn pool_settings_inherited_from_defaults_and_overridden() {
    let c = accepted(
        r#"[defaults]
http_reuse = "always"
pool_max_idle = 10
pool_idle_timeout = "1500ms"
pool_max_reuse = 100
retry_on = ["empty-response", 503]
keep_alive = "server-close"
pretend_keep_alive = true
prefer_last_server = true

[[frontend]]
name = "inherits"
bind = ["127.0.0.1:0"]
mode = "http"
backend = "inherits"

[[frontend]]
name = "overrides"
bind = ["127.0.0.1:0"]
mode = "http"
backend = "overrides"
keep_alive = "close"
pretend_keep_alive = false

[[backend]]
name = "inherits"
mode = "http"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"

[[backend]]
name = "overrides"
mode = "http"
http_reuse = "never"
pool_max_idle = 0
pool_idle_timeout = "2m"
pool_max_reuse = 1
retry_on = ["none"]
keep_alive = "keep-alive"
pretend_keep_alive = false
prefer_last_server = false

[[backend.server]]
name = "s1"
address = "127.0.0.1:7001"
"#,
    );
    let inherited = &c.backends[0].http;
    assert_eq!(c.backends[0].name, "inherits");
    assert_eq!(inherited.reuse, HttpReuse::Always);
    assert_eq!(inherited.pool_max_idle, 10);
    assert_eq!(inherited.pool_idle_timeout, Duration::from_millis(1500));
    assert_eq!(inherited.pool_max_reuse, 100);
    assert_eq!(
        inherited.retry_on,
        RetryOn {
            conn_failure: false,
            empty_response: true,
            junk_response: false,
            response_timeout: false,
            statuses: vec![503],
        }
    );
    assert_eq!(inherited.keep_alive, KeepAlive::ServerClose);
    assert!(inherited.pretend_keep_alive);
    assert!(inherited.prefer_last_server);

    let overridden = &c.backends[1].http;
    assert_eq!(c.backends[1].name, "overrides");
    assert_eq!(overridden.reuse, HttpReuse::Never);
    assert_eq!(overridden.pool_max_idle, 0);
    assert_eq!(overridden.pool_idle_timeout, Duration::from_secs(120));
    assert_eq!(overridden.pool_max_reuse, 1);
    assert_eq!(
        overridden.retry_on,
        RetryOn {
            conn_failure: false,
            empty_response: false,
            junk_response: false,
            response_timeout: false,
            statuses: vec![],
        },
        "\"none\" retries nothing, not even connection failures"
    );
    assert_eq!(overridden.keep_alive, KeepAlive::KeepAlive);
    assert!(!overridden.pretend_keep_alive);
    assert!(!overridden.prefer_last_server);

    let (fi, fo) = (&c.frontends[0].http, &c.frontends[1].http);
    assert_eq!(fi.keep_alive, KeepAlive::ServerClose);
    assert!(fi.pretend_keep_alive);
    assert_eq!(fo.keep_alive, KeepAlive::Close);
    assert!(!fo.pretend_keep_alive);
}

#[test]
fn pool_keys_in_defaults_do_not_refuse_a_tcp_backend() {
    // [defaults] applies to every backend: a tcp backend inherits without being refused.
    let c = accepted(&with_backend(
        r#"[defaults]
http_reuse = "never"
pool_max_idle = 1
pool_idle_timeout = "1s"
pool_max_reuse = 1
retry_on = ["all-retryable-errors"]
keep_alive = "close"
pretend_keep_alive = true
prefer_last_server = true

[[frontend]]
name = "web"
bind = ["127.0.0.1:0"]
backend = "be"
"#,
    ));
    assert_eq!(c.backends[0].mode, Mode::Tcp);
    assert_eq!(c.frontends[0].mode, Mode::Tcp);
    assert_eq!(c.backends[0].http.reuse, HttpReuse::Never);
}

#[test]
fn http_reuse_values() {
    for (value, expected) in [
        ("never", HttpReuse::Never),
        ("safe", HttpReuse::Safe),
        ("aggressive", HttpReuse::Aggressive),
        ("always", HttpReuse::Always),
    ] {
        let c = accepted(&pool_backend(&format!("http_reuse = \"{value}\"")));
        assert_eq!(c.backends[0].http.reuse, expected, "{value}");
        let c = accepted(&format!(
            "[defaults]\nhttp_reuse = \"{value}\"\n{HTTP_BACKEND}"
        ));
        assert_eq!(c.backends[0].http.reuse, expected, "defaults: {value}");
    }
}

#[test]
fn keep_alive_values() {
    for (value, expected) in [
        ("keep-alive", KeepAlive::KeepAlive),
        ("server-close", KeepAlive::ServerClose),
        ("close", KeepAlive::Close),
    ] {
        let c = accepted(&pool_backend(&format!("keep_alive = \"{value}\"")));
        assert_eq!(c.backends[0].http.keep_alive, expected, "backend: {value}");
        let c = accepted(&http_frontend_with(&format!("keep_alive = \"{value}\"")));
        assert_eq!(
            c.frontends[0].http.keep_alive, expected,
            "frontend: {value}"
        );
        assert_eq!(
            c.backends[0].http.keep_alive,
            KeepAlive::KeepAlive,
            "a frontend's keep_alive is its own"
        );
    }
}

#[test]
fn pool_bounds_are_accepted() {
    let c = accepted(&pool_backend("pool_max_idle = 0\npool_max_reuse = 0"));
    assert_eq!(c.backends[0].http.pool_max_idle, 0);
    assert_eq!(c.backends[0].http.pool_max_reuse, 0);
    let c = accepted(&pool_backend(
        "pool_max_idle = 100000\npool_max_reuse = 4294967295\npool_idle_timeout = \"365d\"",
    ));
    let h = &c.backends[0].http;
    assert_eq!(h.pool_max_idle, 100_000);
    assert_eq!(h.pool_max_reuse, u32::MAX);
    assert_eq!(h.pool_idle_timeout, Duration::from_secs(365 * 86_400));
}

#[test]
fn retry_on_all_retryable_errors() {
    let r = retry_on(r#"["all-retryable-errors"]"#);
    assert!(r.conn_failure && r.empty_response && r.junk_response && r.response_timeout);
    assert_eq!(r.statuses, vec![500, 502, 503, 504]);
    assert!(r.status(502) && !r.status(501) && !r.status(404));
    // Statuses named besides are added once.
    let r = retry_on(r#"[503, "all-retryable-errors", 404, "500"]"#);
    let mut statuses = r.statuses.clone();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![404, 500, 502, 503, 504]);
}

#[test]
fn retry_on_events_and_statuses() {
    let r = retry_on(r#"["junk-response"]"#);
    assert!(r.junk_response);
    assert!(!r.conn_failure && !r.empty_response && !r.response_timeout);
    let r = retry_on(r#"["response-timeout", "empty-response"]"#);
    assert!(r.response_timeout && r.empty_response);
    assert!(!r.conn_failure && !r.junk_response && r.statuses.is_empty());
    // Every retryable status, as a number and as a numeric string.
    let all = [401, 403, 404, 408, 425, 500, 501, 502, 503, 504];
    let numbers: Vec<String> = all.iter().map(u16::to_string).collect();
    let r = retry_on(&format!("[{}]", numbers.join(", ")));
    assert_eq!(r.statuses, all);
    assert!(
        !r.conn_failure,
        "statuses alone do not retry connection failures"
    );
    let strings: Vec<String> = all.iter().map(|s| format!("\"{s}\"")).collect();
    assert_eq!(retry_on(&format!("[{}]", strings.join(", "))).statuses, all);
}

#[test]
fn retry_on_numeric_string_and_duplicates() {
    let r = retry_on(r#"["503"]"#);
    assert_eq!(r.statuses, vec![503]);
    assert!(r.status(503) && !r.conn_failure);
    let r = retry_on(r#"["conn-failure", 503, "503", 503, "conn-failure", 502]"#);
    assert_eq!(
        r.statuses,
        vec![503, 502],
        "each status kept once, in order"
    );
    assert!(r.conn_failure);
}

#[test]
fn retry_on_none() {
    let r = retry_on(r#"["none"]"#);
    assert!(!r.conn_failure && !r.empty_response && !r.junk_response && !r.response_timeout);
    assert!(r.statuses.is_empty());
}

#[test]
fn keep_alive_combine_all_pairs() {
    let (k, s, c) = (
        KeepAlive::KeepAlive,
        KeepAlive::ServerClose,
        KeepAlive::Close,
    );
    for (fe, be, expected) in [
        (k, k, k),
        (k, s, s),
        (k, c, c),
        (s, k, s),
        (s, s, s),
        (s, c, c),
        (c, k, c),
        (c, s, c),
        (c, c, c),
    ] {
        assert_eq!(KeepAlive::combine(fe, be), expected, "{fe:?} + {be:?}");
    }
}

#[test]
fn unknown_http_reuse_refused() {
    let e = refused_at(
        &pool_backend("http_reuse = \"sometimes\""),
        4,
        "backend.http_reuse",
    );
    assert!(e.reason.contains("unknown policy \"sometimes\""), "{e}");
    let e = refused_at(
        "[defaults]\nretries = 1\nhttp_reuse = \"Safe\"\n",
        3,
        "defaults.http_reuse",
    );
    assert!(e.reason.contains("unknown policy \"Safe\""), "{e}");
}

#[test]
fn unknown_keep_alive_refused() {
    let e = refused_at(
        &http_frontend_with("keep_alive = \"keepalive\""),
        6,
        "frontend.keep_alive",
    );
    assert!(e.reason.contains("unknown mode \"keepalive\""), "{e}");
    let e = refused_at(
        &pool_backend("keep_alive = \"http-server-close\""),
        4,
        "backend.keep_alive",
    );
    assert!(
        e.reason.contains("unknown mode \"http-server-close\""),
        "{e}"
    );
    let e = refused_at("[defaults]\nkeep_alive = \"\"\n", 2, "defaults.keep_alive");
    assert!(e.reason.contains("unknown mode"), "{e}");
}

#[test]
fn pool_max_idle_out_of_range() {
    let e = refused_at(
        &pool_backend("pool_max_idle = -1"),
        4,
        "backend.pool_max_idle",
    );
    assert!(e.reason.contains("-1 is out of range 0..=100000"), "{e}");
    let e = refused_at(
        &pool_backend("pool_max_idle = 100001"),
        4,
        "backend.pool_max_idle",
    );
    assert!(
        e.reason.contains("100001 is out of range 0..=100000"),
        "{e}"
    );
    let e = refused_at(
        "[defaults]\npool_max_idle = 100001\n",
        2,
        "defaults.pool_max_idle",
    );
    assert!(e.reason.contains("out of range"), "{e}");
}

#[test]
fn pool_max_reuse_out_of_range() {
    let e = refused_at(
        &pool_backend("pool_max_reuse = -1"),
        4,
        "backend.pool_max_reuse",
    );
    assert!(
        e.reason.contains("-1 is out of range 0..=4294967295"),
        "{e}"
    );
    let e = refused_at(
        &pool_backend("pool_max_reuse = 4294967296"),
        4,
        "backend.pool_max_reuse",
    );
    assert!(e.reason.contains("4294967296 is out of range"), "{e}");
}

#[test]
fn bad_pool_idle_timeout() {
    let e = refused_at(
        &pool_backend("pool_idle_timeout = \"0s\""),
        4,
        "backend.pool_idle_timeout",
    );
    assert!(e.reason.contains("greater than 0"), "{e}");
    let e = refused_at(
        &pool_backend("pool_idle_timeout = \"abc\""),
        4,
        "backend.pool_idle_timeout",
    );
    assert!(e.reason.contains("not a duration"), "{e}");
    let e = refused_at(
        &pool_backend("pool_idle_timeout = \"4\""),
        4,
        "backend.pool_idle_timeout",
    );
    assert!(e.reason.contains("no unit"), "{e}");
    let e = refused_at(
        "[defaults]\npool_idle_timeout = \"0s\"\n",
        2,
        "defaults.pool_idle_timeout",
    );
    assert!(e.reason.contains("greater than 0"), "{e}");
}

#[test]
fn bad_retry_on_refused() {
    for (list, reason) in [
        (
            r#"["conn-failure", "timeout"]"#,
            "unknown event \"timeout\"",
        ),
        (r#"["conn_failure"]"#, "unknown event"),
        (r#"[true]"#, "unknown event"),
        ("[505]", "status 505 cannot be retried"),
        (r#"["505"]"#, "status 505 cannot be retried"),
        ("[200]", "status 200 cannot be retried"),
        ("[503, 200]", "status 200"),
        (r#"["none", "conn-failure"]"#, "must be alone"),
        (r#"["conn-failure", "none"]"#, "must be alone"),
        (r#"["none", "none"]"#, "must be alone"),
        (r#"["none", 503]"#, "must be alone"),
    ] {
        let e = refused_at(
            &pool_backend(&format!("retry_on = {list}")),
            4,
            "backend.retry_on",
        );
        assert!(e.reason.contains(reason), "{list}: {e}");
    }
    let e = refused_at("[defaults]\nretry_on = [\"all\"]\n", 2, "defaults.retry_on");
    assert!(e.reason.contains("unknown event"), "{e}");
}

#[test]
fn bad_retry_on_item_in_a_multiline_list_names_its_own_line() {
    let e = refused_at(
        &pool_backend("retry_on = [\n    \"conn-failure\",\n    503,\n    \"none\",\n]"),
        7,
        "backend.retry_on",
    );
    assert!(e.reason.contains("must be alone"), "{e}");
    let e = refused_at(
        &pool_backend("retry_on = [\n    \"conn-failure\",\n    505,\n]"),
        6,
        "backend.retry_on",
    );
    assert!(e.reason.contains("505"), "{e}");
}

#[test]
fn pool_keys_of_the_wrong_type() {
    let e = refused_at(
        &pool_backend("retry_on = \"conn-failure\""),
        4,
        "backend.retry_on",
    );
    assert!(e.reason.contains("expected a sequence"), "{e}");
    refused_at(
        &pool_backend("pool_max_idle = \"8\""),
        4,
        "backend.pool_max_idle",
    );
    refused_at(
        &pool_backend("prefer_last_server = \"yes\""),
        4,
        "backend.prefer_last_server",
    );
}

#[test]
fn pool_keys_are_not_frontend_keys() {
    for key in [
        "http_reuse = \"safe\"",
        "pool_max_idle = 1",
        "retry_on = [\"none\"]",
        "prefer_last_server = true",
    ] {
        let name = key.split(' ').next().unwrap();
        let e = refused_at(&http_frontend_with(key), 6, &format!("frontend.{name}"));
        assert!(e.reason.contains("unknown field"), "{e}");
    }
}

#[test]
fn pool_keys_need_an_http_backend() {
    // Booleans carry no span of their own: they are reported at the backend's name.
    for (line, at, key) in [
        ("http_reuse = \"never\"", 4, "http_reuse"),
        ("pool_max_idle = 8", 4, "pool_max_idle"),
        ("pool_idle_timeout = \"1s\"", 4, "pool_idle_timeout"),
        ("pool_max_reuse = 8", 4, "pool_max_reuse"),
        ("retry_on = [\"conn-failure\"]", 4, "retry_on"),
        ("keep_alive = \"close\"", 4, "keep_alive"),
        ("pretend_keep_alive = true", 2, "pretend_keep_alive"),
        ("prefer_last_server = false", 2, "prefer_last_server"),
    ] {
        let e = refused_at(&backend_with("tcp", line), at, &format!("backend.{key}"));
        assert!(e.reason.contains("mode = \"http\""), "{e}");
    }
    // Without a mode line the backend is tcp as well.
    let e = refused_at(
        "[[backend]]\nname = \"be\"\npool_max_idle = 8\n",
        3,
        "backend.pool_max_idle",
    );
    assert!(e.reason.contains("mode = \"http\""), "{e}");
    let e = refused_at(
        "[[backend]]\nname = \"be\"\nhttp_reuse = \"always\"\n",
        3,
        "backend.http_reuse",
    );
    assert!(e.reason.contains("mode = \"http\""), "{e}");
}

#[test]
fn keep_alive_needs_an_http_frontend() {
    let e = refused_at(
        &with_backend(
            r#"[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
backend = "be"
keep_alive = "close"
"#,
        ),
        5,
        "frontend.keep_alive",
    );
    assert!(e.reason.contains("mode = \"http\""), "{e}");
    let e = refused_at(
        &with_backend(
            "[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:8080\"]\nmode = \"tcp\"\nbackend = \"be\"\nkeep_alive = \"keep-alive\"\n",
        ),
        6,
        "frontend.keep_alive",
    );
    assert!(e.reason.contains("mode = \"http\""), "{e}");
    let e = refused_at(
        &with_backend(
            "[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:8080\"]\nbackend = \"be\"\npretend_keep_alive = true\n",
        ),
        2,
        "frontend.pretend_keep_alive",
    );
    assert!(e.reason.contains("mode = \"http\""), "{e}");
}

#[test]
fn empty_or_signed_retry_on_is_refused() {
    let e = refused_at(&pool_backend("retry_on = []\n"), 4, "backend.retry_on");
    assert!(e.reason.contains("none"), "{e}");
    for bad in ["\"+503\"", "\" 503\"", "\"503 \""] {
        let e = refused_at(
            &pool_backend(&format!("retry_on = [{bad}]\n")),
            4,
            "backend.retry_on",
        );
        assert!(e.reason.contains("unknown event"), "{bad}: {e}");
    }
}
