//! One round of the floor on an async runtime's reactor: `out` (a round's
//! commands) written and the replies read until `n` LFs came, every wait
//! through the runtime, nothing parsed. Shared by the round-trip bench and
//! the `in_flight` example.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

/// The LFs in one read into `buf`; `None` when it would block.
fn lines(read: std::io::Result<usize>, buf: &[u8]) -> Option<usize> {
    match read {
        Ok(0) => panic!("floor: end of stream"),
        Ok(k) => Some(memchr::memchr_iter(b'\n', &buf[..k]).count()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => panic!("floor: read: {e}"),
    }
}

/// On tokio's reactor: `writable`/`try_write`, then `readable`/`try_read`,
/// as tokio's own stream does. Returns the LFs seen.
pub(crate) async fn tokio_round(
    stream: &tokio::net::UnixStream,
    out: &[u8],
    buf: &mut [u8],
    n: usize,
) -> usize {
    let mut written = 0;
    while written < out.len() {
        stream.writable().await.expect("floor: writable");
        match stream.try_write(&out[written..]) {
            Ok(k) => written += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("floor: write: {e}"),
        }
    }
    let mut seen = 0;
    while seen < n {
        stream.readable().await.expect("floor: readable");
        let read = stream.try_read(buf);
        seen += lines(read, buf).unwrap_or(0);
    }
    seen
}

/// On async-io's reactor (smol's): `write_with`, then `read_with`, as
/// `Async<UnixStream>`'s own reads. Returns the LFs seen.
pub(crate) async fn async_io_round(
    stream: &smol::Async<UnixStream>,
    out: &[u8],
    buf: &mut [u8],
    n: usize,
) -> usize {
    let mut written = 0;
    while written < out.len() {
        written += stream
            .write_with(|s| (&*s).write(&out[written..]))
            .await
            .expect("floor: write");
    }
    let mut seen = 0;
    while seen < n {
        let read = stream.read_with(|s| (&*s).read(&mut *buf)).await;
        seen += lines(read, buf).unwrap_or(0);
    }
    seen
}
