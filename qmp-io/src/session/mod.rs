//! The state both drivers share: the core state machine, the table of callers
//! waiting for replies, the event subscribers, and outgoing bytes with the
//! file descriptors that travel with them. Drivers only move bytes.
//!
//! Here: one connection's [`Session`]. Where the core's outputs go is in
//! `dispatch`, the two cores behind one trait in `protocol`, the bytes
//! waiting to be written in `outbuf`, and where reads land in `readbuf`.

mod dispatch;
mod outbuf;
mod protocol;
mod readbuf;

use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Waker;
use core::time::Duration;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use qmp_proto::{GuestAgent, Heap, Id, Version};

use crate::config::Config;
use crate::deadlines::{self, Expire};
use crate::error::{Disconnect, Error};
use crate::events::{EventFilter, Gap, Queue, Subscribers, Subscription, Wake};
use crate::json::Json;
use crate::slot::{Latch, Slot};

pub(crate) use dispatch::Dispatch;
pub(crate) use outbuf::OutBuf;
pub(crate) use protocol::{Protocol, nonce};
pub(crate) use readbuf::{ReadBuf, scratch};

use dispatch::Waiter;

/// What a caller gets: the `return` value, or why there is none.
pub(crate) type Answer = Result<Json, Error>;

/// The server greeting, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// QEMU's version.
    pub version: Version,
    /// The package string (a distribution's build), often empty.
    pub package: String,
    /// The capabilities QEMU offered (`oob`).
    pub capabilities: Vec<String>,
    /// Whether out-of-band execution was negotiated.
    pub oob: bool,
}

pub(crate) struct Inner<P> {
    pub(crate) proto: P,
    d: Dispatch,
    /// fds to attach at offsets of `proto.pending_transmit()`.
    marks: VecDeque<(usize, Vec<OwnedFd>)>,
    /// Bytes moved to a driver since the connection started.
    taken: u64,
    /// The async driver, to wake when there is something to write.
    driver: Option<Waker>,
}

impl<P: Protocol> Inner<P> {
    fn drain(&mut self) {
        self.proto.drain(&mut self.d);
        self.d.end_drain();
    }

    fn set_driver(&mut self, driver: &Waker) {
        match &mut self.driver {
            Some(old) if old.will_wake(driver) => {}
            slot => *slot = Some(driver.clone()),
        }
    }
}

/// One connection's shared state.
pub(crate) struct Session<P> {
    inner: Mutex<Inner<P>>,
    pub(crate) config: Config,
    /// The handshake finished, or the connection ended.
    pub(crate) settled: Latch,
    pub(crate) closed: Latch,
    /// Some command waits for its bytes to be written (saves drivers a lock
    /// per write otherwise).
    unsent: AtomicBool,
}

impl<P: Protocol + Send> Expire for Session<P> {
    fn expire(&self, now: Instant) -> Option<Instant> {
        self.expire_calls(now)
    }
}

/// A command queued by a caller.
pub(crate) struct Submitted {
    pub(crate) id: Option<Id>,
    /// Filled with the reply, or for a command that gets none, once written.
    pub(crate) slot: Arc<Slot<Answer>>,
}

impl<P: Protocol> Session<P> {
    pub(crate) fn new(proto: P, config: Config) -> Self {
        Self {
            inner: Mutex::new(Inner {
                proto,
                // The core clamps the limit so; the error reports what applied.
                d: Dispatch::new(
                    config
                        .limits
                        .receive
                        .max_message_size
                        .min(qmp_proto::framer::MAX_MESSAGE_SIZE),
                ),
                marks: VecDeque::new(),
                taken: 0,
                driver: None,
            }),
            config,
            settled: Latch::new(),
            closed: Latch::new(),
            unsent: AtomicBool::new(false),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner<P>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drains the core after a change, then wakes who must know, outside the lock.
    fn settle(&self, mut inner: MutexGuard<'_, Inner<P>>) {
        inner.drain();
        let Inner { proto, d, .. } = &mut *inner;
        let handshake = d.handshake;
        let closed = d.closed.is_some();
        let wakes = core::mem::take(&mut d.wakes);
        let driver = if proto.pending_transmit().is_empty() && !closed {
            None
        } else {
            inner.driver.take()
        };
        drop(inner);
        // Flags first: whoever is woken must see them (a driver that missed
        // `closed` would wait for ever with the socket open).
        if handshake || closed {
            self.settled.set();
        }
        if closed {
            self.closed.set();
        }
        for (q, w) in wakes {
            q.wake(w);
        }
        if let Some(w) = driver {
            w.wake();
        }
    }

    /// Queues a command encoded by `send`; `fds` go with its first byte.
    pub(crate) fn submit(
        &self,
        name: &str,
        fds: Vec<OwnedFd>,
        send: impl FnOnce(&mut P) -> Result<Option<Id>, qmp_proto::Error>,
    ) -> Result<Submitted, Error> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.d.closed {
            return Err(Error::Disconnected(reason.clone()));
        }
        let before = inner.proto.pending_transmit().len();
        let id = send(&mut inner.proto).map_err(|e| match e {
            qmp_proto::Error::Usage(u) => Error::Usage(u),
            qmp_proto::Error::Protocol(p) => Error::Disconnected(Disconnect::Protocol(p)),
            _ => Error::Disconnected(Disconnect::Local),
        })?;
        let quiet = self.config.is_quiet(name);
        if !quiet && tracing::enabled!(tracing::Level::DEBUG) {
            #[allow(clippy::indexing_slicing)] // before: the pending length before this command
            let bytes = &inner.proto.pending_transmit()[before..];
            let text = String::from_utf8_lossy(bytes);
            tracing::debug!(
                command = name,
                id = id.map(|i| i.0),
                bytes = text.trim_end(),
                "qmp send"
            );
        }
        if !fds.is_empty() {
            inner.marks.push_back((before, fds));
        }
        let slot = Arc::new(Slot::new());
        match id {
            Some(id) => {
                let waiter = Waiter {
                    slot: slot.clone(),
                    quiet,
                    deadline: None,
                };
                inner.d.waiters.insert(id.0, waiter);
            }
            None => {
                // No reply will come: the answer is that it was written.
                #[allow(clippy::arithmetic_side_effects)] // bytes written: a u64 never wraps
                let end = inner.taken + inner.proto.pending_transmit().len() as u64;
                inner.d.unsent.push_back((end, slot.clone()));
                self.unsent.store(true, Ordering::Relaxed);
            }
        }
        self.settle(inner);
        Ok(Submitted { id, slot })
    }

    /// A caller stopped waiting for `id` (timeout or dropped future).
    pub(crate) fn abandon(&self, id: Id) {
        let mut inner = self.lock();
        if inner.d.waiters.remove(&id.0).is_some() && inner.d.closed.is_none() {
            tracing::debug!(id = id.0, "command abandoned");
            if inner.proto.abandon(id) {
                self.forget_queued(&mut inner);
            }
        }
        self.settle(inner);
    }

    /// Gives the call waiting for `id` a deadline (`timeout` from now, for
    /// its error), kept by the process's deadline thread (see
    /// `crate::deadlines`) instead of a runtime timer per call. False when
    /// there is no such thread: the caller keeps a timer of its own.
    pub(crate) fn arm(self: &Arc<Self>, id: Id, at: Instant, timeout: Duration) -> bool
    where
        P: Send + 'static,
    {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(waiter) = inner.d.waiters.get_mut(&id.0) else {
            return true; // answered (or failed) already
        };
        let sooner = inner.d.alarm.is_none_or(|alarm| at < alarm);
        if sooner {
            let me: Weak<dyn Expire> = Arc::downgrade(self) as Weak<dyn Expire>;
            if !deadlines::wake_at(at, me) {
                return false;
            }
            inner.d.alarm = Some(at);
        }
        waiter.deadline = Some((at, timeout));
        true
    }

    /// The deadline thread's turn at `now`: every call whose deadline
    /// passed fails with `Error::Timeout` and its command is abandoned (a late
    /// reply is dropped). Returns the earliest deadline still ahead.
    fn expire_calls(&self, now: Instant) -> Option<Instant> {
        let mut inner = self.lock();
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        inner.d.waiters.retain(|&id, w| match w.deadline {
            Some((at, timeout)) if at <= now => {
                expired.push((Id(id), w.slot.clone(), timeout));
                false
            }
            Some((at, _)) => {
                next = Some(next.map_or(at, |n| n.min(at)));
                true
            }
            None => true,
        });
        inner.d.alarm = next;
        let mut forget = false;
        if inner.d.closed.is_none() {
            for (id, _, timeout) in &expired {
                tracing::debug!(id = id.0, ?timeout, "command timed out");
                forget |= inner.proto.abandon(*id);
            }
        }
        if forget {
            self.forget_queued(&mut inner);
        }
        self.settle(inner);
        for (_, slot, timeout) in expired {
            slot.fill(Err(Error::Timeout(timeout)));
        }
        next
    }

    /// The core dropped the bytes it had queued (a guest-agent resync): the
    /// commands among them that get no reply were never written, and the fds
    /// that were to go with them are closed.
    fn forget_queued(&self, inner: &mut Inner<P>) {
        inner.marks.clear();
        let taken = inner.taken;
        inner.d.unsent.retain(|(end, slot)| {
            let dropped = *end > taken;
            if dropped {
                slot.fill(Err(Error::Discarded));
            }
            !dropped
        });
        self.unsent
            .store(!inner.d.unsent.is_empty(), Ordering::Relaxed);
    }

    /// Feeds bytes read from the socket. Returns an error when the core
    /// cannot take them (the connection is then over).
    pub(crate) fn on_input(&self, mut bytes: &[u8]) {
        let mut inner = self.lock();
        if inner.d.closed.is_some() {
            return;
        }
        loop {
            // The core's own error is sticky and reported through drain.
            let taken = inner.proto.receive(bytes).unwrap_or_default();
            bytes = bytes.get(taken..).unwrap_or_default(); // taken <= bytes.len()
            inner.drain();
            if bytes.is_empty() || taken == 0 || inner.d.closed.is_some() {
                break;
            }
        }
        self.settle(inner);
    }

    /// The connection ended for `reason` (end of stream, socket error, or local).
    pub(crate) fn on_close(&self, reason: Disconnect) {
        let mut inner = self.lock();
        if inner.d.closed.is_some() {
            return;
        }
        inner.d.cause = Some(reason);
        inner.proto.receive_eof();
        inner.drain();
        let d = &mut inner.d;
        if d.closed.is_none() {
            let reason = d.cause.take().unwrap_or(Disconnect::Local);
            d.fail_all(&reason);
            d.closed = Some(reason);
        }
        inner.marks.clear();
        self.settle(inner);
    }

    /// Moves the bytes to write (and their fds) into `out`. When there is
    /// nothing, remembers `driver` to wake once there is.
    pub(crate) fn take_output(&self, out: &mut OutBuf, driver: Option<&Waker>) {
        let mut inner = self.lock();
        if let Some(w) = driver {
            inner.set_driver(w);
        }
        let pending = inner.proto.pending_transmit();
        if pending.is_empty() {
            return;
        }
        let base = out.bytes.len();
        let len = pending.len();
        out.bytes.extend_from_slice(pending);
        inner.proto.advance_transmit(len);
        inner.taken = inner.taken.saturating_add(len as u64);
        // Drained, not taken: the queue keeps its room for the next ones.
        #[allow(clippy::arithmetic_side_effects)] // offsets within out.bytes, a Vec's length
        out.marks
            .extend(inner.marks.drain(..).map(|(at, fds)| (base + at, fds)));
    }

    /// Remembers the async driver, to wake when there is something to write
    /// or the connection closes.
    pub(crate) fn set_driver(&self, driver: &Waker) {
        self.lock().set_driver(driver);
    }

    /// A driver wrote `out`'s bytes up to `out.written()`: commands that get
    /// no reply and were wholly written are done.
    pub(crate) fn wrote(&self, out: &OutBuf) {
        if !self.unsent.load(Ordering::Relaxed) {
            return;
        }
        let mut inner = self.lock();
        let unsent = &mut inner.d.unsent;
        while let Some((end, _)) = unsent.front()
            && *end <= out.written()
        {
            if let Some((_, slot)) = unsent.pop_front() {
                slot.fill(Ok(Json::no_reply()));
            }
        }
        self.unsent.store(!unsent.is_empty(), Ordering::Relaxed);
    }

    /// Ends a connection whose handshake did not finish within `timeout` (the
    /// configured connect timeout), naming the step that was missing.
    pub(crate) fn handshake_timed_out(&self, timeout: core::time::Duration) {
        let greeted = self.lock().d.greeting.is_some();
        self.on_close(Disconnect::HandshakeTimeout {
            step: P::missing_step(greeted),
            timeout,
        });
    }

    pub(crate) fn closed_error(&self) -> Error {
        Error::Disconnected(self.closed_reason().unwrap_or(Disconnect::Local))
    }

    pub(crate) fn subscribe(self: &Arc<Self>, filter: EventFilter) -> Subscription {
        let mut inner = self.lock();
        let closed = inner.d.closed.is_some();
        let (c, bytes) = (self.config.event_capacity, self.config.event_bytes);
        let registry: Weak<dyn Subscribers> = if closed {
            Weak::<Self>::new()
        } else {
            Arc::<Self>::downgrade(self)
        };
        let (sub, queue) = Subscription::new(filter, c, bytes, closed, registry);
        if !closed {
            inner.d.subscribers.push(queue);
        }
        sub
    }

    /// Takes over `queues` of a reconnecting client (see `crate::reconnect`),
    /// `mark` first in each, before any event of this connection; they stay
    /// open when it closes. False, and nothing done, once it is closed.
    pub(crate) fn adopt(&self, queues: &[Arc<Queue>], mark: Option<&Gap>) -> bool {
        let mut inner = self.lock();
        if inner.d.closed.is_some() {
            return false;
        }
        inner.d.keep_subscribers = true;
        for q in queues {
            if let Some(gap) = mark {
                match q.push_mark(gap.clone()) {
                    Wake::None => {}
                    w => inner.d.wakes.push((q.clone(), w)),
                }
            }
            inner.d.subscribers.push(q.clone());
        }
        self.settle(inner);
        true
    }

    /// How many subscribers' queues this connection fills.
    #[cfg(test)]
    pub(crate) fn subscriber_count(&self) -> usize {
        self.lock().d.subscribers.len()
    }

    pub(crate) fn greeting(&self) -> Option<Greeting> {
        self.lock().d.greeting.clone()
    }

    pub(crate) fn closed_reason(&self) -> Option<Disconnect> {
        self.lock().d.closed.clone()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_set()
    }
}

impl<P: Protocol> Subscribers for Session<P> {
    fn unsubscribe(&self, queue: &Arc<Queue>) {
        let mut inner = self.lock();
        let subscribers = &mut inner.d.subscribers;
        if let Some(i) = subscribers.iter().position(|q| Arc::ptr_eq(q, queue)) {
            // The order of subscribers does not matter: each gets every event.
            subscribers.swap_remove(i);
        }
    }
}

impl Session<GuestAgent<Heap>> {
    /// Starts a new synchronisation with a fresh nonce.
    pub(crate) fn resync_agent(&self) -> Result<(), Error> {
        let mut inner = self.lock();
        if inner.d.closed.is_some() || inner.proto.resync(nonce()).is_err() {
            drop(inner);
            return Err(self.closed_error());
        }
        self.forget_queued(&mut inner);
        self.settle(inner);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use qmp_proto::{Client, ClientConfig};

    use super::*;

    const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 9}, \"package\": \"\"}, \"capabilities\": []}}\r\n";
    const EVENT: &[u8] =
        b"{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n";

    /// A session past its handshake, fed by hand.
    fn negotiated() -> Arc<Session<Client<Heap>>> {
        let session = Arc::new(Session::new(
            Client::new(ClientConfig::default()),
            Config::default(),
        ));
        session.on_input(GREETING);
        let mut out = OutBuf::default();
        session.take_output(&mut out, None);
        assert!(String::from_utf8_lossy(&out.bytes).contains("qmp_capabilities"));
        session.on_input(b"{\"return\": {}, \"id\": 0}\r\n");
        assert!(session.settled.is_set() && !session.is_closed());
        session
    }

    fn subscribers(session: &Session<Client<Heap>>) -> usize {
        session.lock().d.subscribers.len()
    }

    /// A close from this side (a handshake timeout, `close`, a socket error)
    /// while a message is half received is reported as what it is, not as
    /// the peer's protocol error "closed in the middle of a message".
    #[test]
    fn a_local_close_mid_message_keeps_its_reason() {
        let timeout = core::time::Duration::from_millis(300);
        let session = Arc::new(Session::new(
            Client::<Heap>::new(ClientConfig::default()),
            Config::default(),
        ));
        session.on_input(b"{\"QMP\": {\"version\": ");
        session.handshake_timed_out(timeout);
        assert!(
            matches!(
                session.closed_reason(),
                Some(Disconnect::HandshakeTimeout {
                    step: crate::error::HandshakeStep::Greeting,
                    timeout: t,
                }) if t == timeout
            ),
            "{:?}",
            session.closed_reason()
        );

        let session = negotiated();
        session.on_input(b"{\"return\": {\"status\": \"run");
        session.on_close(Disconnect::Local);
        assert!(
            matches!(session.closed_reason(), Some(Disconnect::Local)),
            "{:?}",
            session.closed_reason()
        );

        let session = negotiated();
        session.on_input(b"{\"return\": {\"status\": \"run");
        session.on_close(Disconnect::Io(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        ))));
        assert!(
            matches!(session.closed_reason(), Some(Disconnect::Io(ref e)) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{:?}",
            session.closed_reason()
        );

        // The peer's own end of stream mid-message stays what it was.
        let session = negotiated();
        session.on_input(b"{\"return\": {\"status\": \"run");
        session.on_close(Disconnect::Eof { mid_message: false });
        assert!(
            matches!(
                session.closed_reason(),
                Some(Disconnect::Eof { mid_message: true })
            ),
            "{:?}",
            session.closed_reason()
        );
    }

    #[test]
    fn a_dropped_subscription_leaves_the_session_at_once() {
        let session = negotiated();
        let kept = session.subscribe(EventFilter::all());
        let dropped = session.subscribe(EventFilter::all());
        let queue = dropped.queue();
        assert_eq!(subscribers(&session), 2);
        drop(dropped);
        assert_eq!(subscribers(&session), 1);
        session.on_input(EVENT);
        assert_eq!(kept.len(), 1);
        assert_eq!(queue.queued(), 0);
        drop(kept);
        assert_eq!(subscribers(&session), 0);
    }
}
