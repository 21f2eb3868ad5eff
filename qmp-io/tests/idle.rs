//! A connection that waits costs no CPU: while a call waits for a reply that
//! does not come, the background reader sleeps instead of polling.

use core::time::Duration;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use qmp_io::blocking::Client;
use qmp_io::mock::{MockQemu, MockReply};
use qmp_io::{Call, Config, Error};
use rustix::time::{ClockId, clock_gettime};

/// CPU time used by the whole process so far.
fn process_cpu() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn a_call_waiting_for_a_silent_server_costs_no_cpu() {
    let mock = MockQemu::start().unwrap();
    mock.on("hang", |_| MockReply::NoReply);
    let stream = UnixStream::connect(mock.path()).unwrap();
    let qmp = Client::connect(stream, Config::default()).unwrap();
    // Calls in quick succession: the caller reads the socket itself, and
    // the silent call below keeps it (the background reader leaves the
    // socket to callers that came within its quiet period).
    for _ in 0..3 {
        qmp.execute_raw("query-status", ()).unwrap();
    }

    let wakeups = qmp.background_wakeups();
    let cpu = process_cpu();
    let started = Instant::now();
    let call = Call::new("hang").timeout(Some(Duration::from_secs(2)));
    assert!(matches!(qmp.call(call), Err(Error::Timeout(_))));
    let waited = started.elapsed();
    let wakeups = qmp.background_wakeups() - wakeups;
    let cpu = process_cpu() - cpu;
    eprintln!("waited {waited:?}: {wakeups} background wake-ups, {cpu:?} of CPU");

    // The caller's read took the socket from the background reader (one
    // round), which then sleeps until the caller gives it back (one more).
    assert!(wakeups <= 4, "{wakeups} wake-ups while one call waited");
    assert!(
        cpu < Duration::from_millis(20),
        "{cpu:?} of CPU while one call waited"
    );
    // And the connection still works.
    assert!(qmp.execute_raw("query-status", ()).is_ok());
}
