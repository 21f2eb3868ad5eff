//! Commands and replies are logged at debug level, except the commands the
//! configuration keeps quiet. (Its own test binary: it installs a global
//! tracing subscriber that sees the reader thread too.)

use std::sync::{Arc, Mutex};

use qmp_io::Config;
use qmp_io::blocking::Client;
use qmp_io::mock::MockQemu;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Keeps every event's fields as text.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn core::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!("{}={} ", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = String::new();
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn commands_and_replies_are_logged_except_quiet_ones() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(recorder.clone()).unwrap();

    let mock = MockQemu::start().unwrap();
    mock.on_return("ringbuf-read", r#""secret-console-bytes""#);
    let stream = std::os::unix::net::UnixStream::connect(mock.path()).unwrap();
    let qmp = Client::connect(stream, Config::default().quiet("ringbuf-read")).unwrap();

    let status = qmp.execute_raw("query-status", ()).unwrap();
    assert!(status.as_str().contains("running"));
    let data = qmp
        .execute_raw(
            "ringbuf-read",
            serde_json::json!({"device": "serial0", "size": 64}),
        )
        .unwrap();
    assert_eq!(data.as_str(), r#""secret-console-bytes""#);
    qmp.close();

    let lines = recorder.0.lock().unwrap().clone();
    let all = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("query-status") && l.contains("qmp send")),
        "the command is logged: {all}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("qmp return") && l.contains("running")),
        "its reply is logged: {all}"
    );
    assert!(!all.contains("ringbuf-read"), "quiet command logged: {all}");
    assert!(
        !all.contains("secret-console-bytes"),
        "quiet reply logged: {all}"
    );
}
