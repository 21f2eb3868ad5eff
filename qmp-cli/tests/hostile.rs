//! The `qmp` binary against peers that break the protocol: each run must
//! end with exit status 2 and one clear line on stderr, within `--timeout`
//! (plus the time to start a process).
//!
//! `MockQemu` serves the peers it can play (no greeting, replies held back);
//! the others are a few lines of raw socket each.

mod common;

use core::time::Duration;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread::JoinHandle;

use common::{Ran, TempDir, arg, qmp, run};
use qmp_io::mock::MockQemu;

const TIMEOUT: &str = "1.5";
/// `--timeout` plus room for starting the process on a busy machine.
const BOUND: Duration = Duration::from_millis(1500 + 2500);

const GREETING: &[u8] =
    b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n";

fn query_status(socket: &str) -> Ran {
    let out = run(
        qmp(&["--socket", socket, "--timeout", TIMEOUT, "query-status"]),
        None,
    );
    assert!(out.took < BOUND, "took {:?}: {out:?}", out.took);
    assert!(out.stdout.is_empty(), "{out:?}");
    out
}

/// A raw peer on a fresh socket: `serve` gets the accepted connection.
struct RawPeer {
    dir: TempDir,
    thread: Option<JoinHandle<()>>,
}

impl RawPeer {
    fn start(serve: impl FnOnce(UnixStream) + Send + 'static) -> Self {
        let dir = TempDir::new();
        let listener = UnixListener::bind(dir.join("qmp.sock")).expect("bind");
        let thread = std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                serve(stream);
            }
        });
        Self {
            dir,
            thread: Some(thread),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.join("qmp.sock")
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Greets, answers qmp_capabilities, and returns the id of the next command
/// (as raw JSON text) with the reader for more.
fn handshake(stream: &UnixStream) -> Option<String> {
    let mut w = stream;
    w.write_all(GREETING).ok()?;
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    lines.read_line(&mut line).ok()?;
    let caps_id = id_of(&line);
    let reply = match caps_id {
        Some(id) => format!("{{\"return\": {{}}, \"id\": {id}}}\r\n"),
        None => "{\"return\": {}}\r\n".to_owned(),
    };
    w.write_all(reply.as_bytes()).ok()?;
    line.clear();
    lines.read_line(&mut line).ok()?;
    Some(id_of(&line).unwrap_or_else(|| "null".to_owned()))
}

/// The value of `"id"` in a command line, as raw text.
fn id_of(line: &str) -> Option<String> {
    let at = line.find("\"id\"")? + 4;
    let rest = line[at..].trim_start().strip_prefix(':')?;
    let end = rest.find([',', '}'])?;
    Some(rest[..end].trim().to_owned())
}

#[test]
fn no_greeting() {
    let mock = MockQemu::builder().greeting(false).start().expect("mock");
    let out = query_status(arg(mock.path()));
    let line = out.failed(2);
    assert!(line.contains("timed out after 1.5s"), "{line}");
    assert!(line.contains("no QMP greeting"), "{line}");
}

#[test]
fn greeting_then_silence() {
    let peer = RawPeer::start(|stream| {
        let _ = (&stream).write_all(GREETING);
        std::thread::sleep(Duration::from_secs(6));
    });
    let out = query_status(arg(&peer.path()));
    let line = out.failed(2);
    assert!(line.contains("timed out after 1.5s"), "{line}");
    assert!(line.contains("no reply to qmp_capabilities"), "{line}");
}

#[test]
fn a_command_never_answered() {
    let mock = MockQemu::start().expect("mock");
    mock.hold_replies(true);
    let out = query_status(arg(mock.path()));
    assert_eq!(
        out.failed(2),
        "qmp: timed out after 1.5s (no reply to query-status)"
    );
}

#[test]
fn garbage() {
    let peer = RawPeer::start(|stream| {
        if handshake(&stream).is_some() {
            let _ = (&stream).write_all(b"}}]] not json at all \x00\xff{{\r\n");
            std::thread::sleep(Duration::from_secs(6));
        }
    });
    let out = query_status(arg(&peer.path()));
    let line = out.failed(2);
    assert!(
        line.starts_with("qmp: disconnected: protocol error"),
        "{line}"
    );
    assert!(
        out.took < Duration::from_millis(1500),
        "ends at once: {out:?}"
    );
}

#[test]
fn garbage_instead_of_a_greeting() {
    let peer = RawPeer::start(|stream| {
        let _ = (&stream).write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        std::thread::sleep(Duration::from_secs(6));
    });
    let out = query_status(arg(&peer.path()));
    out.failed(2);
}

#[test]
fn a_reply_that_never_ends() {
    let peer = RawPeer::start(|stream| {
        let Some(id) = handshake(&stream) else {
            return;
        };
        let mut w = &stream;
        let _ = w.write_all(format!("{{\"id\": {id}, \"return\": \"").as_bytes());
        let chunk = vec![b'a'; 64 * 1024];
        // Until the client hangs up (bounded, in case it never does).
        for _ in 0..100_000 {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let out = query_status(arg(&peer.path()));
    let line = out.failed(2);
    // Either the size cap (64 MiB) or the timeout ends it.
    assert!(
        line.contains("timed out after 1.5s") || line.contains("larger than the size limit"),
        "{line}"
    );
}

#[test]
fn an_oversized_reply() {
    let peer = RawPeer::start(|stream| {
        let Some(id) = handshake(&stream) else {
            return;
        };
        let mut w = &stream;
        let mut reply = format!("{{\"id\": {id}, \"return\": \"").into_bytes();
        reply.resize(reply.len() + (65 << 20), b'x');
        reply.extend_from_slice(b"\"}\r\n");
        let _ = w.write_all(&reply);
        std::thread::sleep(Duration::from_secs(3));
    });
    let out = run(
        qmp(&[
            "--socket",
            arg(&peer.path()),
            "--timeout",
            "20",
            "query-status",
        ]),
        None,
    );
    let line = out.failed(2);
    assert!(line.contains("larger than the size limit"), "{line}");
}

#[test]
fn eof_in_the_middle_of_a_reply() {
    let peer = RawPeer::start(|stream| {
        if let Some(id) = handshake(&stream) {
            let _ = (&stream).write_all(format!("{{\"id\": {id}, \"return\": {{\"sta").as_bytes());
        }
    });
    let out = query_status(arg(&peer.path()));
    assert_eq!(
        out.failed(2),
        "qmp: disconnected: the peer closed the connection in the middle of a message"
    );
}

#[test]
fn nobody_listening() {
    let dir = TempDir::new();
    let out = query_status(arg(&dir.join("none.sock")));
    let line = out.failed(2);
    assert!(line.starts_with("qmp: cannot connect to "), "{line}");
}

#[test]
fn a_qmp_error_from_the_mock() {
    let mock = MockQemu::start().expect("mock");
    mock.on_error("query-status", "GenericError", "multi\nline");
    let out = query_status(arg(mock.path()));
    assert_eq!(out.failed(1), "qmp: GenericError: multi | line");
}

#[test]
fn usage_mistakes_are_one_line() {
    for args in [
        &["--nope"][..],
        &["--count", "1"],
        &["--socket", "a", "--tcp", "b:1", "x"],
        &["--timeout", "soon", "x"],
        &["x", "--", "child"],
        &["--events", "-H"],
    ] {
        let out = run(qmp(args), None);
        out.failed(2);
    }
}

#[test]
fn the_watchdog_ends_a_script_waiting_on_stdin() {
    let mock = MockQemu::start().expect("mock");
    let started = std::time::Instant::now();
    // stdin stays open and silent: only the --timeout can end the run.
    let mut child = qmp(&["--socket", arg(mock.path()), "--timeout", "0.5"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn qmp");
    let stdin = child.stdin.take();
    let code = common::wait_limited(&mut child, Duration::from_secs(20));
    drop(stdin);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "qmp: timed out after 0.5s (the run did not end by itself)\n"
    );
    assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
}
