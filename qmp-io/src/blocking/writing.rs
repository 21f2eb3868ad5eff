//! Writing: what the core queued goes out in sends that never block while a
//! lock is held, and fd-carrying commands go one at a time.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use rustix::event::PollFlags;

use super::Conn;
use super::stream::{WriteHalf, wait_ready};
use crate::error::Disconnect;
use crate::session::{OutBuf, Protocol};

/// The write side, shared by every caller.
pub(super) struct Writer {
    pub(super) stream: Box<dyn WriteHalf>,
    pub(super) out: OutBuf,
}

/// One caller at a time, waited for until a deadline.
pub(super) struct Lane {
    busy: Mutex<bool>,
    free: Condvar,
}

/// The lane is held until this drops.
pub(super) struct InLane<'a>(&'a Lane);

impl Lane {
    pub(super) fn new() -> Self {
        Lane {
            busy: Mutex::new(false),
            free: Condvar::new(),
        }
    }

    /// Enters the lane, or `None` once `deadline` passed with it still busy.
    pub(super) fn enter(&self, deadline: Option<Instant>) -> Option<InLane<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = match deadline {
                None => self.free.wait(busy).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.free
                        .wait_timeout(busy, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        *busy = true;
        Some(InLane(self))
    }
}

impl Drop for InLane<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.free.notify_one();
    }
}

impl<P: Protocol> Conn<P> {
    /// Writes whatever the core has queued, giving up at `deadline` (what is
    /// left goes out with the next flush); a failure ends the connection.
    ///
    /// The writer lock is held only for sends that do not block: a caller
    /// waits for room in the socket without it, so a caller behind another
    /// one's write is bounded by its own deadline, not by the other's.
    pub(super) fn flush(&self, deadline: Option<Instant>) {
        // Set once this flush took from the core: the caller's command was
        // there, so once that take is written, so is the command.
        let mut took = false;
        loop {
            let mut w = self.writer();
            // Only an empty buffer takes more, so what waits to be written
            // stays within the core's own transmit limit.
            if w.out.is_empty() {
                took = true;
                self.session.take_output(&mut w.out, None);
                if w.out.is_empty() {
                    return;
                }
            }
            let sent = send_available(&mut w);
            if sent.is_ok() {
                self.session.wrote(&w.out);
            }
            drop(w);
            let left = match sent {
                // What this flush took went out: the caller's command with it.
                Ok(Sent::All) if took => return,
                // Someone else's rest went out; the core still holds ours.
                Ok(Sent::All) => continue,
                Err(e) => return self.fail(Disconnect::from_io(e)),
                Ok(Sent::Blocked) => match deadline {
                    None => None,
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => Some(left),
                        _ => return,
                    },
                },
            };
            match wait_ready(self.write_fd.as_fd(), PollFlags::OUT, left) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.fail(Disconnect::from_io(e)),
            }
        }
    }
}

/// What [`send_available`] achieved.
enum Sent {
    /// Everything queued was written.
    All,
    /// The socket is full; the rest stays queued.
    Blocked,
}

/// Writes what the socket takes now, fds included, without blocking. A stream
/// that is not a socket gets plain (blocking) writes.
fn send_available(w: &mut Writer) -> io::Result<Sent> {
    let Writer { stream, out } = w;
    while !out.is_empty() {
        let (bytes, fds) = out.chunk();
        let sent = match (fds, stream.socket()) {
            (None, _) => try_send(&mut **stream, bytes),
            (Some(fds), Some(socket)) => {
                let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                match crate::fd::try_send_with_fds(socket, bytes, &fds) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                    sent => sent.map(Some),
                }
            }
            (Some(_), None) => Err(io::ErrorKind::Unsupported.into()),
        };
        match sent {
            Ok(None) => return Ok(Sent::Blocked),
            Ok(Some(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Some(n)) => out.consume(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()?;
    Ok(Sent::All)
}

/// Writes some of `bytes` if the socket has room now: `None` when it has
/// none. A stream that is not a socket gets a plain write.
fn try_send(stream: &mut dyn WriteHalf, bytes: &[u8]) -> io::Result<Option<usize>> {
    use rustix::io::Errno;
    use rustix::net::{SendFlags, send};
    match send(
        stream.fd(),
        bytes,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    ) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::AGAIN) => Ok(None),
        // A pipe (a child's stdin, nonblocking): a plain write.
        Err(Errno::NOTSOCK) => match stream.write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            written => written.map(Some),
        },
        Err(e) => Err(e.into()),
    }
}
