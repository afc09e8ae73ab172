//! Session limits of a shard: its share of `global.maxconn` and of each frontend's
//! `maxconn`.
//!
//! Owns one shard-local semaphore per limit (glommio's: no lock, no atomic, never leaves
//! the shard). A session holds a slot of its frontend's limit and one of the global limit
//! (its [`Admission`]) until it ends. The accept loop takes the slots
//! ([`Limits::try_admit`]) before each non-blocking `accept4`, and gives them back at once
//! when no connection was waiting: slots are never held across a wait, so an idle
//! listener holds none, and a shard never takes a connection beyond its limits. When
//! the slots are not free the loop waits until they are ([`Limits::room`], which takes
//! nothing; waiting loops are woken in the order they came). Meanwhile new connections
//! wait in the kernel's listen backlog (`runtime::sockets::LISTEN_BACKLOG`, capped by
//! `net.core.somaxconn`; past it the kernel drops SYNs and clients retry), holding neither
//! a descriptor nor memory of the proxy.
//!
//! A process-wide limit is split across shards as server `maxconn` is
//! ([`crate::upstream::shard_share`]), except that every shard gets at least one slot: a
//! shard with none would never accept, and the kernel would go on queueing the
//! connections it hashes to that shard. The price of the split is the same as for
//! servers: a busy shard does not borrow an idle shard's slots. The limits belong to a
//! generation of shards: while a reload retires the old one, its remaining sessions do
//! not count against the new one's limits.
//!
//! Invariant: a shard never has more sessions of a frontend open than its share, nor
//! more sessions in all than its global share. A wait for room ends when a slot frees or
//! when the shard begins to stop.

use std::num::NonZeroU32;
use std::rc::Rc;

use glommio::sync::{Semaphore, StaticPermit};

use super::abort::AbortHandle;
use crate::config::Config;

/// One shard's share of a process-wide session limit (at least 1).
pub fn share(total: NonZeroU32, shard: usize, shards: usize) -> u32 {
    crate::upstream::shard_share(total.get(), shard, shards).max(1)
}

/// The session limits one shard enforces; `None`: unlimited.
#[derive(Debug)]
pub struct Limits {
    global: Option<Rc<Semaphore>>,
    /// Indexed like `config.frontends`.
    frontends: Vec<Option<Rc<Semaphore>>>,
}

/// The slots one session holds; dropping it frees them (and wakes a waiting accept loop).
#[derive(Debug)]
#[must_use = "the slots are free again as soon as the admission is dropped"]
pub struct Admission {
    _frontend: Option<StaticPermit>,
    _global: Option<StaticPermit>,
}

impl Limits {
    /// Shard `shard` of `shards`: its share of every limit `config` sets.
    pub fn new(config: &Config, shard: usize, shards: usize) -> Limits {
        let semaphore = |total: Option<NonZeroU32>| -> Option<Rc<Semaphore>> {
            total.map(|t| Rc::new(Semaphore::new(share(t, shard, shards).into())))
        };
        Limits {
            global: semaphore(config.global.maxconn),
            frontends: config
                .frontends
                .iter()
                .map(|f| semaphore(f.maxconn))
                .collect(),
        }
    }

    fn of(&self, frontend: usize) -> [Option<&Rc<Semaphore>>; 2] {
        let own = self.frontends.get(frontend).and_then(Option::as_ref);
        [own, self.global.as_ref()]
    }

    /// The slots of one more session of `frontend`, if the shard is below its limits
    /// (and no accept loop waits for room before it). Never waits.
    pub fn try_admit(&self, frontend: usize) -> Option<Admission> {
        let [own, global] = self.of(frontend);
        let take = |sem: Option<&Rc<Semaphore>>| match sem {
            None => Some(None),
            Some(sem) => sem.try_acquire_static_permit(1).ok().map(Some),
        };
        // Both or neither: a frontend slot taken alone is given back when dropped here.
        let frontend = take(own)?;
        let global = take(global)?;
        Some(Admission {
            _frontend: frontend,
            _global: global,
        })
    }

    /// Completes once the shard has room for one more session of `frontend` (taking
    /// nothing): true; or once `stopping` fires: false.
    pub async fn room(&self, frontend: usize, stopping: &AbortHandle) -> bool {
        let limits = self.of(frontend);
        // Each wait may let another task fill the other limit: both are checked again.
        while !limits.iter().flatten().all(|sem| sem.available() > 0) {
            for sem in limits.iter().flatten() {
                if !free(sem, stopping).await {
                    return false;
                }
            }
        }
        true
    }
}

/// Waits until `sem` has a free slot (taking nothing); false if `stopping` fired first.
async fn free(sem: &Semaphore, stopping: &AbortHandle) -> bool {
    if sem.available() > 0 {
        return true;
    }
    futures_lite::future::or(
        async {
            // Queued like a taker, so that waiting loops see room in turn; given back at
            // once.
            if sem.acquire(1).await.is_ok() {
                sem.signal(1);
            }
            true
        },
        async {
            stopping.fired().await;
            false
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::abort::AbortSignal;
    use std::cell::Cell;
    use std::time::Duration;

    fn config(global: u32, frontend: u32) -> Config {
        let text = format!(
            "[global]\nmaxconn = {global}\n\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\n\
             backend = \"b\"\nmaxconn = {frontend}\n\n[[frontend]]\nname = \"g\"\n\
             bind = [\"127.0.0.1:0\"]\nbackend = \"b\"\n\n[[backend]]\nname = \"b\"\n"
        );
        Config::parse(&text, std::path::Path::new("t.toml")).expect("valid")
    }

    #[test]
    fn shares_add_up_and_never_fall_to_zero() {
        let n = |v| NonZeroU32::new(v).unwrap();
        assert_eq!((0..4).map(|i| share(n(10), i, 4)).sum::<u32>(), 10);
        assert_eq!(share(n(10), 0, 4), 3);
        assert_eq!(share(n(10), 3, 4), 2);
        // Fewer slots than shards: each shard still takes one.
        assert_eq!(share(n(1), 1, 4), 1);
    }

    #[test]
    fn a_full_shard_has_room_again_when_a_session_ends() {
        glommio::LocalExecutor::default().run(async {
            let limits = Rc::new(Limits::new(&config(3, 2), 0, 1));
            let signal = Rc::new(AbortSignal::default());
            let a = limits.try_admit(0).expect("room");
            let b = limits.try_admit(0).expect("room");
            // Frontend "f" is full (2), and its slot is not kept by a failed try.
            assert!(limits.try_admit(0).is_none());
            // "g" has no limit of its own but shares the global 3.
            let c = limits.try_admit(1).expect("room");
            assert!(limits.try_admit(1).is_none(), "beyond the global limit");
            let roomy = Rc::new(Cell::new(false));
            let waiting = {
                let (limits, signal, roomy) =
                    (Rc::clone(&limits), Rc::clone(&signal), Rc::clone(&roomy));
                glommio::spawn_local(async move {
                    assert!(limits.room(1, &signal.register()).await);
                    roomy.set(true);
                })
            };
            glommio::timer::sleep(Duration::from_millis(20)).await;
            assert!(!roomy.get(), "room beyond the global limit");
            drop(a);
            waiting.await;
            assert!(roomy.get());
            let d = limits.try_admit(1).expect("the freed slot");
            // Full again: a wait for room ends when the shard stops.
            let e = {
                let (limits, signal) = (Rc::clone(&limits), Rc::clone(&signal));
                glommio::spawn_local(async move { limits.room(0, &signal.register()).await })
            };
            glommio::timer::sleep(Duration::from_millis(20)).await;
            signal.fire();
            assert!(!e.await, "room while full");
            drop((b, c, d));
        });
    }

    #[test]
    fn waiting_loops_get_room_in_turn() {
        glommio::LocalExecutor::default().run(async {
            let limits = Rc::new(Limits::new(&config(1, 0), 0, 1));
            let signal = Rc::new(AbortSignal::default());
            let held = limits.try_admit(0).expect("room");
            let order = Rc::new(std::cell::RefCell::new(Vec::new()));
            let loops: Vec<_> = (0..2)
                .map(|frontend| {
                    let (limits, signal, order) =
                        (Rc::clone(&limits), Rc::clone(&signal), Rc::clone(&order));
                    glommio::spawn_local(async move {
                        assert!(limits.room(frontend, &signal.register()).await);
                        // Takes the slot at once (no wait between room and the take,
                        // as in the accept loop) and holds it a while.
                        let slot = limits.try_admit(frontend).expect("room was seen");
                        order.borrow_mut().push(frontend);
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                        drop(slot);
                    })
                })
                .collect();
            glommio::timer::sleep(Duration::from_millis(10)).await;
            drop(held);
            for l in loops {
                l.await;
            }
            assert_eq!(*order.borrow(), [0, 1]);
        });
    }

    #[test]
    fn no_limit_admits_at_once() {
        glommio::LocalExecutor::default().run(async {
            let limits = Limits::new(&config(0, 0), 0, 2);
            let signal = Rc::new(AbortSignal::default());
            let stopping = signal.register();
            let mut held = Vec::new();
            for _ in 0..1000 {
                assert!(limits.room(0, &stopping).await);
                held.push(limits.try_admit(0).expect("no limit"));
            }
        });
    }
}
