//! Async QMP and QEMU guest agent clients on smol.
//!
//! A thin adapter over [`qmp_io`]'s async driver: it connects (unix path, tcp
//! address, an open stream, or a QEMU it launches), spawns the connection task
//! on smol's global executor, and re-exports the client API. Handles are cheap
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
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;

use smol::Async;
use smol::io::{AsyncRead, AsyncWrite};

pub use qmp_io::mock::{MockQemu, MockReply, MockRequest};
pub use qmp_io::nonblocking::{Plain, Transport};
pub use qmp_io::qemu::{GuestAgentBuilder, GuestAgentProcess, Qemu, QemuBuilder};
pub use qmp_io::{
    AddFdInfo, Call, Command, CommandError, Config, Disconnect, Empty, Error, Event, EventFilter,
    Greeting, Json, Lagged, Result, Subscription, Timestamp, Version,
};

/// The async QMP client on smol.
pub type Client = qmp_io::nonblocking::Client<Smol>;
/// The async guest-agent client on smol.
pub type GuestAgent = qmp_io::nonblocking::GuestAgent<Smol>;

/// smol's timer and global executor, for the driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

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
        smol::spawn(task).detach();
    }
}

/// A unix socket as a [`Transport`] that passes fds.
#[derive(Debug)]
pub struct UnixTransport(pub Async<StdUnixStream>);

impl AsyncRead for UnixTransport {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for UnixTransport {
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
        Pin::new(&mut self.0).poll_close(cx)
    }
}

impl Transport for UnixTransport {
    fn can_pass_fds(&self) -> bool {
        true
    }

    fn poll_send_fds(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            match qmp_io::fd::send_with_fds(self.0.as_fd(), bytes, fds) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.0.poll_writable(cx))?;
                }
                sent => return Poll::Ready(sent),
            }
        }
    }
}

async fn within<T>(timeout: Duration, connect: impl Future<Output = io::Result<T>>) -> Result<T> {
    let expired = async {
        smol::Timer::after(timeout).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
    };
    Ok(smol::future::or(connect, expired).await?)
}

async fn unix(path: &Path, config: &Config) -> Result<UnixTransport> {
    let stream = within(
        config.connect_timeout,
        Async::<StdUnixStream>::connect(path),
    )
    .await?;
    Ok(UnixTransport(stream))
}

/// Connects to a QMP unix socket and runs the handshake.
pub async fn connect_unix(path: impl AsRef<Path>, config: Config) -> Result<Client> {
    let transport = unix(path.as_ref(), &config).await?;
    connect(transport, config).await
}

/// Connects to a QMP tcp socket and runs the handshake.
pub async fn connect_tcp(addr: SocketAddr, config: Config) -> Result<Client> {
    let stream = within(config.connect_timeout, smol::net::TcpStream::connect(addr)).await?;
    connect(Plain(stream), config).await
}

/// Runs the QMP handshake on a stream that is already open (wrap plain
/// futures-io streams in [`Plain`]).
pub async fn connect(transport: impl Transport, config: Config) -> Result<Client> {
    Client::connect(Smol, transport, config).await
}

/// Launches a private QEMU and connects to its QMP socket. The process is
/// killed and reaped when the returned [`Qemu`] is dropped.
pub async fn launch(qemu: QemuBuilder, config: Config) -> Result<(Qemu, Client)> {
    let qemu = smol::unblock(move || qemu.spawn()).await?;
    let client = connect_unix(qemu.qmp_path(), config).await?;
    Ok((qemu, client))
}

/// Connects to a guest agent's unix socket and synchronises.
pub async fn connect_guest_agent(path: impl AsRef<Path>, config: Config) -> Result<GuestAgent> {
    let transport = unix(path.as_ref(), &config).await?;
    GuestAgent::connect(Smol, transport, config).await
}
