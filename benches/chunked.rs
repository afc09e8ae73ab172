//! Question: what does reading a chunked body with `http::chunked::Decoder` (strict,
//! incremental, byte by byte through the framing) cost, per body, when the proxy forwards
//! it as received?
//!
//! Baselines, on the same bytes into the same reused output vector: the least a chunked
//! reader must do (find each size line with `memchr`, parse the size, copy the payload
//! and skip the CRLF; no validation), and one `extend_from_slice` of the whole body (what
//! a `Content-Length` body of the same bytes costs). The decoder's loop is the one of
//! `http::body::forward` in pass-through: every piece, framing included, is copied out.
//! Bodies: 64 chunks of 16 bytes (streamed JSON lines: framing-heavy) and 4 chunks of
//! 16 KiB (a file sent chunked: payload-heavy).
//!
//! Run: `cargo bench --bench chunked` (criterion; `-- --quick` for a smoke run).

mod samples;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringproxy::http::chunked::{Decoder, Piece};

/// A chunked body of `chunks` chunks of `size` bytes, then the last chunk.
fn body(chunks: usize, size: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..chunks {
        b.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        b.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, size));
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"0\r\n\r\n");
    b
}

/// Forwards `body` as received, piece by piece; returns the bytes consumed.
fn decode(body: &[u8], out: &mut Vec<u8>) -> usize {
    let mut d = Decoder::default();
    let mut pos = 0;
    while let Some(piece) = d.step(&body[pos..]).expect("valid body") {
        let n = match piece {
            Piece::Data(n) | Piece::Framing(n) | Piece::End(n) => n,
        };
        out.extend_from_slice(&body[pos..pos + n]);
        pos += n;
        if d.is_done() {
            break;
        }
    }
    pos
}

/// The baseline reader: trusts the framing, copies the payload.
fn scan(body: &[u8], out: &mut Vec<u8>) -> usize {
    let mut pos = 0;
    loop {
        let lf = pos + memchr::memchr(b'\n', &body[pos..]).expect("size line");
        let size = body[pos..lf - 1].iter().fold(0usize, |n, &b| {
            n << 4 | (b as char).to_digit(16).expect("hex") as usize
        });
        pos = lf + 1;
        if size == 0 {
            return pos + 2;
        }
        out.extend_from_slice(&body[pos..pos + size]);
        pos += size + 2;
    }
}

fn chunked(c: &mut Criterion) {
    for (name, chunks, size) in [("64 x 16 B", 64, 16), ("4 x 16 KiB", 4, 16 * 1024)] {
        let body = body(chunks, size);
        let mut out = Vec::with_capacity(body.len());
        assert_eq!(decode(&body, &mut out), body.len());
        out.clear();
        assert_eq!(scan(&body, &mut out), body.len());

        let mut g = c.benchmark_group(format!("chunked body/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("baseline: copy", |b| {
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(&body));
                black_box(&out);
            })
        });
        g.bench_function("baseline: memchr + copy payload", |b| {
            b.iter(|| {
                out.clear();
                black_box(scan(black_box(&body), &mut out));
            })
        });
        g.bench_function("Decoder::step, pass-through", |b| {
            b.iter(|| {
                out.clear();
                black_box(decode(black_box(&body), &mut out));
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = samples::criterion();
    targets = chunked
}
criterion_main!(benches);
