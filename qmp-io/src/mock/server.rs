//! The server side of one connection: the accept loop, reading and framing
//! commands, and answering them now or holding them.

use core::panic::AssertUnwindSafe;
use core::sync::atomic::Ordering;
use core::time::Duration;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::catch_unwind;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use qmp_proto::server::ReplyTo;
use qmp_proto::{Heap, Server, ServerConfig, ServerOutput, Timestamp};

use super::builtin::builtin;
use super::{MockReply, MockRequest, ReceivedCommand, Record, Shared, lock};

/// Read size of the connection loop.
const READ_SIZE: usize = 64 << 10;

/// One client connection.
pub(super) struct Conn {
    /// 1 for the first connection accepted.
    pub(super) number: usize,
    pub(super) socket: UnixStream,
    /// The server state machine; also serialises writes, so replies and events
    /// go out whole and in the order they were encoded.
    pub(super) wire: Mutex<Wire>,
}

impl Conn {
    /// Ends the connection from any thread, waking a blocked read or write.
    pub(super) fn shutdown(&self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

pub(super) struct Wire {
    pub(super) server: Server<Heap>,
    pub(super) broken: bool,
}

impl Wire {
    /// Writes everything the server has queued.
    pub(super) fn flush(&mut self, socket: &UnixStream) -> io::Result<()> {
        loop {
            let pending = self.server.pending_transmit();
            if pending.is_empty() {
                return Ok(());
            }
            if self.broken {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            // NOSIGNAL: a client that went away must not kill the test process.
            match rustix::net::send(socket, pending, rustix::net::SendFlags::NOSIGNAL) {
                Ok(0) => {
                    self.broken = true;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    if let Err(e) = self.server.advance_transmit(n) {
                        self.broken = true;
                        return Err(io::Error::other(e));
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e.into());
                }
            }
        }
    }
}

/// A command waiting to be answered.
pub(super) struct Pending {
    pub(super) conn: Arc<Conn>,
    pub(super) reply_to: ReplyTo,
    pub(super) request: MockRequest,
}

pub(super) fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((socket, _)) => serve(shared, socket),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Such as EMFILE: back off rather than spin.
                tracing::warn!("mock QEMU: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Serves one connection until it ends.
fn serve(shared: &Arc<Shared>, socket: UnixStream) {
    let server = Server::<Heap>::new(ServerConfig {
        version: shared.version,
        package: &shared.package,
        oob: shared.oob,
        limits: Default::default(),
    });
    let conn = {
        let mut state = lock(&shared.state);
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        state.connections = state.connections.saturating_add(1);
        let conn = Arc::new(Conn {
            number: state.connections,
            socket,
            wire: Mutex::new(Wire {
                server,
                broken: false,
            }),
        });
        state.conn = Some(conn.clone());
        state.negotiated = false;
        shared.changed.notify_all();
        conn
    };
    tracing::debug!("mock QEMU: connection {} accepted", conn.number);
    if shared.greeting && lock(&conn.wire).flush(&conn.socket).is_err() {
        conn.shutdown();
    }
    let mut buf = vec![0u8; READ_SIZE];
    let mut fresh = Vec::new();
    // The descriptors of the most recent read that carried any, until taken.
    let mut fds = Vec::new();
    loop {
        fresh.clear();
        let n = match crate::fd::recv_with_fds(conn.socket.as_fd(), &mut buf, &mut fresh) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if !fresh.is_empty() {
            fds = core::mem::take(&mut fresh);
        }
        // Without a greeting there is no session: the input means nothing.
        if !shared.greeting {
            continue;
        }
        #[allow(clippy::indexing_slicing)] // a read returns at most buf.len()
        feed(shared, &conn, &buf[..n], &mut fds);
        if lock(&conn.wire).broken {
            break;
        }
    }
    {
        let mut wire = lock(&conn.wire);
        wire.server.receive_eof();
        while wire.server.poll_output().is_some() {}
    }
    conn.shutdown();
    let mut state = lock(&shared.state);
    if state.conn.as_ref().is_some_and(|c| c.number == conn.number) {
        state.conn = None;
        state.negotiated = false;
    }
    state.held.retain(|p| p.conn.number != conn.number);
    shared.changed.notify_all();
    tracing::debug!("mock QEMU: connection {} closed", conn.number);
}

/// What one `poll_output` produced, owned so the lock can be dropped.
enum Polled {
    Negotiated,
    Command {
        name: String,
        arguments: Option<String>,
        id: Option<String>,
        oob: bool,
        reply_to: ReplyTo,
    },
    Other,
}

/// Feeds one read's bytes to the server and answers what it finds.
fn feed(shared: &Arc<Shared>, conn: &Arc<Conn>, mut bytes: &[u8], fds: &mut Vec<OwnedFd>) {
    let mut stalled = false;
    loop {
        let taken = match lock(&conn.wire).server.receive(bytes) {
            Ok(n) => n,
            Err(_) => return,
        };
        // The server takes at most what it was given.
        bytes = bytes.get(taken..).unwrap_or_default();
        // One output at a time, each answered before the next is polled: the
        // server answers malformed input itself while polling, and this keeps
        // those answers in order with ours, as QEMU's are.
        loop {
            let polled = {
                let mut wire = lock(&conn.wire);
                let polled = match wire.server.poll_output() {
                    None | Some(ServerOutput::Closed) => None,
                    Some(ServerOutput::Negotiated { .. }) => Some(Polled::Negotiated),
                    Some(ServerOutput::Command(req)) => Some(Polled::Command {
                        name: req.name.to_string_lossless(),
                        arguments: req.arguments.map(|a| a.as_str().to_owned()),
                        id: req.reply_to.id().map(str::to_owned),
                        oob: req.oob,
                        reply_to: req.reply_to,
                    }),
                    Some(_) => Some(Polled::Other),
                };
                if wire.flush(&conn.socket).is_err() {
                    drop(wire);
                    conn.shutdown();
                    return;
                }
                polled
            };
            match polled {
                None => break,
                Some(Polled::Negotiated) => {
                    lock(&shared.state).negotiated = true;
                    shared.changed.notify_all();
                }
                Some(Polled::Command {
                    name,
                    arguments,
                    id,
                    oob,
                    reply_to,
                }) => {
                    let takes_fds = lock(&shared.scripts).contains_key(&name)
                        || matches!(name.as_str(), "getfd" | "add-fd");
                    let request = MockRequest {
                        name,
                        arguments,
                        id,
                        oob,
                        fds: if takes_fds {
                            core::mem::take(fds)
                        } else {
                            Vec::new()
                        },
                    };
                    dispatch(
                        shared,
                        Pending {
                            conn: conn.clone(),
                            reply_to,
                            request,
                        },
                    );
                }
                Some(Polled::Other) => {}
            }
        }
        if bytes.is_empty() {
            return;
        }
        // The server took nothing even after its outputs were drained: drop
        // the rest rather than spin.
        if taken == 0 {
            if stalled {
                return;
            }
            stalled = true;
        } else {
            stalled = false;
        }
    }
}

/// Records a command, then answers it now or holds it.
fn dispatch(shared: &Arc<Shared>, pending: Pending) {
    {
        let mut state = lock(&shared.state);
        if shared.record {
            let r = &pending.request;
            state.received.push(Record {
                command: ReceivedCommand {
                    name: r.name.clone(),
                    arguments: r.arguments.clone(),
                    id: r.id.clone(),
                    oob: r.oob,
                    fds: r.fds.len(),
                    connection: pending.conn.number,
                },
                waited: false,
            });
            shared.changed.notify_all();
        }
        let busy = state.hold || state.releasing || !state.held.is_empty();
        if busy && !pending.request.oob {
            state.held.push_back(pending);
            return;
        }
    }
    answer(shared, pending);
}

/// What answering a command sends.
pub(super) struct Outcome {
    /// Events sent before the reply, as QEMU emits them while the command runs.
    pub(super) before: Vec<(&'static str, Option<String>)>,
    pub(super) reply: MockReply,
    /// Events sent after the reply.
    pub(super) after: Vec<(&'static str, Option<String>)>,
    /// Close the connection once all is sent.
    pub(super) close: bool,
}

impl From<MockReply> for Outcome {
    fn from(reply: MockReply) -> Self {
        Outcome {
            before: Vec::new(),
            reply,
            after: Vec::new(),
            close: false,
        }
    }
}

/// Works out the answer (outside every lock: handlers are the user's code)
/// and sends it.
pub(super) fn answer(shared: &Shared, pending: Pending) {
    let Pending {
        conn,
        reply_to,
        mut request,
    } = pending;
    let handler = lock(&shared.scripts).get(&request.name).cloned();
    let outcome = match handler {
        Some(handler) => catch_unwind(AssertUnwindSafe(|| handler(&request)))
            .unwrap_or_else(|_| {
                MockReply::generic(format!("mock handler for {} panicked", request.name))
            })
            .into(),
        None => builtin(shared, &mut request),
    };
    drop(request);
    let mut wire = lock(&conn.wire);
    let timestamp = now();
    for (name, data) in &outcome.before {
        let _ = wire.server.send_event(name, data.as_deref(), timestamp);
    }
    match outcome.reply {
        MockReply::Return(value) => {
            if let Err(e) = wire.server.reply_return(&reply_to, &value) {
                let _ = wire.server.reply_error(
                    &reply_to,
                    "GenericError",
                    &format!("mock: the scripted reply is not valid JSON: {e}"),
                );
            }
        }
        MockReply::Error { class, desc } => {
            let _ = wire.server.reply_error(&reply_to, &class, &desc);
        }
        MockReply::NoReply => {}
        MockReply::Disconnect => {
            drop(wire);
            conn.shutdown();
            return;
        }
    }
    for (name, data) in &outcome.after {
        let _ = wire.server.send_event(name, data.as_deref(), timestamp);
    }
    let failed = wire.flush(&conn.socket).is_err();
    drop(wire);
    if failed || outcome.close {
        conn.shutdown();
    }
}

/// The event timestamp QEMU would send: the wall clock, or -1 without one.
pub(super) fn now() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(t) => Timestamp {
            seconds: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            microseconds: i64::from(t.subsec_micros()),
        },
        Err(_) => Timestamp {
            seconds: -1,
            microseconds: -1,
        },
    }
}
