//! The cases of the reconnecting clients, against a real QEMU that is killed
//! and started again with its monitor on the same unix socket path: the
//! async ones generic over a [`ReconnectHarness`], the blocking ones over a
//! [`BlockingReconnectHarness`]. An adapter's test file adds them with
//! [`reconnect_suite!`](crate::reconnect_suite) or
//! [`blocking_reconnect_suite!`](crate::blocking_reconnect_suite).

use core::future::Future;
use core::pin::pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::future::{Either, join_all, select};
use qmp_io::qemu::{Qemu, QemuBuilder};
use qmp_io::{
    Call, Config, Error, Gap, Json, LinkState, Reconnect, Result, Subscription, WhileReconnecting,
};

use crate::checks::{self, Item, ok};
use crate::fixtures::{self, PATIENCE, SETTLE, SHORT_TIMEOUT, config};
use crate::{BlockingHarness, Harness};

/// Kills and restarts in the main case.
pub const RESTARTS: u64 = 3;
/// Tasks or threads calling in a loop while QEMU restarts.
pub const CALLERS: usize = 3;
/// The pause between a caller's calls.
pub const CALLER_PAUSE: Duration = Duration::from_millis(10);
/// The backoff of the cases: short, so restarts are seen quickly.
pub const MIN_DELAY: Duration = Duration::from_millis(20);
/// The longest delay between attempts in the cases.
pub const MAX_DELAY: Duration = Duration::from_millis(150);
/// Attempts before the give-up case gives up.
pub const GIVE_UP_AFTER: u32 = 8;
/// How long nobody may connect to the path once the client is dropped:
/// many times the longest delay.
pub const QUIET_AFTER_DROP: Duration = Duration::from_secs(1);
/// Room on top of the backoff's own upper bound, for a loaded machine.
pub const BACKOFF_SLACK: Duration = Duration::from_secs(3);

/// What an async adapter adds to its [`Harness`] for these cases.
pub trait ReconnectHarness: Harness<Runtime: qmp_io::nonblocking::Reactor> {
    /// The adapter's `connect_unix_reconnecting`.
    fn connect_reconnecting(
        path: &Path,
        config: Config,
        reconnect: Reconnect,
    ) -> impl Future<Output = Result<qmp_io::nonblocking::Reconnecting<Self::Runtime>>>;

    /// The tasks alive on the runtime of this test, where the runtime
    /// counts them (`None` where it does not).
    fn live_tasks() -> Option<usize>;
}

/// What a blocking adapter adds to its [`BlockingHarness`] for these cases.
pub trait BlockingReconnectHarness: BlockingHarness {
    /// The adapter's `connect_unix_reconnecting`.
    fn connect_reconnecting(
        path: &Path,
        config: Config,
        reconnect: Reconnect,
    ) -> Result<qmp_io::blocking::Reconnecting>;
}

/// Expands to one `#[test]` per reconnect case, run with async harness `$h`.
#[macro_export]
macro_rules! reconnect_suite {
    ($h:ty) => {
        $crate::__reconnect_tests!(async, $h; reconnects_across_restarts, waits_for_the_reconnect, gives_up_within_the_backoff_bounds, a_dropped_client_stops_reconnecting);
    };
}

/// Expands to one `#[test]` per reconnect case, run with blocking harness `$h`.
#[macro_export]
macro_rules! blocking_reconnect_suite {
    ($h:ty) => {
        $crate::__reconnect_tests!(blocking, $h; reconnects_across_restarts, waits_for_the_reconnect, gives_up_within_the_backoff_bounds, a_dropped_client_stops_reconnecting);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __reconnect_tests {
    (async, $h:ty; $($case:ident),*) => {
        mod reconnect {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    <$h as $crate::Harness>::block_on(
                        $crate::reconnect::async_cases::$case::<$h>(concat!("reconnect_", stringify!($case))),
                    );
                }
            )*

            /// Restarts of a QEMU 10.0 (the handshake redone on the other
            /// release).
            mod qemu_10_0 {
                #[allow(unused_imports)]
                use super::*;
                #[test]
                fn reconnects_across_restarts() {
                    $crate::peers::with_qemu($crate::peers::QemuRelease::V10_0, || {
                        <$h as $crate::Harness>::block_on(
                            $crate::reconnect::async_cases::reconnects_across_restarts::<$h>(
                                "reconnect_reconnects_across_restarts_10_0",
                            ),
                        )
                    });
                }
            }
        }
    };
    (blocking, $h:ty; $($case:ident),*) => {
        mod reconnect {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::reconnect::blocking_cases::$case::<$h>(concat!("reconnect_", stringify!($case)));
                }
            )*

            /// Restarts of a QEMU 10.0 (the handshake redone on the other
            /// release).
            mod qemu_10_0 {
                #[allow(unused_imports)]
                use super::*;
                #[test]
                fn reconnects_across_restarts() {
                    $crate::peers::with_qemu($crate::peers::QemuRelease::V10_0, || {
                        $crate::reconnect::blocking_cases::reconnects_across_restarts::<$h>(
                            "reconnect_reconnects_across_restarts_10_0",
                        )
                    });
                }
            }
        }
    };
}

/// A QEMU whose QMP monitor listens on a path of this process's choosing,
/// so it can be killed and started again on the same path.
pub struct Restartable {
    builder: QemuBuilder,
    qemu: Option<Qemu>,
    dir: PathBuf,
    path: PathBuf,
}

impl Restartable {
    /// Starts QEMU for `test`, or `None` after a `SKIPPED` line when QEMU is
    /// missing.
    ///
    /// # Panics
    ///
    /// If QEMU is there but does not start.
    pub fn start(test: &str) -> Option<Self> {
        use std::os::unix::fs::DirBuilderExt;
        static DIRS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
        let builder = crate::peers::require_qemu(test)?;
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("qmp-rc-{}-{n}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("{test}: cannot create {}: {e}", dir.display()));
        let path = dir.join("qmp.sock");
        // This monitor comes before the builder's own: QEMU sets monitors up
        // in order, so it listens by the time spawn() returns.
        let builder = builder
            .arg("-name")
            .arg(test)
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", path.display()));
        let mut this = Self {
            builder,
            qemu: None,
            dir,
            path,
        };
        this.restart();
        Some(this)
    }

    /// The monitor's path, the same across restarts.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The running QEMU's pid.
    ///
    /// # Panics
    ///
    /// When QEMU is not running.
    pub fn pid(&self) -> u32 {
        self.qemu.as_ref().expect("QEMU is not running").pid()
    }

    /// Kills QEMU (`SIGKILL`): its socket file stays, refusing connections.
    pub fn kill(&mut self) {
        drop(self.qemu.take());
    }

    /// Starts QEMU again (killing it first if it runs).
    ///
    /// # Panics
    ///
    /// If QEMU does not start.
    pub fn restart(&mut self) {
        self.kill();
        let qemu = self.builder.clone().spawn();
        self.qemu = Some(qemu.unwrap_or_else(|e| panic!("cannot start QEMU: {e}")));
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One call of a caller loop: when it started and ended, and how.
#[derive(Debug)]
pub struct Outcome {
    /// When the call was made.
    pub start: Instant,
    /// When it returned.
    pub end: Instant,
    /// What it returned.
    pub result: Result<()>,
}

/// The call the caller loops make.
pub fn looped_call() -> Call {
    Call::new("query-status").timeout(Some(PATIENCE))
}

/// The settings of the cases: short delays, and what calls do.
pub fn reconnect(calls: WhileReconnecting) -> Reconnect {
    Reconnect::default()
        .delays(MIN_DELAY, MAX_DELAY)
        .calls(calls)
}

/// The callers' calls failed only while the connection was down, with the
/// documented errors, and succeeded otherwise (and after every gap).
pub fn failed_only_in_gaps(outcomes: &[Vec<Outcome>], gaps: &[(Instant, Instant)]) {
    for (caller, calls) in outcomes.iter().enumerate() {
        assert!(!calls.is_empty(), "caller {caller} made no call");
        for call in calls {
            let Err(e) = &call.result else {
                continue;
            };
            assert!(
                matches!(e, Error::Reconnecting { .. } | Error::Disconnected(_)),
                "caller {caller}: a call failed with an error not documented for an outage: {e:?}"
            );
            let in_gap = gaps
                .iter()
                .any(|(down, up)| call.start <= *up && call.end >= *down);
            assert!(
                in_gap,
                "caller {caller}: a call outside the outages failed: {e:?}"
            );
        }
        for (n, (_, up)) in gaps.iter().enumerate() {
            let after = calls.iter().any(|c| c.start >= *up && c.result.is_ok());
            assert!(
                after,
                "caller {caller}: no call succeeded after reconnect {}",
                n + 1
            );
        }
    }
}

/// A call made while disconnected, in fail-fast mode, failed at once.
pub fn failed_fast(result: Result<Json>, took: Duration) {
    assert!(
        matches!(result, Err(Error::Reconnecting { .. })),
        "a call while reconnecting: {result:?}"
    );
    assert!(
        took < fixtures::DISCONNECT_BOUND,
        "a fail-fast call took {took:?}"
    );
}

/// The item after a kill: the disconnect marker.
pub fn disconnect_marker(item: Option<Item>) {
    assert!(
        matches!(item, Some(Err(Gap::Disconnected(_)))),
        "expected the disconnect marker, got {item:?}"
    );
}

/// The item after a restart: the reconnect marker, the `n`-th.
pub fn reconnect_marker(item: Option<Item>, n: u64) {
    assert!(
        matches!(item, Some(Err(Gap::Reconnected { reconnects })) if reconnects == n),
        "expected reconnect marker {n}, got {item:?}"
    );
}

/// The item is the event `name`.
pub fn event_named(item: Option<Item>, name: &str) {
    match item {
        Some(Ok(event)) => assert_eq!(event.name(), name),
        other => panic!("expected event {name}, got {other:?}"),
    }
}

/// A call after the client was closed or gave up fails as disconnected.
pub fn fails_as_disconnected(result: Result<Json>) {
    assert!(
        matches!(result, Err(Error::Disconnected(_))),
        "a call after the end: {result:?}"
    );
}

/// The client gave up after [`GIVE_UP_AFTER`] attempts, each after a delay
/// within the backoff's bounds: `took` (from the kill to the give-up) lies
/// between the least the delays can add up to and the most (plus slack).
pub fn gave_up_within_bounds(state: &LinkState, took: Duration) {
    match state {
        LinkState::GaveUp {
            attempts,
            last_error,
            ..
        } => {
            assert_eq!(*attempts, GIVE_UP_AFTER);
            assert!(
                matches!(last_error, Error::Connect(_)),
                "the last attempt: {last_error:?}"
            );
        }
        other => panic!("expected the client to give up, got {other:?}"),
    }
    let (mut least, mut most) = (Duration::ZERO, Duration::ZERO);
    let mut base = MIN_DELAY;
    for _ in 0..GIVE_UP_AFTER {
        least += (base / 2).max(MIN_DELAY);
        most += base;
        base = (base * 2).min(MAX_DELAY);
    }
    assert!(
        took >= least,
        "gave up after {took:?}, under the least backoff {least:?}"
    );
    assert!(
        took <= most + BACKOFF_SLACK,
        "gave up after {took:?}, over the most backoff {most:?} (plus {BACKOFF_SLACK:?})"
    );
}

/// Listens on `path`, where QEMU was, to see who connects.
pub fn listen_where_qemu_was(path: &Path) -> UnixListener {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).expect("cannot listen where QEMU was");
    listener.set_nonblocking(true).expect("set_nonblocking");
    listener
}

/// Nobody connected to `listener` (after [`QUIET_AFTER_DROP`]).
pub fn nobody_connected(listener: &UnixListener) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("something still connects to the path: {other:?}"),
    }
}

/// The async cases.
pub mod async_cases {
    use super::*;

    type Client<H> = qmp_io::nonblocking::Reconnecting<<H as Harness>::Runtime>;

    async fn within<H: Harness, F: Future>(what: &str, future: F) -> F::Output {
        match select(pin!(future), pin!(H::sleep(PATIENCE))).await {
            Either::Left((output, _)) => output,
            Either::Right(_) => panic!("{what}: nothing within {PATIENCE:?}"),
        }
    }

    async fn next<H: Harness>(events: &mut Subscription) -> Option<Item> {
        within::<H, _>("waiting for an event", events.next()).await
    }

    /// Polls `state` until `done` holds, at most [`PATIENCE`].
    async fn until<H: ReconnectHarness>(
        qmp: &Client<H>,
        what: &str,
        done: impl Fn(&LinkState) -> bool,
    ) {
        within::<H, _>(what, qmp.wait_for(done)).await;
    }

    async fn connect<H: ReconnectHarness>(path: &Path, reconnect: Reconnect) -> Client<H> {
        let connecting = H::connect_reconnecting(path, config(), reconnect);
        ok("connect", within::<H, _>("connect", connecting).await)
    }

    async fn caller<H: ReconnectHarness>(qmp: Client<H>, stop: Arc<AtomicBool>) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let result = qmp.call(looped_call()).await.map(drop);
            outcomes.push(Outcome {
                start,
                end: Instant::now(),
                result,
            });
            H::sleep(CALLER_PAUSE).await;
        }
        outcomes
    }

    /// QEMU is killed and restarted [`RESTARTS`] times while tasks call in
    /// a loop and a subscriber reads: calls fail only in the outages, with
    /// the documented errors (fail-fast: `Reconnecting` at once); the
    /// subscriber sees the markers, then real events again; calls pending
    /// at a kill fail as disconnected; `close` ends it all.
    pub async fn reconnects_across_restarts<H: ReconnectHarness>(test: &'static str) {
        let Some(mut qemu) = Restartable::start(test) else {
            return;
        };
        let qmp = connect::<H>(qemu.path(), reconnect(WhileReconnecting::FailFast)).await;
        let mut events = qmp.events();
        let stop = Arc::new(AtomicBool::new(false));
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| H::spawn(caller::<H>(qmp.clone(), stop.clone())))
            .collect();
        let mut gaps = Vec::new();
        for round in 1..=RESTARTS {
            H::sleep(SETTLE).await;
            let down = Instant::now();
            qemu.kill();
            until::<H>(&qmp, "the drop", |s| {
                matches!(s, LinkState::Reconnecting { .. })
            })
            .await;
            disconnect_marker(next::<H>(&mut events).await);
            let start = Instant::now();
            let result = qmp.execute_raw("query-status", ()).await;
            failed_fast(result, start.elapsed());
            qemu.restart();
            reconnect_marker(next::<H>(&mut events).await, round);
            until::<H>(&qmp, "the reconnect", |s| matches!(s, LinkState::Connected)).await;
            gaps.push((down, Instant::now()));
            assert_eq!(qmp.reconnects(), round);
            assert!(
                qmp.greeting().is_some_and(|g| g.oob),
                "oob after reconnect {round}"
            );
            ok("stop", qmp.execute_raw("stop", ()).await);
            ok("cont", qmp.execute_raw("cont", ()).await);
            event_named(next::<H>(&mut events).await, "STOP");
            event_named(next::<H>(&mut events).await, "RESUME");
        }
        H::sleep(SETTLE).await;
        stop.store(true, Ordering::Relaxed);
        let outcomes = within::<H, _>("the callers", join_all(callers)).await;
        failed_only_in_gaps(&outcomes, &gaps);

        // Calls pending when the link drops fail with the disconnect error.
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
        H::sleep(SETTLE).await;
        let killed = Instant::now();
        qemu.kill();
        checks::failed_at_kill(
            killed,
            within::<H, _>("pending calls", join_all(pending)).await,
        );
        disconnect_marker(next::<H>(&mut events).await);
        qemu.restart();
        reconnect_marker(next::<H>(&mut events).await, RESTARTS + 1);

        qmp.close();
        assert!(
            matches!(qmp.state(), LinkState::Closed),
            "{:?}",
            qmp.state()
        );
        fails_as_disconnected(qmp.execute_raw("query-status", ()).await);
        assert!(next::<H>(&mut events).await.is_none(), "events after close");
        assert!(qmp.events().next().await.is_none());
    }

    /// In wait mode, a call made while disconnected waits for the reconnect
    /// (and runs after it), bounded by its timeout.
    pub async fn waits_for_the_reconnect<H: ReconnectHarness>(test: &'static str) {
        let Some(mut qemu) = Restartable::start(test) else {
            return;
        };
        let qmp = connect::<H>(qemu.path(), reconnect(WhileReconnecting::Wait)).await;
        ok("query-status", qmp.execute_raw("query-status", ()).await);
        qemu.kill();
        until::<H>(&qmp, "the drop", |s| {
            matches!(s, LinkState::Reconnecting { .. })
        })
        .await;
        let start = Instant::now();
        let short = qmp.call(fixtures::short_status_call()).await;
        let took = start.elapsed();
        assert!(
            matches!(short, Err(Error::Reconnecting { .. })),
            "{short:?}"
        );
        assert!(
            took >= SHORT_TIMEOUT,
            "gave up after {took:?}, before its timeout"
        );
        let waiting = {
            let qmp = qmp.clone();
            H::spawn(async move {
                let result = qmp.call(looped_call()).await;
                (result, Instant::now())
            })
        };
        H::sleep(SETTLE).await;
        let restarted = Instant::now();
        qemu.restart();
        let (result, at) = within::<H, _>("the waiting call", waiting).await;
        ok("the call that waited", result);
        assert!(at >= restarted, "the call returned before QEMU was back");
        assert_eq!(qmp.reconnects(), 1);
    }

    /// With no QEMU coming back, the client gives up after its attempts,
    /// within the backoff's bounds; then calls fail and subscriptions end,
    /// and a QEMU started later is left alone.
    pub async fn gives_up_within_the_backoff_bounds<H: ReconnectHarness>(test: &'static str) {
        let Some(mut qemu) = Restartable::start(test) else {
            return;
        };
        let settings = reconnect(WhileReconnecting::Wait).give_up_after(Some(GIVE_UP_AFTER));
        let qmp = connect::<H>(qemu.path(), settings).await;
        let mut events = qmp.events();
        let down = Instant::now();
        qemu.kill();
        until::<H>(&qmp, "the give-up", |s| {
            matches!(s, LinkState::GaveUp { .. })
        })
        .await;
        gave_up_within_bounds(&qmp.state(), down.elapsed());
        assert!(qmp.is_closed());
        fails_as_disconnected(qmp.execute_raw("query-status", ()).await);
        disconnect_marker(next::<H>(&mut events).await);
        assert!(
            next::<H>(&mut events).await.is_none(),
            "events after the give-up"
        );
        qemu.restart();
        H::sleep(MAX_DELAY * 3).await;
        assert_eq!(qmp.reconnects(), 0);
        assert!(matches!(qmp.state(), LinkState::GaveUp { .. }));
    }

    /// Dropping every handle while the client reconnects stops it: its
    /// subscriptions end and nothing connects to the path any more.
    pub async fn a_dropped_client_stops_reconnecting<H: ReconnectHarness>(test: &'static str) {
        let Some(mut qemu) = Restartable::start(test) else {
            return;
        };
        let before = H::live_tasks();
        let qmp = connect::<H>(qemu.path(), reconnect(WhileReconnecting::FailFast)).await;
        let mut events = qmp.events();
        qemu.kill();
        until::<H>(
            &qmp,
            "attempts",
            |s| matches!(s, LinkState::Reconnecting { attempts, .. } if *attempts >= 2),
        )
        .await;
        drop(qmp);
        disconnect_marker(next::<H>(&mut events).await);
        assert!(
            next::<H>(&mut events).await.is_none(),
            "events after the drop"
        );
        // The supervisor task is gone (and the driver of the connection
        // that dropped), where the runtime counts tasks.
        if let Some(before) = before {
            let start = Instant::now();
            while H::live_tasks().is_some_and(|now| now > before) {
                assert!(
                    start.elapsed() < PATIENCE,
                    "{:?} tasks alive after the drop, {before} before the connect",
                    H::live_tasks()
                );
                H::sleep(Duration::from_millis(5)).await;
            }
        }
        let listener = listen_where_qemu_was(qemu.path());
        H::sleep(QUIET_AFTER_DROP).await;
        nobody_connected(&listener);
    }
}

/// The blocking cases.
pub mod blocking_cases {
    use super::*;
    use qmp_io::RecvTimeoutError;

    type Client = qmp_io::blocking::Reconnecting;

    /// The blocking cases run one at a time, so the dropped-client case can
    /// count the supervisor threads of this process.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Threads of this process named like the supervisor.
    fn supervisor_threads() -> usize {
        let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim_end() == "qmp-reconnect")
            .count()
    }

    fn next(events: &Subscription) -> Option<Item> {
        match events.recv_timeout(PATIENCE) {
            Ok(item) => Some(item),
            Err(RecvTimeoutError::Closed) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no event within {PATIENCE:?}"),
        }
    }

    fn until(qmp: &Client, what: &str, done: impl Fn(&LinkState) -> bool) {
        assert!(
            qmp.wait_for(Some(PATIENCE), done),
            "{what}: still {:?}",
            qmp.state()
        );
    }

    fn connect<H: BlockingReconnectHarness>(path: &Path, reconnect: Reconnect) -> Client {
        ok(
            "connect",
            H::connect_reconnecting(path, config(), reconnect),
        )
    }

    fn caller(qmp: Client, stop: Arc<AtomicBool>) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let result = qmp.call(looped_call()).map(drop);
            outcomes.push(Outcome {
                start,
                end: Instant::now(),
                result,
            });
            std::thread::sleep(CALLER_PAUSE);
        }
        outcomes
    }

    /// The blocking twin of
    /// [`async_cases::reconnects_across_restarts`].
    pub fn reconnects_across_restarts<H: BlockingReconnectHarness>(test: &'static str) {
        let _serial = one_at_a_time();
        let Some(mut qemu) = Restartable::start(test) else {
            return;
        };
        let qmp = connect::<H>(qemu.path(), reconnect(WhileReconnecting::FailFast));
        let events = qmp.events();
        let stop = Arc::new(AtomicBool::new(false));
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (qmp, stop) = (qmp.clone(), stop.clone());
                std::thread::spawn(move || caller(qmp, stop))
            })
            .collect();
        let mut gaps = Vec::new();
        for round in 1..=RESTARTS {
            std::thread::sleep(SETTLE);
            let down = Instant::now();
            qemu.kill();
            until(&qmp, "the drop", |s| {
                matches!(s, LinkState::Reconnecting { .. })
            });
            disconnect_marker(next(&events));
            let start = Instant::now();
            let result = qmp.execute_raw("query-status", ());
            failed_fast(result, start.elapsed());
            qemu.restart();
            reconnect_marker(next(&events), round);
            until(&qmp, "the reconnect", |s| matches!(s, LinkState::Connected));
            gaps.push((down, Instant::now()));
            assert_eq!(qmp.reconnects(), round);
            assert!(
                qmp.greeting().is_some_and(|g| g.oob),
                "oob after reconnect {round}"
            );
            ok("stop", qmp.execute_raw("stop", ()));
            ok("cont", qmp.execute_raw("cont", ()));
            event_named(next(&events), "STOP");
            event_named(next(&events), "RESUME");
        }
        std::thread::sleep(SETTLE);
        stop.store(true, Ordering::Relaxed);
        let outcomes: Vec<_> = callers
            .into_iter()
            .map(|c| c.join().expect("a caller panicked"))
            .collect();
        failed_only_in_gaps(&outcomes, &gaps);

        fixtures::freeze(qemu.pid());
        let pending: Vec<_> = (0..fixtures::PENDING_AT_KILL)
            .map(|_| {
                let qmp = qmp.clone();
                std::thread::spawn(move || {
                    let result = qmp.call(fixtures::unbounded_status_call());
                    (result, Instant::now())
                })
            })
            .collect();
        std::thread::sleep(SETTLE);
        let killed = Instant::now();
        qemu.kill();
        let results = pending
            .into_iter()
            .map(|p| p.join().expect("a pending call panicked"))
            .collect();
        checks::failed_at_kill(killed, results);
        disconnect_marker(next(&events));
        qemu.restart();
        reconnect_marker(next(&events), RESTARTS + 1);

        qmp.close();
        assert!(
            matches!(qmp.state(), LinkState::Closed),
            "{:?}",
            qmp.state()
        );
        fails_as_disconnected(qmp.execute_raw("query-status", ()));
        assert!(next(&events).is_none(), "events after close");
        assert!(qmp.events().recv().is_none());
    }

    /// The blocking twin of
    /// [`async_cases::waits_for_the_reconnect`].
    pub fn waits_for_the_reconnect<H: BlockingReconnectHarness>(test: &'static str) {
        let _serial = one_at_a_time();
        let Some(mut qemu) = Restartable::start(test) else {
            return;
        };
        let qmp = connect::<H>(qemu.path(), reconnect(WhileReconnecting::Wait));
        ok("query-status", qmp.execute_raw("query-status", ()));
        qemu.kill();
        until(&qmp, "the drop", |s| {
            matches!(s, LinkState::Reconnecting { .. })
        });
        let start = Instant::now();
        let short = qmp.call(fixtures::short_status_call());
        let took = start.elapsed();
        assert!(
            matches!(short, Err(Error::Reconnecting { .. })),
            "{short:?}"
        );
        assert!(
            took >= SHORT_TIMEOUT,
            "gave up after {took:?}, before its timeout"
        );
        let waiting = {
            let qmp = qmp.clone();
            std::thread::spawn(move || {
                let result = qmp.call(looped_call());
                (result, Instant::now())
            })
        };
        std::thread::sleep(SETTLE);
        let restarted = Instant::now();
        qemu.restart();
        let (result, at) = waiting.join().expect("the waiting call panicked");
        ok("the call that waited", result);
        assert!(at >= restarted, "the call returned before QEMU was back");
        assert_eq!(qmp.reconnects(), 1);
    }

    /// The blocking twin of
    /// [`async_cases::gives_up_within_the_backoff_bounds`].
    pub fn gives_up_within_the_backoff_bounds<H: BlockingReconnectHarness>(test: &'static str) {
        let _serial = one_at_a_time();
        let Some(mut qemu) = Restartable::start(test) else {
            return;
        };
        let settings = reconnect(WhileReconnecting::Wait).give_up_after(Some(GIVE_UP_AFTER));
        let qmp = connect::<H>(qemu.path(), settings);
        let events = qmp.events();
        let down = Instant::now();
        qemu.kill();
        until(&qmp, "the give-up", |s| {
            matches!(s, LinkState::GaveUp { .. })
        });
        gave_up_within_bounds(&qmp.state(), down.elapsed());
        assert!(qmp.is_closed());
        fails_as_disconnected(qmp.execute_raw("query-status", ()));
        disconnect_marker(next(&events));
        assert!(next(&events).is_none(), "events after the give-up");
        qemu.restart();
        std::thread::sleep(MAX_DELAY * 3);
        assert_eq!(qmp.reconnects(), 0);
        assert!(matches!(qmp.state(), LinkState::GaveUp { .. }));
    }

    /// The blocking twin of
    /// [`async_cases::a_dropped_client_stops_reconnecting`].
    pub fn a_dropped_client_stops_reconnecting<H: BlockingReconnectHarness>(test: &'static str) {
        let _serial = one_at_a_time();
        let Some(mut qemu) = Restartable::start(test) else {
            return;
        };
        let qmp = connect::<H>(qemu.path(), reconnect(WhileReconnecting::FailFast));
        let events = qmp.events();
        qemu.kill();
        until(
            &qmp,
            "attempts",
            |s| matches!(s, LinkState::Reconnecting { attempts, .. } if *attempts >= 2),
        );
        drop(qmp);
        disconnect_marker(next(&events));
        assert!(next(&events).is_none(), "events after the drop");
        // The supervisor thread is gone.
        let start = Instant::now();
        while supervisor_threads() > 0 {
            assert!(
                start.elapsed() < PATIENCE,
                "a supervisor thread outlived its client"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let listener = listen_where_qemu_was(qemu.path());
        std::thread::sleep(QUIET_AFTER_DROP);
        nobody_connected(&listener);
    }
}
