//! `cargo run -p qmp-qapi-gen [-- --check] [-- --derived]`: regenerates
//! `qmp-qapi/src/generated/` (or, with `--check`, fails if it is stale).
//! `--derived` lists the types the names table does not name, with the key
//! to add to `qmp-qapi-gen/names.txt` to name them.
//!
//! `--from-source [VERSION=]DIR...` first rewrites the tables from QEMU's
//! QAPI source (each DIR the `qapi/` folder of a QEMU checkout, walked
//! against the captured schema of VERSION, or of every version; the first
//! that knows a thing wins): the names below the marker line of
//! `names.txt`, and all of `ints.txt` and `modules.txt`. For example
//! `--from-source 7.2=../qemu-7.2.0/qapi 10.0=../qemu-10.0.2/qapi`.
//! The trees need not be git checkouts: the `qapi/` folder of the Debian
//! source packages the schemas were captured from (`apt-get source
//! --download-only qemu=<version>`, the upstream tarball) is the same.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--from-source") {
        let dirs: Vec<(Option<&str>, &Path)> = args[i + 1..]
            .iter()
            .take_while(|a| !a.starts_with("--"))
            .map(|a| match a.split_once('=') {
                Some((v, dir)) => (Some(v), Path::new(dir)),
                None => (None, Path::new(a.as_str())),
            })
            .collect();
        if let Err(e) = from_source(&repo, &dirs) {
            eprintln!("qmp-qapi-gen: {e}");
            return ExitCode::from(2);
        }
    }
    let output = match qmp_qapi_gen::generate(&repo) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("qmp-qapi-gen: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &output.warnings {
        eprintln!("warning: {w}");
    }
    if args.iter().any(|a| a == "--derived") {
        // A command's arguments or an event's data written in place: QAPI
        // itself leaves these unnamed.
        let implicit = |key: &str| !key.contains(['.', '|']);
        for (key, name) in output.derived.iter().filter(|(k, _)| !implicit(k)) {
            println!("{key} = {name}");
        }
        println!("# implicit in QAPI, named after their command or event:");
        for (key, name) in output.derived.iter().filter(|(k, _)| implicit(k)) {
            println!("{key} = {name}");
        }
    }
    let check = args.iter().any(|a| a == "--check");
    let mut stale = false;
    for (path, text) in &output.files {
        let full = repo.join(path);
        if std::fs::read_to_string(&full).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if check {
            eprintln!("stale: {}", path.display());
            stale = true;
        } else if let Err(e) = std::fs::create_dir_all(full.parent().expect("parent"))
            .and_then(|()| std::fs::write(&full, text))
        {
            eprintln!("qmp-qapi-gen: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    for s in &output.summary {
        eprintln!("{s}");
    }
    if stale {
        eprintln!("run `cargo run -p qmp-qapi-gen` to regenerate");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The line in `names.txt` below which `--from-source` writes.
const MARKER: &str =
    "# --- learned from QAPI source by `--from-source`; edits below are overwritten ---";

fn from_source(repo: &Path, dirs: &[(Option<&str>, &Path)]) -> Result<(), String> {
    if dirs.is_empty() {
        return Err("--from-source needs at least one QAPI source folder".into());
    }
    let names_path = repo.join("qmp-qapi-gen/names.txt");
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let text = std::fs::read_to_string(&names_path).map_err(|e| e.to_string())?;
    let kept = text
        .split(MARKER)
        .next()
        .unwrap_or("")
        .trim_end()
        .to_owned();
    // Learn against the hand-kept part only, so stale learned lines go.
    write(&names_path, format!("{kept}\n"))?;
    let tables = qmp_qapi_gen::learn_from_source(repo, dirs)?;
    for note in &tables.notes {
        eprintln!("note: {note}");
    }
    write(
        &names_path,
        format!("{kept}\n\n{MARKER}\n{}\n", tables.names.join("\n")),
    )?;
    write(
        &repo.join("qmp-qapi-gen/ints.txt"),
        format!(
            "# QAPI integer types other than `int`/`int64`, which introspection\n\
             # reports all as `int`: `Type.member = inttype`. Written by\n\
             # `cargo run -p qmp-qapi-gen -- --from-source DIR`.\n{}\n",
            tables.ints.join("\n")
        ),
    )?;
    write(
        &repo.join("qmp-qapi-gen/modules.txt"),
        format!(
            "# The QAPI module (source file) of each command and event, for the\n\
             # anchors of reference links: `name = module`. Written by\n\
             # `cargo run -p qmp-qapi-gen -- --from-source DIR`.\n{}\n",
            tables.modules.join("\n")
        ),
    )?;
    eprintln!(
        "learned {} names, {} integer types, {} modules",
        tables.names.len(),
        tables.ints.len(),
        tables.modules.len()
    );
    Ok(())
}
