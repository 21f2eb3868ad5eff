//! A mock QEMU on a real unix socket, for testing QMP clients and for
//! benchmarks.
//!
//! [`MockQemu`] runs [`qmp_proto::Server`] behind a unix socket: it greets,
//! negotiates capabilities, answers a few commands like QEMU does
//! (`query-status`, `stop`, `cont`, `query-version`, `quit`, and the file
//! descriptor commands `getfd`, `closefd`, `add-fd`, `remove-fd`,
//! `query-fdsets`), answers the rest with scripted replies or QEMU's
//! `CommandNotFound`, and emits events on demand. It records what it received
//! so tests can check what a client sent.
//!
//! Like QEMU it serves one client at a time: a second connection is accepted by
//! the kernel but gets no greeting until the first one leaves.

use core::panic::AssertUnwindSafe;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::catch_unwind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use qmp_proto::server::ReplyTo;
use qmp_proto::{Heap, Server, ServerConfig, ServerOutput, Timestamp, UsageError, Version};
use serde_json::{Map, Value};

/// Events encoded per lock of the connection in [`MockQemu::emit_events`]:
/// large enough that locking and `send` cost little per event, small enough
/// that replies to commands are not held back for long.
const EVENT_BATCH: usize = 8192;
/// Bytes of encoded events written per batch at most.
const EVENT_BATCH_BYTES: usize = 1 << 20;
/// Read size of the connection loop.
const READ_SIZE: usize = 64 << 10;
/// How long [`MockQemu::disconnect`] waits for the connection loop to notice.
const DISCONNECT_WAIT: Duration = Duration::from_secs(5);

/// Answers a command: see [`MockQemu::on`].
type Handler = Arc<dyn Fn(&MockRequest) -> MockReply + Send + Sync + 'static>;

/// A command as a handler given to [`MockQemu::on`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct MockRequest {
    /// The command name.
    pub name: String,
    /// Its `arguments` object as raw JSON text, if it had one.
    pub arguments: Option<String>,
    /// Its `id` as raw JSON text, if it had one.
    pub id: Option<String>,
    /// Sent with `exec-oob`.
    pub oob: bool,
    /// File descriptors that came with the command (`SCM_RIGHTS`). They are
    /// closed after the handler returns: `try_clone` the ones to keep.
    pub fds: Vec<OwnedFd>,
}

/// How the mock answers a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MockReply {
    /// `{"return": VALUE}`, with VALUE as raw JSON text.
    Return(String),
    /// `{"error": {"class": CLASS, "desc": DESC}}`.
    Error {
        /// The error class, such as `GenericError`.
        class: String,
        /// The human-readable description.
        desc: String,
    },
    /// No reply at all, like QGA's `guest-shutdown`.
    NoReply,
    /// Close the connection instead of answering, as if QEMU died.
    Disconnect,
}

impl MockReply {
    /// `{"return": {}}`, the answer of commands without a result.
    pub fn empty() -> Self {
        MockReply::Return("{}".to_owned())
    }

    /// A `{"return": VALUE}` reply; `value` is raw JSON text.
    pub fn ret(value: impl Into<String>) -> Self {
        MockReply::Return(value.into())
    }

    /// An error reply.
    pub fn error(class: impl Into<String>, desc: impl Into<String>) -> Self {
        MockReply::Error {
            class: class.into(),
            desc: desc.into(),
        }
    }

    fn generic(desc: impl Into<String>) -> Self {
        Self::error("GenericError", desc)
    }
}

/// A command the mock received, as [`MockQemu::received`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedCommand {
    /// The command name.
    pub name: String,
    /// Its `arguments` object as raw JSON text, if it had one.
    pub arguments: Option<String>,
    /// Its `id` as raw JSON text, if it had one.
    pub id: Option<String>,
    /// Sent with `exec-oob`.
    pub oob: bool,
    /// How many file descriptors the command took (see [`MockQemu`] on file
    /// descriptors).
    pub fds: usize,
    /// Which connection it came on: 1 for the first one accepted.
    pub connection: usize,
}

/// Configures and starts a [`MockQemu`]; see [`MockQemu::builder`].
#[derive(Debug, Clone)]
pub struct MockBuilder {
    version: Version,
    package: String,
    oob: bool,
    greeting: bool,
    record: bool,
    path: Option<PathBuf>,
}

impl MockBuilder {
    /// The QEMU version in the greeting and in `query-version` (default 9.2.0).
    pub fn version(mut self, major: u64, minor: u64, micro: u64) -> Self {
        self.version = Version {
            major,
            minor,
            micro,
        };
        self
    }

    /// The package string in the greeting and in `query-version` (default
    /// empty).
    pub fn package(mut self, package: impl Into<String>) -> Self {
        self.package = package.into();
        self
    }

    /// Offer the `oob` capability (default: yes).
    pub fn oob(mut self, offer: bool) -> Self {
        self.oob = offer;
        self
    }

    /// Greet clients (default: yes). Without a greeting, connections are
    /// accepted and then ignored, to test connect timeouts.
    pub fn greeting(mut self, greet: bool) -> Self {
        self.greeting = greet;
        self
    }

    /// Record received commands for [`MockQemu::received`] (default: yes).
    /// Benchmarks sending millions of commands turn it off to keep memory flat;
    /// [`MockQemu::wait_for_command`] then never finds anything.
    pub fn record(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Listen on this path instead of a fresh private temporary directory.
    /// The socket file is removed on drop; the path must not exist yet.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Binds the socket and starts serving.
    ///
    /// # Errors
    ///
    /// Creating the temporary directory or binding the socket failed.
    pub fn start(self) -> io::Result<MockQemu> {
        let (path, temp_dir) = match self.path {
            Some(path) => (path, None),
            None => {
                let dir = private_temp_dir()?;
                (dir.join("qmp.sock"), Some(dir))
            }
        };
        let listener = match UnixListener::bind(&path) {
            Ok(listener) => listener,
            Err(e) => {
                if let Some(dir) = &temp_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return Err(e);
            }
        };
        let waker = listener.try_clone()?;
        let shared = Arc::new(Shared {
            version: self.version,
            package: self.package,
            oob: self.oob,
            greeting: self.greeting,
            record: self.record,
            scripts: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                running: true,
                ..State::default()
            }),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("qmp-mock".to_owned())
                .spawn(move || accept_loop(&shared, &listener))?
        };
        Ok(MockQemu {
            shared,
            path,
            temp_dir,
            waker,
            thread: Some(thread),
        })
    }
}

/// A mock QEMU serving QMP on a unix socket, one client at a time.
///
/// Start it, point the client under test at [`path`](Self::path), script
/// replies, emit events, and check what the client sent. Dropping it stops the
/// server and removes its temporary directory.
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use std::os::unix::net::UnixStream;
/// use qmp_io::mock::MockQemu;
///
/// let qemu = MockQemu::start()?;
/// qemu.on_return("query-name", r#"{"name": "vm0"}"#);
///
/// let stream = UnixStream::connect(qemu.path())?;
/// let mut lines = BufReader::new(stream.try_clone()?);
/// let mut line = String::new();
/// lines.read_line(&mut line)?; // the greeting
/// assert!(line.contains(r#""major": 9"#));
///
/// (&stream).write_all(b"{\"execute\": \"qmp_capabilities\"}\r\n")?;
/// (&stream).write_all(b"{\"execute\": \"query-name\", \"id\": 1}\r\n")?;
/// line.clear();
/// lines.read_line(&mut line)?;
/// assert_eq!(line, "{\"return\": {}}\r\n");
/// line.clear();
/// lines.read_line(&mut line)?;
/// assert_eq!(line, "{\"return\": {\"name\": \"vm0\"}, \"id\": 1}\r\n");
///
/// qemu.emit_event("POWERDOWN", None)?;
/// line.clear();
/// lines.read_line(&mut line)?;
/// assert!(line.contains(r#""event": "POWERDOWN""#));
/// assert_eq!(qemu.received()[0].name, "query-name");
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Built-in commands
///
/// Commands without a script get QEMU's answers: `query-status` (`running`
/// until `stop`), `stop` and `cont` (with `STOP` and `RESUME` events before
/// the reply), `query-version`, `quit` (a `SHUTDOWN` event after the reply,
/// then the connection closes; the mock keeps accepting), the file descriptor
/// commands below, and `CommandNotFound` for anything else.
///
/// # File descriptors
///
/// As in QEMU, descriptors received with a read replace those of the previous
/// read that carried any, and stay until a command takes them. Commands that
/// take them: `getfd` and `add-fd` (when not scripted), and every scripted
/// command (an [`on`](Self::on) handler sees them in [`MockRequest::fds`]).
/// So send descriptors with the bytes of the command that uses them. `getfd` and
/// `add-fd` keep the descriptor until `closefd` or `remove-fd`, and
/// `query-fdsets` lists the fd sets, numbered like QEMU does. These tables
/// outlive connections, as QEMU's do.
#[derive(Debug)]
pub struct MockQemu {
    shared: Arc<Shared>,
    path: PathBuf,
    temp_dir: Option<PathBuf>,
    /// A handle on the listening socket, to wake the accept loop on drop.
    waker: UnixListener,
    thread: Option<JoinHandle<()>>,
}

impl MockQemu {
    /// Starts a mock with the defaults: QEMU 9.2.0 offering `oob`, on a socket
    /// in a fresh private temporary directory.
    ///
    /// # Errors
    ///
    /// Creating the directory or binding the socket failed.
    pub fn start() -> io::Result<MockQemu> {
        Self::builder().start()
    }

    /// A builder to configure the mock before starting it.
    pub fn builder() -> MockBuilder {
        MockBuilder {
            version: Version {
                major: 9,
                minor: 2,
                micro: 0,
            },
            package: String::new(),
            oob: true,
            greeting: true,
            record: true,
            path: None,
        }
    }

    /// The socket path clients connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers `command` with `{"return": VALUE}`; `value` is raw JSON text.
    /// Replaces any earlier script for `command`, built-in answers included.
    ///
    /// # Panics
    ///
    /// If `value` is not valid JSON: a mistake in the test, reported where it
    /// was made rather than as a confusing reply.
    pub fn on_return(&self, command: &str, value: &str) {
        if let Err(e) = serde_json::from_str::<&serde_json::value::RawValue>(value) {
            panic!("MockQemu::on_return({command:?}): invalid JSON {value:?}: {e}");
        }
        let reply = MockReply::ret(value);
        self.on(command, move |_| reply.clone());
    }

    /// Answers `command` with `{"error": {"class": CLASS, "desc": DESC}}`.
    pub fn on_error(&self, command: &str, class: &str, desc: &str) {
        let reply = MockReply::error(class, desc);
        self.on(command, move |_| reply.clone());
    }

    /// Answers `command` with what `handler` returns. The handler runs on the
    /// mock's connection thread (or in [`hold_replies`](Self::hold_replies)
    /// when releasing held commands); a panic in it becomes a `GenericError`
    /// reply.
    pub fn on(
        &self,
        command: &str,
        handler: impl Fn(&MockRequest) -> MockReply + Send + Sync + 'static,
    ) {
        lock(&self.shared.scripts).insert(command.to_owned(), Arc::new(handler));
    }

    /// Forgets the script for `command`: built-in answers apply again.
    pub fn clear_script(&self, command: &str) {
        lock(&self.shared.scripts).remove(command);
    }

    /// Sends one event to the connected client; `data` is a raw JSON object.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] when no client has negotiated
    /// capabilities, [`io::ErrorKind::InvalidInput`] when `data` is not one
    /// JSON object, or the error writing to the socket (which ends the
    /// connection).
    pub fn emit_event(&self, name: &str, data: Option<&str>) -> io::Result<()> {
        self.emit_events(name, data, 1)
    }

    /// Sends `count` copies of an event to the connected client, encoded in
    /// large batches and written in large chunks: fast enough to feed a client
    /// benchmark. Blocks until all were written, so the client must be reading.
    /// Replies to commands may come between batches.
    ///
    /// # Errors
    ///
    /// As [`emit_event`](Self::emit_event); events written before an error
    /// stay sent.
    pub fn emit_events(&self, name: &str, data: Option<&str>, count: usize) -> io::Result<()> {
        let conn = self
            .current()
            .ok_or_else(|| not_connected("no client is connected"))?;
        let mut left = count;
        while left > 0 {
            let mut wire = lock(&conn.wire);
            if !wire.server.is_negotiated() {
                return Err(not_connected("the client has not negotiated capabilities"));
            }
            let timestamp = now();
            let mut encoded = 0;
            while encoded < left.min(EVENT_BATCH)
                && wire.server.pending_transmit().len() < EVENT_BATCH_BYTES
            {
                match wire.server.send_event(name, data, timestamp) {
                    Ok(()) => encoded += 1,
                    Err(UsageError::TransmitFull) if encoded > 0 => break,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
                }
            }
            left -= encoded;
            if let Err(e) = wire.flush(&conn.socket) {
                drop(wire);
                conn.shutdown();
                return Err(e);
            }
        }
        Ok(())
    }

    /// While `hold` is set, commands are recorded but not answered. Clearing
    /// it answers the held commands in order, on the calling thread, before
    /// newer ones.
    ///
    /// `exec-oob` commands are never held: as in QEMU, where they run at once
    /// in the monitor's I/O thread while the main loop is busy, their replies
    /// overtake the held in-band ones.
    pub fn hold_replies(&self, hold: bool) {
        let mut state = lock(&self.shared.state);
        state.hold = hold;
        if hold || state.releasing {
            return;
        }
        state.releasing = true;
        loop {
            let next = if state.hold {
                None
            } else {
                state.held.pop_front()
            };
            let Some(pending) = next else {
                state.releasing = false;
                self.shared.changed.notify_all();
                return;
            };
            drop(state);
            answer(&self.shared, pending);
            state = lock(&self.shared.state);
        }
    }

    /// Every command received so far, oldest first, on all connections
    /// (`qmp_capabilities` excluded: the server state machine answers it).
    pub fn received(&self) -> Vec<ReceivedCommand> {
        lock(&self.shared.state)
            .received
            .iter()
            .map(|r| r.command.clone())
            .collect()
    }

    /// Forgets the commands received so far.
    pub fn clear_received(&self) {
        lock(&self.shared.state).received.clear();
    }

    /// Waits for a command named `name` that no earlier call returned, and
    /// returns it; `None` after `timeout`.
    pub fn wait_for_command(&self, name: &str, timeout: Duration) -> Option<ReceivedCommand> {
        let mut found = None;
        self.wait(timeout, |state| {
            found = state
                .received
                .iter_mut()
                .find(|r| !r.waited && r.command.name == name)
                .map(|r| {
                    r.waited = true;
                    r.command.clone()
                });
            found.is_some()
        });
        found
    }

    /// Waits until a client is connected; false after `timeout`.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        self.wait(timeout, |state| state.conn.is_some())
    }

    /// Waits until the connected client has negotiated capabilities, so events
    /// can be sent; false after `timeout`.
    pub fn wait_negotiated(&self, timeout: Duration) -> bool {
        self.wait(timeout, |state| state.negotiated)
    }

    /// True while a client is connected.
    pub fn is_connected(&self) -> bool {
        lock(&self.shared.state).conn.is_some()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.shared.state).connections
    }

    /// True unless `stop` paused the guest (and `cont` did not resume it).
    pub fn is_running(&self) -> bool {
        lock(&self.shared.state).running
    }

    /// Closes the current connection, as if QEMU died, and waits (a few
    /// seconds at most) until the mock has let go of it. The mock goes on
    /// accepting new connections. Does nothing without a client.
    pub fn disconnect(&self) {
        let Some(conn) = self.current() else {
            return;
        };
        conn.shutdown();
        self.wait(DISCONNECT_WAIT, |state| {
            state.conn.as_ref().is_none_or(|c| c.number != conn.number)
        });
    }

    fn current(&self) -> Option<Arc<Conn>> {
        lock(&self.shared.state).conn.clone()
    }

    /// Waits until `done` holds; false after `timeout`.
    fn wait(&self, timeout: Duration, mut done: impl FnMut(&mut State) -> bool) -> bool {
        let deadline = crate::config::deadline_after(timeout);
        let mut state = lock(&self.shared.state);
        loop {
            if done(&mut state) {
                return true;
            }
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for MockQemu {
    fn drop(&mut self) {
        let conn = {
            let mut state = lock(&self.shared.state);
            // Under the state lock, so the accept loop either sees the flag or
            // registers its connection where it is shut down below.
            self.shared.stopping.store(true, Ordering::SeqCst);
            state.held.clear();
            state.conn.take()
        };
        if let Some(conn) = conn {
            conn.shutdown();
        }
        // Linux wakes a blocked accept on shutdown; elsewhere the connection
        // does (and after a shutdown it is refused at once, so it cannot hang).
        let _ = rustix::net::shutdown(&self.waker, rustix::net::Shutdown::Both);
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What the mock's threads share.
struct Shared {
    version: Version,
    package: String,
    oob: bool,
    greeting: bool,
    record: bool,
    scripts: Mutex<HashMap<String, Handler>>,
    state: Mutex<State>,
    /// Signalled whenever `state` changes in a way someone may wait for.
    changed: Condvar,
    stopping: AtomicBool,
}

impl core::fmt::Debug for Shared {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shared")
            .field("version", &self.version)
            .field("oob", &self.oob)
            .field("greeting", &self.greeting)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    conn: Option<Arc<Conn>>,
    negotiated: bool,
    connections: usize,
    received: Vec<Record>,
    hold: bool,
    /// A thread is answering held commands: newer ones queue behind them.
    releasing: bool,
    held: VecDeque<Pending>,
    running: bool,
    fd_names: HashMap<String, OwnedFd>,
    fdsets: BTreeMap<i64, Vec<FdsetEntry>>,
}

struct Record {
    command: ReceivedCommand,
    /// Already returned by `wait_for_command`.
    waited: bool,
}

struct FdsetEntry {
    fd: OwnedFd,
    opaque: Option<String>,
}

/// One client connection.
struct Conn {
    /// 1 for the first connection accepted.
    number: usize,
    socket: UnixStream,
    /// The server state machine; also serialises writes, so replies and events
    /// go out whole and in the order they were encoded.
    wire: Mutex<Wire>,
}

impl Conn {
    /// Ends the connection from any thread, waking a blocked read or write.
    fn shutdown(&self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

struct Wire {
    server: Server<Heap>,
    broken: bool,
}

impl Wire {
    /// Writes everything the server has queued.
    fn flush(&mut self, socket: &UnixStream) -> io::Result<()> {
        loop {
            let pending = self.server.pending_transmit();
            if pending.is_empty() {
                return Ok(());
            }
            if self.broken {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            // NOSIGNAL: a client that went away must not kill the test process.
            match rustix::net::send(socket, pending, rustix::net::SendFlags::NOSIGNAL) {
                Ok(0) => {
                    self.broken = true;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    if let Err(e) = self.server.advance_transmit(n) {
                        self.broken = true;
                        return Err(io::Error::other(e));
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
        }
    }
}

/// A command waiting to be answered.
struct Pending {
    conn: Arc<Conn>,
    reply_to: ReplyTo,
    request: MockRequest,
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((socket, _)) => serve(shared, socket),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Such as EMFILE: back off rather than spin.
                tracing::warn!("mock QEMU: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Serves one connection until it ends.
fn serve(shared: &Arc<Shared>, socket: UnixStream) {
    let server = Server::<Heap>::new(ServerConfig {
        version: shared.version,
        package: &shared.package,
        oob: shared.oob,
        limits: Default::default(),
    });
    let conn = {
        let mut state = lock(&shared.state);
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        state.connections += 1;
        let conn = Arc::new(Conn {
            number: state.connections,
            socket,
            wire: Mutex::new(Wire {
                server,
                broken: false,
            }),
        });
        state.conn = Some(conn.clone());
        state.negotiated = false;
        shared.changed.notify_all();
        conn
    };
    tracing::debug!("mock QEMU: connection {} accepted", conn.number);
    if shared.greeting && lock(&conn.wire).flush(&conn.socket).is_err() {
        conn.shutdown();
    }
    let mut buf = vec![0u8; READ_SIZE];
    let mut fresh = Vec::new();
    // The descriptors of the most recent read that carried any, until taken.
    let mut fds = Vec::new();
    loop {
        fresh.clear();
        let n = match crate::fd::recv_with_fds(conn.socket.as_fd(), &mut buf, &mut fresh) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if !fresh.is_empty() {
            fds = core::mem::take(&mut fresh);
        }
        // Without a greeting there is no session: the input means nothing.
        if !shared.greeting {
            continue;
        }
        feed(shared, &conn, &buf[..n], &mut fds);
        if lock(&conn.wire).broken {
            break;
        }
    }
    {
        let mut wire = lock(&conn.wire);
        wire.server.receive_eof();
        while wire.server.poll_output().is_some() {}
    }
    conn.shutdown();
    let mut state = lock(&shared.state);
    if state.conn.as_ref().is_some_and(|c| c.number == conn.number) {
        state.conn = None;
        state.negotiated = false;
    }
    state.held.retain(|p| p.conn.number != conn.number);
    shared.changed.notify_all();
    tracing::debug!("mock QEMU: connection {} closed", conn.number);
}

/// What one `poll_output` produced, owned so the lock can be dropped.
enum Polled {
    Negotiated,
    Command {
        name: String,
        arguments: Option<String>,
        id: Option<String>,
        oob: bool,
        reply_to: ReplyTo,
    },
    Other,
}

/// Feeds one read's bytes to the server and answers what it finds.
fn feed(shared: &Arc<Shared>, conn: &Arc<Conn>, mut bytes: &[u8], fds: &mut Vec<OwnedFd>) {
    let mut stalled = false;
    loop {
        let taken = match lock(&conn.wire).server.receive(bytes) {
            Ok(n) => n,
            Err(_) => return,
        };
        bytes = &bytes[taken..];
        // One output at a time, each answered before the next is polled: the
        // server answers malformed input itself while polling, and this keeps
        // those answers in order with ours, as QEMU's are.
        loop {
            let polled = {
                let mut wire = lock(&conn.wire);
                let polled = match wire.server.poll_output() {
                    None | Some(ServerOutput::Closed) => None,
                    Some(ServerOutput::Negotiated { .. }) => Some(Polled::Negotiated),
                    Some(ServerOutput::Command(req)) => Some(Polled::Command {
                        name: req.name.to_string_lossless(),
                        arguments: req.arguments.map(|a| a.as_str().to_owned()),
                        id: req.reply_to.id().map(str::to_owned),
                        oob: req.oob,
                        reply_to: req.reply_to,
                    }),
                    Some(_) => Some(Polled::Other),
                };
                if wire.flush(&conn.socket).is_err() {
                    drop(wire);
                    conn.shutdown();
                    return;
                }
                polled
            };
            match polled {
                None => break,
                Some(Polled::Negotiated) => {
                    lock(&shared.state).negotiated = true;
                    shared.changed.notify_all();
                }
                Some(Polled::Command {
                    name,
                    arguments,
                    id,
                    oob,
                    reply_to,
                }) => {
                    let takes_fds = lock(&shared.scripts).contains_key(&name)
                        || matches!(name.as_str(), "getfd" | "add-fd");
                    let request = MockRequest {
                        name,
                        arguments,
                        id,
                        oob,
                        fds: if takes_fds {
                            core::mem::take(fds)
                        } else {
                            Vec::new()
                        },
                    };
                    dispatch(
                        shared,
                        Pending {
                            conn: conn.clone(),
                            reply_to,
                            request,
                        },
                    );
                }
                Some(Polled::Other) => {}
            }
        }
        if bytes.is_empty() {
            return;
        }
        // The server took nothing even after its outputs were drained: drop
        // the rest rather than spin.
        if taken == 0 {
            if stalled {
                return;
            }
            stalled = true;
        } else {
            stalled = false;
        }
    }
}

/// Records a command, then answers it now or holds it.
fn dispatch(shared: &Arc<Shared>, pending: Pending) {
    {
        let mut state = lock(&shared.state);
        if shared.record {
            let r = &pending.request;
            state.received.push(Record {
                command: ReceivedCommand {
                    name: r.name.clone(),
                    arguments: r.arguments.clone(),
                    id: r.id.clone(),
                    oob: r.oob,
                    fds: r.fds.len(),
                    connection: pending.conn.number,
                },
                waited: false,
            });
            shared.changed.notify_all();
        }
        let busy = state.hold || state.releasing || !state.held.is_empty();
        if busy && !pending.request.oob {
            state.held.push_back(pending);
            return;
        }
    }
    answer(shared, pending);
}

/// What answering a command sends.
struct Outcome {
    /// Events sent before the reply, as QEMU emits them while the command runs.
    before: Vec<(&'static str, Option<String>)>,
    reply: MockReply,
    /// Events sent after the reply.
    after: Vec<(&'static str, Option<String>)>,
    /// Close the connection once all is sent.
    close: bool,
}

impl From<MockReply> for Outcome {
    fn from(reply: MockReply) -> Self {
        Outcome {
            before: Vec::new(),
            reply,
            after: Vec::new(),
            close: false,
        }
    }
}

/// Works out the answer (outside every lock: handlers are the user's code)
/// and sends it.
fn answer(shared: &Shared, pending: Pending) {
    let Pending {
        conn,
        reply_to,
        mut request,
    } = pending;
    let handler = lock(&shared.scripts).get(&request.name).cloned();
    let outcome = match handler {
        Some(handler) => catch_unwind(AssertUnwindSafe(|| handler(&request)))
            .unwrap_or_else(|_| {
                MockReply::generic(format!("mock handler for {} panicked", request.name))
            })
            .into(),
        None => builtin(shared, &mut request),
    };
    drop(request);
    let mut wire = lock(&conn.wire);
    let timestamp = now();
    for (name, data) in &outcome.before {
        let _ = wire.server.send_event(name, data.as_deref(), timestamp);
    }
    match outcome.reply {
        MockReply::Return(value) => {
            if let Err(e) = wire.server.reply_return(&reply_to, &value) {
                let _ = wire.server.reply_error(
                    &reply_to,
                    "GenericError",
                    &format!("mock: the scripted reply is not valid JSON: {e}"),
                );
            }
        }
        MockReply::Error { class, desc } => {
            let _ = wire.server.reply_error(&reply_to, &class, &desc);
        }
        MockReply::NoReply => {}
        MockReply::Disconnect => {
            drop(wire);
            conn.shutdown();
            return;
        }
    }
    for (name, data) in &outcome.after {
        let _ = wire.server.send_event(name, data.as_deref(), timestamp);
    }
    let failed = wire.flush(&conn.socket).is_err();
    drop(wire);
    if failed || outcome.close {
        conn.shutdown();
    }
}

/// QEMU's own answers.
fn builtin(shared: &Shared, request: &mut MockRequest) -> Outcome {
    match builtin_reply(shared, request) {
        Ok(outcome) => outcome,
        Err(reply) => reply.into(),
    }
}

fn builtin_reply(shared: &Shared, request: &mut MockRequest) -> Result<Outcome, MockReply> {
    let mut args = Args::parse(request.arguments.as_deref())?;
    let outcome = match request.name.as_str() {
        "query-status" => {
            args.finish()?;
            let running = lock(&shared.state).running;
            MockReply::ret(format!(
                r#"{{"status": "{}", "singlestep": false, "running": {running}}}"#,
                if running { "running" } else { "paused" }
            ))
            .into()
        }
        "stop" => {
            args.finish()?;
            let was_running = core::mem::replace(&mut lock(&shared.state).running, false);
            let mut outcome = Outcome::from(MockReply::empty());
            if was_running {
                outcome.before.push(("STOP", None));
            }
            outcome
        }
        "cont" => {
            args.finish()?;
            let was_running = core::mem::replace(&mut lock(&shared.state).running, true);
            let mut outcome = Outcome::from(MockReply::empty());
            // QEMU reports STOP then RESUME even when already running, "to
            // keep the symmetry" (vm_prepare_start).
            if was_running {
                outcome.before.push(("STOP", None));
            }
            outcome.before.push(("RESUME", None));
            outcome
        }
        "query-version" => {
            args.finish()?;
            let v = shared.version;
            MockReply::ret(format!(
                r#"{{"qemu": {{"micro": {}, "minor": {}, "major": {}}}, "package": {}}}"#,
                v.micro,
                v.minor,
                v.major,
                json_string(&shared.package)
            ))
            .into()
        }
        "quit" => {
            args.finish()?;
            Outcome {
                before: Vec::new(),
                reply: MockReply::empty(),
                after: vec![(
                    "SHUTDOWN",
                    Some(r#"{"guest": false, "reason": "host-qmp-quit"}"#.to_owned()),
                )],
                close: true,
            }
        }
        "getfd" => {
            let name = args.string("fdname")?;
            args.finish()?;
            let fd = take_fd(request)?;
            if name.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(MockReply::generic(
                    "Parameter 'fdname' expects a name not starting with a digit",
                ));
            }
            lock(&shared.state).fd_names.insert(name, fd);
            MockReply::empty().into()
        }
        "closefd" => {
            let name = args.string("fdname")?;
            args.finish()?;
            if lock(&shared.state).fd_names.remove(&name).is_none() {
                return Err(MockReply::generic(format!(
                    "File descriptor named '{name}' not found"
                )));
            }
            MockReply::empty().into()
        }
        "add-fd" => {
            let fdset_id = args.opt_int("fdset-id")?;
            let opaque = args.opt_string("opaque")?;
            args.finish()?;
            let fd = take_fd(request)?;
            let raw = fd.as_raw_fd();
            let mut state = lock(&shared.state);
            // QEMU picks the lowest free id when none is given.
            let id = fdset_id.unwrap_or_else(|| {
                (0..)
                    .find(|id| !state.fdsets.contains_key(id))
                    .unwrap_or_default()
            });
            state
                .fdsets
                .entry(id)
                .or_default()
                .push(FdsetEntry { fd, opaque });
            MockReply::ret(format!(r#"{{"fdset-id": {id}, "fd": {raw}}}"#)).into()
        }
        "remove-fd" => {
            let id = args.int("fdset-id")?;
            let fd = args.opt_int("fd")?;
            args.finish()?;
            let mut state = lock(&shared.state);
            let not_found = || {
                MockReply::generic(match fd {
                    Some(fd) => format!("File descriptor named '{id}:{fd}' not found"),
                    None => format!("File descriptor named '{id}' not found"),
                })
            };
            let set = state.fdsets.get_mut(&id).ok_or_else(not_found)?;
            match fd {
                Some(fd) => {
                    let at = set
                        .iter()
                        .position(|e| i64::from(e.fd.as_raw_fd()) == fd)
                        .ok_or_else(not_found)?;
                    set.remove(at);
                }
                None => set.clear(),
            }
            if set.is_empty() {
                state.fdsets.remove(&id);
            }
            MockReply::empty().into()
        }
        "query-fdsets" => {
            args.finish()?;
            let state = lock(&shared.state);
            let sets: Vec<Value> = state
                .fdsets
                .iter()
                .map(|(id, entries)| {
                    let fds: Vec<Value> = entries
                        .iter()
                        .map(|e| {
                            let mut fd = Map::new();
                            fd.insert("fd".into(), e.fd.as_raw_fd().into());
                            if let Some(opaque) = &e.opaque {
                                fd.insert("opaque".into(), opaque.clone().into());
                            }
                            Value::Object(fd)
                        })
                        .collect();
                    serde_json::json!({"fdset-id": id, "fds": fds})
                })
                .collect();
            MockReply::ret(Value::Array(sets).to_string()).into()
        }
        name => MockReply::error(
            "CommandNotFound",
            format!("The command {name} has not been found"),
        )
        .into(),
    };
    Ok(outcome)
}

/// Takes the first descriptor that came with the command; QEMU closes the
/// rest.
fn take_fd(request: &mut MockRequest) -> Result<OwnedFd, MockReply> {
    let mut fds = core::mem::take(&mut request.fds).into_iter();
    fds.next()
        .ok_or_else(|| MockReply::generic("No file descriptor supplied via SCM_RIGHTS"))
}

/// A command's arguments, checked like QEMU's generated marshallers do.
struct Args(Map<String, Value>);

impl Args {
    fn parse(text: Option<&str>) -> Result<Self, MockReply> {
        match text {
            None => Ok(Args(Map::new())),
            Some(text) => serde_json::from_str(text)
                .map(Args)
                .map_err(|e| MockReply::generic(format!("Invalid arguments: {e}"))),
        }
    }

    fn opt_string(&mut self, key: &str) -> Result<Option<String>, MockReply> {
        match self.0.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid_type(key, "string")),
        }
    }

    fn string(&mut self, key: &str) -> Result<String, MockReply> {
        self.opt_string(key)?.ok_or_else(|| missing(key))
    }

    fn opt_int(&mut self, key: &str) -> Result<Option<i64>, MockReply> {
        match self.0.remove(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| invalid_type(key, "integer")),
        }
    }

    fn int(&mut self, key: &str) -> Result<i64, MockReply> {
        self.opt_int(key)?.ok_or_else(|| missing(key))
    }

    /// Rejects members the command does not take.
    fn finish(&self) -> Result<(), MockReply> {
        match self.0.keys().next() {
            Some(key) => Err(MockReply::generic(format!(
                "Parameter '{key}' is unexpected"
            ))),
            None => Ok(()),
        }
    }
}

fn missing(key: &str) -> MockReply {
    MockReply::generic(format!("Parameter '{key}' is missing"))
}

fn invalid_type(key: &str, expected: &str) -> MockReply {
    MockReply::generic(format!(
        "Invalid parameter type for '{key}', expected: {expected}"
    ))
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn not_connected(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, why)
}

/// The event timestamp QEMU would send: the wall clock, or -1 without one.
fn now() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(t) => Timestamp {
            seconds: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            microseconds: i64::from(t.subsec_micros()),
        },
        Err(_) => Timestamp {
            seconds: -1,
            microseconds: -1,
        },
    }
}

/// Locks, ignoring poisoning: user handlers run outside every lock, and the
/// data behind them stays consistent if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Creates a fresh directory only this user can enter, under the system's
/// temporary directory.
fn private_temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "qmp-mock-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}
