//! The blocking driver: a reader thread per connection; callers write their
//! own commands (no thread hop on the way out) and sleep until their answer.

use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use qmp_proto::{Client as Core, ClientConfig, Command, GuestAgent as AgentCore, Heap};

use crate::call::{
    AddFdInfo, Call, Waiting, decode, fd_args, no_reply, submit_agent, submit_agent_typed,
    submit_qmp, submit_qmp_typed,
};
use crate::config::Config;
use crate::error::{Disconnect, Error, Result};
use crate::events::{EventFilter, Subscription};
use crate::json::Json;
use crate::session::{Greeting, OutBuf, Protocol, Session, Submitted, nonce};

/// A byte stream the blocking driver can run on.
pub trait Stream: Read + Write + Send + Sized + 'static {
    /// A second handle to the same stream, for the reader thread.
    fn try_clone(&self) -> io::Result<Self>;
    /// Shuts both directions down, so a thread blocked reading returns.
    fn shutdown(&self) -> io::Result<()>;
    /// The socket to pass fds on, for streams that can (unix sockets).
    fn fd_socket(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl Stream for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }

    fn shutdown(&self) -> io::Result<()> {
        UnixStream::shutdown(self, std::net::Shutdown::Both)
    }

    fn fd_socket(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl Stream for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }

    fn shutdown(&self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Both)
    }
}

/// The write half, with the stream type erased so handles are not generic.
trait WriteHalf: Write + Send {
    fn shutdown_both(&self) -> io::Result<()>;
    fn socket(&self) -> Option<BorrowedFd<'_>>;
}

impl<S: Stream> WriteHalf for S {
    fn shutdown_both(&self) -> io::Result<()> {
        Stream::shutdown(self)
    }

    fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.fd_socket()
    }
}

/// The write side, shared by the callers and the reader thread.
struct Writer {
    stream: Box<dyn WriteHalf>,
    out: OutBuf,
}

/// What the handles of one connection share.
struct Conn<P: Protocol> {
    session: Arc<Session<P>>,
    writer: Mutex<Writer>,
    fds: bool,
    /// fd-carrying commands go one at a time: QEMU keeps only the fds of its
    /// latest read, so a second command's fds could replace the first's.
    fd_lane: Mutex<()>,
}

impl<P: Protocol> Conn<P> {
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes whatever the core has queued; a failure ends the connection.
    fn flush(&self) {
        let mut w = self.writer();
        self.session.take_output(&mut w.out, None);
        if let Err(e) = write_out(&mut w) {
            drop(w);
            self.fail(Disconnect::Io(Arc::new(e)));
        }
    }

    fn fail(&self, reason: Disconnect) {
        self.session.on_close(reason);
        let _ = self.writer().stream.shutdown_both();
    }

    fn start<S: Stream>(session: Arc<Session<P>>, stream: S, name: &str) -> Result<Arc<Self>> {
        let mut reader = stream.try_clone()?;
        let fds = stream.fd_socket().is_some();
        let conn = Arc::new(Conn {
            session,
            writer: Mutex::new(Writer {
                stream: Box::new(stream),
                out: OutBuf::default(),
            }),
            fds,
            fd_lane: Mutex::new(()),
        });
        // The reader holds the connection weakly: dropping every handle ends it.
        let weak = Arc::downgrade(&conn);
        let session = conn.session.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let reason = loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break Disconnect::Eof { mid_message: false },
                        Ok(n) => {
                            session.on_input(&buf[..n]);
                            if session.is_closed() {
                                break Disconnect::Local;
                            }
                            match weak.upgrade() {
                                Some(conn) => conn.flush(),
                                None => break Disconnect::Local,
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Disconnect::Io(Arc::new(e)),
                    }
                };
                session.on_close(reason);
            })?;
        let timeout = conn.session.config.connect_timeout;
        conn.flush();
        if !conn.session.settled.wait(Some(Instant::now() + timeout)) {
            conn.fail(Disconnect::HandshakeTimeout(timeout));
        }
        match conn.session.closed_reason() {
            Some(reason) => Err(Error::Disconnected(reason)),
            None => Ok(conn),
        }
    }

    /// Writes a queued command and waits for its answer.
    fn wait(&self, submitted: Submitted, timeout: Option<Duration>) -> Result<Json> {
        let waiting = Waiting::new(&self.session, submitted);
        self.flush();
        let Some(slot) = waiting.slot.clone() else {
            return Ok(no_reply());
        };
        let answer = slot.wait(timeout.map(|t| Instant::now() + t));
        let result = waiting.finish(answer, timeout);
        if matches!(result, Err(Error::Timeout(_))) {
            // A guest agent resynchronises after a timeout: send that now.
            self.flush();
        }
        result
    }

    fn call(&self, call: Call, submit: impl FnOnce(Call) -> Result<Submitted>) -> Result<Json> {
        let timeout = call.timeout.unwrap_or(self.session.config.timeout);
        if call.fds.is_empty() {
            return self.wait(submit(call)?, timeout);
        }
        if !self.fds {
            return Err(Error::FdPassingUnsupported);
        }
        let _lane = self.fd_lane.lock().unwrap_or_else(|e| e.into_inner());
        self.wait(submit(call)?, timeout)
    }

    fn wait_closed(&self, timeout: Option<Duration>) -> Option<Disconnect> {
        self.session
            .closed
            .wait(timeout.map(|t| Instant::now() + t));
        self.session.closed_reason()
    }
}

impl<P: Protocol> Drop for Conn<P> {
    fn drop(&mut self) {
        // Every handle is gone: end the connection so the reader thread exits.
        self.fail(Disconnect::Local);
    }
}

fn write_out(w: &mut Writer) -> io::Result<()> {
    let Writer { stream, out } = w;
    while !out.is_empty() {
        let (bytes, fds) = out.chunk();
        let n = match (fds, stream.socket()) {
            (None, _) => stream.write(bytes),
            (Some(fds), Some(socket)) => {
                let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                crate::fd::send_with_fds(socket, bytes, &fds)
            }
            (Some(_), None) => Err(io::ErrorKind::Unsupported.into()),
        };
        match n {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.consume(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

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
/// let status = qmp.execute_raw("query-status", None)?;
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
    /// and starts the reader thread. The connect timeout covers the greeting.
    pub fn connect<S: Stream>(stream: S, config: Config) -> Result<Self> {
        let core = Core::new(ClientConfig {
            oob: config.oob,
            limits: config.limits,
        });
        let session = Arc::new(Session::new(core, config));
        let conn = Conn::start(session, stream, "qmp-reader")?;
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

    /// Runs command `name` with optional raw JSON arguments (one object).
    pub fn execute_raw(&self, name: &str, arguments: Option<&str>) -> Result<Json> {
        self.call(Call::raw(name, arguments))
    }

    /// Runs command `name` with `exec-oob`.
    pub fn execute_raw_oob(&self, name: &str, arguments: Option<&str>) -> Result<Json> {
        self.call(Call::raw(name, arguments).oob())
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
        s.subscribe(filter, s.config.event_capacity)
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
}

/// A blocking guest-agent client. Synchronises on connect and after every
/// timeout; cheap to clone and usable from many threads.
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
        let core = AgentCore::new(config.limits, nonce());
        let session = Arc::new(Session::new(core, config));
        let conn = Conn::start(session, stream, "qga-reader")?;
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

    /// Runs command `name` with optional raw JSON arguments.
    pub fn execute_raw(&self, name: &str, arguments: Option<&str>) -> Result<Json> {
        self.call(Call::raw(name, arguments))
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
        self.conn.flush();
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
