//! The live schema (`query-qmp-schema`), as far as `qmp` needs it: counts
//! for `--info --schema`, and for the shell the command names, the argument
//! names of each command (dotted paths into nested objects), their types and
//! the values of enums.
//!
//! Everything `qmp` knows of the schema goes through this module, so the
//! typed schema of `qmp-qapi` can replace it here alone.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value};

/// Nested objects deeper than this are not followed (the schema has
/// recursive types; a hostile one could nest without end).
const MAX_DEPTH: usize = 8;
/// Argument paths listed per command at most: with nesting, a schema (QEMU's
/// own, or a hostile one) could make the list grow exponentially.
const MAX_PATHS: usize = 4096;
/// Values nested deeper than this are not checked (QEMU caps nesting at
/// 1024; a check this deep has long stopped being useful).
const CHECK_DEPTH: usize = 64;
/// How deep a type's description goes (`[[int]]` is depth 2).
const DESCRIBE_DEPTH: usize = 3;
/// Types visited by one check at most: alternates try every branch, so a
/// hostile schema could make the work grow exponentially with the depth.
const CHECK_BUDGET: usize = 100_000;

/// A member of an object type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its type's (introspection) name.
    pub type_name: String,
    /// True when it may be left out.
    pub optional: bool,
}

/// A type of the schema, as introspection describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// An object: its members, and the object types of its variants (a
    /// union's members depend on its tag; all are offered).
    Object {
        /// The members every variant has.
        members: Vec<Member>,
        /// The member whose value selects the variant (a union's tag).
        tag: Option<String>,
        /// The variants: the tag value (case) and the type of its members.
        variants: Vec<(String, String)>,
    },
    /// An enum and its values.
    Enum(Vec<String>),
    /// An array of `element`.
    Array(String),
    /// One of several types.
    Alternate(Vec<String>),
    /// A built-in JSON type (`int`, `str`, `bool`, `number`, `null`, `value`).
    Builtin(String),
}

/// The parts of a live schema `qmp` uses.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Commands and their argument type names.
    pub commands: BTreeMap<String, String>,
    /// Event names.
    pub events: Vec<String>,
    /// Every type by name.
    pub types: HashMap<String, Type>,
}

#[derive(Deserialize)]
struct Entity {
    name: String,
    #[serde(rename = "meta-type")]
    meta_type: String,
    #[serde(rename = "arg-type", default)]
    arg_type: Option<String>,
    #[serde(default)]
    members: Vec<Value>,
    #[serde(default)]
    variants: Vec<Variant>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(rename = "element-type", default)]
    element_type: Option<String>,
    #[serde(rename = "json-type", default)]
    json_type: Option<String>,
}

#[derive(Deserialize)]
struct Variant {
    case: String,
    #[serde(rename = "type")]
    type_name: String,
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
    /// Reads the reply of `query-qmp-schema`; entities it cannot read are
    /// skipped (a newer QEMU may describe things this does not know).
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        let entities: Vec<Value> = serde_json::from_str(json)?;
        let mut schema = Schema::default();
        for value in entities {
            let Ok(e) = Entity::deserialize(value) else {
                continue;
            };
            match e.meta_type.as_str() {
                "command" => {
                    schema
                        .commands
                        .insert(e.name, e.arg_type.unwrap_or_default());
                }
                "event" => schema.events.push(e.name),
                "object" => {
                    let members = e.members.iter().filter_map(member).collect();
                    let variants = e
                        .variants
                        .into_iter()
                        .map(|v| (v.case, v.type_name))
                        .collect();
                    let tag = e.tag;
                    schema.types.insert(
                        e.name,
                        Type::Object {
                            members,
                            tag,
                            variants,
                        },
                    );
                }
                "enum" => {
                    // 7.2 gives both `values` and `members: [{"name"}]`.
                    let mut values = e.values;
                    if values.is_empty() {
                        values = e.members.iter().filter_map(name_of).collect();
                    }
                    schema.types.insert(e.name, Type::Enum(values));
                }
                "array" => {
                    let element = e.element_type.unwrap_or_default();
                    schema.types.insert(e.name, Type::Array(element));
                }
                "alternate" => {
                    let types = e.members.iter().filter_map(type_of).collect();
                    schema.types.insert(e.name, Type::Alternate(types));
                }
                "builtin" => {
                    let json = e.json_type.unwrap_or_default();
                    schema.types.insert(e.name, Type::Builtin(json));
                }
                _ => {}
            }
        }
        schema.events.sort();
        Ok(schema)
    }

    /// A schema of command names alone, for a peer that has no
    /// introspection (a guest agent lists its commands in `guest-info`).
    pub fn from_command_names<I: IntoIterator<Item = String>>(names: I) -> Self {
        Schema {
            commands: names.into_iter().map(|n| (n, String::new())).collect(),
            ..Schema::default()
        }
    }

    /// The action names `transaction` accepts (the values of its actions'
    /// `type`).
    pub fn transaction_actions(&self) -> Vec<String> {
        let member_type = |type_name: &str, member: &str| match self.types.get(type_name) {
            Some(Type::Object { members, .. }) => members
                .iter()
                .find(|m| m.name == member)
                .map(|m| m.type_name.clone()),
            _ => None,
        };
        let Some(actions) = self
            .commands
            .get("transaction")
            .and_then(|t| member_type(t, "actions"))
        else {
            return Vec::new();
        };
        let Some(Type::Array(element)) = self.types.get(&actions) else {
            return Vec::new();
        };
        member_type(element, "type").map_or_else(Vec::new, |t| self.values_of(&t))
    }

    /// The counts.
    pub fn summary(&self) -> Summary {
        Summary {
            commands: self.commands.len(),
            events: self.events.len(),
            types: self.types.len(),
        }
    }

    /// The command names, sorted.
    pub fn command_names(&self) -> impl Iterator<Item = &str> {
        self.commands.keys().map(String::as_str)
    }

    /// The arguments of `command`, dotted paths for members of nested
    /// objects (`file.driver`), in schema order; empty for an unknown command.
    pub fn arguments(&self, command: &str) -> Vec<(String, &Member)> {
        let mut out = Vec::new();
        if let Some(arg_type) = self.commands.get(command) {
            let mut seen = std::collections::HashSet::new();
            self.collect(arg_type, "", 0, &mut seen, &mut out);
        }
        out
    }

    fn collect<'a>(
        &'a self,
        type_name: &str,
        prefix: &str,
        depth: usize,
        seen: &mut std::collections::HashSet<(String, String)>,
        out: &mut Vec<(String, &'a Member)>,
    ) {
        if depth > MAX_DEPTH
            || out.len() >= MAX_PATHS
            || !seen.insert((type_name.to_owned(), prefix.to_owned()))
        {
            return;
        }
        let Some(Type::Object {
            members, variants, ..
        }) = self.types.get(type_name)
        else {
            return;
        };
        for m in members {
            let path = format!("{prefix}{}", m.name);
            // The same set remembers paths listed (an empty type name marks them).
            if out.len() >= MAX_PATHS || !seen.insert((String::new(), path.clone())) {
                continue;
            }
            out.push((path.clone(), m));
            self.collect(&m.type_name, &format!("{path}."), depth + 1, seen, out);
        }
        for (_, v) in variants {
            self.collect(v, prefix, depth + 1, seen, out);
        }
    }

    /// The values `path` of `command` accepts, when its type is an enum (or
    /// an alternate with one, or `bool`).
    pub fn values(&self, command: &str, path: &str) -> Vec<String> {
        let args = self.arguments(command);
        let Some((_, member)) = args.iter().find(|(p, _)| p == path) else {
            return Vec::new();
        };
        self.values_of(&member.type_name)
    }

    fn values_of(&self, type_name: &str) -> Vec<String> {
        match self.types.get(type_name) {
            Some(Type::Enum(values)) => values.clone(),
            Some(Type::Builtin(json)) if json == "boolean" => {
                vec!["true".to_owned(), "false".to_owned()]
            }
            Some(Type::Alternate(types)) => types
                .iter()
                .filter(|t| *t != type_name)
                .flat_map(|t| match self.types.get(t) {
                    Some(Type::Enum(v)) => v.clone(),
                    _ => Vec::new(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A readable name for a type: built-ins by their JSON type, enums with
    /// their values, arrays as `[T]`; objects as `object`.
    pub fn describe(&self, type_name: &str) -> String {
        self.describe_at(type_name, 0)
    }

    fn describe_at(&self, type_name: &str, depth: usize) -> String {
        // Shallow: alternates and arrays of them branch at every level.
        if depth > DESCRIBE_DEPTH {
            return "...".to_owned();
        }
        match self.types.get(type_name) {
            Some(Type::Builtin(json)) => json.clone(),
            Some(Type::Enum(values)) => format!("one of {}", values.join(", ")),
            Some(Type::Array(element)) => format!("[{}]", self.describe_at(element, depth + 1)),
            Some(Type::Alternate(types)) => types
                .iter()
                .map(|t| self.describe_at(t, depth + 1))
                .collect::<Vec<_>>()
                .join(" | "),
            Some(Type::Object { .. }) => "object".to_owned(),
            None => type_name.to_owned(),
        }
    }

    /// `help COMMAND`: one line per argument, `name (type)`, optional ones
    /// in brackets; `None` for an unknown command.
    pub fn help(&self, command: &str) -> Option<String> {
        self.commands.get(command)?;
        let args = self.arguments(command);
        let mut text = String::from(command);
        if args.is_empty() {
            text.push_str(": no arguments");
        }
        for (path, m) in args {
            let indent = "  ".repeat(path.matches('.').count() + 1);
            let shown = if m.optional {
                format!("[{path}]")
            } else {
                path.clone()
            };
            text.push_str(&format!(
                "\n{indent}{shown}: {}",
                self.describe(&m.type_name)
            ));
        }
        Some(text)
    }
}

impl Schema {
    /// Checks `arguments` of `command` against the schema before they are
    /// sent: unknown members (with the allowed names), missing required
    /// members, values of the wrong JSON type, enum values not allowed (with
    /// the allowed values); each mistake named by its JSON path
    /// (`arguments.file.driver`). Commands the schema does not describe are
    /// not checked (QEMU answers them).
    pub fn check(&self, command: &str, arguments: &Map<String, Value>) -> Result<(), String> {
        match self.commands.get(command) {
            Some(arg_type) if !arg_type.is_empty() => {
                let value = Value::Object(arguments.clone());
                let mut budget = CHECK_BUDGET;
                self.check_value(arg_type, &value, "arguments", 0, &mut budget)
            }
            _ => Ok(()),
        }
    }

    fn check_value(
        &self,
        type_name: &str,
        value: &Value,
        path: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Result<(), String> {
        // Past the depth or the budget the check gives up, and QEMU judges.
        if depth > CHECK_DEPTH || *budget == 0 {
            return Ok(());
        }
        *budget -= 1;
        let Some(t) = self.types.get(type_name) else {
            return Ok(());
        };
        let wrong = |what: &str| Err(format!("{path}: expected {what}, got {value}"));
        match t {
            Type::Builtin(json) => {
                let fits = match json.as_str() {
                    "int" => value.is_i64() || value.is_u64(),
                    "number" => value.is_number(),
                    "string" => value.is_string(),
                    "boolean" => value.is_boolean(),
                    "null" => value.is_null(),
                    _ => true,
                };
                if fits { Ok(()) } else { wrong(json) }
            }
            Type::Enum(values) => match value.as_str() {
                Some(v) if values.iter().any(|allowed| allowed == v) => Ok(()),
                Some(v) => Err(format!(
                    "{path}: \"{v}\" is not one of: {}",
                    values.join(", ")
                )),
                None => wrong(&format!("one of: {}", values.join(", "))),
            },
            Type::Array(element) => match value.as_array() {
                Some(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                    self.check_value(element, item, &format!("{path}[{i}]"), depth + 1, budget)
                }),
                None => wrong("an array"),
            },
            Type::Alternate(types) => {
                let mut first = None;
                for t in types {
                    match self.check_value(t, value, path, depth + 1, budget) {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            first.get_or_insert(e);
                        }
                    }
                }
                first.map_or(Ok(()), Err)
            }
            Type::Object {
                members,
                tag,
                variants,
            } => {
                let Some(object) = value.as_object() else {
                    return wrong("an object");
                };
                let case = tag
                    .as_ref()
                    .and_then(|tag| object.get(tag))
                    .and_then(Value::as_str);
                // The tag's variant, or every variant while the tag is unknown.
                let chosen: Vec<&str> = variants
                    .iter()
                    .filter(|(c, _)| case.is_none_or(|case| case == c))
                    .map(|(_, t)| t.as_str())
                    .collect();
                let mut allowed: Vec<&Member> = members.iter().collect();
                for t in &chosen {
                    if let Some(Type::Object { members, .. }) = self.types.get(*t) {
                        allowed.extend(members.iter());
                    }
                }
                for (key, v) in object {
                    let Some(m) = allowed.iter().find(|m| m.name == *key) else {
                        let mut names: Vec<&str> =
                            allowed.iter().map(|m| m.name.as_str()).collect();
                        names.sort_unstable();
                        names.dedup();
                        return Err(format!(
                            "{path}.{key}: no such member; allowed: {}",
                            names.join(", ")
                        ));
                    };
                    let at = format!("{path}.{key}");
                    self.check_value(&m.type_name, v, &at, depth + 1, budget)?;
                }
                let required_from_variant = chosen.len() == 1;
                for m in allowed.iter().take(if required_from_variant {
                    allowed.len()
                } else {
                    members.len()
                }) {
                    if !m.optional && !object.contains_key(&m.name) {
                        return Err(format!("{path}: missing member {}", m.name));
                    }
                }
                Ok(())
            }
        }
    }
}

fn member(v: &Value) -> Option<Member> {
    Some(Member {
        name: v.get("name")?.as_str()?.to_owned(),
        type_name: v.get("type")?.as_str()?.to_owned(),
        optional: v.get("default").is_some(),
    })
}

fn name_of(v: &Value) -> Option<String> {
    Some(v.get("name")?.as_str()?.to_owned())
}

fn type_of(v: &Value) -> Option<String> {
    Some(v.get("type")?.as_str()?.to_owned())
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
        {"name": "odd", "meta-type": "from-the-future"},
        {"meta-type": "nameless"}
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
        assert_eq!(s.values("blockdev-add", "read-zeroes"), ["true", "false"]);
        assert!(s.values("nope", "x").is_empty());
        assert_eq!(s.types.get("6"), Some(&Type::Enum(vec!["a".to_owned()])));
        let help = s.help("blockdev-add").unwrap();
        assert!(help.contains("  driver: one of null-co, qcow2"), "{help}");
        assert!(help.contains("  [size]: int"), "{help}");
        assert_eq!(s.help("stop").unwrap(), "stop: no arguments");
        assert!(s.help("nope").is_none());
        assert_eq!(s.describe("5"), "[string]");
    }

    #[test]
    fn checks_arguments_before_sending() {
        let s = Schema::parse(SCHEMA).unwrap();
        let check = |v: serde_json::Value| s.check("blockdev-add", v.as_object().unwrap());
        assert_eq!(
            check(serde_json::json!({"driver": "null-co", "size": 1})),
            Ok(())
        );
        assert_eq!(
            check(serde_json::json!({"driver": "nope"})),
            Err("arguments.driver: \"nope\" is not one of: null-co, qcow2".to_owned())
        );
        assert_eq!(
            check(serde_json::json!({"driver": "null-co", "sise": 1})),
            Err("arguments.sise: no such member; allowed: driver, file, node-name, read-zeroes, size"
                .to_owned())
        );
        assert_eq!(
            check(serde_json::json!({"driver": "null-co", "size": "1"})),
            Err("arguments.size: expected int, got \"1\"".to_owned())
        );
        assert_eq!(
            check(serde_json::json!({"node-name": "x"})),
            Err("arguments: missing member driver".to_owned())
        );
        // An alternate: an object of the union, or a string.
        assert_eq!(
            check(serde_json::json!({"driver": "qcow2", "file": "node0"})),
            Ok(())
        );
        assert!(check(serde_json::json!({"driver": "qcow2", "file": {"driver": 1}})).is_err());
        // Commands the schema does not know are left to QEMU.
        assert_eq!(s.check("nope", &Map::new()), Ok(()));
        assert_eq!(s.check("stop", &Map::new()), Ok(()));
        let qga = Schema::from_command_names(["guest-ping".to_owned()]);
        assert_eq!(qga.check("guest-ping", &Map::new()), Ok(()));
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

        // An alternate of itself, twice: without the budget, 2^64 steps.
        let s = Schema::parse(
            r#"[{"name": "c", "meta-type": "command", "arg-type": "o"},
                {"name": "o", "meta-type": "object", "members": [{"name": "a", "type": "t"}]},
                {"name": "t", "meta-type": "alternate", "members": [{"type": "t"}, {"type": "t"}, {"type": "int"}]},
                {"name": "int", "meta-type": "builtin", "json-type": "int"}]"#,
        )
        .unwrap();
        let args = serde_json::json!({"a": "not an int"});
        let started = std::time::Instant::now();
        let _ = s.check("c", args.as_object().unwrap());
        let _ = s.help("c");
        assert!(started.elapsed() < core::time::Duration::from_secs(5));
    }
}
