//! Launching a private QEMU or a private qemu-ga, for tests, examples and tools.
//!
//! Each process gets its own temporary directory (mode 0700) holding its socket
//! and its stderr log. Dropping the handle kills the process with `SIGKILL`,
//! reaps it, and removes the directory. Spawning waits until the socket exists
//! but does not connect: the drivers connect and wait for the greeting with
//! their own timeout.
//!
//! ```no_run
//! use std::io::{BufRead, BufReader};
//! use std::os::unix::net::UnixStream;
//!
//! let qemu = qmp_io::qemu::Qemu::builder().paused(true).spawn()?;
//! let mut greeting = String::new();
//! BufReader::new(UnixStream::connect(qemu.qmp_path())?).read_line(&mut greeting)?;
//! assert!(greeting.starts_with(r#"{"QMP""#));
//! # Ok::<(), std::io::Error>(())
//! ```

use core::hash::BuildHasher;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::hash::RandomState;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

/// The QEMU program [`QemuBuilder`] runs unless told otherwise.
pub const QEMU_PROGRAM: &str = "qemu-system-x86_64";
/// Environment variable naming the QEMU binary to use instead of
/// [`QEMU_PROGRAM`].
pub const QEMU_ENV: &str = "QMP_QEMU";
/// The guest agent program [`GuestAgentBuilder`] runs unless told otherwise.
pub const GUEST_AGENT_PROGRAM: &str = "qemu-ga";
/// Environment variable naming the guest agent binary to use instead of
/// [`GUEST_AGENT_PROGRAM`].
pub const GUEST_AGENT_ENV: &str = "QMP_QEMU_GA";

/// Searched after `PATH`: Debian installs qemu-ga in sbin, which is not on an
/// ordinary user's `PATH`.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin"];
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// `sun_path` holds 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const STDERR_LOG: &str = "stderr.log";
const STDERR_TAIL_LINES: usize = 20;
const STDERR_TAIL_BYTES: u64 = 16 * 1024;

/// Finds an executable file called `name` in the directories of `PATH`, then in
/// `extra_dirs`.
///
/// A `name` containing a `/` is not searched for: it is returned if it names an
/// executable file. Empty `PATH` entries are skipped rather than read as the
/// current directory.
#[must_use]
pub fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    find_os(OsStr::new(name), extra_dirs)
}

fn find_os(name: &OsStr, extra_dirs: &[&str]) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if name.as_bytes().contains(&b'/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The environment variable overriding `program`, for the programs this module
/// knows.
pub fn override_var(program: &str) -> Option<&'static str> {
    match program {
        QEMU_PROGRAM => Some(QEMU_ENV),
        GUEST_AGENT_PROGRAM => Some(GUEST_AGENT_ENV),
        _ => None,
    }
}

/// The value of [`override_var`], if set and not empty.
pub fn env_override(program: &str) -> Option<OsString> {
    std::env::var_os(override_var(program)?).filter(|v| !v.is_empty())
}

/// Where `program` would be found: its environment override if it has one
/// (itself searched for when it is a bare name), otherwise `PATH` and the sbin
/// directories. Public so a test harness skips exactly when a
/// launch would fail to find the program.
pub fn locate(program: &str) -> Option<PathBuf> {
    match env_override(program) {
        Some(name) => find_os(&name, SBIN_DIRS),
        None => find_program(program, SBIN_DIRS),
    }
}

/// The binary to run when the builder was given none: the located one, or else
/// the name itself, so the spawn error names what was looked for.
fn default_binary(program: &str) -> PathBuf {
    locate(program)
        .or_else(|| env_override(program).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(program))
}

/// A private directory, removed with everything in it on drop.
#[derive(Debug)]
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let pid = std::process::id();
        // A stale directory from a crashed run (or a hostile one in a shared
        // /tmp) may hold the name: try fresh random bits rather than reuse it.
        let mut last_error = None;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let random = RandomState::new().hash_one((pid, n));
            let path = base.join(format!("qmp-rs-{pid}-{n}-{random:016x}"));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot create a directory in {}: {e}", base.display()),
                    ));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no temporary directory name left")))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove temporary directory");
        }
    }
}

/// QEMU's option parser reads `,` as a separator; a literal comma is doubled.
fn escape_option_value(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn socket_path(dir: &TempDir, name: &str) -> io::Result<PathBuf> {
    let path = dir.path.join(name);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is {len} bytes, over the {MAX_SOCKET_PATH}-byte limit of unix \
                 sockets; point TMPDIR at a shorter directory",
                path.display()
            ),
        ));
    }
    Ok(path)
}

/// The last lines of a log, read from its end so a huge log costs little.
fn read_tail(path: &Path) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(STDERR_TAIL_BYTES);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        // A partial first line is noise when the read started mid-file.
        let skip_partial = usize::from(start > 0 && lines.len() > 1);
        let from = lines
            .len()
            .saturating_sub(STDERR_TAIL_LINES)
            .max(skip_partial);
        Ok(lines.get(from..).unwrap_or_default().join("\n"))
    };
    read().unwrap_or_default()
}

/// A child process that owns a private directory and a socket in it; killed,
/// reaped and cleaned up on drop.
#[derive(Debug)]
struct Supervised {
    child: Child,
    program: PathBuf,
    socket: PathBuf,
    // Declared last: dropped after `Drop::drop` has killed the child.
    dir: TempDir,
}

/// True once a unix socket at `path` accepts connections. The file appears at
/// `bind()`, a moment before `listen()`: a connect in between is refused, so
/// the file alone is not enough. Linux lists listening sockets in
/// /proc/net/unix (flag __SO_ACCEPTCON); elsewhere the file has to do.
fn is_listening(path: &Path) -> bool {
    const ACCEPTING: u32 = 1 << 16;
    let exists = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    let Ok(table) = fs::read_to_string("/proc/net/unix") else {
        return exists;
    };
    let path = path.to_string_lossy();
    exists
        && table.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            matches!(fields.as_slice(), [_, _, _, flags, _, _, _, name]
                if *name == path
                    && u32::from_str_radix(flags, 16).is_ok_and(|f| f & ACCEPTING != 0))
        })
}

impl Supervised {
    /// Spawns `cmd` and waits until it has created `socket`.
    fn start(
        mut cmd: Command,
        dir: TempDir,
        socket: PathBuf,
        startup_timeout: Duration,
    ) -> io::Result<Self> {
        let program = PathBuf::from(cmd.get_program());
        let stderr = File::create(dir.path.join(STDERR_LOG))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot run {}: {e}", program.display()))
        })?;
        tracing::debug!(program = %program.display(), pid = child.id(), dir = %dir.path.display(), "spawned");
        let mut this = Self {
            child,
            program,
            socket,
            dir,
        };
        this.wait_for_socket(startup_timeout)?;
        Ok(this)
    }

    fn wait_for_socket(&mut self, timeout: Duration) -> io::Result<()> {
        let started = Instant::now();
        loop {
            if is_listening(&self.socket) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{} exited ({status}) before creating {}; {}",
                    self.program.display(),
                    self.socket.display(),
                    self.describe_stderr()
                )));
            }
            if started.elapsed() >= timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} did not create {} within {timeout:?}; {}",
                        self.program.display(),
                        self.socket.display(),
                        self.describe_stderr()
                    ),
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn describe_stderr(&self) -> String {
        let tail = self.stderr_tail();
        if tail.is_empty() {
            "its stderr was empty".to_owned()
        } else {
            format!("its stderr ended with:\n{tail}")
        }
    }

    fn kill(&mut self) -> io::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        self.child.kill()?;
        self.child.wait().map(drop)
    }

    fn stderr_tail(&self) -> String {
        read_tail(&self.dir.path.join(STDERR_LOG))
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!(pid = self.child.id(), error = %e, "cannot kill child process");
        }
    }
}

/// The methods both process handles share, written once.
macro_rules! supervised_methods {
    () => {
        /// The private directory holding the socket and `stderr.log`; removed
        /// on drop.
        #[must_use]
        pub fn dir(&self) -> &Path {
            &self.inner.dir.path
        }

        /// The process id.
        #[must_use]
        pub fn pid(&self) -> u32 {
            self.inner.child.id()
        }

        /// Kills the process with `SIGKILL` and reaps it. Does nothing if it
        /// has already exited; calling it again is fine.
        ///
        /// # Errors
        ///
        /// The error of `kill` or `waitpid`.
        pub fn kill(&mut self) -> io::Result<()> {
            self.inner.kill()
        }

        /// The exit status if the process has exited (reaping it), `None` if it
        /// is still running.
        ///
        /// # Errors
        ///
        /// The error of `waitpid`.
        pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
            self.inner.child.try_wait()
        }

        /// The last lines the process wrote to its stderr (empty if none).
        #[must_use]
        pub fn stderr_tail(&self) -> String {
            self.inner.stderr_tail()
        }
    };
}

/// Configures and starts a private QEMU with a QMP unix socket.
///
/// The command line is `BINARY -nodefaults -no-user-config -display none
/// -machine MACHINE -accel ACCEL [-S] ARGS... -qmp unix:DIR/qmp.sock,server=on,wait=off`.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until spawn() is called"]
pub struct QemuBuilder {
    binary: Option<PathBuf>,
    machine: String,
    accel: String,
    paused: bool,
    args: Vec<OsString>,
    startup_timeout: Duration,
}

impl Default for QemuBuilder {
    fn default() -> Self {
        Self {
            binary: None,
            machine: "none".to_owned(),
            accel: "tcg".to_owned(),
            paused: false,
            args: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

impl QemuBuilder {
    /// A builder with the defaults: see each method.
    pub fn new() -> Self {
        Self::default()
    }

    /// The QEMU binary. Default: `$QMP_QEMU` if set, else
    /// `qemu-system-x86_64` found on `PATH`.
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }

    /// The `-machine` value, options included (`"q35,smm=off"`). Default:
    /// `"none"`, which needs no firmware and starts fastest.
    pub fn machine(mut self, machine: &str) -> Self {
        machine.clone_into(&mut self.machine);
        self
    }

    /// The `-accel` value. Default: `"tcg"`, which works without `/dev/kvm`.
    pub fn accel(mut self, accel: &str) -> Self {
        accel.clone_into(&mut self.accel);
        self
    }

    /// Adds one argument, placed after the builder's own options and before
    /// `-qmp`.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds several arguments, like [`arg`](Self::arg).
    pub fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// How long [`spawn`](Self::spawn) waits for the QMP socket to appear.
    /// Default: 10 seconds.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Whether to start with the CPUs stopped (`-S`). Default: `false`.
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }

    /// Starts QEMU and waits until its QMP socket exists. Does not connect.
    ///
    /// # Errors
    ///
    /// The binary cannot be run (the error names it); QEMU exits before
    /// creating the socket (the error quotes the end of its stderr); the socket
    /// does not appear within the startup timeout
    /// ([`io::ErrorKind::TimedOut`]; QEMU is killed); the temporary directory
    /// cannot be created, or its path is too long for a unix socket.
    pub fn spawn(self) -> io::Result<Qemu> {
        let dir = TempDir::new()?;
        let socket = socket_path(&dir, "qmp.sock")?;
        let mut qmp = OsString::from("unix:");
        qmp.push(escape_option_value(socket.as_os_str()));
        qmp.push(",server=on,wait=off");
        let startup_timeout = self.startup_timeout;
        let cmd = self.command(qmp);
        let inner = Supervised::start(cmd, dir, socket, startup_timeout)?;
        Ok(Qemu { inner })
    }

    /// The command line with the monitor on QEMU's stdin and stdout
    /// (`-qmp stdio`), for a child-process connection (`connect_child`,
    /// `launch_stdio`): no directory, no socket file.
    pub fn stdio_command(self) -> Command {
        self.command(OsString::from("stdio"))
    }

    fn command(self, qmp: OsString) -> Command {
        let binary = self.binary.unwrap_or_else(|| default_binary(QEMU_PROGRAM));
        let mut cmd = Command::new(binary);
        cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
            .arg("-machine")
            .arg(&self.machine)
            .arg("-accel")
            .arg(&self.accel);
        if self.paused {
            cmd.arg("-S");
        }
        cmd.args(&self.args).arg("-qmp").arg(qmp);
        cmd
    }
}

/// A running private QEMU. Dropping it kills QEMU, reaps it and removes its
/// directory.
#[derive(Debug)]
#[must_use = "dropping a Qemu kills it"]
pub struct Qemu {
    inner: Supervised,
}

impl Qemu {
    /// A [`QemuBuilder`] with the defaults.
    pub fn builder() -> QemuBuilder {
        QemuBuilder::new()
    }

    /// The QMP unix socket to connect to.
    #[must_use]
    pub fn qmp_path(&self) -> &Path {
        &self.inner.socket
    }

    supervised_methods!();
}

/// Configures and starts a private qemu-ga listening on a unix socket.
///
/// The command line is `BINARY -m unix-listen -p DIR/qga.sock -t DIR/state
/// -f DIR/qemu-ga.pid`, with `QGA_CONF` pointing at a file that does not exist
/// so a host `/etc/qemu/qemu-ga.conf` is not read.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until spawn() is called"]
pub struct GuestAgentBuilder {
    binary: Option<PathBuf>,
    startup_timeout: Duration,
}

impl Default for GuestAgentBuilder {
    fn default() -> Self {
        Self {
            binary: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }
}

impl GuestAgentBuilder {
    /// A builder with the defaults: see each method.
    pub fn new() -> Self {
        Self::default()
    }

    /// The qemu-ga binary. Default: `$QMP_QEMU_GA` if set, else `qemu-ga`
    /// found on `PATH`, in `/usr/sbin` or in `/usr/local/sbin`.
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }

    /// How long [`spawn`](Self::spawn) waits for the socket to appear.
    /// Default: 10 seconds.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts qemu-ga and waits until its socket exists. Does not connect.
    ///
    /// # Errors
    ///
    /// As for [`QemuBuilder::spawn`].
    pub fn spawn(self) -> io::Result<GuestAgentProcess> {
        let binary = self
            .binary
            .unwrap_or_else(|| default_binary(GUEST_AGENT_PROGRAM));
        let dir = TempDir::new()?;
        let socket = socket_path(&dir, "qga.sock")?;
        let state = dir.path.join("state");
        fs::DirBuilder::new().mode(0o700).create(&state)?;

        let mut cmd = Command::new(binary);
        cmd.args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(&state)
            .arg("-f")
            .arg(dir.path.join("qemu-ga.pid"))
            .env("QGA_CONF", dir.path.join("no-such.conf"));
        let inner = Supervised::start(cmd, dir, socket, self.startup_timeout)?;
        Ok(GuestAgentProcess { inner })
    }
}

/// A running private qemu-ga. Dropping it kills the agent, reaps it and removes
/// its directory.
#[derive(Debug)]
#[must_use = "dropping a GuestAgentProcess kills it"]
pub struct GuestAgentProcess {
    inner: Supervised,
}

impl GuestAgentProcess {
    /// A [`GuestAgentBuilder`] with the defaults.
    pub fn builder() -> GuestAgentBuilder {
        GuestAgentBuilder::new()
    }

    /// The agent's unix socket to connect to.
    #[must_use]
    pub fn socket_path(&self) -> &Path {
        &self.inner.socket
    }

    supervised_methods!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_program_times_out_and_is_killed() {
        let scripts = TempDir::new().unwrap();
        let script = scripts.path.join("never-listens");
        fs::write(&script, "#!/bin/sh\necho started >&2\nexec sleep 60\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let started = Instant::now();
        // Another test thread forking while the script was open for writing can
        // make exec fail with ETXTBSY for a moment.
        let err = loop {
            let err = Qemu::builder()
                .binary(&script)
                .startup_timeout(Duration::from_millis(300))
                .spawn()
                .unwrap_err();
            if err.raw_os_error() != Some(rustix::io::Errno::TXTBSY.raw_os_error()) {
                break err;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{err}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("started"), "{err}");
    }

    #[test]
    fn find_program_needs_the_executable_bit() {
        let dir = TempDir::new().unwrap();
        let d = dir.path.to_str().unwrap();
        let exe = dir.path.join("qmp-rs-test-exe");
        let plain = dir.path.join("qmp-rs-test-plain");
        fs::write(&exe, "").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(&plain, "").unwrap();

        assert_eq!(find_program("qmp-rs-test-exe", &[d]), Some(exe.clone()));
        assert_eq!(find_program("qmp-rs-test-plain", &[d]), None);
        assert_eq!(find_program("qmp-rs-no-such-program", &[d]), None);
        assert_eq!(find_program(exe.to_str().unwrap(), &[]), Some(exe));
        assert_eq!(find_program(plain.to_str().unwrap(), &[]), None);
        assert_eq!(find_program(d, &[]), None, "a directory is not a program");
        assert_eq!(find_program("", &[d]), None);
        assert!(find_program("sh", &[]).is_some());
    }

    #[test]
    fn commas_are_doubled_for_qemu() {
        assert_eq!(
            escape_option_value(OsStr::new("/tmp/a,b/q.sock")),
            "/tmp/a,,b/q.sock"
        );
        assert_eq!(escape_option_value(OsStr::new("/plain")), "/plain");
    }

    #[test]
    fn overlong_socket_path_is_refused() {
        let dir = TempDir::new().unwrap();
        let long = "s".repeat(MAX_SOCKET_PATH);
        let err = socket_path(&dir, &long).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(socket_path(&dir, "qmp.sock").is_ok());
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let dir = TempDir::new().unwrap();
        let log = dir.path.join("log");
        assert_eq!(read_tail(&log), "", "a missing log reads as empty");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&log, text).unwrap();
        let tail = read_tail(&log);
        assert_eq!(tail.lines().count(), STDERR_TAIL_LINES);
        assert!(
            tail.starts_with("line 80\n") && tail.ends_with("line 99"),
            "{tail}"
        );

        let huge = "x".repeat(3 * STDERR_TAIL_BYTES as usize) + "\nlast\n";
        fs::write(&log, huge).unwrap();
        assert_eq!(read_tail(&log), "last");
    }

    #[test]
    fn temp_dirs_are_private_unique_and_removed() {
        let a = TempDir::new().unwrap();
        let b = TempDir::new().unwrap();
        assert_ne!(a.path, b.path);
        assert_eq!(
            fs::metadata(&a.path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let path = a.path.clone();
        fs::write(path.join("f"), "x").unwrap();
        drop(a);
        assert!(!path.exists());
    }
}
