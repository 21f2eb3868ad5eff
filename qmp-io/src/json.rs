//! Owned raw JSON: a reply's `return` value or an event's `data`, as text.

use core::fmt;

use qmp_proto::RawJson;

/// A JSON value as QEMU sent it, owned and not yet decoded.
///
/// The framer already checked it is well-formed JSON, so holding it costs one
/// copy and no parsing; decode it into your own type (or
/// `serde_json::Value`) with [`decode`](Self::decode).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(Box<str>);

impl Json {
    pub(crate) fn copy(json: RawJson<'_>) -> Self {
        Json(json.as_str().into())
    }

    /// Checks that `text` is one JSON value and keeps it, for transports that
    /// receive JSON as text (libvirt).
    pub fn parse(text: String) -> Result<Self, serde_json::Error> {
        let raw = serde_json::value::RawValue::from_string(text)?;
        let text: Box<str> = raw.into();
        Ok(Json(text.trim().into()))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Decodes the value into `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Json {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Validated by the framer; RawValue re-checks only when serialized.
        match serde_json::value::RawValue::from_string(self.0.to_string()) {
            Ok(raw) => raw.serialize(serializer),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl Json {
    /// The answer of a command the agent never replies to: `{}`, so that
    /// decoding it into an empty return type succeeds.
    pub(crate) fn no_reply() -> Self {
        Json("{}".into())
    }
}
