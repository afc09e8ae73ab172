//! Health of one server: the rise/fall decision, its administrative state, slow start.
//!
//! Sans-IO: [`Health`] is fed check results (and passive errors) and says when the server
//! changes state; it never touches a socket or reads a clock (time comes in as `now`). The
//! owning shard of a server keeps its `Health` and sends every change to the other shards
//! as a [`Status`] (a small `Copy` value), so there is exactly one decision per server.
//!
//! The counter is HAProxy's: `health` runs from 0 to `rise + fall - 1`, and the server is
//! UP while `health >= rise`.
//! - A passed check adds one; reaching `rise` jumps to the top (fully up).
//! - A failed check takes one; falling below `rise` drops to 0 (DOWN).
//!
//! So a DOWN server needs `rise` consecutive passes to come UP, and a fully UP server needs
//! `fall` consecutive failures to go DOWN; one pass while going down restores it fully, one
//! failure while going up starts again from 0.
//!
//! A server starts UP with `health = rise` (HAProxy's default): it takes traffic at once,
//! and its first failed check marks it DOWN.
//!
//! The administrative state ([`Admin`]) is separate: MAINT takes the server out of
//! balancing, DRAIN lets it finish what it has but gives it no new sessions. Checks go
//! on in both, so when the operator puts a server back to READY it is at once in the state
//! its checks say.

use std::time::{Duration, Instant};

/// What the operator wants of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admin {
    /// Takes traffic when its checks say it is UP.
    #[default]
    Ready,
    /// No new sessions; established ones and their requests go on.
    Drain,
    /// Out of service: no traffic at all (checks still run).
    Maint,
}

impl Admin {
    /// HAProxy's runtime API names: `ready`, `drain`, `maint`.
    pub fn parse(text: &str) -> Option<Admin> {
        match text {
            "ready" => Some(Admin::Ready),
            "drain" => Some(Admin::Drain),
            "maint" => Some(Admin::Maint),
            _ => None,
        }
    }
}

/// A change of the checked state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// DOWN → UP.
    Up,
    /// UP → DOWN.
    Down,
}

/// A server's health as every shard sees it (sent from the owning shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// UP by its checks (always true for a server without checks).
    pub up: bool,
    /// 0..=rise+fall-1 (see the module docs).
    pub health: u32,
    pub rise: u32,
    pub fall: u32,
    pub admin: Admin,
    /// Whether the server is checked at all.
    pub checked: bool,
}

impl Status {
    /// A server without checks: UP, and only the operator changes it.
    pub fn unchecked() -> Status {
        Status {
            up: true,
            health: 1,
            rise: 1,
            fall: 1,
            admin: Admin::Ready,
            checked: false,
        }
    }

    /// Whether new sessions may go to the server.
    pub fn usable(&self) -> bool {
        self.up && self.admin == Admin::Ready
    }

    /// Whether sessions that already use the server may go on with it (DRAIN does; DOWN
    /// and MAINT do not).
    pub fn serves_persistent(&self) -> bool {
        self.up && self.admin != Admin::Maint
    }

    /// The state word and counter of a status line, HAProxy-style: `UP 3/3` (fully up,
    /// `fall` failures from DOWN), `UP 1/3` (going down), `DOWN 0/2`, `DOWN 1/2` (going
    /// up: passes of `rise`), `MAINT`, `DRAIN 3/3`; a server without checks shows `UP` (or
    /// its admin state) with no counter.
    pub fn describe(&self) -> String {
        let counter = if !self.checked {
            String::new()
        } else if self.up {
            format!(" {}/{}", self.health + 1 - self.rise, self.fall)
        } else {
            format!(" {}/{}", self.health, self.rise)
        };
        match (self.admin, self.up) {
            (Admin::Maint, _) => "MAINT".to_string(),
            (_, false) => format!("DOWN{counter}"),
            (Admin::Drain, true) => format!("DRAIN{counter}"),
            (Admin::Ready, true) => format!("UP{counter}"),
        }
    }
}

/// Check intervals (HAProxy's `inter`, `fastinter`, `downinter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Between checks of a server fully UP.
    pub interval: Duration,
    /// While the server is changing state (going up or going down).
    pub fast_interval: Duration,
    /// Between checks of a server fully DOWN.
    pub down_interval: Duration,
}

/// The rise/fall state of one server, kept by its owning shard.
#[derive(Debug, Clone)]
pub struct Health {
    status: Status,
    /// The next check comes at the fast interval (a passive error asked for it).
    hurry: bool,
}

impl Health {
    /// A checked server, UP and one failure away from DOWN (see the module docs).
    /// `rise` and `fall` are at least 1.
    pub fn new(rise: u32, fall: u32) -> Health {
        assert!(rise >= 1 && fall >= 1, "rise and fall are validated >= 1");
        Health {
            status: Status {
                up: true,
                health: rise,
                rise,
                fall,
                admin: Admin::Ready,
                checked: true,
            },
            hurry: false,
        }
    }

    /// A server without checks: UP; only the operator changes its state.
    pub fn unchecked() -> Health {
        Health {
            status: Status::unchecked(),
            hurry: false,
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    fn top(&self) -> u32 {
        self.status.rise + self.status.fall - 1
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn record(&mut self, passed: bool) -> Option<Transition> {
        self.hurry = false;
        let was_up = self.status.up;
        let top = self.top();
        let s = &mut self.status;
        if passed {
            if s.health < top {
                s.health += 1;
                if s.health >= s.rise {
                    s.health = top;
                }
            }
        } else if s.health > 0 {
            s.health -= 1;
            if s.health < s.rise {
                s.health = 0;
            }
        }
        s.up = s.health >= s.rise;
        match (was_up, s.up) {
            (false, true) => Some(Transition::Up),
            (true, false) => Some(Transition::Down),
            _ => None,
        }
    }

    /// Applies a passive error verdict (live traffic reached `error_limit` consecutive
    /// errors) as `on_error` says.
    pub fn observe_errors(&mut self, on_error: OnError) -> Option<Transition> {
        match on_error {
            OnError::FastInter => {
                self.hurry = true;
                None
            }
            OnError::FailCheck => self.record(false),
            OnError::SuddenDeath => {
                // One more failure and it is DOWN.
                if self.status.up {
                    self.status.health = self.status.rise;
                }
                self.hurry = true;
                None
            }
            OnError::MarkDown => {
                let was_up = self.status.up;
                self.status.health = 0;
                self.status.up = false;
                was_up.then_some(Transition::Down)
            }
        }
    }

    /// Sets the administrative state; returns whether it changed.
    pub fn set_admin(&mut self, admin: Admin) -> bool {
        let changed = self.status.admin != admin;
        self.status.admin = admin;
        changed
    }

    /// Time until the next check: `interval` when fully UP, `down_interval` when fully
    /// DOWN, `fast_interval` in between (and after a passive error asked to hurry).
    pub fn next_interval(&self, i: &Intervals) -> Duration {
        if self.hurry {
            i.fast_interval
        } else if self.status.health == self.top() {
            i.interval
        } else if self.status.health == 0 {
            i.down_interval
        } else {
            i.fast_interval
        }
    }
}

/// What reaching `error_limit` consecutive errors on live traffic does (`on_error`,
/// HAProxy's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Check again soon, at `fast_interval`.
    FastInter,
    /// Count as one failed check (toward `fall`).
    FailCheck,
    /// Leave the server one failed check away from DOWN.
    SuddenDeath,
    /// Mark it DOWN at once.
    MarkDown,
}

/// A server's effective share while it ramps up after coming back (`slowstart`): `full`
/// scaled by the time since it came up over `slowstart`, rounded up and at least 1 (a
/// server that is UP takes some traffic); `full` once the ramp is over, and 0 stays 0.
pub fn ramp(full: u32, since: Instant, now: Instant, slowstart: Duration) -> u32 {
    let elapsed = now.saturating_duration_since(since);
    if full == 0 || slowstart.is_zero() || elapsed >= slowstart {
        return full;
    }
    let scaled = u128::from(full) * elapsed.as_nanos();
    let total = slowstart.as_nanos();
    let share = scaled.div_ceil(total);
    (share as u32).clamp(1, full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(h: &mut Health, results: &[bool]) -> Vec<Option<Transition>> {
        results.iter().map(|&r| h.record(r)).collect()
    }

    #[test]
    fn starts_up_and_one_failure_marks_it_down() {
        let mut h = Health::new(2, 3);
        assert!(h.status().up);
        assert_eq!(h.status().describe(), "UP 1/3");
        assert_eq!(h.record(false), Some(Transition::Down));
        assert_eq!(h.status().describe(), "DOWN 0/2");
    }

    #[test]
    fn fully_up_needs_fall_failures_and_one_pass_restores_it() {
        let mut h = Health::new(2, 3);
        h.record(true);
        assert_eq!(h.status().describe(), "UP 3/3");
        assert_eq!(run(&mut h, &[false, false]), vec![None, None]);
        assert_eq!(h.status().describe(), "UP 1/3");
        assert_eq!(h.record(true), None);
        assert_eq!(h.status().describe(), "UP 3/3", "one pass: fully up again");
        assert_eq!(
            run(&mut h, &[false, false, false]),
            vec![None, None, Some(Transition::Down)]
        );
    }

    #[test]
    fn down_needs_rise_passes_and_a_failure_starts_over() {
        let mut h = Health::new(3, 2);
        h.record(false);
        assert_eq!(run(&mut h, &[true, true]), vec![None, None]);
        assert_eq!(h.status().describe(), "DOWN 2/3");
        assert_eq!(h.record(false), None);
        assert_eq!(h.status().describe(), "DOWN 0/3", "going up starts over");
        assert_eq!(
            run(&mut h, &[true, true, true]),
            vec![None, None, Some(Transition::Up)]
        );
        assert_eq!(h.status().describe(), "UP 2/2");
    }

    #[test]
    fn rise_and_fall_of_one_flip_on_every_change() {
        let mut h = Health::new(1, 1);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), Some(Transition::Down));
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), Some(Transition::Up));
    }

    #[test]
    fn intervals_follow_the_state() {
        let i = Intervals {
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_millis(500),
            down_interval: Duration::from_secs(5),
        };
        let mut h = Health::new(2, 3);
        assert_eq!(
            h.next_interval(&i),
            i.fast_interval,
            "starting: not fully up"
        );
        h.record(true);
        assert_eq!(h.next_interval(&i), i.interval);
        h.record(false);
        assert_eq!(h.next_interval(&i), i.fast_interval, "going down");
        h.record(false);
        h.record(false);
        assert_eq!(h.next_interval(&i), i.down_interval, "fully down");
        h.record(true);
        assert_eq!(h.next_interval(&i), i.fast_interval, "going up");
    }

    #[test]
    fn admin_states_and_usability() {
        let mut h = Health::new(2, 2);
        h.record(true);
        assert!(h.status().usable());
        assert!(h.set_admin(Admin::Drain));
        assert!(!h.status().usable());
        assert_eq!(h.status().describe(), "DRAIN 2/2");
        assert!(h.set_admin(Admin::Maint));
        assert_eq!(h.status().describe(), "MAINT");
        assert!(!h.set_admin(Admin::Maint), "no change");
        // Checks go on in MAINT: back to READY, the server is what its checks say.
        h.record(false);
        h.record(false);
        h.set_admin(Admin::Ready);
        assert_eq!(h.status().describe(), "DOWN 0/2");
        assert!(!h.status().usable());
        assert_eq!(Status::unchecked().describe(), "UP");
    }

    #[test]
    fn passive_errors_follow_on_error() {
        let i = Intervals {
            interval: Duration::from_secs(2),
            fast_interval: Duration::from_millis(100),
            down_interval: Duration::from_secs(2),
        };
        let mut h = Health::new(2, 3);
        h.record(true);
        assert_eq!(h.observe_errors(OnError::FastInter), None);
        assert_eq!(h.next_interval(&i), i.fast_interval);
        assert!(h.status().up);
        h.record(true);
        assert_eq!(h.next_interval(&i), i.interval, "a check clears the hurry");

        assert_eq!(h.observe_errors(OnError::FailCheck), None);
        assert_eq!(h.status().describe(), "UP 2/3");

        assert_eq!(h.observe_errors(OnError::SuddenDeath), None);
        assert_eq!(h.status().describe(), "UP 1/3");
        assert_eq!(h.record(false), Some(Transition::Down));

        let mut h = Health::new(2, 3);
        assert_eq!(h.observe_errors(OnError::MarkDown), Some(Transition::Down));
        assert_eq!(h.observe_errors(OnError::MarkDown), None, "already down");
    }

    #[test]
    fn slowstart_ramps_from_one_to_full() {
        let t0 = Instant::now();
        let ss = Duration::from_secs(30);
        assert_eq!(ramp(10, t0, t0, ss), 1, "just up: at least 1");
        assert_eq!(ramp(10, t0, t0 + Duration::from_secs(15), ss), 5);
        assert_eq!(
            ramp(10, t0, t0 + Duration::from_secs(16), ss),
            6,
            "rounded up"
        );
        assert_eq!(ramp(10, t0, t0 + Duration::from_secs(30), ss), 10);
        assert_eq!(ramp(10, t0, t0 + Duration::from_secs(300), ss), 10);
        assert_eq!(ramp(0, t0, t0 + Duration::from_secs(15), ss), 0);
        assert_eq!(ramp(7, t0, t0, Duration::ZERO), 7, "no slowstart");
        // Monotonic over the ramp.
        let mut last = 0;
        for s in 0..=30 {
            let w = ramp(256, t0, t0 + Duration::from_secs(s), ss);
            assert!(w >= last);
            last = w;
        }
        assert_eq!(last, 256);
    }

    proptest! {
        /// Whatever the sequence of results: the counter stays in range, UP means
        /// `health >= rise`, a transition is reported exactly when `up` flips, and the
        /// state after `rise` passes in a row is UP and after `fall` failures in a row
        /// is DOWN.
        #[test]
        fn counter_invariants(rise in 1u32..6, fall in 1u32..6,
                              results in proptest::collection::vec(any::<bool>(), 0..80)) {
            let mut h = Health::new(rise, fall);
            let mut run_pass = 0u32;
            let mut run_fail = 0u32;
            for r in results {
                let before = h.status().up;
                let t = h.record(r);
                let s = h.status();
                prop_assert!(s.health < rise + fall);
                prop_assert_eq!(s.up, s.health >= rise);
                match t {
                    Some(Transition::Up) => prop_assert!(!before && s.up),
                    Some(Transition::Down) => prop_assert!(before && !s.up),
                    None => prop_assert_eq!(before, s.up),
                }
                if r { run_pass += 1; run_fail = 0 } else { run_fail += 1; run_pass = 0 }
                if run_pass >= rise { prop_assert!(s.up) }
                if run_fail >= fall { prop_assert!(!s.up) }
                // A single failure never takes a fully up server down unless fall is 1.
            }
        }

        /// Slow start never exceeds the full weight, never gives 0 to a nonzero weight.
        #[test]
        fn ramp_bounds(full in 0u32..1000, ms in 0u64..60_000, ss_ms in 0u64..60_000) {
            let t0 = Instant::now();
            let w = ramp(full, t0, t0 + Duration::from_millis(ms), Duration::from_millis(ss_ms));
            prop_assert!(w <= full);
            prop_assert_eq!(w == 0, full == 0);
        }
    }
}
