//! Block jobs on qcow2 images made with `blockdev-create`, against real
//! QEMU 7.2 and 10.0: mirror, stream, commit, a job that fails, and a wait
//! that reaches its deadline.

mod common;

use common::Scratch;

use core::time::Duration;

use common::{launch, qemus};
use qmp_ops::block::{self, Backing, Job};
use qmp_ops::{Cause, nbd, run};
use qmp_qapi::types::JobStatus;
use serde_json::json;

const MIB: u64 = 1 << 20;
const LONG: Duration = Duration::from_secs(60);

/// Runs `qemu-io` on `node` through the human monitor (its report goes to
/// QEMU's stdout, so the data is checked in raw files on the host).
fn qemu_io(qmp: &qmp_std::Client, node: &str, command: &str) {
    let line = format!("qemu-io {node} \"{command}\"");
    let out: String = qmp
        .execute_raw("human-monitor-command", json!({"command-line": line}))
        .expect("human-monitor-command")
        .decode()
        .expect("a string");
    assert!(out.is_empty(), "qemu-io {node} {command}: {out}");
}

/// True when `len` bytes of `path` from `at` are all `byte`.
fn filled(path: &str, at: usize, len: usize, byte: u8) -> bool {
    let data = std::fs::read(path).expect("reading the image");
    data.len() >= at + len && data[at..at + len].iter().all(|&b| b == byte)
}

/// The backing file `node`'s image names, from query-named-block-nodes.
fn backing_file(qmp: &qmp_std::Client, node: &str) -> Option<String> {
    let nodes: Vec<serde_json::Value> = qmp
        .execute_raw("query-named-block-nodes", json!({"flat": true}))
        .unwrap()
        .decode()
        .unwrap();
    let n = nodes
        .iter()
        .find(|n| n["node-name"] == node)
        .expect("the node");
    n["image"]["backing-filename"].as_str().map(str::to_owned)
}

fn jobs(qmp: &qmp_std::Client) -> Vec<serde_json::Value> {
    qmp.execute_raw("query-jobs", ()).unwrap().decode().unwrap()
}

#[test]
fn mirror_reaches_ready_completes_and_copies_the_data() {
    for (version, builder) in qemus("mirror_reaches_ready_completes_and_copies_the_data") {
        let (_qemu, qmp) = launch(builder);
        let scratch = Scratch::new(&format!("mirror-{version}"));
        run(
            &qmp,
            block::create_qcow2(&scratch.file("src.qcow2"), 4 * MIB, "src", None),
        )
        .expect("create src");
        let dst = scratch.file("dst.raw");
        run(&qmp, block::create_raw(&dst, 4 * MIB, "dst")).expect("create dst");
        assert!(
            filled(&dst, 0, 4 << 20, 0),
            "{version}: a new image is zeroes"
        );
        qemu_io(&qmp, "src", "write -P 0x5a 0 1M");

        let (job, call) = block::mirror("m1", "src", "dst");
        run(&qmp, job.start(call)).expect("blockdev-mirror");
        let ready = run(&qmp, job.wait_ready(LONG)).expect("ready");
        assert_eq!(ready.status, JobStatus::Ready, "{version}");
        let info = run(&qmp, job.progress()).expect("query-jobs");
        assert_eq!(info.status, JobStatus::Ready, "{version}");
        assert!(info.total_progress > 0, "{version}: {info:?}");
        assert_eq!(info.current_progress, info.total_progress, "{version}");

        run(&qmp, job.complete()).expect("job-complete");
        let done = run(&qmp, job.wait(LONG)).expect("concluded");
        assert_eq!(done.status, JobStatus::Concluded, "{version}");
        assert!(jobs(&qmp).is_empty(), "{version}: the job was dismissed");
        assert!(
            filled(&dst, 0, 1 << 20, 0x5a),
            "{version}: the mirror did not copy"
        );
    }
}

#[test]
fn stream_and_commit_move_data_along_a_backing_chain() {
    for (version, builder) in qemus("stream_and_commit_move_data_along_a_backing_chain") {
        let (_qemu, qmp) = launch(builder);
        let scratch = Scratch::new(&format!("chain-{version}"));
        let base = scratch.file("base.raw");
        run(&qmp, block::create_raw(&base, 4 * MIB, "base")).expect("base");
        qemu_io(&qmp, "base", "write -P 0x11 0 1M");
        let over_base = Some(Backing {
            path: &base,
            node: "base",
            format: "raw",
        });
        let top = scratch.file("top.qcow2");
        run(&qmp, block::create_qcow2(&top, 4 * MIB, "top", over_base)).expect("top");
        qemu_io(&qmp, "top", "write -P 0x22 1M 1M");
        assert!(!filled(&base, 1 << 20, 1 << 20, 0x22), "{version}");

        // Commit the top into the base: top is the active layer, so the job
        // waits in `ready` for its completion.
        let (job, call) = block::commit("c1", "top");
        run(&qmp, job.start(call)).expect("block-commit");
        run(&qmp, job.wait_ready(LONG)).expect("ready");
        run(&qmp, job.complete()).expect("complete");
        run(&qmp, job.wait(LONG)).expect("commit concluded");
        assert!(
            filled(&base, 1 << 20, 1 << 20, 0x22),
            "{version}: not committed"
        );
        assert!(filled(&base, 0, 1 << 20, 0x11), "{version}");

        // Stream a fresh top from the base: it no longer needs a backing file.
        let top2 = scratch.file("top2.qcow2");
        run(&qmp, block::create_qcow2(&top2, 4 * MIB, "top2", over_base)).expect("top2");
        assert_eq!(
            backing_file(&qmp, "top2").as_deref(),
            Some(base.as_str()),
            "{version}"
        );
        let (job, call) = block::stream("s1", "top2");
        let done = run(&qmp, job.run(call, LONG)).expect("stream concluded");
        assert_eq!(done.status, JobStatus::Concluded, "{version}");
        assert!(done.progress.1 > 0, "{version}: {done:?}");
        assert_eq!(backing_file(&qmp, "top2"), None, "{version}: still backed");
    }
}

#[test]
fn a_job_that_fails_reports_its_error_and_is_dismissed() {
    for (version, builder) in qemus("a_job_that_fails_reports_its_error_and_is_dismissed") {
        let (_qemu, qmp) = launch(builder);
        let call = qmp_io::Call::new("blockdev-create").arguments(json!({
            "job-id": "bad",
            "options": {"driver": "file", "filename": "/proc/no-such-dir/x.img", "size": 0},
        }));
        let err = run(&qmp, Job::new("bad").run(call, LONG)).unwrap_err();
        let Cause::Reported(why) = &err.cause else {
            panic!("{version}: {err}");
        };
        assert!(why.contains("/proc/no-such-dir/x.img"), "{version}: {why}");
        assert_eq!(err.left, "job bad concluded and was dismissed", "{version}");
        assert!(jobs(&qmp).is_empty(), "{version}");
    }
}

#[test]
fn a_job_past_its_deadline_is_cancelled_and_dismissed() {
    for (version, builder) in qemus("a_job_past_its_deadline_is_cancelled_and_dismissed") {
        let (_qemu, qmp) = launch(builder);
        let scratch = Scratch::new(&format!("slow-{version}"));
        run(
            &qmp,
            block::create_qcow2(&scratch.file("a.qcow2"), 64 * MIB, "a", None),
        )
        .unwrap();
        run(
            &qmp,
            block::create_qcow2(&scratch.file("b.qcow2"), 64 * MIB, "b", None),
        )
        .unwrap();
        qemu_io(&qmp, "a", "write -P 0x33 0 32M");
        // One byte a second: it never gets in sync.
        let call = qmp_io::Call::new("blockdev-mirror").arguments(json!({
            "job-id": "slow", "device": "a", "target": "b", "sync": "full",
            "speed": 1, "auto-dismiss": false,
        }));
        let job = Job::new("slow");
        run(&qmp, job.start(call)).expect("blockdev-mirror");
        let err = run(&qmp, job.wait_ready(Duration::from_millis(300))).unwrap_err();
        assert!(matches!(err.cause, Cause::Deadline(_)), "{version}: {err}");
        assert_eq!(
            err.left,
            "job slow was cancelled; job slow concluded and was dismissed"
        );
        assert!(jobs(&qmp).is_empty(), "{version}: a job was left behind");

        // Told not to cancel, the job stays and the error says so.
        let call = qmp_io::Call::new("blockdev-mirror").arguments(json!({
            "job-id": "slow2", "device": "a", "target": "b", "sync": "full",
            "speed": 1, "auto-dismiss": false,
        }));
        let job = Job::new("slow2");
        run(&qmp, job.start(call)).expect("blockdev-mirror");
        let wait = job
            .wait_ready(Duration::from_millis(200))
            .cancel_on_timeout(false);
        let err = run(&qmp, wait).unwrap_err();
        assert_eq!(err.left, "job slow2 is still running", "{version}");
        assert_eq!(jobs(&qmp).len(), 1, "{version}");
        run(&qmp, job.cancel()).expect("job-cancel");
        let err = run(&qmp, job.wait(LONG)).unwrap_err();
        assert!(err.left.contains("dismissed"), "{version}: {err}");
        assert!(jobs(&qmp).is_empty(), "{version}");
    }
}

#[test]
fn waiting_for_an_unknown_job_changes_nothing() {
    for (version, builder) in qemus("waiting_for_an_unknown_job_changes_nothing") {
        let (_qemu, qmp) = launch(builder);
        let err = run(&qmp, Job::new("ghost").wait(LONG)).unwrap_err();
        assert_eq!(err.left, "nothing changed", "{version}");
        assert!(
            err.to_string().contains("QEMU has no job ghost"),
            "{version}: {err}"
        );
    }
}

#[test]
fn an_nbd_export_is_read_back_by_a_second_qemu() {
    for (version, builder) in qemus("an_nbd_export_is_read_back_by_a_second_qemu") {
        let scratch = Scratch::new(&format!("nbd-{version}"));
        let (_server, qmp) = launch(builder.clone());
        let src = scratch.file("src.raw");
        run(&qmp, block::create_raw(&src, 4 * MIB, "src")).expect("src");
        qemu_io(&qmp, "src", "write -P 0x5a 0 1M");
        let sock = scratch.file("nbd.sock");
        run(&qmp, nbd::serve(&sock, "exp0", "src", "disk", false)).expect("serve");

        // A second QEMU connects to the export and copies it to a raw file.
        let (_client, reader) = launch(builder);
        let remote = json!({
            "driver": "nbd", "node-name": "remote", "read-only": true,
            "server": {"type": "unix", "path": sock}, "export": "disk",
        });
        reader
            .execute_raw("blockdev-add", remote)
            .expect("connecting to the export");
        let copy = scratch.file("copy.raw");
        run(&reader, block::create_raw(&copy, 4 * MIB, "copy")).expect("copy");
        let backup = qmp_io::Call::new("blockdev-backup").arguments(json!({
            "job-id": "b1", "device": "remote", "target": "copy", "sync": "full",
            "auto-dismiss": false,
        }));
        run(&reader, Job::new("b1").run(backup, LONG)).expect("backup over NBD");
        assert!(
            filled(&copy, 0, 1 << 20, 0x5a),
            "{version}: the export read back wrong"
        );
        assert!(filled(&copy, 1 << 20, 3 << 20, 0), "{version}");

        // The export goes once its client lets go.
        reader
            .execute_raw("blockdev-del", json!({"node-name": "remote"}))
            .unwrap();
        let gone = run(&qmp, nbd::unexport("exp0", Duration::from_secs(10))).expect("unexport");
        assert_eq!(gone.event.name(), "BLOCK_EXPORT_DELETED", "{version}");
        run(&qmp, nbd::stop_server()).expect("nbd-server-stop");
    }
}

#[test]
fn a_failed_export_stops_the_server_it_started() {
    for (version, builder) in qemus("a_failed_export_stops_the_server_it_started") {
        let scratch = Scratch::new(&format!("nbdfail-{version}"));
        let (_qemu, qmp) = launch(builder);
        let sock = scratch.file("nbd.sock");
        let err = run(&qmp, nbd::serve(&sock, "e", "no-such-node", "x", false)).unwrap_err();
        assert_eq!(err.step, "sending block-export-add", "{version}: {err}");
        assert_eq!(
            err.left,
            format!("the NBD server on {sock} undone"),
            "{version}"
        );
        // Stopped, so it starts again.
        run(&qmp, block::create_raw(&scratch.file("n.raw"), MIB, "n")).unwrap();
        run(&qmp, nbd::serve(&sock, "e", "n", "x", false)).expect("serve after the rollback");
    }
}

#[test]
fn a_snapshot_puts_an_overlay_on_top_and_bitmaps_come_and_go() {
    for (version, builder) in qemus("a_snapshot_puts_an_overlay_on_top") {
        let scratch = Scratch::new(&format!("snap-{version}"));
        let (_qemu, qmp) = launch(builder);
        let base = scratch.file("base.raw");
        run(&qmp, block::create_raw(&base, 4 * MIB, "base")).expect("base");
        let overlay = scratch.file("overlay.qcow2");
        run(
            &qmp,
            block::snapshot("base", &base, "raw", &overlay, 4 * MIB, "ov"),
        )
        .expect("snapshot");
        assert_eq!(
            backing_file(&qmp, "ov").as_deref(),
            Some(base.as_str()),
            "{version}"
        );
        // Writes now go to the overlay; the base keeps its zeroes.
        qemu_io(&qmp, "ov", "write -P 0x44 0 64k");
        assert!(filled(&base, 0, 64 << 10, 0), "{version}");

        run(&qmp, block::add_bitmap("ov", "bm0", false)).expect("bitmap");
        let err = run(&qmp, block::add_bitmap("ov", "bm0", false)).unwrap_err();
        assert!(err.command_error().is_some(), "{version}: {err}");
        run(&qmp, block::remove_bitmap("ov", "bm0")).expect("remove bitmap");
        run(&qmp, block::add_bitmap("ov", "bm0", false)).expect("added again");
    }
}
