//! The cases for the async clients, generic over the adapter's [`Harness`].
//! Each takes the test's name, for its QEMU and its `SKIPPED` line.

use core::future::Future;
use core::pin::pin;
use std::os::fd::AsFd;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::future::{Either, join_all, select};
use qmp_io::nonblocking::Client;
use qmp_io::qemu::Qemu;
use qmp_io::{Call, Config, Subscription};

use crate::Harness;
use crate::checks::{self, Item, ok};
use crate::fixtures::{self, FD_NAME, OPAQUE, PATIENCE, config};

/// `future`'s output, or a panic naming `what` after [`PATIENCE`]: a hang
/// fails the test instead of stalling the run.
async fn within<H: Harness, F: Future>(what: &str, future: F) -> F::Output {
    match select(pin!(future), pin!(H::sleep(PATIENCE))).await {
        Either::Left((output, _)) => output,
        Either::Right(_) => panic!("{what}: nothing within {PATIENCE:?}"),
    }
}

async fn next<H: Harness>(events: &mut Subscription) -> Option<Item> {
    within::<H, _>("waiting for an event", events.next()).await
}

async fn take<H: Harness>(events: &mut Subscription, n: usize) -> Vec<Item> {
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        items.extend(next::<H>(events).await);
    }
    items
}

async fn connect<H: Harness>(path: &std::path::Path, config: Config) -> Client<H::Runtime> {
    let qmp = H::connect(path, config);
    ok("connect", within::<H, _>("connect", qmp).await)
}

/// A private QEMU and a client connected to it; `None` when QEMU is missing.
async fn qemu<H: Harness>(test: &str) -> Option<(Qemu, Client<H::Runtime>)> {
    let qemu = fixtures::qemu(test)?;
    let qmp = connect::<H>(qemu.qmp_path(), config()).await;
    Some((qemu, qmp))
}

/// Case 1: the adapter's `launch` starts QEMU and connects; the greeting
/// agrees with `query-version`; oob is negotiated.
pub async fn greeting_and_version<H: Harness>(test: &'static str) {
    let Some(builder) = crate::peers::require_qemu(test) else {
        return;
    };
    let builder = builder.arg("-name").arg(test);
    let (_qemu, qmp) = ok(
        "launch",
        within::<H, _>("launch", H::launch(builder, config())).await,
    );
    let version = qmp.execute_raw("query-version", ()).await;
    checks::greeting(qmp.greeting(), qmp.oob_enabled(), version);
}

/// Case 2: `query-status`, typed and raw.
pub async fn query_status_typed_and_raw<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let typed = qmp.execute(&fixtures::QueryStatus).await;
    checks::status(typed, qmp.execute_raw("query-status", ()).await);
}

/// Case 3: `stop` and `cont` reach a filtered and an unfiltered subscriber,
/// and not one whose filter does not match.
pub async fn stop_cont_events<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let mut by_name = qmp.subscribe(fixtures::stop_resume_filter());
    let mut all = qmp.events();
    let unmatched = qmp.subscribe(fixtures::unmatched_filter());
    ok("stop", qmp.execute_raw("stop", ()).await);
    ok("cont", qmp.execute_raw("cont", ()).await);
    checks::stop_then_resume("by name", &take::<H>(&mut by_name, 2).await);
    checks::stop_then_resume("all", &take::<H>(&mut all, 2).await);
    checks::nothing_received(unmatched.try_recv());
}

/// Case 4: many concurrent tasks each get their own answer.
pub async fn concurrent_commands<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let tasks = (0..fixtures::CONCURRENT_CALLS).map(|n| {
        let qmp = qmp.clone();
        H::spawn(async move {
            let (name, arguments) = fixtures::concurrent_call(n);
            qmp.execute_raw(name, &arguments).await
        })
    });
    let results = within::<H, _>("concurrent calls", join_all(tasks)).await;
    for (n, result) in results.into_iter().enumerate() {
        checks::concurrent_answer(n, result);
    }
}

/// Case 5: an unknown command is refused and the connection goes on.
pub async fn unknown_command<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let refused = qmp.execute_raw(fixtures::UNKNOWN_COMMAND, ()).await;
    checks::unknown_command(refused, qmp.execute_raw("query-status", ()).await);
}

/// Case 6: `exec-oob` commands are answered.
pub async fn oob_commands<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let pause = qmp.execute_raw_oob("migrate-pause", ()).await;
    let status = qmp.execute_raw_oob("query-status", ()).await;
    checks::oob_answers(qmp.oob_enabled(), pause, status);
}

/// Case 7: a call to a frozen QEMU times out, and its late reply goes to no
/// later call.
pub async fn timeout_on_stopped_qemu<H: Harness>(test: &'static str) {
    let Some((qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    fixtures::freeze(qemu.pid());
    let result = qmp.call(fixtures::short_status_call()).await;
    fixtures::thaw(qemu.pid());
    checks::timed_out(result);
    let name = qmp.execute_raw("query-name", ()).await;
    checks::answers_after_timeout(test, name, qmp.execute_raw("query-status", ()).await);
}

/// Case 8: killing QEMU fails every pending call promptly, and ends the
/// connection and its subscribers.
pub async fn killed_qemu_fails_pending_calls<H: Harness>(test: &'static str) {
    let Some((mut qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let mut events = qmp.events();
    fixtures::freeze(qemu.pid());
    let pending: Vec<_> = (0..fixtures::PENDING_AT_KILL)
        .map(|_| {
            let qmp = qmp.clone();
            H::spawn(async move {
                let result = qmp.call(fixtures::unbounded_status_call()).await;
                (result, Instant::now())
            })
        })
        .collect();
    H::sleep(fixtures::SETTLE).await;
    let killed = Instant::now();
    qemu.kill().expect("cannot kill QEMU");
    let results = within::<H, _>("pending calls", join_all(pending)).await;
    checks::failed_at_kill(killed, results);
    let start = Instant::now();
    let later = qmp.execute_raw("query-status", ()).await;
    checks::fails_at_once(later, start.elapsed());
    checks::closed_by_peer(Some(within::<H, _>("closed", qmp.closed()).await));
    checks::stream_ended(next::<H>(&mut events).await);
}

/// Dropping the last handle closes the socket: the monitor, which serves
/// one client at a time, greets the next client.
pub async fn drop_frees_the_monitor<H: Harness>(test: &'static str) {
    let Some((qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    ok("query-status", qmp.execute_raw("query-status", ()).await);
    drop(qmp);
    let next = within::<H, _>("a new client", connect::<H>(qemu.qmp_path(), config())).await;
    ok(
        "query-status on a new connection",
        next.execute_raw("query-status", ()).await,
    );
}

/// Closing the client ends a write that the peer never reads, while the
/// connection task is woken for another call behind it: both calls fail
/// as closed here, and the peer sees the socket close.
pub async fn close_ends_a_stuck_write<H: Harness>(test: &'static str) {
    let mut server = fixtures::DeafServer::start(test);
    let qmp = connect::<H>(server.path(), config()).await;
    let peer = server.accepted();
    let mut tasks = Vec::new();
    for call in [
        fixtures::stuck_qmp_call(),
        fixtures::unbounded_status_call(),
    ] {
        let qmp = qmp.clone();
        tasks.push(H::spawn(async move { qmp.call(call).await }));
        H::sleep(fixtures::SETTLE).await;
    }
    qmp.close();
    let mut results = Vec::new();
    for task in tasks {
        results.push(within::<H, _>("a call after close", task).await);
    }
    checks::closed_and_hung_up(results, &peer);
}

/// A connect to a listener whose queue is full gives up at the connect
/// timeout instead of waiting for ever (or failing at once); once the
/// listener makes room, a connect still trying gets in.
pub async fn connect_to_a_full_listener<H: Harness>(test: &'static str) {
    let listener = fixtures::FullListener::start(test);
    let short = Config::default().connect_timeout(fixtures::SHORT_TIMEOUT);
    let started = Instant::now();
    let refused = H::connect(listener.path(), short).await;
    checks::connect_timed_out(refused, started.elapsed());
    let accepted = listener.accept_after(fixtures::SHORT_TIMEOUT);
    let patient = Config::default().connect_timeout(fixtures::FULL_CONNECT_TIMEOUT);
    let waited = H::connect(listener.path(), patient).await;
    drop(accepted.join().expect("the listener's accept"));
    checks::got_in_without_greeting(waited);
}

/// Case 9: fds passed with `add-fd` and `getfd`; one too many on a call is
/// refused before anything is sent.
pub async fn fd_passing<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let (read, write) = rustix::pipe::pipe().expect("cannot create a pipe");
    let added = qmp.add_fd(read.as_fd(), None, Some(OPAQUE)).await;
    let info = checks::fd_listed(added, qmp.execute_raw("query-fdsets", ()).await);
    let removed = qmp.remove_fd(info.fdset_id, Some(info.fd)).await;
    checks::fd_removed(info, removed, qmp.execute_raw("query-fdsets", ()).await);
    let sent = qmp.send_fd(FD_NAME, write.as_fd()).await;
    let closed = qmp.close_fd(FD_NAME).await;
    checks::named_fd(sent, closed, qmp.close_fd(FD_NAME).await);
    let refused = qmp.call(fixtures::too_many_fds_call(write.as_fd())).await;
    checks::too_many_fds(refused, qmp.execute_raw("query-status", ()).await);
}

/// fd-carrying calls go one at a time: one waiting behind another that
/// frozen QEMU never answers still ends at its own deadline, without being
/// sent; the first completes once QEMU runs again. A call with too many fds
/// is refused at once, without waiting for its turn.
pub async fn fd_call_behind_a_stuck_one<H: Harness>(test: &'static str) {
    let Some((qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let (_read, write) = rustix::pipe::pipe().expect("cannot create a pipe");
    fixtures::freeze(qemu.pid());
    let stuck = {
        let (qmp, call) = (qmp.clone(), fixtures::getfd_call(write.as_fd(), None));
        H::spawn(async move { qmp.call(call).await })
    };
    H::sleep(fixtures::SETTLE).await;
    let short = fixtures::getfd_call(write.as_fd(), Some(fixtures::SHORT_TIMEOUT));
    let behind = within::<H, _>("the call behind", qmp.call(short)).await;
    // Refused at once, not after waiting for its turn.
    let too_many = qmp.call(fixtures::too_many_fds_call(write.as_fd()));
    let too_many = within::<H, _>("too many fds", too_many).await;
    fixtures::thaw(qemu.pid());
    checks::refused_too_many_fds(too_many);
    checks::timed_out(behind);
    let stuck = within::<H, _>("the stuck call", stuck).await;
    checks::named_fd(
        stuck.map(drop),
        qmp.close_fd(FD_NAME).await,
        qmp.close_fd(FD_NAME).await,
    );
}

/// Case 10: a reply of about 200 KiB.
pub async fn big_reply<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    checks::schema(qmp.execute_raw("query-qmp-schema", ()).await);
}

/// A QMP monitor on tcp: the same greeting and answers; fds cannot pass.
pub async fn tcp_monitor<H: Harness>(test: &'static str) {
    let Some((_qemu, addr)) = fixtures::qemu_on_tcp(test) else {
        return;
    };
    let qmp = ok(
        "tcp connect",
        within::<H, _>("tcp connect", H::connect_tcp(addr, config())).await,
    );
    let version = qmp.execute_raw("query-version", ()).await;
    checks::greeting(qmp.greeting(), qmp.oob_enabled(), version);
    let (_read, write) = rustix::pipe::pipe().expect("cannot create a pipe");
    let refused = qmp.send_fd(FD_NAME, write.as_fd()).await;
    checks::fds_refused_on_tcp(refused, qmp.execute_raw("query-status", ()).await);
}

/// Case 11: a real qemu-ga runs a process and reports its output.
pub async fn guest_agent_exec<H: Harness>(test: &'static str) {
    let Some(agent) = fixtures::guest_agent(test) else {
        return;
    };
    let connected = H::connect_guest_agent(agent.socket_path(), config());
    let ga = ok(
        "guest agent connect",
        within::<H, _>("sync", connected).await,
    );
    checks::guest_info(ga.execute_raw("guest-info", ()).await);
    let pid = checks::exec_pid(ga.execute_raw("guest-exec", fixtures::echo_args()).await);
    let args = fixtures::exec_status_args(pid);
    let deadline = Instant::now() + PATIENCE;
    while !checks::exec_done(ga.execute_raw("guest-exec-status", &args).await) {
        assert!(Instant::now() < deadline, "echo never exited");
        H::sleep(fixtures::EXEC_POLL).await;
    }
}

/// Case 12: the guest agent client resynchronises over stale bytes on
/// connect, and after a timeout.
pub async fn guest_agent_resync<H: Harness>(test: &'static str) {
    let Some(agent) = fixtures::guest_agent(test) else {
        return;
    };
    let connected = H::guest_agent_on(fixtures::stale_agent_stream(&agent), config());
    let ga = ok(
        "guest agent connect",
        within::<H, _>("sync", connected).await,
    );
    let ping = ga.execute_raw("guest-ping", ()).await;
    checks::agent_answers(ping, ga.execute_raw("guest-get-time", ()).await);
    fixtures::freeze(agent.pid());
    let result = ga.call(fixtures::short_guest_info_call()).await;
    fixtures::thaw(agent.pid());
    checks::timed_out(result);
    let ping = ga.execute_raw("guest-ping", ()).await;
    checks::agent_answers(ping, ga.execute_raw("guest-get-time", ()).await);
}

/// A command the agent never answers returns once written, not once
/// queued: while the agent does not read, a huge one times out; once it
/// reads, the next returns, and dropping the client right after loses
/// neither.
pub async fn guest_agent_no_reply<H: Harness>(_test: &'static str) {
    let (stream, open, agent) = fixtures::silent_agent();
    let ga = ok(
        "guest agent connect",
        within::<H, _>("sync", H::guest_agent_on(stream, config())).await,
    );
    let huge = Call::new(fixtures::NO_REPLY_COMMAND)
        .arguments_text(fixtures::huge_arguments())
        .timeout(Some(fixtures::SHORT_TIMEOUT));
    checks::timed_out(ga.call(huge).await);
    drop(open);
    let result = ga.execute_raw(fixtures::NO_REPLY_COMMAND, ()).await;
    drop(ga);
    let received = agent.join().expect("the fake agent");
    checks::written_before_return(vec![result], received, 2);
}

/// A resync (after a timeout) drops what was queued behind a stuck write: a
/// command with no reply among it fails as discarded, and never reaches the
/// agent.
pub async fn guest_agent_resync_drops_unsent<H: Harness>(_test: &'static str) {
    let (stream, open, agent) = fixtures::silent_agent();
    let ga = ok(
        "guest agent connect",
        within::<H, _>("sync", H::guest_agent_on(stream, config())).await,
    );
    checks::timed_out(ga.call(fixtures::stuck_agent_call()).await);
    let unsent = {
        let ga = ga.clone();
        H::spawn(async move { ga.execute_raw(fixtures::NO_REPLY_COMMAND, ()).await })
    };
    H::sleep(fixtures::SHORT_TIMEOUT).await;
    // Another timeout resynchronises, dropping what is still queued.
    checks::timed_out(ga.call(fixtures::short_guest_info_call()).await);
    drop(open);
    let result = within::<H, _>("the unsent command", unsent).await;
    drop(ga);
    checks::discarded_unsent(result, agent.join().expect("the fake agent"));
}

/// The mock case: a subscriber that does not read holds back neither the
/// reader, nor commands, nor the other subscribers, and learns what it lost;
/// one filtering on a data member gets just the event that matches.
pub async fn mock_slow_subscriber_lags<H: Harness>(_test: &'static str) {
    let mock = fixtures::mock();
    let qmp = connect::<H>(mock.path(), fixtures::lagging_config()).await;
    let slow = qmp.events();
    let mut fast = qmp.events();
    let picky = qmp.subscribe(fixtures::picked_filter());
    for n in 0..fixtures::MOCK_EVENTS {
        fixtures::emit_numbered(&mock, n);
        checks::numbered(n, next::<H>(&mut fast).await);
    }
    checks::answered_while_lagging(qmp.execute_raw("query-status", ()).await);
    checks::lagged_tail(&slow);
    checks::picked_only(&picky);
}

/// The mock case on deadlines: calls with short timeouts, each started when
/// longer ones are already waiting, fail at their own deadline; calls with
/// the default, no or an unbounded timeout wait on and get their own replies;
/// so does a call made after another call's future was dropped.
pub async fn mock_deadlines<H: Harness>(_test: &'static str) {
    let mock = fixtures::deadline_mock();
    let qmp = connect::<H>(mock.path(), config()).await;
    mock.hold_replies(true);
    let start = |command: &'static str, timeout| {
        let qmp = qmp.clone();
        H::spawn(async move {
            let began = Instant::now();
            let result = qmp.call(fixtures::call_with(command, timeout)).await;
            (result, began.elapsed())
        })
    };
    let mut held = Vec::new();
    for (command, timeout) in fixtures::deadline_calls() {
        held.push(start(command, timeout));
        H::sleep(fixtures::STAGGER).await;
    }
    let mut short = Vec::new();
    for task in held.split_off(fixtures::HELD_CALLS.len()) {
        short.push(within::<H, _>("a short call", task).await);
    }
    mock.hold_replies(false);
    let mut results = Vec::new();
    for task in held {
        results.push(within::<H, _>("a held call", task).await);
    }
    results.extend(short);
    checks::deadlines(results);
    // A call whose future is dropped while its reply is held: its late reply
    // reaches no later call, which gets its own.
    mock.hold_replies(true);
    let held = Box::pin(qmp.call(fixtures::call_with("deadline-none", Some(None))));
    match select(held, Box::pin(H::sleep(fixtures::SETTLE))).await {
        Either::Left((result, _)) => panic!("a held call returned: {result:?}"),
        Either::Right(((), call)) => drop(call),
    }
    mock.hold_replies(false);
    let after = qmp
        .call(fixtures::call_with("deadline-default", None))
        .await;
    checks::own_reply("deadline-default", after);
}

/// QEMU launched by the adapter's `launch_stdio`, its monitor on its stdio
/// (no socket file): commands and events work; dropping the client kills and
/// reaps QEMU; `quit` ends the connection with QEMU's exit as the reason; a
/// child that dies before the handshake is reported with its stderr.
pub async fn child_stdio<H: Harness>(test: &'static str) {
    let Some(builder) = crate::peers::require_qemu(test) else {
        return;
    };
    // The release too: the case runs on both QEMUs in one process.
    let release = crate::peers::selected_qemu().version();
    let marker = format!("{test}-{release}-{}", std::process::id());
    let named = builder.clone().arg("-name").arg(&marker);
    let launched = within::<H, _>("launch_stdio", H::launch_stdio(named, config())).await;
    let qmp = ok("launch_stdio", launched);
    let version = qmp.execute_raw("query-version", ()).await;
    checks::greeting(qmp.greeting(), qmp.oob_enabled(), version);
    let mut events = qmp.subscribe(fixtures::stop_resume_filter());
    ok("stop", qmp.execute_raw("stop", ()).await);
    ok("cont", qmp.execute_raw("cont", ()).await);
    checks::stop_then_resume("stdio", &take::<H>(&mut events, 2).await);
    let pid = fixtures::pid_of(&marker).expect("QEMU runs with its -name");
    drop(qmp);
    assert!(fixtures::reaped(pid), "QEMU {pid} outlived its connection");

    let qmp = ok(
        "launch_stdio",
        within::<H, _>("launch_stdio", H::launch_stdio(builder, config())).await,
    );
    ok("quit", qmp.execute_raw("quit", ()).await);
    checks::child_quit(Some(within::<H, _>("closed", qmp.closed()).await));

    let died = H::connect_child(fixtures::dying_child(), config());
    checks::child_died(within::<H, _>("connect_child", died).await);
}

/// The client works from a thread with no runtime of the adapter's, under
/// another executor (`futures::executor::block_on`): calls with the default
/// and a short timeout (whose timers are the adapter's), events, `closed`.
pub async fn calls_from_a_foreign_executor<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let foreign = std::thread::spawn(move || {
        futures_executor::block_on(async {
            let mut events = qmp.subscribe(fixtures::stop_resume_filter());
            let status = qmp.execute_raw("query-status", ()).await;
            let short = qmp.call(fixtures::short_status_call()).await;
            let stop = qmp.execute_raw("stop", ()).await;
            let event = events.next().await;
            qmp.close();
            let reason = qmp.closed().await;
            (status, short, stop, event, reason)
        })
    });
    let (status, short, stop, event, reason) = foreign.join().expect("the foreign thread");
    ok("query-status", status);
    ok("query-status with a short timeout", short);
    ok("stop", stop);
    checks::stop_then_resume_started("foreign", event);
    assert!(matches!(reason, qmp_io::Disconnect::Local), "{reason:?}");
}

/// A body written against [`qmp_io::AsyncQmp`] alone (as the libvirt client
/// runs it too): typed and raw `query-status`, `stop` and `cont` with events.
pub async fn through_the_client_trait<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let seen = within::<H, _>(
        "the trait's body",
        crate::generic::status_stop_cont_async(&qmp),
    )
    .await;
    crate::generic::check("through AsyncQmp", seen);
}

/// Typed commands and a typed event filter from the catalogue, through
/// [`qmp_io::AsyncQmp`]: see [`crate::typed`].
pub async fn typed_events<H: Harness>(test: &'static str) {
    let Some((_qemu, qmp)) = qemu::<H>(test).await else {
        return;
    };
    let seen = within::<H, _>("the typed body", crate::typed::stop_cont_typed_async(&qmp)).await;
    crate::typed::check_typed("typed, through AsyncQmp", seen);
}
