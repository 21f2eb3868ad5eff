//! Against a real libvirtd running a real QEMU domain (TCG).
//!
//! The daemon is a private one started with `scripts/libvirt.sh start` in a
//! folder under the target directory, and stopped at the end; or, with
//! `QMP_LIBVIRT_URI` (and optionally `QMP_LIBVIRT_TCP_URI`) set, one already
//! running. Without libvirtd (or without root, which the private daemon
//! needs) the test prints a `skipped:` line and passes; with
//! `QMP_REQUIRE_PEERS` set it fails instead.

use core::time::Duration;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use qmp_libvirt::blocking::{Client, ClientError};
use qmp_libvirt::error::{Error, ErrorKind};

const REQUIRE_PEERS_ENV: &str = "QMP_REQUIRE_PEERS";

fn skip(test: &str, why: &str) {
    let required = std::env::var_os(REQUIRE_PEERS_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    assert!(!required, "{test}: {why}, and {REQUIRE_PEERS_ENV} is set");
    // Straight to stderr: libtest captures eprintln! of passing tests.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/libvirt.sh")
}

fn run_script(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .map_err(|e| format!("scripts/libvirt.sh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "scripts/libvirt.sh {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .any(|d| d.join(program).is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The daemon under test, and the domain it runs; both cleaned up on drop,
/// also when the test fails.
struct Peer {
    unix_uri: String,
    tcp_uri: Option<String>,
    domain: String,
    started: Option<PathBuf>,
}

impl Peer {
    fn start(test: &str) -> Option<Peer> {
        let domain = format!("qmp-it-{}", std::process::id());
        if let Ok(unix_uri) = std::env::var("QMP_LIBVIRT_URI") {
            let peer = Peer {
                unix_uri,
                tcp_uri: std::env::var("QMP_LIBVIRT_TCP_URI").ok(),
                domain,
                started: None,
            };
            peer.create_domain();
            return Some(peer);
        }
        if !on_path("libvirtd") || !on_path("virsh") {
            skip(
                test,
                "libvirtd or virsh not installed (scripts/libvirt.sh install)",
            );
            return None;
        }
        if !is_root() {
            skip(
                test,
                "the private libvirtd needs root (or set QMP_LIBVIRT_URI)",
            );
            return None;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libvirtd");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir_str = dir.to_str().expect("UTF-8 path");
        if let Err(e) = run_script(&["start", dir_str, &port.to_string()]) {
            panic!("{e}");
        }
        let peer = Peer {
            unix_uri: format!("qemu:///system?socket={dir_str}/libvirt-sock"),
            tcp_uri: Some(format!("qemu+tcp://127.0.0.1:{port}/system")),
            domain,
            started: Some(dir),
        };
        peer.create_domain();
        Some(peer)
    }

    fn create_domain(&self) {
        if let Err(e) = run_script(&["domain-create", &self.unix_uri, &self.domain]) {
            panic!("{e}");
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = run_script(&["domain-destroy", &self.unix_uri, &self.domain]);
        if let Some(dir) = &self.started {
            let _ = run_script(&["stop", dir.to_str().unwrap_or_default()]);
        }
    }
}

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

#[test]
fn real_libvirtd_unix_and_tcp() {
    let Some(peer) = Peer::start("real_libvirtd_unix_and_tcp") else {
        return;
    };
    exercise(&peer.unix_uri, &peer.domain);
    if let Some(tcp) = &peer.tcp_uri {
        exercise(tcp, &peer.domain);
    }
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
    // A free port: nobody listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
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
    let _ = Error::Disconnected;
}
