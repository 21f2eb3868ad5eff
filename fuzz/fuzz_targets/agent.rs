//! Fuzz target `agent`: the guest-agent client and its resynchronisation
//! under hostile guest bytes (stale sync replies, stray 0xFF sentinels, replies
//! with fuzzer-chosen ids, raw bytes) delivered in fuzzer-chosen chunks, with
//! sends, abandons, resyncs, transmit progress and end of stream between them.
//!
//! Checked: nothing panics or stalls; `Synced` comes only after an 0xFF and
//! then the current nonce were delivered since the sync began (or were still
//! unread then: after a protocol error the agent stops reading, and a resync
//! reads on from there); no reply is handed out
//! while not synced; a reply reaches only the command whose id it carries,
//! once; a resync fails every command in flight with `Closed` at once; every
//! command gets exactly one outcome by the end.

#![no_main]

mod common;

use common::{CONNECTION, IdChoice, Inbox, Ledger, Op, ReplyShape, Session, Small, untag};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use qmp_proto::{AgentOutput, Error, GuestAgent, Heap, Id, Reply, Storage, sends_no_reply};

const NAMES: [&str; 5] = [
    "guest-ping",
    "guest-info",
    "guest-get-time",
    "guest-shutdown",
    "guest-suspend-disk",
];

/// The nonce of the n-th synchronisation: those of the captured qemu-ga
/// sessions (`qga-sync`, then `qga-stale`) first; large, so never a command id.
fn nonce(n: u64) -> u64 {
    123_456_789 + n * 864_197_532
}

/// Which nonce a sync reply carries.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum NonceChoice {
    Current,
    /// A stale one, from an earlier synchronisation.
    Previous,
    Other(u64),
}

/// A message the guest writes.
#[derive(Arbitrary, Debug)]
enum Message {
    /// The 0xFF the agent writes in answer to ours.
    Sentinel,
    /// `{"return": NONCE}`.
    SyncReply(NonceChoice),
    /// 0xFF and the sync reply, as qemu-ga writes them.
    Sync(NonceChoice),
    Reply(ReplyShape, IdChoice),
    IdlessError,
    Event,
    Deep(u8),
    Raw(Vec<u8>),
}

/// What the agent's owner does.
#[derive(Arbitrary, Debug)]
enum Action {
    Send(u8),
    /// Abandons the n-th command sent (cycling), which resynchronises.
    Abandon(u8),
    Resync,
}

#[derive(Arbitrary, Debug)]
struct Input {
    fixed: bool,
    ops: Vec<Op<Message, Action>>,
}

struct Run<S: Storage> {
    agent: GuestAgent<S>,
    inbox: Inbox,
    ledger: Ledger,
    /// Synchronisations started (the current nonce is `nonce(syncs - 1)`).
    syncs: u64,
    /// Where in the delivered bytes the current synchronisation started: its
    /// 0xFF must come after this point.
    sync_start: usize,
    /// After a protocol error the agent stops reading: the bytes delivered
    /// from here on (the rest of the read that broke it, and later ones)
    /// are read after a resync, so they count for it.
    unread_from: Option<usize>,
    synced: bool,
    closed: bool,
}

impl<S: Storage> Run<S> {
    fn new() -> Self {
        Run {
            agent: GuestAgent::new(CONNECTION, nonce(0)),
            inbox: Inbox::default(),
            ledger: Ledger::default(),
            syncs: 1,
            sync_start: 0,
            unread_from: None,
            synced: false,
            closed: false,
        }
    }

    fn current(&self) -> u64 {
        nonce(self.syncs - 1)
    }

    fn nonce_of(&self, choice: NonceChoice) -> u64 {
        match choice {
            NonceChoice::Current => self.current(),
            NonceChoice::Previous => nonce(self.syncs.saturating_sub(2)),
            NonceChoice::Other(n) => n,
        }
    }

    fn send(&mut self, name: u8) {
        let name = NAMES[usize::from(name) % NAMES.len()];
        match self.agent.send_command_raw(name, None) {
            Ok(id) => {
                assert_eq!(id.is_none(), sends_no_reply(name));
                if let Some(id) = id {
                    self.ledger.sent(id.0);
                }
            }
            // Full tables and buffers refuse a send; otherwise only the end does.
            Err(Error::Usage(_)) => {}
            Err(e) => assert!(self.closed, "send refused on an open channel: {e}"),
        }
        self.drain();
    }

    /// A resync (or an abandon, which is one) fails every command in flight
    /// with `Closed` before anything else.
    fn resynced(&mut self, accepted: bool, waiting: &[u64]) {
        if accepted {
            self.syncs += 1;
            self.sync_start = self
                .unread_from
                .take()
                .unwrap_or(self.inbox.delivered.len());
            self.synced = false;
            self.closed = false;
        }
        self.drain();
        if accepted {
            let left: Vec<u64> = self.ledger.waiting().collect();
            assert!(
                left.is_empty() || !waiting.iter().any(|w| left.contains(w)),
                "commands {left:?} still waiting after a resync"
            );
        }
    }
}

impl<S: Storage> Session for Run<S> {
    type Message = Message;
    type Action = Action;

    common::session_plumbing!(agent);

    fn write(&mut self, message: &Message) {
        let text = match message {
            Message::Sentinel => {
                self.inbox.push(&[0xff]);
                return;
            }
            Message::SyncReply(n) => format!("{{\"return\": {}}}\n", self.nonce_of(*n)),
            Message::Sync(n) => {
                self.inbox.push(&[0xff]);
                format!("{{\"return\": {}}}\n", self.nonce_of(*n))
            }
            Message::Reply(shape, id) => shape.render(*id, &self.ledger),
            Message::IdlessError => {
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\n"
                    .to_owned()
            }
            Message::Event => "{\"event\": \"STOP\"}\n".to_owned(),
            Message::Deep(n) => format!("{}\n", common::deep(*n, "{\"a\":", "}")),
            Message::Raw(bytes) => {
                self.inbox.push_raw(bytes);
                return;
            }
        };
        self.inbox.push(text.as_bytes());
    }

    fn poll_one(&mut self) -> bool {
        let Some(output) = self.agent.poll_output() else {
            return false;
        };
        match output {
            AgentOutput::Synced => {
                assert!(!self.synced, "Synced twice for one synchronisation");
                let since = &self.inbox.delivered[self.sync_start..];
                let ff = since.iter().position(|&b| b == 0xff);
                let digits = self.current().to_string();
                let after = ff.map_or(&[][..], |p| &since[p..]);
                assert!(
                    after.windows(digits.len()).any(|w| w == digits.as_bytes()),
                    "Synced without 0xFF and then nonce {digits} since the sync began"
                );
                self.synced = true;
            }
            AgentOutput::Reply { id, reply } => {
                let tagged = match reply {
                    Reply::Return(v) => untag(v.bytes()),
                    Reply::Error(e) => untag(e.desc.to_string().as_bytes()),
                    _ => None,
                };
                if !matches!(reply, Reply::Closed) {
                    assert!(self.synced, "reply handed out while not synchronised");
                }
                self.ledger.outcome(id.0, tagged);
            }
            AgentOutput::Closed(error) => {
                if error.is_some() && self.unread_from.is_none() {
                    self.unread_from = Some(self.inbox.taken_from);
                }
                self.closed = true;
                self.synced = false;
                assert_eq!(self.agent.in_flight(), 0, "in flight after Closed");
            }
            _ => {}
        }
        true
    }

    fn act(&mut self, action: &Action) {
        match action {
            Action::Send(name) => self.send(*name),
            Action::Abandon(n) => {
                if self.ledger.sent.is_empty() {
                    return;
                }
                let id = self.ledger.pick(*n);
                let waiting: Vec<u64> = self.ledger.waiting().collect();
                let accepted = self.agent.abandon(Id(id), nonce(self.syncs)).is_ok();
                assert_eq!(
                    accepted,
                    waiting.contains(&id),
                    "abandon({id}) accepted: {accepted}, waiting: {waiting:?}"
                );
                self.resynced(accepted, &waiting);
            }
            Action::Resync => {
                let waiting: Vec<u64> = self.ledger.waiting().collect();
                let accepted = self.agent.resync(nonce(self.syncs)).is_ok();
                self.resynced(accepted, &waiting);
            }
        }
    }

    fn finish(&mut self) {
        assert!(self.agent.poll_output().is_none());
        assert!(self.agent.receive(b"{}").is_err(), "receive after the end");
        assert_eq!(self.agent.in_flight(), 0);
        self.ledger.check_all_done();
    }
}

fuzz_target!(|input: Input| {
    common::debug(&input);
    if input.fixed {
        Run::<Small>::new().play(&input.ops);
    } else {
        Run::<Heap>::new().play(&input.ops);
    }
});
