//! What the client and the guest agent share: the framer on the receive side,
//! the transmit buffer, command ids and the table of commands in flight.

use crate::buffer::{Buffer, PendingEntry, PendingTable, Storage};
use crate::command::{Args, Verb, encode};
use crate::error::{ProtocolError, UsageError};
use crate::framer::{Framer, IdValue, Info, Limits, RawMessage};

/// Limits for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Receive-side size and depth limits.
    pub receive: Limits,
    /// Most bytes waiting in the transmit buffer (growable storage only).
    pub max_transmit: usize,
    /// Most commands in flight, abandoned ones included (growable storage only).
    pub max_pending: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            receive: Limits::default(),
            max_transmit: 64 << 20,
            max_pending: 1 << 16,
        }
    }
}

/// How a reply's id relates to the commands in flight.
pub(crate) enum Match {
    /// A command waiting for this reply.
    Pending(u64),
    /// A command the caller abandoned: drop the reply (and the command).
    Abandoned(u64),
    /// Nothing sent by us is waiting for it.
    Unknown,
}

/// A transmit buffer and how much of it the transport already took.
pub(crate) struct Tx<B: Buffer> {
    pub(crate) buf: B,
    /// Bytes of `buf` already handed to the transport.
    sent: usize,
}

impl<B: Buffer> Tx<B> {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: B::with_limit(limit),
            sent: 0,
        }
    }

    pub(crate) fn pending(&self) -> &[u8] {
        self.buf.bytes().get(self.sent..).unwrap_or_default()
    }

    pub(crate) fn advance(&mut self, n: usize) -> Result<(), UsageError> {
        if n > self.buf.len().saturating_sub(self.sent) {
            return Err(UsageError::AdvancePastEnd);
        }
        // At most the buffer's length, after the check above.
        self.sent = self.sent.saturating_add(n);
        if self.sent == self.buf.len() {
            self.clear();
        }
        Ok(())
    }

    /// Drops what was already sent, so the whole room is usable.
    pub(crate) fn compact(&mut self) {
        if self.sent > 0 {
            self.buf.discard_front(self.sent);
            self.sent = 0;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.buf.truncate(0);
        self.sent = 0;
    }
}

/// The receive side (the framer) beside the command side: separate fields, so
/// a message borrowed from the framer can be handed out while the command it
/// answers is taken off the table.
pub(crate) struct Link<S: Storage> {
    pub(crate) framer: Framer<S::Rx>,
    pub(crate) commands: Commands<S>,
}

/// The transmit buffer, command ids and the table of commands in flight.
pub(crate) struct Commands<S: Storage> {
    tx: Tx<S::Tx>,
    pending: S::Pending,
    next_id: u64,
}

impl<S: Storage> Link<S> {
    pub(crate) fn new(limits: &ConnectionLimits) -> Self {
        Self {
            framer: Framer::new(limits.receive),
            commands: Commands {
                tx: Tx::new(limits.max_transmit),
                pending: S::Pending::with_limit(limits.max_pending),
                next_id: 0,
            },
        }
    }

    /// The next frame, `Ok(None)` when more input is needed, or, at end of
    /// stream with nothing left to read, why the session ends (a message cut
    /// short is a protocol error; a clean end is `None`).
    pub(crate) fn next_frame(&mut self, eof: bool) -> Result<Option<Info>, Option<ProtocolError>> {
        match self.framer.advance() {
            Some(info) => Ok(Some(info)),
            None if eof => Err(self
                .framer
                .is_mid_message()
                .then_some(ProtocolError::TruncatedMessage)),
            None => Ok(None),
        }
    }

    /// The message [`next_frame`](Self::next_frame) just reported, beside the
    /// command side: the command a reply answers can be taken off the table
    /// while the reply is borrowed, so reading it and handing it out is one
    /// step.
    pub(crate) fn message(&mut self) -> (Result<RawMessage<'_>, ProtocolError>, &mut Commands<S>) {
        // The framer keeps every message it reports until the next call; an
        // error rather than a silent "need more input" if it ever did not.
        let message = self
            .framer
            .last_message()
            .ok_or(ProtocolError::UnknownMessage);
        (message, &mut self.commands)
    }
}

impl<S: Storage> Commands<S> {
    pub(crate) fn pending_transmit(&self) -> &[u8] {
        self.tx.pending()
    }

    pub(crate) fn advance_transmit(&mut self, n: usize) -> Result<(), UsageError> {
        self.tx.advance(n)
    }

    /// Encodes a command and, when `reply` is set, records it as in flight.
    /// All or nothing: on error neither the buffer nor the table changed.
    pub(crate) fn send<T: serde::Serialize + ?Sized>(
        &mut self,
        sentinel: bool,
        verb: Verb,
        name: &str,
        args: Args<'_, T>,
        reply: bool,
    ) -> Result<u64, UsageError> {
        let id = self.next_id;
        if reply && self.pending.is_full() {
            return Err(UsageError::TooManyPending);
        }
        self.tx.compact();
        let mark = self.tx.buf.len();
        encode(&mut self.tx.buf, sentinel, verb, name, args, Some(id))?;
        if reply
            && !self.pending.push(PendingEntry {
                id,
                oob: verb == Verb::ExecOob,
                abandoned: false,
            })
        {
            self.tx.buf.truncate(mark);
            return Err(UsageError::TooManyPending);
        }
        // One per command: u64 does not run out (584 years at 10^9 a second).
        #[allow(clippy::arithmetic_side_effects)]
        {
            self.next_id += 1;
        }
        Ok(id)
    }

    /// Looks up the command a reply belongs to, leaving it in the table: it
    /// is taken off with [`remove`](Self::remove) once its reply was read.
    pub(crate) fn lookup(&self, id: IdValue) -> Match {
        let IdValue::Number(n) = id else {
            return Match::Unknown;
        };
        match self.pending.find(n) {
            Some(index)
                if self
                    .pending
                    .entries()
                    .get(index)
                    .is_some_and(|e| e.abandoned) =>
            {
                Match::Abandoned(n)
            }
            Some(_) => Match::Pending(n),
            None => Match::Unknown,
        }
    }

    /// Looks up the command a reply belongs to and takes it off the table
    /// (for replies that need no reading: oversized ones).
    pub(crate) fn take(&mut self, id: IdValue) -> Match {
        let found = self.lookup(id);
        if let Match::Pending(n) | Match::Abandoned(n) = found {
            self.remove(n);
        }
        found
    }

    /// Takes a command off the table (its reply was handed out or dropped).
    pub(crate) fn remove(&mut self, id: u64) {
        if let Some(index) = self.pending.find(id) {
            self.pending.remove(index);
        }
    }

    pub(crate) fn abandon(&mut self, id: u64) -> Result<(), UsageError> {
        let index = self.pending.find(id).ok_or(UsageError::UnknownId)?;
        if let Some(entry) = self.pending.entries_mut().get_mut(index) {
            entry.abandoned = true;
        }
        Ok(())
    }

    /// Removes and returns the oldest command still wanted, for failing it.
    pub(crate) fn pop_wanted(&mut self) -> Option<u64> {
        while !self.pending.entries().is_empty() {
            let entry = self.pending.remove(0);
            if !entry.abandoned {
                return Some(entry.id);
            }
        }
        None
    }

    pub(crate) fn in_flight(&self) -> impl Iterator<Item = &PendingEntry> {
        self.pending.entries().iter()
    }

    pub(crate) fn clear_transmit(&mut self) {
        self.tx.clear();
    }
}
