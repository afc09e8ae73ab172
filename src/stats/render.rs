//! The sums of [`super::aggregate`] written out: Prometheus text exposition (`/metrics`),
//! JSON (`/stats.json`), HAProxy's CSV (`show stat`), `show info`, and a terminal table.
//!
//! Pure functions of a [`Report`]: the control thread builds one from its view, its table
//! of server states and the configuration, and renders it on demand.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use super::aggregate::{BackendView, PhaseView, Summary, SvView, View};
use super::{Fe, Field, Kind, Phase, Sv};
use crate::config::{Backend, Balance, Config, Mode};

/// A server's state as the control thread knows it.
#[derive(Debug, Clone)]
pub struct ServerRow {
    /// `UP 3/3`, `DOWN 1/2`, `MAINT`, `DRAIN 3/3`, `UP`, `NO ADDRESS`.
    pub status: String,
    /// Takes new sessions.
    pub up: bool,
    pub admin: &'static str,
    pub weight: u32,
    pub address: Option<SocketAddr>,
    pub transitions: u64,
}

/// The process as a whole.
#[derive(Debug, Clone, Copy)]
pub struct Process {
    pub pid: u32,
    pub uptime: Duration,
    pub shards: usize,
    pub interval: Duration,
}

/// What every renderer reads.
pub struct Report<'a> {
    pub config: &'a Config,
    pub view: &'a View,
    /// `[backend][server]`.
    pub servers: &'a [Vec<ServerRow>],
    /// Per frontend: the addresses bound (the configured ones when empty).
    pub bound: &'a [Vec<SocketAddr>],
    pub process: Process,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Tcp => "tcp",
        Mode::Http => "http",
    }
}

fn balance_name(b: &Balance) -> String {
    match b {
        Balance::RoundRobin => "roundrobin".into(),
        Balance::LeastConn => "leastconn".into(),
        Balance::Random => "random".into(),
        Balance::Source => "source".into(),
        Balance::Uri => "uri".into(),
        Balance::Header { name } => format!("hdr({name})"),
    }
}

impl Report<'_> {
    /// Each backend's configuration, sums and server rows, in configuration order.
    fn backends(&self) -> impl Iterator<Item = (&Backend, &BackendView, &[ServerRow])> {
        self.config
            .backends
            .iter()
            .zip(&self.view.backends)
            .zip(self.servers)
            .map(|((c, v), rows)| (c, v, rows.as_slice()))
    }

    fn current_sessions(&self) -> u64 {
        let v = self.view;
        v.frontends
            .iter()
            .map(|f| f.values[Fe::CurrentSessions as usize])
            .sum()
    }

    fn total(&self, counter: Fe) -> u64 {
        self.view
            .frontends
            .iter()
            .map(|f| f.values[counter as usize])
            .sum()
    }
}

// ---- Prometheus -------------------------------------------------------------------

/// A Prometheus label value, escaped.
fn label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A label set, rendered once: `backend="b",server="s1"`.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(key);
        s.push_str("=\"");
        label(&mut s, value);
        s.push('"');
    }
    s
}

/// The status class a counter of a set counts (`2xx` of `responses_2xx_total`), if any.
fn class_code(counter: &str) -> Option<&str> {
    counter.strip_prefix("responses_")?.strip_suffix("_total")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One counter set for every entity of a kind; the status classes become one family
/// `..._http_responses_total{code="2xx"}`.
fn prom_counters<const N: usize>(
    out: &mut String,
    entity: &str,
    fields: &[Field],
    labels: &[String],
    values: &[&[u64; N]],
) {
    let mut responses_done = false;
    for (i, f) in fields.iter().enumerate() {
        if class_code(f.name).is_some() {
            if responses_done {
                continue;
            }
            responses_done = true;
            let name = format!("ringproxy_{entity}_http_responses_total");
            header(out, &name, "counter", f.help);
            for (l, v) in labels.iter().zip(values) {
                for (j, g) in fields.iter().enumerate() {
                    if let Some(code) = class_code(g.name) {
                        let _ = writeln!(out, "{name}{{{l},code=\"{code}\"}} {}", v[j]);
                    }
                }
            }
            continue;
        }
        let name = format!("ringproxy_{entity}_{}", f.name);
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        header(out, &name, kind, f.help);
        for (l, v) in labels.iter().zip(values) {
            let _ = writeln!(out, "{name}{{{l}}} {}", v[i]);
        }
    }
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The phase timers of every entity of a kind, as summaries (quantiles since the start).
fn prom_timers(out: &mut String, entity: &str, labels: &[String], timers: &[&[PhaseView; 4]]) {
    for phase in Phase::ALL {
        let name = format!("ringproxy_{entity}_{}_seconds", phase.name());
        let help = match phase {
            Phase::Queue => "Time waiting in the queue for a server.",
            Phase::Connect => "Time to connect to the server (0 for a pooled connection).",
            Phase::Response => "Time from the request sent to the response head received.",
            Phase::Total => "Time from the request's start to the end of its response.",
        };
        header(out, &name, "summary", help);
        for (l, t) in labels.iter().zip(timers) {
            let s = &t[phase as usize].total;
            for (q, us) in s.quantiles() {
                let _ = writeln!(out, "{name}{{{l},quantile=\"{q}\"}} {}", seconds(us));
            }
            let _ = writeln!(out, "{name}_sum{{{l}}} {}", seconds(s.sum_us));
            let _ = writeln!(out, "{name}_count{{{l}}} {}", s.count);
        }
    }
}

fn prom_gauge(out: &mut String, name: &str, help: &str, rows: &[(String, f64)]) {
    header(out, name, "gauge", help);
    for (l, v) in rows {
        if l.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{l}}} {v}");
        }
    }
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub fn prometheus(r: &Report<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let v = r.view;
    let p = &r.process;
    header(
        &mut out,
        "ringproxy_info",
        "gauge",
        "Version of the running ringproxy.",
    );
    let _ = writeln!(out, "ringproxy_info{{version=\"{VERSION}\"}} 1");
    prom_gauge(
        &mut out,
        "ringproxy_uptime_seconds",
        "Seconds since the start.",
        &[(String::new(), p.uptime.as_secs_f64())],
    );
    prom_gauge(
        &mut out,
        "ringproxy_shards",
        "Shards (one executor thread per CPU) running.",
        &[(String::new(), p.shards as f64)],
    );
    header(
        &mut out,
        "ringproxy_stats_dropped_total",
        "counter",
        "Statistics snapshots dropped because a shard's ring to the control thread was full.",
    );
    let _ = writeln!(out, "ringproxy_stats_dropped_total {}", v.dropped);
    header(
        &mut out,
        "ringproxy_log_dropped_total",
        "counter",
        "Access log records dropped because a shard's ring to the logger was full.",
    );
    let _ = writeln!(out, "ringproxy_log_dropped_total {}", v.log_dropped);

    let c = r.config;
    let fe_labels: Vec<String> = c
        .frontends
        .iter()
        .map(|f| labels(&[("frontend", &f.name)]))
        .collect();
    let fe_values: Vec<&[u64; Fe::COUNT]> = v.frontends.iter().map(|f| &f.values).collect();
    prom_counters(&mut out, "frontend", Fe::FIELDS, &fe_labels, &fe_values);
    let fe_max: Vec<(String, f64)> = fe_labels
        .iter()
        .zip(&v.frontends)
        .map(|(l, f)| (l.clone(), f.max_sessions as f64))
        .collect();
    prom_gauge(
        &mut out,
        "ringproxy_frontend_max_sessions",
        "Most client connections open at once.",
        &fe_max,
    );
    let fe_timers: Vec<&[PhaseView; 4]> = v.frontends.iter().map(|f| &f.timers).collect();
    prom_timers(&mut out, "frontend", &fe_labels, &fe_timers);

    let be_labels: Vec<String> = c
        .backends
        .iter()
        .map(|b| labels(&[("backend", &b.name)]))
        .collect();
    let be_values: Vec<&[u64; Sv::COUNT]> = v.backends.iter().map(|b| &b.sums.values).collect();
    prom_counters(&mut out, "backend", Sv::FIELDS, &be_labels, &be_values);
    let rows = |f: &dyn Fn(&BackendView) -> f64| -> Vec<(String, f64)> {
        be_labels
            .iter()
            .zip(&v.backends)
            .map(|(l, b)| (l.clone(), f(b)))
            .collect()
    };
    prom_gauge(
        &mut out,
        "ringproxy_backend_max_sessions",
        "Most exchanges open at once on its servers.",
        &rows(&|b| b.sums.max_sessions as f64),
    );
    prom_gauge(
        &mut out,
        "ringproxy_backend_max_queue",
        "Longest the queue has been.",
        &rows(&|b| b.max_queue as f64),
    );
    let be_timers: Vec<&[PhaseView; 4]> = v.backends.iter().map(|b| &b.sums.timers).collect();
    prom_timers(&mut out, "backend", &be_labels, &be_timers);

    let sv_labels: Vec<String> = c
        .backends
        .iter()
        .flat_map(|b| {
            b.servers
                .iter()
                .map(|s| labels(&[("backend", &b.name), ("server", &s.name)]))
        })
        .collect();
    let servers: Vec<(&SvView, &ServerRow)> = v
        .backends
        .iter()
        .zip(r.servers)
        .flat_map(|(b, rows)| b.servers.iter().zip(rows))
        .collect();
    let sv_values: Vec<&[u64; Sv::COUNT]> = servers.iter().map(|(s, _)| &s.values).collect();
    prom_counters(&mut out, "server", Sv::FIELDS, &sv_labels, &sv_values);
    let rows = |f: &dyn Fn(&SvView, &ServerRow) -> f64| -> Vec<(String, f64)> {
        sv_labels
            .iter()
            .zip(&servers)
            .map(|(l, (s, row))| (l.clone(), f(s, row)))
            .collect()
    };
    prom_gauge(
        &mut out,
        "ringproxy_server_max_sessions",
        "Most exchanges open at once on it.",
        &rows(&|s, _| s.max_sessions as f64),
    );
    prom_gauge(
        &mut out,
        "ringproxy_server_up",
        "1 when it takes new sessions.",
        &rows(&|_, row| if row.up { 1.0 } else { 0.0 }),
    );
    prom_gauge(
        &mut out,
        "ringproxy_server_weight",
        "Its weight now.",
        &rows(&|_, row| f64::from(row.weight)),
    );
    header(
        &mut out,
        "ringproxy_server_health_transitions_total",
        "counter",
        "Times its status changed between up and down.",
    );
    for (l, (_, row)) in sv_labels.iter().zip(&servers) {
        let _ = writeln!(
            out,
            "ringproxy_server_health_transitions_total{{{l}}} {}",
            row.transitions
        );
    }
    let sv_timers: Vec<&[PhaseView; 4]> = servers.iter().map(|(s, _)| &s.timers).collect();
    prom_timers(&mut out, "server", &sv_labels, &sv_timers);
    out
}

// ---- JSON -------------------------------------------------------------------------

/// A JSON string literal.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A finite JSON number (NaN and infinities, which JSON lacks, become 0).
fn json_num(out: &mut String, x: f64) {
    if x.is_finite() {
        let _ = write!(out, "{}", (x * 1000.0).round() / 1000.0);
    } else {
        out.push('0');
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn json_summary(out: &mut String, s: &Summary) {
    let _ = write!(out, "{{\"count\":{}", s.count);
    for (k, x) in [
        ("mean", s.mean_us / 1000.0),
        ("p50", ms(s.p50_us)),
        ("p90", ms(s.p90_us)),
        ("p99", ms(s.p99_us)),
        ("p999", ms(s.p999_us)),
        ("max", ms(s.max_us)),
    ] {
        let _ = write!(out, ",\"{k}\":");
        json_num(out, x);
    }
    out.push('}');
}

fn json_timers(out: &mut String, timers: &[PhaseView; 4]) {
    out.push_str("\"timers\":{");
    for (i, phase) in Phase::ALL.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let t = &timers[*phase as usize];
        let _ = write!(out, "\"{}\":", phase.name());
        json_summary(out, &t.total);
        out.pop();
        out.push_str(",\"recent\":");
        json_summary(out, &t.recent);
        out.push('}');
    }
    out.push('}');
}

fn json_counters(out: &mut String, fields: &[Field], values: &[u64]) {
    out.push_str("\"counters\":{");
    let mut first = true;
    for (f, v) in fields.iter().zip(values) {
        if f.kind == Kind::Gauge {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "\"{}\":{v}", f.name);
    }
    out.push('}');
}

fn json_server(out: &mut String, name: &str, s: &SvView, row: &ServerRow) {
    out.push_str("{\"name\":");
    json_str(out, name);
    out.push_str(",\"address\":");
    match row.address {
        Some(a) => json_str(out, &a.to_string()),
        None => out.push_str("null"),
    }
    out.push_str(",\"status\":");
    json_str(out, &row.status);
    let _ = write!(
        out,
        ",\"up\":{},\"admin\":\"{}\",\"weight\":{},\"health_transitions\":{},",
        row.up, row.admin, row.weight, row.transitions
    );
    json_counters(out, Sv::FIELDS, &s.values);
    let _ = write!(
        out,
        ",\"current_sessions\":{},\"max_sessions\":{},\"rates\":{{\"requests\":",
        s.values[Sv::CurrentSessions as usize],
        s.max_sessions
    );
    json_num(out, s.request_rate);
    out.push_str("},");
    json_timers(out, &s.timers);
    out.push('}');
}

/// `GET /stats.json`.
pub fn json(r: &Report<'_>) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let p = &r.process;
    let v = r.view;
    let _ = write!(
        out,
        "{{\"info\":{{\"name\":\"ringproxy\",\"version\":\"{VERSION}\",\"pid\":{},\"uptime_sec\":",
        p.pid
    );
    json_num(&mut out, p.uptime.as_secs_f64());
    let _ = write!(
        out,
        ",\"shards\":{},\"tick_ms\":{},\"ticks\":{},\"ring_drops\":{},\"log_drops\":{},\
         \"current_sessions\":{},\"total_sessions\":{},\"total_requests\":{}}}",
        p.shards,
        p.interval.as_millis(),
        v.ticks,
        v.dropped,
        v.log_dropped,
        r.current_sessions(),
        r.total(Fe::Sessions),
        r.total(Fe::Requests),
    );
    out.push_str(",\"frontends\":[");
    for (i, (fe, f)) in r.config.frontends.iter().zip(&v.frontends).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_str(&mut out, &fe.name);
        let _ = write!(out, ",\"mode\":\"{}\",\"binds\":[", mode_name(fe.mode));
        let binds = r
            .bound
            .get(i)
            .filter(|b| !b.is_empty())
            .unwrap_or(&fe.binds);
        for (j, b) in binds.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_str(&mut out, &b.to_string());
        }
        out.push_str("],");
        json_counters(&mut out, Fe::FIELDS, &f.values);
        let _ = write!(
            out,
            ",\"current_sessions\":{},\"max_sessions\":{},\"rates\":{{\"sessions\":",
            f.values[Fe::CurrentSessions as usize],
            f.max_sessions
        );
        json_num(&mut out, f.session_rate);
        out.push_str(",\"requests\":");
        json_num(&mut out, f.request_rate);
        out.push_str("},");
        json_timers(&mut out, &f.timers);
        out.push('}');
    }
    out.push_str("],\"backends\":[");
    for (i, (be, b, rows)) in r.backends().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_str(&mut out, &be.name);
        let _ = write!(out, ",\"mode\":\"{}\",\"balance\":", mode_name(be.mode));
        json_str(&mut out, &balance_name(&be.balance));
        out.push(',');
        json_counters(&mut out, Sv::FIELDS, &b.sums.values);
        let _ = write!(
            out,
            ",\"current_sessions\":{},\"max_sessions\":{},\"queue\":{{\"current\":{},\"max\":{}}},\"rates\":{{\"requests\":",
            b.sums.values[Sv::CurrentSessions as usize],
            b.sums.max_sessions,
            b.sums.values[Sv::CurrentQueue as usize],
            b.max_queue
        );
        json_num(&mut out, b.sums.request_rate);
        out.push_str("},");
        json_timers(&mut out, &b.sums.timers);
        out.push_str(",\"servers\":[");
        for (j, ((sc, s), row)) in be.servers.iter().zip(&b.servers).zip(rows).enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_server(&mut out, &sc.name, s, row);
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

// ---- HAProxy's CSV (`show stat`) --------------------------------------------------

/// The columns of HAProxy's `show stat`, in its order, up to the average times.
pub const CSV_COLUMNS: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
];

/// One CSV row: column name → value; absent columns stay empty.
struct CsvRow(Vec<String>);

impl CsvRow {
    fn new() -> CsvRow {
        CsvRow(vec![String::new(); CSV_COLUMNS.len()])
    }

    fn set(&mut self, column: &str, value: impl ToString) {
        if let Some(i) = CSV_COLUMNS.iter().position(|c| *c == column) {
            self.0[i] = value.to_string();
        }
    }

    /// The six class counters, which start at `first` in `values`.
    fn classes(&mut self, values: &[u64], first: usize) {
        let columns = [
            "hrsp_1xx",
            "hrsp_2xx",
            "hrsp_3xx",
            "hrsp_4xx",
            "hrsp_5xx",
            "hrsp_other",
        ];
        for (i, col) in columns.iter().enumerate() {
            self.set(col, values[first + i]);
        }
    }

    /// Mean times over the last window, in ms (HAProxy: over the last 1024 requests).
    fn times(&mut self, timers: &[PhaseView; 4]) {
        for (col, phase) in [
            ("qtime", Phase::Queue),
            ("ctime", Phase::Connect),
            ("rtime", Phase::Response),
            ("ttime", Phase::Total),
        ] {
            let s = timers[phase as usize].recent;
            self.set(col, (s.mean_us / 1000.0).round() as u64);
        }
    }

    fn server_common(&mut self, s: &SvView) {
        let v = &s.values;
        self.set("scur", v[Sv::CurrentSessions as usize]);
        self.set("smax", s.max_sessions);
        self.set("stot", v[Sv::Requests as usize]);
        self.set("bin", v[Sv::BytesIn as usize]);
        self.set("bout", v[Sv::BytesOut as usize]);
        self.set("econ", v[Sv::ConnectErrors as usize]);
        self.set(
            "eresp",
            v[Sv::ResponseErrors as usize] + v[Sv::ServerTimeouts as usize],
        );
        self.set("wretr", v[Sv::Retries as usize]);
        self.set("wredis", v[Sv::Redispatches as usize]);
        self.set("lbtot", v[Sv::Requests as usize]);
        self.set("rate", s.request_rate.round() as u64);
        self.set("cli_abrt", v[Sv::ClientAborts as usize]);
        self.set("srv_abrt", v[Sv::ServerAborts as usize]);
        self.classes(v, Sv::Resp1xx as usize);
        self.times(&s.timers);
    }
}

/// `show stat`: HAProxy's CSV, one row per frontend, server and backend.
pub fn csv(r: &Report<'_>) -> String {
    let mut out = String::from("# ");
    out.push_str(&CSV_COLUMNS.join(","));
    out.push('\n');
    let v = r.view;
    let pid = r.process.pid;
    let mut push = |row: CsvRow| {
        out.push_str(&row.0.join(","));
        out.push('\n');
    };
    for (i, (fe, f)) in r.config.frontends.iter().zip(&v.frontends).enumerate() {
        let mut row = CsvRow::new();
        let x = &f.values;
        row.set("pxname", &fe.name);
        row.set("svname", "FRONTEND");
        row.set("scur", x[Fe::CurrentSessions as usize]);
        row.set("smax", f.max_sessions);
        row.set("stot", x[Fe::Sessions as usize]);
        row.set("bin", x[Fe::BytesIn as usize]);
        row.set("bout", x[Fe::BytesOut as usize]);
        row.set("ereq", x[Fe::RequestErrors as usize]);
        row.set("status", "OPEN");
        row.set("pid", pid);
        row.set("iid", i + 1);
        row.set("sid", 0);
        row.set("type", 0);
        row.set("rate", f.session_rate.round() as u64);
        row.set("req_rate", f.request_rate.round() as u64);
        row.set("req_tot", x[Fe::Requests as usize]);
        row.set("cli_abrt", x[Fe::ClientAborts as usize]);
        row.classes(x, Fe::Resp1xx as usize);
        push(row);
    }
    let base = r.config.frontends.len();
    for (i, (be, b, rows)) in r.backends().enumerate() {
        for (j, ((sc, s), state)) in be.servers.iter().zip(&b.servers).zip(rows).enumerate() {
            let mut row = CsvRow::new();
            row.set("pxname", &be.name);
            row.set("svname", &sc.name);
            row.server_common(s);
            row.set("status", &state.status);
            row.set("weight", state.weight);
            row.set("act", u8::from(!sc.backup));
            row.set("bck", u8::from(sc.backup));
            row.set("chkdown", state.transitions);
            if let Some(l) = sc.maxconn {
                row.set("slim", l);
            }
            row.set("pid", pid);
            row.set("iid", base + i + 1);
            row.set("sid", j + 1);
            row.set("type", 2);
            push(row);
        }
        let mut row = CsvRow::new();
        row.set("pxname", &be.name);
        row.set("svname", "BACKEND");
        row.server_common(&b.sums);
        row.set("qcur", b.sums.values[Sv::CurrentQueue as usize]);
        row.set("qmax", b.max_queue);
        let up = rows.iter().any(|s| s.up);
        row.set("status", if up { "UP" } else { "DOWN" });
        let weight: u32 = rows.iter().filter(|s| s.up).map(|s| s.weight).sum();
        row.set("weight", weight);
        row.set(
            "act",
            be.servers
                .iter()
                .zip(rows)
                .filter(|(c, s)| !c.backup && s.up)
                .count(),
        );
        row.set(
            "bck",
            be.servers
                .iter()
                .zip(rows)
                .filter(|(c, s)| c.backup && s.up)
                .count(),
        );
        row.set("pid", pid);
        row.set("iid", base + i + 1);
        row.set("sid", 0);
        row.set("type", 1);
        push(row);
    }
    out
}

// ---- show info, and the terminal table --------------------------------------------

/// `show info`: `Key: value` lines like HAProxy's.
pub fn info(r: &Report<'_>) -> String {
    let p = &r.process;
    let v = r.view;
    let rate: f64 = v.frontends.iter().map(|f| f.session_rate).sum();
    let req_rate: f64 = v.frontends.iter().map(|f| f.request_rate).sum();
    let mut out = String::new();
    let _ = writeln!(out, "Name: ringproxy");
    let _ = writeln!(out, "Version: {VERSION}");
    let _ = writeln!(out, "Pid: {}", p.pid);
    let _ = writeln!(out, "Uptime_sec: {}", p.uptime.as_secs());
    let _ = writeln!(out, "Shards: {}", p.shards);
    let _ = writeln!(out, "Nbthread: {}", p.shards);
    let _ = writeln!(out, "CurrConns: {}", r.current_sessions());
    let _ = writeln!(out, "CumConns: {}", r.total(Fe::Sessions));
    let _ = writeln!(out, "CumReq: {}", r.total(Fe::Requests));
    let _ = writeln!(out, "ConnRate: {}", rate.round() as u64);
    let _ = writeln!(out, "ReqRate: {}", req_rate.round() as u64);
    let _ = writeln!(out, "Stats_interval_ms: {}", p.interval.as_millis());
    let _ = writeln!(out, "Stats_dropped: {}", v.dropped);
    let _ = writeln!(out, "Log_dropped: {}", v.log_dropped);
    out
}

/// Human-sized bytes.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u < UNITS.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

fn ms_cell(us: u64, count: u64) -> String {
    if count == 0 {
        "-".into()
    } else {
        format!("{:.1}", us as f64 / 1000.0)
    }
}

/// `show table`: what `ringproxy stats` prints: one line per frontend, server and
/// backend, aligned.
pub fn table(r: &Report<'_>) -> String {
    let head = [
        "NAME", "STATUS", "WEIGHT", "CUR", "MAX", "RATE/s", "REQUESTS", "2xx", "4xx", "5xx", "ERR",
        "RETRY", "QUEUE", "IN", "OUT", "P50 ms", "P99 ms",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    let v = r.view;
    for (fe, f) in r.config.frontends.iter().zip(&v.frontends) {
        let x = &f.values;
        let t = f.timers[Phase::Total as usize].recent;
        rows.push(vec![
            format!("{} (frontend)", fe.name),
            "OPEN".into(),
            "-".into(),
            x[Fe::CurrentSessions as usize].to_string(),
            f.max_sessions.to_string(),
            format!(
                "{:.0}",
                if fe.mode == Mode::Http {
                    f.request_rate
                } else {
                    f.session_rate
                }
            ),
            x[Fe::Requests as usize].to_string(),
            x[Fe::Resp2xx as usize].to_string(),
            x[Fe::Resp4xx as usize].to_string(),
            x[Fe::Resp5xx as usize].to_string(),
            x[Fe::RequestErrors as usize].to_string(),
            "-".into(),
            "-".into(),
            bytes(x[Fe::BytesIn as usize]),
            bytes(x[Fe::BytesOut as usize]),
            ms_cell(t.p50_us, t.count),
            ms_cell(t.p99_us, t.count),
        ]);
    }
    let sv_row = |name: String, status: String, weight: String, s: &SvView, queue: String| {
        let x = &s.values;
        let t = s.timers[Phase::Total as usize].recent;
        vec![
            name,
            status,
            weight,
            x[Sv::CurrentSessions as usize].to_string(),
            s.max_sessions.to_string(),
            format!("{:.0}", s.request_rate),
            x[Sv::Requests as usize].to_string(),
            x[Sv::Resp2xx as usize].to_string(),
            x[Sv::Resp4xx as usize].to_string(),
            x[Sv::Resp5xx as usize].to_string(),
            (x[Sv::ConnectErrors as usize]
                + x[Sv::ResponseErrors as usize]
                + x[Sv::ServerTimeouts as usize])
                .to_string(),
            x[Sv::Retries as usize].to_string(),
            queue,
            bytes(x[Sv::BytesIn as usize]),
            bytes(x[Sv::BytesOut as usize]),
            ms_cell(t.p50_us, t.count),
            ms_cell(t.p99_us, t.count),
        ]
    };
    for (be, b, states) in r.backends() {
        for ((sc, s), st) in be.servers.iter().zip(&b.servers).zip(states) {
            rows.push(sv_row(
                format!("{}/{}", be.name, sc.name),
                st.status.clone(),
                st.weight.to_string(),
                s,
                "-".into(),
            ));
        }
        let up = states.iter().any(|s| s.up);
        rows.push(sv_row(
            format!("{} (backend)", be.name),
            if up { "UP" } else { "DOWN" }.into(),
            "-".into(),
            &b.sums,
            format!(
                "{}/{}",
                b.sums.values[Sv::CurrentQueue as usize],
                b.max_queue
            ),
        ));
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                let _ = write!(out, "{cell:<w$}", w = widths[c]);
            } else {
                let _ = write!(out, "  {cell:>w$}", w = widths[c]);
            }
        }
        out.push('\n');
    }
    out
}
