//! What the tests of the `qmp` binary share: running it as a process with a
//! time limit, a QEMU with two monitors, a private temporary directory.
#![allow(dead_code, unreachable_pub)]

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use qmp_io::qemu::Qemu;

/// The binary under test.
pub const QMP: &str = env!("CARGO_BIN_EXE_qmp");

/// No test run of the binary may take longer than this.
pub const LIMIT: Duration = Duration::from_secs(60);

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Ran {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:#?}");
        assert!(self.stderr.is_empty(), "{self:#?}");
        &self.stdout
    }

    /// Asserts exit status `code` and exactly one stderr line starting with
    /// `qmp: `; returns that line.
    pub fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:#?}");
        let line = self.stderr.strip_suffix('\n').unwrap_or(&self.stderr);
        assert!(
            line.starts_with("qmp: ") && !line.contains('\n'),
            "one line on stderr: {self:#?}"
        );
        line
    }
}

/// `qmp ARGS`.
pub fn qmp(args: &[&str]) -> Command {
    let mut command = Command::new(QMP);
    command.args(args);
    command
}

/// Runs `command` with `stdin` as its input (empty when `None`, which is not
/// a terminal), killing it past [`LIMIT`].
pub fn run(mut command: Command, stdin: Option<&str>) -> Ran {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qmp");
    let input = stdin.unwrap_or("").to_owned();
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = reader(child.stdout.take().expect("stdout"));
    let err = reader(child.stderr.take().expect("stderr"));
    let status = wait_limited(&mut child, LIMIT);
    let _ = writer.join();
    Ran {
        code: status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
        took: started.elapsed(),
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` at most `limit`, then kills it; its exit code.
pub fn wait_limited(child: &mut Child, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("qmp ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A private directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "qmp-cli-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A QEMU (`-machine none`) with two QMP monitors: its own socket and
/// `second`, for a test to act through one while `qmp` holds the other.
pub struct TwoMonitors {
    pub qemu: Qemu,
    pub second: PathBuf,
    _dir: TempDir,
}

impl TwoMonitors {
    /// `None` (after a SKIPPED line) without QEMU.
    pub fn start(test: &str) -> Option<Self> {
        let builder = qmp_testsuite::peers::require_qemu(test)?;
        let dir = TempDir::new();
        let second = dir.join("second.sock");
        let qemu = builder
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", second.display()))
            .spawn()
            .expect("spawn QEMU");
        Some(Self {
            qemu,
            second,
            _dir: dir,
        })
    }

    pub fn first(&self) -> &Path {
        self.qemu.qmp_path()
    }

    /// Runs `command` through the second monitor and checks it succeeded.
    pub fn second_runs(&self, command: &str) {
        let second = self.second.to_str().expect("utf-8 path");
        run(qmp(&["--socket", second, command]), None).ok();
    }
}

/// The path as the string argument `qmp` takes.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
