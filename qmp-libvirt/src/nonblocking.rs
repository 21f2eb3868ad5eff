//! The async client API over libvirt, for any runtime qmp-io's async driver
//! runs on (qmp-tokio's `Tokio`, qmp-smol's `Smol`): [`Libvirt`] and
//! [`Client`], which implements [`qmp_io::AsyncQmp`] like the socket clients.
//!
//! One task per connection, spawned on the runtime, owns the socket: it reads
//! all the time (so keepalive PINGs are answered while callers are idle),
//! writes what callers queue, and hands events to the subscribers.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};
use core::time::Duration;
use std::io;

use futures_util::future::{Either, select};
use qmp_io::nonblocking::{Reactor, Runtime, Transport};
use qmp_io::{AsyncQmp, Call, Disconnect, EventFilter, EventHub, Json, Subscription};

use crate::client::{parse_uri, session_socket};
use crate::conn::{CallId, Connection, Reply};
use crate::error::Error;
use crate::qmp::{
    callback_id, command_text, monitor_text, remember, reply, to_qmp_error, unexpected,
};
use crate::session::{Done, Session, handshake_timeout};
use crate::uri::{Target, Transport as UriTransport};
use crate::wire::{Domain, Uuid};

/// Reads before the task yields to others, so a busy connection stays fair.
const READ_BUDGET: usize = 32;

/// Closes the connection when the last handle goes.
struct Owner<R: Runtime> {
    session: Arc<Session>,
    runtime: R,
    /// The event registration of each domain open here: libvirt takes one
    /// per domain and connection, so clients of one domain share it.
    domains: futures_util::lock::Mutex<BTreeMap<Uuid, Weak<Registration<R>>>>,
}

impl<R: Runtime> Drop for Owner<R> {
    fn drop(&mut self) {
        // The task sends CONNECT_CLOSE and ends once it is written.
        self.session.release();
    }
}

/// An async connection to libvirtd: open domains' monitors with
/// [`domain`](Self::domain). Cheap to clone, `Send + Sync`; every clone and
/// every [`Client`] shares the one connection, closed (`CONNECT_CLOSE`) when
/// the last of them is dropped.
pub struct Libvirt<R: Runtime> {
    owner: Arc<Owner<R>>,
}

impl<R: Runtime> Clone for Libvirt<R> {
    fn clone(&self) -> Self {
        Self {
            owner: self.owner.clone(),
        }
    }
}

impl<R: Runtime> core::fmt::Debug for Libvirt<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Libvirt")
            .field("closed", &self.owner.session.is_closed())
            .finish()
    }
}

impl<R: Reactor> Libvirt<R> {
    /// Connects to the daemon a libvirt URI names and opens it, within
    /// `config`'s connect timeout; the socket and the timers are `runtime`'s.
    pub async fn connect(runtime: R, uri: &str, config: qmp_io::Config) -> qmp_io::Result<Self> {
        let target = parse_uri(uri)?;
        let timeout = config.connect_timeout;
        let name = target.name.clone();
        let open = open_socket(runtime.clone(), target, timeout);
        let driver = match select(Box::pin(open), Box::pin(runtime.sleep(timeout))).await {
            Either::Left((opened, _)) => opened?,
            Either::Right(_) => return Err(handshake_timeout(timeout)),
        };
        let session = Arc::new(Session::new(
            Connection::new(crate::conn::Config::new(name)),
            config,
        ));
        runtime.spawn(driver.run(session.clone()));
        let libvirt = Self {
            owner: Arc::new(Owner {
                session,
                runtime,
                domains: futures_util::lock::Mutex::new(BTreeMap::new()),
            }),
        };
        let open = async {
            // Woken by the driver on every change; the outcome decides.
            loop {
                if let Some(outcome) = libvirt.owner.session.open_result() {
                    return outcome;
                }
                OpenChanged(&libvirt.owner.session).await;
            }
        };
        let sleep = libvirt.owner.runtime.sleep(timeout);
        match select(pin!(open), pin!(sleep)).await {
            Either::Left((outcome, _)) => outcome.map(|()| libvirt),
            Either::Right(_) => Err(handshake_timeout(timeout)),
        }
    }
}

/// Opens the socket a target names, on `runtime`'s reactor.
async fn open_socket<R: Reactor>(
    runtime: R,
    target: Target,
    timeout: Duration,
) -> qmp_io::Result<Box<dyn Spawn>> {
    Ok(match target.transport {
        UriTransport::Unix { path } => Box::new(DriverFor(
            runtime.unix(qmp_io::unix::connect(&runtime, path.as_ref()).await?)?,
        )),
        UriTransport::SessionUnix => {
            let path = session_socket()?;
            Box::new(DriverFor(
                runtime.unix(qmp_io::unix::connect(&runtime, &path).await?)?,
            ))
        }
        UriTransport::Tcp { host, port } => {
            let stream = runtime
                .unblock(move || qmp_io::tcp::connect((host.as_str(), port), timeout))
                .await??;
            stream.set_nonblocking(true)?;
            stream.set_nodelay(true)?;
            Box::new(DriverFor(runtime.tcp(stream)?))
        }
    })
}

/// A transport of some type, ready to be driven.
trait Spawn: Send {
    fn run(self: Box<Self>, session: Arc<Session>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

struct DriverFor<T>(T);

impl<T: Transport> Spawn for DriverFor<T> {
    fn run(self: Box<Self>, session: Arc<Session>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(Driver {
            session,
            io: self.0,
            out: Vec::new(),
            sent: 0,
            buf: alloc::vec![0u8; 64 << 10].into_boxed_slice(),
        })
    }
}

/// Resolves at the next change the driver reports (handshake progress).
struct OpenChanged<'a>(&'a Session);

impl Future for OpenChanged<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.open_result().is_some() {
            return Poll::Ready(());
        }
        self.0.set_opener(cx.waker());
        // Checked again after registering: a change in between is not lost.
        if self.0.open_result().is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The connection task.
struct Driver<T> {
    session: Arc<Session>,
    io: T,
    out: Vec<u8>,
    sent: usize,
    buf: Box<[u8]>,
}

impl<T: Transport> Driver<T> {
    fn fail(&self, e: io::Error) -> Poll<()> {
        let why = match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => None,
            _ => Some(Disconnect::Io(Arc::new(e))),
        };
        self.session.receive_eof(why);
        Poll::Ready(())
    }
}

impl<T: Transport> Future for Driver<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        for _ in 0..READ_BUDGET {
            this.session.set_driver(cx.waker());
            if this.sent == this.out.len() {
                this.out.clear();
                this.sent = 0;
                this.session.take_transmit(&mut this.out);
            }
            let mut wrote = false;
            while this.sent < this.out.len() {
                match Pin::new(&mut this.io)
                    .poll_write(cx, this.out.get(this.sent..).unwrap_or_default())
                {
                    Poll::Ready(Ok(0)) => return this.fail(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        // poll_write reports at most what it was given.
                        this.sent = this.sent.saturating_add(n);
                        wrote = true;
                    }
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Poll::Ready(Err(e)) => return this.fail(e),
                    Poll::Pending => break,
                }
            }
            if wrote {
                let _ = Pin::new(&mut this.io).poll_flush(cx);
            }
            if this.sent == this.out.len() && this.session.finished() {
                // Released and flushed, or over: the socket closes here.
                if !this.session.is_closed() {
                    this.session.receive_eof(Some(Disconnect::Local));
                }
                return Poll::Ready(());
            }
            match Pin::new(&mut this.io).poll_read(cx, &mut this.buf) {
                Poll::Ready(Ok(0)) => {
                    this.session.receive_eof(None);
                    return Poll::Ready(());
                }
                #[allow(clippy::indexing_slicing)] // poll_read returns at most buf.len()
                Poll::Ready(Ok(n)) => this.session.receive(&this.buf[..n]),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Pending if !wrote => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T> Drop for Driver<T> {
    fn drop(&mut self) {
        // The runtime may drop the task (shutdown): nobody may wait for ever.
        if !self.session.is_closed() {
            self.session.receive_eof(Some(Disconnect::Local));
        }
    }
}

/// A call waiting for its reply; dropped before the reply came, it abandons
/// the call, so its late reply is dropped.
struct Pending<'a> {
    session: &'a Session,
    id: Option<CallId>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.session.abandon(id);
        }
    }
}

impl<R: Runtime> Libvirt<R> {
    fn session(&self) -> &Session {
        &self.owner.session
    }

    /// The QMP monitor of the domain called `name`.
    pub async fn domain(&self, name: &str) -> qmp_io::Result<Client<R>> {
        let name = String::from(name);
        self.open_domain(move |c| c.lookup_domain_by_name(&name))
            .await
    }

    /// The QMP monitor of the domain with `uuid`.
    pub async fn domain_by_uuid(&self, uuid: Uuid) -> qmp_io::Result<Client<R>> {
        self.open_domain(move |c| c.lookup_domain_by_uuid(uuid))
            .await
    }

    /// The QMP monitor of the running domain with id `id`.
    pub async fn domain_by_id(&self, id: i32) -> qmp_io::Result<Client<R>> {
        self.open_domain(move |c| c.lookup_domain_by_id(id)).await
    }

    async fn open_domain(
        &self,
        lookup: impl FnOnce(&mut Connection) -> Result<CallId, Error>,
    ) -> qmp_io::Result<Client<R>> {
        let timeout = self.session().config.timeout;
        let Reply::Domain(domain) = self.wait(lookup, None, timeout).await? else {
            return Err(unexpected());
        };
        // Held while registering: two opens of one domain register once.
        let mut domains = self.owner.domains.lock().await;
        let domain = Arc::new(domain);
        if let Some(events) = domains.get(&domain.uuid).and_then(Weak::upgrade) {
            return Ok(Client { domain, events });
        }
        let hub = EventHub::new(&self.session().config);
        let d = domain.clone();
        let registered = self
            .wait(
                move |c| c.register_monitor_events(Some(&d), None),
                Some(hub.clone()),
                timeout,
            )
            .await?;
        let events = Arc::new(Registration {
            libvirt: self.clone(),
            hub,
            callback_id: callback_id(registered)?,
        });
        remember(&mut domains, domain.uuid, &events);
        Ok(Client { domain, events })
    }

    /// Makes a call and waits for its reply, at most `timeout`.
    async fn wait(
        &self,
        start: impl FnOnce(&mut Connection) -> Result<CallId, Error>,
        hub: Option<EventHub>,
        timeout: Option<Duration>,
    ) -> qmp_io::Result<Reply> {
        let (tx, rx) = futures_channel::oneshot::channel();
        let done: Done = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let id = self.session().call_with(start, done, hub)?;
        let mut pending = Pending {
            session: self.session(),
            id: Some(id),
        };
        let got = match timeout {
            None => Some(rx.await),
            Some(t) => match select(rx, pin!(self.owner.runtime.sleep(t))).await {
                Either::Left((got, _)) => Some(got),
                Either::Right(_) => None,
            },
        };
        match got {
            Some(Ok(result)) => {
                pending.id = None;
                result.map_err(to_qmp_error)
            }
            Some(Err(_)) => {
                pending.id = None;
                Err(self.gone())
            }
            None => Err(qmp_io::Error::Timeout(timeout.unwrap_or_default())),
        }
    }

    fn gone(&self) -> qmp_io::Error {
        qmp_io::Error::Disconnected(self.session().closed_reason().unwrap_or(Disconnect::Local))
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.session().is_closed()
    }

    /// Resolves when the connection is over; why it ended.
    pub async fn closed(&self) -> Disconnect {
        if let Some(signal) = self.session().closed_signal() {
            let _ = signal.await;
        }
        self.session().closed_reason().unwrap_or(Disconnect::Local)
    }
}

/// A domain's event registration on one connection, deregistered when the
/// last client of the domain goes.
struct Registration<R: Runtime> {
    libvirt: Libvirt<R>,
    hub: EventHub,
    callback_id: i32,
}

impl<R: Runtime> Drop for Registration<R> {
    fn drop(&mut self) {
        let id = self.callback_id;
        let session = self.libvirt.session();
        session.remove_hub(id);
        // Fire and forget: nobody waits for the deregistration.
        let _ = session.call(|c| c.deregister_monitor_events(id), Box::new(drop));
    }
}

/// One domain's QMP monitor, reached through libvirt; the same client API
/// as the async socket clients ([`AsyncQmp`]). Cheap to clone.
///
/// ```no_run
/// # async fn run(tokio: qmp_tokio::Tokio) -> qmp_io::Result<()> {
/// use qmp_io::{AsyncQmp, Config};
/// use qmp_libvirt::nonblocking::Client;
///
/// let vm = Client::connect(tokio, "qemu:///system", "vm1", Config::default()).await?;
/// let status = vm.execute_raw("query-status", ()).await?;
/// # drop(status); Ok(()) }
/// ```
pub struct Client<R: Runtime> {
    domain: Arc<Domain>,
    events: Arc<Registration<R>>,
}

impl<R: Runtime> Clone for Client<R> {
    fn clone(&self) -> Self {
        Self {
            domain: self.domain.clone(),
            events: self.events.clone(),
        }
    }
}

impl<R: Runtime> core::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("domain", &self.domain.name)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<R: Reactor> Client<R> {
    /// Connects to libvirtd at `uri` and opens the monitor of the domain
    /// called `domain`: [`Libvirt::connect`] then [`Libvirt::domain`].
    pub async fn connect(
        runtime: R,
        uri: &str,
        domain: &str,
        config: qmp_io::Config,
    ) -> qmp_io::Result<Self> {
        Libvirt::connect(runtime, uri, config)
            .await?
            .domain(domain)
            .await
    }
}

impl<R: Runtime> Client<R> {
    /// The domain, as libvirt named it.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The connection this client uses (to open other domains over it).
    pub fn libvirt(&self) -> &Libvirt<R> {
        &self.events.libvirt
    }

    /// Runs a [`Call`]: its `return` value, or the QMP error as
    /// [`qmp_io::Error::Command`]; see [`crate::Client::call`] for what
    /// fails at once. The command is checked and encoded before the first
    /// poll, so the future borrows nothing.
    pub fn call(&self, call: Call) -> impl Future<Output = qmp_io::Result<Json>> + Send + 'static {
        let text = command_text(&call);
        let timeout = call
            .timeout_override()
            .unwrap_or(self.events.libvirt.session().config.timeout);
        let (libvirt, domain) = (self.events.libvirt.clone(), self.domain.clone());
        async move {
            let text = text?;
            let r = libvirt
                .wait(|c| c.monitor_command(&domain, &text), None, timeout)
                .await;
            reply(&monitor_text(r?)?)
        }
    }

    /// Runs an HMP command (such as `info status`) through libvirt; its
    /// output.
    pub async fn hmp(&self, command: &str) -> qmp_io::Result<String> {
        let timeout = self.events.libvirt.session().config.timeout;
        let domain = &self.domain;
        let r = self
            .events
            .libvirt
            .wait(|c| c.hmp_command(domain, command), None, timeout)
            .await;
        monitor_text(r?)
    }

    /// Events of this domain matching `filter`, from now on; a
    /// `futures_core::Stream`.
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        self.events.hub.subscribe(filter)
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.events.libvirt.is_closed()
    }

    /// Resolves when the connection is over; why it ended.
    pub async fn closed(&self) -> Disconnect {
        self.events.libvirt.closed().await
    }
}

impl<R: Runtime> AsyncQmp for Client<R> {
    fn call(&self, call: Call) -> impl Future<Output = qmp_io::Result<Json>> + Send {
        Client::call(self, call)
    }

    fn subscribe(&self, filter: EventFilter) -> Subscription {
        Client::subscribe(self, filter)
    }

    fn is_closed(&self) -> bool {
        Client::is_closed(self)
    }
}
