//! The connection state machine against a scripted daemon.

use qmp_libvirt::conn::{CallId, Config, Connection, Output, Reply};
use qmp_libvirt::error::{Error, ErrorKind, ProtocolError, UsageError};
use qmp_libvirt::wire::{
    self, AuthType, DecodeError, Domain, Header, MessageType, MonitorEvent, RemoteError, Status,
    Uuid, feature, keepalive_proc, program, qemu_proc, remote_proc, xdr,
};

/// The calls the connection wrote since last asked.
fn sent(conn: &mut Connection) -> Vec<(Header, Vec<u8>)> {
    let bytes = conn.pending_transmit().to_vec();
    conn.advance_transmit(bytes.len()).unwrap();
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let len = wire::packet_len(rest, wire::MESSAGE_MAX).unwrap().unwrap();
        let (h, p) = wire::decode_packet(&rest[..len]).unwrap();
        out.push((h, p.to_vec()));
        rest = &rest[len..];
    }
    out
}

fn outputs(conn: &mut Connection) -> Vec<Output> {
    core::iter::from_fn(|| conn.poll_output()).collect()
}

fn reply(call: &Header, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    let header = Header {
        kind: MessageType::Reply,
        ..*call
    };
    wire::encode_packet(&mut out, &header, body);
    out
}

fn error_reply(call: &Header, code: i32, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let header = Header {
        kind: MessageType::Reply,
        status: Status::Error,
        ..*call
    };
    let e = RemoteError {
        code,
        domain: 10,
        message: Some(message.into()),
        level: 2,
        ..RemoteError::default()
    };
    wire::encode_packet(&mut out, &header, |o| e.encode(o));
    out
}

fn dom() -> Domain {
    Domain {
        name: "vm1".into(),
        uuid: Uuid::parse("3e7d60e8-572d-467f-9707-18d011d2736e").unwrap(),
        id: 3,
    }
}

/// Runs the handshake (auth none, open, keepalive supported).
fn open(config: Config) -> Connection {
    let mut conn = Connection::new(config);
    let calls = sent(&mut conn);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0.procedure, remote_proc::AUTH_LIST);
    conn.receive(&reply(&calls[0].0, |o| {
        AuthType::encode_list(o, &[AuthType::None])
    }))
    .unwrap();
    let calls = sent(&mut conn);
    assert_eq!(calls[0].0.procedure, remote_proc::CONNECT_OPEN);
    let (name, flags) = xdr::decode_all(&calls[0].1, wire::remote::decode_connect_open).unwrap();
    assert_eq!(name, Some("qemu:///system"));
    assert_eq!(flags, 0);
    conn.receive(&reply(&calls[0].0, |_| {})).unwrap();
    let calls = sent(&mut conn);
    assert_eq!(calls[0].0.procedure, remote_proc::CONNECT_SUPPORTS_FEATURE);
    assert_eq!(
        xdr::decode_all(&calls[0].1, xdr::i32),
        Ok(feature::PROGRAM_KEEPALIVE)
    );
    conn.receive(&reply(&calls[0].0, |o| xdr::put_i32(o, 1)))
        .unwrap();
    assert_eq!(outputs(&mut conn), [Output::Opened { keepalive: true }]);
    assert!(conn.is_open());
    conn
}

fn result_of(outs: &[Output], id: CallId) -> Result<Reply, Error> {
    outs.iter()
        .find_map(|o| match o {
            Output::Reply { id: i, result } if *i == id => Some(result.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no reply for {id:?}: {outs:?}"))
}

#[test]
fn calls_before_open_are_held_then_sent() {
    let mut conn = Connection::new(Config::new("qemu:///system"));
    let id = conn.lookup_domain_by_name("vm1").unwrap();
    let calls = sent(&mut conn);
    assert_eq!(calls.len(), 1, "only AUTH_LIST goes out before the open");
    conn.receive(&reply(&calls[0].0, |o| AuthType::encode_list(o, &[])))
        .unwrap();
    let calls = sent(&mut conn);
    conn.receive(&reply(&calls[0].0, |_| {})).unwrap();
    let calls = sent(&mut conn);
    assert_eq!(calls.len(), 1);
    conn.receive(&reply(&calls[0].0, |o| xdr::put_i32(o, 0)))
        .unwrap();
    assert_eq!(outputs(&mut conn), [Output::Opened { keepalive: false }]);
    let calls = sent(&mut conn);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0.procedure, remote_proc::DOMAIN_LOOKUP_BY_NAME);
    assert_eq!(calls[0].0.serial, id.0);
    conn.receive(&reply(&calls[0].0, |o| dom().encode(o)))
        .unwrap();
    assert_eq!(result_of(&outputs(&mut conn), id), Ok(Reply::Domain(dom())));
}

#[test]
fn monitor_command_events_and_deregister() {
    let mut conn = open(Config::new("qemu:///system"));
    let reg = conn.register_monitor_events(Some(&dom()), None).unwrap();
    let cmd = conn
        .monitor_command(&dom(), r#"{"execute":"stop"}"#)
        .unwrap();
    let calls = sent(&mut conn);
    assert_eq!(calls[0].0.program, program::QEMU);
    assert_eq!(
        calls[0].0.procedure,
        qemu_proc::CONNECT_DOMAIN_MONITOR_EVENT_REGISTER
    );
    // Replies out of order, an event between them with serial 1 (libvirtd's
    // habit), which also collides with no call here.
    let mut bytes = reply(&calls[1].0, |o| xdr::put_str(o, r#"{"return":{}}"#));
    let event = MonitorEvent {
        callback_id: 7,
        domain: dom(),
        event: "STOP".into(),
        seconds: 1_796_581_023,
        micros: 977_229,
        details: None,
    };
    let mut h = Header::message(program::QEMU, qemu_proc::DOMAIN_MONITOR_EVENT);
    h.serial = 1;
    wire::encode_packet(&mut bytes, &h, |o| event.encode(o));
    bytes.extend(reply(&calls[0].0, |o| xdr::put_i32(o, 7)));
    conn.receive(&bytes).unwrap();
    let outs = outputs(&mut conn);
    assert_eq!(outs.len(), 3);
    assert_eq!(
        result_of(&outs, cmd),
        Ok(Reply::Monitor(r#"{"return":{}}"#.into()))
    );
    assert_eq!(outs[1], Output::Event(event));
    assert_eq!(
        result_of(&outs, reg),
        Ok(Reply::EventRegistered { callback_id: 7 })
    );

    let dereg = conn.deregister_monitor_events(7).unwrap();
    let calls = sent(&mut conn);
    assert_eq!(xdr::decode_all(&calls[0].1, xdr::i32), Ok(7));
    conn.receive(&reply(&calls[0].0, |_| {})).unwrap();
    assert_eq!(result_of(&outputs(&mut conn), dereg), Ok(Reply::Done));
}

#[test]
fn ping_is_answered_and_pong_ignored() {
    let mut conn = open(Config::new("qemu:///system"));
    let mut bytes = Vec::new();
    wire::encode_packet(
        &mut bytes,
        &Header::message(program::KEEPALIVE, keepalive_proc::PING),
        |_| {},
    );
    wire::encode_packet(
        &mut bytes,
        &Header::message(program::KEEPALIVE, keepalive_proc::PONG),
        |_| {},
    );
    conn.receive(&bytes).unwrap();
    assert_eq!(outputs(&mut conn), []);
    let out = sent(&mut conn);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].0,
        Header::message(program::KEEPALIVE, keepalive_proc::PONG)
    );
    conn.send_ping().unwrap();
    assert_eq!(sent(&mut conn)[0].0.procedure, keepalive_proc::PING);
}

#[test]
fn unknown_messages_and_unmatched_replies_are_reported() {
    let mut conn = open(Config::new("qemu:///system"));
    let mut bytes = Vec::new();
    // A REMOTE domain lifecycle event nobody here asked for.
    let h = Header::message(program::REMOTE, 107);
    wire::encode_packet(&mut bytes, &h, |o| o.extend_from_slice(&[0, 0, 0, 1]));
    let stray = Header::call(program::REMOTE, remote_proc::CONNECT_GET_VERSION, 999);
    bytes.extend(reply(&stray, |o| xdr::put_u64(o, 1)));
    conn.receive(&bytes).unwrap();
    assert_eq!(
        outputs(&mut conn),
        [
            Output::Message {
                header: h,
                payload: vec![0, 0, 0, 1]
            },
            Output::Unmatched { serial: 999 },
        ]
    );
}

#[test]
fn abandoned_call_reply_is_dropped() {
    let mut conn = open(Config::new("qemu:///system"));
    let id = conn.get_version().unwrap();
    let calls = sent(&mut conn);
    assert!(conn.abandon(id));
    assert!(!conn.abandon(id));
    conn.receive(&reply(&calls[0].0, |o| xdr::put_u64(o, 7_002_000)))
        .unwrap();
    assert_eq!(outputs(&mut conn), []);
    assert_eq!(conn.in_flight(), 0);
}

#[test]
fn eof_fails_waiting_calls_then_closes() {
    let mut conn = open(Config::new("qemu:///system"));
    let a = conn.monitor_command(&dom(), "{}").unwrap();
    let b = conn.lookup_domain_by_id(3).unwrap();
    conn.receive_eof();
    let outs = outputs(&mut conn);
    assert_eq!(result_of(&outs, a), Err(Error::Disconnected));
    assert_eq!(result_of(&outs, b), Err(Error::Disconnected));
    assert_eq!(
        outs.last(),
        Some(&Output::Closed(Some(Error::Disconnected)))
    );
    assert_eq!(conn.get_version(), Err(Error::Usage(UsageError::Closed)));
}

#[test]
fn close_then_eof() {
    let mut conn = open(Config::new("qemu:///system"));
    let pending = conn.get_version().unwrap();
    conn.close().unwrap();
    conn.close().unwrap();
    let calls = sent(&mut conn);
    assert_eq!(calls[1].0.procedure, remote_proc::CONNECT_CLOSE);
    assert_eq!(
        conn.lookup_domain_by_name("x"),
        Err(Error::Usage(UsageError::Closed))
    );
    conn.receive(&reply(&calls[1].0, |_| {})).unwrap();
    let outs = outputs(&mut conn);
    assert_eq!(
        result_of(&outs, pending),
        Err(Error::Usage(UsageError::Closed))
    );
    assert_eq!(outs.last(), Some(&Output::Closed(None)));
    conn.receive_eof();
    assert_eq!(outputs(&mut conn), []);
}

#[test]
fn sasl_is_refused_clearly() {
    let mut conn = Connection::new(Config::new("qemu:///system"));
    let id = conn.get_version().unwrap();
    let calls = sent(&mut conn);
    conn.receive(&reply(&calls[0].0, |o| {
        AuthType::encode_list(o, &[AuthType::Sasl])
    }))
    .unwrap();
    let outs = outputs(&mut conn);
    assert_eq!(
        result_of(&outs, id),
        Err(Error::AuthNotSupported(AuthType::Sasl))
    );
    let last = outs.last().unwrap();
    assert_eq!(
        *last,
        Output::Closed(Some(Error::AuthNotSupported(AuthType::Sasl)))
    );
    assert!(format!("{}", Error::AuthNotSupported(AuthType::Sasl)).contains("SASL authentication"));
    assert!(sent(&mut conn).is_empty(), "nothing more is sent");
}

#[test]
fn open_failure_closes_with_the_libvirt_error() {
    let mut conn = Connection::new(Config::new("qemu:///nonsense"));
    let calls = sent(&mut conn);
    conn.receive(&reply(&calls[0].0, |o| AuthType::encode_list(o, &[])))
        .unwrap();
    let calls = sent(&mut conn);
    conn.receive(&error_reply(&calls[0].0, 39, "authentication required"))
        .unwrap();
    let outs = outputs(&mut conn);
    let [Output::Closed(Some(err))] = &outs[..] else {
        panic!("{outs:?}")
    };
    assert_eq!(err.kind(), Some(ErrorKind::AuthRequired));
}

#[test]
fn keepalive_can_be_off_and_unsupported() {
    let mut config = Config::new("qemu:///system");
    config.keepalive = false;
    config.read_only = true;
    let mut conn = Connection::new(config);
    let calls = sent(&mut conn);
    conn.receive(&reply(&calls[0].0, |o| AuthType::encode_list(o, &[])))
        .unwrap();
    let calls = sent(&mut conn);
    let (_, flags) = xdr::decode_all(&calls[0].1, wire::remote::decode_connect_open).unwrap();
    assert_eq!(flags, wire::open_flags::READ_ONLY);
    conn.receive(&reply(&calls[0].0, |_| {})).unwrap();
    assert_eq!(outputs(&mut conn), [Output::Opened { keepalive: false }]);

    // A daemon that refuses the feature: open without keepalive.
    let mut conn = Connection::new(Config::new("qemu:///system"));
    for _ in 0..2 {
        let calls = sent(&mut conn);
        conn.receive(&reply(&calls[0].0, |o| {
            if calls[0].0.procedure == remote_proc::AUTH_LIST {
                AuthType::encode_list(o, &[]);
            }
        }))
        .unwrap();
    }
    let calls = sent(&mut conn);
    conn.receive(&error_reply(&calls[0].0, 3, "unsupported"))
        .unwrap();
    assert_eq!(outputs(&mut conn), [Output::Opened { keepalive: false }]);
}

#[test]
fn oversized_message_is_a_sticky_protocol_error_naming_the_limit() {
    let mut config = Config::new("qemu:///system");
    config.max_message = 1024;
    let mut conn = open(config);
    let id = conn.get_version().unwrap();
    let _ = sent(&mut conn);
    // The length word alone is enough to refuse it: nothing is buffered.
    let err = conn.receive(&2000u32.to_be_bytes()).unwrap_err();
    let expected = Error::Protocol(ProtocolError::Decode {
        what: "packet length",
        error: DecodeError::MessageTooLarge {
            size: 2000,
            limit: 1028,
        },
    });
    assert_eq!(err, expected);
    assert!(format!("{err}").contains("limit of 1028 bytes"), "{err}");
    let outs = outputs(&mut conn);
    assert_eq!(result_of(&outs, id), Err(expected.clone()));
    assert_eq!(outs.last(), Some(&Output::Closed(Some(expected.clone()))));
    assert_eq!(conn.receive(&[0]), Err(expected.clone()));
    assert_eq!(conn.get_version(), Err(expected.clone()));
    assert_eq!(conn.error(), Some(&expected));
}

#[test]
fn sending_over_the_limit_is_a_usage_error() {
    let mut config = Config::new("qemu:///system");
    config.max_message = 256;
    let mut conn = open(config);
    let big = "x".repeat(300);
    let err = conn.monitor_command(&dom(), &big).unwrap_err();
    assert!(matches!(
        err,
        Error::Usage(UsageError::MessageTooLarge { limit: 256, .. })
    ));
    assert!(sent(&mut conn).is_empty());
    assert_eq!(conn.in_flight(), 0);
    // The connection still works.
    let _ = conn.get_version().unwrap();
    assert_eq!(sent(&mut conn).len(), 1);
}

#[test]
fn reply_to_another_procedure_is_a_protocol_error() {
    let mut conn = open(Config::new("qemu:///system"));
    let version = conn.get_version().unwrap();
    let calls = sent(&mut conn);
    let wrong = Header {
        procedure: remote_proc::DOMAIN_LOOKUP_BY_ID,
        ..calls[0].0
    };
    let err = conn
        .receive(&reply(&wrong, |o| dom().encode(o)))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Protocol(ProtocolError::ReplyMismatch { .. })
    ));
    // The call the bad reply named is answered too (found by fuzzing: it
    // was dropped, so its caller waited for ever).
    let outs = outputs(&mut conn);
    assert!(matches!(
        result_of(&outs, version),
        Err(Error::Protocol(ProtocolError::ReplyMismatch { .. }))
    ));
    assert!(matches!(outs.last(), Some(Output::Closed(Some(_)))));
}

#[test]
fn too_many_calls() {
    let mut config = Config::new("qemu:///system");
    config.max_calls = 2;
    let mut conn = open(config);
    let _ = conn.get_version().unwrap();
    let _ = conn.get_version().unwrap();
    assert_eq!(
        conn.get_version(),
        Err(Error::Usage(UsageError::TooManyCalls { limit: 2 }))
    );
}

#[test]
fn connection_stays_small() {
    // Buffers live on the heap: the state machine itself is a few words.
    assert!(
        core::mem::size_of::<Connection>() <= 256,
        "{}",
        core::mem::size_of::<Connection>()
    );
}

#[test]
fn errors_stay_small() {
    assert!(
        core::mem::size_of::<Error>() <= 40,
        "{}",
        core::mem::size_of::<Error>()
    );
}

#[test]
fn advancing_past_pending_is_a_usage_error() {
    let mut conn = Connection::new(Config::new("qemu:///system"));
    let pending = conn.pending_transmit().len();
    assert_eq!(
        conn.advance_transmit(pending + 1),
        Err(UsageError::AdvancedPastPending {
            written: pending + 1,
            pending
        })
    );
    assert_eq!(conn.pending_transmit().len(), pending, "nothing changed");
}

#[test]
fn abandoned_serials_are_bounded() {
    let mut config = Config::new("qemu:///system");
    config.max_calls = 2;
    let mut conn = open(config);
    let first = conn.get_version().unwrap();
    let calls = sent(&mut conn);
    assert!(conn.abandon(first));
    for _ in 0..2 {
        let id = conn.get_version().unwrap();
        assert!(conn.abandon(id));
    }
    let _ = sent(&mut conn);
    // The oldest abandoned serial was forgotten: its reply is a stray now.
    conn.receive(&reply(&calls[0].0, |o| xdr::put_u64(o, 1)))
        .unwrap();
    assert_eq!(outputs(&mut conn), [Output::Unmatched { serial: first.0 }]);
}
