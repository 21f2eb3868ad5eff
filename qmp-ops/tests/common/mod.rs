//! Starting the real peers: QEMU 7.2 (`qemu-system-x86_64`), QEMU 10.0
//! (`$QMP_QEMU10`, see scripts/prepare-qemu10.sh) and qemu-ga. A missing
//! peer skips with a `SKIPPED` line, or fails under `QMP_REQUIRE_PEERS`.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::PathBuf;

use qmp_std::{Config, QemuBuilder};

fn peers_required() -> bool {
    std::env::var_os("QMP_REQUIRE_PEERS").is_some_and(|v| !v.is_empty() && v != "0")
}

pub fn skip(test: &str, why: &str) {
    assert!(
        !peers_required(),
        "{test}: {why}, and QMP_REQUIRE_PEERS is set so the test may not be skipped"
    );
    let _ = std::io::stderr().write_all(format!("SKIPPED {test}: {why}\n").as_bytes());
}

/// The QEMUs to run a test body on: 7.2, then 10.0 when it is there.
pub fn qemus(test: &str) -> Vec<(&'static str, QemuBuilder)> {
    let mut all = Vec::new();
    if let Some(b) = qmp_testsuite::peers::require_qemu(test) {
        all.push(("7.2", b));
    }
    if let Some(b) = qmp_testsuite::peers::require_qemu10(test) {
        all.push(("10.0", b));
    }
    all
}

/// A paused `pc` (TCG) with a USB 3 controller `xhci`.
pub fn machine(builder: QemuBuilder) -> QemuBuilder {
    builder
        .machine("pc")
        .paused(true)
        .args(["-device", "qemu-xhci,id=xhci"])
}

/// Launches `builder` as [`machine`] and connects a blocking client.
pub fn launch(builder: QemuBuilder) -> (qmp_std::Qemu, qmp_std::Client) {
    qmp_std::launch(machine(builder), Config::default()).expect("launching QEMU")
}

/// The ids of the devices under /machine/peripheral.
pub fn peripherals(qmp: &qmp_std::Client) -> Vec<String> {
    let list: Vec<serde_json::Value> = qmp
        .execute_raw(
            "qom-list",
            serde_json::json!({"path": "/machine/peripheral"}),
        )
        .expect("qom-list")
        .decode()
        .expect("qom-list decodes");
    list.iter()
        .filter(|p| p["type"].as_str().is_some_and(|t| t.starts_with("child<")))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// The node names QEMU has.
pub fn node_names(qmp: &qmp_std::Client) -> Vec<String> {
    let nodes: Vec<serde_json::Value> = qmp
        .execute_raw("query-named-block-nodes", serde_json::json!({"flat": true}))
        .expect("query-named-block-nodes")
        .decode()
        .expect("nodes decode");
    nodes
        .iter()
        .filter_map(|n| n["node-name"].as_str().map(str::to_owned))
        .collect()
}

/// A typed value from JSON (test inputs).
pub fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid typed input")
}

/// A fresh directory for a test's files, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("qmp-ops-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scripted QMP peer on a unix socket in `scratch`, for what a real QEMU
/// cannot be made to do on demand: it greets, then writes `answer(command)`
/// (the exact bytes, replies and events) for each command it reads. Returns
/// the socket path.
pub fn scripted_qmp(
    scratch: &Scratch,
    answer: impl Fn(&serde_json::Value) -> String + Send + 'static,
) -> String {
    use std::io::Write as _;
    let path = scratch.file("qmp.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let greeting = serde_json::json!({"QMP": {"version": {"qemu":
            {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}});
        stream
            .write_all(format!("{greeting}\r\n").as_bytes())
            .unwrap();
        let reader = stream.try_clone().unwrap();
        let commands = serde_json::Deserializer::from_reader(reader).into_iter();
        for command in commands {
            let Ok(command) = command else { return };
            if stream.write_all(answer(&command).as_bytes()).is_err() {
                return;
            }
        }
    });
    path
}

/// `{"return": value, "id": <the command's id>}` and CR LF.
pub fn reply(command: &serde_json::Value, value: serde_json::Value) -> String {
    format!(
        "{}\r\n",
        serde_json::json!({"return": value, "id": command["id"]})
    )
}

/// Reads a client's bytes without the 0xFF resynchronisation marks.
struct NoMarks<R>(R);

impl<R: std::io::Read> std::io::Read for NoMarks<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.0.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                if buf[i] != 0xFF {
                    buf[kept] = buf[i];
                    kept += 1;
                }
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

/// A scripted guest agent on a unix socket in `scratch`, for what a real
/// qemu-ga cannot be made to do (or must not do on this host): it answers
/// `guest-sync-delimited` itself, and every other command with
/// `answer(command)` as its `return`, or no reply at all for `None`.
/// Returns the socket path.
pub fn scripted_agent(
    scratch: &Scratch,
    answer: impl Fn(&serde_json::Value) -> Option<serde_json::Value> + Send + 'static,
) -> String {
    use std::io::Write as _;
    let path = scratch.file("qga.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let reader = NoMarks(stream.try_clone().unwrap());
        let commands = serde_json::Deserializer::from_reader(reader).into_iter();
        for command in commands {
            let Ok(command) = command else { return };
            let command: serde_json::Value = command;
            let mut out = Vec::new();
            let ret = if command["execute"] == "guest-sync-delimited" {
                out.push(0xFF);
                Some(command["arguments"]["id"].clone())
            } else {
                answer(&command)
            };
            let Some(ret) = ret else { continue };
            let reply = serde_json::json!({"return": ret, "id": command["id"]});
            out.extend_from_slice(format!("{reply}\n").as_bytes());
            if stream.write_all(&out).is_err() {
                return;
            }
        }
    });
    path
}
