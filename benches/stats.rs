//! Questions: what does the data path pay for statistics and the access log, per request?
//! - one push into the lock-free ring while a consumer thread drains it, against a
//!   baseline of one `Cell` addition, and a push into a full ring (the drop path: what
//!   an overloaded logger costs a shard);
//! - recording one finished request (`ShardStats::finish`: counters, and the four
//!   histogram samples on the frontend and the server) with histograms on and off;
//! - one snapshot of a 1-frontend, 16-server configuration (once per second per shard).
//!
//! Run: `cargo bench --bench stats`. Plain `std::time` harness; prints ns per operation.

use std::cell::Cell;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringproxy::config::Config;
use ringproxy::stats::log::LogRecord;
use ringproxy::stats::ring::ring;
use ringproxy::stats::{Ender, ShardStats, Txn};

const N: u32 = 2_000_000;

fn per_op(t: Instant, n: u32) -> f64 {
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

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

fn main() {
    println!("| operation | ns/op |");
    println!("|---|---:|");

    let cell = Cell::new(0u64);
    let t = Instant::now();
    for i in 0..N {
        cell.set(black_box(cell.get() + u64::from(i)));
    }
    println!("| baseline: one Cell<u64> addition | {:.2} |", per_op(t, N));

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
    let t = Instant::now();
    for _ in 0..N {
        let _ = p.push(black_box(record));
    }
    let push = per_op(t, N);
    done.store(true, Ordering::Relaxed);
    let got = consumer.join().unwrap();
    println!(
        "| ring push of a {}-byte log record, consumer draining ({} dropped of {N}) | {push:.2} |",
        std::mem::size_of::<LogRecord>(),
        u64::from(N) - got
    );

    let (p, _c) = ring::<LogRecord>(1024);
    while p.push(record).is_ok() {}
    let t = Instant::now();
    for _ in 0..N {
        let _ = black_box(p.push(black_box(record)));
    }
    println!(
        "| ring push into a full ring (dropped and counted) | {:.2} |",
        per_op(t, N)
    );

    let cfg = config(16);
    for enabled in [false, true] {
        let (publisher, _consumer) = ring(8);
        let stats = ShardStats::new(&cfg, enabled.then_some(publisher), None);
        let start = Instant::now();
        let mut txn = Txn::new(start);
        txn.backend = Some(0);
        txn.tw = Some(1);
        txn.tc = Some(0);
        txn.tq = Some(40);
        txn.status = 200;
        txn.bytes_in = 78;
        txn.bytes_out = 120;
        let t = Instant::now();
        for i in 0..N {
            txn.server = Some((i % 16) as usize);
            txn.tr = Some(u64::from(i % 5000) + 100);
            black_box(stats.finish(
                0,
                black_box(&txn),
                Ender::Normal,
                start + Duration::from_micros(300),
            ));
        }
        println!(
            "| record one finished request, histograms {} | {:.2} |",
            if enabled { "on (8 samples)" } else { "off" },
            per_op(t, N)
        );
    }

    let shard_backends = ringproxy::upstream::shard_backends(&cfg, 0, 1);
    let (publisher, mut consumer) = ring(8);
    let stats = ShardStats::new(&cfg, Some(publisher), None);
    let mut txn = Txn::new(Instant::now());
    txn.backend = Some(0);
    const SNAPSHOTS: u32 = 2000;
    let t = Instant::now();
    for i in 0..SNAPSHOTS {
        // Samples on every server, as after a busy second.
        for s in 0..16 {
            txn.server = Some(s);
            txn.tr = Some(u64::from(i) + 1);
            stats.finish(0, &txn, Ender::Normal, Instant::now());
        }
        stats.publish(0, &shard_backends);
        black_box(consumer.pop());
    }
    println!(
        "| snapshot of 1 frontend + 16 servers with samples (per second per shard) | {:.0} |",
        per_op(t, SNAPSHOTS)
    );
}
