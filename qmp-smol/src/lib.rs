//! Async QMP and QEMU guest agent clients on smol.
//!
//! A thin adapter over [`qmp_io`]'s async driver: it connects (unix path, tcp
//! address, an open stream, or a QEMU it launches), spawns the connection task
//! on smol's global executor (or an executor of yours, [`Smol::on`]), and
//! re-exports the client API. Handles are cheap
//! to clone, `Send + Sync`; dropping a call's future abandons the command.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! # fn main() -> Result<(), qmp_smol::Error> { smol::block_on(async {
//! let (_qemu, qmp) = qmp_smol::launch(qmp_smol::Qemu::builder(), qmp_smol::Config::default()).await?;
//! let mut events = qmp.subscribe(qmp_smol::EventFilter::name("STOP"));
//! qmp.execute_raw("stop", None).await?;
//! println!("{:?}", events.next().await);
//! # Ok(()) }) }
//! ```
#![deny(missing_docs)]

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use core::time::Duration;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::sync::Arc;

use smol::Async;
use smol::net::AsyncToSocketAddrs;

pub use qmp_io::nonblocking::{Io, NoFds, PassFds, Transport};
pub use qmp_io::prelude::*;

/// The async QMP client on smol.
pub type Client = qmp_io::nonblocking::Client<Smol>;
/// The async guest-agent client on smol.
pub type GuestAgent = qmp_io::nonblocking::GuestAgent<Smol>;

/// smol's timer and an executor for the connection task: smol's global one
/// (`Smol::default()`), or one of yours.
#[derive(Debug, Clone, Default)]
pub struct Smol {
    executor: Option<Arc<smol::Executor<'static>>>,
}

impl Smol {
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
    ///     let stream = std::os::unix::net::UnixStream::connect("/run/qmp.sock")?;
    ///     let transport = qmp_smol::unix_transport(stream)?;
    ///     let runtime = qmp_smol::Smol::on(ex.clone());
    ///     let qmp = qmp_smol::Client::connect(runtime, transport, qmp_smol::Config::default()).await?;
    ///     println!("{}", qmp.execute_raw("query-status", None).await?);
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

impl PassFds<Async<StdUnixStream>> for SmolFds {
    fn poll_send_fds(
        io: &Async<StdUnixStream>,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        // Try first, then wait: async-io reports each readiness once.
        loop {
            match qmp_io::fd::send_with_fds(io.as_fd(), bytes, fds) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready!(io.poll_writable(cx))?,
                sent => return Poll::Ready(sent),
            }
        }
    }
}

/// A smol unix socket as a transport that passes fds.
pub type UnixTransport = Io<Async<StdUnixStream>, SmolFds>;

/// Wraps a std unix socket for smol (fds pass); sets it nonblocking.
pub fn unix_transport(stream: StdUnixStream) -> io::Result<UnixTransport> {
    Ok(Io::with_fds(Async::new(stream)?))
}

/// Runs `connect` within the connect timeout, then leaves what is left of it
/// to the handshake: one budget covers both.
async fn within<T>(config: &mut Config, connect: impl Future<Output = io::Result<T>>) -> Result<T> {
    let started = std::time::Instant::now();
    let timeout = config.connect_timeout;
    let expired = async {
        smol::Timer::after(timeout).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
    };
    let connected = smol::future::or(connect, expired).await;
    config.connect_timeout = timeout.saturating_sub(started.elapsed());
    Ok(connected?)
}

/// A unix socket connected within the connect timeout (also when the
/// listener's queue is full: see [`qmp_io::unix::connect`]).
async fn unix(path: &Path, config: &mut Config) -> Result<UnixTransport> {
    let stream = within(config, qmp_io::unix::connect(&Smol::default(), path)).await?;
    Ok(unix_transport(stream)?)
}

/// Connects to a QMP unix socket and runs the handshake.
pub async fn connect_unix(path: impl AsRef<Path>, mut config: Config) -> Result<Client> {
    let transport = unix(path.as_ref(), &mut config).await?;
    connect(transport, config).await
}

/// Connects to a QMP tcp socket (`-qmp tcp:HOST:PORT,server=on`; an address
/// or a `"host:port"` string) and runs the handshake.
pub async fn connect_tcp(addr: impl AsyncToSocketAddrs, mut config: Config) -> Result<Client> {
    let stream = within(&mut config, smol::net::TcpStream::connect(addr)).await?;
    connect(Io::new(stream), config).await
}

/// Runs the QMP handshake on a stream that is already open (wrap a
/// futures-io stream in [`Io`], a std unix socket with [`unix_transport`]).
pub async fn connect(transport: impl Transport, config: Config) -> Result<Client> {
    Client::connect(Smol::default(), transport, config).await
}

/// Launches a private QEMU and connects to its QMP socket. The process is
/// killed and reaped when the returned [`Qemu`] is dropped.
pub async fn launch(qemu: QemuBuilder, config: Config) -> Result<(Qemu, Client)> {
    let qemu = smol::unblock(move || qemu.spawn()).await?;
    let client = connect_unix(qemu.qmp_path(), config).await?;
    Ok((qemu, client))
}

/// Connects to a guest agent's unix socket and synchronises.
pub async fn connect_guest_agent(path: impl AsRef<Path>, mut config: Config) -> Result<GuestAgent> {
    let transport = unix(path.as_ref(), &mut config).await?;
    GuestAgent::connect(Smol::default(), transport, config).await
}
