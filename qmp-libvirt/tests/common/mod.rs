//! The private libvirtd the tests run against, and the domains they make;
//! shared by the test files (each runs its own daemon, one after another).
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const REQUIRE_PEERS_ENV: &str = "QMP_REQUIRE_PEERS";

pub(crate) fn skip(test: &str, why: &str) {
    let required = std::env::var_os(REQUIRE_PEERS_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    assert!(!required, "{test}: {why}, and {REQUIRE_PEERS_ENV} is set");
    // Straight to stderr: libtest captures eprintln! of passing tests.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

pub(crate) fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/libvirt.sh")
}

pub(crate) fn run_script(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .map_err(|e| format!("scripts/libvirt.sh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "scripts/libvirt.sh {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .any(|d| d.join(program).is_file())
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The daemon under test, and the domain it runs; both cleaned up on drop,
/// also when the test fails.
pub(crate) struct Peer {
    pub(crate) unix_uri: String,
    pub(crate) tcp_uri: Option<String>,
    pub(crate) domain: String,
    /// Transient domains made by the test besides `domain`.
    pub(crate) extra: std::sync::Mutex<Vec<String>>,
    /// Defined (not started) domains made by the test.
    pub(crate) defined: std::sync::Mutex<Vec<String>>,
    pub(crate) started: Option<PathBuf>,
}

impl Peer {
    pub(crate) fn start(test: &str) -> Option<Peer> {
        let domain = format!("qmp-it-{}", std::process::id());
        if let Ok(unix_uri) = std::env::var("QMP_LIBVIRT_URI") {
            let peer = Peer {
                unix_uri,
                tcp_uri: std::env::var("QMP_LIBVIRT_TCP_URI").ok(),
                domain,
                extra: Default::default(),
                defined: Default::default(),
                started: None,
            };
            peer.create_domain();
            return Some(peer);
        }
        if !on_path("libvirtd") || !on_path("virsh") {
            skip(
                test,
                "libvirtd or virsh not installed (scripts/libvirt.sh install)",
            );
            return None;
        }
        if !is_root() {
            skip(
                test,
                "the private libvirtd needs root (or set QMP_LIBVIRT_URI)",
            );
            return None;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libvirtd");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir_str = dir.to_str().expect("UTF-8 path");
        if let Err(e) = run_script(&["start", dir_str, &port.to_string()]) {
            panic!("{e}");
        }
        let peer = Peer {
            unix_uri: format!("qemu:///system?socket={dir_str}/libvirt-sock"),
            tcp_uri: Some(format!("qemu+tcp://127.0.0.1:{port}/system")),
            domain,
            extra: Default::default(),
            defined: Default::default(),
            started: Some(dir),
        };
        peer.create_domain();
        Some(peer)
    }

    pub(crate) fn create_domain(&self) {
        if let Err(e) = run_script(&["domain-create", &self.unix_uri, &self.domain]) {
            panic!("{e}");
        }
    }

    /// Another running domain, named after the main one.
    pub(crate) fn create_extra(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.domain);
        self.extra.lock().unwrap().push(name.clone());
        if let Err(e) = run_script(&["domain-create", &self.unix_uri, &name]) {
            panic!("{e}");
        }
        name
    }

    /// A defined domain that is not running.
    pub(crate) fn define(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.domain);
        self.defined.lock().unwrap().push(name.clone());
        if let Err(e) = run_script(&["domain-define", &self.unix_uri, &name]) {
            panic!("{e}");
        }
        name
    }

    /// The pid in one of the private daemon's pid files (`None` for a daemon
    /// this test did not start).
    pub(crate) fn pid(&self, file: &str) -> Option<String> {
        let dir = self.started.as_ref()?;
        let pid = std::fs::read_to_string(dir.join("state").join(file)).ok()?;
        Some(pid.trim().to_owned())
    }
}

pub(crate) fn kill(signal: &str, pid: &str) {
    let ok = Command::new("kill")
        .args([signal, pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {signal} {pid}");
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = run_script(&["domain-destroy", &self.unix_uri, &self.domain]);
        for name in self.extra.lock().unwrap().iter() {
            let _ = run_script(&["domain-destroy", &self.unix_uri, name]);
        }
        for name in self.defined.lock().unwrap().iter() {
            let _ = run_script(&["domain-undefine", &self.unix_uri, name]);
        }
        if let Some(dir) = &self.started {
            let _ = run_script(&["stop", dir.to_str().unwrap_or_default()]);
        }
    }
}
