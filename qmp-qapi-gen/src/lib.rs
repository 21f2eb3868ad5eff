//! Generates `qmp-qapi/src/generated/` from the schemas captured in
//! `qmp-qapi/schema/` (see `scripts/capture-schemas.sh`).
//!
//! QEMU's `query-qmp-schema` hides type names (`"262"`). Each schema's types
//! are named through the hand-kept table `qmp-qapi-gen/names.txt` (a key
//! such as `query-status.ret` or `StatusInfo.status` -> a QAPI name), and the
//! others after where they are used (`QueryFooReturn`, `BlockdevCreateOptions`).
//! The schemas are then merged: every command, event, member and enum value
//! with the QEMUs that have it.
#![allow(clippy::collapsible_if)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod case;
mod emit;
mod merge;
mod model;
mod source;

pub use source::Tables;

/// The schema versions, in the order their bits are numbered.
pub const VERSIONS: [&str; 2] = ["7.2", "10.0"];

/// Where the generated files go, relative to the repository.
pub const OUT_DIR: &str = "qmp-qapi/src/generated";

/// What [`generate`] produced.
#[derive(Debug)]
pub struct Output {
    /// (path relative to the repository, formatted Rust source)
    pub files: Vec<(PathBuf, String)>,
    /// Types the table did not name: (key, derived name).
    pub derived: Vec<(String, String)>,
    /// Things that did not merge cleanly.
    pub warnings: Vec<String>,
    /// Counts per version and merged, for people.
    pub summary: Vec<String>,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The captured schemas, in the order of [`VERSIONS`].
fn schemas(repo: &Path) -> Result<Vec<(&'static str, serde_json::Value)>, String> {
    VERSIONS
        .iter()
        .map(|v| {
            let path = repo.join(format!("qmp-qapi/schema/qemu-{v}.json"));
            let json = serde_json::from_str(&read(&path)?)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((*v, json))
        })
        .collect()
}

/// Learns the names, integer and modules tables from QEMU QAPI source
/// trees, starting from the names table already in `repo`. Each tree is the
/// `qapi/` folder of a QEMU checkout, with the schema version it belongs to
/// (`None`: every version); the first tree that knows a thing wins.
pub fn learn_from_source(repo: &Path, dirs: &[(Option<&str>, &Path)]) -> Result<Tables, String> {
    let table = model::parse_table(&read(&repo.join("qmp-qapi-gen/names.txt"))?)?;
    source::learn(&schemas(repo)?, &table, dirs)
}

/// Generates every file from the repository at `repo`.
pub fn generate(repo: &Path) -> Result<Output, String> {
    let table = model::parse_table(&read(&repo.join("qmp-qapi-gen/names.txt"))?)?;
    let modules = model::parse_table(&read(&repo.join("qmp-qapi-gen/modules.txt"))?)?;
    let ints = model::parse_table(&read(&repo.join("qmp-qapi-gen/ints.txt"))?)?;
    let mut versions = Vec::new();
    let mut summary = Vec::new();
    for (v, json) in schemas(repo)? {
        let path = repo.join(format!("qmp-qapi/schema/qemu-{v}.json"));
        let loaded =
            model::load(&json, &table, v).map_err(|e| format!("{}: {e}", path.display()))?;
        summary.push(format!(
            "QEMU {v}: {} commands, {} events, {} types",
            loaded.commands.len(),
            loaded.events.len(),
            loaded.types.len()
        ));
        versions.push(loaded);
    }
    let mut derived_keys = Vec::new();
    let mut derived: HashMap<String, String> = HashMap::new();
    for v in &versions {
        for (key, name) in &v.derived {
            if name != "Empty" && !derived.contains_key(name) {
                derived.insert(name.clone(), key.clone());
                derived_keys.push((key.clone(), name.clone()));
            }
        }
    }
    let mut merged = merge::merge(&versions);
    // An integer-table line that names no integer member is stale.
    for key in ints.keys() {
        let (ty, member) = key.split_once('.').unwrap_or((key, ""));
        let found = match merged.types.get(ty).map(|t| &t.def) {
            Some(merge::Def2::Object { members, .. }) => members.iter().any(|m| {
                m.name == member && matches!(strip(&m.ty), model::Ty::Builtin(b) if b == "int")
            }),
            _ => false,
        };
        if !found {
            merged
                .warnings
                .push(format!("ints.txt: {key} is no integer member"));
        }
    }
    let counts = emit::counts(&merged);
    summary.push(format!(
        "merged: {} commands, {} events, {} types",
        counts["commands"], counts["events"], counts["types"]
    ));
    let all = (1u8 << VERSIONS.len()) - 1;
    let ctx = emit::Ctx::new(&merged, &derived, &modules, &ints, all);
    let out = Path::new(OUT_DIR);
    let files = vec![
        (out.join("mod.rs"), emit::module_file()),
        (out.join("types.rs"), ctx.types_file()),
        (out.join("commands.rs"), ctx.commands_file()),
        (out.join("events.rs"), ctx.events_file()),
    ];
    let files = files
        .into_iter()
        .map(|(p, src)| Ok((p, rustfmt(&src)?)))
        .collect::<Result<_, String>>()?;
    Ok(Output {
        files,
        derived: derived_keys,
        warnings: merged.warnings.clone(),
        summary,
    })
}

/// The element type of an array type.
fn strip(ty: &model::Ty) -> &model::Ty {
    match ty {
        model::Ty::Array(t) => strip(t),
        t => t,
    }
}

/// Formats with the toolchain's rustfmt, the same one `cargo fmt` runs, so
/// the committed files stay as rustfmt leaves them.
fn rustfmt(src: &str) -> Result<String, String> {
    let program = std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into());
    let mut child = Command::new(program)
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running rustfmt: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("rustfmt stdin")?;
    let src = src.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(src.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("rustfmt: {e}"))?;
    writer
        .join()
        .map_err(|_| "rustfmt writer panicked")?
        .map_err(|e| format!("writing to rustfmt: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rustfmt failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("rustfmt output: {e}"))
}
