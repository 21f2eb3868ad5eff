//! Async QMP and QEMU guest agent clients on tokio.
//!
//! A thin adapter over [`qmp_io`]'s async driver: it connects (a unix path, a
//! tcp address, an open tokio stream, a child process's stdio, or a QEMU it
//! launches), spawns the connection task on a tokio runtime, and re-exports
//! the client API. The functions at the crate root use the runtime they are
//! called from; the same constructors on [`Client`] and [`GuestAgent`] take
//! the runtime to use ([`Tokio::on`] a handle).
//! Handles are cheap to clone, `Send + Sync`, and callable from any thread
//! or executor; dropping a call's future abandons the command.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! # async fn run() -> Result<(), qmp_tokio::Error> {
//! let (_qemu, qmp) = qmp_tokio::launch(qmp_tokio::Qemu::builder(), qmp_tokio::Config::default()).await?;
//! let mut events = qmp.subscribe(qmp_tokio::EventFilter::name("STOP"));
//! qmp.execute_raw("stop", ()).await?;
//! println!("{:?}", events.next().await);
//! # Ok(()) }
//! ```
//!
//! Every QMP command and event is typed in [`qapi`] (the `qmp-qapi`
//! catalogue, re-exported); the raw form stays beside it:
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use qmp_tokio::qapi::{commands, events, types::RunState};
//! use qmp_tokio::{Config, EventFilter};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let qmp = qmp_tokio::connect_unix("/run/vm.qmp", Config::default()).await?;
//! let mut stops = qmp.subscribe(EventFilter::of::<events::Stop>());
//! qmp.execute(&commands::Stop).await?; // raw: qmp.execute_raw("stop", ()).await
//! let status = qmp.execute(&commands::QueryStatus).await?;
//! assert_eq!(status.status, RunState::Paused);
//! let stop: events::Stop = stops.next().await.expect("an event")?.typed()?;
//! # let _ = stop;
//! # Ok(()) }
//! ```
//!
//! To stay attached to a socket path across QEMU restarts, connect with
//! [`connect_unix_reconnecting`]: calls made while QEMU is away fail at once
//! or wait (within their timeout), and subscriptions carry on, with
//! [`Gap::Disconnected`] and [`Gap::Reconnected`] markers around the outage
//! (events in between are lost).
//!
//! ```no_run
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use qmp_tokio::{Config, Gap, LinkState, Reconnect, WhileReconnecting};
//! # async fn run() -> Result<(), qmp_tokio::Error> {
//! let reconnect = Reconnect::default()
//!     .delays(Duration::from_millis(100), Duration::from_secs(5))
//!     .calls(WhileReconnecting::Wait);
//! let qmp = qmp_tokio::connect_unix_reconnecting("/run/vm.qmp", Config::default(), reconnect).await?;
//! let mut events = qmp.events();
//! qmp.execute_raw("stop", ()).await?; // waits (within its timeout) while QEMU restarts
//! while let Some(item) = events.next().await {
//!     match item {
//!         Ok(event) => println!("{}", event.name()),
//!         Err(Gap::Reconnected { reconnects }) => println!("back ({reconnects}): re-read the state"),
//!         Err(gap) => println!("{gap}"),
//!     }
//! }
//! assert!(matches!(qmp.state(), LinkState::Closed | LinkState::GaveUp { .. }));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use core::time::Duration;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use tokio::io::Interest;
use tokio::net::unix::pipe;
use tokio::net::{TcpStream, UnixStream};
use tokio::runtime::Handle;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

pub use qmp_io::child::{ChildStdio, ChildTransport};
pub use qmp_io::nonblocking::{Io, NoFds, PassFds, Transport};
pub use qmp_io::prelude::*;

/// Every QMP command and event typed: the `qmp-qapi` catalogue. Its
/// commands go to [`Client::execute`], its events to
/// [`EventFilter::of`] and [`Event::typed`].
pub use qmp_qapi as qapi;

/// The async QMP client on tokio.
pub type Client = qmp_io::nonblocking::Client<Tokio>;
/// The async guest-agent client on tokio.
pub type GuestAgent = qmp_io::nonblocking::GuestAgent<Tokio>;
/// The async QMP client on tokio that reconnects across QEMU restarts
/// ([`connect_unix_reconnecting`]).
pub type Reconnecting = qmp_io::nonblocking::Reconnecting<Tokio>;

/// A tokio runtime for the driver: its timer and its spawner. The methods
/// are the crate root's functions, on this runtime.
#[derive(Debug, Clone)]
pub struct Tokio(Handle);

impl Tokio {
    /// The runtime this is called from.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`; use [`Tokio::on`] there.
    pub fn current() -> Self {
        Tokio(Handle::current())
    }

    /// The runtime `handle` belongs to: connections opened through this run
    /// their task, their sockets and their timers there, whichever thread or
    /// executor calls. Every connect function of the crate root is a
    /// constructor of [`Client`] (or [`GuestAgent`]) that takes the runtime:
    ///
    /// ```no_run
    /// # fn run(handle: tokio::runtime::Handle) -> qmp_tokio::Result<()> {
    /// use qmp_tokio::{Client, Config, Tokio};
    /// // From a thread with no tokio context, any executor:
    /// let qmp = futures_executor::block_on(Client::connect_unix(
    ///     Tokio::on(handle),
    ///     "/run/vm/qmp.sock".as_ref(),
    ///     Config::default(),
    /// ))?;
    /// # drop(qmp); Ok(()) }
    /// ```
    pub fn on(handle: Handle) -> Self {
        Tokio(handle)
    }
}

impl qmp_io::nonblocking::Reactor for Tokio {
    type Unix = UnixTransport;
    type Tcp = Io<Compat<TcpStream>>;
    type Child = ChildPipes;

    fn tcp(&self, stream: std::net::TcpStream) -> io::Result<Self::Tcp> {
        let _entered = self.0.enter();
        Ok(TcpStream::try_from(stream)?.into_transport())
    }

    fn unix(&self, stream: std::os::unix::net::UnixStream) -> io::Result<UnixTransport> {
        let _entered = self.0.enter();
        Ok(unix_transport(UnixStream::from_std(stream)?))
    }

    fn child(&self, child: ChildStdio) -> io::Result<ChildPipes> {
        let (stdin, stdout, process) = child.into_pipes();
        let _entered = self.0.enter();
        let read = pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))?;
        let write = pipe::Sender::from_owned_fd(OwnedFd::from(stdin))?;
        Ok(ChildTransport::new(
            read.compat(),
            write.compat_write(),
            process,
        ))
    }

    async fn unblock<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        self.0.spawn_blocking(work).await.map_err(io::Error::other)
    }
}

impl qmp_io::nonblocking::Runtime for Tokio {
    type Sleep = tokio::time::Sleep;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        // The timer is this runtime's, so the sleep can be polled anywhere.
        let _entered = self.0.enter();
        tokio::time::sleep(duration)
    }

    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
        drop(self.0.spawn(task));
    }
}

/// How tokio's unix sockets pass fds.
#[derive(Debug)]
pub enum TokioFds {}

impl PassFds<Compat<UnixStream>> for TokioFds {
    fn poll_send_fds(
        io: &Compat<UnixStream>,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        let socket = io.get_ref();
        loop {
            ready!(socket.poll_write_ready(cx))?;
            // try_io clears tokio's readiness when the socket is full.
            let sent = socket.try_io(Interest::WRITABLE, || {
                qmp_io::fd::send_with_fds(socket.as_fd(), bytes, fds)
            });
            if !matches!(&sent, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                return Poll::Ready(sent);
            }
        }
    }
}

/// A tokio unix socket as a transport that passes fds.
pub type UnixTransport = Io<Compat<UnixStream>, TokioFds>;

/// A child process's stdio as a transport.
pub type ChildPipes = ChildTransport<Compat<pipe::Receiver>, Compat<pipe::Sender>>;

fn unix_transport(stream: UnixStream) -> UnixTransport {
    Io::with_fds(stream.compat())
}

/// A tokio stream [`connect`] takes: a [`UnixStream`] (fds pass) or a
/// [`TcpStream`].
pub trait Stream: sealed::Sealed {
    /// The driver's transport over this stream.
    type Transport: Transport;
    /// Wraps the stream.
    fn into_transport(self) -> Self::Transport;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for tokio::net::UnixStream {}
    impl Sealed for tokio::net::TcpStream {}
}

impl Stream for UnixStream {
    type Transport = UnixTransport;

    fn into_transport(self) -> UnixTransport {
        unix_transport(self)
    }
}

impl Stream for TcpStream {
    type Transport = Io<Compat<TcpStream>>;

    fn into_transport(self) -> Self::Transport {
        Io::new(self.compat())
    }
}

qmp_io::async_adapter_functions!(
    Tokio::current(),
    "on the current tokio runtime (see [`Tokio::on`] for another)"
);
