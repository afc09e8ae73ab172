//! Configuration: TOML text → [`file`] structs → validated [`Config`].
//!
//! Owns the whole load pipeline, and nothing else reads configuration text. Invariants of a
//! [`Config`] (checked once here, relied upon everywhere else):
//! - names of frontends, of backends and of servers within a backend are unique;
//! - every frontend's backend exists and has the same mode;
//! - every address is resolved to a [`SocketAddr`] (but a DNS discovery slot the name
//!   gives no address yet: `has_address` is false and its address is a placeholder) and
//!   every duration is a non-zero [`Duration`] (a zero timeout would mean "wait forever",
//!   which ringproxy never does).
//!
//! Health keys are validated in [`health`], cookie stickiness in [`sticky`], TLS settings
//! (and the certificate, key and CA files they name) in [`tls`].
//!
//! Every refusal is a [`ConfigError`]: file, line, key and reason, printed as
//! `FILE:LINE: key: reason`.

mod duration;
pub mod file;
pub mod health;
pub mod sticky;
pub mod tls;

pub use duration::parse_duration;
pub use health::{CheckKind, HealthCheck, Observe, OnMarkedDown, OnMarkedUp, ServerHealth};
pub use sticky::{CookieMode, CookieSettings};
pub use tls::{Certificate, FrontendTls, ServerTls, Sni, TlsVersion};

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use file::{FileBackend, FileConfig, FileDefaults, FileFrontend, FileServer};
use toml::Spanned;

/// A validated configuration. Runtime code reads only this.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages only).
    pub source: PathBuf,
    pub global: Global,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    pub admin: Admin,
    pub log: Log,
}

/// `[admin]`: the runtime API and the statistics listener.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Unix socket of the text runtime API (`show servers state`, `set server ...`).
    pub socket: Option<PathBuf>,
    /// The HTTP statistics listener: `/metrics`, `/stats.json` and the stats page.
    pub listen: Option<SocketAddr>,
    /// How often each shard publishes its statistics to the control thread.
    pub stats_interval: Duration,
}

impl Default for Admin {
    fn default() -> Admin {
        Admin {
            socket: None,
            listen: None,
            stats_interval: default::STATS_INTERVAL,
        }
    }
}

impl Admin {
    /// Whether the shards keep statistics (counters always; histograms and their
    /// publication only when something reads them).
    pub fn stats_enabled(&self) -> bool {
        self.socket.is_some() || self.listen.is_some()
    }
}

/// `[log]`: the access log.
#[derive(Debug, Clone, Default)]
pub struct Log {
    /// Where access log lines go; `None`: no access log.
    pub access: Option<LogSink>,
    pub format: LogFormat,
    /// Records a shard may have waiting for the logger thread; beyond, records are
    /// dropped and counted.
    pub ring: usize,
}

/// `log.access`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSink {
    Stdout,
    File(PathBuf),
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// HAProxy's HTTP log format (and its TCP one in tcp mode).
    #[default]
    Haproxy,
    /// One JSON object per line.
    Json,
}

/// `[global]`.
#[derive(Debug, Clone)]
pub struct Global {
    pub shards: Shards,
    /// How long established sessions may run on after a stop signal.
    pub grace: Duration,
    /// Pin shard `i` to the `i`-th CPU of the process's affinity mask.
    pub pin: bool,
    /// A hosts(5) file consulted before the system resolver (DNS discovery).
    pub hosts_file: Option<PathBuf>,
    /// Client sessions open at once, whole process; `None` is unlimited. Each shard
    /// enforces its share (`worker::limit`); beyond it, connections wait in the kernel's
    /// listen backlog.
    pub maxconn: Option<NonZeroU32>,
}

/// `global.shards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards {
    /// One shard per CPU in the process's affinity mask (respects `taskset`).
    Auto,
    Count(NonZeroUsize),
}

/// `mode` of a frontend or backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Layer 4: bytes are relayed, never parsed.
    Tcp,
    /// Layer 7: HTTP/1.0 and 1.1 requests are parsed, routed and forwarded one by one.
    Http,
}

/// `balance` of a backend, with HAProxy's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// `roundrobin`: smooth weighted round robin (nginx's algorithm: no bursts to heavy
    /// servers).
    RoundRobin,
    /// `leastconn`: fewest active sessions relative to weight, counted on the picking shard.
    LeastConn,
    /// `random`: power of two choices. Two servers drawn by weight, the one with fewer
    /// active sessions per unit of weight wins.
    Random,
    /// `source`: hash of the client's IP address.
    Source,
    /// `uri`: hash of the request path, query string excluded (HAProxy's default).
    Uri,
    /// `hdr(<name>)`: hash of the value of a request header.
    Header {
        /// The header's name, lower-cased (header names are case-insensitive).
        name: Box<str>,
    },
}

/// What a hashing algorithm hashes; the session computes the hash, the balancer only sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind<'a> {
    /// The client's IP address (`upstream::balance::hash_ip`).
    Source,
    /// The request path without the query string (`upstream::balance::hash_key`).
    Uri,
    /// The value of the request header with this lower-case name (`hash_key`).
    Header(&'a str),
}

impl Balance {
    /// The key to hash for `source`, `uri` and `hdr(...)`; `None` for the others. A request
    /// without the key (no such header) is balanced round robin.
    pub fn needs_key(&self) -> Option<KeyKind<'_>> {
        match self {
            Balance::RoundRobin | Balance::LeastConn | Balance::Random => None,
            Balance::Source => Some(KeyKind::Source),
            Balance::Uri => Some(KeyKind::Uri),
            Balance::Header { name } => Some(KeyKind::Header(name)),
        }
    }
}

/// As written in the file: `roundrobin`, `hdr(x-user)`, ...
impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Balance::RoundRobin => f.write_str("roundrobin"),
            Balance::LeastConn => f.write_str("leastconn"),
            Balance::Random => f.write_str("random"),
            Balance::Source => f.write_str("source"),
            Balance::Uri => f.write_str("uri"),
            Balance::Header { name } => write!(f, "hdr({name})"),
        }
    }
}

/// `hash_type` of a backend: how `source`, `uri` and `hdr(...)` map a key to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashType {
    /// `map-based` (default): the key modulo the total weight of the eligible servers. Even
    /// and cheap, but a server going down or coming back remaps most keys.
    #[default]
    MapBased,
    /// `consistent`: a hash ring; when a server leaves only its keys move (to the next
    /// servers on the ring), the others stay where they were.
    Consistent,
}

impl fmt::Display for HashType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashType::MapBased => "map-based",
            HashType::Consistent => "consistent",
        })
    }
}

/// `[[frontend]]`.
#[derive(Debug, Clone)]
pub struct Frontend {
    pub name: String,
    pub binds: Vec<SocketAddr>,
    pub mode: Mode,
    /// Index into [`Config::backends`]; `None` only for an http frontend with routes
    /// (a request no route matches then gets 503).
    pub backend: Option<usize>,
    pub timeout_client: Duration,
    /// Inactivity allowed on the client side once the server side has closed.
    pub timeout_client_fin: Duration,
    /// Forward tcp-mode bytes, and large http bodies, with `splice(2)` (true) or a
    /// user-space copy (false).
    pub splice: bool,
    /// HTTP settings (used in mode `http` only).
    pub http: HttpFrontend,
    /// TLS termination (`[frontend.tls]`).
    pub tls: Option<std::sync::Arc<FrontendTls>>,
    /// A TLS handshake must be complete within this time of the accept.
    pub timeout_client_handshake: Duration,
    /// Client sessions of this frontend open at once, whole process; `None` is
    /// unlimited. Each shard enforces its share (`worker::limit`).
    pub maxconn: Option<NonZeroU32>,
}

/// The HTTP side of a frontend.
#[derive(Debug, Clone)]
pub struct HttpFrontend {
    /// A request head must arrive whole within this time of its first byte (of the
    /// connection, for the first request); else 408.
    pub timeout_http_request: Duration,
    /// Idle time allowed between two requests of a kept-alive client connection.
    pub timeout_http_keep_alive: Duration,
    /// Requests served on one client connection; the last response says `close`. 0 is
    /// unlimited.
    pub max_keep_alive_requests: u32,
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in a request; more gets 431.
    pub max_headers: usize,
    /// Longest request line; longer gets 414.
    pub max_request_line: usize,
    /// Tried in order; the first match picks the backend.
    pub routes: Vec<Route>,
    /// Append the client address to `X-Forwarded-For` and set `X-Forwarded-Proto`.
    pub forward_for: Option<ForwardFor>,
    /// Which sides stay open after an exchange (combined with the backend's: the
    /// stronger closing wins).
    pub keep_alive: KeepAlive,
    /// With `server-close` or `close`: do not tell the server; still close after the
    /// response.
    pub pretend_keep_alive: bool,
}

/// `keep_alive`, HAProxy's connection modes, ordered from keeping most to closing most:
/// when a frontend and a backend say different things, the larger (closing) one applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeepAlive {
    /// Both sides persistent as HTTP allows (HAProxy's default `http-keep-alive`).
    KeepAlive,
    /// The server connection closes after each response; the client's stays (HAProxy's
    /// `option http-server-close`).
    ServerClose,
    /// Both connections close after each exchange (HAProxy's `option httpclose`).
    Close,
}

impl KeepAlive {
    /// The mode of an exchange through `frontend` to `backend`: close is the strongest.
    pub fn combine(frontend: KeepAlive, backend: KeepAlive) -> KeepAlive {
        frontend.max(backend)
    }
}

/// `http_reuse`: which requests may go on an idle server connection from the shard's
/// pool (HAProxy's `http-reuse`). Whatever the policy, a request is only ever sent on a
/// connection that is idle (one request at a time per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpReuse {
    /// No sharing: a server connection belongs to one client connection, serves its
    /// requests, and closes with it.
    Never,
    /// A client connection's first request goes on a pooled connection only when the
    /// proxy itself can retry it (idempotent method, whole request kept); otherwise on a
    /// new connection. Later requests may take any pooled connection.
    Safe,
    /// As `safe`, but a first request that cannot be retried may take a pooled
    /// connection that has already served two requests (the server proved it keeps
    /// connections alive).
    Aggressive,
    /// Any request may take any pooled connection.
    Always,
}

/// `retry_on`: what makes the proxy send a request again, on a new connection, within
/// `retries` (HAProxy's `retry-on`). Only requests that can be sent again are retried:
/// idempotent ones whose body the proxy still holds, or any request none of whose bytes
/// reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// Connecting failed (refused, timed out): connect again, to another server while
    /// one is left.
    pub conn_failure: bool,
    /// The server closed or reset the connection without a byte of response.
    pub empty_response: bool,
    /// The server answered something that is not an HTTP response head.
    pub junk_response: bool,
    /// `timeout_server` passed without a response head.
    pub response_timeout: bool,
    /// Final statuses that are retried (from 401, 403, 404, 408, 425, 500..=504).
    pub statuses: Vec<u16>,
}

impl RetryOn {
    /// HAProxy's default: connection failures only.
    pub fn conn_failure_only() -> RetryOn {
        RetryOn {
            conn_failure: true,
            empty_response: false,
            junk_response: false,
            response_timeout: false,
            statuses: Vec::new(),
        }
    }

    pub fn status(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }
}

/// The HTTP side of a backend: its connection pool, reuse and retry policy.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    pub reuse: HttpReuse,
    /// Idle connections kept per server per shard; 0 keeps none.
    pub pool_max_idle: usize,
    /// An idle connection older than this is closed (below the servers' own keep-alive
    /// timeout, so that the proxy, not the server, closes idle connections).
    pub pool_idle_timeout: Duration,
    /// Requests per server connection, then it closes; 0 is unlimited.
    pub pool_max_reuse: u32,
    pub retry_on: RetryOn,
    pub keep_alive: KeepAlive,
    pub pretend_keep_alive: bool,
    /// A client connection's request goes to the server of its previous request when
    /// that server has an idle connection.
    pub prefer_last_server: bool,
}

/// `[[frontend.route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    pub host: Option<HostPattern>,
    /// Matches when the request path starts with these bytes.
    pub path_prefix: Option<String>,
    /// Index into [`Config::backends`].
    pub backend: usize,
}

/// `route.host`: compared without case and without the request's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `example.com` (stored lowercase).
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any name ending with it.
    Suffix(String),
}

impl HostPattern {
    /// Whether `host` (already lowercase, without port) matches.
    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(h) => host == h.as_bytes(),
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_bytes()),
        }
    }
}

/// `forward_for` when enabled.
#[derive(Debug, Clone)]
pub struct ForwardFor {
    /// Clients in these networks get no `X-Forwarded-For` entry.
    pub except: Vec<Cidr>,
}

/// A network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128` or a bare address (a single host).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = a
            .parse()
            .map_err(|_| format!("\"{text}\" is not an address or network (like 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("\"{text}\": prefix length must be 0..={max}")),
            },
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `[[backend]]`.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub mode: Mode,
    pub balance: Balance,
    /// How a hashing `balance` maps keys to servers; [`HashType::MapBased`] (and unused) for
    /// the other algorithms.
    pub hash_type: HashType,
    pub servers: Vec<Server>,
    pub timeout_connect: Duration,
    pub timeout_server: Duration,
    /// Inactivity allowed on the server side once the client side has closed.
    pub timeout_server_fin: Duration,
    pub timeout_tunnel: Duration,
    /// Connection attempts after the first one fails; in http mode, also the budget of
    /// `retry_on` retries of one request.
    pub retries: u32,
    /// HTTP settings (used in mode `http` only).
    pub http: HttpBackend,
    /// How long a session waits in the backend's queue for a server slot (every usable
    /// server at its `maxconn`) before 503 (http) or close (tcp). HAProxy's default:
    /// `timeout_connect`.
    pub timeout_queue: Duration,
    /// Sessions that may wait in the queue at once, process-wide (split over shards
    /// like `maxconn`); `None`: unbounded (the wait is bounded by `timeout_queue`).
    pub maxqueue: Option<NonZeroU32>,
    /// How its checked servers are probed.
    pub health_check: HealthCheck,
    /// Cookie stickiness (http mode).
    pub cookie: Option<CookieSettings>,
    /// A server's TLS takes its SNI from each request's `Host` (`sni_from_host`).
    pub sni_from_host: bool,
}

/// `[[backend.server]]`.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub address: SocketAddr,
    /// 0..=256; 0 takes no new sessions.
    pub weight: u32,
    /// Whole-process limit of concurrent sessions; `None` is unlimited. Each shard enforces
    /// its share (see `upstream::shard_share`).
    pub maxconn: Option<NonZeroU32>,
    /// Takes traffic only when no primary server of the backend is usable.
    pub backup: bool,
    /// Starts in MAINT.
    pub disabled: bool,
    /// Never from the file: the weight and administrative state the operator had set
    /// through the runtime API, carried over by a reload (`admin::carry`). `None`: the
    /// file's (`weight`, `disabled`).
    pub start_weight: Option<u32>,
    pub start_admin: Option<crate::upstream::health::Admin>,
    /// Its persistence cookie value (`[backend.cookie]`).
    pub cookie: String,
    /// DNS discovery: the name this server's address follows.
    pub discovery: Option<Discovery>,
    /// False for a discovery slot the name gives no address (then `address` is a
    /// placeholder and the server is out of service).
    pub has_address: bool,
    pub health: ServerHealth,
    /// TLS to the server (its own `tls`, else its backend's).
    pub tls: Option<std::sync::Arc<ServerTls>>,
    /// Health checks go over TLS too.
    pub check_tls: bool,
}

/// A server slot of a template that follows a host name (`resolve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub host: String,
    pub port: u16,
    /// Re-resolve this often.
    pub every: Duration,
    /// Index of the template's first server in the backend (names the template).
    pub template: usize,
}

/// Defaults that apply when neither `[defaults]` nor the section sets a key.
pub mod default {
    use std::time::Duration;
    pub const GRACE: Duration = Duration::from_secs(10);
    pub const STATS_INTERVAL: Duration = Duration::from_secs(1);
    pub const STATS_INTERVAL_MIN: Duration = Duration::from_millis(100);
    pub const STATS_INTERVAL_MAX: Duration = Duration::from_secs(60);
    pub const LOG_RING: usize = 16 * 1024;
    pub const TIMEOUT_CONNECT: Duration = Duration::from_secs(5);
    pub const TIMEOUT_CLIENT: Duration = Duration::from_secs(30);
    pub const TIMEOUT_SERVER: Duration = Duration::from_secs(30);
    pub const TIMEOUT_TUNNEL: Duration = Duration::from_secs(3600);
    pub const TIMEOUT_CLIENT_FIN: Duration = Duration::from_secs(10);
    pub const TIMEOUT_SERVER_FIN: Duration = Duration::from_secs(10);
    pub const RETRIES: u32 = 3;
    pub const TIMEOUT_HTTP_REQUEST: Duration = Duration::from_secs(10);
    pub const TIMEOUT_HTTP_KEEP_ALIVE: Duration = Duration::from_secs(10);
    /// As `timeout_http_request`: a client has this long for its TLS handshake.
    pub const TIMEOUT_CLIENT_HANDSHAKE: Duration = Duration::from_secs(10);
    pub const MAX_KEEP_ALIVE_REQUESTS: u32 = 1000;
    pub const MAX_HEADER_BYTES: usize = 16 * 1024;
    pub const MAX_HEADERS: usize = 100;
    pub const MAX_REQUEST_LINE: usize = 8 * 1024;
    /// Bounds of the HTTP limits: a head must fit a request line and a few headers, and
    /// a shard keeps one buffer of `max_header_bytes` per connection.
    pub const MAX_HEADER_BYTES_RANGE: (i64, i64) = (1024, 1024 * 1024);
    pub const MAX_HEADERS_RANGE: (i64, i64) = (1, 1000);
    pub const MAX_REQUEST_LINE_MIN: i64 = 64;
    /// 4 s: below the 5 s keep-alive timeout of Node.js and of many servers behind it,
    /// so that an idle connection is closed by the proxy before the server closes it
    /// under a request.
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
    pub const POOL_MAX_IDLE: usize = 64;
    pub const POOL_MAX_IDLE_MAX: i64 = 100_000;
    pub const WEIGHT: u32 = 1;
    pub const WEIGHT_MAX: i64 = 256;
    /// Sanity bound: more attempts than this only delays the client's error.
    pub const RETRIES_MAX: i64 = 100;
    /// Longest duration accepted: a year is already "never" for a proxy, and a bound keeps
    /// deadline arithmetic (`Instant + Duration`) far from overflow.
    pub const DURATION_MAX: Duration = Duration::from_secs(365 * 86_400);
}

/// A refused configuration: printed as `FILE:LINE: key: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error concerns the file as a whole (e.g. unreadable).
    pub line: usize,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line whatever a refused value held: control characters are escaped.
        let reason: String = self
            .reason
            .chars()
            .flat_map(|c| {
                let escaped = c.is_control().then(|| c.escape_default());
                escaped
                    .into_iter()
                    .flatten()
                    .chain((!c.is_control()).then_some(c))
            })
            .collect();
        write!(
            f,
            "{}:{}: {}: {reason}",
            self.file.display(),
            self.line,
            self.key,
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Validates configuration text; `source` names it in errors.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let ctx = Ctx { text, source };
        let file: FileConfig = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
        ctx.validate(file)
    }

    /// Index of the backend called `name`.
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }

    /// A one-paragraph summary, as printed by `ringproxy check`.
    pub fn summary(&self) -> String {
        let servers: usize = self.backends.iter().map(|b| b.servers.len()).sum();
        let mut out = format!(
            "{}: ok: {} frontend(s), {} backend(s), {} server(s)\n",
            self.source.display(),
            self.frontends.len(),
            self.backends.len(),
            servers
        );
        for f in &self.frontends {
            let binds: Vec<String> = f.binds.iter().map(|a| a.to_string()).collect();
            let backend = f.backend.map_or("(none: 503)", |b| &self.backends[b].name);
            out.push_str(&format!(
                "  frontend {} ({:?}) on {} -> backend {}{}\n",
                f.name,
                f.mode,
                binds.join(", "),
                backend,
                match f.http.routes.len() {
                    0 => String::new(),
                    n => format!(" ({n} route(s) first)"),
                }
            ));
            for c in f.tls.iter().flat_map(|t| &t.certificates) {
                let names = if c.names.is_empty() {
                    "(no DNS name)".to_string()
                } else {
                    c.names.join(", ")
                };
                out.push_str(&format!(
                    "    tls certificate {}: {names}\n",
                    c.path.display()
                ));
            }
        }
        for b in &self.backends {
            let hash_type = match b.balance.needs_key() {
                Some(_) => format!(", hash_type {}", b.hash_type),
                None => String::new(),
            };
            out.push_str(&format!(
                "  backend {} ({:?}, {}{}): {}\n",
                b.name,
                b.mode,
                b.balance,
                hash_type,
                b.servers
                    .iter()
                    .map(|s| format!("{}={} w{}", s.name, s.address, s.weight))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out
    }
}

/// What every validation step needs: the text (to turn spans into lines) and its name.
struct Ctx<'a> {
    text: &'a str,
    source: &'a Path,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        reason: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.source.to_path_buf(),
            line: self.line_of(span.start),
            key: key.to_string(),
            reason: reason.into(),
        })
    }

    /// Maps a TOML syntax or type error onto `FILE:LINE: key: reason`. The key is read back
    /// from the source: the table header above the line plus the key on the line.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let start = e.span().map(|s| s.start).unwrap_or(0);
        let lines = self.text.lines().count().max(1);
        let line = self.line_of(start).min(lines);
        ConfigError {
            file: self.source.to_path_buf(),
            line,
            key: self.key_at_line(line),
            reason: e.message().trim().replace('\n', " "),
        }
    }

    /// The dotted key for an error reported at `line`: the nearest table header above plus
    /// the nearest `key =` at or above the line (a multi-line array's element reports the
    /// array's key). Comments are ignored.
    fn key_at_line(&self, line: usize) -> String {
        let lines: Vec<&str> = self.text.lines().map(strip_comment).collect();
        if lines.is_empty() {
            return "(file)".into();
        }
        let last = line.clamp(1, lines.len()) - 1;
        let mut key: Option<&str> = None;
        for l in lines[..=last].iter().rev() {
            if l.starts_with('[') {
                let table = l.trim_matches(|c| c == '[' || c == ']').trim();
                return match key {
                    Some(k) => format!("{table}.{k}"),
                    None => table.to_string(),
                };
            }
            if key.is_none() {
                if let Some((k, _)) = l.split_once('=') {
                    key = Some(k.trim());
                }
            }
        }
        key.map_or_else(|| "(file)".into(), str::to_string)
    }

    fn duration(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        inherited: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = value else { return Ok(inherited) };
        match parse_duration(v.get_ref()) {
            Ok(d) if d.is_zero() => self.err(
                v.span(),
                key,
                "must be greater than 0: every wait in ringproxy is bounded",
            ),
            Ok(d) if d > default::DURATION_MAX => self.err(v.span(), key, "must be at most 365d"),
            Ok(d) => Ok(d),
            Err(reason) => self.err(v.span(), key, reason),
        }
    }

    fn retries(
        &self,
        value: Option<&Spanned<i64>>,
        key: &str,
        inherited: u32,
    ) -> Result<u32, ConfigError> {
        let range = (0, default::RETRIES_MAX);
        Ok(self.int_in(value, key, range, inherited.into())? as u32)
    }

    /// A count bound such as `maxconn`: 0 (or absent) is no bound.
    fn limit(
        &self,
        value: Option<&Spanned<i64>>,
        key: &str,
    ) -> Result<Option<NonZeroU32>, ConfigError> {
        let n = self.int_in(value, key, (0, u32::MAX.into()), 0)?;
        Ok(NonZeroU32::new(n as u32))
    }

    /// A key whose value is one of a few words: the value `choices` maps it to, or
    /// `inherited` when absent; else refused as `unknown {what} "x" (expected ...)`.
    fn word<T: Copy>(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        what: &str,
        choices: &[(&str, T)],
        inherited: T,
    ) -> Result<T, ConfigError> {
        let Some(v) = value else { return Ok(inherited) };
        if let Some(&(_, t)) = choices.iter().find(|(name, _)| *name == v.get_ref()) {
            return Ok(t);
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.err(
            v.span(),
            key,
            format!(
                "unknown {what} \"{}\" (expected {})",
                v.get_ref(),
                names.join(" or ")
            ),
        )
    }

    fn mode(&self, value: Option<&Spanned<String>>, key: &str) -> Result<Mode, ConfigError> {
        self.word(
            value,
            key,
            "mode",
            &[("tcp", Mode::Tcp), ("http", Mode::Http)],
            Mode::Tcp,
        )
    }

    /// An integer setting within `lo..=hi`, or `inherited` when absent.
    fn int_in(
        &self,
        value: Option<&Spanned<i64>>,
        key: &str,
        (lo, hi): (i64, i64),
        inherited: i64,
    ) -> Result<i64, ConfigError> {
        let Some(v) = value else { return Ok(inherited) };
        match *v.get_ref() {
            n if (lo..=hi).contains(&n) => Ok(n),
            n => self.err(v.span(), key, format!("{n} is out of range {lo}..={hi}")),
        }
    }

    /// The HTTP limits and timeouts of `[defaults]` (section `defaults`, inheriting the
    /// built-in values) or of a frontend (inheriting `[defaults]`).
    fn http_settings(
        &self,
        section: &str,
        f: HttpKeys<'_>,
        d: &HttpDefaults,
    ) -> Result<HttpDefaults, ConfigError> {
        let key = |k: &str| format!("{section}.{k}");
        let max_header_bytes = self.int_in(
            f.max_header_bytes,
            &key("max_header_bytes"),
            default::MAX_HEADER_BYTES_RANGE,
            d.max_header_bytes as i64,
        )? as usize;
        let max_request_line = self.int_in(
            f.max_request_line,
            &key("max_request_line"),
            (default::MAX_REQUEST_LINE_MIN, max_header_bytes as i64),
            (d.max_request_line.min(max_header_bytes)) as i64,
        )? as usize;
        Ok(HttpDefaults {
            timeout_http_request: self.duration(
                f.timeout_http_request,
                &key("timeout_http_request"),
                d.timeout_http_request,
            )?,
            timeout_http_keep_alive: self.duration(
                f.timeout_http_keep_alive,
                &key("timeout_http_keep_alive"),
                d.timeout_http_keep_alive,
            )?,
            max_keep_alive_requests: self.int_in(
                f.max_keep_alive_requests,
                &key("max_keep_alive_requests"),
                (0, i64::from(u32::MAX)),
                i64::from(d.max_keep_alive_requests),
            )? as u32,
            max_header_bytes,
            max_headers: self.int_in(
                f.max_headers,
                &key("max_headers"),
                default::MAX_HEADERS_RANGE,
                d.max_headers as i64,
            )? as usize,
            max_request_line,
        })
    }

    fn keep_alive(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        inherited: KeepAlive,
    ) -> Result<KeepAlive, ConfigError> {
        self.word(
            value,
            key,
            "mode",
            &[
                ("keep-alive", KeepAlive::KeepAlive),
                ("server-close", KeepAlive::ServerClose),
                ("close", KeepAlive::Close),
            ],
            inherited,
        )
    }

    fn http_reuse(
        &self,
        value: Option<&Spanned<String>>,
        key: &str,
        inherited: HttpReuse,
    ) -> Result<HttpReuse, ConfigError> {
        self.word(
            value,
            key,
            "policy",
            &[
                ("never", HttpReuse::Never),
                ("safe", HttpReuse::Safe),
                ("aggressive", HttpReuse::Aggressive),
                ("always", HttpReuse::Always),
            ],
            inherited,
        )
    }

    /// `retry_on = ["conn-failure", "empty-response", 503]`: HAProxy's event names and
    /// statuses (as numbers or strings); `"none"` alone retries nothing;
    /// `"all-retryable-errors"` is every event plus 500, 502, 503 and 504.
    fn retry_on(
        &self,
        value: Option<&Spanned<Vec<Spanned<toml::Value>>>>,
        key: &str,
        inherited: &RetryOn,
    ) -> Result<RetryOn, ConfigError> {
        const STATUSES: [u16; 10] = [401, 403, 404, 408, 425, 500, 501, 502, 503, 504];
        let Some(list) = value else {
            return Ok(inherited.clone());
        };
        let mut r = RetryOn {
            conn_failure: false,
            empty_response: false,
            junk_response: false,
            response_timeout: false,
            statuses: Vec::new(),
        };
        let items = list.get_ref();
        if items.is_empty() {
            return self.err(list.span(), key, "empty: write [\"none\"] to retry nothing");
        }
        for item in items {
            let status = match item.get_ref() {
                toml::Value::Integer(n) => Some(*n),
                toml::Value::String(t)
                    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    t.parse::<i64>().ok()
                }
                _ => None,
            };
            if let Some(n) = status {
                match STATUSES.iter().find(|&&s| i64::from(s) == n) {
                    Some(&s) if !r.statuses.contains(&s) => r.statuses.push(s),
                    Some(_) => {}
                    None => {
                        return self.err(
                            item.span(),
                            key,
                            format!("status {n} cannot be retried (retryable: {STATUSES:?})"),
                        )
                    }
                }
                continue;
            }
            let name = match item.get_ref() {
                toml::Value::String(t) => t.as_str(),
                _ => "",
            };
            match name {
                "conn-failure" => r.conn_failure = true,
                "empty-response" => r.empty_response = true,
                "junk-response" => r.junk_response = true,
                "response-timeout" => r.response_timeout = true,
                "all-retryable-errors" => {
                    r.conn_failure = true;
                    r.empty_response = true;
                    r.junk_response = true;
                    r.response_timeout = true;
                    for s in [500, 502, 503, 504] {
                        if !r.statuses.contains(&s) {
                            r.statuses.push(s);
                        }
                    }
                }
                "none" if items.len() == 1 => {}
                "none" => return self.err(item.span(), key, "\"none\" must be alone"),
                _ => {
                    return self.err(
                        item.span(),
                        key,
                        format!(
                            "unknown event {} (expected \"conn-failure\", \"empty-response\", \"junk-response\", \"response-timeout\", \"all-retryable-errors\", \"none\" or a status)",
                            item.get_ref()
                        ),
                    )
                }
            }
        }
        Ok(r)
    }

    /// The pool, reuse and retry settings of `[defaults]` or of a backend.
    fn http_backend(
        &self,
        section: &str,
        k: PoolKeys<'_>,
        d: &HttpBackend,
    ) -> Result<HttpBackend, ConfigError> {
        let key = |n: &str| format!("{section}.{n}");
        Ok(HttpBackend {
            reuse: self.http_reuse(k.http_reuse, &key("http_reuse"), d.reuse)?,
            pool_max_idle: self.int_in(
                k.pool_max_idle,
                &key("pool_max_idle"),
                (0, default::POOL_MAX_IDLE_MAX),
                d.pool_max_idle as i64,
            )? as usize,
            pool_idle_timeout: self.duration(
                k.pool_idle_timeout,
                &key("pool_idle_timeout"),
                d.pool_idle_timeout,
            )?,
            pool_max_reuse: self.int_in(
                k.pool_max_reuse,
                &key("pool_max_reuse"),
                (0, i64::from(u32::MAX)),
                i64::from(d.pool_max_reuse),
            )? as u32,
            retry_on: self.retry_on(k.retry_on, &key("retry_on"), &d.retry_on)?,
            keep_alive: self.keep_alive(k.keep_alive, &key("keep_alive"), d.keep_alive)?,
            pretend_keep_alive: k.pretend_keep_alive.unwrap_or(d.pretend_keep_alive),
            prefer_last_server: k.prefer_last_server.unwrap_or(d.prefer_last_server),
        })
    }

    fn routes(
        &self,
        f: &FileFrontend,
        mode: Mode,
        backends: &[Backend],
    ) -> Result<Vec<Route>, ConfigError> {
        let mut routes = Vec::with_capacity(f.route.len());
        for r in &f.route {
            if mode != Mode::Http {
                return self.err(
                    r.backend.span(),
                    "frontend.route",
                    "routes need mode = \"http\" on the frontend",
                );
            }
            let backend = self.backend_ref(&r.backend, "frontend.route.backend", mode, backends)?;
            let host = match &r.host {
                None => None,
                Some(h) => Some(self.host_pattern(h)?),
            };
            let path_prefix = match &r.path_prefix {
                None => None,
                Some(p) if p.get_ref().starts_with('/') => Some(p.get_ref().clone()),
                Some(p) => {
                    return self.err(
                        p.span(),
                        "frontend.route.path_prefix",
                        format!("\"{}\" must start with '/'", p.get_ref()),
                    )
                }
            };
            if host.is_none() && path_prefix.is_none() {
                return self.err(
                    r.backend.span(),
                    "frontend.route",
                    "a route needs host or path_prefix (the frontend's backend is the default)",
                );
            }
            routes.push(Route {
                host,
                path_prefix,
                backend,
            });
        }
        Ok(routes)
    }

    fn host_pattern(&self, h: &Spanned<String>) -> Result<HostPattern, ConfigError> {
        let text = h.get_ref().to_ascii_lowercase();
        let (suffix, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !name.starts_with('.')
            && !name.ends_with('.');
        if !valid {
            return self.err(
                h.span(),
                "frontend.route.host",
                format!(
                    "\"{}\" is not a host name or \"*.suffix\" pattern (no port, no other wildcard)",
                    h.get_ref()
                ),
            );
        }
        Ok(if suffix {
            HostPattern::Suffix(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    fn forward_for(&self, f: &FileFrontend, mode: Mode) -> Result<Option<ForwardFor>, ConfigError> {
        let Some(ff) = &f.forward_for else {
            return Ok(None);
        };
        if mode != Mode::Http {
            return self.err(
                ff.span(),
                "frontend.forward_for",
                "needs mode = \"http\" on the frontend",
            );
        }
        let mut except = Vec::with_capacity(ff.get_ref().except.len());
        for e in &ff.get_ref().except {
            match Cidr::parse(e.get_ref()) {
                Ok(c) => except.push(c),
                Err(reason) => return self.err(e.span(), "frontend.forward_for.except", reason),
            }
        }
        Ok(ff
            .get_ref()
            .enabled
            .unwrap_or(true)
            .then_some(ForwardFor { except }))
    }

    /// Resolves a backend named by a frontend or route and checks its mode.
    fn backend_ref(
        &self,
        name: &Spanned<String>,
        key: &str,
        mode: Mode,
        backends: &[Backend],
    ) -> Result<usize, ConfigError> {
        let Some(i) = backends.iter().position(|b| b.name == *name.get_ref()) else {
            return self.err(
                name.span(),
                key,
                format!("no backend is named \"{}\"", name.get_ref()),
            );
        };
        if backends[i].mode != mode {
            return self.err(
                name.span(),
                key,
                format!(
                    "backend \"{}\" is in {:?} mode, this frontend in {:?} mode",
                    name.get_ref(),
                    backends[i].mode,
                    mode
                ),
            );
        }
        Ok(i)
    }

    fn validate(&self, file: FileConfig) -> Result<Config, ConfigError> {
        let global = match &file.global {
            None => Global {
                shards: Shards::Auto,
                grace: default::GRACE,
                pin: true,
                hosts_file: None,
                maxconn: None,
            },
            Some(g) => Global {
                shards: self.shards(g.shards.as_ref())?,
                grace: self.duration(g.grace.as_ref(), "global.grace", default::GRACE)?,
                pin: g.pin.unwrap_or(true),
                hosts_file: g.hosts_file.as_ref().map(|h| PathBuf::from(h.get_ref())),
                maxconn: self.limit(g.maxconn.as_ref(), "global.maxconn")?,
            },
        };
        let defaults = self.defaults(file.defaults.as_ref().unwrap_or(&FileDefaults::default()))?;

        let mut backends = Vec::with_capacity(file.backend.len());
        for b in &file.backend {
            if backends
                .iter()
                .any(|x: &Backend| x.name == *b.name.get_ref())
            {
                return self.err(
                    b.name.span(),
                    "backend.name",
                    format!("duplicate backend name \"{}\"", b.name.get_ref()),
                );
            }
            backends.push(self.backend(b, &defaults, global.hosts_file.as_deref())?);
        }

        let mut frontends = Vec::with_capacity(file.frontend.len());
        for f in &file.frontend {
            if frontends
                .iter()
                .any(|x: &Frontend| x.name == *f.name.get_ref())
            {
                return self.err(
                    f.name.span(),
                    "frontend.name",
                    format!("duplicate frontend name \"{}\"", f.name.get_ref()),
                );
            }
            frontends.push(self.frontend(f, &defaults, &backends)?);
        }
        for (i, f) in frontends.iter().enumerate() {
            for addr in f.binds.iter().filter(|a| a.port() != 0) {
                let clash = frontends[..i].iter().find(|o| o.binds.contains(addr));
                if let Some(other) = clash {
                    let span = file.frontend[i].bind.span();
                    return self.err(
                        span,
                        "frontend.bind",
                        format!("{addr} is already bound by frontend \"{}\"", other.name),
                    );
                }
            }
        }

        let socket = file.admin.as_ref().and_then(|a| a.socket.as_ref());
        if let Some(s) = socket.filter(|s| s.get_ref().is_empty()) {
            return self.err(s.span(), "admin.socket", "is empty: give a path");
        }
        let file_admin = file.admin.as_ref();
        let listen = match file_admin.and_then(|a| a.listen.as_ref()) {
            Some(l) => Some(self.resolve(l, "admin.listen")?),
            None => None,
        };
        if let Some(addr) = listen.filter(|a| a.port() != 0) {
            if let Some(fe) = frontends.iter().find(|f| f.binds.contains(&addr)) {
                let span = file_admin.and_then(|a| a.listen.as_ref()).map(|l| l.span());
                return self.err(
                    span.unwrap_or(0..0),
                    "admin.listen",
                    format!("{addr} is already bound by frontend \"{}\"", fe.name),
                );
            }
        }
        let stats_interval = self.duration(
            file_admin.and_then(|a| a.stats_interval.as_ref()),
            "admin.stats_interval",
            default::STATS_INTERVAL,
        )?;
        if let Some(v) = file_admin.and_then(|a| a.stats_interval.as_ref()) {
            if stats_interval < default::STATS_INTERVAL_MIN
                || stats_interval > default::STATS_INTERVAL_MAX
            {
                return self.err(
                    v.span(),
                    "admin.stats_interval",
                    "must be between 100ms and 1m",
                );
            }
        }
        let admin = Admin {
            socket: socket.map(|s| PathBuf::from(s.get_ref())),
            listen,
            stats_interval,
        };
        let log = self.log(file.log.as_ref())?;
        Ok(Config {
            source: self.source.to_path_buf(),
            global,
            frontends,
            backends,
            admin,
            log,
        })
    }

    fn log(&self, file: Option<&file::FileLog>) -> Result<Log, ConfigError> {
        let Some(file) = file else {
            return Ok(Log {
                ring: default::LOG_RING,
                ..Log::default()
            });
        };
        let access = match &file.access {
            None => None,
            Some(a) if a.get_ref().is_empty() => {
                return self.err(
                    a.span(),
                    "log.access",
                    "is empty: give \"stdout\" or a file path",
                )
            }
            Some(a) if a.get_ref() == "stdout" => Some(LogSink::Stdout),
            Some(a) => Some(LogSink::File(PathBuf::from(a.get_ref()))),
        };
        let format = self.word(
            file.format.as_ref(),
            "log.format",
            "log format",
            &[("haproxy", LogFormat::Haproxy), ("json", LogFormat::Json)],
            LogFormat::Haproxy,
        )?;
        let ring = self.int_in(
            file.ring.as_ref(),
            "log.ring",
            (16, 1 << 20),
            default::LOG_RING as i64,
        )?;
        Ok(Log {
            access,
            format,
            ring: ring as usize,
        })
    }

    fn shards(&self, value: Option<&Spanned<toml::Value>>) -> Result<Shards, ConfigError> {
        let Some(v) = value else {
            return Ok(Shards::Auto);
        };
        match v.get_ref() {
            toml::Value::String(s) if s == "auto" => Ok(Shards::Auto),
            toml::Value::Integer(n) if (1..=1024).contains(n) => Ok(Shards::Count(
                NonZeroUsize::new(*n as usize).expect("checked above"),
            )),
            other => self.err(
                v.span(),
                "global.shards",
                format!("{other} is neither \"auto\" nor a number in 1..=1024"),
            ),
        }
    }

    fn defaults(&self, d: &FileDefaults) -> Result<Defaults, ConfigError> {
        Ok(Defaults {
            timeout_connect: self.duration(
                d.timeout_connect.as_ref(),
                "defaults.timeout_connect",
                default::TIMEOUT_CONNECT,
            )?,
            timeout_queue: match &d.timeout_queue {
                None => None,
                Some(v) => {
                    Some(self.duration(Some(v), "defaults.timeout_queue", Duration::ZERO)?)
                }
            },
            timeout_client: self.duration(
                d.timeout_client.as_ref(),
                "defaults.timeout_client",
                default::TIMEOUT_CLIENT,
            )?,
            timeout_server: self.duration(
                d.timeout_server.as_ref(),
                "defaults.timeout_server",
                default::TIMEOUT_SERVER,
            )?,
            timeout_tunnel: self.duration(
                d.timeout_tunnel.as_ref(),
                "defaults.timeout_tunnel",
                default::TIMEOUT_TUNNEL,
            )?,
            timeout_client_fin: self.duration(
                d.timeout_client_fin.as_ref(),
                "defaults.timeout_client_fin",
                default::TIMEOUT_CLIENT_FIN,
            )?,
            timeout_server_fin: self.duration(
                d.timeout_server_fin.as_ref(),
                "defaults.timeout_server_fin",
                default::TIMEOUT_SERVER_FIN,
            )?,
            retries: self.retries(d.retries.as_ref(), "defaults.retries", default::RETRIES)?,
            splice: d.splice.unwrap_or(true),
            timeout_client_handshake: self.duration(
                d.timeout_client_handshake.as_ref(),
                "defaults.timeout_client_handshake",
                default::TIMEOUT_CLIENT_HANDSHAKE,
            )?,
            http: self.http_settings(
                "defaults",
                HttpKeys {
                    timeout_http_request: d.timeout_http_request.as_ref(),
                    timeout_http_keep_alive: d.timeout_http_keep_alive.as_ref(),
                    max_keep_alive_requests: d.max_keep_alive_requests.as_ref(),
                    max_header_bytes: d.max_header_bytes.as_ref(),
                    max_headers: d.max_headers.as_ref(),
                    max_request_line: d.max_request_line.as_ref(),
                },
                &HttpDefaults::BUILT_IN,
            )?,
            keep_alive: self.keep_alive(
                d.keep_alive.as_ref(),
                "defaults.keep_alive",
                KeepAlive::KeepAlive,
            )?,
            pretend_keep_alive: d.pretend_keep_alive.unwrap_or(false),
            http_backend: self.http_backend(
                "defaults",
                PoolKeys {
                    http_reuse: d.http_reuse.as_ref(),
                    pool_max_idle: d.pool_max_idle.as_ref(),
                    pool_idle_timeout: d.pool_idle_timeout.as_ref(),
                    pool_max_reuse: d.pool_max_reuse.as_ref(),
                    retry_on: d.retry_on.as_ref(),
                    keep_alive: d.keep_alive.as_ref(),
                    pretend_keep_alive: d.pretend_keep_alive,
                    prefer_last_server: d.prefer_last_server,
                },
                &HttpBackend::built_in(),
            )?,
        })
    }

    fn frontend(
        &self,
        f: &FileFrontend,
        d: &Defaults,
        backends: &[Backend],
    ) -> Result<Frontend, ConfigError> {
        self.name(&f.name, "frontend.name")?;
        let mode = self.mode(f.mode.as_ref(), "frontend.mode")?;
        if f.bind.get_ref().is_empty() {
            return self.err(f.bind.span(), "frontend.bind", "needs at least one address");
        }
        let mut binds = Vec::new();
        for b in f.bind.get_ref() {
            let addr = self.resolve(b, "frontend.bind")?;
            if addr.port() != 0 && binds.contains(&addr) {
                return self.err(b.span(), "frontend.bind", format!("{addr} is listed twice"));
            }
            binds.push(addr);
        }
        let routes = self.routes(f, mode, backends)?;
        let backend = match &f.backend {
            Some(name) => Some(self.backend_ref(name, "frontend.backend", mode, backends)?),
            None if !routes.is_empty() => None,
            None => {
                return self.err(
                    f.name.span(),
                    "frontend.backend",
                    format!("frontend \"{}\" names no backend", f.name.get_ref()),
                )
            }
        };
        let h = self.http_settings(
            "frontend",
            HttpKeys {
                timeout_http_request: f.timeout_http_request.as_ref(),
                timeout_http_keep_alive: f.timeout_http_keep_alive.as_ref(),
                max_keep_alive_requests: f.max_keep_alive_requests.as_ref(),
                max_header_bytes: f.max_header_bytes.as_ref(),
                max_headers: f.max_headers.as_ref(),
                max_request_line: f.max_request_line.as_ref(),
            },
            &d.http,
        )?;
        let http = HttpFrontend {
            timeout_http_request: h.timeout_http_request,
            timeout_http_keep_alive: h.timeout_http_keep_alive,
            max_keep_alive_requests: h.max_keep_alive_requests,
            max_header_bytes: h.max_header_bytes,
            max_headers: h.max_headers,
            max_request_line: h.max_request_line,
            routes,
            forward_for: self.forward_for(f, mode)?,
            keep_alive: self.keep_alive(
                f.keep_alive.as_ref(),
                "frontend.keep_alive",
                d.keep_alive,
            )?,
            pretend_keep_alive: f.pretend_keep_alive.unwrap_or(d.pretend_keep_alive),
        };
        if mode != Mode::Http {
            if let Some(v) = &f.keep_alive {
                return self.err(
                    v.span(),
                    "frontend.keep_alive",
                    "needs mode = \"http\" on the frontend",
                );
            }
            if f.pretend_keep_alive.is_some() {
                return self.err(
                    f.name.span(),
                    "frontend.pretend_keep_alive",
                    "needs mode = \"http\" on the frontend",
                );
            }
        }
        Ok(Frontend {
            name: f.name.get_ref().clone(),
            binds,
            mode,
            backend,
            timeout_client: self.duration(
                f.timeout_client.as_ref(),
                "frontend.timeout_client",
                d.timeout_client,
            )?,
            timeout_client_fin: self.duration(
                f.timeout_client_fin.as_ref(),
                "frontend.timeout_client_fin",
                d.timeout_client_fin,
            )?,
            splice: f.splice.unwrap_or(d.splice),
            http,
            tls: self.frontend_tls(f.tls.as_ref(), mode)?,
            timeout_client_handshake: self.duration(
                f.timeout_client_handshake.as_ref(),
                "frontend.timeout_client_handshake",
                d.timeout_client_handshake,
            )?,
            maxconn: self.limit(f.maxconn.as_ref(), "frontend.maxconn")?,
        })
    }

    fn backend(
        &self,
        b: &FileBackend,
        d: &Defaults,
        hosts_file: Option<&Path>,
    ) -> Result<Backend, ConfigError> {
        self.name(&b.name, "backend.name")?;
        let balance = self.balance(b.balance.as_ref())?;
        let hash_type = self.hash_type(b.hash_type.as_ref(), &balance)?;
        let mode = self.mode(b.mode.as_ref(), "backend.mode")?;
        let backend_health = health::HealthKeys::of_backend(b);
        let backend_tls = self.server_tls(None, b.tls.as_ref(), mode)?;
        let mut servers: Vec<Server> = Vec::with_capacity(b.server.len());
        for s in &b.server {
            if servers.iter().any(|x| x.name == *s.name.get_ref()) {
                return self.err(
                    s.name.span(),
                    "backend.server.name",
                    format!(
                        "duplicate server name \"{}\" in backend \"{}\"",
                        s.name.get_ref(),
                        b.name.get_ref()
                    ),
                );
            }
            let template = servers.len();
            let tls = match &s.tls {
                Some(_) => self.server_tls(s.tls.as_ref(), None, mode)?,
                None => backend_tls.clone(),
            };
            let check_tls = s.check_tls.or(b.check_tls).unwrap_or(false);
            if check_tls && tls.is_none() {
                return self.err(
                    s.name.span(),
                    "backend.server.check_tls",
                    format!(
                        "server \"{}\" has no tls to check over (set tls = {{ ... }} on it or its backend)",
                        s.name.get_ref()
                    ),
                );
            }
            for mut server in self.servers(s, &backend_health, mode, hosts_file, template)? {
                server.tls = tls.clone();
                server.check_tls = check_tls;
                if servers.iter().any(|x| x.name == server.name) {
                    return self.err(
                        s.name.span(),
                        "backend.server.name",
                        format!(
                            "duplicate server name \"{}\" in backend \"{}\"",
                            server.name,
                            b.name.get_ref()
                        ),
                    );
                }
                server.cookie = self.server_cookie(s.cookie.as_ref(), &server.name, &servers)?;
                servers.push(server);
            }
        }
        let keys = PoolKeys {
            http_reuse: b.http_reuse.as_ref(),
            pool_max_idle: b.pool_max_idle.as_ref(),
            pool_idle_timeout: b.pool_idle_timeout.as_ref(),
            pool_max_reuse: b.pool_max_reuse.as_ref(),
            retry_on: b.retry_on.as_ref(),
            keep_alive: b.keep_alive.as_ref(),
            pretend_keep_alive: b.pretend_keep_alive,
            prefer_last_server: b.prefer_last_server,
        };
        if mode != Mode::Http {
            if let Some((span, key)) = keys.first_set(b.name.span()) {
                return self.err(
                    span,
                    &format!("backend.{key}"),
                    "needs mode = \"http\" on the backend",
                );
            }
        }
        if mode != Mode::Http
            && matches!(balance.needs_key(), Some(KeyKind::Uri | KeyKind::Header(_)))
        {
            if let Some(v) = &b.balance {
                return self.err(
                    v.span(),
                    "backend.balance",
                    format!("\"{balance}\" needs mode = \"http\" on the backend"),
                );
            }
        }
        let http = self.http_backend("backend", keys, &d.http_backend)?;
        let timeout_connect = self.duration(
            b.timeout_connect.as_ref(),
            "backend.timeout_connect",
            d.timeout_connect,
        )?;
        let maxqueue = self.limit(b.maxqueue.as_ref(), "backend.maxqueue")?;
        let sni_from_host = servers
            .iter()
            .any(|s| s.tls.as_ref().is_some_and(|t| t.sni == Sni::FromHost));
        Ok(Backend {
            name: b.name.get_ref().clone(),
            mode,
            http,
            balance,
            hash_type,
            servers,
            timeout_queue: self.duration(
                b.timeout_queue.as_ref(),
                "backend.timeout_queue",
                d.timeout_queue.unwrap_or(timeout_connect),
            )?,
            maxqueue,
            timeout_connect,
            timeout_server: self.duration(
                b.timeout_server.as_ref(),
                "backend.timeout_server",
                d.timeout_server,
            )?,
            timeout_server_fin: self.duration(
                b.timeout_server_fin.as_ref(),
                "backend.timeout_server_fin",
                d.timeout_server_fin,
            )?,
            timeout_tunnel: self.duration(
                b.timeout_tunnel.as_ref(),
                "backend.timeout_tunnel",
                d.timeout_tunnel,
            )?,
            retries: self.retries(b.retries.as_ref(), "backend.retries", d.retries)?,
            health_check: self.health_check(b.health_check.as_ref())?,
            cookie: self.cookie(b.cookie.as_ref(), mode)?,
            sni_from_host,
        })
    }

    /// `balance`: HAProxy's names; `hdr(<name>)` takes a header name (an HTTP token),
    /// stored lower-cased.
    fn balance(&self, value: Option<&Spanned<String>>) -> Result<Balance, ConfigError> {
        const KEY: &str = "backend.balance";
        let Some(v) = value else {
            return Ok(Balance::RoundRobin);
        };
        let text = v.get_ref().as_str();
        match text {
            "roundrobin" => return Ok(Balance::RoundRobin),
            "leastconn" => return Ok(Balance::LeastConn),
            "random" => return Ok(Balance::Random),
            "source" => return Ok(Balance::Source),
            "uri" => return Ok(Balance::Uri),
            _ => {}
        }
        let Some(name) = text.strip_prefix("hdr(").and_then(|t| t.strip_suffix(')')) else {
            return self.err(
                v.span(),
                KEY,
                format!(
                    "unknown algorithm \"{text}\" (expected \"roundrobin\", \"leastconn\", \"random\", \"source\", \"uri\" or \"hdr(<name>)\")"
                ),
            );
        };
        if name.is_empty() {
            return self.err(
                v.span(),
                KEY,
                "hdr() needs a header name, e.g. \"hdr(x-user)\"",
            );
        }
        if !name.bytes().all(is_token_byte) {
            return self.err(
                v.span(),
                KEY,
                format!(
                    "\"{name}\" is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
                ),
            );
        }
        Ok(Balance::Header {
            name: name.to_ascii_lowercase().into(),
        })
    }

    /// `hash_type`: only with a hashing `balance` (elsewhere it would silently do nothing).
    fn hash_type(
        &self,
        value: Option<&Spanned<String>>,
        balance: &Balance,
    ) -> Result<HashType, ConfigError> {
        const KEY: &str = "backend.hash_type";
        let Some(v) = value else {
            return Ok(HashType::MapBased);
        };
        let hash_type = self.word(
            Some(v),
            KEY,
            "hash type",
            &[
                ("map-based", HashType::MapBased),
                ("consistent", HashType::Consistent),
            ],
            HashType::MapBased,
        )?;
        if balance.needs_key().is_none() {
            return self.err(
                v.span(),
                KEY,
                format!(
                    "only applies to balance = \"source\", \"uri\" or \"hdr(<name>)\" (this backend's balance is \"{balance}\")"
                ),
            );
        }
        Ok(hash_type)
    }

    /// The servers one `[[backend.server]]` stands for: itself, or with `resolve`, its
    /// `slots` (named `name1`..`nameN` when more than one), filled from the name's
    /// addresses at load (`upstream::discovery`).
    fn servers(
        &self,
        s: &FileServer,
        backend_health: &health::HealthKeys<'_>,
        mode: Mode,
        hosts_file: Option<&Path>,
        template: usize,
    ) -> Result<Vec<Server>, ConfigError> {
        let Some(every) = &s.resolve else {
            if let Some(n) = &s.slots {
                return self.err(
                    n.span(),
                    "backend.server.slots",
                    "needs resolve = \"<interval>\"",
                );
            }
            return Ok(vec![self.server(s, backend_health, mode, None)?]);
        };
        let every = self.duration(Some(every), "backend.server.resolve", Duration::ZERO)?;
        let slots = self.int_in(s.slots.as_ref(), "backend.server.slots", (1, 1024), 1)? as usize;
        let text = s.address.get_ref();
        let Some((host, port)) = text.rsplit_once(':') else {
            return self.err(
                s.address.span(),
                "backend.server.address",
                format!("\"{text}\" has no port; write \"host:port\""),
            );
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => {
                return self.err(
                    s.address.span(),
                    "backend.server.address",
                    format!("\"{port}\" is not a port (1..=65535)"),
                )
            }
        };
        let resolved = match crate::upstream::discovery::resolve(host, port, hosts_file) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ringproxy: warning: {}:{}: backend.server.address: \"{host}\" does not resolve now ({e}); its servers wait for it", self.source.display(), self.line_of(s.address.span().start));
                Vec::new()
            }
        };
        let placeholder = SocketAddr::from(([0, 0, 0, 0], port));
        (0..slots)
            .map(|i| {
                let address = resolved.get(i).copied();
                let mut server = self.server(
                    s,
                    backend_health,
                    mode,
                    Some(address.unwrap_or(placeholder)),
                )?;
                if slots > 1 {
                    server.name = format!("{}{}", server.name, i + 1);
                }
                server.has_address = address.is_some();
                server.discovery = Some(Discovery {
                    host: host.to_string(),
                    port,
                    every,
                    template,
                });
                Ok(server)
            })
            .collect()
    }

    fn server(
        &self,
        s: &FileServer,
        backend_health: &health::HealthKeys<'_>,
        mode: Mode,
        resolved: Option<SocketAddr>,
    ) -> Result<Server, ConfigError> {
        self.name(&s.name, "backend.server.name")?;
        let address = match resolved {
            Some(a) => a,
            None => self.resolve(&s.address, "backend.server.address")?,
        };
        if address.port() == 0 {
            return self.err(
                s.address.span(),
                "backend.server.address",
                "port 0 cannot be connected to",
            );
        }
        let weight = self.int_in(
            s.weight.as_ref(),
            "backend.server.weight",
            (0, default::WEIGHT_MAX),
            default::WEIGHT.into(),
        )? as u32;
        let maxconn = self.limit(s.maxconn.as_ref(), "backend.server.maxconn")?;
        let keys = health::HealthKeys::of_server(s, backend_health);
        Ok(Server {
            name: s.name.get_ref().clone(),
            address,
            weight,
            maxconn,
            backup: s.backup.unwrap_or(false),
            disabled: s.disabled.unwrap_or(false),
            start_weight: None,
            start_admin: None,
            cookie: String::new(),
            discovery: None,
            has_address: true,
            health: self.server_health(s, &keys, mode, address)?,
            tls: None,
            check_tls: false,
        })
    }

    fn name(&self, name: &Spanned<String>, key: &str) -> Result<(), ConfigError> {
        let n = name.get_ref();
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if ok {
            Ok(())
        } else {
            self.err(name.span(), key, format!(
                "\"{n}\" is not a valid name (1 to 64 characters of letters, digits, '-', '_', '.')"))
        }
    }

    /// Resolves `host:port` (names resolved once, at load).
    fn resolve(&self, value: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        let text = value.get_ref();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr);
        }
        if !text.contains(':') {
            return self.err(
                value.span(),
                key,
                format!("\"{text}\" has no port; write \"host:port\""),
            );
        }
        match text.to_socket_addrs() {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => Ok(a),
                None => self.err(
                    value.span(),
                    key,
                    format!("\"{text}\" resolves to no address"),
                ),
            },
            Err(e) => self.err(
                value.span(),
                key,
                format!("\"{text}\" is not a valid address: {e}"),
            ),
        }
    }
}

/// `[defaults]` after validation.
struct Defaults {
    timeout_connect: Duration,
    /// `None`: each backend's `timeout_connect`.
    timeout_queue: Option<Duration>,
    timeout_client: Duration,
    timeout_server: Duration,
    timeout_tunnel: Duration,
    timeout_client_fin: Duration,
    timeout_server_fin: Duration,
    retries: u32,
    splice: bool,
    timeout_client_handshake: Duration,
    http: HttpDefaults,
    keep_alive: KeepAlive,
    pretend_keep_alive: bool,
    http_backend: HttpBackend,
}

impl HttpBackend {
    /// The built-in backend HTTP settings.
    fn built_in() -> HttpBackend {
        HttpBackend {
            reuse: HttpReuse::Safe,
            pool_max_idle: default::POOL_MAX_IDLE,
            pool_idle_timeout: default::POOL_IDLE_TIMEOUT,
            pool_max_reuse: 0,
            retry_on: RetryOn::conn_failure_only(),
            keep_alive: KeepAlive::KeepAlive,
            pretend_keep_alive: false,
            prefer_last_server: false,
        }
    }
}

/// The pool, reuse and retry keys as written in one section.
struct PoolKeys<'a> {
    http_reuse: Option<&'a Spanned<String>>,
    pool_max_idle: Option<&'a Spanned<i64>>,
    pool_idle_timeout: Option<&'a Spanned<String>>,
    pool_max_reuse: Option<&'a Spanned<i64>>,
    retry_on: Option<&'a Spanned<Vec<Spanned<toml::Value>>>>,
    keep_alive: Option<&'a Spanned<String>>,
    pretend_keep_alive: Option<bool>,
    prefer_last_server: Option<bool>,
}

impl PoolKeys<'_> {
    /// The span and name of the first key set; booleans carry no span of their own and
    /// are reported at `section`.
    fn first_set(
        &self,
        section: std::ops::Range<usize>,
    ) -> Option<(std::ops::Range<usize>, &'static str)> {
        let spans = [
            (self.http_reuse.map(|v| v.span()), "http_reuse"),
            (self.pool_max_idle.map(|v| v.span()), "pool_max_idle"),
            (
                self.pool_idle_timeout.map(|v| v.span()),
                "pool_idle_timeout",
            ),
            (self.pool_max_reuse.map(|v| v.span()), "pool_max_reuse"),
            (self.retry_on.map(|v| v.span()), "retry_on"),
            (self.keep_alive.map(|v| v.span()), "keep_alive"),
            (
                self.pretend_keep_alive.map(|_| section.clone()),
                "pretend_keep_alive",
            ),
            (
                self.prefer_last_server.map(|_| section.clone()),
                "prefer_last_server",
            ),
        ];
        spans
            .into_iter()
            .find_map(|(span, key)| span.map(|s| (s, key)))
    }
}

/// The HTTP settings a frontend inherits.
struct HttpDefaults {
    timeout_http_request: Duration,
    timeout_http_keep_alive: Duration,
    max_keep_alive_requests: u32,
    max_header_bytes: usize,
    max_headers: usize,
    max_request_line: usize,
}

impl HttpDefaults {
    const BUILT_IN: HttpDefaults = HttpDefaults {
        timeout_http_request: default::TIMEOUT_HTTP_REQUEST,
        timeout_http_keep_alive: default::TIMEOUT_HTTP_KEEP_ALIVE,
        max_keep_alive_requests: default::MAX_KEEP_ALIVE_REQUESTS,
        max_header_bytes: default::MAX_HEADER_BYTES,
        max_headers: default::MAX_HEADERS,
        max_request_line: default::MAX_REQUEST_LINE,
    };
}

/// The HTTP keys as written in one section.
struct HttpKeys<'a> {
    timeout_http_request: Option<&'a Spanned<String>>,
    timeout_http_keep_alive: Option<&'a Spanned<String>>,
    max_keep_alive_requests: Option<&'a Spanned<i64>>,
    max_header_bytes: Option<&'a Spanned<i64>>,
    max_headers: Option<&'a Spanned<i64>>,
    max_request_line: Option<&'a Spanned<i64>>,
}

/// A line without its `#` comment (good enough for locating keys: `#` inside a quoted
/// string only shortens what is shown, never the line number), trimmed.
fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("").trim()
}

/// A byte of an HTTP token (RFC 9110 `tchar`), what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
