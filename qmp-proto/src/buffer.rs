//! Byte buffers and storage choices: fixed capacity (no allocation) or growable.

/// Where a state machine keeps its bytes and its table of pending commands.
///
/// Two implementations exist: [`Fixed`] (const-generic capacities, no heap) and,
/// with the `alloc` feature, [`Heap`] (buffers grow up to the configured limits).
/// The trait is sealed.
pub trait Storage: sealed::Sealed {
    /// Receive buffer type.
    type Rx: Buffer;
    /// Transmit buffer type.
    type Tx: Buffer;
    /// Table of commands waiting for a reply.
    type Pending: PendingTable;
}

/// Fixed-capacity storage: `RX` bytes of receive buffer, `TX` bytes of transmit
/// buffer and room for `PENDING` commands in flight. Nothing is allocated.
///
/// A message larger than `RX` is skipped (its id is still reported), a command
/// larger than the free part of `TX` is refused with
/// [`UsageError::TransmitFull`](crate::UsageError::TransmitFull).
#[derive(Debug, Clone, Copy)]
pub struct Fixed<const RX: usize, const TX: usize, const PENDING: usize>;

impl<const RX: usize, const TX: usize, const PENDING: usize> Storage for Fixed<RX, TX, PENDING> {
    type Rx = FixedBuf<RX>;
    type Tx = FixedBuf<TX>;
    type Pending = FixedTable<PENDING>;
}

/// Growable storage on the heap; sizes are bounded by the state machine's limits.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Copy)]
pub struct Heap;

#[cfg(feature = "alloc")]
impl Storage for Heap {
    type Rx = VecBuf;
    type Tx = VecBuf;
    type Pending = VecTable;
}

mod sealed {
    pub trait Sealed {}
    impl<const RX: usize, const TX: usize, const P: usize> Sealed for super::Fixed<RX, TX, P> {}
    #[cfg(feature = "alloc")]
    impl Sealed for super::Heap {}
    impl<const N: usize> Sealed for super::FixedBuf<N> {}
    #[cfg(feature = "alloc")]
    impl Sealed for super::VecBuf {}
    impl<const N: usize> Sealed for super::FixedTable<N> {}
    #[cfg(feature = "alloc")]
    impl Sealed for super::VecTable {}
}

/// A contiguous byte buffer with a hard capacity. Sealed; see [`Storage`].
pub trait Buffer: sealed::Sealed {
    /// An empty buffer. `limit` caps growable buffers; fixed ones use their size.
    fn with_limit(limit: usize) -> Self;
    /// The bytes held.
    fn bytes(&self) -> &[u8];
    /// Most bytes this buffer will ever hold.
    fn capacity(&self) -> usize;
    /// Appends all of `data`; the caller checked `len + data.len() <= capacity`.
    fn append(&mut self, data: &[u8]);
    /// Drops bytes from `len` on.
    fn truncate(&mut self, len: usize);
    /// Drops the first `n` bytes, moving the rest to the front.
    fn discard_front(&mut self, n: usize);
    /// Number of bytes held.
    fn len(&self) -> usize {
        self.bytes().len()
    }
    /// True when no bytes are held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Room left before the capacity is reached.
    fn room(&self) -> usize {
        self.capacity().saturating_sub(self.len())
    }
    /// Mutable access to `len..len+n` (zeroed or stale bytes); commit with
    /// [`Buffer::set_len`]. The caller checked `len + n <= capacity`.
    fn spare(&mut self, n: usize) -> &mut [u8];
    /// Sets the length after writing into [`Buffer::spare`].
    fn set_len(&mut self, len: usize);
}

/// A fixed-capacity byte buffer stored inline.
#[derive(Clone)]
pub struct FixedBuf<const N: usize> {
    data: heapless::Vec<u8, N>,
}

impl<const N: usize> core::fmt::Debug for FixedBuf<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FixedBuf")
            .field("len", &self.data.len())
            .field("capacity", &N)
            .finish()
    }
}

impl<const N: usize> Buffer for FixedBuf<N> {
    fn with_limit(_limit: usize) -> Self {
        Self {
            data: heapless::Vec::new(),
        }
    }
    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.data
    }
    #[inline]
    fn capacity(&self) -> usize {
        N
    }
    #[inline]
    fn append(&mut self, data: &[u8]) {
        // Input that trickles in byte by byte would otherwise pay a `memcpy`
        // call per byte.
        let appended = match data {
            [b] => self.data.push(*b).is_ok(),
            _ => self.data.extend_from_slice(data).is_ok(),
        };
        debug_assert!(appended, "append past the capacity: the caller checks room");
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        self.data.truncate(len);
    }
    fn discard_front(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data.copy_within(n.., 0);
        self.data.truncate(self.data.len().saturating_sub(n));
    }
    fn spare(&mut self, n: usize) -> &mut [u8] {
        let len = self.data.len();
        // Within the capacity (the caller checked), so this cannot fail; if
        // it did, the slice would be short, never out of bounds.
        let _ = self.data.resize(len.saturating_add(n), 0);
        self.data.get_mut(len..).unwrap_or_default()
    }
    fn set_len(&mut self, len: usize) {
        self.data.truncate(len);
    }
}

/// A growable byte buffer on the heap, capped at its limit.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct VecBuf {
    data: alloc::vec::Vec<u8>,
    limit: usize,
}

#[cfg(feature = "alloc")]
impl VecBuf {
    /// Makes room for `extra` more bytes, doubling as `Vec` does but never
    /// past the limit: left to `Vec`, a buffer filled to a 1 MiB limit would
    /// hold 2 MiB, and the limit would bound half the memory it costs.
    #[inline]
    fn grow_for(&mut self, extra: usize) {
        let needed = self.data.len().saturating_add(extra);
        if needed <= self.data.capacity() {
            return;
        }
        let target = self
            .data
            .capacity()
            .saturating_mul(2)
            .min(self.limit)
            .max(needed);
        self.data
            .reserve_exact(target.saturating_sub(self.data.len()));
    }
}

#[cfg(feature = "alloc")]
impl Buffer for VecBuf {
    fn with_limit(limit: usize) -> Self {
        Self {
            data: alloc::vec::Vec::new(),
            limit,
        }
    }
    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.data
    }
    #[inline]
    fn capacity(&self) -> usize {
        self.limit
    }
    #[inline]
    fn append(&mut self, data: &[u8]) {
        self.grow_for(data.len());
        // Input that trickles in byte by byte would otherwise pay a `memcpy`
        // call per byte.
        match data {
            [b] => self.data.push(*b),
            _ => self.data.extend_from_slice(data),
        }
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        self.data.truncate(len);
        // Give memory back after a large message so one burst does not pin it.
        if self.data.capacity() > 1 << 20 && self.data.len() < self.data.capacity() / 4 {
            self.data.shrink_to(self.data.len().max(64 << 10));
        }
    }
    fn discard_front(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
        self.truncate(self.data.len());
    }
    fn spare(&mut self, n: usize) -> &mut [u8] {
        let len = self.data.len();
        self.grow_for(n);
        self.data.resize(len.saturating_add(n), 0);
        self.data.get_mut(len..).unwrap_or_default()
    }
    fn set_len(&mut self, len: usize) {
        self.data.truncate(len);
    }
}

/// One command waiting for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingEntry {
    /// The numeric id the command was sent with.
    pub id: u64,
    /// The command was sent with `exec-oob`.
    pub oob: bool,
    /// The caller gave up on it: its reply is dropped when it comes.
    pub abandoned: bool,
}

/// Table of commands waiting for a reply, ordered by id. Sealed; see [`Storage`].
pub trait PendingTable: sealed::Sealed {
    /// An empty table holding at most `limit` entries (fixed tables use their size).
    fn with_limit(limit: usize) -> Self;
    /// The entries, ascending by id.
    fn entries(&self) -> &[PendingEntry];
    /// Mutable entries, ascending by id.
    fn entries_mut(&mut self) -> &mut [PendingEntry];
    /// Adds an entry whose id is larger than every id held; false when full.
    fn push(&mut self, entry: PendingEntry) -> bool;
    /// Removes the entry at `index`.
    fn remove(&mut self, index: usize) -> PendingEntry;
    /// Removes every entry.
    fn clear(&mut self);
    /// True when no entry can be added.
    fn is_full(&self) -> bool;
    /// Index of the entry with this id.
    fn find(&self, id: u64) -> Option<usize> {
        self.entries().binary_search_by_key(&id, |e| e.id).ok()
    }
}

/// A fixed-capacity pending table stored inline.
#[derive(Debug, Clone)]
pub struct FixedTable<const N: usize> {
    entries: heapless::Vec<PendingEntry, N>,
}

impl<const N: usize> PendingTable for FixedTable<N> {
    fn with_limit(_limit: usize) -> Self {
        Self {
            entries: heapless::Vec::new(),
        }
    }
    fn entries(&self) -> &[PendingEntry] {
        &self.entries
    }
    fn entries_mut(&mut self) -> &mut [PendingEntry] {
        &mut self.entries
    }
    fn is_full(&self) -> bool {
        self.entries.is_full()
    }
    fn push(&mut self, entry: PendingEntry) -> bool {
        self.entries.push(entry).is_ok()
    }
    fn remove(&mut self, index: usize) -> PendingEntry {
        self.entries.remove(index)
    }
    fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A growable pending table on the heap, capped at its limit.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct VecTable {
    entries: alloc::vec::Vec<PendingEntry>,
    limit: usize,
}

#[cfg(feature = "alloc")]
impl PendingTable for VecTable {
    fn with_limit(limit: usize) -> Self {
        Self {
            entries: alloc::vec::Vec::new(),
            limit,
        }
    }
    fn entries(&self) -> &[PendingEntry] {
        &self.entries
    }
    fn entries_mut(&mut self) -> &mut [PendingEntry] {
        &mut self.entries
    }
    fn is_full(&self) -> bool {
        self.entries.len() >= self.limit
    }
    fn push(&mut self, entry: PendingEntry) -> bool {
        if self.entries.len() >= self.limit {
            return false;
        }
        self.entries.push(entry);
        true
    }
    fn remove(&mut self, index: usize) -> PendingEntry {
        // Commands in flight are few; shifting them is cheaper than a map.
        self.entries.remove(index)
    }
    fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::{Buffer, VecBuf};

    /// A growable buffer filled to its limit, in reads of any size, holds
    /// no more than its limit (`Vec`'s doubling alone would hold up to
    /// twice as much).
    #[test]
    fn a_full_buffer_holds_no_more_than_its_limit() {
        let limit = (1 << 20) + (64 << 10);
        for read in [1, 4096, 64 << 10, 100_000] {
            let mut buf = VecBuf::with_limit(limit);
            let chunk = alloc::vec![b'a'; read];
            while buf.room() > 0 {
                let n = read.min(buf.room());
                buf.append(&chunk[..n]);
            }
            assert_eq!(buf.len(), limit);
            assert!(
                buf.data.capacity() <= limit,
                "reads of {read}: capacity {} for a limit of {limit}",
                buf.data.capacity()
            );
        }
        let mut buf = VecBuf::with_limit(limit);
        buf.append(b"{}");
        let _ = buf.spare(limit - 2);
        assert!(buf.data.capacity() <= limit, "{}", buf.data.capacity());
    }
}
