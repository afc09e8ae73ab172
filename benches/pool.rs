//! Question: what does a request pay to take an idle server connection from its pool and
//! give it back (`upstream::pool::IdlePool::checkout` then `checkin`: the reuse policy,
//! the TLS-identity predicate, the soft and hard bounds), against the bare container?
//!
//! Baseline: `pop_back` then `push_back` of the same `Idle` record on a `VecDeque`, the
//! pool's own storage. The connection type is a plain `u32` (the pool never looks inside
//! it), `now` is read once outside the loop, and the pool holds 1 or 64 connections
//! (checkout takes the newest, so the depth should not matter).
//!
//! Run: `cargo bench --bench pool` (criterion; `-- --quick` for a smoke run).

mod samples;

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use ringproxy::config::default::POOL_MAX_IDLE;
use ringproxy::upstream::pool::{Idle, IdlePool, Want};

fn pool(c: &mut Criterion) {
    let now = Instant::now();
    for depth in [1u32, 64] {
        let mut g = c.benchmark_group(format!("pool/{depth} idle"));
        let mut deque: VecDeque<Idle<u32>> = (0..depth)
            .map(|conn| Idle {
                conn,
                since: now,
                uses: 2,
            })
            .collect();
        g.bench_function("baseline: VecDeque pop_back + push_back", |b| {
            b.iter(|| {
                let idle = deque.pop_back().expect("not empty");
                deque.push_back(Idle {
                    conn: black_box(idle.conn),
                    since: now,
                    uses: idle.uses + 1,
                });
            })
        });
        let mut pool = IdlePool::default();
        for conn in 0..depth {
            assert!(pool.checkin(conn, 2, now, POOL_MAX_IDLE).is_none());
        }
        g.bench_function("checkout + checkin", |b| {
            b.iter(|| {
                let idle = pool
                    .checkout(black_box(Want::Any), |_| true)
                    .expect("not empty");
                let evicted = pool.checkin(black_box(idle.conn), idle.uses + 1, now, POOL_MAX_IDLE);
                black_box(evicted);
            })
        });
        assert_eq!(pool.len(), depth as usize);
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = samples::criterion();
    targets = pool
}
criterion_main!(benches);
