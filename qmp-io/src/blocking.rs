//! The blocking driver. Callers write their own commands and, while nobody
//! else is, read the socket themselves until their answer is there: a
//! sequential caller costs what a hand-written blocking loop costs, with no
//! thread hop. Callers that find another one reading sleep until it hands
//! their answer over, or hands them the reading. A background thread reads
//! when no caller has for a while, so events and the end of the connection
//! are seen without calls.

use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use qmp_proto::{Client as Core, ClientConfig, Command, GuestAgent as AgentCore, Heap};
use rustix::event::PollFlags;

use crate::call::{
    AddFdInfo, Call, Waiting, check_fds, decode, fd_args, submit_agent, submit_agent_typed,
    submit_qmp, submit_qmp_typed,
};
use crate::config::{Config, deadline_after};
use crate::error::{Disconnect, Error, Result};
use crate::events::{EventFilter, Subscription};
use crate::json::Json;
use crate::session::{Answer, Greeting, OutBuf, Protocol, Session, Submitted, nonce};
use crate::slot::{Slot, Turn};

/// A byte stream the blocking driver can run on: std `Read + Write`, plus
/// its file descriptor, which callers poll so that a call's deadline bounds
/// its wait for the reply and for room to write (sockets, but pipes work
/// too: they are written with plain blocking writes).
pub trait Stream: Read + Write + AsFd + Send + Sized + 'static {
    /// A second handle to the same stream, for reading.
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
    fn fd(&self) -> BorrowedFd<'_>;
}

impl<S: Stream> WriteHalf for S {
    fn shutdown_both(&self) -> io::Result<()> {
        Stream::shutdown(self)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.fd_socket()
    }
}

/// The read half, type-erased like the write half.
trait ReadStream: Read + AsFd + Send {}

impl<S: Read + AsFd + Send> ReadStream for S {}

/// The write side, shared by every caller.
struct Writer {
    stream: Box<dyn WriteHalf>,
    out: OutBuf,
}

/// The right to read: the stream and the buffer, held by one thread at a time.
struct ReadHalf {
    stream: Box<dyn ReadStream>,
    buf: Vec<u8>,
}

/// Who reads the socket.
struct Reading {
    /// The read half; `None` while a thread holds it.
    half: Option<ReadHalf>,
    /// Callers waiting for an answer while another thread reads, in the
    /// order they came: the newest takes over when the reader gives the half
    /// back.
    followers: Vec<Arc<Slot<Answer>>>,
    /// When a caller last wanted to read.
    active: Instant,
}

/// How long the background thread leaves the socket to the callers after the
/// last one read. Events arriving between calls wait at most this long.
const QUIET: Duration = Duration::from_millis(10);

/// What the handles of one connection share.
struct Conn<P: Protocol> {
    session: Arc<Session<P>>,
    writer: Mutex<Writer>,
    /// The stream's fd again, to wait for room to write without the lock.
    write_fd: OwnedFd,
    reading: Mutex<Reading>,
    /// The background thread sleeps here while callers read.
    quiet: Condvar,
    fds: bool,
    /// fd-carrying commands go one at a time: QEMU keeps only the fds of its
    /// latest read, so a second command's fds could replace the first's.
    fd_lane: Lane,
}

/// One caller at a time, waited for until a deadline.
struct Lane {
    busy: Mutex<bool>,
    free: Condvar,
}

/// The lane is held until this drops.
struct InLane<'a>(&'a Lane);

impl Lane {
    fn new() -> Self {
        Lane {
            busy: Mutex::new(false),
            free: Condvar::new(),
        }
    }

    /// Enters the lane, or `None` once `deadline` passed with it still busy.
    fn enter(&self, deadline: Option<Instant>) -> Option<InLane<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = match deadline {
                None => self.free.wait(busy).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.free
                        .wait_timeout(busy, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        *busy = true;
        Some(InLane(self))
    }
}

impl Drop for InLane<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.free.notify_one();
    }
}

impl<P: Protocol> Conn<P> {
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reading(&self) -> MutexGuard<'_, Reading> {
        self.reading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes whatever the core has queued, giving up at `deadline` (what is
    /// left goes out with the next flush); a failure ends the connection.
    ///
    /// The writer lock is held only for sends that do not block: a caller
    /// waits for room in the socket without it, so a caller behind another
    /// one's write is bounded by its own deadline, not by the other's.
    fn flush(&self, deadline: Option<Instant>) {
        // Set once this flush took from the core: the caller's command was
        // there, so once that take is written, so is the command.
        let mut took = false;
        loop {
            let mut w = self.writer();
            // Only an empty buffer takes more, so what waits to be written
            // stays within the core's own transmit limit.
            if w.out.is_empty() {
                took = true;
                self.session.take_output(&mut w.out, None);
                if w.out.is_empty() {
                    return;
                }
            }
            let sent = send_available(&mut w);
            if sent.is_ok() {
                self.session.wrote(&w.out);
            }
            drop(w);
            let left = match sent {
                // What this flush took went out: the caller's command with it.
                Ok(Sent::All) if took => return,
                // Someone else's rest went out; the core still holds ours.
                Ok(Sent::All) => continue,
                Err(e) => return self.fail(Disconnect::Io(Arc::new(e))),
                Ok(Sent::Blocked) => match deadline {
                    None => None,
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => Some(left),
                        _ => return,
                    },
                },
            };
            match wait_ready(self.write_fd.as_fd(), PollFlags::OUT, left) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.fail(Disconnect::Io(Arc::new(e))),
            }
        }
    }

    fn fail(&self, reason: Disconnect) {
        self.session.on_close(reason);
        let _ = self.writer().stream.shutdown_both();
        self.quiet.notify_all();
    }

    fn start<S: Stream>(session: Arc<Session<P>>, stream: S, name: &str) -> Result<Arc<Self>> {
        let reader = stream.try_clone()?;
        let fds = stream.fd_socket().is_some();
        let write_fd = stream.as_fd().try_clone_to_owned()?;
        let mut half = ReadHalf {
            stream: Box::new(reader),
            buf: vec![0u8; 64 << 10],
        };
        let conn = Arc::new(Conn {
            session,
            writer: Mutex::new(Writer {
                stream: Box::new(stream),
                out: OutBuf::default(),
            }),
            write_fd,
            reading: Mutex::new(Reading {
                half: None,
                followers: Vec::new(),
                active: Instant::now(),
            }),
            quiet: Condvar::new(),
            fds,
            fd_lane: Lane::new(),
        });
        // The handshake: this thread reads until it is done.
        let timeout = conn.session.config.connect_timeout;
        let deadline = deadline_after(timeout);
        conn.flush(deadline);
        let settled = &conn.session.settled;
        conn.read_until(&mut half, || settled.is_set(), deadline);
        if !settled.is_set() {
            conn.fail(Disconnect::HandshakeTimeout(timeout));
        }
        if let Some(reason) = conn.session.closed_reason() {
            return Err(Error::Disconnected(reason));
        }
        conn.reading().half = Some(half);
        // The background reader holds the connection weakly: dropping every
        // handle ends it.
        let weak = Arc::downgrade(&conn);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || background(&weak))?;
        Ok(conn)
    }

    /// Reads and feeds the session until `done()`, the deadline, or the end
    /// of the connection.
    fn read_until(&self, half: &mut ReadHalf, done: impl Fn() -> bool, deadline: Option<Instant>) {
        while !done() && !self.session.is_closed() {
            let timeout = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return,
                },
            };
            match wait_ready(half.stream.as_fd(), PollFlags::IN, timeout) {
                Ok(true) => self.read_once(half, deadline),
                Ok(false) => return,
                Err(e) => self.session.on_close(Disconnect::Io(Arc::new(e))),
            }
        }
    }

    /// One read (the socket is readable), fed to the session; writing what
    /// the core answers gives up at `deadline`.
    fn read_once(&self, half: &mut ReadHalf, deadline: Option<Instant>) {
        let read = half.stream.read(&mut half.buf);
        self.absorb(read, &half.buf, deadline);
    }

    /// Takes in the result of a read into `buf`.
    fn absorb(&self, read: io::Result<usize>, buf: &[u8], deadline: Option<Instant>) {
        match read {
            Ok(0) => self
                .session
                .on_close(Disconnect::Eof { mid_message: false }),
            Ok(n) => {
                self.session.on_input(&buf[..n]);
                if !self.session.is_closed() {
                    // What the core answers by itself (a guest-agent resync).
                    // The reader never waits for room with no deadline: the
                    // peer may be waiting for us to read.
                    self.flush(Some(deadline.unwrap_or_else(Instant::now)));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.session.on_close(Disconnect::Io(Arc::new(e))),
        }
    }

    /// Takes the read half if it is free; otherwise queues `slot` to be
    /// promoted when the reader leaves.
    fn lead_or_follow(&self, slot: &Arc<Slot<Answer>>) -> Option<ReadHalf> {
        let mut r = self.reading();
        r.active = Instant::now();
        let queued = r.followers.iter().position(|f| Arc::ptr_eq(f, slot));
        match r.half.take() {
            Some(half) => {
                if let Some(i) = queued {
                    r.followers.remove(i);
                }
                Some(half)
            }
            None => {
                if queued.is_none() {
                    r.followers.push(slot.clone());
                }
                None
            }
        }
    }

    /// Gives the read half back and hands the reading to a waiting caller.
    fn release(&self, half: ReadHalf) {
        let mut r = self.reading();
        r.half = Some(half);
        promote_next(&mut r);
    }

    /// A follower stops waiting; a promotion it got passes to the next one.
    fn leave(&self, slot: &Arc<Slot<Answer>>) {
        let mut r = self.reading();
        r.followers.retain(|f| !Arc::ptr_eq(f, slot));
        if slot.take_promoted() {
            promote_next(&mut r);
        }
    }

    /// Waits for `slot`'s answer, reading the socket while nobody else does.
    fn answer(&self, slot: &Arc<Slot<Answer>>, deadline: Option<Instant>) -> Option<Answer> {
        let mut followed = false;
        let answer = loop {
            if let Some(answer) = slot.try_take() {
                break Some(answer);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break None;
            }
            if let Some(mut half) = self.lead_or_follow(slot) {
                self.read_until(&mut half, || slot.is_filled(), deadline);
                self.release(half);
                continue;
            }
            followed = true;
            if slot.wait_turn(deadline) == Turn::TimedOut {
                break slot.try_take();
            }
        };
        if followed {
            self.leave(slot);
        }
        answer
    }

    /// Writes a queued command and waits for its answer.
    fn wait(&self, submitted: Submitted, timeout: Option<Duration>) -> Result<Json> {
        self.wait_until(submitted, timeout, timeout.and_then(deadline_after))
    }

    /// [`wait`](Self::wait) with the call's deadline already running.
    fn wait_until(
        &self,
        submitted: Submitted,
        timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<Json> {
        let waiting = Waiting::new(&self.session, submitted);
        self.flush(deadline);
        let slot = waiting.slot.clone();
        let answer = self.answer(&slot, deadline);
        let result = waiting.finish(answer, timeout);
        if matches!(result, Err(Error::Timeout(_))) {
            // A guest agent resynchronises after a timeout: send what the
            // socket takes now, the rest with the next write.
            self.flush(Some(Instant::now()));
        }
        result
    }

    fn call(&self, call: Call, submit: impl FnOnce(Call) -> Result<Submitted>) -> Result<Json> {
        let timeout = call.timeout.unwrap_or(self.session.config.timeout);
        if call.fds.is_empty() {
            return self.wait(submit(call)?, timeout);
        }
        check_fds(&call, self.fds)?;
        // The wait for the lane counts against the call's own deadline.
        let deadline = timeout.and_then(deadline_after);
        let Some(_lane) = self.fd_lane.enter(deadline) else {
            return Err(Error::Timeout(timeout.unwrap_or_default()));
        };
        self.wait_until(submit(call)?, timeout, deadline)
    }

    fn wait_closed(&self, timeout: Option<Duration>) -> Option<Disconnect> {
        self.session.closed.wait(timeout.and_then(deadline_after));
        self.session.closed_reason()
    }

    /// For the background thread: the read half, once no caller has wanted
    /// it for [`QUIET`]; `None` after waiting (at most that long) for it.
    fn quiet_half(&self) -> Option<ReadHalf> {
        let r = self.reading();
        let quiet_since = r.active.elapsed();
        if r.half.is_some() && quiet_since >= QUIET {
            let mut r = r;
            return r.half.take();
        }
        let wait = QUIET
            .saturating_sub(quiet_since)
            .max(Duration::from_millis(1));
        let _ = self.quiet.wait_timeout(r, wait);
        None
    }
}

/// Hands the reading to the newest follower still waiting: QEMU answers in
/// order, so its reply comes last, and it reads everyone else's on the way.
/// (Promoting the oldest would make a new reader after nearly every reply.)
fn promote_next(r: &mut Reading) {
    while let Some(follower) = r.followers.pop() {
        if follower.promote() {
            return;
        }
    }
}

/// The background thread: once the callers have left the socket alone for a
/// while, takes the read half and blocks reading, so events and the end of
/// the connection are seen with no call waiting. Gives the half back as soon
/// as a caller waits, handing that caller the reading.
fn background<P: Protocol>(conn: &Weak<Conn<P>>) {
    loop {
        let mut half = {
            let Some(conn) = conn.upgrade() else {
                return;
            };
            if conn.session.is_closed() {
                return;
            }
            match conn.quiet_half() {
                Some(half) => half,
                None => continue,
            }
        };
        loop {
            // No strong reference while blocked: dropping every handle shuts
            // the socket down, which ends this read.
            let read = half.stream.read(&mut half.buf);
            let Some(conn) = conn.upgrade() else {
                return;
            };
            conn.absorb(read, &half.buf, None);
            if conn.session.is_closed() || !conn.reading().followers.is_empty() {
                conn.release(half);
                break;
            }
        }
    }
}

/// Waits until `fd` is ready for `events` (or hung up); false on timeout.
fn wait_ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    use rustix::event::{PollFd, Timespec, poll};
    let timeout = timeout.map(|t| {
        Timespec::try_from(t).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        })
    });
    let mut fds = [PollFd::new(&fd, events)];
    loop {
        match poll(&mut fds, timeout.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

impl<P: Protocol> Drop for Conn<P> {
    fn drop(&mut self) {
        // Every handle is gone: end the connection so the background thread
        // exits.
        self.fail(Disconnect::Local);
    }
}

/// What [`send_available`] achieved.
enum Sent {
    /// Everything queued was written.
    All,
    /// The socket is full; the rest stays queued.
    Blocked,
}

/// Writes what the socket takes now, fds included, without blocking. A stream
/// that is not a socket gets plain (blocking) writes.
fn send_available(w: &mut Writer) -> io::Result<Sent> {
    let Writer { stream, out } = w;
    while !out.is_empty() {
        let (bytes, fds) = out.chunk();
        let sent = match (fds, stream.socket()) {
            (None, _) => try_send(&mut **stream, bytes),
            (Some(fds), Some(socket)) => {
                let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                match crate::fd::try_send_with_fds(socket, bytes, &fds) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                    sent => sent.map(Some),
                }
            }
            (Some(_), None) => Err(io::ErrorKind::Unsupported.into()),
        };
        match sent {
            Ok(None) => return Ok(Sent::Blocked),
            Ok(Some(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Some(n)) => out.consume(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()?;
    Ok(Sent::All)
}

/// Writes some of `bytes` if the socket has room now: `None` when it has
/// none. A stream that is not a socket gets a plain write.
fn try_send(stream: &mut dyn WriteHalf, bytes: &[u8]) -> io::Result<Option<usize>> {
    use rustix::io::Errno;
    use rustix::net::{SendFlags, send};
    match send(
        stream.fd(),
        bytes,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    ) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::AGAIN) => Ok(None),
        Err(Errno::NOTSOCK) => stream.write(bytes).map(Some),
        Err(e) => Err(e.into()),
    }
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
    /// and starts the background reader. The connect timeout covers the
    /// greeting.
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
