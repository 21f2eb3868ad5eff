//! Hot-plug against real QEMU 7.2 and 10.0 (`pc`, TCG, no guest OS): USB
//! devices on `qemu-xhci` unplug at once; a PCI device waits for a guest
//! that is not there.

mod common;

use core::time::Duration;

use common::{launch, node_names, peripherals, qemus, typed};
use qmp_ops::device::{self, DeviceDel, Remove};
use qmp_ops::{Cause, run};
use qmp_qapi::commands::DeviceAdd;
use serde_json::json;

fn usb(driver: &str, id: &str, extra: serde_json::Value) -> DeviceAdd {
    let mut v = json!({"driver": driver, "id": id, "bus": "xhci.0"});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    typed(v)
}

#[test]
fn usb_device_add_and_del_completes_on_its_device_deleted() {
    for (version, builder) in qemus("usb_device_add_and_del_completes_on_its_device_deleted") {
        let (_qemu, qmp) = launch(builder);
        run(&qmp, device::add(&usb("usb-kbd", "kbd1", json!({})))).expect("device_add");
        run(&qmp, device::add(&usb("usb-mouse", "mouse1", json!({})))).expect("device_add");
        assert!(peripherals(&qmp).contains(&"kbd1".to_owned()), "{version}");

        let gone = run(&qmp, DeviceDel::new("kbd1", Duration::from_secs(5))).expect("device_del");
        assert_eq!(gone.name(), "DEVICE_DELETED", "{version}");
        let data: serde_json::Value = gone.decode().unwrap();
        assert_eq!(data["device"], "kbd1", "{version}");
        assert!(gone.timestamp().is_some_and(|t| t.seconds > 0), "{version}");
        let left = peripherals(&qmp);
        assert!(!left.contains(&"kbd1".to_owned()), "{version}: {left:?}");
        assert!(left.contains(&"mouse1".to_owned()), "{version}: {left:?}");
    }
}

#[test]
fn device_del_of_an_unknown_id_changes_nothing() {
    for (version, builder) in qemus("device_del_of_an_unknown_id_changes_nothing") {
        let (_qemu, qmp) = launch(builder);
        let err = run(&qmp, DeviceDel::new("nope", Duration::from_secs(5))).unwrap_err();
        let qmp_err = err.command_error().expect("a QMP error reply");
        assert_eq!(
            qmp_err.class,
            qmp_io::ErrorClass::DeviceNotFound,
            "{version}: {err}"
        );
        assert_eq!(
            err.left, "nothing changed (QEMU refused the command)",
            "{version}"
        );
        assert!(
            err.to_string()
                .starts_with("device_del nope: sending device_del"),
            "{err}"
        );
    }
}

#[test]
fn pci_unplug_without_a_guest_fails_at_the_deadline_naming_the_state_left() {
    for (version, builder) in qemus("pci_unplug_without_a_guest_fails_at_the_deadline") {
        let (_qemu, qmp) = launch(builder);
        let balloon: DeviceAdd = typed(json!({"driver": "virtio-balloon-pci", "id": "bal1"}));
        run(&qmp, device::add(&balloon)).expect("device_add");
        let err = run(&qmp, DeviceDel::new("bal1", Duration::from_millis(300))).unwrap_err();
        assert!(err.is_deadline(), "{version}: {err}");
        assert!(matches!(err.cause, Cause::Deadline(d) if d == Duration::from_millis(300)));
        assert_eq!(
            err.step,
            "waiting for DEVICE_DELETED or DEVICE_UNPLUG_GUEST_ERROR"
        );
        assert!(err.left.contains("still pending"), "{version}: {err}");
        // What the error says is true: the device is still there.
        assert!(peripherals(&qmp).contains(&"bal1".to_owned()), "{version}");
    }
}

fn null_node(name: &str) -> qmp_qapi::types::BlockdevOptions {
    typed(json!({"driver": "null-co", "node-name": name, "size": 1_048_576}))
}

#[test]
fn disk_add_and_remove_on_usb_storage() {
    for (version, builder) in qemus("disk_add_and_remove_on_usb_storage") {
        let (_qemu, qmp) = launch(builder);
        let disk = usb("usb-storage", "disk1", json!({"drive": "node1"}));
        let replies = run(&qmp, device::add_disk(&null_node("node1"), &disk)).expect("add disk");
        assert_eq!(replies.len(), 2, "{version}");
        assert!(node_names(&qmp).contains(&"node1".to_owned()), "{version}");
        assert!(peripherals(&qmp).contains(&"disk1".to_owned()), "{version}");

        let (gone, _) =
            run(&qmp, Remove::disk("disk1", "node1", Duration::from_secs(5))).expect("remove disk");
        assert_eq!(
            gone.decode::<serde_json::Value>().unwrap()["device"],
            "disk1"
        );
        assert!(!node_names(&qmp).contains(&"node1".to_owned()), "{version}");
        assert!(
            !peripherals(&qmp).contains(&"disk1".to_owned()),
            "{version}"
        );
    }
}

#[test]
fn disk_add_rolls_back_the_node_when_device_add_fails() {
    for (version, builder) in qemus("disk_add_rolls_back_the_node_when_device_add_fails") {
        let (_qemu, qmp) = launch(builder);
        let disk = usb(
            "usb-storage",
            "disk2",
            json!({"drive": "node2", "bus": "no-such-bus.0"}),
        );
        let err = run(&qmp, device::add_disk(&null_node("node2"), &disk)).unwrap_err();
        assert!(err.command_error().is_some(), "{version}: {err}");
        assert_eq!(err.step, "sending device_add", "{version}");
        assert_eq!(err.left, "block node node2 undone", "{version}: {err}");
        assert!(!node_names(&qmp).contains(&"node2".to_owned()), "{version}");
    }
}

#[test]
fn a_disk_whose_device_stays_keeps_its_node() {
    for (version, builder) in qemus("a_disk_whose_device_stays_keeps_its_node") {
        let (_qemu, qmp) = launch(builder);
        let disk: DeviceAdd =
            typed(json!({"driver": "virtio-blk-pci", "id": "vd1", "drive": "node3"}));
        run(&qmp, device::add_disk(&null_node("node3"), &disk)).expect("add disk");
        let err = run(
            &qmp,
            Remove::disk("vd1", "node3", Duration::from_millis(200)),
        )
        .unwrap_err();
        assert!(err.is_deadline(), "{version}: {err}");
        assert!(
            err.left.ends_with("block node node3 is kept"),
            "{version}: {err}"
        );
        assert!(node_names(&qmp).contains(&"node3".to_owned()), "{version}");
    }
}

#[test]
fn nic_add_with_link_state_and_remove() {
    for (version, builder) in qemus("nic_add_with_link_state_and_remove") {
        let (_qemu, qmp) = launch(builder);
        let netdev = typed(json!({"type": "user", "id": "net1"}));
        let nic = usb("usb-net", "nic1", json!({"netdev": "net1"}));
        let replies = run(&qmp, device::add_nic(&netdev, &nic, Some(false))).expect("add nic");
        assert_eq!(
            replies.len(),
            3,
            "{version}: netdev_add, device_add, set_link"
        );
        assert!(peripherals(&qmp).contains(&"nic1".to_owned()), "{version}");

        run(&qmp, Remove::nic("nic1", "net1", Duration::from_secs(5))).expect("remove nic");
        assert!(!peripherals(&qmp).contains(&"nic1".to_owned()), "{version}");
        // The netdev is gone too: its id is free again.
        qmp.execute_raw("netdev_add", json!({"type": "user", "id": "net1"}))
            .unwrap_or_else(|e| panic!("{version}: net1 was not removed: {e}"));
    }
}

#[test]
fn nic_add_rolls_back_the_netdev_when_device_add_fails() {
    for (version, builder) in qemus("nic_add_rolls_back_the_netdev_when_device_add_fails") {
        let (_qemu, qmp) = launch(builder);
        let netdev = typed(json!({"type": "user", "id": "net2"}));
        let nic: DeviceAdd =
            typed(json!({"driver": "no-such-nic", "id": "nic2", "netdev": "net2"}));
        let err = run(&qmp, device::add_nic(&netdev, &nic, Some(true))).unwrap_err();
        assert_eq!(err.step, "sending device_add", "{version}: {err}");
        assert_eq!(err.left, "netdev net2 undone", "{version}: {err}");
        qmp.execute_raw("netdev_add", json!({"type": "user", "id": "net2"}))
            .unwrap_or_else(|e| panic!("{version}: net2 was not rolled back: {e}"));
    }
}

#[test]
fn chardev_add_and_remove() {
    for (version, builder) in qemus("chardev_add_and_remove") {
        let (_qemu, qmp) = launch(builder);
        let backend = typed(json!({"type": "ringbuf", "data": {"size": 4096}}));
        let added = run(&qmp, device::add_chardev("ring1", &backend)).expect("chardev-add");
        assert_eq!(added.pty, None, "{version}: a ringbuf has no pty");
        let labels = |qmp: &qmp_std::Client| -> Vec<String> {
            let v: Vec<serde_json::Value> = qmp
                .execute_raw("query-chardev", ())
                .unwrap()
                .decode()
                .unwrap();
            v.iter()
                .filter_map(|c| c["label"].as_str().map(str::to_owned))
                .collect()
        };
        assert!(labels(&qmp).contains(&"ring1".to_owned()), "{version}");
        let err = run(&qmp, device::add_chardev("ring1", &backend)).unwrap_err();
        assert_eq!(err.operation, "chardev-add ring1", "{version}");
        assert_eq!(
            err.left, "nothing changed (QEMU refused the command)",
            "{version}"
        );
        run(&qmp, device::remove_chardev("ring1")).expect("chardev-remove");
        assert!(!labels(&qmp).contains(&"ring1".to_owned()), "{version}");
    }
}

#[test]
fn the_async_driver_runs_the_same_operations() {
    for (version, builder) in qemus("the_async_driver_runs_the_same_operations") {
        let qemu = common::machine(builder).spawn().expect("QEMU");
        smol::block_on(async {
            let qmp = qmp_smol::connect_unix(qemu.qmp_path(), qmp_std::Config::default())
                .await
                .expect("connect");
            let timer = qmp_smol::Smol::global();
            let kbd = usb("usb-kbd", "kbd2", json!({}));
            qmp_ops::run_async(&qmp, &timer, device::add(&kbd))
                .await
                .expect("device_add");
            let gone =
                qmp_ops::run_async(&qmp, &timer, DeviceDel::new("kbd2", Duration::from_secs(5)))
                    .await
                    .expect("device_del");
            assert_eq!(
                gone.decode::<serde_json::Value>().unwrap()["device"],
                "kbd2"
            );

            let balloon: DeviceAdd = typed(json!({"driver": "virtio-balloon-pci", "id": "bal2"}));
            qmp_ops::run_async(&qmp, &timer, device::add(&balloon))
                .await
                .expect("add");
            let err = qmp_ops::run_async(
                &qmp,
                &timer,
                DeviceDel::new("bal2", Duration::from_millis(200)),
            )
            .await
            .unwrap_err();
            assert!(err.is_deadline(), "{version}: {err}");
        });
    }
}

/// A real client whose subscriptions come from a hub the test can count.
struct Counted {
    qmp: qmp_smol::Client,
    hub: qmp_io::EventHub,
}

impl qmp_io::AsyncQmp for Counted {
    fn call(
        &self,
        call: qmp_io::Call,
    ) -> impl Future<Output = qmp_io::Result<qmp_io::Json>> + Send {
        self.qmp.call(call)
    }

    fn subscribe(&self, filter: qmp_io::EventFilter) -> qmp_io::Subscription {
        self.hub.subscribe(filter)
    }

    fn is_closed(&self) -> bool {
        self.qmp.is_closed()
    }
}

#[test]
fn a_dropped_async_operation_leaves_no_subscription() {
    for (version, builder) in qemus("a_dropped_async_operation_leaves_no_subscription") {
        let qemu = common::machine(builder).spawn().expect("QEMU");
        smol::block_on(async {
            let qmp = qmp_smol::connect_unix(qemu.qmp_path(), qmp_std::Config::default())
                .await
                .expect("connect");
            let qmp = Counted {
                qmp,
                hub: qmp_io::EventHub::new(&qmp_std::Config::default()),
            };
            let timer = qmp_smol::Smol::global();
            let balloon: DeviceAdd = typed(json!({"driver": "virtio-balloon-pci", "id": "bal3"}));
            qmp_ops::run_async(&qmp, &timer, device::add(&balloon))
                .await
                .expect("add");
            let mut del = Box::pin(qmp_ops::run_async(
                &qmp,
                &timer,
                DeviceDel::new("bal3", Duration::from_secs(60)),
            ));
            let cut = Box::pin(smol::Timer::after(Duration::from_millis(300)));
            let finished = futures_util::future::select(&mut del, cut).await;
            assert!(
                matches!(finished, futures_util::future::Either::Right(_)),
                "{version}"
            );
            assert_eq!(qmp.hub.subscribers(), 1, "{version}: waiting, it watches");
            drop(del);
            assert_eq!(
                qmp.hub.subscribers(),
                0,
                "{version}: dropped, it watches nothing"
            );
        });
    }
}

#[test]
fn a_nic_link_goes_down_and_up() {
    for (version, builder) in qemus("a_nic_link_goes_down_and_up") {
        let (_qemu, qmp) = launch(builder);
        let netdev = typed(json!({"type": "user", "id": "net3"}));
        let nic = usb("usb-net", "nic3", json!({"netdev": "net3"}));
        run(&qmp, device::add_nic(&netdev, &nic, None)).expect("add nic");
        // QEMU shows a NIC's link state nowhere a test can read without a
        // guest; that both commands are accepted, and an unknown NIC is
        // not, is what is checked.
        run(&qmp, device::set_link("nic3", false)).expect("down");
        run(&qmp, device::set_link("nic3", true)).expect("up");
        let err = run(&qmp, device::set_link("nic-nope", true)).unwrap_err();
        assert!(err.command_error().is_some(), "{version}: {err}");
    }
}
