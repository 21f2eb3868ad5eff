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

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, ToSocketAddrs, UnixStream};

pub use qmp_io::mock::{MockQemu, MockReply, MockRequest};
pub use qmp_io::nonblocking::Transport;
pub use qmp_io::qemu::{GuestAgentBuilder, GuestAgentProcess, Qemu, QemuBuilder};
pub use qmp_io::{
    AddFdInfo, Call, Command, CommandError, Config, Disconnect, Empty, Error, Event, EventFilter,
    Greeting, Json, Lagged, Result, Subscription, Timestamp, Version,
};

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

/// A tokio stream as a [`Transport`]; unix sockets can pass fds.
#[derive(Debug)]
pub struct TokioStream<T>(pub T);

impl<T: AsyncRead + Unpin> futures_io::AsyncRead for TokioStream<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

impl<T: AsyncWrite + Unpin> futures_io::AsyncWrite for TokioStream<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Transport for TokioStream<UnixStream> {
    fn can_pass_fds(&self) -> bool {
        true
    }

    fn poll_send_fds(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        let s = &self.0;
        loop {
            ready!(s.poll_write_ready(cx))?;
            let sent = s.try_io(Interest::WRITABLE, || {
                qmp_io::fd::send_with_fds(s.as_fd(), bytes, fds)
            });
            if !matches!(&sent, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                return Poll::Ready(sent);
            }
        }
    }
}

impl Transport for TokioStream<TcpStream> {}

async fn within<T>(timeout: Duration, connect: impl Future<Output = io::Result<T>>) -> Result<T> {
    match tokio::time::timeout(timeout, connect).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out").into()),
    }
}

/// Connects to a QMP unix socket and runs the handshake.
pub async fn connect_unix(path: impl AsRef<Path>, config: Config) -> Result<Client> {
    let stream = within(config.connect_timeout, UnixStream::connect(path)).await?;
    connect(TokioStream(stream), config).await
}

/// Connects to a QMP tcp socket and runs the handshake.
pub async fn connect_tcp(addr: impl ToSocketAddrs, config: Config) -> Result<Client> {
    let stream = within(config.connect_timeout, TcpStream::connect(addr)).await?;
    connect(TokioStream(stream), config).await
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
pub async fn connect_guest_agent(path: impl AsRef<Path>, config: Config) -> Result<GuestAgent> {
    let stream = within(config.connect_timeout, UnixStream::connect(path)).await?;
    GuestAgent::connect(Tokio::current(), TokioStream(stream), config).await
}
