//! The assertions of the cases, taking what the client returned, so the
//! blocking and the async runs of a case check exactly the same things.

use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use qmp_io::{
    AddFdInfo, Disconnect, Error, ErrorClass, Event, Gap, Greeting, Json, Result, Subscription,
};
use serde_json::Value;

use crate::fixtures::{
    self, DEADLINE_SLACK, DISCONNECT_BOUND, FD_NAME, MOCK_CAPACITY, MOCK_EVENT, MOCK_EVENTS,
    OPAQUE, PENDING_AT_KILL, SHORT_TIMEOUT, StatusInfo, UNKNOWN_COMMAND,
};

/// What a subscriber yields.
pub type Item = core::result::Result<Arc<Event>, Gap>;

fn value(json: &Json) -> Value {
    json.decode()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {json}"))
}

/// The value of a call that must succeed.
///
/// # Panics
///
/// If it failed, naming `what`.
pub fn ok<T: core::fmt::Debug>(what: &str, result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

fn command_error(what: &str, result: Result<impl core::fmt::Debug>) -> qmp_io::CommandError {
    match result {
        Err(Error::Command(e)) => e,
        other => panic!("{what}: expected a QMP error reply, got {other:?}"),
    }
}

/// The greeting matches `query-version`, QEMU is 7 or newer, and `oob` was
/// offered and negotiated.
pub fn greeting(greeting: &Greeting, oob_enabled: bool, version: Result<Json>) {
    let version = value(&ok("query-version", version));
    let qemu = &version["qemu"];
    let asked = [&qemu["major"], &qemu["minor"], &qemu["micro"]].map(Value::as_u64);
    let g = greeting.version;
    assert_eq!(
        asked,
        [Some(g.major), Some(g.minor), Some(g.micro)],
        "the greeting says {g}, query-version says {version}"
    );
    assert!(g.major >= 7, "QEMU {g} is older than 7");
    // The system's QEMU is whatever the distribution ships; the second one is
    // the 10.0 that scripts/prepare-qemu10.sh unpacked.
    if crate::peers::selected_qemu() == crate::peers::QemuRelease::V10_0 {
        assert_eq!((g.major, g.minor), (10, 0), "$QMP_QEMU10 runs QEMU {g}");
    }
    assert!(
        greeting.capabilities.iter().any(|c| c == "oob"),
        "oob not offered: {:?}",
        greeting.capabilities
    );
    assert!(
        oob_enabled && greeting.oob,
        "oob offered but not negotiated"
    );
}

/// `query-status`, typed and raw, says the guest runs.
pub fn status(typed: Result<StatusInfo>, raw: Result<Json>) {
    let typed = ok("typed query-status", typed);
    assert_eq!(
        typed,
        StatusInfo {
            status: "running".into(),
            running: true
        }
    );
    let raw = value(&ok("raw query-status", raw));
    assert_eq!(raw["status"], "running", "{raw}");
    assert_eq!(raw["running"], true, "{raw}");
}

/// Just `STOP` then `RESUME`, with sane, ordered timestamps.
pub fn stop_then_resume(who: &str, events: &[Item]) {
    let events: Vec<&Arc<Event>> = events
        .iter()
        .map(|e| e.as_ref().unwrap_or_else(|l| panic!("{who}: {l}")))
        .collect();
    let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
    assert_eq!(names, ["STOP", "RESUME"], "{who}");
    let stamps: Vec<(i64, i64)> = events
        .iter()
        .map(|e| {
            let t = e
                .timestamp()
                .unwrap_or_else(|| panic!("{who}: {} has no timestamp", e.name()));
            assert!(
                t.seconds > 0 && (0..1_000_000).contains(&t.microseconds),
                "{who}: bad timestamp {t:?}"
            );
            (t.seconds, t.microseconds)
        })
        .collect();
    assert!(stamps[0] <= stamps[1], "{who}: {stamps:?} out of order");
}

/// A subscriber whose filter matched nothing received nothing.
pub fn nothing_received(item: Option<Item>) {
    assert!(item.is_none(), "a filter matching no event got {item:?}");
}

/// Call `n` of the concurrency case got its own answer: the status, or the
/// error naming its own device.
pub fn concurrent_answer(n: usize, result: Result<Json>) {
    if fixtures::asks_status(n) {
        let status = value(&ok("query-status", result));
        assert_eq!(status["status"], "running", "call {n}: {status}");
    } else {
        let e = command_error(&format!("call {n}"), result);
        // QEMU 7.2 says DeviceNotFound; older ones said GenericError.
        assert!(
            matches!(
                e.class,
                ErrorClass::DeviceNotFound | ErrorClass::GenericError
            ),
            "call {n}: {e}"
        );
        assert!(
            e.desc.contains(&format!("'dev-{n}'")),
            "call {n} got someone else's answer: {e}"
        );
    }
}

/// The unknown command was refused as such, and a later command worked.
pub fn unknown_command(result: Result<Json>, after: Result<Json>) {
    let e = command_error("an unknown command", result);
    assert_eq!(e.class, ErrorClass::CommandNotFound, "{e}");
    assert!(e.desc.contains(UNKNOWN_COMMAND), "{e}");
    let after = value(&ok("query-status after an unknown command", after));
    assert_eq!(after["status"], "running", "{after}");
}

/// Both out-of-band commands were answered (with errors: `migrate-pause`
/// without a migration, `query-status` which does not allow oob).
pub fn oob_answers(oob_enabled: bool, migrate_pause: Result<Json>, status: Result<Json>) {
    assert!(oob_enabled, "oob not negotiated");
    let e = command_error("exec-oob migrate-pause", migrate_pause);
    assert_eq!(e.class, ErrorClass::GenericError, "{e}");
    let e = command_error("exec-oob query-status", status);
    assert!(e.desc.contains("query-status"), "{e}");
}

/// The call timed out after [`SHORT_TIMEOUT`].
pub fn timed_out(result: Result<Json>) {
    match result {
        Err(Error::Timeout(d)) => assert_eq!(d, SHORT_TIMEOUT),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// The calls after a timeout got their own answers, not the late reply of
/// the call that timed out.
pub fn answers_after_timeout(test: &str, name: Result<Json>, status: Result<Json>) {
    let name = value(&ok("query-name", name));
    assert_eq!(name, serde_json::json!({ "name": test }));
    let status = value(&ok("query-status", status));
    assert_eq!(status["status"], "running", "{status}");
}

/// The deadlines case, given each call's result and duration in the order of
/// [`fixtures::deadline_calls`]: every short call failed with exactly its
/// timeout, no sooner and long before the client's default; every held call
/// got its own reply (its command's name) once the mock let go.
pub fn deadlines(results: Vec<(Result<Json>, Duration)>) {
    let calls: Vec<_> = fixtures::deadline_calls().collect();
    assert_eq!(results.len(), calls.len());
    for ((command, timeout), (result, took)) in calls.into_iter().zip(results) {
        let Some(Some(timeout)) = timeout.filter(|_| command == "deadline-short") else {
            own_reply(command, result);
            continue;
        };
        match result {
            Err(Error::Timeout(d)) => assert_eq!(d, timeout),
            other => panic!("expected a {timeout:?} timeout, got {other:?}"),
        }
        assert!(took >= timeout, "a {timeout:?} call failed after {took:?}");
        assert!(
            took < timeout + DEADLINE_SLACK,
            "a {timeout:?} call failed only after {took:?}"
        );
    }
}

/// A call answered with its own command's name (the deadline mock's replies).
pub fn own_reply(command: &str, result: Result<Json>) {
    let reply = value(&ok(command, result));
    assert_eq!(reply, serde_json::json!(command));
}

/// Every call pending when QEMU was killed failed as disconnected, within
/// [`DISCONNECT_BOUND`] of the kill.
pub fn failed_at_kill(killed: Instant, results: Vec<(Result<Json>, Instant)>) {
    assert_eq!(results.len(), PENDING_AT_KILL);
    for (n, (result, at)) in results.into_iter().enumerate() {
        assert!(
            matches!(result, Err(Error::Disconnected(_))),
            "pending call {n}: {result:?}"
        );
        assert!(
            at >= killed,
            "pending call {n} ended before QEMU was killed"
        );
        let late = at - killed;
        assert!(
            late < DISCONNECT_BOUND,
            "pending call {n} failed {late:?} after the kill"
        );
    }
}

/// A call on a connection that is over fails at once.
pub fn fails_at_once(result: Result<Json>, took: Duration) {
    assert!(
        matches!(result, Err(Error::Disconnected(_))),
        "a call after the disconnect: {result:?}"
    );
    assert!(
        took < DISCONNECT_BOUND,
        "a call after the disconnect took {took:?}"
    );
}

/// The connection ended because QEMU went away.
pub fn closed_by_peer(reason: Option<Disconnect>) {
    assert!(
        matches!(reason, Some(Disconnect::Eof { .. } | Disconnect::Io(_))),
        "the connection should have ended with QEMU: {reason:?}"
    );
}

/// The subscriber's stream ended with the connection.
pub fn stream_ended(item: Option<Item>) {
    assert!(
        item.is_none(),
        "expected the end of the events, got {item:?}"
    );
}

fn fdset_entry(fdsets: &Json, info: AddFdInfo) -> Option<Value> {
    let fdsets = value(fdsets);
    let sets = fdsets.as_array().expect("query-fdsets returns an array");
    sets.iter()
        .filter(|set| set["fdset-id"].as_u64() == Some(info.fdset_id))
        .flat_map(|set| set["fds"].as_array().cloned().unwrap_or_default())
        .find(|fd| fd["fd"].as_i64() == Some(info.fd))
}

/// `add-fd` put the fd in a set that `query-fdsets` lists with its opaque.
pub fn fd_listed(info: Result<AddFdInfo>, fdsets: Result<Json>) -> AddFdInfo {
    let info = ok("add-fd", info);
    let fdsets = ok("query-fdsets", fdsets);
    let entry = fdset_entry(&fdsets, info)
        .unwrap_or_else(|| panic!("{info:?} is not in query-fdsets: {fdsets}"));
    assert_eq!(entry["opaque"], OPAQUE, "{fdsets}");
    info
}

/// After `remove-fd`, `query-fdsets` no longer lists the fd.
pub fn fd_removed(info: AddFdInfo, removed: Result<()>, fdsets: Result<Json>) {
    ok("remove-fd", removed);
    let fdsets = ok("query-fdsets", fdsets);
    assert!(
        fdset_entry(&fdsets, info).is_none(),
        "{info:?} still listed after remove-fd: {fdsets}"
    );
}

/// `getfd` and the first `closefd` worked; the second `closefd` was refused.
pub fn named_fd(sent: Result<()>, closed: Result<()>, closed_again: Result<()>) {
    ok("getfd", sent);
    ok("closefd", closed);
    let e = command_error("a second closefd", closed_again);
    assert!(e.desc.contains(FD_NAME), "{e}");
}

/// A call with too many fds failed before anything was sent, and the
/// connection still answers.
pub fn too_many_fds(result: Result<Json>, after: Result<Json>) {
    refused_too_many_fds(result);
    ok("query-status after the refused call", after);
}

/// A call with too many fds failed with `TooManyFds`, saying how many.
pub fn refused_too_many_fds(result: Result<Json>) {
    match result {
        Err(Error::TooManyFds { count }) => {
            assert_eq!(count, qmp_io::fd::MAX_FDS_PER_MESSAGE + 1)
        }
        other => panic!("17 fds on one getfd: expected TooManyFds, got {other:?}"),
    }
}

/// An fd offered on a tcp connection was refused before anything was sent,
/// and the connection still answers.
pub fn fds_refused_on_tcp(refused: Result<()>, after: Result<Json>) {
    assert!(
        matches!(refused, Err(Error::FdPassingUnsupported)),
        "an fd on tcp: {refused:?}"
    );
    ok("query-status after the refused fd", after);
}

/// `query-qmp-schema` is a big JSON array.
pub fn schema(result: Result<Json>) {
    let schema = ok("query-qmp-schema", result);
    let size = schema.as_str().len();
    assert!(size > 150 << 10, "the schema is only {size} bytes");
    let entries = value(&schema)
        .as_array()
        .map(Vec::len)
        .expect("the schema is not an array");
    assert!(entries > 100, "the schema has {entries} entries");
}

/// `guest-info` names the agent's version.
pub fn guest_info(result: Result<Json>) {
    let info = value(&ok("guest-info", result));
    let version = info["version"].as_str().unwrap_or_default();
    assert!(
        version.split('.').count() >= 2,
        "guest-info has no version: {info}"
    );
}

/// The pid `guest-exec` started.
pub fn exec_pid(result: Result<Json>) -> i64 {
    let started = value(&ok("guest-exec", result));
    started["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("guest-exec returned no pid: {started}"))
}

/// Whether `guest-exec-status` says `echo hello` is done; once it is, it
/// exited with 0 and printed `hello`.
pub fn exec_done(result: Result<Json>) -> bool {
    let status = value(&ok("guest-exec-status", result));
    if status["exited"] != true {
        return false;
    }
    assert_eq!(status["exitcode"], 0, "{status}");
    // base64 of "hello\n".
    assert_eq!(status["out-data"], "aGVsbG8K", "{status}");
    true
}

/// `guest-ping` and `guest-get-time` got their own answers: not the stale
/// `guest-info` reply, nor each other's.
pub fn agent_answers(ping: Result<Json>, time: Result<Json>) {
    let ping = value(&ok("guest-ping", ping));
    assert_eq!(ping, serde_json::json!({}), "guest-ping");
    let time = value(&ok("guest-get-time", time));
    assert!(
        time.as_u64()
            .is_some_and(|ns| ns > 1_000_000_000_000_000_000),
        "guest-get-time returned {time}, not nanoseconds since the epoch"
    );
}

/// The event the fast subscriber received is mock event `n`.
pub fn numbered(n: usize, item: Option<Item>) {
    let event = match item {
        Some(Ok(event)) => event,
        other => panic!("event {n}: got {other:?}"),
    };
    assert_eq!(event.name(), MOCK_EVENT);
    let data: Value = event.decode().expect("event data");
    assert_eq!(data["n"], n, "events out of order");
}

/// A subscriber filtering on a data member got the one event that matched.
pub fn picked_only(picky: &Subscription) {
    let got: Vec<Item> = core::iter::from_fn(|| picky.try_recv()).collect();
    assert_eq!(got.len(), 1, "{got:?}");
    numbered(fixtures::PICKED, got.into_iter().next());
}

/// A command was answered while a subscriber sat on a full queue.
pub fn answered_while_lagging(result: Result<Json>) {
    let status = value(&ok("query-status while a subscriber lags", result));
    assert_eq!(status["status"], "running", "{status}");
}

/// The slow subscriber learnt how many events it lost, then got the last
/// [`MOCK_CAPACITY`] in order, and nothing more.
pub fn lagged_tail(slow: &Subscription) {
    let lost = MOCK_EVENTS - MOCK_CAPACITY;
    let mut items = core::iter::from_fn(|| slow.try_recv());
    let first = items.next();
    assert!(
        matches!(first, Some(Err(Gap::Lagged(n))) if n == lost as u64),
        "{first:?}"
    );
    for n in lost..MOCK_EVENTS {
        numbered(n, items.next());
    }
    let rest: Vec<Item> = items.collect();
    assert!(rest.is_empty(), "more than the queue held: {rest:?}");
}

/// Commands the agent never answers completed as `{}`, and `count` of them
/// had reached the agent before the client was dropped.
pub fn written_before_return(results: Vec<Result<Json>>, received: Vec<u8>, count: usize) {
    for result in results {
        assert_eq!(ok("a command with no reply", result).as_str(), "{}");
    }
    let received = String::from_utf8_lossy(&received);
    assert_eq!(
        received.matches(crate::fixtures::NO_REPLY_COMMAND).count(),
        count,
        "the agent got {} bytes",
        received.len()
    );
}

/// The command with no reply queued behind a stuck write was discarded by
/// the resync, and the agent never got it.
pub fn discarded_unsent(result: Result<Json>, received: Vec<u8>) {
    assert!(
        matches!(result, Err(Error::Discarded)),
        "a command dropped by a resync: {result:?}"
    );
    let received = String::from_utf8_lossy(&received);
    assert_eq!(
        received.matches(crate::fixtures::NO_REPLY_COMMAND).count(),
        0,
        "the agent got the dropped command"
    );
}

/// Every call waiting at `close` failed as closed by this client, and the
/// peer saw the connection end although it never read the bytes.
pub fn closed_and_hung_up(results: Vec<Result<Json>>, peer: &std::os::unix::net::UnixStream) {
    for result in results {
        assert!(
            matches!(result, Err(Error::Disconnected(Disconnect::Local))),
            "a call waiting at close: {result:?}"
        );
    }
    assert!(
        fixtures::hung_up(peer, fixtures::PATIENCE),
        "the socket stayed open after close"
    );
}

/// A connect to a full listener gave up at the connect timeout, saying so.
pub fn connect_timed_out<T: core::fmt::Debug>(result: Result<T>, took: Duration) {
    match &result {
        Err(Error::Connect(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
        other => panic!("a connect to a full listener: {other:?}"),
    }
    assert!(
        took >= SHORT_TIMEOUT && took < SHORT_TIMEOUT + DEADLINE_SLACK,
        "gave up after {took:?}"
    );
}

/// A connect that waited for room got in, then found no greeting; the error
/// names the missing step and the connect timeout as configured (not what
/// was left of it after the wait for room).
pub fn got_in_without_greeting<T: core::fmt::Debug>(result: Result<T>) {
    match &result {
        Err(Error::Disconnected(Disconnect::HandshakeTimeout { step, timeout })) => {
            assert_eq!(*step, qmp_io::HandshakeStep::Greeting);
            assert_eq!(*timeout, crate::fixtures::FULL_CONNECT_TIMEOUT);
            let text = result.as_ref().unwrap_err().to_string();
            assert!(text.contains("no QMP greeting"), "{text}");
            assert!(
                text.contains(&format!("{:?}", crate::fixtures::FULL_CONNECT_TIMEOUT)),
                "{text}"
            );
        }
        other => panic!("a connect once the listener made room: {other:?}"),
    }
}

/// A child that died before the handshake: the error names it, its exit
/// status and the end of its stderr.
pub fn child_died<T: core::fmt::Debug>(result: Result<T>) {
    match &result {
        Err(Error::Disconnected(Disconnect::ChildExited(exit))) => {
            assert_eq!(exit.program, "sh");
            assert_eq!(exit.status.and_then(|s| s.code()), Some(3), "{exit:?}");
            assert!(exit.stderr.contains("this child dies"), "{exit:?}");
            let text = result.as_ref().unwrap_err().to_string();
            assert!(
                text.contains("sh exited") && text.contains("this child dies"),
                "{text}"
            );
        }
        other => panic!("a child that dies: {other:?}"),
    }
}

/// QEMU on its stdio quit: the reason is its exit, with status 0.
pub fn child_quit(reason: Option<Disconnect>) {
    match reason {
        Some(Disconnect::ChildExited(exit)) => {
            assert!(exit.status.is_some_and(|s| s.success()), "{exit:?}");
        }
        other => panic!("QEMU quit on its stdio: {other:?}"),
    }
}

/// The first event after `stop`: STOP.
pub fn stop_then_resume_started(who: &str, item: Option<Item>) {
    match item {
        Some(Ok(event)) => assert_eq!(event.name(), "STOP", "{who}"),
        other => panic!("{who}: no STOP event: {other:?}"),
    }
}
