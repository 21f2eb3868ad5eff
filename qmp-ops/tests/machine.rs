//! Machine operations against real QEMU 7.2 and 10.0 (`pc`, TCG, no guest
//! OS): reset, a powerdown nobody answers, set-action, a ringbuf console.

mod common;

use core::time::Duration;

use common::{launch, qemus, typed};
use qmp_ops::machine::{self, RingbufRead};
use qmp_ops::{Cause, device, run};
use serde_json::json;

#[test]
fn reset_completes_on_its_reset_event() {
    for (version, builder) in qemus("reset_completes_on_its_reset_event") {
        let (_qemu, qmp) = launch(builder);
        let done = run(&qmp, machine::reset(Duration::from_secs(5))).expect("system_reset");
        assert_eq!(done.event.name(), "RESET", "{version}");
        let data: serde_json::Value = done.event.decode().unwrap();
        assert_eq!(data["guest"], false, "{version}: the host asked for it");
    }
}

#[test]
fn a_powerdown_without_a_guest_os_reaches_its_deadline() {
    for (version, builder) in qemus("a_powerdown_without_a_guest_os_reaches_its_deadline") {
        let (_qemu, qmp) = launch(builder);
        let err = run(&qmp, machine::powerdown(Duration::from_millis(300))).unwrap_err();
        assert!(matches!(err.cause, Cause::Deadline(_)), "{version}: {err}");
        assert_eq!(err.step, "waiting for SHUTDOWN", "{version}");
        assert!(err.left.contains("VM is still running"), "{version}: {err}");
        assert!(!qmp.is_closed(), "{version}");
    }
}

#[test]
fn set_action_is_accepted_and_checked() {
    for (version, builder) in qemus("set_action_is_accepted_and_checked") {
        let (_qemu, qmp) = launch(builder);
        let action = typed(json!({"shutdown": "pause", "reboot": "shutdown"}));
        run(&qmp, machine::set_action(&action)).expect("set-action");
        let err = run(
            &qmp,
            qmp_ops::sequence::Sequence::new(
                "set-action",
                vec![qmp_ops::sequence::Action::new(
                    qmp_io::Call::new("set-action").arguments(json!({"shutdown": "explode"})),
                    "actions",
                )],
            ),
        )
        .unwrap_err();
        assert!(err.command_error().is_some(), "{version}: {err}");
    }
}

#[test]
fn a_ringbuf_console_is_read_by_size() {
    for (version, builder) in qemus("a_ringbuf_console_is_read_by_size") {
        let (_qemu, qmp) = launch(builder);
        let backend = typed(json!({"type": "ringbuf", "data": {"size": 64}}));
        run(&qmp, device::add_chardev("con0", &backend)).expect("chardev-add");
        let write = |data: &str| {
            qmp.execute_raw("ringbuf-write", json!({"device": "con0", "data": data}))
                .expect("ringbuf-write");
        };
        write("login: root\r\n");
        let head = run(&qmp, RingbufRead::new("con0", 5)).expect("read 5");
        assert_eq!(head, b"login", "{version}");
        let rest = run(&qmp, RingbufRead::new("con0", 1000)).expect("read the rest");
        assert_eq!(rest, b": root\r\n", "{version}");
        assert!(run(&qmp, RingbufRead::new("con0", 10)).unwrap().is_empty());
        // A 64-byte ring keeps the newest 64 bytes.
        write(&"0123456789".repeat(10));
        let kept = run(&qmp, RingbufRead::new("con0", 1000)).expect("read");
        assert_eq!(kept.len(), 64, "{version}");
        assert!(kept.ends_with(b"6789"), "{version}");

        let err = run(&qmp, RingbufRead::new("nope", 10)).unwrap_err();
        assert!(err.command_error().is_some(), "{version}: {err}");
        assert_eq!(err.left, "nothing changed (QEMU refused the command)");
    }
}
