//! Where bytes read from the socket land before the session takes them.
//!
//! A read's bytes are fed to the session (which copies what it keeps into
//! the core's own buffer) before the driver does anything else, so a
//! connection needs no read buffer of its own while it waits. The async
//! driver borrows its thread's [`scratch`] buffer for each poll: an idle
//! connection holds none. The blocking driver's read half travels between
//! threads and blocks in its reads, so it keeps a [`ReadBuf`] that is small
//! until reads fill it.

use core::cell::Cell;

/// Most bytes one read takes.
pub(crate) const READ_MAX: usize = 64 << 10;

/// The smallest [`ReadBuf`]: a reply or event of the usual size, or several.
const READ_MIN: usize = 4 << 10;

std::thread_local! {
    /// The read buffer of the async drivers polled on this thread.
    static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

/// Runs `read` with this thread's read buffer of [`READ_MAX`] bytes (a new
/// one if a driver polled further up this thread's stack holds it).
pub(crate) fn scratch<R>(read: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut buf = SCRATCH
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0u8; READ_MAX].into_boxed_slice());
    let done = read(&mut buf);
    // Gone (the thread is ending): the buffer is dropped here instead.
    let _ = SCRATCH.try_with(|s| s.set(Some(buf)));
    done
}

/// A read buffer that starts at 4 KiB, doubles (up to [`READ_MAX`]) after
/// each read that fills it, and goes back to 4 KiB after a read that would
/// have fit there: a large message costs memory only while it streams in.
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    /// Bytes the last read took.
    last: usize,
}

impl ReadBuf {
    pub(crate) fn new() -> Self {
        Self {
            buf: vec![0u8; READ_MIN],
            last: 0,
        }
    }

    /// The room for the next read, sized after the last one.
    pub(crate) fn room(&mut self) -> &mut [u8] {
        let len = self.buf.len();
        let want = if self.last == len {
            len.saturating_mul(2).min(READ_MAX)
        } else if self.last <= READ_MIN {
            READ_MIN
        } else {
            len
        };
        if want != len {
            // Replaced, not resized: the old bytes are spent.
            self.buf = vec![0u8; want];
        }
        &mut self.buf
    }

    /// The next read took `n` bytes of [`room`](Self::room): those bytes.
    pub(crate) fn filled(&mut self, n: usize) -> &[u8] {
        self.last = n;
        self.buf.get(..n).unwrap_or_default()
    }

    /// Bytes held now.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_while_reads_fill_it_and_shrinks_after_a_small_one() {
        let mut buf = ReadBuf::new();
        assert_eq!(buf.capacity(), READ_MIN);
        let mut sizes = Vec::new();
        for _ in 0..6 {
            let n = buf.room().len();
            sizes.push(n);
            assert_eq!(buf.filled(n).len(), n);
        }
        assert_eq!(
            sizes,
            [4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 64 << 10]
        );
        // A partial read of a large buffer keeps it while it is still busy.
        assert_eq!(buf.room().len(), READ_MAX);
        buf.filled(40 << 10);
        assert_eq!(buf.room().len(), READ_MAX);
        // A read the small buffer would have held gives the memory back.
        buf.filled(100);
        assert_eq!(buf.room().len(), READ_MIN);
        assert_eq!(buf.filled(3), &[0, 0, 0]);
    }

    #[test]
    fn scratch_is_reused_and_nested_use_gets_its_own() {
        let outer = scratch(|a| {
            a[0] = 7;
            let inner = scratch(|b| (b.len(), b.as_ptr() as usize));
            assert_ne!(
                inner.1,
                a.as_ptr() as usize,
                "a nested poll shares the buffer"
            );
            assert_eq!(inner.0, READ_MAX);
            a.as_ptr() as usize
        });
        let again = scratch(|a| (a.as_ptr() as usize, a[0]));
        assert_eq!(again, (outer, 7), "the thread's buffer is not reused");
    }
}
