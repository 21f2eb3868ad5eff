//! Connecting to unix sockets without waiting for ever.
//!
//! A connect to a unix listener whose queue of pending connections is full
//! (a QMP monitor serves one client; a few more wait in its short queue)
//! blocks a blocking socket for ever, and fails a nonblocking one with
//! `EAGAIN`, which tokio reports as `WouldBlock` and async-io as
//! `NotConnected`. These functions try again until the listener has room,
//! bounded by a deadline (blocking) or by the caller's timeout (async).

use core::time::Duration;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::config::deadline_after;
use crate::nonblocking::Runtime;

/// How often a connect to a full listener is tried again.
const RETRY: Duration = Duration::from_millis(10);

/// A nonblocking, close-on-exec unix stream socket, not yet connected.
struct Connecting {
    socket: OwnedFd,
    addr: SocketAddrUnix,
}

impl Connecting {
    fn new(path: &Path) -> io::Result<Self> {
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        Ok(Connecting {
            socket: rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?,
            addr: SocketAddrUnix::new(path)?,
        })
    }

    /// One try: `false` when the listener's queue is full. A unix stream
    /// connect never completes later: it is done, or it must be made again.
    fn attempt(&self) -> io::Result<bool> {
        loop {
            match rustix::net::connect(&self.socket, &self.addr) {
                Ok(()) => return Ok(true),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Connects to the unix socket at `path`, giving up with
/// [`io::ErrorKind::TimedOut`] after `timeout` while the listener's queue is
/// full. The stream is blocking.
pub fn connect_blocking(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let connecting = Connecting::new(path)?;
    let deadline = deadline_after(timeout);
    while !connecting.attempt()? {
        let pause = match deadline {
            None => RETRY,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(RETRY),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connect timed out: the listener accepts no more connections",
                    ));
                }
            },
        };
        std::thread::sleep(pause);
    }
    rustix::io::ioctl_fionbio(&connecting.socket, false)?;
    Ok(UnixStream::from(connecting.socket))
}

/// Connects to the unix socket at `path`, trying again on `runtime`'s timer
/// while the listener's queue is full, for as long as the caller waits (put
/// a timeout around it). The stream is nonblocking, ready for the runtime.
pub async fn connect<R: Runtime>(runtime: &R, path: &Path) -> io::Result<UnixStream> {
    let connecting = Connecting::new(path)?;
    while !connecting.attempt()? {
        runtime.sleep(RETRY).await;
    }
    Ok(UnixStream::from(connecting.socket))
}
