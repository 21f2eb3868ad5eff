//! Helpers for `qapi_union!`: a branch goes through a JSON map, because its
//! members sit beside the tag in one object.

use alloc::string::String;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde_json::{Map, Value};

pub(crate) fn to_map<S: serde::Serializer, T: serde::Serialize>(
    value: &T,
) -> Result<Map<String, Value>, S::Error> {
    match serde_json::to_value(value).map_err(S::Error::custom)? {
        Value::Object(map) => Ok(map),
        _ => Err(S::Error::custom("a union branch must be a JSON object")),
    }
}

pub(crate) fn split<'de, D: serde::Deserializer<'de>>(
    d: D,
    tag: &'static str,
) -> Result<(String, Map<String, Value>), D::Error> {
    let mut map = <Map<String, Value> as serde::Deserialize>::deserialize(d)?;
    match map.remove(tag) {
        Some(Value::String(t)) => Ok((t, map)),
        Some(_) => Err(D::Error::custom(alloc::format!(
            "union tag `{tag}` is not a string"
        ))),
        // A QEMU from before the type became a union: no tag, no branch;
        // its members are kept in the `Other` branch.
        None => Ok((String::new(), map)),
    }
}

pub(crate) fn from_map<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    map: Map<String, Value>,
) -> Result<alloc::boxed::Box<T>, D::Error> {
    serde_json::from_value(Value::Object(map))
        .map(alloc::boxed::Box::new)
        .map_err(D::Error::custom)
}
