//! Who reads the socket: a caller waiting for its answer leads (reads
//! itself) or follows (sleeps until the reader hands over its answer or the
//! reading), and a background thread reads once the callers left the socket
//! alone for a while.

use core::sync::atomic::Ordering;
use core::time::Duration;
use std::io;
use std::sync::{Arc, Weak};
use std::time::Instant;

use rustix::event::PollFlags;

use super::Conn;
use super::stream::{ReadStream, wait_ready};
use crate::error::Disconnect;
use crate::session::{Answer, Protocol, ReadBuf};
use crate::slot::{Slot, Turn};

/// The right to read: the stream and the buffer, held by one thread at a time.
pub(super) struct ReadHalf {
    pub(super) stream: Box<dyn ReadStream>,
    pub(super) buf: ReadBuf,
}

/// Who reads the socket.
pub(super) struct Reading {
    /// The read half; `None` while a thread holds it.
    pub(super) half: Option<ReadHalf>,
    /// Callers waiting for an answer while another thread reads, in the
    /// order they came: the newest takes over when the reader gives the half
    /// back.
    pub(super) followers: Vec<Arc<Slot<Answer>>>,
    /// When a caller last wanted to read or gave the half back.
    pub(super) active: Instant,
    /// The background thread sleeps until the half comes back (only then is
    /// a notify worth a syscall).
    pub(super) parked: bool,
}

/// How long the background thread leaves the socket to the callers after the
/// last one read. Events arriving between calls wait at most this long.
const QUIET: Duration = Duration::from_millis(10);

impl<P: Protocol> Conn<P> {
    /// Reads and feeds the session until `done()`, the deadline, or the end
    /// of the connection.
    pub(super) fn read_until(
        &self,
        half: &mut ReadHalf,
        done: impl Fn() -> bool,
        deadline: Option<Instant>,
    ) {
        while !done() && !self.session.is_closed() {
            let timeout = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return,
                },
            };
            match wait_ready(half.stream.as_fd(), PollFlags::IN, timeout) {
                Ok(true) => self.read_once(half, deadline),
                Ok(false) => return,
                Err(e) => self.session.on_close(Disconnect::from_io(e)),
            }
        }
    }

    /// One read (the socket is readable), fed to the session; writing what
    /// the core answers gives up at `deadline`.
    fn read_once(&self, half: &mut ReadHalf, deadline: Option<Instant>) {
        let read = half.stream.read(half.buf.room());
        self.absorb(read, &mut half.buf, deadline);
    }

    /// Takes in the result of a read into `buf`.
    fn absorb(&self, read: io::Result<usize>, buf: &mut ReadBuf, deadline: Option<Instant>) {
        match read {
            Ok(0) => self
                .session
                .on_close(Disconnect::Eof { mid_message: false }),
            #[allow(clippy::indexing_slicing)] // a read returns at most buf.len()
            Ok(n) => {
                self.session.on_input(buf.filled(n));
                if !self.session.is_closed() {
                    // What the core answers by itself (a guest-agent resync).
                    // The reader never waits for room with no deadline: the
                    // peer may be waiting for us to read.
                    self.flush(Some(deadline.unwrap_or_else(Instant::now)));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.session.on_close(Disconnect::from_io(e)),
        }
    }

    /// Takes the read half if it is free; otherwise queues `slot` to be
    /// promoted when the reader leaves.
    fn lead_or_follow(&self, slot: &Arc<Slot<Answer>>) -> Option<ReadHalf> {
        let mut r = self.reading();
        r.active = Instant::now();
        let queued = r.followers.iter().position(|f| Arc::ptr_eq(f, slot));
        match r.half.take() {
            Some(half) => {
                if let Some(i) = queued {
                    r.followers.remove(i);
                }
                Some(half)
            }
            None => {
                if queued.is_none() {
                    r.followers.push(slot.clone());
                }
                None
            }
        }
    }

    /// Gives the read half back and hands the reading to a waiting caller.
    fn release(&self, half: ReadHalf) {
        let mut r = self.reading();
        r.half = Some(half);
        r.active = Instant::now();
        promote_next(&mut r);
        if core::mem::take(&mut r.parked) {
            self.quiet.notify_all();
        }
    }

    /// A follower stops waiting; a promotion it got passes to the next one.
    fn leave(&self, slot: &Arc<Slot<Answer>>) {
        let mut r = self.reading();
        r.followers.retain(|f| !Arc::ptr_eq(f, slot));
        if slot.take_promoted() {
            promote_next(&mut r);
        }
    }

    /// Waits for `slot`'s answer, reading the socket while nobody else does.
    pub(super) fn answer(
        &self,
        slot: &Arc<Slot<Answer>>,
        deadline: Option<Instant>,
    ) -> Option<Answer> {
        let mut followed = false;
        let answer = loop {
            if let Some(answer) = slot.try_take() {
                break Some(answer);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break None;
            }
            if let Some(half) = self.lead_or_follow(slot) {
                let mut lead = Lead {
                    conn: self,
                    half: Some(half),
                };
                if let Some(half) = lead.half.as_mut() {
                    self.read_until(half, || slot.is_filled(), deadline);
                }
                drop(lead);
                continue;
            }
            followed = true;
            if slot.wait_turn(deadline) == Turn::TimedOut {
                break slot.try_take();
            }
        };
        if followed {
            self.leave(slot);
        }
        answer
    }

    /// For the background thread: the read half, once no caller has wanted
    /// it for [`QUIET`]; `None` after waiting for it: at most until the quiet
    /// period ends while it is free, or, while a caller holds it, without
    /// waking until the caller gives it back or the connection ends.
    fn quiet_half(&self) -> Option<ReadHalf> {
        let mut r = self.reading();
        // Checked under the lock `fail` takes before notifying: no lost wake-up.
        if self.session.is_closed() {
            return None;
        }
        if r.half.is_none() {
            r.parked = true;
            let mut r = self.quiet.wait(r).unwrap_or_else(|e| e.into_inner());
            r.parked = false;
            return None;
        }
        let quiet_since = r.active.elapsed();
        if quiet_since >= QUIET {
            return r.half.take();
        }
        let _ = self
            .quiet
            .wait_timeout(r, QUIET.saturating_sub(quiet_since));
        None
    }
}

/// A caller's hold on the read half: given back when dropped, also when the
/// caller unwinds, so the background thread (asleep until then) and the
/// other callers are never left without it.
struct Lead<'a, P: Protocol> {
    conn: &'a Conn<P>,
    half: Option<ReadHalf>,
}

impl<P: Protocol> Drop for Lead<'_, P> {
    fn drop(&mut self) {
        if let Some(half) = self.half.take() {
            self.conn.release(half);
        }
    }
}

/// Hands the reading to the newest follower still waiting: QEMU answers in
/// order, so its reply comes last, and it reads everyone else's on the way.
/// (Promoting the oldest would make a new reader after nearly every reply.)
fn promote_next(r: &mut Reading) {
    while let Some(follower) = r.followers.pop() {
        if follower.promote() {
            return;
        }
    }
}

/// The background thread: once the callers have left the socket alone for a
/// while, takes the read half and blocks reading, so events and the end of
/// the connection are seen with no call waiting. Gives the half back as soon
/// as a caller waits, handing that caller the reading.
pub(super) fn background<P: Protocol>(conn: &Weak<Conn<P>>) {
    loop {
        let mut half = {
            let Some(conn) = conn.upgrade() else {
                return;
            };
            conn.rounds.fetch_add(1, Ordering::Relaxed);
            if conn.session.is_closed() {
                return;
            }
            match conn.quiet_half() {
                Some(half) => half,
                None => continue,
            }
        };
        loop {
            // No strong reference while blocked: dropping every handle shuts
            // the socket down, which ends this read.
            let read = half.stream.read(half.buf.room());
            let Some(conn) = conn.upgrade() else {
                return;
            };
            conn.absorb(read, &mut half.buf, None);
            if conn.session.is_closed() || !conn.reading().followers.is_empty() {
                conn.release(half);
                break;
            }
        }
    }
}
