//! Optional members whose type has its own `null`.

use serde::{Deserialize, Deserializer};

/// Reads a present member, `null` included, as `Some`: serde's `Option`
/// would read `null` as absent, losing the difference QEMU makes between
/// `"backing": null` (no backing file) and no `backing` (the default one).
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
