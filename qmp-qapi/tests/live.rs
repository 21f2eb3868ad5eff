//! The catalogue conforms to the live schema of QEMU 7.2 and 10.0 (every
//! command, event, member, optionality, JSON type and enum value), and real
//! replies decode: every argument-less query of QEMU 7.2 (and of 10.0
//! when `QMP_QEMU10` names it; see scripts/prepare-qemu10.sh), sent raw and
//! decoded into its typed result, and the events a session produces.
//!
//! A missing QEMU skips with a `SKIPPED` line on stderr, or fails when
//! `QMP_REQUIRE_PEERS` is set.

use core::time::Duration;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use qmp_qapi::commands::{self, QueryStatus};
use qmp_qapi::events::Event;
use qmp_qapi::types::RunState;
use qmp_std::{Config, EventFilter, QemuBuilder};
use qmp_testsuite::peers::require_qemu10 as qemu10;
use serde_json::{Value, json};

fn peers_required() -> bool {
    std::env::var_os("QMP_REQUIRE_PEERS").is_some_and(|v| !v.is_empty() && v != "0")
}

fn skip(test: &str, why: &str) {
    assert!(
        !peers_required(),
        "{test}: {why}, and QMP_REQUIRE_PEERS is set so the test may not be skipped"
    );
    // Straight to stderr: libtest would capture eprintln! of a passing test.
    let _ = std::io::stderr().write_all(format!("SKIPPED {test}: {why}\n").as_bytes());
}

fn runs(program: &std::ffi::OsStr) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// QEMU 7.2: `$QMP_QEMU` or `qemu-system-x86_64`.
fn qemu7(test: &str) -> Option<QemuBuilder> {
    let program = std::env::var_os("QMP_QEMU")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "qemu-system-x86_64".into());
    if !runs(&program) {
        skip(test, &format!("{} not found", program.to_string_lossy()));
        return None;
    }
    Some(QemuBuilder::new().binary(PathBuf::from(program)))
}

/// A small pc (paused, TCG) with a disk, a balloon, a generation id and
/// USB, so more queries have something to say.
fn machine(builder: QemuBuilder) -> QemuBuilder {
    builder.machine("pc").paused(true).args([
        "-blockdev",
        "driver=null-co,node-name=disk0,size=1048576",
        "-device",
        "virtio-blk-pci,drive=disk0,id=vblk0",
        "-device",
        "virtio-balloon-pci,id=balloon0",
        "-device",
        "vmgenid,id=vmgenid0",
        "-usb",
    ])
}

fn every_query_decodes(test: &str, builder: QemuBuilder) {
    let (_qemu, qmp) =
        qmp_std::launch(machine(builder), Config::default()).expect("launching QEMU");
    let version = qmp.greeting().version.to_string();
    let schema: Vec<Value> = qmp
        .execute_raw("query-qmp-schema", ())
        .expect("query-qmp-schema")
        .decode()
        .expect("schema is JSON");
    let by_name: BTreeMap<&str, &Value> = schema
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e)))
        .collect();
    let no_required_args = |c: &Value| {
        let args = &by_name[c["arg-type"].as_str().unwrap_or("")];
        args["members"]
            .as_array()
            .is_none_or(|m| m.iter().all(|m| m.get("default").is_some()))
            && args.get("variants").is_none()
    };
    let queries: Vec<&str> = schema
        .iter()
        .filter(|e| e["meta-type"] == "command")
        .filter(|c| {
            let n = c["name"].as_str().unwrap_or("");
            n.starts_with("query-") || n.starts_with("x-query-")
        })
        .filter(|c| no_required_args(c))
        .filter_map(|c| c["name"].as_str())
        .collect();
    let (mut decoded, mut refused, mut failed) = (0, Vec::new(), Vec::new());
    for name in &queries {
        match qmp.execute_raw(name, ()) {
            Ok(json) => match commands::decode_return(name, json.as_str()) {
                Some(Ok(())) => decoded += 1,
                Some(Err(e)) => failed.push(format!("{name}: {e}: {}", json.as_str())),
                None => failed.push(format!("{name}: not in the catalogue")),
            },
            Err(e) if e.command_error().is_some() => refused.push(*name),
            Err(e) => panic!("{test}: {name}: {e}"),
        }
    }
    let _ = std::io::stderr().write_all(
        format!(
            "{test}: QEMU {version}: {decoded} of {} queries decoded; refused by QEMU (not \
             decodable here): {refused:?}\n",
            queries.len()
        )
        .as_bytes(),
    );
    assert!(
        failed.is_empty(),
        "{test}: QEMU {version}:\n{}",
        failed.join("\n")
    );
    assert!(decoded > 40, "{test}: only {decoded} queries answered");

    // The typed path end to end, and the events it produces: stop/cont,
    // a backup job between two null-co nodes, a reset.
    let events = qmp.subscribe(EventFilter::all());
    let status = qmp.execute(&QueryStatus).expect("query-status");
    assert_eq!(status.status, RunState::Prelaunch);
    qmp.execute(&commands::Cont).expect("cont");
    qmp.execute(&commands::Stop).expect("stop");
    let target = json!({"driver": "null-co", "node-name": "target0", "size": 1_048_576});
    qmp.execute(&commands::BlockdevAdd(
        serde_json::from_value(target).unwrap(),
    ))
    .expect("blockdev-add");
    let backup = json!({"job-id": "job0", "device": "disk0", "target": "target0", "sync": "full"});
    qmp.execute(&commands::BlockdevBackup(
        serde_json::from_value(backup).unwrap(),
    ))
    .expect("blockdev-backup");
    let mut seen = Vec::new();
    while let Ok(Ok(event)) = events.recv_timeout(Duration::from_secs(5)) {
        let data = event.data().map(|d| d.as_str());
        let typed = Event::try_decode(event.name(), data)
            .unwrap_or_else(|e| panic!("{test}: {} did not decode: {e}", event.name()));
        assert!(
            !matches!(typed, Event::Unknown { .. }),
            "{test}: {} is not in the catalogue",
            event.name()
        );
        let again = Event::try_decode(typed.name(), Some(&typed.data().unwrap().to_string()))
            .expect("round trip");
        assert_eq!(typed, again);
        seen.push(event.name().to_owned());
        match &typed {
            Event::BlockJobCompleted(done) => {
                assert_eq!(done.device, "job0");
                qmp.execute(&commands::SystemReset).expect("system_reset");
            }
            Event::Reset(_) => break,
            _ => {}
        }
    }
    for name in [
        "RESUME",
        "STOP",
        "JOB_STATUS_CHANGE",
        "BLOCK_JOB_COMPLETED",
        "RESET",
    ] {
        assert!(
            seen.iter().any(|n| n == name),
            "{test}: no {name} in {seen:?}"
        );
    }
    let _ = std::io::stderr().write_all(format!("{test}: events decoded: {seen:?}\n").as_bytes());
}

#[test]
fn qemu_7_2_replies_decode() {
    if let Some(builder) = qemu7("qemu_7_2_replies_decode") {
        every_query_decodes("qemu_7_2_replies_decode", builder);
    }
}

#[test]
fn qemu_10_0_replies_decode() {
    if let Some(builder) = qemu10("qemu_10_0_replies_decode") {
        every_query_decodes("qemu_10_0_replies_decode", builder);
    }
}

/// The catalogue against a live QEMU's own schema. The catalogue is
/// generated from the captured schemas (and `generated.rs` fails when the
/// generated code is not what they give), so comparing the capture with
/// what the running QEMU says checks every typed command, event, member,
/// optionality, JSON type and enum value against the real thing. Every
/// mismatch is listed, not only the first.
fn mismatches(
    builder: QemuBuilder,
    captured: &str,
    bit: qmp_qapi::Versions,
) -> (String, Vec<String>) {
    use qmp_qapi::Schema;
    let (_qemu, qmp) =
        qmp_std::launch(builder.machine("none"), Config::default()).expect("launching QEMU");
    let version = qmp.greeting().version.to_string();
    let live = qmp
        .execute_raw("query-qmp-schema", ())
        .expect("query-qmp-schema");
    let live = Schema::parse(live.as_str()).expect("the live schema parses");
    let captured = Schema::parse(captured).expect("the captured schema parses");
    let mut faults = Vec::new();

    // Every typed command and event exists exactly where the catalogue says.
    let tables = [
        ("command", commands::COMMANDS),
        ("event", qmp_qapi::events::EVENTS),
    ];
    for (kind, table) in tables {
        for &(name, versions) in table {
            let here = versions.contains(bit);
            let live_has = match kind {
                "command" => live.supports(name),
                _ => live.event(name).is_some(),
            };
            if here != live_has {
                faults.push(format!(
                    "{kind} {name}: the catalogue says {}, QEMU {version} {}",
                    if here { "present" } else { "absent" },
                    if live_has { "has it" } else { "does not" }
                ));
            }
        }
    }
    for c in live.commands() {
        if !commands::COMMANDS.iter().any(|&(n, _)| n == c.name()) {
            faults.push(format!("command {}: not in the catalogue", c.name()));
        }
    }
    for e in live.events() {
        if !qmp_qapi::events::EVENTS.iter().any(|&(n, _)| n == e.name()) {
            faults.push(format!("event {}: not in the catalogue", e.name()));
        }
    }

    // Their arguments, results and data, member by member.
    let mut seen = Vec::new();
    for c in live.commands() {
        let Some(ours) = captured.command(c.name()) else {
            continue;
        };
        let name = c.name();
        compare(
            &format!("{name} arguments"),
            ours.arguments(),
            c.arguments(),
            &mut seen,
            &mut faults,
        );
        compare(
            &format!("{name} returns"),
            ours.returns(),
            c.returns(),
            &mut seen,
            &mut faults,
        );
    }
    for e in live.events() {
        let Some(ours) = captured.event(e.name()) else {
            continue;
        };
        compare(
            &format!("{} data", e.name()),
            ours.data(),
            e.data(),
            &mut seen,
            &mut faults,
        );
    }
    (version, faults)
}

fn conforms(test: &str, builder: QemuBuilder, captured: &str, bit: qmp_qapi::Versions) {
    let (version, faults) = mismatches(builder, captured, bit);
    assert!(
        faults.is_empty(),
        "{test}: {} mismatches between the catalogue and QEMU {version}:\n{}",
        faults.len(),
        faults.join("\n")
    );
    let _ = std::io::stderr()
        .write_all(format!("{test}: QEMU {version} matches the catalogue\n").as_bytes());
}

/// Compares a type of the capture with the live one at `path`, recursing
/// into members, branches, elements and alternatives; each pair once.
fn compare<'a>(
    path: &str,
    ours: Option<qmp_qapi::schema::TypeInfo<'a>>,
    live: Option<qmp_qapi::schema::TypeInfo<'a>>,
    seen: &mut Vec<(
        qmp_qapi::schema::TypeInfo<'a>,
        qmp_qapi::schema::TypeInfo<'a>,
    )>,
    faults: &mut Vec<String>,
) {
    let (ours, live) = match (ours, live) {
        (Some(o), Some(l)) => (o, l),
        (None, None) => return,
        (o, l) => {
            faults.push(format!("{path}: {o:?} in the catalogue, {l:?} live"));
            return;
        }
    };
    if seen.iter().any(|(o, l)| o.same(&ours) && l.same(&live)) {
        return;
    }
    seen.push((ours, live));
    if ours.meta_type() != live.meta_type() || ours.json_type() != live.json_type() {
        faults.push(format!("{path}: {ours} in the catalogue, {live} live"));
        return;
    }
    let names = |values: Vec<&str>| values.into_iter().map(str::to_owned).collect::<Vec<_>>();
    let (a, b) = (
        names(ours.values().map(|v| v.name()).collect()),
        names(live.values().map(|v| v.name()).collect()),
    );
    if a != b {
        faults.push(format!(
            "{path}: enum values {a:?} in the catalogue, {b:?} live"
        ));
    }
    if ours.tag() != live.tag() {
        faults.push(format!(
            "{path}: union tag {:?} in the catalogue, {:?} live",
            ours.tag(),
            live.tag()
        ));
    }
    for m in live.members() {
        let at = format!("{path}.{}", m.name());
        match ours.member(m.name()) {
            None => faults.push(format!("{at}: live only")),
            Some(o) => {
                if o.optional() != m.optional() {
                    faults.push(format!(
                        "{at}: optional {} in the catalogue, {} live",
                        o.optional(),
                        m.optional()
                    ));
                }
                compare(&at, o.ty(), m.ty(), seen, faults);
            }
        }
    }
    for o in ours.members() {
        if live.member(o.name()).is_none() {
            faults.push(format!("{path}.{}: in the catalogue only", o.name()));
        }
    }
    for v in live.variants() {
        let at = format!("{path}[{}={}]", live.tag().unwrap_or("?"), v.case());
        match ours.variant(v.case()) {
            None => faults.push(format!("{at}: live only")),
            Some(o) => compare(&at, o.ty(), v.ty(), seen, faults),
        }
    }
    for o in ours.variants() {
        if live.variant(o.case()).is_none() {
            faults.push(format!("{path}: branch {} in the catalogue only", o.case()));
        }
    }
    compare(
        &format!("{path}[]"),
        ours.element(),
        live.element(),
        seen,
        faults,
    );
    let (a, b): (Vec<_>, Vec<_>) = (ours.branches().collect(), live.branches().collect());
    if a.len() != b.len() {
        faults.push(format!(
            "{path}: {} alternatives in the catalogue, {} live",
            a.len(),
            b.len()
        ));
    }
    for (i, (o, l)) in a.into_iter().zip(b).enumerate() {
        compare(&format!("{path}|{i}"), Some(o), Some(l), seen, faults);
    }
}

#[test]
fn qemu_7_2_conforms() {
    if let Some(builder) = qemu7("qemu_7_2_conforms") {
        conforms(
            "qemu_7_2_conforms",
            builder,
            include_str!("../schema/qemu-7.2.json"),
            qmp_qapi::Versions::QEMU_7_2,
        );
    }
}

#[test]
fn qemu_10_0_conforms() {
    if let Some(builder) = qemu10("qemu_10_0_conforms") {
        conforms(
            "qemu_10_0_conforms",
            builder,
            include_str!("../schema/qemu-10.0.json"),
            qmp_qapi::Versions::QEMU_10_0,
        );
    }
}

/// The check can fail, and lists every fault: QEMU 10.0 against the
/// catalogue's view of 7.2 (its capture and its version bit).
#[test]
fn another_qemu_is_reported_fault_by_fault() {
    let test = "another_qemu_is_reported_fault_by_fault";
    let Some(builder) = qemu10(test) else {
        return;
    };
    let (_, faults) = mismatches(
        builder,
        include_str!("../schema/qemu-7.2.json"),
        qmp_qapi::Versions::QEMU_7_2,
    );
    for expected in [
        "command query-audiodevs: the catalogue says absent, QEMU 10.0.2 has it",
        "command x-query-profile: the catalogue says present, QEMU 10.0.2 does not",
        "blockdev-add arguments[driver=qcow2].discard-no-unref: live only",
    ] {
        assert!(
            faults.iter().any(|f| f == expected),
            "{test}: no `{expected}` in {} faults:\n{}",
            faults.len(),
            faults.join("\n")
        );
    }
    assert!(faults.len() > 50, "{test}: only {} faults", faults.len());
}

/// Typed state-changing commands QEMU can carry out here, each checked by
/// what QEMU reports afterwards: stop/cont (query-status), qom-set/qom-get,
/// object-add/object-del (qom-list), a ringbuf chardev written and read
/// back, add-fd with a real descriptor (query-fdsets), set-action.
fn typed_changes(test: &str, builder: QemuBuilder) {
    use std::os::fd::AsFd;
    let (_qemu, qmp) =
        qmp_std::launch(machine(builder), Config::default()).expect("launching QEMU");
    let version = qmp.greeting().version.to_string();

    // The machine starts paused (-S): prelaunch until the first cont.
    qmp.execute(&commands::Cont).expect("the first cont");
    qmp.execute(&commands::Stop).expect("stop");
    assert_eq!(
        qmp.execute(&QueryStatus).unwrap().status,
        RunState::Paused,
        "{test}"
    );
    qmp.execute(&commands::Cont).expect("cont");
    assert_eq!(
        qmp.execute(&QueryStatus).unwrap().status,
        RunState::Running,
        "{test}"
    );
    qmp.execute(&commands::Stop).expect("stop again");

    let object: commands::ObjectAdd =
        serde_json::from_value(json!({"qom-type": "secret", "id": "s0", "data": "hush"}))
            .expect("a typed object-add");
    qmp.execute(&object).expect("object-add");
    let objects = qmp
        .execute(&commands::QomList {
            path: "/objects".into(),
        })
        .expect("qom-list");
    assert!(
        objects.iter().any(|p| p.name == "s0"),
        "{test}: {version}: no s0"
    );
    qmp.execute(&commands::ObjectDel { id: "s0".into() })
        .expect("object-del");
    let objects = qmp
        .execute(&commands::QomList {
            path: "/objects".into(),
        })
        .expect("qom-list");
    assert!(
        !objects.iter().any(|p| p.name == "s0"),
        "{test}: {version}: s0 stayed"
    );

    let set: commands::QomSet = serde_json::from_value(json!({
        "path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval", "value": 7
    }))
    .expect("a typed qom-set");
    qmp.execute(&set).expect("qom-set");
    let get: commands::QomGet = serde_json::from_value(json!({
        "path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval"
    }))
    .expect("a typed qom-get");
    assert_eq!(
        qmp.execute(&get).expect("qom-get"),
        json!(7),
        "{test}: {version}"
    );

    let ring: commands::ChardevAdd = serde_json::from_value(json!({
        "id": "ring0", "backend": {"type": "ringbuf", "data": {"size": 4096}}
    }))
    .expect("a typed chardev-add");
    qmp.execute(&ring).expect("chardev-add");
    let write: commands::RingbufWrite =
        serde_json::from_value(json!({"device": "ring0", "data": "hello, ring"})).unwrap();
    qmp.execute(&write).expect("ringbuf-write");
    let read: commands::RingbufRead =
        serde_json::from_value(json!({"device": "ring0", "size": 64})).unwrap();
    assert_eq!(
        qmp.execute(&read).expect("ringbuf-read"),
        "hello, ring",
        "{test}"
    );
    qmp.execute(&commands::ChardevRemove { id: "ring0".into() })
        .expect("chardev-remove");

    let null = std::fs::File::open("/dev/null").expect("/dev/null");
    let add = qmp_std::Call::command(&commands::AddFd {
        fdset_id: None,
        opaque: Some("typed".into()),
    })
    .fd(null.as_fd())
    .expect("an fd for add-fd");
    let added: <commands::AddFd as qmp_std::Command>::Returns =
        serde_json::from_str(qmp.call(add).expect("add-fd").as_str()).expect("AddfdInfo");
    let sets = qmp.execute(&commands::QueryFdsets).expect("query-fdsets");
    let set = sets
        .iter()
        .find(|s| s.fdset_id == added.fdset_id)
        .unwrap_or_else(|| panic!("{test}: fdset {} not listed", added.fdset_id));
    assert!(
        set.fds
            .iter()
            .any(|f| f.fd == added.fd && f.opaque.as_deref() == Some("typed")),
        "{test}: {version}: {set:?}"
    );

    let action: commands::SetAction =
        serde_json::from_value(json!({"shutdown": "pause", "panic": "none"})).unwrap();
    qmp.execute(&action).expect("set-action");
    let _ = std::io::stderr()
        .write_all(format!("{test}: QEMU {version}: typed changes carried out\n").as_bytes());
}

#[test]
fn qemu_7_2_typed_changes() {
    if let Some(builder) = qemu7("qemu_7_2_typed_changes") {
        typed_changes("qemu_7_2_typed_changes", builder);
    }
}

#[test]
fn qemu_10_0_typed_changes() {
    if let Some(builder) = qemu10("qemu_10_0_typed_changes") {
        typed_changes("qemu_10_0_typed_changes", builder);
    }
}
