//! Guest-agent operations: running a program and collecting its output,
//! reading and writing files of any size in chunks under the reply cap, and
//! freezing file systems with their own long timeouts.
//!
//! Run them over a guest-agent client wrapped in [`Agent`](crate::Agent).
//!
//! # Default timeouts
//!
//! Chosen from what production managers use:
//!
//! | what | default | from |
//! | --- | --- | --- |
//! | one agent command ([`DEFAULT_CALL_TIMEOUT`]) | 5 s | libvirt's `QEMU_AGENT_WAIT_TIME` (src/qemu/qemu_agent.c) and Proxmox's default in `PVE::QMPClient` |
//! | a program run by [`Exec`] ([`DEFAULT_EXEC_TIMEOUT`]) | 30 s | `qm guest exec --timeout` (Proxmox) |
//! | one chunk of a file transfer ([`DEFAULT_CHUNK_TIMEOUT`]) | 60 s | Proxmox's timeout for commands that move data (`device_add`, `netdev_add`) |
//! | `guest-fsfreeze-freeze` ([`DEFAULT_FREEZE_TIMEOUT`]) | 1 h | Proxmox `PVE::QMPClient`: a freeze killed midway tends to leave the guest unfreezable; libvirt waits without limit |
//! | `guest-fsfreeze-thaw` ([`DEFAULT_THAW_TIMEOUT`]) | 3 min | Proxmox `PVE::QMPClient`: Windows guests and thaw hook scripts vary |

use core::marker::PhantomData;
use core::time::Duration;
use std::time::Instant;

use qmp_io::{Call, Json};
use qmp_qapi::qga;

use crate::base64;
use crate::error::{Cause, OpError};
use crate::op::{Input, Operation, Step, deadline};
use crate::wait::command_failed;

/// Timeout of one guest-agent command: 5 s.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Exec`] waits for the program to end: 30 s.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one `guest-file-read` / `guest-file-write` chunk: 60 s.
pub const DEFAULT_CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of `guest-fsfreeze-freeze`: 1 hour.
pub const DEFAULT_FREEZE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Timeout of `guest-fsfreeze-thaw`: 3 minutes.
pub const DEFAULT_THAW_TIMEOUT: Duration = Duration::from_secs(180);
/// Bytes per `guest-file-read` / `guest-file-write` by default: 4 MiB, whose
/// base64 reply (about 5.6 MB) stays under the 10 MiB reply cap of libvirt
/// and QEMU's Python library as well as this crate's 64 MiB.
pub const DEFAULT_CHUNK: usize = 4 << 20;
/// Most bytes [`FileRead`] keeps by default (the guest is not trusted): 1 GiB.
pub const DEFAULT_READ_LIMIT: usize = 1 << 30;
/// qemu-ga reads at most this much per `guest-file-read` (48 MB).
pub const AGENT_MAX_READ: usize = 48_000_000;
/// Room left in a reply for everything but the base64 data.
const REPLY_OVERHEAD: usize = 256;

/// The first and longest pause between two `guest-exec-status` polls.
const POLL_FIRST: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(500);

fn decode<T: serde::de::DeserializeOwned>(
    op: &str,
    step: &str,
    json: &Json,
    left: &str,
) -> Result<T, OpError> {
    json.decode()
        .map_err(|e| OpError::new(op, step, Cause::Decode(format!("{e}: {json}")), left))
}

/// What a program run in the guest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its process id in the guest.
    pub pid: i64,
    /// Its exit code, when it exited.
    pub exit_code: Option<i64>,
    /// The signal that ended it, when one did.
    pub signal: Option<i64>,
    /// What it wrote to standard output.
    pub stdout: Vec<u8>,
    /// What it wrote to standard error.
    pub stderr: Vec<u8>,
    /// The agent cut an output short (qemu-ga keeps 16 MB of each).
    pub truncated: bool,
}

/// `guest-exec` of a program with optional standard input, then
/// `guest-exec-status` polled with a growing pause (5 ms doubling up to
/// 500 ms) until it exits or the deadline passes. The deadline error says
/// the program is still running in the guest (the agent cannot kill it).
#[derive(Debug)]
pub struct Exec {
    exec: Option<qga::GuestExec>,
    timeout: Duration,
    call_timeout: Duration,
    deadline: Option<Instant>,
    pause: Duration,
    pid: Option<i64>,
}

impl Exec {
    /// Runs `path` (no arguments, no input; output captured).
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            exec: Some(qga::GuestExec {
                path: path.into(),
                arg: None,
                env: None,
                input_data: None,
                capture_output: Some(qga::GuestExecCaptureOutput::Flag(true)),
            }),
            timeout: DEFAULT_EXEC_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            deadline: None,
            pause: POLL_FIRST,
            pid: None,
        }
    }

    fn exec(&mut self) -> &mut qga::GuestExec {
        self.exec.get_or_insert_with(|| qga::GuestExec {
            path: String::new(),
            arg: None,
            env: None,
            input_data: None,
            capture_output: None,
        })
    }

    /// Its arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.exec().arg = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Its environment, `NAME=value` each.
    pub fn env<I: IntoIterator<Item = S>, S: Into<String>>(mut self, env: I) -> Self {
        self.exec().env = Some(env.into_iter().map(Into::into).collect());
        self
    }

    /// Its standard input.
    pub fn stdin(mut self, input: &[u8]) -> Self {
        self.exec().input_data = Some(base64::encode(input));
        self
    }

    /// How long to wait for it to end (default [`DEFAULT_EXEC_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout of each agent command (default [`DEFAULT_CALL_TIMEOUT`]).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    fn operation(&self) -> String {
        match &self.exec {
            Some(e) => format!("guest-exec {}", e.path),
            None => "guest-exec".to_owned(),
        }
    }

    fn status(&self, pid: i64) -> Step<ExecOutput> {
        let call = Call::command(&qga::GuestExecStatus { pid }).timeout(Some(self.call_timeout));
        Step::Send { call, watch: None }
    }

    fn finish(&self, pid: i64, s: qga::GuestExecStatusResult) -> Result<ExecOutput, OpError> {
        let mut out = ExecOutput {
            pid,
            exit_code: s.exitcode,
            signal: s.signal,
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: s.out_truncated == Some(true) || s.err_truncated == Some(true),
        };
        for (text, into) in [(s.out_data, &mut out.stdout), (s.err_data, &mut out.stderr)] {
            if let Some(text) = text {
                base64::decode_into(&text, into).map_err(|e| {
                    OpError::new(
                        self.operation(),
                        "decoding the output",
                        Cause::Decode(e.to_string()),
                        format!("process {pid} has exited"),
                    )
                })?;
            }
        }
        Ok(out)
    }
}

impl Operation for Exec {
    type Output = ExecOutput;

    fn step(&mut self, input: Input, now: Instant) -> Step<ExecOutput> {
        let op = self.operation();
        match (input, self.pid) {
            (Input::Start, None) => {
                self.deadline = Some(deadline(now, self.timeout));
                let Some(exec) = self.exec.take() else {
                    return Step::Done(Err(OpError::new(
                        op,
                        "starting",
                        Cause::Decode("started twice".into()),
                        "nothing changed",
                    )));
                };
                let call = Call::command(&exec).timeout(Some(self.call_timeout));
                self.exec = Some(exec);
                Step::Send { call, watch: None }
            }
            (Input::Reply(Err(e)), None) => Step::Done(Err(command_failed(&op, "guest-exec", e))),
            (Input::Reply(Ok(json)), None) => {
                let left = "unknown: the program may have started";
                match decode::<qga::GuestExecResult>(&op, "starting", &json, left) {
                    Ok(started) => {
                        self.pid = Some(started.pid);
                        self.status(started.pid)
                    }
                    Err(e) => Step::Done(Err(e)),
                }
            }
            (Input::Reply(Err(e)), Some(pid)) => Step::Done(Err(OpError::new(
                op,
                "polling guest-exec-status",
                Cause::Command(e),
                format!("process {pid} was started; its state is not known"),
            ))),
            (Input::Reply(Ok(json)), Some(pid)) => {
                let left = format!("process {pid} was started; its state is not known");
                let status =
                    match decode::<qga::GuestExecStatusResult>(&op, "polling", &json, &left) {
                        Ok(s) => s,
                        Err(e) => return Step::Done(Err(e)),
                    };
                if status.exited {
                    return Step::Done(self.finish(pid, status));
                }
                let end = self.deadline.unwrap_or(now);
                if now >= end {
                    return Step::Done(Err(OpError::new(
                        op,
                        "waiting for the program to exit",
                        Cause::Deadline(self.timeout),
                        format!("process {pid} is still running in the guest"),
                    )));
                }
                let pause = self.pause.min(end - now);
                self.pause = (self.pause * 2).min(POLL_MAX);
                Step::Sleep(pause)
            }
            (_, Some(pid)) => self.status(pid),
            (_, None) => Step::Done(Err(OpError::new(
                op,
                "starting",
                Cause::Decode("unexpected input".into()),
                "nothing changed",
            ))),
        }
    }
}

/// Which way a file transfer goes.
#[derive(Debug)]
enum Direction {
    Read { data: Vec<u8>, limit: usize },
    Write { data: Vec<u8>, offset: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Opening,
    Moving,
    Closing,
}

/// A file read or written through the agent in chunks: `guest-file-open`,
/// `guest-file-read` or `guest-file-write` until done, `guest-file-close`.
/// The handle is closed on failure too; the error says whether that worked.
///
/// `T` is the output: the bytes read ([`FileRead`]) or the count written
/// ([`FileWrite`]).
#[derive(Debug)]
pub struct FileTransfer<T> {
    path: String,
    direction: Direction,
    chunk: usize,
    chunk_timeout: Duration,
    handle: Option<i64>,
    phase: Phase,
    /// The error to report once the handle is closed.
    failed: Option<OpError>,
    eof: bool,
    output: PhantomData<fn() -> T>,
}

/// Reads a whole guest file: the output is its bytes.
///
/// ```no_run
/// # fn demo(agent: &qmp_std::GuestAgent) -> Result<(), qmp_ops::OpError> {
/// use qmp_ops::{Agent, guest::FileRead};
/// let bytes = qmp_ops::run(&Agent(agent), FileRead::new("/etc/hostname"))?;
/// # let _ = bytes; Ok(()) }
/// ```
pub type FileRead = FileTransfer<Vec<u8>>;

/// Writes (creates or truncates) a guest file: the output is the count of
/// bytes written.
pub type FileWrite = FileTransfer<u64>;

impl FileTransfer<Vec<u8>> {
    /// Reads `path` in [`DEFAULT_CHUNK`] pieces, keeping at most
    /// [`DEFAULT_READ_LIMIT`] bytes.
    pub fn new(path: impl Into<String>) -> Self {
        Self::with(
            path.into(),
            Direction::Read {
                data: Vec::new(),
                limit: DEFAULT_READ_LIMIT,
            },
        )
    }
}

impl FileTransfer<u64> {
    /// Writes `data` to `path` in [`DEFAULT_CHUNK`] pieces.
    pub fn new(path: impl Into<String>, data: Vec<u8>) -> Self {
        Self::with(path.into(), Direction::Write { data, offset: 0 })
    }
}

/// What a transfer gives back, before it is typed.
enum Transferred {
    Read(Vec<u8>),
    Written(u64),
}

impl Operation for FileTransfer<Vec<u8>> {
    type Output = Vec<u8>;

    fn abandon(&mut self) -> Option<crate::op::Cleanup> {
        self.abandon_handle()
    }

    fn step(&mut self, input: Input, now: Instant) -> Step<Vec<u8>> {
        self.transfer(input, now).map_done(|r| {
            Step::Done(r.map(|t| match t {
                Transferred::Read(data) => data,
                Transferred::Written(_) => Vec::new(),
            }))
        })
    }
}

impl Operation for FileTransfer<u64> {
    type Output = u64;

    fn abandon(&mut self) -> Option<crate::op::Cleanup> {
        self.abandon_handle()
    }

    fn step(&mut self, input: Input, now: Instant) -> Step<u64> {
        self.transfer(input, now).map_done(|r| {
            Step::Done(r.map(|t| match t {
                Transferred::Written(n) => n,
                Transferred::Read(data) => data.len() as u64,
            }))
        })
    }
}

impl<T> FileTransfer<T> {
    fn with(path: String, direction: Direction) -> Self {
        Self {
            path,
            direction,
            chunk: DEFAULT_CHUNK,
            chunk_timeout: DEFAULT_CHUNK_TIMEOUT,
            handle: None,
            phase: Phase::Opening,
            failed: None,
            eof: false,
            output: PhantomData,
        }
    }

    /// Moves at most `bytes` per command (at least 1; reads at most
    /// [`AGENT_MAX_READ`]).
    pub fn chunk(mut self, bytes: usize) -> Self {
        self.chunk = bytes.clamp(1, AGENT_MAX_READ);
        self
    }

    /// Picks the largest chunk whose base64 message fits in `bytes`: the
    /// client's reply size limit for reads (so a file of any size is read
    /// without raising it), the agent's input limit for writes.
    pub fn reply_cap(self, bytes: usize) -> Self {
        let chunk = base64::decoded_capacity(bytes.saturating_sub(REPLY_OVERHEAD));
        self.chunk(chunk)
    }

    /// Keeps at most `bytes` of a read (the guest is not trusted); a larger
    /// file fails the read. No effect on writes.
    pub fn limit(mut self, bytes: usize) -> Self {
        if let Direction::Read { limit, .. } = &mut self.direction {
            *limit = bytes;
        }
        self
    }

    /// Timeout of each command (default [`DEFAULT_CHUNK_TIMEOUT`]).
    pub fn chunk_timeout(mut self, timeout: Duration) -> Self {
        self.chunk_timeout = timeout;
        self
    }

    fn operation(&self) -> String {
        match self.direction {
            Direction::Read { .. } => format!("guest file read {}", self.path),
            Direction::Write { .. } => format!("guest file write {}", self.path),
        }
    }

    fn send<C: qmp_io::Command>(&self, command: &C) -> Step<Transferred> {
        Step::Send {
            call: Call::command(command).timeout(Some(self.chunk_timeout)),
            watch: None,
        }
    }

    fn fail(&self, step: &str, cause: Cause) -> OpError {
        OpError::new(self.operation(), step, cause, "")
    }

    /// Closes the handle, then reports `error` (or the data, on success).
    fn close(&mut self, error: Option<OpError>) -> Step<Transferred> {
        self.failed = error;
        self.phase = Phase::Closing;
        match self.handle {
            Some(handle) => self.send(&qga::GuestFileClose { handle }),
            None => self.closed(Ok(())),
        }
    }

    fn closed(&mut self, close: Result<(), qmp_io::Error>) -> Step<Transferred> {
        let handle = self.handle.take();
        let closed = match (&close, handle) {
            (_, None) => "no handle was open".to_owned(),
            (Ok(()), Some(h)) => format!("handle {h} closed"),
            (Err(e), Some(h)) => {
                format!("handle {h} may still be open (guest-file-close failed: {e})")
            }
        };
        if let Some(e) = self.failed.take() {
            let left = match self.direction {
                Direction::Write { offset, .. } => format!("{offset} bytes written; {closed}"),
                Direction::Read { .. } => closed,
            };
            return Step::Done(Err(e.left(left)));
        }
        if let Err(e) = close {
            return Step::Done(Err(self.fail("closing", Cause::Command(e)).left(closed)));
        }
        match &mut self.direction {
            Direction::Read { data, .. } => {
                Step::Done(Ok(Transferred::Read(core::mem::take(data))))
            }
            Direction::Write { offset, .. } => Step::Done(Ok(Transferred::Written(*offset as u64))),
        }
    }

    /// The next read or write, or the close when done.
    fn next(&mut self, handle: i64) -> Step<Transferred> {
        let chunk = self.chunk;
        match &self.direction {
            Direction::Read { .. } if self.eof => self.close(None),
            Direction::Read { .. } => self.send(&qga::GuestFileRead {
                handle,
                count: Some(chunk as i64),
            }),
            Direction::Write { data, offset } if *offset >= data.len() => self.close(None),
            Direction::Write { data, offset } => {
                let piece = &data[*offset..data.len().min(offset + chunk)];
                self.send(&qga::GuestFileWrite {
                    handle,
                    buf_b64: base64::encode(piece),
                    count: Some(piece.len() as i64),
                })
            }
        }
    }

    /// Closes the open handle of a transfer given up on.
    fn abandon_handle(&mut self) -> Option<crate::op::Cleanup> {
        let handle = self.handle.take()?;
        let close =
            Call::command(&qga::GuestFileClose { handle }).timeout(Some(self.chunk_timeout));
        let close = crate::sequence::Action::new(close, format!("handle {handle}"));
        let op = crate::sequence::Sequence::new(format!("guest-file-close {handle}"), vec![close]);
        Some(crate::sequence::ignore_failure(op))
    }

    /// The command that moves the data, for errors.
    fn verb(&self) -> &'static str {
        match self.direction {
            Direction::Read { .. } => "guest-file-read",
            Direction::Write { .. } => "guest-file-write",
        }
    }

    /// Takes in one chunk's reply; the guest is not trusted, so its counts
    /// and sizes are checked before anything is kept.
    fn moved(&mut self, json: &Json) -> Result<(), Cause> {
        let requested = self.chunk;
        let bad = |e: serde_json::Error| Cause::Decode(format!("{e}"));
        match &mut self.direction {
            Direction::Read { data, limit } => {
                let r: qga::GuestFileReadResult = json.decode().map_err(bad)?;
                if r.buf_b64.len() > base64::encoded_len(requested) {
                    return Err(Cause::Reported(format!(
                        "the agent sent {} base64 characters for a {requested}-byte read",
                        r.buf_b64.len()
                    )));
                }
                let before = data.len();
                if before + base64::decoded_capacity(r.buf_b64.len()) > limit.saturating_add(2) {
                    return Err(Cause::Reported(format!(
                        "the file is larger than the {limit}-byte limit"
                    )));
                }
                base64::decode_into(&r.buf_b64, data).map_err(|e| Cause::Decode(e.to_string()))?;
                if data.len() > *limit {
                    return Err(Cause::Reported(format!(
                        "the file is larger than the {limit}-byte limit"
                    )));
                }
                self.eof = r.eof || data.len() == before;
            }
            Direction::Write { data, offset } => {
                let w: qga::GuestFileWriteResult = json.decode().map_err(bad)?;
                let wanted = data.len().min(*offset + requested) - *offset;
                match usize::try_from(w.count) {
                    Ok(n) if n > 0 && n <= wanted => *offset += n,
                    _ => {
                        return Err(Cause::Reported(format!(
                            "the agent wrote {} of {wanted} bytes",
                            w.count
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

impl<T> FileTransfer<T> {
    fn transfer(&mut self, input: Input, now: Instant) -> Step<Transferred> {
        let reply = match input {
            Input::Start => {
                let mode = match self.direction {
                    Direction::Read { .. } => "r",
                    Direction::Write { .. } => "w",
                };
                return self.send(&qga::GuestFileOpen {
                    path: self.path.clone(),
                    mode: Some(mode.to_owned()),
                });
            }
            Input::Reply(reply) => reply,
            _ => return Step::Wait { deadline: now },
        };
        match (self.phase, reply) {
            (Phase::Opening, Err(e)) => {
                Step::Done(Err(command_failed(&self.operation(), "guest-file-open", e)))
            }
            (Phase::Opening, Ok(json)) => {
                let op = self.operation();
                match decode::<i64>(&op, "opening", &json, "unknown: the file may be open") {
                    Ok(handle) => {
                        self.handle = Some(handle);
                        self.phase = Phase::Moving;
                        self.next(handle)
                    }
                    Err(e) => Step::Done(Err(e)),
                }
            }
            (Phase::Moving, reply) => {
                let moved = reply
                    .map_err(Cause::Command)
                    .and_then(|json| self.moved(&json));
                match (moved, self.handle) {
                    (Ok(()), Some(handle)) => self.next(handle),
                    (Ok(()), None) => self.close(None),
                    (Err(cause), _) => {
                        let error = self.fail(self.verb(), cause);
                        self.close(Some(error))
                    }
                }
            }
            (Phase::Closing, reply) => self.closed(reply.map(drop)),
        }
    }
}

/// `guest-shutdown` in `mode` (`powerdown`, `halt`, `reboot`), done when
/// QMP sees the guest go (`SHUTDOWN`, or `RESET` for a reboot): the agent
/// sends no reply, so only QEMU can tell. Run it over a
/// [`WithAgent`](crate::WithAgent) of the VM's QMP and agent clients.
pub fn shutdown(mode: &str, timeout: Duration) -> crate::wait::Await {
    let call = Call::command(&qga::GuestShutdown {
        mode: Some(mode.to_owned()),
    });
    let event = if mode == "reboot" {
        "RESET"
    } else {
        "SHUTDOWN"
    };
    crate::wait::Await::new(call, vec![crate::op::Want::event(event)], timeout)
        .named(format!("guest-shutdown {mode}"))
}

/// `guest-fsfreeze-freeze` (with [`DEFAULT_FREEZE_TIMEOUT`]) or
/// `guest-fsfreeze-thaw` (with [`DEFAULT_THAW_TIMEOUT`]): the output is the
/// number of file systems frozen or thawed. A freeze that fails or times out
/// is followed by a thaw, so the guest is not left frozen; the error says
/// whether that worked.
#[derive(Debug)]
pub struct Fsfreeze {
    freeze: bool,
    timeout: Duration,
    thawing: Option<OpError>,
}

impl Fsfreeze {
    /// Freezes every guest file system.
    pub fn freeze() -> Self {
        Self {
            freeze: true,
            timeout: DEFAULT_FREEZE_TIMEOUT,
            thawing: None,
        }
    }

    /// Thaws them.
    pub fn thaw() -> Self {
        Self {
            freeze: false,
            timeout: DEFAULT_THAW_TIMEOUT,
            thawing: None,
        }
    }

    /// Overrides the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Operation for Fsfreeze {
    type Output = i64;

    fn step(&mut self, input: Input, now: Instant) -> Step<i64> {
        let name = if self.freeze {
            "guest-fsfreeze-freeze"
        } else {
            "guest-fsfreeze-thaw"
        };
        if let Some(error) = self.thawing.take() {
            let left = match input {
                Input::Reply(Ok(_)) => "file systems thawed again".to_owned(),
                Input::Reply(Err(e)) => format!("file systems may be frozen (thaw failed: {e})"),
                _ => "file systems may be frozen".to_owned(),
            };
            return Step::Done(Err(error.left(left)));
        }
        match input {
            Input::Start => {
                let call = if self.freeze {
                    Call::command(&qga::GuestFsfreezeFreeze)
                } else {
                    Call::command(&qga::GuestFsfreezeThaw)
                };
                Step::Send {
                    call: call.timeout(Some(self.timeout)),
                    watch: None,
                }
            }
            Input::Reply(Ok(json)) => Step::Done(decode(name, name, &json, "unknown")),
            Input::Reply(Err(e)) if self.freeze => {
                self.thawing = Some(command_failed(name, name, e));
                let call =
                    Call::command(&qga::GuestFsfreezeThaw).timeout(Some(DEFAULT_THAW_TIMEOUT));
                Step::Send { call, watch: None }
            }
            Input::Reply(Err(e)) => Step::Done(Err(command_failed(name, name, e))),
            _ => Step::Wait { deadline: now },
        }
    }
}
