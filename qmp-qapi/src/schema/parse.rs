//! Reading `query-qmp-schema`: serde straight into the stored entities (no
//! intermediate `serde_json::Value`), then two sorted index vectors.
//!
//! Type references are QEMU's masked numbers (`"262"`), read as `u32`
//! without allocating; only the built-ins (`int`, `str`, ...) and command
//! and event names are kept as text.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

/// A name as introspection gives it: a masked type number, or text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// A masked type name (`"262"`), canonical decimal that fits `u32`.
    Num(u32),
    /// Anything else: command and event names, built-in type names.
    Str(Box<str>),
}

impl Key {
    fn from_text(text: &str) -> Self {
        let canonical = !text.is_empty()
            && text.len() <= 10
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        match text.parse::<u32>() {
            Ok(n) if canonical => Key::Num(n),
            _ => Key::Str(text.into()),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Key::Str(s) => Some(s),
            Key::Num(_) => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Num(n) => write!(f, "{n}"),
            Key::Str(s) => f.write_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name (string)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key::from_text(v))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The `meta-type` of an entity; one this crate does not know is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Meta {
    Builtin,
    Enum,
    Array,
    Object,
    Alternate,
    Command,
    Event,
    #[serde(other)]
    Other,
}

/// The JSON type of a value or of a schema type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JsonType {
    /// A JSON string (also what an enum takes).
    String,
    /// Any JSON number.
    Number,
    /// A JSON number without fraction or exponent.
    Int,
    /// `true` or `false`.
    Boolean,
    /// `null`.
    Null,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// Anything (the schema's `any`, whose `json-type` is `value`; also a
    /// JSON type this crate does not know).
    #[serde(other)]
    Value,
}

impl JsonType {
    /// The JSON type of `value` (`Int` for integers, `Number` for others).
    pub fn of(value: &serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => JsonType::Null,
            serde_json::Value::Bool(_) => JsonType::Boolean,
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => JsonType::Int,
            serde_json::Value::Number(_) => JsonType::Number,
            serde_json::Value::String(_) => JsonType::String,
            serde_json::Value::Array(_) => JsonType::Array,
            serde_json::Value::Object(_) => JsonType::Object,
        }
    }

    /// True when a value of JSON type `found` is one of this type.
    pub fn accepts(self, found: JsonType) -> bool {
        self == found
            || self == JsonType::Value
            || (self == JsonType::Number && found == JsonType::Int)
    }

    /// The name introspection uses (`value` for anything).
    pub fn name(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Int => "int",
            JsonType::Boolean => "boolean",
            JsonType::Null => "null",
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::Value => "value",
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// True when a key is present, whatever its value (introspection's
/// `"default": null` marks an optional member).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// A member of an object, an enum or an alternate (which fields are set
/// depends on which).
#[derive(Debug, Deserialize)]
pub(crate) struct Member {
    #[serde(default)]
    pub(crate) name: Option<Box<str>>,
    #[serde(rename = "type", default)]
    pub(crate) ty: Option<Key>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) default: bool,
    #[serde(default)]
    pub(crate) features: Vec<Box<str>>,
}

/// A branch of a union.
#[derive(Debug, Deserialize)]
pub(crate) struct Variant {
    pub(crate) case: Box<str>,
    #[serde(rename = "type")]
    pub(crate) ty: Key,
}

/// One SchemaInfo, as stored: which fields are set depends on `meta`.
#[derive(Debug, Deserialize)]
pub(crate) struct Entity {
    pub(crate) name: Key,
    #[serde(rename = "meta-type")]
    pub(crate) meta: Meta,
    #[serde(default)]
    pub(crate) features: Vec<Box<str>>,
    #[serde(rename = "arg-type", default)]
    pub(crate) arg_type: Option<Key>,
    #[serde(rename = "ret-type", default)]
    pub(crate) ret_type: Option<Key>,
    #[serde(rename = "allow-oob", default)]
    pub(crate) allow_oob: bool,
    #[serde(default)]
    pub(crate) members: Vec<Member>,
    #[serde(default)]
    pub(crate) tag: Option<Box<str>>,
    #[serde(default)]
    pub(crate) variants: Vec<Variant>,
    /// Enum values before QEMU 6.2 (since then `members` has them too, with
    /// their features).
    #[serde(default)]
    pub(crate) values: Vec<Box<str>>,
    #[serde(rename = "element-type", default)]
    pub(crate) element: Option<Key>,
    #[serde(rename = "json-type", default)]
    pub(crate) json: Option<JsonType>,
}

/// The entities and their indexes.
pub(crate) struct Tables {
    pub(crate) entities: Vec<Entity>,
    /// `(masked number, entity index)`, sorted.
    pub(crate) by_num: Vec<(u32, u32)>,
    /// Indexes of the entities named by text, sorted by name.
    pub(crate) by_name: Vec<u32>,
}

impl Tables {
    /// Indexes `entities`, and checks that every type they name is there
    /// (introspection is self-contained: a missing type is a broken reply).
    pub(crate) fn new(mut entities: Vec<Entity>) -> Result<Self, String> {
        if entities.len() > u32::MAX as usize {
            return Err(String::from("more entities than an index holds"));
        }
        for e in &mut entities {
            // An enum's values live in `values`; since QEMU 6.2 `members`
            // repeats them with their features: keep one list, `members`.
            if e.meta == Meta::Enum && e.members.is_empty() {
                e.members = core::mem::take(&mut e.values)
                    .into_iter()
                    .map(|v| Member {
                        name: Some(v),
                        ty: None,
                        default: false,
                        features: Vec::new(),
                    })
                    .collect();
            } else {
                e.values = Vec::new();
            }
        }
        let mut by_num = Vec::new();
        let mut by_name = Vec::new();
        for (i, e) in entities.iter().enumerate() {
            match &e.name {
                Key::Num(n) => by_num.push((*n, i as u32)),
                Key::Str(_) => by_name.push(i as u32),
            }
        }
        by_num.sort_unstable();
        by_name.sort_unstable_by(|a, b| {
            let name = |i: u32| entities.get(i as usize).and_then(|e| e.name.as_str());
            name(*a).cmp(&name(*b))
        });
        let tables = Tables {
            entities,
            by_num,
            by_name,
        };
        tables.check_references()?;
        Ok(tables)
    }

    pub(crate) fn find(&self, key: &Key) -> Option<u32> {
        match key {
            Key::Num(n) => self
                .by_num
                .binary_search_by_key(n, |(k, _)| *k)
                .ok()
                .and_then(|at| self.by_num.get(at))
                .map(|&(_, i)| i),
            Key::Str(s) => self.find_name(s),
        }
    }

    pub(crate) fn find_name(&self, name: &str) -> Option<u32> {
        self.by_name
            .binary_search_by(|i| {
                self.entities
                    .get(*i as usize)
                    .and_then(|e| e.name.as_str())
                    .unwrap_or_default()
                    .cmp(name)
            })
            .ok()
            .and_then(|at| self.by_name.get(at).copied())
    }

    fn check_references(&self) -> Result<(), String> {
        for e in &self.entities {
            let named = |what: &str, key: &Key| -> Result<(), String> {
                match self.find(key) {
                    Some(_) => Ok(()),
                    None => Err(format!(
                        "{} `{}` names type `{key}` as its {what}, and the schema has no such type",
                        meta_name(e.meta),
                        e.name
                    )),
                }
            };
            for key in [&e.arg_type, &e.ret_type, &e.element].into_iter().flatten() {
                named("type", key)?;
            }
            for m in &e.members {
                if let Some(key) = &m.ty {
                    named("member's type", key)?;
                }
            }
            for v in &e.variants {
                named("branch's type", &v.ty)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn meta_name(meta: Meta) -> &'static str {
    match meta {
        Meta::Builtin => "built-in type",
        Meta::Enum => "enum",
        Meta::Array => "array",
        Meta::Object => "object",
        Meta::Alternate => "alternate",
        Meta::Command => "command",
        Meta::Event => "event",
        Meta::Other => "entity",
    }
}
