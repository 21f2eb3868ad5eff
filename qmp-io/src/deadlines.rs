//! The async calls' deadlines, kept by one thread for the whole process.
//!
//! A runtime timer per call costs system calls to set (tokio wakes its
//! driver, async-io notifies its reactor), and a connection task holding any
//! timer makes every park of its runtime a wait with a timeout, which costs
//! more than a plain wait on this kind of machine (a virtual machine, where
//! arming the kernel's timer is not free): about 2 µs a command with 64 in
//! flight. So a call only records its deadline in its session (a lock), and
//! this thread, started on first use, sleeps until the earliest deadline of
//! any session and then fails the calls whose deadline passed. Sessions tell
//! it only when their earliest deadline moves earlier (the common case,
//! calls with the same timeout made one after another, tells it once per
//! timeout period). Deadlines follow the real clock (a runtime's paused
//! clock does not move them).

use core::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

/// Something with deadlines: fails what is due at `now` and says when its
/// next deadline is.
pub(crate) trait Expire: Send + Sync {
    /// Fails what is due at `now`; the next deadline, if any.
    fn expire(&self, now: Instant) -> Option<Instant>;
}

/// A wake-up for one session.
struct Entry {
    at: Instant,
    /// Ties broken by arrival, so `Ord` needs nothing of the target.
    seq: u64,
    target: Weak<dyn Expire>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

/// The process's deadline thread and what it waits for.
struct Watch {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing here can panic while holding the lock; a poisoned one is
        // still whole.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, at: Instant, target: Weak<dyn Expire>) {
        let mut q = self.lock();
        let sooner = q.heap.peek().is_none_or(|Reverse(e)| at < e.at);
        q.seq = q.seq.wrapping_add(1);
        let seq = q.seq;
        q.heap.push(Reverse(Entry { at, seq, target }));
        drop(q);
        if sooner {
            self.changed.notify_one();
        }
    }

    /// The thread: sleeps until the earliest deadline, then lets each due
    /// target fail its calls and queues its next deadline.
    fn run(&self) {
        let mut due = Vec::new();
        loop {
            let mut q = self.lock();
            loop {
                let now = Instant::now();
                match q.heap.peek() {
                    None => q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner()),
                    Some(Reverse(e)) if e.at <= now => break,
                    Some(Reverse(e)) => {
                        let left = e.at.saturating_duration_since(now);
                        q = self
                            .changed
                            .wait_timeout(q, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
            let now = Instant::now();
            while let Some(Reverse(e)) = q.heap.peek()
                && e.at <= now
            {
                if let Some(Reverse(e)) = q.heap.pop() {
                    due.push(e.target);
                }
            }
            drop(q);
            // Outside the lock: expiring wakes callers, who may arm again.
            for target in due.drain(..) {
                let Some(target) = target.upgrade() else {
                    continue; // the connection is gone
                };
                if let Some(next) = target.expire(now) {
                    self.push(next, std::sync::Arc::downgrade(&target));
                }
            }
        }
    }
}

/// The process's watch.
static WATCH: Watch = Watch {
    queue: Mutex::new(Queue {
        heap: BinaryHeap::new(),
        seq: 0,
    }),
    changed: Condvar::new(),
};

/// The process's watch, its thread started on first use; `None` if the
/// thread could not be started (the caller then keeps a timer of its own).
fn watch() -> Option<&'static Watch> {
    static STARTED: OnceLock<bool> = OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("qmp-deadlines".into())
            .spawn(|| WATCH.run());
        if let Err(e) = &spawned {
            tracing::warn!(error = %e, "cannot start the deadline thread; calls keep timers of their own");
        }
        spawned.is_ok()
    });
    started.then_some(&WATCH)
}

/// Asks for `target.expire` to run once `at` passes. False when there is no
/// deadline thread.
pub(crate) fn wake_at(at: Instant, target: Weak<dyn Expire>) -> bool {
    match watch() {
        Some(w) => {
            w.push(at, target);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;
    use std::sync::Arc;

    /// Deadlines to keep, and when each was seen due.
    struct Target {
        ahead: Mutex<Vec<Instant>>,
        fired: Mutex<Vec<(Instant, Instant)>>,
    }

    impl Target {
        fn new(ahead: &[Instant]) -> Arc<Self> {
            Arc::new(Target {
                ahead: Mutex::new(ahead.to_vec()),
                fired: Mutex::new(Vec::new()),
            })
        }
    }

    impl Expire for Target {
        fn expire(&self, now: Instant) -> Option<Instant> {
            let mut ahead = self.ahead.lock().unwrap();
            let mut fired = self.fired.lock().unwrap();
            ahead.retain(|&at| {
                let due = at <= now;
                if due {
                    fired.push((at, Instant::now()));
                }
                !due
            });
            ahead.iter().min().copied()
        }
    }

    #[test]
    fn every_deadline_of_every_target_fires_once_and_not_early() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let a = Target::new(&[ms(40), ms(120), ms(200)]);
        let b = Target::new(&[ms(80)]);
        // A target dropped before its deadline is skipped.
        let gone = Target::new(&[ms(60)]);
        assert!(wake_at(ms(40), Arc::downgrade(&a) as Weak<dyn Expire>));
        assert!(wake_at(ms(80), Arc::downgrade(&b) as Weak<dyn Expire>));
        assert!(wake_at(ms(60), Arc::downgrade(&gone) as Weak<dyn Expire>));
        drop(gone);
        // A later entry for a target that already has an earlier one: a
        // spurious turn, which finds nothing due and changes nothing.
        assert!(wake_at(ms(100), Arc::downgrade(&b) as Weak<dyn Expire>));
        let patience = Instant::now() + Duration::from_secs(10);
        while !(a.ahead.lock().unwrap().is_empty() && b.ahead.lock().unwrap().is_empty())
            && Instant::now() < patience
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (target, expected) in [(&a, vec![ms(40), ms(120), ms(200)]), (&b, vec![ms(80)])] {
            let fired = target.fired.lock().unwrap();
            let deadlines: Vec<Instant> = fired.iter().map(|&(at, _)| at).collect();
            assert_eq!(deadlines, expected);
            for &(at, seen) in fired.iter() {
                assert!(seen >= at, "a deadline fired early");
                // Generous: the test machine may be busy; the order and the
                // lower bound are the point.
                assert!(seen < at + Duration::from_secs(3), "a deadline fired late");
            }
            assert!(target.ahead.lock().unwrap().is_empty());
        }
    }
}
