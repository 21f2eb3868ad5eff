//! The live schema of a real QEMU 7.2 and 10.0 (when `QMP_QEMU10` names
//! it; see scripts/prepare-qemu10.sh): fetched through a client, asked what
//! it supports, and used by `Config::check_arguments` to refuse bad calls
//! without sending them while good ones go through.
//!
//! A missing QEMU skips with a `SKIPPED` line on stderr, or fails when
//! `QMP_REQUIRE_PEERS` is set.

use qmp_qapi::commands::BlockdevAdd;
use qmp_qapi::schema::{Fault, LiveSchema, Schema, ValidationError};
use qmp_std::{Config, Error, QemuBuilder};
use qmp_testsuite::peers::require_qemu10 as qemu10;
use serde_json::{Value, json};

/// The validation error behind a refused call.
fn refusal(result: qmp_std::Result<impl core::fmt::Debug>) -> ValidationError {
    match result {
        Err(Error::InvalidArguments { reason, .. }) => reason
            .downcast_ref::<ValidationError>()
            .expect("the reason is the schema's")
            .clone(),
        other => panic!("expected a refusal before sending, got {other:?}"),
    }
}

fn checks_against(builder: QemuBuilder, captured: &str, ten: bool) {
    let schema = LiveSchema::new();
    let config = Config::default().check_arguments(schema.clone());
    let (_qemu, qmp) = qmp_std::launch(builder.machine("none"), config).expect("launching QEMU");
    let bad = json!({"driver": "null-co", "node-name": "n0", "sise": 1});

    // Until loaded every call passes the check, so QEMU itself answers.
    match qmp.execute_raw("blockdev-add", &bad) {
        Err(Error::Command(e)) => assert!(e.desc.contains("sise"), "{e}"),
        other => panic!("QEMU should have refused it: {other:?}"),
    }

    let live = schema.load(&qmp).expect("query-qmp-schema");
    // Cached: a second load is the same schema.
    assert!(std::sync::Arc::ptr_eq(&live, &schema.load(&qmp).unwrap()));
    let file = Schema::parse(captured).unwrap();
    assert_eq!(live.commands().count(), file.commands().count());
    assert_eq!(live.events().count(), file.events().count());
    assert!(live.supports("query-status") && live.supports("blockdev-add"));
    assert_eq!(live.supports("query-audiodevs"), ten);
    assert_eq!(
        live.path_exists("blockdev-add/arg-type/+qcow2/*discard-no-unref"),
        ten
    );

    // Refused before sending: the error is the check's, not QEMU's.
    let e = refusal(qmp.execute_raw("blockdev-add", &bad));
    assert_eq!(e.path(), "arguments.sise");
    assert!(matches!(e.fault(), Fault::UnknownMember { .. }));
    let shown = Error::InvalidArguments {
        command: "blockdev-add".into(),
        reason: std::sync::Arc::new(e),
    }
    .to_string();
    assert!(
        shown.starts_with("not sent: blockdev-add: arguments.sise: no member `sise`; allowed: "),
        "{shown}"
    );
    let e = refusal(qmp.execute_raw("no-such-command", ()));
    assert_eq!(e.fault(), &Fault::UnknownCommand);

    // A good call goes through.
    qmp.execute_raw(
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "n0", "size": 4096}),
    )
    .expect("a good blockdev-add");
    let nodes: Value = qmp
        .execute_raw("query-named-block-nodes", ())
        .unwrap()
        .decode()
        .unwrap();
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node-name"] == "n0")
    );

    // Typed commands are checked too: `active` is a 10.0 member.
    let typed: qmp_qapi::types::BlockdevOptions =
        serde_json::from_value(json!({"driver": "null-co", "node-name": "n1", "active": true}))
            .unwrap();
    let result = qmp.execute(&BlockdevAdd(typed));
    if ten {
        result.expect("10.0 has `active`");
    } else {
        assert_eq!(refusal(result).path(), "arguments.active");
    }
}

#[test]
fn live_schema_of_qemu_7_2() {
    let Some(builder) = qmp_testsuite::peers::require_qemu("live_schema_of_qemu_7_2") else {
        return;
    };
    checks_against(builder, include_str!("../schema/qemu-7.2.json"), false);
}

#[test]
fn live_schema_of_qemu_10_0() {
    let Some(builder) = qemu10("live_schema_of_qemu_10_0") else {
        return;
    };
    checks_against(builder, include_str!("../schema/qemu-10.0.json"), true);
}

#[test]
fn live_schema_through_an_async_client() {
    let Some(builder) = qmp_testsuite::peers::require_qemu("live_schema_through_an_async_client")
    else {
        return;
    };
    smol::block_on(async {
        let schema = LiveSchema::new();
        let config = Config::default().check_arguments(schema.clone());
        let (_qemu, qmp) = qmp_smol::launch(builder.machine("none"), config)
            .await
            .expect("launching QEMU");
        let live = schema.load_async(&qmp).await.expect("query-qmp-schema");
        assert!(live.supports("query-status"));
        assert!(std::sync::Arc::ptr_eq(&live, &schema.get().unwrap()));
        let bad = json!({"path": "/machine"});
        let e = refusal(qmp.execute_raw("qom-get", &bad).await);
        assert_eq!(e.path(), "arguments.property");
        assert_eq!(
            e.fault(),
            &Fault::MissingMember {
                member: "property".into()
            }
        );
        let good = json!({"path": "/machine", "property": "type"});
        let reply = qmp
            .execute_raw("qom-get", &good)
            .await
            .expect("a good qom-get");
        assert_eq!(reply.as_str(), "\"none-machine\"");
    });
}

/// Refuses `guest-set-time`: a check on a guest agent's calls.
#[derive(Debug)]
struct NoClockChanges;

impl qmp_std::ArgumentCheck for NoClockChanges {
    fn check(&self, command: &str, _: Option<&str>) -> Result<(), qmp_io::CheckError> {
        match command {
            "guest-set-time" => Err("the guest clock is not to be changed".into()),
            _ => Ok(()),
        }
    }
}

#[test]
fn a_guest_agent_runs_the_check_too() {
    let Some(builder) =
        qmp_testsuite::peers::require_guest_agent("a_guest_agent_runs_the_check_too")
    else {
        return;
    };
    let agent = builder.spawn().expect("starting qemu-ga");
    let config = Config::default().check_arguments(NoClockChanges);
    let ga = qmp_std::connect_guest_agent(agent.socket_path(), config).expect("connecting");
    ga.execute(&qmp_qapi::qga::GuestPing)
        .expect("guest-ping passes");
    let raw = ga.execute_raw("guest-set-time", json!({"time": 0}));
    match raw {
        Err(ref e @ Error::InvalidArguments { ref command, .. }) => {
            assert_eq!(command, "guest-set-time");
            assert_eq!(
                e.to_string(),
                "not sent: the guest clock is not to be changed"
            );
        }
        other => panic!("{other:?}"),
    }
    let typed = ga.execute(&qmp_qapi::qga::GuestSetTime { time: None });
    assert!(
        matches!(typed, Err(Error::InvalidArguments { .. })),
        "{typed:?}"
    );
    // Still in sync: the refused calls never reached the agent.
    ga.execute(&qmp_qapi::qga::GuestPing)
        .expect("guest-ping after");
}
