//! Statistics end to end: real clients through the proxy (two shards), real origins, and
//! the statistics read back the way an operator reads them: `GET /metrics` (checked by
//! Prometheus' own Python parser), `GET /stats.json`, the runtime API (`show info`,
//! `show stat`, `set weight`, `disable server`) and `ringproxy stats`.
//!
//! Shards publish every `stats_interval` (100 ms here) and the control thread sums them,
//! so a test waits until the totals reach what it sent (bounded), never for a fixed time.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::http::*;
use common::*;
use ringproxy::runtime::Running;

/// Bound of any wait for the statistics to catch up (many ticks).
const STATS_WAIT: Duration = Duration::from_secs(10);

/// A unique admin socket path for this test.
fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ringproxy-stats-{tag}-{}.sock", std::process::id()))
}

/// An http proxy on two shards with the statistics listener and the admin socket.
struct Proxy {
    running: Option<Running>,
    addr: SocketAddr,
    admin: SocketAddr,
    socket: PathBuf,
}

impl Proxy {
    fn start(tag: &str, backend: &str, servers: &[SocketAddr]) -> Proxy {
        let socket = socket_path(tag);
        let top = format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\nsocket = \"{}\"\nstats_interval = \"100ms\"\n",
            socket.display()
        );
        let (running, addr) = http_proxy_with(2, &top, backend, &servers_toml(servers));
        let admin = running.admin_addr().expect("admin.listen is bound");
        Proxy {
            running: Some(running),
            addr,
            admin,
            socket,
        }
    }

    /// `GET path` on the statistics listener: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        let mut s = connect(self.admin);
        write!(s, "GET {path} HTTP/1.1\r\nHost: stats\r\n\r\n").unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let text = String::from_utf8(all).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .parse()
            .unwrap();
        assert_eq!(body.len(), length, "{head}");
        (status, body.to_string())
    }

    fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    fn json(&self) -> serde_json::Value {
        let (status, body) = self.get("/stats.json");
        assert_eq!(status, 200);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("invalid JSON ({e}): {body}"))
    }

    fn admin(&self, command: &str) -> String {
        ringproxy::admin::request(&self.socket, command)
            .unwrap_or_else(|e| panic!("admin {command:?}: {e}"))
    }

    /// Waits until `/metrics` has `series` at `value`; the metrics then.
    fn metrics_when(&self, series: &str, value: f64) -> Metrics {
        let mut last = None;
        let reached = eventually(STATS_WAIT, || {
            let m = self.metrics();
            let ok = m.get(series) == Some(value);
            last = Some(m);
            ok
        });
        let m = last.expect("scraped");
        assert!(reached, "{series} is {:?}, expected {value}", m.get(series));
        m
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

/// Samples of a Prometheus text exposition: `name{labels}` → value.
struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut m = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("series value");
            m.insert(series.to_string(), value.parse().expect("a number"));
        }
        Metrics(m)
    }

    fn get(&self, series: &str) -> Option<f64> {
        self.0.get(series).copied()
    }

    fn must(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no series {series}"))
    }
}

/// An origin answering by path: `/missing` 404, `/fail` 503, anything else 200.
fn status_origin() -> Recorder {
    http_origin(|req, _| {
        let path = req.start_line().split(' ').nth(1).unwrap_or("").to_string();
        match path.as_str() {
            "/missing" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope".to_vec(),
            "/fail" => b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy".to_vec(),
            _ => ok("yes"),
        }
    })
}

/// `conns` client connections, each sending `per_conn` requests cycling through `paths`.
/// Each request is recorded when its response has been sent: wait for the totals on
/// `ringproxy_frontend_total_seconds_count`, not on `requests_total` (counted as the
/// request arrives).
fn traffic(addr: SocketAddr, conns: usize, per_conn: usize, paths: &[&str]) {
    for c in 0..conns {
        let mut client = Client::new(addr);
        for r in 0..per_conn {
            let path = paths[(c * per_conn + r) % paths.len()];
            let resp = client.exchange(get(path));
            assert!(resp.status() >= 200, "{:?}", resp.head);
        }
    }
}

const DONE: &str = "ringproxy_frontend_total_seconds_count{frontend=\"f\"}";

#[test]
fn counts_are_exact_across_shards_by_status_class_and_server() {
    let (o0, o1) = (status_origin(), status_origin());
    let p = Proxy::start("counts", "", &[o0.addr, o1.addr]);
    let (conns, per_conn) = (24, 10);
    let paths = ["/a", "/b", "/missing", "/c", "/fail"];
    traffic(p.addr, conns, per_conn, &paths);
    let n = (conns * per_conn) as f64;

    let m = p.metrics_when(DONE, n);
    assert_eq!(
        m.must("ringproxy_frontend_sessions_total{frontend=\"f\"}"),
        conns as f64
    );
    let class = |entity: &str, code: &str| {
        m.must(&format!(
            "ringproxy_{entity}_http_responses_total{{{},code=\"{code}\"}}",
            if entity == "frontend" {
                "frontend=\"f\""
            } else {
                "backend=\"b\""
            }
        ))
    };
    for entity in ["frontend", "backend"] {
        assert_eq!(class(entity, "2xx"), n * 3.0 / 5.0, "{entity}");
        assert_eq!(class(entity, "4xx"), n / 5.0, "{entity}");
        assert_eq!(class(entity, "5xx"), n / 5.0, "{entity}");
        assert_eq!(
            class(entity, "1xx") + class(entity, "3xx") + class(entity, "other"),
            0.0
        );
    }
    // Per server: what each origin really received.
    let s0 = m.must("ringproxy_server_requests_total{backend=\"b\",server=\"s0\"}");
    let s1 = m.must("ringproxy_server_requests_total{backend=\"b\",server=\"s1\"}");
    assert_eq!(s0 + s1, n);
    assert!(
        eventually(STATS_WAIT, || {
            let got = |o: &Recorder| requests_in(&o.received_all()).len() as f64;
            got(&o0) == s0 && got(&o1) == s1
        }),
        "origins saw other counts than {s0}/{s1}"
    );
    assert!(s0 > 0.0 && s1 > 0.0, "both servers took traffic: {s0}/{s1}");
    assert_eq!(m.must("ringproxy_backend_requests_total{backend=\"b\"}"), n);
    // Bytes: every response carried a 3- or 4-byte body plus its head.
    let out = m.must("ringproxy_frontend_bytes_out_total{frontend=\"f\"}");
    assert!(out > n * 30.0, "{out}");
    let input = m.must("ringproxy_frontend_bytes_in_total{frontend=\"f\"}");
    assert!(input >= n * get("/a").len() as f64, "{input}");
    // Timers: one sample per request.
    assert_eq!(
        m.must("ringproxy_frontend_total_seconds_count{frontend=\"f\"}"),
        n
    );
    assert_eq!(
        m.must("ringproxy_backend_response_seconds_count{backend=\"b\"}"),
        n
    );
    assert_eq!(m.must("ringproxy_stats_dropped_total"), 0.0);

    // JSON: the same numbers.
    let j = p.json();
    assert_eq!(j["info"]["shards"], 2);
    assert_eq!(j["info"]["total_requests"].as_f64(), Some(n));
    let fe = &j["frontends"][0];
    assert_eq!(fe["name"], "f");
    assert_eq!(
        fe["binds"][0],
        p.addr.to_string(),
        "the address bound, not port 0"
    );
    assert_eq!(fe["counters"]["requests_total"].as_f64(), Some(n));
    assert_eq!(
        fe["counters"]["responses_4xx_total"].as_f64(),
        Some(n / 5.0)
    );
    let b = &j["backends"][0];
    assert_eq!(
        b["servers"][0]["counters"]["requests_total"].as_f64(),
        Some(s0)
    );
    assert_eq!(b["servers"][1]["status"], "UP");
    assert_eq!(b["timers"]["total"]["count"].as_f64(), Some(n));
}

#[test]
fn the_prometheus_output_is_accepted_by_prometheus_own_parser() {
    let o = status_origin();
    let p = Proxy::start("parser", "", &[o.addr]);
    traffic(p.addr, 2, 5, &["/a", "/missing"]);
    p.metrics_when(DONE, 10.0);
    let (_, text) = p.get("/metrics");
    let file = std::env::temp_dir().join(format!("ringproxy-metrics-{}.txt", std::process::id()));
    std::fs::write(&file, &text).unwrap();
    // Every family parses; summaries carry their quantiles, _sum and _count.
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
names = {f.name: f for f in families}
assert len(families) > 40, len(families)
s = names["ringproxy_server_response_seconds"]
assert s.type == "summary", s.type
quantiles = {x.labels.get("quantile") for x in s.samples if x.name == s.name}
assert quantiles == {"0.5", "0.9", "0.99", "0.999"}, quantiles
c = names["ringproxy_frontend_http_responses"]
assert c.type == "counter", c.type
codes = {x.labels["code"]: x.value for x in c.samples if x.name.endswith("_total")}
assert codes["2xx"] == 5 and codes["4xx"] == 5, codes
print("ok", len(families))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3 runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "the Prometheus parser refused the output (is prometheus-client installed? pip install prometheus-client):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn percentiles_show_an_injected_server_delay() {
    const DELAY: Duration = Duration::from_millis(20);
    let slow = http_origin(|_, _| {
        std::thread::sleep(DELAY);
        ok("slow")
    });
    let p = Proxy::start("delay", "", &[slow.addr]);
    traffic(p.addr, 1, 20, &["/"]);
    p.metrics_when(DONE, 20.0);
    let j = p.json();
    let server = &j["backends"][0]["servers"][0]["timers"];
    let ms = |phase: &str, q: &str| server[phase][q].as_f64().unwrap();
    // The histograms keep 2 significant digits (1 %); the sleep is at least DELAY.
    let p50 = ms("response", "p50");
    assert!((19.8..=25.0).contains(&p50), "server response p50 {p50} ms");
    assert!(
        ms("total", "p50") >= p50 * 0.99,
        "total covers the response"
    );
    assert!(ms("connect", "p99") < 20.0, "connect is not the delay");
    assert!(ms("queue", "p99") < 20.0, "nothing queued");
    assert_eq!(server["response"]["count"], 20);
}

#[test]
fn runtime_commands_change_every_shard() {
    let (o0, o1) = (status_origin(), status_origin());
    let p = Proxy::start("runtime", "", &[o0.addr, o1.addr]);
    let seen = |o: &Recorder| requests_in(&o.received_all()).len();

    // A command answers once every shard applied it: the next connections, whichever
    // shard takes them, already see it.
    // Disabled: no request reaches s1.
    assert_eq!(p.admin("disable server b/s1"), "");
    let mark = seen(&o1);
    traffic(p.addr, 16, 4, &["/x"]);
    assert_eq!(seen(&o1), mark, "s1 got requests while disabled");

    // Weight 0 on s0 too: nothing can take a request.
    assert_eq!(p.admin("set weight b/s0 0"), "");
    for _ in 0..8 {
        let mut c = Client::new(p.addr);
        assert_proxy_error(&c.exchange(get("/x")), 503);
    }

    // Both back: every shard sends to both again.
    assert_eq!(p.admin("set weight b/s0 100%"), "");
    assert_eq!(p.admin("enable server b/s1"), "");
    let (m0, m1) = (seen(&o0), seen(&o1));
    traffic(p.addr, 8, 2, &["/x"]);
    assert!(
        seen(&o0) > m0 && seen(&o1) > m1,
        "traffic did not return to both servers"
    );
    assert!(p.admin("set weight b/s0 999").contains("expects a weight"));
    assert!(p.admin("set weight b/nope 1").contains("No such server"));

    // show stat: HAProxy's CSV, with the weight and state the operator set.
    let csv = p.admin("show stat");
    let (header, rows) = stat_table(&csv);
    assert_eq!(&header[..4], ["pxname", "svname", "qcur", "qmax"]);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(rows.len(), 4, "frontend, two servers, backend: {csv}");
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let s0 = rows.iter().find(|r| r[1] == "s0").unwrap();
    assert_eq!(s0[col("weight")], "1");
    assert_eq!(s0[col("status")], "UP");
    assert_eq!(rows.last().unwrap()[col("svname")], "BACKEND");
    let info = p.admin("show info");
    assert!(info.contains("Name: ringproxy\n"), "{info}");
    assert!(info.contains("Shards: 2\n"), "{info}");
}

#[test]
fn ringproxy_stats_prints_the_table() {
    let o = status_origin();
    let p = Proxy::start("cli", "", &[o.addr]);
    traffic(p.addr, 2, 3, &["/a"]);
    p.metrics_when(DONE, 6.0);
    let out = Command::new(env!("CARGO_BIN_EXE_ringproxy"))
        .args(["stats", "--socket"])
        .arg(&p.socket)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    let server = lines
        .iter()
        .find(|l| l.starts_with("b/s0"))
        .expect("a server row");
    assert!(server.contains(" UP "), "{server}");
    assert!(
        server.split_whitespace().any(|w| w == "6"),
        "6 requests: {server}"
    );
    // --watch --count 2: two tables, each after a clear-screen.
    let out = Command::new(env!("CARGO_BIN_EXE_ringproxy"))
        .args(["stats", "--watch", "--count", "2", "--socket"])
        .arg(&p.socket)
        .output()
        .expect("runs");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("\x1b[2J").count(), 2);
    assert_eq!(text.matches("NAME").count(), 2);
}

#[test]
fn tcp_sessions_are_counted_too() {
    let echo = echo_server();
    let toml = format!(
        "[global]\nshards = 2\npin = false\ngrace = \"1s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\nstats_interval = \"100ms\"\n\n\
         [[frontend]]\nname = \"t\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"e\"\n\n\
         [[backend]]\nname = \"e\"\n\n[[backend.server]]\nname = \"echo\"\naddress = \"{}\"\n",
        echo.addr
    );
    let running = proxy(&toml);
    let p = Proxy {
        addr: running.frontend_addrs(0)[0],
        admin: running.admin_addr().unwrap(),
        running: Some(running),
        socket: PathBuf::new(),
    };
    for _ in 0..5 {
        let mut s = connect(p.addr);
        s.write_all(&[7u8; 1000]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut s).unwrap().len(), 1000);
    }
    let m = p.metrics_when(
        "ringproxy_server_requests_total{backend=\"e\",server=\"echo\"}",
        5.0,
    );
    assert_eq!(
        m.must("ringproxy_frontend_sessions_total{frontend=\"t\"}"),
        5.0
    );
    assert_eq!(
        m.must("ringproxy_frontend_bytes_in_total{frontend=\"t\"}"),
        5000.0
    );
    assert_eq!(
        m.must("ringproxy_frontend_bytes_out_total{frontend=\"t\"}"),
        5000.0
    );
    assert_eq!(
        m.must("ringproxy_server_connections_total{backend=\"e\",server=\"echo\"}"),
        5.0
    );
    assert_eq!(
        m.must("ringproxy_server_connect_seconds_count{backend=\"e\",server=\"echo\"}"),
        5.0
    );
}

#[test]
fn the_stats_listener_answers_only_what_it_serves() {
    let o = status_origin();
    let p = Proxy::start("http", "", &[o.addr]);
    let (status, page) = p.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    // Nothing is loaded from elsewhere (the SVG namespace URI is a name, not a load).
    for load in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "@import",
        "url(http",
        "fetch('http",
    ] {
        assert!(
            !page.contains(load),
            "the page loads from elsewhere: {load}"
        );
    }
    assert_eq!(p.get("/nope").0, 404);
    let mut s = connect(p.admin);
    s.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let answer = read_to_end(&mut s).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 405 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut s = connect(p.admin);
    s.write_all(b"\x01\x02 garbage\r\n\r\n").unwrap();
    let answer = read_to_end(&mut s).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// Runs `requests` through an http proxy with `[log]` lines `log`, stops it, and returns
/// the access log's lines.
fn logged(tag: &str, log: &str, requests: &[&[u8]]) -> Vec<String> {
    let o = status_origin();
    let file =
        std::env::temp_dir().join(format!("ringproxy-access-{tag}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let top = format!("[log]\naccess = \"{}\"\n{log}\n", file.display());
    let (running, addr) = http_proxy_with(2, &top, "", &servers_toml(&[o.addr]));
    for r in requests {
        let mut c = Client::new(addr);
        c.send(r);
        let _ = read_response(&mut c, false);
    }
    // Stopping drains every shard's ring to the file first.
    running.shutdown();
    let text = std::fs::read_to_string(&file).expect("the access log was written");
    let _ = std::fs::remove_file(&file);
    text.lines().map(str::to_string).collect()
}

#[test]
fn the_access_log_has_one_haproxy_line_per_request() {
    let lines = logged(
        "haproxy",
        "",
        &[
            get("/a").as_bytes(),
            get("/missing").as_bytes(),
            b"GET /bad HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        ],
    );
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let line = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}: {lines:#?}"))
    };
    // client [date] frontend backend/server Tq/Tw/Tc/Tr/Tt status bytes - - term ...
    let ok = line("\"GET /a HTTP/1.1\"");
    let f: Vec<&str> = ok.split(' ').collect();
    assert!(f[0].starts_with("127.0.0.1:"), "{ok}");
    assert!(
        f[1].starts_with('[') && f[2].ends_with(']') || f[1].ends_with(']'),
        "{ok}"
    );
    assert!(ok.contains(" f b/s0 "), "{ok}");
    assert!(ok.contains(" 200 "), "{ok}");
    assert!(ok.contains(" ---- "), "normal end: {ok}");
    let timers = f
        .iter()
        .find(|w| w.matches('/').count() == 4)
        .expect("timers");
    let t: Vec<i64> = timers.split('/').map(|x| x.parse().unwrap()).collect();
    assert!(t.iter().all(|&x| x >= 0), "{timers}");
    assert!(t[4] >= t[3], "Tt covers Tr: {timers}");
    assert!(line("\"GET /missing HTTP/1.1\"").contains(" 404 "));
    // The proxy refused the bad request itself: P(roxy) during the R(equest).
    let bad = line(" 400 ");
    assert!(bad.contains(" PR-- "), "{bad}");
    assert!(
        bad.contains(" f f/<NOSRV> ") || bad.contains("<NOSRV>"),
        "{bad}"
    );
}

#[test]
fn the_json_access_log_parses_and_carries_the_timers() {
    let lines = logged(
        "json",
        "format = \"json\"",
        &[get("/a").as_bytes(), get("/fail").as_bytes()],
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for l in &lines {
        let j: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert_eq!(j["frontend"], "f");
        assert_eq!(j["backend"], "b");
        assert_eq!(j["server"], "s0");
        assert_eq!(j["mode"], "http");
        assert_eq!(j["termination"], "--");
        assert!(j["tt_ms"].as_f64().unwrap() >= j["tr_ms"].as_f64().unwrap());
        assert!(j["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(j["bytes_out"].as_u64().unwrap() > 20);
    }
    let statuses: Vec<u64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&503),
        "{statuses:?}"
    );
}

#[test]
fn an_access_log_that_cannot_be_opened_refuses_the_start() {
    let toml =
        "[global]\nshards = 1\npin = false\n\n[log]\naccess = \"/nonexistent-dir/access.log\"\n\n\
        [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n\
        [[backend]]\nname = \"b\"\n\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:9\"\n";
    let config = ringproxy::config::Config::parse(toml, std::path::Path::new("t.toml")).unwrap();
    let err = match ringproxy::runtime::start(config) {
        Ok(r) => {
            r.shutdown();
            panic!("started with an access log it cannot write");
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("/nonexistent-dir/access.log"), "{err}");
    assert!(err.contains("log.access"), "{err}");
}

#[test]
fn connection_failures_are_counted_by_cause_with_their_retries() {
    let good = status_origin();
    let hole = blackhole();
    let servers = format!(
        "{}\n[[backend.server]]\nname = \"hole\"\naddress = \"{}\"\n",
        servers_toml(&[refused_addr(), good.addr]),
        hole.addr
    );
    let socket = socket_path("failures");
    let top = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nsocket = \"{}\"\nstats_interval = \"100ms\"\n\n\
         [defaults]\ntimeout_connect = \"200ms\"\nretries = 3\n",
        socket.display()
    );
    let (running, addr) = http_proxy_with(2, &top, "", &servers);
    let p = Proxy {
        admin: running.admin_addr().unwrap(),
        running: Some(running),
        addr,
        socket,
    };
    // Every request ends on the good server, after trying the others when the balancer
    // picked them first.
    traffic(p.addr, 9, 1, &["/a"]);
    let m = p.metrics_when(DONE, 9.0);
    let v = |name: &str, server: &str| {
        m.must(&format!(
            "ringproxy_server_{name}{{backend=\"b\",server=\"{server}\"}}"
        ))
    };
    assert_eq!(v("requests_total", "s1"), 9.0);
    let ok = "ringproxy_server_http_responses_total{backend=\"b\",server=\"s1\",code=\"2xx\"}";
    assert_eq!(m.must(ok), 9.0);
    let refused = v("connect_errors_total", "s0");
    let timed_out = v("connect_timeouts_total", "hole");
    assert!(
        refused > 0.0 && timed_out > 0.0,
        "refused {refused}, timed out {timed_out}"
    );
    assert_eq!(
        v("connect_timeouts_total", "s0"),
        0.0,
        "a refusal is not a timeout"
    );
    assert_eq!(v("connect_errors_total", "hole"), timed_out);
    // Each failure sent the request elsewhere: a retry and a redispatch on the failed one.
    assert_eq!(v("retries_total", "s0"), refused);
    assert_eq!(v("redispatches_total", "hole"), timed_out);
    assert_eq!(
        m.must("ringproxy_backend_retries_total{backend=\"b\"}"),
        refused + timed_out
    );
    assert_eq!(
        m.must("ringproxy_backend_no_server_total{backend=\"b\"}"),
        0.0
    );
}

#[test]
fn the_stats_page_renders_in_headless_chromium() {
    let o = status_origin();
    let socket = socket_path("page");
    let top = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nsocket = \"{}\"\nstats_interval = \"250ms\"\n",
        socket.display()
    );
    let (running, addr) = http_proxy_with(2, &top, "", &servers_toml(&[o.addr]));
    let p = Proxy {
        admin: running.admin_addr().unwrap(),
        running: Some(running),
        addr,
        socket,
    };
    // Traffic while the page refreshes, so that its charts have points to draw.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                traffic(addr, 1, 20, &["/a", "/missing"]);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let shot = format!("{root}/target/stats-page.png");
    let out = Command::new("python3")
        .arg(format!("{root}/tests/stats_page.py"))
        .args([
            "--url",
            &format!("http://{}/", p.admin),
            "--screenshot",
            &shot,
        ])
        .args(["--timeout", "30"])
        .output()
        .expect("python3 runs");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    assert!(
        out.status.success(),
        "the stats page check failed (is chromium installed? apt-get install chromium):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "no screenshot"
    );
}

#[test]
fn a_trickling_client_holds_the_stats_listener_for_a_bounded_time() {
    let o = status_origin();
    let p = Proxy::start("trickle", "", &[o.addr]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let (admin, stop) = (p.admin, std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut s = connect(admin);
            // One byte of a head every 400 ms: never complete, never silent long enough
            // for a per-read timeout. Bounded: 40 s at most.
            for &b in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(400));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    // Served once the trickler's deadline (5 s) is over, well within the read timeout.
    let (status, _) = p.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(p.admin("show info").lines().next(), Some("Name: ringproxy"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.join().unwrap();
}
