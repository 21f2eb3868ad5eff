//! The virsh driver: the client API ([`Qmp`]) through libvirt's own command
//! line client. Each command is one `virsh -c URI qemu-monitor-command DOMAIN
//! JSON`; the events of a client come from one long-running
//! `virsh qemu-monitor-event --loop`, its output lines parsed into events.
//!
//! It needs nothing but `virsh` on `PATH`, and reaches whatever virsh
//! reaches (TLS, SSH, SASL included), at the cost of a process per command.
//! virsh's own error text is kept in the error ([`VirshError`]).
//!
//! virsh says nothing once its event loop is registered. [`Virsh::connect`]
//! returns once the loop's virsh has connected and found the domain; its
//! registration (one more round trip) follows within a millisecond or so, so
//! an event raised in that moment may be missed.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, mpsc};

use qmp_io::{Call, Disconnect, EventFilter, EventHub, Json, Qmp, Subscription, Timestamp};

use crate::error::ErrorKind;
use crate::qmp::{command_text, reply};

/// The longest line of virsh output kept (libvirt's own message limit); the
/// rest of a longer line is skipped.
pub const MAX_LINE: usize = 16 << 20;

/// How much of virsh's error output is kept.
const MAX_ERROR: u64 = 64 << 10;

/// virsh failed: it exited with an error (its `error: ...` text), could not
/// be run, or took too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirshError {
    /// What virsh said on stderr (without `error: `), or why it did not run.
    pub message: String,
    /// Its exit status, when it exited.
    pub status: Option<i32>,
}

impl VirshError {
    /// What the message says, as far as its text tells: no such domain, not
    /// running, read-only, authentication; else [`ErrorKind::Other`].
    pub fn kind(&self) -> ErrorKind {
        let m = self.message.to_ascii_lowercase();
        if m.contains("failed to get domain") || m.contains("domain not found") {
            ErrorKind::NoDomain
        } else if m.contains("not running") {
            ErrorKind::DomainNotRunning
        } else if m.contains("read only") || m.contains("read-only") {
            ErrorKind::ReadOnly
        } else if m.contains("authentication") {
            ErrorKind::AuthRequired
        } else {
            ErrorKind::Other
        }
    }
}

impl fmt::Display for VirshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "virsh: {}", self.message)
    }
}

impl core::error::Error for VirshError {}

fn virsh_error(message: impl Into<String>, status: Option<i32>) -> qmp_io::Error {
    qmp_io::Error::Transport(Arc::new(VirshError {
        message: message.into(),
        status,
    }))
}

/// The event loop's virsh, killed and reaped on drop.
struct EventLoop {
    child: Child,
    /// Kept open: virsh's shell ends at end of input.
    _stdin: ChildStdin,
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One domain's QMP monitor through `virsh`; the same client API as the
/// socket clients ([`Qmp`]).
///
/// ```no_run
/// use qmp_io::{Config, Qmp};
/// use qmp_libvirt::virsh::Virsh;
///
/// let vm = Virsh::connect("qemu:///system", "vm1", Config::default())?;
/// println!("{}", vm.execute_raw("query-status", ())?);
/// # Ok::<(), qmp_io::Error>(())
/// ```
pub struct Virsh {
    program: String,
    uri: String,
    domain: String,
    config: qmp_io::Config,
    hub: EventHub,
    closed: Arc<AtomicBool>,
    events: Mutex<Option<EventLoop>>,
}

impl fmt::Debug for Virsh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Virsh")
            .field("uri", &self.uri)
            .field("domain", &self.domain)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Virsh {
    /// Starts the event loop for `domain` at libvirt `uri` with the `virsh`
    /// on `PATH`, and returns once it has found the domain (within the
    /// connect timeout); virsh's error when it did not.
    pub fn connect(uri: &str, domain: &str, config: qmp_io::Config) -> qmp_io::Result<Self> {
        Self::connect_with("virsh", uri, domain, config)
    }

    /// [`connect`](Self::connect) with another virsh program.
    pub fn connect_with(
        program: &str,
        uri: &str,
        domain: &str,
        config: qmp_io::Config,
    ) -> qmp_io::Result<Self> {
        let virsh = Self {
            program: program.into(),
            uri: uri.into(),
            domain: domain.into(),
            hub: EventHub::new(&config),
            config,
            closed: Arc::new(AtomicBool::new(false)),
            events: Mutex::new(None),
        };
        virsh.start_events()?;
        Ok(virsh)
    }

    /// The event loop: virsh's shell, asked for the domain's state (which
    /// says it is connected and the domain exists), then to loop on events.
    fn start_events(&self) -> qmp_io::Result<()> {
        let mut child = Command::new(&self.program)
            .args(["-q", "-c", &self.uri])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| virsh_error(alloc::format!("cannot run {}: {e}", self.program), None))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(virsh_error("virsh's pipes are missing", None));
        };
        let domain = quote(&self.domain);
        let script =
            alloc::format!("domstate {domain}\nqemu-monitor-event --domain {domain} --loop\n");
        let mut events = EventLoop {
            child,
            _stdin: {
                stdin.write_all(script.as_bytes())?;
                stdin
            },
        };
        let (ready_tx, ready_rx) = mpsc::sync_channel(2);
        let failed = ready_tx.clone();
        std::thread::Builder::new()
            .name("qmp-libvirt virsh errors".into())
            .spawn(move || {
                // The first error line means the loop will not start (virsh's
                // shell goes on reading input); the rest is drained unread.
                let mut reader = BufReader::new(stderr);
                let mut first = String::new();
                if (&mut reader).take(MAX_ERROR).read_line(&mut first).is_ok() && !first.is_empty()
                {
                    let _ = failed.send(Err(first));
                }
                let _ = io::copy(&mut reader, &mut io::sink());
            })?;
        let (hub, closed, name) = (self.hub.clone(), self.closed.clone(), self.domain.clone());
        std::thread::Builder::new()
            .name("qmp-libvirt virsh events".into())
            .spawn(move || {
                read_events(stdout, &name, &hub, ready_tx);
                closed.store(true, Ordering::Release);
                hub.close();
            })?;
        match ready_rx.recv_timeout(self.config.connect_timeout) {
            Ok(Ok(())) => {
                *self.events.lock().unwrap_or_else(|e| e.into_inner()) = Some(events);
                Ok(())
            }
            Ok(Err(text)) => Err(virsh_error(error_text(&text), None)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = events.child.wait().ok().and_then(|s| s.code());
                Err(virsh_error(
                    "virsh ended before it found the domain",
                    status,
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(virsh_error(
                alloc::format!(
                    "no answer from virsh within the connect timeout ({:?})",
                    self.config.connect_timeout
                ),
                None,
            )),
        }
    }

    /// The domain name.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Runs a [`Call`] as one `virsh qemu-monitor-command`: its `return`
    /// value, or the QMP error as [`qmp_io::Error::Command`]; virsh's errors
    /// as [`qmp_io::Error::Transport`] holding a [`VirshError`].
    pub fn call(&self, call: Call) -> qmp_io::Result<Json> {
        let text = command_text(&call)?;
        let timeout = call.timeout_override().unwrap_or(self.config.timeout);
        let out = self.run(&["qemu-monitor-command", &self.domain, &text], timeout)?;
        reply(&out)
    }

    /// Runs an HMP command (`qemu-monitor-command --hmp`); its output.
    pub fn hmp(&self, command: &str) -> qmp_io::Result<String> {
        self.run(
            &["qemu-monitor-command", "--hmp", &self.domain, command],
            self.config.timeout,
        )
    }

    /// Runs `virsh -c URI ARGS`: its stdout when it exits 0, else its stderr
    /// as the error. Killed when `timeout` passes.
    fn run(&self, args: &[&str], timeout: Option<Duration>) -> qmp_io::Result<String> {
        if self.is_closed() {
            return Err(qmp_io::Error::Disconnected(Disconnect::Local));
        }
        let mut child = Command::new(&self.program)
            .args(["-q", "-c", &self.uri])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| virsh_error(alloc::format!("cannot run {}: {e}", self.program), None))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(virsh_error("virsh's pipes are missing", None));
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.take(MAX_ERROR).read_to_string(&mut text);
            text
        });
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let read = stdout
                .take((MAX_LINE as u64).saturating_add(1))
                .read_to_end(&mut out);
            let _ = tx.send(read.map(|_| out));
        });
        let got = match timeout {
            Some(t) => rx.recv_timeout(t).ok(),
            None => rx.recv().ok(),
        };
        let Some(out) = got else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(qmp_io::Error::Timeout(timeout.unwrap_or_default()));
        };
        let status = child.wait()?;
        let err = err_reader.join().unwrap_or_default();
        let out = out?;
        if !status.success() {
            return Err(virsh_error(error_text(&err), status.code()));
        }
        if out.len() > MAX_LINE {
            return Err(qmp_io::Error::ReplyTooLarge {
                size: out.len(),
                limit: MAX_LINE,
            });
        }
        String::from_utf8(out)
            .map_err(|_| virsh_error("virsh printed text that is not UTF-8", None))
    }

    /// Events of the domain matching `filter`, from now on.
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        self.hub.subscribe(filter)
    }

    /// True once the event loop's virsh is gone (or [`close`](Self::close)
    /// was called).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops the event loop; later calls fail.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        drop(self.events.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.hub.close();
    }
}

impl Drop for Virsh {
    fn drop(&mut self) {
        self.close();
    }
}

impl Qmp for Virsh {
    fn call(&self, call: Call) -> qmp_io::Result<Json> {
        Virsh::call(self, call)
    }

    fn subscribe(&self, filter: EventFilter) -> Subscription {
        Virsh::subscribe(self, filter)
    }

    fn is_closed(&self) -> bool {
        Virsh::is_closed(self)
    }
}

/// Quotes one argument for virsh's shell.
fn quote(arg: &str) -> String {
    let mut out = String::from("'");
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// virsh's error text, one line, without its `error: ` prefixes.
fn error_text(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim().trim_start_matches("error: ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        "virsh failed and said nothing".to_string()
    } else {
        lines.join(": ")
    }
}

/// Reads the event loop's output until it ends: the first line of the
/// domain's state says it is ready; event lines become events.
fn read_events(
    stdout: impl Read,
    domain: &str,
    hub: &EventHub,
    ready: mpsc::SyncSender<Result<(), String>>,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut ready = Some(ready);
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') && line.len() >= MAX_LINE {
            // Too long: skip to its end, keep nothing.
            if skip_line(&mut reader).is_err() {
                return;
            }
            continue;
        }
        let Ok(text) = core::str::from_utf8(&line) else {
            continue;
        };
        let text = text.trim_end();
        if let Some(event) = parse_event(text, domain) {
            hub.publish(event);
        } else if !text.is_empty() && !text.starts_with("virsh #") {
            // The domain's state: connected, and the domain exists.
            if let Some(r) = ready.take() {
                let _ = r.send(Ok(()));
            }
        }
    }
}

fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                // i < buf.len(): no overflow.
                reader.consume(i.saturating_add(1));
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// Parses `event NAME at SECONDS.MICROS for domain 'DOMAIN': DATA`, where
/// DATA is compact JSON or `<null>`.
pub fn parse_event(line: &str, domain: &str) -> Option<qmp_io::Event> {
    let rest = line.strip_prefix("event ")?;
    let (name, rest) = rest.split_once(" at ")?;
    let (stamp, rest) = rest.split_once(" for domain '")?;
    let data = rest.strip_prefix(domain)?.strip_prefix("': ")?;
    let (seconds, micros) = stamp.split_once('.')?;
    if name.is_empty() || micros.len() != 6 || !micros.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let timestamp = Timestamp {
        seconds: seconds.parse().ok()?,
        microseconds: micros.parse().ok()?,
    };
    let data = match data {
        "<null>" => None,
        json => Some(Json::parse(json.to_string()).ok()?),
    };
    Some(qmp_io::Event::new(name, data, Some(timestamp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_become_events() {
        let e = parse_event(
            "event STOP at 1796329200.238661 for domain 'vm': <null>",
            "vm",
        )
        .unwrap();
        assert_eq!(e.name(), "STOP");
        assert!(e.data().is_none());
        let t = e.timestamp().unwrap();
        assert_eq!((t.seconds, t.microseconds), (1_796_329_200, 238_661));
        let e = parse_event(
            "event DEVICE_DELETED at 1.000001 for domain 'a b': {\"device\":\"d\"}",
            "a b",
        )
        .unwrap();
        assert_eq!(e.data().unwrap().as_str(), "{\"device\":\"d\"}");
    }

    #[test]
    fn other_lines_are_not_events() {
        for line in [
            "",
            "running",
            "virsh # domstate vm",
            "event STOP at 1.5 for domain 'vm': <null>",
            "event STOP at x.000001 for domain 'vm': <null>",
            "event STOP at 1.000001 for domain 'other': <null>",
            "event STOP at 1.000001 for domain 'vm': {bad",
            "event  at 1.000001 for domain 'vm': <null>",
        ] {
            assert!(parse_event(line, "vm").is_none(), "{line}");
        }
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_whole() {
        let mut input = alloc::vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nrunning\nevent STOP at 1.000001 for domain 'vm': <null>\n");
        let hub = EventHub::new(&qmp_io::Config::default());
        let sub = hub.subscribe(EventFilter::all());
        let (tx, rx) = mpsc::sync_channel(1);
        read_events(&input[..], "vm", &hub, tx);
        assert_eq!(
            rx.try_recv(),
            Ok(Ok(())),
            "the state line after the long one"
        );
        assert_eq!(sub.try_recv().unwrap().unwrap().name(), "STOP");
        assert!(sub.try_recv().is_none());
    }

    #[test]
    fn errors_and_quoting() {
        assert_eq!(
            error_text("error: failed to get domain 'x'\n"),
            "failed to get domain 'x'"
        );
        assert_eq!(
            error_text("error: Failed to connect\nerror: no socket\n"),
            "Failed to connect: no socket"
        );
        assert_eq!(error_text(""), "virsh failed and said nothing");
        assert_eq!(quote("it's"), "'it'\\''s'");
        let e = VirshError {
            message: "failed to get domain 'x'".into(),
            status: Some(1),
        };
        assert_eq!(e.kind(), ErrorKind::NoDomain);
    }
}
