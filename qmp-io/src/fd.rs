//! Passing file descriptors over unix stream sockets (`SCM_RIGHTS`).
//!
//! QEMU takes file descriptors for `getfd` and `add-fd` this way. It keeps only
//! the descriptors of its most recent read that carried any, so the descriptors
//! must travel with the bytes of the command that uses them: [`send_with_fds`]
//! sends both in one `sendmsg`.

use core::mem::MaybeUninit;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

/// The most file descriptors [`send_with_fds`] sends, and [`recv_with_fds`]
/// accepts, in one message.
///
/// QEMU needs one per command; the bound keeps the control buffers on the stack.
pub const MAX_FDS_PER_MESSAGE: usize = 16;

const CONTROL_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE));

/// Sends `bytes` with `fds` attached, in one `sendmsg` call.
///
/// Returns how many bytes were written, which may be fewer than `bytes.len()`;
/// the descriptors go with the first byte, so the caller sends the rest without
/// them. With no `fds` this is a plain send. `SIGPIPE` is never raised: a closed
/// peer gives [`io::ErrorKind::BrokenPipe`]. A nonblocking socket with a full
/// buffer gives [`io::ErrorKind::WouldBlock`], and nothing (neither bytes nor
/// descriptors) was sent. `EINTR` is retried.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] if `fds` holds more than
/// [`MAX_FDS_PER_MESSAGE`] descriptors, or if `fds` is not empty but `bytes` is
/// (descriptors cannot travel without at least one byte); otherwise the error
/// of `sendmsg`.
pub fn send_with_fds(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    send_fds_flags(socket, bytes, fds, SendFlags::NOSIGNAL)
}

/// [`send_with_fds`] that never blocks, whatever the socket's mode: a full
/// buffer gives [`io::ErrorKind::WouldBlock`] (`MSG_DONTWAIT`).
pub(crate) fn try_send_with_fds(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    send_fds_flags(
        socket,
        bytes,
        fds,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    )
}

fn send_fds_flags(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: SendFlags,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot send {} file descriptors in one message (at most {MAX_FDS_PER_MESSAGE})",
                fds.len()
            ),
        ));
    }
    if bytes.is_empty() {
        if fds.is_empty() {
            return Ok(0);
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file descriptors need at least one byte of data to travel with",
        ));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        // CONTROL_SPACE is sized for MAX_FDS_PER_MESSAGE, checked above.
        return Err(io::Error::other(
            "control buffer too small for the descriptors",
        ));
    }
    let iov = [IoSlice::new(bytes)];
    loop {
        match sendmsg(socket, &iov, &mut control, flags) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives bytes into `buf` with one `recvmsg` call, appending any file
/// descriptors that came with them to `fds`.
///
/// Returns how many bytes were read; `0` means the peer closed the connection.
/// Received descriptors are close-on-exec. At most [`MAX_FDS_PER_MESSAGE`]
/// descriptors are accepted per call: the kernel closes any beyond that, and a
/// warning is logged. A nonblocking socket with nothing to read gives
/// [`io::ErrorKind::WouldBlock`]. `EINTR` is retried.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] if `buf` is empty (a zero-byte read could not
/// be told apart from the end of the stream); otherwise the error of `recvmsg`.
pub fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    if buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "recv_with_fds needs a non-empty buffer",
        ));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => break msg,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        // The bytes are already consumed, so failing would lose them; the
        // descriptors that did not fit are gone either way.
        tracing::warn!(
            max = MAX_FDS_PER_MESSAGE,
            "peer sent more file descriptors than fit; the kernel closed the rest"
        );
    }
    Ok(msg.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
        let (a, b) = (rustix::fs::fstat(a).unwrap(), rustix::fs::fstat(b).unwrap());
        a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    #[test]
    fn pipe_end_travels_and_still_works() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut reader, writer) = std::io::pipe().unwrap();
        let sent = send_with_fds(a.as_fd(), b"x", &[writer.as_fd()]).unwrap();
        assert_eq!(sent, 1);
        drop(writer);

        let mut buf = [0u8; 8];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"x");
        assert_eq!(fds.len(), 1);

        let mut received = File::from(fds.pop().unwrap());
        received.write_all(b"through the pipe").unwrap();
        drop(received);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through the pipe");
    }

    #[test]
    fn several_fds_arrive_in_order_and_close_on_exec() {
        let (a, b) = UnixStream::pair().unwrap();
        let exe = File::open(std::env::current_exe().unwrap()).unwrap();
        let (reader, writer) = std::io::pipe().unwrap();
        let sent = [exe.as_fd(), reader.as_fd(), writer.as_fd()];
        assert_eq!(send_with_fds(a.as_fd(), b"{}", &sent).unwrap(), 2);

        let mut buf = [0u8; 8];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"{}");
        assert_eq!(fds.len(), sent.len());
        for (original, got) in sent.iter().zip(&fds) {
            assert!(same_file(*original, got.as_fd()));
            assert!(
                rustix::io::fcntl_getfd(got)
                    .unwrap()
                    .contains(rustix::io::FdFlags::CLOEXEC)
            );
        }
        assert!(!same_file(fds[0].as_fd(), fds[1].as_fd()));
    }

    #[test]
    fn appends_to_existing_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        let exe = File::open(std::env::current_exe().unwrap()).unwrap();
        let mut fds = vec![OwnedFd::from(exe.try_clone().unwrap())];
        send_with_fds(a.as_fd(), b"1", &[exe.as_fd()]).unwrap();
        let mut buf = [0u8; 1];
        recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(fds.len(), 2);
    }

    #[test]
    fn plain_bytes_without_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(send_with_fds(a.as_fd(), b"hello", &[]).unwrap(), 5);
        assert_eq!(send_with_fds(a.as_fd(), b"", &[]).unwrap(), 0);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert!(fds.is_empty());
    }

    #[test]
    fn end_of_stream_reads_zero() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), 0);
    }

    #[test]
    fn closed_peer_is_broken_pipe() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let err = send_with_fds(a.as_fd(), b"x", &[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn full_nonblocking_socket_would_block() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let chunk = [0u8; 4096];
        let mut filled = false;
        // The default buffer is a few hundred KiB; the bound only stops a runaway.
        for _ in 0..100_000 {
            match send_with_fds(a.as_fd(), &chunk, &[]) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    filled = true;
                    break;
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert!(filled, "socket never filled up");
        let err = send_with_fds(a.as_fd(), b"x", &[b.as_fd()]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

        // Reading an empty nonblocking socket whose peer is still open.
        let (_e, f) = UnixStream::pair().unwrap();
        f.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4];
        let err = recv_with_fds(f.as_fd(), &mut buf, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_fd();

        let too_many = vec![fd; MAX_FDS_PER_MESSAGE + 1];
        let err = send_with_fds(fd, b"x", &too_many).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let err = send_with_fds(fd, b"", &[fd]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        let err = recv_with_fds(fd, &mut [], &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn maximum_fd_count_is_accepted() {
        let (a, b) = UnixStream::pair().unwrap();
        let exe = File::open(std::env::current_exe().unwrap()).unwrap();
        let all = vec![exe.as_fd(); MAX_FDS_PER_MESSAGE];
        send_with_fds(a.as_fd(), b"x", &all).unwrap();
        let mut fds = Vec::new();
        recv_with_fds(b.as_fd(), &mut [0u8; 1], &mut fds).unwrap();
        assert_eq!(fds.len(), MAX_FDS_PER_MESSAGE);
        assert!(fds.iter().all(|f| same_file(f.as_fd(), exe.as_fd())));
    }
}
