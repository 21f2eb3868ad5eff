//! The catalogue never breaks on a QEMU it was not generated from: unknown
//! enum values, union branches, alternate shapes, members and events are
//! kept, and encode back as they came.

use qmp_proto::Command;
use qmp_qapi::commands::{BlockdevAdd, QueryMemorySizeSummary, QueryStatus};
use qmp_qapi::events::{EVENTS, Event};
use qmp_qapi::types::{
    BlockLatencyHistogramInfo, BlockdevOptions, BlockdevOptionsBranch, BlockdevRefOrNull,
    MemoryInfo, RunState, StatusInfo, StrOrNull,
};
use serde_json::{Value, json};

#[test]
fn enum_keeps_unknown_value() {
    let s: StatusInfo =
        serde_json::from_value(json!({"running": false, "status": "hibernating", "new": 1}))
            .unwrap();
    assert_eq!(s.status, RunState::Other("hibernating".into()));
    assert_eq!(
        serde_json::to_value(&s.status).unwrap(),
        json!("hibernating")
    );
    assert_eq!(RunState::from("running"), RunState::Running);
}

#[test]
fn member_of_one_qemu_is_optional() {
    // `singlestep` is required in 7.2 and gone in 10.0.
    let s: StatusInfo = serde_json::from_str(r#"{"running": true, "status": "running"}"#).unwrap();
    assert_eq!(s.singlestep, None);
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        json!({"running": true, "status": "running"})
    );
}

#[test]
fn union_decodes_known_and_unknown_branches() {
    let known = json!({"driver": "null-co", "node-name": "n0", "size": 4096});
    let o: BlockdevOptions = serde_json::from_value(known.clone()).unwrap();
    assert_eq!(o.node_name.as_deref(), Some("n0"));
    assert!(matches!(o.driver, BlockdevOptionsBranch::NullCo(_)));
    assert_eq!(o.driver.tag(), "null-co");
    assert_eq!(serde_json::to_value(&o).unwrap(), known);

    let unknown = json!({"driver": "fancy-new", "node-name": "n1", "knob": [1, 2]});
    let o: BlockdevOptions = serde_json::from_value(unknown.clone()).unwrap();
    match &o.driver {
        BlockdevOptionsBranch::Other { tag, data } => {
            assert_eq!(tag, "fancy-new");
            assert_eq!(data["knob"], json!([1, 2]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(serde_json::to_value(&o).unwrap(), unknown);
}

#[test]
fn boxed_union_is_a_command() {
    let o: BlockdevOptions =
        serde_json::from_value(json!({"driver": "null-co", "node-name": "n0"})).unwrap();
    let add = BlockdevAdd(o);
    assert_eq!(BlockdevAdd::NAME, "blockdev-add");
    assert_eq!(
        serde_json::to_value(&add).unwrap(),
        json!({"driver": "null-co", "node-name": "n0"})
    );
    // No arguments: serializes to null, so none are sent.
    assert_eq!(serde_json::to_value(QueryStatus).unwrap(), Value::Null);
}

#[test]
fn alternates_pick_by_json_type() {
    let r: BlockdevRefOrNull = serde_json::from_value(json!(null)).unwrap();
    assert_eq!(r, BlockdevRefOrNull::Null);
    let r: BlockdevRefOrNull = serde_json::from_value(json!("node0")).unwrap();
    assert_eq!(r, BlockdevRefOrNull::Str("node0".into()));
    let r: BlockdevRefOrNull =
        serde_json::from_value(json!({"driver": "null-co", "size": 1})).unwrap();
    assert!(matches!(r, BlockdevRefOrNull::BlockdevOptions(_)));
    let r: StrOrNull = serde_json::from_value(json!(17)).unwrap();
    assert_eq!(r, StrOrNull::Other(json!(17)));
}

#[test]
fn events_decode_typed_or_unknown() {
    let e = Event::decode(
        "DEVICE_DELETED",
        Some(r#"{"device": "d0", "path": "/machine/peripheral/d0"}"#),
    );
    let Event::DeviceDeleted(d) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(d.device.as_deref(), Some("d0"));
    assert_eq!(e.name(), "DEVICE_DELETED");
    assert_eq!(
        Event::try_decode(e.name(), Some(&e.data().unwrap().to_string())).unwrap(),
        e
    );

    // No data at all.
    assert!(matches!(Event::decode("STOP", None), Event::Stop(_)));
    // An event this crate does not know.
    let e = Event::decode("BRAND_NEW", Some(r#"{"x": 1}"#));
    assert_eq!(
        e,
        Event::Unknown {
            name: "BRAND_NEW".into(),
            data: json!({"x": 1})
        }
    );
    assert_eq!(e.data().unwrap(), json!({"x": 1}));
    // A known event whose data does not fit is kept, not lost.
    let e = Event::decode("DEVICE_DELETED", Some(r#"{"path": 5}"#));
    assert!(matches!(e, Event::Unknown { .. }));
    assert!(Event::try_decode("DEVICE_DELETED", Some(r#"{"path": 5}"#)).is_err());
}

#[test]
fn every_event_name_has_its_variant() {
    for (name, _) in EVENTS {
        // Data that fits no event: the decoder must still route by name,
        // so an unknown result means the name itself is missing.
        match Event::try_decode(name, Some("{}")) {
            Ok(Event::Unknown { .. }) => panic!("{name} has no variant"),
            Ok(e) => assert_eq!(e.name(), *name),
            Err(_) => {} // required members missing: routed, as it should be
        }
    }
}

#[test]
fn unsigned_members_take_values_above_i64_max() {
    // `base-memory` and `plugged-memory` are QAPI `size`: u64, not i64.
    let reply = r#"{"base-memory":18446744073709551615,"plugged-memory":9223372036854775808}"#;
    let m: <QueryMemorySizeSummary as Command>::Returns = serde_json::from_str(reply).unwrap();
    assert_eq!(m.base_memory, u64::MAX);
    assert_eq!(m.plugged_memory, Some(1 << 63));
    assert_eq!(serde_json::to_string(&m).unwrap(), reply);
    // A negative value is refused, not wrapped.
    assert!(serde_json::from_str::<MemoryInfo>(r#"{"base-memory":-1}"#).is_err());

    // `uint64` lists too.
    let h: BlockLatencyHistogramInfo =
        serde_json::from_value(json!({"boundaries": [10, u64::MAX], "bins": [0, 1, u64::MAX]}))
            .unwrap();
    assert_eq!(h.boundaries, [10, u64::MAX]);
    assert_eq!(h.bins[2], u64::MAX);
}

/// `"backing": null` (open without a backing file) is not the same as no
/// `backing` (open the one the image names): both survive a round trip.
#[test]
fn a_present_null_is_kept_apart_from_an_absent_member() {
    use qmp_qapi::types::BlockdevOptions;
    for text in [
        r#"{"driver":"qcow2","node-name":"top","file":"top-file","backing":null}"#,
        r#"{"driver":"qcow2","node-name":"top","file":"top-file"}"#,
        r#"{"driver":"qcow2","node-name":"top","file":"top-file","backing":"base"}"#,
    ] {
        let typed: BlockdevOptions = serde_json::from_str(text).unwrap();
        let back = serde_json::to_value(&typed).unwrap();
        let want: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, want, "{text}");
    }
}
