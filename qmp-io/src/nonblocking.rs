//! The async driver: one task per connection owns the socket, reading and
//! writing; callers queue commands and await their answers. Runtime-agnostic:
//! the adapter supplies the transport (futures-io), the timer and `spawn`.

use core::future::Future;
use core::marker::PhantomData;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};
use core::time::Duration;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use futures_util::future::{Either, select};
use qmp_proto::{Client as Core, ClientConfig, Command, GuestAgent as AgentCore, Heap};

use crate::call::{
    AddFdInfo, Call, Waiting, check_fds, decode, fd_args, submit_agent, submit_agent_typed,
    submit_qmp, submit_qmp_typed,
};
use crate::config::Config;
use crate::error::{Disconnect, Error, Result};
use crate::events::{EventFilter, Subscription};
use crate::json::Json;
use crate::session::{Greeting, OutBuf, Protocol, Session, Submitted, nonce, scratch};
use crate::slot::SlotFuture;

/// What an async runtime lends the driver: a timer and a way to spawn.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The future [`sleep`](Self::sleep) returns.
    type Sleep: Future<Output = ()> + Send + 'static;
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Self::Sleep;
    /// Runs `task` in the background until it completes.
    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>);
}

/// A runtime that also registers sockets and pipes with its reactor: what an
/// adapter implements so the ways of connecting (unix path, child process, a
/// QEMU it launches) are written once, here, for every runtime.
pub trait Reactor: Runtime {
    /// A unix socket registered with the reactor (passing fds, if it can).
    type Unix: Transport;
    /// A tcp socket registered with the reactor.
    type Tcp: Transport;
    /// A child process's stdio registered with the reactor.
    type Child: Transport;
    /// Registers a connected, nonblocking unix socket.
    fn unix(&self, stream: std::os::unix::net::UnixStream) -> io::Result<Self::Unix>;
    /// Registers a connected, nonblocking tcp socket.
    fn tcp(&self, stream: std::net::TcpStream) -> io::Result<Self::Tcp>;
    /// Registers a child's stdin and stdout.
    fn child(&self, child: crate::child::ChildStdio) -> io::Result<Self::Child>;
    /// Runs blocking `work` off the executor's threads.
    fn unblock<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = io::Result<T>> + Send;
}

pub use crate::reconnect::tasks::Reconnecting;

/// A unix socket connected on `runtime` (also when the listener's queue is
/// full: see [`crate::unix::connect`]).
async fn unix<R: Reactor>(runtime: &R, path: &std::path::Path) -> io::Result<R::Unix> {
    runtime.unix(crate::unix::connect(runtime, path).await?)
}

/// A byte stream the async driver can run on. [`Io`] makes one of any
/// futures-io stream; implement this directly only for something unusual.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// True when [`poll_send_fds`](Self::poll_send_fds) works.
    fn can_pass_fds(&self) -> bool;

    /// Writes `bytes` with `fds` attached to the first byte (SCM_RIGHTS);
    /// `ErrorKind::Unsupported` where fds cannot pass.
    fn poll_send_fds(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>>;
}

/// How a stream of type `T` passes file descriptors; each runtime adapter
/// implements it for its unix socket.
pub trait PassFds<T>: 'static {
    /// False for streams that cannot pass fds ([`NoFds`]).
    const ENABLED: bool = true;

    /// Writes `bytes` with `fds` attached to the first byte (SCM_RIGHTS),
    /// waiting for the socket to be writable like `poll_write` does.
    fn poll_send_fds(
        io: &T,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>>;
}

/// For streams that cannot pass file descriptors (tcp, pipes, in-memory).
#[derive(Debug)]
pub enum NoFds {}

impl<T> PassFds<T> for NoFds {
    const ENABLED: bool = false;

    fn poll_send_fds(
        _: &T,
        _: &mut Context<'_>,
        _: &[u8],
        _: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

/// A futures-io stream as a [`Transport`]; `F` says how it passes fds.
pub struct Io<T, F = NoFds> {
    inner: T,
    fds: PhantomData<fn() -> F>,
}

impl<T: core::fmt::Debug, F> core::fmt::Debug for Io<T, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Io").field(&self.inner).finish()
    }
}

impl<T> Io<T> {
    /// A transport that does not pass fds.
    pub fn new(inner: T) -> Self {
        Self::with_fds(inner)
    }
}

impl<T, F> Io<T, F> {
    /// A transport that passes fds the way `F` says.
    pub fn with_fds(inner: T) -> Self {
        Self {
            inner,
            fds: PhantomData,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin, F> AsyncRead for Io<T, F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin, F> AsyncWrite for Io<T, F> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<T, F> Transport for Io<T, F>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: PassFds<T>,
{
    fn can_pass_fds(&self) -> bool {
        F::ENABLED
    }

    fn poll_send_fds(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        F::poll_send_fds(&self.inner, cx, bytes, fds)
    }
}

/// Runs `open` for at most `timeout`; running out is
/// [`io::ErrorKind::TimedOut`], reported as a connect error.
async fn within<R: Runtime, T>(
    runtime: &R,
    timeout: Duration,
    open: impl Future<Output = io::Result<T>>,
) -> Result<T> {
    match select(Box::pin(open), Box::pin(runtime.sleep(timeout))).await {
        Either::Left((opened, _)) => Ok(opened?),
        Either::Right(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the connect timeout ({timeout:?}) passed before the connection was open"),
        )
        .into()),
    }
}

/// Reads before yielding to other tasks, so a busy connection stays fair.
const READ_BUDGET: usize = 32;

/// The connection task. It reads into its thread's scratch buffer (see
/// `session::readbuf`): an idle connection holds no read buffer.
struct Driver<P: Protocol, T> {
    session: Arc<Session<P>>,
    io: T,
    out: OutBuf,
}

impl<P: Protocol, T: Transport> Driver<P, T> {
    /// Writes what it can; `Err` ends the connection.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut progress = false;
        if self.out.is_empty() {
            self.session.take_output(&mut self.out, Some(cx.waker()));
        } else {
            // Still writing: a close must wake this task all the same.
            self.session.set_driver(cx.waker());
        }
        while !self.out.is_empty() {
            let (bytes, fds) = self.out.chunk();
            let io = Pin::new(&mut self.io);
            let polled = match fds {
                None => io.poll_write(cx, bytes),
                Some(fds) => {
                    let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                    io.poll_send_fds(cx, bytes, &fds)
                }
            };
            match polled {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.out.consume(n);
                    progress = true;
                    if self.out.is_empty() {
                        self.session.take_output(&mut self.out, Some(cx.waker()));
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        if progress {
            // Sockets do not buffer; a transport that does may flush later.
            let _ = Pin::new(&mut self.io).poll_flush(cx);
            self.session.wrote(&self.out);
        }
        Ok(progress)
    }
}

impl<P: Protocol, T: Transport> Driver<P, T> {
    /// One poll: writes and reads up to [`READ_BUDGET`] times into `buf`.
    fn poll_with(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<()> {
        for _ in 0..READ_BUDGET {
            if self.session.is_closed() {
                return Poll::Ready(());
            }
            let wrote = match self.poll_write_out(cx) {
                Ok(p) => p,
                Err(e) => {
                    self.session.on_close(Disconnect::from_io(e));
                    return Poll::Ready(());
                }
            };
            match Pin::new(&mut self.io).poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => {
                    self.session
                        .on_close(Disconnect::Eof { mid_message: false });
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(n)) => self.session.on_input(buf.get(..n).unwrap_or_default()),
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.session.on_close(Disconnect::from_io(e));
                    return Poll::Ready(());
                }
                Poll::Pending if !wrote => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<P: Protocol, T: Transport> Future for Driver<P, T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        scratch(|buf| this.poll_with(cx, buf))
    }
}

impl<P: Protocol, T> Drop for Driver<P, T> {
    fn drop(&mut self) {
        // The runtime may drop the task (shutdown): nobody may wait for ever.
        self.session.on_close(Disconnect::Local);
    }
}

/// What the handles of one connection share.
struct Conn<P: Protocol, R: Runtime> {
    session: Arc<Session<P>>,
    runtime: R,
    fds: bool,
    /// fd-carrying commands go one at a time (see the blocking driver).
    fd_lane: futures_util::lock::Mutex<()>,
}

impl<P: Protocol, R: Runtime> Conn<P, R> {
    /// Opens the transport with `open`, spawns the driver over it and waits
    /// for the handshake of `proto`, all within the one connect timeout.
    async fn open<T: Transport>(
        runtime: R,
        proto: P,
        config: Config,
        open: impl Future<Output = io::Result<T>>,
    ) -> Result<Arc<Self>> {
        let started = Instant::now();
        let io = within(&runtime, config.connect_timeout, open).await?;
        let session = Arc::new(Session::new(proto, config));
        let fds = io.can_pass_fds();
        runtime.spawn(Box::pin(Driver {
            session: session.clone(),
            io,
            out: OutBuf::default(),
        }));
        let conn = Arc::new(Conn {
            session,
            runtime,
            fds,
            fd_lane: futures_util::lock::Mutex::new(()),
        });
        let timeout = conn.session.config.connect_timeout;
        let settled = conn.session.settled.wait_async();
        let sleep = conn
            .runtime
            .sleep(timeout.saturating_sub(started.elapsed()));
        if let Either::Right(_) = select(settled, Box::pin(sleep)).await {
            conn.session.handshake_timed_out(timeout);
        }
        match conn.session.closed_reason() {
            Some(reason) => Err(Error::Disconnected(reason)),
            None => Ok(conn),
        }
    }

    async fn wait(&self, submitted: Submitted, timeout: Option<Duration>) -> Result<Json> {
        if let (Some(t), Some(id)) = (timeout, submitted.id) {
            // The deadline thread enforces it (see `crate::deadlines`); a
            // timeout past the end of the clock never strikes.
            let armed = match Instant::now().checked_add(t) {
                Some(at) => self.session.arm(id, at, t),
                None => true,
            };
            if armed {
                let waiting = Waiting::new(&self.session, submitted);
                let answer = SlotFuture(&waiting.slot).await;
                return waiting.finish(answer, timeout);
            }
        }
        // A command that gets no reply is done once written; it (and any
        // call when the deadline thread could not start) keeps its own timer,
        // in its own future (no allocation).
        let expiry = pin!(timeout.map(|t| self.runtime.sleep(t)));
        self.wait_with(submitted, timeout, expiry.as_pin_mut())
            .await
    }

    /// [`wait`](Self::wait) with the call's timer already running.
    async fn wait_with(
        &self,
        submitted: Submitted,
        timeout: Option<Duration>,
        expiry: Option<Pin<&mut R::Sleep>>,
    ) -> Result<Json> {
        let waiting = Waiting::new(&self.session, submitted);
        let slot = waiting.slot.clone();
        let answer = match expiry {
            None => SlotFuture(&slot).await,
            Some(expiry) => match select(SlotFuture(&slot), expiry).await {
                Either::Left((answer, _)) => answer,
                Either::Right(_) => None,
            },
        };
        waiting.finish(answer, timeout)
    }

    async fn call(
        &self,
        call: Call,
        submit: impl FnOnce(Call) -> Result<Submitted>,
    ) -> Result<Json> {
        let timeout = call.timeout.unwrap_or(self.session.config.timeout);
        if call.fds.is_empty() {
            return self.wait(submit(call)?, timeout).await;
        }
        // One timer for the whole call, in its own future (no allocation):
        // the wait for the fd lane counts against the call's timeout.
        let mut expiry = pin!(timeout.map(|t| self.runtime.sleep(t)));
        check_fds(&call, self.fds)?;
        let lane = self.fd_lane.lock();
        let _lane = match expiry.as_mut().as_pin_mut() {
            None => lane.await,
            Some(expiry) => match select(lane, expiry).await {
                Either::Left((held, _)) => held,
                Either::Right(_) => return Err(Error::Timeout(timeout.unwrap_or_default())),
            },
        };
        self.wait_with(submit(call)?, timeout, expiry.as_pin_mut())
            .await
    }

    async fn closed(&self) -> Disconnect {
        self.session.closed.wait_async().await;
        self.session.closed_reason().unwrap_or(Disconnect::Local)
    }
}

impl<P: Protocol, R: Runtime> Drop for Conn<P, R> {
    fn drop(&mut self) {
        // Every handle is gone: the driver task sees this and drops the socket.
        self.session.on_close(Disconnect::Local);
    }
}

/// An async QMP client, for any runtime. Cheap to clone, `Send + Sync`; every
/// clone drives the same connection. Dropping the last clone closes it.
/// Dropping a call's future abandons the command: its late reply is dropped.
pub struct Client<R: Runtime> {
    conn: Arc<Conn<Core<Heap>, R>>,
    greeting: Arc<Greeting>,
}

impl<R: Runtime> Clone for Client<R> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            greeting: self.greeting.clone(),
        }
    }
}

impl<R: Runtime> core::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("greeting", &self.greeting)
            .field("closed", &self.conn.session.is_closed())
            .finish()
    }
}

impl<R: Reactor> Client<R> {
    /// Connects to a QMP unix socket and runs the handshake. The connect
    /// timeout covers the connect (a listener with a full queue) and the
    /// greeting together.
    pub async fn connect_unix(runtime: R, path: &std::path::Path, config: Config) -> Result<Self> {
        let open = unix(&runtime, path);
        Self::connect_with(runtime.clone(), config, open).await
    }

    /// Connects to a QMP tcp socket (`-qmp tcp:HOST:PORT,server=on`; an
    /// address or a `"host:port"` string, resolved off the executor) and runs
    /// the handshake, both within the connect timeout.
    pub async fn connect_tcp(
        runtime: R,
        addr: impl std::net::ToSocketAddrs + Send + 'static,
        config: Config,
    ) -> Result<Self> {
        let timeout = config.connect_timeout;
        let open = async {
            let stream = runtime
                .unblock(move || crate::tcp::connect(addr, timeout))
                .await??;
            stream.set_nonblocking(true)?;
            runtime.tcp(stream)
        };
        Self::connect_with(runtime.clone(), config, open).await
    }

    /// Runs the QMP handshake with a child process that speaks QMP on its
    /// stdin and stdout: QEMU with `-qmp stdio`, or a command reaching a
    /// remote monitor (`ssh host socat - UNIX-CONNECT:/run/vm.qmp`). The
    /// child is killed and reaped when the connection ends; if it dies, the
    /// error quotes the end of its stderr.
    pub async fn connect_child(
        runtime: R,
        command: std::process::Command,
        config: Config,
    ) -> Result<Self> {
        let open = async { runtime.child(crate::child::ChildStdio::spawn(command)?) };
        Self::connect_with(runtime.clone(), config, open).await
    }

    /// Launches a private QEMU and connects to its QMP socket. The process is
    /// killed and reaped when the returned [`Qemu`](crate::qemu::Qemu) is
    /// dropped.
    pub async fn launch(
        runtime: R,
        qemu: crate::qemu::QemuBuilder,
        config: Config,
    ) -> Result<(crate::qemu::Qemu, Self)> {
        let qemu = runtime.unblock(move || qemu.spawn()).await??;
        let client = Self::connect_unix(runtime, qemu.qmp_path(), config).await?;
        Ok((qemu, client))
    }

    /// Launches a private QEMU with its monitor on its stdio (`-qmp stdio`,
    /// no socket file); it lives as long as the connection.
    pub async fn launch_stdio(
        runtime: R,
        qemu: crate::qemu::QemuBuilder,
        config: Config,
    ) -> Result<Self> {
        Self::connect_child(runtime, qemu.stdio_command(), config).await
    }
}

impl<R: Reactor> GuestAgent<R> {
    /// Connects to a guest agent's unix socket and synchronises, within the
    /// connect timeout.
    pub async fn connect_unix(runtime: R, path: &std::path::Path, config: Config) -> Result<Self> {
        let open = unix(&runtime, path);
        Self::connect_with(runtime.clone(), config, open).await
    }
}

impl<R: Runtime> Client<R> {
    /// Spawns the driver on `runtime` over `transport` and runs the QMP
    /// handshake; the connect timeout covers the greeting.
    pub async fn connect<T: Transport>(runtime: R, transport: T, config: Config) -> Result<Self> {
        Self::connect_with(runtime, config, async { Ok(transport) }).await
    }

    /// Opens the transport with `open` and runs the QMP handshake over it,
    /// both within the one connect timeout (which the error reports as
    /// configured): what adapters use for sockets they connect themselves.
    pub async fn connect_with<T, F>(runtime: R, config: Config, open: F) -> Result<Self>
    where
        T: Transport,
        F: Future<Output = io::Result<T>>,
    {
        let core = Core::new(ClientConfig {
            oob: config.oob,
            limits: config.limits,
        });
        let conn = Conn::open(runtime, core, config, open).await?;
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
    pub(crate) fn session(&self) -> &Arc<Session<Core<Heap>>> {
        &self.conn.session
    }

    /// True when out-of-band execution was negotiated.
    pub fn oob_enabled(&self) -> bool {
        self.greeting.oob
    }

    /// Runs a typed command and decodes its return value.
    pub async fn execute<C: Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        let s = &self.conn.session;
        let submitted = submit_qmp_typed(s, command, false)?;
        decode(&self.conn.wait(submitted, s.config.timeout).await?)
    }

    /// Runs a typed command with `exec-oob`.
    pub async fn execute_oob<C: Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        let s = &self.conn.session;
        let submitted = submit_qmp_typed(s, command, true)?;
        decode(&self.conn.wait(submitted, s.config.timeout).await?)
    }

    /// Runs command `name` with `arguments`: anything that serializes to a
    /// JSON object (`serde_json::json!({..})`, a struct, a map, a
    /// [`Json`]), or `()` for none.
    ///
    /// ```no_run
    /// # async fn run<R: qmp_io::nonblocking::Runtime>(qmp: qmp_io::nonblocking::Client<R>) -> qmp_io::Result<()> {
    /// use serde_json::json;
    /// qmp.execute_raw("stop", ()).await?;
    /// let info = qmp.execute_raw("query-block", ()).await?;
    /// qmp.execute_raw("eject", json!({"id": "cd0", "force": true})).await?;
    /// # let _ = info; Ok(()) }
    /// ```
    pub async fn execute_raw(&self, name: &str, arguments: impl serde::Serialize) -> Result<Json> {
        self.call(Call::new(name).arguments(arguments)).await
    }

    /// Runs command `name` with `exec-oob`.
    pub async fn execute_raw_oob(
        &self,
        name: &str,
        arguments: impl serde::Serialize,
    ) -> Result<Json> {
        self.call(Call::new(name).arguments(arguments).oob()).await
    }

    /// Runs a [`Call`]: per-call timeout, oob, fds.
    pub async fn call(&self, call: Call) -> Result<Json> {
        self.conn
            .call(call, |c| submit_qmp(&self.conn.session, c))
            .await
    }

    /// Passes `fd` to QEMU under `name` (`getfd`). Unix sockets only.
    pub async fn send_fd(&self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        self.call(fd_args::getfd(name).fd(fd)?).await.map(drop)
    }

    /// Closes an fd passed with [`send_fd`](Self::send_fd) (`closefd`).
    pub async fn close_fd(&self, name: &str) -> Result<()> {
        self.call(fd_args::closefd(name)).await.map(drop)
    }

    /// Adds `fd` to an fd set (`add-fd`; a new set when `fdset_id` is `None`).
    pub async fn add_fd(
        &self,
        fd: BorrowedFd<'_>,
        fdset_id: Option<u64>,
        opaque: Option<&str>,
    ) -> Result<AddFdInfo> {
        let call = fd_args::add_fd(fdset_id, opaque).fd(fd)?;
        decode(&self.call(call).await?)
    }

    /// Removes an fd (or a whole set when `fd` is `None`) (`remove-fd`).
    pub async fn remove_fd(&self, fdset_id: u64, fd: Option<i64>) -> Result<()> {
        self.call(fd_args::remove_fd(fdset_id, fd)).await.map(drop)
    }

    /// A new subscriber for the events `filter` accepts (a `Stream`).
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

    /// Completes when the connection is over, with the reason.
    pub async fn closed(&self) -> Disconnect {
        self.conn.closed().await
    }

    /// Closes the connection: waiting calls fail, subscribers end.
    pub fn close(&self) {
        self.conn.session.on_close(Disconnect::Local);
    }
}

/// An async guest-agent client. Synchronises on connect and after every
/// timeout; cheap to clone.
///
/// The guest is untrusted: a reply over the size limit fails its call with
/// [`Error::ReplyTooLarge`] and the connection
/// goes on, but bytes that break the protocol (invalid JSON or UTF-8,
/// nesting past the limit) end the connection with
/// [`Disconnect::Protocol`], as on QMP: connect
/// again to go on.
pub struct GuestAgent<R: Runtime> {
    conn: Arc<Conn<AgentCore<Heap>, R>>,
}

impl<R: Runtime> Clone for GuestAgent<R> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn.clone(),
        }
    }
}

impl<R: Runtime> core::fmt::Debug for GuestAgent<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestAgent")
            .field("closed", &self.conn.session.is_closed())
            .finish()
    }
}

impl<R: Runtime> GuestAgent<R> {
    /// Spawns the driver and synchronises with the agent (0xFF +
    /// `guest-sync-delimited`); the connect timeout covers the sync.
    pub async fn connect<T: Transport>(runtime: R, transport: T, config: Config) -> Result<Self> {
        Self::connect_with(runtime, config, async { Ok(transport) }).await
    }

    /// Opens the transport with `open` and synchronises over it, both within
    /// the one connect timeout, like [`Client::connect_with`].
    pub async fn connect_with<T, F>(runtime: R, config: Config, open: F) -> Result<Self>
    where
        T: Transport,
        F: Future<Output = io::Result<T>>,
    {
        let core = AgentCore::new(config.limits, nonce());
        let conn = Conn::open(runtime, core, config, open).await?;
        Ok(Self { conn })
    }

    /// Runs a typed command and decodes its return value. Commands the agent
    /// never answers (`guest-shutdown`, `guest-suspend-*`) return once
    /// written (or fail if the connection ends first), decoding `{}`.
    pub async fn execute<C: Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        let s = &self.conn.session;
        let submitted = submit_agent_typed(s, command)?;
        decode(&self.conn.wait(submitted, s.config.timeout).await?)
    }

    /// Runs command `name` with `arguments` (a JSON object, or `()` for
    /// none), as [`Client::execute_raw`].
    pub async fn execute_raw(&self, name: &str, arguments: impl serde::Serialize) -> Result<Json> {
        self.call(Call::new(name).arguments(arguments)).await
    }

    /// Runs a [`Call`] (per-call timeout).
    pub async fn call(&self, call: Call) -> Result<Json> {
        self.conn
            .call(call, |c| submit_agent(&self.conn.session, c))
            .await
    }

    /// Starts a new synchronisation now (commands waiting fail with
    /// [`Error::Discarded`]).
    pub fn resync(&self) -> Result<()> {
        self.conn.session.resync_agent()
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.conn.session.is_closed()
    }

    /// Completes when the connection is over, with the reason.
    pub async fn closed(&self) -> Disconnect {
        self.conn.closed().await
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.session.on_close(Disconnect::Local);
    }
}

/// Writes an async adapter's crate-root connect functions, the same in every
/// adapter: each runs on the runtime `$runtime` evaluates to (the current
/// one, or a global executor), through the [`Client`], [`GuestAgent`] and
/// [`Reconnecting`] constructors of this module. The adapter supplies
/// `Client`, `GuestAgent`, `Reconnecting`, `Config`, `Reconnect`, `Result`,
/// `Qemu`, `QemuBuilder` and a `Stream` trait with `into_transport`.
#[macro_export]
macro_rules! async_adapter_functions {
    ($runtime:expr, $on:literal) => {
        #[doc = concat!("Connects to a QMP unix socket and runs the handshake, ", $on, ". The connect timeout covers the connect (a listener with a full queue) and the greeting together.")]
        pub async fn connect_unix(path: impl AsRef<std::path::Path>, config: Config) -> Result<Client> {
            Client::connect_unix($runtime, path.as_ref(), config).await
        }

        #[doc = concat!("Connects to a QMP tcp socket (`-qmp tcp:HOST:PORT,server=on`; an address or a `\"host:port\"` string), ", $on, ", and runs the handshake; the connect timeout covers the tcp connect and the greeting together.")]
        pub async fn connect_tcp(addr: impl std::net::ToSocketAddrs + Send + 'static, config: Config) -> Result<Client> {
            Client::connect_tcp($runtime, addr, config).await
        }

        #[doc = concat!("Runs the QMP handshake on a stream that is already open, ", $on, ".")]
        pub async fn connect(stream: impl Stream, config: Config) -> Result<Client> {
            Client::connect($runtime, stream.into_transport(), config).await
        }

        #[doc = concat!("Runs the QMP handshake with a child process that speaks QMP on its stdin and stdout, ", $on, ": QEMU with `-qmp stdio`, or a command reaching a remote monitor (`ssh host socat - UNIX-CONNECT:/run/vm.qmp`). The child is killed and reaped when the connection ends; if it dies, the error quotes the end of its stderr.")]
        pub async fn connect_child(command: std::process::Command, config: Config) -> Result<Client> {
            Client::connect_child($runtime, command, config).await
        }

        #[doc = concat!("Launches a private QEMU and connects to its QMP socket, ", $on, ". The process is killed and reaped when the returned [`Qemu`] is dropped.")]
        pub async fn launch(qemu: QemuBuilder, config: Config) -> Result<(Qemu, Client)> {
            Client::launch($runtime, qemu, config).await
        }

        #[doc = concat!("Launches a private QEMU with its monitor on its stdio (`-qmp stdio`, no socket file), ", $on, "; it lives as long as the connection.")]
        pub async fn launch_stdio(qemu: QemuBuilder, config: Config) -> Result<Client> {
            Client::launch_stdio($runtime, qemu, config).await
        }

        #[doc = concat!("Connects to a QMP unix socket, ", $on, ", and stays attached to its path across QEMU restarts, reconnecting as `reconnect` says (backoff, what calls do meanwhile): see [`Reconnecting`] for the semantics. The first connect is not retried.")]
        pub async fn connect_unix_reconnecting(path: impl AsRef<std::path::Path>, config: Config, reconnect: Reconnect) -> Result<Reconnecting> {
            Reconnecting::connect_unix($runtime, path.as_ref(), config, reconnect).await
        }

        #[doc = concat!("Connects to a guest agent's unix socket and synchronises, ", $on, ", within the connect timeout.")]
        pub async fn connect_guest_agent(path: impl AsRef<std::path::Path>, config: Config) -> Result<GuestAgent> {
            GuestAgent::connect_unix($runtime, path.as_ref(), config).await
        }

        #[doc = concat!("Synchronises with a guest agent over a stream that is already open, ", $on, ".")]
        pub async fn guest_agent_on(stream: impl Stream, config: Config) -> Result<GuestAgent> {
            GuestAgent::connect($runtime, stream.into_transport(), config).await
        }
    };
}
