//! Guest-agent operations against a real qemu-ga (`-m unix-listen`). The
//! agent runs on this host, so `guest-exec` runs host programs and the
//! `guest-file-*` commands touch host files, in a temporary directory.

mod common;

use common::Scratch;

use core::time::Duration;

use qmp_ops::guest::{Exec, FileRead, FileWrite};
use qmp_ops::{Agent, Cause, run};
use qmp_std::Config;

fn agent(test: &str, config: Config) -> Option<(qmp_std::GuestAgentProcess, qmp_std::GuestAgent)> {
    let builder = qmp_testsuite::peers::require_guest_agent(test)?;
    let process = builder.spawn().expect("starting qemu-ga");
    let client = qmp_std::connect_guest_agent(process.socket_path(), config).expect("connect");
    Some((process, client))
}

/// Bytes that are not all alike (xorshift), so a misplaced chunk shows.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn exec_passes_stdin_and_captures_both_outputs_and_the_exit_code() {
    let Some((_ga, ga)) = agent("exec_passes_stdin", Config::default()) else {
        return;
    };
    let exec = Exec::new("/bin/sh")
        .args(["-c", "tr a-z A-Z; echo oops >&2; exit 3"])
        .stdin(b"hello agent\n");
    let out = run(&Agent(&ga), exec).expect("guest-exec");
    assert_eq!(out.stdout, b"HELLO AGENT\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(out.signal, None);
    assert!(!out.truncated);
}

#[test]
fn exec_past_its_deadline_says_the_program_still_runs() {
    let Some((_ga, ga)) = agent("exec_past_its_deadline", Config::default()) else {
        return;
    };
    let exec = Exec::new("/bin/sleep")
        .args(["3"])
        .timeout(Duration::from_millis(300));
    let err = run(&Agent(&ga), exec).unwrap_err();
    assert!(matches!(err.cause, Cause::Deadline(_)), "{err}");
    assert!(err.left.contains("is still running in the guest"), "{err}");
}

#[test]
fn exec_of_a_missing_program_changes_nothing() {
    let Some((_ga, ga)) = agent("exec_of_a_missing_program", Config::default()) else {
        return;
    };
    let err = run(&Agent(&ga), Exec::new("/no/such/program")).unwrap_err();
    assert!(err.command_error().is_some(), "{err}");
    assert_eq!(err.left, "nothing changed (QEMU refused the command)");
}

#[test]
fn a_100_mb_file_is_written_and_read_back_byte_identical() {
    let Some((_ga, ga)) = agent("a_100_mb_file", Config::default()) else {
        return;
    };
    let scratch = Scratch::new("100mb");
    let path = scratch.file("big");
    let data = noise(100_000_000);
    let written = run(&Agent(&ga), FileWrite::new(path.clone(), data.clone())).expect("write");
    assert_eq!(written, 100_000_000);
    assert!(
        std::fs::read(&path).unwrap() == data,
        "the file on disk differs"
    );
    let back = run(&Agent(&ga), FileRead::new(path)).expect("read");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the bytes read back differ");
}

#[test]
fn a_file_larger_than_the_reply_cap_is_read_without_raising_it() {
    let cap = 1 << 20;
    let mut config = Config::default();
    config.limits.receive.max_message_size = cap;
    let Some((_ga, ga)) = agent("a_file_larger_than_the_reply_cap", config) else {
        return;
    };
    let scratch = Scratch::new("cap");
    let path = scratch.file("three-mib");
    let data = noise(3 << 20);
    std::fs::write(&path, &data).unwrap();

    // In one piece, the reply is over the cap: the client refuses it.
    let err = run(&Agent(&ga), FileRead::new(path.clone()).chunk(3 << 20)).unwrap_err();
    assert!(
        matches!(
            err.cause,
            Cause::Command(qmp_io::Error::ReplyTooLarge { .. })
        ),
        "{err}"
    );
    assert!(err.left.contains("closed"), "{err}");
    // Chunked under the cap, it reads whole.
    let back = run(&Agent(&ga), FileRead::new(path).reply_cap(cap)).expect("read");
    assert!(back == data, "the bytes read back differ");
}

#[test]
fn a_read_over_its_limit_fails_and_closes_the_handle() {
    let Some((_ga, ga)) = agent("a_read_over_its_limit", Config::default()) else {
        return;
    };
    let scratch = Scratch::new("limit");
    let path = scratch.file("five-k");
    std::fs::write(&path, noise(5000)).unwrap();
    let err = run(
        &Agent(&ga),
        FileRead::new(path.clone()).limit(1000).chunk(512),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("larger than the 1000-byte limit"),
        "{err}"
    );
    assert!(err.left.ends_with("closed"), "{err}");
    assert_eq!(err.step, "guest-file-read");
    // Exactly at the limit is fine.
    let back = run(&Agent(&ga), FileRead::new(path).limit(5000).chunk(512)).expect("read");
    assert_eq!(back.len(), 5000);
}

#[test]
fn reading_a_missing_file_changes_nothing() {
    let Some((_ga, ga)) = agent("reading_a_missing_file", Config::default()) else {
        return;
    };
    let err = run(&Agent(&ga), FileRead::new("/no/such/file")).unwrap_err();
    assert!(err.command_error().is_some(), "{err}");
    assert_eq!(err.step, "sending guest-file-open");
}

#[test]
fn the_async_driver_runs_guest_operations() {
    let Some(builder) = qmp_testsuite::peers::require_guest_agent("the_async_driver_runs_guest")
    else {
        return;
    };
    let process = builder.spawn().expect("qemu-ga");
    let scratch = Scratch::new("async");
    let path = scratch.file("f");
    smol::block_on(async {
        let ga = qmp_smol::connect_guest_agent(process.socket_path(), Config::default())
            .await
            .expect("connect");
        let timer = qmp_smol::Smol::global();
        let data = noise(10_000_000);
        let n = qmp_ops::run_async(
            &Agent(&ga),
            &timer,
            FileWrite::new(path.clone(), data.clone()).chunk(1 << 20),
        )
        .await
        .expect("write");
        assert_eq!(n, 10_000_000);
        let back = qmp_ops::run_async(&Agent(&ga), &timer, FileRead::new(path.clone()))
            .await
            .expect("read");
        assert!(back == data);
        let out = qmp_ops::run_async(
            &Agent(&ga),
            &timer,
            Exec::new("/bin/cat").args([path.as_str()]),
        )
        .await
        .expect("exec");
        assert_eq!(out.exit_code, Some(0));
        assert!(out.stdout == data, "cat through guest-exec differs");
    });
}
