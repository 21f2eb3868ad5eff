//! A QMP peer that answers `ringbuf-read` with more bytes than were asked
//! for: a real QEMU never does, so a scripted one plays it.

mod common;

use common::{Scratch, reply, scripted_qmp};
use qmp_ops::machine::RingbufRead;
use qmp_ops::{Cause, run};
use serde_json::json;

#[test]
fn a_console_read_answered_with_more_than_was_asked_for_is_refused() {
    let scratch = Scratch::new("hostile-qemu");
    let path = scripted_qmp(&scratch, |command| match command["execute"].as_str() {
        // Twice the bytes asked for, base64.
        Some("ringbuf-read") => {
            let size = command["arguments"]["size"].as_u64().unwrap_or(0) as usize;
            reply(command, json!("QUJD".repeat(size * 2 / 3 + 1)))
        }
        _ => reply(command, json!({})),
    });
    let qmp = qmp_std::connect_unix(&path, qmp_std::Config::default()).expect("connect");
    let err = run(&qmp, RingbufRead::new("con0", 30)).unwrap_err();
    let Cause::Reported(why) = &err.cause else {
        panic!("{err}");
    };
    assert!(why.contains("for 30 bytes"), "{why}");
    assert_eq!(err.left, "0 bytes were taken out of the buffer");
}
