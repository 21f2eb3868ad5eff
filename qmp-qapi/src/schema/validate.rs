//! Raw arguments checked against the schema before they are sent.
//!
//! The walk follows the value and the schema together, choosing union
//! branches by their tag and alternate branches by JSON type (as QEMU
//! does), so it never backtracks: linear in the size of the value. Depth
//! is capped at [`MAX_DEPTH`].

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use serde_json::{Map, Value};

use super::Schema;
use super::parse::{JsonType, Meta};
use super::view::{MemberInfo, TypeInfo};

/// How deep [`Schema::validate`] follows a value: levels of nesting, plus
/// one per alternate passed through. QEMU's own parser stops at 1024 levels;
/// real arguments stay far below this, and the check recurses once per
/// level, so it stops early rather than risk the caller's stack.
pub const MAX_DEPTH: usize = 256;

/// Why arguments do not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The schema has no such command.
    UnknownCommand,
    /// The object has no member of this name.
    UnknownMember {
        /// The name given.
        member: String,
        /// The members the object has (with the branch the tag chose), sorted.
        allowed: Vec<String>,
    },
    /// A required member is missing.
    MissingMember {
        /// Its name.
        member: String,
    },
    /// The value has the wrong JSON type.
    WrongType {
        /// What the schema wants (`int`, `string`, `object`, `string or object`...).
        expected: String,
        /// What was given.
        found: JsonType,
    },
    /// A string that is not a value of the enum.
    UnknownValue {
        /// The value given.
        value: String,
        /// The enum's values.
        allowed: Vec<String>,
    },
    /// A union's tag has a value that selects no branch.
    UnknownBranch {
        /// The value given.
        value: String,
        /// The values the tag takes.
        allowed: Vec<String>,
    },
    /// The value nests deeper than [`MAX_DEPTH`].
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The arguments are not a JSON object (text that does not parse).
    NotJson {
        /// The parser's error.
        reason: String,
    },
}

/// Arguments that do not fit the schema: the command, the JSON path of the
/// first fault, and the fault.
///
/// Paths start at `arguments` and go down with `.member` and `[index]`
/// (`arguments.options.file.driver`, `arguments.actions[0].type`); a member
/// name that is not plain letters, digits, `-` and `_` is quoted
/// (`arguments["a.b"]`). A missing member's path names the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    command: String,
    path: String,
    fault: Fault,
}

impl ValidationError {
    /// The command the arguments were for.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The JSON path of the fault; empty for an unknown command.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong.
    pub fn fault(&self) -> &Fault {
        &self.fault
    }
}

fn list(f: &mut fmt::Formatter<'_>, items: &[String]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(item)?;
    }
    Ok(())
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Fault::UnknownCommand = self.fault {
            return write!(f, "{}: no such command in this QEMU's schema", self.command);
        }
        write!(f, "{}: {}: ", self.command, self.path)?;
        match &self.fault {
            Fault::UnknownCommand => Ok(()),
            Fault::UnknownMember { member, allowed } if allowed.is_empty() => {
                write!(f, "no member `{member}` (it takes no members)")
            }
            Fault::UnknownMember { member, allowed } => {
                write!(f, "no member `{member}`; allowed: ")?;
                list(f, allowed)
            }
            Fault::MissingMember { member } => write!(f, "required member `{member}` is missing"),
            Fault::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            Fault::UnknownValue { value, allowed } => {
                write!(f, "\"{value}\" is not one of: ")?;
                list(f, allowed)
            }
            Fault::UnknownBranch { value, allowed } => {
                write!(f, "\"{value}\" selects no branch; one of: ")?;
                list(f, allowed)
            }
            Fault::TooDeep { limit } => {
                write!(f, "nested deeper than {limit} levels, the check's limit")
            }
            Fault::NotJson { reason } => write!(f, "not a JSON object: {reason}"),
        }
    }
}

impl core::error::Error for ValidationError {}

/// One step of the path to the value being checked.
#[derive(Clone, Copy)]
enum Seg<'v> {
    Key(&'v str),
    Index(usize),
}

fn plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn path_text(path: &[Seg<'_>]) -> String {
    let mut text = String::from("arguments");
    for seg in path {
        // Writing to a String cannot fail.
        let _ = match seg {
            Seg::Key(k) if plain(k) => write!(text, ".{k}"),
            Seg::Key(k) => write!(text, "[{}]", Value::from(*k)),
            Seg::Index(i) => write!(text, "[{i}]"),
        };
    }
    text
}

/// The path from `arguments` to the value being checked.
struct Walk<'v> {
    path: Vec<Seg<'v>>,
}

type Step = Result<(), (String, Fault)>;

impl<'v> Walk<'v> {
    fn fail(&self, fault: Fault) -> Step {
        Err((path_text(&self.path), fault))
    }

    /// A fault at member `key` of the current object.
    fn fail_at(&self, key: &str, fault: Fault) -> Step {
        let mut path = self.path.clone();
        path.push(Seg::Key(key));
        Err((path_text(&path), fault))
    }

    fn value(&mut self, ty: TypeInfo<'_>, value: &'v Value, depth: usize) -> Step {
        // Every nested call passes depth + 1 (saturating), so this check
        // bounds it long before it could saturate.
        if depth > MAX_DEPTH {
            return self.fail(Fault::TooDeep { limit: MAX_DEPTH });
        }
        let found = JsonType::of(value);
        let wrong = |expected: String| Fault::WrongType { expected, found };
        match ty.entity.meta {
            Meta::Builtin => {
                let json = ty.json_type().unwrap_or(JsonType::Value);
                if json.accepts(found) {
                    Ok(())
                } else {
                    self.fail(wrong(json.name().to_owned()))
                }
            }
            Meta::Enum => match value.as_str() {
                Some(v) if ty.values().any(|allowed| allowed.name() == v) => Ok(()),
                Some(v) => self.fail(Fault::UnknownValue {
                    value: v.to_owned(),
                    allowed: ty.values().map(|v| v.name().to_owned()).collect(),
                }),
                None => self.fail(wrong("string".to_owned())),
            },
            Meta::Array => {
                let Some(items) = value.as_array() else {
                    return self.fail(wrong("array".to_owned()));
                };
                let Some(element) = ty.element() else {
                    return Ok(());
                };
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(element, item, depth.saturating_add(1))?;
                    self.path.pop();
                }
                Ok(())
            }
            Meta::Alternate => {
                // QEMU picks an alternate's branch by the value's JSON type.
                let branch = ty.branches().find(|b| match b.json_type() {
                    Some(json) => json.accepts(found),
                    None => true,
                });
                match branch {
                    Some(branch) => self.value(branch, value, depth.saturating_add(1)),
                    None => {
                        let mut expected = String::new();
                        for (i, b) in ty.branches().enumerate() {
                            if i > 0 {
                                expected.push_str(" or ");
                            }
                            expected.push_str(b.json_type().map_or("value", JsonType::name));
                        }
                        self.fail(wrong(expected))
                    }
                }
            }
            Meta::Object => match value.as_object() {
                Some(object) => self.object(ty, object, depth),
                None => self.fail(wrong("object".to_owned())),
            },
            Meta::Command | Meta::Event | Meta::Other => Ok(()),
        }
    }

    fn object<'s>(
        &mut self,
        ty: TypeInfo<'s>,
        object: &'v Map<String, Value>,
        depth: usize,
    ) -> Step {
        // The members: the common ones, then those of the branch each tag
        // selects (a branch may be a union itself).
        let mut allowed: Vec<MemberInfo<'s>> = Vec::new();
        let mut current = ty;
        let mut hops = depth;
        loop {
            allowed.extend(current.members());
            let Some(tag) = current.tag() else { break };
            let Some(given) = object.get(tag) else {
                break; // reported below as a missing member
            };
            let Some(case) = given.as_str() else {
                let expected = "string".to_owned();
                return self.fail_at(
                    tag,
                    Fault::WrongType {
                        expected,
                        found: JsonType::of(given),
                    },
                );
            };
            if let Some(branch) = current.variant(case).and_then(|v| v.ty()) {
                hops = hops.saturating_add(1);
                if hops > MAX_DEPTH {
                    return self.fail(Fault::TooDeep { limit: MAX_DEPTH });
                }
                current = branch;
                continue;
            }
            // A tag value without a branch of its own adds no members.
            let tag_type = current.member(tag).and_then(|m| m.ty());
            let values: Vec<String> = match tag_type {
                Some(t) if t.entity.meta == Meta::Enum => {
                    t.values().map(|v| v.name().to_owned()).collect()
                }
                _ => current.variants().map(|v| v.case().to_owned()).collect(),
            };
            if values.iter().any(|v| v == case) {
                break;
            }
            return self.fail_at(
                tag,
                Fault::UnknownBranch {
                    value: case.to_owned(),
                    allowed: values,
                },
            );
        }
        for (key, v) in object {
            let Some(member) = allowed.iter().find(|m| m.name() == key) else {
                let mut names: Vec<String> = allowed.iter().map(|m| m.name().to_owned()).collect();
                names.sort_unstable();
                names.dedup();
                return self.fail_at(
                    key,
                    Fault::UnknownMember {
                        member: key.clone(),
                        allowed: names,
                    },
                );
            };
            if let Some(member_ty) = member.ty() {
                self.path.push(Seg::Key(key));
                self.value(member_ty, v, depth.saturating_add(1))?;
                self.path.pop();
            }
        }
        for m in &allowed {
            if !m.optional() && !object.contains_key(m.name()) {
                return self.fail_at(
                    m.name(),
                    Fault::MissingMember {
                        member: m.name().to_owned(),
                    },
                );
            }
        }
        Ok(())
    }
}

impl Schema {
    /// Checks `arguments` of `command` against this schema before they are
    /// sent: the command exists; every member is known (else the allowed
    /// ones); every required member is there; every value has the right
    /// JSON type; enum values are known (else the allowed ones); a union's
    /// tag selects a branch, whose members are added to the common ones;
    /// an alternate's branch is chosen by JSON type; every array element is
    /// checked; `any` takes anything. `Value::Null` means no arguments
    /// (`{}`).
    ///
    /// The error names the first fault and its JSON path (see
    /// [`ValidationError`]). Members are checked in the object's order,
    /// then missing ones in the schema's. Work is linear in the size of
    /// `arguments`; nesting past [`MAX_DEPTH`] is a fault.
    ///
    /// ```
    /// # let schema = qmp_qapi::schema::Schema::parse(include_str!("../../schema/qemu-10.0.json")).unwrap();
    /// let args = serde_json::json!({"driver": "qcow2", "node-name": "top", "file": {"driver": "nope"}});
    /// let fault = schema.validate("blockdev-add", &args).unwrap_err();
    /// assert_eq!(fault.path(), "arguments.file.driver");
    /// assert!(fault.to_string().starts_with("blockdev-add: arguments.file.driver: \"nope\" selects no branch; one of: "));
    /// ```
    pub fn validate(&self, command: &str, arguments: &Value) -> Result<(), ValidationError> {
        let fail = |path: String, fault| ValidationError {
            command: command.to_owned(),
            path,
            fault,
        };
        let Some(info) = self.command(command) else {
            return Err(fail(String::new(), Fault::UnknownCommand));
        };
        let Some(ty) = info.arguments() else {
            return Ok(());
        };
        let empty = Value::Object(Map::new());
        let arguments = if arguments.is_null() {
            &empty
        } else {
            arguments
        };
        let mut walk = Walk { path: Vec::new() };
        walk.value(ty, arguments, 0)
            .map_err(|(path, fault)| fail(path, fault))
    }

    /// [`validate`](Self::validate) for arguments as JSON text (`None`: no
    /// arguments). Text that is not JSON is [`Fault::NotJson`] (serde_json
    /// refuses nesting deeper than 128 levels).
    pub fn validate_str(
        &self,
        command: &str,
        arguments: Option<&str>,
    ) -> Result<(), ValidationError> {
        let value = match arguments {
            None => Value::Null,
            Some(text) => serde_json::from_str(text).map_err(|e| ValidationError {
                command: command.to_owned(),
                path: String::from("arguments"),
                fault: Fault::NotJson {
                    reason: alloc::format!("{e}"),
                },
            })?,
        };
        self.validate(command, &value)
    }
}
