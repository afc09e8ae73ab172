//! Question: what does one server pick (`upstream::balance::Balancer::pick`) cost, per
//! algorithm and backend size?
//!
//! Baseline: the cheapest possible pick, a plain modulo counter. Backends of 2, 16 and
//! 256 servers with mixed weights (1 to 3) and active counts (0 to 7, moving as picks are
//! made, so leastconn's answer changes); no server excluded, no hash key.
//!
//! Run: `cargo bench --bench balance` (criterion; `-- --quick` for a smoke run).

mod samples;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ringproxy::config::{Balance, HashType};
use ringproxy::upstream::balance::{Balancer, Candidate};

fn balance(c: &mut Criterion) {
    for n in [2usize, 16, 256] {
        let mut g = c.benchmark_group(format!("pick/{n} servers"));
        let mut candidates: Vec<Candidate> = (0..n)
            .map(|i| Candidate {
                weight: 1 + (i % 3) as u32,
                active: (i % 7) as u32,
                limit: None,
            })
            .collect();
        let mut k = 0usize;
        g.bench_function("baseline: modulo", |b| {
            b.iter(|| {
                k = black_box((k + 1) % n);
            })
        });
        for (name, algo) in [
            ("roundrobin", Balance::RoundRobin),
            ("leastconn", Balance::LeastConn),
        ] {
            let weights: Vec<u32> = candidates.iter().map(|c| c.weight).collect();
            let mut balancer = Balancer::new(&algo, HashType::MapBased, &weights, 0);
            g.bench_function(name, |b| {
                b.iter(|| {
                    let i = balancer
                        .pick(black_box(&candidates), |_| false, None)
                        .expect("a server");
                    candidates[i].active = candidates[i].active.wrapping_add(1) % 8;
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = samples::criterion();
    targets = balance
}
criterion_main!(benches);
