//! The configuration file as written: TOML mapped onto `File*` structs.
//!
//! These structs mirror the file one to one and keep the byte span of every value that a
//! later validation rule may refuse, so that the error can name the line. Nothing here is
//! interpreted: `super::validate` turns them into the typed [`super::Config`]. Unknown keys
//! are refused by serde (`deny_unknown_fields`).

use serde::Deserialize;
use toml::Spanned;

/// Top level of a configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub global: Option<FileGlobal>,
    pub defaults: Option<FileDefaults>,
    #[serde(default)]
    pub frontend: Vec<FileFrontend>,
    #[serde(default)]
    pub backend: Vec<FileBackend>,
    pub admin: Option<FileAdmin>,
    pub log: Option<FileLog>,
}

/// `[admin]`: the runtime API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// Path of the Unix socket of the text runtime API.
    pub socket: Option<Spanned<String>>,
    /// `host:port` of the HTTP statistics listener (`/metrics`, `/stats.json`, `/`).
    pub listen: Option<Spanned<String>>,
    /// How often the shards publish their statistics and the control thread sums them.
    pub stats_interval: Option<Spanned<String>>,
}

/// `[log]`: the access log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    /// `"stdout"` or a file path.
    pub access: Option<Spanned<String>>,
    /// `"haproxy"` or `"json"`.
    pub format: Option<Spanned<String>>,
    /// Records each shard may have waiting for the logger thread.
    pub ring: Option<Spanned<i64>>,
}

/// `[global]`: process-wide settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGlobal {
    /// `"auto"` or a number of shards.
    pub shards: Option<Spanned<toml::Value>>,
    pub grace: Option<Spanned<String>>,
    /// Pin each shard to one CPU (default true). Off is for shared test machines.
    pub pin: Option<bool>,
    /// A hosts(5) file consulted before the system resolver (DNS discovery).
    pub hosts_file: Option<Spanned<String>>,
    /// Client sessions open at once, process-wide; 0 = unlimited.
    pub maxconn: Option<Spanned<i64>>,
}

/// `[defaults]`: every timeout and retry setting, inherited by frontends and backends.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDefaults {
    pub timeout_connect: Option<Spanned<String>>,
    pub timeout_client: Option<Spanned<String>>,
    pub timeout_server: Option<Spanned<String>>,
    pub timeout_tunnel: Option<Spanned<String>>,
    pub timeout_client_fin: Option<Spanned<String>>,
    pub timeout_server_fin: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub splice: Option<bool>,
    pub timeout_queue: Option<Spanned<String>>,
    pub timeout_http_request: Option<Spanned<String>>,
    pub timeout_http_keep_alive: Option<Spanned<String>>,
    pub max_keep_alive_requests: Option<Spanned<i64>>,
    pub max_header_bytes: Option<Spanned<i64>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_request_line: Option<Spanned<i64>>,
    pub keep_alive: Option<Spanned<String>>,
    pub pretend_keep_alive: Option<bool>,
    pub http_reuse: Option<Spanned<String>>,
    pub pool_max_idle: Option<Spanned<i64>>,
    pub pool_idle_timeout: Option<Spanned<String>>,
    pub pool_max_reuse: Option<Spanned<i64>>,
    pub retry_on: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    pub prefer_last_server: Option<bool>,
    pub timeout_client_handshake: Option<Spanned<String>>,
}

/// `[[frontend]]`: where clients connect. Only client-side settings may be overridden here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFrontend {
    pub name: Spanned<String>,
    pub bind: Spanned<Vec<Spanned<String>>>,
    pub mode: Option<Spanned<String>>,
    pub backend: Option<Spanned<String>>,
    pub timeout_client: Option<Spanned<String>>,
    pub timeout_client_fin: Option<Spanned<String>>,
    pub splice: Option<bool>,
    pub timeout_http_request: Option<Spanned<String>>,
    pub timeout_http_keep_alive: Option<Spanned<String>>,
    pub max_keep_alive_requests: Option<Spanned<i64>>,
    pub max_header_bytes: Option<Spanned<i64>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_request_line: Option<Spanned<i64>>,
    pub keep_alive: Option<Spanned<String>>,
    pub pretend_keep_alive: Option<bool>,
    /// Client sessions of this frontend open at once, process-wide; 0 = unlimited.
    pub maxconn: Option<Spanned<i64>>,
    /// `[[frontend.route]]`, tried in order (mode `http`).
    #[serde(default)]
    pub route: Vec<FileRoute>,
    pub forward_for: Option<Spanned<FileForwardFor>>,
    /// A TLS handshake must complete within this time of the accept.
    pub timeout_client_handshake: Option<Spanned<String>>,
    /// `[frontend.tls]`: TLS termination.
    pub tls: Option<Spanned<FileFrontendTls>>,
}

/// `[frontend.tls]`: the certificates and protocol settings of TLS termination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFrontendTls {
    /// The first one is the default (no SNI, or a name no certificate has).
    pub certificates: Spanned<Vec<Spanned<FileCertificate>>>,
    /// `"1.2"` or `"1.3"`.
    pub min_version: Option<Spanned<String>>,
    pub alpn: Option<Spanned<Vec<Spanned<String>>>>,
    /// TLS 1.2 session ids remembered per shard; 0 = none.
    pub session_cache: Option<Spanned<i64>>,
    pub tickets: Option<bool>,
}

/// `{ cert = "a.pem", key = "a.key" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `tls = { ... }` of a backend or a server: TLS to the servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServerTls {
    pub enabled: Option<bool>,
    pub ca: Option<Spanned<String>>,
    /// `"required"` or `"none"`.
    pub verify: Option<Spanned<String>>,
    pub sni: Option<Spanned<String>>,
    pub sni_from_host: Option<bool>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    pub alpn: Option<Spanned<Vec<Spanned<String>>>>,
    pub resumption: Option<bool>,
}

/// `[[frontend.route]]`: requests matching `host` and `path_prefix` go to `backend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub backend: Spanned<String>,
}

/// `forward_for = { enabled = true, except = ["127.0.0.0/8"] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForwardFor {
    pub enabled: Option<bool>,
    #[serde(default)]
    pub except: Vec<Spanned<String>>,
}

/// `[[backend]]`: a set of servers. Only server-side settings may be overridden here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBackend {
    pub name: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub balance: Option<Spanned<String>>,
    /// `"map-based"` or `"consistent"`; only with `balance` `source`, `uri` or `hdr(...)`.
    pub hash_type: Option<Spanned<String>>,
    #[serde(default)]
    pub server: Vec<FileServer>,
    pub timeout_connect: Option<Spanned<String>>,
    pub timeout_server: Option<Spanned<String>>,
    pub timeout_server_fin: Option<Spanned<String>>,
    pub timeout_tunnel: Option<Spanned<String>>,
    pub timeout_queue: Option<Spanned<String>>,
    /// Requests waiting for a server slot (`maxconn`), process-wide; 0 = unbounded.
    pub maxqueue: Option<Spanned<i64>>,
    pub retries: Option<Spanned<i64>>,
    pub keep_alive: Option<Spanned<String>>,
    pub pretend_keep_alive: Option<bool>,
    pub http_reuse: Option<Spanned<String>>,
    pub pool_max_idle: Option<Spanned<i64>>,
    pub pool_idle_timeout: Option<Spanned<String>>,
    pub pool_max_reuse: Option<Spanned<i64>>,
    pub retry_on: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    pub prefer_last_server: Option<bool>,
    pub health_check: Option<Spanned<FileHealthCheck>>,
    pub cookie: Option<Spanned<FileCookie>>,
    // Health keys of its servers (each server may override them); see `FileServer`.
    pub check: Option<bool>,
    pub on_marked_down: Option<Spanned<String>>,
    pub on_marked_up: Option<Spanned<String>>,
    pub slowstart: Option<Spanned<String>>,
    pub observe: Option<Spanned<String>>,
    pub error_limit: Option<Spanned<i64>>,
    pub on_error: Option<Spanned<String>>,
    /// TLS to its servers (a server's own `tls` replaces it).
    pub tls: Option<Spanned<FileServerTls>>,
    pub check_tls: Option<bool>,
}

/// `[backend.cookie]`: cookie stickiness.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCookie {
    pub name: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub indirect: Option<bool>,
    pub nocache: Option<bool>,
    pub domain: Option<Spanned<String>>,
    pub httponly: Option<bool>,
    pub secure: Option<bool>,
}

/// `[backend.health_check]`: how the backend's checked servers are probed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealthCheck {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub fast_interval: Option<Spanned<String>>,
    pub down_interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<Vec<Spanned<toml::Value>>>>,
}

/// `[[backend.server]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub maxconn: Option<Spanned<i64>>,
    /// Takes traffic only when no primary server is usable.
    pub backup: Option<bool>,
    /// Starts in MAINT (HAProxy's `disabled`).
    pub disabled: Option<bool>,
    /// Its persistence cookie value (`[backend.cookie]`); default: its name.
    pub cookie: Option<Spanned<String>>,
    /// DNS discovery: re-resolve `address` this often and follow it.
    pub resolve: Option<Spanned<String>>,
    /// DNS discovery: how many servers the name may give (`name1`..`nameN`).
    pub slots: Option<Spanned<i64>>,
    /// Where checks go, when not to `address`: an IP or `host:port`.
    pub check_address: Option<Spanned<String>>,
    pub check_port: Option<Spanned<i64>>,
    // Health keys (a backend may set them for all of its servers).
    pub check: Option<bool>,
    pub on_marked_down: Option<Spanned<String>>,
    pub on_marked_up: Option<Spanned<String>>,
    pub slowstart: Option<Spanned<String>>,
    pub observe: Option<Spanned<String>>,
    pub error_limit: Option<Spanned<i64>>,
    pub on_error: Option<Spanned<String>>,
    /// TLS to this server, replacing the backend's `tls` whole.
    pub tls: Option<Spanned<FileServerTls>>,
    pub check_tls: Option<bool>,
}
