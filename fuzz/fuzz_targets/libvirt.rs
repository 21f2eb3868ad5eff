//! Fuzz target `libvirt`: hostile libvirtd bytes through qmp-libvirt's XDR
//! decoders and its connection state machine.
//!
//! Input layout: `[flags] [sizes; flags & 7] [daemon bytes...]`, as for
//! `parse`: each size byte `b` gives a chunk of `b + 1` bytes, used in turn
//! (none: 1-byte chunks). Flag bits: `0x08` ask for keepalive, `0x10` open
//! read-only, `0x20` abandon the monitor command, `0x40` a small message
//! limit (4096 bytes, so the size limit is hit).
//!
//! Every packet the bytes split into goes through every payload decoder. The
//! bytes go, whole and in those chunks, through a `Connection` with the same
//! calls made up front; what comes out must be the same both ways, and what
//! it transmits too (after a fatal error, the whole run's bytes are a prefix
//! of the chunked run's: the rest was queued, not flushed, when the error
//! dropped it), nothing may panic, a reply must answer a call made and
//! come once, and after end of stream the connection is closed with nothing
//! in flight.

#![no_main]

mod plan;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use plan::Plan;
use qmp_libvirt::Error;
use qmp_libvirt::conn::{CallId, Config, Connection, Output};
use qmp_libvirt::wire::{
    self, AuthType, Domain, EventRegisterArgs, MonitorCommandArgs, MonitorEvent, RemoteError, Uuid,
    xdr,
};

/// Every decoder on every packet: none may panic, whatever the bytes.
fn decoders(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some(len)) = wire::packet_len(rest, wire::MESSAGE_MAX) {
        if len > rest.len() {
            break;
        }
        if let Ok((_, payload)) = wire::decode_packet(&rest[..len]) {
            let _ = xdr::decode_all(payload, Domain::decode);
            let _ = xdr::decode_all(payload, RemoteError::decode);
            let _ = xdr::decode_all(payload, AuthType::decode_list);
            let _ = xdr::decode_all(payload, MonitorCommandArgs::decode);
            let _ = xdr::decode_all(payload, EventRegisterArgs::decode);
            let _ = xdr::decode_all(payload, wire::remote::decode_connect_open);
            let _ = xdr::decode_all(payload, wire::remote::decode_string_ret);
            let _ = xdr::decode_all(payload, wire::remote::decode_int_ret);
            if let Ok(event) = xdr::decode_all(payload, MonitorEvent::decode) {
                // What decodes re-encodes to something that decodes the same.
                let mut again = Vec::new();
                event.encode(&mut again);
                assert_eq!(
                    xdr::decode_all(&again, MonitorEvent::decode).ok(),
                    Some(event)
                );
            }
        }
        rest = &rest[len..];
    }
}

/// What a run handed out and transmitted.
#[derive(Debug, PartialEq)]
struct Run {
    outputs: Vec<Output>,
    tx: Vec<u8>,
}

fn drain(conn: &mut Connection, run: &mut Run) {
    while let Some(o) = conn.poll_output() {
        assert!(
            !matches!(run.outputs.last(), Some(Output::Closed(_))),
            "output after Closed: {o:?}"
        );
        run.outputs.push(o);
    }
    let pending = conn.pending_transmit();
    run.tx.extend_from_slice(pending);
    let n = pending.len();
    conn.advance_transmit(n)
        .expect("advance by what is pending");
}

fn run(chunks: &[&[u8]], flags: u8) -> Run {
    let mut config = Config::new("qemu:///system");
    config.keepalive = flags & 0x08 != 0;
    config.read_only = flags & 0x10 != 0;
    if flags & 0x40 != 0 {
        config.max_message = 4096;
    }
    config.max_calls = 8;
    let mut conn = Connection::new(config);
    let dom = Domain {
        name: "capdom".into(),
        uuid: Uuid::parse("3e7d60e8-572d-467f-9707-18d011d2736e").expect("uuid"),
        id: 1,
    };
    // Made up front (held until the handshake is done), so whole and
    // chunked input see the same calls with the same serials.
    let mut calls: Vec<CallId> = [
        conn.lookup_domain_by_name("capdom"),
        conn.monitor_command(&dom, r#"{"execute":"query-status"}"#),
        conn.register_monitor_events(Some(&dom), None),
        conn.hmp_command(&dom, "info status"),
        conn.lookup_domain_by_uuid(dom.uuid),
        conn.get_version(),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .collect();
    if flags & 0x20 != 0 {
        assert!(conn.abandon(calls[1]), "the monitor command was waiting");
        let _ = calls.remove(1);
    }
    let mut run = Run {
        outputs: Vec::new(),
        tx: Vec::new(),
    };
    drain(&mut conn, &mut run);
    for chunk in chunks {
        if conn.receive(chunk).is_err() {
            // Sticky: every later input returns it again.
            assert!(conn.receive(b"\0").is_err());
            assert!(conn.error().is_some());
        }
        drain(&mut conn, &mut run);
    }
    conn.receive_eof();
    drain(&mut conn, &mut run);
    assert!(
        matches!(run.outputs.last(), Some(Output::Closed(_))),
        "not closed after end of stream: {:?}",
        run.outputs.last()
    );
    assert_eq!(conn.in_flight(), 0, "calls left in flight after Closed");
    assert!(conn.poll_output().is_none());
    // Each call made here is answered exactly once (with an error at the
    // end of stream at the latest); no reply for a call never made.
    let mut seen = BTreeMap::new();
    for o in &run.outputs {
        if let Output::Reply { id, .. } = o {
            *seen.entry(*id).or_insert(0) += 1;
        }
    }
    for (id, n) in &seen {
        assert_eq!(*n, 1, "call {id:?} answered {n} times");
    }
    for id in &calls {
        assert!(seen.contains_key(id), "call {id:?} never answered");
    }
    run
}

fuzz_target!(|input: &[u8]| {
    let plan = Plan::new(input);
    decoders(plan.data);
    let whole = run(&[plan.data], plan.flags);
    let chunked = run(&plan.chunks(), plan.flags);
    if whole.outputs != chunked.outputs {
        panic!("whole and chunked input differ\nwhole:   {whole:?}\nchunked: {chunked:?}");
    }
    // A fatal error drops what was queued and not yet flushed: the whole run
    // flushed less of it, never something else.
    let failed = matches!(
        whole.outputs.last(),
        Some(Output::Closed(Some(Error::Protocol(_))))
    );
    let same_tx = if failed {
        chunked.tx.starts_with(&whole.tx)
    } else {
        chunked.tx == whole.tx
    };
    if !same_tx {
        panic!(
            "whole and chunked runs transmit differently\nwhole:   {whole:?}\nchunked: {chunked:?}"
        );
    }
});
