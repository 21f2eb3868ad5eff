//! What the `client`, `agent` and `server` targets share: an inbox of peer
//! bytes delivered in fuzzer-chosen chunks, a ledger of the commands sent and
//! their outcomes, and the ids and messages they generate.

// Each target uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use qmp_proto::{ConnectionLimits, Fixed, Limits};

/// Bytes the peer has written and the connection has not delivered yet.
#[derive(Default)]
pub struct Inbox {
    bytes: Vec<u8>,
    /// Everything delivered so far, in order.
    pub delivered: Vec<u8>,
    /// The last two bytes queued.
    last: [u8; 2],
    /// How many bytes had been delivered before the last [`take`](Self::take).
    pub taken_from: usize,
}

impl Inbox {
    /// Queues the peer's bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        for &b in bytes {
            self.last = [self.last[1], b];
        }
    }

    /// Queues raw fuzzer bytes that cannot forge the reply tag of [`tag`]
    /// (so a tagged reply always comes from a generated message).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // `fo` just before, delivered or not, plus this `r` would be `for`.
            let b = if b == b'r' && self.last == *b"fo" {
                b'x'
            } else {
                b
            };
            self.push(&[b]);
        }
    }

    /// The next `n` bytes (all of them when `n` is `None`).
    pub fn take(&mut self, n: Option<usize>) -> Vec<u8> {
        let n = n.unwrap_or(self.bytes.len()).min(self.bytes.len());
        let chunk: Vec<u8> = self.bytes.drain(..n).collect();
        self.taken_from = self.delivered.len();
        self.delivered.extend_from_slice(&chunk);
        chunk
    }
}

/// How many bytes a `Deliver(n)` op hands over: 255 means all.
pub fn chunk(n: u8) -> Option<usize> {
    (n != u8::MAX).then(|| usize::from(n) + 1)
}

/// The limits every target runs with: small, so they are hit.
pub const CONNECTION: ConnectionLimits = ConnectionLimits {
    receive: Limits {
        max_message_size: 4096,
        max_depth: 32,
    },
    max_transmit: 4096,
    max_pending: 8,
};

/// Fixed storage whose buffers, not [`CONNECTION`], are the limits.
pub type Small = Fixed<512, 1024, 4>;

/// Most ops of an input that run (the rest are ignored).
const MAX_OPS: usize = 256;

/// One step of an input: what every target does, and its own actions.
#[derive(Arbitrary, Debug)]
pub enum Op<M, A> {
    /// The peer writes a message (it waits in the socket).
    Write(M),
    /// The socket delivers up to `n + 1` of the bytes written (255: all).
    Deliver(u8),
    /// The socket takes up to `n` bytes of the transmit buffer.
    Transmit(u16),
    /// The peer closes the connection (after all it wrote is delivered).
    Eof,
    /// The state machine's owner does something.
    Act(A),
}

/// The [`Session`] methods that only pass through: for a `Run` with fields
/// `inbox`, `closed` and the state machine in the named field.
macro_rules! session_plumbing {
    ($machine:ident) => {
        fn inbox(&mut self) -> &mut Inbox {
            &mut self.inbox
        }

        fn receive(&mut self, bytes: &[u8]) -> Option<usize> {
            self.$machine.receive(bytes).ok()
        }

        fn receive_eof(&mut self) {
            self.$machine.receive_eof();
        }

        fn is_over(&self) -> bool {
            self.closed
        }

        fn pending_transmit(&self) -> &[u8] {
            self.$machine.pending_transmit()
        }

        fn advance_transmit(&mut self, n: usize) -> bool {
            self.$machine.advance_transmit(n).is_ok()
        }
    };
}
pub(crate) use session_plumbing;

/// A state machine under test, with the inbox of its peer's bytes.
pub trait Session {
    /// What the peer writes.
    type Message;
    /// What the owner does.
    type Action;

    /// The peer's bytes not delivered yet.
    fn inbox(&mut self) -> &mut Inbox;
    /// `receive`, or `None` when it refuses input.
    fn receive(&mut self, bytes: &[u8]) -> Option<usize>;
    /// `receive_eof`.
    fn receive_eof(&mut self);
    /// True once the session reported its end.
    fn is_over(&self) -> bool;
    /// `pending_transmit`.
    fn pending_transmit(&self) -> &[u8];
    /// `advance_transmit`, true when accepted.
    fn advance_transmit(&mut self, n: usize) -> bool;
    /// Takes one output off `poll_output` and checks it; false when there
    /// was none.
    fn poll_one(&mut self) -> bool;
    /// Queues what the peer writes in the inbox.
    fn write(&mut self, message: &Self::Message);
    /// Does what the owner does.
    fn act(&mut self, action: &Self::Action);
    /// The checks after the end of stream.
    fn finish(&mut self);
    /// What the socket took from the transmit buffer.
    fn transmitted(&mut self, _bytes: &[u8]) {}

    /// Drains `poll_output`; returns how many outputs there were. Nothing
    /// may come after the end.
    fn drain(&mut self) -> usize {
        let mut count = 0;
        loop {
            let over = self.is_over();
            if !self.poll_one() {
                return count;
            }
            assert!(!over, "output after the end");
            count += 1;
        }
    }

    /// Delivers the next `n` bytes (all when `None`) the way the drive
    /// contract says: `receive`, then drain `poll_output`, then feed what was
    /// not taken. Stops early if `receive` refuses input. Panics if it stalls.
    fn deliver(&mut self, n: Option<usize>) {
        let bytes = self.inbox().take(n);
        let mut rest = &bytes[..];
        let mut stalled = false;
        while !rest.is_empty() {
            let Some(n) = self.receive(rest) else {
                return;
            };
            assert!(n <= rest.len(), "receive took more than it was given");
            rest = &rest[n..];
            let outputs = self.drain();
            assert!(
                !(stalled && n == 0 && outputs == 0),
                "stuck: receive takes nothing and poll_output has nothing"
            );
            stalled = n == 0;
        }
    }

    /// The socket takes up to `n` bytes (all when `None`); advancing past
    /// the end must be refused, and change nothing.
    fn transmit(&mut self, n: Option<usize>) {
        let pending = self.pending_transmit().to_vec();
        let n = n.unwrap_or(pending.len()).min(pending.len());
        assert!(self.advance_transmit(n), "advance within pending refused");
        assert_eq!(self.pending_transmit(), &pending[n..]);
        assert!(
            !self.advance_transmit(pending.len() - n + 1),
            "advance past the end accepted"
        );
        assert_eq!(self.pending_transmit(), &pending[n..]);
        self.transmitted(&pending[..n]);
    }

    /// Delivers everything, then the end of stream: the session must end.
    fn end(&mut self) {
        self.deliver(None);
        self.receive_eof();
        self.drain();
        assert!(self.is_over(), "not closed after end of stream");
    }

    /// Runs one op.
    fn apply(&mut self, op: &Op<Self::Message, Self::Action>) {
        match op {
            Op::Write(m) => self.write(m),
            Op::Deliver(n) => self.deliver(chunk(*n)),
            Op::Transmit(n) => self.transmit(Some(usize::from(*n))),
            Op::Eof => self.end(),
            Op::Act(a) => self.act(a),
        }
    }

    /// Runs the ops, then ends the session and checks it.
    fn play(mut self, ops: &[Op<Self::Message, Self::Action>])
    where
        Self: Sized,
    {
        for op in ops.iter().take(MAX_OPS) {
            self.apply(op);
        }
        self.end();
        self.finish();
    }
}

/// `{"return": ` and `n` nestings of `open` ... `close`: deep, but within
/// the targets' depth limit up to 30.
pub fn deep(n: u8, open: &str, close: &str) -> String {
    let n = usize::from(n);
    format!("{{\"return\": {}{}}}", open.repeat(n), close.repeat(n))
}

/// The tag a generated reply carries for the command `id`, as its return
/// value: `{"for": ID}`. Raw bytes never contain `for` (see
/// [`Inbox::push_raw`]), so a reply with this tag handed to another id is a
/// reply given to the wrong command.
pub fn tag(id: u64) -> String {
    format!("{{\"for\": {id}}}")
}

/// The id in a tag made by [`tag`] (or by [`error_tag`] in an error's `desc`).
pub fn untag(bytes: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(bytes).ok()?;
    let n = s
        .strip_prefix("{\"for\": ")
        .and_then(|s| s.strip_suffix('}'))
        .or_else(|| s.strip_prefix("for "))?;
    n.parse().ok()
}

/// The `desc` of a generated error reply for the command `id`.
pub fn error_tag(id: u64) -> String {
    format!("for {id}")
}

/// An id as the peer writes it in a reply.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum IdChoice {
    /// One of the ids sent (the n-th, cycling).
    Sent(u8),
    /// An id not sent yet (the next one plus n).
    Next(u8),
    /// Any number.
    Number(u64),
    /// A sent id, as a string.
    Text(u8),
    /// A sent id, negative.
    Negative(u8),
    /// A sent id, as a float.
    Float(u8),
    /// `null`.
    Null,
    /// No `id` member at all.
    Absent,
}

impl IdChoice {
    /// The numeric id it stands for, if it is one, and the JSON text of the
    /// `, "id": ...` member (empty when absent).
    pub fn render(self, ledger: &Ledger) -> (Option<u64>, String) {
        let pick = |n: u8| ledger.pick(n);
        let (number, text) = match self {
            IdChoice::Sent(n) => (Some(pick(n)), pick(n).to_string()),
            IdChoice::Next(n) => {
                let id = ledger.next_id().saturating_add(u64::from(n));
                (Some(id), id.to_string())
            }
            IdChoice::Number(n) => (Some(n), n.to_string()),
            IdChoice::Text(n) => (None, format!("\"{}\"", pick(n))),
            IdChoice::Negative(n) => (None, format!("-{}", pick(n).max(1))),
            IdChoice::Float(n) => (None, format!("{}.0", pick(n))),
            IdChoice::Null => (None, "null".to_owned()),
            IdChoice::Absent => return (None, String::new()),
        };
        (number, format!(", \"id\": {text}"))
    }
}

/// A reply from the peer, tagged with the id it names (see [`tag`]).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ReplyShape {
    /// `{"return": {"for": ID}, "id": ID}`.
    Return,
    /// `{"error": {"class": ..., "desc": "for ID"}, "id": ID}`.
    Error(u8),
    /// A return value over the size limit.
    Oversized,
    /// `{"return": {}, "id": ID}` (untagged).
    Empty,
    /// An error whose `error` member is not `{class, desc}`.
    BadError,
}

/// The error classes QEMU sends, and one it does not.
const CLASSES: [&str; 6] = [
    "GenericError",
    "CommandNotFound",
    "DeviceNotActive",
    "DeviceNotFound",
    "KVMMissingCap",
    "NewClass",
];

/// Bigger than the targets' 4096-byte message limit.
pub const OVERSIZED: usize = 5000;

impl ReplyShape {
    /// The message, with a CR LF after it.
    pub fn render(self, id: IdChoice, ledger: &Ledger) -> String {
        let (number, id) = id.render(ledger);
        let n = number.unwrap_or(u64::MAX);
        match self {
            ReplyShape::Return => format!("{{\"return\": {}{id}}}\r\n", tag(n)),
            ReplyShape::Error(c) => format!(
                "{{\"error\": {{\"class\": \"{}\", \"desc\": \"{}\"}}{id}}}\r\n",
                CLASSES[usize::from(c) % CLASSES.len()],
                error_tag(n)
            ),
            ReplyShape::Oversized => {
                format!("{{\"return\": \"{}\"{id}}}\r\n", "x".repeat(OVERSIZED))
            }
            ReplyShape::Empty => format!("{{\"return\": {{}}{id}}}\r\n"),
            ReplyShape::BadError => format!("{{\"error\": 7{id}}}\r\n"),
        }
    }
}

/// What happened to a command, as far as the owner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sent, no outcome yet.
    Waiting,
    /// The owner gave up on it: it must get no outcome any more.
    Abandoned,
    /// It got its one outcome.
    Done,
}

/// The commands sent, in order, and what became of each.
#[derive(Default, Debug)]
pub struct Ledger {
    /// Every id sent, in order.
    pub sent: Vec<u64>,
    /// Each id's state.
    pub state: BTreeMap<u64, State>,
    /// The lowest id the next command may get.
    pub floor: u64,
}

impl Ledger {
    /// The n-th id sent (cycling), or the next id if none was sent.
    pub fn pick(&self, n: u8) -> u64 {
        match self.sent.len() {
            0 => self.floor,
            len => self.sent[usize::from(n) % len],
        }
    }

    /// The id after the last one sent.
    pub fn next_id(&self) -> u64 {
        self.sent.last().map_or(self.floor, |id| id + 1)
    }

    /// Records a command that was sent: ids are fresh and increasing.
    pub fn sent(&mut self, id: u64) {
        assert!(id >= self.floor, "id {id} reused (floor {})", self.floor);
        self.floor = id + 1;
        self.sent.push(id);
        self.state.insert(id, State::Waiting);
    }

    /// Records an abandon the state machine `accepted` or refused: it must
    /// accept a command waiting for its outcome and refuse one that has it
    /// (or was never sent). A command abandoned before may be either: its
    /// late reply may already have been dropped.
    pub fn abandoned(&mut self, id: u64, accepted: bool) {
        let state = self.state.get(&id).copied();
        if state != Some(State::Abandoned) {
            assert_eq!(
                accepted,
                state == Some(State::Waiting),
                "abandon({id}) accepted: {accepted}, but the command is {state:?}"
            );
        }
        if accepted {
            self.state.insert(id, State::Abandoned);
        }
    }

    /// Records an outcome handed out for `id`; `tagged` is the id the
    /// reply's tag names, if it has one.
    pub fn outcome(&mut self, id: u64, tagged: Option<u64>) {
        let state = self.state.get(&id).copied();
        assert_eq!(
            state,
            Some(State::Waiting),
            "outcome for id {id}, which is {state:?}"
        );
        if let Some(t) = tagged {
            assert_eq!(t, id, "the reply to command {t} was given to command {id}");
        }
        self.state.insert(id, State::Done);
    }

    /// Commands that still wait for an outcome.
    pub fn waiting(&self) -> impl Iterator<Item = u64> + '_ {
        self.state
            .iter()
            .filter(|(_, s)| **s == State::Waiting)
            .map(|(id, _)| *id)
    }

    /// Every command got its outcome or was abandoned.
    pub fn check_all_done(&self) {
        let waiting: Vec<u64> = self.waiting().collect();
        assert!(waiting.is_empty(), "no outcome for {waiting:?}");
    }
}

/// `QMP_FUZZ_DEBUG=1` prints the decoded op list (to read what a crashing or
/// seed input does).
pub fn debug(input: &impl std::fmt::Debug) {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *DEBUG.get_or_init(|| std::env::var_os("QMP_FUZZ_DEBUG").is_some()) {
        eprintln!("{input:#?}");
    }
}
