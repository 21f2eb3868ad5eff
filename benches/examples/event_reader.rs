//! `MockQemu` sending events to a qmp-std client's subscribers, printing
//! events per second: a program to run under `valgrind --tool=callgrind`
//! (instructions per event on the reader thread and in the mock) or `perf`,
//! which the criterion bench (`events`) does not suit.
//!
//! ```sh
//! cargo run --release -p qmp-benches --example event_reader -- [EVENTS] [ROUNDS] [SUBSCRIBERS]
//! ```
//!
//! Each round emits `EVENTS` (default 100,000) events and waits until every
//! one of `SUBSCRIBERS` (default 1) subscriber threads has received them all;
//! `ROUNDS` defaults to 5. The event is the bench's: `BENCH_EVENT` with
//! `{"n": 1}` and a timestamp.

use core::time::Duration;
use std::sync::mpsc;
use std::time::Instant;

use qmp_io::mock::MockQemu;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (events, rounds, subscribers) = (arg(0, 100_000), arg(1, 5), arg(2, 1));
    let mock = MockQemu::builder()
        .record(false)
        .start()
        .expect("starting the mock");
    let config = qmp_io::Config::default().event_capacity(2 * events);
    let client = qmp_std::connect_unix(mock.path(), config).expect("connecting");
    let (done, finished) = mpsc::channel();
    for _ in 0..subscribers {
        let subscription = client.events();
        let done = done.clone();
        std::thread::Builder::new()
            .name("subscriber".into())
            .spawn(move || {
                let mut received = 0;
                while let Some(item) = subscription.recv() {
                    let event = item.expect("no event lost");
                    assert_eq!(event.name(), "BENCH_EVENT");
                    received += 1;
                    if received % events == 0 {
                        let _ = done.send(());
                    }
                }
            })
            .expect("a subscriber thread");
    }
    assert!(
        mock.wait_negotiated(Duration::from_secs(10)),
        "the client did not negotiate"
    );
    for _ in 0..rounds {
        let start = Instant::now();
        mock.emit_events("BENCH_EVENT", Some(r#"{"n": 1}"#), events)
            .expect("emitting");
        for _ in 0..subscribers {
            finished
                .recv_timeout(Duration::from_secs(60))
                .expect("a subscriber stalled");
        }
        let rate = events as f64 / start.elapsed().as_secs_f64();
        println!("{events} events to {subscribers} subscriber(s): {rate:.0} events/s");
    }
}
