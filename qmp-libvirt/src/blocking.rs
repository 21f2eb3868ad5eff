//! A minimal blocking transport: [`Connection`] over a std unix or TCP
//! socket, one call at a time, every libvirt procedure this crate knows.
//!
//! For QMP, use [`crate::Client`] (or [`crate::nonblocking::Client`]): the
//! client API shared with the QMP socket clients, with a background reader.
//!
//! This one reads only inside a call: keepalive PINGs are answered while a call or
//! [`Client::next_event`] runs. libvirtd closes a connection that asked for
//! keepalive once its PINGs go unanswered for 30 s (measured: interval 5 s,
//! 5 missed), so a client that makes no call for longer than that must idle
//! in `next_event`, or open with [`Config::keepalive`] off.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use crate::conn::{CallId, Config, Connection, Output, Reply};
use crate::error::Error;
use crate::uri::{self, Target, Transport, UriError};
use crate::wire::{Domain, MonitorEvent, Uuid};

/// Why a blocking call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The URI was refused.
    Uri(UriError),
    /// The socket failed (connecting, reading or writing).
    Io(io::Error),
    /// The connection or libvirt said no (a libvirt error is about this call;
    /// the others end the connection).
    Rpc(Error),
    /// No reply within the timeout; the call was abandoned.
    Timeout(Duration),
    /// The session socket's path needs `$XDG_RUNTIME_DIR` or `$HOME`.
    NoSessionSocket,
    /// The daemon answered with a reply of another kind than the call's.
    UnexpectedReply,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uri(e) => e.fmt(f),
            Self::Io(e) => write!(f, "libvirt socket: {e}"),
            Self::Rpc(e) => e.fmt(f),
            Self::Timeout(d) => write!(f, "no reply from libvirtd within {d:?}"),
            Self::NoSessionSocket => f.write_str(
                "cannot find the session daemon's socket: neither XDG_RUNTIME_DIR nor HOME is set",
            ),
            Self::UnexpectedReply => f.write_str("libvirtd answered with an unexpected reply"),
        }
    }
}

impl core::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Uri(e) => Some(e),
            Self::Io(e) => Some(e),
            Self::Rpc(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<Error> for ClientError {
    fn from(e: Error) -> Self {
        Self::Rpc(e)
    }
}

/// A unix or TCP stream.
#[derive(Debug)]
pub enum Stream {
    /// A unix socket.
    Unix(UnixStream),
    /// A TCP connection.
    Tcp(TcpStream),
}

impl Stream {
    /// Waits until there is input (or end of stream, or an error) for at
    /// most `timeout` (`None`: for ever); true when there is.
    pub(crate) fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let fd = match self {
            Self::Unix(s) => std::os::fd::AsFd::as_fd(s),
            Self::Tcp(s) => std::os::fd::AsFd::as_fd(s),
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        loop {
            match poll(&mut fds, timeout.as_ref()) {
                Ok(n) => return Ok(n > 0),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.set_read_timeout(t),
            Self::Tcp(s) => s.set_read_timeout(t),
        }
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.set_write_timeout(t),
            Self::Tcp(s) => s.set_write_timeout(t),
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Unix(s) => Self::Unix(s.try_clone()?),
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
        })
    }

    /// Shuts both directions (ends a reader blocked on a clone).
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Self::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Self::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.flush(),
            Self::Tcp(s) => s.flush(),
        }
    }
}

/// A blocking libvirt client: a [`Connection`] and its socket.
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    conn: Connection,
    events: VecDeque<MonitorEvent>,
    replies: Vec<(CallId, Result<Reply, Error>)>,
    closed: Option<Option<Error>>,
    timeout: Duration,
    keepalive: bool,
}

impl Client {
    /// Connects to the daemon a libvirt URI names and opens it.
    pub fn connect(uri: &str) -> Result<Self, ClientError> {
        let target = uri::parse(uri).map_err(ClientError::Uri)?;
        Self::connect_target(&target, Config::new(target.name.clone()))
    }

    /// Connects to a parsed URI with a given configuration.
    pub fn connect_target(target: &Target, config: Config) -> Result<Self, ClientError> {
        let stream = match &target.transport {
            Transport::Unix { path } => Stream::Unix(UnixStream::connect(path)?),
            Transport::SessionUnix => {
                let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
                let home = std::env::var("HOME").ok();
                let path = uri::session_socket(xdg.as_deref(), home.as_deref())
                    .ok_or(ClientError::NoSessionSocket)?;
                Stream::Unix(UnixStream::connect(path)?)
            }
            Transport::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port))?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        };
        Self::open(stream, config)
    }

    /// Runs the handshake over an already connected stream.
    pub fn open(stream: Stream, config: Config) -> Result<Self, ClientError> {
        let mut client = Client {
            stream,
            conn: Connection::new(config),
            events: VecDeque::new(),
            replies: Vec::new(),
            closed: None,
            timeout: Duration::from_secs(30),
            keepalive: false,
        };
        let deadline = Instant::now().checked_add(client.timeout);
        while !client.conn.is_open() {
            if let Some(closed) = &client.closed {
                return Err(closed.clone().unwrap_or(Error::Disconnected).into());
            }
            client.pump(deadline)?;
        }
        Ok(client)
    }

    /// How long a call waits for its reply (default 30 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// True when the daemon agreed to keepalive (its PINGs are answered as
    /// they arrive, while this client reads).
    pub fn keepalive(&self) -> bool {
        self.keepalive
    }

    /// Looks a domain up by name.
    pub fn lookup_domain_by_name(&mut self, name: &str) -> Result<Domain, ClientError> {
        let id = self.conn.lookup_domain_by_name(name)?;
        self.domain_reply(id)
    }

    /// Looks a domain up by UUID.
    pub fn lookup_domain_by_uuid(&mut self, uuid: Uuid) -> Result<Domain, ClientError> {
        let id = self.conn.lookup_domain_by_uuid(uuid)?;
        self.domain_reply(id)
    }

    /// Looks a running domain up by id.
    pub fn lookup_domain_by_id(&mut self, domain_id: i32) -> Result<Domain, ClientError> {
        let id = self.conn.lookup_domain_by_id(domain_id)?;
        self.domain_reply(id)
    }

    /// Runs a QMP command (JSON without `"id"`); returns QEMU's reply JSON,
    /// a QMP error included.
    pub fn monitor_command(
        &mut self,
        domain: &Domain,
        command: &str,
    ) -> Result<String, ClientError> {
        let id = self.conn.monitor_command(domain, command)?;
        match self.wait(id)? {
            Reply::Monitor(s) => Ok(s),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Runs an HMP command; returns its text.
    pub fn hmp_command(&mut self, domain: &Domain, command: &str) -> Result<String, ClientError> {
        let id = self.conn.hmp_command(domain, command)?;
        match self.wait(id)? {
            Reply::Monitor(s) => Ok(s),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// The hypervisor's version.
    pub fn get_version(&mut self) -> Result<u64, ClientError> {
        let id = self.conn.get_version()?;
        match self.wait(id)? {
            Reply::Version(v) => Ok(v),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Subscribes to a domain's (or every domain's) QMP events; returns the
    /// callback id. Events are read with [`next_event`](Self::next_event).
    pub fn register_monitor_events(
        &mut self,
        domain: Option<&Domain>,
        event: Option<&str>,
    ) -> Result<i32, ClientError> {
        let id = self.conn.register_monitor_events(domain, event)?;
        match self.wait(id)? {
            Reply::EventRegistered { callback_id } => Ok(callback_id),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    /// Ends a subscription.
    pub fn deregister_monitor_events(&mut self, callback_id: i32) -> Result<(), ClientError> {
        let id = self.conn.deregister_monitor_events(callback_id)?;
        self.wait(id).map(drop)
    }

    /// The next event, waiting up to `timeout`; `None` when none came.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<MonitorEvent>, ClientError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if let Some(closed) = &self.closed {
                return Err(closed.clone().unwrap_or(Error::Disconnected).into());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            match self.pump(deadline) {
                Err(ClientError::Timeout(_)) => return Ok(None),
                other => other?,
            }
        }
    }

    /// Closes the connection (`CONNECT_CLOSE`) and waits for its reply.
    pub fn close(mut self) -> Result<(), ClientError> {
        self.conn.close()?;
        let deadline = Instant::now().checked_add(self.timeout);
        while self.closed.is_none() {
            self.pump(deadline)?;
        }
        match self.closed.take().flatten() {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
    }

    /// Makes any call on the connection and sends it, without waiting: for
    /// several calls in flight at once. Wait with
    /// [`wait_reply`](Self::wait_reply).
    pub fn start_call(
        &mut self,
        call: impl FnOnce(&mut Connection) -> Result<CallId, Error>,
    ) -> Result<CallId, ClientError> {
        let id = call(&mut self.conn)?;
        self.flush()?;
        Ok(id)
    }

    /// Waits for the reply to a call made with [`start_call`](Self::start_call).
    pub fn wait_reply(&mut self, id: CallId) -> Result<Reply, ClientError> {
        self.wait(id)
    }

    fn domain_reply(&mut self, id: CallId) -> Result<Domain, ClientError> {
        match self.wait(id)? {
            Reply::Domain(d) => Ok(d),
            _ => Err(ClientError::UnexpectedReply),
        }
    }

    fn wait(&mut self, id: CallId) -> Result<Reply, ClientError> {
        let deadline = Instant::now().checked_add(self.timeout);
        loop {
            if let Some(i) = self.replies.iter().position(|(r, _)| *r == id) {
                return self.replies.swap_remove(i).1.map_err(ClientError::Rpc);
            }
            if let Some(closed) = &self.closed {
                return Err(closed.clone().unwrap_or(Error::Disconnected).into());
            }
            if let Err(e) = self.pump(deadline) {
                if matches!(e, ClientError::Timeout(_)) {
                    let _ = self.conn.abandon(id);
                }
                return Err(e);
            }
        }
    }

    /// Flushes what the connection wants sent, reads once (until `deadline`),
    /// and sorts the outputs.
    fn pump(&mut self, deadline: Option<Instant>) -> Result<(), ClientError> {
        self.flush()?;
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ClientError::Timeout(self.timeout));
                }
                Some(left)
            }
            None => None,
        };
        self.stream.set_read_timeout(timeout)?;
        let mut buf = [0u8; 64 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => self.conn.receive_eof(),
            #[allow(clippy::indexing_slicing)] // read returns at most buf.len()
            Ok(n) => {
                // A protocol error also comes out as Output::Closed.
                let _ = self.conn.receive(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ClientError::Timeout(self.timeout));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // The socket is gone: every waiting call fails with the daemon gone.
                self.conn.receive_eof();
                self.drain();
                if !is_gone(&e) {
                    return Err(e.into());
                }
            }
        }
        self.drain();
        // PONGs for PINGs just read.
        self.flush()
    }

    fn drain(&mut self) {
        while let Some(output) = self.conn.poll_output() {
            match output {
                Output::Opened { keepalive } => self.keepalive = keepalive,
                Output::Reply { id, result } => self.replies.push((id, result)),
                Output::Event(e) => self.events.push_back(e),
                Output::Closed(e) => self.closed = Some(e),
                // Other programs' messages and strays are not this client's.
                _ => {}
            }
        }
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        while !self.conn.pending_transmit().is_empty() {
            let n = match self.stream.write(self.conn.pending_transmit()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_gone(&e) => {
                    self.conn.receive_eof();
                    self.drain();
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero).into());
            }
            self.conn
                .advance_transmit(n)
                .map_err(|e| ClientError::Rpc(e.into()))?;
        }
        Ok(())
    }
}

/// The daemon went away: reported as [`Error::Disconnected`], like end of
/// stream, not as an I/O error.
fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}
