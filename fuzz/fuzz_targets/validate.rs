//! Fuzz target `validate`: the live-schema tools of qmp-qapi under hostile
//! input.
//!
//! Input layout: `[mode] [text...]`.
//!
//! - `mode & 1 == 0`: `text` is `COMMAND\nARGUMENTS`, checked against the
//!   captured schemas of QEMU 7.2 and 10.0 (parsed once), and `COMMAND` is
//!   also tried as a libvirt-style probe path.
//! - `mode & 1 == 1`: `text` is a hostile `query-qmp-schema` reply; when it
//!   parses, every command and event is walked and validated against, and
//!   probed.
//!
//! Checked: nothing panics or stalls; the text and the parsed-value forms
//! of `validate` agree; a fault's path starts at `arguments` (or is empty,
//! for an unknown command) and its message names the command; arguments
//! accepted are a JSON object or absent.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qmp_qapi::Schema;
use serde_json::Value;

fn captured() -> &'static [Schema; 2] {
    static SCHEMAS: OnceLock<[Schema; 2]> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        [
            Schema::parse(include_str!("../../qmp-qapi/schema/qemu-7.2.json")).expect("7.2"),
            Schema::parse(include_str!("../../qmp-qapi/schema/qemu-10.0.json")).expect("10.0"),
        ]
    })
}

fn check(schema: &Schema, command: &str, arguments: Option<&str>) {
    let from_text = schema.validate_str(command, arguments);
    if let Some(text) = arguments
        && let Ok(value) = serde_json::from_str::<Value>(text)
    {
        let from_value = schema.validate(command, &value);
        assert_eq!(
            from_text.as_ref().map_err(|e| e.to_string()),
            from_value.as_ref().map_err(|e| e.to_string()),
            "text and value forms disagree"
        );
        if from_value.is_ok() {
            assert!(
                value.is_object() || value.is_null(),
                "accepted arguments that are not an object: {value}"
            );
        }
    }
    if let Err(e) = from_text {
        assert!(
            e.path().is_empty() || e.path().starts_with("arguments"),
            "a path outside the arguments: {}",
            e.path()
        );
        assert_eq!(e.command(), command);
        assert!(e.to_string().contains(command), "{e}");
    }
    let _ = schema.path_exists(command);
    let _ = schema
        .path_get(command)
        .map(|found| found.map(|f| format!("{f:?}")));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode & 1 == 0 {
        let (command, arguments) = match text.split_once('\n') {
            Some((c, a)) => (c, Some(a)),
            None => (text, None),
        };
        for schema in captured() {
            check(schema, command, arguments);
        }
    } else if let Ok(schema) = Schema::parse(text) {
        let names: Vec<String> = schema
            .commands()
            .map(|c| c.name().to_owned())
            .chain(schema.events().map(|e| e.name().to_owned()))
            .take(64)
            .collect();
        for name in &names {
            check(&schema, name, Some("{}"));
            check(&schema, name, Some(r#"{"a": [1, {"b": null}], "c": "d"}"#));
            let _ = schema.path_get(&format!("{name}/arg-type/*a/+b/^c/$d/!str"));
        }
        for c in schema.commands().take(64) {
            if let Some(args) = c.arguments() {
                let _ = format!("{args}");
                for m in args.members() {
                    let _ = (m.name(), m.optional(), m.ty().map(|t| t.to_string()));
                }
            }
        }
    }
});
