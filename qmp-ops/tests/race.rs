//! The completion event in the same read as the command's reply, before it
//! and after it, and an old event for the same device: QMP allows all of
//! these, and real QEMU cannot be made to produce each on demand, so a
//! scripted peer on a unix socket writes the exact bytes.

use core::time::Duration;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use qmp_ops::device::DeviceDel;
use qmp_ops::run;
use serde_json::{Value, json};

/// Where the completion event goes relative to the reply.
#[derive(Clone, Copy, Debug)]
enum Order {
    EventFirst,
    ReplyFirst,
    /// Only an event stamped an hour before the command, then the reply.
    StaleOnly,
}

fn event(id: &str, age: Duration) -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - age;
    json!({
        "timestamp": {"seconds": t.as_secs(), "microseconds": t.subsec_micros()},
        "event": "DEVICE_DELETED",
        "data": {"device": id, "path": format!("/machine/peripheral/{id}")},
    })
    .to_string()
}

/// A QMP peer that answers `device_del` with the event and the reply in one
/// write, in `order`. Returns the socket path.
fn peer(name: &str, order: Order) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qmp-ops-race-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let greeting = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;
        stream
            .write_all(format!("{greeting}\r\n").as_bytes())
            .unwrap();
        let reader = stream.try_clone().unwrap();
        for command in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
            let Ok(command) = command else { return };
            let reply = json!({"return": {}, "id": command["id"]}).to_string();
            let bytes = match (command["execute"].as_str(), order) {
                (Some("device_del"), Order::EventFirst) => {
                    let id = command["arguments"]["id"].as_str().unwrap();
                    format!("{}\r\n{reply}\r\n", event(id, Duration::ZERO))
                }
                (Some("device_del"), Order::ReplyFirst) => {
                    let id = command["arguments"]["id"].as_str().unwrap();
                    format!("{reply}\r\n{}\r\n", event(id, Duration::ZERO))
                }
                (Some("device_del"), Order::StaleOnly) => {
                    let id = command["arguments"]["id"].as_str().unwrap();
                    format!("{}\r\n{reply}\r\n", event(id, Duration::from_secs(3600)))
                }
                _ => format!("{reply}\r\n"),
            };
            if stream.write_all(bytes.as_bytes()).is_err() {
                return;
            }
        }
    });
    path
}

fn connect(path: &PathBuf) -> qmp_std::Client {
    qmp_std::connect_unix(path, qmp_std::Config::default()).expect("connect")
}

#[test]
fn the_event_before_the_reply_in_the_same_read_completes_the_operation() {
    let qmp = connect(&peer("before", Order::EventFirst));
    let gone = run(&qmp, DeviceDel::new("usb1", Duration::from_secs(5))).expect("device_del");
    assert_eq!(gone.decode::<Value>().unwrap()["device"], "usb1");
}

#[test]
fn the_event_after_the_reply_in_the_same_read_completes_the_operation() {
    let qmp = connect(&peer("after", Order::ReplyFirst));
    let gone = run(&qmp, DeviceDel::new("usb1", Duration::from_secs(5))).expect("device_del");
    assert_eq!(gone.decode::<Value>().unwrap()["device"], "usb1");
}

#[test]
fn the_async_driver_sees_the_event_before_the_reply_too() {
    let path = peer("async", Order::EventFirst);
    smol::block_on(async {
        let qmp = qmp_smol::connect_unix(&path, qmp_std::Config::default())
            .await
            .expect("connect");
        let del = DeviceDel::new("usb1", Duration::from_secs(5));
        let gone = qmp_ops::run_async(&qmp, &qmp_smol::Smol::global(), del)
            .await
            .expect("device_del");
        assert_eq!(gone.decode::<Value>().unwrap()["device"], "usb1");
    });
}

#[test]
fn an_event_stamped_before_the_command_is_not_taken_for_its_outcome() {
    let qmp = connect(&peer("stale", Order::StaleOnly));
    let err = run(&qmp, DeviceDel::new("usb1", Duration::from_millis(300))).unwrap_err();
    assert!(err.is_deadline(), "{err}");
    assert!(err.left.contains("still pending"), "{err}");
    assert!(
        err.left.ends_with(
            "1 awaited event(s) came stamped before the command and were discarded (if \
             QEMU's clock differs from this host's, see Options::clock_skew)"
        ),
        "{err}"
    );
    // With the check off, the same bytes complete it: the stale event is
    // what the check discarded.
    let qmp = connect(&peer("stale-unchecked", Order::StaleOnly));
    let options = qmp_ops::Options::default().clock_skew(None);
    let del = DeviceDel::new("usb1", Duration::from_millis(300));
    qmp_ops::run_with(&qmp, del, options).expect("accepted without the check");
}
