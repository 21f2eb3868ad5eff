//! Launching a real QEMU and a real qemu-ga through `qmp_io::qemu`, as users do.
//! Each test skips loudly when its program is missing (see `qmp_testsuite::peers`).

use core::time::Duration;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use qmp_io::qemu::{GuestAgentBuilder, Qemu};
use qmp_testsuite::peers::{require_guest_agent, require_qemu};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(path: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

fn read_json(reader: &mut BufReader<UnixStream>) -> serde_json::Value {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The run state QEMU reports, after negotiating capabilities.
fn qmp_status(qemu: &Qemu) -> String {
    let (mut stream, mut reader) = connect(qemu.qmp_path());
    let greeting = read_json(&mut reader);
    assert!(greeting.get("QMP").is_some(), "{greeting}");
    stream
        .write_all(b"{\"execute\": \"qmp_capabilities\"}\r\n{\"execute\": \"query-status\"}\r\n")
        .unwrap();
    assert_eq!(read_json(&mut reader)["return"], serde_json::json!({}));
    let status = read_json(&mut reader);
    status["return"]["status"].as_str().unwrap().to_owned()
}

#[test]
fn qemu_greets_then_dies_cleanly() {
    let Some(builder) = require_qemu("qemu_greets_then_dies_cleanly") else {
        return;
    };
    let mut qemu = builder.spawn().unwrap();
    let (pid, dir) = (qemu.pid(), qemu.dir().to_owned());
    assert!(qemu.qmp_path().starts_with(&dir));
    assert!(
        fs::symlink_metadata(qemu.qmp_path())
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let (_stream, mut reader) = connect(qemu.qmp_path());
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with(r#"{"QMP""#), "{greeting:?}");
    assert!(greeting.ends_with("\r\n"));

    assert!(qemu.try_wait().unwrap().is_none());
    qemu.kill().unwrap();
    qemu.kill().unwrap();
    assert!(qemu.try_wait().unwrap().is_some());
    assert!(!process_exists(pid), "pid {pid} not reaped");
    assert!(dir.exists(), "directory removed before drop");
    drop(qemu);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn drop_kills_reaps_and_cleans_up() {
    let Some(builder) = require_qemu("drop_kills_reaps_and_cleans_up") else {
        return;
    };
    let qemu = builder.spawn().unwrap();
    let (pid, dir) = (qemu.pid(), qemu.dir().to_owned());
    assert!(process_exists(pid));
    drop(qemu);
    assert!(!process_exists(pid), "pid {pid} still there");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn paused_starts_in_prelaunch() {
    let Some(builder) = require_qemu("paused_starts_in_prelaunch") else {
        return;
    };
    let qemu = builder.clone().paused(true).spawn().unwrap();
    assert_eq!(qmp_status(&qemu), "prelaunch");
    let qemu = builder.spawn().unwrap();
    assert_eq!(qmp_status(&qemu), "running");
}

#[test]
fn bad_binary_is_named_in_the_error() {
    let missing = "/nonexistent/qmp-rs/qemu-system-x86_64";
    let err = Qemu::builder().binary(missing).spawn().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains(missing), "{err}");

    let err = GuestAgentBuilder::new()
        .binary(missing)
        .spawn()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains(missing), "{err}");
}

#[test]
fn early_exit_fails_fast_with_stderr() {
    let Some(builder) = require_qemu("early_exit_fails_fast_with_stderr") else {
        return;
    };
    let started = Instant::now();
    let err = builder
        .arg("-no-such-option")
        .startup_timeout(Duration::from_secs(60))
        .spawn()
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_ne!(err.kind(), io::ErrorKind::TimedOut);
    let text = err.to_string();
    assert!(text.contains("exited"), "{text}");
    assert!(text.contains("no-such-option"), "{text}");
}

#[test]
fn guest_agent_answers_ping_then_dies_cleanly() {
    let Some(builder) = require_guest_agent("guest_agent_answers_ping_then_dies_cleanly") else {
        return;
    };
    let mut agent = builder.spawn().unwrap();
    let (pid, dir) = (agent.pid(), agent.dir().to_owned());
    assert!(agent.socket_path().starts_with(&dir));

    let (mut stream, mut reader) = connect(agent.socket_path());
    stream
        .write_all(b"{\"execute\": \"guest-ping\"}\n")
        .unwrap();
    assert_eq!(read_json(&mut reader), serde_json::json!({"return": {}}));
    drop((stream, reader));

    assert!(agent.try_wait().unwrap().is_none());
    agent.kill().unwrap();
    agent.kill().unwrap();
    assert!(!process_exists(pid), "pid {pid} not reaped");
    drop(agent);
    assert!(!dir.exists(), "{} left behind", dir.display());
}
