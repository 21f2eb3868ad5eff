//! Migration against real QEMU 7.2 and 10.0: to `exec:cat > FILE`, to a
//! second local QEMU started with `-incoming unix:PATH`, to nowhere, past
//! its deadline, and cancelled.

mod common;

use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::Arc;

use common::{Scratch, launch, qemus};
use qmp_ops::migration::{self, cancel, migrate};
use qmp_ops::{Cause, run};
use qmp_qapi::types::MigrationStatus;
use serde_json::json;

const LONG: Duration = Duration::from_secs(120);

/// The run state once it is none of `passing` (QEMU moves the source
/// through `finish-migrate` to `postmigrate`, and the target out of
/// `inmigrate`, shortly after the migration's own status changes), waiting
/// up to 5 s.
fn settled(qmp: &qmp_std::Client, passing: &[&str]) -> String {
    let mut now = status(qmp);
    for _ in 0..100 {
        if !passing.contains(&now.as_str()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        now = status(qmp);
    }
    now
}

fn status(qmp: &qmp_std::Client) -> String {
    let s: serde_json::Value = qmp
        .execute_raw("query-status", ())
        .unwrap()
        .decode()
        .unwrap();
    s["status"].as_str().unwrap().to_owned()
}

/// A unix socket whose peer accepts and never reads: a migration to it
/// fills the socket buffer and stalls, so it is still running when the
/// test acts on it. The peer lives as long as the returned listener thread.
fn stalled_peer(scratch: &Scratch) -> String {
    let path = scratch.file("stalled.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
    });
    format!("unix:{path}")
}

#[test]
fn migration_to_a_file_completes_with_progress() {
    for (version, builder) in qemus("migration_to_a_file_completes_with_progress") {
        let (_qemu, qmp) = launch(builder);
        let scratch = Scratch::new(&format!("migfile-{version}"));
        let file = scratch.file("state");
        let reports = Arc::new(AtomicUsize::new(0));
        let seen = reports.clone();
        let op = migrate(&format!("exec:cat > {file}"), LONG).on_progress(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
        });
        let done = run(&qmp, op).expect("migrate");
        assert_eq!(done.status, Some(MigrationStatus::Completed), "{version}");
        assert!(done.ram.is_some_and(|r| r.total > 0), "{version}");
        assert!(reports.load(Ordering::Relaxed) >= 1, "{version}");
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(size > 1000, "{version}: {size} bytes");
        assert_eq!(
            settled(&qmp, &["prelaunch", "finish-migrate"]),
            "postmigrate",
            "{version}"
        );
    }
}

#[test]
fn migration_to_a_second_qemu_completes() {
    for (version, builder) in qemus("migration_to_a_second_qemu_completes") {
        let scratch = Scratch::new(&format!("migqemu-{version}"));
        let socket = scratch.file("incoming.sock");
        let incoming = format!("unix:{socket}");
        let target = common::machine(builder.clone())
            .args(["-incoming", incoming.as_str()])
            .spawn()
            .expect("the target QEMU");
        let target_qmp =
            qmp_std::connect_unix(target.qmp_path(), qmp_std::Config::default()).unwrap();
        assert_eq!(status(&target_qmp), "inmigrate", "{version}");
        let (_qemu, qmp) = launch(builder);
        let done = run(&qmp, migrate(&incoming, LONG)).expect("migrate");
        assert_eq!(done.status, Some(MigrationStatus::Completed), "{version}");
        assert_eq!(
            settled(&qmp, &["prelaunch", "finish-migrate"]),
            "postmigrate",
            "{version}"
        );
        // The target has the VM now (paused, as the source was).
        let now = settled(&target_qmp, &["inmigrate"]);
        assert!(
            now == "paused" || now == "prelaunch",
            "{version}: target is {now}"
        );
    }
}

#[test]
fn migration_to_nowhere_fails_and_leaves_the_vm() {
    for (version, builder) in qemus("migration_to_nowhere_fails_and_leaves_the_vm") {
        let (_qemu, qmp) = launch(builder);
        let before = status(&qmp);
        let err = run(&qmp, migrate("unix:/no/such/dir/sock", LONG)).unwrap_err();
        let fails_clearly = match &err.cause {
            Cause::Command(_) => err.left.starts_with("nothing changed"),
            Cause::Reported(why) => !why.is_empty() && err.left.contains("still here"),
            _ => false,
        };
        assert!(fails_clearly, "{version}: {err}");
        assert!(
            err.to_string().contains("/no/such/dir/sock"),
            "{version}: {err}"
        );
        assert_eq!(status(&qmp), before, "{version}");
    }
}

#[test]
fn a_migration_past_its_deadline_is_cancelled() {
    for (version, builder) in qemus("a_migration_past_its_deadline_is_cancelled") {
        let (_qemu, qmp) = launch(builder);
        let scratch = Scratch::new(&format!("migdeadline-{version}"));
        let uri = stalled_peer(&scratch);
        let before = status(&qmp);
        let err = run(&qmp, migrate(&uri, Duration::from_millis(300))).unwrap_err();
        assert!(matches!(err.cause, Cause::Deadline(_)), "{version}: {err}");
        assert!(err.left.contains("cancelled"), "{version}: {err}");
        let info = run(&qmp, migration::wait(LONG)).unwrap_err();
        assert!(info.to_string().contains("cancelled"), "{version}: {info}");
        assert_eq!(status(&qmp), before, "{version}: the VM stays");
    }
}

#[test]
fn cancel_ends_a_running_migration() {
    for (version, builder) in qemus("cancel_ends_a_running_migration") {
        let (_qemu, qmp) = launch(builder);
        let scratch = Scratch::new(&format!("migcancel-{version}"));
        let uri = stalled_peer(&scratch);
        qmp.execute_raw("migrate", json!({"uri": uri}))
            .expect("migrate");
        std::thread::sleep(Duration::from_millis(200));
        let p = run(&qmp, migration::progress()).expect("query-migrate");
        assert_eq!(
            p.status,
            Some(MigrationStatus::Active),
            "{version}: stalled, it is still running"
        );
        // As an iterator: reports while it runs (a stalled one stays active).
        let reports: Vec<_> = migration::progress_iter(&qmp, Duration::from_millis(20))
            .take(3)
            .collect::<Result<_, _>>()
            .expect("query-migrate");
        assert!(
            reports
                .iter()
                .all(|r| r.status == Some(MigrationStatus::Active)),
            "{version}"
        );
        let done = run(&qmp, cancel(LONG)).expect("migrate_cancel");
        assert_eq!(done.status, Some(MigrationStatus::Cancelled), "{version}");
    }
}

#[test]
fn waiting_with_no_migration_changes_nothing() {
    for (version, builder) in qemus("waiting_with_no_migration_changes_nothing") {
        let (_qemu, qmp) = launch(builder);
        let err = run(&qmp, migration::wait(LONG)).unwrap_err();
        assert_eq!(err.left, "nothing changed", "{version}: {err}");
    }
}

#[test]
fn an_incoming_migration_on_a_deferred_target_completes() {
    for (version, builder) in qemus("an_incoming_migration_on_a_deferred_target_completes") {
        let scratch = Scratch::new(&format!("migdefer-{version}"));
        let uri = format!("unix:{}", scratch.file("incoming.sock"));
        let target = common::machine(builder.clone())
            .args(["-incoming", "defer"])
            .spawn()
            .expect("the target QEMU");
        let target_qmp =
            qmp_std::connect_unix(target.qmp_path(), qmp_std::Config::default()).unwrap();
        // Nothing listens yet: the deadline says the target still waits.
        let err = run(
            &target_qmp,
            migration::incoming(&uri, Duration::from_millis(300)),
        )
        .unwrap_err();
        assert!(matches!(err.cause, Cause::Deadline(_)), "{version}: {err}");
        assert!(
            err.left.starts_with("the target is still waiting"),
            "{version}: {err}"
        );

        let (_qemu, qmp) = launch(builder);
        let waiting = std::thread::spawn(move || {
            let done = run(&target_qmp, migration::wait_incoming(LONG));
            (done, settled(&target_qmp, &["inmigrate"]))
        });
        run(&qmp, migrate(&uri, LONG)).expect("migrate");
        let (done, now) = waiting.join().unwrap();
        let done = done.expect("the target's side");
        assert_eq!(done.status, Some(MigrationStatus::Completed), "{version}");
        assert!(
            now == "paused" || now == "prelaunch",
            "{version}: target is {now}"
        );
    }
}

#[test]
fn a_migration_paused_before_switchover_resumes_and_completes() {
    for (version, builder) in qemus("a_migration_paused_before_switchover_resumes") {
        let scratch = Scratch::new(&format!("migpause-{version}"));
        let (_qemu, qmp) = launch(builder);
        let pause =
            json!({"capabilities": [{"capability": "pause-before-switchover", "state": true}]});
        qmp.execute_raw("migrate-set-capabilities", pause)
            .expect("capability");
        let uri = format!("exec:cat > {}", scratch.file("state"));
        let paused = run(
            &qmp,
            migrate(&uri, LONG).until(MigrationStatus::PreSwitchover),
        )
        .expect("paused before switchover");
        assert_eq!(
            paused.status,
            Some(MigrationStatus::PreSwitchover),
            "{version}"
        );
        run(&qmp, migration::resume(MigrationStatus::PreSwitchover)).expect("migrate-continue");
        let done = run(&qmp, migration::wait(LONG)).expect("completed");
        assert_eq!(done.status, Some(MigrationStatus::Completed), "{version}");
    }
}

#[test]
fn progress_as_a_stream_ends_with_the_final_report() {
    use futures_util::StreamExt;
    for (version, builder) in qemus("progress_as_a_stream_ends_with_the_final_report") {
        let scratch = Scratch::new(&format!("migstream-{version}"));
        let qemu = common::machine(builder).spawn().expect("QEMU");
        smol::block_on(async {
            let qmp = qmp_smol::connect_unix(qemu.qmp_path(), qmp_std::Config::default())
                .await
                .unwrap();
            let timer = qmp_smol::Smol::global();
            let uri = format!("exec:cat > {}", scratch.file("state"));
            qmp.execute_raw("migrate", json!({"uri": uri}))
                .await
                .expect("migrate");
            let reports: Vec<_> =
                migration::progress_stream(&qmp, &timer, Duration::from_millis(10))
                    .collect()
                    .await;
            let last = reports.last().unwrap().as_ref().expect("query-migrate");
            assert_eq!(last.status, Some(MigrationStatus::Completed), "{version}");
            assert!(
                reports[..reports.len() - 1]
                    .iter()
                    .all(|r| r.as_ref().is_ok_and(|r| !migration::is_final(r))),
                "{version}"
            );
        });
    }
}
