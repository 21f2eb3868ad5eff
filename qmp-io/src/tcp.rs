//! Connecting to tcp sockets within a timeout, for every adapter.

use core::time::Duration;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Instant;

/// Connects to the first of `addr`'s addresses that accepts within what is
/// left of `timeout`. Blocking: resolving a name may block too.
pub fn connect(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<TcpStream> {
    let started = Instant::now();
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no address accepted a connection within the connect timeout ({timeout:?})"),
        )
    }))
}
