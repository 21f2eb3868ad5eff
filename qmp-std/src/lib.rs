//! Blocking QMP and QEMU guest agent clients over std sockets.
//!
//! A thin adapter over [`qmp_io`]'s blocking driver: it connects (unix path,
//! tcp address, an open stream, or a QEMU it launches) and re-exports the
//! client API. The handles are cheap to clone and usable from many threads.
//!
//! ```no_run
//! # fn main() -> Result<(), qmp_std::Error> {
//! let (_qemu, qmp) = qmp_std::launch(qmp_std::Qemu::builder(), qmp_std::Config::default())?;
//! println!("QEMU {}", qmp.greeting().version);
//! let events = qmp.subscribe(qmp_std::EventFilter::name("STOP"));
//! qmp.execute_raw("stop", None)?;
//! println!("{:?}", events.recv());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;

pub use qmp_io::blocking::{Client, GuestAgent, Stream};
pub use qmp_io::prelude::*;

/// Connects to a QMP unix socket and runs the handshake. The connect timeout
/// covers the connect (a listener with a full queue) and the greeting together.
pub fn connect_unix(path: impl AsRef<Path>, config: Config) -> Result<Client> {
    let (stream, config) = unix(path.as_ref(), config)?;
    Client::connect(stream, config)
}

/// A unix socket connected within the connect timeout, and the config with
/// what is left of it for the handshake.
fn unix(path: &Path, mut config: Config) -> Result<(UnixStream, Config)> {
    let started = std::time::Instant::now();
    let stream = qmp_io::unix::connect_blocking(path, config.connect_timeout)?;
    config.connect_timeout = config.connect_timeout.saturating_sub(started.elapsed());
    Ok((stream, config))
}

/// Connects to a QMP tcp socket (`-qmp tcp:HOST:PORT,server=on`) and runs the
/// handshake. The connect timeout covers the tcp connect and the greeting
/// together.
pub fn connect_tcp(addr: impl ToSocketAddrs, mut config: Config) -> Result<Client> {
    let started = std::time::Instant::now();
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        let left = config.connect_timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            last = Some(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ));
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                config.connect_timeout = config.connect_timeout.saturating_sub(started.elapsed());
                return Client::connect(stream, config);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))
        .into())
}

/// Runs the QMP handshake on a stream that is already open.
pub fn connect(stream: impl Stream, config: Config) -> Result<Client> {
    Client::connect(stream, config)
}

/// Launches a private QEMU and connects to its QMP socket. The process is
/// killed and reaped when the returned [`Qemu`] is dropped.
pub fn launch(qemu: QemuBuilder, config: Config) -> Result<(Qemu, Client)> {
    let qemu = qemu.spawn()?;
    let client = connect_unix(qemu.qmp_path(), config)?;
    Ok((qemu, client))
}

/// Connects to a guest agent's unix socket and synchronises, within the
/// connect timeout.
pub fn connect_guest_agent(path: impl AsRef<Path>, config: Config) -> Result<GuestAgent> {
    let (stream, config) = unix(path.as_ref(), config)?;
    GuestAgent::connect(stream, config)
}
