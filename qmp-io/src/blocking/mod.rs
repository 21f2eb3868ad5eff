//! The blocking driver. Callers write their own commands and, while nobody
//! else is, read the socket themselves until their answer is there: a
//! sequential caller costs what a hand-written blocking loop costs, with no
//! thread hop. Callers that find another one reading sleep until it hands
//! their answer over, or hands them the reading. A background thread reads
//! when no caller has for a while, so events and the end of the connection
//! are seen without calls.
//!
//! Here: the connection the handles share, and one call from submit to
//! answer. The stream types are in `stream`, who reads in `reading`, writing
//! in `writing`, and the public handles in `handles`.

mod handles;
mod reading;
mod stream;
mod writing;

use core::sync::atomic::AtomicU64;
use core::time::Duration;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::call::{Call, Waiting, check_fds};
use crate::config::{Config, deadline_after};
use crate::error::{Disconnect, Error, Result};
use crate::json::Json;
use crate::session::{OutBuf, Protocol, Session, Submitted};

pub use crate::reconnect::threads::Reconnecting;
pub use handles::{Client, GuestAgent};
pub use stream::{Stream, WriteStream};

use reading::{ReadHalf, Reading, background};
use writing::{Lane, Writer};

/// What the handles of one connection share.
struct Conn<P: Protocol> {
    session: Arc<Session<P>>,
    writer: Mutex<Writer>,
    /// The stream's fd again, to wait for room to write without the lock.
    write_fd: OwnedFd,
    reading: Mutex<Reading>,
    /// The background thread sleeps here while callers read.
    quiet: Condvar,
    /// Rounds of the background thread's loop (each one a wake-up), for
    /// tests that check an idle connection costs nothing.
    rounds: AtomicU64,
    fds: bool,
    /// fd-carrying commands go one at a time: QEMU keeps only the fds of its
    /// latest read, so a second command's fds could replace the first's.
    fd_lane: Lane,
}

impl<P: Protocol> Conn<P> {
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reading(&self) -> MutexGuard<'_, Reading> {
        self.reading.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, reason: Disconnect) {
        self.session.on_close(reason);
        let _ = self.writer().stream.shutdown_both();
        // Through the lock: the background thread checks for the close under
        // it before it sleeps, so it cannot miss this.
        drop(self.reading());
        self.quiet.notify_all();
    }

    /// Opens the stream with `open`, runs the handshake of `proto` over it,
    /// both within the one connect timeout, then starts the background
    /// reader (a thread called `name`).
    fn open<S: Stream>(
        proto: P,
        config: Config,
        open: impl FnOnce(Duration) -> std::io::Result<S>,
        name: &str,
    ) -> Result<Arc<Self>> {
        let started = Instant::now();
        let (reader, stream) = open(config.connect_timeout)?.split()?;
        let session = Arc::new(Session::new(proto, config));
        let fds = stream.fd_socket().is_some();
        let write_fd = stream.as_fd().try_clone_to_owned()?;
        let mut half = ReadHalf {
            stream: Box::new(reader),
            buf: crate::session::ReadBuf::new(),
        };
        let conn = Arc::new(Conn {
            session,
            writer: Mutex::new(Writer {
                stream: Box::new(stream),
                out: OutBuf::default(),
            }),
            write_fd,
            reading: Mutex::new(Reading {
                half: None,
                followers: Vec::new(),
                active: Instant::now(),
                parked: false,
            }),
            quiet: Condvar::new(),
            rounds: AtomicU64::new(0),
            fds,
            fd_lane: Lane::new(),
        });
        // The handshake: this thread reads until it is done.
        let timeout = conn.session.config.connect_timeout;
        let deadline = started.checked_add(timeout);
        conn.flush(deadline);
        let settled = &conn.session.settled;
        conn.read_until(&mut half, || settled.is_set(), deadline);
        if !settled.is_set() {
            conn.session.handshake_timed_out(timeout);
            conn.fail(Disconnect::Local);
        }
        if let Some(reason) = conn.session.closed_reason() {
            return Err(Error::Disconnected(reason));
        }
        conn.reading().half = Some(half);
        // The background reader holds the connection weakly: dropping every
        // handle ends it.
        let weak = Arc::downgrade(&conn);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || background(&weak))?;
        Ok(conn)
    }

    /// Writes a queued command and waits for its answer.
    fn wait(&self, submitted: Submitted, timeout: Option<Duration>) -> Result<Json> {
        self.wait_until(submitted, timeout, timeout.and_then(deadline_after))
    }

    /// [`wait`](Self::wait) with the call's deadline already running.
    fn wait_until(
        &self,
        submitted: Submitted,
        timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<Json> {
        let waiting = Waiting::new(&self.session, submitted);
        self.flush(deadline);
        let slot = waiting.slot.clone();
        let answer = self.answer(&slot, deadline);
        let result = waiting.finish(answer, timeout);
        if matches!(result, Err(Error::Timeout(_))) {
            // A guest agent resynchronises after a timeout: send what the
            // socket takes now, the rest with the next write.
            self.flush(Some(Instant::now()));
        }
        result
    }

    fn call(&self, call: Call, submit: impl FnOnce(Call) -> Result<Submitted>) -> Result<Json> {
        let timeout = call.timeout.unwrap_or(self.session.config.timeout);
        if call.fds.is_empty() {
            return self.wait(submit(call)?, timeout);
        }
        check_fds(&call, self.fds)?;
        // The wait for the lane counts against the call's own deadline.
        let deadline = timeout.and_then(deadline_after);
        let Some(_lane) = self.fd_lane.enter(deadline) else {
            return Err(Error::Timeout(timeout.unwrap_or_default()));
        };
        self.wait_until(submit(call)?, timeout, deadline)
    }

    fn wait_closed(&self, timeout: Option<Duration>) -> Option<Disconnect> {
        self.session.closed.wait(timeout.and_then(deadline_after));
        self.session.closed_reason()
    }
}

impl<P: Protocol> Drop for Conn<P> {
    fn drop(&mut self) {
        // Every handle is gone: end the connection so the background thread
        // exits.
        self.fail(Disconnect::Local);
    }
}
