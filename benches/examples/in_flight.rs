//! Rounds of `query-status` commands in flight at once against a QEMU of its
//! own, printing wall and CPU time per command: a program to run under
//! `strace -c`, `perf stat` or `valgrind --tool=callgrind`, which see one
//! client at a time (the criterion bench runs them all in one process).
//!
//! ```sh
//! cargo run --release -p qmp-benches --example in_flight -- MODE [ROUNDS] [IN_FLIGHT]
//! ```
//!
//! Modes:
//! - `floor`: a blocking std `UnixStream`; the commands in one write, then
//!   reads until as many LFs came.
//! - `floor-epoll`: the same socket non-blocking, with an edge-triggered epoll
//!   wait whenever a read would block (what an event loop does at least).
//! - `floor-tokio`, `floor-async-io`: the same socket on tokio's reactor
//!   (current_thread, `readable` + `try_read`) and on async-io's (smol's,
//!   `read_with`), in `block_on`: what a client on that runtime costs at
//!   least.
//! - `tokio-ct`, `tokio-mt`: `qmp_tokio::Client`, `join_all` of the calls in
//!   `block_on` on a current_thread / multi_thread runtime.
//! - `tokio-ct-spawned`: as `tokio-ct`, the calls in a spawned task.
//! - `smol`: `qmp_smol::Client` on smol's global executor, the calls in
//!   `smol::block_on`.
//! - `smol-local`: the same with [`qmp_smol::Smol::on`] an executor the
//!   calling thread runs, so every poll stays on that thread.
//! - `qapi-ct`, `qapi-mt`: qapi-rs 0.15's tokio client, as in the bench.
//!
//! 50 rounds warm up before the measured `ROUNDS` (default 1000) of
//! `IN_FLIGHT` (default 64) commands; the CPU time is the whole process's.

use core::time::Duration;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use futures_util::future::join_all;

#[path = "../benches/support/runtime_floor.rs"]
mod runtime_floor;
use qmp_io::qemu::{Qemu, QemuBuilder};

#[derive(serde::Serialize)]
struct QueryStatus;

impl qmp_io::Command for QueryStatus {
    const NAME: &'static str = "query-status";
    type Returns = StatusInfo;
}

#[derive(serde::Deserialize)]
struct StatusInfo {
    running: bool,
}

const WARM_UP: usize = 50;

fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Times `rounds` calls of `round`, each answering `n` commands.
fn measure(mode: &str, rounds: usize, n: usize, mut round: impl FnMut() -> usize) {
    for _ in 0..WARM_UP {
        round();
    }
    let (wall, cpu) = (Instant::now(), cpu_time());
    let answered: usize = (0..rounds).map(|_| round()).sum();
    let (wall, cpu) = (wall.elapsed(), cpu_time().saturating_sub(cpu));
    assert_eq!(answered, rounds * n, "{mode}: replies missing");
    let per = |d: Duration| d.as_secs_f64() * 1e6 / answered as f64;
    println!(
        "{mode}: {answered} commands, wall {:.1} µs/command, cpu {:.1} µs/command",
        per(wall),
        per(cpu)
    );
}

fn qemu() -> Qemu {
    QemuBuilder::new().spawn().expect("starting QEMU")
}

/// Counts LFs read until `lines` came; with `epoll`, waits there when a
/// read would block.
fn read_lines(stream: &mut UnixStream, epoll: Option<&rustix::fd::OwnedFd>, lines: usize) {
    let mut buf = [0u8; 64 << 10];
    let mut events = Vec::with_capacity(4);
    let mut seen = 0;
    while seen < lines {
        match stream.read(&mut buf) {
            Ok(0) => panic!("floor: end of stream"),
            Ok(n) => seen += buf[..n].iter().filter(|&&b| b == b'\n').count(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let ep = epoll.expect("a blocking socket never would block");
                events.clear();
                rustix::event::epoll::wait(ep, rustix::buffer::spare_capacity(&mut events), None)
                    .expect("epoll_wait");
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("floor: read: {e}"),
        }
    }
}

/// A bare socket to `qemu`, after the greeting and `qmp_capabilities`.
fn handshake(qemu: &Qemu) -> UnixStream {
    let mut stream = UnixStream::connect(qemu.qmp_path()).expect("connect");
    read_lines(&mut stream, None, 1);
    stream
        .write_all(b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}\r\n")
        .expect("write");
    read_lines(&mut stream, None, 1);
    stream
}

/// `n` commands with the ids after `id`, CR LF each, into `out`.
fn encode(out: &mut Vec<u8>, id: &mut u64, n: usize) {
    out.clear();
    for _ in 0..n {
        *id += 1;
        write!(out, "{{\"execute\":\"query-status\",\"id\":{id}}}\r\n").expect("format");
    }
}

/// The floor on async-io's reactor (smol's): the same bytes, every wait
/// through the reactor (`read_with`), in `smol::block_on`.
fn floor_async_io(mode: &str, rounds: usize, n: usize) {
    let qemu = qemu();
    let stream = handshake(&qemu);
    stream.set_nonblocking(true).expect("non-blocking");
    let stream = smol::Async::new(stream).expect("async-io");
    let (mut id, mut out) = (0u64, Vec::new());
    let mut buf = vec![0u8; 64 << 10];
    measure(mode, rounds, n, || {
        encode(&mut out, &mut id, n);
        // At least n: a line QEMU sent unasked (a RESUME at start) counts too.
        smol::block_on(runtime_floor::async_io_round(&stream, &out, &mut buf, n));
        n
    });
}

/// The floor on tokio's reactor: `readable` + `try_read`, in `block_on` on
/// a current_thread runtime.
fn floor_tokio(mode: &str, rounds: usize, n: usize, runtime: &tokio::runtime::Runtime) {
    let qemu = qemu();
    let stream = handshake(&qemu);
    stream.set_nonblocking(true).expect("non-blocking");
    let stream = {
        let _entered = runtime.enter();
        tokio::net::UnixStream::from_std(stream).expect("tokio")
    };
    let (mut id, mut out) = (0u64, Vec::new());
    let mut buf = vec![0u8; 64 << 10];
    measure(mode, rounds, n, || {
        encode(&mut out, &mut id, n);
        runtime.block_on(runtime_floor::tokio_round(&stream, &out, &mut buf, n));
        n
    });
}

fn floor(mode: &str, rounds: usize, n: usize, epoll: bool) {
    use rustix::event::epoll as ep;
    let qemu = qemu();
    let mut stream = handshake(&qemu);
    let poller = epoll.then(|| {
        stream.set_nonblocking(true).expect("non-blocking");
        let poller = ep::create(ep::CreateFlags::CLOEXEC).expect("epoll_create");
        let flags = ep::EventFlags::IN | ep::EventFlags::ET;
        ep::add(&poller, &stream, ep::EventData::new_u64(1), flags).expect("epoll_ctl");
        poller
    });
    let mut id = 0u64;
    let mut out = Vec::new();
    measure(mode, rounds, n, || {
        encode(&mut out, &mut id, n);
        // A few KiB: the socket takes them whole even when non-blocking.
        stream.write_all(&out).expect("write");
        read_lines(&mut stream, poller.as_ref(), n);
        n
    });
}

fn running(results: impl IntoIterator<Item = bool>) -> usize {
    results.into_iter().filter(|&r| r).count()
}

fn tokio_client(mode: &str, rounds: usize, n: usize, runtime: &tokio::runtime::Runtime) {
    let (_qemu, client) = runtime
        .block_on(qmp_tokio::launch(
            QemuBuilder::new(),
            qmp_io::Config::default(),
        ))
        .expect("launching QEMU");
    let round = |client: qmp_tokio::Client| async move {
        let all = join_all((0..n).map(|_| client.execute(&QueryStatus))).await;
        running(all.into_iter().map(|r| r.expect("query-status").running))
    };
    let spawned = mode.ends_with("spawned");
    measure(mode, rounds, n, || {
        let work = round(client.clone());
        if spawned {
            runtime.block_on(runtime.spawn(work)).expect("the task")
        } else {
            runtime.block_on(work)
        }
    });
}

fn smol_client(mode: &str, rounds: usize, n: usize) {
    let qemu = qemu();
    let ex = std::sync::Arc::new(smol::Executor::new());
    let runtime = match mode {
        "smol-local" => qmp_smol::Smol::on(ex.clone()),
        _ => qmp_smol::Smol::default(),
    };
    let client = smol::block_on(ex.run(async {
        qmp_smol::Client::connect_unix(runtime, qemu.qmp_path(), qmp_io::Config::default()).await
    }))
    .expect("connecting to QEMU");
    measure(mode, rounds, n, || {
        smol::block_on(ex.run(async {
            let all = join_all((0..n).map(|_| client.execute(&QueryStatus))).await;
            running(all.into_iter().map(|r| r.expect("query-status").running))
        }))
    });
}

fn qapi_client(mode: &str, rounds: usize, n: usize, runtime: &tokio::runtime::Runtime) {
    let qemu = qemu();
    let service = runtime.block_on(async {
        let negotiation = qapi::futures::QmpStreamTokio::open_uds(qemu.qmp_path())
            .await
            .expect("qapi-rs: connect");
        let stream = negotiation
            .negotiate_caps([qapi::qmp::QMPCapability::oob])
            .await
            .expect("qapi-rs: negotiate");
        stream.spawn_tokio().0
    });
    measure(mode, rounds, n, || {
        runtime.block_on(async {
            let all = join_all((0..n).map(|_| service.execute(qapi::qmp::query_status {}))).await;
            running(all.into_iter().map(|r| r.expect("query-status").running))
        })
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("tokio-ct", String::as_str);
    let number = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let (rounds, n) = (number(1, 1000), number(2, 64));
    let runtime = |multi: bool| {
        if multi {
            tokio::runtime::Builder::new_multi_thread()
        } else {
            tokio::runtime::Builder::new_current_thread()
        }
        .enable_all()
        .build()
        .expect("a tokio runtime")
    };
    match mode {
        "floor" => floor(mode, rounds, n, false),
        "floor-epoll" => floor(mode, rounds, n, true),
        "floor-async-io" => floor_async_io(mode, rounds, n),
        "floor-tokio" => floor_tokio(mode, rounds, n, &runtime(false)),
        "tokio-ct" | "tokio-ct-spawned" => tokio_client(mode, rounds, n, &runtime(false)),
        "tokio-mt" => tokio_client(mode, rounds, n, &runtime(true)),
        "smol" | "smol-local" => smol_client(mode, rounds, n),
        "qapi-ct" => qapi_client(mode, rounds, n, &runtime(false)),
        "qapi-mt" => qapi_client(mode, rounds, n, &runtime(true)),
        other => panic!("unknown mode {other}; see the top of benches/examples/in_flight.rs"),
    }
}
