//! The streams the blocking driver runs on, and the type-erased halves it
//! keeps of them.

use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use rustix::event::PollFlags;

/// A byte stream the blocking driver can run on: std `Read + Write`, plus
/// its file descriptor, which callers poll so that a call's deadline bounds
/// its wait for the reply and for room to write (sockets, but pipes work
/// too: they are written with plain blocking writes).
pub trait Stream: Read + Write + AsFd + Send + Sized + 'static {
    /// A second handle to the same stream, for reading.
    fn try_clone(&self) -> io::Result<Self>;
    /// Shuts both directions down, so a thread blocked reading returns.
    fn shutdown(&self) -> io::Result<()>;
    /// The socket to pass fds on, for streams that can (unix sockets).
    fn fd_socket(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl Stream for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }

    fn shutdown(&self) -> io::Result<()> {
        UnixStream::shutdown(self, std::net::Shutdown::Both)
    }

    fn fd_socket(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl Stream for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }

    fn shutdown(&self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Both)
    }
}

/// The write half, with the stream type erased so handles are not generic.
pub(super) trait WriteHalf: Write + Send {
    fn shutdown_both(&self) -> io::Result<()>;
    fn socket(&self) -> Option<BorrowedFd<'_>>;
    fn fd(&self) -> BorrowedFd<'_>;
}

impl<S: Stream> WriteHalf for S {
    fn shutdown_both(&self) -> io::Result<()> {
        Stream::shutdown(self)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.fd_socket()
    }
}

/// The read half, type-erased like the write half.
pub(super) trait ReadStream: Read + AsFd + Send {}

impl<S: Read + AsFd + Send> ReadStream for S {}

/// Waits until `fd` is ready for `events` (or hung up); false on timeout.
pub(super) fn wait_ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    use rustix::event::{PollFd, Timespec, poll};
    let timeout = timeout.map(|t| {
        Timespec::try_from(t).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        })
    });
    let mut fds = [PollFd::new(&fd, events)];
    loop {
        match poll(&mut fds, timeout.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
