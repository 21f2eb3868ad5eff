//! A dropped async operation undoes what it made ([`run_async_guarded`]):
//! the first steps of a multi-step add, a job it started, a guest file
//! handle it opened. Real QEMU 7.2 and 10.0 and a real qemu-ga.

mod common;

use core::time::Duration;
use std::time::Instant;

use common::{Scratch, machine, qemus};
use futures_util::future::{Either, select};
use qmp_io::Call;
use qmp_ops::block::{self, Job};
use qmp_ops::guest::FileRead;
use qmp_ops::sequence::{Action, Sequence};
use qmp_ops::{Agent, run_async, run_async_guarded};
use serde_json::json;

/// Runs `fut` for `after`, then drops it; true if it was still running.
async fn drop_after<F: core::future::Future>(fut: F, after: Duration) -> bool {
    let cut = smol::Timer::after(after);
    matches!(select(Box::pin(fut), Box::pin(cut)).await, Either::Right(_))
}

/// Polls `check` for up to 10 s.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if check().await {
            return true;
        }
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    false
}

/// A unix socket whose peer accepts and says nothing for `hold`: an NBD
/// client connecting to it waits in its handshake, and QEMU's monitor with it.
fn silent_peer(scratch: &Scratch, hold: Duration) -> String {
    let path = scratch.file("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let held = listener.accept();
        std::thread::sleep(hold);
        drop(held);
    });
    path
}

async fn connect(qemu: &qmp_std::Qemu) -> qmp_smol::Client {
    qmp_smol::connect_unix(qemu.qmp_path(), qmp_std::Config::default())
        .await
        .expect("connect")
}

async fn nodes(qmp: &qmp_smol::Client) -> Vec<String> {
    let v: Vec<serde_json::Value> = qmp
        .execute_raw("query-named-block-nodes", json!({"flat": true}))
        .await
        .unwrap()
        .decode()
        .unwrap();
    v.iter()
        .filter_map(|n| n["node-name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_dropped_multi_step_add_undoes_its_first_steps() {
    for (version, builder) in qemus("a_dropped_multi_step_add_undoes_its_first_steps") {
        let scratch = Scratch::new(&format!("dropadd-{version}"));
        let qemu = machine(builder).spawn().expect("QEMU");
        let stuck = silent_peer(&scratch, Duration::from_millis(1500));
        smol::block_on(async {
            let qmp = connect(&qemu).await;
            let runtime = qmp_smol::Smol::global();
            let node = json!({"driver": "null-co", "node-name": "n1"});
            let stuck = json!({
                "driver": "nbd", "node-name": "n2",
                "server": {"type": "unix", "path": stuck}, "export": "x",
            });
            let add = Sequence::new(
                "add two nodes",
                vec![
                    Action::new(Call::new("blockdev-add").arguments(node), "node n1")
                        .undo(Call::new("blockdev-del").arguments(json!({"node-name": "n1"}))),
                    Action::new(Call::new("blockdev-add").arguments(stuck), "node n2"),
                ],
            );
            let op = run_async_guarded(&qmp, &runtime, add);
            assert!(
                drop_after(op, Duration::from_millis(500)).await,
                "{version}"
            );
            // Once QEMU is free again, the undo removes the first node.
            let gone = eventually(async || !nodes(&qmp).await.contains(&"n1".to_owned())).await;
            assert!(gone, "{version}: node n1 was left behind");
        });
    }
}

#[test]
fn a_dropped_job_wait_cancels_and_dismisses_the_job_it_started() {
    for (version, builder) in qemus("a_dropped_job_wait_cancels_the_job_it_started") {
        let scratch = Scratch::new(&format!("dropjob-{version}"));
        let qemu = machine(builder).spawn().expect("QEMU");
        smol::block_on(async {
            let qmp = connect(&qemu).await;
            let runtime = qmp_smol::Smol::global();
            for (name, node) in [("a.raw", "a"), ("b.raw", "b")] {
                let create = block::create_raw(&scratch.file(name), 16 << 20, node);
                run_async(&qmp, &runtime, create).await.expect("image");
            }
            let mirror = Call::new("blockdev-mirror").arguments(json!({
                "job-id": "slow", "device": "a", "target": "b", "sync": "full",
                "speed": 1, "auto-dismiss": false,
            }));
            let op = run_async_guarded(
                &qmp,
                &runtime,
                Job::new("slow").run(mirror, Duration::from_secs(60)),
            );
            assert!(
                drop_after(op, Duration::from_millis(300)).await,
                "{version}"
            );
            let gone = eventually(async || {
                let jobs: Vec<serde_json::Value> = qmp
                    .execute_raw("query-jobs", ())
                    .await
                    .unwrap()
                    .decode()
                    .unwrap();
                jobs.is_empty()
            })
            .await;
            assert!(gone, "{version}: the job was left behind");
        });
    }
}

/// How many of `pid`'s open files are `path`.
fn opened(pid: u32, path: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_str() == Some(path)))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_dropped_file_read_closes_its_handle() {
    let Some(builder) = qmp_testsuite::peers::require_guest_agent("a_dropped_file_read") else {
        return;
    };
    let process = builder.spawn().expect("qemu-ga");
    let scratch = Scratch::new("dropread");
    let path = scratch.file("big");
    std::fs::write(&path, vec![7u8; 64 << 20]).unwrap();
    smol::block_on(async {
        let ga = qmp_smol::connect_guest_agent(process.socket_path(), qmp_std::Config::default())
            .await
            .expect("connect");
        let runtime = qmp_smol::Smol::global();
        let read = FileRead::new(path.clone()).chunk(16 << 10);
        let agent = Agent(ga.clone());
        let op = run_async_guarded(&agent, &runtime, read);
        let mut op = Box::pin(op);
        let open = eventually(async || {
            // Step the read while looking: it opens the file on its first step.
            let _ = select(
                op.as_mut(),
                Box::pin(smol::Timer::after(Duration::from_millis(20))),
            )
            .await;
            opened(process.pid(), &path) == 1
        })
        .await;
        assert!(open, "the agent never opened the file");
        drop(op);
        let closed = eventually(async || opened(process.pid(), &path) == 0).await;
        assert!(closed, "the handle was left open");
    });
}

#[test]
fn a_dropped_migration_is_cancelled() {
    for (version, builder) in qemus("a_dropped_migration_is_cancelled") {
        let scratch = Scratch::new(&format!("dropmig-{version}"));
        let qemu = machine(builder).spawn().expect("QEMU");
        // A peer that accepts and never reads: the migration stalls.
        let stalled = silent_peer(&scratch, Duration::from_secs(30));
        smol::block_on(async {
            let qmp = connect(&qemu).await;
            let runtime = qmp_smol::Smol::global();
            let migrate =
                qmp_ops::migration::migrate(&format!("unix:{stalled}"), Duration::from_secs(60));
            let op = run_async_guarded(&qmp, &runtime, migrate);
            assert!(
                drop_after(op, Duration::from_millis(500)).await,
                "{version}"
            );
            let cancelled = eventually(async || {
                let info = run_async(&qmp, &runtime, qmp_ops::migration::progress()).await;
                info.is_ok_and(|i| i.status == Some(qmp_qapi::types::MigrationStatus::Cancelled))
            })
            .await;
            assert!(cancelled, "{version}: the migration was left running");
        });
    }
}
