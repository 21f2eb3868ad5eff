//! A guest agent is inside the guest and not trusted. These cases need an
//! agent that misbehaves on purpose, which a real qemu-ga does not, so a
//! scripted one on a unix socket plays it: a read answered with more than
//! was asked for, and a file that never ends.

use core::sync::atomic::{AtomicBool, Ordering};
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use qmp_ops::guest::FileRead;
use qmp_ops::{Agent, Cause, run};
use serde_json::{Value, json};

/// Reads the client's bytes without the 0xFF resynchronisation marks.
struct NoMarks<R>(R);

impl<R: Read> Read for NoMarks<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.0.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                if buf[i] != 0xFF {
                    buf[kept] = buf[i];
                    kept += 1;
                }
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Every read answers twice the bytes asked for.
    Oversized,
    /// Every read answers what was asked and never says end of file.
    Endless,
}

/// A scripted agent; `closed` turns true when the client closes the handle.
fn agent(name: &str, how: Misbehaviour, closed: Arc<AtomicBool>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qmp-ops-agent-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("qga.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let reader = NoMarks(stream.try_clone().unwrap());
        for command in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
            let Ok(command) = command else { return };
            let args = &command["arguments"];
            let mut out = Vec::new();
            let ret = match command["execute"].as_str().unwrap_or("") {
                "guest-sync-delimited" => {
                    out.push(0xFF);
                    args["id"].clone()
                }
                "guest-file-open" => json!(7),
                "guest-file-read" => {
                    let count = args["count"].as_u64().unwrap_or(4096) as usize;
                    let len = match how {
                        Misbehaviour::Oversized => count * 2,
                        Misbehaviour::Endless => count,
                    };
                    let b64 = "QUJD".repeat(len / 3);
                    json!({"count": len / 3 * 3, "buf-b64": b64, "eof": false})
                }
                "guest-file-close" => {
                    closed.store(true, Ordering::SeqCst);
                    json!({})
                }
                _ => json!({}),
            };
            out.extend_from_slice(
                json!({"return": ret, "id": command["id"]})
                    .to_string()
                    .as_bytes(),
            );
            out.push(b'\n');
            if stream.write_all(&out).is_err() {
                return;
            }
        }
    });
    path
}

#[test]
fn a_read_answered_with_more_than_was_asked_for_is_refused() {
    let closed = Arc::new(AtomicBool::new(false));
    let path = agent("oversized", Misbehaviour::Oversized, closed.clone());
    let ga = qmp_std::connect_guest_agent(&path, qmp_std::Config::default()).expect("sync");
    let err = run(&Agent(&ga), FileRead::new("/x").chunk(3000)).unwrap_err();
    let Cause::Reported(why) = &err.cause else {
        panic!("{err}");
    };
    assert!(why.contains("for a 3000-byte read"), "{why}");
    assert_eq!(err.left, "handle 7 closed");
    assert!(closed.load(Ordering::SeqCst), "the handle was not closed");
}

#[test]
fn a_file_that_never_ends_stops_at_the_read_limit() {
    let closed = Arc::new(AtomicBool::new(false));
    let path = agent("endless", Misbehaviour::Endless, closed.clone());
    let ga = qmp_std::connect_guest_agent(&path, qmp_std::Config::default()).expect("sync");
    let read = FileRead::new("/dev/zero").chunk(30_000).limit(100_000);
    let err = run(&Agent(&ga), read).unwrap_err();
    assert!(
        err.to_string()
            .contains("larger than the 100000-byte limit"),
        "{err}"
    );
    assert_eq!(err.left, "handle 7 closed");
    assert!(closed.load(Ordering::SeqCst));
}
