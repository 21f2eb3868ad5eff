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

#[test]
fn a_memory_dump_completes_on_its_event() {
    for (version, builder) in qemus("a_memory_dump_completes_on_its_event") {
        let scratch = common::Scratch::new(&format!("dump-{version}"));
        let (_qemu, qmp) = launch(builder.args(["-m", "32"]));
        let path = scratch.file("core");
        let done = run(
            &qmp,
            machine::DumpGuestMemory::new(&path, Duration::from_secs(60)),
        )
        .expect("dump-guest-memory");
        let result: serde_json::Value = done.event.decode().unwrap();
        assert_eq!(
            result["result"]["status"], "completed",
            "{version}: {result}"
        );
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size >= 32 << 20, "{version}: {size} bytes");
        assert_eq!(&std::fs::read(&path).unwrap()[..4], b"\x7fELF", "{version}");

        let err = run(
            &qmp,
            machine::DumpGuestMemory::new("/proc/no/such/core", Duration::from_secs(5)),
        )
        .unwrap_err();
        assert!(err.command_error().is_some(), "{version}: {err}");
    }
}

#[test]
fn a_screendump_writes_the_console() {
    for (version, builder) in qemus("a_screendump_writes_the_console") {
        let scratch = common::Scratch::new(&format!("screen-{version}"));
        let (_qemu, qmp) = launch(builder.args(["-device", "VGA"]));
        let path = scratch.file("screen.ppm");
        run(&qmp, machine::screendump(&path)).expect("screendump");
        assert_eq!(&std::fs::read(&path).unwrap()[..2], b"P6", "{version}");
    }
}

#[test]
fn a_cpu_is_plugged_into_the_free_slot() {
    for (version, builder) in qemus("a_cpu_is_plugged_into_the_free_slot") {
        let (_qemu, qmp) = launch(builder.args(["-smp", "1,maxcpus=2"]));
        let cpus = |qmp: &qmp_std::Client| {
            let v: Vec<serde_json::Value> = qmp
                .execute_raw("query-cpus-fast", ())
                .unwrap()
                .decode()
                .unwrap();
            v.len()
        };
        assert_eq!(cpus(&qmp), 1, "{version}");
        let props = run(&qmp, machine::AddCpu::new("cpu1")).expect("add a cpu");
        assert!(props.contains_key("socket-id"), "{version}: {props:?}");
        assert_eq!(cpus(&qmp), 2, "{version}");
        let err = run(&qmp, machine::AddCpu::new("cpu2")).unwrap_err();
        assert_eq!(err.step, "finding a free slot", "{version}: {err}");
        assert_eq!(err.left, "nothing changed", "{version}");
    }
}

#[test]
fn sev_capabilities_are_none_without_sev() {
    for (version, builder) in qemus("sev_capabilities_are_none_without_sev") {
        let (_qemu, qmp) = launch(builder);
        let sev = run(&qmp, machine::SevCapabilities).expect("query-sev-capabilities");
        // TCG has no SEV; a host with it would report its C-bit position.
        assert!(sev.is_none_or(|s| s.cbitpos > 0), "{version}");
    }
}

#[test]
fn a_chardev_gets_a_new_backend() {
    for (version, builder) in qemus("a_chardev_gets_a_new_backend") {
        let (_qemu, qmp) = launch(builder);
        let small = typed(json!({"type": "ringbuf", "data": {"size": 64}}));
        run(&qmp, device::add_chardev("c0", &small)).expect("add");
        let big = typed(json!({"type": "ringbuf", "data": {"size": 4096}}));
        run(&qmp, device::change_chardev("c0", &big)).expect("chardev-change");
        qmp.execute_raw(
            "ringbuf-write",
            json!({"device": "c0", "data": "x".repeat(1000)}),
        )
        .unwrap();
        let kept = run(&qmp, RingbufRead::new("c0", 4096)).unwrap();
        assert_eq!(
            kept.len(),
            1000,
            "{version}: the new 4096-byte ring holds it all"
        );
        let err = run(&qmp, device::change_chardev("nope", &big)).unwrap_err();
        assert!(err.command_error().is_some(), "{version}: {err}");
    }
}

#[test]
fn a_balloon_without_a_guest_driver_reaches_its_deadline() {
    for (version, builder) in qemus("a_balloon_without_a_guest_driver") {
        let (_qemu, qmp) = launch(builder.args(["-device", "virtio-balloon-pci,id=b0"]));
        let err = run(&qmp, machine::balloon(64 << 20, Duration::from_millis(300))).unwrap_err();
        assert!(matches!(err.cause, Cause::Deadline(_)), "{version}: {err}");
        assert_eq!(err.step, "waiting for BALLOON_CHANGE", "{version}");
        assert!(err.left.contains("target is set"), "{version}: {err}");
    }
}

#[test]
fn a_guest_shutdown_is_done_when_qemu_sees_it() {
    for (version, builder) in qemus("a_guest_shutdown_is_done_when_qemu_sees_it") {
        let scratch = common::Scratch::new(&format!("shutdown-{version}"));
        // A second monitor, through which the stand-in agent makes QEMU
        // shut down: the real qemu-ga runs on this host, and its
        // guest-shutdown would power the host off.
        let second = scratch.file("second.sock");
        let monitor = format!("unix:{second},server=on,wait=off");
        let (_qemu, qmp) = launch(builder.args(["-qmp", monitor.as_str()]));
        let agent = common::scripted_agent(&scratch, move |command| {
            if command["execute"] != "guest-shutdown" {
                return Some(json!({}));
            }
            let other = qmp_std::connect_unix(&second, qmp_std::Config::default()).unwrap();
            let _ = other.execute_raw("quit", ());
            None
        });
        let ga = qmp_std::connect_guest_agent(&agent, qmp_std::Config::default()).unwrap();
        let vm = qmp_ops::WithAgent(&qmp, qmp_ops::Agent(&ga));
        let done = run(
            &vm,
            qmp_ops::guest::shutdown("powerdown", Duration::from_secs(10)),
        )
        .expect("guest-shutdown");
        assert_eq!(done.event.name(), "SHUTDOWN", "{version}");
    }
}
