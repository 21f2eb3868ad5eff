//! The fault cases, generic over the client ([`Target`]). Each takes the
//! test's name (for its peer's socket and its QEMU).

use core::future::Future;
use core::pin::pin;
use core::time::Duration;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use qmp_io::mock::MockQemu;
use qmp_io::{
    Call, Config, ConnectionLimits, Disconnect, Error, EventFilter, HandshakeStep, Json,
    ProtocolError, Result, Subscription,
};
use qmp_proto::framer::FrameError;

use super::{CAP, Memory, Target};
use crate::checks::{Item, ok};
use crate::fixtures::{self, DISCONNECT_BOUND, PATIENCE, SHORT_TIMEOUT};
use crate::hostile::{HostilePeer, Step, sync_steps};

/// `future`'s output, or a panic naming `what` after [`PATIENCE`].
async fn within<T: Target, F: Future>(what: &str, future: F) -> F::Output {
    match select(pin!(future), T::sleep(PATIENCE)).await {
        Either::Left((output, _)) => output,
        Either::Right(_) => panic!("{what}: nothing within {PATIENCE:?}"),
    }
}

/// The settings of the fault cases: the suite's, with a [`CAP`] size limit.
pub fn fault_config() -> Config {
    let mut limits = ConnectionLimits::default();
    limits.receive.max_message_size = CAP;
    fixtures::config().limits(limits)
}

/// How much more than [`CAP`] the client may hold while skipping or
/// refusing input: its read buffer, the framer's slack, bookkeeping.
const SLACK: usize = 512 << 10;

/// The memory bound of a client whose peer floods it: one message's worth
/// and the slack.
const MEMORY_BOUND: usize = CAP + SLACK;

/// How long the endless-reply cases let the peer flood the client.
const ENDLESS_TIMEOUT: Duration = Duration::from_secs(1);

/// One byte every this long: the slowloris cases.
const TRICKLE: Duration = Duration::from_millis(10);

/// The memory bound of a client flooded with events: its queues hold
/// [`FLOOD_CAPACITY`] small events; the rest is its read buffers.
const FLOOD_BOUND: usize = 1 << 20;

/// Events of the flood case.
const FLOOD_EVENTS: usize = 100_000;

/// Subscriber queue length in the flood case.
const FLOOD_CAPACITY: usize = 64;

fn call(name: &str) -> Call {
    Call::new(name)
}

fn short(name: &str) -> Call {
    Call::new(name).timeout(Some(SHORT_TIMEOUT))
}

fn value(result: Result<Json>, what: &str) -> serde_json::Value {
    let json = ok(what, result);
    json.decode()
        .unwrap_or_else(|e| panic!("{what}: {json}: {e}"))
}

/// The call failed with exactly `Error::Timeout(timeout)`.
fn timed_out(what: &str, result: Result<Json>, timeout: Duration) {
    match result {
        Err(Error::Timeout(d)) => assert_eq!(d, timeout, "{what}"),
        other => panic!("{what}: expected a {timeout:?} timeout, got {other:?}"),
    }
}

/// The reason is exactly the protocol error `expected`.
fn protocol(what: &str, reason: &Disconnect, expected: ProtocolError) {
    match reason {
        Disconnect::Protocol(e) => assert_eq!(*e, expected, "{what}"),
        other => panic!("{what}: expected the protocol error {expected:?}, got {other:?}"),
    }
}

/// The call failed as disconnected; the reason is returned.
fn disconnected(what: &str, result: Result<Json>) -> Disconnect {
    match result {
        Err(Error::Disconnected(reason)) => reason,
        other => panic!("{what}: expected a disconnect, got {other:?}"),
    }
}

/// The call failed as disconnected for the protocol error `expected`, and
/// says so in its message.
fn broke_protocol(what: &str, result: Result<Json>, expected: ProtocolError) {
    let reason = disconnected(what, result);
    protocol(what, &reason, expected);
    let message = Error::Disconnected(reason).to_string();
    assert_eq!(message, format!("disconnected: protocol error: {expected}"));
}

/// A second client, to a mock QEMU, that the faults must not disturb; and a
/// subscriber on it.
struct Bystander<T: Target> {
    mock: MockQemu,
    qmp: T::Qmp,
    events: Subscription,
}

impl<T: Target> Bystander<T> {
    async fn new() -> Self {
        let mock = fixtures::mock();
        let qmp = ok(
            "the bystander's connect",
            within::<T, _>(
                "connect",
                T::connect(mock.path().into(), fixtures::config()),
            )
            .await,
        );
        let events = T::subscribe(&qmp, EventFilter::all());
        Bystander { mock, qmp, events }
    }

    /// Sends the bystander an event while the fault goes on.
    fn during(&self) {
        self.mock
            .emit_event("BYSTANDER", None)
            .expect("the bystander's event");
    }

    /// The bystander answers and got its event.
    async fn check(mut self) {
        let status = within::<T, _>(
            "the bystander's call",
            T::call(&self.qmp, call("query-status")),
        )
        .await;
        assert_eq!(value(status, "the bystander's call")["status"], "running");
        let event = within::<T, _>("the bystander's event", self.events.next()).await;
        match event {
            Some(Ok(e)) => assert_eq!(e.name(), "BYSTANDER"),
            other => panic!("the bystander's subscriber: {other:?}"),
        }
    }
}

async fn connect<T: Target>(peer: &HostilePeer, config: Config) -> T::Qmp {
    let qmp = T::connect(peer.path().into(), config);
    ok("connect", within::<T, _>("connect", qmp).await)
}

async fn connect_agent<T: Target>(peer: &HostilePeer, config: Config) -> T::Agent {
    let agent = T::connect_agent(peer.path().into(), config);
    ok(
        "connect the agent",
        within::<T, _>("connect the agent", agent).await,
    )
}

/// The subscription ended (the connection is over).
async fn ended<T: Target>(what: &str, events: &mut Subscription) {
    let item: Option<Item> = within::<T, _>(what, events.next()).await;
    assert!(item.is_none(), "{what}: {item:?}");
}

/// The reply that QEMU gives `query-status` (running).
const STATUS: &str = "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": {id}}";

/// A `query-name` reply naming `name`.
fn name_reply(name: &str) -> String {
    format!("{{\"return\": {{\"name\": \"{name}\"}}, \"id\": {{id}}}}")
}

/// The reply is `{"name": name}`.
fn named(what: &str, result: Result<Json>, name: &str) {
    assert_eq!(value(result, what), serde_json::json!({ "name": name }));
}

/// The peer stalls half-way through a reply: the call times out with exactly
/// its timeout, the connection stays open (as `Error::Timeout` documents),
/// and once the peer ends the late reply it is dropped: the next call gets
/// its own.
pub async fn stall_mid_reply<T: Target>(test: &str) {
    let peer = HostilePeer::qmp(
        test,
        vec![
            Step::Await("query-status"),
            Step::Part("{\"id\": {id}, \"return\": {\"status\": \"runn".into()),
            Step::Await("query-name"),
            Step::Send(b"ing\"}}\r\n".to_vec()),
            Step::Reply(name_reply("own")),
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let qmp = connect::<T>(&peer, fault_config()).await;
    let events = T::subscribe(&qmp, EventFilter::all());
    let stalled = within::<T, _>("the stalled call", T::call(&qmp, short("query-status"))).await;
    timed_out("the stalled call", stalled, SHORT_TIMEOUT);
    assert!(
        !T::is_closed(&qmp),
        "a timeout must leave the connection open"
    );
    bystander.during();
    let next = within::<T, _>("the next call", T::call(&qmp, call("query-name"))).await;
    named("the call after the stall", next, "own");
    assert!(events.try_recv().is_none(), "no event was sent");
    assert!(!T::is_closed(&qmp));
    bystander.check().await;
}

/// The guest stalls half-way through a reply: the call times out, the
/// client resynchronises (0xFF inside the stalled string included), and the
/// next call gets its own reply.
pub async fn agent_stall_mid_reply<T: Target>(test: &str) {
    let mut steps = vec![
        Step::Await("guest-info"),
        Step::Part("{\"id\": {id}, \"return\": {\"version\": \"9.".into()),
    ];
    steps.extend(sync_steps());
    steps.extend([
        Step::Await("guest-ping"),
        Step::Reply("{\"return\": {\"pong\": 1}, \"id\": {id}}".into()),
        Step::Hang,
    ]);
    let peer = HostilePeer::agent(test, steps);
    let bystander = Bystander::<T>::new().await;
    let agent = connect_agent::<T>(&peer, fault_config()).await;
    let stalled = within::<T, _>(
        "the stalled call",
        T::agent_call(&agent, short("guest-info")),
    )
    .await;
    timed_out("the stalled guest call", stalled, SHORT_TIMEOUT);
    bystander.during();
    let ping = within::<T, _>("the next call", T::agent_call(&agent, call("guest-ping"))).await;
    assert_eq!(
        value(ping, "guest-ping after the stall"),
        serde_json::json!({ "pong": 1 })
    );
    bystander.check().await;
}

/// A call's result and when it came.
async fn timed<O>(task: crate::Task<O>) -> (O, Instant) {
    let output = task.await;
    (output, Instant::now())
}

/// The call failed with `Eof { mid_message: true }` within
/// [`DISCONNECT_BOUND`] of the peer's close.
fn failed_at_close(what: &str, (result, at): (Result<Json>, Instant), closed: Instant) {
    let reason = disconnected(what, result);
    assert!(
        matches!(reason, Disconnect::Eof { mid_message: true }),
        "{what}: {reason:?}"
    );
    let late = at.saturating_duration_since(closed);
    assert!(
        late < DISCONNECT_BOUND,
        "{what} failed {late:?} after the close"
    );
}

/// Steps of the QMP peers' handshake (greeting, `qmp_capabilities`).
const QMP_HANDSHAKE: usize = 3;

/// Steps of the agent peers' synchronisation.
const AGENT_SYNC: usize = 3;

/// The peer closes half-way through a reply: both pending calls fail within
/// a second of the close with `Eof { mid_message: true }`, so does the
/// connection, its subscriber ends, and a later call fails at once.
pub async fn close_mid_reply<T: Target>(test: &str) {
    let peer = HostilePeer::qmp(
        test,
        vec![
            Step::Await("query-status"),
            Step::Await("query-name"),
            Step::Part("{\"return\": {\"status\": \"run".into()),
            Step::Sleep(Duration::from_millis(100)),
            Step::Close,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let qmp = connect::<T>(&peer, fault_config()).await;
    let mut events = T::subscribe(&qmp, EventFilter::all());
    let first = timed(T::call(&qmp, call("query-status").timeout(None)));
    let second = timed(T::call(&qmp, call("query-name").timeout(None)));
    let pending = futures_util::future::join(first, second);
    let (first, second) = within::<T, _>("the pending calls", pending).await;
    let close = QMP_HANDSHAKE + 4;
    assert!(peer.wait_steps(close + 1), "the peer did not close");
    let closed = peer.finished_at(close).expect("the close step");
    failed_at_close("the first pending call", first, closed);
    failed_at_close("the second pending call", second, closed);
    let reason = within::<T, _>("closed", T::closed(&qmp)).await;
    assert!(
        matches!(reason, Disconnect::Eof { mid_message: true }),
        "{reason:?}"
    );
    assert_eq!(
        Error::Disconnected(reason).to_string(),
        "disconnected: the peer closed the connection in the middle of a message"
    );
    ended::<T>("the subscriber", &mut events).await;
    let start = Instant::now();
    let later = timed(T::call(&qmp, call("query-status")));
    failed_at_close(
        "a later call",
        within::<T, _>("a later call", later).await,
        start,
    );
    bystander.during();
    bystander.check().await;
}

/// The guest closes half-way through a reply: the pending call fails within
/// a second with `Eof { mid_message: true }`, and so does the connection.
pub async fn agent_close_mid_reply<T: Target>(test: &str) {
    let peer = HostilePeer::agent(
        test,
        vec![
            Step::Await("guest-info"),
            Step::Part("{\"id\": {id}, \"return\": {\"vers".into()),
            Step::Sleep(Duration::from_millis(100)),
            Step::Close,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let agent = connect_agent::<T>(&peer, fault_config()).await;
    let pending = timed(T::agent_call(&agent, call("guest-info").timeout(None)));
    let pending = within::<T, _>("the pending call", pending).await;
    let close = AGENT_SYNC + 3;
    assert!(peer.wait_steps(close + 1), "the peer did not close");
    let closed = peer.finished_at(close).expect("the close step");
    failed_at_close("the pending guest call", pending, closed);
    let reason = within::<T, _>("closed", T::agent_closed(&agent)).await;
    assert!(
        matches!(reason, Disconnect::Eof { mid_message: true }),
        "{reason:?}"
    );
    bystander.during();
    bystander.check().await;
}

/// Messages that never end, in every part of a reply the framer treats
/// apart: a string, whitespace, a number, the id, a top-level key. Each is
/// `(what, before, fill, after)`: the peer sends `before`, then `fill` until
/// released, then `after`.
const ENDLESS: [(&str, &str, u8, &str); 5] = [
    ("a string", "{\"return\": \"", b'a', "\", \"id\": {id}}"),
    ("whitespace", "{\"return\": ", b' ', "1, \"id\": {id}}"),
    ("a number", "{\"return\": 1", b'1', ", \"id\": {id}}"),
    ("an id", "{\"return\": 1, \"id\": 1", b'1', "}"),
    ("a key", "{\"", b'k', "\": 1, \"return\": 1, \"id\": {id}}"),
];

/// A reply that never ends (in a string, whitespace, a number, the id, a
/// key): the client skips it without storing it (memory stays at the cap
/// while the peer sends many times more), the call fails at its own timeout
/// (the reply's id, at its end, never comes, so no call can be failed
/// earlier without guessing), and once the peer ends the message it is
/// dropped and the connection goes on.
pub async fn endless_reply<T: Target>(test: &str) {
    let bystander = Bystander::<T>::new().await;
    for (what, before, fill, after) in ENDLESS {
        let peer = HostilePeer::qmp(
            &format!("{test}-{fill}"),
            vec![
                Step::Await("query-status"),
                Step::Flood {
                    before: before.into(),
                    fill,
                    after: after.into(),
                    total: None,
                },
                Step::Await("query-name"),
                Step::Reply(name_reply("own")),
                Step::Hang,
            ],
        );
        let qmp = connect::<T>(&peer, fault_config()).await;
        let memory = Memory::start();
        let endless = T::call(&qmp, call("query-status").timeout(Some(ENDLESS_TIMEOUT)));
        let endless = within::<T, _>(what, endless).await;
        timed_out(what, endless, ENDLESS_TIMEOUT);
        memory.check(
            &format!("{what} that never ends"),
            peer.sent(),
            MEMORY_BOUND,
        );
        assert!(!T::is_closed(&qmp), "{what}");
        peer.release();
        let next = within::<T, _>("the next call", T::call(&qmp, call("query-name"))).await;
        named(
            &format!("the call after {what} that never ends"),
            next,
            "own",
        );
    }
    bystander.during();
    bystander.check().await;
}

/// A greeting, and a guest's answer to the sync, that never end: the
/// connect fails at its timeout naming the handshake step that was missing,
/// with memory at the cap while the peer sends many times more.
pub async fn endless_handshake<T: Target>(test: &str) {
    let endless = |before: &str| Step::Flood {
        before: before.into(),
        fill: b'a',
        after: "\"}".into(),
        total: None,
    };
    let timeout = ENDLESS_TIMEOUT;
    let config = fault_config().connect_timeout(timeout);
    let handshake_timed_out = |what: &str, reason: Disconnect, expected: HandshakeStep| match reason
    {
        Disconnect::HandshakeTimeout { step, timeout: t } => {
            assert_eq!((step, t), (expected, timeout), "{what}");
        }
        other => panic!("{what}: {other:?}"),
    };

    let qmp = HostilePeer::start(&format!("{test}-qmp"), vec![endless("{\"QMP\": \"")]);
    let memory = Memory::start();
    let result = within::<T, _>("connect", T::connect(qmp.path().into(), config.clone())).await;
    match result {
        Err(Error::Disconnected(reason)) => {
            handshake_timed_out("an endless greeting", reason, HandshakeStep::Greeting);
        }
        other => panic!("an endless greeting: {other:?}"),
    }
    memory.check("a greeting that never ends", qmp.sent(), MEMORY_BOUND);

    let agent = HostilePeer::start(
        &format!("{test}-agent"),
        vec![
            Step::Await("guest-sync-delimited"),
            Step::Send(vec![0xFF]),
            endless("{\"return\": \""),
        ],
    );
    let memory = Memory::start();
    let result = within::<T, _>("connect", T::connect_agent(agent.path().into(), config)).await;
    match result {
        Err(Error::Disconnected(reason)) => {
            handshake_timed_out("an endless sync reply", reason, HandshakeStep::GuestSync);
        }
        other => panic!("an endless sync reply: {other:?}"),
    }
    memory.check("a sync reply that never ends", agent.sent(), MEMORY_BOUND);
}

/// The guest sends a reply that never ends: the call times out, memory stays
/// at the cap, and once the guest ends it the client resynchronises and the
/// next call gets its own reply.
pub async fn agent_endless_reply<T: Target>(test: &str) {
    let mut steps = vec![
        Step::Await("guest-info"),
        Step::Flood {
            before: "{\"return\": \"".into(),
            fill: b'a',
            after: "\", \"id\": {id}}".into(),
            total: None,
        },
    ];
    steps.extend(sync_steps());
    steps.extend([
        Step::Await("guest-ping"),
        Step::Reply("{\"return\": {}, \"id\": {id}}".into()),
        Step::Hang,
    ]);
    let peer = HostilePeer::agent(test, steps);
    let bystander = Bystander::<T>::new().await;
    let agent = connect_agent::<T>(&peer, fault_config()).await;
    let memory = Memory::start();
    let endless = T::agent_call(&agent, call("guest-info").timeout(Some(ENDLESS_TIMEOUT)));
    let endless = within::<T, _>("the endless guest reply", endless).await;
    timed_out("the endless guest reply", endless, ENDLESS_TIMEOUT);
    memory.check("a guest reply that never ends", peer.sent(), MEMORY_BOUND);
    peer.release();
    let ping = within::<T, _>("the next call", T::agent_call(&agent, call("guest-ping"))).await;
    assert_eq!(
        value(ping, "guest-ping after the endless reply"),
        serde_json::json!({})
    );
    bystander.during();
    bystander.check().await;
}

/// The CPU time this process used so far.
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Asserts the client spent well under the wall time on the CPU while a
/// reply trickled in: it waits for bytes, it does not spin.
fn no_busy_loop(what: &str, cpu: Duration, wall: Duration) {
    println!("cpu: {what}: {cpu:?} of CPU time in {wall:?}");
    assert!(
        cpu < wall / 2,
        "{what}: {cpu:?} of CPU time in {wall:?}: a busy loop?"
    );
}

/// A reply trickled a byte every 10 ms completes, whole and right, when the
/// timeout allows (and the client does not spin meanwhile); one that takes
/// longer than its call's timeout fails with exactly that timeout, and the
/// next call gets its own reply.
pub async fn slowloris_reply<T: Target>(test: &str) {
    let peer = HostilePeer::qmp(
        test,
        vec![
            Step::Await("query-status"),
            Step::Trickle(STATUS.into(), TRICKLE),
            Step::Await("query-name"),
            Step::Trickle(name_reply("late"), TRICKLE),
            Step::Await("query-name"),
            Step::Reply(name_reply("own")),
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let qmp = connect::<T>(&peer, fault_config()).await;
    let (cpu, wall) = (cpu_time(), Instant::now());
    let slow = T::call(
        &qmp,
        call("query-status").timeout(Some(Duration::from_secs(10))),
    );
    let slow = within::<T, _>("the trickled reply", slow).await;
    no_busy_loop(
        "a reply trickled a byte per 10 ms",
        cpu_time() - cpu,
        wall.elapsed(),
    );
    let status = value(slow, "the trickled reply");
    assert_eq!(
        status,
        serde_json::json!({"status": "running", "singlestep": false, "running": true})
    );
    bystander.during();
    let late = within::<T, _>("the too slow reply", T::call(&qmp, short("query-name"))).await;
    timed_out("the too slow reply", late, SHORT_TIMEOUT);
    let next = within::<T, _>("the next call", T::call(&qmp, call("query-name"))).await;
    named("the call after the too slow reply", next, "own");
    bystander.check().await;
}

/// A guest reply trickled a byte every 10 ms completes, whole and right.
pub async fn agent_slowloris_reply<T: Target>(test: &str) {
    let peer = HostilePeer::agent(
        test,
        vec![
            Step::Await("guest-info"),
            Step::Trickle(
                "{\"return\": {\"version\": \"9.2.0\"}, \"id\": {id}}".into(),
                TRICKLE,
            ),
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let agent = connect_agent::<T>(&peer, fault_config()).await;
    let (cpu, wall) = (cpu_time(), Instant::now());
    let slow = T::agent_call(
        &agent,
        call("guest-info").timeout(Some(Duration::from_secs(10))),
    );
    let slow = within::<T, _>("the trickled guest reply", slow).await;
    no_busy_loop(
        "a guest reply trickled a byte per 10 ms",
        cpu_time() - cpu,
        wall.elapsed(),
    );
    assert_eq!(
        value(slow, "the trickled guest reply"),
        serde_json::json!({"version": "9.2.0"})
    );
    bystander.during();
    bystander.check().await;
}

/// The depth limit the default settings have (QEMU's own).
const DEPTH_LIMIT: u32 = qmp_proto::framer::MAX_DEPTH;

/// The nesting the deep cases send.
const DEEP: u64 = 1_000_000;

/// A reply nested a million levels deep: the connection fails with the depth
/// error naming the limit (no stack overflow, no buffering of the rest), both
/// pending calls with it.
pub async fn deep_nesting<T: Target>(test: &str) {
    let peer = HostilePeer::qmp(
        test,
        vec![
            Step::Await("query-status"),
            Step::Await("query-name"),
            Step::Flood {
                before: "{\"return\": ".into(),
                fill: b'[',
                after: String::new(),
                total: Some(DEEP + 11),
            },
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let qmp = connect::<T>(&peer, fault_config()).await;
    let mut events = T::subscribe(&qmp, EventFilter::all());
    let memory = Memory::start();
    let first = T::call(&qmp, call("query-status"));
    let second = T::call(&qmp, call("query-name"));
    let (first, second) =
        within::<T, _>("the deep reply", futures_util::future::join(first, second)).await;
    let expected = ProtocolError::Frame(FrameError::TooDeep { limit: DEPTH_LIMIT });
    broke_protocol("the first call", first, expected);
    broke_protocol("the second call", second, expected);
    let reason = within::<T, _>("closed", T::closed(&qmp)).await;
    protocol("the connection", &reason, expected);
    ended::<T>("the subscriber", &mut events).await;
    let growth = memory.peak_growth();
    println!("memory: a million levels of nesting: peak growth {growth} bytes");
    assert!(growth <= MEMORY_BOUND, "memory grew by {growth} bytes");
    bystander.during();
    bystander.check().await;
}

/// A guest reply nested a million levels deep: the depth error.
pub async fn agent_deep_nesting<T: Target>(test: &str) {
    let peer = HostilePeer::agent(
        test,
        vec![
            Step::Await("guest-info"),
            Step::Flood {
                before: "{\"return\": ".into(),
                fill: b'[',
                after: String::new(),
                total: Some(DEEP + 11),
            },
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let agent = connect_agent::<T>(&peer, fault_config()).await;
    let deep = within::<T, _>("the deep reply", T::agent_call(&agent, call("guest-info"))).await;
    let expected = ProtocolError::Frame(FrameError::TooDeep { limit: DEPTH_LIMIT });
    broke_protocol("the deep guest reply", deep, expected);
    bystander.during();
    bystander.check().await;
}

/// A reply of `size` bytes of `a` in a string, `id` first: the id of the
/// last command the peer took named `command`.
fn sized_reply(command: &str, size: usize) -> Step {
    Step::Flood {
        before: format!("{{\"id\": {{id:{command}}}, \"return\": \""),
        fill: b'a',
        after: "\"}".into(),
        total: Some(size as u64),
    }
}

/// The call failed with exactly `ReplyTooLarge { size, limit: CAP }`, and
/// its message names both.
fn too_large(what: &str, result: Result<Json>, size: usize) {
    match result {
        Err(e @ Error::ReplyTooLarge { .. }) => {
            assert!(
                matches!(e, Error::ReplyTooLarge { size: s, limit: CAP } if s == size),
                "{what}: {e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "the reply ({size} bytes) is larger than the size limit ({CAP} bytes); it was skipped"
                ),
                "{what}"
            );
        }
        other => panic!("{what}: expected ReplyTooLarge of {size} bytes, got {other:?}"),
    }
}

/// Replies at the cap, one byte over it and a hundred times over it: the
/// first is delivered whole, the others fail with `ReplyTooLarge` and their
/// exact size, memory stays within the cap and its slack while a hundred go
/// by, and a call and an event that come after them are delivered. An event
/// twice the cap is dropped unread (as `Config::limits` says): the
/// subscriber gets `Gap::TooLarge` with its exact size and the limit where
/// it would have been, then the event after it.
pub async fn reply_over_the_cap<T: Target>(test: &str) {
    let peer = HostilePeer::qmp(
        test,
        vec![
            Step::Await("query-status"),
            sized_reply("query-status", CAP),
            Step::Await("query-status"),
            sized_reply("query-status", CAP + 1),
            Step::Await("query-status"),
            Step::Await("query-name"),
            sized_reply("query-status", 100 * CAP),
            Step::Flood {
                before: "{\"event\": \"HUGE\", \"data\": {\"pad\": \"".into(),
                fill: b'a',
                after: "\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}".into(),
                total: Some(2 * CAP as u64),
            },
            Step::Reply(
                "{\"event\": \"AFTER\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}"
                    .into(),
            ),
            Step::Reply(name_reply("own")),
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let qmp = connect::<T>(&peer, fault_config()).await;
    let mut events = T::subscribe(&qmp, EventFilter::all());
    let at_cap = within::<T, _>("the reply at the cap", T::call(&qmp, call("query-status"))).await;
    let at_cap = value(at_cap, "the reply at the cap");
    let overhead = "{\"id\": 1, \"return\": \"\"}".len();
    assert_eq!(at_cap.as_str().map(str::len), Some(CAP - overhead));
    drop(at_cap);
    let over = within::<T, _>("one byte over", T::call(&qmp, call("query-status"))).await;
    too_large("one byte over the cap", over, CAP + 1);
    let memory = Memory::start();
    let sent = peer.sent();
    let huge = T::call(&qmp, call("query-status"));
    let beside = T::call(&qmp, call("query-name"));
    let (huge, beside) = within::<T, _>(
        "a hundred times over",
        futures_util::future::join(huge, beside),
    )
    .await;
    too_large("a hundred times over the cap", huge, 100 * CAP);
    named("the call beside the huge reply", beside, "own");
    memory.check(
        "a reply 100 times the cap",
        peer.sent() - sent,
        MEMORY_BOUND,
    );
    match within::<T, _>("the marker for the huge event", events.next()).await {
        Some(Err(gap @ qmp_io::Gap::TooLarge { .. })) => {
            let (size, limit) = (2 * CAP, CAP);
            assert!(
                matches!(gap, qmp_io::Gap::TooLarge { size: s, limit: l } if s as usize == size && l as usize == limit),
                "{gap:?}"
            );
            assert_eq!(
                gap.to_string(),
                format!(
                    "an event of {size} bytes was dropped unread: over the size limit of {limit} bytes (Config::limits)"
                )
            );
        }
        other => panic!("the item for the event twice the cap: {other:?}"),
    }
    match within::<T, _>("the event after", events.next()).await {
        Some(Ok(e)) => assert_eq!(e.name(), "AFTER"),
        other => panic!("the event after the huge reply and event: {other:?}"),
    }
    assert!(
        events.try_recv().is_none(),
        "only the marker and the event under the cap"
    );
    assert!(!T::is_closed(&qmp));
    bystander.during();
    bystander.check().await;
}

/// Guest replies one byte over the cap and a hundred times over it:
/// `ReplyTooLarge` with the exact size, memory within two caps, and the next
/// call is answered.
pub async fn agent_reply_over_the_cap<T: Target>(test: &str) {
    let peer = HostilePeer::agent(
        test,
        vec![
            Step::Await("guest-info"),
            sized_reply("guest-info", CAP + 1),
            Step::Await("guest-info"),
            sized_reply("guest-info", 100 * CAP),
            Step::Await("guest-ping"),
            Step::Reply("{\"return\": {}, \"id\": {id}}".into()),
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let agent = connect_agent::<T>(&peer, fault_config()).await;
    let over = within::<T, _>("one byte over", T::agent_call(&agent, call("guest-info"))).await;
    too_large("a guest reply one byte over the cap", over, CAP + 1);
    let memory = Memory::start();
    let sent = peer.sent();
    let huge = within::<T, _>(
        "a hundred times over",
        T::agent_call(&agent, call("guest-info")),
    )
    .await;
    too_large(
        "a guest reply a hundred times over the cap",
        huge,
        100 * CAP,
    );
    memory.check(
        "a guest reply 100 times the cap",
        peer.sent() - sent,
        MEMORY_BOUND,
    );
    let ping = within::<T, _>("the next call", T::agent_call(&agent, call("guest-ping"))).await;
    assert_eq!(
        value(ping, "guest-ping after the huge replies"),
        serde_json::json!({})
    );
    bystander.during();
    bystander.check().await;
}

/// The flood's event numbered `n`.
fn flood_number(what: &str, item: Option<Item>) -> u64 {
    match item {
        Some(Ok(e)) => {
            assert_eq!(e.name(), "FLOOD", "{what}");
            let data: serde_json::Value = e.decode().expect("the flood event's data");
            data["n"].as_u64().expect("a number")
        }
        other => panic!("{what}: {other:?}"),
    }
}

/// A flood of events while two commands wait: both get their own replies
/// after it, a subscriber that does not read lags (one `Lagged` with the
/// exact count, then the newest events in order), a filtered one gets just
/// its event, and memory stays bounded by the queues, not by the flood.
pub async fn event_flood<T: Target>(test: &str) {
    let peer = HostilePeer::qmp(
        test,
        vec![
            Step::Await("query-status"),
            Step::Await("query-name"),
            Step::Repeat(
                "{\"event\": \"FLOOD\", \"data\": {\"n\": {n}}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}"
                    .into(),
                FLOOD_EVENTS,
            ),
            Step::Reply(STATUS.replace("{id}", "{id:query-status}")),
            Step::Reply(name_reply("own")),
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let config = fault_config().event_capacity(FLOOD_CAPACITY);
    let qmp = connect::<T>(&peer, config).await;
    let slow = T::subscribe(&qmp, EventFilter::all());
    let picky = T::subscribe(&qmp, EventFilter::name("FLOOD").data_eq("n", "42"));
    let memory = Memory::start();
    let status = T::call(&qmp, call("query-status"));
    let name = T::call(&qmp, call("query-name"));
    let (status, name) = within::<T, _>(
        "the calls behind the flood",
        futures_util::future::join(status, name),
    )
    .await;
    assert_eq!(
        value(status, "query-status behind the flood")["status"],
        "running"
    );
    named("query-name behind the flood", name, "own");
    memory.check("a flood of events", peer.sent(), FLOOD_BOUND);
    let lost = FLOOD_EVENTS - FLOOD_CAPACITY;
    let marker = slow.try_recv().map(|i| i.err());
    assert!(
        matches!(marker, Some(Some(qmp_io::Gap::Lagged(n))) if n == lost as u64),
        "the slow subscriber's lag marker: {marker:?}"
    );
    for n in lost..FLOOD_EVENTS {
        assert_eq!(
            flood_number("the slow subscriber", slow.try_recv()),
            n as u64
        );
    }
    assert!(slow.try_recv().is_none());
    assert_eq!(
        flood_number("the filtered subscriber", picky.try_recv()),
        42
    );
    assert!(picky.try_recv().is_none());
    bystander.during();
    bystander.check().await;
}

/// Replies to ids the client never sent, sent after the peer took a
/// command: too high, the command's id as a string, negative, the id the
/// client's next command will get, an error with an unknown id, an error with
/// none.
fn stray_replies() -> Vec<Step> {
    [
        "{\"return\": {\"stale\": 1}, \"id\": 1000}",
        "{\"return\": {\"stale\": 2}, \"id\": \"{id}\"}",
        "{\"return\": {\"stale\": 3}, \"id\": -1}",
        "{\"return\": {\"stale\": 4}, \"id\": {next}}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"stale\"}, \"id\": 999}",
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no id\"}}",
    ]
    .map(|reply| Step::Reply(reply.into()))
    .into()
}

/// Replies with ids the client never sent (too high, a string, negative, the
/// id its next command will get, an error with an unknown id, an error with
/// none) and a second reply to an answered command: none is given to any
/// call (the client drops them, logging at debug level, and an id-less error
/// at warn level), the connection stays open, and each call gets its own
/// reply, also the next one whose id was used early.
pub async fn unknown_ids<T: Target>(test: &str) {
    let peer = HostilePeer::qmp(
        test,
        vec![Step::Await("query-status")]
            .into_iter()
            .chain(stray_replies())
            .chain([
                Step::Reply(STATUS.into()),
                // Answered twice: the second is for no call any more.
                Step::Reply("{\"return\": {\"duplicate\": true}, \"id\": {id}}".into()),
                Step::Await("query-name"),
                Step::Reply(name_reply("own")),
                Step::Hang,
            ])
            .collect(),
    );
    let bystander = Bystander::<T>::new().await;
    let qmp = connect::<T>(&peer, fault_config()).await;
    let events = T::subscribe(&qmp, EventFilter::all());
    let status = within::<T, _>("query-status", T::call(&qmp, call("query-status"))).await;
    assert_eq!(
        value(status, "query-status among stray replies"),
        serde_json::json!({"status": "running", "singlestep": false, "running": true})
    );
    bystander.during();
    let name = within::<T, _>("query-name", T::call(&qmp, call("query-name"))).await;
    named("the call whose id came early", name, "own");
    assert!(
        !T::is_closed(&qmp),
        "stray replies must not end the connection"
    );
    assert!(
        events.try_recv().is_none(),
        "a stray reply reached a subscriber"
    );
    bystander.check().await;
}

/// Guest replies with ids never sent (the same as [`unknown_ids`]): none
/// reaches a call, and the calls get their own replies.
pub async fn agent_unknown_ids<T: Target>(test: &str) {
    let peer = HostilePeer::agent(
        test,
        vec![Step::Await("guest-info")]
            .into_iter()
            .chain(stray_replies())
            .chain([
                Step::Reply("{\"return\": {\"version\": \"own\"}, \"id\": {id}}".into()),
                Step::Await("guest-ping"),
                Step::Reply("{\"return\": {\"pong\": \"own\"}, \"id\": {id}}".into()),
                Step::Hang,
            ])
            .collect(),
    );
    let bystander = Bystander::<T>::new().await;
    let agent = connect_agent::<T>(&peer, fault_config()).await;
    let info = within::<T, _>("guest-info", T::agent_call(&agent, call("guest-info"))).await;
    assert_eq!(
        value(info, "guest-info"),
        serde_json::json!({"version": "own"})
    );
    let ping = within::<T, _>("guest-ping", T::agent_call(&agent, call("guest-ping"))).await;
    assert_eq!(
        value(ping, "guest-ping"),
        serde_json::json!({"pong": "own"})
    );
    bystander.during();
    bystander.check().await;
}

/// A second greeting mid-session: the connection fails with
/// `UnexpectedGreeting`, the pending call with it, the subscriber ends.
pub async fn second_greeting<T: Target>(test: &str) {
    let peer = HostilePeer::qmp(
        test,
        vec![Step::Await("query-status"), Step::Greet, Step::Hang],
    );
    let bystander = Bystander::<T>::new().await;
    let qmp = connect::<T>(&peer, fault_config()).await;
    let mut events = T::subscribe(&qmp, EventFilter::all());
    let pending = within::<T, _>("the pending call", T::call(&qmp, call("query-status"))).await;
    broke_protocol(
        "the call pending at the greeting",
        pending,
        ProtocolError::UnexpectedGreeting,
    );
    let reason = within::<T, _>("closed", T::closed(&qmp)).await;
    protocol("the connection", &reason, ProtocolError::UnexpectedGreeting);
    ended::<T>("the subscriber", &mut events).await;
    bystander.during();
    bystander.check().await;
}

/// An invalid UTF-8 sequence (a lone lead byte, a surrogate) in a reply's
/// and in an event's string: the connection fails with `InvalidUtf8`, as
/// every protocol error does (they are sticky), and the pending call with it.
pub async fn invalid_utf8<T: Target>(test: &str) {
    let reply = HostilePeer::qmp(
        &format!("{test}-reply"),
        vec![
            Step::Await("query-status"),
            Step::Part("{\"id\": {id}, \"return\": \"".into()),
            Step::Send(vec![0xC3, 0x28]),
            Step::Send(b"\"}\r\n".to_vec()),
            Step::Hang,
        ],
    );
    let event = HostilePeer::qmp(
        &format!("{test}-event"),
        vec![
            Step::Await("query-status"),
            Step::Send(b"{\"event\": \"BAD\", \"data\": {\"s\": \"".to_vec()),
            Step::Send(vec![0xED, 0xA0, 0x80]),
            Step::Send(b"\"}}\r\n".to_vec()),
            Step::Reply(STATUS.into()),
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let expected = ProtocolError::Frame(FrameError::InvalidUtf8);
    for peer in [reply, event] {
        let qmp = connect::<T>(&peer, fault_config()).await;
        let mut events = T::subscribe(&qmp, EventFilter::all());
        let pending = within::<T, _>("the pending call", T::call(&qmp, call("query-status"))).await;
        broke_protocol("the call pending at the invalid UTF-8", pending, expected);
        let reason = within::<T, _>("closed", T::closed(&qmp)).await;
        protocol("the connection", &reason, expected);
        ended::<T>("the subscriber", &mut events).await;
    }
    bystander.during();
    bystander.check().await;
}

/// The peer floods events without reading while the client writes a
/// command far larger than a socket buffer: neither side may wait for the
/// other, so the client must read while its write is stuck. The command
/// goes through whole, its reply comes, the subscriber lags.
pub async fn flood_while_writing<T: Target>(test: &str) {
    let peer = HostilePeer::qmp(
        test,
        vec![
            Step::Await("query-name"),
            Step::Reply(name_reply("own")),
            Step::Repeat(
                "{\"event\": \"FLOOD\", \"data\": {\"n\": {n}}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}"
                    .into(),
                FLOOD_EVENTS,
            ),
            Step::Await("query-status"),
            Step::Reply(STATUS.into()),
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let config = fault_config().event_capacity(FLOOD_CAPACITY);
    let qmp = connect::<T>(&peer, config).await;
    let events = T::subscribe(&qmp, EventFilter::all());
    // The flood starts once this is answered: after the subscriber is there.
    let first = within::<T, _>("the first call", T::call(&qmp, call("query-name"))).await;
    named("the call before the flood", first, "own");
    let call = Call::new("query-status").arguments_text(fixtures::huge_arguments());
    let status = within::<T, _>("a huge command against a flood", T::call(&qmp, call)).await;
    assert_eq!(
        value(status, "a huge command against a flood")["status"],
        "running"
    );
    let received = peer.received();
    let command = received.last().expect("the huge command");
    let pad = command["arguments"]["pad"].as_str().map(str::len);
    assert_eq!(pad, Some(4 << 20), "the command went whole");
    let lost = FLOOD_EVENTS - FLOOD_CAPACITY;
    let marker = events.try_recv().map(|i| i.err());
    assert!(
        matches!(marker, Some(Some(qmp_io::Gap::Lagged(n))) if n == lost as u64),
        "the subscriber's lag marker: {marker:?}"
    );
    bystander.during();
    bystander.check().await;
}

/// Bytes that are not QMP, each on a connection of its own with a call
/// pending: what it sends after the call's command, and the exact protocol
/// error that ends the connection (and the call).
fn garbage() -> [(&'static str, Vec<u8>, ProtocolError); 5] {
    [
        (
            "the guest agent's 0xFF",
            vec![0xFF],
            ProtocolError::UnexpectedSentinel,
        ),
        (
            "a raw control byte in a string",
            b"{\"return\": \"a\x01b\", \"id\": 1}\r\n".to_vec(),
            ProtocolError::Frame(FrameError::ControlInString),
        ),
        (
            "an array for a message",
            b"[1, 2]\r\n".to_vec(),
            ProtocolError::Frame(FrameError::NotAnObject),
        ),
        (
            "a mismatched bracket",
            b"{\"return\": [1}, \"id\": 1}\r\n".to_vec(),
            ProtocolError::Frame(FrameError::MismatchedBracket),
        ),
        (
            "a message both reply and event",
            b"{\"return\": {}, \"event\": \"STOP\", \"id\": 1}\r\n".to_vec(),
            ProtocolError::UnknownMessage,
        ),
    ]
}

/// Bytes that are not QMP (0xFF, a control byte in a string, an array, a
/// mismatched bracket, a message both reply and event): each ends the
/// connection with its exact protocol error, and the pending call with it.
pub async fn garbage_input<T: Target>(test: &str) {
    let bystander = Bystander::<T>::new().await;
    for (n, (what, bytes, expected)) in garbage().into_iter().enumerate() {
        let peer = HostilePeer::qmp(
            &format!("{test}-{n}"),
            vec![Step::Await("query-status"), Step::Send(bytes), Step::Hang],
        );
        let qmp = connect::<T>(&peer, fault_config()).await;
        let pending = within::<T, _>(what, T::call(&qmp, call("query-status"))).await;
        broke_protocol(what, pending, expected);
        let reason = within::<T, _>("closed", T::closed(&qmp)).await;
        protocol(what, &reason, expected);
    }
    bystander.during();
    bystander.check().await;
}

/// The event-bytes limit of the big-event flood case.
const EVENT_BYTES: usize = 1 << 20;

/// Events of the big-event flood case, and the size of each one's data.
const BIG_EVENTS: usize = 400;
const BIG_EVENT_DATA: usize = 64 << 10;

/// A flood of large events (64 KiB each, 25 MiB in all) while a command
/// waits: the command gets its reply, a subscriber that does not read keeps
/// no more than its event-bytes limit (the newest events, after one lag
/// marker), and memory stays bounded by that limit and the cap, not by the
/// flood.
pub async fn big_event_flood<T: Target>(test: &str) {
    let data = "x".repeat(BIG_EVENT_DATA);
    let peer = HostilePeer::qmp(
        test,
        vec![
            Step::Await("query-status"),
            Step::Repeat(
                format!(
                    "{{\"event\": \"BIG\", \"data\": {{\"n\": {{n}}, \"pad\": \"{data}\"}}, \"timestamp\": {{\"seconds\": 1, \"microseconds\": 2}}}}"
                ),
                BIG_EVENTS,
            ),
            Step::Reply(STATUS.into()),
            Step::Hang,
        ],
    );
    drop(data);
    let bystander = Bystander::<T>::new().await;
    let config = fault_config().event_bytes(EVENT_BYTES);
    let qmp = connect::<T>(&peer, config).await;
    let slow = T::subscribe(&qmp, EventFilter::all());
    let memory = Memory::start();
    let status = within::<T, _>(
        "the call behind the flood",
        T::call(&qmp, call("query-status")),
    )
    .await;
    assert_eq!(
        value(status, "query-status behind big events")["status"],
        "running"
    );
    memory.check(
        "a flood of big events",
        peer.sent(),
        MEMORY_BOUND + EVENT_BYTES,
    );
    let items: Vec<Item> = core::iter::from_fn(|| slow.try_recv()).collect();
    let Some((Err(qmp_io::Gap::Lagged(lost)), kept)) =
        items.split_first().map(|(f, r)| (f.clone(), r))
    else {
        panic!("the slow subscriber did not lag: {} items", items.len());
    };
    assert!(
        !kept.is_empty() && kept.len() < BIG_EVENTS,
        "kept {}",
        kept.len()
    );
    assert_eq!(
        lost as usize + kept.len(),
        BIG_EVENTS,
        "every event kept or counted lost"
    );
    let held: usize = kept.len() * BIG_EVENT_DATA;
    assert!(
        held <= EVENT_BYTES,
        "the subscriber held {held} bytes of data"
    );
    for (k, item) in kept.iter().enumerate() {
        let Ok(e) = item else {
            panic!("a second lag marker: {item:?}");
        };
        let data: serde_json::Value = e.decode().expect("the big event's data");
        assert_eq!(data["n"], lost + k as u64, "the newest, in order");
    }
    bystander.during();
    bystander.check().await;
}

/// Invalid UTF-8 from the guest: the connection fails with `InvalidUtf8`.
pub async fn agent_invalid_utf8<T: Target>(test: &str) {
    let peer = HostilePeer::agent(
        test,
        vec![
            Step::Await("guest-info"),
            Step::Part("{\"id\": {id}, \"return\": \"".into()),
            Step::Send(vec![0xC3, 0x28]),
            Step::Send(b"\"}\r\n".to_vec()),
            Step::Hang,
        ],
    );
    let bystander = Bystander::<T>::new().await;
    let agent = connect_agent::<T>(&peer, fault_config()).await;
    let pending = within::<T, _>(
        "the pending call",
        T::agent_call(&agent, call("guest-info")),
    )
    .await;
    let expected = ProtocolError::Frame(FrameError::InvalidUtf8);
    broke_protocol("the guest call", pending, expected);
    let reason = within::<T, _>("closed", T::agent_closed(&agent)).await;
    protocol("the guest connection", &reason, expected);
    bystander.during();
    bystander.check().await;
}

/// The client sends `qmp_capabilities` with id 0 (and `enable: [oob]` when
/// offered). A peer that answers it without an id (as QEMU does to a client
/// that sent none) is taken as answering it: the handshake completes; an
/// id-less error there fails the connect with `NegotiationFailed`; an answer
/// with another id is not the answer, and the connect times out waiting for
/// the capabilities step.
pub async fn capabilities_without_id<T: Target>(test: &str) {
    let handshake = |answer: &str| {
        vec![
            Step::Greet,
            Step::Await("qmp_capabilities"),
            Step::Reply(answer.into()),
        ]
    };
    let mut steps = handshake("{\"return\": {}}");
    steps.extend([
        Step::Await("query-status"),
        Step::Reply(STATUS.into()),
        Step::Hang,
    ]);
    let idless = HostilePeer::start(&format!("{test}-ok"), steps);
    let qmp = connect::<T>(&idless, fault_config()).await;
    assert!(
        T::oob_enabled(&qmp),
        "oob offered, asked for, and not refused"
    );
    assert_eq!(T::greeting(&qmp).version.to_string(), "9.2.0");
    let status = within::<T, _>("query-status", T::call(&qmp, call("query-status"))).await;
    assert_eq!(
        value(status, "the call after an id-less handshake")["status"],
        "running"
    );
    assert_eq!(
        idless.received().first(),
        Some(
            &serde_json::json!({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": 0})
        )
    );

    let refused = HostilePeer::start(
        &format!("{test}-refused"),
        handshake("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}"),
    );
    let result = within::<T, _>("connect", T::connect(refused.path().into(), fault_config())).await;
    match result {
        Err(Error::Disconnected(reason)) => protocol(
            "an id-less error to qmp_capabilities",
            &reason,
            ProtocolError::NegotiationFailed,
        ),
        other => panic!("an id-less error to qmp_capabilities: {other:?}"),
    }

    let mut wrong = handshake("{\"return\": {}, \"id\": 7}");
    wrong.push(Step::Hang);
    let wrong = HostilePeer::start(&format!("{test}-wrong"), wrong);
    let timeout = Duration::from_millis(300);
    let config = fault_config().connect_timeout(timeout);
    let result = within::<T, _>("connect", T::connect(wrong.path().into(), config)).await;
    match result {
        Err(Error::Disconnected(Disconnect::HandshakeTimeout { step, timeout: t })) => {
            assert_eq!(step, HandshakeStep::Capabilities);
            assert_eq!(t, timeout);
        }
        other => panic!("an answer to qmp_capabilities with another id: {other:?}"),
    }
}

/// A real QEMU frozen (SIGSTOP): short calls time out with exactly their
/// timeout, a patient call made meanwhile gets its own reply once QEMU is
/// thawed (SIGCONT), and the same connection and its subscriber work on.
/// Frozen again and killed (SIGKILL): every pending call fails within a
/// second, with the connection's own reason (end of stream, or a reset when
/// QEMU died with our bytes unread), and the subscriber ends.
pub async fn frozen_and_killed_qemu<T: Target>(test: &str) {
    let Some(mut qemu) = fixtures::qemu(test) else {
        return;
    };
    let qmp = within::<T, _>(
        "connect",
        T::connect(qemu.qmp_path().into(), fault_config()),
    )
    .await;
    let qmp = ok("connect", qmp);
    let mut events = T::subscribe(&qmp, fixtures::stop_resume_filter());
    fixtures::freeze(qemu.pid());
    let start = Instant::now();
    let shorts: Vec<_> = (0..3)
        .map(|_| T::call(&qmp, short("query-status")))
        .collect();
    let patient = T::call(&qmp, call("query-name"));
    for result in futures_util::future::join_all(shorts).await {
        timed_out("a call to a frozen QEMU", result, SHORT_TIMEOUT);
    }
    let waited = start.elapsed();
    assert!(
        waited >= SHORT_TIMEOUT,
        "the short calls failed after {waited:?}"
    );
    fixtures::thaw(qemu.pid());
    named(
        "the patient call",
        within::<T, _>("the patient call", patient).await,
        test,
    );
    ok(
        "stop",
        within::<T, _>("stop", T::call(&qmp, call("stop"))).await,
    );
    ok(
        "cont",
        within::<T, _>("cont", T::call(&qmp, call("cont"))).await,
    );
    for name in ["STOP", "RESUME"] {
        match within::<T, _>("an event after the thaw", events.next()).await {
            Some(Ok(e)) => assert_eq!(e.name(), name),
            other => panic!("{name} after the thaw: {other:?}"),
        }
    }

    fixtures::freeze(qemu.pid());
    let pending: Vec<_> = (0..fixtures::PENDING_AT_KILL)
        .map(|_| timed(T::call(&qmp, call("query-status").timeout(None))))
        .collect();
    T::sleep(fixtures::SETTLE).await;
    let killed = Instant::now();
    qemu.kill().expect("cannot kill QEMU");
    let results =
        within::<T, _>("the pending calls", futures_util::future::join_all(pending)).await;
    let reason = within::<T, _>("closed", T::closed(&qmp)).await;
    failed_at_kill("QEMU", &reason, results, killed);
    ended::<T>("the subscriber", &mut events).await;
}

/// A real qemu-ga frozen (SIGSTOP): a short call times out with exactly its
/// timeout; thawed (SIGCONT), the client resynchronises on the same
/// connection and the next call is answered. Frozen again and killed
/// (SIGKILL): every pending call fails within a second with the connection's
/// own reason.
pub async fn frozen_and_killed_agent<T: Target>(test: &str) {
    let Some(mut ga) = fixtures::guest_agent(test) else {
        return;
    };
    let agent = T::connect_agent(ga.socket_path().into(), fault_config());
    let agent = ok("connect", within::<T, _>("connect", agent).await);
    fixtures::freeze(ga.pid());
    let frozen = within::<T, _>("a frozen call", T::agent_call(&agent, short("guest-info"))).await;
    timed_out("a call to a frozen qemu-ga", frozen, SHORT_TIMEOUT);
    fixtures::thaw(ga.pid());
    let ping = within::<T, _>("after the thaw", T::agent_call(&agent, call("guest-ping"))).await;
    assert_eq!(
        value(ping, "guest-ping after the thaw"),
        serde_json::json!({})
    );

    fixtures::freeze(ga.pid());
    let pending: Vec<_> = (0..3)
        .map(|_| timed(T::agent_call(&agent, call("guest-info").timeout(None))))
        .collect();
    T::sleep(fixtures::SETTLE).await;
    let killed = Instant::now();
    ga.kill().expect("cannot kill qemu-ga");
    let results =
        within::<T, _>("the pending calls", futures_util::future::join_all(pending)).await;
    let reason = within::<T, _>("closed", T::agent_closed(&agent)).await;
    failed_at_kill("qemu-ga", &reason, results, killed);
}

/// The connection to a killed `peer` ended as the peer's end of stream (or a
/// reset, when it died with our bytes unread), and every pending call failed
/// with that same reason within [`DISCONNECT_BOUND`] of the kill.
fn failed_at_kill(
    peer: &str,
    reason: &Disconnect,
    results: Vec<(Result<Json>, Instant)>,
    killed: Instant,
) {
    let died = match reason {
        Disconnect::Eof { mid_message: false } => true,
        Disconnect::Io(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        _ => false,
    };
    assert!(died, "the connection to a killed {peer}: {reason:?}");
    for (n, (result, at)) in results.into_iter().enumerate() {
        let what = format!("call {n} pending when {peer} was killed");
        let r = disconnected(&what, result);
        assert_eq!(format!("{r:?}"), format!("{reason:?}"), "{what}");
        let late = at.saturating_duration_since(killed);
        assert!(
            late < DISCONNECT_BOUND,
            "{what} failed {late:?} after the kill"
        );
    }
}
