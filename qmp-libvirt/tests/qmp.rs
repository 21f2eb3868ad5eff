//! The client API shared with the QMP socket clients (`Qmp`, `AsyncQmp`),
//! over libvirt's RPC, against a real private libvirtd running a real QEMU
//! domain (see `common`): the same test body as a socket client runs, typed
//! and raw commands, QMP errors as data, events through `subscribe` with
//! filters and lag, libvirt's refusals, what libvirt cannot do, keepalive
//! across 40 idle seconds, and the daemon killed under pending calls.

mod common;

use core::time::Duration;
use std::time::Instant;

use common::{Peer, kill};
use qmp_io::{AsyncQmp, Call, Config, ErrorClass, EventFilter, Qmp};
use qmp_libvirt::error::{Error, ErrorKind};
use qmp_libvirt::virsh::{Virsh, VirshError};
use qmp_libvirt::{Client, Libvirt};
use qmp_testsuite::{fixtures, generic};
use qmp_tokio::Tokio;

fn config() -> Config {
    fixtures::config()
}

/// libvirt's own refusal inside a call's error.
fn libvirt_kind(e: &qmp_io::Error) -> Option<ErrorKind> {
    match e {
        qmp_io::Error::Transport(inner) => inner.downcast_ref::<Error>().and_then(Error::kind),
        _ => None,
    }
}

/// The test body every transport runs, over the blocking client.
fn generic_blocking(uri: &str, domain: &str, who: &str) {
    let vm = Client::connect(uri, domain, config()).unwrap_or_else(|e| panic!("{uri}: {e}"));
    generic::check(who, generic::status_stop_cont(&vm));
}

/// What the shared API promises beyond the generic body.
fn details(peer: &Peer) {
    let vm = Client::connect(&peer.unix_uri, &peer.domain, config()).unwrap();
    assert_eq!(vm.domain().name, peer.domain);

    // A QMP error is data, with its class, as from a socket client.
    let e = vm.execute_raw("no-such-command", ()).unwrap_err();
    let ce = e.command_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(ce.class, ErrorClass::CommandNotFound, "{ce}");
    // Arguments go through; a missing path is QEMU's DeviceNotFound.
    let named = vm
        .execute_raw(
            "qom-get",
            serde_json::json!({"path": "/machine", "property": "type"}),
        )
        .unwrap();
    assert_eq!(named.decode::<String>().unwrap(), "pc-i440fx-7.2-machine");
    let bad = vm
        .execute_raw(
            "qom-get",
            serde_json::json!({"path": "/nope", "property": "type"}),
        )
        .unwrap_err();
    assert_eq!(
        bad.command_error().unwrap().class,
        ErrorClass::DeviceNotFound
    );

    // HMP passes through.
    let info = vm.hmp("info status").unwrap();
    assert!(info.contains("running"), "{info}");

    // What libvirt cannot carry fails at once, naming libvirt.
    let started = Instant::now();
    let oob = vm.call(Call::new("query-status").oob()).unwrap_err();
    assert_eq!(oob.to_string(), "exec-oob is not supported over libvirt");
    let fd = std::fs::File::open("/dev/null").unwrap();
    let fds = vm.call(Call::new("getfd").owned_fd(fd.into())).unwrap_err();
    assert!(matches!(fds, qmp_io::Error::Unsupported { .. }), "{fds:?}");
    assert!(started.elapsed() < Duration::from_millis(100));

    // A timeout abandons the command; the client stays usable.
    let short = vm.call(Call::new("query-status").timeout(Some(Duration::from_nanos(1))));
    assert!(matches!(short, Err(qmp_io::Error::Timeout(_))), "{short:?}");
    vm.execute_raw("query-status", ()).unwrap();

    // A subscriber that falls behind is told how many events it lost.
    let lagging =
        Client::connect(&peer.unix_uri, &peer.domain, config().event_capacity(1)).unwrap();
    let all = lagging.subscribe(EventFilter::all());
    let resumes = lagging.subscribe(EventFilter::name("RESUME"));
    let none = lagging.subscribe(EventFilter::name("SHUTDOWN"));
    lagging.execute_raw("stop", ()).unwrap();
    lagging.execute_raw("cont", ()).unwrap();
    // Every queue gets an event at once: RESUME here means it is in `all`.
    let resume = resumes.recv_timeout(fixtures::PATIENCE).unwrap().unwrap();
    assert_eq!(resume.name(), "RESUME");
    assert!(
        matches!(all.try_recv(), Some(Err(qmp_io::Gap::Lagged(1)))),
        "STOP dropped"
    );
    assert_eq!(all.try_recv().unwrap().unwrap().name(), "RESUME");
    assert!(none.try_recv().is_none());
}

/// Two domains over one connection: each client gets its own domain's
/// events only.
fn two_domains(peer: &Peer) {
    let other = peer.create_extra("qmp2");
    let libvirt = Libvirt::connect(&peer.unix_uri, config()).unwrap();
    let a = libvirt.domain(&peer.domain).unwrap();
    let b = libvirt.domain(&other).unwrap();
    let a_events = a.subscribe(EventFilter::all());
    let b_events = b.subscribe(EventFilter::all());
    b.execute_raw("stop", ()).unwrap();
    let got = b_events.recv_timeout(fixtures::PATIENCE).unwrap().unwrap();
    assert_eq!(got.name(), "STOP");
    a.execute_raw("query-status", ()).unwrap();
    assert!(a_events.try_recv().is_none(), "b's STOP reached a");
    b.execute_raw("cont", ()).unwrap();
    // By UUID and by id, the same domain.
    let by_uuid = libvirt.domain_by_uuid(b.domain().uuid).unwrap();
    let by_id = libvirt.domain_by_id(b.domain().id).unwrap();
    assert_eq!(by_uuid.domain(), b.domain());
    assert_eq!(by_id.domain(), b.domain());
    drop((a, b, by_uuid, by_id));
    assert!(!libvirt.is_closed());
}

/// libvirt's refusals: a missing domain, one not running, one destroyed
/// while a command waits.
fn refusals(peer: &Peer) {
    let libvirt = Libvirt::connect(&peer.unix_uri, config()).unwrap();
    let e = libvirt.domain("qmp-no-such-domain").unwrap_err();
    assert_eq!(libvirt_kind(&e), Some(ErrorKind::NoDomain), "{e}");
    assert!(e.to_string().contains("qmp-no-such-domain"), "{e}");

    let defined = peer.define("off");
    let off = libvirt.domain(&defined);
    // Lookup works; libvirt refuses the event registration or the command.
    let e = match off {
        Ok(c) => c.execute_raw("query-status", ()).unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(libvirt_kind(&e), Some(ErrorKind::DomainNotRunning), "{e}");

    // A command waits on a frozen QEMU; the domain is destroyed meanwhile.
    let doomed = peer.create_extra("doomed");
    let vm = std::sync::Arc::new(libvirt.domain(&doomed).unwrap());
    if let Some(qemu) = peer.pid(&format!("run/qemu/{doomed}.pid")) {
        kill("-STOP", &qemu);
        let pending = {
            let vm = vm.clone();
            std::thread::spawn(move || vm.execute_raw("query-status", ()))
        };
        std::thread::sleep(Duration::from_millis(300));
        common::run_script(&["domain-destroy", &peer.unix_uri, &doomed]).unwrap();
        let e = pending.join().unwrap().unwrap_err();
        assert!(libvirt_kind(&e).is_some(), "libvirt's own error: {e:?}");
        let gone = vm.execute_raw("query-status", ()).unwrap_err();
        assert!(
            matches!(
                libvirt_kind(&gone),
                Some(ErrorKind::NoDomain | ErrorKind::DomainNotRunning)
            ),
            "{gone:?}"
        );
    }
    // The connection outlives the domain.
    libvirt
        .domain(&peer.domain)
        .unwrap()
        .execute_raw("query-status", ())
        .unwrap();
}

/// The async client, on tokio: the same generic body, and a clone used from
/// another task.
fn generic_async(uri: &str, domain: &str, who: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let vm = qmp_libvirt::nonblocking::Client::connect(Tokio::current(), uri, domain, config())
            .await
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        let seen = tokio::time::timeout(fixtures::PATIENCE, generic::status_stop_cont_async(&vm))
            .await
            .expect("the async body in time");
        generic::check(who, seen);
        let e = vm.execute_raw("no-such-command", ()).await.unwrap_err();
        assert_eq!(
            e.command_error().unwrap().class,
            ErrorClass::CommandNotFound
        );
        let e = vm.call(Call::new("query-status").oob()).await.unwrap_err();
        assert!(matches!(e, qmp_io::Error::Unsupported { .. }), "{e:?}");
        let clone = vm.clone();
        let other = tokio::spawn(async move { clone.hmp("info status").await });
        assert!(other.await.unwrap().unwrap().contains("running"));
        let missing = vm.libvirt().domain("qmp-no-such-domain").await.unwrap_err();
        assert_eq!(
            libvirt_kind(&missing),
            Some(ErrorKind::NoDomain),
            "{missing}"
        );
    });
}

/// The virsh driver: the same body, QMP errors as data, HMP, and virsh's
/// own error text for a missing domain and one not running.
fn virsh_driver(peer: &Peer, uri: &str, who: &str, off: &str) {
    let vm = Virsh::connect(uri, &peer.domain, config()).unwrap_or_else(|e| panic!("{uri}: {e}"));
    generic::check(who, generic::status_stop_cont(&vm));
    let e = vm.execute_raw("no-such-command", ()).unwrap_err();
    assert_eq!(
        e.command_error().unwrap().class,
        ErrorClass::CommandNotFound,
        "{e}"
    );
    assert!(vm.hmp("info status").unwrap().contains("running"));
    let oob = vm.call(Call::new("query-status").oob()).unwrap_err();
    assert!(matches!(oob, qmp_io::Error::Unsupported { .. }), "{oob:?}");
    drop(vm);

    let virsh_kind = |e: &qmp_io::Error| match e {
        qmp_io::Error::Transport(inner) => inner.downcast_ref::<VirshError>().map(VirshError::kind),
        _ => None,
    };
    let e = Virsh::connect(uri, "qmp-no-such-domain", config()).unwrap_err();
    assert_eq!(virsh_kind(&e), Some(ErrorKind::NoDomain), "{e}");
    assert!(
        e.to_string().contains("qmp-no-such-domain"),
        "virsh's text: {e}"
    );
    // The loop starts (the domain exists); its commands fail.
    match Virsh::connect(uri, off, config()) {
        Ok(vm) => {
            let e = vm.execute_raw("query-status", ()).unwrap_err();
            assert_eq!(virsh_kind(&e), Some(ErrorKind::DomainNotRunning), "{e}");
        }
        Err(e) => assert_eq!(virsh_kind(&e), Some(ErrorKind::DomainNotRunning), "{e}"),
    }
}

/// libvirtd drops a connection whose keepalive PINGs go unanswered for
/// about 30 s: the blocking client's reader answers them while it idles.
fn keepalive_idle(uri: String, domain: String) {
    let vm = Client::connect(&uri, &domain, config()).unwrap();
    std::thread::sleep(Duration::from_secs(40));
    assert!(!vm.is_closed(), "libvirtd dropped the idle connection");
    vm.execute_raw("query-status", ()).unwrap();
}

/// libvirtd dies with calls in flight: every one fails within 1 s.
fn daemon_killed_while_pending(peer: &Peer) {
    let Some(daemon) = peer.pid("libvirtd.pid") else {
        return;
    };
    let libvirt = Libvirt::connect(&peer.unix_uri, config()).unwrap();
    let vm = std::sync::Arc::new(libvirt.domain(&peer.domain).unwrap());
    // The async client too, on its own runtime thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let avm = rt
        .block_on(qmp_libvirt::nonblocking::Client::connect(
            Tokio::on(rt.handle().clone()),
            &peer.unix_uri,
            &peer.domain,
            config(),
        ))
        .unwrap();
    kill("-STOP", &daemon);
    let async_calls = std::thread::spawn(move || {
        rt.block_on(async {
            let calls = (0..3).map(|_| avm.execute_raw("query-status", ()));
            let results = futures_util::future::join_all(calls).await;
            let at = Instant::now();
            let reason = avm.closed().await;
            (results, at, reason)
        })
    });
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let vm = vm.clone();
            std::thread::spawn(move || {
                let r = vm.execute_raw("query-status", ());
                (r, Instant::now())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    kill("-KILL", &daemon);
    let killed = Instant::now();
    for call in calls {
        let (r, at) = call.join().unwrap();
        assert!(matches!(&r, Err(e) if e.is_disconnected()), "{r:?}");
        assert!(at.saturating_duration_since(killed) < Duration::from_secs(1));
    }
    assert!(vm.is_closed());
    assert!(matches!(
        vm.closed(),
        qmp_io::Disconnect::Eof { .. } | qmp_io::Disconnect::Io(_)
    ));
    let (results, at, reason) = async_calls.join().unwrap();
    for r in results {
        assert!(matches!(&r, Err(e) if e.is_disconnected()), "async: {r:?}");
    }
    assert!(at.saturating_duration_since(killed) < Duration::from_secs(1));
    assert!(
        matches!(
            reason,
            qmp_io::Disconnect::Eof { .. } | qmp_io::Disconnect::Io(_)
        ),
        "{reason:?}"
    );
}

/// The async client on smol too: the same generic body.
fn generic_smol(uri: &str, domain: &str, who: &str) {
    smol::block_on(async {
        let vm = qmp_libvirt::nonblocking::Client::connect(
            qmp_smol::Smol::default(),
            uri,
            domain,
            config(),
        )
        .await
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
        generic::check(who, generic::status_stop_cont_async(&vm).await);
    });
}

#[test]
fn the_client_api_over_libvirt() {
    let Some(peer) = Peer::start("the_client_api_over_libvirt") else {
        return;
    };
    let idle = {
        let (uri, domain) = (peer.unix_uri.clone(), peer.domain.clone());
        std::thread::spawn(move || keepalive_idle(uri, domain))
    };
    generic_blocking(&peer.unix_uri, &peer.domain, "libvirt unix, Qmp");
    if let Some(tcp) = &peer.tcp_uri {
        generic_blocking(tcp, &peer.domain, "libvirt tcp, Qmp");
        generic_async(tcp, &peer.domain, "libvirt tcp, AsyncQmp");
    }
    generic_async(&peer.unix_uri, &peer.domain, "libvirt unix, AsyncQmp");
    generic_smol(
        &peer.unix_uri,
        &peer.domain,
        "libvirt unix, AsyncQmp on smol",
    );
    details(&peer);
    let off = peer.define("virsh-off");
    virsh_driver(&peer, &peer.unix_uri, "virsh unix, Qmp", &off);
    if let Some(tcp) = &peer.tcp_uri {
        virsh_driver(&peer, tcp, "virsh tcp, Qmp", &off);
    }
    two_domains(&peer);
    refusals(&peer);
    idle.join().expect("the idle connection survived 40 s");
    daemon_killed_while_pending(&peer);
}

/// The same body over a QMP socket client, against a private QEMU: user
/// code switches transport by changing the constructor only.
#[test]
fn the_same_body_over_a_socket_client() {
    let Some(qemu) = fixtures::qemu("the_same_body_over_a_socket_client") else {
        return;
    };
    let vm = qmp_std::connect_unix(qemu.qmp_path(), config()).unwrap();
    generic::check("socket, Qmp", generic::status_stop_cont(&vm));
}

#[test]
fn no_daemon_is_a_clear_error_at_once() {
    let started = Instant::now();
    let uri = format!(
        "qemu:///system?socket={}/no-such-libvirt-sock",
        env!("CARGO_TARGET_TMPDIR")
    );
    let e = Client::connect(&uri, "vm", config()).unwrap_err();
    assert!(
        matches!(&e, qmp_io::Error::Connect(io) if io.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    let e = Client::connect("qemu+tcp://127.0.0.1:1/system", "vm", config()).unwrap_err();
    assert!(
        matches!(&e, qmp_io::Error::Connect(io) if io.kind() == std::io::ErrorKind::ConnectionRefused),
        "{e:?}"
    );
    let e = Client::connect("qemu+tls://127.0.0.1/system", "vm", config()).unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(1));
}
