//! The live schema on the two captured ones (QEMU 7.2 and 10.0): what each
//! supports, libvirt-style probes, and every kind of validation fault with
//! its path and message; hostile schemas and arguments end with an error.

use qmp_qapi::schema::{
    Fault, Found, JsonType, MAX_DEPTH, MetaType, PROBE_STEPS, ProbeErrorKind, Schema,
};
use serde_json::{Value, json};

const QEMU_7_2: &str = include_str!("../schema/qemu-7.2.json");
const QEMU_10_0: &str = include_str!("../schema/qemu-10.0.json");

fn v7() -> Schema {
    Schema::parse(QEMU_7_2).expect("the 7.2 schema parses")
}

fn v10() -> Schema {
    Schema::parse(QEMU_10_0).expect("the 10.0 schema parses")
}

#[test]
fn counts_match_the_capture() {
    // The numbers scripts/capture-schemas.sh wrote to schema/VERSIONS.
    let (a, b) = (v7(), v10());
    assert_eq!((a.commands().count(), a.events().count()), (216, 52));
    assert_eq!((b.commands().count(), b.events().count()), (233, 55));
    assert_eq!(a.type_count(), 1051 - 216 - 52);
    assert_eq!(b.type_count(), 1172 - 233 - 55);
    let names: Vec<&str> = b.commands().map(|c| c.name()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}

#[test]
fn supports_and_events() {
    let (a, b) = (v7(), v10());
    for s in [&a, &b] {
        assert!(s.supports("query-status"));
        assert!(s.supports("blockdev-add"));
        assert!(!s.supports("no-such-command"));
        // Events and types are not commands.
        assert!(!s.supports("STOP"));
        assert!(s.event("STOP").is_some());
        assert!(s.event("stop").is_none());
    }
    assert!(b.supports("query-audiodevs") && !a.supports("query-audiodevs"));
    assert!(a.supports("x-query-profile") && !b.supports("x-query-profile"));
    assert!(b.event("VFIO_MIGRATION").is_some() && a.event("VFIO_MIGRATION").is_none());
    assert!(a.event("MEM_UNPLUG_ERROR").is_some() && b.event("MEM_UNPLUG_ERROR").is_none());
}

#[test]
fn commands_and_events_are_described() {
    let s = v10();
    let status = s.command("query-status").unwrap();
    assert_eq!(status.name(), "query-status");
    let ret = status.returns().unwrap();
    assert_eq!(ret.meta_type(), MetaType::Object);
    assert_eq!(ret.json_type(), Some(JsonType::Object));
    let running = ret.member("running").unwrap();
    assert!(!running.optional());
    assert_eq!(
        running.ty().unwrap().meta_type(),
        MetaType::Builtin(JsonType::Boolean)
    );
    let state = ret.member("status").unwrap().ty().unwrap();
    assert_eq!(state.meta_type(), MetaType::Enum);
    assert!(state.values().any(|v| v.name() == "running"));
    assert!(
        state.to_string().starts_with("one of debug, inmigrate, "),
        "{state}"
    );
    assert_eq!(status.arguments().unwrap().members().count(), 0);

    let add = s.command("blockdev-add").unwrap().arguments().unwrap();
    assert_eq!(add.tag(), Some("driver"));
    let qcow2 = add.variant("qcow2").unwrap().ty().unwrap();
    let file = qcow2.member("file").unwrap();
    assert!(!file.optional());
    // BlockdevRef: the options inline, or a node name.
    let file_ty = file.ty().unwrap();
    assert_eq!(file_ty.meta_type(), MetaType::Alternate);
    assert_eq!(file_ty.json_type(), None);
    assert_eq!(file_ty.to_string(), "object | string");
    assert!(qcow2.member("discard-no-unref").unwrap().optional());

    // allow-oob and features.
    assert!(s.command("migrate-pause").unwrap().allow_oob());
    assert!(!s.command("query-status").unwrap().allow_oob());
    let profile = v7();
    let profile = profile.command("x-query-profile").unwrap();
    assert_eq!(profile.features().collect::<Vec<_>>(), ["unstable"]);

    let shutdown = s.event("SHUTDOWN").unwrap().data().unwrap();
    let guest = shutdown.member("guest").unwrap();
    assert_eq!(guest.ty().unwrap().json_type(), Some(JsonType::Boolean));
    assert_eq!(
        s.event("STOP").unwrap().data().unwrap().members().count(),
        0
    );
}

/// Probes whose answer differs between the two QEMUs: (query, 7.2, 10.0).
const PROBES: &[(&str, bool, bool)] = &[
    ("blockdev-add", true, true),
    ("blockdev-add/arg-type/+qcow2/discard-no-unref", false, true),
    (
        "blockdev-add/arg-type/+qcow2/*discard-no-unref",
        false,
        true,
    ),
    ("blockdev-add/arg-type/+qcow2/lazy-refcounts", true, true),
    // `file` is required: `*` asks for an optional member.
    ("blockdev-add/arg-type/+qcow2/*file", false, false),
    ("blockdev-add/arg-type/+qcow2/file", true, true),
    ("blockdev-add/arg-type/active", false, true),
    ("blockdev-add/arg-type/driver/^qcow2", true, true),
    ("blockdev-add/arg-type/driver/^qcow3", false, false),
    ("blockdev-add/arg-type/node-name/!string", true, true),
    ("blockdev-add/arg-type/node-name/!int", false, false),
    // Through an alternate (BlockdevRef: object or string) into a branch.
    (
        "blockdev-add/arg-type/+qcow2/file/+file/filename",
        true,
        true,
    ),
    ("blockdev-add/arg-type/+qcow2/file/!string", true, true),
    // Through an array to its element's enum.
    (
        "migrate-set-capabilities/arg-type/capabilities/capability/^mapped-ram",
        false,
        true,
    ),
    (
        "migrate-set-capabilities/arg-type/capabilities/capability/^compress",
        true,
        false,
    ),
    (
        "migrate-set-capabilities/arg-type/capabilities/capability/^x-colo/$unstable",
        true,
        true,
    ),
    (
        "migrate-set-capabilities/arg-type/capabilities/capability/^zero-blocks/$deprecated",
        false,
        true,
    ),
    ("object-add/arg-type/qom-type/^iommufd", false, true),
    ("query-status/ret-type/status/^running", true, true),
    ("query-status/ret-type/running/!boolean", true, true),
    ("x-query-profile/$unstable", true, false),
    ("query-status/$unstable", false, false),
    ("SHUTDOWN/arg-type/guest/!boolean", true, true),
    // Events have no ret-type; modifiers in the wrong place find nothing.
    ("SHUTDOWN/ret-type", false, false),
    ("blockdev-add/+qcow2", false, false),
    ("blockdev-add/arg-type/^qcow2", false, false),
    ("query-audiodevs", false, true),
    ("no-such-command/arg-type", false, false),
    // Masked type names are not a way in.
    ("0", false, false),
];

#[test]
fn probes_like_libvirt() {
    let (a, b) = (v7(), v10());
    for (query, in7, in10) in PROBES {
        assert_eq!(a.path_exists(query), *in7, "7.2: {query}");
        assert_eq!(b.path_exists(query), *in10, "10.0: {query}");
    }
}

#[test]
fn probes_name_what_they_found() {
    let s = v10();
    match s.path_get("blockdev-add/arg-type/+qcow2/discard-no-unref") {
        Ok(Some(Found::Member(m))) => {
            assert_eq!(m.name(), "discard-no-unref");
            assert!(m.optional());
            let t = m.ty().unwrap();
            assert_eq!(t.meta_type(), MetaType::Builtin(JsonType::Boolean));
            assert_eq!(t.to_string(), "boolean");
        }
        other => panic!("{other:?}"),
    }
    match s.path_get("blockdev-add/arg-type/driver") {
        Ok(Some(Found::Member(m))) => {
            assert!(!m.optional());
            assert_eq!(m.ty().unwrap().meta_type(), MetaType::Enum);
        }
        other => panic!("{other:?}"),
    }
    // A branch is a type: the object of its members.
    match s.path_get("blockdev-add/arg-type/+qcow2") {
        Ok(Some(Found::Type(t))) => assert!(t.member("lazy-refcounts").is_some()),
        other => panic!("{other:?}"),
    }
    // Through an array: the element's member.
    match s.path_get("migrate-set-capabilities/arg-type/capabilities/capability") {
        Ok(Some(Found::Member(m))) => assert_eq!(m.name(), "capability"),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(s.path_get("query-status"), Ok(Some(Found::Command(c))) if c.name() == "query-status")
    );
    assert!(matches!(s.path_get("STOP"), Ok(Some(Found::Event(e))) if e.name() == "STOP"));
    assert!(matches!(
        s.path_get("query-status/ret-type/status/^paused"),
        Ok(Some(Found::Holds))
    ));
    assert!(matches!(
        s.path_get("query-status/ret-type/status/^nope"),
        Ok(None)
    ));
}

#[test]
fn malformed_probes_say_why() {
    let s = v10();
    let e = s.path_get("").unwrap_err();
    assert_eq!(e.kind, ProbeErrorKind::Empty);
    let e = s
        .path_get("query-status/ret-type/status/^running/more")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "schema query `query-status/ret-type/status/^running/more`: `^running` is a test and must be its last component"
    );
    let e = s.path_get("query-status/$unstable/x").unwrap_err();
    assert!(
        matches!(e.kind, ProbeErrorKind::NotLast { ref component } if component == "$unstable")
    );
    let e = s
        .path_get("blockdev-add/arg-type/node-name/!string/x")
        .unwrap_err();
    assert!(matches!(e.kind, ProbeErrorKind::NotLast { .. }));
    assert!(!s.path_exists("query-status/ret-type/status/^running/more"));
}

#[test]
fn a_looping_schema_stops_probing() {
    // An alternate that contains itself: each branch leads back to it.
    let s = Schema::parse(
        r#"[{"name": "c", "meta-type": "command", "arg-type": "1", "ret-type": "1"},
            {"name": "1", "meta-type": "alternate", "members": [{"type": "1"}, {"type": "1"}]}]"#,
    )
    .unwrap();
    let e = s.path_get("c/arg-type/x").unwrap_err();
    assert_eq!(e.kind, ProbeErrorKind::TooManySteps);
    assert_eq!(
        e.to_string(),
        format!(
            "schema query `c/arg-type/x`: more than {PROBE_STEPS} steps (the schema's types loop)"
        )
    );
}

/// The fault of `args` for `command`, as (path, Display).
fn fault(s: &Schema, command: &str, args: Value) -> (String, String, Fault) {
    let e = s.validate(command, &args).expect_err("a fault");
    assert_eq!(e.command(), command);
    (e.path().to_owned(), e.to_string(), e.fault().clone())
}

#[test]
fn good_arguments_pass() {
    for s in [v7(), v10()] {
        let ok = |command: &str, args: Value| {
            s.validate(command, &args)
                .unwrap_or_else(|e| panic!("{command} {args}: {e}"))
        };
        ok("query-status", Value::Null);
        ok("query-status", json!({}));
        ok("stop", Value::Null);
        ok(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": "n0", "size": 1048576}),
        );
        ok(
            "blockdev-add",
            json!({"driver": "qcow2", "node-name": "top", "discard": "unmap",
                   "file": {"driver": "file", "filename": "/tmp/x.qcow2"},
                   "backing": null}),
        );
        // The alternate's string branch: a node name.
        ok(
            "blockdev-add",
            json!({"driver": "qcow2", "node-name": "top", "file": "base"}),
        );
        ok(
            "migrate-set-capabilities",
            json!({"capabilities": [{"capability": "events", "state": true}]}),
        );
        // `any` takes anything.
        ok(
            "qom-set",
            json!({"path": "/machine", "property": "x", "value": {"a": [1, "b", null]}}),
        );
        ok(
            "qom-set",
            json!({"path": "/machine", "property": "x", "value": 1.5}),
        );
        // An int is a number too.
        ok(
            "human-monitor-command",
            json!({"command-line": "info status", "cpu-index": 0}),
        );
        // A flat union whose tag value has no branch of its own.
        ok(
            "chardev-add",
            json!({"id": "r0", "backend": {"type": "null", "data": {}}}),
        );
    }
}

#[test]
fn unknown_command() {
    let (path, text, f) = fault(&v7(), "query-audiodevs", Value::Null);
    assert_eq!(path, "");
    assert_eq!(f, Fault::UnknownCommand);
    assert_eq!(
        text,
        "query-audiodevs: no such command in this QEMU's schema"
    );
    assert!(v10().validate("query-audiodevs", &Value::Null).is_ok());
}

#[test]
fn unknown_member_lists_the_allowed_ones() {
    let s = v10();
    let (path, text, f) = fault(
        &s,
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "n", "sise": 1}),
    );
    assert_eq!(path, "arguments.sise");
    let Fault::UnknownMember { member, allowed } = f else {
        panic!()
    };
    assert_eq!(member, "sise");
    // The common members and the null-co branch's, sorted.
    assert!(allowed.contains(&"size".to_owned()) && allowed.contains(&"node-name".to_owned()));
    assert!(allowed.contains(&"read-zeroes".to_owned()) && !allowed.contains(&"file".to_owned()));
    let mut sorted = allowed.clone();
    sorted.sort();
    assert_eq!(allowed, sorted);
    assert!(text.starts_with("blockdev-add: arguments.sise: no member `sise`; allowed: active, auto-read-only, cache, "), "{text}");

    // A member of a 10.0-only argument is unknown in 7.2.
    let (path, _, f) = fault(
        &v7(),
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "n", "active": true}),
    );
    assert_eq!(path, "arguments.active");
    assert!(matches!(f, Fault::UnknownMember { .. }));

    // A command without arguments.
    let (path, text, _) = fault(&s, "stop", json!({"now": true}));
    assert_eq!(path, "arguments.now");
    assert_eq!(
        text,
        "stop: arguments.now: no member `now` (it takes no members)"
    );

    // Names that are not plain are quoted in the path.
    let (path, _, _) = fault(&s, "stop", json!({"a.b": 1}));
    assert_eq!(path, r#"arguments["a.b"]"#);
}

#[test]
fn wrong_json_type() {
    let s = v10();
    let (path, text, f) = fault(
        &s,
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "n", "size": "1M"}),
    );
    assert_eq!(path, "arguments.size");
    assert_eq!(
        f,
        Fault::WrongType {
            expected: "int".into(),
            found: JsonType::String
        }
    );
    assert_eq!(
        text,
        "blockdev-add: arguments.size: expected int, found string"
    );
    // A fraction is not an int.
    let (_, text, _) = fault(
        &s,
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "n", "size": 1.5}),
    );
    assert_eq!(
        text,
        "blockdev-add: arguments.size: expected int, found number"
    );
    // Arguments that are not an object.
    let (path, text, _) = fault(&s, "stop", json!([1]));
    assert_eq!(path, "arguments");
    assert_eq!(text, "stop: arguments: expected object, found array");
    // An alternate whose branches do not take the JSON type.
    let (path, text, _) = fault(
        &s,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "n", "file": 7}),
    );
    assert_eq!(path, "arguments.file");
    assert_eq!(
        text,
        "blockdev-add: arguments.file: expected object or string, found int"
    );
    // An enum takes a string.
    let (path, text, _) = fault(
        &s,
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "n", "discard": true}),
    );
    assert_eq!(path, "arguments.discard");
    assert_eq!(
        text,
        "blockdev-add: arguments.discard: expected string, found boolean"
    );
}

#[test]
fn missing_member() {
    let s = v10();
    let (path, text, f) = fault(&s, "qom-get", json!({"path": "/machine"}));
    assert_eq!(path, "arguments.property");
    assert_eq!(
        f,
        Fault::MissingMember {
            member: "property".into()
        }
    );
    assert_eq!(
        text,
        "qom-get: arguments.property: required member `property` is missing"
    );
    // The tag of a union is a required member.
    let (path, _, _) = fault(&s, "blockdev-add", json!({"node-name": "n"}));
    assert_eq!(path, "arguments.driver");
    // A branch's required member: qcow2 needs `file`.
    let (path, _, _) = fault(
        &s,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "n"}),
    );
    assert_eq!(path, "arguments.file");
}

#[test]
fn unknown_enum_value_lists_the_values() {
    let (a, b) = (v7(), v10());
    let args = json!({"capabilities": [{"capability": "events", "state": true}, {"capability": "mapped-ram", "state": true}]});
    assert!(b.validate("migrate-set-capabilities", &args).is_ok());
    let (path, text, f) = fault(&a, "migrate-set-capabilities", args);
    assert_eq!(path, "arguments.capabilities[1].capability");
    let Fault::UnknownValue { value, allowed } = f else {
        panic!()
    };
    assert_eq!(value, "mapped-ram");
    assert!(allowed.contains(&"compress".to_owned()));
    assert!(text.starts_with("migrate-set-capabilities: arguments.capabilities[1].capability: \"mapped-ram\" is not one of: xbzrle, rdma-pin-all, "), "{text}");
}

#[test]
fn union_branches_by_tag() {
    let s = v10();
    // Unknown tag value: the allowed ones.
    let (path, text, f) = fault(
        &s,
        "blockdev-add",
        json!({"driver": "qcow3", "node-name": "n"}),
    );
    assert_eq!(path, "arguments.driver");
    let Fault::UnknownBranch { value, allowed } = f else {
        panic!()
    };
    assert_eq!(value, "qcow3");
    assert!(allowed.contains(&"qcow2".to_owned()) && allowed.contains(&"null-co".to_owned()));
    assert!(
        text.starts_with("blockdev-add: arguments.driver: \"qcow3\" selects no branch; one of: "),
        "{text}"
    );
    // Nested: the file's own union.
    let (path, _, _) = fault(
        &s,
        "blockdev-add",
        json!({"driver": "qcow2", "node-name": "n", "file": {"driver": "file", "filename": 3}}),
    );
    assert_eq!(path, "arguments.file.filename");
    // A branch member under the wrong branch.
    let (path, _, f) = fault(
        &s,
        "blockdev-add",
        json!({"driver": "null-co", "node-name": "n", "lazy-refcounts": true}),
    );
    assert_eq!(path, "arguments.lazy-refcounts");
    assert!(matches!(f, Fault::UnknownMember { .. }));
    // A tag that is not a string.
    let (path, text, _) = fault(&s, "blockdev-add", json!({"driver": 1, "node-name": "n"}));
    assert_eq!(path, "arguments.driver");
    assert_eq!(
        text,
        "blockdev-add: arguments.driver: expected string, found int"
    );
}

#[test]
fn text_arguments() {
    let s = v10();
    assert!(
        s.validate_str(
            "qom-get",
            Some(r#"{"path": "/machine", "property": "type"}"#)
        )
        .is_ok()
    );
    assert!(s.validate_str("query-status", None).is_ok());
    let e = s.validate_str("qom-get", Some("{\"path\": ")).unwrap_err();
    assert_eq!(e.path(), "arguments");
    assert!(matches!(e.fault(), Fault::NotJson { .. }));
    assert!(
        e.to_string()
            .starts_with("qom-get: arguments: not a JSON object: EOF while parsing"),
        "{e}"
    );
}

/// `{"driver": "qcow2", "node-name": "n", "file": {...}}` nested `levels` times.
fn qcow2_chain(levels: usize) -> Value {
    let mut v = json!({"driver": "null-co", "node-name": "bottom"});
    for _ in 0..levels {
        v = json!({"driver": "qcow2", "node-name": "n", "file": v});
    }
    v
}

#[test]
fn depth_limit() {
    let s = v10();
    // Each level is one object and one alternate (BlockdevRef).
    assert!(
        s.validate("blockdev-add", &qcow2_chain(MAX_DEPTH / 2 - 1))
            .is_ok()
    );
    let e = s
        .validate("blockdev-add", &qcow2_chain(MAX_DEPTH))
        .unwrap_err();
    assert_eq!(e.fault(), &Fault::TooDeep { limit: MAX_DEPTH });
    assert!(
        e.path().starts_with("arguments.file.file.file."),
        "{}",
        e.path()
    );
    assert!(
        e.to_string().ends_with(&format!(
            ": nested deeper than {MAX_DEPTH} levels, the check's limit"
        )),
        "{e}"
    );

    // Arrays nest too: `any` stops the walk, so use an array of arrays.
    let s = Schema::parse(
        r#"[{"name": "c", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
            {"name": "0", "meta-type": "object", "members": [{"name": "a", "type": "1", "default": null}]},
            {"name": "1", "meta-type": "array", "element-type": "1"}]"#,
    )
    .unwrap();
    let mut deep = json!([]);
    for _ in 0..MAX_DEPTH + 10 {
        deep = json!([deep]);
    }
    let e = s.validate("c", &json!({"a": deep})).unwrap_err();
    assert_eq!(e.fault(), &Fault::TooDeep { limit: MAX_DEPTH });
    assert!(e.path().starts_with("arguments.a[0][0]"));
}

#[test]
fn an_alternate_of_itself_stops() {
    // A hostile schema: an alternate whose branch is itself, so the walk
    // would go on without descending into the value.
    let s = Schema::parse(
        r#"[{"name": "c", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
            {"name": "0", "meta-type": "object", "members": [{"name": "a", "type": "1"}]},
            {"name": "1", "meta-type": "alternate", "members": [{"type": "1"}]}]"#,
    )
    .unwrap();
    let e = s.validate("c", &json!({"a": 1})).unwrap_err();
    assert_eq!(e.fault(), &Fault::TooDeep { limit: MAX_DEPTH });
    assert_eq!(e.path(), "arguments.a");
    // A union whose branch is itself.
    let s = Schema::parse(
        r#"[{"name": "c", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
            {"name": "0", "meta-type": "object", "tag": "t", "members": [{"name": "t", "type": "1"}],
             "variants": [{"case": "x", "type": "0"}]},
            {"name": "1", "meta-type": "enum", "values": ["x"]}]"#,
    )
    .unwrap();
    let e = s.validate("c", &json!({"t": "x"})).unwrap_err();
    assert_eq!(e.fault(), &Fault::TooDeep { limit: MAX_DEPTH });
}

#[test]
fn descriptions_stay_short() {
    // An alternate of 2000 branches that are itself: described to a
    // bounded size, not 2000^3 times.
    let branches: Vec<String> = (0..2000).map(|_| r#"{"type": "1"}"#.to_owned()).collect();
    let s = Schema::parse(&format!(
        r#"[{{"name": "c", "meta-type": "command", "arg-type": "1", "ret-type": "1"}},
            {{"name": "1", "meta-type": "alternate", "members": [{}]}}]"#,
        branches.join(",")
    ))
    .unwrap();
    let text = s.command("c").unwrap().arguments().unwrap().to_string();
    assert!(text.len() < 20_000, "{}", text.len());
    assert!(text.ends_with("..."), "{text}");
}

#[test]
fn broken_schemas_are_refused_clearly() {
    let e = Schema::parse("{}").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid type: map, expected a sequence"),
        "{e}"
    );
    let e = Schema::parse(
        r#"[{"name": "c", "meta-type": "command", "arg-type": "7", "ret-type": "0"}]"#,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("command `c` names type `7` as its type, and the schema has no such type"),
        "{e}"
    );
    let e = Schema::parse(r#"[{"meta-type": "command"}]"#).unwrap_err();
    assert!(e.to_string().starts_with("missing field `name`"), "{e}");
    // A meta-type from the future is kept and takes anything.
    let s = Schema::parse(
        r#"[{"name": "c", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
            {"name": "0", "meta-type": "object", "members": [{"name": "a", "type": "1"}]},
            {"name": "1", "meta-type": "tuple", "arity": 2}]"#,
    )
    .unwrap();
    assert!(s.validate("c", &json!({"a": [1, 2]})).is_ok());
    assert!(s.path_exists("c/arg-type/a"));
    assert_eq!(s.type_count(), 1);
}

mod never_panics {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    fn any_json() -> impl Strategy<Value = Value> {
        let names = prop::sample::select(vec![
            "driver",
            "node-name",
            "file",
            "size",
            "qcow2",
            "null-co",
            "filename",
            "backing",
            "capabilities",
            "capability",
            "state",
            "x",
            "",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            names.clone().prop_map(Value::from),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::vec((names.clone(), inner), 0..6).prop_map(|pairs| {
                    Value::Object(
                        pairs
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect::<Map<_, _>>(),
                    )
                }),
            ]
        })
    }

    /// A random schema of command `c` over types `0`..`5` and `int`, each
    /// an object (maybe a union), enum, array, alternate or built-in, whose
    /// references point anywhere, loops included.
    fn any_schema() -> impl Strategy<Value = String> {
        let name = || {
            (0u8..7).prop_map(|n| {
                if n == 6 {
                    "int".to_owned()
                } else {
                    n.to_string()
                }
            })
        };
        let member = (
            prop::sample::select(vec!["a", "b", "t"]),
            name(),
            any::<bool>(),
        );
        let entity = (
            0u8..5,
            prop::collection::vec(member, 0..4),
            prop::collection::vec((prop::sample::select(vec!["x", "y"]), name()), 0..3),
            name(),
        );
        (prop::collection::vec(entity, 6), name()).prop_map(|(entities, arg)| {
            let mut out = vec![json!({"name": "c", "meta-type": "command", "arg-type": arg, "ret-type": "int"})];
            out.push(json!({"name": "int", "meta-type": "builtin", "json-type": "int"}));
            for (i, (kind, members, variants, other)) in entities.into_iter().enumerate() {
                let name = i.to_string();
                let members_json: Vec<Value> = members
                    .iter()
                    .map(|(n, t, opt)| {
                        if *opt {
                            json!({"name": n, "type": t, "default": null})
                        } else {
                            json!({"name": n, "type": t})
                        }
                    })
                    .collect();
                out.push(match kind {
                    0 => json!({"name": name, "meta-type": "object", "members": members_json, "tag": "t",
                                "variants": variants.iter().map(|(c, t)| json!({"case": c, "type": t})).collect::<Vec<_>>()}),
                    1 => json!({"name": name, "meta-type": "enum", "values": ["x", "y"]}),
                    2 => json!({"name": name, "meta-type": "array", "element-type": other}),
                    3 => json!({"name": name, "meta-type": "alternate",
                                "members": members.iter().map(|(_, t, _)| json!({"type": t})).collect::<Vec<_>>()}),
                    _ => json!({"name": name, "meta-type": "builtin", "json-type": "string"}),
                });
            }
            Value::from(out).to_string()
        })
    }

    proptest! {
        #[test]
        fn hostile_schemas_end(schema in any_schema(), args in any_json(),
                               query in "(arg-type|ret-type)(/[+*^!$]?[abtxy]{1,2}){0,6}") {
            let s = Schema::parse(&schema).expect("every reference resolves");
            let _ = s.validate("c", &args);
            let _ = s.path_get(&format!("c/{query}"));
            let _ = s.command("c").and_then(|c| c.arguments()).map(|t| t.to_string());
        }

        #[test]
        fn validate_never_panics(args in any_json(), pick in 0usize..8) {
            let s = v10();
            let command = ["blockdev-add", "migrate-set-capabilities", "qom-set", "stop",
                           "chardev-add", "object-add", "transaction", "nope"][pick];
            if let Err(e) = s.validate(command, &args) {
                // Every fault names a path (but an unknown command).
                prop_assert!(e.path().starts_with("arguments") || command == "nope");
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn probing_never_panics(query in "[a-z+*^$! /-]{0,40}") {
            let s = v10();
            let _ = s.path_get(&query);
            let _ = s.path_exists(&format!("blockdev-add/{query}"));
        }

        #[test]
        fn parsing_never_panics(text in ".{0,200}") {
            let _ = Schema::parse(&text);
        }
    }
}
