//! Fuzz target `server`: the server role's command parser under the bytes a
//! hostile client sends (generated commands with fuzzer-chosen names,
//! arguments and ids, and raw bytes) delivered in fuzzer-chosen chunks, with
//! replies and events written between them, some with fuzzer-chosen text.
//!
//! Checked: nothing panics or stalls; commands are handed out only after
//! negotiation, with the `id` and `arguments` of their own message; everything
//! the server writes frames as whole JSON objects (greeting, return, error or
//! event) with no framing error, whatever the client sent; and every reply and
//! event the owner wrote is there, in order, with its id, class, description
//! and name intact.

#![no_main]

mod common;

use common::{CONNECTION, Inbox, Op, Session, Small};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use qmp_proto::framer::{Frame, Framer, Key};
use qmp_proto::server::ReplyTo;
use qmp_proto::{Heap, Kind, Limits, Server, ServerConfig, ServerOutput, Storage, Timestamp};

const NAMES: [&str; 6] = [
    "\"query-status\"",
    "\"qmp_capabilities\"",
    "\"stop\"",
    "\"\"",
    "\"a\\\"b\\u00e9\"",
    "1",
];

const ARGUMENTS: [&str; 6] = [
    "",
    ", \"arguments\": {}",
    ", \"arguments\": {\"enable\": [\"oob\"]}",
    ", \"arguments\": []",
    ", \"arguments\": \"s\"",
    ", \"arguments\": {\"a\": {\"b\": [1, 2.5e3, true, null]}}",
];

const VALUES: [&str; 6] = ["{}", "[1, {\"a\": null}]", "\"s\"", " 7 ", "{", "1 2"];

/// A command's `id` as the client writes it.
#[derive(Arbitrary, Debug)]
enum IdChoice {
    Absent,
    Number(u64),
    Text(String),
    /// A string of n + 1 bytes (over the server's limit from 63).
    Long(u8),
    Object,
    Float,
}

impl IdChoice {
    fn render(&self) -> String {
        let text = match self {
            IdChoice::Absent => return String::new(),
            IdChoice::Number(n) => n.to_string(),
            IdChoice::Text(s) => json_string(s),
            IdChoice::Long(n) => format!("\"{}\"", "i".repeat(usize::from(*n) + 1)),
            IdChoice::Object => "{\"a\": [1, \"x\"]}".to_owned(),
            IdChoice::Float => "-1.5e3".to_owned(),
        };
        format!(", \"id\": {text}")
    }
}

/// `s` as a JSON string: quotes, backslashes and control characters
/// escaped, anything else (non-ASCII too) as it is.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the client writes.
#[derive(Arbitrary, Debug)]
enum Message {
    Capabilities {
        oob: bool,
        id: IdChoice,
    },
    Execute {
        oob: bool,
        name: u8,
        arguments: u8,
        id: IdChoice,
    },
    /// A member QMP does not have.
    Unexpected,
    /// No `execute`.
    NoExecute,
    Sentinel,
    Deep(u8),
    Raw(Vec<u8>),
}

/// What the server's owner does.
#[derive(Arbitrary, Debug)]
enum Action {
    /// Answers the n-th command waiting (cycling) with a return value.
    Return {
        command: u8,
        value: u8,
    },
    /// Answers the n-th command waiting (cycling) with an error.
    Error {
        command: u8,
        class: String,
        desc: String,
    },
    Event {
        name: String,
        data: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    fixed: bool,
    oob: bool,
    ops: Vec<Op<Message, Action>>,
}

/// A message the owner had the server write, to find in its output.
#[derive(Debug)]
enum Written {
    Return {
        id: Option<String>,
    },
    Error {
        id: Option<String>,
        class: String,
        desc: String,
    },
    Event {
        name: String,
    },
}

struct Run<S: Storage> {
    server: Server<S>,
    inbox: Inbox,
    /// Commands handed out and not answered yet.
    waiting: Vec<ReplyTo>,
    written: Vec<Written>,
    /// Everything the server transmitted.
    out: Vec<u8>,
    negotiated: bool,
    closed: bool,
}

impl<S: Storage> Run<S> {
    fn new(oob: bool) -> Self {
        Run {
            server: Server::new(ServerConfig {
                oob,
                limits: CONNECTION,
                ..ServerConfig::default()
            }),
            inbox: Inbox::default(),
            waiting: Vec::new(),
            written: Vec::new(),
            out: Vec::new(),
            negotiated: false,
            closed: false,
        }
    }

    fn take_waiting(&mut self, n: u8) -> Option<ReplyTo> {
        match self.waiting.len() {
            0 => None,
            len => Some(self.waiting.remove(usize::from(n) % len)),
        }
    }

    /// Frames everything the server wrote and finds what the owner wrote in
    /// it, in order.
    fn check_output(&self) {
        let mut framer = Framer::<<Heap as Storage>::Rx>::new(Limits::default());
        let mut rest = &self.out[..];
        let mut written = self.written.iter().peekable();
        while !rest.is_empty() {
            let n = framer.push(rest);
            assert!(n > 0, "the output framer is full");
            rest = &rest[n..];
            while let Some(frame) = framer.next() {
                let Frame::Message(m) = frame else {
                    panic!("the server wrote something that does not frame: {frame:?}");
                };
                let kind = m.kind();
                assert!(
                    matches!(
                        kind,
                        Kind::Greeting | Kind::Return | Kind::Error | Kind::Event
                    ),
                    "the server wrote a {kind:?}: {}",
                    m.as_str()
                );
                let id = m.get(Key::Id).map(|v| v.as_str().to_owned());
                let text = |v: Option<qmp_proto::RawJson<'_>>| {
                    v.and_then(|v| v.as_json_str())
                        .map(|s| s.to_string_lossless())
                };
                let error = m.get(Key::Error);
                let matched = match written.peek() {
                    Some(Written::Return { id: want }) => kind == Kind::Return && id == *want,
                    Some(Written::Error {
                        id: want,
                        class,
                        desc,
                    }) => {
                        kind == Kind::Error
                            && id == *want
                            && text(error.and_then(|e| e.get("class"))).as_ref() == Some(class)
                            && text(error.and_then(|e| e.get("desc"))).as_ref() == Some(desc)
                    }
                    Some(Written::Event { name }) => {
                        kind == Kind::Event && text(m.get(Key::Event)).as_ref() == Some(name)
                    }
                    None => false,
                };
                if matched {
                    written.next();
                }
            }
        }
        assert!(
            !framer.is_mid_message(),
            "the server's output ends mid-message"
        );
        let missing: Vec<&Written> = written.collect();
        assert!(missing.is_empty(), "not in the output: {missing:?}");
    }
}

impl<S: Storage> Session for Run<S> {
    type Message = Message;
    type Action = Action;

    common::session_plumbing!(server);

    fn write(&mut self, message: &Message) {
        let text = match message {
            Message::Capabilities { oob, id } => format!(
                "{{\"execute\": \"qmp_capabilities\"{}{}}}",
                if *oob {
                    ", \"arguments\": {\"enable\": [\"oob\"]}"
                } else {
                    ""
                },
                id.render()
            ),
            Message::Execute {
                oob,
                name,
                arguments,
                id,
            } => format!(
                "{{\"{}\": {}{}{}}}",
                if *oob { "exec-oob" } else { "execute" },
                NAMES[usize::from(*name) % NAMES.len()],
                ARGUMENTS[usize::from(*arguments) % ARGUMENTS.len()],
                id.render()
            ),
            Message::Unexpected => "{\"execute\": \"stop\", \"control\": 1}".to_owned(),
            Message::NoExecute => "{\"arguments\": {}, \"id\": 1}".to_owned(),
            Message::Sentinel => {
                self.inbox.push(&[0xff]);
                return;
            }
            Message::Deep(n) => {
                let n = usize::from(*n);
                format!(
                    "{{\"execute\": \"stop\", \"arguments\": {{\"a\": {}{}}}}}",
                    "[".repeat(n),
                    "]".repeat(n)
                )
            }
            Message::Raw(bytes) => {
                self.inbox.push(bytes);
                return;
            }
        };
        self.inbox.push(text.as_bytes());
    }

    fn poll_one(&mut self) -> bool {
        let Some(output) = self.server.poll_output() else {
            return false;
        };
        match output {
            ServerOutput::Negotiated { .. } => {
                assert!(!self.negotiated, "negotiated twice");
                self.negotiated = true;
            }
            ServerOutput::Command(request) => {
                assert!(self.negotiated, "a command before negotiation");
                let m = request.message;
                assert_eq!(
                    request.reply_to.id(),
                    m.get(Key::Id).map(|v| v.as_str()),
                    "reply_to is not the message's id"
                );
                assert_eq!(
                    request.arguments.map(|a| a.as_str()),
                    m.get(Key::Arguments).map(|a| a.as_str())
                );
                if let Some(a) = request.arguments {
                    assert_eq!(a.bytes().first(), Some(&b'{'), "arguments not an object");
                }
                let key = if request.oob {
                    Key::ExecOob
                } else {
                    Key::Execute
                };
                assert!(m.get(key).is_some(), "command without its verb");
                let _ = request.name.to_string_lossless();
                self.waiting.push(request.reply_to);
            }
            ServerOutput::Closed => self.closed = true,
            _ => {}
        }
        true
    }

    fn act(&mut self, action: &Action) {
        match action {
            Action::Return { command, value } => {
                let Some(to) = self.take_waiting(*command) else {
                    return;
                };
                let value = VALUES[usize::from(*value) % VALUES.len()];
                if self.server.reply_return(&to, value).is_ok() {
                    let id = to.id().map(str::to_owned);
                    self.written.push(Written::Return { id });
                } else {
                    // Not valid JSON, or no room: answer it later.
                    self.waiting.push(to);
                }
            }
            Action::Error {
                command,
                class,
                desc,
            } => {
                let Some(to) = self.take_waiting(*command) else {
                    return;
                };
                if self.server.reply_error(&to, class, desc).is_ok() {
                    self.written.push(Written::Error {
                        id: to.id().map(str::to_owned),
                        class: class.clone(),
                        desc: desc.clone(),
                    });
                } else {
                    self.waiting.push(to);
                }
            }
            Action::Event { name, data } => {
                let data = data.then_some("{\"a\": [1, 2]}");
                let timestamp = Timestamp {
                    seconds: -1,
                    microseconds: -1,
                };
                if self.server.send_event(name, data, timestamp).is_ok() {
                    self.written.push(Written::Event { name: name.clone() });
                }
            }
        }
    }

    fn transmitted(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn finish(&mut self) {
        assert!(self.server.poll_output().is_none());
        assert!(self.server.receive(b"{}").is_err(), "receive after Closed");
        self.transmit(None);
        self.check_output();
    }
}

fuzz_target!(|input: Input| {
    common::debug(&input);
    if input.fixed {
        Run::<Small>::new(input.oob).play(&input.ops);
    } else {
        Run::<Heap>::new(input.oob).play(&input.ops);
    }
});
