//! The cases for the blocking client ([`qmp_io::blocking`]), generic over
//! the adapter's [`BlockingHarness`]; concurrency with threads. Each takes the test's name, for its QEMU and its `SKIPPED`
//! line.

use std::os::fd::AsFd;
use std::path::Path;
use std::thread;
use std::time::Instant;

use qmp_io::blocking::Client;
use qmp_io::qemu::Qemu;
use qmp_io::{Config, RecvTimeoutError, Subscription};

use crate::BlockingHarness;
use crate::checks::{self, Item, ok};
use crate::fixtures::{self, FD_NAME, OPAQUE, PATIENCE, config};

/// The next event, `None` once the stream ended; a panic after [`PATIENCE`].
fn next(events: &Subscription) -> Option<Item> {
    match events.recv_timeout(PATIENCE) {
        Ok(item) => Some(item),
        Err(RecvTimeoutError::Closed) => None,
        Err(RecvTimeoutError::Timeout) => panic!("no event within {PATIENCE:?}"),
    }
}

fn take(events: &Subscription, n: usize) -> Vec<Item> {
    (0..n).filter_map(|_| next(events)).collect()
}

fn connect<H: BlockingHarness>(path: &Path, config: Config) -> Client {
    ok("connect", H::connect(path, config))
}

/// A private QEMU and a client connected to it; `None` when QEMU is missing.
fn qemu<H: BlockingHarness>(test: &str) -> Option<(Qemu, Client)> {
    let qemu = fixtures::qemu(test)?;
    let qmp = connect::<H>(qemu.qmp_path(), config());
    Some((qemu, qmp))
}

/// Case 1: the adapter's `launch` starts QEMU and connects; the greeting
/// agrees with `query-version`; oob is negotiated.
pub fn greeting_and_version<H: BlockingHarness>(test: &'static str) {
    let Some(builder) = crate::peers::require_qemu(test) else {
        return;
    };
    let builder = builder.arg("-name").arg(test);
    let (_qemu, qmp) = ok("launch", H::launch(builder, config()));
    let version = qmp.execute_raw("query-version", ());
    checks::greeting(qmp.greeting(), qmp.oob_enabled(), version);
}

/// Case 2: `query-status`, typed and raw.
pub fn query_status_typed_and_raw<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    let typed = qmp.execute(&fixtures::QueryStatus);
    checks::status(typed, qmp.execute_raw("query-status", ()));
}

/// Case 3: `stop` and `cont` reach a filtered and an unfiltered subscriber,
/// and not one whose filter does not match.
pub fn stop_cont_events<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    let by_name = qmp.subscribe(fixtures::stop_resume_filter());
    let all = qmp.events();
    let unmatched = qmp.subscribe(fixtures::unmatched_filter());
    ok("stop", qmp.execute_raw("stop", ()));
    ok("cont", qmp.execute_raw("cont", ()));
    checks::stop_then_resume("by name", &take(&by_name, 2));
    checks::stop_then_resume("all", &take(&all, 2));
    checks::nothing_received(unmatched.try_recv());
}

/// Case 4: a thread per call, all released at once, so the calls are in
/// flight together; each gets its own answer.
pub fn concurrent_commands<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    let start = std::sync::Barrier::new(fixtures::CONCURRENT_CALLS);
    thread::scope(|s| {
        for n in 0..fixtures::CONCURRENT_CALLS {
            let (qmp, start) = (&qmp, &start);
            s.spawn(move || {
                let (name, arguments) = fixtures::concurrent_call(n);
                start.wait();
                checks::concurrent_answer(n, qmp.execute_raw(name, &arguments));
            });
        }
    });
}

/// Case 5: an unknown command is refused and the connection goes on.
pub fn unknown_command<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    let refused = qmp.execute_raw(fixtures::UNKNOWN_COMMAND, ());
    checks::unknown_command(refused, qmp.execute_raw("query-status", ()));
}

/// Case 6: `exec-oob` commands are answered.
pub fn oob_commands<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    let pause = qmp.execute_raw_oob("migrate-pause", ());
    let status = qmp.execute_raw_oob("query-status", ());
    checks::oob_answers(qmp.oob_enabled(), pause, status);
}

/// Case 7: a call to a frozen QEMU times out, and its late reply goes to no
/// later call.
pub fn timeout_on_stopped_qemu<H: BlockingHarness>(test: &'static str) {
    let Some((qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    fixtures::freeze(qemu.pid());
    let result = qmp.call(fixtures::short_status_call());
    fixtures::thaw(qemu.pid());
    checks::timed_out(result);
    let name = qmp.execute_raw("query-name", ());
    checks::answers_after_timeout(test, name, qmp.execute_raw("query-status", ()));
}

/// Case 8: killing QEMU fails every pending call promptly, and ends the
/// connection and its subscribers.
pub fn killed_qemu_fails_pending_calls<H: BlockingHarness>(test: &'static str) {
    let Some((mut qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    let events = qmp.events();
    fixtures::freeze(qemu.pid());
    let pending: Vec<_> = (0..fixtures::PENDING_AT_KILL)
        .map(|_| {
            let qmp = qmp.clone();
            thread::spawn(move || {
                let result = qmp.call(fixtures::unbounded_status_call());
                (result, Instant::now())
            })
        })
        .collect();
    thread::sleep(fixtures::SETTLE);
    let killed = Instant::now();
    qemu.kill().expect("cannot kill QEMU");
    let results = pending
        .into_iter()
        .map(|t| t.join().expect("a caller thread panicked"))
        .collect();
    checks::failed_at_kill(killed, results);
    let start = Instant::now();
    let later = qmp.execute_raw("query-status", ());
    checks::fails_at_once(later, start.elapsed());
    checks::closed_by_peer(qmp.wait_closed(Some(PATIENCE)));
    checks::stream_ended(next(&events));
}

/// Dropping the last handle closes the socket: the monitor, which serves
/// one client at a time, greets the next client.
pub fn drop_frees_the_monitor<H: BlockingHarness>(test: &'static str) {
    let Some((qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    ok("query-status", qmp.execute_raw("query-status", ()));
    drop(qmp);
    let next = connect::<H>(qemu.qmp_path(), config());
    ok(
        "query-status on a new connection",
        next.execute_raw("query-status", ()),
    );
}

/// Closing the client ends a write that the peer never reads, with another
/// call queued behind it: both calls fail as closed here, and the peer sees
/// the socket close.
pub fn close_ends_a_stuck_write<H: BlockingHarness>(test: &'static str) {
    let mut server = fixtures::DeafServer::start(test);
    let qmp = connect::<H>(server.path(), config());
    let peer = server.accepted();
    let calls: Vec<_> = [
        fixtures::stuck_qmp_call(),
        fixtures::unbounded_status_call(),
    ]
    .into_iter()
    .map(|call| {
        let qmp = qmp.clone();
        let call = thread::spawn(move || qmp.call(call));
        thread::sleep(fixtures::SETTLE);
        call
    })
    .collect();
    qmp.close();
    let results = calls
        .into_iter()
        .map(|c| c.join().expect("a call after close"))
        .collect();
    checks::closed_and_hung_up(results, &peer);
}

/// A connect to a listener whose queue is full gives up at the connect
/// timeout instead of waiting for ever (or failing at once); once the
/// listener makes room, a connect still trying gets in.
pub fn connect_to_a_full_listener<H: BlockingHarness>(test: &'static str) {
    let listener = fixtures::FullListener::start(test);
    let short = Config::default().connect_timeout(fixtures::SHORT_TIMEOUT);
    let started = Instant::now();
    let refused = H::connect(listener.path(), short);
    checks::connect_timed_out(refused, started.elapsed());
    let accepted = listener.accept_after(fixtures::SHORT_TIMEOUT);
    let patient = Config::default().connect_timeout(fixtures::FULL_CONNECT_TIMEOUT);
    let waited = H::connect(listener.path(), patient);
    drop(accepted.join().expect("the listener's accept"));
    checks::got_in_without_greeting(waited);
}

/// Case 9: fds passed with `add-fd` and `getfd`; one too many on a call is
/// refused before anything is sent.
pub fn fd_passing<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    let (read, write) = rustix::pipe::pipe().expect("cannot create a pipe");
    let added = qmp.add_fd(read.as_fd(), None, Some(OPAQUE));
    let info = checks::fd_listed(added, qmp.execute_raw("query-fdsets", ()));
    let removed = qmp.remove_fd(info.fdset_id, Some(info.fd));
    checks::fd_removed(info, removed, qmp.execute_raw("query-fdsets", ()));
    let sent = qmp.send_fd(FD_NAME, write.as_fd());
    let closed = qmp.close_fd(FD_NAME);
    checks::named_fd(sent, closed, qmp.close_fd(FD_NAME));
    let refused = qmp.call(fixtures::too_many_fds_call(write.as_fd()));
    checks::too_many_fds(refused, qmp.execute_raw("query-status", ()));
}

/// fd-carrying calls go one at a time: one waiting behind another that
/// frozen QEMU never answers still ends at its own deadline, without being
/// sent; the first completes once QEMU runs again. A call with too many fds
/// is refused at once, without waiting for its turn.
pub fn fd_call_behind_a_stuck_one<H: BlockingHarness>(test: &'static str) {
    let Some((qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    let (_read, write) = rustix::pipe::pipe().expect("cannot create a pipe");
    fixtures::freeze(qemu.pid());
    let stuck = {
        let (qmp, call) = (qmp.clone(), fixtures::getfd_call(write.as_fd(), None));
        thread::spawn(move || qmp.call(call))
    };
    thread::sleep(fixtures::SETTLE);
    // On a thread of its own, so that a call that waits for ever fails the
    // case instead of hanging it.
    let (done, behind) = std::sync::mpsc::channel();
    let short = fixtures::getfd_call(write.as_fd(), Some(fixtures::SHORT_TIMEOUT));
    let client = qmp.clone();
    thread::spawn(move || done.send(client.call(short)));
    let behind = behind.recv_timeout(PATIENCE);
    // Refused at once, not after waiting for its turn.
    let too_many = qmp.call(fixtures::too_many_fds_call(write.as_fd()));
    fixtures::thaw(qemu.pid());
    checks::refused_too_many_fds(too_many);
    checks::timed_out(behind.expect("the call behind the stuck one never returned"));
    let stuck = stuck.join().expect("the stuck call");
    checks::named_fd(
        stuck.map(drop),
        qmp.close_fd(FD_NAME),
        qmp.close_fd(FD_NAME),
    );
}

/// Case 10: a reply of about 200 KiB.
pub fn big_reply<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    checks::schema(qmp.execute_raw("query-qmp-schema", ()));
}

/// A QMP monitor on tcp: the same greeting and answers; fds cannot pass.
pub fn tcp_monitor<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, addr)) = fixtures::qemu_on_tcp(test) else {
        return;
    };
    let qmp = ok("tcp connect", H::connect_tcp(addr, config()));
    let version = qmp.execute_raw("query-version", ());
    checks::greeting(qmp.greeting(), qmp.oob_enabled(), version);
    let (_read, write) = rustix::pipe::pipe().expect("cannot create a pipe");
    let refused = qmp.send_fd(FD_NAME, write.as_fd());
    checks::fds_refused_on_tcp(refused, qmp.execute_raw("query-status", ()));
}

/// Case 11: a real qemu-ga runs a process and reports its output.
pub fn guest_agent_exec<H: BlockingHarness>(test: &'static str) {
    let Some(agent) = fixtures::guest_agent(test) else {
        return;
    };
    let connected = H::connect_guest_agent(agent.socket_path(), config());
    let ga = ok("guest agent connect", connected);
    checks::guest_info(ga.execute_raw("guest-info", ()));
    let pid = checks::exec_pid(ga.execute_raw("guest-exec", fixtures::echo_args()));
    let args = fixtures::exec_status_args(pid);
    let deadline = Instant::now() + PATIENCE;
    while !checks::exec_done(ga.execute_raw("guest-exec-status", &args)) {
        assert!(Instant::now() < deadline, "echo never exited");
        thread::sleep(fixtures::EXEC_POLL);
    }
}

/// Case 12: the guest agent client resynchronises over stale bytes on
/// connect, and after a timeout.
pub fn guest_agent_resync<H: BlockingHarness>(test: &'static str) {
    let Some(agent) = fixtures::guest_agent(test) else {
        return;
    };
    let stream = fixtures::stale_agent_stream(&agent);
    let ga = ok("guest agent connect", H::guest_agent_on(stream, config()));
    let ping = ga.execute_raw("guest-ping", ());
    checks::agent_answers(ping, ga.execute_raw("guest-get-time", ()));
    fixtures::freeze(agent.pid());
    let result = ga.call(fixtures::short_guest_info_call());
    fixtures::thaw(agent.pid());
    checks::timed_out(result);
    let ping = ga.execute_raw("guest-ping", ());
    checks::agent_answers(ping, ga.execute_raw("guest-get-time", ()));
}

/// A command the agent never answers returns once written: dropping the
/// client right after it still delivers it. (The blocking client writes in
/// the calling thread, so the async case's huge write would block here.)
pub fn guest_agent_no_reply<H: BlockingHarness>(_test: &'static str) {
    let (stream, open, agent) = fixtures::silent_agent();
    drop(open);
    let ga = ok("guest agent connect", H::guest_agent_on(stream, config()));
    let result = ga.execute_raw(fixtures::NO_REPLY_COMMAND, ());
    drop(ga);
    checks::written_before_return(vec![result], agent.join().expect("the fake agent"), 1);
}

/// A resync (after a timeout) drops what was queued behind a stuck write: a
/// command with no reply among it fails as discarded, and never reaches the
/// agent.
pub fn guest_agent_resync_drops_unsent<H: BlockingHarness>(_test: &'static str) {
    let (stream, open, agent) = fixtures::silent_agent();
    let ga = ok("guest agent connect", H::guest_agent_on(stream, config()));
    checks::timed_out(ga.call(fixtures::stuck_agent_call()));
    let unsent = {
        let ga = ga.clone();
        thread::spawn(move || ga.execute_raw(fixtures::NO_REPLY_COMMAND, ()))
    };
    thread::sleep(fixtures::SHORT_TIMEOUT);
    // Another timeout resynchronises, dropping what is still queued.
    checks::timed_out(ga.call(fixtures::short_guest_info_call()));
    drop(open);
    let result = unsent.join().expect("the unsent command");
    drop(ga);
    checks::discarded_unsent(result, agent.join().expect("the fake agent"));
}

/// The mock case: a subscriber that does not read holds back neither the
/// reader, nor commands, nor the other subscribers, and learns what it lost;
/// one filtering on a data member gets just the event that matches.
pub fn mock_slow_subscriber_lags<H: BlockingHarness>(_test: &'static str) {
    let mock = fixtures::mock();
    let qmp = connect::<H>(mock.path(), fixtures::lagging_config());
    let slow = qmp.events();
    let fast = qmp.events();
    let picky = qmp.subscribe(fixtures::picked_filter());
    for n in 0..fixtures::MOCK_EVENTS {
        fixtures::emit_numbered(&mock, n);
        checks::numbered(n, next(&fast));
    }
    checks::answered_while_lagging(qmp.execute_raw("query-status", ()));
    checks::lagged_tail(&slow);
    checks::picked_only(&picky);
}

/// The mock case on deadlines (see the async case), with threads.
pub fn mock_deadlines<H: BlockingHarness>(_test: &'static str) {
    let mock = fixtures::deadline_mock();
    let qmp = connect::<H>(mock.path(), config());
    mock.hold_replies(true);
    let start = |command: &'static str, timeout| {
        let qmp = qmp.clone();
        thread::spawn(move || {
            let began = Instant::now();
            let result = qmp.call(fixtures::call_with(command, timeout));
            (result, began.elapsed())
        })
    };
    let mut held = Vec::new();
    for (command, timeout) in fixtures::deadline_calls() {
        held.push(start(command, timeout));
        thread::sleep(fixtures::STAGGER);
    }
    let short = held.split_off(fixtures::HELD_CALLS.len());
    let short: Vec<_> = short
        .into_iter()
        .map(|t| t.join().expect("a short call"))
        .collect();
    mock.hold_replies(false);
    let mut results: Vec<_> = held
        .into_iter()
        .map(|t| t.join().expect("a held call"))
        .collect();
    results.extend(short);
    checks::deadlines(results);
    let after = qmp.call(fixtures::call_with("deadline-default", None));
    checks::own_reply("deadline-default", after);
}

/// QEMU launched by the adapter's `launch_stdio`, its monitor on its stdio
/// (no socket file): commands and events work; dropping the client kills and
/// reaps QEMU; `quit` ends the connection with QEMU's exit as the reason; a
/// child that dies before the handshake is reported with its stderr.
pub fn child_stdio<H: BlockingHarness>(test: &'static str) {
    let Some(builder) = crate::peers::require_qemu(test) else {
        return;
    };
    // The release too: the case runs on both QEMUs in one process.
    let release = crate::peers::selected_qemu().version();
    let marker = format!("{test}-{release}-{}", std::process::id());
    let named = builder.clone().arg("-name").arg(&marker);
    let qmp = ok("launch_stdio", H::launch_stdio(named, config()));
    let version = qmp.execute_raw("query-version", ());
    checks::greeting(qmp.greeting(), qmp.oob_enabled(), version);
    let events = qmp.subscribe(fixtures::stop_resume_filter());
    ok("stop", qmp.execute_raw("stop", ()));
    ok("cont", qmp.execute_raw("cont", ()));
    checks::stop_then_resume("stdio", &take(&events, 2));
    let pid = fixtures::pid_of(&marker).expect("QEMU runs with its -name");
    drop(qmp);
    assert!(fixtures::reaped(pid), "QEMU {pid} outlived its connection");

    let qmp = ok("launch_stdio", H::launch_stdio(builder, config()));
    ok("quit", qmp.execute_raw("quit", ()));
    checks::child_quit(qmp.wait_closed(Some(PATIENCE)));

    checks::child_died(H::connect_child(fixtures::dying_child(), config()));
}

/// The client works from inside another executor on another thread
/// (`futures::executor::block_on`): calls with the default and a short
/// timeout, events, `close`.
pub fn calls_from_a_foreign_executor<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    let foreign = thread::spawn(move || {
        futures_executor::block_on(async {
            let events = qmp.subscribe(fixtures::stop_resume_filter());
            let status = qmp.execute_raw("query-status", ());
            let short = qmp.call(fixtures::short_status_call());
            let stop = qmp.execute_raw("stop", ());
            let event = next(&events);
            qmp.close();
            (status, short, stop, event, qmp.wait_closed(Some(PATIENCE)))
        })
    });
    let (status, short, stop, event, reason) = foreign.join().expect("the foreign thread");
    ok("query-status", status);
    ok("query-status with a short timeout", short);
    ok("stop", stop);
    checks::stop_then_resume_started("foreign", event);
    assert!(
        matches!(reason, Some(qmp_io::Disconnect::Local)),
        "{reason:?}"
    );
}

/// A body written against [`qmp_io::Qmp`] alone (as the libvirt client runs
/// it too): typed and raw `query-status`, `stop` and `cont` with events.
pub fn through_the_client_trait<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    crate::generic::check("through Qmp", crate::generic::status_stop_cont(&qmp));
}

/// Typed commands and a typed event filter from the catalogue, through
/// [`qmp_io::Qmp`]: see [`crate::typed`].
pub fn typed_events<H: BlockingHarness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test) else {
        return;
    };
    crate::typed::check_typed("typed, through Qmp", crate::typed::stop_cont_typed(&qmp));
}
