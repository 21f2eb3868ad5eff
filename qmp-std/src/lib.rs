//! Blocking QMP and QEMU guest agent clients over std sockets and pipes.
//!
//! A thin adapter over [`qmp_io`]'s blocking driver: it connects (a unix
//! path, a tcp address, an open stream, a child process's stdio, or a QEMU it
//! launches) and re-exports the client API. The handles are cheap to clone
//! and usable from many threads, and from inside any async executor's
//! blocking-friendly threads.
//!
//! ```no_run
//! # fn main() -> Result<(), qmp_std::Error> {
//! let (_qemu, qmp) = qmp_std::launch(qmp_std::Qemu::builder(), qmp_std::Config::default())?;
//! println!("QEMU {}", qmp.greeting().version);
//! let events = qmp.subscribe(qmp_std::EventFilter::name("STOP"));
//! qmp.execute_raw("stop", ())?;
//! println!("{:?}", events.recv());
//! # Ok(()) }
//! ```
//!
//! Every QMP command and event is typed in [`qapi`] (the `qmp-qapi`
//! catalogue, re-exported); the raw form stays beside it:
//!
//! ```no_run
//! use qmp_std::qapi::{commands, events, types::RunState};
//! use qmp_std::{Config, EventFilter};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let qmp = qmp_std::connect_unix("/run/vm.qmp", Config::default())?;
//! let stops = qmp.subscribe(EventFilter::of::<events::Stop>());
//! qmp.execute(&commands::Stop)?; // raw: qmp.execute_raw("stop", ())
//! let status = qmp.execute(&commands::QueryStatus)?;
//! assert_eq!(status.status, RunState::Paused);
//! let stop: events::Stop = stops.recv().expect("an event")?.typed()?;
//! # let _ = stop;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::net::ToSocketAddrs;
use std::path::Path;

pub use qmp_io::blocking::{Client, GuestAgent, Reconnecting, Stream, WriteStream};
pub use qmp_io::child::ChildStdio;
pub use qmp_io::prelude::*;

/// Every QMP command and event typed: the `qmp-qapi` catalogue. Its
/// commands go to [`Client::execute`], its events to
/// [`EventFilter::of`] and [`Event::typed`].
pub use qmp_qapi as qapi;

/// Connects to a QMP unix socket and runs the handshake. The connect timeout
/// covers the connect (a listener with a full queue) and the greeting
/// together.
pub fn connect_unix(path: impl AsRef<Path>, config: Config) -> Result<Client> {
    let path = path.as_ref();
    Client::connect_with(config, |timeout| {
        qmp_io::unix::connect_blocking(path, timeout)
    })
}

/// Connects to a QMP unix socket and stays attached to its path across QEMU
/// restarts, reconnecting as `reconnect` says (backoff, what calls do
/// meanwhile): see [`Reconnecting`] for the semantics. The first connect is
/// not retried.
///
/// ```no_run
/// use std::time::Duration;
/// use qmp_std::{Config, Gap, LinkState, Reconnect, WhileReconnecting};
/// # fn main() -> Result<(), qmp_std::Error> {
/// let reconnect = Reconnect::default()
///     .delays(Duration::from_millis(100), Duration::from_secs(5))
///     .calls(WhileReconnecting::Wait);
/// let qmp = qmp_std::connect_unix_reconnecting("/run/vm.qmp", Config::default(), reconnect)?;
/// let events = qmp.events();
/// qmp.execute_raw("stop", ())?; // waits (within its timeout) while QEMU restarts
/// for item in events.iter() {
///     match item {
///         Ok(event) => println!("{}", event.name()),
///         Err(Gap::Reconnected { .. }) => println!("QEMU is back: events meanwhile were lost"),
///         Err(gap) => println!("{gap}"),
///     }
/// }
/// assert!(matches!(qmp.state(), LinkState::Closed | LinkState::GaveUp { .. }));
/// # Ok(()) }
/// ```
pub fn connect_unix_reconnecting(
    path: impl AsRef<Path>,
    config: Config,
    reconnect: Reconnect,
) -> Result<Reconnecting> {
    Reconnecting::connect_unix(path.as_ref(), config, reconnect)
}

/// Connects to a QMP tcp socket (`-qmp tcp:HOST:PORT,server=on`) and runs the
/// handshake. The connect timeout covers the tcp connect and the greeting
/// together.
pub fn connect_tcp(addr: impl ToSocketAddrs, config: Config) -> Result<Client> {
    Client::connect_with(config, |timeout| qmp_io::tcp::connect(addr, timeout))
}

/// Runs the QMP handshake on a stream that is already open (a
/// `UnixStream`, which passes fds, a `TcpStream`, a [`ChildStdio`], or your
/// own [`Stream`]).
pub fn connect(stream: impl Stream, config: Config) -> Result<Client> {
    Client::connect(stream, config)
}

/// Runs the QMP handshake with a child process that speaks QMP on its stdin
/// and stdout: QEMU with `-qmp stdio`, or a command reaching a remote monitor
/// (`ssh host socat - UNIX-CONNECT:/run/vm.qmp`). The child is killed and
/// reaped when the connection ends; if it dies, the error quotes the end of
/// its stderr.
pub fn connect_child(command: std::process::Command, config: Config) -> Result<Client> {
    Client::connect_with(config, |_| ChildStdio::spawn(command))
}

/// Launches a private QEMU and connects to its QMP socket. The process is
/// killed and reaped when the returned [`Qemu`] is dropped.
pub fn launch(qemu: QemuBuilder, config: Config) -> Result<(Qemu, Client)> {
    let qemu = qemu.spawn()?;
    let client = connect_unix(qemu.qmp_path(), config)?;
    Ok((qemu, client))
}

/// Launches a private QEMU with its monitor on its stdio (`-qmp stdio`, no
/// socket file); it lives as long as the connection.
pub fn launch_stdio(qemu: QemuBuilder, config: Config) -> Result<Client> {
    connect_child(qemu.stdio_command(), config)
}

/// Connects to a guest agent's unix socket and synchronises, within the
/// connect timeout.
pub fn connect_guest_agent(path: impl AsRef<Path>, config: Config) -> Result<GuestAgent> {
    let path = path.as_ref();
    GuestAgent::connect_with(config, |timeout| {
        qmp_io::unix::connect_blocking(path, timeout)
    })
}

/// Synchronises with a guest agent over a stream that is already open.
pub fn guest_agent_on(stream: impl Stream, config: Config) -> Result<GuestAgent> {
    GuestAgent::connect(stream, config)
}
