//! What the cases start and send: processes, settings, typed commands and the
//! arguments of the commands each case issues.

use core::time::Duration;
use std::io::Write;
use std::os::unix::net::UnixStream;

use qmp_io::mock::MockQemu;
use qmp_io::qemu::{GuestAgentProcess, Qemu};
use qmp_io::{Call, Command, Config, EventFilter};
use rustix::process::{Pid, Signal, kill_process};

/// Generous bound for anything that should happen "soon": the machine running
/// the tests may have two cores and a dozen QEMUs starting at once.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The per-call timeout of the cases that are about timeouts.
pub const SHORT_TIMEOUT: Duration = Duration::from_millis(200);

/// How long the calls of the kill case are given to reach the socket before
/// QEMU is killed.
pub const SETTLE: Duration = Duration::from_millis(300);

/// The bound on how long pending calls may take to fail once QEMU is killed.
pub const DISCONNECT_BOUND: Duration = Duration::from_secs(1);

/// Calls of the concurrency case.
pub const CONCURRENT_CALLS: usize = 100;

/// Calls pending when QEMU is killed.
pub const PENDING_AT_KILL: usize = 10;

/// Events the mock emits in the lagging-subscriber case.
pub const MOCK_EVENTS: usize = 100;

/// The queue length of each subscriber in the lagging-subscriber case.
pub const MOCK_CAPACITY: usize = 8;

/// The event name the mock emits.
pub const MOCK_EVENT: &str = "TESTSUITE_EVENT";

/// The connection settings of every case: a default timeout long enough for a
/// loaded machine, so only the cases about timeouts see one.
pub fn config() -> Config {
    Config::default()
        .timeout(Some(PATIENCE))
        .connect_timeout(PATIENCE)
}

/// Starts a private QEMU named after `test` (so `query-name` tells tests
/// apart), or `None` after a `SKIPPED` line when QEMU is missing.
///
/// # Panics
///
/// If QEMU is there but does not start.
pub fn qemu(test: &str) -> Option<Qemu> {
    let builder = crate::peers::require_qemu(test)?;
    let qemu = builder.arg("-name").arg(test).spawn();
    let qemu = qemu.unwrap_or_else(|e| panic!("{test}: cannot start QEMU: {e}"));
    Some(qemu)
}

/// Starts a private QEMU with a second QMP monitor on a loopback tcp port,
/// and the port's address; `None` after a `SKIPPED` line when QEMU is missing.
///
/// # Panics
///
/// If QEMU is there but does not start.
pub fn qemu_on_tcp(test: &str) -> Option<(Qemu, core::net::SocketAddr)> {
    let builder = crate::peers::require_qemu(test)?;
    // A port the kernel just handed out, free again once the probe closes.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free loopback port");
    // Before the launcher's own monitor on the command line, so it listens
    // by the time the launcher finds that one ready.
    let monitor = format!("tcp:{addr},server=on,wait=off");
    let qemu = builder
        .arg("-name")
        .arg(test)
        .arg("-qmp")
        .arg(monitor)
        .spawn();
    let qemu = qemu.unwrap_or_else(|e| panic!("{test}: cannot start QEMU: {e}"));
    Some((qemu, addr))
}

/// Starts a private qemu-ga, or `None` after a `SKIPPED` line when it is
/// missing.
///
/// # Panics
///
/// If qemu-ga is there but does not start.
pub fn guest_agent(test: &str) -> Option<GuestAgentProcess> {
    let builder = crate::peers::require_guest_agent(test)?;
    let agent = builder.spawn();
    let agent = agent.unwrap_or_else(|e| panic!("{test}: cannot start qemu-ga: {e}"));
    Some(agent)
}

/// Starts a mock QEMU.
///
/// # Panics
///
/// If its socket cannot be bound.
pub fn mock() -> MockQemu {
    MockQemu::start().expect("cannot start the mock QEMU")
}

/// The deadlines case: calls held by the mock that must outlast the short
/// ones (their command, and the timeout their `Call` sets: `None` keeps the
/// client's default of 30 s, `Some(None)` is no timeout, `Duration::MAX`
/// is as good as none).
pub const HELD_CALLS: [(&str, Option<Option<Duration>>); 3] = [
    ("deadline-default", None),
    ("deadline-none", Some(None)),
    ("deadline-max", Some(Some(Duration::MAX))),
];

/// The deadlines case: the short timeouts, started after the held calls and
/// longest first, so each new one is the earliest deadline.
pub const STAGGERED: [Duration; 4] = [
    Duration::from_millis(700),
    Duration::from_millis(500),
    Duration::from_millis(300),
    Duration::from_millis(100),
];

/// The pause between starting two of the [`STAGGERED`] calls, so each is
/// submitted after the longer ones.
pub const STAGGER: Duration = Duration::from_millis(20);

/// How late after its timeout a call may fail: a loaded machine, and still
/// far below the 30 s default a wrong timer would wait for.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(3);

/// A mock that answers each of [`HELD_CALLS`] with its own name, and
/// `deadline-short` too.
///
/// # Panics
///
/// If its socket cannot be bound.
pub fn deadline_mock() -> MockQemu {
    let mock = mock();
    for (name, _) in HELD_CALLS {
        mock.on_return(name, &format!("\"{name}\""));
    }
    mock.on_return("deadline-short", "\"deadline-short\"");
    mock
}

/// The calls of the deadlines case in the order they start: the held ones,
/// then the short ones.
pub fn deadline_calls() -> impl Iterator<Item = (&'static str, Option<Option<Duration>>)> {
    HELD_CALLS
        .into_iter()
        .chain(STAGGERED.map(|t| ("deadline-short", Some(Some(t)))))
}

/// A call of `command` with the timeout of [`HELD_CALLS`]' convention.
pub fn call_with(command: &str, timeout: Option<Option<Duration>>) -> Call {
    let call = Call::new(command);
    match timeout {
        Some(t) => call.timeout(t),
        None => call,
    }
}

/// The settings of the lagging-subscriber case: short subscriber queues.
pub fn lagging_config() -> Config {
    config().event_capacity(MOCK_CAPACITY)
}

/// Emits the mock event numbered `n`.
///
/// # Panics
///
/// If the mock cannot write it.
pub fn emit_numbered(mock: &MockQemu, n: usize) {
    let data = format!("{{\"n\":{n}}}");
    mock.emit_event(MOCK_EVENT, Some(&data))
        .unwrap_or_else(|e| panic!("the mock cannot emit event {n}: {e}"));
}

/// Freezes process `pid` (`SIGSTOP`): it stops reading its socket.
///
/// # Panics
///
/// If the signal cannot be sent.
pub fn freeze(pid: u32) {
    signal(pid, Signal::STOP);
}

/// Resumes a process frozen with [`freeze`] (`SIGCONT`).
///
/// # Panics
///
/// If the signal cannot be sent.
pub fn thaw(pid: u32) {
    signal(pid, Signal::CONT);
}

fn signal(pid: u32, signal: Signal) {
    let raw = i32::try_from(pid).expect("pid out of range");
    let pid = Pid::from_raw(raw).expect("pid 0");
    kill_process(pid, signal).unwrap_or_else(|e| panic!("cannot send {signal:?} to {pid:?}: {e}"));
}

/// `STOP` and `RESUME`, by name.
pub fn stop_resume_filter() -> EventFilter {
    EventFilter::name("STOP").or_name("RESUME")
}

/// A filter on a data member no event of the stop/cont case has.
pub fn unmatched_filter() -> EventFilter {
    EventFilter::all().data_eq("device", "qmp-testsuite-no-such-device")
}

/// The one numbered mock event [`picked_filter`] lets through.
pub const PICKED: usize = 42;

/// The mock's events whose `data.n` is [`PICKED`], the way a client follows
/// one device's events.
pub fn picked_filter() -> EventFilter {
    EventFilter::name(MOCK_EVENT).data_eq("n", PICKED.to_string())
}

/// A `query-status` call that times out after [`SHORT_TIMEOUT`].
pub fn short_status_call() -> Call {
    Call::new("query-status").timeout(Some(SHORT_TIMEOUT))
}

/// A `guest-info` call that times out after [`SHORT_TIMEOUT`].
pub fn short_guest_info_call() -> Call {
    Call::new("guest-info").timeout(Some(SHORT_TIMEOUT))
}

/// A `query-status` call that waits for ever (the kill case).
pub fn unbounded_status_call() -> Call {
    Call::new("query-status").timeout(None)
}

/// The command and arguments of call `n` in the concurrency case: even calls
/// ask for the status, odd ones delete a device that does not exist, so the
/// error names the call it belongs to.
pub fn concurrent_call(n: usize) -> (&'static str, Option<serde_json::Value>) {
    if asks_status(n) {
        ("query-status", None)
    } else {
        (
            "device_del",
            Some(serde_json::json!({ "id": format!("dev-{n}") })),
        )
    }
}

/// Whether call `n` of the concurrency case is a `query-status`.
pub fn asks_status(n: usize) -> bool {
    n.is_multiple_of(2)
}

/// A command QEMU does not have.
pub const UNKNOWN_COMMAND: &str = "qmp-testsuite-no-such-command";

/// The `opaque` string of the fd-set case.
pub const OPAQUE: &str = "opaque-x";

/// The fd name of the `getfd` case.
pub const FD_NAME: &str = "myfd";

/// `query-status` as a typed command.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct QueryStatus;

impl Command for QueryStatus {
    const NAME: &'static str = "query-status";
    type Returns = StatusInfo;
}

/// What `query-status` returns (the members the cases look at).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct StatusInfo {
    /// The run state, such as `running` or `paused`.
    pub status: String,
    /// True when the guest's CPUs run.
    pub running: bool,
}

/// The arguments of `guest-exec` running `/bin/echo hello`, output captured.
pub fn echo_args() -> serde_json::Value {
    serde_json::json!({"path": "/bin/echo", "arg": ["hello"], "capture-output": true})
}

/// How often `guest-exec-status` is polled.
pub const EXEC_POLL: Duration = Duration::from_millis(20);

/// The arguments of `guest-exec-status` for process `pid`.
pub fn exec_status_args(pid: i64) -> serde_json::Value {
    serde_json::json!({ "pid": pid })
}

/// Opens a connection to qemu-ga and leaves stale bytes in it: a `guest-info`
/// command whose reply is never read.
///
/// # Panics
///
/// If the socket cannot be connected or written.
pub fn stale_agent_stream(agent: &GuestAgentProcess) -> UnixStream {
    let mut stream =
        UnixStream::connect(agent.socket_path()).expect("cannot connect to qemu-ga's socket");
    stream
        .write_all(b"{\"execute\":\"guest-info\"}\n")
        .expect("cannot write to qemu-ga's socket");
    stream
}

/// A fake guest agent on one end of a socket pair: it answers the client's
/// `guest-sync-delimited` like qemu-ga (`0xFF`, then the id) and nothing
/// else. After the sync it stops reading until the returned sender sends (or
/// is dropped), then returns every byte it received after the sync once the
/// client hangs up. The stream is the client's end.
pub fn silent_agent() -> (
    UnixStream,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<Vec<u8>>,
) {
    let (client, mut agent) = UnixStream::pair().expect("a socket pair");
    let (open, gate) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        use std::io::Read;
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        let mut synced = false;
        loop {
            let n = match agent.read(&mut buf) {
                Ok(0) | Err(_) => return received,
                Ok(n) => n,
            };
            received.extend_from_slice(&buf[..n]);
            if synced {
                continue;
            }
            let text = String::from_utf8_lossy(&received).into_owned();
            let Some(line) = text.lines().find(|l| l.contains("guest-sync-delimited")) else {
                continue;
            };
            let json = line.trim_start_matches('\u{FFFD}');
            let request: serde_json::Value =
                serde_json::from_str(json).expect("a guest-sync-delimited command");
            let id = request["arguments"]["id"].clone();
            let mut reply = vec![0xFF];
            reply.extend_from_slice(format!("{{\"return\": {id}}}\n").as_bytes());
            agent.write_all(&reply).expect("writing the sync reply");
            synced = true;
            received.clear();
            let _ = gate.recv();
        }
    });
    (client, open, server)
}

/// A `getfd` of [`FD_NAME`] with `fd`, waiting at most `timeout`.
pub fn getfd_call(fd: std::os::fd::BorrowedFd<'_>, timeout: Option<Duration>) -> Call {
    Call::new("getfd")
        .arguments(serde_json::json!({ "fdname": FD_NAME }))
        .timeout(timeout)
        .fd(fd)
        .expect("cannot duplicate the fd")
}

/// A `getfd` carrying one fd more than one message can: refused before
/// anything is sent.
pub fn too_many_fds_call(fd: std::os::fd::BorrowedFd<'_>) -> Call {
    let call = Call::new("getfd").arguments(serde_json::json!({ "fdname": FD_NAME }));
    (0..=qmp_io::fd::MAX_FDS_PER_MESSAGE).fold(call, |call, _| {
        call.fd(fd).expect("cannot duplicate the fd")
    })
}

/// Arguments that fill a socket buffer many times over.
pub fn huge_arguments() -> String {
    format!(
        "{{\"mode\": \"powerdown\", \"pad\": \"{}\"}}",
        "x".repeat(4 << 20)
    )
}

/// A command far bigger than a socket buffer, waiting for ever: to a frozen
/// QEMU it stays half written.
pub fn stuck_qmp_call() -> Call {
    Call::new("query-status")
        .arguments_text(huge_arguments())
        .timeout(None)
}

/// A directory of the case's own under the temp dir, removed on drop.
struct PrivateDir(std::path::PathBuf);

impl PrivateDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("qmp-suite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a private directory");
        PrivateDir(dir)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A QMP server that plays QEMU's handshake, then reads nothing more: the
/// case keeps its end of the connection, to see when the client hangs up.
pub struct DeafServer {
    _dir: PrivateDir,
    path: std::path::PathBuf,
    accepted: Option<std::thread::JoinHandle<UnixStream>>,
}

impl DeafServer {
    /// Listens on a private path and serves one client.
    ///
    /// # Panics
    ///
    /// If the socket cannot be bound.
    pub fn start(name: &str) -> Self {
        let dir = PrivateDir::new(name);
        let path = dir.0.join("deaf.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("binding the socket");
        let accepted = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accepting the client");
            stream
                .write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n")
                .expect("writing the greeting");
            let negotiate = read_line(&mut stream);
            let request: serde_json::Value =
                serde_json::from_str(&negotiate).expect("qmp_capabilities as JSON");
            assert_eq!(request["execute"], "qmp_capabilities", "{negotiate}");
            let reply = format!("{{\"return\": {{}}, \"id\": {}}}\r\n", request["id"]);
            stream
                .write_all(reply.as_bytes())
                .expect("answering qmp_capabilities");
            stream
        });
        DeafServer {
            _dir: dir,
            path,
            accepted: Some(accepted),
        }
    }

    /// Where to connect.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The server's end, once the handshake is done.
    ///
    /// # Panics
    ///
    /// If called twice, or if the handshake failed.
    pub fn accepted(&mut self) -> UnixStream {
        let accepted = self.accepted.take().expect("accepted once");
        accepted.join().expect("the handshake")
    }
}

/// Reads up to and including a LF, a byte at a time (nothing past it).
fn read_line(stream: &mut UnixStream) -> String {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        let n = stream.read(&mut byte).expect("reading a command");
        assert_eq!(n, 1, "the client hung up during the handshake");
        line.push(byte[0]);
    }
    String::from_utf8(line).expect("an ASCII command")
}

/// True once the client end of `stream` is closed, within `timeout`, even
/// with its bytes unread.
pub fn hung_up(stream: &UnixStream, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec::try_from(timeout).expect("a short timeout");
    let mut fds = [PollFd::new(stream, PollFlags::RDHUP)];
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => return false,
            Ok(_) => return fds[0].revents().contains(PollFlags::HUP),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// A unix listener that accepts nobody, its queue of pending connections
/// full: a plain blocking connect to it would wait for ever.
pub struct FullListener {
    _dir: PrivateDir,
    path: std::path::PathBuf,
    listener: std::os::fd::OwnedFd,
    _pending: Vec<std::os::fd::OwnedFd>,
}

impl FullListener {
    /// Binds a listener with the shortest queue and fills it.
    ///
    /// # Panics
    ///
    /// If the socket cannot be bound, or the queue never fills.
    pub fn start(name: &str) -> Self {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let dir = PrivateDir::new(name);
        let path = dir.0.join("full.sock");
        let addr = SocketAddrUnix::new(&path).expect("a socket address");
        let socket = |flags| {
            rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)
                .expect("a socket")
        };
        let listener = socket(SocketFlags::CLOEXEC);
        rustix::net::bind(&listener, &addr).expect("binding the socket");
        rustix::net::listen(&listener, 0).expect("listening");
        let mut pending = Vec::new();
        loop {
            let s = socket(SocketFlags::CLOEXEC | SocketFlags::NONBLOCK);
            match rustix::net::connect(&s, &addr) {
                Ok(()) => pending.push(s),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => panic!("filling the listener's queue: {e}"),
            }
            assert!(pending.len() < 64, "the listener's queue never filled");
        }
        FullListener {
            _dir: dir,
            path,
            listener,
            _pending: pending,
        }
    }

    /// Where to connect.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Accepts one pending connection after `delay`, on a thread: then there
    /// is room for one more. The thread returns the accepted connection.
    ///
    /// # Panics
    ///
    /// If the listener cannot be duplicated; the thread, if accept fails.
    pub fn accept_after(&self, delay: Duration) -> std::thread::JoinHandle<std::os::fd::OwnedFd> {
        let listener = self.listener.try_clone().expect("a second listener handle");
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            rustix::net::accept(&listener).expect("accepting one")
        })
    }
}

/// The connect timeout of the full-listener case: long enough that the
/// listener makes room before it ends.
pub const FULL_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A command the silent agent never reads all of: it times out with most of
/// its bytes still waiting to be written.
pub fn stuck_agent_call() -> Call {
    Call::new("guest-info")
        .arguments_text(huge_arguments())
        .timeout(Some(SHORT_TIMEOUT))
}

/// The command the agent never answers.
pub const NO_REPLY_COMMAND: &str = "guest-shutdown";

/// A command that speaks no QMP: it writes to stderr and exits with status 3.
pub fn dying_child() -> std::process::Command {
    let mut command = std::process::Command::new("sh");
    command.args(["-c", "echo 'qmp-testsuite: this child dies' >&2; exit 3"]);
    command
}

/// The pid of the one process whose command line holds `marker` (a QEMU
/// started with `-name MARKER`), if any.
pub fn pid_of(marker: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let hit = cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == marker.as_bytes());
            hit.then_some(pid)
        })
}

/// True once `pid` is gone from the process table (killed and reaped: a
/// zombie would still be there), checked for up to [`PATIENCE`].
pub fn reaped(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
