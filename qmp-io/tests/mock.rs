//! The mock QEMU, driven over a real socket by hand with `qmp_proto::Client`.

use core::time::Duration;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Instant;

use qmp_io::mock::{MockQemu, MockReply};
use qmp_proto::{Client, ClientConfig, Heap, Output, Reply};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What the client state machine handed out, owned.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Greeting(String),
    Ready(bool),
    Reply(u64, Result<String, (String, String)>),
    Event(String, Option<String>, i64),
    IdlessError(String),
    Closed,
    Other(String),
}

struct TestClient {
    stream: UnixStream,
    client: Client<Heap>,
    outputs: VecDeque<Out>,
    eof: bool,
}

impl TestClient {
    fn connect(qemu: &MockQemu) -> Self {
        let stream = UnixStream::connect(qemu.path()).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        TestClient {
            stream,
            client: Client::new(ClientConfig::default()),
            outputs: VecDeque::new(),
            eof: false,
        }
    }

    /// Connects and negotiates; returns the greeting.
    fn ready(qemu: &MockQemu) -> (Self, String) {
        let mut c = Self::connect(qemu);
        let Out::Greeting(greeting) = c.next() else {
            panic!("no greeting")
        };
        assert_eq!(c.next(), Out::Ready(true));
        (c, greeting)
    }

    fn flush(&mut self) {
        while !self.client.pending_transmit().is_empty() {
            let n = self.stream.write(self.client.pending_transmit()).unwrap();
            self.client.advance_transmit(n).unwrap();
        }
    }

    /// Reads once and queues what the client makes of it.
    fn pump(&mut self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        let n = self.stream.read(&mut buf)?;
        if n == 0 {
            self.client.receive_eof();
            self.eof = true;
        }
        let mut rest = &buf[..n];
        loop {
            let taken = if rest.is_empty() {
                0
            } else {
                self.client.receive(rest).unwrap()
            };
            rest = &rest[taken..];
            self.drain();
            if rest.is_empty() {
                break;
            }
        }
        self.flush();
        Ok(())
    }

    fn drain(&mut self) {
        while let Some(out) = self.client.poll_output() {
            let out = match out {
                Output::Greeting(g) => Out::Greeting(g.message().as_str().to_owned()),
                Output::Ready { oob } => Out::Ready(oob),
                Output::Reply { id, reply } => Out::Reply(
                    id.0,
                    match reply {
                        Reply::Return(v) => Ok(v.as_str().to_owned()),
                        Reply::Error(e) => {
                            Err((e.class.as_str().to_owned(), e.desc.to_string_lossless()))
                        }
                        other => Err(("other".to_owned(), format!("{other:?}"))),
                    },
                ),
                Output::Event(e) => Out::Event(
                    e.name.to_string_lossless(),
                    e.data.map(|d| d.as_str().to_owned()),
                    e.timestamp.map_or(-2, |t| t.seconds),
                ),
                Output::IdlessError(e) => Out::IdlessError(e.desc.to_string_lossless()),
                Output::Closed(_) => Out::Closed,
                other => Out::Other(format!("{other:?}")),
            };
            self.outputs.push_back(out);
        }
    }

    fn next(&mut self) -> Out {
        loop {
            if let Some(out) = self.outputs.pop_front() {
                return out;
            }
            assert!(!self.eof, "end of stream without output");
            self.pump().expect("read");
        }
    }

    /// The next output, or `None` if nothing comes within `wait`.
    fn next_within(&mut self, wait: Duration) -> Option<Out> {
        if let Some(out) = self.outputs.pop_front() {
            return Some(out);
        }
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let r = self.pump();
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        match r {
            Ok(()) => self.outputs.pop_front(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("{e}"),
        }
    }

    fn send(&mut self, name: &str, args: Option<&str>) -> u64 {
        let id = self.client.send_command_raw(name, args).unwrap();
        self.flush();
        id.0
    }

    /// Sends a command with file descriptors attached to its bytes.
    fn send_with_fds(&mut self, name: &str, args: Option<&str>, fds: &[BorrowedFd<'_>]) -> u64 {
        let id = self.client.send_command_raw(name, args).unwrap();
        let n = qmp_io::fd::send_with_fds(self.stream.as_fd(), self.client.pending_transmit(), fds)
            .unwrap();
        self.client.advance_transmit(n).unwrap();
        self.flush();
        id.0
    }

    /// Waits for the reply to `id`, keeping other outputs queued in order.
    fn reply(&mut self, id: u64) -> Result<String, (String, String)> {
        let mut skipped = VecDeque::new();
        let reply = loop {
            match self.next() {
                Out::Reply(got, reply) if got == id => break reply,
                Out::Closed => panic!("closed while waiting for reply {id}"),
                other => skipped.push_back(other),
            }
        };
        skipped.append(&mut self.outputs);
        self.outputs = skipped;
        reply
    }

    fn call(&mut self, name: &str, args: Option<&str>) -> Result<String, (String, String)> {
        let id = self.send(name, args);
        self.reply(id)
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

fn generic(desc: &str) -> Result<String, (String, String)> {
    Err(("GenericError".to_owned(), desc.to_owned()))
}

#[test]
fn greeting_negotiation_and_version() {
    let qemu = MockQemu::builder()
        .version(8, 1, 3)
        .package("v8.1.3-mock")
        .start()
        .unwrap();
    let (mut c, greeting) = TestClient::ready(&qemu);
    let greeting = json(&greeting);
    assert_eq!(greeting["QMP"]["version"]["qemu"]["major"], 8);
    assert_eq!(greeting["QMP"]["version"]["qemu"]["minor"], 1);
    assert_eq!(greeting["QMP"]["version"]["qemu"]["micro"], 3);
    assert_eq!(greeting["QMP"]["capabilities"], json(r#"["oob"]"#));
    assert!(qemu.wait_negotiated(TIMEOUT));
    let version = c.call("query-version", None).unwrap();
    assert_eq!(
        json(&version),
        json(r#"{"qemu": {"micro": 3, "minor": 1, "major": 8}, "package": "v8.1.3-mock"}"#)
    );
    assert_eq!(qemu.connections(), 1);
    assert!(qemu.is_connected());
}

#[test]
fn no_oob_offered() {
    let qemu = MockQemu::builder().oob(false).start().unwrap();
    let mut c = TestClient::connect(&qemu);
    let Out::Greeting(greeting) = c.next() else {
        panic!()
    };
    assert_eq!(json(&greeting)["QMP"]["capabilities"], json("[]"));
    assert_eq!(c.next(), Out::Ready(false));
}

#[test]
fn scripted_return_error_and_handler() {
    let qemu = MockQemu::start().unwrap();
    qemu.on_return("query-name", r#"{"name": "vm0"}"#);
    qemu.on_error("device_del", "DeviceNotFound", "Device 'nope' not found");
    qemu.on("echo", |req| {
        MockReply::Return(req.arguments.clone().unwrap_or_else(|| "null".to_owned()))
    });
    qemu.on("silent", |_| MockReply::NoReply);
    qemu.on("broken", |_| MockReply::Return("{not json".to_owned()));
    qemu.on("panics", |_| panic!("handler bug"));
    let (mut c, _) = TestClient::ready(&qemu);

    assert_eq!(
        json(&c.call("query-name", None).unwrap()),
        json(r#"{"name": "vm0"}"#)
    );
    assert_eq!(
        c.call("device_del", Some(r#"{"id": "nope"}"#)),
        Err((
            "DeviceNotFound".to_owned(),
            "Device 'nope' not found".to_owned()
        ))
    );
    assert_eq!(
        json(
            &c.call("echo", Some(r#"{"a": [1, 2], "b": "\u00e9"}"#))
                .unwrap()
        ),
        json(r#"{"a": [1, 2], "b": "é"}"#)
    );
    let silent = c.send("silent", None);
    let (class, _) = c.call("broken", None).unwrap_err();
    assert_eq!(class, "GenericError");
    let (class, desc) = c.call("panics", None).unwrap_err();
    assert_eq!(class, "GenericError");
    assert!(desc.contains("panicked"), "{desc}");
    assert!(
        !c.outputs
            .iter()
            .any(|o| matches!(o, Out::Reply(id, _) if *id == silent))
    );

    let received = qemu.received();
    let names: Vec<_> = received.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "query-name",
            "device_del",
            "echo",
            "silent",
            "broken",
            "panics"
        ]
    );
    assert_eq!(received[1].arguments.as_deref(), Some(r#"{"id": "nope"}"#));
    assert_eq!(received[1].id.as_deref(), Some("2"));
    assert!(!received[1].oob);
    assert_eq!(received[0].connection, 1);
    assert_eq!(
        qemu.wait_for_command("echo", TIMEOUT).map(|r| r.name),
        Some("echo".to_owned())
    );
    // Each command is returned once.
    assert!(
        qemu.wait_for_command("echo", Duration::from_millis(50))
            .is_none()
    );

    // A script can be removed; built-in answers apply again.
    qemu.clear_script("query-name");
    assert_eq!(
        c.call("query-name", None),
        Err((
            "CommandNotFound".to_owned(),
            "The command query-name has not been found".to_owned()
        ))
    );
}

#[test]
fn defaults_and_command_not_found() {
    let qemu = MockQemu::start().unwrap();
    let (mut c, _) = TestClient::ready(&qemu);
    assert_eq!(
        json(&c.call("query-status", None).unwrap()),
        json(r#"{"status": "running", "singlestep": false, "running": true}"#)
    );
    assert_eq!(
        c.call("no-such-command", None),
        Err((
            "CommandNotFound".to_owned(),
            "The command no-such-command has not been found".to_owned()
        ))
    );
    assert_eq!(
        c.call("query-status", Some(r#"{"verbose": true}"#)),
        generic("Parameter 'verbose' is unexpected")
    );
}

#[test]
fn before_negotiation_commands_are_refused() {
    let qemu = MockQemu::start().unwrap();
    let mut stream = UnixStream::connect(qemu.path()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(b"{\"execute\": \"query-status\", \"id\": 7}\r\n")
        .unwrap();
    let text = read_until(&mut stream, |t| t.matches("\r\n").count() >= 2);
    let reply = json(text.split("\r\n").nth(1).unwrap());
    assert_eq!(reply["error"]["class"], "CommandNotFound");
    assert_eq!(reply["id"], 7);
    assert!(qemu.received().is_empty());
    assert!(matches!(
        qemu.emit_event("X", None).unwrap_err().kind(),
        ErrorKind::NotConnected
    ));
}

#[test]
fn stop_and_cont_emit_events() {
    let qemu = MockQemu::start().unwrap();
    let (mut c, _) = TestClient::ready(&qemu);
    let id = c.send("stop", None);
    let Out::Event(name, data, seconds) = c.next() else {
        panic!("STOP must come before the reply")
    };
    assert_eq!((name.as_str(), data), ("STOP", None));
    assert!(seconds > 1_600_000_000, "{seconds}");
    assert_eq!(c.next(), Out::Reply(id, Ok("{}".to_owned())));
    assert!(!qemu.is_running());
    assert_eq!(
        json(&c.call("query-status", None).unwrap()),
        json(r#"{"status": "paused", "singlestep": false, "running": false}"#)
    );
    // Stopping a stopped guest says nothing.
    let id = c.send("stop", None);
    assert_eq!(c.next(), Out::Reply(id, Ok("{}".to_owned())));

    let id = c.send("cont", None);
    assert!(matches!(c.next(), Out::Event(n, None, _) if n == "RESUME"));
    assert_eq!(c.next(), Out::Reply(id, Ok("{}".to_owned())));
    assert!(qemu.is_running());
}

#[test]
fn quit_replies_then_shutdown_and_close() {
    let qemu = MockQemu::start().unwrap();
    let (mut c, _) = TestClient::ready(&qemu);
    let id = c.send("quit", None);
    assert_eq!(c.next(), Out::Reply(id, Ok("{}".to_owned())));
    let Out::Event(name, Some(data), _) = c.next() else {
        panic!()
    };
    assert_eq!(name, "SHUTDOWN");
    assert_eq!(json(&data)["reason"], "host-qmp-quit");
    assert_eq!(c.next(), Out::Closed);
    // The mock keeps serving.
    let (mut c, _) = TestClient::ready(&qemu);
    assert!(c.call("query-status", None).is_ok());
}

#[test]
fn emit_events_all_arrive() {
    const COUNT: usize = 10_000;
    let qemu = MockQemu::start().unwrap();
    let (mut c, _) = TestClient::ready(&qemu);
    assert!(qemu.wait_negotiated(TIMEOUT));
    std::thread::scope(|s| {
        let emitter = s.spawn(|| qemu.emit_events("BENCH", Some(r#"{"n": 1, "s": "x"}"#), COUNT));
        let mut seen = 0;
        while seen < COUNT {
            match c.next() {
                Out::Event(name, Some(data), _) => {
                    assert_eq!(name, "BENCH");
                    assert_eq!(json(&data), json(r#"{"n": 1, "s": "x"}"#));
                    seen += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        emitter.join().unwrap().unwrap();
    });
    // Commands still work after the burst.
    assert!(c.call("query-status", None).is_ok());
    qemu.emit_event("ONE", None).unwrap();
    assert!(matches!(c.next(), Out::Event(n, None, _) if n == "ONE"));
    assert_eq!(
        qemu.emit_event("BAD", Some("[1]")).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn hold_replies_then_release() {
    let qemu = MockQemu::start().unwrap();
    qemu.on_return("a", r#""a""#);
    qemu.on_return("b", r#""b""#);
    let (mut c, _) = TestClient::ready(&qemu);
    qemu.hold_replies(true);
    let a = c.send("a", None);
    let b = c.send("b", None);
    let status = c.send("query-status", None);
    assert!(qemu.wait_for_command("query-status", TIMEOUT).is_some());
    assert_eq!(qemu.received().len(), 3);
    assert_eq!(c.next_within(Duration::from_millis(200)), None);
    qemu.hold_replies(false);
    assert_eq!(c.next(), Out::Reply(a, Ok(r#""a""#.to_owned())));
    assert_eq!(c.next(), Out::Reply(b, Ok(r#""b""#.to_owned())));
    assert!(matches!(c.next(), Out::Reply(id, Ok(_)) if id == status));
    // Not held any more.
    assert_eq!(c.call("a", None), Ok(r#""a""#.to_owned()));
}

#[test]
fn disconnect_then_reconnect() {
    let qemu = MockQemu::start().unwrap();
    let (mut c, _) = TestClient::ready(&qemu);
    assert!(qemu.wait_connected(TIMEOUT));
    qemu.disconnect();
    assert_eq!(c.next(), Out::Closed);
    assert!(!qemu.is_connected());
    assert_eq!(
        qemu.emit_event("X", None).unwrap_err().kind(),
        ErrorKind::NotConnected
    );

    let (mut c, _) = TestClient::ready(&qemu);
    assert!(c.call("query-status", None).is_ok());
    assert_eq!(qemu.connections(), 2);
    assert_eq!(qemu.received().last().unwrap().connection, 2);

    // A scripted disconnect, in place of a reply.
    qemu.on("die", |_| MockReply::Disconnect);
    let id = c.send("die", None);
    assert_eq!(
        c.next(),
        Out::Reply(id, Err(("other".into(), "Closed".into())))
    );
    assert_eq!(c.next(), Out::Closed);
    let (mut c, _) = TestClient::ready(&qemu);
    assert!(c.call("query-status", None).is_ok());
    assert_eq!(qemu.connections(), 3);
}

#[test]
fn second_connection_waits_for_the_first() {
    let qemu = MockQemu::start().unwrap();
    let (mut first, _) = TestClient::ready(&qemu);
    let mut second = UnixStream::connect(qemu.path()).unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let err = second.read(&mut byte).unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    assert_eq!(qemu.connections(), 1);
    // The first one is still served meanwhile.
    assert!(first.call("query-status", None).is_ok());
    drop(first);
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    let greeting = read_until(&mut second, |t| t.ends_with("\r\n"));
    assert!(greeting.starts_with("{\"QMP\""), "{greeting}");
    assert_eq!(qemu.connections(), 2);
}

#[test]
fn no_greeting_mode() {
    let qemu = MockQemu::builder().greeting(false).start().unwrap();
    let mut s = UnixStream::connect(qemu.path()).unwrap();
    assert!(qemu.wait_connected(TIMEOUT));
    s.write_all(b"{\"execute\": \"qmp_capabilities\"}\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let err = s.read(&mut byte).unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    drop_within(qemu, TIMEOUT);
}

#[test]
fn file_descriptors() {
    let qemu = MockQemu::start().unwrap();
    qemu.on("take-fds", |req| {
        MockReply::Return(req.fds.len().to_string())
    });
    let (mut c, _) = TestClient::ready(&qemu);
    let (a, b) = UnixStream::pair().unwrap();

    let id = c.send_with_fds("getfd", Some(r#"{"fdname": "mine"}"#), &[a.as_fd()]);
    assert_eq!(c.reply(id), Ok("{}".to_owned()));
    assert_eq!(
        c.call("getfd", Some(r#"{"fdname": "again"}"#)),
        generic("No file descriptor supplied via SCM_RIGHTS")
    );
    assert_eq!(
        c.call("getfd", None),
        generic("Parameter 'fdname' is missing")
    );
    assert_eq!(
        c.call("closefd", Some(r#"{"fdname": "mine"}"#)),
        Ok("{}".to_owned())
    );
    assert_eq!(
        c.call("closefd", Some(r#"{"fdname": "mine"}"#)),
        generic("File descriptor named 'mine' not found")
    );

    let id = c.send_with_fds(
        "add-fd",
        Some(r#"{"opaque": "rdonly:/dev/null"}"#),
        &[b.as_fd()],
    );
    let added = json(&c.reply(id).unwrap());
    assert_eq!(added["fdset-id"], 0);
    let fd = added["fd"].as_i64().unwrap();
    assert!(fd >= 0);
    let id = c.send_with_fds("add-fd", Some(r#"{"fdset-id": 5}"#), &[a.as_fd()]);
    let added5 = json(&c.reply(id).unwrap());
    assert_eq!(added5["fdset-id"], 5);
    let fd5 = added5["fd"].as_i64().unwrap();
    assert_eq!(
        json(&c.call("query-fdsets", None).unwrap()),
        serde_json::json!([
            {"fdset-id": 0, "fds": [{"fd": fd, "opaque": "rdonly:/dev/null"}]},
            {"fdset-id": 5, "fds": [{"fd": fd5}]},
        ])
    );
    assert_eq!(
        c.call("remove-fd", Some(r#"{"fdset-id": 0, "fd": 99999}"#)),
        generic("File descriptor named '0:99999' not found")
    );
    let remove = format!(r#"{{"fdset-id": 0, "fd": {fd}}}"#);
    assert_eq!(c.call("remove-fd", Some(&remove)), Ok("{}".to_owned()));
    assert_eq!(
        c.call("remove-fd", Some(r#"{"fdset-id": 5}"#)),
        Ok("{}".to_owned())
    );
    assert_eq!(c.call("query-fdsets", None), Ok("[]".to_owned()));
    assert_eq!(
        c.call("remove-fd", Some(r#"{"fdset-id": 5}"#)),
        generic("File descriptor named '5' not found")
    );

    // A scripted command sees the descriptors sent with it.
    let id = c.send_with_fds("take-fds", None, &[a.as_fd(), b.as_fd()]);
    assert_eq!(c.reply(id), Ok("2".to_owned()));
    let fds: Vec<_> = qemu
        .received()
        .iter()
        .map(|r| (r.name.clone(), r.fds))
        .collect();
    assert_eq!(fds[0], ("getfd".to_owned(), 1));
    assert_eq!(fds[1], ("getfd".to_owned(), 0));
    assert_eq!(fds.last().unwrap(), &("take-fds".to_owned(), 2));
    // Our own descriptors are untouched.
    assert!(a.as_raw_fd() >= 0 && b.as_raw_fd() >= 0);
}

#[test]
fn hostile_input_gets_errors_and_the_mock_keeps_serving() {
    let qemu = MockQemu::start().unwrap();
    let (mut c, _) = TestClient::ready(&qemu);

    c.stream.write_all(b"}}garbage{\"execute\"]\r\n").unwrap();
    let Out::IdlessError(desc) = c.next() else {
        panic!()
    };
    assert!(desc.starts_with("JSON parse error"), "{desc}");
    c.stream
        .write_all(b"{\"execute\": \"x\", \"bogus\": 1, \"id\": 3}\r\n")
        .unwrap();
    c.stream
        .write_all(b"{\"execute\": \"x\", \"arguments\": [1]}\r\n")
        .unwrap();
    c.stream.write_all(b"[1, 2]\r\n").unwrap();
    assert!(c.call("query-status", None).is_ok());

    // A mebibyte of junk, with control bytes and 0xFF mixed in.
    let mut junk = Vec::with_capacity(1 << 20);
    let mut x: u32 = 12345;
    while junk.len() < 1 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        junk.push((x >> 16) as u8);
    }
    junk.extend_from_slice(b"\xff\r\n");
    let mut writer = c.stream.try_clone().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    // Written from a thread: the mock's error replies fill our receive
    // buffer while the junk is still going out.
    let w = std::thread::spawn(move || {
        writer.write_all(&junk).unwrap();
        done_tx.send(()).unwrap();
    });
    let start = Instant::now();
    while done_rx.try_recv().is_err() {
        assert!(start.elapsed() < TIMEOUT);
        let _ = c.next_within(Duration::from_millis(10));
    }
    w.join().unwrap();
    assert_eq!(
        json(&c.call("query-status", None).unwrap())["status"],
        "running"
    );
    assert_eq!(qemu.connections(), 1);
    assert!(qemu.is_connected());
    // A command still works from a fresh connection too.
    drop(c);
    let (mut c, _) = TestClient::ready(&qemu);
    assert!(c.call("query-version", None).is_ok());
}

#[test]
fn oob_commands_are_recorded_as_such() {
    let qemu = MockQemu::start().unwrap();
    qemu.on_return("migrate-pause", "{}");
    let (mut c, _) = TestClient::ready(&qemu);
    let id = c
        .client
        .send_command_raw_oob("migrate-pause", None)
        .unwrap();
    c.flush();
    assert_eq!(c.reply(id.0), Ok("{}".to_owned()));
    let r = qemu.wait_for_command("migrate-pause", TIMEOUT).unwrap();
    assert!(r.oob);
}

#[test]
fn oob_replies_overtake_held_ones() {
    let qemu = MockQemu::start().unwrap();
    qemu.on_return("slow", r#""slow""#);
    qemu.on_return("migrate-pause", "{}");
    let (mut c, _) = TestClient::ready(&qemu);
    qemu.hold_replies(true);
    let slow = c.send("slow", None);
    assert!(qemu.wait_for_command("slow", TIMEOUT).is_some());
    let oob = c
        .client
        .send_command_raw_oob("migrate-pause", None)
        .unwrap();
    c.flush();
    // The oob reply comes first, while the in-band one is still held.
    assert_eq!(c.next(), Out::Reply(oob.0, Ok("{}".to_owned())));
    assert_eq!(c.next_within(Duration::from_millis(200)), None);
    qemu.hold_replies(false);
    assert_eq!(c.next(), Out::Reply(slow, Ok(r#""slow""#.to_owned())));
}

#[test]
fn drop_does_not_hang_with_a_client_connected() {
    let qemu = MockQemu::start().unwrap();
    let path = qemu.path().to_owned();
    let (mut c, _) = TestClient::ready(&qemu);
    // And one more waiting in the backlog.
    let _waiting = UnixStream::connect(qemu.path()).unwrap();
    qemu.hold_replies(true);
    let id = c.send("query-status", None);
    assert!(qemu.wait_for_command("query-status", TIMEOUT).is_some());
    drop_within(qemu, TIMEOUT);
    assert!(!path.exists());
    assert!(!path.parent().unwrap().exists());
    assert_eq!(
        c.next(),
        Out::Reply(id, Err(("other".into(), "Closed".into())))
    );
}

#[test]
fn explicit_path() {
    let dir = std::env::temp_dir().join(format!("qmp-mock-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("explicit.sock");
    let qemu = MockQemu::builder().path(&path).start().unwrap();
    assert_eq!(qemu.path(), path);
    let (mut c, _) = TestClient::ready(&qemu);
    assert!(c.call("query-status", None).is_ok());
    drop(qemu);
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads until `done` holds for the text read so far.
fn read_until(stream: &mut UnixStream, done: impl Fn(&str) -> bool) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&String::from_utf8_lossy(&text)) {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "end of stream after {:?}",
            String::from_utf8_lossy(&text)
        );
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(text).unwrap()
}

fn drop_within(qemu: MockQemu, limit: Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(qemu);
        let _ = tx.send(());
    });
    rx.recv_timeout(limit).expect("MockQemu::drop hung");
}
