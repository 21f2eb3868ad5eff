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
//!
//! Here: the [`MockQemu`] handle and the state its threads share. The
//! requests and replies a script deals in are in `script`, the builder in
//! `builder`, the connection loop in `server`, and QEMU's own answers in
//! `builtin`.

mod builder;
mod builtin;
mod script;
mod server;

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use qmp_proto::{UsageError, Version};

pub use builder::MockBuilder;
pub use script::{MockReply, MockRequest, ReceivedCommand};

use script::Handler;
use server::{Conn, Pending, answer, now};

/// Events encoded per lock of the connection in [`MockQemu::emit_events`]:
/// large enough that locking and `send` cost little per event, small enough
/// that replies to commands are not held back for long.
const EVENT_BATCH: usize = 8192;
/// Bytes of encoded events written per batch at most.
const EVENT_BATCH_BYTES: usize = 1 << 20;
/// How long [`MockQemu::disconnect`] waits for the connection loop to notice.
const DISCONNECT_WAIT: Duration = Duration::from_secs(5);

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
    #[allow(clippy::panic)] // a test's own mistake, documented above
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
                    Ok(()) => encoded = encoded.saturating_add(1),
                    Err(UsageError::TransmitFull) if encoded > 0 => break,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
                }
            }
            // encoded <= left.
            left = left.saturating_sub(encoded);
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

fn not_connected(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, why)
}

/// Locks, ignoring poisoning: user handlers run outside every lock, and the
/// data behind them stays consistent if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
