//! Statistics: what the shards count and time, and how it reaches the control thread.
//!
//! Owns the per-shard side ([`ShardStats`]): counters per frontend, backend and server in
//! plain `Cell`s, and latency histograms (`hdrhistogram`, microseconds) per frontend and
//! server for four phases of an exchange: queue, connect, server response (request sent
//! → response head) and total. Recording is a few additions on memory the shard owns: no
//! lock, no atomic, no system call.
//!
//! Publication: on its control tick, every `admin.stats_interval`, a shard copies its
//! counters (running totals) and moves its histograms out (the samples of the last
//! interval) into a [`Snapshot`] and pushes it into its [`ring`] to the control thread.
//! A full ring drops the snapshot and counts it: the totals lose nothing (the next
//! snapshot carries them), the histograms lose that interval's samples. The control
//! thread sums the shards ([`aggregate`]) and renders the sums ([`render`]).
//!
//! Counters are always kept (a cell addition each); histograms and snapshots only when
//! something reads them (`[admin] socket` or `[admin] listen`). The access log ([`log`])
//! is fed the same way, through a ring of its own per shard.
//!
//! Where counters already live elsewhere (connection attempts and pool outcomes on each
//! `ServerState`, queue outcomes on each backend's queue), the snapshot reads them there
//! rather than counting twice.

pub mod aggregate;
pub mod log;
pub mod render;
pub mod ring;

use std::cell::{Cell, RefCell};
use std::time::{Instant, SystemTime};

use hdrhistogram::Histogram;

/// A Prometheus counter (a running total) or gauge (a level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One counter of a set: its name (JSON key; Prometheus name after the entity prefix),
/// its kind and what it counts.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// Declares a set of counters: an enum whose discriminants index a `[u64; COUNT]`, and
/// the description of each.
macro_rules! counter_set {
    ($(#[$m:meta])* pub enum $set:ident {
        $($(#[$vm:meta])* $var:ident = ($name:literal, $kind:ident, $help:literal)),* $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $set { $($(#[$vm])* $var),* }
        impl $set {
            pub const FIELDS: &'static [Field] =
                &[$(Field { name: $name, kind: Kind::$kind, help: $help }),*];
            pub const COUNT: usize = Self::FIELDS.len();
        }
    };
}

counter_set! {
    /// Counters of a frontend.
    pub enum Fe {
        Sessions = ("sessions_total", Counter, "Client connections accepted."),
        Requests = ("requests_total", Counter, "HTTP requests received whole."),
        Resp1xx = ("responses_1xx_total", Counter, "Responses sent to clients, by status class."),
        Resp2xx = ("responses_2xx_total", Counter, "Responses sent to clients, by status class."),
        Resp3xx = ("responses_3xx_total", Counter, "Responses sent to clients, by status class."),
        Resp4xx = ("responses_4xx_total", Counter, "Responses sent to clients, by status class."),
        Resp5xx = ("responses_5xx_total", Counter, "Responses sent to clients, by status class."),
        RespOther = ("responses_other_total", Counter, "Responses sent to clients, by status class."),
        RequestErrors = ("request_errors_total", Counter,
            "Requests refused as invalid, too large or too slow (400, 408, 414, 431)."),
        ClientAborts = ("client_aborts_total", Counter,
            "Exchanges the client cut short (closed or stalled mid-way)."),
        BytesIn = ("bytes_in_total", Counter, "Bytes received from clients."),
        BytesOut = ("bytes_out_total", Counter, "Bytes sent to clients."),
        CurrentSessions = ("current_sessions", Gauge, "Client connections open now."),
        TlsHandshakes = ("tls_handshakes_total", Counter, "TLS handshakes completed with clients."),
        TlsResumed = ("tls_resumed_total", Counter,
            "TLS handshakes with clients that resumed a session (ticket or session id)."),
        TlsFailedTimeout = ("tls_failed_timeout_total", Counter,
            "TLS handshakes not complete within timeout_client_handshake."),
        TlsFailedClosed = ("tls_failed_closed_total", Counter,
            "TLS handshakes the client closed or reset before the end."),
        TlsFailedProtocol = ("tls_failed_protocol_total", Counter,
            "TLS handshakes with no protocol in common (version, cipher, ALPN) or invalid messages."),
        TlsFailedCertificate = ("tls_failed_certificate_total", Counter,
            "TLS handshakes in which the client refused the proxy's certificate."),
    }
}

counter_set! {
    /// Counters of a server; a backend's are the sum of its servers' and its own (what
    /// happened before any server was chosen).
    pub enum Sv {
        Requests = ("requests_total", Counter,
            "HTTP requests (tcp mode: sessions) that ended on this server, whatever the outcome."),
        Resp1xx = ("responses_1xx_total", Counter, "Responses sent to clients, by status class."),
        Resp2xx = ("responses_2xx_total", Counter, "Responses sent to clients, by status class."),
        Resp3xx = ("responses_3xx_total", Counter, "Responses sent to clients, by status class."),
        Resp4xx = ("responses_4xx_total", Counter, "Responses sent to clients, by status class."),
        Resp5xx = ("responses_5xx_total", Counter, "Responses sent to clients, by status class."),
        RespOther = ("responses_other_total", Counter, "Responses sent to clients, by status class."),
        ConnectErrors = ("connect_errors_total", Counter,
            "Connection attempts that failed (refused, timed out, unreachable)."),
        ConnectTimeouts = ("connect_timeouts_total", Counter,
            "Connection attempts that ran out of timeout_connect (also in connect_errors_total)."),
        ResponseErrors = ("response_errors_total", Counter,
            "Exchanges whose server failed before a whole response head (reset, closed, invalid)."),
        ServerTimeouts = ("server_timeouts_total", Counter,
            "Exchanges whose server did not answer within timeout_server."),
        Retries = ("retries_total", Counter, "Requests sent again after a failure."),
        Redispatches = ("redispatches_total", Counter,
            "Retries that were sent to another server."),
        ClientAborts = ("client_aborts_total", Counter, "Exchanges the client cut short."),
        ServerAborts = ("server_aborts_total", Counter,
            "Exchanges the server cut short after its response began."),
        Killed = ("killed_total", Counter,
            "Sessions closed because the server's sessions were shut down."),
        NoServer = ("no_server_total", Counter,
            "Requests answered 503 (tcp: closed) because no server could take them."),
        Queued = ("queued_total", Counter, "Requests that waited in the queue."),
        QueueTimeouts = ("queue_timeouts_total", Counter,
            "Requests that waited timeout_queue and got no server."),
        QueueFull = ("queue_full_total", Counter,
            "Requests refused because maxqueue requests were waiting."),
        Connections = ("connections_total", Counter, "Connections established to servers."),
        PoolReused = ("pool_reused_total", Counter,
            "Requests sent on a server connection that had served one before."),
        PoolExpired = ("pool_expired_total", Counter,
            "Idle pooled connections closed by the proxy (pool_idle_timeout, surplus)."),
        PoolClosedByServer = ("pool_closed_by_server_total", Counter,
            "Idle pooled connections the server closed while they waited."),
        UncleanCloses = ("unclean_closes_total", Counter,
            "Server connections closed with unread input left: the only closes that may send an RST."),
        BytesIn = ("bytes_in_total", Counter, "Bytes received from clients for this server."),
        BytesOut = ("bytes_out_total", Counter, "Bytes sent to clients from this server."),
        CurrentSessions = ("current_sessions", Gauge, "Exchanges (tcp: sessions) using it now."),
        CurrentQueue = ("current_queue", Gauge, "Requests waiting in the queue now."),
        TlsHandshakes = ("tls_handshakes_total", Counter, "TLS handshakes completed with the server."),
        TlsResumed = ("tls_resumed_total", Counter,
            "TLS handshakes with the server that resumed a session."),
        TlsFailedCertificate = ("tls_failed_certificate_total", Counter,
            "TLS handshakes in which the server's certificate was refused (expired, wrong name, unknown CA)."),
        TlsFailedOther = ("tls_failed_other_total", Counter,
            "TLS handshakes with the server that failed otherwise (timeout, protocol, closed)."),
    }
}

/// Where the counter of `status`'s class is among the six class counters (`1xx` ..
/// `5xx`, other), which follow each other in both sets.
fn class_offset(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 5,
    }
}

const _: () = assert!(Fe::RespOther as usize == Fe::Resp1xx as usize + 5);
const _: () = assert!(Sv::RespOther as usize == Sv::Resp1xx as usize + 5);

/// A phase of an exchange that is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting in the backend's queue for a server slot.
    Queue,
    /// Connecting to the server (0 for a pooled connection).
    Connect,
    /// From the request sent to the response head received.
    Response,
    /// From the request's start to the end of its response.
    Total,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Queue, Phase::Connect, Phase::Response, Phase::Total];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Queue => "queue",
            Phase::Connect => "connect",
            Phase::Response => "response",
            Phase::Total => "total",
        }
    }
}

/// Largest time recorded, in microseconds (an hour); longer ones count as an hour.
pub const TIME_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits the histograms keep: values within 1 %.
pub const TIME_DIGITS: u8 = 2;

/// Latency histograms of one entity, one per [`Phase`], in microseconds, with exact sums.
#[derive(Debug, Clone)]
pub struct Timers {
    hist: [Histogram<u64>; 4],
    sum_us: [u64; 4],
}

impl Default for Timers {
    fn default() -> Timers {
        let h = || {
            Histogram::new_with_bounds(1, TIME_MAX_US, TIME_DIGITS).expect("valid constant bounds")
        };
        Timers {
            hist: [h(), h(), h(), h()],
            sum_us: [0; 4],
        }
    }
}

impl Timers {
    #[inline]
    pub fn record(&mut self, phase: Phase, us: u64) {
        let us = us.min(TIME_MAX_US);
        self.hist[phase as usize].saturating_record(us);
        self.sum_us[phase as usize] += us;
    }

    pub fn histogram(&self, phase: Phase) -> &Histogram<u64> {
        &self.hist[phase as usize]
    }

    pub fn sum_us(&self, phase: Phase) -> u64 {
        self.sum_us[phase as usize]
    }

    /// Adds `other`'s samples to these.
    pub fn add(&mut self, other: &Timers) {
        for i in 0..4 {
            // Same bounds on both sides: adding cannot fail.
            let _ = self.hist[i].add(&other.hist[i]);
            self.sum_us[i] += other.sum_us[i];
        }
    }

    pub fn reset(&mut self) {
        for h in &mut self.hist {
            h.reset();
        }
        self.sum_us = [0; 4];
    }

    pub fn is_empty(&self) -> bool {
        self.hist.iter().all(|h| h.is_empty())
    }
}

/// The live counters and histograms of one entity on one shard.
#[derive(Debug)]
pub struct Live<const N: usize> {
    cells: [Cell<u64>; N],
    /// Highest `CurrentSessions` seen.
    max_sessions: Cell<u64>,
    /// Allocated at the first sample (most entities of a large configuration see none
    /// in a given interval).
    timers: RefCell<Option<Box<Timers>>>,
}

impl<const N: usize> Default for Live<N> {
    fn default() -> Self {
        Live {
            cells: std::array::from_fn(|_| Cell::new(0)),
            max_sessions: Cell::new(0),
            timers: RefCell::new(None),
        }
    }
}

impl<const N: usize> Live<N> {
    #[inline]
    pub fn add(&self, counter: usize, n: u64) {
        let c = &self.cells[counter];
        c.set(c.get() + n);
    }

    #[inline]
    pub fn get(&self, counter: usize) -> u64 {
        self.cells[counter].get()
    }

    /// One more session open now (`current` is the gauge's index), keeping the maximum.
    #[inline]
    pub fn open(&self, current: usize) {
        self.add(current, 1);
        let now = self.get(current);
        if now > self.max_sessions.get() {
            self.max_sessions.set(now);
        }
    }

    #[inline]
    pub fn close(&self, current: usize) {
        let c = &self.cells[current];
        c.set(c.get().saturating_sub(1));
    }

    #[inline]
    fn time(&self, phase: Phase, us: Option<u64>) {
        if let Some(us) = us {
            let mut t = self.timers.borrow_mut();
            t.get_or_insert_with(Default::default).record(phase, us);
        }
    }

    /// The counters now and the samples since the last sample (which are taken away).
    fn sample(&self) -> Sample<N> {
        Sample {
            values: std::array::from_fn(|i| self.cells[i].get()),
            max_sessions: self.max_sessions.get(),
            timers: self.timers.borrow_mut().take().filter(|t| !t.is_empty()),
        }
    }
}

/// One entity in a snapshot.
#[derive(Debug, Clone)]
pub struct Sample<const N: usize> {
    /// Running totals (and gauges) at the time of the snapshot.
    pub values: [u64; N],
    pub max_sessions: u64,
    /// Samples of the interval since the previous snapshot.
    pub timers: Option<Box<Timers>>,
}

impl<const N: usize> Default for Sample<N> {
    fn default() -> Self {
        Sample {
            values: [0; N],
            max_sessions: 0,
            timers: None,
        }
    }
}

pub type FeLive = Live<{ Fe::COUNT }>;
pub type SvLive = Live<{ Sv::COUNT }>;
pub type FeSample = Sample<{ Fe::COUNT }>;
pub type SvSample = Sample<{ Sv::COUNT }>;

/// A backend in a snapshot: its own counters, its servers', its queue's peak.
#[derive(Debug, Clone, Default)]
pub struct BackendSample {
    pub own: SvSample,
    pub servers: Vec<SvSample>,
    pub max_queue: u64,
}

/// What one shard publishes on each tick.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub shard: usize,
    pub frontends: Vec<FeSample>,
    pub backends: Vec<BackendSample>,
    /// Snapshots this shard dropped because its ring was full.
    pub dropped: u64,
    /// Access log records this shard dropped because its ring was full.
    pub log_dropped: u64,
}

/// One backend's live statistics on a shard.
#[derive(Debug, Default)]
pub struct BackendLive {
    /// What happened before a server was chosen (no server, queue outcomes).
    pub own: SvLive,
    pub servers: Box<[SvLive]>,
}

/// Unix time from the monotonic clock: one `SystemTime` read at start, then `Instant`s.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_us: u64,
}

impl Default for Clock {
    fn default() -> Clock {
        let base_unix_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Clock {
            base: Instant::now(),
            base_unix_us,
        }
    }
}

impl Clock {
    pub fn unix_us(&self, at: Instant) -> u64 {
        self.base_unix_us + at.saturating_duration_since(self.base).as_micros() as u64
    }
}

/// Microseconds between two instants.
#[inline]
pub fn micros(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_micros() as u64
}

/// One request (http) or session (tcp) in progress: what the stats and the access log
/// record when it ends.
#[derive(Debug, Clone, Copy)]
pub struct Txn {
    /// The accept (a connection's first request, tcp sessions) or the first byte of the
    /// request.
    pub start: Instant,
    pub tq: Option<u64>,
    pub tw: Option<u64>,
    pub tc: Option<u64>,
    pub tr: Option<u64>,
    pub backend: Option<usize>,
    pub server: Option<usize>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub retries: u8,
    /// Where the exchange is: HAProxy's phase letter (`R`, `Q`, `C`, `H`, `D`, `L`).
    pub phase: u8,
}

impl Txn {
    pub fn new(start: Instant) -> Txn {
        Txn {
            start,
            tq: None,
            tw: None,
            tc: None,
            tr: None,
            backend: None,
            server: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            retries: 0,
            phase: b'R',
        }
    }
}

/// Who ended an exchange, for the termination state (`-` when it ended normally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ender {
    Normal,
    /// The client closed or failed.
    Client,
    /// The server closed or failed.
    Server,
    /// The proxy refused or answered itself.
    Proxy,
    ClientTimeout,
    ServerTimeout,
    /// The server's sessions were shut down (marked down, or by the operator).
    Down,
    /// The shard's grace period after a stop ended it.
    Killed,
}

impl Ender {
    fn letter(self) -> u8 {
        match self {
            Ender::Normal => b'-',
            Ender::Client => b'C',
            Ender::Server => b'S',
            Ender::Proxy => b'P',
            Ender::ClientTimeout => b'c',
            Ender::ServerTimeout => b's',
            Ender::Down => b'D',
            Ender::Killed => b'K',
        }
    }
}

/// Everything a shard records.
pub struct ShardStats {
    /// Histograms and snapshots are kept (something reads them).
    pub enabled: bool,
    pub frontends: Box<[FeLive]>,
    pub backends: Box<[BackendLive]>,
    pub clock: Clock,
    publisher: Option<ring::Producer<Snapshot>>,
    log: Option<ring::Producer<log::LogRecord>>,
}

impl ShardStats {
    pub fn new(
        config: &crate::config::Config,
        publisher: Option<ring::Producer<Snapshot>>,
        log: Option<ring::Producer<log::LogRecord>>,
    ) -> ShardStats {
        ShardStats {
            enabled: publisher.is_some(),
            frontends: config.frontends.iter().map(|_| FeLive::default()).collect(),
            backends: config
                .backends
                .iter()
                .map(|b| BackendLive {
                    own: SvLive::default(),
                    servers: b.servers.iter().map(|_| SvLive::default()).collect(),
                })
                .collect(),
            clock: Clock::default(),
            publisher,
            log,
        }
    }

    /// Whether access log records are wanted.
    #[inline]
    pub fn logging(&self) -> bool {
        self.log.is_some()
    }

    /// The server's (or, with none chosen, the backend's own) live statistics.
    #[inline]
    pub fn server(&self, backend: usize, server: Option<usize>) -> &SvLive {
        let b = &self.backends[backend];
        match server {
            Some(s) => &b.servers[s],
            None => &b.own,
        }
    }

    /// Records a finished request (http mode) or session (tcp mode, `status` 0) that
    /// `ender` ended: counts on its frontend and its server (or backend), who cut it
    /// short, its times when histograms are kept. Returns its total time (µs).
    pub fn finish(&self, frontend: usize, txn: &Txn, ender: Ender, now: Instant) -> u64 {
        let tt = micros(txn.start, now);
        let fe = &self.frontends[frontend];
        let sv = txn.backend.map(|b| self.server(b, txn.server));
        let count = |counter: Sv| {
            if let Some(sv) = sv {
                sv.add(counter as usize, 1);
            }
        };
        match ender {
            // A client that left before its request was whole aborted nothing.
            Ender::Client if txn.phase != b'R' => {
                fe.add(Fe::ClientAborts as usize, 1);
                count(Sv::ClientAborts);
            }
            Ender::Server if txn.phase == b'D' => count(Sv::ServerAborts),
            Ender::Down => count(Sv::Killed),
            _ => {}
        }
        fe.add(Fe::BytesIn as usize, txn.bytes_in);
        fe.add(Fe::BytesOut as usize, txn.bytes_out);
        if txn.status != 0 {
            fe.add(Fe::Resp1xx as usize + class_offset(txn.status), 1);
        }
        if let Some(sv) = sv {
            sv.add(Sv::Requests as usize, 1);
            sv.add(Sv::BytesIn as usize, txn.bytes_in);
            sv.add(Sv::BytesOut as usize, txn.bytes_out);
            if txn.status != 0 {
                sv.add(Sv::Resp1xx as usize + class_offset(txn.status), 1);
            }
        }
        if self.enabled {
            let times = [
                (Phase::Queue, txn.tw),
                (Phase::Connect, txn.tc),
                (Phase::Response, txn.tr),
                (Phase::Total, Some(tt)),
            ];
            for (phase, us) in times {
                fe.time(phase, us);
                if let Some(sv) = sv {
                    sv.time(phase, us);
                }
            }
        }
        tt
    }

    /// Counts a retry of `txn` after it failed on `server` of `backend`: on that server, a
    /// retry, and a redispatch when it goes `elsewhere` (another server is left to try).
    pub fn retried(&self, txn: &mut Txn, backend: usize, server: usize, elsewhere: bool) {
        let failed_on = self.server(backend, Some(server));
        failed_on.add(Sv::Retries as usize, 1);
        if elsewhere {
            failed_on.add(Sv::Redispatches as usize, 1);
        }
        txn.retries = txn.retries.saturating_add(1);
    }

    /// Pushes an access log record, if the access log is on (a full ring drops it).
    #[inline]
    pub fn log(&self, record: log::LogRecord) {
        if let Some(l) = &self.log {
            let _ = l.push(record);
        }
    }

    /// Builds this shard's snapshot and pushes it to the control thread; `servers` gives
    /// the counters kept on the backend states.
    pub fn publish(&self, shard: usize, backends: &[std::rc::Rc<crate::upstream::BackendState>]) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let frontends = self.frontends.iter().map(|f| f.sample()).collect();
        let backends = self
            .backends
            .iter()
            .zip(backends)
            .map(|(live, state)| {
                let mut own = live.own.sample();
                let q = &state.queue;
                own.values[Sv::Queued as usize] = q.queued.get();
                own.values[Sv::QueueTimeouts as usize] = q.timeouts.get();
                own.values[Sv::QueueFull as usize] = q.full.get();
                own.values[Sv::NoServer as usize] = state.no_server.get();
                own.values[Sv::CurrentQueue as usize] = q.len() as u64;
                let servers = live
                    .servers
                    .iter()
                    .zip(&state.servers)
                    .map(|(live, s)| {
                        let mut sample = live.sample();
                        let v = &mut sample.values;
                        v[Sv::ConnectErrors as usize] = s.connect_failures.get();
                        v[Sv::ConnectTimeouts as usize] = s.connect_timeouts.get();
                        v[Sv::Connections as usize] = s.sessions.get();
                        v[Sv::PoolReused as usize] = s.pool.reused.get();
                        v[Sv::PoolExpired as usize] = s.pool.expired.get() + s.pool.evicted.get();
                        v[Sv::PoolClosedByServer as usize] = s.pool.closed_by_peer_idle.get();
                        v[Sv::UncleanCloses as usize] = s.pool.unclean_closes.get();
                        v[Sv::CurrentSessions as usize] = u64::from(s.active());
                        sample.max_sessions = u64::from(s.max_active.get());
                        sample
                    })
                    .collect();
                BackendSample {
                    own,
                    servers,
                    max_queue: q.max_len.get() as u64,
                }
            })
            .collect();
        let snapshot = Snapshot {
            shard,
            frontends,
            backends,
            dropped: publisher.dropped(),
            log_dropped: self.log.as_ref().map_or(0, |l| l.dropped()),
        };
        // A full ring: the control thread is behind. The totals come again next time.
        let _ = publisher.push(snapshot);
    }
}

/// HAProxy's termination state of an exchange ended by `ender` in phase `phase`.
pub fn term(ender: Ender, phase: u8) -> [u8; 2] {
    match ender {
        Ender::Normal => *b"--",
        _ => [ender.letter(), phase],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_small_and_precise_enough() {
        let t = Timers::default();
        let h = t.histogram(Phase::Total);
        // 4 phases × this many u64 per entity that saw traffic.
        assert!(h.distinct_values() < 4000, "{}", h.distinct_values());
        let mut t = t;
        t.record(Phase::Total, 20_000);
        let p50 = t.histogram(Phase::Total).value_at_quantile(0.5);
        assert!((19_800..=20_200).contains(&p50), "{p50}");
        t.record(Phase::Total, u64::MAX);
        assert_eq!(t.sum_us(Phase::Total), 20_000 + TIME_MAX_US);
    }

    #[test]
    fn counters_name_what_they_count() {
        for f in Fe::FIELDS.iter().chain(Sv::FIELDS) {
            let ok = f
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
            assert!(ok, "{}", f.name);
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn live_keeps_the_peak_and_hands_the_samples_over_once() {
        let l = SvLive::default();
        let cur = Sv::CurrentSessions as usize;
        l.open(cur);
        l.open(cur);
        l.close(cur);
        l.time(Phase::Total, Some(5));
        let s = l.sample();
        assert_eq!(s.values[cur], 1);
        assert_eq!(s.max_sessions, 2);
        assert_eq!(
            s.timers.as_ref().map(|t| t.histogram(Phase::Total).len()),
            Some(1)
        );
        assert!(l.sample().timers.is_none());
    }
}
