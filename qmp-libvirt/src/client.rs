//! The blocking client API over libvirt: [`Libvirt`] (one connection to
//! libvirtd) and [`Client`] (one domain's QMP monitor through it), which
//! implements [`qmp_io::Qmp`] like the socket clients.
//!
//! A caller waiting for its reply reads the socket itself (one wake-up per
//! round trip, like libvirt's own client); while no caller waits, a
//! background thread per connection reads instead: it answers libvirtd's
//! keepalive PINGs while the caller is idle and hands events to the
//! subscribers.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, Weak};
use std::time::Instant;

use qmp_io::{Call, Disconnect, EventFilter, EventHub, Json, Qmp, Subscription};

use crate::blocking::Stream;
use crate::conn::{CallId, Connection, Reply};
use crate::error::Error;
use crate::qmp::{
    callback_id, command_text, monitor_text, remember, reply, to_qmp_error, unexpected,
};
use crate::session::{Done, Session};
use crate::uri::{self, Target, Transport};
use crate::wire::{Domain, Uuid};

/// How long dropping the last handle waits for libvirtd to answer
/// `CONNECT_CLOSE` before it shuts the socket.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The socket's write side, shared by callers and the reader (PONGs).
struct Wire {
    session: Arc<Session>,
    writer: Mutex<Stream>,
    /// The read side: whoever holds it reads. A caller waiting for its reply
    /// reads itself (one wake-up per round trip, no hand-over between
    /// threads); the background thread reads only while no caller waits.
    reader: Mutex<Reader>,
    /// How many callers wait for replies.
    callers: Mutex<usize>,
    /// Signalled when the last waiting caller is done.
    idle: Condvar,
}

/// The read side of the socket and its buffer.
struct Reader {
    stream: Stream,
    buf: Vec<u8>,
}

impl Reader {
    /// Reads once (at most `timeout`) and feeds the connection; false once
    /// the socket is over.
    fn read_once(&mut self, wire: &Wire, timeout: Option<Duration>) -> bool {
        if self.stream.set_read_timeout(timeout).is_err() {
            // A zero timeout is refused: time is up, nothing to read.
            return true;
        }
        match self.stream.read(&mut self.buf) {
            Ok(0) => {
                wire.session.receive_eof(None);
                false
            }
            #[allow(clippy::indexing_slicing)] // read returns at most buf.len()
            Ok(n) => {
                wire.session.receive(&self.buf[..n]);
                wire.flush();
                !wire.session.is_closed()
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                true
            }
            Err(e) => {
                let why = match e.kind() {
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => None,
                    _ => Some(Disconnect::Io(Arc::new(e))),
                };
                wire.session.receive_eof(why);
                false
            }
        }
    }
}

/// Counts a waiting caller while it lives.
struct Waiting<'a>(&'a Wire);

impl<'a> Waiting<'a> {
    fn new(wire: &'a Wire) -> Self {
        let mut n = lock(&wire.callers);
        // One count per live Waiting: a usize cannot run out first.
        *n = n.saturating_add(1);
        drop(n);
        Waiting(wire)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut n = lock(&self.0.callers);
        // Never below zero: new() counted this one.
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the background thread stays off the socket after the last
/// caller is done: events arriving meanwhile wait at most this long.
const QUIET: Duration = Duration::from_millis(20);

/// How long a caller that cannot read (another does) waits for its reply
/// before it tries to take over reading.
const TAKE_OVER: Duration = Duration::from_millis(1);

impl Wire {
    /// Writes everything the connection wants sent. Holding the writer while
    /// taking the bytes keeps messages whole and in order.
    fn flush(&self) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = Vec::new();
        loop {
            buf.clear();
            self.session.take_transmit(&mut buf);
            if buf.is_empty() {
                return;
            }
            if let Err(e) = w.write_all(&buf) {
                // A daemon that stopped reading (write timeout) or went away.
                w.shutdown();
                self.session.receive_eof(Some(Disconnect::Io(Arc::new(e))));
                return;
            }
        }
    }
}

/// Closes the connection when the last handle goes.
struct Owner {
    wire: Arc<Wire>,
    /// The event registration of each domain open here: libvirt takes one
    /// per domain and connection, so clients of one domain share it.
    domains: Mutex<BTreeMap<Uuid, Weak<Registration>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let session = &self.wire.session;
        if !session.is_closed() {
            session.release();
            self.wire.flush();
            session.wait_closed_for(CLOSE_WAIT);
        }
        // Ends the reader thread too.
        self.wire
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown();
    }
}

/// A blocking connection to libvirtd: open domains' monitors with
/// [`domain`](Self::domain). Cheap to clone; every clone and every
/// [`Client`] shares the one connection, closed (`CONNECT_CLOSE`) when the
/// last of them is dropped.
///
/// ```no_run
/// use qmp_io::{Config, Qmp};
/// use qmp_libvirt::Libvirt;
///
/// let libvirt = Libvirt::connect("qemu+tcp://127.0.0.1/system", Config::default())?;
/// let (web, db) = (libvirt.domain("web")?, libvirt.domain("db")?);
/// web.execute_raw("stop", ())?;
/// db.execute_raw("stop", ())?;
/// # Ok::<(), qmp_io::Error>(())
/// ```
#[derive(Clone)]
pub struct Libvirt {
    owner: Arc<Owner>,
}

impl core::fmt::Debug for Libvirt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Libvirt")
            .field("closed", &self.session().is_closed())
            .finish()
    }
}

impl Libvirt {
    /// Connects to the daemon a libvirt URI names (`qemu:///system`,
    /// `qemu+tcp://host/system`, `qemu:///system?socket=PATH`) and opens it,
    /// all within `config`'s connect timeout; `config`'s call timeout and
    /// event queue sizes apply to every domain client.
    pub fn connect(uri: &str, config: qmp_io::Config) -> qmp_io::Result<Self> {
        let target = parse_uri(uri)?;
        let socket = connect_socket(&target, config.connect_timeout)?;
        Self::open(socket, crate::conn::Config::new(target.name), config)
    }

    fn open(
        socket: Stream,
        conn: crate::conn::Config,
        config: qmp_io::Config,
    ) -> qmp_io::Result<Self> {
        // A daemon that stops reading must not block a caller for ever.
        socket.set_write_timeout(config.timeout.or(Some(config.connect_timeout)))?;
        let reader = socket.try_clone()?;
        let watch = socket.try_clone()?;
        let connect_timeout = config.connect_timeout;
        let session = Arc::new(Session::new(Connection::new(conn), config));
        let wire = Arc::new(Wire {
            session,
            writer: Mutex::new(socket),
            reader: Mutex::new(Reader {
                stream: reader,
                buf: alloc::vec![0u8; 64 << 10],
            }),
            callers: Mutex::new(0),
            idle: Condvar::new(),
        });
        let libvirt = Self {
            owner: Arc::new(Owner {
                wire: wire.clone(),
                domains: Mutex::new(BTreeMap::new()),
            }),
        };
        std::thread::Builder::new()
            .name("qmp-libvirt reader".into())
            .spawn(move || read_while_idle(&watch, &wire))?;
        libvirt.owner.wire.flush();
        libvirt.session().wait_open(connect_timeout)?;
        Ok(libvirt)
    }

    fn session(&self) -> &Session {
        &self.owner.wire.session
    }

    /// The QMP monitor of the domain called `name`.
    pub fn domain(&self, name: &str) -> qmp_io::Result<Client> {
        let name = String::from(name);
        self.open_domain(move |c| c.lookup_domain_by_name(&name))
    }

    /// The QMP monitor of the domain with `uuid`.
    pub fn domain_by_uuid(&self, uuid: Uuid) -> qmp_io::Result<Client> {
        self.open_domain(move |c| c.lookup_domain_by_uuid(uuid))
    }

    /// The QMP monitor of the running domain with id `id`.
    pub fn domain_by_id(&self, id: i32) -> qmp_io::Result<Client> {
        self.open_domain(move |c| c.lookup_domain_by_id(id))
    }

    fn open_domain(
        &self,
        lookup: impl FnOnce(&mut Connection) -> Result<CallId, Error>,
    ) -> qmp_io::Result<Client> {
        let timeout = self.session().config.timeout;
        let Reply::Domain(domain) = self.wait(lookup, None, timeout)? else {
            return Err(unexpected());
        };
        // Held while registering: two opens of one domain register once.
        let mut domains = self.owner.domains.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(events) = domains.get(&domain.uuid).and_then(Weak::upgrade) {
            return Ok(Client { domain, events });
        }
        let hub = EventHub::new(&self.session().config);
        let d = domain.clone();
        let registered = self.wait(
            move |c| c.register_monitor_events(Some(&d), None),
            Some(hub.clone()),
            timeout,
        )?;
        let events = Arc::new(Registration {
            libvirt: self.clone(),
            hub,
            callback_id: callback_id(registered)?,
        });
        remember(&mut domains, domain.uuid, &events);
        Ok(Client { domain, events })
    }

    /// Makes a call and waits for its reply, at most `timeout`.
    fn wait(
        &self,
        start: impl FnOnce(&mut Connection) -> Result<CallId, Error>,
        hub: Option<EventHub>,
        timeout: Option<Duration>,
    ) -> qmp_io::Result<Reply> {
        let (tx, rx) = mpsc::sync_channel(1);
        let done: Done = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let wire = &*self.owner.wire;
        let _waiting = Waiting::new(wire);
        let id = self.session().call_with(start, done, hub)?;
        wire.flush();
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            match rx.try_recv() {
                Ok(result) => return result.map_err(to_qmp_error),
                Err(mpsc::TryRecvError::Disconnected) => return Err(self.gone()),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                self.session().abandon(id);
                return Err(qmp_io::Error::Timeout(timeout.unwrap_or_default()));
            }
            match wire.reader.try_lock() {
                Ok(mut reader) => {
                    // The reply may have come while the reader was taken.
                    if let Ok(result) = rx.try_recv() {
                        return result.map_err(to_qmp_error);
                    }
                    reader.read_once(wire, left);
                }
                Err(_) => {
                    let wait = left.map_or(TAKE_OVER, |l| l.min(TAKE_OVER));
                    match rx.recv_timeout(wait) {
                        Ok(result) => return result.map_err(to_qmp_error),
                        Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.gone()),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                }
            }
        }
    }

    fn gone(&self) -> qmp_io::Error {
        qmp_io::Error::Disconnected(self.session().closed_reason().unwrap_or(Disconnect::Local))
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.session().is_closed()
    }

    /// Waits until the connection is over; why it ended.
    pub fn closed(&self) -> Disconnect {
        self.session().wait_closed()
    }
}

/// The background reader: while no caller waits for a reply, it waits for
/// input and reads it (keepalive PINGs answered, events delivered), until
/// the socket ends.
fn read_while_idle(watch: &Stream, wire: &Wire) {
    loop {
        {
            let mut callers = lock(&wire.callers);
            loop {
                while *callers > 0 {
                    callers = wire.idle.wait(callers).unwrap_or_else(|e| e.into_inner());
                }
                // Calls often come in bursts, each reading for itself: waking
                // here on each of their replies would only compete with them
                // for the CPU. A short quiet time first.
                callers = wire
                    .idle
                    .wait_timeout(callers, QUIET)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if *callers == 0 {
                    break;
                }
            }
        }
        if wire.session.is_closed() {
            return;
        }
        // Waits for input without taking the reader from the callers.
        if watch.wait_readable(None).is_err() {
            wire.session.receive_eof(None);
            return;
        }
        if *lock(&wire.callers) > 0 {
            continue;
        }
        let Ok(mut reader) = wire.reader.try_lock() else {
            continue;
        };
        // A caller may have read it meanwhile: never block holding the reader.
        if !matches!(watch.wait_readable(Some(Duration::ZERO)), Ok(true)) {
            continue;
        }
        if !reader.read_once(wire, None) {
            return;
        }
    }
}

/// One domain's QMP monitor, reached through libvirt; the same client API
/// as the socket clients ([`Qmp`]). Cheap to clone; clones share the
/// connection and the domain's event registration.
///
/// ```no_run
/// use qmp_io::{Config, EventFilter, Qmp};
///
/// let vm = qmp_libvirt::Client::connect("qemu:///system", "vm1", Config::default())?;
/// let stops = vm.subscribe(EventFilter::name("STOP"));
/// vm.execute_raw("stop", ())?;
/// println!("{:?}", stops.recv());
/// # Ok::<(), qmp_io::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    domain: Domain,
    events: Arc<Registration>,
}

/// A domain's event registration on one connection, deregistered when the
/// last client of the domain goes.
struct Registration {
    libvirt: Libvirt,
    hub: EventHub,
    callback_id: i32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Fire and forget: nobody waits for the deregistration.
        let id = self.callback_id;
        let session = self.libvirt.session();
        session.remove_hub(id);
        if session
            .call(|c| c.deregister_monitor_events(id), Box::new(drop))
            .is_ok()
        {
            self.libvirt.owner.wire.flush();
        }
    }
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("domain", &self.domain.name)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Client {
    /// Connects to libvirtd at `uri` and opens the monitor of the domain
    /// called `domain`: the one-connection-per-domain shortcut for
    /// [`Libvirt::connect`] then [`Libvirt::domain`].
    pub fn connect(uri: &str, domain: &str, config: qmp_io::Config) -> qmp_io::Result<Self> {
        Libvirt::connect(uri, config)?.domain(domain)
    }

    /// The domain, as libvirt named it.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The connection this client uses (to open other domains over it).
    pub fn libvirt(&self) -> &Libvirt {
        &self.events.libvirt
    }

    /// Runs a [`Call`]: its `return` value, or the QMP error as
    /// [`qmp_io::Error::Command`]. oob, fds and guest agent commands fail at
    /// once with [`qmp_io::Error::Unsupported`]; libvirt's own refusals (the
    /// domain is gone or not running) are [`qmp_io::Error::Transport`]
    /// holding an [`Error`].
    pub fn call(&self, call: Call) -> qmp_io::Result<Json> {
        let text = command_text(&call)?;
        let timeout = call
            .timeout_override()
            .unwrap_or(self.events.libvirt.session().config.timeout);
        let domain = &self.domain;
        let r = self
            .events
            .libvirt
            .wait(|c| c.monitor_command(domain, &text), None, timeout);
        reply(&monitor_text(r?)?)
    }

    /// Runs an HMP command (human monitor text, such as `info status`)
    /// through libvirt; its output.
    pub fn hmp(&self, command: &str) -> qmp_io::Result<String> {
        let timeout = self.events.libvirt.session().config.timeout;
        let domain = &self.domain;
        let r = self
            .events
            .libvirt
            .wait(|c| c.hmp_command(domain, command), None, timeout);
        monitor_text(r?)
    }

    /// Events of this domain matching `filter`, from now on.
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        self.events.hub.subscribe(filter)
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.events.libvirt.is_closed()
    }

    /// Waits until the connection is over; why it ended.
    pub fn closed(&self) -> Disconnect {
        self.events.libvirt.closed()
    }
}

impl Qmp for Client {
    fn call(&self, call: Call) -> qmp_io::Result<Json> {
        Client::call(self, call)
    }

    fn subscribe(&self, filter: EventFilter) -> Subscription {
        Client::subscribe(self, filter)
    }

    fn is_closed(&self) -> bool {
        Client::is_closed(self)
    }
}

/// Parses a URI; a refused one is a connect error that says why.
pub(crate) fn parse_uri(uri: &str) -> qmp_io::Result<Target> {
    uri::parse(uri).map_err(|e| {
        qmp_io::Error::Connect(Arc::new(io::Error::new(io::ErrorKind::InvalidInput, e)))
    })
}

/// Where a session daemon listens, from the environment.
pub(crate) fn session_socket() -> qmp_io::Result<std::path::PathBuf> {
    let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
    let home = std::env::var("HOME").ok();
    uri::session_socket(xdg.as_deref(), home.as_deref())
        .map(Into::into)
        .ok_or_else(|| {
            qmp_io::Error::Connect(Arc::new(io::Error::new(
                io::ErrorKind::NotFound,
                "cannot find the session daemon's socket: neither XDG_RUNTIME_DIR nor HOME is set",
            )))
        })
}

fn connect_socket(target: &Target, timeout: Duration) -> qmp_io::Result<Stream> {
    Ok(match &target.transport {
        Transport::Unix { path } => {
            Stream::Unix(qmp_io::unix::connect_blocking(path.as_ref(), timeout)?)
        }
        Transport::SessionUnix => {
            Stream::Unix(qmp_io::unix::connect_blocking(&session_socket()?, timeout)?)
        }
        Transport::Tcp { host, port } => {
            let s = qmp_io::tcp::connect((host.as_str(), *port), timeout)?;
            s.set_nodelay(true)?;
            Stream::Tcp(s)
        }
    })
}
