//! What the blocking and the async transports share: one [`Connection`]
//! behind a lock, the calls waiting on it, and the event hubs of the domain
//! clients, fed by whichever reader the transport runs.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::task::Waker;
use core::time::Duration;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use qmp_io::{Disconnect, EventHub};

use crate::conn::{CallId, Connection, Output, Reply};
use crate::error::Error;
use crate::qmp::{disconnect_of, to_qmp_error};

/// What a call does with its outcome; run outside the lock.
pub(crate) type Done = Box<dyn FnOnce(Result<Reply, Error>) + Send>;

/// One libvirt connection, shared by its transport's reader and its callers.
pub(crate) struct Session {
    state: Mutex<State>,
    /// Signalled when the connection opens or closes.
    changed: Condvar,
    /// The client settings (timeouts, event queues).
    pub(crate) config: qmp_io::Config,
}

struct State {
    conn: Connection,
    waiters: BTreeMap<CallId, Done>,
    /// Event registrations waiting for their reply, with the hub their
    /// events go to.
    registering: BTreeMap<CallId, EventHub>,
    /// Event hubs by the callback id libvirt gave their registration.
    hubs: BTreeMap<i32, EventHub>,
    opened: bool,
    /// Why the connection ended, once it did.
    closed: Option<Disconnect>,
    /// The libvirt error that ended it (a refused handshake, say).
    failure: Option<Error>,
    /// The async transport's task, woken when there is something to send.
    driver: Option<Waker>,
    /// An async connect waiting for the handshake's outcome.
    opener: Option<Waker>,
    /// Async waiters for the end of the connection.
    closed_waiters: Vec<futures_channel::oneshot::Sender<()>>,
    /// Every owning handle is gone: the transport ends once it has flushed.
    released: bool,
}

impl Session {
    pub(crate) fn new(conn: Connection, config: qmp_io::Config) -> Self {
        Self {
            state: Mutex::new(State {
                conn,
                waiters: BTreeMap::new(),
                registering: BTreeMap::new(),
                hubs: BTreeMap::new(),
                opened: false,
                closed: None,
                failure: None,
                driver: None,
                opener: None,
                closed_waiters: Vec::new(),
                released: false,
            }),
            changed: Condvar::new(),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a call with `start` and runs `done` with its outcome. A closed
    /// connection refuses it with the reason it closed.
    pub(crate) fn call(
        &self,
        start: impl FnOnce(&mut Connection) -> Result<CallId, Error>,
        done: Done,
    ) -> qmp_io::Result<CallId> {
        self.call_with(start, done, None)
    }

    /// [`call`](Self::call) for an event registration whose events go to `hub`.
    pub(crate) fn call_with(
        &self,
        start: impl FnOnce(&mut Connection) -> Result<CallId, Error>,
        done: Done,
        hub: Option<EventHub>,
    ) -> qmp_io::Result<CallId> {
        let mut s = self.lock();
        if let Some(reason) = &s.closed {
            return Err(qmp_io::Error::Disconnected(reason.clone()));
        }
        let id = start(&mut s.conn).map_err(to_qmp_error)?;
        s.waiters.insert(id, done);
        if let Some(hub) = hub {
            s.registering.insert(id, hub);
        }
        if let Some(w) = s.driver.take() {
            w.wake();
        }
        Ok(id)
    }

    /// Forgets a call its caller gave up on: its late reply is dropped.
    pub(crate) fn abandon(&self, id: CallId) {
        let mut s = self.lock();
        s.waiters.remove(&id);
        s.registering.remove(&id);
        s.conn.abandon(id);
    }

    /// Stops delivering the events of registration `callback_id`.
    pub(crate) fn remove_hub(&self, callback_id: i32) {
        if let Some(hub) = self.lock().hubs.remove(&callback_id) {
            hub.close();
        }
    }

    /// Moves the bytes waiting to be sent to the end of `out`.
    pub(crate) fn take_transmit(&self, out: &mut Vec<u8>) {
        let mut s = self.lock();
        let pending = s.conn.pending_transmit();
        let n = pending.len();
        out.extend_from_slice(pending);
        // Exactly what was pending: cannot be refused.
        let _ = s.conn.advance_transmit(n);
    }

    /// Registers the async transport's task, to be woken when there is
    /// something to send or the connection is released.
    pub(crate) fn set_driver(&self, waker: &Waker) {
        let mut s = self.lock();
        match &s.driver {
            Some(w) if w.will_wake(waker) => {}
            _ => s.driver = Some(waker.clone()),
        }
    }

    /// Registers an async connect, to be woken when the handshake ends.
    pub(crate) fn set_opener(&self, waker: &Waker) {
        self.lock().opener = Some(waker.clone());
    }

    /// Feeds bytes read from libvirtd.
    pub(crate) fn receive(&self, bytes: &[u8]) {
        let mut s = self.lock();
        // A protocol error comes out as Output::Closed too.
        let _ = s.conn.receive(bytes);
        self.drain(s);
    }

    /// The socket ended: `why`, or end of stream when `None`.
    pub(crate) fn receive_eof(&self, why: Option<Disconnect>) {
        let mut s = self.lock();
        if s.closed.is_none()
            && let Some(why) = why
        {
            s.closed = Some(why);
        }
        s.conn.receive_eof();
        self.drain(s);
    }

    /// Dispatches the connection's outputs; runs the finished calls' `done`
    /// after the lock is released.
    fn drain(&self, mut s: MutexGuard<'_, State>) {
        let mut finished = Vec::new();
        let mut changed = false;
        while let Some(output) = s.conn.poll_output() {
            match output {
                Output::Opened { .. } => {
                    s.opened = true;
                    changed = true;
                }
                Output::Reply { id, result } => {
                    if let Some(hub) = s.registering.remove(&id)
                        && let Ok(Reply::EventRegistered { callback_id }) = &result
                    {
                        // Before any of its events: they follow the reply.
                        s.hubs.insert(*callback_id, hub);
                    }
                    if let Some(done) = s.waiters.remove(&id) {
                        finished.push((done, result));
                    }
                }
                Output::Event(e) => {
                    if let Some(hub) = s.hubs.get(&e.callback_id) {
                        hub.publish(crate::qmp::event_of(e));
                    }
                }
                Output::Closed(error) => {
                    if s.closed.is_none() {
                        s.closed = Some(disconnect_of(error.as_ref()));
                    }
                    s.failure = error;
                    for (_, hub) in core::mem::take(&mut s.hubs) {
                        hub.close();
                    }
                    // The connection failed its calls before this output;
                    // whatever is left ends with it too.
                    for (_, done) in core::mem::take(&mut s.waiters) {
                        finished.push((done, Err(Error::Disconnected)));
                    }
                    for w in s.closed_waiters.drain(..) {
                        let _ = w.send(());
                    }
                    changed = true;
                }
                // Other programs' messages and strays are not ours.
                _ => {}
            }
        }
        let wake = s.driver.take();
        let opener = if changed { s.opener.take() } else { None };
        drop(s);
        if changed {
            self.changed.notify_all();
        }
        if let Some(w) = opener {
            w.wake();
        }
        if let Some(w) = wake {
            // There may be PONGs to send.
            w.wake();
        }
        for (done, result) in finished {
            done(result);
        }
    }

    /// Waits (blocking) until the handshake is done, within `timeout`.
    pub(crate) fn wait_open(&self, timeout: Duration) -> qmp_io::Result<()> {
        // None: past what an Instant can hold, so no end.
        let deadline = Instant::now().checked_add(timeout);
        let mut s = self.lock();
        loop {
            if let Some(e) = open_outcome(&s) {
                return e;
            }
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Err(handshake_timeout(timeout));
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The outcome of the handshake, once there is one.
    pub(crate) fn open_result(&self) -> Option<qmp_io::Result<()>> {
        open_outcome(&self.lock())
    }

    /// True once the connection is over.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Why the connection ended, once it did.
    pub(crate) fn closed_reason(&self) -> Option<Disconnect> {
        self.lock().closed.clone()
    }

    /// Waits (blocking) until the connection is over; why.
    pub(crate) fn wait_closed(&self) -> Disconnect {
        let mut s = self.lock();
        loop {
            if let Some(reason) = &s.closed {
                return reason.clone();
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits (blocking, at most `timeout`) until the connection is over.
    pub(crate) fn wait_closed_for(&self, timeout: Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.closed.is_none())
            .unwrap_or_else(|e| e.into_inner());
        s.closed.is_some()
    }

    /// Resolves when the connection is over (async).
    pub(crate) fn closed_signal(&self) -> Option<futures_channel::oneshot::Receiver<()>> {
        let mut s = self.lock();
        if s.closed.is_some() {
            return None;
        }
        let (tx, rx) = futures_channel::oneshot::channel();
        s.closed_waiters.push(tx);
        Some(rx)
    }

    /// Every owning handle is gone: sends `CONNECT_CLOSE`; the transport
    /// ends once it is flushed.
    pub(crate) fn release(&self) {
        let mut s = self.lock();
        s.released = true;
        let _ = s.conn.close();
        if let Some(w) = s.driver.take() {
            w.wake();
        }
    }

    /// True when the transport may stop: the connection is over, or it was
    /// released and nothing is left to send.
    pub(crate) fn finished(&self) -> bool {
        let s = self.lock();
        s.closed.is_some() || (s.released && s.conn.pending_transmit().is_empty())
    }
}

/// The handshake did not finish in time.
pub(crate) fn handshake_timeout(timeout: Duration) -> qmp_io::Error {
    qmp_io::Error::Connect(Arc::new(io::Error::new(
        io::ErrorKind::TimedOut,
        alloc::format!(
            "libvirtd did not finish the handshake within the connect timeout ({timeout:?})"
        ),
    )))
}

/// The outcome of the handshake, once there is one.
fn open_outcome(s: &State) -> Option<qmp_io::Result<()>> {
    if s.opened && s.closed.is_none() {
        return Some(Ok(()));
    }
    let reason = s.closed.as_ref()?;
    Some(Err(match &s.failure {
        // The daemon refused: say what it said.
        Some(e @ (Error::Libvirt(_) | Error::AuthNotSupported(_))) => {
            qmp_io::Error::Connect(Arc::new(io::Error::other(e.clone())))
        }
        _ => qmp_io::Error::Disconnected(reason.clone()),
    }))
}
