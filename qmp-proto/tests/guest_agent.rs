//! Guest agent: synchronisation, no-reply commands, resync after a timeout,
//! and a hostile guest.

mod common;
use common::{Seen, feed_agent};
use qmp_proto::{ConnectionLimits, Error, GuestAgent, Heap, Id, Limits, UsageError};

fn agent(nonce: u64) -> GuestAgent<Heap> {
    GuestAgent::new(ConnectionLimits::default(), nonce)
}

fn sync_reply(nonce: u64) -> Vec<u8> {
    "\u{0}\u{0}{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray\"}}\n"
        .bytes()
        .chain(*b"\xff")
        .chain(format!("{{\"return\": {nonce}}}\n").bytes())
        .collect()
}

#[test]
fn no_reply_commands_complete_on_send() {
    let mut agent = agent(7);
    assert_eq!(
        agent.send_command_raw("guest-shutdown", Some("{\"mode\": \"powerdown\"}")),
        Ok(None)
    );
    assert_eq!(agent.send_command_raw("guest-suspend-ram", None), Ok(None));
    let ping = agent.send_command_raw("guest-ping", None).unwrap();
    assert!(ping.is_some());
    assert_eq!(agent.in_flight(), 1);
    let sent = String::from_utf8_lossy(agent.pending_transmit()).into_owned();
    assert!(
        sent.contains(
            "{\"execute\":\"guest-shutdown\",\"arguments\":{\"mode\": \"powerdown\"},\"id\":1}"
        ),
        "{sent}"
    );
}

#[test]
fn sync_then_replies_in_any_chunking() {
    for chunk in [1, 2, 5, usize::MAX] {
        let mut agent = agent(99);
        let ping = agent.send_command_raw("guest-ping", None).unwrap().unwrap();
        let mut input = b"{\"return\": {}, \"id\": 1}\n".to_vec(); // stale: before the 0xFF
        input.extend(sync_reply(99));
        input.extend(b"{\"return\": {}, \"id\": 1}\n");
        let out = feed_agent(&mut agent, &input, chunk);
        assert_eq!(
            out,
            [
                Seen::Synced,
                Seen::Return {
                    id: ping.0,
                    value: "{}".into()
                }
            ]
        );
        assert!(agent.is_synced());
    }
}

#[test]
fn abandon_resyncs_and_fails_what_was_waiting() {
    let mut agent = agent(1);
    let out = feed_agent(&mut agent, &sync_reply(1), usize::MAX);
    assert_eq!(out, [Seen::Synced]);
    let n = agent.pending_transmit().len();
    agent.advance_transmit(n).unwrap();
    let slow = agent
        .send_command_raw("guest-exec-status", Some("{\"pid\": 5}"))
        .unwrap()
        .unwrap();
    let other = agent.send_command_raw("guest-ping", None).unwrap().unwrap();
    agent.abandon(slow, 2).unwrap();
    assert!(!agent.is_synced());
    // The pending bytes are now the fresh sync, led by 0xFF.
    assert!(
        agent
            .pending_transmit()
            .starts_with(b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":2}")
    );
    // Late replies to both, then the new sync: the late ones are discarded.
    let mut input = format!(
        "{{\"return\": {{}}, \"id\": {}}}\n{{\"return\": {{}}, \"id\": {}}}\n",
        slow.0, other.0
    )
    .into_bytes();
    input.extend(sync_reply(2));
    let out = feed_agent(&mut agent, &input, 3);
    assert_eq!(
        out,
        [
            Seen::Lost { id: slow.0 },
            Seen::Lost { id: other.0 },
            Seen::Synced
        ]
    );
    assert_eq!(
        agent.abandon(Id(12345), 3),
        Err(Error::Usage(UsageError::UnknownId))
    );
}

#[test]
fn a_hostile_guest_cannot_exhaust_memory_or_confuse_replies() {
    let limits = ConnectionLimits {
        receive: Limits {
            max_message_size: 1024,
            ..Limits::default()
        },
        ..ConnectionLimits::default()
    };
    let mut agent: GuestAgent<Heap> = GuestAgent::new(limits, 5);
    let file_read = agent
        .send_command_raw("guest-file-read", Some("{\"handle\": 1}"))
        .unwrap()
        .unwrap();
    let ping = agent.send_command_raw("guest-ping", None).unwrap().unwrap();
    let mut input = sync_reply(5);
    // A 1 MiB reply to the file read, an event the agent has no business
    // sending, a reply to an id never used, then the ping's reply.
    input.extend(
        format!(
            "{{\"return\": {{\"buf-b64\": \"{}\"}}, \"id\": {}}}\n",
            "A".repeat(1 << 20),
            file_read.0
        )
        .bytes(),
    );
    input.extend(b"{\"event\": \"FAKE\"}\n{\"return\": {}, \"id\": 4242}\n");
    input.extend(format!("{{\"return\": {{}}, \"id\": {}}}\n", ping.0).bytes());
    let out = feed_agent(&mut agent, &input, 4096);
    assert_eq!(out[0], Seen::Synced);
    assert!(matches!(out[1], Seen::Oversized { id, size } if id == file_read.0 && size > 1 << 20));
    assert!(matches!(&out[2], Seen::Unmatched(m) if m.contains("FAKE")));
    assert!(matches!(&out[3], Seen::Unmatched(m) if m.contains("4242")));
    assert_eq!(
        out[4],
        Seen::Return {
            id: ping.0,
            value: "{}".into()
        }
    );
}

#[test]
fn garbage_after_sync_closes_the_session_until_resync() {
    let mut agent = agent(8);
    let ping = agent.send_command_raw("guest-ping", None).unwrap().unwrap();
    let mut input = sync_reply(8);
    input.extend(b"}}}garbage\n");
    let out = feed_agent(&mut agent, &input, usize::MAX);
    assert_eq!(out[..2], [Seen::Synced, Seen::Lost { id: ping.0 }]);
    assert!(matches!(&out[2], Seen::Closed(Some(_))));
    assert!(matches!(
        agent.send_command_raw("guest-ping", None),
        Err(Error::Protocol(_))
    ));
    agent.resync(9).unwrap();
    let out = feed_agent(&mut agent, &sync_reply(9), 1);
    assert_eq!(out, [Seen::Synced]);
    assert!(
        agent
            .send_command_raw("guest-ping", None)
            .unwrap()
            .is_some()
    );
}

#[test]
fn eof_fails_waiting_commands() {
    let mut agent = agent(3);
    let ping = agent.send_command_raw("guest-ping", None).unwrap().unwrap();
    agent.receive_eof();
    let out: Vec<Seen> =
        core::iter::from_fn(|| agent.poll_output().map(common::seen_agent)).collect();
    assert_eq!(out, [Seen::Lost { id: ping.0 }, Seen::Closed(None)]);
    assert_eq!(agent.resync(4), Err(Error::Closed));
}
