//! The live schema (`query-qmp-schema`), as `qmp` uses it: counts for
//! `--info --schema`, and for the shell and one-shot commands the command
//! names, the argument names of each command (dotted paths into nested
//! objects), their types, the values of enums, and the check of arguments
//! before sending. The schema itself is `qmp_qapi::schema::Schema`; this
//! module adds what is particular to `qmp` (dotted paths, help text), and a
//! guest agent's command list (it has no introspection).

use std::collections::HashSet;

use qmp_qapi::schema::{JsonType, MemberInfo, MetaType, TypeInfo, ValidationError};
use serde_json::{Map, Value};

/// Nested objects deeper than this are not listed (the schema has
/// recursive types; a hostile one could nest without end).
const MAX_DEPTH: usize = 8;
/// Argument paths listed per command at most: with nesting, a schema (QEMU's
/// own, or a hostile one) could make the list grow exponentially.
const MAX_PATHS: usize = 4096;
/// Types visited when listing one command's arguments at most: a union
/// whose branches lead back to it would otherwise be walked once per path
/// through them, exponentially.
const MAX_VISITS: usize = 65_536;

/// The schema of the peer: QMP's introspection, or a guest agent's command
/// names; empty when neither could be had (nothing is completed or checked).
#[derive(Debug, Default)]
pub struct Schema {
    live: Option<qmp_qapi::Schema>,
    /// Command names of a peer without introspection.
    names: Vec<String>,
}

/// Counts of a schema, for `--info --schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Commands.
    pub commands: usize,
    /// Events.
    pub events: usize,
    /// Types (objects, enums, arrays, alternates and built-ins).
    pub types: usize,
}

impl Schema {
    /// Reads the reply of `query-qmp-schema`.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        Ok(Schema {
            live: Some(qmp_qapi::Schema::parse(json)?),
            names: Vec::new(),
        })
    }

    /// A schema of command names alone, for a peer that has no
    /// introspection (a guest agent lists its commands in `guest-info`).
    pub fn from_command_names<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        Schema { live: None, names }
    }

    /// The introspected schema, when the peer has one.
    pub fn live(&self) -> Option<&qmp_qapi::Schema> {
        self.live.as_ref()
    }

    /// The action names `transaction` accepts (the values of its actions'
    /// `type`).
    pub fn transaction_actions(&self) -> Vec<String> {
        let kind = self
            .live
            .as_ref()
            .and_then(|s| s.command("transaction")?.arguments())
            .and_then(|args| args.member("actions")?.ty())
            .and_then(|actions| actions.element())
            .and_then(|action| action.member("type")?.ty());
        kind.map_or_else(Vec::new, values_of)
    }

    /// The counts.
    pub fn summary(&self) -> Summary {
        match &self.live {
            Some(s) => Summary {
                commands: s.commands().count(),
                events: s.events().count(),
                types: s.type_count(),
            },
            None => Summary {
                commands: self.names.len(),
                events: 0,
                types: 0,
            },
        }
    }

    /// The command names, sorted.
    pub fn command_names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &self.live {
            Some(s) => Box::new(s.commands().map(|c| c.name())),
            None => Box::new(self.names.iter().map(String::as_str)),
        }
    }

    /// The arguments of `command`, dotted paths for members of nested
    /// objects (`file.driver`), in schema order, the members of every union
    /// branch included; empty for an unknown command.
    pub fn arguments(&self, command: &str) -> Vec<(String, MemberInfo<'_>)> {
        self.arguments_given(command, &[])
    }

    /// [`arguments`](Self::arguments) once `given` (`(path, value)` pairs
    /// of the `key=value` tokens typed so far) are known: where a union's
    /// tag is given, only the branch it selects is listed.
    pub fn arguments_given(
        &self,
        command: &str,
        given: &[(&str, &str)],
    ) -> Vec<(String, MemberInfo<'_>)> {
        let mut out = Vec::new();
        if let Some(args) = self
            .live
            .as_ref()
            .and_then(|s| s.command(command)?.arguments())
        {
            let mut walk = Collect {
                given,
                visits: MAX_VISITS,
                seen: HashSet::new(),
                out: &mut out,
            };
            walk.collect(args, "", 0);
        }
        out
    }

    /// The values `path` of `command` accepts, when its type is an enum (or
    /// an alternate with one, or `bool`).
    pub fn values(&self, command: &str, path: &str) -> Vec<String> {
        self.arguments(command)
            .into_iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, m)| m.ty())
            .map_or_else(Vec::new, values_of)
    }

    /// `help COMMAND`: one line per argument, `name (type)`, optional ones
    /// in brackets; `None` for an unknown command.
    pub fn help(&self, command: &str) -> Option<String> {
        if !self.command_names().any(|n| n == command) {
            return None;
        }
        let args = self.arguments(command);
        let mut text = String::from(command);
        if args.is_empty() {
            text.push_str(": no arguments");
        }
        for (path, m) in args {
            let indent = "  ".repeat(path.matches('.').count() + 1);
            let shown = if m.optional() {
                format!("[{path}]")
            } else {
                path.clone()
            };
            let ty = m.ty().map_or_else(|| "any".to_owned(), |t| t.to_string());
            text.push_str(&format!("\n{indent}{shown}: {ty}"));
        }
        Some(text)
    }

    /// Checks `arguments` of `command` against the schema before they are
    /// sent (`qmp_qapi::schema::Schema::validate`): an unknown command or
    /// member (with the allowed names), a missing member, a value of the
    /// wrong JSON type, an enum value or union branch not allowed (with the
    /// allowed values), each named by its JSON path
    /// (`arguments.file.driver`). Without introspection nothing is checked.
    pub fn check(
        &self,
        command: &str,
        arguments: &Map<String, Value>,
    ) -> Result<(), ValidationError> {
        match &self.live {
            Some(s) => s.validate(command, &Value::Object(arguments.clone())),
            None => Ok(()),
        }
    }
}

/// Listing the argument paths of one command.
struct Collect<'g, 'o, 'a> {
    given: &'g [(&'g str, &'g str)],
    visits: usize,
    seen: HashSet<String>,
    out: &'o mut Vec<(String, MemberInfo<'a>)>,
}

impl<'a> Collect<'_, '_, 'a> {
    fn collect(&mut self, ty: TypeInfo<'a>, prefix: &str, depth: usize) {
        if depth > MAX_DEPTH
            || self.visits == 0
            || self.out.len() >= MAX_PATHS
            || ty.meta_type() != MetaType::Object
        {
            return;
        }
        self.visits -= 1;
        for m in ty.members() {
            let path = format!("{prefix}{}", m.name());
            if self.out.len() >= MAX_PATHS || !self.seen.insert(path.clone()) {
                continue;
            }
            self.out.push((path.clone(), m));
            if let Some(member_ty) = m.ty() {
                self.collect(member_ty, &format!("{path}."), depth + 1);
            }
        }
        // The branch the tag selects, when it was given; else every branch.
        let case = ty.tag().and_then(|tag| {
            let at = format!("{prefix}{tag}");
            self.given.iter().find(|(p, _)| *p == at).map(|(_, v)| *v)
        });
        for v in ty.variants() {
            if case.is_some_and(|case| case != v.case()) {
                continue;
            }
            if let Some(branch) = v.ty() {
                self.collect(branch, prefix, depth + 1);
            }
        }
    }
}

/// The values a type takes when they can be listed: an enum's, `true` and
/// `false`, or those of an alternate's enum branches.
fn values_of(ty: TypeInfo<'_>) -> Vec<String> {
    match ty.meta_type() {
        MetaType::Enum => ty.values().map(|v| v.name().to_owned()).collect(),
        MetaType::Builtin(JsonType::Boolean) => vec!["true".to_owned(), "false".to_owned()],
        MetaType::Alternate => ty
            .branches()
            .filter(|b| b.meta_type() == MetaType::Enum)
            .flat_map(|b| b.values().map(|v| v.name().to_owned()).collect::<Vec<_>>())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"[
        {"name": "blockdev-add", "meta-type": "command", "arg-type": "1", "ret-type": "0"},
        {"name": "stop", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
        {"name": "STOP", "meta-type": "event", "arg-type": "0"},
        {"name": "0", "meta-type": "object", "members": []},
        {"name": "1", "meta-type": "object", "tag": "driver",
         "members": [{"name": "driver", "type": "2"}, {"name": "node-name", "type": "str", "default": null},
                     {"name": "file", "type": "4", "default": null}],
         "variants": [{"case": "null-co", "type": "3"}]},
        {"name": "2", "meta-type": "enum", "values": ["null-co", "qcow2"]},
        {"name": "3", "meta-type": "object", "members": [{"name": "size", "type": "int", "default": null},
                     {"name": "read-zeroes", "type": "bool", "default": null}]},
        {"name": "4", "meta-type": "alternate", "members": [{"type": "1"}, {"type": "str"}]},
        {"name": "5", "meta-type": "array", "element-type": "str"},
        {"name": "6", "meta-type": "enum", "members": [{"name": "a"}]},
        {"name": "int", "meta-type": "builtin", "json-type": "int"},
        {"name": "str", "meta-type": "builtin", "json-type": "string"},
        {"name": "bool", "meta-type": "builtin", "json-type": "boolean"},
        {"name": "odd", "meta-type": "from-the-future"}
    ]"#;

    #[test]
    fn reads_what_the_shell_needs() {
        let s = Schema::parse(SCHEMA).unwrap();
        assert_eq!(
            s.summary(),
            Summary {
                commands: 2,
                events: 1,
                types: 10
            }
        );
        assert_eq!(
            s.command_names().collect::<Vec<_>>(),
            ["blockdev-add", "stop"]
        );
        let args: Vec<String> = s
            .arguments("blockdev-add")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(args, ["driver", "node-name", "file", "size", "read-zeroes"]);
        assert_eq!(s.values("blockdev-add", "driver"), ["null-co", "qcow2"]);
        // Once the tag is given, only its branch (qcow2 has none of its own).
        let given: Vec<String> = s
            .arguments_given("blockdev-add", &[("driver", "qcow2")])
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(given, ["driver", "node-name", "file"]);
        let given = s.arguments_given("blockdev-add", &[("driver", "null-co")]);
        assert_eq!(given.len(), 5);
        assert_eq!(s.values("blockdev-add", "read-zeroes"), ["true", "false"]);
        assert!(s.values("nope", "x").is_empty());
        let help = s.help("blockdev-add").unwrap();
        assert!(help.contains("  driver: one of null-co, qcow2"), "{help}");
        assert!(help.contains("  [size]: int"), "{help}");
        assert_eq!(s.help("stop").unwrap(), "stop: no arguments");
        assert!(s.help("nope").is_none());
    }

    #[test]
    fn checks_arguments_before_sending() {
        let s = Schema::parse(SCHEMA).unwrap();
        let check = |v: serde_json::Value| {
            s.check("blockdev-add", v.as_object().unwrap())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            check(serde_json::json!({"driver": "null-co", "size": 1})),
            Ok(())
        );
        assert_eq!(
            check(serde_json::json!({"driver": "nope"})),
            Err("blockdev-add: arguments.driver: \"nope\" selects no branch; one of: null-co, qcow2".to_owned())
        );
        assert_eq!(
            check(serde_json::json!({"driver": "null-co", "sise": 1})),
            Err("blockdev-add: arguments.sise: no member `sise`; allowed: driver, file, node-name, read-zeroes, size"
                .to_owned())
        );
        assert_eq!(
            check(serde_json::json!({"driver": "null-co", "size": "1"})),
            Err("blockdev-add: arguments.size: expected int, found string".to_owned())
        );
        assert_eq!(
            check(serde_json::json!({"node-name": "x"})),
            Err("blockdev-add: arguments.driver: required member `driver` is missing".to_owned())
        );
        // An alternate: an object of the union, or a string.
        assert_eq!(
            check(serde_json::json!({"driver": "qcow2", "file": "node0"})),
            Ok(())
        );
        assert!(check(serde_json::json!({"driver": "qcow2", "file": {"driver": 1}})).is_err());
        // A command this QEMU does not have is refused.
        assert_eq!(
            s.check("nope", &Map::new()).map_err(|e| e.to_string()),
            Err("nope: no such command in this QEMU's schema".to_owned())
        );
        assert!(s.check("stop", &Map::new()).is_ok());
        // A guest agent's schema is names only: nothing is checked.
        let qga = Schema::from_command_names(["guest-ping".to_owned()]);
        assert!(qga.check("guest-ping", &Map::new()).is_ok());
        assert_eq!(qga.command_names().collect::<Vec<_>>(), ["guest-ping"]);
        assert_eq!(qga.summary().commands, 1);
    }

    #[test]
    fn hostile_schemas_end() {
        assert!(Schema::parse("{}").is_err());
        // A type that contains itself is followed a few levels only.
        let s = Schema::parse(
            r#"[{"name": "c", "meta-type": "command", "arg-type": "t"},
                {"name": "t", "meta-type": "object", "members": [{"name": "t", "type": "t"}],
                 "variants": [{"case": "x", "type": "t"}]}]"#,
        )
        .unwrap();
        assert_eq!(s.arguments("c").len(), MAX_DEPTH + 1);
        // Wide and deep: the list stops at its cap, quickly.
        let mut entities =
            vec![r#"{"name": "c", "meta-type": "command", "arg-type": "t"}"#.to_owned()];
        let members: Vec<String> = (0..50)
            .map(|i| format!(r#"{{"name": "m{i}", "type": "t"}}"#))
            .collect();
        entities.push(format!(
            r#"{{"name": "t", "meta-type": "object", "members": [{}]}}"#,
            members.join(",")
        ));
        let s = Schema::parse(&format!("[{}]", entities.join(","))).unwrap();
        assert_eq!(s.arguments("c").len(), MAX_PATHS);

        // A union with 200 branches that are itself: without the visit
        // budget, 200^8 steps.
        let variants: Vec<String> = (0..200)
            .map(|i| format!(r#"{{"case": "v{i}", "type": "u"}}"#))
            .collect();
        let s = Schema::parse(&format!(
            r#"[{{"name": "c", "meta-type": "command", "arg-type": "u"}},
                {{"name": "u", "meta-type": "object", "tag": "k",
                  "members": [{{"name": "k", "type": "str"}}], "variants": [{}]}},
                {{"name": "str", "meta-type": "builtin", "json-type": "string"}}]"#,
            variants.join(",")
        ))
        .unwrap();
        let args: Vec<String> = s.arguments("c").into_iter().map(|(p, _)| p).collect();
        assert_eq!(args, ["k"]);

        // An alternate of itself, twice: without the budget, 2^64 steps.
        let s = Schema::parse(
            r#"[{"name": "c", "meta-type": "command", "arg-type": "o"},
                {"name": "o", "meta-type": "object", "members": [{"name": "a", "type": "t"}]},
                {"name": "t", "meta-type": "alternate", "members": [{"type": "t"}, {"type": "t"}, {"type": "int"}]},
                {"name": "int", "meta-type": "builtin", "json-type": "int"}]"#,
        )
        .unwrap();
        let args = serde_json::json!({"a": "not an int"});
        let e = s.check("c", args.as_object().unwrap()).unwrap_err();
        assert_eq!(
            e.fault(),
            &qmp_qapi::schema::Fault::TooDeep {
                limit: qmp_qapi::schema::MAX_DEPTH
            }
        );
        let help = s.help("c").unwrap();
        assert!(help.starts_with("c\n  a: "), "{help}");
    }
}
