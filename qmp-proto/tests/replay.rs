//! Replays of transcripts captured from a real QEMU 7.2.22 and qemu-ga 7.2.22
//! (see tests/data/README.md): the client must send exactly the bytes that were
//! sent to QEMU, and make sense of exactly what QEMU answered, however the
//! answer is split.

mod common;
use common::{Seen, commands, feed_agent, feed_client, finish_client, transcript};
use qmp_proto::{Client, ClientConfig, ConnectionLimits, GuestAgent, Heap};

const CHUNKS: [usize; 5] = [usize::MAX, 1, 3, 64, 4096];

/// Replays a QMP transcript; sends the transcript's commands (except
/// `qmp_capabilities`, which the client sends itself) when the greeting came.
fn replay_qmp(name: &str, chunk: usize, oob: bool) -> (Vec<Seen>, Vec<u8>) {
    let rx = transcript(name, "rx");
    let tx = transcript(name, "tx");
    let cmds = commands(&tx);
    let mut client: Client<Heap> = Client::new(ClientConfig {
        oob,
        ..ClientConfig::default()
    });
    let mut sent = Vec::new();
    let mut out = feed_client(&mut client, &rx, chunk, |c| {
        for (verb, name, args, id) in &cmds {
            if name == "qmp_capabilities" {
                continue;
            }
            let got = match verb.as_str() {
                "exec-oob" => c.send_command_raw_oob(name, args.as_deref()),
                _ => c.send_command_raw(name, args.as_deref()),
            };
            match got {
                Ok(got) => assert_eq!(serde_json::json!(got.0), *id, "{name}"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
        sent.extend_from_slice(c.pending_transmit());
        let n = c.pending_transmit().len();
        c.advance_transmit(n).unwrap();
    });
    out.extend(finish_client(&mut client));
    (out, sent)
}

#[test]
fn queries_match_qemu_byte_for_byte_and_every_reply_is_matched() {
    let (whole, sent) = replay_qmp("qmp-queries", usize::MAX, true);
    assert_eq!(
        String::from_utf8_lossy(&sent),
        String::from_utf8_lossy(&transcript("qmp-queries", "tx"))
    );
    assert_eq!(
        whole[0],
        Seen::Greeting {
            version: "7.2.22".into(),
            oob: true
        }
    );
    assert_eq!(whole[1], Seen::Ready { oob: true });
    let ids: Vec<u64> = whole[2..]
        .iter()
        .filter_map(|s| match s {
            Seen::Return { id, .. } | Seen::Error { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, (1..=15).collect::<Vec<_>>());
    // query-qmp-schema (id 12) is the ~200 KiB reply.
    let schema = whole.iter().find_map(|s| match s {
        Seen::Return { id: 12, value } => Some(value.len()),
        _ => None,
    });
    assert!(schema.unwrap() > 200_000, "{schema:?}");
    assert!(whole.contains(&Seen::Error {
        id: 13,
        class: "CommandNotFound".into(),
        desc: "The command no-such-command has not been found".into()
    }));
    assert!(whole.contains(&Seen::Error {
        id: 14,
        class: "DeviceNotFound".into(),
        desc: "Device 'nope' not found".into()
    }));
    assert_eq!(whole.last(), Some(&Seen::Closed(None)));
    for chunk in CHUNKS {
        assert_eq!(
            replay_qmp("qmp-queries", chunk, true).0,
            whole,
            "chunks of {chunk}"
        );
    }
}

#[test]
fn oob_reply_overtakes_in_band_replies() {
    let (out, sent) = replay_qmp("qmp-oob", usize::MAX, true);
    assert_eq!(sent, transcript("qmp-oob", "tx"));
    let order: Vec<u64> = out
        .iter()
        .filter_map(|s| match s {
            Seen::Return { id, .. } | Seen::Error { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    // The capture kept a run where the oob reply (id 3) overtook id 2.
    assert_eq!(order, [1, 3, 2]);
    assert!(matches!(&out[3], Seen::Error { id: 3, class, .. } if class == "GenericError"));
    for chunk in CHUNKS {
        assert_eq!(replay_qmp("qmp-oob", chunk, true).0, out);
    }
}

#[test]
fn exec_oob_is_refused_unless_negotiated() {
    let rx = transcript("qmp-oob", "rx");
    let greeting_end = rx.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut client: Client<Heap> = Client::new(ClientConfig {
        oob: false,
        ..ClientConfig::default()
    });
    assert_eq!(
        client.send_command_raw_oob("migrate-pause", None),
        Err(qmp_proto::UsageError::GreetingPending.into())
    );
    feed_client(&mut client, &rx[..greeting_end], usize::MAX, |_| {});
    assert!(
        client
            .pending_transmit()
            .starts_with(b"{\"execute\":\"qmp_capabilities\",\"id\":0}")
    );
    assert_eq!(
        client.send_command_raw_oob("migrate-pause", None),
        Err(qmp_proto::UsageError::OobNotNegotiated.into())
    );
}

#[test]
fn events_arrive_between_replies() {
    let (out, sent) = replay_qmp("qmp-stop-cont", usize::MAX, false);
    assert_eq!(sent, transcript("qmp-stop-cont", "tx"));
    let names: Vec<String> = out
        .iter()
        .map(|s| match s {
            Seen::Event { name, .. } => name.clone(),
            Seen::Return { id, .. } => format!("reply {id}"),
            other => format!("{other:?}"),
        })
        .collect();
    let stop = names.iter().position(|n| n == "STOP").unwrap();
    let resume = names.iter().position(|n| n == "RESUME").unwrap();
    assert_eq!(names[stop + 1], "reply 2");
    assert_eq!(names[resume + 1], "reply 4");
    for chunk in CHUNKS {
        assert_eq!(replay_qmp("qmp-stop-cont", chunk, false).0, out);
    }
}

#[test]
fn json_parse_error_without_id_is_reported_apart() {
    let rx = transcript("qmp-parse-error", "rx");
    for chunk in CHUNKS {
        let mut client: Client<Heap> = Client::new(ClientConfig {
            oob: false,
            ..ClientConfig::default()
        });
        let mut out = feed_client(&mut client, &rx, chunk, |c| {
            // The transcript's commands 1 and 2 (the client itself cannot send
            // the malformed bytes QEMU was given).
            assert_eq!(c.send_command_raw("query-status", None).unwrap().0, 1);
            assert_eq!(c.send_command_raw("query-status", None).unwrap().0, 2);
        });
        out.extend(finish_client(&mut client));
        assert_eq!(
            out[2],
            Seen::IdlessError {
                class: "GenericError".into(),
                desc: "JSON parse error, expecting value".into()
            }
        );
        assert!(matches!(&out[3], Seen::Return { id: 1, value } if value.contains("running")));
        assert_eq!(
            out[4],
            Seen::Error {
                id: 2,
                class: "GenericError".into(),
                desc: "QMP input member 'foo' is unexpected".into()
            }
        );
        assert_eq!(out[5..], [Seen::Closed(None)]);
    }
}

fn replay_qga(name: &str, nonce: u64, chunk: usize) -> Vec<Seen> {
    let rx = transcript(name, "rx");
    let tx = transcript(name, "tx");
    let mut agent: GuestAgent<Heap> = GuestAgent::new(ConnectionLimits::default(), nonce);
    assert!(
        agent
            .pending_transmit()
            .starts_with(b"\xff{\"execute\":\"guest-sync-delimited\"")
    );
    for (_, name, args, id) in commands(&tx) {
        if name == "guest-sync-delimited" {
            continue;
        }
        let got = agent
            .send_command_raw(&name, args.as_deref())
            .unwrap()
            .unwrap();
        assert_eq!(serde_json::json!(got.0), id);
    }
    feed_agent(&mut agent, &rx, chunk)
}

#[test]
fn guest_agent_discards_everything_before_its_sync_reply() {
    let out = replay_qga("qga-sync", 123456789, usize::MAX);
    // The agent's parse error for our 0xFF comes first and is discarded.
    assert_eq!(out[0], Seen::Synced);
    let ids: Vec<u64> = out[1..]
        .iter()
        .map(|s| match s {
            Seen::Return { id, .. } => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    for chunk in CHUNKS {
        assert_eq!(replay_qga("qga-sync", 123456789, chunk), out);
    }
}

#[test]
fn guest_agent_resyncs_after_stale_bytes() {
    let out = replay_qga("qga-stale", 987654321, usize::MAX);
    assert_eq!(
        out,
        [
            Seen::Synced,
            Seen::Return {
                id: 1,
                value: "{}".into()
            }
        ]
    );
    for chunk in CHUNKS {
        assert_eq!(replay_qga("qga-stale", 987654321, chunk), out);
    }
}

#[test]
fn guest_agent_ignores_a_sync_reply_with_another_nonce() {
    let out = replay_qga("qga-sync", 42, usize::MAX);
    assert!(out.is_empty(), "{out:?}");
}
