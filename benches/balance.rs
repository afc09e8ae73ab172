//! Question: what does one server pick cost, per algorithm and backend size, against the
//! cheapest possible baseline (a plain modulo counter)? Run: `cargo bench --bench balance`.
//! Plain `std::time` harness (criterion arrives with the performance issue); prints ns/pick.

use std::hint::black_box;
use std::time::Instant;

use ringproxy::config::{Balance, HashType};
use ringproxy::upstream::balance::{Balancer, Candidate};

const PICKS: u32 = 2_000_000;

fn main() {
    println!("| servers | baseline modulo ns/pick | roundrobin ns/pick | leastconn ns/pick |");
    println!("|---:|---:|---:|---:|");
    for n in [2usize, 16, 256] {
        let mut candidates: Vec<Candidate> = (0..n)
            .map(|i| Candidate {
                weight: 1 + (i % 3) as u32,
                active: (i % 7) as u32,
                limit: None,
            })
            .collect();
        let baseline = {
            let mut k = 0usize;
            let t = Instant::now();
            for _ in 0..PICKS {
                k = black_box((k + 1) % n);
            }
            t.elapsed().as_nanos() as f64 / f64::from(PICKS)
        };
        let mut per_algo = Vec::new();
        for algo in [Balance::RoundRobin, Balance::LeastConn] {
            let weights: Vec<u32> = candidates.iter().map(|c| c.weight).collect();
            let mut b = Balancer::new(&algo, HashType::MapBased, &weights, 0);
            let t = Instant::now();
            for _ in 0..PICKS {
                let i = b.pick(black_box(&candidates), |_| false, None).unwrap();
                candidates[i].active = candidates[i].active.wrapping_add(1) % 8;
            }
            per_algo.push(t.elapsed().as_nanos() as f64 / f64::from(PICKS));
        }
        println!(
            "| {n} | {baseline:.1} | {:.1} | {:.1} |",
            per_algo[0], per_algo[1]
        );
    }
}
