//! Heads the benches parse and rewrite, as common clients and servers send them, and the
//! settings every bench shares. Not a bench target (Cargo looks for `benches/*.rs` and
//! `benches/*/main.rs` only).
#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;
use ringproxy::config::default;
use ringproxy::http::head::Limits;

/// What `wrk` sends (40 bytes).
pub const WRK: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n";

/// A browser's navigation request, as Firefox sends it (15 fields, 621 bytes).
pub const BROWSER: &[u8] = b"GET /articles/2026/11/io-uring-proxies.html?ref=front HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=6f1c0e2a9b7d4c3e8a5f; theme=dark; consent=1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-User: ?1\r\n\
Priority: u=0, i\r\n\
If-None-Match: \"6724e1f0-3a1\"\r\n\r\n";

/// What nginx answers for a small static file (8 fields, 235 bytes).
pub const NGINX_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Sat, 21 Nov 2026 10:00:00 GMT\r\n\
Content-Type: text/html\r\n\
Content-Length: 13\r\n\
Last-Modified: Fri, 20 Nov 2026 09:00:00 GMT\r\n\
Connection: keep-alive\r\n\
ETag: \"6724e1f0-d\"\r\n\
Accept-Ranges: bytes\r\n\r\n";

/// The built-in frontend limits.
pub const LIMITS: Limits = Limits {
    max_header_bytes: default::MAX_HEADER_BYTES,
    max_headers: default::MAX_HEADERS,
    max_request_line: default::MAX_REQUEST_LINE,
};

/// Short runs: every bench of `cargo bench` together takes a few minutes on 2 cores.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}
