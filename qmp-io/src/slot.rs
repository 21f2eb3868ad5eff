//! A one-shot cell that both a blocked thread and an async task can wait on:
//! the same waiter table serves the blocking and the async driver.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

struct State<T> {
    value: Option<T>,
    filled: bool,
    waker: Option<Waker>,
    /// A thread sleeps on the condvar (only then is `notify` worth a syscall).
    sleeping: bool,
    /// The blocking driver asked the waiting thread to take over reading.
    promoted: bool,
}

/// Why [`Slot::wait_turn`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The slot is filled: take the value.
    Ready,
    /// The waiter was asked to read the socket itself.
    Promoted,
    /// The deadline passed.
    TimedOut,
}

/// Filled once by the driver, taken once by the caller.
pub(crate) struct Slot<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                value: None,
                filled: false,
                waker: None,
                sleeping: false,
                promoted: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `value` unless the slot was already filled; wakes the waiter.
    pub(crate) fn fill(&self, value: T) -> bool {
        let mut s = self.lock();
        if s.filled {
            return false;
        }
        s.filled = true;
        s.value = Some(value);
        let waker = s.waker.take();
        let sleeping = s.sleeping;
        drop(s);
        if sleeping {
            self.cv.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    pub(crate) fn is_filled(&self) -> bool {
        self.lock().filled
    }

    /// The value, if the slot was filled (once).
    pub(crate) fn try_take(&self) -> Option<T> {
        let mut s = self.lock();
        if s.filled { s.value.take() } else { None }
    }

    /// Asks the thread waiting on this slot to take over reading. False when
    /// the slot is already filled: its waiter is about to leave.
    pub(crate) fn promote(&self) -> bool {
        let mut s = self.lock();
        if s.filled {
            return false;
        }
        s.promoted = true;
        let sleeping = s.sleeping;
        drop(s);
        if sleeping {
            self.cv.notify_all();
        }
        true
    }

    /// Clears and returns the promotion flag.
    pub(crate) fn take_promoted(&self) -> bool {
        core::mem::take(&mut self.lock().promoted)
    }

    /// Blocks until filled, promoted (the flag is cleared) or `deadline`.
    pub(crate) fn wait_turn(&self, deadline: Option<Instant>) -> Turn {
        let mut s = self.lock();
        let turn = loop {
            if s.filled {
                break Turn::Ready;
            }
            if s.promoted {
                s.promoted = false;
                break Turn::Promoted;
            }
            s.sleeping = true;
            match deadline {
                None => s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break Turn::TimedOut;
                    }
                    s = self
                        .cv
                        .wait_timeout(s, d.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        };
        s.sleeping = false;
        turn
    }

    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.lock();
        if s.filled {
            return Poll::Ready(s.value.take());
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Waits for a slot from async code.
pub(crate) struct SlotFuture<'a, T>(pub(crate) &'a Slot<T>);

impl<T> Future for SlotFuture<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_take(cx)
    }
}

/// Set once, observed by any number of waiters (threads and tasks).
pub(crate) struct Latch {
    state: Mutex<LatchState>,
    cv: Condvar,
}

struct LatchState {
    set: bool,
    /// The tasks waiting now, by the key of their [`LatchWait`]: an entry
    /// leaves with its future, so tasks that stopped waiting cost nothing.
    wakers: HashMap<u64, Waker>,
    next_key: u64,
}

impl Latch {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(LatchState {
                set: false,
                wakers: HashMap::new(),
                next_key: 0,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set(&self) {
        let wakers = {
            let mut s = self.lock();
            if s.set {
                // Set before: nobody can be waiting, and `notify_all` costs a
                // syscall even then.
                return;
            }
            s.set = true;
            core::mem::take(&mut s.wakers)
        };
        self.cv.notify_all();
        for w in wakers.into_values() {
            w.wake();
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.lock().set
    }

    /// Blocks until set or `deadline`; returns whether it is set.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut s = self.lock();
        while !s.set {
            match deadline {
                None => s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    s = self
                        .cv
                        .wait_timeout(s, d.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        true
    }

    /// Completes once set: [`wait`](Self::wait) for async code.
    pub(crate) fn wait_async(&self) -> LatchWait<'_> {
        LatchWait {
            latch: self,
            key: None,
        }
    }

    /// How many tasks have a waker in the table.
    #[cfg(test)]
    fn waiting_tasks(&self) -> usize {
        self.lock().wakers.len()
    }
}

/// Waits for a [`Latch`] from async code. Its waker stays in the latch's
/// table only while it waits: completing or dropping it takes it out.
#[must_use = "futures do nothing unless polled"]
pub(crate) struct LatchWait<'a> {
    latch: &'a Latch,
    /// This waiter's entry in the table, once it has one.
    key: Option<u64>,
}

impl Future for LatchWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut s = this.latch.lock();
        if s.set {
            // `set` took the table; the entry left with it.
            this.key = None;
            return Poll::Ready(());
        }
        let key = match this.key {
            Some(key) => key,
            None => {
                let key = s.next_key;
                // Unique until 2^64 waits have been made: never.
                s.next_key = s.next_key.wrapping_add(1);
                this.key = Some(key);
                key
            }
        };
        match s.wakers.entry(key) {
            Entry::Occupied(mut e) => {
                if !e.get().will_wake(cx.waker()) {
                    e.insert(cx.waker().clone());
                }
            }
            Entry::Vacant(e) => {
                e.insert(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for LatchWait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.latch.lock().wakers.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    /// A task's waker: each one distinct, as from different tasks.
    struct Task;

    impl Wake for Task {
        fn wake(self: Arc<Self>) {}
    }

    fn task() -> Waker {
        Waker::from(Arc::new(Task))
    }

    #[test]
    fn latch_forgets_the_wakers_of_tasks_that_stopped_waiting() {
        let latch = Latch::new();
        let mut waiting = Vec::new();
        for _ in 0..100 {
            let waker = task();
            let mut wait = latch.wait_async();
            assert!(
                Pin::new(&mut wait)
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
            waiting.push(wait);
        }
        assert_eq!(latch.waiting_tasks(), 100);
        waiting.clear();
        assert_eq!(latch.waiting_tasks(), 0);
    }

    #[test]
    fn a_latch_waiter_polled_again_keeps_one_entry() {
        let latch = Latch::new();
        let mut wait = latch.wait_async();
        for _ in 0..10 {
            let waker = task();
            assert!(
                Pin::new(&mut wait)
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        assert_eq!(latch.waiting_tasks(), 1);
    }

    #[test]
    fn a_set_latch_completes_its_waiters_and_keeps_no_waker() {
        let latch = Latch::new();
        let waker = task();
        let mut cx = Context::from_waker(&waker);
        let mut first = latch.wait_async();
        let mut second = latch.wait_async();
        assert!(Pin::new(&mut first).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut second).poll(&mut cx).is_pending());
        latch.set();
        assert_eq!(latch.waiting_tasks(), 0);
        assert!(Pin::new(&mut first).poll(&mut cx).is_ready());
        drop((first, second));
        // Set before anyone waits: ready at once, no entry made.
        let mut late = latch.wait_async();
        assert!(Pin::new(&mut late).poll(&mut cx).is_ready());
        assert_eq!(latch.waiting_tasks(), 0);
    }
}
