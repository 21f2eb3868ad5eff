//! Event fan-out: events per second from `MockQemu` over its unix socket to 1
//! and to 8 subscribers, our clients against a bare-socket floor in the same
//! criterion group.
//!
//! Each iteration sends `EVENTS` copies of `{"event": "BENCH_EVENT", "data":
//! {"n": 1}, "timestamp": ...}` with `MockQemu::emit_events` (which blocks
//! until all are written) and waits until every subscriber has received all
//! of them. Subscribers drain on their own threads (qmp-std:
//! `Subscription::recv`) or tasks (qmp-tokio: `StreamExt::next`, on a
//! multi-thread runtime, which runs while the main thread is blocked writing).
//! `Throughput::Elements` counts events sent, not deliveries (8 subscribers
//! get 8 deliveries per event).
//!
//! Peers, one fresh mock each:
//! - `floor`: a std `UnixStream` that negotiates, then only counts LFs on its
//!   own thread. It parses nothing, so it shows how fast the mock can send:
//!   when our figures sit near it, the mock is the bottleneck, not the client.
//!   It is the same in both groups (it has no subscribers).
//! - `qmp-std`, `qmp-tokio`: `Client::events()` subscribers, with
//!   `Config::event_capacity` at twice the events per iteration, so nothing
//!   may be dropped: a subscriber waits for all of an iteration's events
//!   before the next iteration sends more.
//!
//! Checked, not assumed: no subscriber ever sees `Lagged`; every event is
//! `BENCH_EVENT`; after the run, each subscriber (and the floor) received
//! exactly the number of events sent.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use futures_util::StreamExt;
use qmp_io::mock::MockQemu;

/// Events sent per iteration.
const EVENTS: u64 = 100_000;
const NAME: &str = "BENCH_EVENT";
const DATA: &str = r#"{"n": 1}"#;

/// What each subscriber (or the floor's reader) shares with the main thread.
#[derive(Clone)]
struct Tally {
    /// One message per `EVENTS` received.
    progress: Sender<()>,
    /// Events dropped for this subscriber (`Lagged`), summed.
    lost: Arc<AtomicU64>,
    /// Events with another name.
    strangers: Arc<AtomicU64>,
}

/// Counts what one subscriber receives; reports every `EVENTS`.
struct Counter {
    tally: Tally,
    received: u64,
}

impl Counter {
    fn new(tally: Tally) -> Self {
        Counter { tally, received: 0 }
    }

    fn item(&mut self, item: Result<Arc<qmp_io::Event>, qmp_io::Gap>) {
        match item {
            Ok(e) => {
                if e.name() != NAME {
                    self.tally.strangers.fetch_add(1, Ordering::Relaxed);
                }
                self.count(1);
            }
            Err(qmp_io::Gap::Lagged(n)) => {
                // Counted as received so the main thread does not wait for
                // ever; the run fails on `lost` right after the iteration.
                self.tally.lost.fetch_add(n, Ordering::Relaxed);
                self.count(n);
            }
            // A plain client's subscription has no other marker.
            Err(gap) => panic!("unexpected marker: {gap}"),
        }
    }

    fn count(&mut self, n: u64) {
        let before = self.received / EVENTS;
        self.received += n;
        for _ in before..self.received / EVENTS {
            let _ = self.tally.progress.send(());
        }
    }
}

/// One peer under measurement: a mock, a connected client and its
/// subscribers, and the channel their progress comes on.
struct Setup {
    mock: MockQemu,
    progress: Receiver<()>,
    /// How many reports make one iteration (subscribers, or 1 for the floor).
    reporters: usize,
    lost: Arc<AtomicU64>,
    strangers: Arc<AtomicU64>,
    /// Sent so far.
    sent: u64,
}

impl Setup {
    fn new(reporters: usize) -> (Self, Tally) {
        let mock = MockQemu::builder()
            .record(false)
            .start()
            .expect("starting the mock");
        let (tx, progress) = channel();
        let tally = Tally {
            progress: tx,
            lost: Arc::new(AtomicU64::new(0)),
            strangers: Arc::new(AtomicU64::new(0)),
        };
        let setup = Setup {
            mock,
            progress,
            reporters,
            lost: tally.lost.clone(),
            strangers: tally.strangers.clone(),
            sent: 0,
        };
        (setup, tally)
    }

    fn wait_negotiated(&self) {
        assert!(
            self.mock.wait_negotiated(Duration::from_secs(10)),
            "the client did not negotiate"
        );
    }

    /// One iteration: send `EVENTS`, wait until every reporter has them.
    fn iteration(&mut self) {
        self.mock
            .emit_events(NAME, Some(DATA), EVENTS as usize)
            .expect("emit_events");
        self.sent += EVENTS;
        for _ in 0..self.reporters {
            self.progress
                .recv_timeout(Duration::from_secs(60))
                .expect("a subscriber stalled");
        }
        assert_eq!(self.lost.load(Ordering::Relaxed), 0, "events were lost");
    }

    /// Ends the connection (subscribers end) and checks the final counts.
    fn finish(self, who: &str, received: impl FnOnce() -> Vec<u64>) {
        let Setup {
            mock,
            lost,
            strangers,
            sent,
            ..
        } = self;
        drop(mock);
        let received = received();
        assert!(!received.is_empty());
        for r in &received {
            assert_eq!(*r, sent, "{who}: received {r} of {sent} events");
        }
        assert_eq!(lost.load(Ordering::Relaxed), 0, "{who}: lost events");
        assert_eq!(strangers.load(Ordering::Relaxed), 0, "{who}: other events");
        eprintln!(
            "{who}: {} receiver(s), each got exactly the {sent} events sent, none lost",
            received.len()
        );
    }
}

fn config() -> qmp_io::Config {
    qmp_io::Config::default().event_capacity(2 * EVENTS as usize)
}

// ---------------------------------------------------------------- peers

fn floor(group: &mut BenchmarkGroup<'_, WallTime>) {
    let (mut setup, tally) = Setup::new(1);
    let mut stream = UnixStream::connect(setup.mock.path()).expect("floor: connect");
    let mut buf = vec![0u8; 64 << 10];
    let mut read_line = |stream: &mut UnixStream| {
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            let n = stream.read(&mut buf).expect("floor: read");
            assert!(n > 0, "floor: end of stream");
            line.extend_from_slice(&buf[..n]);
        }
        line
    };
    assert!(read_line(&mut stream).starts_with(br#"{"QMP""#));
    stream
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\r\n")
        .expect("floor: write");
    assert!(read_line(&mut stream).starts_with(br#"{"return""#));
    let reader = std::thread::spawn(move || {
        let mut counter = Counter::new(tally);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => counter.count(memchr::memchr_iter(b'\n', &buf[..n]).count() as u64),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        counter.received
    });
    setup.wait_negotiated();
    group.bench_function("floor", |b| b.iter(|| setup.iteration()));
    setup.finish("floor", || vec![reader.join().expect("floor reader")]);
}

fn qmp_std(group: &mut BenchmarkGroup<'_, WallTime>, subscribers: usize) {
    let (mut setup, tally) = Setup::new(subscribers);
    let client = qmp_std::connect_unix(setup.mock.path(), config()).expect("qmp-std: connect");
    let threads: Vec<_> = (0..subscribers)
        .map(|_| {
            let events = client.events();
            let mut counter = Counter::new(tally.clone());
            std::thread::spawn(move || {
                while let Some(item) = events.recv() {
                    counter.item(item);
                }
                counter.received
            })
        })
        .collect();
    setup.wait_negotiated();
    group.bench_function("qmp-std", |b| b.iter(|| setup.iteration()));
    drop(client);
    setup.finish("qmp-std", || {
        threads
            .into_iter()
            .map(|t| t.join().expect("qmp-std subscriber"))
            .collect()
    });
}

fn qmp_tokio(group: &mut BenchmarkGroup<'_, WallTime>, subscribers: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut setup, tally) = Setup::new(subscribers);
    let client = rt
        .block_on(qmp_tokio::connect_unix(setup.mock.path(), config()))
        .expect("qmp-tokio: connect");
    let tasks: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut events = client.events();
            let mut counter = Counter::new(tally.clone());
            rt.spawn(async move {
                while let Some(item) = events.next().await {
                    counter.item(item);
                }
                counter.received
            })
        })
        .collect();
    setup.wait_negotiated();
    group.bench_function("qmp-tokio", |b| b.iter(|| setup.iteration()));
    drop(client);
    setup.finish("qmp-tokio", || {
        tasks
            .into_iter()
            .map(|t| rt.block_on(t).expect("qmp-tokio subscriber"))
            .collect()
    });
}

// ---------------------------------------------------------------- criterion

fn events(c: &mut Criterion) {
    for subscribers in [1, 8] {
        let name = if subscribers == 1 {
            "events/1_subscriber".to_owned()
        } else {
            format!("events/{subscribers}_subscribers")
        };
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(EVENTS));
        // An iteration takes about 0.1 s: a few per sample, not a ramp.
        group.sampling_mode(SamplingMode::Flat);
        floor(&mut group);
        qmp_std(&mut group, subscribers);
        qmp_tokio(&mut group, subscribers);
        group.finish();
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .nresamples(10_000)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    events(&mut c);
    c.final_summary();
}
