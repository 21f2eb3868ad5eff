//! What the operations cost against real peers, printed as a table:
//!
//! - `device_del` of a USB keyboard on `qemu-xhci`: from sending the command
//!   to QEMU's `DEVICE_DELETED` timestamp (QEMU's part), and from that
//!   timestamp to the operation returning (this library's part);
//! - guest file transfer through qemu-ga: `guest-file-read`/`-write` in
//!   chunks, against `cat` of the same file over `guest-exec`.
//!
//! `cargo bench -p qmp-ops --bench ops` (skips a peer that is missing).

use core::time::Duration;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use qmp_ops::device::{self, DeviceDel};
use qmp_ops::guest::{Exec, FileRead, FileWrite};
use qmp_ops::{Agent, run};
use qmp_std::{Config, QemuBuilder};

const ROUNDS: usize = 50;

fn micros(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_micros() as i128
}

fn median(mut v: Vec<i128>) -> i128 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn device_del() {
    let Some(program) = qmp_io::qemu::locate("qemu-system-x86_64") else {
        println!("device_del: skipped, no qemu-system-x86_64");
        return;
    };
    let builder = QemuBuilder::new()
        .binary(program)
        .machine("pc")
        .paused(true)
        .args(["-device", "qemu-xhci,id=xhci"]);
    let (_qemu, qmp) = qmp_std::launch(builder, Config::default()).expect("QEMU");
    let version = qmp.greeting().version.to_string();
    let (mut qemu_part, mut ours) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let id = format!("kbd{i}");
        let kbd = serde_json::from_value(serde_json::json!({
            "driver": "usb-kbd", "id": id, "bus": "xhci.0",
        }))
        .unwrap();
        run(&qmp, device::add(&kbd)).expect("device_add");
        let sent = SystemTime::now();
        let gone = run(&qmp, DeviceDel::new(&id, Duration::from_secs(5))).expect("device_del");
        let done = SystemTime::now();
        let t = gone.timestamp().expect("a timestamp");
        let stamped = i128::from(t.seconds) * 1_000_000 + i128::from(t.microseconds);
        qemu_part.push(stamped - micros(sent));
        ours.push(micros(done) - stamped);
    }
    println!(
        "device_del (QEMU {version}, {ROUNDS} rounds, median): send -> DEVICE_DELETED stamp {} us; \
         stamp -> operation done {} us",
        median(qemu_part),
        median(ours)
    );
}

fn throughput(what: &str, bytes: usize, f: impl FnOnce()) {
    let start = Instant::now();
    f();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what}: {} MB in {:.2} s = {:.1} MB/s",
        bytes / 1_000_000,
        secs,
        bytes as f64 / secs / 1e6
    );
}

fn guest_files() {
    let Ok(agent) = qmp_io::qemu::GuestAgentBuilder::new().spawn() else {
        println!("guest files: skipped, no qemu-ga");
        return;
    };
    let ga = qmp_std::connect_guest_agent(agent.socket_path(), Config::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("qmp-ops-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data").to_str().unwrap().to_owned();
    // qemu-ga keeps at most 16 MB of a program's output, so `cat` is
    // measured on 16 MB; the chunked transfer on that and on 100 MB.
    for size in [16_000_000usize, 100_000_000] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        throughput(
            &format!("guest-file-write {size} B, 4 MiB chunks"),
            size,
            || {
                run(&Agent(&ga), FileWrite::new(path.clone(), data.clone())).unwrap();
            },
        );
        throughput(
            &format!("guest-file-read {size} B, 4 MiB chunks"),
            size,
            || {
                let back = run(&Agent(&ga), FileRead::new(path.clone())).unwrap();
                assert_eq!(back.len(), size);
            },
        );
        if size <= 16_000_000 {
            throughput(&format!("cat over guest-exec {size} B"), size, || {
                let out = run(&Agent(&ga), Exec::new("/bin/cat").args([path.as_str()])).unwrap();
                assert_eq!(out.stdout.len(), size);
            });
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo test --benches` runs this too; only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    device_del();
    guest_files();
}
