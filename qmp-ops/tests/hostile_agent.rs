//! A guest agent is inside the guest and not trusted. These cases need an
//! agent that misbehaves on purpose, which a real qemu-ga does not, so a
//! scripted one plays it: a read answered with more than was asked for, and
//! a file that never ends.

mod common;

use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{Scratch, scripted_agent};
use qmp_ops::guest::FileRead;
use qmp_ops::{Agent, Cause, run};
use serde_json::json;

#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Every read answers twice the bytes asked for.
    Oversized,
    /// Every read answers what was asked and never says end of file.
    Endless,
}

/// A misbehaving agent; `closed` turns true when the client closes the handle.
fn agent(scratch: &Scratch, how: Misbehaviour, closed: Arc<AtomicBool>) -> String {
    scripted_agent(scratch, move |command| {
        let args = &command["arguments"];
        Some(match command["execute"].as_str().unwrap_or("") {
            "guest-file-open" => json!(7),
            "guest-file-read" => {
                let count = args["count"].as_u64().unwrap_or(4096) as usize;
                let len = match how {
                    Misbehaviour::Oversized => count * 2,
                    Misbehaviour::Endless => count,
                };
                json!({"count": len / 3 * 3, "buf-b64": "QUJD".repeat(len / 3), "eof": false})
            }
            "guest-file-close" => {
                closed.store(true, Ordering::SeqCst);
                json!({})
            }
            _ => json!({}),
        })
    })
}

#[test]
fn a_read_answered_with_more_than_was_asked_for_is_refused() {
    let closed = Arc::new(AtomicBool::new(false));
    let scratch = Scratch::new("agent-oversized");
    let path = agent(&scratch, Misbehaviour::Oversized, closed.clone());
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
    let scratch = Scratch::new("agent-endless");
    let path = agent(&scratch, Misbehaviour::Endless, closed.clone());
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
