//! A hostile QMP or guest-agent peer: it plays the handshake like QEMU (or
//! qemu-ga), then follows a script of [`Step`]s that may send anything at
//! all: half a message, bytes that never end, a byte at a time, invalid
//! UTF-8, a second greeting, replies with ids nobody sent.
//!
//! ```ignore
//! let peer = HostilePeer::qmp("stall", vec![
//!     Step::Await("query-status"),
//!     Step::Send(b"{\"return\": {\"stat".to_vec()),
//!     Step::Hang,
//! ]);
//! // connect a client to peer.path() and call query-status
//! ```
//!
//! Replies are templates: `{id}` becomes the `id` of the command the last
//! [`Step::Await`] took (as sent, JSON), `{id:NAME}` that of the last command
//! named NAME it took, `{next}` the last id plus one (the id the client will
//! give its next command), `{sync}` the last command's `arguments.id` (the
//! guest agent's sync nonce), `{n}` the number of a [`Step::Repeat`] copy.
//! The peer works with a few fixed buffers, whatever it sends, so a case that
//! measures the client's memory does not measure the peer's.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::fixtures::PATIENCE;

/// QEMU 9.2's greeting, offering `oob`.
pub const GREETING: &str = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 9}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}";

/// The size of the chunks [`Step::Flood`] and [`Step::Repeat`] write.
const CHUNK: usize = 64 << 10;

/// One thing the peer does.
#[derive(Debug, Clone)]
pub enum Step {
    /// Sends QEMU's greeting ([`GREETING`]).
    Greet,
    /// Reads commands until one named so arrives; later templates use its id.
    Await(&'static str),
    /// Sends these bytes as they are.
    Send(Vec<u8>),
    /// Sends the template, filled in, then CR LF.
    Reply(String),
    /// Sends the template, filled in, with nothing after it: part of a
    /// message.
    Part(String),
    /// Sends the template, filled in, then CR LF, one byte per interval.
    Trickle(String, Duration),
    /// Sends the template `count` times, `{n}` numbered from 0, each followed
    /// by CR LF, in large writes.
    Repeat(String, usize),
    /// Sends `before` filled in, then the byte `fill` over and over, then
    /// `after` filled in and CR LF. With a `total`, the message (CR LF not
    /// counted) is exactly `total` bytes long; without, `fill` goes on until
    /// [`HostilePeer::release`] is called: a message that does not end until
    /// the case says so.
    Flood {
        /// The start of the message.
        before: String,
        /// The byte that follows it.
        fill: u8,
        /// The end of the message.
        after: String,
        /// The message's length, or `None` for "until released".
        total: Option<u64>,
    },
    /// Does nothing for a while.
    Sleep(Duration),
    /// Says nothing more, with the connection open, until dropped.
    Hang,
    /// Closes the connection.
    Close,
}

/// What the peer thread and the case share.
#[derive(Debug, Default)]
struct Shared {
    released: AtomicBool,
    stopping: AtomicBool,
    /// Bytes written to the client so far.
    sent: AtomicU64,
    /// Steps finished.
    done: AtomicUsize,
    /// When each finished step did.
    finished: Mutex<Vec<Instant>>,
    /// Every command received, in order.
    received: Mutex<Vec<serde_json::Value>>,
    /// The accepted connection, to shut down on drop.
    stream: Mutex<Option<UnixStream>>,
}

/// A peer serving one connection on a private unix socket, following a
/// script. Dropping it closes the connection and removes the socket.
#[derive(Debug)]
pub struct HostilePeer {
    dir: PathBuf,
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl HostilePeer {
    /// A QMP peer: greets, answers `qmp_capabilities` with its id, then
    /// follows `steps`.
    pub fn qmp(name: &str, steps: Vec<Step>) -> Self {
        let mut script = vec![
            Step::Greet,
            Step::Await("qmp_capabilities"),
            Step::Reply("{\"return\": {}, \"id\": {id}}".into()),
        ];
        script.extend(steps);
        Self::start(name, script)
    }

    /// A guest-agent peer: answers the client's `guest-sync-delimited` like
    /// qemu-ga (0xFF, then the nonce), then follows `steps`.
    pub fn agent(name: &str, steps: Vec<Step>) -> Self {
        let mut script = sync_steps();
        script.extend(steps);
        Self::start(name, script)
    }

    /// A peer that follows `steps` from the first byte.
    ///
    /// # Panics
    ///
    /// If its socket cannot be bound.
    pub fn start(name: &str, steps: Vec<Step>) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("qmp-hostile-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a private directory");
        let path = dir.join("peer.sock");
        let listener = UnixListener::bind(&path).expect("binding the peer's socket");
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || serve(&listener, &shared, steps))
        };
        HostilePeer {
            dir,
            path,
            shared,
            thread: Some(thread),
        }
    }

    /// Where to connect.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends the current endless [`Step::Flood`] (and any later one at once).
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
    }

    /// Bytes written to the client so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }

    /// Every command received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `n` steps of the script (the handshake's included) are
    /// done; false after [`PATIENCE`].
    pub fn wait_steps(&self, n: usize) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while self.shared.done.load(Ordering::SeqCst) < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// When step `n` of the script (counted from 0, the handshake's
    /// included) finished; `None` while it has not.
    pub fn finished_at(&self, n: usize) -> Option<Instant> {
        self.shared
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(n)
            .copied()
    }

    /// Waits until the script ran to its end (or failed: the client hung up)
    /// and says how it ended.
    ///
    /// # Panics
    ///
    /// If the peer thread panicked.
    pub fn finish(mut self) -> Result<(), String> {
        let thread = self.thread.take().expect("finished once");
        thread.join().expect("the peer thread panicked")
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.released.store(true, Ordering::SeqCst);
        let stream = self
            .shared
            .stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stream) = stream {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // Wakes an accept that is still waiting.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The guest agent's side of a (re)synchronisation: wait for
/// `guest-sync-delimited`, answer 0xFF and `{"return": nonce}`.
pub fn sync_steps() -> Vec<Step> {
    vec![
        Step::Await("guest-sync-delimited"),
        Step::Send(vec![0xFF]),
        Step::Reply("{\"return\": {sync}}".into()),
    ]
}

/// The peer thread: accept one client, run the script.
fn serve(listener: &UnixListener, shared: &Shared, steps: Vec<Step>) -> Result<(), String> {
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    if shared.stopping.load(Ordering::SeqCst) {
        return Err("stopped before a client came".into());
    }
    let handle = stream.try_clone().map_err(|e| format!("clone: {e}"))?;
    *shared.stream.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
    stream
        .set_read_timeout(Some(PATIENCE))
        .map_err(|e| format!("read timeout: {e}"))?;
    let mut peer = Peer {
        stream,
        shared,
        input: Vec::new(),
        scanned: 0,
        last: serde_json::Value::Null,
        by_name: Vec::new(),
        unclaimed: Vec::new(),
    };
    for (n, step) in steps.into_iter().enumerate() {
        peer.step(step).map_err(|e| format!("step {n}: {e}"))?;
        shared
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        shared.done.fetch_add(1, Ordering::SeqCst);
    }
    // Keep the connection until the case drops the peer: closing is a step.
    Ok(())
}

struct Peer<'a> {
    stream: UnixStream,
    shared: &'a Shared,
    /// Bytes read but not yet parsed into commands.
    input: Vec<u8>,
    /// How much of `input` is known to hold no line end.
    scanned: usize,
    /// The command the last `Await` took.
    last: serde_json::Value,
    /// The last command `Await` took of each name.
    by_name: Vec<(&'static str, serde_json::Value)>,
    /// Commands received that no `Await` took yet, oldest first.
    unclaimed: Vec<serde_json::Value>,
}

impl Peer<'_> {
    fn step(&mut self, step: Step) -> std::io::Result<()> {
        match step {
            Step::Greet => self.line(GREETING),
            Step::Await(name) => self.await_command(name),
            Step::Send(bytes) => self.write(&bytes),
            Step::Reply(template) => self.line(&self.fill(&template, 0)),
            Step::Part(template) => self.write(self.fill(&template, 0).as_bytes()),
            Step::Trickle(template, every) => {
                let text = self.fill(&template, 0) + "\r\n";
                for byte in text.bytes() {
                    self.write(&[byte])?;
                    std::thread::sleep(every);
                }
                Ok(())
            }
            Step::Repeat(template, count) => {
                let mut chunk = Vec::with_capacity(CHUNK + 1024);
                for n in 0..count {
                    chunk.extend_from_slice(self.fill(&template, n).as_bytes());
                    chunk.extend_from_slice(b"\r\n");
                    if chunk.len() >= CHUNK {
                        self.write(&chunk)?;
                        chunk.clear();
                    }
                }
                self.write(&chunk)
            }
            Step::Flood {
                before,
                fill,
                after,
                total,
            } => {
                let (before, after) = (self.fill(&before, 0), self.fill(&after, 0));
                self.write(before.as_bytes())?;
                let chunk = vec![fill; CHUNK];
                let mut left = total.map(|t| t - (before.len() + after.len()) as u64);
                loop {
                    let n = match left {
                        Some(0) => break,
                        Some(l) => l.min(CHUNK as u64) as usize,
                        None if self.shared.released.load(Ordering::SeqCst) => break,
                        None => CHUNK,
                    };
                    self.write(&chunk[..n])?;
                    left = left.map(|l| l - n as u64);
                }
                self.line(&after)
            }
            Step::Sleep(d) => {
                std::thread::sleep(d);
                Ok(())
            }
            Step::Hang => {
                while !self.shared.stopping.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            }
            Step::Close => self.stream.shutdown(std::net::Shutdown::Both),
        }
    }

    fn fill(&self, template: &str, n: usize) -> String {
        let mut text = template.to_owned();
        for (name, command) in &self.by_name {
            text = text.replace(&format!("{{id:{name}}}"), &command["id"].to_string());
        }
        let next = self.last["id"].as_u64().map_or(0, |id| id + 1);
        text.replace("{id}", &self.last["id"].to_string())
            .replace("{next}", &next.to_string())
            .replace("{sync}", &self.last["arguments"]["id"].to_string())
            .replace("{n}", &n.to_string())
    }

    fn line(&mut self, text: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(text.len() + 2);
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes)
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.shared
            .sent
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    /// Takes the oldest command named `name` received and not taken yet,
    /// reading until one arrives: concurrent calls may reach the peer in any
    /// order, and each `Await` still takes its own.
    fn await_command(&mut self, name: &'static str) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let named = |c: &serde_json::Value| {
                let verb = c.get("execute").or_else(|| c.get("exec-oob"));
                verb.and_then(|v| v.as_str()) == Some(name)
            };
            if let Some(i) = self.unclaimed.iter().position(named) {
                let command = self.unclaimed.remove(i);
                self.by_name.retain(|(n, _)| *n != name);
                self.by_name.push((name, command.clone()));
                self.last = command;
                return Ok(());
            }
            while let Some(end) = self.input[self.scanned..].iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=self.scanned + end).collect();
                self.scanned = 0;
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{FFFD}');
                if text.is_empty() {
                    continue;
                }
                let command: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{text}: {e}"))
                })?;
                self.shared
                    .received
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(command.clone());
                self.unclaimed.push(command);
            }
            self.scanned = self.input.len();
            if self.unclaimed.iter().any(named) {
                continue;
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the client hung up while the peer waited for {name}"),
                ));
            }
            self.input.extend_from_slice(&buf[..n]);
        }
    }
}
