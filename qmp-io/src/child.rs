//! A child process's stdin and stdout as the transport: QEMU started with
//! `-qmp stdio` (no socket file at all), or any command that speaks QMP on
//! its stdio, such as `ssh host socat - UNIX-CONNECT:/run/vm.qmp` to reach a
//! remote QEMU. The child is killed and reaped when the connection ends; the
//! end of its stderr is kept, so the error that says it died says why.

use core::fmt;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};

/// How much of the child's stderr is kept for the error message.
const STDERR_KEPT: usize = 8 << 10;
/// How long the child may take to exit once its stderr ended, before the
/// error is reported without an exit status.
const EXIT_GRACE: Duration = Duration::from_secs(1);
const EXIT_POLL: Duration = Duration::from_millis(5);

/// Why a child process's connection ended: it exited (or closed its output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildExit {
    /// The program, as it was started.
    pub program: String,
    /// How it exited; `None` when it closed its output and had not exited
    /// a second later.
    pub status: Option<ExitStatus>,
    /// The end of what it wrote to stderr (at most 8 KiB), lossily decoded.
    pub stderr: String,
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} exited ({status})", self.program)?,
            None => write!(f, "{} closed its output", self.program)?,
        }
        let stderr = self.stderr.trim_end();
        if stderr.is_empty() {
            f.write_str("; its stderr was empty")
        } else {
            write!(f, "; its stderr ended with:\n{stderr}")
        }
    }
}

impl core::error::Error for ChildExit {}

/// What the stderr thread learns.
struct Watched {
    stderr: Vec<u8>,
    /// Set once stderr ended and the child exited (or the grace passed).
    exit: Option<ChildExit>,
    wakers: Vec<Waker>,
}

/// The child process, shared by the read half, the write half and the
/// stderr thread. The last of the halves to go kills and reaps it.
struct Process {
    child: Mutex<std::process::Child>,
    watched: Mutex<Watched>,
    ended: Condvar,
}

impl Process {
    fn child(&self) -> MutexGuard<'_, std::process::Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watched(&self) -> MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills the child unless it already exited. Reaping waits for the halves
    /// to go (see `Drop`).
    fn kill(&self) {
        let mut child = self.child();
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
    }

    /// Announces the exit: the tail of stderr and the status.
    fn ended(&self, program: String, status: Option<ExitStatus>) {
        let wakers = {
            let mut w = self.watched();
            let stderr = String::from_utf8_lossy(&w.stderr).into_owned();
            w.exit = Some(ChildExit {
                program,
                status,
                stderr,
            });
            core::mem::take(&mut w.wakers)
        };
        self.ended.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// Blocks until the stderr thread announced the exit.
    fn exit_blocking(&self) -> ChildExit {
        let mut w = self.watched();
        loop {
            if let Some(exit) = &w.exit {
                return exit.clone();
            }
            w = self.ended.wait(w).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn poll_exit(&self, cx: &mut Context<'_>) -> Poll<ChildExit> {
        let mut w = self.watched();
        if let Some(exit) = &w.exit {
            return Poll::Ready(exit.clone());
        }
        if !w.wakers.iter().any(|k| k.will_wake(cx.waker())) {
            w.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        // Reaped here, or it stays a zombie for as long as we run.
        let _ = child.wait();
    }
}

/// The stderr thread: reads stderr to its end, keeping the tail, then waits
/// (boundedly) for the exit status and announces the exit. It holds the
/// process weakly, so the connection's end still kills the child (which ends
/// its stderr, and this thread).
fn watch(process: &Weak<Process>, mut stderr: impl Read, program: String) {
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => break,
            #[allow(clippy::indexing_slicing)] // a read returns at most buf.len()
            Ok(n) => {
                let Some(p) = process.upgrade() else { return };
                let mut w = p.watched();
                w.stderr.extend_from_slice(&buf[..n]);
                let excess = w.stderr.len().saturating_sub(STDERR_KEPT);
                w.stderr.drain(..excess);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let give_up = Instant::now().checked_add(EXIT_GRACE);
    let status = loop {
        let Some(p) = process.upgrade() else { return };
        let exited = p.child().try_wait();
        drop(p);
        match exited {
            Ok(Some(status)) => break Some(status),
            Ok(None) if give_up.is_none_or(|t| Instant::now() < t) => std::thread::sleep(EXIT_POLL),
            _ => break None,
        }
    };
    if let Some(p) = process.upgrade() {
        p.ended(program, status);
    }
}

/// The end of stream as an error that names the child and quotes its stderr.
fn exit_error(exit: ChildExit) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, exit)
}

/// A child process started with its stdin, stdout and stderr piped, ready to
/// become a transport: [`into_blocking`](Self::into_blocking) for the
/// blocking driver, [`into_pipes`](Self::into_pipes) for an async adapter to
/// register the pipes with its reactor.
pub struct ChildStdio {
    process: Arc<Process>,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl fmt::Debug for ChildStdio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildStdio")
            .field("pid", &self.process.child().id())
            .finish()
    }
}

impl ChildStdio {
    /// Starts `command` with its stdin, stdout and stderr piped to us.
    ///
    /// # Errors
    ///
    /// The program cannot be started (the error names it).
    pub fn spawn(mut command: Command) -> io::Result<Self> {
        let program = command.get_program().to_string_lossy().into_owned();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("the child's stdio was not piped"));
        };
        let process = Arc::new(Process {
            child: Mutex::new(child),
            watched: Mutex::new(Watched {
                stderr: Vec::new(),
                exit: None,
                wakers: Vec::new(),
            }),
            ended: Condvar::new(),
        });
        let watcher = Arc::downgrade(&process);
        std::thread::Builder::new()
            .name("qmp-child-stderr".into())
            .spawn(move || watch(&watcher, stderr, program))?;
        Ok(Self {
            process,
            stdin,
            stdout,
        })
    }

    /// The child's process id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.process.child().id()
    }

    /// The halves for the blocking driver: writes to stdin never block past a
    /// call's deadline (the pipe is made nonblocking), reads of stdout end
    /// with the child's exit as the error.
    pub fn into_blocking(self) -> io::Result<(ChildWriter, ChildReader)> {
        set_nonblocking(self.stdin.as_fd())?;
        Ok((
            ChildWriter {
                process: self.process.clone(),
                stdin: self.stdin,
            },
            ChildReader {
                process: self.process,
                stdout: self.stdout,
            },
        ))
    }

    /// The bare pipes, for an async adapter to register with its reactor, and
    /// the process, to build a [`ChildTransport`] with.
    pub fn into_pipes(self) -> (ChildStdin, ChildStdout, ChildHandle) {
        (self.stdin, self.stdout, ChildHandle(self.process))
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(fd)?;
    fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// The child process of a [`ChildTransport`]: killed when the transport
/// shuts down, killed and reaped when the last part of it is dropped.
#[derive(Clone)]
pub struct ChildHandle(Arc<Process>);

impl fmt::Debug for ChildHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ChildHandle")
            .field(&self.0.child().id())
            .finish()
    }
}

/// The write half for the blocking driver: the child's stdin.
pub struct ChildWriter {
    process: Arc<Process>,
    stdin: ChildStdin,
}

impl fmt::Debug for ChildWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildWriter").finish_non_exhaustive()
    }
}

impl ChildWriter {
    /// Kills the child, which ends a read of its stdout blocked elsewhere.
    pub fn kill(&self) {
        self.process.kill();
    }
}

impl Write for ChildWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stdin.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdin.flush()
    }
}

impl AsFd for ChildWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stdin.as_fd()
    }
}

/// The read half for the blocking driver: the child's stdout. Its end of
/// stream is an error carrying the [`ChildExit`].
pub struct ChildReader {
    process: Arc<Process>,
    stdout: ChildStdout,
}

impl fmt::Debug for ChildReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildReader").finish_non_exhaustive()
    }
}

impl Read for ChildReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stdout.read(buf)? {
            0 if !buf.is_empty() => Err(exit_error(self.process.exit_blocking())),
            n => Ok(n),
        }
    }
}

impl AsFd for ChildReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stdout.as_fd()
    }
}

/// A child's stdout and stdin, registered with an async runtime (`R` and
/// `W`), as one async stream. Its end of stream is an error carrying the
/// [`ChildExit`]; closing it kills the child; dropping it kills and reaps
/// the child.
pub struct ChildTransport<R, W> {
    read: R,
    write: W,
    process: ChildHandle,
}

impl<R, W> fmt::Debug for ChildTransport<R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildTransport")
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

impl<R, W> ChildTransport<R, W> {
    /// Joins the child's stdout (`read`) and stdin (`write`), as registered
    /// with the runtime, with the process they belong to.
    pub fn new(read: R, write: W, process: ChildHandle) -> Self {
        Self {
            read,
            write,
            process,
        }
    }
}

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for ChildTransport<R, W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match core::task::ready!(Pin::new(&mut this.read).poll_read(cx, buf))? {
            0 if !buf.is_empty() => this.process.0.poll_exit(cx).map(|e| Err(exit_error(e))),
            n => Poll::Ready(Ok(n)),
        }
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for ChildTransport<R, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.process.0.kill();
        Pin::new(&mut self.write).poll_close(cx)
    }
}

impl<R, W> crate::nonblocking::Transport for ChildTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    fn can_pass_fds(&self) -> bool {
        false
    }

    fn poll_send_fds(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &[u8],
        _: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

/// The child's exit, when `e` reports one.
pub(crate) fn exit_of(e: &io::Error) -> Option<&ChildExit> {
    e.get_ref()?.downcast_ref::<ChildExit>()
}
