//! A bounded, lock-free, single-producer single-consumer ring.
//!
//! How a shard hands records to a control-plane thread (statistics snapshots to the
//! control thread, access log records to the logger thread) without a lock, without a
//! system call and without ever waiting: [`Producer::push`] either stores the record or,
//! when the ring is full, gives it back and counts a drop. The consumer polls
//! ([`Consumer::pop`]) on its own schedule; nothing wakes it, so a push costs two atomic
//! loads (one usually cached), a write of the record and one release store.
//!
//! Indices grow without bound (wrapping `usize`) and are masked into a power-of-two
//! capacity. The producer owns `tail`, the consumer owns `head`; each keeps a cached copy
//! of the other's index and reloads it only when the ring looks full (or empty).

use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Keeps the two indices on separate cache lines, so that the producer's and the
/// consumer's stores do not invalidate each other's line.
#[repr(align(128))]
struct Padded(AtomicUsize);

struct Ring<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Next slot to read; written by the consumer only.
    head: Padded,
    /// Next slot to write; written by the producer only.
    tail: Padded,
    /// Records refused because the ring was full.
    dropped: AtomicU64,
}

// SAFETY: a slot is written only by the producer while it is outside `head..tail`, and
// read only by the consumer while it is inside; the release store of the index that
// moves a slot across that boundary orders the slot's contents before it (and the
// acquire load on the other side sees them). `T: Send` because records move between
// threads.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; shared access goes only through the index protocol.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        let head = *self.head.0.get_mut();
        let tail = *self.tail.0.get_mut();
        let mut i = head;
        while i != tail {
            // SAFETY: slots in `head..tail` hold initialised records no one else reads:
            // both ends are gone (we have `&mut self`).
            unsafe { self.slots[i & self.mask].get_mut().assume_init_drop() };
            i = i.wrapping_add(1);
        }
    }
}

/// The writing end; one thread (a shard) owns it.
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    /// The consumer's `head` as last read.
    head: Cell<usize>,
    /// Our own `tail` (only we write it).
    tail: Cell<usize>,
    /// Our count of drops, published with a plain store (no read-modify-write).
    dropped: Cell<u64>,
}

/// The reading end; one thread (the control or logger thread) owns it.
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    /// Our own `head`.
    head: usize,
    /// The producer's `tail` as last read.
    tail: usize,
}

/// A ring holding at least `capacity` records (rounded up to a power of two, at least 2).
pub fn ring<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(2).next_power_of_two();
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let ring = Arc::new(Ring {
        slots,
        mask: capacity - 1,
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
        dropped: AtomicU64::new(0),
    });
    let producer = Producer {
        ring: Arc::clone(&ring),
        head: Cell::new(0),
        tail: Cell::new(0),
        dropped: Cell::new(0),
    };
    let consumer = Consumer {
        ring,
        head: 0,
        tail: 0,
    };
    (producer, consumer)
}

impl<T> Producer<T> {
    /// Stores `record`, or gives it back (and counts a drop) when the ring is full.
    /// Never blocks.
    #[inline]
    pub fn push(&self, record: T) -> Result<(), T> {
        let ring = &*self.ring;
        let tail = self.tail.get();
        if tail.wrapping_sub(self.head.get()) == ring.slots.len() {
            self.head.set(ring.head.0.load(Ordering::Acquire));
            if tail.wrapping_sub(self.head.get()) == ring.slots.len() {
                let dropped = self.dropped.get() + 1;
                self.dropped.set(dropped);
                ring.dropped.store(dropped, Ordering::Relaxed);
                return Err(record);
            }
        }
        // SAFETY: `tail` is outside `head..tail` (the ring is not full), so the consumer
        // does not read this slot until the store below publishes it, and we are the only
        // writer.
        unsafe { (*ring.slots[tail & ring.mask].get()).write(record) };
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        ring.tail.0.store(tail, Ordering::Release);
        Ok(())
    }

    /// Records refused so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    pub fn capacity(&self) -> usize {
        self.ring.slots.len()
    }
}

impl<T> Consumer<T> {
    /// The oldest record, if any. Never blocks.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let ring = &*self.ring;
        if self.head == self.tail {
            self.tail = ring.tail.0.load(Ordering::Acquire);
            if self.head == self.tail {
                return None;
            }
        }
        // SAFETY: `head` is inside `head..tail`: the producer wrote it and published it
        // with its release store, which our acquire load saw; it will not write the slot
        // again until our store below hands it back.
        let record = unsafe { (*ring.slots[self.head & ring.mask].get()).assume_init_read() };
        self.head = self.head.wrapping_add(1);
        ring.head.0.store(self.head, Ordering::Release);
        Some(record)
    }

    /// Records the producer had to drop because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.ring.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_refuses_when_full() {
        let (p, mut c) = ring::<u32>(4);
        for i in 0..4 {
            assert!(p.push(i).is_ok());
        }
        assert_eq!(p.push(9), Err(9));
        assert_eq!(p.dropped(), 1);
        assert_eq!(c.pop(), Some(0));
        assert!(p.push(4).is_ok());
        let rest: Vec<u32> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(rest, vec![1, 2, 3, 4]);
        assert_eq!(c.pop(), None);
        assert_eq!(c.dropped(), 1);
    }

    #[test]
    fn capacity_is_a_power_of_two() {
        assert_eq!(ring::<u8>(0).0.capacity(), 2);
        assert_eq!(ring::<u8>(5).0.capacity(), 8);
        assert_eq!(ring::<u8>(8).0.capacity(), 8);
    }

    #[test]
    fn records_left_in_the_ring_are_dropped_with_it() {
        let counter = Arc::new(());
        let (p, mut c) = ring(4);
        for _ in 0..3 {
            p.push(Arc::clone(&counter)).unwrap();
        }
        drop(c.pop());
        drop((p, c));
        assert_eq!(Arc::strong_count(&counter), 1);
    }

    /// Two threads: every record pushed is popped once, in order, or counted as dropped.
    #[test]
    fn across_threads_nothing_is_lost_or_duplicated() {
        const N: u64 = 200_000;
        let (p, mut c) = ring::<u64>(64);
        let producer = std::thread::spawn(move || {
            let mut sent = 0u64;
            for i in 0..N {
                if p.push(i).is_ok() {
                    sent += 1;
                }
            }
            (sent, p.dropped())
        });
        let mut last = None;
        let mut received = 0u64;
        let mut check = |v: u64| {
            assert!(
                last.is_none_or(|l| v > l),
                "out of order: {v} after {last:?}"
            );
            last = Some(v);
            received += 1;
        };
        while !producer.is_finished() {
            match c.pop() {
                Some(v) => check(v),
                None => std::thread::yield_now(),
            }
        }
        // Joined: every push happened before what follows.
        let (sent, dropped) = producer.join().unwrap();
        while let Some(v) = c.pop() {
            check(v);
        }
        assert_eq!(received, sent);
        assert_eq!(sent + dropped, N);
    }
}
