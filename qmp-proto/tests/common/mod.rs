//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use qmp_proto::{AgentOutput, Client, GuestAgent, Output, Reply, Storage};

/// Bytes of a captured transcript (`tests/data/NAME.EXT` at the repository root).
pub(crate) fn transcript(name: &str, ext: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(format!("{name}.{ext}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The commands of a transcript's `.tx` file: (verb, name, arguments, id).
pub(crate) fn commands(tx: &[u8]) -> Vec<(String, String, Option<String>, serde_json::Value)> {
    tx.split(|&b| b == b'\n')
        .map(|line| line.strip_prefix(b"\xff").unwrap_or(line))
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .map(|v| {
            let (verb, name) = match (v.get("execute"), v.get("exec-oob")) {
                (Some(n), _) => ("execute", n),
                (_, Some(n)) => ("exec-oob", n),
                _ => panic!("not a command: {v}"),
            };
            (
                verb.to_owned(),
                name.as_str().unwrap().to_owned(),
                v.get("arguments").map(|a| a.to_string()),
                v.get("id").cloned().unwrap_or(serde_json::Value::Null),
            )
        })
        .collect()
}

/// An owned copy of what a state machine reported, so runs compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    Greeting {
        version: String,
        oob: bool,
    },
    Ready {
        oob: bool,
    },
    Return {
        id: u64,
        value: String,
    },
    Error {
        id: u64,
        class: String,
        desc: String,
    },
    Oversized {
        id: u64,
        size: usize,
    },
    Lost {
        id: u64,
    },
    Event {
        name: String,
        data: Option<String>,
    },
    Unmatched(String),
    IdlessError {
        class: String,
        desc: String,
    },
    Dropped {
        size: usize,
    },
    Synced,
    Closed(Option<String>),
}

fn reply(id: u64, reply: Reply<'_>) -> Seen {
    match reply {
        Reply::Return(v) => Seen::Return {
            id,
            value: v.as_str().to_owned(),
        },
        Reply::Error(e) => Seen::Error {
            id,
            class: e.class.to_string(),
            desc: e.desc.to_string(),
        },
        Reply::Oversized { size } => Seen::Oversized { id, size },
        Reply::Closed => Seen::Lost { id },
        other => panic!("unknown reply {other:?}"),
    }
}

/// Copies one client output.
pub(crate) fn seen(output: Output<'_>) -> Seen {
    match output {
        Output::Greeting(g) => Seen::Greeting {
            version: g.version.to_string(),
            oob: g.has_capability("oob"),
        },
        Output::Ready { oob } => Seen::Ready { oob },
        Output::Reply { id, reply: r } => reply(id.0, r),
        Output::Event(e) => Seen::Event {
            name: e.name.to_string(),
            data: e.data.map(|d| d.as_str().to_owned()),
        },
        Output::Unmatched(m) => Seen::Unmatched(m.as_str().to_owned()),
        Output::IdlessError(e) => Seen::IdlessError {
            class: e.class.to_string(),
            desc: e.desc.to_string(),
        },
        Output::Dropped { size, .. } => Seen::Dropped { size },
        Output::Closed(e) => Seen::Closed(e.map(|e| e.to_string())),
        other => panic!("unknown output {other:?}"),
    }
}

/// Copies one guest-agent output.
pub(crate) fn seen_agent(output: AgentOutput<'_>) -> Seen {
    match output {
        AgentOutput::Synced => Seen::Synced,
        AgentOutput::Reply { id, reply: r } => reply(id.0, r),
        AgentOutput::Unmatched(m) => Seen::Unmatched(m.as_str().to_owned()),
        AgentOutput::IdlessError(e) => Seen::IdlessError {
            class: e.class.to_string(),
            desc: e.desc.to_string(),
        },
        AgentOutput::Closed(e) => Seen::Closed(e.map(|e| e.to_string())),
        other => panic!("unknown output {other:?}"),
    }
}

/// Feeds `input` to a client in chunks of `chunk` bytes, draining outputs
/// after every call as the drive contract says; `on_greeting` runs once the
/// greeting was reported (to send commands).
pub(crate) fn feed_client<S: Storage>(
    client: &mut Client<S>,
    input: &[u8],
    chunk: usize,
    mut on_greeting: impl FnMut(&mut Client<S>),
) -> Vec<Seen> {
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        let mut rest = piece;
        while let Ok(n) = client.receive(rest) {
            rest = &rest[n..];
            while let Some(o) = client.poll_output() {
                let greeted = matches!(o, Output::Greeting(_));
                out.push(seen(o));
                if greeted {
                    on_greeting(client);
                }
            }
            if rest.is_empty() {
                break;
            }
        }
    }
    out
}

/// Sends end of stream and collects what follows.
pub(crate) fn finish_client<S: Storage>(client: &mut Client<S>) -> Vec<Seen> {
    client.receive_eof();
    core::iter::from_fn(|| client.poll_output().map(seen)).collect()
}

/// Feeds `input` to a guest agent in chunks.
pub(crate) fn feed_agent<S: Storage>(
    agent: &mut GuestAgent<S>,
    input: &[u8],
    chunk: usize,
) -> Vec<Seen> {
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        let mut rest = piece;
        while !rest.is_empty() {
            let Ok(n) = agent.receive(rest) else { break };
            rest = &rest[n..];
            while let Some(o) = agent.poll_output() {
                out.push(seen_agent(o));
            }
        }
    }
    out
}
