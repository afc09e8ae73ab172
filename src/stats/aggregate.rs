//! The control thread's sums of every shard's statistics.
//!
//! Owns the aggregation: the latest counters of each shard (running totals, so that a
//! dropped snapshot loses nothing), the cumulative histograms per entity, and the
//! *recent* window (the last interval of every shard), from which it computes a [`View`]:
//! totals, peaks, rates and percentiles, ready to render. It runs on the control thread
//! only; shards reach it through their rings.
//!
//! A tick closes the recent window once every shard has reported since the previous tick
//! (so the window holds one interval of each shard, whatever their phase), or after two
//! intervals if a shard is late.

use std::time::{Duration, Instant};

use super::ring::Consumer;
use super::{Fe, Phase, Sample, Snapshot, Sv, Timers};

/// Percentiles and the rest of one phase's samples, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub sum_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Summary {
    fn of(timers: Option<&Timers>, phase: Phase) -> Summary {
        let Some(t) = timers else {
            return Summary::default();
        };
        let h = t.histogram(phase);
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            sum_us: t.sum_us(phase),
            mean_us: t.sum_us(phase) as f64 / h.len() as f64,
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    /// The quantiles rendered, as (quantile, microseconds).
    pub fn quantiles(&self) -> [(&'static str, u64); 4] {
        [
            ("0.5", self.p50_us),
            ("0.9", self.p90_us),
            ("0.99", self.p99_us),
            ("0.999", self.p999_us),
        ]
    }
}

/// One phase: since the start, and over the last interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseView {
    pub total: Summary,
    pub recent: Summary,
}

/// An entity (frontend, backend or server) summed over every shard.
#[derive(Debug, Clone)]
pub struct EntityView<const N: usize> {
    pub values: [u64; N],
    pub max_sessions: u64,
    /// Per second over the last tick: sessions (frontends) and requests.
    pub session_rate: f64,
    pub request_rate: f64,
    /// Indexed by [`Phase`].
    pub timers: [PhaseView; 4],
}

impl<const N: usize> Default for EntityView<N> {
    fn default() -> Self {
        EntityView {
            values: [0; N],
            max_sessions: 0,
            session_rate: 0.0,
            request_rate: 0.0,
            timers: Default::default(),
        }
    }
}

pub type FeView = EntityView<{ Fe::COUNT }>;
pub type SvView = EntityView<{ Sv::COUNT }>;

#[derive(Debug, Clone, Default)]
pub struct BackendView {
    pub sums: SvView,
    pub max_queue: u64,
    pub servers: Vec<SvView>,
}

/// Everything summed, as of the last tick.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub frontends: Vec<FeView>,
    pub backends: Vec<BackendView>,
    /// Snapshots and access log records dropped by full rings, all shards.
    pub dropped: u64,
    pub log_dropped: u64,
    /// Ticks so far.
    pub ticks: u64,
}

/// Histograms of one entity: since the start, being collected, and the last window.
#[derive(Default)]
struct Acc {
    total: Option<Box<Timers>>,
    pending: Option<Box<Timers>>,
    recent: Option<Box<Timers>>,
}

impl Acc {
    fn add(&mut self, t: &Timers) {
        self.total.get_or_insert_with(Default::default).add(t);
        self.pending.get_or_insert_with(Default::default).add(t);
    }

    /// Closes the window: the samples collected become the recent ones.
    fn roll(&mut self) {
        std::mem::swap(&mut self.recent, &mut self.pending);
        if let Some(p) = self.pending.as_mut() {
            p.reset();
        }
    }

    fn view(&self) -> [PhaseView; 4] {
        Phase::ALL.map(|p| PhaseView {
            total: Summary::of(self.total.as_deref(), p),
            recent: Summary::of(self.recent.as_deref(), p),
        })
    }
}

/// The control thread's aggregation of every shard's snapshots.
pub struct Aggregator {
    rings: Vec<Consumer<Snapshot>>,
    /// Each shard's latest counters (its histograms are taken into `acc`).
    latest: Vec<Option<Snapshot>>,
    fe: Vec<Acc>,
    /// Per backend: the backend's sums, then each server.
    be: Vec<(Acc, Vec<Acc>)>,
    /// Shards heard from since the last tick.
    reported: Vec<bool>,
    interval: Duration,
    last_tick: Instant,
    view: View,
}

impl Aggregator {
    /// `servers[b]`: how many servers backend `b` has.
    pub fn new(
        rings: Vec<Consumer<Snapshot>>,
        frontends: usize,
        servers: &[usize],
        interval: Duration,
    ) -> Aggregator {
        let shards = rings.len();
        let view = View {
            frontends: vec![FeView::default(); frontends],
            backends: servers
                .iter()
                .map(|&n| BackendView {
                    servers: vec![SvView::default(); n],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Aggregator {
            rings,
            latest: (0..shards).map(|_| None).collect(),
            fe: (0..frontends).map(|_| Acc::default()).collect(),
            be: servers
                .iter()
                .map(|&n| (Acc::default(), (0..n).map(|_| Acc::default()).collect()))
                .collect(),
            reported: vec![false; shards],
            interval,
            last_tick: Instant::now(),
            view,
        }
    }

    /// The sums as of the last tick.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Takes what the shards published; ticks when the window is complete. Returns
    /// whether it ticked.
    pub fn poll(&mut self, now: Instant) -> bool {
        for i in 0..self.rings.len() {
            while let Some(s) = self.rings[i].pop() {
                self.take(s);
            }
        }
        let all = !self.reported.is_empty() && self.reported.iter().all(|&r| r);
        let late = now.saturating_duration_since(self.last_tick) >= 2 * self.interval;
        if all || late {
            self.tick(now);
            return true;
        }
        false
    }

    /// Folds one snapshot in: its histograms into the accumulators, its counters as the
    /// shard's latest.
    fn take(&mut self, mut s: Snapshot) {
        let Some(shard) = self.latest.get(s.shard).map(|_| s.shard) else {
            return;
        };
        for (acc, f) in self.fe.iter_mut().zip(&mut s.frontends) {
            if let Some(t) = f.timers.take() {
                acc.add(&t);
            }
        }
        for ((acc, servers), b) in self.be.iter_mut().zip(&mut s.backends) {
            if let Some(t) = b.own.timers.take() {
                acc.add(&t);
            }
            for (sacc, sv) in servers.iter_mut().zip(&mut b.servers) {
                if let Some(t) = sv.timers.take() {
                    acc.add(&t);
                    sacc.add(&t);
                }
            }
        }
        self.reported[shard] = true;
        self.latest[shard] = Some(s);
    }

    fn tick(&mut self, now: Instant) {
        let secs = now
            .saturating_duration_since(self.last_tick)
            .as_secs_f64()
            .max(1e-3);
        self.last_tick = now;
        self.reported.iter_mut().for_each(|r| *r = false);
        let latest: Vec<&Snapshot> = self.latest.iter().flatten().collect();
        let view = &mut self.view;
        view.ticks += 1;
        view.dropped = latest.iter().map(|s| s.dropped).sum();
        view.log_dropped = latest.iter().map(|s| s.log_dropped).sum();

        for (i, acc) in self.fe.iter_mut().enumerate() {
            acc.roll();
            let samples = latest.iter().filter_map(|s| s.frontends.get(i));
            let v = &mut view.frontends[i];
            let before = (
                v.values[Fe::Sessions as usize],
                v.values[Fe::Requests as usize],
            );
            sum_into(v, samples, Fe::CurrentSessions as usize);
            v.session_rate = rate(v.values[Fe::Sessions as usize], before.0, secs);
            v.request_rate = rate(v.values[Fe::Requests as usize], before.1, secs);
            v.timers = acc.view();
        }
        for (b, (acc, server_accs)) in self.be.iter_mut().enumerate() {
            acc.roll();
            let bv = &mut view.backends[b];
            let before = bv.sums.values[Sv::Requests as usize];
            let own = latest
                .iter()
                .filter_map(|s| s.backends.get(b))
                .map(|b| &b.own);
            sum_into(&mut bv.sums, own, Sv::CurrentSessions as usize);
            let shard_max_queue = latest
                .iter()
                .filter_map(|s| s.backends.get(b))
                .map(|b| b.max_queue)
                .max()
                .unwrap_or(0);
            let mut current = bv.sums.values[Sv::CurrentSessions as usize];
            let mut peak = 0;
            for (i, sacc) in server_accs.iter_mut().enumerate() {
                sacc.roll();
                let samples = latest
                    .iter()
                    .filter_map(|s| s.backends.get(b)?.servers.get(i));
                let sv = &mut bv.servers[i];
                let before = sv.values[Sv::Requests as usize];
                sum_into(sv, samples, Sv::CurrentSessions as usize);
                sv.request_rate = rate(sv.values[Sv::Requests as usize], before, secs);
                sv.timers = sacc.view();
                for (t, s) in bv.sums.values.iter_mut().zip(&sv.values) {
                    *t += s;
                }
                current += sv.values[Sv::CurrentSessions as usize];
                peak = peak.max(sv.max_sessions);
            }
            bv.sums.values[Sv::CurrentSessions as usize] = current;
            bv.sums.max_sessions = bv.sums.max_sessions.max(current).max(peak);
            let queue = bv.sums.values[Sv::CurrentQueue as usize];
            bv.max_queue = bv.max_queue.max(queue).max(shard_max_queue);
            bv.sums.request_rate = rate(bv.sums.values[Sv::Requests as usize], before, secs);
            bv.sums.timers = acc.view();
        }
    }
}

/// Sets `view.values` to the sum of `samples`, and its peak of sessions to the highest
/// of: the previous peak, the sum now, and any one shard's own peak.
fn sum_into<'a, const N: usize>(
    view: &mut EntityView<N>,
    samples: impl Iterator<Item = &'a Sample<N>>,
    current: usize,
) {
    let mut values = [0u64; N];
    let mut peak = 0;
    for s in samples {
        for (t, v) in values.iter_mut().zip(&s.values) {
            *t += v;
        }
        peak = peak.max(s.max_sessions);
    }
    view.values = values;
    view.max_sessions = view.max_sessions.max(values[current]).max(peak);
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs
}

#[cfg(test)]
mod tests {
    use super::super::ring::ring;
    use super::super::{BackendSample, FeSample, SvSample};
    use super::*;

    fn snapshot(shard: usize, requests: u64, sample_us: Option<u64>) -> Snapshot {
        let mut fe = FeSample::default();
        fe.values[Fe::Requests as usize] = requests;
        let mut sv = SvSample::default();
        sv.values[Sv::Requests as usize] = requests;
        sv.values[Sv::CurrentSessions as usize] = 1;
        sv.max_sessions = 3;
        if let Some(us) = sample_us {
            let mut t = Timers::default();
            t.record(Phase::Total, us);
            sv.timers = Some(Box::new(t));
        }
        Snapshot {
            shard,
            frontends: vec![fe],
            backends: vec![BackendSample {
                own: SvSample::default(),
                servers: vec![sv],
                max_queue: 0,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn sums_shards_and_ticks_when_every_shard_reported() {
        let (p0, c0) = ring(4);
        let (p1, c1) = ring(4);
        let mut agg = Aggregator::new(vec![c0, c1], 1, &[1], Duration::from_secs(1));
        let t0 = Instant::now();
        p0.push(snapshot(0, 10, Some(1000))).unwrap();
        assert!(!agg.poll(t0), "shard 1 has not reported");
        p1.push(snapshot(1, 5, Some(3000))).unwrap();
        assert!(agg.poll(t0 + Duration::from_millis(500)));
        let v = agg.view();
        assert_eq!(v.frontends[0].values[Fe::Requests as usize], 15);
        let b = &v.backends[0];
        assert_eq!(b.servers[0].values[Sv::Requests as usize], 15);
        assert_eq!(b.sums.values[Sv::Requests as usize], 15);
        assert_eq!(b.sums.values[Sv::CurrentSessions as usize], 2);
        assert_eq!(b.servers[0].max_sessions, 3);
        let total = b.servers[0].timers[Phase::Total as usize];
        assert_eq!(total.total.count, 2);
        assert_eq!(total.recent.count, 2);
        assert_eq!(b.sums.timers[Phase::Total as usize].total.sum_us, 4000);

        // Next window: only shard 0 had traffic; totals are running totals.
        p0.push(snapshot(0, 12, None)).unwrap();
        p1.push(snapshot(1, 5, None)).unwrap();
        assert!(agg.poll(t0 + Duration::from_millis(1500)));
        let v = agg.view();
        assert_eq!(v.frontends[0].values[Fe::Requests as usize], 17);
        let total = v.backends[0].servers[0].timers[Phase::Total as usize];
        assert_eq!(total.total.count, 2);
        assert_eq!(total.recent.count, 0);
        assert!((v.backends[0].servers[0].request_rate - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_late_shard_does_not_stop_the_ticks() {
        let (p0, c0) = ring(4);
        let (_p1, c1) = ring::<Snapshot>(4);
        let mut agg = Aggregator::new(vec![c0, c1], 1, &[1], Duration::from_secs(1));
        let t0 = Instant::now();
        p0.push(snapshot(0, 1, None)).unwrap();
        assert!(!agg.poll(t0 + Duration::from_millis(100)));
        assert!(agg.poll(t0 + Duration::from_secs(3)));
        assert_eq!(agg.view().frontends[0].values[Fe::Requests as usize], 1);
    }
}
