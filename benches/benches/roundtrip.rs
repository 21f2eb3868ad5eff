//! `query-status` round trips against a real QEMU: our clients against the
//! bare-socket floor and against qapi-rs, in the same criterion groups.
//!
//! One fresh QEMU per peer and group (`-machine none`, the same binary, started
//! with `qmp_io::qemu::Qemu`, killed after the peer's measurement), so no peer
//! inherits another's QEMU state, and a connection a client fails to close
//! cannot block the next peer (a QMP socket serves one client at a time; see
//! the report on the async driver's close race). Every peer negotiates `oob`
//! (our clients' default; the floor and qapi-rs ask for it), so QEMU runs the
//! same monitor mode for all.
//!
//! Scenarios (one group each, `Throughput::Elements` = commands):
//! - `sequential`: one `query-status` round trip per iteration.
//! - `in_flight_64`: 64 `query-status` commands in flight at once per
//!   iteration.
//!
//! Each scenario runs twice: `SCENARIO/wall` measures wall time per iteration;
//! `SCENARIO/cpu` measures this process's CPU time per iteration
//! (see below). The sequential wall time is measured paired with the floor
//! (`sequential/wall`): QEMU's latency, which is nearly all of a sequential
//! round trip, drifts by a third between QEMU processes and over minutes, far
//! more than the clients differ. So each peer's QEMU gets a second QMP monitor
//! with a floor connected to it, and every iteration makes one floor round
//! trip and one peer round trip (in alternating order), timing both; criterion
//! reports the peer's time, and a `paired:` line on stderr gives the median over
//! the samples of peer time / floor time on the same QEMU in the same loop.
//!
//! `SCENARIO/cpu` measures this process's CPU time per iteration
//! (`CLOCK_PROCESS_CPUTIME_ID`): every thread of the client counts (reader
//! threads, tokio and smol workers), QEMU's does not (another process). Its
//! throughput line reads "CPU/elem": CPU time per command.
//!
//! Peers:
//! - `floor`: a std `UnixStream` after the handshake. Writes the command bytes
//!   our clients write (`{"execute":"query-status","id":N}` CR LF; the 64
//!   commands in one write), reads until it has counted as many LFs. It parses
//!   nothing: no client can do less.
//! - `floor/tokio/current_thread`, `floor/tokio/multi_thread`,
//!   `floor/async-io`: the floor's socket (after its handshake) on a
//!   runtime's reactor: the same command bytes (one round's, fixed at
//!   connect), every wait through the runtime (`readable` + `try_read` on
//!   tokio, `read_with` on async-io, smol's reactor), the replies counted by
//!   LF. What no client on that runtime can go below: the gap between it and
//!   the blocking floor is the runtime's.
//! - `qmp-std`: `Client::execute` with a typed `QueryStatus` decoding into a
//!   `StatusInfo`; `sequential/wall/qmp-std/after_idle` makes each call after
//!   15 ms without one (outside the timing), when the client's background
//!   thread holds the socket and hands it over; in flight: 64 threads sharing the client, each making
//!   [`CALLS_PER_THREAD`] calls back to back per iteration (so 64 are in
//!   flight throughout, and the barriers that start and end an iteration are
//!   a small part of its cost); its throughput counts all of them.
//! - `qmp-tokio/current_thread`, `qmp-tokio/multi_thread`: the same call on
//!   each tokio runtime flavour (`multi_thread` is what `#[tokio::main]`
//!   gives); in flight: `join_all` of 64 calls.
//!   `sequential/wall/qmp-tokio/multi_thread/spawned` runs the paired loop in
//!   a task spawned on the runtime (on a worker thread, like the driver
//!   task) instead of in `block_on` on the benchmark's thread.
//! - `qmp-smol`: the same on smol (driver on smol's global executor).
//! - `qmp-smol/spawned` (sequential wall only): the paired loop in a task on
//!   smol's global executor, where the driver runs.
//! - `qmp-smol/local`: the same with the driver on an executor of ours
//!   (`Smol::on`), run by the benchmark's own `block_on` thread.
//! - `qapi-rs/current_thread`, `qapi-rs/multi_thread`: qapi-rs 0.15's tokio
//!   client (`QmpStreamTokio`, its events task spawned with `spawn_tokio`),
//!   running its own `qapi::qmp::query_status` into its own `StatusInfo`. It
//!   writes `{"execute":"query-status","arguments":{},"id":N}` LF. It
//!   pipelines when QEMU offers `oob` (numeric ids, the write lock released
//!   after each send): in flight it is `join_all` of 64 `execute`s, one write
//!   (and flush) per command.
//!
//! Before timing, each peer's answers are checked against the floor's decoded
//! replies (same count, same `running`), so all do the same work.

#[path = "support/flavor.rs"]
mod flavor;
#[path = "support/runtime_floor.rs"]
mod runtime_floor;

use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use criterion::async_executor::SmolExecutor;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use flavor::Flavor;
use futures_util::future::join_all;
use qmp_io::qemu::{Qemu, QemuBuilder};

/// Commands in flight at once in the `in_flight_64` scenario.
const IN_FLIGHT: usize = 64;

// ---------------------------------------------------------------- the command

/// `query-status` for our clients: a unit struct sends no `arguments`.
#[derive(serde::Serialize)]
struct QueryStatus;

impl qmp_io::Command for QueryStatus {
    const NAME: &'static str = "query-status";
    type Returns = StatusInfo;
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct StatusInfo {
    running: bool,
    status: String,
}

/// What a batch of round trips produced, compared across peers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    replies: usize,
    /// Replies saying `"running": true`.
    running: usize,
}

impl Outcome {
    fn of<'a>(statuses: impl IntoIterator<Item = &'a StatusInfo>) -> Self {
        statuses
            .into_iter()
            .fold(Outcome::default(), |o, s| o.add(s.running))
    }

    fn add(self, running: bool) -> Self {
        Outcome {
            replies: self.replies + 1,
            running: self.running + usize::from(running),
        }
    }
}

fn config() -> qmp_io::Config {
    // The default (oob negotiated), spelled out because the floor and qapi-rs
    // are set up to match it.
    qmp_io::Config::default().oob(true)
}

// ---------------------------------------------------------------- the floor

/// A bare unix socket after the handshake.
struct Floor {
    stream: UnixStream,
    buf: Box<[u8]>,
    out: Vec<u8>,
    next_id: u64,
}

impl Floor {
    fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).expect("floor: connect");
        let mut floor = Floor {
            stream,
            buf: vec![0; 64 << 10].into_boxed_slice(),
            out: Vec::new(),
            next_id: 1,
        };
        let greeting = floor.read_lines(1, true);
        assert!(
            greeting.starts_with(br#"{"QMP""#),
            "floor: no greeting: {:?}",
            String::from_utf8_lossy(&greeting)
        );
        floor
            .stream
            .write_all(
                b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}\r\n",
            )
            .expect("floor: write");
        let reply = floor.read_lines(1, true);
        assert!(reply.starts_with(br#"{"return": {}"#), "floor: negotiation");
        floor
    }

    /// Reads until `lines` LFs came; returns the bytes if `keep`. QEMU sends
    /// nothing unasked here (no events on an idle `-machine none`), so the
    /// reads end exactly at the last reply.
    fn read_lines(&mut self, lines: usize, keep: bool) -> Vec<u8> {
        let mut kept = Vec::new();
        let mut seen = 0;
        while seen < lines {
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) => panic!("floor: end of stream"),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("floor: read: {e}"),
            };
            let got = &self.buf[..n];
            seen += memchr::memchr_iter(b'\n', got).count();
            if keep {
                kept.extend_from_slice(got);
            }
        }
        assert_eq!(seen, lines, "floor: more lines than replies");
        kept
    }

    /// Encodes `n` commands into `self.out`, with the next ids.
    fn encode(&mut self, n: usize) {
        self.out.clear();
        for _ in 0..n {
            write!(
                self.out,
                "{{\"execute\":\"query-status\",\"id\":{}}}\r\n",
                self.next_id
            )
            .expect("formatting into a Vec");
            self.next_id += 1;
        }
    }

    /// `n` commands in one write, then their `n` replies. Parses them only
    /// when `decode` (the equal-work check).
    fn round_trips(&mut self, n: usize, decode: bool) -> Outcome {
        self.encode(n);
        self.stream.write_all(&self.out).expect("floor: write");
        let bytes = self.read_lines(n, decode);
        if !decode {
            return Outcome {
                replies: n,
                running: n,
            };
        }
        #[derive(serde::Deserialize)]
        struct Reply {
            #[serde(rename = "return")]
            ret: StatusInfo,
        }
        let replies: Vec<StatusInfo> = bytes
            .split_inclusive(|&b| b == b'\n')
            .map(|line| {
                serde_json::from_slice::<Reply>(line)
                    .expect("floor: a query-status reply")
                    .ret
            })
            .collect();
        eprintln!(
            "floor: {n} replies, the last: {}",
            String::from_utf8_lossy(bytes.rsplit(|&b| b == b'\n').nth(1).unwrap_or(&[])).trim_end()
        );
        Outcome::of(&replies)
    }
}

// ------------------------------------------------- the floor on a runtime

/// The floor's socket, after its handshake, on an async runtime's reactor:
/// the same bytes written and the replies read to as many LFs, every wait
/// through the runtime. The least any client on that runtime can cost: the
/// gap between it and the blocking floor is the runtime's, not a client's.
/// Each round sends the same `n` commands (ids fixed at connect).
struct RuntimeFloor<S> {
    stream: S,
    out: Vec<u8>,
    n: usize,
}

/// The runtime floors' read buffer, on the stack each round: a round's
/// replies (64 of about 90 bytes) fit in one.
const ROUND_BUF: usize = 8 << 10;

impl<S> RuntimeFloor<S> {
    /// Connects a [`Floor`] and moves its socket, nonblocking, into `wrap`.
    fn connect(path: &Path, n: usize, wrap: impl FnOnce(UnixStream) -> S) -> Self {
        let mut floor = Floor::connect(path);
        floor.encode(n);
        floor
            .stream
            .set_nonblocking(true)
            .expect("floor: nonblocking");
        RuntimeFloor {
            stream: wrap(floor.stream),
            out: floor.out,
            n,
        }
    }
}

impl RuntimeFloor<tokio::net::UnixStream> {
    /// One round on tokio's reactor.
    async fn round(&self) -> usize {
        runtime_floor::tokio_round(&self.stream, &self.out, &mut [0; ROUND_BUF], self.n).await
    }
}

impl RuntimeFloor<smol::Async<UnixStream>> {
    /// One round on async-io's reactor (smol's).
    async fn round(&self) -> usize {
        runtime_floor::async_io_round(&self.stream, &self.out, &mut [0; ROUND_BUF], self.n).await
    }
}

// ---------------------------------------------------------------- our clients

/// The pause before each call of `sequential/wall/qmp-std/after_idle`:
/// longer than the blocking client's quiet period (10 ms), after which its
/// background thread holds the socket.
const IDLE: Duration = Duration::from_millis(15);

/// Calls each `qmp-std` thread makes per in-flight iteration.
const CALLS_PER_THREAD: usize = 16;

/// 64 threads sharing one blocking client, each making [`CALLS_PER_THREAD`]
/// calls per round.
struct Pool {
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    stop: Arc<AtomicBool>,
    replies: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(client: &qmp_std::Client, n: usize) -> Self {
        let start = Arc::new(Barrier::new(n + 1));
        let done = Arc::new(Barrier::new(n + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let threads = (0..n)
            .map(|_| {
                let (client, start, done, stop, replies, running) = (
                    client.clone(),
                    start.clone(),
                    done.clone(),
                    stop.clone(),
                    replies.clone(),
                    running.clone(),
                );
                std::thread::spawn(move || {
                    loop {
                        start.wait();
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        for _ in 0..CALLS_PER_THREAD {
                            // An error shows as a missing reply in the count
                            // (panicking here would leave the barrier waiting).
                            match client.execute(&QueryStatus) {
                                Ok(s) => {
                                    replies.fetch_add(1, Ordering::Relaxed);
                                    running.fetch_add(usize::from(s.running), Ordering::Relaxed);
                                }
                                Err(e) => eprintln!("qmp-std: {e}"),
                            }
                        }
                        done.wait();
                    }
                })
            })
            .collect();
        Pool {
            start,
            done,
            stop,
            replies,
            running,
            threads,
        }
    }

    fn round(&self) -> Outcome {
        self.start.wait();
        self.done.wait();
        Outcome {
            replies: self.replies.swap(0, Ordering::Relaxed),
            running: self.running.swap(0, Ordering::Relaxed),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.start.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn qmp_std_sequential(client: &qmp_std::Client) -> Outcome {
    let s = client.execute(&QueryStatus).expect("qmp-std: query-status");
    Outcome::default().add(s.running)
}

async fn qmp_async<R: qmp_io::nonblocking::Runtime>(
    client: &qmp_io::nonblocking::Client<R>,
    n: usize,
) -> Outcome {
    if n == 1 {
        let s = client.execute(&QueryStatus).await.expect("query-status");
        return Outcome::default().add(s.running);
    }
    let all = join_all((0..n).map(|_| client.execute(&QueryStatus))).await;
    all.into_iter().fold(Outcome::default(), |o, r| {
        o.add(r.expect("query-status").running)
    })
}

// ---------------------------------------------------------------- qapi-rs

type QapiService = qapi::futures::QapiService<
    qapi::futures::QmpStreamTokio<tokio::io::WriteHalf<tokio::net::UnixStream>>,
>;

async fn qapi_connect(path: &Path) -> std::io::Result<QapiService> {
    let negotiation = qapi::futures::QmpStreamTokio::open_uds(path).await?;
    let stream = negotiation
        .negotiate_caps([qapi::qmp::QMPCapability::oob])
        .await?;
    let (service, _events) = stream.spawn_tokio();
    Ok(service)
}

async fn qapi_calls(service: &QapiService, n: usize) -> Outcome {
    if n == 1 {
        let s = service
            .execute(qapi::qmp::query_status {})
            .await
            .expect("qapi-rs: query-status");
        return Outcome::default().add(s.running);
    }
    let all = join_all((0..n).map(|_| service.execute(qapi::qmp::query_status {}))).await;
    all.into_iter().fold(Outcome::default(), |o, r| {
        o.add(r.expect("qapi-rs: query-status").running)
    })
}

// ---------------------------------------------------------------- CPU time

/// This process's CPU time (every thread, user and system), as criterion
/// measures wall time.
struct CpuTime;

fn process_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

impl Measurement for CpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        process_cpu_time()
    }

    fn end(&self, start: Duration) -> Duration {
        process_cpu_time().saturating_sub(start)
    }

    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats CPU nanoseconds; the throughput line shows CPU time per element.
struct CpuFormatter;

/// The factor and unit for showing `ns` nanoseconds.
fn cpu_unit(ns: f64, per_elem: bool) -> (f64, &'static str) {
    let (factor, unit, unit_per_elem) = if ns < 1e3 {
        (1.0, "ns CPU", "ns CPU/elem")
    } else if ns < 1e6 {
        (1e-3, "µs CPU", "µs CPU/elem")
    } else if ns < 1e9 {
        (1e-6, "ms CPU", "ms CPU/elem")
    } else {
        (1e-9, "s CPU", "s CPU/elem")
    };
    (factor, if per_elem { unit_per_elem } else { unit })
}

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = cpu_unit(typical, false);
        for v in values {
            *v *= factor;
        }
        unit
    }

    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match *throughput {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => n,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
            Throughput::Bits(n) => n,
        }
        .max(1) as f64;
        let (factor, unit) = cpu_unit(typical / per, true);
        for v in values {
            *v = *v / per * factor;
        }
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

// ---------------------------------------------------------------- criterion

#[derive(Debug, Clone, Copy)]
enum Scenario {
    Sequential,
    InFlight,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Sequential => "sequential",
            Scenario::InFlight => "in_flight_64",
        }
    }

    fn commands(self) -> usize {
        match self {
            Scenario::Sequential => 1,
            Scenario::InFlight => IN_FLIGHT,
        }
    }
}

/// A fresh QEMU for one peer, listening on its QMP socket.
fn qemu(builder: &QemuBuilder) -> Qemu {
    let qemu = builder.clone().spawn().expect("spawning QEMU");
    wait_listening(qemu.qmp_path());
    qemu
}

/// `Qemu::spawn` returns once the socket file exists; QEMU binds before it
/// listens, so a connect in between is refused. Waits for the listening state
/// in `/proc/net/unix` (flag `__SO_ACCEPTCON`, 0x10000) rather than probing
/// with a connection, which would take QEMU's one client slot.
fn wait_listening(path: &Path) {
    let path = path.to_string_lossy();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
        let listening = table.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 8 && fields[7] == path && fields[3] == "00010000"
        });
        if listening {
            return;
        }
        if std::time::Instant::now() >= deadline {
            // No /proc (not Linux) or a slow start: let the connect decide.
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------- connecting

/// A `qmp-std` client on `path`, checked to answer `n` calls as the floor did.
fn connect_std(path: &Path, n: usize, expected: Outcome) -> qmp_std::Client {
    let client = qmp_std::connect_unix(path, config()).expect("qmp-std: connect");
    if n == 1 {
        assert_eq!(qmp_std_sequential(&client), expected, "qmp-std");
    }
    client
}

/// A `qmp-tokio` client on `path` in `rt`, checked against `expected`.
fn connect_tokio(
    rt: &tokio::runtime::Runtime,
    path: &Path,
    n: usize,
    expected: Outcome,
) -> qmp_tokio::Client {
    let client = rt
        .block_on(qmp_tokio::connect_unix(path, config()))
        .expect("qmp-tokio: connect");
    assert_eq!(rt.block_on(qmp_async(&client, n)), expected, "qmp-tokio");
    client
}

/// The smol peers: the driver on smol's global executor, or on one of ours.
#[derive(Debug, Clone, Copy)]
enum SmolPeer {
    Global,
    Local,
}

impl SmolPeer {
    fn name(self) -> &'static str {
        match self {
            SmolPeer::Global => "qmp-smol",
            SmolPeer::Local => "qmp-smol/local",
        }
    }

    /// The executor to run the driver on, for `Local`.
    fn executor(self) -> Option<Arc<smol::Executor<'static>>> {
        match self {
            SmolPeer::Global => None,
            SmolPeer::Local => Some(Arc::new(smol::Executor::new())),
        }
    }
}

/// `future`, run alongside `executor`'s tasks when there is one.
async fn on_executor<T>(
    executor: Option<&smol::Executor<'static>>,
    future: impl Future<Output = T>,
) -> T {
    match executor {
        Some(ex) => ex.run(future).await,
        None => future.await,
    }
}

/// A `qmp-smol` client on `path` with its driver on `executor` (smol's global
/// one if `None`), checked against `expected`.
fn connect_smol(
    executor: Option<&Arc<smol::Executor<'static>>>,
    path: &Path,
    n: usize,
    expected: Outcome,
) -> qmp_smol::Client {
    let runtime =
        executor.map_or_else(qmp_smol::Smol::default, |ex| qmp_smol::Smol::on(ex.clone()));
    let ex = executor.map(|ex| &**ex);
    let client = smol::block_on(on_executor(ex, async {
        qmp_smol::Client::connect_unix(runtime, path, config()).await
    }))
    .expect("qmp-smol: connect");
    assert_eq!(
        smol::block_on(on_executor(ex, qmp_async(&client, n))),
        expected,
        "qmp-smol"
    );
    client
}

/// A qapi-rs service on `path` in `rt`, checked against `expected`.
fn connect_qapi(
    rt: &tokio::runtime::Runtime,
    path: &Path,
    n: usize,
    expected: Outcome,
) -> QapiService {
    let service = rt.block_on(qapi_connect(path)).expect("qapi-rs: connect");
    assert_eq!(rt.block_on(qapi_calls(&service, n)), expected, "qapi-rs");
    service
}

/// Runs `scenario`'s group on clock `clock`: each peer gets a fresh QEMU,
/// connects, is checked against `expected`, measured, and disconnected.
fn run_group<M: Measurement>(
    c: &mut Criterion<M>,
    clock: &str,
    scenario: Scenario,
    builder: &QemuBuilder,
    expected: Outcome,
) {
    let n = scenario.commands();
    let mut group: BenchmarkGroup<'_, M> =
        c.benchmark_group(format!("{}/{clock}", scenario.name()));
    group.throughput(Throughput::Elements(n as u64));

    {
        let qemu = qemu(builder);
        let mut floor = Floor::connect(qemu.qmp_path());
        assert_eq!(floor.round_trips(n, true), expected, "floor");
        group.bench_function("floor", |b| {
            b.iter(|| assert_eq!(floor.round_trips(n, false).replies, n));
        });
    }

    {
        let qemu = qemu(builder);
        let client = connect_std(qemu.qmp_path(), n, expected);
        match scenario {
            Scenario::Sequential => {
                group.bench_function("qmp-std", |b| {
                    b.iter(|| black_box(qmp_std_sequential(&client)));
                });
            }
            Scenario::InFlight => {
                let pool = Pool::new(&client, n);
                let k = CALLS_PER_THREAD;
                let scaled = Outcome {
                    replies: expected.replies * k,
                    running: expected.running * k,
                };
                assert_eq!(pool.round(), scaled, "qmp-std");
                group.throughput(Throughput::Elements((n * k) as u64));
                group.bench_function("qmp-std", |b| {
                    b.iter(|| assert_eq!(pool.round().replies, n * k));
                });
                group.throughput(Throughput::Elements(n as u64));
            }
        }
    }

    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let qemu = qemu(builder);
        let rt = flavor.runtime();
        let floor = RuntimeFloor::connect(qemu.qmp_path(), n, |s| {
            let _entered = rt.enter();
            tokio::net::UnixStream::from_std(s).expect("floor: tokio")
        });
        group.bench_function(BenchmarkId::new("floor/tokio", flavor.name()), |b| {
            let floor = &floor;
            b.to_async(&rt)
                .iter(|| async move { assert_eq!(floor.round().await, n) });
        });
    }

    {
        let qemu = qemu(builder);
        let floor = RuntimeFloor::connect(qemu.qmp_path(), n, |s| {
            smol::Async::new(s).expect("floor: async-io")
        });
        group.bench_function("floor/async-io", |b| {
            let floor = &floor;
            b.to_async(SmolExecutor)
                .iter(|| async move { assert_eq!(floor.round().await, n) });
        });
    }

    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let qemu = qemu(builder);
        let rt = flavor.runtime();
        let client = connect_tokio(&rt, qemu.qmp_path(), n, expected);
        group.bench_function(BenchmarkId::new("qmp-tokio", flavor.name()), |b| {
            let client = &client;
            b.to_async(&rt)
                .iter(|| async move { black_box(qmp_async(client, n).await) });
        });
        drop(client);
    }

    for peer in [SmolPeer::Global, SmolPeer::Local] {
        let qemu = qemu(builder);
        let executor = peer.executor();
        let client = connect_smol(executor.as_ref(), qemu.qmp_path(), n, expected);
        group.bench_function(peer.name(), |b| {
            let (client, ex) = (&client, executor.as_deref());
            b.to_async(SmolExecutor)
                .iter(|| async move { black_box(on_executor(ex, qmp_async(client, n)).await) });
        });
    }

    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let qemu = qemu(builder);
        let rt = flavor.runtime();
        let service = connect_qapi(&rt, qemu.qmp_path(), n, expected);
        group.bench_function(BenchmarkId::new("qapi-rs", flavor.name()), |b| {
            let service = &service;
            b.to_async(&rt)
                .iter(|| async move { black_box(qapi_calls(service, n).await) });
        });
        drop(service);
    }

    group.finish();
}

// ---------------------------------------------------------------- paired

/// A fresh QEMU with two QMP monitors: the peer's (`qmp_path`) and the
/// floor's, in a directory of our own removed on drop.
struct PairedQemu {
    qemu: Qemu,
    floor_dir: PathBuf,
}

impl PairedQemu {
    fn spawn(builder: &QemuBuilder) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let floor_dir = std::env::temp_dir().join(format!(
            "qmp-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&floor_dir).expect("creating the floor's directory");
        let socket = floor_dir.join("floor.sock");
        let qemu = qemu(
            &builder
                .clone()
                .arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", socket.display())),
        );
        wait_listening(&socket);
        PairedQemu { qemu, floor_dir }
    }

    fn floor_path(&self) -> PathBuf {
        self.floor_dir.join("floor.sock")
    }
}

impl Drop for PairedQemu {
    fn drop(&mut self) {
        // QEMU first: it holds the socket.
        let _ = self.qemu.kill();
        let _ = std::fs::remove_dir_all(&self.floor_dir);
    }
}

/// The floor on a peer's QEMU, and the ratios of the peer's samples to it.
struct Pairing {
    /// Behind locks so a spawned task can run the samples (uncontended).
    floor: Mutex<Floor>,
    /// Per sample: its iterations, the peer's time and the floor's, each
    /// summed over them.
    samples: Mutex<Vec<(u64, Duration, Duration)>>,
}

impl Pairing {
    fn new(qemu: &PairedQemu, expected: Outcome) -> Self {
        let mut floor = Floor::connect(&qemu.floor_path());
        assert_eq!(floor.round_trips(1, true), expected, "paired floor");
        Pairing {
            floor: Mutex::new(floor),
            samples: Mutex::new(Vec::new()),
        }
    }

    /// One timed floor round trip.
    fn floor_trip(&self) -> Duration {
        let mut floor = self.floor.lock().expect("the floor");
        let start = Instant::now();
        let replies = floor.round_trips(1, false).replies;
        let took = start.elapsed();
        assert_eq!(replies, 1);
        took
    }

    /// Records a sample; returns the peer's time, what criterion gets.
    fn record(&self, iters: u64, peer: Duration, floor: Duration) -> Duration {
        self.samples
            .lock()
            .expect("the samples")
            .push((iters, peer, floor));
        peer
    }

    /// `iters` paired iterations of the blocking `peer` round trip, each
    /// after `idle` without a call.
    fn sample(&self, iters: u64, idle: Duration, mut peer: impl FnMut()) -> Duration {
        let (mut p, mut f) = (Duration::ZERO, Duration::ZERO);
        for i in 0..iters {
            if !idle.is_zero() {
                std::thread::sleep(idle);
            }
            if i % 2 == 0 {
                f += self.floor_trip();
            }
            let start = Instant::now();
            peer();
            p += start.elapsed();
            if i % 2 == 1 {
                f += self.floor_trip();
            }
        }
        self.record(iters, p, f)
    }

    /// `iters` paired iterations of the async `peer` round trip.
    async fn sample_async<F: Future<Output = Outcome>>(
        &self,
        iters: u64,
        mut peer: impl FnMut() -> F,
    ) -> Duration {
        let (mut p, mut f) = (Duration::ZERO, Duration::ZERO);
        for i in 0..iters {
            if i % 2 == 0 {
                f += self.floor_trip();
            }
            let start = Instant::now();
            assert_eq!(peer().await.replies, 1);
            p += start.elapsed();
            if i % 2 == 1 {
                f += self.floor_trip();
            }
        }
        self.record(iters, p, f)
    }

    /// Prints the median ratio over the samples (warm-up ones included).
    fn report(&self, peer: &str) {
        let samples = self.samples.lock().expect("the samples");
        let mut ratios: Vec<f64> = samples
            .iter()
            .filter(|(_, _, f)| !f.is_zero())
            .map(|(_, p, f)| p.as_secs_f64() / f.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let Some(&median) = ratios.get(ratios.len() / 2) else {
            return;
        };
        let (n, p, f) = samples
            .iter()
            .fold((0, Duration::ZERO, Duration::ZERO), |(n, p, f), s| {
                (n + s.0, p + s.1, f + s.2)
            });
        let per_trip = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
        eprintln!(
            "paired: sequential/wall/{peer}: {median:.3}x the floor (median of {} samples; \
             in all, {:.1} µs for the peer and {:.1} µs for the floor per round trip)",
            ratios.len(),
            per_trip(p),
            per_trip(f),
        );
    }
}

/// The `sequential/wall` group, each peer paired with a floor on its QEMU
/// (see the module docs).
fn run_paired(c: &mut Criterion<WallTime>, builder: &QemuBuilder, expected: Outcome) {
    let mut group = c.benchmark_group("sequential/wall");
    group.throughput(Throughput::Elements(1));

    {
        let qemu = qemu(builder);
        let mut floor = Floor::connect(qemu.qmp_path());
        group.bench_function("floor", |b| {
            b.iter(|| assert_eq!(floor.round_trips(1, false).replies, 1));
        });
    }

    // qmp-std back to back, and after an idle period, when its background
    // thread holds the socket and must hand it over.
    for (name, idle) in [("qmp-std", Duration::ZERO), ("qmp-std/after_idle", IDLE)] {
        let qemu = PairedQemu::spawn(builder);
        let pairing = Pairing::new(&qemu, expected);
        let client = connect_std(qemu.qemu.qmp_path(), 1, expected);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                pairing.sample(iters, idle, || {
                    assert_eq!(black_box(qmp_std_sequential(&client)).replies, 1);
                })
            });
        });
        pairing.report(name);
    }

    // From `block_on` (the runtime's caller, as `#[tokio::main]`'s body is),
    // and from a task spawned on the runtime (a worker thread, where the
    // driver task runs too).
    for (flavor, spawned) in [
        (Flavor::CurrentThread, false),
        (Flavor::MultiThread, false),
        (Flavor::MultiThread, true),
    ] {
        let qemu = PairedQemu::spawn(builder);
        let pairing = Arc::new(Pairing::new(&qemu, expected));
        let rt = flavor.runtime();
        let client = connect_tokio(&rt, qemu.qemu.qmp_path(), 1, expected);
        let name = match spawned {
            false => format!("qmp-tokio/{}", flavor.name()),
            true => format!("qmp-tokio/{}/spawned", flavor.name()),
        };
        group.bench_function(&name, |b| {
            let (client, pairing, handle) = (&client, &pairing, rt.handle());
            b.to_async(&rt).iter_custom(|iters| async move {
                if !spawned {
                    return pairing.sample_async(iters, || qmp_async(client, 1)).await;
                }
                let (client, pairing) = (client.clone(), pairing.clone());
                handle
                    .spawn(
                        async move { pairing.sample_async(iters, || qmp_async(&client, 1)).await },
                    )
                    .await
                    .expect("the spawned sample")
            });
        });
        pairing.report(&name);
        drop(client);
    }

    for peer in [SmolPeer::Global, SmolPeer::Local] {
        let qemu = PairedQemu::spawn(builder);
        let pairing = Pairing::new(&qemu, expected);
        let executor = peer.executor();
        let client = connect_smol(executor.as_ref(), qemu.qemu.qmp_path(), 1, expected);
        group.bench_function(peer.name(), |b| {
            let (client, pairing, ex) = (&client, &pairing, executor.as_deref());
            b.to_async(SmolExecutor).iter_custom(|iters| {
                on_executor(ex, pairing.sample_async(iters, || qmp_async(client, 1)))
            });
        });
        pairing.report(peer.name());
    }

    // The calls in a task on smol's global executor, where the driver runs.
    {
        let qemu = PairedQemu::spawn(builder);
        let pairing = Arc::new(Pairing::new(&qemu, expected));
        let client = connect_smol(None, qemu.qemu.qmp_path(), 1, expected);
        let name = "qmp-smol/spawned";
        group.bench_function(name, |b| {
            b.to_async(SmolExecutor).iter_custom(|iters| {
                let (client, pairing) = (client.clone(), pairing.clone());
                smol::spawn(
                    async move { pairing.sample_async(iters, || qmp_async(&client, 1)).await },
                )
            });
        });
        pairing.report(name);
    }

    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let qemu = PairedQemu::spawn(builder);
        let pairing = Pairing::new(&qemu, expected);
        let rt = flavor.runtime();
        let service = connect_qapi(&rt, qemu.qemu.qmp_path(), 1, expected);
        group.bench_function(BenchmarkId::new("qapi-rs", flavor.name()), |b| {
            let (service, pairing) = (&service, &pairing);
            b.to_async(&rt)
                .iter_custom(|iters| pairing.sample_async(iters, || qapi_calls(service, 1)));
        });
        pairing.report(&format!("qapi-rs/{}", flavor.name()));
        drop(service);
    }

    group.finish();
}

fn configure<M: Measurement>(c: Criterion<M>) -> Criterion<M> {
    c.sample_size(10)
        .nresamples(10_000)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args()
}

fn main() {
    let Some(builder) = qmp_testsuite::peers::require_qemu("roundtrip bench") else {
        eprintln!("SKIPPED: roundtrip bench: no QEMU to measure against");
        return;
    };

    let mut wall = configure(Criterion::default());
    let mut cpu = configure(Criterion::default().with_measurement(CpuTime));
    for scenario in [Scenario::Sequential, Scenario::InFlight] {
        // The floor's decoded replies: what every peer must get too.
        let reference = qemu(&builder);
        let expected = Floor::connect(reference.qmp_path()).round_trips(scenario.commands(), true);
        drop(reference);
        assert_eq!(expected.replies, scenario.commands());
        match scenario {
            Scenario::Sequential => run_paired(&mut wall, &builder, expected),
            Scenario::InFlight => run_group(&mut wall, "wall", scenario, &builder, expected),
        }
        run_group(&mut cpu, "cpu", scenario, &builder, expected);
    }
    wall.final_summary();
}
