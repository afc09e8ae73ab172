//! Health settings: `[backend.health_check]` and the health keys of servers.
//!
//! A backend's keys `check`, `on_marked_down`, `on_marked_up`, `slowstart`, `observe`,
//! `error_limit` and `on_error` are defaults for its servers; a server's own keys win.
//! Validation only: what the values mean at run time is in `upstream::health`.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::file::{FileBackend, FileHealthCheck, FileServer};
use super::{ConfigError, Ctx, Mode};
use crate::upstream::health::{Intervals, OnError};

/// Built-in values (HAProxy's where it has one).
pub mod default {
    use std::time::Duration;
    /// HAProxy's `inter` default.
    pub const INTERVAL: Duration = Duration::from_secs(2);
    pub const RISE: u32 = 2;
    pub const FALL: u32 = 3;
    /// Consecutive errors on live traffic before `on_error` applies (HAProxy's 10).
    pub const ERROR_LIMIT: u32 = 10;
    /// Sanity bound of `rise`, `fall` and `error_limit`.
    pub const COUNT_MAX: i64 = 1000;
    /// Checks more often than this would be load, not health information.
    pub const INTERVAL_MIN: Duration = Duration::from_millis(10);
}

/// `[backend.health_check]` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub intervals: Intervals,
    /// Bound of one whole check (connect, and for http the response head).
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckKind::Tcp,
            intervals: Intervals {
                interval: default::INTERVAL,
                fast_interval: default::INTERVAL,
                down_interval: default::INTERVAL,
            },
            timeout: default::INTERVAL,
            rise: default::RISE,
            fall: default::FALL,
        }
    }
}

/// `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Passes when a connection is established.
    Tcp,
    /// Passes when the response status is expected.
    Http(HttpCheck),
}

/// An http check: the request, built once, and the statuses that pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// `METHOD path HTTP/1.1` with `Host` (HTTP/1.0 without `host`), `Connection: close`.
    pub request: Vec<u8>,
    /// Inclusive ranges; the default is 200-399 (HAProxy's 2xx and 3xx).
    pub expect: Vec<(u16, u16)>,
}

impl HttpCheck {
    pub fn expects(&self, status: u16) -> bool {
        self.expect
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// `on_marked_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMarkedDown {
    /// Established sessions go on (HAProxy's default).
    #[default]
    Nothing,
    /// Every session and tunnel to the server is closed on every shard.
    ShutdownSessions,
}

/// `on_marked_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMarkedUp {
    #[default]
    Nothing,
    /// Sessions on the backend's backup servers are closed when this server comes back.
    ShutdownBackupSessions,
}

/// `observe`: which live traffic errors count (passive checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observe {
    /// Connection failures.
    Layer4,
    /// Connection failures, and 5xx (but 501 and 505), empty, invalid or late responses.
    Layer7,
}

/// A server's health settings after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealth {
    /// Probed by the backend's `health_check`.
    pub check: bool,
    /// Where probes go (`check_address`/`check_port`, else the server's address).
    pub check_addr: SocketAddr,
    /// `check_address` was given: probes go there even when DNS discovery moves the
    /// server (else they follow the server's address, with `check_port` if set).
    pub check_address_set: bool,
    pub on_marked_down: OnMarkedDown,
    pub on_marked_up: OnMarkedUp,
    /// Ramp after coming back; zero: none.
    pub slowstart: Duration,
    pub observe: Option<Observe>,
    pub error_limit: u32,
    pub on_error: OnError,
}

/// The health keys as written on a server or its backend.
pub(super) struct HealthKeys<'a> {
    pub check: Option<bool>,
    pub on_marked_down: Option<&'a Spanned<String>>,
    pub on_marked_up: Option<&'a Spanned<String>>,
    pub slowstart: Option<&'a Spanned<String>>,
    pub observe: Option<&'a Spanned<String>>,
    pub error_limit: Option<&'a Spanned<i64>>,
    pub on_error: Option<&'a Spanned<String>>,
}

impl<'a> HealthKeys<'a> {
    pub fn of_backend(b: &'a FileBackend) -> Self {
        HealthKeys {
            check: b.check,
            on_marked_down: b.on_marked_down.as_ref(),
            on_marked_up: b.on_marked_up.as_ref(),
            slowstart: b.slowstart.as_ref(),
            observe: b.observe.as_ref(),
            error_limit: b.error_limit.as_ref(),
            on_error: b.on_error.as_ref(),
        }
    }

    /// The server's keys, each falling back on the backend's.
    pub fn of_server(s: &'a FileServer, backend: &HealthKeys<'a>) -> Self {
        HealthKeys {
            check: s.check.or(backend.check),
            on_marked_down: s.on_marked_down.as_ref().or(backend.on_marked_down),
            on_marked_up: s.on_marked_up.as_ref().or(backend.on_marked_up),
            slowstart: s.slowstart.as_ref().or(backend.slowstart),
            observe: s.observe.as_ref().or(backend.observe),
            error_limit: s.error_limit.as_ref().or(backend.error_limit),
            on_error: s.on_error.as_ref().or(backend.on_error),
        }
    }
}

impl Ctx<'_> {
    /// `[backend.health_check]`, or the defaults when absent.
    pub(super) fn health_check(
        &self,
        h: Option<&Spanned<FileHealthCheck>>,
    ) -> Result<HealthCheck, ConfigError> {
        let Some(h) = h else {
            return Ok(HealthCheck::default());
        };
        let h = h.get_ref();
        let key = |k: &str| format!("backend.health_check.{k}");
        let interval = self.duration(h.interval.as_ref(), &key("interval"), default::INTERVAL)?;
        let fast_interval =
            self.duration(h.fast_interval.as_ref(), &key("fast_interval"), interval)?;
        let down_interval =
            self.duration(h.down_interval.as_ref(), &key("down_interval"), interval)?;
        for (value, parsed, k) in [
            (&h.interval, interval, "interval"),
            (&h.fast_interval, fast_interval, "fast_interval"),
            (&h.down_interval, down_interval, "down_interval"),
        ] {
            if let Some(v) = value.as_ref().filter(|_| parsed < default::INTERVAL_MIN) {
                return self.err(v.span(), &key(k), "must be at least 10ms");
            }
        }
        let timeout = self.duration(h.timeout.as_ref(), &key("timeout"), interval)?;
        let count = |v: Option<&Spanned<i64>>, k: &str, d: u32| {
            self.int_in(v, &key(k), (1, default::COUNT_MAX), i64::from(d))
                .map(|n| n as u32)
        };
        let rise = count(h.rise.as_ref(), "rise", default::RISE)?;
        let fall = count(h.fall.as_ref(), "fall", default::FALL)?;
        let is_http = self.word(
            h.kind.as_ref(),
            &key("type"),
            "value",
            &[("tcp", false), ("http", true)],
            false,
        )?;
        let kind = if is_http {
            CheckKind::Http(self.http_check(h)?)
        } else {
            let http_only = [
                (h.method.as_ref().map(|v| v.span()), "method"),
                (h.path.as_ref().map(|v| v.span()), "path"),
                (h.host.as_ref().map(|v| v.span()), "host"),
                (h.expect_status.as_ref().map(|v| v.span()), "expect_status"),
            ];
            if let Some((Some(span), k)) = http_only.into_iter().find(|(s, _)| s.is_some()) {
                return self.err(span, &key(k), "needs type = \"http\"");
            }
            CheckKind::Tcp
        };
        Ok(HealthCheck {
            kind,
            intervals: Intervals {
                interval,
                fast_interval,
                down_interval,
            },
            timeout,
            rise,
            fall,
        })
    }

    fn http_check(&self, h: &FileHealthCheck) -> Result<HttpCheck, ConfigError> {
        let key = |k: &str| format!("backend.health_check.{k}");
        let method = match &h.method {
            None => "GET",
            Some(m) => {
                let ok = !m.get_ref().is_empty()
                    && m.get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b == b'-');
                if !ok {
                    return self.err(
                        m.span(),
                        &key("method"),
                        format!("\"{}\" is not a method (e.g. \"GET\")", m.get_ref()),
                    );
                }
                m.get_ref().as_str()
            }
        };
        let path = match &h.path {
            None => "/",
            Some(p) => {
                let t = p.get_ref();
                if !t.starts_with('/') || t.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return self.err(
                        p.span(),
                        &key("path"),
                        format!("\"{t}\" must start with '/' and hold no spaces or controls"),
                    );
                }
                t.as_str()
            }
        };
        // HTTP/1.1 needs a Host field: without `host`, the check speaks HTTP/1.0 (as
        // HAProxy's default check does).
        let version = if h.host.is_some() { "1.1" } else { "1.0" };
        let mut request = format!("{method} {path} HTTP/{version}\r\n");
        if let Some(host) = &h.host {
            let t = host.get_ref();
            if t.is_empty() || t.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return self.err(
                    host.span(),
                    &key("host"),
                    format!("\"{t}\" is not a host name"),
                );
            }
            request.push_str(&format!("Host: {t}\r\n"));
        }
        request.push_str("User-Agent: ringproxy-check\r\nConnection: close\r\n\r\n");
        let expect = match &h.expect_status {
            None => vec![(200, 399)],
            Some(list) if list.get_ref().is_empty() => {
                return self.err(list.span(), &key("expect_status"), "lists no status")
            }
            Some(list) => {
                let mut ranges = Vec::with_capacity(list.get_ref().len());
                for v in list.get_ref() {
                    ranges.push(self.status_range(v, &key("expect_status"))?);
                }
                ranges
            }
        };
        Ok(HttpCheck {
            request: request.into_bytes(),
            expect,
        })
    }

    /// `200` or `"200-399"`.
    fn status_range(&self, v: &Spanned<toml::Value>, key: &str) -> Result<(u16, u16), ConfigError> {
        let status = |n: i64| (100..=599).contains(&n).then_some(n as u16);
        let range = match v.get_ref() {
            toml::Value::Integer(n) => status(*n).map(|s| (s, s)),
            toml::Value::String(t) => match t.split_once('-') {
                Some((lo, hi)) => match (lo.trim().parse::<i64>(), hi.trim().parse::<i64>()) {
                    (Ok(lo), Ok(hi)) => status(lo).zip(status(hi)).filter(|(l, h)| l <= h),
                    _ => None,
                },
                None => t
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(status)
                    .map(|s| (s, s)),
            },
            _ => None,
        };
        match range {
            Some(r) => Ok(r),
            None => self.err(
                v.span(),
                key,
                format!(
                    "{} is not a status (100..=599) or a range like \"200-399\"",
                    v.get_ref()
                ),
            ),
        }
    }

    /// A server's health keys (`keys` already fall back on its backend's).
    pub(super) fn server_health(
        &self,
        s: &FileServer,
        keys: &HealthKeys<'_>,
        mode: Mode,
        address: SocketAddr,
    ) -> Result<ServerHealth, ConfigError> {
        let on_marked_down = self.word(
            keys.on_marked_down,
            "backend.server.on_marked_down",
            "value",
            &[
                ("shutdown-sessions", OnMarkedDown::ShutdownSessions),
                ("none", OnMarkedDown::Nothing),
            ],
            OnMarkedDown::Nothing,
        )?;
        let on_marked_up = self.word(
            keys.on_marked_up,
            "backend.server.on_marked_up",
            "value",
            &[
                (
                    "shutdown-backup-sessions",
                    OnMarkedUp::ShutdownBackupSessions,
                ),
                ("none", OnMarkedUp::Nothing),
            ],
            OnMarkedUp::Nothing,
        )?;
        let observe = self.word(
            keys.observe,
            "backend.server.observe",
            "value",
            &[
                ("layer4", Some(Observe::Layer4)),
                ("layer7", Some(Observe::Layer7)),
                ("none", None),
            ],
            None,
        )?;
        if let (Some(Observe::Layer7), Some(v)) = (observe, keys.observe) {
            if mode != Mode::Http {
                return self.err(
                    v.span(),
                    "backend.server.observe",
                    "layer7 needs mode = \"http\" on the backend",
                );
            }
        }
        let on_error = self.word(
            keys.on_error,
            "backend.server.on_error",
            "value",
            &[
                ("fastinter", OnError::FastInter),
                ("fail-check", OnError::FailCheck),
                ("sudden-death", OnError::SuddenDeath),
                ("mark-down", OnError::MarkDown),
            ],
            OnError::FailCheck,
        )?;
        let error_limit = self.int_in(
            keys.error_limit,
            "backend.server.error_limit",
            (1, default::COUNT_MAX),
            i64::from(default::ERROR_LIMIT),
        )? as u32;
        let slowstart =
            self.duration(keys.slowstart, "backend.server.slowstart", Duration::ZERO)?;
        let mut check_addr = address;
        if let Some(a) = &s.check_address {
            check_addr = match a.get_ref().parse::<std::net::IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, address.port()),
                Err(_) => self.resolve(a, "backend.server.check_address")?,
            };
        }
        if let Some(p) = &s.check_port {
            check_addr
                .set_port(self.int_in(Some(p), "backend.server.check_port", (1, 65535), 0)? as u16);
        }
        let check = keys.check.unwrap_or(false);
        if let (Some(_), Some(v), false) = (observe, keys.observe, check) {
            return self.err(
                v.span(),
                "backend.server.observe",
                "needs check = true: a server marked down by live traffic comes back only by its checks",
            );
        }
        if !check {
            let unused = [
                (s.check_address.as_ref().map(|v| v.span()), "check_address"),
                (s.check_port.as_ref().map(|v| v.span()), "check_port"),
            ];
            if let Some((Some(span), k)) = unused.into_iter().find(|(s, _)| s.is_some()) {
                return self.err(
                    span,
                    &format!("backend.server.{k}"),
                    "the server is not checked: set check = true",
                );
            }
        }
        Ok(ServerHealth {
            check,
            check_addr,
            check_address_set: s.check_address.is_some(),
            on_marked_down,
            on_marked_up,
            slowstart,
            observe,
            error_limit,
            on_error,
        })
    }
}
