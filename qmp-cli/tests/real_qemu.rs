//! The `qmp` binary run as a process against a real QEMU and a real
//! qemu-ga. Each test prints a SKIPPED line and passes when its peer is
//! missing, and fails instead under `QMP_REQUIRE_PEERS=1`.

mod common;

use core::time::Duration;

use common::{TwoMonitors, arg, qmp, run};
use serde_json::{Value, json};

fn json_of(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

#[test]
fn one_shot_key_value_and_json_arguments() {
    let Some(vm) = TwoMonitors::start("one_shot_key_value_and_json_arguments") else {
        return;
    };
    let sock = arg(vm.first());
    let out = run(
        qmp(&[
            "--socket",
            sock,
            "qom-get",
            "path=/machine",
            "property=type",
        ]),
        None,
    );
    assert_eq!(out.ok(), "\"none-machine\"\n");
    let out = run(
        qmp(&[
            "--socket",
            sock,
            "qom-get",
            r#"{"path": "/machine", "property": "type"}"#,
        ]),
        None,
    );
    assert_eq!(out.ok(), "\"none-machine\"\n");
    // Not a terminal: compact unless asked; --pretty indents.
    let out = run(qmp(&["--socket", sock, "query-status"]), None);
    assert_eq!(json_of(out.ok())["status"], "running");
    assert!(!out.stdout.trim().contains('\n'));
    let out = run(qmp(&["--socket", sock, "--pretty", "query-status"]), None);
    assert!(out.ok().starts_with("{\n  \"status\": \"running\",\n"));
}

#[test]
fn dotted_keys_build_nested_arguments() {
    let Some(vm) = TwoMonitors::start("dotted_keys_build_nested_arguments") else {
        return;
    };
    let sock = arg(vm.first());
    // a.b=1 c=2 must give {"a":{"b":1},"c":2}: here `file.*` must stay in
    // `file` and `read-only`, after them, at the top.
    let out = run(
        qmp(&[
            "--socket",
            sock,
            "blockdev-add",
            "driver=raw",
            "node-name=top0",
            "file.driver=null-co",
            "file.node-name=proto0",
            "file.size=4096",
            "read-only=true",
        ]),
        None,
    );
    assert_eq!(out.ok(), "{}\n");
    let out = run(qmp(&["--socket", sock, "query-named-block-nodes"]), None);
    let nodes = json_of(out.ok());
    let node = |name: &str| {
        nodes
            .as_array()
            .and_then(|a| a.iter().find(|n| n["node-name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no node {name} in {nodes}"))
    };
    assert_eq!(node("top0")["drv"], "raw");
    assert_eq!(node("top0")["ro"], true);
    assert_eq!(node("proto0")["drv"], "null-co");
    assert_eq!(node("proto0")["image"]["virtual-size"], 4096);
}

#[test]
fn a_qmp_error_exits_1_with_class_and_desc() {
    let Some(vm) = TwoMonitors::start("a_qmp_error_exits_1_with_class_and_desc") else {
        return;
    };
    let sock = arg(vm.first());
    let out = run(qmp(&["--socket", sock, "no-such-command"]), None);
    assert_eq!(
        out.failed(1),
        "qmp: CommandNotFound: The command no-such-command has not been found"
    );
    assert!(out.stdout.is_empty());
    // Arguments the schema takes, for an object QEMU does not have: QEMU's
    // answer, with nothing added (the schema finds nothing wrong).
    let out = run(
        qmp(&[
            "--socket",
            sock,
            "qom-get",
            "path=/nowhere",
            "property=type",
        ]),
        None,
    );
    let message = out.failed(1);
    assert!(message.starts_with("qmp: DeviceNotFound: "), "{out:?}");
    assert!(!message.contains("schema:"), "{out:?}");
    // A usage mistake is 2, before anything is sent.
    let out = run(qmp(&["--socket", sock, "qom-get", "path"]), None);
    assert_eq!(out.failed(2), "qmp: argument `path`: expected key=value");
}

/// `qmp --socket SOCK ARGS...`, run to its end.
fn on_socket(sock: &str, args: &[&str]) -> common::Ran {
    run(qmp(&[&["--socket", sock], args].concat()), None)
}

#[test]
fn a_refused_one_shot_call_is_explained_by_its_path() {
    let Some(vm) = TwoMonitors::start("a_refused_one_shot_call_is_explained_by_its_path") else {
        return;
    };
    let sock = arg(vm.first());
    // QEMU refuses; the live schema, fetched after the refusal, says where
    // and what it allows. Exit 1: QEMU's refusal.
    let bad = [
        "blockdev-add",
        "driver=qcow2",
        "node-name=top",
        "file.driver=nope",
    ];
    let message = on_socket(sock, &bad).failed(1).to_owned();
    assert!(message.starts_with("qmp: GenericError: "), "{message}");
    let expected =
        "(schema: blockdev-add: arguments.file.driver: \"nope\" selects no branch; one of: ";
    assert!(message.contains(expected), "{message}");
    assert!(
        message.contains(" qcow2,") && message.contains(" file,"),
        "{message}"
    );
    let message = on_socket(sock, &["qom-get", "path=/machine"])
        .failed(1)
        .to_owned();
    assert!(message.starts_with("qmp: GenericError: "), "{message}");
    assert!(
        message.ends_with(
            "(schema: qom-get: arguments.property: required member `property` is missing)"
        ),
        "{message}"
    );
    // Well-formed arguments go through.
    let good = [
        "blockdev-add",
        "driver=null-co",
        "node-name=n0",
        "size=4096",
    ];
    assert_eq!(on_socket(sock, &good).ok(), "{}\n");
    let nodes = json_of(on_socket(sock, &["query-named-block-nodes"]).ok());
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node-name"].as_str())
        .collect();
    assert_eq!(names, ["n0"]);
}

#[test]
fn hmp_command_line() {
    let Some(vm) = TwoMonitors::start("hmp_command_line") else {
        return;
    };
    let out = run(
        qmp(&["--socket", arg(vm.first()), "-H", "info", "status"]),
        None,
    );
    assert_eq!(out.ok(), "VM status: running\n");
}

#[test]
fn events_with_stop_and_cont() {
    let Some(vm) = TwoMonitors::start("events_with_stop_and_cont") else {
        return;
    };
    let watch = qmp(&[
        "--socket",
        arg(vm.first()),
        "--events",
        "--filter",
        "STOP",
        "--filter",
        "RESUME",
        "--count",
        "2",
        "--timeout",
        "30",
    ]);
    let watcher = std::thread::spawn(move || run(watch, None));
    // The watcher subscribes at some point after it starts: stop and
    // continue until it has seen two events.
    for _ in 0..100 {
        if watcher.is_finished() {
            break;
        }
        vm.second_runs("stop");
        vm.second_runs("query-status"); // an event that is not asked for
        vm.second_runs("cont");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = watcher.join().expect("watcher");
    let lines: Vec<Value> = out.ok().lines().map(json_of).collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    for event in &lines {
        assert!(
            event["event"] == "STOP" || event["event"] == "RESUME",
            "{event}"
        );
        assert!(
            event["timestamp"]["seconds"]
                .as_i64()
                .is_some_and(|s| s > 0),
            "{event}"
        );
    }
    assert_ne!(lines[0]["event"], lines[1]["event"]);

    // The timeout ends a watch without --count normally...
    let out = run(
        qmp(&["--socket", arg(vm.first()), "--events", "--timeout", "0.3"]),
        None,
    );
    assert_eq!(out.ok(), "");
    // ...and a --count it cuts short is a failure saying so.
    let out = run(
        qmp(&[
            "--socket",
            arg(vm.first()),
            "--events",
            "--count",
            "1",
            "--timeout",
            "0.3",
        ]),
        None,
    );
    assert_eq!(
        out.failed(2),
        "qmp: timed out after 0.3s (0 of 1 events came)"
    );
    assert!(out.took < Duration::from_secs(5), "{out:?}");
}

#[test]
fn info_shows_the_greeting_and_the_schema() {
    let Some(vm) = TwoMonitors::start("info_shows_the_greeting_and_the_schema") else {
        return;
    };
    let sock = arg(vm.first());
    let version = json_of(run(qmp(&["--socket", sock, "query-version"]), None).ok());
    let info = json_of(run(qmp(&["--socket", sock, "--info"]), None).ok());
    assert_eq!(info["version"], version, "{info}");
    assert_eq!(info["capabilities"], json!(["oob"]));
    assert_eq!(info["oob"], true);
    assert!(info.get("schema").is_none());
    let info = json_of(run(qmp(&["--socket", sock, "--info", "--schema"]), None).ok());
    let schema = &info["schema"];
    assert!(
        schema["commands"].as_u64().is_some_and(|n| n > 100),
        "{info}"
    );
    assert!(schema["events"].as_u64().is_some_and(|n| n > 20), "{info}");
    assert!(schema["types"].as_u64().is_some_and(|n| n > 100), "{info}");
}

#[test]
fn oob_is_sent_with_exec_oob() {
    let Some(vm) = TwoMonitors::start("oob_is_sent_with_exec_oob") else {
        return;
    };
    let sock = arg(vm.first());
    // QEMU refuses query-status out of band: the refusal shows it came as
    // exec-oob.
    let out = run(qmp(&["--socket", sock, "--oob", "query-status"]), None);
    assert_eq!(
        out.failed(1),
        "qmp: GenericError: The command query-status does not support OOB"
    );
}

#[test]
fn guest_agent() {
    let Some(builder) = qmp_testsuite::peers::require_guest_agent("guest_agent") else {
        return;
    };
    let agent = builder.spawn().expect("spawn qemu-ga");
    let sock = arg(agent.socket_path());
    let info = json_of(run(qmp(&["--qga", sock, "guest-info"]), None).ok());
    assert!(info["version"].as_str().is_some(), "{info}");
    assert_eq!(run(qmp(&["--qga", sock, "guest-ping"]), None).ok(), "{}\n");
    let out = run(
        qmp(&[
            "--qga",
            sock,
            "guest-exec",
            "path=/bin/true",
            "capture-output=true",
        ]),
        None,
    );
    assert!(json_of(out.ok())["pid"].as_i64().is_some());
    let out = run(qmp(&["--qga", sock, "no-such-command"]), None);
    assert!(
        out.failed(1).starts_with("qmp: CommandNotFound: "),
        "{out:?}"
    );
    let out = run(qmp(&["--qga", sock, "--events", "--timeout", "1"]), None);
    assert_eq!(
        out.failed(2),
        "qmp: --events needs a QMP monitor; a guest agent has none"
    );
}

#[test]
fn launches_a_private_qemu_by_default() {
    if qmp_testsuite::peers::require_program(
        "launches_a_private_qemu_by_default",
        "qemu-system-x86_64",
    )
    .is_none()
    {
        return;
    }
    let out = run(qmp(&["query-status"]), None);
    assert_eq!(json_of(out.ok())["status"], "running");
    let out = run(qmp(&["--launch-args", "-S", "query-status"]), None);
    assert_eq!(json_of(out.ok())["status"], "prelaunch");
    let out = run(
        qmp(&["--launch-args", "-no-such-option", "query-status"]),
        None,
    );
    let line = out.failed(2);
    assert!(line.starts_with("qmp: cannot launch QEMU: "), "{line}");
    assert!(line.contains("-no-such-option"), "{line}");
}

#[test]
fn a_child_on_stdio() {
    let Some(qemu) =
        qmp_testsuite::peers::require_program("a_child_on_stdio", "qemu-system-x86_64")
    else {
        return;
    };
    let out = run(
        qmp(&[
            "--stdio",
            "query-status",
            "--",
            arg(&qemu),
            "-machine",
            "none",
            "-qmp",
            "stdio",
            "-display",
            "none",
            "-nodefaults",
        ]),
        None,
    );
    assert_eq!(json_of(out.ok())["status"], "running");
    let out = run(qmp(&["--stdio", "query-status", "--", "/bin/false"]), None);
    out.failed(2);
}

/// The `--stdio` child does not outlive `qmp`.
#[test]
fn a_child_on_stdio_ends_with_qmp() {
    let Some(qemu) = qmp_testsuite::peers::require_program(
        "a_child_on_stdio_ends_with_qmp",
        "qemu-system-x86_64",
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("qmp-cli-stdio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pid_file = dir.join("pid");
    let script = format!(
        "echo $$ > '{}'; exec '{}' -machine none -qmp stdio -display none -nodefaults",
        pid_file.display(),
        qemu.display()
    );
    let out = run(
        qmp(&["--stdio", "query-status", "--", "sh", "-c", &script]),
        None,
    );
    assert_eq!(json_of(out.ok())["status"], "running");
    let pid = std::fs::read_to_string(&pid_file).expect("the child wrote its pid");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
    // Killed before qmp exited; init reaps it shortly after.
    let gone = (0..100).any(|_| {
        let alive =
            std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| !stat.contains(") Z "));
        if alive {
            std::thread::sleep(Duration::from_millis(20));
        }
        !alive
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert!(gone, "the --stdio child (pid {}) outlived qmp", pid.trim());
}

#[test]
fn commands_from_stdin_one_reply_per_line() {
    let Some(vm) = TwoMonitors::start("commands_from_stdin_one_reply_per_line") else {
        return;
    };
    let script = "\
# a comment, then an empty line

query-status
qom-get path=/machine property=type
{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine\", \"property\": \"type\"}}
no-such-command
transaction(
abort
)
";
    let out = run(qmp(&["--socket", arg(vm.first())]), Some(script));
    assert_eq!(out.code, Some(1), "{out:?}");
    let lines: Vec<Value> = out.stdout.lines().map(json_of).collect();
    assert_eq!(lines.len(), 5, "{out:?}");
    assert_eq!(lines[0]["return"]["status"], "running");
    assert_eq!(lines[1], json!({"return": "none-machine"}));
    assert_eq!(lines[2], json!({"return": "none-machine"}));
    assert_eq!(lines[3]["error"]["class"], "CommandNotFound");
    assert_eq!(
        lines[4]["error"]["desc"],
        "Transaction aborted using Abort action"
    );

    let out = run(
        qmp(&["--socket", arg(vm.first())]),
        Some("query-status\nbad token\n"),
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 2);
    assert_eq!(
        json_of(out.stdout.lines().nth(1).unwrap_or_default())["error"]["class"],
        "UsageError"
    );
    let out = run(qmp(&["--socket", arg(vm.first())]), Some("query-status\n"));
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn a_monitor_on_tcp() {
    let Some(builder) = qmp_testsuite::peers::require_qemu("a_monitor_on_tcp") else {
        return;
    };
    // A free port, as the kernel picks one (released just before QEMU takes it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let _qemu = builder
        .arg("-qmp")
        .arg(format!("tcp:127.0.0.1:{port},server=on,wait=off"))
        .spawn()
        .expect("spawn QEMU");
    let addr = format!("127.0.0.1:{port}");
    let out = run(qmp(&["--tcp", &addr, "query-status"]), None);
    assert_eq!(json_of(out.ok())["status"], "running");
}
