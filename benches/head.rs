//! Question: what does the proxy's head parsing (`http::head::parse_request` and
//! `parse_response`: httparse, then the smuggling checks, the framing decision and the
//! reduction to offsets) cost on top of httparse alone?
//!
//! Baseline: a bare `httparse::Request::parse` / `httparse::Response::parse` of the same
//! bytes into a reused header array. Inputs: wrk's request (40 bytes), a browser's GET
//! (15 fields, 621 bytes) and an nginx response head (8 fields, 235 bytes).
//!
//! Run: `cargo bench --bench head` (criterion; `-- --quick` for a smoke run).

mod samples;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringproxy::http::head::{self, Method, Parsed, Request, Response};
use samples::{BROWSER, LIMITS, NGINX_RESPONSE, WRK};

fn requests(c: &mut Criterion) {
    for (name, bytes) in [("wrk", WRK), ("browser", BROWSER)] {
        let mut g = c.benchmark_group(format!("request head/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut headers = [httparse::EMPTY_HEADER; 32];
        g.bench_function("baseline: httparse", |b| {
            b.iter(|| {
                let mut req = httparse::Request::new(&mut headers);
                black_box(req.parse(black_box(bytes)).unwrap());
            })
        });
        let mut out = Request::default();
        g.bench_function("parse_request", |b| {
            b.iter(|| {
                let parsed = head::parse_request(black_box(bytes), &LIMITS, &mut out);
                assert_eq!(parsed, Ok(Parsed::Complete));
            })
        });
        g.finish();
    }
}

fn responses(c: &mut Criterion) {
    let mut g = c.benchmark_group("response head/nginx");
    g.throughput(Throughput::Bytes(NGINX_RESPONSE.len() as u64));
    let mut headers = [httparse::EMPTY_HEADER; 32];
    g.bench_function("baseline: httparse", |b| {
        b.iter(|| {
            let mut resp = httparse::Response::new(&mut headers);
            black_box(resp.parse(black_box(NGINX_RESPONSE)).unwrap());
        })
    });
    let mut out = Response::default();
    g.bench_function("parse_response", |b| {
        b.iter(|| {
            let parsed = head::parse_response(black_box(NGINX_RESPONSE), Method::Get, &mut out);
            assert_eq!(parsed, Ok(Parsed::Complete));
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
