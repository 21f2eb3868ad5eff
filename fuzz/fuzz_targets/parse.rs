//! Fuzz target `parse`: hostile server bytes, split every way.
//!
//! Input layout: `[flags] [sizes; flags & 7] [server bytes...]`.
//!
//! - `flags & 7`: how many chunk-size bytes follow. Each gives a chunk of
//!   `byte + 1` bytes; they are used in turn, cycling. None means 1-byte chunks.
//! - `flags & 0x08`: abandon a command (client: after sending it; guest agent:
//!   `abandon` on the first sync, which resynchronises).
//! - `flags & 0x10`: the guest agent's nonce is 987654321 (as in the
//!   `qga-stale` transcript) instead of 123456789 (`qga-sync`).
//! - `flags & 0x20`: the client does not ask for `oob`.
//!
//! The same bytes go, whole and in those chunks, through a framer, a QMP client
//! and a guest-agent client, each with growable and with fixed storage and small
//! limits (so the size and depth limits are hit). The owned summaries of what
//! came out must be equal, the bytes transmitted too, nothing may panic or
//! stall, and reply ids must be the client's own, each reported exactly once.

#![no_main]

mod plan;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

use libfuzzer_sys::fuzz_target;
use plan::Plan;
use qmp_proto::framer::{Frame, FrameError, Framer, IdValue, Key};
use qmp_proto::{
    AgentOutput, Client, ClientConfig, ConnectionLimits, Error, Fixed, GuestAgent, Heap, Id,
    JsonStr, Kind, Limits, Output, ProtocolError, QmpError, RawJson, RawMessage, Reply, Storage,
};

const LIMITS: Limits = Limits {
    max_message_size: 4096,
    max_depth: 32,
};

const CONNECTION: ConnectionLimits = ConnectionLimits {
    receive: LIMITS,
    max_transmit: 4096,
    max_pending: 8,
};

const NONCE: u64 = 123_456_789;
const NONCE_ALT: u64 = 987_654_321;

/// Fixed storage small enough that its buffer, not `LIMITS`, caps messages.
type Small = Fixed<512, 1024, 4>;

// ---------------------------------------------------------------- summaries

const KEYS: [Key; 10] = [
    Key::Qmp,
    Key::Return,
    Key::Error,
    Key::Event,
    Key::Data,
    Key::Timestamp,
    Key::Id,
    Key::Execute,
    Key::ExecOob,
    Key::Arguments,
];

/// A message, owned, with every recorded top-level value.
#[derive(Debug, PartialEq)]
struct Msg {
    kind: Kind,
    id: IdValue,
    other_keys: bool,
    text: String,
    values: Vec<(Key, String)>,
}

fn msg(m: &RawMessage<'_>) -> Msg {
    let bytes = m.bytes();
    let text = std::str::from_utf8(bytes).expect("framed message is not UTF-8");
    assert_eq!(m.as_str(), text);
    assert_eq!(bytes.first(), Some(&b'{'), "message does not start with {{");
    assert_eq!(bytes.last(), Some(&b'}'), "message does not end with }}");
    let mut values = Vec::new();
    for key in KEYS {
        if let Some(v) = m.get(key) {
            assert!(!v.bytes().is_empty(), "empty value for {key:?}");
            values.push((key, json(v)));
        }
    }
    Msg {
        kind: m.kind(),
        id: m.id(),
        other_keys: m.has_other_keys(),
        text: text.to_owned(),
        values,
    }
}

thread_local! {
    /// The raw texts already walked by `json` and checked by `text` in this
    /// input's runs. Both are functions of the text alone, and the twelve
    /// runs of an input meet the same values again and again (the summaries
    /// themselves, which carry the text, are still compared run to run).
    static WALKED: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// True the first time `raw` is seen in this input (per `kind`).
fn first_time(kind: char, raw: &str) -> bool {
    WALKED.with_borrow_mut(|seen| {
        let mut key = String::with_capacity(raw.len() + 1);
        key.push(kind);
        key.push_str(raw);
        seen.insert(key)
    })
}

/// Walks a raw value with the core's own small JSON readers (they must never
/// panic, whatever the framer let through) and keeps its text.
fn json(v: RawJson<'_>) -> String {
    let raw = std::str::from_utf8(v.bytes()).expect("value is not UTF-8");
    assert_eq!(v.as_str(), raw);
    if !first_time('v', raw) {
        return raw.to_owned();
    }
    let _ = v.as_u64();
    let _ = v.as_i64();
    if let Some(s) = v.as_json_str() {
        let _ = text(s);
    }
    if let Some(elements) = v.elements() {
        for e in elements.take(64) {
            let _ = e.as_json_str().map(text);
        }
    }
    for key in ["status", "class", "desc", "seconds", "id"] {
        if let Some(m) = v.get(key) {
            let _ = m.as_i64();
            let _ = m.as_json_str().map(text);
        }
    }
    raw.to_owned()
}

fn text(s: JsonStr<'_>) -> String {
    let decoded = s.to_string_lossless();
    if !first_time('s', s.raw()) {
        return decoded;
    }
    assert_eq!(s.to_string(), decoded, "Display and chars() disagree");
    assert!(s.eq_str(&decoded), "eq_str fails on its own decoding");
    if let Some(plain) = s.as_plain() {
        assert_eq!(plain, decoded);
    }
    decoded
}

#[derive(Debug, PartialEq)]
struct QErr {
    class: String,
    desc: String,
}

fn qerr(e: &QmpError<'_>) -> QErr {
    QErr {
        class: e.class.as_str().to_owned(),
        desc: text(e.desc),
    }
}

#[derive(Debug, PartialEq)]
enum Rep {
    Return(String),
    Error(QErr),
    Oversized(usize),
    Closed,
    Other(String),
}

fn rep(r: &Reply<'_>) -> Rep {
    match r {
        Reply::Return(v) => Rep::Return(json(*v)),
        Reply::Error(e) => Rep::Error(qerr(e)),
        Reply::Oversized { size } => Rep::Oversized(*size),
        Reply::Closed => Rep::Closed,
        other => Rep::Other(format!("{other:?}")),
    }
}

#[derive(Debug, PartialEq)]
enum F {
    Message(Msg),
    Sentinel,
    Oversized(Kind, IdValue, usize),
    Error(FrameError),
}

/// What a client or guest agent handed out, plus what its calls returned.
#[derive(Debug, PartialEq)]
enum Out {
    Greeting {
        version: (u64, u64, u64),
        package: String,
        capabilities: Vec<String>,
        message: Msg,
    },
    Ready(bool),
    Synced,
    Reply(u64, Rep),
    Event {
        name: String,
        data: Option<String>,
        timestamp: Option<(i64, i64)>,
        message: Msg,
    },
    Unmatched(Msg),
    IdlessError(QErr),
    Dropped(Kind, usize),
    Closed(Option<ProtocolError>),
    Other(String),
    Sent(Result<Option<u64>, Error>),
    Abandoned(Result<(), Error>),
}

// ------------------------------------------------------------------ framer

fn run_framer<S: Storage>(chunks: &[&[u8]]) -> (Vec<F>, bool) {
    let mut framer = Framer::<S::Rx>::new(LIMITS);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        let mut stalled = false;
        loop {
            let n = framer.push(rest);
            rest = &rest[n..];
            let before = out.len();
            while let Some(frame) = framer.next() {
                out.push(match frame {
                    Frame::Message(m) => F::Message(msg(&m)),
                    Frame::Sentinel => F::Sentinel,
                    Frame::Oversized { kind, id, size } => {
                        assert!(size > 0);
                        F::Oversized(kind, id, size)
                    }
                    Frame::Error(e) => F::Error(e),
                });
            }
            if rest.is_empty() {
                break;
            }
            // A full buffer must make progress once drained.
            assert!(
                !(stalled && n == 0 && out.len() == before),
                "framer stuck: push takes nothing and next() has nothing"
            );
            stalled = n == 0;
        }
    }
    (out, framer.is_mid_message())
}

// ------------------------------------------------------------------ client

struct Run {
    out: Vec<Out>,
    tx: Vec<u8>,
}

/// Checks the reply-id contract and that `Closed` came last, exactly once.
fn check_ids(out: &[Out], sent: &[u64], abandoned: &[u64]) {
    let mut seen = BTreeMap::new();
    for o in out {
        if let Out::Reply(id, _) = o {
            assert!(sent.contains(id), "reply for id {id} that was never sent");
            assert!(
                !abandoned.contains(id),
                "reply for abandoned id {id}: {out:?}"
            );
            *seen.entry(*id).or_insert(0) += 1;
        }
    }
    for id in sent.iter().filter(|id| !abandoned.contains(id)) {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "id {id} reported {:?} times",
            seen.get(id)
        );
    }
    let closed = out.iter().filter(|o| matches!(o, Out::Closed(_))).count();
    assert_eq!(closed, 1, "Closed reported {closed} times");
    assert!(
        matches!(out.last(), Some(Out::Closed(_))),
        "Closed is not last"
    );
}

fn run_client<S: Storage>(chunks: &[&[u8]], flags: u8) -> Run {
    let mut client = Client::<S>::new(ClientConfig {
        oob: flags & 0x20 == 0,
        limits: CONNECTION,
    });
    let mut out = Vec::new();
    let mut tx = Vec::new();
    let mut sent = Vec::new();
    let mut abandoned = Vec::new();
    let mut closed = false;

    let mut drain = |client: &mut Client<S>, out: &mut Vec<Out>| {
        enum Then {
            Nothing,
            Commands,
            Oob,
        }
        while let Some(o) = client.poll_output() {
            assert!(!closed, "output after Closed");
            let then = match &o {
                Output::Greeting(_) => Then::Commands,
                Output::Ready { oob: true } => Then::Oob,
                _ => Then::Nothing,
            };
            out.push(match o {
                Output::Greeting(g) => Out::Greeting {
                    version: (g.version.major, g.version.minor, g.version.micro),
                    package: text(g.package),
                    capabilities: g.capabilities().map(text).collect(),
                    message: msg(&g.message()),
                },
                Output::Ready { oob } => Out::Ready(oob),
                Output::Reply { id, reply } => Out::Reply(id.0, rep(&reply)),
                Output::Event(e) => Out::Event {
                    name: text(e.name),
                    data: e.data.map(json),
                    timestamp: e.timestamp.map(|t| (t.seconds, t.microseconds)),
                    message: msg(&e.message()),
                },
                Output::Unmatched(m) => Out::Unmatched(msg(&m)),
                Output::IdlessError(e) => Out::IdlessError(qerr(&e)),
                Output::Dropped { kind, size } => Out::Dropped(kind, size),
                Output::Closed(e) => {
                    closed = true;
                    assert_eq!(client.error(), e, "error() disagrees with Closed");
                    Out::Closed(e)
                }
                other => Out::Other(format!("{other:?}")),
            });
            let mut record = |r: Result<Id, Error>, out: &mut Vec<Out>| {
                if let Ok(id) = r {
                    sent.push(id.0);
                }
                out.push(Out::Sent(r.map(|id| Some(id.0))));
            };
            match then {
                Then::Nothing => {}
                Then::Commands => {
                    record(client.send_command_raw("query-status", None), out);
                    record(client.send_command_raw("query-name", None), out);
                    record(
                        client.send_command_raw(
                            "human-monitor-command",
                            Some(r#"{"command-line": "info version"}"#),
                        ),
                        out,
                    );
                    if flags & 0x08 != 0
                        && let Some(&id) = sent.get(1)
                    {
                        let r = client.abandon(Id(id));
                        if r.is_ok() {
                            abandoned.push(id);
                        }
                        out.push(Out::Abandoned(r.map_err(Error::from)));
                    }
                }
                Then::Oob => record(client.send_command_raw_oob("migrate-pause", None), out),
            }
            // Flush after every step, so both runs transmit the same way.
            let pending = client.pending_transmit();
            tx.extend_from_slice(pending);
            let n = pending.len();
            client
                .advance_transmit(n)
                .expect("advance by what is pending");
        }
    };

    'feed: for chunk in chunks {
        let mut rest = *chunk;
        let mut stalled = false;
        while !rest.is_empty() {
            let n = match client.receive(rest) {
                Ok(n) => n,
                Err(_) => break 'feed,
            };
            rest = &rest[n..];
            let before = out.len();
            drain(&mut client, &mut out);
            assert!(
                !(stalled && n == 0 && out.len() == before),
                "client stuck: receive takes nothing and poll_output has nothing"
            );
            stalled = n == 0;
        }
    }
    client.receive_eof();
    drain(&mut client, &mut out);
    assert!(client.is_closed(), "not closed after end of stream");
    assert!(client.poll_output().is_none());
    assert!(client.receive(b"{}").is_err(), "receive after Closed");
    assert_eq!(
        client.in_flight(),
        0,
        "commands left in flight after Closed"
    );
    check_ids(&out, &sent, &abandoned);
    Run { out, tx }
}

// ------------------------------------------------------------- guest agent

fn flush<S: Storage>(agent: &mut GuestAgent<S>, tx: &mut Vec<u8>) {
    let pending = agent.pending_transmit();
    tx.extend_from_slice(pending);
    let n = pending.len();
    agent
        .advance_transmit(n)
        .expect("advance by what is pending");
}

fn run_agent<S: Storage>(chunks: &[&[u8]], flags: u8) -> Run {
    let nonce = if flags & 0x10 != 0 { NONCE_ALT } else { NONCE };
    let mut agent = GuestAgent::<S>::new(CONNECTION, nonce);
    let mut out = Vec::new();
    let mut tx = Vec::new();
    let mut sent = Vec::new();

    let mut send = |agent: &mut GuestAgent<S>, name: &str, out: &mut Vec<Out>| {
        let r = agent.send_command_raw(name, None);
        if let Ok(Some(id)) = r {
            sent.push(id.0);
        }
        out.push(Out::Sent(r.map(|id| id.map(|id| id.0))));
    };
    for name in [
        "guest-info",
        "guest-ping",
        "guest-get-osinfo",
        "guest-shutdown",
    ] {
        send(&mut agent, name, &mut out);
    }

    let mut synced = 0u32;
    let mut closed = false;
    let mut drain = |agent: &mut GuestAgent<S>, out: &mut Vec<Out>| {
        while let Some(o) = agent.poll_output() {
            assert!(!closed, "output after Closed");
            let is_synced = matches!(o, AgentOutput::Synced);
            out.push(match o {
                AgentOutput::Synced => Out::Synced,
                AgentOutput::Reply { id, reply } => Out::Reply(id.0, rep(&reply)),
                AgentOutput::Unmatched(m) => Out::Unmatched(msg(&m)),
                AgentOutput::IdlessError(e) => Out::IdlessError(qerr(&e)),
                AgentOutput::Closed(e) => {
                    closed = true;
                    Out::Closed(e)
                }
                other => Out::Other(format!("{other:?}")),
            });
            if is_synced {
                assert!(agent.is_synced());
                synced += 1;
                if synced == 1 {
                    if flags & 0x08 != 0 {
                        // Gives up on guest-ping: everything in flight fails and
                        // the channel resynchronises.
                        let r = agent.abandon(Id(2), nonce);
                        out.push(Out::Abandoned(r));
                    }
                    send(agent, "guest-get-time", out);
                }
            }
            flush(agent, &mut tx);
        }
        // And what was queued with no output to go with it (the sync, the
        // first commands).
        flush(agent, &mut tx);
    };

    drain(&mut agent, &mut out);
    'feed: for chunk in chunks {
        let mut rest = *chunk;
        let mut stalled = false;
        while !rest.is_empty() {
            let n = match agent.receive(rest) {
                Ok(n) => n,
                Err(_) => break 'feed,
            };
            rest = &rest[n..];
            let before = out.len();
            drain(&mut agent, &mut out);
            assert!(
                !(stalled && n == 0 && out.len() == before),
                "guest agent stuck: receive takes nothing and poll_output has nothing"
            );
            stalled = n == 0;
        }
    }
    agent.receive_eof();
    drain(&mut agent, &mut out);
    assert!(agent.poll_output().is_none());
    assert!(agent.receive(b"{}").is_err(), "receive after end of stream");
    assert_eq!(agent.in_flight(), 0, "commands left in flight after Closed");
    // On the guest-agent channel an abandoned command fails with Closed, so
    // every id sent is reported exactly once.
    check_ids(&out, &sent, &[]);
    Run { out, tx }
}

// ------------------------------------------------------------------ target

fn same<T: PartialEq + std::fmt::Debug>(what: &str, whole: &T, chunked: &T) {
    if whole != chunked {
        panic!("{what}: whole and chunked input differ\nwhole:   {whole:?}\nchunked: {chunked:?}");
    }
}

/// `QMP_FUZZ_DEBUG=1` prints what the client and guest agent handed out (to
/// read what a crashing or seed input does).
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("QMP_FUZZ_DEBUG").is_some())
}

fn check<S: Storage>(name: &str, whole: &[&[u8]], chunked: &[&[u8]], flags: u8) {
    let a = run_client::<S>(whole, flags);
    let b = run_client::<S>(chunked, flags);
    if debug() {
        eprintln!("client<{name}>:");
        a.out.iter().for_each(|o| eprintln!("  {o:?}"));
    }
    same(&format!("client<{name}> outputs"), &a.out, &b.out);
    same(&format!("client<{name}> transmit"), &a.tx, &b.tx);

    let a = run_agent::<S>(whole, flags);
    let b = run_agent::<S>(chunked, flags);
    if debug() {
        eprintln!("guest agent<{name}>:");
        a.out.iter().for_each(|o| eprintln!("  {o:?}"));
    }
    same(&format!("guest agent<{name}> outputs"), &a.out, &b.out);
    same(&format!("guest agent<{name}> transmit"), &a.tx, &b.tx);
}

fuzz_target!(|input: &[u8]| {
    WALKED.with_borrow_mut(HashSet::clear);
    let plan = Plan::new(input);
    let whole = vec![plan.data];
    let chunked = plan.chunks();

    same(
        "framer<VecBuf>",
        &run_framer::<Heap>(&whole),
        &run_framer::<Heap>(&chunked),
    );
    same(
        "framer<FixedBuf<512>>",
        &run_framer::<Fixed<512, 0, 0>>(&whole),
        &run_framer::<Fixed<512, 0, 0>>(&chunked),
    );
    check::<Heap>("Heap", &whole, &chunked, plan.flags);
    check::<Small>("Fixed<512, 1024, 4>", &whole, &chunked, plan.flags);
});
