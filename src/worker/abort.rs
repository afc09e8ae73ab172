//! A shard-local "stop now" signal that every session watches.
//!
//! Owns the wakers of the sessions registered with it. Firing it wakes every one of them;
//! a session sees it on its next poll and ends. Used when the grace period after a stop is
//! over, when a stop begins (idle http keep-alive connections close at once), and later to
//! shut the sessions of a server marked down. Single-threaded by
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
}

impl Drop for AbortHandle {
    fn drop(&mut self) {
        self.signal.wakers.borrow_mut()[self.slot] = None;
        self.signal.free.borrow_mut().push(self.slot);
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
    fn slots_are_reused() {
        let signal = Rc::new(AbortSignal::default());
        for _ in 0..100 {
            let _h = signal.register();
        }
        assert_eq!(signal.wakers.borrow().len(), 1);
    }
}
