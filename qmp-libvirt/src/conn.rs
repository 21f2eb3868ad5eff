//! The libvirt connection state machine, without any I/O.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, LibvirtError, ProtocolError, UsageError};
use crate::wire::{
    self, AuthType, Domain, Header, MessageType, MonitorEvent, RemoteError, STRING_MAX, Status,
    Uuid, feature, keepalive_proc, monitor_flags, program, qemu_proc, remote_proc, xdr,
};

/// How a [`Connection`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The URI to open on the daemon (`CONNECT_OPEN`'s name), such as
    /// `qemu:///system`; `None` lets the daemon choose.
    pub name: Option<String>,
    /// Open read-only (monitor commands are then refused by libvirt).
    pub read_only: bool,
    /// Ask for keepalive after opening. The daemon then PINGs the connection
    /// every 5 s and closes it when 30 s pass without a PONG; PONGs are sent
    /// automatically as the connection receives the PINGs, so the owner must
    /// keep reading (and flushing) while idle.
    pub keepalive: bool,
    /// The largest message accepted or sent (header and payload; libvirt's
    /// own limit, 16 MiB, by default).
    pub max_message: u32,
    /// How many calls may wait for replies at once.
    pub max_calls: usize,
}

impl Config {
    /// Opens `name` with the defaults.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: None,
            read_only: false,
            keepalive: true,
            max_message: wire::MESSAGE_MAX,
            max_calls: 4096,
        }
    }
}

/// A call's handle: the serial it was sent with.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u32);

/// The result of a successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// The procedure has no result (`CONNECT_CLOSE`, event deregister).
    Done,
    /// A domain lookup's domain.
    Domain(Domain),
    /// A monitor command's reply: QMP JSON (a QMP error is a reply too), or
    /// HMP text.
    Monitor(String),
    /// An event registration's callback id, which its events carry.
    EventRegistered {
        /// Pass it to [`Connection::deregister_monitor_events`].
        callback_id: i32,
    },
    /// The hypervisor's version, `major * 1_000_000 + minor * 1000 + micro`.
    Version(u64),
    /// The payload of a [`Connection::call_raw`], undecoded.
    Raw(Vec<u8>),
}

/// What [`Connection::poll_output`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// The connection is open (authenticated, `CONNECT_OPEN` answered, and
    /// keepalive asked for if configured). Calls made before this were held
    /// and are now sent.
    Opened {
        /// The daemon agreed to keepalive.
        keepalive: bool,
    },
    /// A call's outcome.
    Reply {
        /// The call.
        id: CallId,
        /// Its result; a libvirt error is data about this call. Calls still
        /// waiting when the connection ends get the reason it ended.
        result: Result<Reply, Error>,
    },
    /// A QMP event of a domain, from a monitor-event registration.
    Event(MonitorEvent),
    /// Any other one-way message (another program's events), kept undecoded.
    Message {
        /// Its header.
        header: Header,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// A reply whose serial is not a call waiting here.
    Unmatched {
        /// Its serial.
        serial: u32,
    },
    /// The connection is over: `None` after [`Connection::close`], otherwise
    /// why. Every call still waiting got its [`Output::Reply`] before this.
    /// It is the last output.
    Closed(Option<Error>),
}

/// What a waiting call's reply decodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    AuthList,
    Open,
    KeepaliveFeature,
    Close,
    Done,
    Domain,
    Monitor,
    EventRegistered,
    Version,
    Raw,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    program: u32,
    procedure: i32,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `AUTH_LIST`, then `CONNECT_OPEN`, then maybe `SUPPORTS_FEATURE` sent;
    /// user calls are held.
    Handshake,
    Open,
    /// `CONNECT_CLOSE` sent.
    Closing,
    Closed,
}

/// A connection to libvirtd: the protocol, without any I/O.
///
/// # Driving it
///
/// The connection never blocks and never reads a clock. Its owner moves
/// bytes and time:
///
/// 1. Feed every byte read from the socket to [`receive`](Self::receive).
/// 2. After every `receive` (and after every call), drain
///    [`poll_output`](Self::poll_output) until it returns `None`.
/// 3. Write [`pending_transmit`](Self::pending_transmit) to the socket and
///    report what was written with [`advance_transmit`](Self::advance_transmit).
///    Keepalive PONGs are queued there too: flush after every `receive`, even
///    when no call was made.
/// 4. On end of stream call [`receive_eof`](Self::receive_eof), then drain
///    `poll_output`: every waiting call gets its reply (an error), then
///    [`Output::Closed`].
///
/// The handshake is queued by [`new`](Self::new): `AUTH_LIST`, then
/// `CONNECT_OPEN` with [`Config::name`], then (with [`Config::keepalive`])
/// `CONNECT_SUPPORTS_FEATURE` for keepalive; [`Output::Opened`] says it is
/// done. Calls may be made at once; they are held until then.
///
/// Replies are matched to calls by serial. Events and keepalive messages are
/// dispatched by program and procedure, never by serial (libvirtd sends
/// events with serial 1, the keepalive with 0).
///
/// Timeouts are the owner's: [`abandon`](Self::abandon) a call that waited
/// too long so its late reply is dropped. Client-side keepalive (noticing a
/// dead daemon) is the owner's too: [`send_ping`](Self::send_ping) when idle,
/// and treat silence as death.
///
/// Misuse returns [`UsageError`] and changes nothing. A [`ProtocolError`] is
/// sticky: it closes the connection and every later call returns it.
///
/// # Methods by role
///
/// - input: [`receive`](Self::receive), [`receive_eof`](Self::receive_eof)
/// - output: [`poll_output`](Self::poll_output),
///   [`pending_transmit`](Self::pending_transmit),
///   [`advance_transmit`](Self::advance_transmit)
/// - calls: [`lookup_domain_by_name`](Self::lookup_domain_by_name),
///   [`lookup_domain_by_uuid`](Self::lookup_domain_by_uuid),
///   [`lookup_domain_by_id`](Self::lookup_domain_by_id),
///   [`monitor_command`](Self::monitor_command),
///   [`hmp_command`](Self::hmp_command),
///   [`register_monitor_events`](Self::register_monitor_events),
///   [`deregister_monitor_events`](Self::deregister_monitor_events),
///   [`get_version`](Self::get_version), [`call_raw`](Self::call_raw),
///   [`send_ping`](Self::send_ping), [`close`](Self::close),
///   [`abandon`](Self::abandon)
/// - state: [`is_open`](Self::is_open), [`keepalive`](Self::keepalive),
///   [`in_flight`](Self::in_flight), [`error`](Self::error)
#[derive(Debug)]
pub struct Connection {
    config: Config,
    state: State,
    next_serial: u32,
    waiting: BTreeMap<u32, Waiting>,
    abandoned: BTreeSet<u32>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    tx_sent: usize,
    /// Calls made during the handshake, sent when it is done.
    held: Vec<u8>,
    outputs: VecDeque<Output>,
    keepalive: bool,
    error: Option<Error>,
}

impl Connection {
    /// A connection with the handshake queued for transmission.
    pub fn new(config: Config) -> Self {
        let mut conn = Self {
            config,
            state: State::Handshake,
            next_serial: 0,
            waiting: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            rx: Vec::new(),
            tx: Vec::new(),
            tx_sent: 0,
            held: Vec::new(),
            outputs: VecDeque::new(),
            keepalive: false,
            error: None,
        };
        conn.queue_handshake_call(
            program::REMOTE,
            remote_proc::AUTH_LIST,
            Expect::AuthList,
            |_| {},
        );
        conn
    }

    // ---- input ----

    /// Feeds bytes read from the daemon; all are taken. Drain
    /// [`poll_output`](Self::poll_output) after every call. A protocol error
    /// closes the connection (reported as [`Output::Closed`]) and is returned.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.state == State::Closed {
            return Ok(());
        }
        self.rx.extend_from_slice(bytes);
        let mut start = 0;
        let result = loop {
            // start never passes rx.len(): it only moves to a packet's end.
            let buf = self.rx.get(start..).unwrap_or_default();
            let len = match wire::packet_len(buf, self.config.max_message) {
                Ok(Some(len)) if len <= buf.len() => len,
                Ok(_) => break Ok(()),
                Err(error) => break Err(decode_error("packet length", error)),
            };
            // At most rx.len(): len <= buf.len().
            let end = start.saturating_add(len);
            // Taken out so handling may borrow self mutably; put back after.
            let packet = core::mem::take(&mut self.rx);
            let handled = self.handle_packet(packet.get(start..end).unwrap_or_default());
            self.rx = packet;
            start = end;
            if let Err(e) = handled {
                break Err(e);
            }
            if self.state == State::Closed {
                break Ok(());
            }
        };
        self.rx.drain(..start);
        if let Err(e) = result {
            self.fail(Error::Protocol(e));
            return Err(Error::Protocol(e));
        }
        Ok(())
    }

    /// Tells the connection the daemon closed the socket.
    pub fn receive_eof(&mut self) {
        match self.state {
            State::Closed => {}
            State::Closing => self.finish(None, Error::Disconnected),
            _ => self.fail(Error::Disconnected),
        }
    }

    // ---- output ----

    /// The next thing that happened, or `None` when more input is needed.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Bytes waiting to be written to the socket.
    #[must_use]
    pub fn pending_transmit(&self) -> &[u8] {
        // tx_sent never passes tx.len() (advance_transmit checks).
        self.tx.get(self.tx_sent..).unwrap_or_default()
    }

    /// Reports that `n` bytes of [`pending_transmit`](Self::pending_transmit)
    /// were written. More than are pending is a usage error.
    pub fn advance_transmit(&mut self, n: usize) -> Result<(), UsageError> {
        let pending = self.tx.len().saturating_sub(self.tx_sent);
        if n > pending {
            return Err(UsageError::AdvancedPastPending {
                written: n,
                pending,
            });
        }
        // n <= pending: at most tx.len().
        self.tx_sent = self.tx_sent.saturating_add(n);
        if self.tx_sent == self.tx.len() {
            self.tx.clear();
            self.tx_sent = 0;
        }
        Ok(())
    }

    // ---- calls ----

    /// Looks a domain up by name.
    pub fn lookup_domain_by_name(&mut self, name: &str) -> Result<CallId, Error> {
        check_str(name)?;
        self.call(
            program::REMOTE,
            remote_proc::DOMAIN_LOOKUP_BY_NAME,
            Expect::Domain,
            |o| xdr::put_str(o, name),
        )
    }

    /// Looks a domain up by UUID.
    pub fn lookup_domain_by_uuid(&mut self, uuid: Uuid) -> Result<CallId, Error> {
        self.call(
            program::REMOTE,
            remote_proc::DOMAIN_LOOKUP_BY_UUID,
            Expect::Domain,
            |o| xdr::put_opaque_fixed(o, &uuid.0),
        )
    }

    /// Looks a running domain up by its id.
    pub fn lookup_domain_by_id(&mut self, id: i32) -> Result<CallId, Error> {
        self.call(
            program::REMOTE,
            remote_proc::DOMAIN_LOOKUP_BY_ID,
            Expect::Domain,
            |o| xdr::put_i32(o, id),
        )
    }

    /// Runs a QMP command (JSON text) on a domain's monitor. libvirt assigns
    /// its own command ids: a command must not carry `"id"`.
    pub fn monitor_command(&mut self, domain: &Domain, command: &str) -> Result<CallId, Error> {
        self.monitor_command_flags(domain, command, 0)
    }

    /// Runs an HMP command (text) on a domain's monitor.
    pub fn hmp_command(&mut self, domain: &Domain, command: &str) -> Result<CallId, Error> {
        self.monitor_command_flags(domain, command, monitor_flags::HMP)
    }

    /// Runs a monitor command with `DOMAIN_MONITOR_COMMAND` flags.
    pub fn monitor_command_flags(
        &mut self,
        domain: &Domain,
        command: &str,
        flags: u32,
    ) -> Result<CallId, Error> {
        check_str(&domain.name)?;
        check_str(command)?;
        self.call(
            program::QEMU,
            qemu_proc::DOMAIN_MONITOR_COMMAND,
            Expect::Monitor,
            |o| wire::remote::encode_monitor_command(o, domain, command, flags),
        )
    }

    /// Subscribes to QMP events: of one domain or all, one event name or
    /// all. The reply carries the callback id the events will carry.
    pub fn register_monitor_events(
        &mut self,
        domain: Option<&Domain>,
        event: Option<&str>,
    ) -> Result<CallId, Error> {
        if let Some(d) = domain {
            check_str(&d.name)?;
        }
        if let Some(e) = event {
            check_str(e)?;
        }
        self.call(
            program::QEMU,
            qemu_proc::CONNECT_DOMAIN_MONITOR_EVENT_REGISTER,
            Expect::EventRegistered,
            |o| {
                xdr::put_optional(o, domain, |o, d| d.encode(o));
                xdr::put_optional(o, event, xdr::put_str);
                xdr::put_u32(o, 0);
            },
        )
    }

    /// Ends an event subscription.
    pub fn deregister_monitor_events(&mut self, callback_id: i32) -> Result<CallId, Error> {
        self.call(
            program::QEMU,
            qemu_proc::CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER,
            Expect::Done,
            |o| xdr::put_i32(o, callback_id),
        )
    }

    /// Asks the hypervisor's version (this reaches the QEMU driver).
    pub fn get_version(&mut self) -> Result<CallId, Error> {
        self.call(
            program::REMOTE,
            remote_proc::CONNECT_GET_VERSION,
            Expect::Version,
            |_| {},
        )
    }

    /// Calls any procedure with already encoded XDR arguments; the reply's
    /// payload comes back as [`Reply::Raw`].
    pub fn call_raw(
        &mut self,
        program: u32,
        procedure: i32,
        arguments: &[u8],
    ) -> Result<CallId, Error> {
        self.call(program, procedure, Expect::Raw, |o| {
            o.extend_from_slice(arguments)
        })
    }

    /// Sends a keepalive PING (the daemon answers PONG).
    pub fn send_ping(&mut self) -> Result<(), Error> {
        self.check_usable()?;
        self.queue_message(keepalive_proc::PING);
        Ok(())
    }

    /// Closes the connection (`CONNECT_CLOSE`); [`Output::Closed`] follows
    /// its reply. During the handshake nothing is open on the daemon yet: it
    /// closes at once. Closing twice is fine.
    pub fn close(&mut self) -> Result<(), Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.state {
            State::Closing | State::Closed => Ok(()),
            // Nothing was opened yet: there is nothing to close on the daemon.
            State::Handshake => {
                self.finish(None, Error::Usage(UsageError::Closed));
                Ok(())
            }
            State::Open => {
                let _close = self.encode_call(
                    program::REMOTE,
                    remote_proc::CONNECT_CLOSE,
                    Expect::Close,
                    true,
                    |_| {},
                )?;
                self.state = State::Closing;
                Ok(())
            }
        }
    }

    /// Forgets a waiting call (timed out, given up): its late reply is
    /// dropped. False when no such call was waiting.
    pub fn abandon(&mut self, id: CallId) -> bool {
        if self.waiting.remove(&id.0).is_some() {
            // Bounded like the calls: replies that never come must not pile
            // up; the oldest serial is forgotten (its late reply, if it ever
            // comes, is reported as unmatched).
            if self.abandoned.len() >= self.config.max_calls {
                self.abandoned.pop_first();
            }
            self.abandoned.insert(id.0);
            true
        } else {
            false
        }
    }

    // ---- state ----

    /// True once [`Output::Opened`] was reported, until closing.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// True when the daemon agreed to keepalive.
    pub fn keepalive(&self) -> bool {
        self.keepalive
    }

    /// How many calls wait for replies (the handshake's included).
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// The fatal error, once there is one.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    // ---- internals ----

    fn check_usable(&self) -> Result<(), Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.state {
            State::Handshake | State::Open => Ok(()),
            State::Closing | State::Closed => Err(Error::Usage(UsageError::Closed)),
        }
    }

    fn call(
        &mut self,
        program: u32,
        procedure: i32,
        expect: Expect,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> Result<CallId, Error> {
        self.check_usable()?;
        if self.waiting.len() >= self.config.max_calls {
            return Err(Error::Usage(UsageError::TooManyCalls {
                limit: self.config.max_calls,
            }));
        }
        let now = self.state == State::Open;
        self.encode_call(program, procedure, expect, now, body)
    }

    fn queue_handshake_call(
        &mut self,
        program: u32,
        procedure: i32,
        expect: Expect,
        body: impl FnOnce(&mut Vec<u8>),
    ) {
        // Handshake arguments are small: they fit any limit.
        let _ = self.encode_call(program, procedure, expect, true, body);
    }

    /// Encodes a call into the transmit buffer (`now`) or the held calls.
    fn encode_call(
        &mut self,
        program: u32,
        procedure: i32,
        expect: Expect,
        now: bool,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> Result<CallId, Error> {
        let serial = self.next_serial;
        let header = Header::call(program, procedure, serial);
        let out = if now { &mut self.tx } else { &mut self.held };
        let start = out.len();
        let len = wire::encode_packet(out, &header, body);
        // len counts the length word itself.
        let size = len.saturating_sub(wire::LEN_SIZE);
        if size > self.config.max_message as usize {
            out.truncate(start);
            return Err(Error::Usage(UsageError::MessageTooLarge {
                size,
                limit: self.config.max_message,
            }));
        }
        self.next_serial = serial.wrapping_add(1);
        self.waiting.insert(
            serial,
            Waiting {
                program,
                procedure,
                expect,
            },
        );
        Ok(CallId(serial))
    }

    fn queue_message(&mut self, procedure: i32) {
        wire::encode_packet(
            &mut self.tx,
            &Header::message(program::KEEPALIVE, procedure),
            |_| {},
        );
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), ProtocolError> {
        let (header, payload) =
            wire::decode_packet(packet).map_err(|e| decode_error("packet header", e))?;
        match header.kind {
            MessageType::Reply | MessageType::ReplyWithFds => self.handle_reply(&header, payload),
            MessageType::Message => self.handle_message(header, payload),
            _ => {
                self.outputs.push_back(Output::Message {
                    header,
                    payload: payload.to_vec(),
                });
                Ok(())
            }
        }
    }

    fn handle_message(&mut self, header: Header, payload: &[u8]) -> Result<(), ProtocolError> {
        match (header.program, header.procedure) {
            (program::KEEPALIVE, keepalive_proc::PING) => {
                if matches!(self.state, State::Handshake | State::Open) {
                    self.queue_message(keepalive_proc::PONG);
                }
            }
            (program::KEEPALIVE, keepalive_proc::PONG) => {}
            (program::QEMU, qemu_proc::DOMAIN_MONITOR_EVENT) => {
                let event = xdr::decode_all(payload, MonitorEvent::decode)
                    .map_err(|e| decode_error("monitor event", e))?;
                self.outputs.push_back(Output::Event(event));
            }
            _ => self.outputs.push_back(Output::Message {
                header,
                payload: payload.to_vec(),
            }),
        }
        Ok(())
    }

    fn handle_reply(&mut self, header: &Header, payload: &[u8]) -> Result<(), ProtocolError> {
        let Some(waiting) = self.waiting.remove(&header.serial) else {
            if !self.abandoned.remove(&header.serial) {
                self.outputs.push_back(Output::Unmatched {
                    serial: header.serial,
                });
            }
            return Ok(());
        };
        let handled = self.handle_matched(header, payload, waiting);
        if handled.is_err() {
            // Back among the waiting, so the failing connection answers it.
            self.waiting.insert(header.serial, waiting);
        }
        handled
    }

    /// Handles the reply to `waiting`, already taken off the waiting calls.
    fn handle_matched(
        &mut self,
        header: &Header,
        payload: &[u8],
        waiting: Waiting,
    ) -> Result<(), ProtocolError> {
        if (waiting.program, waiting.procedure) != (header.program, header.procedure) {
            return Err(ProtocolError::ReplyMismatch {
                serial: header.serial,
                expected: (waiting.program, waiting.procedure),
                got: (header.program, header.procedure),
            });
        }
        let result = match header.status {
            Status::Ok => Ok(payload),
            Status::Error | Status::Continue => Err(LibvirtError::from(
                xdr::decode_all(payload, RemoteError::decode)
                    .map_err(|e| decode_error("error report", e))?,
            )),
        };
        let id = CallId(header.serial);
        match waiting.expect {
            Expect::AuthList => self.on_auth_list(result),
            Expect::Open => self.on_open(result),
            Expect::KeepaliveFeature => self.on_keepalive_feature(result),
            Expect::Close => {
                self.finish(None, Error::Usage(UsageError::Closed));
                Ok(())
            }
            expect => {
                let result = match result {
                    Ok(payload) => Ok(decode_reply(expect, payload)?),
                    Err(e) => Err(Error::Libvirt(e)),
                };
                self.outputs.push_back(Output::Reply { id, result });
                Ok(())
            }
        }
    }

    fn on_auth_list(&mut self, result: Result<&[u8], LibvirtError>) -> Result<(), ProtocolError> {
        let types = match result {
            Ok(payload) => xdr::decode_all(payload, AuthType::decode_list)
                .map_err(|e| decode_error("auth list", e))?,
            Err(e) => {
                self.fail(Error::Libvirt(e));
                return Ok(());
            }
        };
        // libvirt's own client uses the first type; none listed means none needed.
        match types.first() {
            None | Some(AuthType::None) => {
                let name = self.config.name.clone();
                let flags = if self.config.read_only {
                    wire::open_flags::READ_ONLY
                } else {
                    0
                };
                self.queue_handshake_call(
                    program::REMOTE,
                    remote_proc::CONNECT_OPEN,
                    Expect::Open,
                    |o| wire::remote::encode_connect_open(o, name.as_deref(), flags),
                );
            }
            Some(&other) => self.fail(Error::AuthNotSupported(other)),
        }
        Ok(())
    }

    fn on_open(&mut self, result: Result<&[u8], LibvirtError>) -> Result<(), ProtocolError> {
        match result {
            Ok(payload) => {
                xdr::decode_all(payload, |i| Ok((i, ())))
                    .map_err(|e| decode_error("open reply", e))?;
                if self.config.keepalive {
                    self.queue_handshake_call(
                        program::REMOTE,
                        remote_proc::CONNECT_SUPPORTS_FEATURE,
                        Expect::KeepaliveFeature,
                        |o| xdr::put_i32(o, feature::PROGRAM_KEEPALIVE),
                    );
                } else {
                    self.opened(false);
                }
            }
            Err(e) => self.fail(Error::Libvirt(e)),
        }
        Ok(())
    }

    fn on_keepalive_feature(
        &mut self,
        result: Result<&[u8], LibvirtError>,
    ) -> Result<(), ProtocolError> {
        // A daemon that does not know the feature answers with an error:
        // the connection works, without keepalive.
        let supported = match result {
            Ok(payload) => {
                xdr::decode_all(payload, wire::remote::decode_int_ret)
                    .map_err(|e| decode_error("supports-feature reply", e))?
                    != 0
            }
            Err(_) => false,
        };
        self.opened(supported);
        Ok(())
    }

    fn opened(&mut self, keepalive: bool) {
        self.state = State::Open;
        self.keepalive = keepalive;
        self.outputs.push_back(Output::Opened { keepalive });
        self.tx.append(&mut self.held);
    }

    /// Ends the connection with `error`: fatal, sticky.
    fn fail(&mut self, error: Error) {
        if self.state == State::Closed {
            return;
        }
        if matches!(error, Error::Protocol(_)) {
            self.error = Some(error.clone());
        }
        self.finish(Some(error.clone()), error);
    }

    /// Fails every waiting call with `calls`, then reports `Closed(closed)`.
    fn finish(&mut self, closed: Option<Error>, calls: Error) {
        self.state = State::Closed;
        self.held.clear();
        self.tx.clear();
        self.tx_sent = 0;
        self.rx.clear();
        for (serial, w) in core::mem::take(&mut self.waiting) {
            if !is_handshake(w.expect) {
                self.outputs.push_back(Output::Reply {
                    id: CallId(serial),
                    result: Err(calls.clone()),
                });
            }
        }
        self.abandoned.clear();
        self.outputs.push_back(Output::Closed(closed));
    }
}

fn is_handshake(expect: Expect) -> bool {
    matches!(
        expect,
        Expect::AuthList | Expect::Open | Expect::KeepaliveFeature | Expect::Close
    )
}

fn decode_error(what: &'static str, error: wire::DecodeError) -> ProtocolError {
    ProtocolError::Decode { what, error }
}

fn check_str(s: &str) -> Result<(), Error> {
    if s.len() > STRING_MAX as usize {
        return Err(Error::Usage(UsageError::StringTooLong {
            len: s.len(),
            max: STRING_MAX,
        }));
    }
    Ok(())
}

fn decode_reply(expect: Expect, payload: &[u8]) -> Result<Reply, ProtocolError> {
    let r = match expect {
        Expect::Domain => xdr::decode_all(payload, Domain::decode).map(Reply::Domain),
        Expect::Monitor => {
            xdr::decode_all(payload, wire::remote::decode_string_ret).map(Reply::Monitor)
        }
        Expect::EventRegistered => xdr::decode_all(payload, wire::remote::decode_int_ret)
            .map(|callback_id| Reply::EventRegistered { callback_id }),
        Expect::Version => xdr::decode_all(payload, xdr::u64).map(Reply::Version),
        Expect::Raw => Ok(Reply::Raw(payload.to_vec())),
        _ => xdr::decode_all(payload, |i| Ok((i, ()))).map(|()| Reply::Done),
    };
    r.map_err(|e| decode_error("reply", e))
}
