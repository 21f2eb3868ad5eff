//! Fuzz target `client`: the QMP client state machine under a fuzzer-chosen
//! interleaving of server messages (generated, with fuzzer-chosen ids, and
//! raw bytes), delivered in fuzzer-chosen chunks, with sends, abandons,
//! transmit progress and end of stream between them.
//!
//! Checked: nothing panics or stalls; a reply reaches only the command whose
//! id it carries (generated replies are tagged with the id they name), only
//! once, and never after the command was abandoned; every command gets at
//! most one outcome, and exactly one by the end unless it was abandoned;
//! `Closed` is the last output; misuse is refused without a state change.

#![no_main]

mod common;

use common::{CONNECTION, Inbox, Ledger, Op, ReplyShape, Session, Small, untag};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use qmp_proto::{Client, ClientConfig, Heap, Id, Output, Reply, Storage};

const NAMES: [&str; 6] = [
    "query-status",
    "stop",
    "cont",
    "migrate-pause",
    "qmp_capabilities",
    "bad name",
];

const ARGUMENTS: [Option<&str>; 4] = [None, Some("{}"), Some("{\"a\": [1, 2]}"), Some("[1]")];

const EVENTS: [&str; 4] = ["STOP", "RESUME", "SHUTDOWN", "RTC_CHANGE"];

/// A message the server writes.
#[derive(Arbitrary, Debug)]
enum Message {
    Greeting { oob: bool },
    Reply(ReplyShape, common::IdChoice),
    Event { name: u8, data: bool },
    IdlessError,
    Sentinel,
    Deep(u8),
    Raw(Vec<u8>),
}

/// What the client's owner does.
#[derive(Arbitrary, Debug)]
enum Action {
    Send {
        name: u8,
        arguments: u8,
        oob: bool,
    },
    /// Abandons the n-th command sent (cycling).
    Abandon(u8),
    AbandonAny(u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    fixed: bool,
    oob: bool,
    ops: Vec<Op<Message, Action>>,
}

struct Run<S: Storage> {
    client: Client<S>,
    inbox: Inbox,
    ledger: Ledger,
    greeted: bool,
    ready: bool,
    closed: bool,
}

impl<S: Storage> Run<S> {
    fn new(oob: bool) -> Self {
        Run {
            client: Client::new(ClientConfig {
                oob,
                limits: CONNECTION,
            }),
            inbox: Inbox::default(),
            // qmp_capabilities takes id 0, commands start at 1.
            ledger: Ledger {
                floor: 1,
                ..Ledger::default()
            },
            greeted: false,
            ready: false,
            closed: false,
        }
    }

    fn send(&mut self, name: u8, arguments: u8, oob: bool) {
        let name = NAMES[usize::from(name) % NAMES.len()];
        let arguments = ARGUMENTS[usize::from(arguments) % ARGUMENTS.len()];
        let before = self.client.pending_transmit().len();
        let sent = if oob {
            self.client.send_command_raw_oob(name, arguments)
        } else {
            self.client.send_command_raw(name, arguments)
        };
        match sent {
            Ok(id) => {
                assert!(!self.closed, "send accepted after the end");
                assert!(self.greeted, "send accepted before the greeting");
                self.ledger.sent(id.0);
                assert!(self.client.pending_transmit().len() > before);
            }
            Err(_) => assert_eq!(
                self.client.pending_transmit().len(),
                before,
                "a refused send changed the transmit buffer"
            ),
        }
        self.drain();
    }

    fn abandon(&mut self, id: u64) {
        let accepted = self.client.abandon(Id(id)).is_ok();
        self.ledger.abandoned(id, accepted);
        self.drain();
    }
}

impl<S: Storage> Session for Run<S> {
    type Message = Message;
    type Action = Action;

    common::session_plumbing!(client);

    fn write(&mut self, message: &Message) {
        let text = match message {
            Message::Greeting { oob } => format!(
                "{{\"QMP\": {{\"version\": {{\"qemu\": {{\"micro\": 0, \"minor\": 2, \"major\": 7}}, \
                 \"package\": \"\"}}, \"capabilities\": [{}]}}}}\r\n",
                if *oob { "\"oob\"" } else { "" }
            ),
            Message::Reply(shape, id) => shape.render(*id, &self.ledger),
            Message::Event { name, data } => format!(
                "{{\"timestamp\": {{\"seconds\": 1, \"microseconds\": 2}}, \"event\": \"{}\"{}}}\r\n",
                EVENTS[usize::from(*name) % EVENTS.len()],
                if *data { ", \"data\": {\"x\": 1}" } else { "" }
            ),
            Message::IdlessError => {
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n"
                    .to_owned()
            }
            Message::Sentinel => {
                self.inbox.push(&[0xff]);
                return;
            }
            Message::Deep(n) => format!("{}\r\n", common::deep(*n, "[", "]")),
            Message::Raw(bytes) => {
                self.inbox.push_raw(bytes);
                return;
            }
        };
        self.inbox.push(text.as_bytes());
    }

    fn poll_one(&mut self) -> bool {
        let Some(output) = self.client.poll_output() else {
            return false;
        };
        match output {
            Output::Greeting(_) => {
                assert!(!self.greeted, "second greeting handed out");
                self.greeted = true;
            }
            Output::Ready { .. } => {
                assert!(self.greeted && !self.ready, "Ready out of order");
                self.ready = true;
            }
            Output::Reply { id, reply } => {
                let tagged = match reply {
                    Reply::Return(v) => untag(v.bytes()),
                    Reply::Error(e) => untag(e.desc.to_string().as_bytes()),
                    _ => None,
                };
                self.ledger.outcome(id.0, tagged);
            }
            Output::Closed(_) => {
                self.closed = true;
                assert!(self.client.is_closed());
                assert_eq!(self.client.in_flight(), 0, "in flight after Closed");
            }
            _ => {}
        }
        true
    }

    fn act(&mut self, action: &Action) {
        match action {
            Action::Send {
                name,
                arguments,
                oob,
            } => self.send(*name, *arguments, *oob),
            Action::Abandon(n) => {
                if !self.ledger.sent.is_empty() {
                    self.abandon(self.ledger.pick(*n));
                }
            }
            Action::AbandonAny(id) => self.abandon(*id),
        }
    }

    fn finish(&mut self) {
        assert!(self.client.poll_output().is_none());
        assert!(self.client.receive(b"{}").is_err(), "receive after Closed");
        self.ledger.check_all_done();
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
