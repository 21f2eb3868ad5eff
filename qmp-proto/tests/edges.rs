//! The edges of the code that reads and writes numbers, strings and ids
//! without indexing or unchecked arithmetic: the largest and smallest
//! integers, escapes and surrogate pairs both ways, ids at the server's
//! length limit, values whose text looks like the end of a value.

use qmp_proto::server::{MAX_REQUEST_ID, ReplyTo};
use qmp_proto::{
    AgentOutput, Client, ClientConfig, ConnectionLimits, GuestAgent, Heap, Output, Reply, Server,
    ServerConfig, ServerOutput, Version,
};

fn flush_server(server: &mut Server<Heap>, client: &mut Client<Heap>) {
    let bytes = server.pending_transmit().to_vec();
    server.advance_transmit(bytes.len()).unwrap();
    assert_eq!(client.receive(&bytes), Ok(bytes.len()));
}

fn flush_client(client: &mut Client<Heap>, server: &mut Server<Heap>) -> Vec<ReplyTo> {
    let bytes = client.pending_transmit().to_vec();
    client.advance_transmit(bytes.len()).unwrap();
    assert_eq!(server.receive(&bytes), Ok(bytes.len()));
    let mut to = Vec::new();
    while let Some(output) = server.poll_output() {
        if let ServerOutput::Command(request) = output {
            to.push(request.reply_to);
        }
    }
    to
}

/// A client past the greeting and negotiation.
fn ready_client() -> Client<Heap> {
    let mut client = Client::<Heap>::new(ClientConfig::default());
    let input = concat!(
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, ",
        "\"package\": \"\"}, \"capabilities\": []}}\r\n",
        "{\"return\": {}, \"id\": 0}\r\n",
    );
    assert_eq!(client.receive(input.as_bytes()), Ok(input.len()));
    while client.poll_output().is_some() {}
    assert!(client.is_ready());
    client
}

#[test]
fn greeting_versions_at_the_ends_of_u64() {
    let version = Version {
        major: u64::MAX,
        minor: 0,
        micro: 10,
    };
    let mut server = Server::<Heap>::new(ServerConfig {
        version,
        ..ServerConfig::default()
    });
    let mut client = Client::<Heap>::new(ClientConfig::default());
    flush_server(&mut server, &mut client);
    match client.poll_output() {
        Some(Output::Greeting(g)) => assert_eq!(g.version, version),
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_text_round_trips_through_escapes_and_surrogate_pairs() {
    let mut server = Server::<Heap>::new(ServerConfig::default());
    let mut client = Client::<Heap>::new(ClientConfig::default());
    flush_server(&mut server, &mut client);
    while client.poll_output().is_some() {}
    flush_client(&mut client, &mut server);
    flush_server(&mut server, &mut client);
    while client.poll_output().is_some() {}
    assert!(client.is_ready());

    let desc = "q\"b\\c\u{1}\u{7f} é \u{10FFFF} 🦀 end";
    let class = "Class\u{0}\u{FFFF}";
    let id = client.send_command_raw("query-status", None).unwrap();
    let to = flush_client(&mut client, &mut server);
    assert_eq!(to.len(), 1);
    server.reply_error(&to[0], class, desc).unwrap();
    // What the server wrote is ASCII: everything else was escaped.
    assert!(server.pending_transmit().is_ascii());
    flush_server(&mut server, &mut client);
    match client.poll_output() {
        Some(Output::Reply {
            id: got,
            reply: Reply::Error(e),
        }) => {
            assert_eq!(got, id);
            assert_eq!(e.desc.to_string_lossless(), desc);
            assert_eq!(
                e.class.into_owned(),
                qmp_proto::ErrorClass::Other(class.to_owned())
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unpaired_surrogates_decode_to_the_replacement_character() {
    let mut client = ready_client();
    let id = client.send_command_raw("stop", None).unwrap();
    let reply = format!(
        "{{\"error\": {{\"class\": \"E\", \"desc\": \"a\\ud800b\\udc00c\\ud83e\\udd80\\ud800\\u0041\"}}, \"id\": {}}}\r\n",
        id.0
    );
    assert_eq!(client.receive(reply.as_bytes()), Ok(reply.len()));
    match client.poll_output() {
        Some(Output::Reply {
            reply: Reply::Error(e),
            ..
        }) => assert_eq!(
            e.desc.to_string_lossless(),
            "a\u{FFFD}b\u{FFFD}c🦀\u{FFFD}A"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn numbers_at_the_ends_of_i64_and_u64() {
    let mut client = ready_client();
    let id = client.send_command_raw("x", None).unwrap();
    let reply = format!(
        "{{\"return\": {{\"min\": -9223372036854775808, \"below\": -9223372036854775809, \
         \"max\": 18446744073709551615, \"over\": 18446744073709551616, \"zero\": 0, \
         \"lead\": 01, \"list\": [\"]\", {{\"a\": \"}}\"}}, [1, [2]], \"\\\"\"], \"q\": \"\\\"\"}}, \
         \"id\": {}}}\r\n",
        id.0
    );
    assert_eq!(client.receive(reply.as_bytes()), Ok(reply.len()));
    let Some(Output::Reply {
        reply: Reply::Return(v),
        ..
    }) = client.poll_output()
    else {
        panic!("no reply");
    };
    let field = |k: &str| v.get(k).unwrap();
    assert_eq!(field("min").as_i64(), Some(i64::MIN));
    assert_eq!(field("below").as_i64(), None);
    assert_eq!(field("max").as_u64(), Some(u64::MAX));
    assert_eq!(field("max").as_i64(), None);
    assert_eq!(field("over").as_u64(), None);
    assert_eq!(field("zero").as_u64(), Some(0));
    assert_eq!(field("lead").as_u64(), None);
    let list: Vec<&str> = field("list")
        .elements()
        .unwrap()
        .map(|e| e.as_str())
        .collect();
    assert_eq!(list, ["\"]\"", "{\"a\": \"}\"}", "[1, [2]]", "\"\\\"\""]);
    assert_eq!(field("q").as_json_str().unwrap().to_string_lossless(), "\"");
    assert_eq!(field("list").as_json_str(), None);
}

#[test]
fn guest_sync_carries_the_nonce_at_the_ends_of_u64() {
    for nonce in [0, 9, 10, u64::MAX] {
        let mut agent = GuestAgent::<Heap>::new(ConnectionLimits::default(), nonce);
        let sent = agent.pending_transmit().to_vec();
        let expected = format!("{{\"id\":{nonce}}}");
        assert!(
            sent.windows(expected.len())
                .any(|w| w == expected.as_bytes()),
            "{}",
            String::from_utf8_lossy(&sent)
        );
        let mut reply = vec![0xff];
        reply.extend_from_slice(format!("{{\"return\": {nonce}}}\n").as_bytes());
        assert_eq!(agent.receive(&reply), Ok(reply.len()));
        assert!(matches!(agent.poll_output(), Some(AgentOutput::Synced)));
    }
}

#[test]
fn ids_up_to_the_server_limit_are_echoed_and_longer_ones_refused() {
    let mut server = Server::<Heap>::new(ServerConfig::default());
    let caps = "{\"execute\": \"qmp_capabilities\"}";
    assert_eq!(server.receive(caps.as_bytes()), Ok(caps.len()));
    while server.poll_output().is_some() {}
    server
        .advance_transmit(server.pending_transmit().len())
        .unwrap();

    // A JSON string id of exactly MAX_REQUEST_ID bytes, quotes included.
    let longest = format!("\"{}\"", "é".repeat((MAX_REQUEST_ID - 2) / 2));
    assert_eq!(longest.len(), MAX_REQUEST_ID);
    let command = format!("{{\"execute\": \"stop\", \"id\": {longest}}}");
    assert_eq!(server.receive(command.as_bytes()), Ok(command.len()));
    let to = match server.poll_output() {
        Some(ServerOutput::Command(request)) => request.reply_to,
        other => panic!("{other:?}"),
    };
    assert_eq!(to.id(), Some(longest.as_str()));
    server.reply_return(&to, "{}").unwrap();
    let written = String::from_utf8(server.pending_transmit().to_vec()).unwrap();
    assert_eq!(
        written,
        format!("{{\"return\": {{}}, \"id\": {longest}}}\r\n")
    );
    server.advance_transmit(written.len()).unwrap();

    let longer = format!("\"{}x\"", "é".repeat((MAX_REQUEST_ID - 2) / 2));
    let command = format!("{{\"execute\": \"stop\", \"id\": {longer}}}");
    assert_eq!(server.receive(command.as_bytes()), Ok(command.len()));
    assert!(server.poll_output().is_none());
    let written = String::from_utf8(server.pending_transmit().to_vec()).unwrap();
    assert!(
        written.starts_with("{\"error\": {\"class\": \"GenericError\"")
            && !written.contains("\"id\""),
        "{written}"
    );
}
