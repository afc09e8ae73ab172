//! Question: what does rewriting a head on its way through the proxy
//! (`http::rewrite::request_head` / `response_head`: the start line rebuilt, hop-by-hop
//! fields dropped, framing and `Connection` written from the proxy's decisions) cost
//! against forwarding the head unchanged?
//!
//! Baseline: copying the same head bytes into the same reused output vector with one
//! `extend_from_slice`. Heads are parsed once, outside the measurement. Inputs: wrk's
//! request, a browser's GET (15 fields, 621 bytes; also with `X-Forwarded-For` and
//! `X-Forwarded-Proto` added, as with `forward_for`) and an nginx response head.
//!
//! Run: `cargo bench --bench rewrite` (criterion; `-- --quick` for a smoke run).

mod samples;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringproxy::http::head::{self, Method, Parsed, Request, Response};
use ringproxy::http::rewrite::{self, Connection, Framing, RequestExtras};
use samples::{BROWSER, LIMITS, NGINX_RESPONSE, WRK};

/// What a keep-alive GET without a body gets (the session's choice for wrk's requests).
const PLAIN: RequestExtras<'static> = RequestExtras {
    framing: Framing::None,
    connection: Connection::Default,
    upgrade: false,
    forwarded_for: None,
    forwarded_proto: None,
    cookie: None,
};

fn requests(c: &mut Criterion) {
    let xff = RequestExtras {
        forwarded_for: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 17))),
        forwarded_proto: Some("http"),
        ..PLAIN
    };
    for (name, bytes, extras) in [
        ("wrk", WRK, PLAIN),
        ("browser", BROWSER, PLAIN),
        ("browser + X-Forwarded-For", BROWSER, xff),
    ] {
        let mut req = Request::default();
        let parsed = head::parse_request(bytes, &LIMITS, &mut req);
        assert_eq!(parsed, Ok(Parsed::Complete));
        let mut out = Vec::with_capacity(4096);
        let mut g = c.benchmark_group(format!("request head/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("baseline: copy", |b| {
            b.iter(|| {
                out.clear();
                out.extend_from_slice(&black_box(bytes)[..req.head.len]);
                black_box(&out);
            })
        });
        g.bench_function("request_head", |b| {
            b.iter(|| {
                out.clear();
                rewrite::request_head(&mut out, black_box(bytes), &req, &extras);
                black_box(&out);
            })
        });
        g.finish();
    }
}

fn responses(c: &mut Criterion) {
    let mut resp = Response::default();
    let parsed = head::parse_response(NGINX_RESPONSE, Method::Get, &mut resp);
    assert_eq!(parsed, Ok(Parsed::Complete));
    let mut out = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("response head/nginx");
    g.throughput(Throughput::Bytes(NGINX_RESPONSE.len() as u64));
    g.bench_function("baseline: copy", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(&black_box(NGINX_RESPONSE)[..resp.head.len]);
            black_box(&out);
        })
    });
    g.bench_function("response_head", |b| {
        b.iter(|| {
            out.clear();
            rewrite::response_head(
                &mut out,
                black_box(NGINX_RESPONSE),
                &resp,
                Framing::Length(13),
                Connection::Default,
            );
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = samples::criterion();
    targets = requests, responses
}
criterion_main!(benches);
