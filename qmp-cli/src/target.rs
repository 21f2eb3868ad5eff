//! Connecting to the monitor the command line names, within the deadline of
//! `--timeout`: a QMP socket (unix or tcp), a guest agent, a child on its
//! stdio, a domain through libvirt, or a private QEMU launched for the
//! length of the run.

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use qmp_io::qemu::{QEMU_PROGRAM, locate};
use qmp_std::{Call, Client, Config, GuestAgent, Json, Qemu, QemuBuilder};

use crate::cli::{Cli, Target};
use crate::failure::Failure;

/// How long past the deadline the watchdog waits for the run to end by
/// itself before it ends the process.
const WATCHDOG_GRACE: Duration = Duration::from_millis(1500);

/// The end of the whole run (`--timeout`), if there is one.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Option<Instant>,
    timeout: Option<Duration>,
}

impl Deadline {
    /// The deadline `timeout` from now; `None` for none.
    pub fn after(timeout: Option<Duration>) -> Self {
        Self {
            at: timeout.and_then(|t| Instant::now().checked_add(t)),
            timeout,
        }
    }

    /// Time left, `None` when there is no deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// The `--timeout` as given.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The failure of a run the deadline ended, saying what was going on.
    pub fn expired(&self, doing: &str) -> Failure {
        match self.timeout {
            Some(t) => Failure::other(format!("timed out after {} ({doing})", secs(t))),
            None => Failure::other(format!("timed out ({doing})")),
        }
    }

    /// Starts a thread that ends the process (exit status 2) if the run is
    /// still going a moment after the deadline: the last guard against a hang
    /// (a stuck write to stdout, say). It kills the private QEMU or the
    /// `--stdio` child first, whose pid is in `qemu_pid` (0 for none).
    pub fn arm_watchdog(&self, qemu_pid: Arc<AtomicU32>) {
        let Some(at) = self.at else {
            return;
        };
        let message = self.expired("the run did not end by itself");
        let spawned = std::thread::Builder::new()
            .name("qmp-watchdog".to_owned())
            .spawn(move || {
                let end = at.checked_add(WATCHDOG_GRACE).unwrap_or(at);
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    std::thread::sleep(end - now);
                }
                kill(qemu_pid.load(Ordering::SeqCst));
                crate::output::error_line(&message);
                std::process::exit(i32::from(message.exit_code()));
            });
        // Without the thread every step is still bounded by its own timeout.
        drop(spawned);
    }
}

fn kill(pid: u32) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Seconds as people write them: `2s`, `1.5s`.
pub fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// A connected monitor: QMP or a guest agent.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A QMP monitor.
    Qmp(Client),
    /// A guest agent.
    Qga(GuestAgent),
    /// A domain's QMP monitor through libvirtd.
    Libvirt(qmp_libvirt::Client),
}

impl Peer {
    /// Runs one call.
    pub fn call(&self, call: Call) -> qmp_std::Result<Json> {
        match self {
            Peer::Qmp(c) => c.call(call),
            Peer::Qga(a) => a.call(call),
            Peer::Libvirt(c) => c.call(call),
        }
    }

    /// Nothing, or a failure saying `what` needs a QMP monitor (directly or
    /// through libvirt).
    pub fn monitor(&self, what: &str) -> Result<(), Failure> {
        match self {
            Peer::Qga(_) => Err(Failure::other(format!(
                "{what} needs a QMP monitor; a guest agent has none"
            ))),
            _ => Ok(()),
        }
    }

    /// The QMP client, or a failure saying `what` needs one.
    pub fn qmp(&self, what: &str) -> Result<&Client, Failure> {
        match self {
            Peer::Qmp(c) => Ok(c),
            Peer::Qga(_) => Err(Failure::other(format!(
                "{what} needs a QMP monitor; a guest agent has none"
            ))),
            Peer::Libvirt(_) => Err(Failure::other(format!(
                "{what} needs a direct QMP monitor (--socket, --tcp); it is not supported with --libvirt"
            ))),
        }
    }
}

/// The connection, and the private QEMU behind it when one was launched
/// (killed when this is dropped).
#[derive(Debug)]
pub struct Session {
    /// The monitor.
    pub peer: Peer,
    /// The private QEMU, kept alive as long as the session.
    pub qemu: Option<Qemu>,
}

impl Drop for Session {
    /// Closes the connection before the process can end: closing kills a
    /// `--stdio` child at once, where the end of the last handle leaves that
    /// to the connection's reader thread, which an exiting process never runs.
    fn drop(&mut self) {
        match &self.peer {
            Peer::Qmp(c) => c.close(),
            Peer::Qga(a) => a.close(),
            // Dropping it closes the connection (CONNECT_CLOSE).
            Peer::Libvirt(_) => {}
        }
    }
}

/// The libvirt URI of `--libvirt` without `--uri`: the system daemon.
pub const LIBVIRT_URI: &str = "qemu:///system";

/// The install hint printed when no QEMU can be found.
pub const INSTALL_HINT: &str = "install it (Debian, Ubuntu: sudo apt-get install qemu-system-x86), \
     set QMP_QEMU to its path, or name a running QEMU's monitor with --socket PATH";

/// Connects to what the command line names (or launches a private QEMU), within
/// `deadline`. `qemu_pid` receives the pid of the private QEMU or of the
/// `--stdio` child, for the watchdog.
pub fn connect(cli: &Cli, deadline: &Deadline, qemu_pid: &AtomicU32) -> Result<Session, Failure> {
    let (target, child) = (&cli.target, cli.child.as_slice());
    let mut config = Config::default();
    if let Some(left) = deadline.remaining() {
        config = config.timeout(Some(left)).connect_timeout(left);
    }
    let fail = |e, at: &dyn core::fmt::Display| connect_failure(e, at, deadline);
    let qmp = |peer: Client| Session {
        peer: Peer::Qmp(peer),
        qemu: None,
    };
    if let Some(path) = &target.socket {
        return qmp_std::connect_unix(path, config)
            .map(qmp)
            .map_err(|e| fail(e, &path.display()));
    }
    if let Some(addr) = &target.tcp {
        return qmp_std::connect_tcp(addr.as_str(), config)
            .map(qmp)
            .map_err(|e| fail(e, addr));
    }
    if let Some(domain) = &target.libvirt {
        let uri = cli.uri.as_deref().unwrap_or(LIBVIRT_URI);
        let client = qmp_libvirt::Client::connect(uri, domain, config)
            .map_err(|e| fail(e, &format_args!("domain {domain} at {uri}")))?;
        return Ok(Session {
            peer: Peer::Libvirt(client),
            qemu: None,
        });
    }
    if let Some(path) = &target.qga {
        let agent =
            qmp_std::connect_guest_agent(path, config).map_err(|e| fail(e, &path.display()))?;
        return Ok(Session {
            peer: Peer::Qga(agent),
            qemu: None,
        });
    }
    if target.stdio {
        let Some((program, args)) = child.split_first() else {
            return Err(Failure::other(
                "--stdio needs the child's command after `--`",
            ));
        };
        let mut command = Command::new(program);
        command.args(args);
        // Spawned here rather than by connect_child, for its pid: the
        // watchdog kills it too.
        let child = qmp_std::ChildStdio::spawn(command).map_err(Failure::other)?;
        qemu_pid.store(child.id(), Ordering::SeqCst);
        return qmp_std::connect(child, config)
            .map(qmp)
            .map_err(|e| fail(e, program));
    }
    let qemu = launch(target, deadline, qemu_pid)?;
    let client =
        qmp_std::connect_unix(qemu.qmp_path(), config).map_err(|e| fail(e, &"the private QEMU"))?;
    Ok(Session {
        peer: Peer::Qmp(client),
        qemu: Some(qemu),
    })
}

/// A failed connect, naming what was connected to (the library's connect
/// error does not), and the deadline when it was the deadline that struck.
fn connect_failure(e: qmp_std::Error, at: &dyn core::fmt::Display, deadline: &Deadline) -> Failure {
    match e {
        qmp_std::Error::Connect(io) => Failure::other(format!("cannot connect to {at}: {io}")),
        qmp_std::Error::Disconnected(qmp_std::Disconnect::HandshakeTimeout { step, .. })
            if deadline.timeout().is_some() =>
        {
            deadline.expired(&format!("{step}, from {at}"))
        }
        qmp_std::Error::Disconnected(d) => Failure::other(format!("{at}: {d}")),
        e => e.into(),
    }
}

/// Launches the private QEMU: `-machine none` plus `--launch-args`.
fn launch(target: &Target, deadline: &Deadline, qemu_pid: &AtomicU32) -> Result<Qemu, Failure> {
    if locate(QEMU_PROGRAM).is_none() {
        return Err(Failure::other(format!(
            "no target given, and {QEMU_PROGRAM} (which qmp launches then) was not found: \
             {INSTALL_HINT}"
        )));
    }
    let mut builder = QemuBuilder::new();
    if let Some(extra) = &target.launch_args {
        builder = builder.args(extra.split_whitespace());
    }
    if let Some(left) = deadline.remaining() {
        builder = builder.startup_timeout(left);
    }
    let qemu = builder
        .spawn()
        .map_err(|e| Failure::other(format!("cannot launch QEMU: {e}")))?;
    qemu_pid.store(qemu.pid(), Ordering::SeqCst);
    Ok(qemu)
}
