//! Async QMP and QEMU guest agent clients on smol.
//!
//! A thin adapter over [`qmp_io`]'s async driver: it connects (a unix path, a
//! tcp address, an open smol stream, a child process's stdio, or a QEMU it
//! launches), spawns the connection task on smol's global executor (the
//! functions at the crate root) or on an executor of yours (the same
//! constructors on [`Client`] and [`GuestAgent`], given [`Smol::on`]), and
//! re-exports the client API. Handles are
//! cheap to clone, `Send + Sync`, and callable from any thread or executor;
//! dropping a call's future abandons the command.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! # fn main() -> Result<(), qmp_smol::Error> { smol::block_on(async {
//! let (_qemu, qmp) = qmp_smol::launch(qmp_smol::Qemu::builder(), qmp_smol::Config::default()).await?;
//! let mut events = qmp.subscribe(qmp_smol::EventFilter::name("STOP"));
//! qmp.execute_raw("stop", ()).await?;
//! println!("{:?}", events.next().await);
//! # Ok(()) }) }
//! ```
//!
//! Every QMP command and event is typed in [`qapi`] (the `qmp-qapi`
//! catalogue, re-exported); the raw form stays beside it:
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use qmp_smol::qapi::{commands, events, types::RunState};
//! use qmp_smol::{Config, EventFilter};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> { smol::block_on(async {
//! let qmp = qmp_smol::connect_unix("/run/vm.qmp", Config::default()).await?;
//! let mut stops = qmp.subscribe(EventFilter::of::<events::Stop>());
//! qmp.execute(&commands::Stop).await?; // raw: qmp.execute_raw("stop", ()).await
//! let status = qmp.execute(&commands::QueryStatus).await?;
//! assert_eq!(status.status, RunState::Paused);
//! let stop: events::Stop = stops.next().await.expect("an event")?.typed()?;
//! # let _ = stop;
//! # Ok(()) }) }
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
//! use qmp_smol::{Config, Gap, LinkState, Reconnect, WhileReconnecting};
//! # async fn run() -> Result<(), qmp_smol::Error> {
//! let reconnect = Reconnect::default()
//!     .delays(Duration::from_millis(100), Duration::from_secs(5))
//!     .calls(WhileReconnecting::Wait);
//! let qmp = qmp_smol::connect_unix_reconnecting("/run/vm.qmp", Config::default(), reconnect).await?;
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
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::process::{ChildStdin, ChildStdout};
use std::sync::Arc;

use smol::Async;
use smol::net::TcpStream;
use smol::net::unix::UnixStream;

pub use qmp_io::child::{ChildStdio, ChildTransport};
pub use qmp_io::nonblocking::{Io, NoFds, PassFds, Transport};
pub use qmp_io::prelude::*;

/// Every QMP command and event typed: the `qmp-qapi` catalogue. Its
/// commands go to [`Client::execute`], its events to
/// [`EventFilter::of`] and [`Event::typed`].
pub use qmp_qapi as qapi;

/// The async QMP client on smol.
pub type Client = qmp_io::nonblocking::Client<Smol>;
/// The async guest-agent client on smol.
pub type GuestAgent = qmp_io::nonblocking::GuestAgent<Smol>;
/// The async QMP client on smol that reconnects across QEMU restarts
/// ([`connect_unix_reconnecting`]).
pub type Reconnecting = qmp_io::nonblocking::Reconnecting<Smol>;

/// smol's timer and an executor for the connection task: smol's global one
/// (`Smol::default()`, what the crate root's functions use), or one of yours
/// ([`Smol::on`]): the crate root's functions are constructors of
/// [`Client`] and [`GuestAgent`] that take it.
#[derive(Debug, Clone, Default)]
pub struct Smol {
    executor: Option<Arc<smol::Executor<'static>>>,
}

impl Smol {
    /// smol's global executor.
    pub fn global() -> Self {
        Self::default()
    }

    /// Runs connection tasks on `executor`. Driven by the thread that calls
    /// (`smol::block_on(executor.run(..))`), the connection's reads, writes
    /// and wake-ups stay on that thread: no hop to smol's global executor
    /// threads and back for every reply. The executor must be run for as long
    /// as the connection is used.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), qmp_smol::Error> {
    /// use std::sync::Arc;
    ///
    /// let ex = Arc::new(smol::Executor::new());
    /// smol::block_on(ex.run(async {
    ///     let on = qmp_smol::Smol::on(ex.clone());
    ///     let config = qmp_smol::Config::default();
    ///     let qmp = qmp_smol::Client::connect_unix(on, "/run/qmp.sock".as_ref(), config).await?;
    ///     println!("{}", qmp.execute_raw("query-status", ()).await?);
    ///     Ok(())
    /// }))
    /// # }
    /// ```
    pub fn on(executor: Arc<smol::Executor<'static>>) -> Self {
        Smol {
            executor: Some(executor),
        }
    }
}

impl qmp_io::nonblocking::Reactor for Smol {
    type Unix = UnixTransport;
    type Tcp = Io<TcpStream>;
    type Child = ChildPipes;

    fn tcp(&self, stream: std::net::TcpStream) -> io::Result<Self::Tcp> {
        Ok(TcpStream::try_from(stream)?.into_transport())
    }

    fn unix(&self, stream: StdUnixStream) -> io::Result<UnixTransport> {
        Ok(UnixStream::try_from(stream)?.into_transport())
    }

    fn child(&self, child: ChildStdio) -> io::Result<ChildPipes> {
        let (stdin, stdout, process) = child.into_pipes();
        Ok(ChildTransport::new(
            Async::new(stdout)?,
            Async::new(stdin)?,
            process,
        ))
    }

    async fn unblock<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        Ok(smol::unblock(work).await)
    }
}

/// A smol timer as a `Future<Output = ()>`.
#[derive(Debug)]
pub struct Sleep(smol::Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

impl qmp_io::nonblocking::Runtime for Smol {
    type Sleep = Sleep;

    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep(smol::Timer::after(duration))
    }

    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
        match &self.executor {
            Some(executor) => executor.spawn(task).detach(),
            None => smol::spawn(task).detach(),
        }
    }
}

/// How smol's unix sockets pass fds.
#[derive(Debug)]
pub enum SmolFds {}

impl PassFds<UnixStream> for SmolFds {
    fn poll_send_fds(
        io: &UnixStream,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        // Try first, then wait: async-io reports each readiness once.
        loop {
            match qmp_io::fd::send_with_fds(io.as_fd(), bytes, fds) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let socket: Arc<Async<StdUnixStream>> = io.clone().into();
                    ready!(socket.poll_writable(cx))?;
                }
                sent => return Poll::Ready(sent),
            }
        }
    }
}

/// A smol unix socket as a transport that passes fds.
pub type UnixTransport = Io<UnixStream, SmolFds>;

/// A child process's stdio as a transport.
pub type ChildPipes = ChildTransport<Async<ChildStdout>, Async<ChildStdin>>;

/// A smol stream [`connect`] takes: a [`UnixStream`] (fds pass) or a
/// [`TcpStream`].
pub trait Stream: sealed::Sealed {
    /// The driver's transport over this stream.
    type Transport: Transport;
    /// Wraps the stream.
    fn into_transport(self) -> Self::Transport;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for smol::net::unix::UnixStream {}
    impl Sealed for smol::net::TcpStream {}
}

impl Stream for UnixStream {
    type Transport = UnixTransport;

    fn into_transport(self) -> UnixTransport {
        Io::with_fds(self)
    }
}

impl Stream for TcpStream {
    type Transport = Io<TcpStream>;

    fn into_transport(self) -> Self::Transport {
        Io::new(self)
    }
}

qmp_io::async_adapter_functions!(
    Smol::global(),
    "on smol's global executor (see [`Smol::on`] for yours)"
);
