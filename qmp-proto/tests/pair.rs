//! A client and a server wired back to back in memory. The same script of
//! commands, replies (in any order), events and abandons must give the client
//! the same outputs whether bytes travel whole, one at a time, or in random
//! chunks; and no reply may ever reach the wrong command.

mod common;
use std::collections::HashMap;

use common::{Seen, seen};
use proptest::prelude::*;
use qmp_proto::server::ReplyTo;
use qmp_proto::{Client, ClientConfig, Heap, Server, ServerConfig, ServerOutput, Timestamp};

#[derive(Debug, Clone)]
enum Op {
    /// Client sends command number `n` (its argument carries `n`).
    Send { oob: bool },
    /// Server answers the `k`-th unanswered request (modulo their number).
    Answer { k: usize, error: bool },
    /// Server sends an event.
    Event { n: u32 },
    /// Client abandons the `k`-th command it still waits for.
    Abandon { k: usize },
    /// Server sends a reply with an id the client never used.
    Stray { string_id: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(|oob| Op::Send { oob }),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(k, error)| Op::Answer { k, error }),
        2 => any::<u32>().prop_map(|n| Op::Event { n }),
        1 => any::<usize>().prop_map(|k| Op::Abandon { k }),
        1 => any::<bool>().prop_map(|string_id| Op::Stray { string_id }),
    ]
}

/// How bytes are cut on the way.
#[derive(Debug, Clone)]
enum Cut {
    Whole,
    Bytes,
    Random(Vec<usize>),
}

impl Cut {
    fn sizes(&self) -> impl FnMut() -> usize + '_ {
        let mut i = 0;
        move || {
            i += 1;
            match self {
                Cut::Whole => usize::MAX,
                Cut::Bytes => 1,
                Cut::Random(sizes) => sizes[i % sizes.len()],
            }
        }
    }
}

struct Pair {
    client: Client<Heap>,
    server: Server<Heap>,
    /// Requests the server has not answered: where to reply and the `n` sent.
    unanswered: Vec<(ReplyTo, u64)>,
    /// What the client sent under each id.
    sent: HashMap<u64, u64>,
    waiting: Vec<u64>,
    abandoned: Vec<u64>,
    seen: Vec<Seen>,
}

impl Pair {
    fn new() -> Self {
        Pair {
            client: Client::new(ClientConfig::default()),
            server: Server::new(ServerConfig::default()),
            unanswered: Vec::new(),
            sent: HashMap::new(),
            waiting: Vec::new(),
            abandoned: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Moves every byte both ways until nothing moves, in chunks from `cut`.
    fn pump(&mut self, cut: &Cut) {
        let mut next = cut.sizes();
        loop {
            let mut moved = false;
            while !self.server.pending_transmit().is_empty() {
                let bytes = self.server.pending_transmit();
                let take = bytes.len().min(next());
                let n = self.client.receive(&bytes[..take]).unwrap();
                self.server.advance_transmit(n).unwrap();
                moved |= n > 0;
                while let Some(o) = self.client.poll_output() {
                    let s = seen(o);
                    self.check(&s);
                    self.seen.push(s);
                }
            }
            while !self.client.pending_transmit().is_empty() {
                let bytes = self.client.pending_transmit();
                let take = bytes.len().min(next());
                let n = self.server.receive(&bytes[..take]).unwrap();
                self.client.advance_transmit(n).unwrap();
                moved |= n > 0;
                while let Some(o) = self.server.poll_output() {
                    if let ServerOutput::Command(req) = o {
                        let n = req
                            .arguments
                            .and_then(|a| a.get("n"))
                            .and_then(|n| n.as_u64())
                            .unwrap();
                        self.unanswered.push((req.reply_to, n));
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// No reply may reach the wrong command, nor an abandoned one.
    fn check(&mut self, s: &Seen) {
        let (id, n) = match s {
            Seen::Return { id, value } => {
                let v: serde_json::Value = serde_json::from_str(value).unwrap();
                (*id, v["n"].as_u64().unwrap())
            }
            Seen::Error { id, desc, .. } => (*id, desc.parse().unwrap()),
            _ => return,
        };
        assert_eq!(self.sent.get(&id), Some(&n), "reply for {id} carries {n}");
        assert!(!self.abandoned.contains(&id), "abandoned {id} got a reply");
        let at = self
            .waiting
            .iter()
            .position(|&w| w == id)
            .expect("one reply per command");
        self.waiting.remove(at);
    }

    fn apply(&mut self, op: &Op, counter: &mut u64) {
        match *op {
            Op::Send { oob } => {
                *counter += 1;
                let args = format!("{{\"n\": {counter}}}");
                let id = if oob {
                    self.client.send_command_raw_oob("echo", Some(&args))
                } else {
                    self.client.send_command_raw("echo", Some(&args))
                }
                .unwrap();
                self.sent.insert(id.0, *counter);
                self.waiting.push(id.0);
            }
            Op::Answer { k, error } => {
                if self.unanswered.is_empty() {
                    return;
                }
                let (to, n) = self.unanswered.remove(k % self.unanswered.len());
                if error {
                    self.server
                        .reply_error(&to, "GenericError", &n.to_string())
                        .unwrap();
                } else {
                    self.server
                        .reply_return(&to, &format!("{{\"n\": {n}}}"))
                        .unwrap();
                }
            }
            Op::Event { n } => {
                let data = format!("{{\"n\": {n}}}");
                let ts = Timestamp {
                    seconds: i64::from(n),
                    microseconds: 0,
                };
                self.server
                    .send_event("TEST_EVENT", Some(&data), ts)
                    .unwrap();
            }
            Op::Abandon { k } => {
                if self.waiting.is_empty() {
                    return;
                }
                let id = self.waiting.remove(k % self.waiting.len());
                self.client.abandon(qmp_proto::Id(id)).unwrap();
                self.abandoned.push(id);
            }
            Op::Stray { string_id } => {
                let raw = if string_id {
                    "{\"return\": {}, \"id\": \"x\"}\r\n"
                } else {
                    "{\"return\": {}, \"id\": 987654321}\r\n"
                };
                // Written straight into the stream, bypassing the server.
                assert_eq!(self.client.receive(raw.as_bytes()), Ok(raw.len()));
                while let Some(o) = self.client.poll_output() {
                    self.seen.push(seen(o));
                }
            }
        }
    }
}

fn run(ops: &[Op], cut: &Cut) -> Vec<Seen> {
    let mut pair = Pair::new();
    pair.pump(cut);
    assert!(pair.client.is_ready() && pair.server.is_negotiated());
    let mut counter = 0;
    for op in ops {
        pair.apply(op, &mut counter);
        pair.pump(cut);
    }
    // Answer everything left; every command still wanted gets its reply.
    while !pair.unanswered.is_empty() {
        pair.apply(&Op::Answer { k: 0, error: false }, &mut counter);
        pair.pump(cut);
    }
    assert!(pair.waiting.is_empty(), "unanswered: {:?}", pair.waiting);
    assert_eq!(pair.client.in_flight(), 0);
    pair.client.receive_eof();
    while let Some(o) = pair.client.poll_output() {
        pair.seen.push(seen(o));
    }
    assert_eq!(pair.seen.last(), Some(&Seen::Closed(None)));
    pair.seen
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn chunking_never_changes_outputs(
        ops in proptest::collection::vec(op(), 0..40),
        sizes in proptest::collection::vec(1usize..200, 1..16),
    ) {
        let whole = run(&ops, &Cut::Whole);
        prop_assert_eq!(&run(&ops, &Cut::Bytes), &whole);
        prop_assert_eq!(&run(&ops, &Cut::Random(sizes)), &whole);
    }
}

#[test]
fn stray_ids_are_reported_as_unmatched() {
    let ops = [
        Op::Send { oob: false },
        Op::Stray { string_id: true },
        Op::Stray { string_id: false },
    ];
    let out = run(&ops, &Cut::Whole);
    let unmatched = out
        .iter()
        .filter(|s| matches!(s, Seen::Unmatched(_)))
        .count();
    assert_eq!(unmatched, 2, "{out:?}");
}

#[test]
fn late_reply_to_an_abandoned_command_is_dropped() {
    let ops = [
        Op::Send { oob: false },
        Op::Send { oob: false },
        Op::Abandon { k: 0 },
    ];
    let out = run(&ops, &Cut::Bytes);
    let replies: Vec<_> = out
        .iter()
        .filter(|s| matches!(s, Seen::Return { .. }))
        .collect();
    assert_eq!(replies.len(), 1, "{out:?}");
    assert!(matches!(replies[0], Seen::Return { id: 2, .. }));
}
