//! The state both drivers share: the core state machine, the table of callers
//! waiting for replies, the event subscribers, and outgoing bytes with the
//! file descriptors that travel with them. Drivers only move bytes.

use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Waker;
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use qmp_proto::{AgentOutput, Client, GuestAgent, Heap, Id, Output, ProtocolError, Reply, Version};

use crate::config::Config;
use crate::error::{CommandError, Disconnect, Error};
use crate::events::{Event, EventFilter, Queue, Subscription, Wake};
use crate::json::Json;
use crate::slot::{Latch, Slot};

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

struct Waiter {
    slot: Arc<Slot<Answer>>,
    quiet: bool,
}

/// Where the core's outputs go.
pub(crate) struct Dispatch {
    waiters: HashMap<u64, Waiter>,
    /// Commands the core failed with `Reply::Closed`: the connection is
    /// closing (the reason follows), or a guest-agent resync discarded them.
    orphans: Vec<Waiter>,
    /// Commands that get no reply, by the stream offset just past their last
    /// byte: answered once the driver wrote that far.
    unsent: VecDeque<(u64, Arc<Slot<Answer>>)>,
    subscribers: Vec<Arc<Queue>>,
    wakes: Vec<(Arc<Queue>, Wake)>,
    /// Event names seen, shared by every event of that name (few distinct).
    names: Vec<Arc<str>>,
    greeting: Option<Greeting>,
    /// Set once the handshake (greeting and negotiation, or the agent's sync)
    /// completed.
    handshake: bool,
    /// Why the connection ended, once it has.
    closed: Option<Disconnect>,
    /// What the driver saw before telling the core (end of stream, socket error).
    cause: Option<Disconnect>,
}

impl Dispatch {
    fn new() -> Self {
        Self {
            waiters: HashMap::new(),
            orphans: Vec::new(),
            unsent: VecDeque::new(),
            subscribers: Vec::new(),
            wakes: Vec::new(),
            names: Vec::new(),
            greeting: None,
            handshake: false,
            closed: None,
            cause: None,
        }
    }

    fn reply(&mut self, id: Id, reply: Reply<'_>) {
        let Some(waiter) = self.waiters.remove(&id.0) else {
            return;
        };
        let answer = match reply {
            Reply::Return(value) => {
                if !waiter.quiet {
                    tracing::debug!(id = id.0, reply = value.as_str(), "qmp return");
                }
                Ok(Json::copy(value))
            }
            Reply::Error(e) => {
                let e = CommandError::from_reply(&e);
                if !waiter.quiet {
                    tracing::debug!(id = id.0, class = %e.class, desc = %e.desc, "qmp error");
                }
                Err(Error::Command(e))
            }
            Reply::Oversized { size } => {
                tracing::warn!(id = id.0, size, "reply over the size limit skipped");
                Err(Error::ReplyTooLarge { size })
            }
            _ => {
                self.orphans.push(waiter);
                return;
            }
        };
        waiter.slot.fill(answer);
    }

    fn event(&mut self, event: &qmp_proto::Event<'_>) {
        tracing::debug!(event = %event.name.raw(), "qmp event");
        let mut owned: Option<Arc<Event>> = None;
        let names = &mut self.names;
        for q in &self.subscribers {
            if !q.is_gone() && q.wants(event) {
                let e = owned.get_or_insert_with(|| Arc::new(Event::from_proto(event, names)));
                match q.push(e.clone()) {
                    Wake::None => {}
                    w => self.wakes.push((q.clone(), w)),
                }
            }
        }
    }

    fn closed(&mut self, error: Option<ProtocolError>) {
        let reason = match (self.cause.take(), error) {
            (Some(Disconnect::Eof { .. }), Some(ProtocolError::TruncatedMessage)) => {
                Disconnect::Eof { mid_message: true }
            }
            (_, Some(e)) => Disconnect::Protocol(e),
            (Some(cause), None) => cause,
            (None, None) => Disconnect::Eof { mid_message: false },
        };
        tracing::debug!(reason = %reason, "connection closed");
        self.fail_all(&reason);
        self.closed = Some(reason);
    }

    /// After a drain: orphans not explained by a close were discarded.
    fn end_drain(&mut self) {
        for w in self.orphans.drain(..) {
            w.slot.fill(Err(Error::Discarded));
        }
    }

    fn fail_all(&mut self, reason: &Disconnect) {
        let orphans = self.orphans.drain(..).map(|w| w.slot);
        let unsent = self.unsent.drain(..).map(|(_, slot)| slot);
        for slot in self
            .waiters
            .drain()
            .map(|(_, w)| w.slot)
            .chain(orphans)
            .chain(unsent)
        {
            slot.fill(Err(Error::Disconnected(reason.clone())));
        }
        for q in self.subscribers.drain(..) {
            q.close();
        }
    }
}

/// A core state machine as the drivers see it.
pub(crate) trait Protocol: Send + 'static {
    fn receive(&mut self, bytes: &[u8]) -> Result<usize, qmp_proto::Error>;
    fn receive_eof(&mut self);
    /// Hands every pending output to `d`.
    fn drain(&mut self, d: &mut Dispatch);
    /// Gives up on `id` (its late reply is dropped). True when the core
    /// dropped the bytes it had queued to write (a guest-agent resync).
    fn abandon(&mut self, id: Id) -> bool;
    fn pending_transmit(&self) -> &[u8];
    fn advance_transmit(&mut self, n: usize);
}

impl Protocol for Client<Heap> {
    fn receive(&mut self, bytes: &[u8]) -> Result<usize, qmp_proto::Error> {
        Client::receive(self, bytes)
    }

    fn receive_eof(&mut self) {
        Client::receive_eof(self)
    }

    fn drain(&mut self, d: &mut Dispatch) {
        while let Some(output) = self.poll_output() {
            match output {
                Output::Reply { id, reply } => d.reply(id, reply),
                Output::Event(e) => d.event(&e),
                Output::Greeting(g) => {
                    d.greeting = Some(Greeting {
                        version: g.version,
                        package: g.package.to_string_lossless(),
                        capabilities: g.capabilities().map(|c| c.to_string_lossless()).collect(),
                        oob: false,
                    });
                }
                Output::Ready { oob } => {
                    if let Some(g) = &mut d.greeting {
                        g.oob = oob;
                    }
                    d.handshake = true;
                }
                Output::Unmatched(m) => {
                    tracing::debug!(message = m.as_str(), "reply for no waiting command dropped");
                }
                Output::IdlessError(e) => {
                    tracing::warn!(class = %e.class, desc = %e.desc, "error reply without an id");
                }
                Output::Dropped { kind, size } => {
                    tracing::warn!(?kind, size, "message over the size limit dropped");
                }
                Output::Closed(e) => d.closed(e),
                _ => {}
            }
        }
    }

    fn abandon(&mut self, id: Id) -> bool {
        // Unknown ids were already answered: nothing to abandon.
        let _ = Client::abandon(self, id);
        false
    }

    fn pending_transmit(&self) -> &[u8] {
        Client::pending_transmit(self)
    }

    fn advance_transmit(&mut self, n: usize) {
        // `n` never exceeds what pending_transmit returned.
        let _ = Client::advance_transmit(self, n);
    }
}

/// A fresh value for `guest-sync-delimited`: random enough that an earlier
/// session's sync reply is never taken for this one's. Kept below 2^53 so any
/// JSON reader holds it exactly.
pub(crate) fn nonce() -> u64 {
    use core::hash::BuildHasher;
    use core::sync::atomic::{AtomicU64, Ordering};
    use std::hash::RandomState;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one((n, std::time::SystemTime::now())) & ((1 << 53) - 1)
}

impl Protocol for GuestAgent<Heap> {
    fn receive(&mut self, bytes: &[u8]) -> Result<usize, qmp_proto::Error> {
        GuestAgent::receive(self, bytes)
    }

    fn receive_eof(&mut self) {
        GuestAgent::receive_eof(self)
    }

    fn drain(&mut self, d: &mut Dispatch) {
        while let Some(output) = self.poll_output() {
            match output {
                AgentOutput::Reply { id, reply } => d.reply(id, reply),
                AgentOutput::Synced => {
                    tracing::debug!("guest agent synchronised");
                    d.handshake = true;
                }
                AgentOutput::Unmatched(m) => {
                    tracing::debug!(
                        message = m.as_str(),
                        "guest agent message for no command dropped"
                    );
                }
                AgentOutput::IdlessError(e) => {
                    tracing::warn!(class = %e.class, desc = %e.desc, "guest agent error without an id");
                }
                AgentOutput::Closed(e) => d.closed(e),
                _ => {}
            }
        }
    }

    fn abandon(&mut self, id: Id) -> bool {
        // On a guest-agent channel a late reply cannot be told from a new one:
        // resynchronise (the core fails the other waiting commands).
        GuestAgent::abandon(self, id, nonce()).is_ok()
    }

    fn pending_transmit(&self) -> &[u8] {
        GuestAgent::pending_transmit(self)
    }

    fn advance_transmit(&mut self, n: usize) {
        let _ = GuestAgent::advance_transmit(self, n);
    }
}

/// Outgoing bytes taken from the core, with the fds to attach at given offsets.
#[derive(Default)]
pub(crate) struct OutBuf {
    bytes: Vec<u8>,
    pos: usize,
    marks: VecDeque<(usize, Vec<OwnedFd>)>,
    /// Bytes written since the connection started.
    written: u64,
}

impl OutBuf {
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// The next bytes to write, and the fds that must go with their first byte.
    /// A chunk with fds ends where the next command with fds starts, so
    /// every command's fds go with its own first byte.
    pub(crate) fn chunk(&self) -> (&[u8], Option<&[OwnedFd]>) {
        let mut marks = self.marks.iter();
        match marks.next() {
            Some((at, fds)) if *at == self.pos => {
                let end = marks.next().map_or(self.bytes.len(), |(next, _)| *next);
                (&self.bytes[self.pos..end], Some(fds))
            }
            Some((at, _)) => (&self.bytes[self.pos..*at], None),
            None => (&self.bytes[self.pos..], None),
        }
    }

    /// Bytes written since the connection started.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// `n` bytes of the last chunk were written (with its fds, if any).
    pub(crate) fn consume(&mut self, n: usize) {
        if n > 0 && self.marks.front().is_some_and(|(at, _)| *at == self.pos) {
            // The kernel took the fds with the first byte; our copies close.
            self.marks.pop_front();
        }
        self.pos += n;
        self.written += n as u64;
        if self.pos == self.bytes.len() {
            self.bytes.clear();
            self.pos = 0;
        }
    }
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
                d: Dispatch::new(),
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
                };
                inner.d.waiters.insert(id.0, waiter);
            }
            None => {
                // No reply will come: the answer is that it was written.
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
            bytes = &bytes[taken..];
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
        inner.taken += len as u64;
        let marks = core::mem::take(&mut inner.marks);
        out.marks
            .extend(marks.into_iter().map(|(at, fds)| (base + at, fds)));
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
                slot.fill(Ok(crate::call::no_reply()));
            }
        }
        self.unsent.store(!unsent.is_empty(), Ordering::Relaxed);
    }

    pub(crate) fn closed_error(&self) -> Error {
        Error::Disconnected(self.closed_reason().unwrap_or(Disconnect::Local))
    }

    pub(crate) fn subscribe(&self, filter: EventFilter) -> Subscription {
        let mut inner = self.lock();
        let closed = inner.d.closed.is_some();
        let (c, bytes) = (self.config.event_capacity, self.config.event_bytes);
        let (sub, queue) = Subscription::new(filter, c, bytes, closed);
        if !closed {
            inner.d.subscribers.retain(|q| !q.is_gone());
            inner.d.subscribers.push(queue);
        }
        sub
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
    use super::OutBuf;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};

    fn fd() -> OwnedFd {
        rustix::pipe::pipe().expect("a pipe").0
    }

    type Chunk = (Vec<u8>, Option<Vec<RawFd>>);

    /// Writes `out` out in writes of at most `most` bytes.
    fn write_out(out: &mut OutBuf, most: usize) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        while !out.is_empty() {
            let (bytes, fds) = out.chunk();
            let n = bytes.len().min(most);
            let fds = fds.map(|f| f.iter().map(AsRawFd::as_raw_fd).collect());
            chunks.push((bytes[..n].to_vec(), fds));
            out.consume(n);
        }
        chunks
    }

    /// Three commands, the last two with fds, back to back.
    fn queued() -> (OutBuf, RawFd, RawFd) {
        let (a, b) = (fd(), fd());
        let raw = (a.as_raw_fd(), b.as_raw_fd());
        let mut out = OutBuf::default();
        out.bytes.extend_from_slice(b"AAAABBBBCCCC");
        out.marks.push_back((4, vec![a]));
        out.marks.push_back((8, vec![b]));
        (out, raw.0, raw.1)
    }

    #[test]
    fn fds_go_with_their_own_command_in_whole_writes() {
        let (mut out, a, b) = queued();
        let chunks = write_out(&mut out, usize::MAX);
        let want: Vec<Chunk> = vec![
            (b"AAAA".to_vec(), None),
            (b"BBBB".to_vec(), Some(vec![a])),
            (b"CCCC".to_vec(), Some(vec![b])),
        ];
        assert_eq!(chunks, want);
        assert!(out.marks.is_empty(), "a mark outlived its bytes");
        assert_eq!(out.written(), 12);
    }

    #[test]
    fn fds_go_with_the_first_byte_of_a_split_write() {
        let (mut out, a, b) = queued();
        let chunks = write_out(&mut out, 3);
        let want: Vec<Chunk> = vec![
            (b"AAA".to_vec(), None),
            (b"A".to_vec(), None),
            (b"BBB".to_vec(), Some(vec![a])),
            (b"B".to_vec(), None),
            (b"CCC".to_vec(), Some(vec![b])),
            (b"C".to_vec(), None),
        ];
        assert_eq!(chunks, want);
        assert!(out.marks.is_empty());
    }
}
