//! Every limit and every kind of hostile input: a clear error, bounded
//! memory, no panic, no hang, no misattributed reply.

mod common;
use common::{Seen, feed_client, finish_client};
use qmp_proto::framer::{Frame, FrameError, Framer};
use qmp_proto::{
    Client, ClientConfig, ConnectionLimits, Error, Fixed, Heap, Limits, ProtocolError, Server,
    ServerConfig, ServerOutput, Storage, UsageError,
};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n{\"return\": {}, \"id\": 0}\r\n";

fn limits(max_message_size: usize) -> ConnectionLimits {
    ConnectionLimits {
        receive: Limits {
            max_message_size,
            ..Limits::default()
        },
        ..ConnectionLimits::default()
    }
}

/// A negotiated client with `commands` query-status commands in flight (ids 1..).
fn ready<S: Storage>(config: ClientConfig, commands: usize) -> Client<S> {
    let mut client = Client::new(config);
    let out = feed_client(&mut client, GREETING, usize::MAX, |c| {
        for _ in 0..commands {
            let _id = c.send_command_raw("query-status", None).unwrap();
        }
    });
    assert_eq!(out[1], Seen::Ready { oob: false });
    client
}

fn heap(commands: usize) -> Client<Heap> {
    ready(ClientConfig::default(), commands)
}

fn nested(depth: usize) -> Vec<u8> {
    // {"return": [[...]], "id": 1}: the message object is level 1.
    let mut v = b"{\"return\": ".to_vec();
    v.extend(core::iter::repeat_n(b'[', depth - 1));
    v.extend(core::iter::repeat_n(b']', depth - 1));
    v.extend_from_slice(b", \"id\": 1}\r\n");
    v
}

#[test]
fn depth_1024_is_accepted_and_1025_rejected() {
    let mut client = heap(1);
    let out = feed_client(&mut client, &nested(1024), 7, |_| {});
    assert!(
        matches!(&out[..], [Seen::Return { id: 1, value }] if value.len() == 2 * 1023),
        "{out:?}"
    );

    let mut client = heap(1);
    let mut out = feed_client(&mut client, &nested(1025), 7, |_| {});
    out.extend(finish_client(&mut client));
    let too_deep = ProtocolError::Frame(FrameError::TooDeep { limit: 1024 });
    assert_eq!(
        out,
        [
            Seen::Lost { id: 1 },
            Seen::Closed(Some(too_deep.to_string()))
        ]
    );
    assert_eq!(
        client.receive(b"{}"),
        Err(Error::Protocol(too_deep)),
        "sticky"
    );
    assert_eq!(
        client.send_command_raw("stop", None),
        Err(Error::Protocol(too_deep)),
        "sticky"
    );
}

#[test]
fn configured_depth_limit_is_enforced() {
    let mut framer: Framer<<Heap as Storage>::Rx> = Framer::new(Limits {
        max_depth: 3,
        ..Limits::default()
    });
    let _ = framer.push(b"{\"a\": [[1]]}{\"a\": [[[1]]]}\n{\"b\": 2}");
    assert!(matches!(framer.next(), Some(Frame::Message(_))));
    assert!(matches!(
        framer.next(),
        Some(Frame::Error(FrameError::TooDeep { limit: 3 }))
    ));
    // Recovery at the next control byte (the LF), as QEMU does.
    assert!(matches!(framer.next(), Some(Frame::Message(m)) if m.as_str() == "{\"b\": 2}"));
}

/// A reply to id 1 of exactly `size` bytes, the id last as QEMU writes it.
fn reply_of_size(size: usize) -> Vec<u8> {
    let frame = "{\"return\": \"\", \"id\": 1}".len();
    let mut v = b"{\"return\": \"".to_vec();
    v.extend(core::iter::repeat_n(b'x', size - frame));
    v.extend_from_slice(b"\", \"id\": 1}\r\n");
    assert_eq!(v.len() - 2, size);
    v
}

#[test]
fn message_one_byte_over_the_cap_fails_its_command_not_the_connection() {
    for chunk in [usize::MAX, 1, 1000] {
        let mut client: Client<Heap> = ready(
            ClientConfig {
                limits: limits(4096),
                ..ClientConfig::default()
            },
            2,
        );
        let mut input = reply_of_size(4096);
        input.extend(reply_of_size(4097));
        // The second command's reply, after the oversized one: still matched.
        input.extend(b"{\"return\": {}, \"id\": 2}\r\n");
        let out = feed_client(&mut client, &input, chunk, |_| {});
        assert!(matches!(out[0], Seen::Return { id: 1, .. }), "{out:?}");
        // Both replies claim id 1: the second finds no command waiting.
        assert_eq!(out[1], Seen::Dropped { size: 4097 });
        assert_eq!(
            out[2],
            Seen::Return {
                id: 2,
                value: "{}".into()
            }
        );
    }
}

#[test]
fn oversized_reply_reports_its_id_with_fixed_buffers_too() {
    // 512-byte receive buffer: a 600-byte reply cannot be stored.
    let mut client: Client<Fixed<512, 256, 4>> = ready(ClientConfig::default(), 1);
    let out = feed_client(&mut client, &reply_of_size(600), 64, |_| {});
    assert_eq!(out, [Seen::Oversized { id: 1, size: 600 }]);
    // The id may also come first, as in QEMU's error replies.
    let mut client: Client<Fixed<512, 256, 4>> = ready(ClientConfig::default(), 1);
    let mut input = b"{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"".to_vec();
    input.extend(core::iter::repeat_n(b'y', 1000));
    input.extend(b"\"}}\r\n");
    let out = feed_client(&mut client, &input, 100, |_| {});
    assert!(
        matches!(out[..], [Seen::Oversized { id: 1, size }] if size == input.len() - 2),
        "{out:?}"
    );
}

#[test]
fn an_id_too_long_to_keep_while_skipping_is_never_guessed() {
    // The id's digits straddle a dropped region: it must not be read as a
    // shorter number that happens to be in flight.
    let mut client: Client<Fixed<256, 256, 4>> = ready(ClientConfig::default(), 1);
    let mut input = b"{\"return\": \"".to_vec();
    input.extend(core::iter::repeat_n(b'z', 400));
    input.extend(b"\", \"id\": 1");
    input.extend(core::iter::repeat_n(b'0', 60));
    input.extend(b"1}\r\n");
    let out = feed_client(&mut client, &input, 16, |_| {});
    assert!(matches!(out[..], [Seen::Dropped { .. }]), "{out:?}");
    assert_eq!(client.in_flight(), 1);
}

#[test]
fn oversized_event_is_dropped_and_reported() {
    let mut client: Client<Heap> = ready(
        ClientConfig {
            limits: limits(150),
            ..ClientConfig::default()
        },
        0,
    );
    let mut input = b"{\"event\": \"BIG\", \"data\": {\"x\": \"".to_vec();
    input.extend(core::iter::repeat_n(b'e', 300));
    input.extend(b"\"}}\r\n{\"event\": \"SMALL\"}\r\n");
    let out = feed_client(&mut client, &input, 10, |_| {});
    let first = input.windows(2).position(|w| w == b"\r\n").unwrap();
    assert_eq!(out[0], Seen::Dropped { size: first });
    assert!(matches!(&out[1], Seen::Event { name, .. } if name == "SMALL"));
}

#[test]
fn a_megabyte_of_whitespace_takes_no_memory() {
    let mut framer: Framer<<Heap as Storage>::Rx> = Framer::new(Limits::default());
    let blank = vec![b' '; 1 << 20];
    assert_eq!(framer.push(&blank), blank.len());
    assert!(framer.next().is_none());
    assert_eq!(framer.buffered(), 0);
    // And through a client with a 1 KiB fixed buffer, fed in 4 KiB reads.
    let mut client: Client<Fixed<1024, 256, 4>> = ready(ClientConfig::default(), 1);
    let mut input = blank.repeat(1);
    input.extend(b"\r\n{\"return\": {}, \"id\": 1}");
    let out = feed_client(&mut client, &input, 4096, |_| {});
    assert_eq!(
        out,
        [Seen::Return {
            id: 1,
            value: "{}".into()
        }]
    );
}

#[test]
fn garbage_from_qemu_is_fatal_and_sticky() {
    let mut client = heap(2);
    let mut out = feed_client(
        &mut client,
        b"{\"return\": {}, \"id\": 1}\r\nHTTP/1.1 200 OK\r\n",
        usize::MAX,
        |_| {},
    );
    out.extend(finish_client(&mut client));
    let err = ProtocolError::Frame(FrameError::NotAnObject);
    assert_eq!(
        out,
        [
            Seen::Return {
                id: 1,
                value: "{}".into()
            },
            Seen::Lost { id: 2 },
            Seen::Closed(Some(err.to_string()))
        ]
    );
    assert_eq!(client.error(), Some(err));
    assert_eq!(
        client.send_command_raw("query-status", None),
        Err(Error::Protocol(err))
    );
}

#[test]
fn server_recovers_from_garbage_like_qemu() {
    let mut server: Server<Heap> = Server::new(ServerConfig::default());
    let greeting = server.pending_transmit().len();
    server.advance_transmit(greeting).unwrap();
    let input = b"{\"execute\": }\r\n\x01junk\n{\"execute\":\"qmp_capabilities\",\"id\":0}\r\n{\"execute\":\"stop\",\"id\":1}";
    for chunk in input.chunks(5) {
        let n = server.receive(chunk).unwrap();
        assert_eq!(n, chunk.len());
        while server.poll_output().is_some() {}
    }
    let answer = String::from_utf8(server.pending_transmit().to_vec()).unwrap();
    let lines: Vec<&str> = answer.lines().collect();
    assert!(
        lines[0]
            .starts_with("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error"),
        "{answer}"
    );
    assert!(lines[1].contains("JSON parse error"), "{answer}");
    assert_eq!(lines[2], "{\"return\": {}, \"id\": 0}");
    assert!(server.is_negotiated());
}

#[test]
fn server_rejects_malformed_commands_with_qemu_errors() {
    let mut server: Server<Heap> = Server::new(ServerConfig::default());
    let n = server.pending_transmit().len();
    server.advance_transmit(n).unwrap();
    let _ = server.receive(b"{\"execute\":\"query-status\",\"id\":1}\r\n");
    assert!(server.poll_output().is_none());
    let _ = server.receive(
        b"{\"execute\":\"qmp_capabilities\",\"id\":2}{\"execute\":\"x\",\"id\":3,\"foo\":1}",
    );
    assert!(matches!(
        server.poll_output(),
        Some(ServerOutput::Negotiated { oob: false })
    ));
    let _ = server
        .receive(b"{\"execute\":\"x\",\"arguments\":[1],\"id\":4}{\"exec-oob\":\"y\",\"id\":5}");
    let _ = server.receive(b"{\"execute\":\"ok\",\"id\":6}");
    match server.poll_output() {
        Some(ServerOutput::Command(req)) => assert_eq!(req.reply_to.id(), Some("6")),
        other => panic!("{other:?}"),
    }
    let answer = String::from_utf8(server.pending_transmit().to_vec()).unwrap();
    assert!(
        answer.contains("\"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation"),
        "{answer}"
    );
    assert!(answer.contains("unexpected\"}, \"id\": 3}"), "{answer}");
    assert!(
        answer.contains("must be an object\"}, \"id\": 4}"),
        "{answer}"
    );
    assert!(
        answer.contains("'exec-oob' is unexpected\"}, \"id\": 5}"),
        "{answer}"
    );
}

#[test]
fn invalid_utf8_inside_a_string_is_fatal() {
    for bad in [
        &b"\xff"[..],
        b"\xc3\x28",
        b"\xed\xa0\x80",
        b"\xf0\x28\x8c\x28",
        b"\xe2\x82",
    ] {
        let mut input = b"{\"return\": \"a".to_vec();
        input.extend_from_slice(bad);
        input.extend(b"\", \"id\": 1}\r\n");
        for chunk in [1, usize::MAX] {
            let mut client = heap(1);
            let mut out = feed_client(&mut client, &input, chunk, |_| {});
            out.extend(finish_client(&mut client));
            let err = ProtocolError::Frame(FrameError::InvalidUtf8).to_string();
            assert_eq!(
                out,
                [Seen::Lost { id: 1 }, Seen::Closed(Some(err))],
                "{bad:?}"
            );
        }
    }
    // Valid multi-byte UTF-8 is fine, split anywhere.
    let mut client = heap(1);
    let out = feed_client(
        &mut client,
        "{\"return\": \"é€😀\", \"id\": 1}".as_bytes(),
        1,
        |_| {},
    );
    assert_eq!(
        out,
        [Seen::Return {
            id: 1,
            value: "\"é€😀\"".into()
        }]
    );
}

#[test]
fn control_bytes_and_bad_escapes_in_strings_are_fatal() {
    for (input, err) in [
        (
            &b"{\"return\": \"a\x01\", \"id\": 1}"[..],
            FrameError::ControlInString,
        ),
        (b"{\"return\": \"\\q\", \"id\": 1}", FrameError::BadEscape),
        (
            b"{\"return\": \"\\u12G4\", \"id\": 1}",
            FrameError::BadEscape,
        ),
        (
            b"{\"return\": [1}, \"id\": 1}",
            FrameError::MismatchedBracket,
        ),
        (
            b"{\"return\": 1, \"return\": 2, \"id\": 1}",
            FrameError::DuplicateKey {
                key: qmp_proto::framer::Key::Return,
            },
        ),
    ] {
        let mut client = heap(1);
        let mut out = feed_client(&mut client, input, 3, |_| {});
        out.extend(finish_client(&mut client));
        assert_eq!(
            out,
            [
                Seen::Lost { id: 1 },
                Seen::Closed(Some(ProtocolError::Frame(err).to_string()))
            ]
        );
    }
}

#[test]
fn eof_mid_message_fails_waiting_commands() {
    let mut client = heap(2);
    let mut out = feed_client(
        &mut client,
        b"{\"return\": {}, \"id\": 1}\r\n{\"return\": {\"stat",
        4,
        |_| {},
    );
    out.extend(finish_client(&mut client));
    assert_eq!(
        out,
        [
            Seen::Return {
                id: 1,
                value: "{}".into()
            },
            Seen::Lost { id: 2 },
            Seen::Closed(Some(ProtocolError::TruncatedMessage.to_string()))
        ]
    );
}

#[test]
fn eof_with_commands_in_flight_fails_them_and_later_calls() {
    let mut client = heap(3);
    client.abandon(qmp_proto::Id(2)).unwrap();
    let out = finish_client(&mut client);
    // The abandoned command is not reported again.
    assert_eq!(
        out,
        [
            Seen::Lost { id: 1 },
            Seen::Lost { id: 3 },
            Seen::Closed(None)
        ]
    );
    assert!(client.is_closed());
    assert_eq!(
        client.send_command_raw("query-status", None),
        Err(Error::Closed)
    );
    assert_eq!(client.receive(b"{}"), Err(Error::Closed));
    assert!(client.poll_output().is_none());
    assert!(client.pending_transmit().is_empty());
}

#[test]
fn eof_before_the_greeting_is_a_clean_close() {
    let mut client: Client<Heap> = Client::new(ClientConfig::default());
    let mut out = feed_client(&mut client, b"{\"QMP\": {\"vers", 2, |_| {});
    out.extend(finish_client(&mut client));
    assert_eq!(
        out,
        [Seen::Closed(Some(
            ProtocolError::TruncatedMessage.to_string()
        ))]
    );
}

#[test]
fn hostile_ids_are_never_matched() {
    let mut client = heap(1);
    let input = b"{\"return\": 1, \"id\": \"1\"}{\"return\": 2, \"id\": -1}{\"return\": 3, \"id\": 1.0}\
{\"return\": 4, \"id\": 18446744073709551617}{\"return\": 5, \"id\": 01}{\"return\": 6, \"\\u0069d\": 1}\
{\"return\": 7, \"id\": [1]}{\"return\": 8}{\"return\": 9, \"id\": 1}";
    let out = feed_client(&mut client, input, 5, |_| {});
    assert_eq!(out.len(), 9, "{out:?}");
    assert!(
        out[..8].iter().all(|s| matches!(s, Seen::Unmatched(_))),
        "{out:?}"
    );
    assert_eq!(
        out[8],
        Seen::Return {
            id: 1,
            value: "9".into()
        }
    );
}

#[test]
fn malformed_messages_are_fatal_with_a_clear_error() {
    for (input, err) in [
        (
            &b"{\"error\": \"boom\", \"id\": 1}"[..],
            ProtocolError::MalformedError,
        ),
        (b"{\"event\": 5}", ProtocolError::MalformedEvent),
        (b"{\"hello\": 1}", ProtocolError::UnknownMessage),
        (
            b"{\"return\": 1, \"event\": \"X\"}",
            ProtocolError::UnknownMessage,
        ),
        (GREETING, ProtocolError::UnexpectedGreeting),
        (b"\xff", ProtocolError::UnexpectedSentinel),
    ] {
        let mut client = heap(1);
        let mut out = feed_client(&mut client, input, usize::MAX, |_| {});
        out.extend(finish_client(&mut client));
        assert_eq!(
            out,
            [Seen::Lost { id: 1 }, Seen::Closed(Some(err.to_string()))],
            "{err}"
        );
    }
    let mut client: Client<Heap> = Client::new(ClientConfig::default());
    let mut out = feed_client(
        &mut client,
        b"{\"QMP\": {\"version\": 7}}",
        usize::MAX,
        |_| {},
    );
    out.extend(finish_client(&mut client));
    assert_eq!(
        out,
        [Seen::Closed(Some(
            ProtocolError::MalformedGreeting.to_string()
        ))]
    );
    let mut client: Client<Heap> = Client::new(ClientConfig::default());
    let input = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\
{\"id\": 0, \"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}";
    let mut out = feed_client(&mut client, input, usize::MAX, |_| {});
    out.extend(finish_client(&mut client));
    assert_eq!(
        out[1],
        Seen::Closed(Some(ProtocolError::NegotiationFailed.to_string()))
    );
}

#[test]
fn events_before_the_greeting_are_tolerated() {
    let mut client: Client<Heap> = Client::new(ClientConfig::default());
    let mut input =
        b"{\"event\": \"EARLY\", \"timestamp\": {\"seconds\": -1, \"microseconds\": -1}}\r\n"
            .to_vec();
    input.extend(GREETING);
    let out = feed_client(&mut client, &input, 1, |_| {});
    assert_eq!(
        out[0],
        Seen::Event {
            name: "EARLY".into(),
            data: None
        }
    );
    assert!(matches!(out[1], Seen::Greeting { .. }));
    assert_eq!(out[2], Seen::Ready { oob: false });
}

#[test]
fn fixed_tables_and_buffers_refuse_cleanly() {
    let mut client: Client<Fixed<512, 128, 2>> = ready(ClientConfig::default(), 2);
    let before = client.pending_transmit().to_vec();
    assert_eq!(
        client.send_command_raw("stop", None),
        Err(UsageError::TooManyPending.into())
    );
    assert_eq!(client.pending_transmit(), &before[..], "nothing queued");
    let mut client: Client<Fixed<512, 128, 8>> = ready(ClientConfig::default(), 0);
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(200));
    assert_eq!(
        client.send_command_raw("stop", Some(&big)),
        Err(UsageError::TransmitFull.into())
    );
    assert_eq!(client.in_flight(), 0);
    let mut client: Client<Heap> = ready(
        ClientConfig {
            limits: ConnectionLimits {
                max_pending: 1,
                ..ConnectionLimits::default()
            },
            ..ClientConfig::default()
        },
        1,
    );
    assert_eq!(
        client.send_command_raw("stop", None),
        Err(UsageError::TooManyPending.into())
    );
}

#[test]
fn misuse_is_an_error_that_changes_nothing() {
    let mut client = heap(0);
    let pending = client.pending_transmit().len();
    assert_eq!(
        client.advance_transmit(pending + 1),
        Err(UsageError::AdvancePastEnd)
    );
    assert_eq!(client.pending_transmit().len(), pending);
    for args in ["[1]", "{} {}", "{\"a\": }", "{\"a\": 1", "", "null"] {
        assert!(
            matches!(
                client.send_command_raw("stop", Some(args)),
                Err(Error::Usage(UsageError::InvalidArguments(_)))
            ),
            "{args}"
        );
    }
    for name in ["", "a\"b", "a b", "é"] {
        assert_eq!(
            client.send_command_raw(name, None),
            Err(UsageError::InvalidCommandName.into())
        );
    }
    assert_eq!(
        client.abandon(qmp_proto::Id(77)),
        Err(UsageError::UnknownId)
    );
    assert_eq!(client.pending_transmit().len(), pending);
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn client_stays_small() {
    // Everything large lives behind the storage's buffers; the client itself
    // is a few cache lines (the bracket stack for 1024 levels is 128 bytes).
    let size = core::mem::size_of::<Client<Heap>>();
    assert!(size <= 640, "Client<Heap> is {size} bytes");
    let size = core::mem::size_of::<qmp_proto::GuestAgent<Heap>>();
    assert!(size <= 640, "GuestAgent<Heap> is {size} bytes");
}
