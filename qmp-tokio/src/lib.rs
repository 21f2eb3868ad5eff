//! Async QMP and QEMU guest agent clients on tokio.
//!
//! A thin adapter over [`qmp_io`]'s async driver: it connects (unix path, tcp
//! address, an open stream, or a QEMU it launches), spawns the connection task
//! on the current tokio runtime, and re-exports the client API. Handles are
//! cheap to clone, `Send + Sync`; dropping a call's future abandons the command.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! # async fn run() -> Result<(), qmp_tokio::Error> {
//! let (_qemu, qmp) = qmp_tokio::launch(qmp_tokio::Qemu::builder(), qmp_tokio::Config::default()).await?;
//! let mut events = qmp.subscribe(qmp_tokio::EventFilter::name("STOP"));
//! qmp.execute_raw("stop", None).await?;
//! println!("{:?}", events.next().await);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use core::time::Duration;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use tokio::io::Interest;
use tokio::net::{TcpStream, ToSocketAddrs, UnixStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

pub use qmp_io::nonblocking::{Io, NoFds, PassFds, Transport};
pub use qmp_io::prelude::*;

/// The async QMP client on tokio.
pub type Client = qmp_io::nonblocking::Client<Tokio>;
/// The async guest-agent client on tokio.
pub type GuestAgent = qmp_io::nonblocking::GuestAgent<Tokio>;

/// tokio's timer and spawner, for the driver.
#[derive(Debug, Clone)]
pub struct Tokio(tokio::runtime::Handle);

impl Tokio {
    /// The runtime this is called from (panics outside one, like `tokio::spawn`).
    pub fn current() -> Self {
        Tokio(tokio::runtime::Handle::current())
    }
}

impl qmp_io::nonblocking::Runtime for Tokio {
    type Sleep = tokio::time::Sleep;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
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

/// Wraps a tokio unix socket (fds pass).
pub fn unix_transport(stream: UnixStream) -> UnixTransport {
    Io::with_fds(stream.compat())
}

/// Wraps any other tokio stream (no fd passing).
pub fn plain_transport<T>(stream: T) -> Io<Compat<T>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Io::new(stream.compat())
}

/// Runs `connect` within the connect timeout, then leaves what is left of it
/// to the handshake: one budget covers both.
async fn within<T>(config: &mut Config, connect: impl Future<Output = io::Result<T>>) -> Result<T> {
    let started = std::time::Instant::now();
    let connected = tokio::time::timeout(config.connect_timeout, connect).await;
    config.connect_timeout = config.connect_timeout.saturating_sub(started.elapsed());
    match connected {
        Ok(r) => Ok(r?),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out").into()),
    }
}

/// A unix socket connected within the connect timeout (also when the
/// listener's queue is full: see [`qmp_io::unix::connect`]).
async fn unix(path: &Path, config: &mut Config) -> Result<UnixTransport> {
    let stream = within(config, qmp_io::unix::connect(&Tokio::current(), path)).await?;
    Ok(unix_transport(UnixStream::from_std(stream)?))
}

/// Connects to a QMP unix socket and runs the handshake.
pub async fn connect_unix(path: impl AsRef<Path>, mut config: Config) -> Result<Client> {
    let transport = unix(path.as_ref(), &mut config).await?;
    connect(transport, config).await
}

/// Connects to a QMP tcp socket and runs the handshake.
pub async fn connect_tcp(addr: impl ToSocketAddrs, mut config: Config) -> Result<Client> {
    let stream = within(&mut config, TcpStream::connect(addr)).await?;
    connect(plain_transport(stream), config).await
}

/// Runs the QMP handshake on a stream that is already open.
pub async fn connect(transport: impl Transport, config: Config) -> Result<Client> {
    Client::connect(Tokio::current(), transport, config).await
}

/// Launches a private QEMU and connects to its QMP socket. The process is
/// killed and reaped when the returned [`Qemu`] is dropped.
pub async fn launch(qemu: QemuBuilder, config: Config) -> Result<(Qemu, Client)> {
    let qemu = tokio::task::spawn_blocking(move || qemu.spawn())
        .await
        .map_err(io::Error::other)??;
    let client = connect_unix(qemu.qmp_path(), config).await?;
    Ok((qemu, client))
}

/// Connects to a guest agent's unix socket and synchronises.
pub async fn connect_guest_agent(path: impl AsRef<Path>, mut config: Config) -> Result<GuestAgent> {
    let transport = unix(path.as_ref(), &mut config).await?;
    GuestAgent::connect(Tokio::current(), transport, config).await
}
