//! Question: what does the data path pay for statistics and the access log, per request?
//!
//! Baseline: one `Cell<u64>` addition (the cost of the cheapest counter). Against it:
//! - one push of an access-log record into the lock-free ring while a consumer thread
//!   drains it (every 200 µs, as the logger does; the share dropped is printed), and a
//!   push into a full ring (the drop path: what an overloaded logger costs a shard);
//! - recording one finished request (`ShardStats::finish`: counters, and the four
//!   histogram samples on the frontend and the server) with histograms off and on;
//! - and, once per second per shard, one snapshot of a 1-frontend, 16-server
//!   configuration with samples on every server (16 `finish` calls, `publish`, one pop).
//!
//! Run: `cargo bench --bench stats` (criterion; `-- --quick` for a smoke run).

mod samples;

use std::cell::Cell;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ringproxy::config::Config;
use ringproxy::stats::log::LogRecord;
use ringproxy::stats::ring::ring;
use ringproxy::stats::{Ender, ShardStats, Txn};

fn config(servers: usize) -> Config {
    let mut toml = String::from(
        "[global]\nshards = 1\npin = false\n\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\n\
         mode = \"http\"\nbackend = \"b\"\n\n[[backend]]\nname = \"b\"\nmode = \"http\"\n",
    );
    for i in 0..servers {
        toml.push_str(&format!(
            "\n[[backend.server]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{}\"\n",
            9000 + i
        ));
    }
    Config::parse(&toml, Path::new("bench.toml")).expect("valid")
}

fn per_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats/per request");
    let cell = Cell::new(0u64);
    g.bench_function("baseline: Cell<u64> addition", |b| {
        b.iter(|| cell.set(black_box(cell.get() + 1)))
    });

    // A log record (the largest thing pushed per request) into a drained ring.
    let (p, mut c) = ring::<LogRecord>(16 * 1024);
    let done = Arc::new(AtomicBool::new(false));
    let consumer = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut got = 0u64;
            while !done.load(Ordering::Relaxed) {
                while c.pop().is_some() {
                    got += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            while c.pop().is_some() {
                got += 1;
            }
            got
        })
    };
    let record = LogRecord::new(0);
    let mut pushes = 0u64;
    g.bench_function(
        format!(
            "ring push of a {}-byte log record, consumer draining",
            std::mem::size_of::<LogRecord>()
        ),
        |b| {
            b.iter(|| {
                pushes += 1;
                let _ = p.push(black_box(record));
            })
        },
    );
    done.store(true, Ordering::Relaxed);
    let got = consumer.join().expect("consumer");
    eprintln!(
        "ring push, consumer draining: {} of {pushes} pushes dropped ({:.1} %)",
        p.dropped(),
        100.0 * p.dropped() as f64 / pushes.max(1) as f64
    );
    assert_eq!(got + p.dropped(), pushes);

    let (p, _c) = ring::<LogRecord>(1024);
    while p.push(record).is_ok() {}
    g.bench_function("ring push into a full ring (dropped, counted)", |b| {
        b.iter(|| black_box(p.push(black_box(record))).ok())
    });

    let cfg = config(16);
    for enabled in [false, true] {
        let (publisher, _consumer) = ring(8);
        let stats = ShardStats::new(&cfg, enabled.then_some(publisher), None);
        let start = Instant::now();
        let end = start + Duration::from_micros(300);
        let mut txn = Txn::new(start);
        txn.backend = Some(0);
        txn.tw = Some(1);
        txn.tc = Some(0);
        txn.tq = Some(40);
        txn.status = 200;
        txn.bytes_in = 78;
        txn.bytes_out = 120;
        let mut i = 0u32;
        let name = if enabled {
            "finish, histograms on (8 samples)"
        } else {
            "finish, histograms off"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                txn.server = Some((i % 16) as usize);
                txn.tr = Some(u64::from(i % 5000) + 100);
                black_box(stats.finish(0, black_box(&txn), Ender::Normal, end))
            })
        });
    }
    g.finish();
}

fn per_second(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats/per second");
    let cfg = config(16);
    let shard_backends = ringproxy::upstream::shard_backends(&cfg, 0, 1);
    let (publisher, mut consumer) = ring(8);
    let stats = ShardStats::new(&cfg, Some(publisher), None);
    let mut txn = Txn::new(Instant::now());
    txn.backend = Some(0);
    let mut i = 0u64;
    g.bench_function("snapshot of 1 frontend + 16 servers with samples", |b| {
        b.iter(|| {
            i += 1;
            // Samples on every server, as after a busy second.
            for s in 0..16 {
                txn.server = Some(s);
                txn.tr = Some(i % 5000 + 1);
                stats.finish(0, &txn, Ender::Normal, Instant::now());
            }
            stats.publish(0, &shard_backends);
            black_box(consumer.pop());
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = samples::criterion();
    targets = per_request, per_second
}
criterion_main!(benches);
