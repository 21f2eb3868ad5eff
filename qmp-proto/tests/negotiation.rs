//! Capabilities negotiation against servers that answer `qmp_capabilities`
//! without echoing its id: only one command is in flight before the answer, so
//! an id-less return or error is that answer.

mod common;
use common::{Seen, feed_client};
use qmp_proto::{Client, ClientConfig, ConnectionLimits, Heap, Limits, ProtocolError};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n";

fn negotiate(answer: &[u8], chunk: usize) -> (Client<Heap>, Vec<Seen>) {
    let mut client = Client::new(ClientConfig::default());
    let mut input = GREETING.to_vec();
    input.extend_from_slice(answer);
    let out = feed_client(&mut client, &input, chunk, |_| {});
    (client, out)
}

#[test]
fn an_idless_return_answers_qmp_capabilities() {
    for chunk in [1, 7, usize::MAX] {
        let (client, out) = negotiate(b"{\"return\": {}}\r\n", chunk);
        assert_eq!(out[1..], [Seen::Ready { oob: false }], "{out:?}");
        assert!(client.is_ready());
    }
}

#[test]
fn an_idless_error_fails_the_negotiation() {
    let (client, out) = negotiate(
        b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n",
        usize::MAX,
    );
    assert_eq!(
        out[1..],
        [Seen::Closed(Some(
            ProtocolError::NegotiationFailed.to_string()
        ))],
        "{out:?}"
    );
    assert_eq!(client.error(), Some(ProtocolError::NegotiationFailed));
}

/// Commands sent right after the greeting get their own replies, by id, after
/// an id-less answer to `qmp_capabilities`.
#[test]
fn commands_sent_while_negotiating_are_answered_after_an_idless_return() {
    let mut client: Client<Heap> = Client::new(ClientConfig::default());
    let mut id = None;
    let input = [
        GREETING,
        b"{\"return\": {}}\r\n{\"return\": {\"running\": true}, \"id\": 1}\r\n{\"return\": {}}\r\n",
    ]
    .concat();
    let out = feed_client(&mut client, &input, usize::MAX, |c| {
        id = Some(c.send_command_raw("query-status", None).unwrap());
    });
    assert_eq!(id.map(|id| id.0), Some(1));
    assert_eq!(
        out[1..],
        [
            Seen::Ready { oob: false },
            Seen::Return {
                id: 1,
                value: "{\"running\": true}".to_owned()
            },
            // Once negotiated, an id-less return belongs to nobody.
            Seen::Unmatched("{\"return\": {}}".to_owned()),
        ],
        "{out:?}"
    );
}

#[test]
fn an_oversized_idless_answer_fails_the_negotiation() {
    let mut client: Client<Heap> = Client::new(ClientConfig {
        limits: ConnectionLimits {
            receive: Limits {
                max_message_size: 256,
                ..Limits::default()
            },
            ..ConnectionLimits::default()
        },
        ..ClientConfig::default()
    });
    let answer = format!("{{\"return\": \"{}\"}}\r\n", "x".repeat(300));
    let input = [GREETING, answer.as_bytes()].concat();
    let out = feed_client(&mut client, &input, 16, |_| {});
    assert_eq!(
        out[1..],
        [Seen::Closed(Some(
            ProtocolError::NegotiationFailed.to_string()
        ))],
        "{out:?}"
    );
}
