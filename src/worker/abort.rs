//! A shard-local "stop now" signal that every session watches.
//!
//! Owns the wakers of the sessions registered with it. Firing it wakes every one of them;
//! a session sees it on its next poll and ends. Used when the grace period after a stop is
//! over and when a stop begins (idle http keep-alive connections close at once).
//! [`KillSignal`] is its re-armable sibling, one per server, that closes the sessions of a
//! server marked down (`on_marked_down = "shutdown-sessions"`). Single-threaded by
//! construction (`Rc`, `Cell`): it never leaves its shard. A registration costs one slot,
//! reused after the session ends: the waker table is bounded by the number of concurrent
//! sessions.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Waker};

#[derive(Debug, Default)]
pub struct AbortSignal {
    fired: Cell<bool>,
    /// Slot `i` holds the waker of registration `i` (None: free or not yet polled).
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl AbortSignal {
    /// Registers a session; dropping the returned handle unregisters it.
    pub fn register(self: &Rc<Self>) -> AbortHandle {
        let slot = match self.free.borrow_mut().pop() {
            Some(slot) => slot,
            None => {
                let mut w = self.wakers.borrow_mut();
                w.push(None);
                w.len() - 1
            }
        };
        AbortHandle {
            signal: Rc::clone(self),
            slot,
        }
    }

    /// Fires the signal: every registered session is woken and will see it.
    pub fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Waker> = self
            .wakers
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }
}

/// One session's registration with an [`AbortSignal`].
#[derive(Debug)]
pub struct AbortHandle {
    signal: Rc<AbortSignal>,
    slot: usize,
}

impl AbortHandle {
    /// True once the signal has fired; otherwise remembers `cx`'s waker to be woken then.
    pub fn poll_fired(&self, cx: &Context<'_>) -> bool {
        if self.signal.fired.get() {
            return true;
        }
        let mut wakers = self.signal.wakers.borrow_mut();
        let entry = &mut wakers[self.slot];
        if !entry.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *entry = Some(cx.waker().clone());
        }
        false
    }
}

impl AbortHandle {
    /// Completes once the signal has fired.
    pub async fn fired(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.poll_fired(cx) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// Sleeps for `d`, or less if the signal fires: true when it fired.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        futures_lite::future::or(
            async {
                glommio::timer::sleep(d).await;
                false
            },
            async {
                self.fired().await;
                true
            },
        )
        .await
    }
}

impl Drop for AbortHandle {
    fn drop(&mut self) {
        self.signal.wakers.borrow_mut()[self.slot] = None;
        self.signal.free.borrow_mut().push(self.slot);
    }
}

/// A re-armable "close the sessions registered now" signal: one per server per shard, for
/// `on_marked_down = "shutdown-sessions"` and the runtime API's `shutdown sessions`.
///
/// Unlike [`AbortSignal`] it does not latch: [`KillSignal::kill_registered`] ends the
/// sessions registered at that moment, and sessions registered later are not affected.
/// A registration is a slot index; [`KillRegistration`] unregisters it when dropped.
#[derive(Debug, Default)]
pub struct KillSignal {
    slots: RefCell<Vec<KillSlot>>,
    free: RefCell<Vec<usize>>,
}

#[derive(Debug, Default)]
struct KillSlot {
    in_use: bool,
    killed: bool,
    waker: Option<Waker>,
}

impl KillSignal {
    /// A new registration; its slot is reused once unregistered.
    pub fn register(&self) -> usize {
        let mut slots = self.slots.borrow_mut();
        let slot = match self.free.borrow_mut().pop() {
            Some(slot) => slot,
            None => {
                slots.push(KillSlot::default());
                slots.len() - 1
            }
        };
        slots[slot] = KillSlot {
            in_use: true,
            killed: false,
            waker: None,
        };
        slot
    }

    pub fn unregister(&self, slot: usize) {
        let mut slots = self.slots.borrow_mut();
        debug_assert!(slots[slot].in_use, "slot {slot} unregistered twice");
        slots[slot] = KillSlot::default();
        self.free.borrow_mut().push(slot);
    }

    /// True once the registration was killed; otherwise remembers `cx`'s waker.
    pub fn poll_killed(&self, slot: usize, cx: &Context<'_>) -> bool {
        let mut slots = self.slots.borrow_mut();
        let s = &mut slots[slot];
        if s.killed {
            return true;
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        false
    }

    /// Kills every current registration and wakes the sessions waiting on them; returns
    /// how many there were.
    pub fn kill_registered(&self) -> usize {
        let mut wakers = Vec::new();
        let mut killed = 0;
        for s in self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter(|s| s.in_use && !s.killed)
        {
            s.killed = true;
            killed += 1;
            wakers.extend(s.waker.take());
        }
        for w in wakers {
            w.wake();
        }
        killed
    }

    /// A registration that ends with the returned guard.
    pub fn guard(&self) -> KillRegistration<'_> {
        KillRegistration {
            signal: self,
            slot: self.register(),
        }
    }

    /// Registrations alive now.
    pub fn registered(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }
}

/// One session's registration with a [`KillSignal`], unregistered on drop.
#[derive(Debug)]
pub struct KillRegistration<'a> {
    signal: &'a KillSignal,
    slot: usize,
}

impl KillRegistration<'_> {
    /// True once killed; otherwise remembers `cx`'s waker.
    pub fn poll_killed(&self, cx: &Context<'_>) -> bool {
        self.signal.poll_killed(self.slot, cx)
    }
}

impl Drop for KillRegistration<'_> {
    fn drop(&mut self) {
        self.signal.unregister(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn fire_wakes_every_registered_session_once() {
        let signal = Rc::new(AbortSignal::default());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let cx = Context::from_waker(&waker);
        let a = signal.register();
        let b = signal.register();
        let c = signal.register();
        drop(c);
        assert!(!a.poll_fired(&cx));
        assert!(!a.poll_fired(&cx), "re-polling does not add a waker");
        assert!(!b.poll_fired(&cx));
        signal.fire();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(a.poll_fired(&cx) && b.poll_fired(&cx));
    }

    #[test]
    fn kill_ends_current_registrations_only() {
        let signal = KillSignal::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let cx = Context::from_waker(&waker);
        let a = signal.register();
        let b = signal.register();
        assert!(!signal.poll_killed(a, &cx));
        assert!(!signal.poll_killed(a, &cx), "re-polling keeps one waker");
        assert_eq!(signal.kill_registered(), 2);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "only a was waiting");
        assert!(signal.poll_killed(a, &cx) && signal.poll_killed(b, &cx));
        assert_eq!(signal.kill_registered(), 0, "already killed");
        let c = signal.register();
        assert!(
            !signal.poll_killed(c, &cx),
            "registered after the kill: alive"
        );
        signal.unregister(a);
        signal.unregister(b);
        let d = signal.register();
        assert!(!signal.poll_killed(d, &cx), "a reused slot starts alive");
        assert_eq!(signal.registered(), 2);
        signal.unregister(c);
        signal.unregister(d);
        assert_eq!(signal.registered(), 0);
    }

    #[test]
    fn slots_are_reused() {
        let signal = Rc::new(AbortSignal::default());
        for _ in 0..100 {
            let _h = signal.register();
        }
        assert_eq!(signal.wakers.borrow().len(), 1);
    }
}
