//! The streams the blocking driver runs on, and the type-erased halves it
//! keeps of them.

use core::time::Duration;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use rustix::event::PollFlags;

use crate::child::{ChildReader, ChildStdio, ChildWriter};

/// A byte stream the blocking driver can run on: a unix or tcp socket, a
/// child process's stdio ([`ChildStdio`]), or your own. It splits into a
/// read half and a write half; callers poll their file descriptors, so a
/// call's deadline bounds its wait for the reply and for room to write.
pub trait Stream: Send + 'static {
    /// What the driver reads from.
    type Reader: Read + AsFd + Send + 'static;
    /// What the driver writes to.
    type Writer: WriteStream;
    /// The two halves (for a socket: a second handle to it, and itself).
    fn split(self) -> io::Result<(Self::Reader, Self::Writer)>;
}

/// The write half of a [`Stream`].
pub trait WriteStream: Write + AsFd + Send + 'static {
    /// Ends the stream both ways, so a thread blocked reading returns.
    fn shutdown(&self) -> io::Result<()>;
    /// The socket to pass fds on, for streams that can (unix sockets).
    fn fd_socket(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl Stream for UnixStream {
    type Reader = UnixStream;
    type Writer = UnixStream;

    fn split(self) -> io::Result<(UnixStream, UnixStream)> {
        Ok((self.try_clone()?, self))
    }
}

impl WriteStream for UnixStream {
    fn shutdown(&self) -> io::Result<()> {
        UnixStream::shutdown(self, std::net::Shutdown::Both)
    }

    fn fd_socket(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl Stream for TcpStream {
    type Reader = TcpStream;
    type Writer = TcpStream;

    fn split(self) -> io::Result<(TcpStream, TcpStream)> {
        Ok((self.try_clone()?, self))
    }
}

impl WriteStream for TcpStream {
    fn shutdown(&self) -> io::Result<()> {
        TcpStream::shutdown(self, std::net::Shutdown::Both)
    }
}

/// A child's stdout to read and its stdin to write (made nonblocking, so a
/// write gives up at the call's deadline like a socket's).
impl Stream for ChildStdio {
    type Reader = ChildReader;
    type Writer = ChildWriter;

    fn split(self) -> io::Result<(ChildReader, ChildWriter)> {
        let (writer, reader) = self.into_blocking()?;
        Ok((reader, writer))
    }
}

impl WriteStream for ChildWriter {
    /// Kills the child: its stdout ends, and with it a read blocked on it.
    fn shutdown(&self) -> io::Result<()> {
        self.kill();
        Ok(())
    }
}

/// The write half, with the stream type erased so handles are not generic.
pub(super) trait WriteHalf: Write + Send {
    fn shutdown_both(&self) -> io::Result<()>;
    fn socket(&self) -> Option<BorrowedFd<'_>>;
    fn fd(&self) -> BorrowedFd<'_>;
}

impl<S: WriteStream> WriteHalf for S {
    fn shutdown_both(&self) -> io::Result<()> {
        WriteStream::shutdown(self)
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
