//! The completion event in the same read as the command's reply, before it
//! and after it, and an old event for the same device: QMP allows all of
//! these, and real QEMU cannot be made to produce each on demand, so a
//! scripted peer on a unix socket writes the exact bytes.

use core::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

mod common;

use common::{Scratch, reply, scripted_qmp};
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
fn peer(scratch: &Scratch, order: Order) -> String {
    scripted_qmp(scratch, move |command| {
        let reply = reply(command, json!({}));
        if command["execute"] != "device_del" {
            return reply;
        }
        let id = command["arguments"]["id"].as_str().unwrap_or("");
        match order {
            Order::EventFirst => format!("{}\r\n{reply}", event(id, Duration::ZERO)),
            Order::ReplyFirst => format!("{reply}{}\r\n", event(id, Duration::ZERO)),
            Order::StaleOnly => format!("{}\r\n{reply}", event(id, Duration::from_secs(3600))),
        }
    })
}

fn connect(path: &str) -> qmp_std::Client {
    qmp_std::connect_unix(path, qmp_std::Config::default()).expect("connect")
}

#[test]
fn the_event_before_the_reply_in_the_same_read_completes_the_operation() {
    let scratch = Scratch::new("race-before");
    let qmp = connect(&peer(&scratch, Order::EventFirst));
    let gone = run(&qmp, DeviceDel::new("usb1", Duration::from_secs(5))).expect("device_del");
    assert_eq!(gone.decode::<Value>().unwrap()["device"], "usb1");
}

#[test]
fn the_event_after_the_reply_in_the_same_read_completes_the_operation() {
    let scratch = Scratch::new("race-after");
    let qmp = connect(&peer(&scratch, Order::ReplyFirst));
    let gone = run(&qmp, DeviceDel::new("usb1", Duration::from_secs(5))).expect("device_del");
    assert_eq!(gone.decode::<Value>().unwrap()["device"], "usb1");
}

#[test]
fn the_async_driver_sees_the_event_before_the_reply_too() {
    let scratch = Scratch::new("race-async");
    let path = peer(&scratch, Order::EventFirst);
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
    let scratch = Scratch::new("race-stale");
    let qmp = connect(&peer(&scratch, Order::StaleOnly));
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
    let scratch2 = Scratch::new("race-stale-unchecked");
    let qmp = connect(&peer(&scratch2, Order::StaleOnly));
    let options = qmp_ops::Options::default().clock_skew(None);
    let del = DeviceDel::new("usb1", Duration::from_millis(300));
    qmp_ops::run_with(&qmp, del, options).expect("accepted without the check");
}
