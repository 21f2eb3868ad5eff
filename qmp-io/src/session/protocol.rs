//! The two core state machines, QMP and the guest agent, behind the one
//! trait the drivers are written against.

use qmp_proto::{AgentOutput, Client, GuestAgent, Heap, Id, Kind, Output};

use super::{Dispatch, Greeting};
use crate::error::HandshakeStep;

/// A core state machine as the drivers see it.
pub(crate) trait Protocol: Send + 'static {
    /// The handshake step still missing, given whether a greeting came.
    fn missing_step(greeted: bool) -> HandshakeStep;
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
    fn missing_step(greeted: bool) -> HandshakeStep {
        if greeted {
            HandshakeStep::Capabilities
        } else {
            HandshakeStep::Greeting
        }
    }

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
                    if kind == Kind::Event {
                        d.event_too_large(size);
                    }
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
    fn missing_step(_: bool) -> HandshakeStep {
        HandshakeStep::GuestSync
    }

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
