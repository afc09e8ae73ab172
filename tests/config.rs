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

use ringproxy::config::{default, Balance, Config, ConfigError, Mode, Shards};

/// A valid backend named "be", appended after a test's own lines.
const BACKEND: &str = r#"
[[backend]]
name = "be"

[[backend.server]]
name = "s1"
address = "127.0.0.1:7000"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("t.toml"))
}

fn accepted(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("refused: {e}\n--- text ---\n{text}"),
    }
}

fn refused(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("accepted, should be refused:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts that `text` is refused at `line` under `key`, and that the message has the
/// documented `FILE:LINE: key: reason` shape. Returns the error for further checks.
#[track_caller]
fn refused_at(text: &str, line: usize, key: &str) -> ConfigError {
    let e = refused(text);
    assert_eq!(e.key, key, "key of {e}");
    assert_eq!(e.line, line, "line of {e}");
    assert_eq!(e.file, Path::new("t.toml"));
    let prefix = format!("t.toml:{line}: {key}: ");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} does not start with {prefix:?}"
    );
    assert!(shown.len() > prefix.len(), "empty reason: {shown:?}");
    assert!(!shown.contains('\n'), "message spans lines: {shown:?}");
    e
}

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
backup = true
"#,
        7,
        "backend.server.backup",
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
    let e = refused_at(
        "[[backend]]\nname = \"be\"\nbalance = \"random\"\n",
        3,
        "backend.balance",
    );
    assert!(e.reason.contains("\"random\""), "{e}");
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
    let f = &c.frontends[0];
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
