//! A backend's queue, on one shard: sessions waiting for a server slot while every usable
//! server is at its `maxconn`.
//!
//! Owns the order of the waiters (FIFO by arrival) and their wakers. Only the head of the
//! queue may take a slot, so queued sessions are served in order, and a new arrival never
//! overtakes them (it queues behind them, see `BackendState::acquire_waiting`). Whoever
//! frees a slot (an `ActiveSlot` dropped), changes a server's state, or leaves the queue
//! from its head wakes the new head, which tries again. Single-threaded by construction
//! (`Cell`, `RefCell`); bounded by `maxqueue` and, in time, by `timeout_queue`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::Waker;

/// One shard's queue of one backend.
#[derive(Debug, Default)]
pub struct Queue {
    waiters: RefCell<VecDeque<Waiter>>,
    next_id: Cell<u64>,
    /// Sessions that waited here (counters for the stats side).
    pub queued: Cell<u64>,
    /// Sessions that gave up after `timeout_queue`.
    pub timeouts: Cell<u64>,
    /// Sessions refused because `maxqueue` were waiting.
    pub full: Cell<u64>,
    /// The longest the queue has been.
    pub max_len: Cell<usize>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    waker: Option<Waker>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.waiters.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.borrow().is_empty()
    }

    /// Joins the queue at its tail; the id names this waiter.
    pub fn push(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.waiters
            .borrow_mut()
            .push_back(Waiter { id, waker: None });
        self.queued.set(self.queued.get() + 1);
        self.max_len.set(self.max_len.get().max(self.len()));
        id
    }

    pub fn is_head(&self, id: u64) -> bool {
        self.waiters.borrow().front().is_some_and(|w| w.id == id)
    }

    /// Where waiter `id` is: ids are given in increasing order and waiters only leave, so
    /// the queue stays sorted by id.
    fn position(waiters: &VecDeque<Waiter>, id: u64) -> Option<usize> {
        waiters.binary_search_by_key(&id, |w| w.id).ok()
    }

    /// Remembers the waker of waiter `id`.
    pub fn set_waker(&self, id: u64, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        let pos = Self::position(&waiters, id);
        if let Some(w) = pos.and_then(|p| waiters.get_mut(p)) {
            if !w.waker.as_ref().is_some_and(|x| x.will_wake(waker)) {
                w.waker = Some(waker.clone());
            }
        }
    }

    /// Leaves the queue (served, timed out or dropped); the next waiter, if this one was
    /// the head, is woken to try in its place.
    pub fn remove(&self, id: u64) {
        let was_head = {
            let mut waiters = self.waiters.borrow_mut();
            let Some(pos) = Self::position(&waiters, id) else {
                return;
            };
            waiters.remove(pos);
            pos == 0
        };
        if was_head {
            self.wake_head();
        }
    }

    /// Wakes the head waiter: a slot may have freed.
    pub fn wake_head(&self) {
        let waker = self
            .waiters
            .borrow_mut()
            .front_mut()
            .and_then(|w| w.waker.take());
        if let Some(w) = waker {
            w.wake();
        }
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
    fn fifo_head_and_wakeups() {
        let q = Queue::default();
        let (a, b, c) = (q.push(), q.push(), q.push());
        assert!(q.is_head(a) && !q.is_head(b));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        q.set_waker(b, &waker);
        q.remove(c);
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "c was not the head");
        q.remove(a);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "b is the new head, woken"
        );
        assert!(q.is_head(b));
        q.wake_head();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "its waker was used up");
        q.remove(b);
        assert!(q.is_empty());
        assert_eq!(q.queued.get(), 3);
    }
}
