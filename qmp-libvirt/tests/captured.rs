//! Bytes captured from a real libvirtd (libvirt 9.0, QEMU 7.2): virsh's
//! exchanges, and a minimal client's. Each `NAME.client.bin` holds what the
//! client wrote, `NAME.server.bin` what libvirtd answered.

use qmp_libvirt::conn::{CallId, Config, Connection, Output, Reply};
use qmp_libvirt::error::{Error, ErrorKind};
use qmp_libvirt::wire::{
    self, Domain, Header, MessageType, MonitorCommandArgs, MonitorEvent, RemoteError, Status, Uuid,
    keepalive_proc, program, qemu_proc, remote_proc, xdr,
};

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Splits a captured stream into packets.
fn packets(stream: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let len = wire::packet_len(rest, wire::MESSAGE_MAX)
            .unwrap()
            .expect("length word");
        let (header, payload) = wire::decode_packet(&rest[..len]).unwrap();
        out.push((header, payload.to_vec()));
        rest = &rest[len..];
    }
    out
}

const CAPDOM_UUID: &str = "3e7d60e8-572d-467f-9707-18d011d2736e";

fn capdom() -> Domain {
    Domain {
        name: "capdom".into(),
        uuid: Uuid::parse(CAPDOM_UUID).unwrap(),
        id: 1,
    }
}

#[test]
fn virsh_query_status_decodes() {
    let calls = packets(&data("virsh-query-status.client.bin"));
    let replies = packets(&data("virsh-query-status.server.bin"));
    assert_eq!(calls.len(), replies.len());
    for ((call, _), (reply, _)) in calls.iter().zip(&replies) {
        assert_eq!(call.kind, MessageType::Call);
        assert_eq!(reply.kind, MessageType::Reply);
        assert_eq!(
            (call.program, call.procedure, call.serial),
            (reply.program, reply.procedure, reply.serial)
        );
        assert_eq!(reply.status, Status::Ok);
    }
    // virsh: AUTH_LIST first, then keepalive, then CONNECT_OPEN.
    assert_eq!(calls[0].0.procedure, remote_proc::AUTH_LIST);
    assert_eq!(calls[2].0.procedure, remote_proc::CONNECT_OPEN);
    let (name, flags) = xdr::decode_all(&calls[2].1, wire::remote::decode_connect_open).unwrap();
    assert_eq!((name, flags), (Some("qemu:///system"), 0));

    let (_, lookup) = &replies[6];
    assert_eq!(xdr::decode_all(lookup, Domain::decode).unwrap(), capdom());

    let (header, args) = &calls[7];
    assert_eq!(
        (header.program, header.procedure),
        (program::QEMU, qemu_proc::DOMAIN_MONITOR_COMMAND)
    );
    let args = xdr::decode_all(args, MonitorCommandArgs::decode).unwrap();
    assert_eq!(args.dom, capdom());
    assert_eq!(args.cmd, r#"{"execute":"query-status"}"#);
    assert_eq!(args.flags, 0);
    let result = xdr::decode_all(&replies[7].1, wire::remote::decode_string_ret).unwrap();
    assert!(
        result.starts_with(r#"{"return":{"status":"running""#),
        "{result}"
    );
    // libvirt puts its own id in the reply.
    assert!(result.contains(r#""id":"libvirt-"#), "{result}");
}

#[test]
fn virsh_no_such_domain_is_no_domain() {
    let replies = packets(&data("virsh-no-such-domain.server.bin"));
    let (header, payload) = &replies[6];
    assert_eq!(header.procedure, remote_proc::DOMAIN_LOOKUP_BY_NAME);
    assert_eq!(header.status, Status::Error);
    let error =
        qmp_libvirt::LibvirtError::from(xdr::decode_all(payload, RemoteError::decode).unwrap());
    assert_eq!(error.kind(), ErrorKind::NoDomain);
    assert_eq!(error.code(), 42);
    assert!(error.message().contains("nosuch"), "{error}");
}

#[test]
fn virsh_qmp_error_is_a_successful_reply() {
    let replies = packets(&data("virsh-qmp-error.server.bin"));
    let (header, payload) = &replies[7];
    assert_eq!(header.status, Status::Ok);
    let result = xdr::decode_all(payload, wire::remote::decode_string_ret).unwrap();
    assert!(result.contains("CommandNotFound"), "{result}");
}

#[test]
fn virsh_hmp_sets_the_flag() {
    let calls = packets(&data("virsh-hmp.client.bin"));
    let args = xdr::decode_all(&calls[7].1, MonitorCommandArgs::decode).unwrap();
    assert_eq!(args.cmd, "info status");
    assert_eq!(args.flags, wire::monitor_flags::HMP);
    let replies = packets(&data("virsh-hmp.server.bin"));
    let text = xdr::decode_all(&replies[7].1, wire::remote::decode_string_ret).unwrap();
    assert!(text.starts_with("VM status: running"), "{text:?}");
}

#[test]
fn virsh_events_and_keepalive_decode() {
    let calls = packets(&data("virsh-events-keepalive.client.bin"));
    let register = calls
        .iter()
        .find(|(h, _)| h.procedure == qemu_proc::CONNECT_DOMAIN_MONITOR_EVENT_REGISTER)
        .unwrap();
    let args = xdr::decode_all(&register.1, wire::EventRegisterArgs::decode).unwrap();
    assert_eq!(args.dom, Some(capdom()));
    assert_eq!(args.event, None);

    let server = packets(&data("virsh-events-keepalive.server.bin"));
    let events: Vec<_> = server
        .iter()
        .filter(|(h, _)| h.program == program::QEMU && h.kind == MessageType::Message)
        .collect();
    assert_eq!(events.len(), 2);
    // Events come with serial 1, not 0: dispatch must not look at serials.
    assert!(events.iter().all(|(h, _)| h.serial == 1));
    let stop = xdr::decode_all(&events[0].1, MonitorEvent::decode).unwrap();
    assert_eq!(stop.event, "STOP");
    assert_eq!(stop.domain, capdom());
    assert_eq!(stop.callback_id, 0);
    assert_eq!(stop.details, None);
    assert!(stop.seconds > 1_700_000_000 && stop.micros < 1_000_000);
    let resume = xdr::decode_all(&events[1].1, MonitorEvent::decode).unwrap();
    assert_eq!(resume.event, "RESUME");

    let pings = server
        .iter()
        .filter(|(h, p)| {
            h.program == program::KEEPALIVE
                && h.procedure == keepalive_proc::PING
                && h.kind == MessageType::Message
                && p.is_empty()
        })
        .count();
    assert!(
        pings >= 1,
        "libvirtd pinged a connection that asked for keepalive"
    );
}

/// Drains outputs.
fn drain(conn: &mut Connection) -> Vec<Output> {
    core::iter::from_fn(|| conn.poll_output()).collect()
}

fn transmit(conn: &mut Connection) -> Vec<u8> {
    let out = conn.pending_transmit().to_vec();
    conn.advance_transmit(out.len()).unwrap();
    out
}

fn reply_for(outputs: &[Output], id: CallId) -> Result<Reply, Error> {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Reply { id: i, result } if *i == id => Some(result.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no reply for {id:?} in {outputs:?}"))
}

/// Feeds a server stream to `conn`, `chunk` bytes at a time, collecting
/// outputs.
fn feed(conn: &mut Connection, bytes: &[u8], chunk: usize) -> Vec<Output> {
    let mut outputs = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        conn.receive(piece).unwrap();
        outputs.extend(drain(conn));
    }
    outputs
}

/// The connection sends exactly what the capture's client sent, and reads
/// libvirtd's answers, including the errors for a domain that is not
/// running and for lookups that find nothing.
#[test]
fn replay_not_running_and_lookups() {
    let client = packets(&data("not-running-and-lookups.client.bin"));
    let server = data("not-running-and-lookups.server.bin");
    let server_packets = packets(&server);
    let split = |n: usize| -> usize {
        server_packets[..n]
            .iter()
            .map(|(_, p)| p.len() + wire::LEN_SIZE + wire::HEADER_SIZE)
            .sum()
    };

    let mut config = Config::new("qemu:///system");
    config.keepalive = false;
    let mut conn = Connection::new(config);
    let mut sent = transmit(&mut conn);
    // AUTH_LIST and CONNECT_OPEN answered: open.
    let outputs = feed(&mut conn, &server[..split(1)], 7);
    assert!(outputs.is_empty());
    sent.extend(transmit(&mut conn));
    let outputs = feed(&mut conn, &server[split(1)..split(2)], 3);
    assert_eq!(outputs, [Output::Opened { keepalive: false }]);

    let lookup = conn.lookup_domain_by_name("capoff").unwrap();
    sent.extend(transmit(&mut conn));
    let outputs = feed(&mut conn, &server[split(2)..split(3)], 64);
    let Ok(Reply::Domain(domain)) = reply_for(&outputs, lookup) else {
        panic!("{outputs:?}")
    };
    assert_eq!(domain.name, "capoff");
    assert_eq!(
        domain.id, -1,
        "a defined domain that is not running has no id"
    );

    let monitor = conn
        .monitor_command(&domain, r#"{"execute":"query-status"}"#)
        .unwrap();
    let version = conn.get_version().unwrap();
    let by_uuid = conn.lookup_domain_by_uuid(Uuid([0x11; 16])).unwrap();
    let by_id = conn.lookup_domain_by_id(9999).unwrap();
    sent.extend(transmit(&mut conn));
    let outputs = feed(&mut conn, &server[split(3)..split(7)], 1);
    let err = reply_for(&outputs, monitor).unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::DomainNotRunning), "{err}");
    assert!(format!("{err}").contains("domain is not running"));
    let Ok(Reply::Version(v)) = reply_for(&outputs, version) else {
        panic!("{outputs:?}")
    };
    assert_eq!(v / 1_000_000, 7, "QEMU 7.x");
    for id in [by_uuid, by_id] {
        let err = reply_for(&outputs, id).unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::NoDomain), "{err}");
    }

    conn.close().unwrap();
    sent.extend(transmit(&mut conn));
    let outputs = feed(&mut conn, &server[split(7)..], 5);
    assert_eq!(outputs, [Output::Closed(None)]);
    assert_eq!(
        packets(&sent),
        client,
        "byte for byte what the capture sent"
    );
}

#[test]
fn replay_read_only() {
    let client = packets(&data("read-only.client.bin"));
    let server = data("read-only.server.bin");
    let mut config = Config::new("qemu:///system");
    config.keepalive = false;
    config.read_only = true;
    let mut conn = Connection::new(config);
    let mut sent = transmit(&mut conn);
    // Packet by packet, each call made when the answer it needs came, as
    // in the captured exchange.
    let mut rest: &[u8] = &server;
    let mut monitor = None;
    let mut refused = None;
    while !rest.is_empty() {
        let len = wire::packet_len(rest, wire::MESSAGE_MAX).unwrap().unwrap();
        for output in feed(&mut conn, &rest[..len], 9) {
            match output {
                Output::Opened { .. } => {
                    let _ = conn.lookup_domain_by_name("capdom").unwrap();
                }
                Output::Reply {
                    result: Ok(Reply::Domain(d)),
                    ..
                } => {
                    monitor = Some(
                        conn.monitor_command(&d, r#"{"execute":"query-status"}"#)
                            .unwrap(),
                    );
                }
                Output::Reply { id, result: Err(e) } if Some(id) == monitor => refused = Some(e),
                other => panic!("{other:?}"),
            }
        }
        rest = &rest[len..];
        sent.extend(transmit(&mut conn));
    }
    let err = refused.expect("the monitor command was refused");
    assert_eq!(err.kind(), Some(ErrorKind::ReadOnly), "{err}");
    assert_eq!(packets(&sent), client);
}

/// Events and PINGs from virsh's capture, fed to an open connection: events
/// come out, PINGs get PONGs.
#[test]
fn events_and_pings_on_an_open_connection() {
    let server = packets(&data("virsh-events-keepalive.server.bin"));
    let mut bytes = Vec::new();
    let mut pings = 0;
    for (header, payload) in server
        .iter()
        .filter(|(h, _)| h.kind == MessageType::Message)
    {
        pings += usize::from(header.procedure == keepalive_proc::PING);
        wire::encode_packet(&mut bytes, header, |o| o.extend_from_slice(payload));
    }
    for chunk in [1, 2, 5, 28, 1000] {
        let mut conn = opened();
        let outputs = feed(&mut conn, &bytes, chunk);
        let names: Vec<_> = outputs
            .iter()
            .map(|o| match o {
                Output::Event(e) => e.event.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["STOP", "RESUME"]);
        let pongs = packets(&transmit(&mut conn));
        assert_eq!(pongs.len(), pings);
        for (h, p) in pongs {
            assert_eq!(h, Header::message(program::KEEPALIVE, keepalive_proc::PONG));
            assert!(p.is_empty());
        }
    }
}

/// A connection past a scripted handshake (auth none, opened, keepalive on).
fn opened() -> Connection {
    let mut conn = Connection::new(Config::new("qemu:///system"));
    let server = packets(&data("virsh-query-status.server.bin"));
    let reply = |conn: &mut Connection, index: usize, serial: u32| {
        let (mut header, payload) = server[index].clone();
        header.serial = serial;
        let mut bytes = Vec::new();
        wire::encode_packet(&mut bytes, &header, |o| o.extend_from_slice(&payload));
        let _ = transmit(conn);
        conn.receive(&bytes).unwrap();
    };
    reply(&mut conn, 0, 0); // AUTH_LIST
    reply(&mut conn, 2, 1); // CONNECT_OPEN
    reply(&mut conn, 1, 2); // SUPPORTS_FEATURE(keepalive)
    assert_eq!(drain(&mut conn), [Output::Opened { keepalive: true }]);
    assert!(conn.keepalive());
    let _ = transmit(&mut conn);
    conn
}
