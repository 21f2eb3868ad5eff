//! Many connections from one process: what a manager holding a QMP monitor
//! open for every VM on a host pays per connection.
//!
//! Two parts, each a table on stdout:
//!
//! - `conns`: N qmp-tokio clients (current_thread and multi_thread runtimes)
//!   against a many-client fake QMP server on one loopback unix socket. The
//!   server is this program re-run as a child process (a tokio task per
//!   client answering with canned replies), so its memory is never in the
//!   client's figure; each row is measured in a fresh process of its own.
//!   The clients connect, then each takes one event subscription, then each
//!   makes one `query-status` round trip; then, idle, the client's heap
//!   (counted by a global allocator: driver task, socket registration,
//!   buffers, session, subscription and the handles all included) and its
//!   resident memory are measured against the figures before connecting,
//!   the heap also after each of the three steps (the parts in brackets).
//!   Then one `query-status` goes to every client at once (`join_all`),
//!   five times: the median wall and process CPU time, and the heap's high
//!   water mark per connection during the rounds.
//! - `qemu`: N real QEMU processes (`-machine none`), one qmp-tokio client
//!   each, on a current_thread and then a multi_thread runtime: the wall and
//!   client CPU time of one `query-status` to all of them (median of five).
//!
//! ```text
//! cargo bench -p qmp-benches --bench scale                  # conns 100 1000 10000, qemu 200
//! cargo bench -p qmp-benches --bench scale -- conns 100 5000
//! cargo bench -p qmp-benches --bench scale -- qemu 50
//! ```
//!
//! The open-file limit is raised (setrlimit) to fit the connections: each
//! client needs one fd here, each served client one in the server process.

#[path = "support/flavor.rs"]
mod flavor;
#[path = "support/measure.rs"]
mod measure;

use core::time::Duration;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use flavor::Flavor;
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use measure::{
    Counting, cpu_time, kib, live_heap, peak_heap, raise_fd_limit, reset_peak, resident,
};
use qmp_tokio::qapi::commands::QueryStatus;
use qmp_tokio::{Client, Config, EventFilter, Subscription};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Set in the child process that serves the fake QMP socket at its value.
const SERVE_VAR: &str = "QMP_SCALE_SERVE";

/// Set in a child process that measures one row: `RUNTIME N`, with the
/// server's socket in [`SERVE_VAR`]'s place ([`SOCKET_VAR`]). A fresh
/// process per row, so resident memory freed by one row is not reused by
/// the next.
const ROW_VAR: &str = "QMP_SCALE_ROW";

/// The server's socket, for a row's process.
const SOCKET_VAR: &str = "QMP_SCALE_SOCKET";

/// Rounds of "one `query-status` to every client" per measurement.
const ROUNDS: usize = 5;

/// Connections opened at once while setting up.
const CONNECTING: usize = 256;

fn main() {
    if let Some(path) = std::env::var_os(SERVE_VAR) {
        serve(Path::new(&path));
        return;
    }
    if let (Ok(row), Some(path)) = (std::env::var(ROW_VAR), std::env::var_os(SOCKET_VAR)) {
        measure_row(&row, Path::new(&path));
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (conns, qemus) = plan(&args);
    let _ = std::io::stdout().flush();
    if !conns.is_empty() {
        run_conns(&conns);
    }
    if let Some(n) = qemus {
        run_qemus(n);
    }
}

/// Which parts to run: `conns N..` and `qemu N`, or both by default.
fn plan(args: &[String]) -> (Vec<usize>, Option<usize>) {
    if args.is_empty() {
        return (vec![100, 1000, 10_000], Some(200));
    }
    let (mut conns, mut qemus, mut part) = (Vec::new(), None, "");
    for a in args {
        match (a.as_str(), a.parse::<usize>()) {
            ("conns" | "qemu", _) => part = if a == "conns" { "conns" } else { "qemu" },
            (_, Ok(n)) if part == "conns" => conns.push(n),
            (_, Ok(n)) if part == "qemu" => qemus = Some(n),
            _ => panic!("usage: scale [conns N..] [qemu N] (got {a:?})"),
        }
    }
    (conns, qemus)
}

// ------------------------------------------------------------ the fake server

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n";

/// Serves QMP on `path` to any number of clients at once, until killed:
/// a task per client on one thread, canned replies carrying the command's id.
fn serve(path: &Path) {
    raise_fd_limit(65_536);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the server's tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(path).expect("bind the server socket");
        println!("ready");
        let _ = std::io::stdout().flush();
        loop {
            match listener.accept().await {
                Ok((socket, _)) => drop(tokio::spawn(serve_one(socket))),
                Err(e) => eprintln!("server: accept: {e}"),
            }
        }
    });
}

async fn serve_one(socket: tokio::net::UnixStream) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (read, mut write) = socket.into_split();
    if write.write_all(GREETING).await.is_err() {
        return;
    }
    let mut lines = tokio::io::BufReader::with_capacity(512, read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(command) = serde_json::from_str::<serde_json::Value>(&line) else {
            return;
        };
        let name = command
            .get("execute")
            .or_else(|| command.get("exec-oob"))
            .and_then(serde_json::Value::as_str);
        let value = match name {
            Some("query-status") => {
                serde_json::json!({"status": "running", "singlestep": false, "running": true})
            }
            _ => serde_json::json!({}),
        };
        let mut reply = serde_json::json!({ "return": value });
        if let Some(id) = command.get("id") {
            reply["id"] = id.clone();
        }
        let mut bytes = serde_json::to_vec(&reply).expect("a reply serializes");
        bytes.extend_from_slice(b"\r\n");
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// The server process, killed when dropped.
struct Server {
    child: Child,
    path: PathBuf,
    _dir: TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = TempDir::new();
        let path = dir.0.join("qmp.sock");
        let mut child = Command::new(std::env::current_exe().expect("this program's path"))
            .env(SERVE_VAR, &path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("the server's stdout");
        BufReader::new(stdout)
            .read_line(&mut ready)
            .expect("read the server's ready line");
        assert_eq!(ready.trim(), "ready", "the server did not start");
        Self {
            child,
            path,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("qmp-scale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------ many clients

/// One row of the connections table.
struct Row {
    /// Heap per connection, idle: the sum of the next three.
    heap_per_conn: f64,
    /// Of which: connected (driver task, socket, session, handles).
    connected_per_conn: f64,
    /// Of which: the subscription.
    subscription_per_conn: f64,
    /// Of which: what the first round trip left (tables and buffers grown).
    round_trip_per_conn: f64,
    rss_per_conn: f64,
    round_wall: Duration,
    round_cpu: Duration,
    round_peak_per_conn: f64,
}

fn run_conns(sizes: &[usize]) {
    let most = sizes.iter().copied().max().unwrap_or(0) as u64;
    let limit = raise_fd_limit(most + 1024);
    println!("open-file limit {limit}");
    let server = Server::start();
    println!(
        "{:<15} {:>6} {:>10} {:>24} {:>10} {:>11} {:>11} {:>11}",
        "runtime",
        "conns",
        "heap/conn",
        "(conn + sub + 1st trip)",
        "rss/conn",
        "round wall",
        "round cpu",
        "round peak"
    );
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        for &n in sizes {
            let out = Command::new(std::env::current_exe().expect("this program's path"))
                .env(ROW_VAR, format!("{} {n}", flavor.name()))
                .env(SOCKET_VAR, &server.path)
                .stderr(Stdio::inherit())
                .output()
                .expect("run a row's process");
            assert!(out.status.success(), "the row {} {n} failed", flavor.name());
            print!("{}", String::from_utf8_lossy(&out.stdout));
            let _ = std::io::stdout().flush();
        }
    }
}

/// Measures the row `RUNTIME N` against the server at `path` and prints it.
fn measure_row(row: &str, path: &Path) {
    let (flavor, n) = match row.split_once(' ') {
        Some(("current_thread", n)) => (Flavor::CurrentThread, n),
        Some(("multi_thread", n)) => (Flavor::MultiThread, n),
        _ => panic!("a row is `RUNTIME N`, not {row:?}"),
    };
    let n: usize = n.parse().expect("a row's connection count");
    raise_fd_limit(n as u64 + 1024);
    let row = conns(flavor, n, path);
    let parts = format!(
        "({:.0} + {:.0} + {:.0} B)",
        row.connected_per_conn, row.subscription_per_conn, row.round_trip_per_conn
    );
    println!(
        "{:<15} {:>6} {:>10} {:>24} {:>10} {:>11.2?} {:>11.2?} {:>11}",
        flavor.name(),
        n,
        kib(row.heap_per_conn),
        parts,
        kib(row.rss_per_conn),
        row.round_wall,
        row.round_cpu,
        kib(row.round_peak_per_conn),
    );
}

fn conns(flavor: Flavor, n: usize, path: &Path) -> Row {
    let runtime = flavor.runtime();
    runtime.block_on(async {
        // Warm the runtime (timer wheel, worker queues) before the baseline.
        let warm = qmp_tokio::connect_unix(path, Config::default()).await;
        let warm = warm.expect("a warm-up connection");
        warm.execute(&QueryStatus)
            .await
            .expect("a warm-up round trip");
        drop(warm);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (heap0, rss0) = (live_heap(), resident());
        let clients: Vec<Client> = stream::iter(0..n)
            .map(|_| qmp_tokio::connect_unix(path, Config::default()))
            .buffer_unordered(CONNECTING)
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("connecting {n} clients: {e}"));
        settle().await;
        let connected = live_heap();
        let subscriptions: Vec<Subscription> = clients
            .iter()
            .map(|c| c.subscribe(EventFilter::name("STOP")))
            .collect();
        let subscribed = live_heap();
        let first = join_all(clients.iter().map(|c| c.execute(&QueryStatus))).await;
        let running = first.iter().filter(|r| r.as_ref().is_ok_and(|s| s.running));
        assert_eq!(running.count(), n, "every client gets its first reply");
        drop(first);
        settle().await;
        let (heap1, rss1) = (live_heap(), resident());
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        reset_peak();
        for _ in 0..ROUNDS {
            let (t0, c0) = (Instant::now(), cpu_time());
            let replies = join_all(clients.iter().map(|c| c.execute(&QueryStatus))).await;
            walls.push(t0.elapsed());
            cpus.push(cpu_time().saturating_sub(c0));
            let running = replies
                .into_iter()
                .filter(|r| r.as_ref().is_ok_and(|s| s.running))
                .count();
            assert_eq!(running, n, "every client gets its reply");
        }
        let peak = peak_heap();
        drop((subscriptions, clients));
        let per = |bytes: usize| bytes as f64 / n as f64;
        Row {
            heap_per_conn: per(heap1.saturating_sub(heap0)),
            connected_per_conn: per(connected.saturating_sub(heap0)),
            subscription_per_conn: per(subscribed.saturating_sub(connected)),
            round_trip_per_conn: per(heap1.saturating_sub(subscribed)),
            rss_per_conn: per(rss1.saturating_sub(rss0)),
            round_wall: median(walls),
            round_cpu: median(cpus),
            round_peak_per_conn: per(peak.saturating_sub(heap0)),
        }
    })
}

/// Lets every driver go back to waiting on its socket.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

// ------------------------------------------------------------ real QEMUs

fn run_qemus(n: usize) {
    let Some(builder) = qmp_testsuite::peers::require_qemu("scale bench (qemu)") else {
        eprintln!("SKIPPED: scale bench (qemu): no QEMU to measure against");
        return;
    };
    raise_fd_limit(n as u64 * 8 + 1024);
    let started = Instant::now();
    // Start them a few at a time: each start waits for its QMP socket.
    let qemus: Vec<qmp_io::qemu::Qemu> = std::thread::scope(|s| {
        let per = n.div_ceil(8).max(1);
        let handles: Vec<_> = (0..n)
            .collect::<Vec<_>>()
            .chunks(per)
            .map(|chunk| {
                let (builder, len) = (builder.clone(), chunk.len());
                s.spawn(move || {
                    (0..len)
                        .map(|_| builder.clone().spawn().expect("start QEMU"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a QEMU starter thread"))
            .collect()
    });
    println!("{n} QEMUs started in {:.1?}", started.elapsed());
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let runtime = flavor.runtime();
        let (wall, cpu) = runtime.block_on(async {
            let clients: Vec<Client> = stream::iter(&qemus)
                .map(|q| qmp_tokio::connect_unix(q.qmp_path(), Config::default()))
                .buffer_unordered(64)
                .try_collect()
                .await
                .expect("connect to every QEMU");
            let mut walls = Vec::new();
            let mut cpus = Vec::new();
            for _ in 0..ROUNDS {
                let (t0, c0) = (Instant::now(), cpu_time());
                let replies = join_all(clients.iter().map(|c| c.execute(&QueryStatus))).await;
                walls.push(t0.elapsed());
                cpus.push(cpu_time().saturating_sub(c0));
                assert_eq!(replies.iter().filter(|r| r.is_ok()).count(), n);
            }
            for c in &clients {
                c.close();
            }
            // QEMU serves one client at a time: let it see this one go.
            join_all(clients.iter().map(Client::closed)).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            (median(walls), median(cpus))
        });
        println!(
            "{n} QEMUs, {:<15} one query-status to all: wall {wall:.2?}, client cpu {cpu:.2?} ({:.1?}/command)",
            flavor.name(),
            cpu / u32::try_from(n).unwrap_or(u32::MAX).max(1),
        );
    }
}
