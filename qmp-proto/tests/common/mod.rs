//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Bytes of a captured transcript (`tests/data/NAME.EXT` at the repository root).
pub fn transcript(name: &str, ext: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(format!("{name}.{ext}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
