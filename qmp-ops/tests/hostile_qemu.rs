//! A QMP peer that answers `ringbuf-read` with more bytes than were asked
//! for: a real QEMU never does, so a scripted one on a unix socket plays it.

use std::io::Write;
use std::os::unix::net::UnixListener;

use qmp_ops::machine::RingbufRead;
use qmp_ops::{Cause, run};
use serde_json::{Value, json};

#[test]
fn a_console_read_answered_with_more_than_was_asked_for_is_refused() {
    let dir = std::env::temp_dir().join(format!("qmp-ops-hostile-qemu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let greeting = json!({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7},
            "package": ""}, "capabilities": []}});
        stream
            .write_all(format!("{greeting}\r\n").as_bytes())
            .unwrap();
        let reader = stream.try_clone().unwrap();
        for command in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
            let Ok(command) = command else { return };
            let ret = match command["execute"].as_str() {
                // Twice the bytes asked for, base64.
                Some("ringbuf-read") => {
                    let size = command["arguments"]["size"].as_u64().unwrap_or(0) as usize;
                    json!("QUJD".repeat(size * 2 / 3 + 1))
                }
                _ => json!({}),
            };
            let reply = json!({"return": ret, "id": command["id"]});
            if stream.write_all(format!("{reply}\r\n").as_bytes()).is_err() {
                return;
            }
        }
    });
    let qmp = qmp_std::connect_unix(&path, qmp_std::Config::default()).expect("connect");
    let err = run(&qmp, RingbufRead::new("con0", 30)).unwrap_err();
    let Cause::Reported(why) = &err.cause else {
        panic!("{err}");
    };
    assert!(why.contains("for 30 bytes"), "{why}");
    assert_eq!(err.left, "0 bytes were taken out of the buffer");
    let _ = std::fs::remove_dir_all(&dir);
}
