//! Encode then decode gives back the value, for every message type; any
//! bytes at all decode to a value or an error, never a panic.

use proptest::prelude::*;
use qmp_libvirt::conn::{Config, Connection};
use qmp_libvirt::wire::{
    self, AuthType, Domain, EventRegisterArgs, Header, MessageType, MonitorCommandArgs,
    MonitorEvent, RemoteError, Status, Uuid, xdr,
};

fn domain() -> impl Strategy<Value = Domain> {
    (".{0,40}", any::<[u8; 16]>(), any::<i32>()).prop_map(|(name, uuid, id)| Domain {
        name,
        uuid: Uuid(uuid),
        id,
    })
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(".{0,60}")
}

fn remote_error() -> impl Strategy<Value = RemoteError> {
    (
        (any::<i32>(), any::<i32>(), opt_string(), any::<i32>()),
        proptest::option::of(domain()),
        (opt_string(), opt_string(), opt_string()),
        (any::<i32>(), any::<i32>()),
        proptest::option::of((".{0,20}", any::<[u8; 16]>())),
    )
        .prop_map(
            |((code, domain, message, level), dom, (str1, str2, str3), (int1, int2), net)| {
                RemoteError {
                    code,
                    domain,
                    message,
                    level,
                    dom,
                    str1,
                    str2,
                    str3,
                    int1,
                    int2,
                    net: net.map(|(n, u)| (n, Uuid(u))),
                }
            },
        )
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<i32>(),
        0u32..6,
        any::<u32>(),
        0u32..3,
    )
        .prop_map(
            |(program, version, procedure, kind, serial, status)| Header {
                program,
                version,
                procedure,
                kind: MessageType::from_u32(kind).unwrap(),
                serial,
                status: Status::from_u32(status).unwrap(),
            },
        )
}

fn roundtrip<T: PartialEq + core::fmt::Debug>(
    value: &T,
    encode: impl Fn(&T, &mut Vec<u8>),
    decode: impl Fn(&[u8]) -> xdr::XResult<'_, T>,
) {
    let mut out = Vec::new();
    encode(value, &mut out);
    assert_eq!(out.len() % 4, 0, "XDR keeps four-byte alignment");
    assert_eq!(&xdr::decode_all(&out, &decode).unwrap(), value);
    // Every proper prefix is truncated, never a wrong value or a panic.
    for cut in [0, out.len() / 2, out.len().saturating_sub(1)] {
        if cut < out.len() {
            assert!(xdr::decode_all(&out[..cut], &decode).is_err());
        }
    }
}

proptest! {
    #[test]
    fn domain_roundtrip(d in domain()) {
        roundtrip(&d, Domain::encode, Domain::decode);
    }

    #[test]
    fn remote_error_roundtrip(e in remote_error()) {
        roundtrip(&e, RemoteError::encode, RemoteError::decode);
    }

    #[test]
    fn monitor_event_roundtrip(
        callback_id in any::<i32>(), domain in domain(), event in "[A-Z_]{1,30}",
        seconds in any::<i64>(), micros in any::<u32>(), details in opt_string(),
    ) {
        let e = MonitorEvent { callback_id, domain, event, seconds, micros, details };
        roundtrip(&e, MonitorEvent::encode, MonitorEvent::decode);
    }

    #[test]
    fn monitor_command_roundtrip(dom in domain(), cmd in ".{0,200}", flags in any::<u32>()) {
        let a = MonitorCommandArgs { dom, cmd, flags };
        roundtrip(&a, MonitorCommandArgs::encode, MonitorCommandArgs::decode);
    }

    #[test]
    fn event_register_roundtrip(
        dom in proptest::option::of(domain()), event in opt_string(), flags in any::<u32>(),
    ) {
        let a = EventRegisterArgs { dom, event, flags };
        roundtrip(&a, EventRegisterArgs::encode, EventRegisterArgs::decode);
    }

    #[test]
    fn auth_list_roundtrip(types in proptest::collection::vec(any::<u32>(), 0..20)) {
        let types: Vec<_> = types.into_iter().map(AuthType::from_u32).collect();
        roundtrip(&types, |t, o| AuthType::encode_list(o, t), AuthType::decode_list);
    }

    #[test]
    fn primitives_roundtrip(
        a in any::<u32>(), b in any::<i64>(), c in proptest::collection::vec(any::<u8>(), 0..50),
        s in proptest::option::of(".{0,30}"),
    ) {
        let value = (a, b, c, s);
        roundtrip(
            &value,
            |(a, b, c, s), o| {
                xdr::put_u32(o, *a);
                xdr::put_i64(o, *b);
                xdr::put_opaque(o, c);
                xdr::put_optional(o, s.as_deref(), xdr::put_str);
            },
            |i| {
                let (i, a) = xdr::u32(i)?;
                let (i, b) = xdr::i64(i)?;
                let (i, c) = xdr::opaque(64)(i)?;
                let (i, s) = xdr::optional(xdr::string(4 * 30))(i)?;
                Ok((i, (a, b, c.to_vec(), s)))
            },
        );
    }

    #[test]
    fn packet_roundtrip(h in header(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        let len = wire::encode_packet(&mut out, &h, |o| o.extend_from_slice(&payload));
        prop_assert_eq!(len, out.len());
        prop_assert_eq!(wire::packet_len(&out, wire::MESSAGE_MAX), Ok(Some(len)));
        let (h2, p2) = wire::decode_packet(&out).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(p2, &payload[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = xdr::decode_all(&bytes, RemoteError::decode);
        let _ = xdr::decode_all(&bytes, MonitorEvent::decode);
        let _ = xdr::decode_all(&bytes, Domain::decode);
        let _ = xdr::decode_all(&bytes, AuthType::decode_list);
        let _ = wire::decode_packet(&bytes);
        let mut conn = Connection::new(Config::new("qemu:///system"));
        let _ = conn.receive(&bytes);
        while conn.poll_output().is_some() {}
    }
}

/// libvirtd's messages from a capture (events and keepalive PINGs), framed
/// anew.
fn captured_messages() -> Vec<u8> {
    let path = format!(
        "{}/tests/data/virsh-events-keepalive.server.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let stream = std::fs::read(path).unwrap();
    let mut rest = &stream[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = wire::packet_len(rest, wire::MESSAGE_MAX).unwrap().unwrap();
        let (h, p) = wire::decode_packet(&rest[..len]).unwrap();
        if h.kind == MessageType::Message {
            wire::encode_packet(&mut out, &h, |o| o.extend_from_slice(p));
        }
        rest = &rest[len..];
    }
    out
}

/// An open connection (auth none, opened, no keepalive asked).
fn opened() -> Connection {
    let mut config = Config::new("qemu:///system");
    config.keepalive = false;
    let mut conn = Connection::new(config);
    for serial in 0..2 {
        let mut bytes = Vec::new();
        let procedure = if serial == 0 {
            wire::remote_proc::AUTH_LIST
        } else {
            wire::remote_proc::CONNECT_OPEN
        };
        let h = Header {
            kind: MessageType::Reply,
            ..Header::call(wire::program::REMOTE, procedure, serial)
        };
        wire::encode_packet(&mut bytes, &h, |o| {
            if serial == 0 {
                AuthType::encode_list(o, &[AuthType::None]);
            }
        });
        conn.receive(&bytes).unwrap();
    }
    assert!(conn.is_open());
    while conn.poll_output().is_some() {}
    let n = conn.pending_transmit().len();
    conn.advance_transmit(n).unwrap();
    conn
}

fn run(chunks: &[&[u8]]) -> (Vec<qmp_libvirt::Output>, Vec<u8>) {
    let mut conn = opened();
    let mut outputs = Vec::new();
    for chunk in chunks {
        conn.receive(chunk).unwrap();
        outputs.extend(core::iter::from_fn(|| conn.poll_output()));
    }
    (outputs, conn.pending_transmit().to_vec())
}

proptest! {
    /// Split anywhere, the same events come out and the same PONGs go back.
    #[test]
    fn split_input_gives_the_same_outputs(cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let bytes = captured_messages();
        let whole = run(&[&bytes]);
        prop_assert_eq!(whole.0.len(), 2, "STOP and RESUME");
        prop_assert!(!whole.1.is_empty(), "PONGs");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            chunks.push(&bytes[start..c]);
            start = c;
        }
        prop_assert_eq!(run(&chunks), whole);
    }
}
