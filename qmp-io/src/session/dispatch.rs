//! Where the core's outputs go: replies to the callers waiting for them,
//! events to the subscribers, and the end of the connection to everyone.

use core::time::Duration;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use qmp_proto::{Id, ProtocolError, Reply};

use super::{Answer, Greeting};
use crate::error::{CommandError, Disconnect, Error};
use crate::events::{Event, Gap, Queue, Wake};
use crate::json::Json;
use crate::slot::Slot;

pub(super) struct Waiter {
    pub(super) slot: Arc<Slot<Answer>>,
    pub(super) quiet: bool,
    /// When the async driver fails the call with `Error::Timeout` (the
    /// call's timeout, for the error), if it armed one (see `Session::arm`).
    pub(super) deadline: Option<(Instant, Duration)>,
}

/// Where the core's outputs go.
pub(crate) struct Dispatch {
    pub(super) waiters: HashMap<u64, Waiter>,
    /// Commands the core failed with `Reply::Closed`: the connection is
    /// closing (the reason follows), or a guest-agent resync discarded them.
    pub(super) orphans: Vec<Waiter>,
    /// Commands that get no reply, by the stream offset just past their last
    /// byte: answered once the driver wrote that far.
    pub(super) unsent: VecDeque<(u64, Arc<Slot<Answer>>)>,
    pub(super) subscribers: Vec<Arc<Queue>>,
    /// When the async driver's one timer for this connection is to go off:
    /// no later than the earliest deadline of a waiting call (it may be
    /// earlier: a call answered in time keeps its deadline here).
    pub(super) alarm: Option<Instant>,
    pub(super) wakes: Vec<(Arc<Queue>, Wake)>,
    /// Event names seen, shared by every event of that name (few distinct).
    pub(super) names: Vec<Arc<str>>,
    pub(super) greeting: Option<Greeting>,
    /// Set once the handshake (greeting and negotiation, or the agent's sync)
    /// completed.
    pub(super) handshake: bool,
    /// Why the connection ended, once it has.
    pub(super) closed: Option<Disconnect>,
    /// What the driver saw before telling the core (end of stream, socket error).
    pub(super) cause: Option<Disconnect>,
    /// The size limit of a message, as the core applies it: for the error of
    /// a reply over it.
    max_reply: usize,
    /// The subscribers belong to a reconnecting client, which carries them
    /// over to its next connection: the close leaves them open.
    pub(super) keep_subscribers: bool,
}

impl Dispatch {
    pub(super) fn new(max_reply: usize) -> Self {
        Self {
            max_reply,
            waiters: HashMap::new(),
            orphans: Vec::new(),
            unsent: VecDeque::new(),
            subscribers: Vec::new(),
            alarm: None,
            wakes: Vec::new(),
            names: Vec::new(),
            greeting: None,
            handshake: false,
            closed: None,
            cause: None,
            keep_subscribers: false,
        }
    }

    pub(super) fn reply(&mut self, id: Id, reply: Reply<'_>) {
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
                let limit = self.max_reply;
                tracing::warn!(id = id.0, size, limit, "reply over the size limit skipped");
                Err(Error::ReplyTooLarge { size, limit })
            }
            _ => {
                self.orphans.push(waiter);
                return;
            }
        };
        waiter.slot.fill(answer);
    }

    pub(super) fn event(&mut self, event: &qmp_proto::Event<'_>) {
        tracing::debug!(event = %event.name.raw(), "qmp event");
        let mut owned: Option<Arc<Event>> = None;
        let names = &mut self.names;
        for q in &self.subscribers {
            if q.wants(event) {
                let e = owned.get_or_insert_with(|| Arc::new(Event::from_proto(event, names)));
                match q.push(e.clone()) {
                    Wake::None => {}
                    w => self.wakes.push((q.clone(), w)),
                }
            }
        }
    }

    /// An event over the size limit was skipped unread: every subscriber
    /// learns one was lost, where it would have been.
    pub(super) fn event_too_large(&mut self, size: usize) {
        let gap = Gap::TooLarge {
            size: u32::try_from(size).unwrap_or(u32::MAX),
            limit: u32::try_from(self.max_reply).unwrap_or(u32::MAX),
        };
        for q in &self.subscribers {
            match q.push_mark(gap.clone()) {
                Wake::None => {}
                w => self.wakes.push((q.clone(), w)),
            }
        }
    }

    pub(super) fn closed(&mut self, error: Option<ProtocolError>) {
        let reason = match (self.cause.take(), error) {
            (Some(Disconnect::Eof { .. }), Some(ProtocolError::TruncatedMessage)) => {
                Disconnect::Eof { mid_message: true }
            }
            // This side cut the stream (a close, a handshake timeout, a socket
            // error): the message it cut short is no fault of the peer's, and
            // the reason is the cut.
            (Some(cause), Some(ProtocolError::TruncatedMessage)) => cause,
            (_, Some(e)) => Disconnect::Protocol(e),
            (Some(cause), None) => cause,
            (None, None) => Disconnect::Eof { mid_message: false },
        };
        tracing::debug!(reason = %reason, "connection closed");
        self.fail_all(&reason);
        self.closed = Some(reason);
    }

    /// After a drain: orphans not explained by a close were discarded.
    pub(super) fn end_drain(&mut self) {
        for w in self.orphans.drain(..) {
            w.slot.fill(Err(Error::Discarded));
        }
    }

    pub(super) fn fail_all(&mut self, reason: &Disconnect) {
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
        if self.keep_subscribers {
            self.subscribers.clear();
            return;
        }
        // Woken once the session is unlocked: a subscriber woken now could
        // drop its subscription, which takes the session's lock.
        for q in self.subscribers.drain(..) {
            match q.close() {
                Wake::None => {}
                w => self.wakes.push((q, w)),
            }
        }
    }
}
