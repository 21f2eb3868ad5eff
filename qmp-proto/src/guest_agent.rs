//! The QEMU Guest Agent (QGA) client state machine.

use crate::buffer::Storage;
use crate::client::{Reply, error_of, reply_of};
use crate::command::{Args, Command, Id, Verb};
use crate::error::{Error, ProtocolError, QmpError, UsageError};
use crate::framer::{IdValue, Info, Key, Kind, RawMessage};
use crate::link::{Commands, ConnectionLimits, Link, Match};

/// Commands after which the agent sends no reply on success (the guest shuts
/// down or suspends). They complete when sent.
pub const NO_REPLY_COMMANDS: [&str; 4] = [
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
];

/// True when the agent answers `name` with no reply on success.
pub fn sends_no_reply(name: &str) -> bool {
    NO_REPLY_COMMANDS.contains(&name)
}

/// What [`GuestAgent::poll_output`] hands out.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum AgentOutput<'a> {
    /// The channel is synchronised: replies from now on belong to this session.
    Synced,
    /// The reply to a command. [`Reply::Closed`] here means the connection
    /// closed, or a resync discarded the command (it may or may not have run).
    Reply {
        /// The command's id.
        id: Id,
        /// Its outcome.
        reply: Reply<'a>,
    },
    /// A message that belongs to no waiting command (never given to one).
    Unmatched(RawMessage<'a>),
    /// An error reply without an id (the agent could not parse some input).
    IdlessError(QmpError<'a>),
    /// The session is over: end of stream (`None`) or the agent broke the
    /// protocol. Every waiting command got [`Reply::Closed`] first. After a
    /// protocol error, [`GuestAgent::resync`] starts over on the same channel.
    Closed(Option<ProtocolError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the agent's 0xFF, then for `{"return": nonce}`.
    Syncing {
        nonce: u64,
        sentinel: bool,
    },
    Ready,
    Draining(Option<ProtocolError>),
    Closed(Option<ProtocolError>),
}

/// A guest-agent client: the protocol, without any I/O.
///
/// The guest is not trusted: everything it sends is treated as hostile input
/// (bounded sizes, strict id matching).
///
/// The channel may hold stale bytes from an earlier user, so the session starts
/// with a synchronisation: [`new`](Self::new) queues 0xFF followed by
/// `guest-sync-delimited` with the caller's random `nonce`. Input is discarded
/// up to the agent's own 0xFF and then up to `{"return": nonce}`; then
/// [`AgentOutput::Synced`] is reported. Call [`resync`](Self::resync) with a
/// fresh nonce after any timeout: commands still waiting then fail with
/// [`Reply::Closed`], because their replies can no longer be told apart from
/// stale bytes.
///
/// Commands may be sent while synchronising (the agent answers in order, after
/// the sync). The drive contract is the same as for [`Client`](crate::Client):
/// `receive`, drain `poll_output`, flush `pending_transmit`.
pub struct GuestAgent<S: Storage> {
    link: Link<S>,
    state: State,
    eof: bool,
    /// Commands in flight are to be failed before anything else is reported.
    flush: bool,
}

impl<S: Storage> core::fmt::Debug for GuestAgent<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestAgent")
            .field("state", &self.state)
            .finish()
    }
}

/// What to do with a frame, decided before borrowing it.
enum Step {
    /// Nothing to hand out.
    Skip,
    /// An output that borrows no message.
    Now(AgentOutput<'static>),
    /// Read the message, once, into this output.
    Read(Plan),
}

/// Which output a message becomes.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// The reply to this command; it leaves the table once its reply was read.
    Reply(u64),
    Unmatched,
    IdlessError,
}

impl<S: Storage> GuestAgent<S> {
    /// A client that starts by synchronising with `nonce` (use a random value:
    /// it tells this session's sync reply from an earlier one's).
    pub fn new(limits: ConnectionLimits, nonce: u64) -> Self {
        let mut agent = Self {
            link: Link::new(&limits),
            state: State::Closed(None),
            eof: false,
            flush: false,
        };
        agent.start_sync(nonce);
        agent
    }

    fn start_sync(&mut self, nonce: u64) {
        let mut digits = [0u8; 20];
        let digits = crate::command::format_u64(nonce, &mut digits);
        // `{"id":` and at most 20 digits and `}`: always fits.
        let mut args = heapless::Vec::<u8, 32>::new();
        let built = args
            .extend_from_slice(b"{\"id\":")
            .and_then(|()| args.extend_from_slice(digits))
            .is_ok()
            && args.push(b'}').is_ok();
        let args = core::str::from_utf8(&args)
            .ok()
            .filter(|_| built)
            .unwrap_or("{}");
        self.link.commands.clear_transmit();
        // The sync command carries no id of its own: its reply is recognised
        // by the nonce, never through the pending table.
        let sent = self.link.commands.send::<()>(
            true,
            Verb::Execute,
            "guest-sync-delimited",
            Args::Raw(args),
            false,
        );
        self.state = match sent {
            Ok(_) => State::Syncing {
                nonce,
                sentinel: false,
            },
            Err(_) => State::Draining(Some(ProtocolError::NegotiationFailed)),
        };
    }

    /// Starts a new synchronisation with a fresh random `nonce`: after a
    /// timeout, after [`AgentOutput::Closed`] with a protocol error, or
    /// whenever the channel may hold stale bytes. Commands still waiting fail
    /// with [`Reply::Closed`] (reported by `poll_output` first).
    pub fn resync(&mut self, nonce: u64) -> Result<(), Error> {
        if self.eof || self.state == State::Closed(None) {
            return Err(Error::Closed);
        }
        self.flush = true;
        self.start_sync(nonce);
        Ok(())
    }

    /// Gives up on a command and resynchronises with `nonce`: on a guest-agent
    /// channel a late reply cannot be told apart from a new one otherwise.
    pub fn abandon(&mut self, id: Id, nonce: u64) -> Result<(), Error> {
        if !self.link.commands.in_flight().any(|e| e.id == id.0) {
            return Err(UsageError::UnknownId.into());
        }
        self.resync(nonce)
    }

    /// Feeds bytes read from the agent; returns how many were taken.
    #[must_use = "bytes not taken must be fed again once poll_output is drained"]
    pub fn receive(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        self.check_open()?;
        Ok(self.link.framer.push(bytes))
    }

    /// Tells the client the channel was closed.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    fn check_open(&self) -> Result<(), Error> {
        match self.state {
            _ if self.eof => Err(Error::Closed),
            State::Draining(Some(e)) | State::Closed(Some(e)) => Err(Error::Protocol(e)),
            State::Draining(None) | State::Closed(None) => Err(Error::Closed),
            _ => Ok(()),
        }
    }

    /// The next thing that happened, or `None` when more input is needed.
    #[must_use = "drain poll_output until it returns None; an output not handled is lost"]
    pub fn poll_output(&mut self) -> Option<AgentOutput<'_>> {
        let plan = loop {
            if self.flush {
                match self.link.commands.pop_wanted() {
                    Some(id) => {
                        return Some(AgentOutput::Reply {
                            id: Id(id),
                            reply: Reply::Closed,
                        });
                    }
                    None => self.flush = false,
                }
            }
            match self.state {
                State::Draining(_) => return Self::drain(&mut self.state, &mut self.link.commands),
                State::Closed(_) => return None,
                _ => {}
            }
            let info = match self.link.next_frame(self.eof) {
                Ok(Some(info)) => info,
                Ok(None) => return None,
                Err(reason) => {
                    self.state = State::Draining(reason);
                    continue;
                }
            };
            match self.decide(info) {
                Ok(Step::Skip) => {}
                Ok(Step::Now(output)) => return Some(output),
                Ok(Step::Read(plan)) => break plan,
                Err(e) => self.state = State::Draining(Some(e)),
            }
        };
        let (message, commands) = self.link.message();
        match message.and_then(|m| Self::read(commands, plan, m)) {
            Ok(output) => Some(output),
            Err(e) => {
                self.state = State::Draining(Some(e));
                Self::drain(&mut self.state, commands)
            }
        }
    }

    /// While draining: fails the next command still waiting, or reports the
    /// end once none is left.
    fn drain(state: &mut State, commands: &mut Commands<S>) -> Option<AgentOutput<'static>> {
        let State::Draining(reason) = *state else {
            return None;
        };
        Some(match commands.pop_wanted() {
            Some(id) => AgentOutput::Reply {
                id: Id(id),
                reply: Reply::Closed,
            },
            None => {
                *state = State::Closed(reason);
                AgentOutput::Closed(reason)
            }
        })
    }

    /// Reads a message into the output `plan` says; a command leaves the
    /// table only once its reply was read.
    fn read<'a>(
        commands: &mut Commands<S>,
        plan: Plan,
        message: RawMessage<'a>,
    ) -> Result<AgentOutput<'a>, ProtocolError> {
        Ok(match plan {
            Plan::Reply(id) => {
                let reply = reply_of(message)?;
                commands.remove(id);
                AgentOutput::Reply { id: Id(id), reply }
            }
            Plan::Unmatched => {
                if message.kind() == Kind::Error {
                    error_of(message)?;
                }
                AgentOutput::Unmatched(message)
            }
            Plan::IdlessError => AgentOutput::IdlessError(error_of(message)?),
        })
    }

    fn decide(&mut self, info: Info) -> Result<Step, ProtocolError> {
        if let State::Syncing { nonce, sentinel } = self.state {
            // Everything up to the agent's 0xFF, and then up to the reply
            // carrying our nonce, is stale: drop it, errors included.
            match info {
                Info::Sentinel => {
                    self.state = State::Syncing {
                        nonce,
                        sentinel: true,
                    }
                }
                Info::Message(Kind::Return, _) if sentinel => {
                    let value = self.link.message().0.ok().and_then(|m| m.get(Key::Return));
                    if value.and_then(|v| v.as_u64()) == Some(nonce) {
                        self.state = State::Ready;
                        return Ok(Step::Now(AgentOutput::Synced));
                    }
                }
                _ => {}
            }
            return Ok(Step::Skip);
        }
        let (kind, id) = match info {
            Info::Sentinel => return Ok(Step::Skip),
            Info::Error(e) => return Err(ProtocolError::Frame(e)),
            Info::Oversized {
                kind: Kind::Return | Kind::Error,
                id,
                size,
            } => {
                return Ok(match self.link.commands.take(id) {
                    Match::Pending(n) => Step::Now(AgentOutput::Reply {
                        id: Id(n),
                        reply: Reply::Oversized { size },
                    }),
                    _ => Step::Skip,
                });
            }
            Info::Oversized { .. } => return Ok(Step::Skip),
            Info::Message(kind, id) => (kind, id),
        };
        match kind {
            Kind::Return | Kind::Error => Ok(match self.link.commands.lookup(id) {
                Match::Pending(n) => Step::Read(Plan::Reply(n)),
                Match::Abandoned(n) => {
                    self.link.commands.remove(n);
                    if kind == Kind::Error {
                        self.link.message().0.and_then(error_of)?;
                    }
                    Step::Skip
                }
                Match::Unknown if kind == Kind::Error && id == IdValue::Absent => {
                    Step::Read(Plan::IdlessError)
                }
                Match::Unknown => Step::Read(Plan::Unmatched),
            }),
            // The agent has no events or greetings: whatever else it sends
            // belongs to nobody.
            _ => Ok(Step::Read(Plan::Unmatched)),
        }
    }

    fn send<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &str,
        args: Args<'_, T>,
    ) -> Result<Option<Id>, Error> {
        self.check_open()?;
        let reply = !sends_no_reply(name);
        let id = self
            .link
            .commands
            .send(false, Verb::Execute, name, args, reply)?;
        Ok(reply.then_some(Id(id)))
    }

    /// Queues a typed command. Returns its id, or `None` for a command the
    /// agent does not answer on success ([`NO_REPLY_COMMANDS`]): it is done
    /// once its bytes are written.
    #[must_use = "the id is how the reply is recognised"]
    pub fn send_command<C: Command>(&mut self, command: &C) -> Result<Option<Id>, Error> {
        self.send(C::NAME, Args::Typed(command))
    }

    /// Queues a command by name with optional raw JSON arguments (one object).
    #[must_use = "the id is how the reply is recognised"]
    pub fn send_command_raw(
        &mut self,
        name: &str,
        arguments: Option<&str>,
    ) -> Result<Option<Id>, Error> {
        self.send::<()>(name, arguments.map_or(Args::None, Args::Raw))
    }

    /// Bytes to write to the agent.
    pub fn pending_transmit(&self) -> &[u8] {
        self.link.commands.pending_transmit()
    }

    /// Reports that `n` bytes of `pending_transmit` were written.
    pub fn advance_transmit(&mut self, n: usize) -> Result<(), UsageError> {
        self.link.commands.advance_transmit(n)
    }

    /// True once the current synchronisation completed.
    pub fn is_synced(&self) -> bool {
        self.state == State::Ready
    }

    /// Number of commands waiting for a reply.
    pub fn in_flight(&self) -> usize {
        self.link.commands.in_flight().count()
    }
}
