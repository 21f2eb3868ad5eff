//! Against a real libvirtd running a real QEMU domain (TCG).
//!
//! The daemon is a private one started with `scripts/libvirt.sh start` in a
//! folder under the target directory, and stopped at the end; or, with
//! `QMP_LIBVIRT_URI` (and optionally `QMP_LIBVIRT_TCP_URI`) set, one already
//! running. Without libvirtd (or without root, which the private daemon
//! needs) the test prints a `skipped:` line and passes; with
//! `QMP_REQUIRE_PEERS` set it fails instead.

mod common;

use core::time::Duration;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use common::{Peer, kill, run_script};

use qmp_libvirt::blocking::{Client, ClientError};
use qmp_libvirt::error::{Error, ErrorKind};

fn exercise(uri: &str, domain_name: &str) {
    let started = Instant::now();
    let mut client = Client::connect(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
    assert!(client.keepalive(), "libvirtd agreed to keepalive");
    let version = client.get_version().unwrap();
    assert!(version >= 1_000_000, "QEMU version {version}");

    let dom = client.lookup_domain_by_name(domain_name).unwrap();
    assert_eq!(dom.name, domain_name);
    assert!(dom.id > 0, "running");
    assert_eq!(client.lookup_domain_by_uuid(dom.uuid).unwrap(), dom);
    assert_eq!(client.lookup_domain_by_id(dom.id).unwrap(), dom);

    let status = client
        .monitor_command(&dom, r#"{"execute":"query-status"}"#)
        .unwrap();
    assert!(status.contains(r#""status":"running""#), "{status}");

    // A QMP error is an answer, not a failure.
    let error = client
        .monitor_command(&dom, r#"{"execute":"no-such-command"}"#)
        .unwrap();
    assert!(error.contains("CommandNotFound"), "{error}");

    let text = client.hmp_command(&dom, "info status").unwrap();
    assert!(text.contains("running"), "{text:?}");

    let callback = client.register_monitor_events(Some(&dom), None).unwrap();
    client
        .monitor_command(&dom, r#"{"execute":"stop"}"#)
        .unwrap();
    let stop = next_named(&mut client, "STOP");
    assert_eq!(stop.domain, dom);
    assert_eq!(stop.callback_id, callback);
    assert!(stop.seconds > 1_600_000_000);
    let status = client
        .monitor_command(&dom, r#"{"execute":"query-status"}"#)
        .unwrap();
    assert!(status.contains(r#""status":"paused""#), "{status}");
    client
        .monitor_command(&dom, r#"{"execute":"cont"}"#)
        .unwrap();
    next_named(&mut client, "RESUME");
    client.deregister_monitor_events(callback).unwrap();

    match client.lookup_domain_by_name("qmp-it-no-such-domain") {
        Err(ClientError::Rpc(e)) => assert_eq!(e.kind(), Some(ErrorKind::NoDomain), "{e}"),
        other => panic!("{other:?}"),
    }
    // The connection is still good after an error.
    client
        .monitor_command(&dom, r#"{"execute":"query-status"}"#)
        .unwrap();
    // A timeout too long for an Instant waits without end: no panic, for a
    // call and for an event (the STOP a `stop` makes).
    client.set_timeout(Duration::MAX);
    let callback = client.register_monitor_events(Some(&dom), None).unwrap();
    client
        .monitor_command(&dom, r#"{"execute":"stop"}"#)
        .unwrap();
    let event = client.next_event(Duration::MAX).unwrap();
    assert!(
        event.is_some_and(|e| e.domain == dom),
        "an event of the domain"
    );
    client
        .monitor_command(&dom, r#"{"execute":"cont"}"#)
        .unwrap();
    client.deregister_monitor_events(callback).unwrap();
    client.close().unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "{uri}: all checks in {:?}",
        started.elapsed()
    );
}

fn next_named(client: &mut Client, name: &str) -> qmp_libvirt::wire::MonitorEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event(left).unwrap() {
            Some(e) if e.event == name => return e,
            Some(_) => {}
            None => panic!("no {name} event within 10 s"),
        }
    }
}

/// Two domains over one connection, and events of every domain from one
/// registration.
fn two_domains(peer: &Peer) {
    let second = peer.create_extra("b");
    let mut client = Client::connect(&peer.unix_uri).unwrap();
    let a = client.lookup_domain_by_name(&peer.domain).unwrap();
    let b = client.lookup_domain_by_name(&second).unwrap();
    assert_ne!(a.uuid, b.uuid);
    let callback = client.register_monitor_events(None, Some("STOP")).unwrap();
    for dom in [&a, &b] {
        client
            .monitor_command(dom, r#"{"execute":"stop"}"#)
            .unwrap();
    }
    let mut stopped = vec![
        next_named(&mut client, "STOP").domain.name,
        next_named(&mut client, "STOP").domain.name,
    ];
    stopped.sort();
    let mut expected = vec![a.name.clone(), b.name.clone()];
    expected.sort();
    assert_eq!(stopped, expected);
    for dom in [&a, &b] {
        client
            .monitor_command(dom, r#"{"execute":"cont"}"#)
            .unwrap();
    }
    // Filtered by name: the RESUMEs do not come.
    assert_eq!(client.next_event(Duration::from_millis(500)).unwrap(), None);
    client.deregister_monitor_events(callback).unwrap();
    client.close().unwrap();
}

fn not_running(peer: &Peer) {
    let name = peer.define("off");
    let mut client = Client::connect(&peer.unix_uri).unwrap();
    let dom = client.lookup_domain_by_name(&name).unwrap();
    assert_eq!(dom.id, -1);
    match client.monitor_command(&dom, r#"{"execute":"query-status"}"#) {
        Err(ClientError::Rpc(e)) => {
            assert_eq!(e.kind(), Some(ErrorKind::DomainNotRunning), "{e}");
        }
        other => panic!("{other:?}"),
    }
    client.close().unwrap();
}

/// A monitor command waits on a frozen QEMU; destroying the domain fails it.
fn destroyed_while_pending(peer: &Peer, name: &str) {
    let Some(qemu) = peer.pid(&format!("run/qemu/{name}.pid")) else {
        return;
    };
    let mut client = Client::connect(&peer.unix_uri).unwrap();
    let dom = client.lookup_domain_by_name(name).unwrap();
    kill("-STOP", &qemu);
    let pending = client
        .start_call(|c| c.monitor_command(&dom, r#"{"execute":"query-status"}"#))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let destroyed = Instant::now();
    run_script(&["domain-destroy", &peer.unix_uri, name]).unwrap();
    match client.wait_reply(pending) {
        Err(ClientError::Rpc(e)) => {
            let _ = writeln!(
                std::io::stderr(),
                "destroyed while pending: {e} ({:?}, {:?} after the destroy began)",
                e.kind(),
                destroyed.elapsed()
            );
        }
        other => panic!("{other:?}"),
    }
    match client.lookup_domain_by_name(name) {
        Err(ClientError::Rpc(e)) => assert_eq!(e.kind(), Some(ErrorKind::NoDomain), "{e}"),
        other => panic!("{other:?}"),
    }
    client.close().unwrap();
}

/// libvirtd dies with calls in flight: every one fails, at once.
fn daemon_killed_while_pending(peer: &Peer) {
    let Some(daemon) = peer.pid("libvirtd.pid") else {
        return;
    };
    let mut client = Client::connect(&peer.unix_uri).unwrap();
    let dom = client.lookup_domain_by_name(&peer.domain).unwrap();
    kill("-STOP", &daemon);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            client
                .start_call(|c| c.monitor_command(&dom, r#"{"execute":"query-status"}"#))
                .unwrap()
        })
        .collect();
    kill("-KILL", &daemon);
    let killed = Instant::now();
    for id in calls {
        match client.wait_reply(id) {
            Err(ClientError::Rpc(Error::Disconnected)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
}

#[test]
fn real_libvirtd() {
    let Some(peer) = Peer::start("real_libvirtd") else {
        return;
    };
    exercise(&peer.unix_uri, &peer.domain);
    if let Some(tcp) = &peer.tcp_uri {
        exercise(tcp, &peer.domain);
    }
    two_domains(&peer);
    not_running(&peer);
    destroyed_while_pending(&peer, &format!("{}-b", peer.domain));
    daemon_killed_while_pending(&peer);
}

#[test]
fn no_daemon_is_a_clear_error_at_once() {
    let started = Instant::now();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let uri = format!(
        "qemu:///system?socket={}/no-such-libvirt-sock",
        dir.display()
    );
    match Client::connect(&uri) {
        Err(ClientError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    // Port 1 (tcpmux): nobody listens there. A port freshly freed by
    // binding port 0 is not safe here: the kernel hands the same one to the
    // daemon the other test starts meanwhile.
    let port = 1;
    match Client::connect(&format!("qemu+tcp://127.0.0.1:{port}/system")) {
        Err(ClientError::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("{other:?}"),
    }
    match Client::connect("qemu+tls://127.0.0.1/system") {
        Err(e @ ClientError::Uri(_)) => assert!(e.to_string().contains("not supported")),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
}
