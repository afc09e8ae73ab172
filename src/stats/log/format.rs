//! Access log lines: HAProxy's `option httplog` and `option tcplog` formats, and one JSON
//! object per line.
//!
//! Pure functions from a [`LogRecord`] and the configuration (for the names behind its
//! indices) to bytes appended to the caller's buffer: no I/O, no clock, no allocation
//! beyond the buffer's growth, no panic on a record whose indices do not match the
//! configuration (the logger thread must outlive any bad record). Dates are UTC, computed
//! here from the Unix time (no timezone database). Every byte that came from a client is
//! escaped, so one record is always exactly one line.

use std::fmt::Display;
use std::io::Write;

use super::LogRecord;
use crate::config::Config;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// HAProxy's server name when none was chosen (no backend, no usable server, a request
/// refused before balancing).
const NO_SERVER: &[u8] = b"<NOSRV>";

/// HAProxy's `%r` when the request head could not be parsed.
const BAD_REQUEST: &[u8] = b"<BADREQ>";

/// Appends one HAProxy line (newline included) for `record`.
///
/// http mode is `option httplog` without captured headers:
/// `%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %{+Q}r`;
/// tcp mode is `option tcplog`:
/// `%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq`.
///
/// Where HAProxy's model and ours differ: dates are UTC (HAProxy uses local time);
/// `%ac` is the sessions open on the record's shard, not in the process; `%sq/%bq` are
/// always `0/0` (queue positions are not recorded); the cookie fields `%CC %CS` are `-`
/// and the last two letters of `%tsc` are `--`. As HAProxy does: a request with no backend
/// is logged as `FRONTEND/<NOSRV>`, one with a backend but no server as
/// `BACKEND/<NOSRV>`, an absent timer as `-1`, no status as `-1`, an unparsed request
/// line as `<BADREQ>`, and an IPv6 client without brackets (`::1:39452`). A client
/// address the kernel did not give is `-:-`.
pub fn format_haproxy(record: &LogRecord, config: &Config, out: &mut Vec<u8>) {
    push_haproxy_who(out, record, &Names::of(record, config));
    if record.http {
        push_haproxy_timers(
            out,
            &[record.tq, record.tw, record.tc, record.tr],
            record.tt,
        );
        match record.status {
            0 => out.extend_from_slice(b"-1"),
            status => push_dec(out, u64::from(status), 1),
        }
        out.push(b' ');
        push_dec(out, record.bytes_out, 1);
        out.extend_from_slice(b" - - ");
        push_haproxy_escaped(out, &record.term);
        out.extend_from_slice(b"--");
    } else {
        push_haproxy_timers(out, &[record.tw, record.tc], record.tt);
        push_dec(out, record.bytes_out, 1);
        out.push(b' ');
        push_haproxy_escaped(out, &record.term);
    }
    out.push(b' ');
    for conns in record.conns {
        push_dec(out, u64::from(conns), 1);
        out.push(b'/');
    }
    push_dec(out, u64::from(record.retries), 1);
    out.extend_from_slice(b" 0/0");
    if record.http {
        out.extend_from_slice(b" \"");
        match record.request_line() {
            [] => out.extend_from_slice(BAD_REQUEST),
            line => push_haproxy_escaped(out, line),
        }
        out.push(b'"');
    }
    out.push(b'\n');
}

/// `%ci:%cp [%tr] %ft %b/%s `.
fn push_haproxy_who(out: &mut Vec<u8>, record: &LogRecord, names: &Names) {
    match record.client {
        Some(addr) => {
            push_display(out, addr.ip());
            out.push(b':');
            push_dec(out, u64::from(addr.port()), 1);
        }
        None => out.extend_from_slice(b"-:-"),
    }
    out.extend_from_slice(b" [");
    push_haproxy_date(out, UtcTime::from_unix_us(record.start_unix_us));
    out.extend_from_slice(b"] ");
    out.extend_from_slice(names.frontend.as_bytes());
    out.push(b' ');
    // HAProxy's frontend is also a backend: a request that reached no backend is the
    // frontend's.
    out.extend_from_slice(names.backend.unwrap_or(names.frontend).as_bytes());
    out.push(b'/');
    out.extend_from_slice(names.server.map_or(NO_SERVER, str::as_bytes));
    out.push(b' ');
}

/// `a/b/.../total ` in milliseconds.
fn push_haproxy_timers(out: &mut Vec<u8>, phases: &[Option<u32>], total_us: u64) {
    for phase in phases {
        push_haproxy_ms(out, phase.map(u64::from));
        out.push(b'/');
    }
    push_haproxy_ms(out, Some(total_us));
    out.push(b' ');
}

/// Appends one JSON object (newline included) for `record`:
/// `{"time":"2026-11-21T10:00:00.123456Z","client":"127.0.0.1:39452","frontend":"web",
/// "backend":"app","server":"s1","mode":"http","request":"GET / HTTP/1.1","status":200,
/// "bytes_in":78,"bytes_out":1234,"tq_ms":0.123,"tw_ms":0.000,"tc_ms":1.500,
/// "tr_ms":2.999,"tt_ms":3.400,"termination":"--","retries":0,
/// "conns":{"shard":1,"frontend":1,"backend":0,"server":0}}`.
///
/// Every key is always present (one schema for both modes); what is absent is `null`: the
/// client address, the backend and server (no `<NOSRV>` here), timers not reached,
/// `request` and `status` in tcp mode, `request` when the head could not be parsed,
/// `status` when none was sent. Timers are milliseconds with microsecond precision; the
/// client is `ip:port` with IPv6 in brackets. Bytes of the request line that are not
/// UTF-8 become U+FFFD.
pub fn format_json(record: &LogRecord, config: &Config, out: &mut Vec<u8>) {
    let names = Names::of(record, config);
    out.extend_from_slice(b"{\"time\":\"");
    push_iso8601(out, UtcTime::from_unix_us(record.start_unix_us));
    out.extend_from_slice(b"\",\"client\":");
    match record.client {
        // A socket address's text needs no JSON escaping.
        Some(addr) => {
            out.push(b'"');
            push_display(out, addr);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"frontend\":");
    push_json_str(out, names.frontend.as_bytes());
    out.extend_from_slice(b",\"backend\":");
    push_json_opt_str(out, names.backend.map(str::as_bytes));
    out.extend_from_slice(b",\"server\":");
    push_json_opt_str(out, names.server.map(str::as_bytes));
    out.extend_from_slice(if record.http {
        b",\"mode\":\"http\",\"request\":"
    } else {
        b",\"mode\":\"tcp\",\"request\":"
    });
    let line = record.request_line();
    push_json_opt_str(out, Some(line).filter(|l| record.http && !l.is_empty()));
    out.extend_from_slice(b",\"status\":");
    match record.status {
        status if record.http && status != 0 => push_dec(out, u64::from(status), 1),
        _ => out.extend_from_slice(b"null"),
    }
    let numbers = [
        (&b",\"bytes_in\":"[..], record.bytes_in),
        (b",\"bytes_out\":", record.bytes_out),
    ];
    push_json_numbers(out, &numbers);
    let timers = [
        (&b",\"tq_ms\":"[..], record.tq.map(u64::from)),
        (b",\"tw_ms\":", record.tw.map(u64::from)),
        (b",\"tc_ms\":", record.tc.map(u64::from)),
        (b",\"tr_ms\":", record.tr.map(u64::from)),
        (b",\"tt_ms\":", Some(record.tt)),
    ];
    for (key, timer) in timers {
        out.extend_from_slice(key);
        push_json_ms(out, timer);
    }
    out.extend_from_slice(b",\"termination\":");
    push_json_str(out, &record.term);
    let [shard, frontend, backend, server] = record.conns;
    let numbers = [
        (&b",\"retries\":"[..], u64::from(record.retries)),
        (b",\"conns\":{\"shard\":", u64::from(shard)),
        (b",\"frontend\":", u64::from(frontend)),
        (b",\"backend\":", u64::from(backend)),
        (b",\"server\":", u64::from(server)),
    ];
    push_json_numbers(out, &numbers);
    out.extend_from_slice(b"}}\n");
}

/// Each key (with its leading comma and colon) and its number.
fn push_json_numbers(out: &mut Vec<u8>, members: &[(&[u8], u64)]) {
    for &(key, n) in members {
        out.extend_from_slice(key);
        push_dec(out, n, 1);
    }
}

/// The names behind a record's indices. An index the configuration does not have (a bug
/// somewhere) shows as `-` rather than stopping the logger.
struct Names<'a> {
    frontend: &'a str,
    backend: Option<&'a str>,
    server: Option<&'a str>,
}

impl<'a> Names<'a> {
    fn of(record: &LogRecord, config: &'a Config) -> Names<'a> {
        let frontend = config.frontends.get(usize::from(record.frontend));
        let backend = record.backend.map(|b| config.backends.get(usize::from(b)));
        // A server index means something only within its backend.
        let server = match (backend, record.server) {
            (Some(backend), Some(s)) => Some(backend.and_then(|b| b.servers.get(usize::from(s)))),
            _ => None,
        };
        Names {
            frontend: frontend.map_or("-", |f| &f.name),
            backend: backend.map(|b| b.map_or("-", |b| &b.name)),
            server: server.map(|s| s.map_or("-", |s| &s.name)),
        }
    }
}

/// A UTC date and time, to the microsecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UtcTime {
    year: u64,
    /// 1..=12.
    month: u8,
    /// 1..=31.
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    micros: u32,
}

impl UtcTime {
    fn from_unix_us(unix_us: u64) -> UtcTime {
        const US_PER_DAY: u64 = 86_400 * 1_000_000;
        let (year, month, day) = civil_from_days(unix_us / US_PER_DAY);
        let of_day = unix_us % US_PER_DAY;
        let seconds = of_day / 1_000_000;
        UtcTime {
            year,
            month,
            day,
            hour: (seconds / 3600) as u8,
            minute: (seconds / 60 % 60) as u8,
            second: (seconds % 60) as u8,
            micros: (of_day % 1_000_000) as u32,
        }
    }
}

/// The (year, month 1..=12, day 1..=31) of the Gregorian calendar `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
///
/// Counting from 0000-03-01 instead of January puts the leap day at the end of each
/// year, so a year's length matters only for its last day; 400 Gregorian years are
/// exactly 146 097 days, so the count splits into whole eras and a day of the era, whose
/// year follows from the 4/100/400 rules; the months from March on have lengths in a
/// 153-day five-month cycle (31 30 31 30 31), which the `153` and `5` below invert.
fn civil_from_days(days: u64) -> (u64, u8, u8) {
    /// Days from 0000-03-01 to 1970-01-01.
    const EPOCH_SHIFT: u64 = 719_468;
    const DAYS_PER_ERA: u64 = 146_097;
    let z = days + EPOCH_SHIFT;
    let era = z / DAYS_PER_ERA;
    let day_of_era = z % DAYS_PER_ERA; // 0..=146_096
                                       // Remove the leap days before this day of the era (one per 4 years, minus one per
                                       // century, plus the era's last day), then divide by 365.
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153; // 0 = March ..= 11 = February
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    // January and February belong to the next civil year.
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month as u8, day as u8)
}

/// `21/Nov/2026:10:00:00.123` (HAProxy's `%tr` and `%t`, milliseconds cut down).
fn push_haproxy_date(out: &mut Vec<u8>, t: UtcTime) {
    push_dec(out, u64::from(t.day), 2);
    out.push(b'/');
    out.extend_from_slice(MONTHS[usize::from(t.month - 1)]);
    out.push(b'/');
    push_dec(out, t.year, 4);
    for (sep, n) in [(b':', t.hour), (b':', t.minute), (b':', t.second)] {
        out.push(sep);
        push_dec(out, u64::from(n), 2);
    }
    out.push(b'.');
    push_dec(out, u64::from(t.micros / 1000), 3);
}

/// `2026-11-21T10:00:00.123456Z`.
fn push_iso8601(out: &mut Vec<u8>, t: UtcTime) {
    push_dec(out, t.year, 4);
    for (sep, n) in [
        (b'-', t.month),
        (b'-', t.day),
        (b'T', t.hour),
        (b':', t.minute),
        (b':', t.second),
    ] {
        out.push(sep);
        push_dec(out, u64::from(n), 2);
    }
    out.push(b'.');
    push_dec(out, u64::from(t.micros), 6);
    out.push(b'Z');
}

/// A timer in whole milliseconds (rounded down, as HAProxy counts), `-1` when absent.
fn push_haproxy_ms(out: &mut Vec<u8>, us: Option<u64>) {
    match us {
        Some(us) => push_dec(out, us / 1000, 1),
        None => out.extend_from_slice(b"-1"),
    }
}

/// A timer in milliseconds with three decimals (`1.500`), `null` when absent.
fn push_json_ms(out: &mut Vec<u8>, us: Option<u64>) {
    match us {
        Some(us) => {
            push_dec(out, us / 1000, 1);
            out.push(b'.');
            push_dec(out, us % 1000, 3);
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// `bytes` with HAProxy's escaping of logged URLs (`#XX`, upper-case hex) applied to
/// control characters, DEL and non-ASCII bytes, `"` and `#` (so the quoting and the
/// escaping stay unambiguous), and also `\` (so that a reader that unescapes backslashes
/// sees the line as written).
fn push_haproxy_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if !(0x20..0x7f).contains(&b) || matches!(b, b'"' | b'#' | b'\\') {
            out.push(b'#');
            push_hex_byte(out, b);
        } else {
            out.push(b);
        }
    }
}

/// `bytes` as a JSON string: `"` and `\` escaped, control characters and DEL as
/// `\u00XX`, each invalid UTF-8 sequence as `\uFFFD` (as `String::from_utf8_lossy`).
fn push_json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0..0x20 | 0x7f => {
                    out.extend_from_slice(b"\\u00");
                    push_hex_byte(out, b);
                }
                // Bytes of multi-byte characters pass through: the chunk is valid UTF-8.
                _ => out.push(b),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(b"\\uFFFD");
        }
    }
    out.push(b'"');
}

fn push_json_opt_str(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => push_json_str(out, bytes),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_hex_byte(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0xf)]);
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn push_dec(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - start;
    out.resize(out.len() + width.saturating_sub(len), b'0');
    out.extend_from_slice(&digits[start..]);
}

fn push_display(out: &mut Vec<u8>, value: impl Display) {
    write!(out, "{value}").expect("writing to a Vec does not fail");
}

#[cfg(test)]
mod tests {
    use super::super::test_config;
    use super::*;

    /// 2026-11-21T10:00:00.123456Z.
    const START_US: u64 = 1_795_255_200_123_456;

    fn http_record() -> LogRecord {
        let mut r = LogRecord::new(0);
        r.http = true;
        r.start_unix_us = START_US;
        r.client = Some("127.0.0.1:39452".parse().unwrap());
        r.backend = Some(0);
        r.server = Some(0);
        r.tq = Some(123);
        r.tw = Some(0);
        r.tc = Some(1_500);
        r.tr = Some(2_999);
        r.tt = 3_400;
        r.status = 200;
        r.bytes_in = 78;
        r.bytes_out = 1234;
        r.conns = [1, 1, 0, 0];
        r.set_request_line(b"GET", b"/", b"HTTP/1.1");
        r
    }

    fn tcp_record() -> LogRecord {
        let mut r = LogRecord::new(1);
        r.start_unix_us = START_US;
        r.client = Some("10.0.0.7:50000".parse().unwrap());
        r.backend = Some(1);
        r.server = Some(0);
        r.tw = Some(12);
        r.tc = Some(1_999);
        r.tt = 5_000_999;
        r.bytes_in = 100;
        r.bytes_out = 4096;
        r.term = *b"CD";
        r.retries = 1;
        r.conns = [3, 2, 1, 1];
        r
    }

    fn haproxy(record: &LogRecord) -> String {
        let mut out = Vec::new();
        format_haproxy(record, &test_config(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn json(record: &LogRecord) -> String {
        let mut out = Vec::new();
        format_json(record, &test_config(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn parsed(record: &LogRecord) -> serde_json::Value {
        let line = json(record);
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    #[test]
    fn haproxy_http_line() {
        assert_eq!(
            haproxy(&http_record()),
            "127.0.0.1:39452 [21/Nov/2026:10:00:00.123] web app/s1 0/0/1/2/3 200 1234 - - \
             ---- 1/1/0/0/0 0/0 \"GET / HTTP/1.1\"\n"
        );
    }

    #[test]
    fn haproxy_tcp_line() {
        assert_eq!(
            haproxy(&tcp_record()),
            "10.0.0.7:50000 [21/Nov/2026:10:00:00.123] db dbs/pg1 0/1/5000 4096 CD \
             3/2/1/1/1 0/0\n"
        );
    }

    /// What HAProxy prints for what did not happen: `-1` timers and status, `<NOSRV>`,
    /// `<BADREQ>`; and what we print for an unknown client.
    #[test]
    fn haproxy_absent_values() {
        let mut r = http_record();
        r.client = None;
        r.backend = None;
        r.server = None;
        r.tw = None;
        r.tc = None;
        r.tr = None;
        r.status = 0;
        r.term = *b"CR";
        r.request_line_len = 0;
        assert_eq!(
            haproxy(&r),
            "-:- [21/Nov/2026:10:00:00.123] web web/<NOSRV> 0/-1/-1/-1/3 -1 1234 - - \
             CR-- 1/1/0/0/0 0/0 \"<BADREQ>\"\n"
        );

        let mut r = http_record();
        r.server = None;
        r.status = 503;
        r.term = *b"sQ";
        let line = haproxy(&r);
        assert!(line.contains(" web app/<NOSRV> "), "{line}");
        assert!(line.contains(" 503 1234 - - sQ-- "), "{line}");
    }

    #[test]
    fn haproxy_ipv6_client_has_no_brackets() {
        let mut r = tcp_record();
        r.client = Some("[2001:db8::1]:443".parse().unwrap());
        assert!(haproxy(&r).starts_with("2001:db8::1:443 ["));
    }

    #[test]
    fn haproxy_escapes_the_request_line() {
        let mut r = http_record();
        r.set_request_line(b"GET", b"/a b\"c#d\\e\r\n\x7f\xc3\xa9\x00~", b"HTTP/1.1");
        let line = haproxy(&r);
        assert!(
            line.ends_with(" \"GET /a b#22c#23d#5Ce#0D#0A#7F#C3#A9#00~ HTTP/1.1\"\n"),
            "{line}"
        );
        assert_eq!(line.matches('\n').count(), 1);
    }

    /// Indices the configuration does not have: the line is still written.
    #[test]
    fn unknown_indices_do_not_panic() {
        let mut r = http_record();
        r.frontend = 99;
        r.backend = Some(7);
        r.server = Some(7);
        assert!(haproxy(&r).contains("] - -/- "));
        let v = parsed(&r);
        assert_eq!(v["frontend"], "-");
        assert_eq!(v["server"], "-");
    }

    #[test]
    fn json_http_record() {
        assert_eq!(
            json(&http_record()),
            "{\"time\":\"2026-11-21T10:00:00.123456Z\",\"client\":\"127.0.0.1:39452\",\
             \"frontend\":\"web\",\"backend\":\"app\",\"server\":\"s1\",\"mode\":\"http\",\
             \"request\":\"GET / HTTP/1.1\",\"status\":200,\"bytes_in\":78,\"bytes_out\":1234,\
             \"tq_ms\":0.123,\"tw_ms\":0.000,\"tc_ms\":1.500,\"tr_ms\":2.999,\"tt_ms\":3.400,\
             \"termination\":\"--\",\"retries\":0,\
             \"conns\":{\"shard\":1,\"frontend\":1,\"backend\":0,\"server\":0}}\n"
        );
        let v = parsed(&http_record());
        assert_eq!(v["time"], "2026-11-21T10:00:00.123456Z");
        assert_eq!(v["status"], 200);
        assert_eq!(v["tc_ms"].as_f64(), Some(1.5));
        assert_eq!(v["tt_ms"].as_f64(), Some(3.4));
        assert_eq!(v["conns"]["shard"], 1);
    }

    #[test]
    fn json_tcp_record_has_nulls() {
        let v = parsed(&tcp_record());
        assert_eq!(v["mode"], "tcp");
        assert_eq!(v["frontend"], "db");
        assert_eq!(v["backend"], "dbs");
        assert_eq!(v["server"], "pg1");
        assert!(v["request"].is_null());
        assert!(v["status"].is_null());
        assert!(v["tq_ms"].is_null());
        assert!(v["tr_ms"].is_null());
        assert_eq!(v["tw_ms"].as_f64(), Some(0.012));
        assert_eq!(v["tt_ms"].as_f64(), Some(5000.999));
        assert_eq!(v["bytes_in"], 100);
        assert_eq!(v["termination"], "CD");
        assert_eq!(v["retries"], 1);
        assert_eq!(v["conns"]["server"], 1);

        let mut r = tcp_record();
        r.client = None;
        r.backend = None;
        r.server = Some(0);
        r.tw = None;
        let v = parsed(&r);
        assert!(v["client"].is_null());
        assert!(v["backend"].is_null());
        assert!(
            v["server"].is_null(),
            "a server without a backend means nothing"
        );
        assert!(v["tw_ms"].is_null());
    }

    #[test]
    fn json_escapes_any_request_line() {
        let target = b"/\"q\\\x01\x1f\x7f\xff\xc3\xa9\xe2\x82/\t\n";
        let mut r = http_record();
        r.set_request_line(b"GET", target, b"HTTP/1.1");
        let line = json(&r);
        assert!(
            line.contains(
                r#""request":"GET /\"q\\\u0001\u001F\u007F\uFFFDé\uFFFD/\u0009\u000A HTTP/1.1""#
            ),
            "{line}"
        );
        let v = parsed(&r);
        assert_eq!(
            v["request"].as_str().unwrap(),
            String::from_utf8_lossy(r.request_line())
        );

        let mut r = http_record();
        r.request_line_len = 0;
        assert!(parsed(&r)["request"].is_null());
    }

    #[test]
    fn known_dates() {
        let cases = [
            (0, (1970, 1, 1)),
            (68_212_800, (1972, 2, 29)),
            (951_696_000, (2000, 2, 28)),
            (951_782_400, (2000, 2, 29)),
            (951_868_799, (2000, 2, 29)),
            (951_868_800, (2000, 3, 1)),
            (1_735_689_599, (2024, 12, 31)),
            (1_795_255_200, (2026, 11, 21)),
            (4_107_456_000, (2100, 2, 28)),
            (4_107_542_400, (2100, 3, 1)),
        ];
        for (unix, (year, month, day)) in cases {
            let t = UtcTime::from_unix_us(unix * 1_000_000);
            assert_eq!((t.year, t.month, t.day), (year, month, day), "{unix}");
        }
        let t = UtcTime::from_unix_us(951_868_799_999_999);
        assert_eq!(
            (t.hour, t.minute, t.second, t.micros),
            (23, 59, 59, 999_999)
        );
        let mut out = Vec::new();
        push_haproxy_date(&mut out, t);
        out.push(b' ');
        push_iso8601(&mut out, t);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "29/Feb/2000:23:59:59.999 2000-02-29T23:59:59.999999Z"
        );
    }

    /// Every day from 1970 to 2499 against a calendar walked one day at a time.
    #[test]
    fn every_day_matches_a_walked_calendar() {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_days = |y: u64, m: u8| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut year, mut month, mut day) = (1970, 1, 1);
        let mut days = 0;
        while year < 2500 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            days += 1;
            day += 1;
            if day > month_days(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }

    #[test]
    fn decimal_padding() {
        let mut out = Vec::new();
        push_dec(&mut out, 7, 3);
        push_dec(&mut out, 0, 1);
        push_dec(&mut out, 12345, 2);
        push_dec(&mut out, u64::MAX, 1);
        assert_eq!(out, b"00701234518446744073709551615");
    }
}
