//! The QMP client state machine.

use crate::buffer::Storage;
use crate::command::{Args, Command, Id, Verb};
use crate::error::{Error, ProtocolError, QmpError, UsageError};
use crate::framer::{IdValue, Info, Key, Kind, RawMessage};
use crate::json::{JsonStr, RawJson};
use crate::link::{Commands, ConnectionLimits, Link, Match};

/// How a [`Client`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Enable out-of-band execution when the server offers it (default: yes).
    pub oob: bool,
    /// Buffer and table limits.
    pub limits: ConnectionLimits,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            oob: true,
            limits: ConnectionLimits::default(),
        }
    }
}

/// QEMU's version, from the greeting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Micro version.
    pub micro: u64,
}

impl core::fmt::Display for Version {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// The server greeting: `{"QMP": {"version": ..., "capabilities": [...]}}`.
#[derive(Debug, Clone, Copy)]
pub struct Greeting<'a> {
    /// QEMU's version numbers.
    pub version: Version,
    /// The package string (distribution build), often empty.
    pub package: JsonStr<'a>,
    capabilities: RawJson<'a>,
    message: RawMessage<'a>,
}

impl<'a> Greeting<'a> {
    pub(crate) fn parse(message: RawMessage<'a>) -> Option<Self> {
        let qmp = message.get(Key::Qmp)?;
        let version = qmp.get("version")?;
        let qemu = version.get("qemu")?;
        let number = |k: &str| qemu.get(k).and_then(|v| v.as_u64());
        let capabilities = qmp.get("capabilities")?;
        capabilities.elements()?;
        Some(Greeting {
            version: Version {
                major: number("major")?,
                minor: number("minor")?,
                micro: number("micro")?,
            },
            package: version
                .get("package")
                .and_then(|p| p.as_json_str())
                .unwrap_or_default(),
            capabilities,
            message,
        })
    }

    /// The capabilities the server offers (`oob` is the only one QEMU has).
    pub fn capabilities(&self) -> impl Iterator<Item = JsonStr<'a>> + 'a {
        self.capabilities
            .elements()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_json_str())
    }

    /// True when the server offers `name`.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities().any(|c| c.eq_str(name))
    }

    /// The whole greeting message.
    pub fn message(&self) -> RawMessage<'a> {
        self.message
    }
}

/// When an event happened (`seconds`/`microseconds`; both -1 when the host had
/// no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

impl Timestamp {
    /// Reads `{"seconds": S, "microseconds": U}`: QEMU's spelling without a
    /// walk, any other in one walk over the members (the first of a repeated
    /// key counts, as with [`RawJson::get`]).
    fn parse(t: RawJson<'_>) -> Option<Self> {
        Self::parse_qemu(t.bytes()).or_else(|| Self::parse_any(t))
    }

    /// QEMU's exact spelling, `{"seconds": S, "microseconds": U}`, without a
    /// walk; `None` for anything else.
    fn parse_qemu(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(b"{\"seconds\": ")?;
        let comma = rest.iter().position(|&b| b == b',')?;
        let (seconds, rest) = rest.split_at(comma);
        let microseconds = rest
            .strip_prefix(b", \"microseconds\": ")?
            .strip_suffix(b"}")?;
        Some(Timestamp {
            seconds: RawJson::new_unchecked(seconds).as_i64()?,
            microseconds: RawJson::new_unchecked(microseconds).as_i64()?,
        })
    }

    fn parse_any(t: RawJson<'_>) -> Option<Self> {
        let mut seconds = None;
        let mut microseconds = None;
        crate::json::for_each_member(t.bytes(), |k, v| {
            if seconds.is_none() && k.eq_str("seconds") {
                seconds = Some(v.as_i64());
            } else if microseconds.is_none() && k.eq_str("microseconds") {
                microseconds = Some(v.as_i64());
            }
            seconds.is_some() && microseconds.is_some()
        });
        Some(Timestamp {
            seconds: seconds??,
            microseconds: microseconds??,
        })
    }
}

/// An asynchronous event.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The event name, such as `STOP`.
    pub name: JsonStr<'a>,
    /// Its `data` member, if any.
    pub data: Option<RawJson<'a>>,
    /// Its `timestamp`, if well-formed.
    pub timestamp: Option<Timestamp>,
    message: RawMessage<'a>,
}

impl<'a> Event<'a> {
    pub(crate) fn parse(message: RawMessage<'a>) -> Option<Self> {
        let name = message.get(Key::Event)?.as_json_str()?;
        let timestamp = message.get(Key::Timestamp).and_then(Timestamp::parse);
        Some(Event {
            name,
            data: message.get(Key::Data),
            timestamp,
            message,
        })
    }

    /// The whole event message.
    pub fn message(&self) -> RawMessage<'a> {
        self.message
    }
}

/// The answer to one command.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Reply<'a> {
    /// `{"return": VALUE}`: decode VALUE with [`RawJson::decode`].
    Return(RawJson<'a>),
    /// `{"error": {...}}`: the command failed; this is data, not a crash.
    Error(QmpError<'a>),
    /// The reply was larger than the size limit and was skipped.
    Oversized {
        /// Its size in bytes.
        size: usize,
    },
    /// The connection closed (or failed) before the reply came.
    Closed,
}

/// What [`Client::poll_output`] hands out.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Output<'a> {
    /// The server greeting arrived; `qmp_capabilities` is now queued for
    /// transmission, and commands may be sent.
    Greeting(Greeting<'a>),
    /// Capabilities negotiation finished.
    Ready {
        /// Out-of-band execution is enabled.
        oob: bool,
    },
    /// The reply to a command sent with this client.
    Reply {
        /// The command's id.
        id: Id,
        /// Its outcome.
        reply: Reply<'a>,
    },
    /// An asynchronous event.
    Event(Event<'a>),
    /// A reply whose id is not one this client is waiting for. Never given to
    /// any command.
    Unmatched(RawMessage<'a>),
    /// An error reply without an id: QEMU could not parse some input. (While
    /// negotiating, it is the answer to `qmp_capabilities` instead, and the
    /// client closes with [`ProtocolError::NegotiationFailed`].) It
    /// belongs to no command, so none is failed: commands in flight stay in
    /// flight (raw arguments are checked before sending, so this should not be
    /// one of ours; a driver's per-call timeouts cover the case that it is).
    /// QEMU's Python library disconnects instead; here the choice is yours.
    IdlessError(QmpError<'a>),
    /// A message over the size limit that belongs to no waiting command.
    Dropped {
        /// What it was.
        kind: Kind,
        /// Its size in bytes.
        size: usize,
    },
    /// The connection is over: after end of stream (`None`) or a protocol
    /// error. Every command still waiting got [`Reply::Closed`] before this.
    /// It is the last output.
    Closed(Option<ProtocolError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitGreeting,
    Negotiating {
        caps: u64,
        oob: bool,
    },
    Ready {
        oob: bool,
    },
    /// Failing the commands still in flight, then reporting `Closed`.
    Draining(Option<ProtocolError>),
    Closed(Option<ProtocolError>),
}

/// What to do with a frame, decided before borrowing it.
enum Step {
    /// Nothing to hand out (a reply to an abandoned command).
    Skip,
    /// An output that borrows no message.
    Now(Output<'static>),
    /// Read the message, once, into this output.
    Read(Plan),
}

/// Which output a message becomes.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Greeting,
    Event,
    /// The reply to this command; the command leaves the table only once its
    /// reply was read, so a reply that fails to read fails the connection and
    /// the command gets `Closed`, never nothing.
    Reply(u64),
    Unmatched,
    IdlessError,
}

/// A QMP client: the protocol, without any I/O.
///
/// # Driving it
///
/// The client never blocks and never reads a clock. Its owner moves bytes and
/// time:
///
/// 1. Feed every byte read from the socket to [`receive`](Self::receive). It
///    returns how many bytes it took; fewer than given means its buffer is full.
/// 2. After every `receive` (and after every `send_*`), call
///    [`poll_output`](Self::poll_output) until it returns `None`, and handle
///    each output. Then feed the bytes `receive` did not take, if any.
/// 3. Write [`pending_transmit`](Self::pending_transmit) to the socket and
///    report what was written with [`advance_transmit`](Self::advance_transmit).
/// 4. On end of stream call [`receive_eof`](Self::receive_eof), then drain
///    `poll_output`: every command in flight gets [`Reply::Closed`], then
///    [`Output::Closed`].
///
/// Timeouts are the owner's: when a command has waited too long, call
/// [`abandon`](Self::abandon) so its late reply is dropped instead of reported.
///
/// Misuse returns [`UsageError`] and changes nothing. A [`ProtocolError`] from
/// the peer is sticky: the client reports it once as `Output::Closed(Some(..))`
/// and returns it from every later call.
///
/// # Methods by role
///
/// - input: [`receive`](Self::receive), [`receive_eof`](Self::receive_eof)
/// - output: [`poll_output`](Self::poll_output),
///   [`pending_transmit`](Self::pending_transmit),
///   [`advance_transmit`](Self::advance_transmit)
/// - commands: [`send_command`](Self::send_command),
///   [`send_command_raw`](Self::send_command_raw),
///   [`send_command_oob`](Self::send_command_oob),
///   [`send_command_raw_oob`](Self::send_command_raw_oob),
///   [`abandon`](Self::abandon)
/// - state: [`is_ready`](Self::is_ready), [`oob_enabled`](Self::oob_enabled),
///   [`in_flight`](Self::in_flight), [`error`](Self::error)
pub struct Client<S: Storage> {
    link: Link<S>,
    state: State,
    want_oob: bool,
    eof: bool,
}

impl<S: Storage> core::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl<S: Storage> Client<S> {
    /// A client waiting for the server greeting.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            link: Link::new(&config.limits),
            state: State::AwaitGreeting,
            want_oob: config.oob,
            eof: false,
        }
    }

    /// Feeds bytes read from the server; returns how many were taken. Drain
    /// [`poll_output`](Self::poll_output) after every call.
    #[must_use = "bytes not taken must be fed again once poll_output is drained"]
    pub fn receive(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        self.check_open()?;
        if self.eof {
            return Err(Error::Closed);
        }
        Ok(self.link.framer.push(bytes))
    }

    /// Tells the client the server closed the connection.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// The next thing that happened, or `None` when more input is needed.
    #[must_use = "drain poll_output until it returns None; an output not handled is lost"]
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        let plan = loop {
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
        match message.and_then(|m| Self::read(&mut self.state, self.want_oob, commands, plan, m)) {
            Ok(output) => Some(output),
            Err(e) => {
                self.state = State::Draining(Some(e));
                Self::drain(&mut self.state, commands)
            }
        }
    }

    /// While draining: fails the next command still waiting, or reports the
    /// end once none is left.
    fn drain(state: &mut State, commands: &mut Commands<S>) -> Option<Output<'static>> {
        let State::Draining(reason) = *state else {
            return None;
        };
        Some(match commands.pop_wanted() {
            Some(id) => Output::Reply {
                id: Id(id),
                reply: Reply::Closed,
            },
            None => {
                *state = State::Closed(reason);
                commands.clear_transmit();
                Output::Closed(reason)
            }
        })
    }

    /// Reads a message into the output `plan` says, and only then makes the
    /// state changes that go with it.
    fn read<'a>(
        state: &mut State,
        want_oob: bool,
        commands: &mut Commands<S>,
        plan: Plan,
        message: RawMessage<'a>,
    ) -> Result<Output<'a>, ProtocolError> {
        Ok(match plan {
            Plan::Greeting => {
                let greeting = Greeting::parse(message).ok_or(ProtocolError::MalformedGreeting)?;
                let oob = want_oob && greeting.has_capability("oob");
                let args = if oob {
                    Args::Raw("{\"enable\":[\"oob\"]}")
                } else {
                    Args::None
                };
                let caps = commands
                    .send::<()>(false, Verb::Execute, "qmp_capabilities", args, false)
                    .map_err(|_| ProtocolError::NegotiationFailed)?;
                *state = State::Negotiating { caps, oob };
                Output::Greeting(greeting)
            }
            Plan::Event => {
                Output::Event(Event::parse(message).ok_or(ProtocolError::MalformedEvent)?)
            }
            Plan::Reply(id) => {
                let reply = reply_of(message)?;
                commands.remove(id);
                Output::Reply { id: Id(id), reply }
            }
            Plan::Unmatched => {
                if message.kind() == Kind::Error {
                    error_of(message)?;
                }
                Output::Unmatched(message)
            }
            Plan::IdlessError => Output::IdlessError(error_of(message)?),
        })
    }

    /// Validates a frame and updates the state; says what to hand out.
    fn decide(&mut self, info: Info) -> Result<Step, ProtocolError> {
        let (kind, id) = match info {
            Info::Error(e) => return Err(ProtocolError::Frame(e)),
            Info::Sentinel => return Err(ProtocolError::UnexpectedSentinel),
            Info::Oversized { kind, id, size } => return self.decide_oversized(kind, id, size),
            Info::Message(kind, id) => (kind, id),
        };
        match kind {
            Kind::Greeting if self.state == State::AwaitGreeting => Ok(Step::Read(Plan::Greeting)),
            Kind::Greeting => Err(ProtocolError::UnexpectedGreeting),
            Kind::Event => Ok(Step::Read(Plan::Event)),
            Kind::Return | Kind::Error => {
                if let State::Negotiating { caps, oob } = self.state
                    && answers_capabilities(caps, id)
                {
                    if kind == Kind::Error {
                        return Err(ProtocolError::NegotiationFailed);
                    }
                    self.state = State::Ready { oob };
                    return Ok(Step::Now(Output::Ready { oob }));
                }
                Ok(match self.link.commands.lookup(id) {
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
                })
            }
            _ => Err(ProtocolError::UnknownMessage),
        }
    }

    fn decide_oversized(
        &mut self,
        kind: Kind,
        id: IdValue,
        size: usize,
    ) -> Result<Step, ProtocolError> {
        match kind {
            Kind::Greeting => Err(ProtocolError::MalformedGreeting),
            Kind::Return | Kind::Error => {
                if let State::Negotiating { caps, .. } = self.state
                    && answers_capabilities(caps, id)
                {
                    return Err(ProtocolError::NegotiationFailed);
                }
                Ok(match self.link.commands.take(id) {
                    Match::Pending(n) => Step::Now(Output::Reply {
                        id: Id(n),
                        reply: Reply::Oversized { size },
                    }),
                    Match::Abandoned(_) => Step::Skip,
                    Match::Unknown => Step::Now(Output::Dropped { kind, size }),
                })
            }
            Kind::Event => Ok(Step::Now(Output::Dropped { kind, size })),
            _ => Err(ProtocolError::UnknownMessage),
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        match self.state {
            State::Draining(Some(e)) | State::Closed(Some(e)) => Err(Error::Protocol(e)),
            State::Draining(None) | State::Closed(None) => Err(Error::Closed),
            _ => Ok(()),
        }
    }

    fn send<T: serde::Serialize + ?Sized>(
        &mut self,
        verb: Verb,
        name: &str,
        args: Args<'_, T>,
    ) -> Result<Id, Error> {
        self.check_open()?;
        if self.eof {
            return Err(Error::Closed);
        }
        match (self.state, verb) {
            (State::AwaitGreeting, _) => return Err(UsageError::GreetingPending.into()),
            (
                State::Negotiating { oob: false, .. } | State::Ready { oob: false },
                Verb::ExecOob,
            ) => {
                return Err(UsageError::OobNotNegotiated.into());
            }
            _ => {}
        }
        Ok(Id(self
            .link
            .commands
            .send(false, verb, name, args, true)?))
    }

    /// Queues a typed command; returns its id. Its reply comes as
    /// [`Output::Reply`] with this id.
    pub fn send_command<C: Command>(&mut self, command: &C) -> Result<Id, Error> {
        self.send(Verb::Execute, C::NAME, Args::Typed(command))
    }

    /// Queues a command by name with optional raw JSON arguments (one object,
    /// checked before it is queued).
    pub fn send_command_raw(&mut self, name: &str, arguments: Option<&str>) -> Result<Id, Error> {
        self.send::<()>(Verb::Execute, name, arguments.map_or(Args::None, Args::Raw))
    }

    /// Queues a typed command for out-of-band execution (`exec-oob`). Needs
    /// `oob` negotiated; its reply may overtake earlier in-band replies.
    pub fn send_command_oob<C: Command>(&mut self, command: &C) -> Result<Id, Error> {
        self.send(Verb::ExecOob, C::NAME, Args::Typed(command))
    }

    /// Queues a raw command for out-of-band execution (`exec-oob`).
    pub fn send_command_raw_oob(
        &mut self,
        name: &str,
        arguments: Option<&str>,
    ) -> Result<Id, Error> {
        self.send::<()>(Verb::ExecOob, name, arguments.map_or(Args::None, Args::Raw))
    }

    /// Gives up on a command (say, it timed out): its reply will be dropped
    /// when it comes, and is never reported for another command.
    pub fn abandon(&mut self, id: Id) -> Result<(), UsageError> {
        self.link.commands.abandon(id.0)
    }

    /// Bytes to write to the server.
    pub fn pending_transmit(&self) -> &[u8] {
        self.link.commands.pending_transmit()
    }

    /// Reports that `n` bytes of [`pending_transmit`](Self::pending_transmit)
    /// were written.
    pub fn advance_transmit(&mut self, n: usize) -> Result<(), UsageError> {
        self.link.commands.advance_transmit(n)
    }

    /// True once capabilities negotiation succeeded (and not closed).
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready { .. })
    }

    /// True when out-of-band execution was requested and offered.
    pub fn oob_enabled(&self) -> bool {
        matches!(
            self.state,
            State::Ready { oob: true } | State::Negotiating { oob: true, .. }
        )
    }

    /// Number of commands waiting for a reply (abandoned ones included).
    pub fn in_flight(&self) -> usize {
        self.link.commands.in_flight().count()
    }

    /// The sticky protocol error, if the peer broke the protocol.
    pub fn error(&self) -> Option<ProtocolError> {
        match self.state {
            State::Draining(e) | State::Closed(e) => e,
            _ => None,
        }
    }

    /// True once [`Output::Closed`] was handed out.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }
}

/// True when a reply received while negotiating is the answer to
/// `qmp_capabilities` (sent with id `caps`). It goes out before any other
/// command and in-band replies come in order, so an id-less reply can only be
/// its answer: a server that leaves the id out must not leave the client
/// waiting for one until the owner's connect timeout.
fn answers_capabilities(caps: u64, id: IdValue) -> bool {
    id == IdValue::Number(caps) || id == IdValue::Absent
}

/// The reply a `return` or `error` message carries.
pub(crate) fn reply_of(message: RawMessage<'_>) -> Result<Reply<'_>, ProtocolError> {
    match message.kind() {
        Kind::Return => message
            .get(Key::Return)
            .map(Reply::Return)
            .ok_or(ProtocolError::UnknownMessage),
        Kind::Error => error_of(message).map(Reply::Error),
        _ => Err(ProtocolError::UnknownMessage),
    }
}

/// The `error` member of an error reply, which must be `{class, desc}`.
pub(crate) fn error_of(message: RawMessage<'_>) -> Result<QmpError<'_>, ProtocolError> {
    message
        .get(Key::Error)
        .and_then(QmpError::parse)
        .ok_or(ProtocolError::MalformedError)
}
