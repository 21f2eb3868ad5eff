//! A global allocator that counts the bytes live and their peak, for the
//! cases that check the client's memory stays bounded.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting: install it with `#[global_allocator]`
/// (the [`fault_suite!`](crate::fault_suite) macro does) and read the figures
/// with [`Memory`].
#[derive(Debug, Clone, Copy)]
pub struct Counting;

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is passed on unchanged to the system allocator, which
// upholds the contract; the counting beside it touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

/// Heap bytes live now (0 unless [`Counting`] is the global allocator).
#[must_use]
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The most heap bytes live since the last [`reset_peak`] (or the start).
#[must_use]
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new high-water mark at the bytes live now, and returns them.
pub fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// A measurement of the heap: started before the fault, read after it.
#[derive(Debug)]
pub struct Memory {
    base: usize,
}

impl Memory {
    /// True when [`Counting`] is the global allocator (it has counted
    /// something).
    pub fn installed() -> bool {
        let probe = core::hint::black_box(vec![0u8; 64]);
        let live = LIVE.load(Ordering::Relaxed);
        drop(probe);
        live > 0
    }

    /// Starts a measurement: the peak is reset to what is live now.
    pub fn start() -> Memory {
        Memory { base: reset_peak() }
    }

    /// How far the live bytes rose above the start, at their highest.
    pub fn peak_growth(&self) -> usize {
        peak_bytes().saturating_sub(self.base)
    }

    /// Asserts the peak growth stayed within `bound` while the peer sent
    /// `input` bytes, and that `input` was well over `bound` (or the
    /// measurement would say nothing); prints the figures.
    ///
    /// # Panics
    ///
    /// When either does not hold.
    pub fn check(&self, what: &str, input: u64, bound: usize) {
        let growth = self.peak_growth();
        println!(
            "memory: {what}: peak growth {growth} bytes, bound {bound}, peer sent {input} bytes"
        );
        assert!(
            input > 4 * bound as u64,
            "{what}: the peer sent only {input} bytes, too few against a bound of {bound}"
        );
        assert!(
            growth <= bound,
            "{what}: memory grew by {growth} bytes (bound {bound}) while the peer sent {input}"
        );
    }
}
