//! Whatever a hostile peer sends, and however its bytes are cut, every command
//! in flight gets exactly one outcome: its reply, or `Closed` when the
//! connection ends. A reply is never lost between reading a message and
//! handing it out, and `poll_output` never says "need more input" while a
//! whole message is waiting.

use proptest::prelude::*;
use qmp_proto::{AgentOutput, Client, ClientConfig, GuestAgent, Heap, Output};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n{\"return\": {}, \"id\": 0}\r\n";

/// Commands in flight in every run: ids 1..=COMMANDS (0 is `qmp_capabilities`).
const COMMANDS: u64 = 4;

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1..=COMMANDS + 1).prop_map(|n| format!(", \"id\": {n}")),
        1 => Just(String::new()),
        1 => Just(", \"id\": \"1\"".to_owned()),
        1 => Just(", \"id\": -1".to_owned()),
        1 => Just(", \"id\": [1]".to_owned()),
        1 => (1..=COMMANDS).prop_map(|n| format!(", \"id\": {n}, \"id\": {}", n + 1)),
    ]
}

fn error_value() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("{\"class\": \"GenericError\", \"desc\": \"no\"}"),
        1 => Just("{\"desc\": \"no\", \"class\": \"Mystery\\u0041\"}"),
        1 => Just("{\"class\": 1, \"desc\": \"no\"}"),
        1 => Just("{\"class\": \"GenericError\"}"),
        1 => Just("\"oops\""),
    ]
}

/// One message (or not quite one) a hostile QMP server might send.
fn message() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (id(), "[a-z]{0,6}").prop_map(|(id, v)| format!("{{\"return\": \"{v}\"{id}}}\r\n")),
        2 => id().prop_map(|id| format!("{{\"return\": {{\"id\": 9}}{id}, \"return\": []}}\r\n")),
        3 => (id(), error_value()).prop_map(|(id, e)| format!("{{\"error\": {e}{id}}}\r\n")),
        2 => "[A-Z_]{1,8}".prop_map(|n| format!("{{\"event\": \"{n}\", \"data\": {{}}}}\r\n")),
        1 => Just("{\"event\": 5}\r\n".to_owned()),
        1 => Just("{\"QMP\": {}}\r\n".to_owned()),
        1 => id().prop_map(|id| format!("{{\"return\": 1, \"event\": \"X\"{id}}}\r\n")),
        1 => Just("{\"return\": \"\u{1}\"}\r\n".to_owned()),
        1 => Just("]\r\n".to_owned()),
        1 => Just("\u{ff}".to_owned()),
    ]
}

fn cut(input: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        pieces.push(rest[..n].to_vec());
        rest = &rest[n..];
        i += 1;
    }
    pieces
}

/// Checks the outcomes counted per id and the end of the session.
fn check(outcomes: &[u32], closed: bool) -> Result<(), TestCaseError> {
    prop_assert!(closed, "no Closed at the end");
    for (id, &n) in outcomes.iter().enumerate().skip(1) {
        prop_assert_eq!(n, 1, "command {} got {} outcomes", id, n);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_command_gets_exactly_one_outcome(
        messages in proptest::collection::vec(message(), 0..12),
        sizes in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let mut client: Client<Heap> = Client::new(ClientConfig::default());
        let mut input = GREETING.to_vec();
        for m in &messages {
            input.extend_from_slice(m.as_bytes());
        }
        let mut outcomes = [0u32; COMMANDS as usize + 1];
        let mut closed = false;
        let mut sent = false;
        let record = |o: Output<'_>, outcomes: &mut [u32], closed: &mut bool| match o {
            Output::Reply { id, .. } => outcomes[id.0 as usize] += 1,
            Output::Closed(_) => *closed = true,
            _ => {}
        };
        for piece in cut(&input, &sizes) {
            let mut rest = &piece[..];
            while !rest.is_empty() {
                let Ok(n) = client.receive(rest) else { break };
                rest = &rest[n..];
                while let Some(o) = client.poll_output() {
                    let greeted = matches!(o, Output::Greeting(_));
                    record(o, &mut outcomes, &mut closed);
                    if greeted && !sent {
                        sent = true;
                        for _ in 0..COMMANDS {
                            let _id = client.send_command_raw("query-status", None).unwrap();
                        }
                    }
                }
            }
        }
        prop_assert!(sent);
        client.receive_eof();
        while let Some(o) = client.poll_output() {
            record(o, &mut outcomes, &mut closed);
        }
        check(&outcomes, closed)?;
    }

    #[test]
    fn every_guest_agent_command_gets_exactly_one_outcome(
        messages in proptest::collection::vec(message(), 0..12),
        sizes in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let mut agent: GuestAgent<Heap> = GuestAgent::new(Default::default(), 7);
        for _ in 0..COMMANDS {
            let _id = agent.send_command_raw("guest-ping", None).unwrap();
        }
        // The sync (id 0) goes first, then commands 1..=COMMANDS.
        let mut input = b"\xff{\"return\": 7}\n".to_vec();
        for m in &messages {
            input.extend_from_slice(m.as_bytes());
        }
        let mut outcomes = [0u32; COMMANDS as usize + 1];
        let mut closed = false;
        let record = |o: AgentOutput<'_>, outcomes: &mut [u32], closed: &mut bool| match o {
            AgentOutput::Reply { id, .. } => outcomes[id.0 as usize] += 1,
            AgentOutput::Closed(_) => *closed = true,
            _ => {}
        };
        for piece in cut(&input, &sizes) {
            let mut rest = &piece[..];
            while !rest.is_empty() {
                let Ok(n) = agent.receive(rest) else { break };
                rest = &rest[n..];
                while let Some(o) = agent.poll_output() {
                    record(o, &mut outcomes, &mut closed);
                }
            }
        }
        agent.receive_eof();
        while let Some(o) = agent.poll_output() {
            record(o, &mut outcomes, &mut closed);
        }
        check(&outcomes, closed)?;
    }
}
