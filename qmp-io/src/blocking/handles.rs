//! The public handles of the blocking driver: a QMP client and a guest-agent
//! client, both cheap to clone and usable from many threads.

use core::time::Duration;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use qmp_proto::{Client as Core, ClientConfig, Command, GuestAgent as AgentCore, Heap};

use super::{Conn, Stream};
use crate::call::{
    AddFdInfo, Call, decode, fd_args, submit_agent, submit_agent_typed, submit_qmp,
    submit_qmp_typed,
};
use crate::config::{Config, deadline_after};
use crate::error::{Disconnect, Error, Result};
use crate::events::{EventFilter, Subscription};
use crate::json::Json;
use crate::session::{Greeting, nonce};

/// A blocking QMP client. Cheap to clone; every clone drives the same
/// connection, from any number of threads at once. Dropping the last clone
/// closes the connection.
///
/// ```no_run
/// use qmp_io::blocking::Client;
/// # fn main() -> Result<(), qmp_io::Error> {
/// let stream = std::os::unix::net::UnixStream::connect("/run/vm/qmp.sock")?;
/// let qmp = Client::connect(stream, qmp_io::Config::default())?;
/// println!("QEMU {}", qmp.greeting().version);
/// let status = qmp.execute_raw("query-status", ())?;
/// println!("{status}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    conn: Arc<Conn<Core<Heap>>>,
    greeting: Arc<Greeting>,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("greeting", &self.greeting)
            .field("closed", &self.conn.session.is_closed())
            .finish()
    }
}

impl Client {
    /// Runs the QMP handshake on `stream` (greeting, then `qmp_capabilities`)
    /// and starts the background reader. The connect timeout covers the
    /// greeting.
    pub fn connect<S: Stream>(stream: S, config: Config) -> Result<Self> {
        Self::connect_with(config, |_| Ok(stream))
    }

    /// Opens the stream with `open` and runs the QMP handshake over it, both
    /// within the one connect timeout (which the error reports as
    /// configured). `open` gets the timeout to use for its own part.
    pub fn connect_with<S: Stream>(
        config: Config,
        open: impl FnOnce(Duration) -> io::Result<S>,
    ) -> Result<Self> {
        let core = Core::new(ClientConfig {
            oob: config.oob,
            limits: config.limits,
        });
        let conn = Conn::open(core, config, open, "qmp-reader")?;
        let greeting = conn
            .session
            .greeting()
            .ok_or(Error::Disconnected(Disconnect::Local))?;
        Ok(Self {
            conn,
            greeting: Arc::new(greeting),
        })
    }

    /// The server's greeting: QEMU's version and capabilities.
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// The connection's session, for the reconnecting layer.
    pub(crate) fn session(&self) -> &Arc<crate::session::Session<Core<Heap>>> {
        &self.conn.session
    }

    /// True when out-of-band execution was negotiated.
    pub fn oob_enabled(&self) -> bool {
        self.greeting.oob
    }

    /// Runs a typed command and decodes its return value.
    pub fn execute<C: Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        let s = &self.conn.session;
        let json = self
            .conn
            .wait(submit_qmp_typed(s, command, false)?, s.config.timeout)?;
        decode(&json)
    }

    /// Runs a typed command with `exec-oob`.
    pub fn execute_oob<C: Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        let s = &self.conn.session;
        let json = self
            .conn
            .wait(submit_qmp_typed(s, command, true)?, s.config.timeout)?;
        decode(&json)
    }

    /// Runs command `name` with `arguments`: anything that serializes to a
    /// JSON object (`serde_json::json!({..})`, a struct, a map, a
    /// [`Json`]), or `()` for none.
    ///
    /// ```no_run
    /// # fn run(qmp: qmp_io::blocking::Client) -> qmp_io::Result<()> {
    /// use serde_json::json;
    /// qmp.execute_raw("stop", ())?;
    /// let info = qmp.execute_raw("query-block", ())?;
    /// qmp.execute_raw("eject", json!({"id": "cd0", "force": true}))?;
    /// # let _ = info; Ok(()) }
    /// ```
    pub fn execute_raw(&self, name: &str, arguments: impl serde::Serialize) -> Result<Json> {
        self.call(Call::new(name).arguments(arguments))
    }

    /// Runs command `name` with `exec-oob`.
    pub fn execute_raw_oob(&self, name: &str, arguments: impl serde::Serialize) -> Result<Json> {
        self.call(Call::new(name).arguments(arguments).oob())
    }

    /// Runs a [`Call`]: per-call timeout, oob, fds.
    pub fn call(&self, call: Call) -> Result<Json> {
        self.conn.call(call, |c| submit_qmp(&self.conn.session, c))
    }

    /// Passes `fd` to QEMU under `name` (`getfd`), for commands that take an
    /// fd name. Unix sockets only.
    pub fn send_fd(&self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        self.call(fd_args::getfd(name).fd(fd)?).map(drop)
    }

    /// Closes an fd passed with [`send_fd`](Self::send_fd) (`closefd`).
    pub fn close_fd(&self, name: &str) -> Result<()> {
        self.call(fd_args::closefd(name)).map(drop)
    }

    /// Adds `fd` to an fd set (`add-fd`; a new set when `fdset_id` is `None`).
    pub fn add_fd(
        &self,
        fd: BorrowedFd<'_>,
        fdset_id: Option<u64>,
        opaque: Option<&str>,
    ) -> Result<AddFdInfo> {
        decode(&self.call(fd_args::add_fd(fdset_id, opaque).fd(fd)?)?)
    }

    /// Removes an fd (or a whole set when `fd` is `None`) (`remove-fd`).
    pub fn remove_fd(&self, fdset_id: u64, fd: Option<i64>) -> Result<()> {
        self.call(fd_args::remove_fd(fdset_id, fd)).map(drop)
    }

    /// A new subscriber for the events `filter` accepts.
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        let s = &self.conn.session;
        s.subscribe(filter)
    }

    /// A new subscriber for every event.
    pub fn events(&self) -> Subscription {
        self.subscribe(EventFilter::all())
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.conn.session.is_closed()
    }

    /// Blocks until the connection is over (or `timeout`); returns why it
    /// ended, or `None` if it is still open.
    pub fn wait_closed(&self, timeout: Option<Duration>) -> Option<Disconnect> {
        self.conn.wait_closed(timeout)
    }

    /// Closes the connection: waiting calls fail, subscribers end.
    pub fn close(&self) {
        self.conn.fail(Disconnect::Local);
    }

    /// How many times the background reader woke up so far. Not part of the
    /// API: tests use it to check that a waiting connection costs no CPU.
    #[doc(hidden)]
    pub fn background_wakeups(&self) -> u64 {
        self.conn.rounds.load(core::sync::atomic::Ordering::Relaxed)
    }
}

/// A blocking guest-agent client. Synchronises on connect and after every
/// timeout; cheap to clone and usable from many threads.
///
/// The guest is untrusted: a reply over the size limit fails its call with
/// [`Error::ReplyTooLarge`](crate::Error::ReplyTooLarge) and the connection
/// goes on, but bytes that break the protocol (invalid JSON or UTF-8,
/// nesting past the limit) end the connection with
/// [`Disconnect::Protocol`](crate::Disconnect::Protocol), as on QMP: connect
/// again to go on.
#[derive(Clone)]
pub struct GuestAgent {
    conn: Arc<Conn<AgentCore<Heap>>>,
}

impl core::fmt::Debug for GuestAgent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestAgent")
            .field("closed", &self.conn.session.is_closed())
            .finish()
    }
}

impl GuestAgent {
    /// Synchronises with the agent on `stream` (0xFF + `guest-sync-delimited`,
    /// discarding stale bytes); the connect timeout covers the sync.
    pub fn connect<S: Stream>(stream: S, config: Config) -> Result<Self> {
        Self::connect_with(config, |_| Ok(stream))
    }

    /// Opens the stream with `open` and synchronises over it, both within
    /// the one connect timeout, like [`Client::connect_with`].
    pub fn connect_with<S: Stream>(
        config: Config,
        open: impl FnOnce(Duration) -> io::Result<S>,
    ) -> Result<Self> {
        let core = AgentCore::new(config.limits, nonce());
        let conn = Conn::open(core, config, open, "qga-reader")?;
        Ok(Self { conn })
    }

    /// Runs a typed command and decodes its return value. Commands the agent
    /// never answers (`guest-shutdown`, `guest-suspend-*`) return once
    /// written, decoding `{}`.
    pub fn execute<C: Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        let s = &self.conn.session;
        decode(
            &self
                .conn
                .wait(submit_agent_typed(s, command)?, s.config.timeout)?,
        )
    }

    /// Runs command `name` with `arguments` (a JSON object, or `()` for
    /// none), as [`Client::execute_raw`].
    pub fn execute_raw(&self, name: &str, arguments: impl serde::Serialize) -> Result<Json> {
        self.call(Call::new(name).arguments(arguments))
    }

    /// Runs a [`Call`] (per-call timeout).
    pub fn call(&self, call: Call) -> Result<Json> {
        self.conn
            .call(call, |c| submit_agent(&self.conn.session, c))
    }

    /// Starts a new synchronisation now (commands waiting fail with
    /// [`Error::Discarded`]).
    pub fn resync(&self) -> Result<()> {
        self.conn.session.resync_agent()?;
        let timeout = self.conn.session.config.connect_timeout;
        self.conn.flush(deadline_after(timeout));
        Ok(())
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.conn.session.is_closed()
    }

    /// Blocks until the connection is over (or `timeout`).
    pub fn wait_closed(&self, timeout: Option<Duration>) -> Option<Disconnect> {
        self.conn.wait_closed(timeout)
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.fail(Disconnect::Local);
    }
}
