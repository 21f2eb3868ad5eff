//! A one-shot cell that both a blocked thread and an async task can wait on:
//! the same waiter table serves the blocking and the async driver.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
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
                        .wait_timeout(s, d - now)
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
    state: Mutex<(bool, Vec<Waker>)>,
    cv: Condvar,
}

impl Latch {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new((false, Vec::new())),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn set(&self) {
        let wakers = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.0 {
                // Set before: nobody can be waiting, and `notify_all` costs a
                // syscall even then.
                return;
            }
            s.0 = true;
            core::mem::take(&mut s.1)
        };
        self.cv.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Blocks until set or `deadline`; returns whether it is set.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !s.0 {
            match deadline {
                None => s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    s = self
                        .cv
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        true
    }

    pub(crate) fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0 {
            return Poll::Ready(());
        }
        if !s.1.iter().any(|w| w.will_wake(cx.waker())) {
            s.1.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
