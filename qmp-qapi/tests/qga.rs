//! The guest agent's typed commands against a real qemu-ga (run on this
//! host, as the tests' own user), and the catalogue against its `guest-info`.
//!
//! A missing qemu-ga skips with a `SKIPPED` line on stderr, or fails when
//! `QMP_REQUIRE_PEERS` is set.

use std::io::Write;

use qmp_qapi::qga::{self, GuestAgentInfo};
use qmp_std::{Config, GuestAgentBuilder};

fn program() -> Option<std::path::PathBuf> {
    let name = std::env::var_os("QMP_QEMU_GA")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "qemu-ga".into());
    let path = std::path::PathBuf::from(&name);
    if path.components().count() > 1 {
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
}

fn skip(test: &str, why: &str) {
    let required = std::env::var_os("QMP_REQUIRE_PEERS").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(!required, "{test}: {why}, and QMP_REQUIRE_PEERS is set");
    let _ = std::io::stderr().write_all(format!("SKIPPED {test}: {why}\n").as_bytes());
}

fn names(info: &GuestAgentInfo) -> Vec<&str> {
    let mut n: Vec<&str> = info
        .supported_commands
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    n.sort_unstable();
    n
}

fn catalogue() -> Vec<&'static str> {
    qga::COMMANDS.iter().map(|(n, _)| *n).collect()
}

#[test]
fn catalogue_matches_captured_guest_info() {
    let captured: GuestAgentInfo = serde_json::from_str(include_str!("../schema/qga-7.2.json"))
        .expect("qga-7.2.json decodes as GuestAgentInfo");
    assert_eq!(names(&captured), catalogue());
}

#[test]
fn typed_commands_against_qemu_ga() {
    const TEST: &str = "typed_commands_against_qemu_ga";
    let Some(program) = program() else {
        skip(
            TEST,
            "qemu-ga not found (install: apt-get install qemu-guest-agent)",
        );
        return;
    };
    let agent = GuestAgentBuilder::new()
        .binary(program)
        .spawn()
        .expect("starting qemu-ga");
    let ga = qmp_std::connect_guest_agent(agent.socket_path(), Config::default())
        .expect("connecting to qemu-ga");

    let info = ga.execute(&qga::GuestInfo).expect("guest-info");
    // Every command the live agent lists is in the catalogue.
    for name in names(&info) {
        assert!(
            catalogue().contains(&name),
            "{name} missing from qga::COMMANDS"
        );
    }
    ga.execute(&qga::GuestPing).expect("guest-ping");
    assert!(ga.execute(&qga::GuestGetTime).expect("guest-get-time") > 0);
    assert_eq!(
        ga.execute(&qga::GuestSync { id: 42 }).expect("guest-sync"),
        42
    );
    ga.execute(&qga::GuestGetHostName)
        .expect("guest-get-host-name");
    ga.execute(&qga::GuestGetTimezone)
        .expect("guest-get-timezone");
    ga.execute(&qga::GuestGetOsinfo).expect("guest-get-osinfo");
    ga.execute(&qga::GuestGetUsers).expect("guest-get-users");
    assert!(
        !ga.execute(&qga::GuestGetVcpus)
            .expect("guest-get-vcpus")
            .is_empty()
    );
    ga.execute(&qga::GuestNetworkGetInterfaces)
        .expect("interfaces");
    ga.execute(&qga::GuestFsfreezeStatus)
        .expect("guest-fsfreeze-status");
    // These read host details a container may not have: an error reply is
    // fine, a reply that does not decode is not.
    let optional = [
        ga.execute(&qga::GuestGetFsinfo).map(drop),
        ga.execute(&qga::GuestGetDisks).map(drop),
        ga.execute(&qga::GuestGetMemoryBlocks).map(drop),
        ga.execute(&qga::GuestGetMemoryBlockInfo).map(drop),
        ga.execute(&qga::GuestGetDiskstats).map(drop),
        ga.execute(&qga::GuestGetCpustats).map(drop),
        // Windows guests only: a Linux agent answers with an error.
        ga.execute(&qga::GuestGetDevices).map(drop),
        // Reads the user's authorized_keys; a missing file is an error reply.
        ga.execute(&qga::GuestSshGetAuthorizedKeys {
            username: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        })
        .map(drop),
    ];
    for result in optional {
        if let Err(e) = result {
            assert!(e.command_error().is_some(), "{TEST}: {e}");
        }
    }

    // A file round trip.
    let dir = std::env::temp_dir().join(format!("qmp-qapi-qga-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file.txt");
    let path_str = path.to_str().unwrap().to_owned();
    let handle = ga
        .execute(&qga::GuestFileOpen {
            path: path_str.clone(),
            mode: Some("w+".into()),
        })
        .expect("guest-file-open");
    let written = ga
        .execute(&qga::GuestFileWrite {
            handle,
            buf_b64: "aGVsbG8=".into(),
            count: None,
        })
        .expect("guest-file-write");
    assert_eq!(written.count, 5);
    ga.execute(&qga::GuestFileFlush { handle }).expect("flush");
    let sought = ga
        .execute(&qga::GuestFileSeek {
            handle,
            offset: 0,
            whence: qga::GuestFileWhence::Name(qga::QGASeek::Set),
        })
        .expect("guest-file-seek");
    assert_eq!(sought.position, 0);
    let read = ga
        .execute(&qga::GuestFileRead {
            handle,
            count: Some(100),
        })
        .expect("guest-file-read");
    assert_eq!((read.count, read.buf_b64.as_str()), (5, "aGVsbG8="));
    ga.execute(&qga::GuestFileClose { handle }).expect("close");
    let _ = std::fs::remove_dir_all(&dir);

    // A program and its output.
    let started = ga
        .execute(&qga::GuestExec {
            path: "/bin/echo".into(),
            arg: Some(vec!["hi".into()]),
            capture_output: Some(qga::GuestExecCaptureOutput::Flag(true)),
            ..Default::default()
        })
        .expect("guest-exec");
    let mut status = None;
    for _ in 0..200 {
        let s = ga
            .execute(&qga::GuestExecStatus { pid: started.pid })
            .expect("guest-exec-status");
        if s.exited {
            status = Some(s);
            break;
        }
        std::thread::sleep(core::time::Duration::from_millis(10));
    }
    let status = status.expect("echo ended");
    assert_eq!(status.exitcode, Some(0));
    assert_eq!(status.out_data.as_deref(), Some("aGkK"));
}

#[test]
fn shapes_of_the_7_2_schema_decode() {
    use serde_json::json;

    // uint64 counters take values above i64::MAX.
    let nic: qga::GuestNetworkInterface = serde_json::from_value(json!({
        "name": "eth0",
        "statistics": {"rx-bytes": u64::MAX, "rx-packets": 1, "rx-errs": 0, "rx-dropped": 0,
                       "tx-bytes": 1u64 << 63, "tx-packets": 2, "tx-errs": 0, "tx-dropped": 0}
    }))
    .unwrap();
    let stats = nic.statistics.unwrap();
    assert_eq!((stats.rx_bytes, stats.tx_bytes), (u64::MAX, 1 << 63));

    // A disk's SMART data is a union on the bus type.
    let mut smart = serde_json::Map::new();
    smart.insert("type".into(), json!("nvme"));
    for key in [
        "critical-warning",
        "temperature",
        "available-spare",
        "available-spare-threshold",
        "percentage-used",
    ] {
        smart.insert(key.into(), json!(1));
    }
    for counter in [
        "data-units-read",
        "data-units-written",
        "host-read-commands",
        "host-write-commands",
        "controller-busy-time",
        "power-cycles",
        "power-on-hours",
        "unsafe-shutdowns",
        "media-errors",
        "number-of-error-log-entries",
    ] {
        smart.insert(format!("{counter}-lo"), json!(u64::MAX));
        smart.insert(format!("{counter}-hi"), json!(0));
    }
    let disk: qga::GuestDiskInfo =
        serde_json::from_value(json!({"name": "/dev/nvme0n1", "partition": false, "smart": smart}))
            .unwrap();
    let Some(qga::GuestDiskSmart::Nvme(nvme)) = &disk.smart else {
        panic!("{disk:?}")
    };
    assert_eq!(nvme.power_on_hours_lo, u64::MAX);
    assert_eq!(serde_json::to_value(&disk.smart).unwrap(), json!(smart));
    let other: qga::GuestDiskSmart =
        serde_json::from_value(json!({"type": "scsi", "x": 1})).unwrap();
    assert_eq!(other.tag(), "scsi");

    // A device's id is a union on its bus.
    let dev: qga::GuestDeviceInfo = serde_json::from_value(json!({
        "driver-name": "viostor",
        "id": {"type": "pci", "vendor-id": 0x1af4, "device-id": 0x1001}
    }))
    .unwrap();
    let Some(qga::GuestDeviceId::Pci(pci)) = &dev.id else {
        panic!("{dev:?}")
    };
    assert_eq!((pci.vendor_id, pci.device_id), (0x1af4, 0x1001));

    // capture-output: 7.2's flag, or a newer agent's mode.
    for (value, expect) in [
        (json!(true), qga::GuestExecCaptureOutput::Flag(true)),
        (
            json!("merged"),
            qga::GuestExecCaptureOutput::Mode(qga::GuestExecCaptureOutputMode::Merged),
        ),
    ] {
        let decoded: qga::GuestExecCaptureOutput = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(decoded, expect);
        assert_eq!(serde_json::to_value(&decoded).unwrap(), value);
    }
}
