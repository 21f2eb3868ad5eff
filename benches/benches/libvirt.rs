//! `query-status` round trips to a QEMU that libvirt runs, one criterion
//! group (`libvirt/query-status`, `Throughput::Elements` = commands):
//!
//! - `native/unix`, `native/tcp`: qmp-libvirt's `Client` (libvirt's RPC
//!   over the daemon's unix socket, over loopback TCP): the caller hands the
//!   command to the socket, the reader thread hands the reply back.
//! - `native-one-thread/unix`: qmp-libvirt's minimal `blocking::Client`,
//!   which reads the reply on the calling thread (no hand-over between
//!   threads; the same protocol code).
//! - `c-client/virsh-shell`: libvirt's own C client, the peer: one `virsh`
//!   in shell mode reading `qemu-monitor-command DOMAIN '{...}'` lines from
//!   its stdin, each reply read back (time per command; the process and its
//!   connection are set up once, outside the timing).
//! - `virsh/per-command`: qmp-libvirt's `Virsh` driver, one `virsh` process
//!   per command.
//! - `socket/qmp-std`: a direct QMP socket (qmp-std) to a QEMU of the same
//!   kind (TCG, `pc`, 64 MiB, no disks), which this bench launches itself.
//!
//! A second group, `libvirt/stop-cont-events` (`Throughput::Elements` =
//! events): `stop`, wait for its `STOP` event, `cont`, wait for `RESUME`;
//! per iteration two commands and two events, with qmp-libvirt's `Client`
//! (`native/unix`, events through `subscribe`). It has no C-client peer yet.
//!
//! The daemon is a private one (`scripts/libvirt.sh start`, root needed), its
//! folder under the target directory; without libvirtd or root the group is
//! skipped with a printed reason. Run with
//! `cargo bench -p qmp-benches --bench libvirt -- --warm-up-time 1 --measurement-time 3`.

use core::time::Duration;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qmp_io::{Config, Qmp};
use qmp_libvirt::Client;
use qmp_libvirt::virsh::Virsh;

const QUERY: &str = r#"{"execute":"query-status"}"#;

fn script(args: &[&str]) -> Result<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/libvirt.sh");
    let out = Command::new("bash")
        .arg(path)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The private daemon and its domain, destroyed and stopped on drop.
struct Daemon {
    dir: PathBuf,
    unix: String,
    tcp: String,
    domain: String,
}

impl Daemon {
    fn start() -> Result<Self, String> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if !root {
            return Err("the private libvirtd needs root".into());
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libvirtd-bench");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let d = dir.to_str().ok_or("non-UTF-8 path")?;
        script(&["start", d, &port.to_string()])?;
        let daemon = Daemon {
            unix: format!("qemu:///system?socket={d}/libvirt-sock"),
            tcp: format!("qemu+tcp://127.0.0.1:{port}/system"),
            domain: format!("qmp-bench-{}", std::process::id()),
            dir,
        };
        script(&["domain-create", &daemon.unix, &daemon.domain])?;
        Ok(daemon)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = script(&["domain-destroy", &self.unix, &self.domain]);
        let _ = script(&["stop", self.dir.to_str().unwrap_or_default()]);
    }
}

/// libvirt's C client: one virsh in shell mode, a command a line.
struct VirshShell {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    line: String,
    command: String,
}

impl VirshShell {
    fn start(uri: &str, domain: &str) -> Self {
        let mut child = Command::new("virsh")
            .args(["-q", "-c", uri])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("virsh");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        VirshShell {
            child,
            stdin,
            stdout,
            line: String::new(),
            command: format!("qemu-monitor-command {domain} '{QUERY}'\n"),
        }
    }

    /// One command, its reply line read back (the shell's echo skipped).
    fn query(&mut self) -> usize {
        self.stdin
            .write_all(self.command.as_bytes())
            .expect("virsh stdin");
        loop {
            self.line.clear();
            let n = self.stdout.read_line(&mut self.line).expect("virsh stdout");
            assert!(n > 0, "virsh ended");
            if self.line.trim_start().starts_with('{') {
                assert!(self.line.contains("\"return\""), "{}", self.line);
                return self.line.len();
            }
        }
    }
}

impl Drop for VirshShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config() -> Config {
    Config::default().timeout(Some(Duration::from_secs(30)))
}

fn query_status(c: &mut Criterion) {
    let daemon = match Daemon::start() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipped: libvirt benches: {why}");
            return;
        }
    };
    let mut group = c.benchmark_group("libvirt/query-status");
    group.throughput(Throughput::Elements(1));

    let unix = Client::connect(&daemon.unix, &daemon.domain, config()).expect("unix");
    group.bench_function("native/unix", |b| {
        b.iter(|| unix.execute_raw("query-status", ()).expect("query-status"))
    });
    drop(unix);

    let mut one = qmp_libvirt::blocking::Client::connect(&daemon.unix).expect("unix");
    let dom = one.lookup_domain_by_name(&daemon.domain).expect("domain");
    group.bench_function("native-one-thread/unix", |b| {
        b.iter(|| one.monitor_command(&dom, QUERY).expect("query-status"))
    });
    one.close().expect("close");

    let tcp = Client::connect(&daemon.tcp, &daemon.domain, config()).expect("tcp");
    group.bench_function("native/tcp", |b| {
        b.iter(|| tcp.execute_raw("query-status", ()).expect("query-status"))
    });
    drop(tcp);

    let mut shell = VirshShell::start(&daemon.unix, &daemon.domain);
    shell.query();
    group.bench_function("c-client/virsh-shell", |b| b.iter(|| shell.query()));
    drop(shell);

    let qemu = qmp_io::qemu::QemuBuilder::new()
        .machine("pc")
        .args(["-m", "64", "-nodefaults", "-display", "none"])
        .spawn()
        .expect("QEMU");
    let socket = qmp_std::connect_unix(qemu.qmp_path(), config()).expect("QMP socket");
    group.bench_function("socket/qmp-std", |b| {
        b.iter(|| {
            socket
                .execute_raw("query-status", ())
                .expect("query-status")
        })
    });
    drop(socket);
    drop(qemu);

    // A process per command: few samples.
    group.sample_size(10);
    let virsh = Virsh::connect(&daemon.unix, &daemon.domain, config()).expect("virsh");
    group.bench_function("virsh/per-command", |b| {
        b.iter(|| virsh.execute_raw("query-status", ()).expect("query-status"))
    });
    drop(virsh);
    group.finish();
}

fn stop_cont_events(c: &mut Criterion) {
    let daemon = match Daemon::start() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipped: libvirt benches: {why}");
            return;
        }
    };
    let mut group = c.benchmark_group("libvirt/stop-cont-events");
    group.throughput(Throughput::Elements(2));

    let vm = Client::connect(&daemon.unix, &daemon.domain, config()).expect("unix");
    let events = vm.subscribe(qmp_io::EventFilter::name("STOP").or_name("RESUME"));
    let patience = Duration::from_secs(30);
    group.bench_function("native/unix", |b| {
        b.iter(|| {
            vm.execute_raw("stop", ()).expect("stop");
            let stop = events
                .recv_timeout(patience)
                .expect("STOP")
                .expect("no lag");
            assert_eq!(stop.name(), "STOP");
            vm.execute_raw("cont", ()).expect("cont");
            let resume = events
                .recv_timeout(patience)
                .expect("RESUME")
                .expect("no lag");
            assert_eq!(resume.name(), "RESUME");
        })
    });
    drop((events, vm));

    group.finish();
}

criterion_group!(benches, query_status, stop_cont_events);
criterion_main!(benches);
