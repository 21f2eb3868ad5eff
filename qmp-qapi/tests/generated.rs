//! The committed generated code matches what the generator makes from the
//! committed schemas and names table.

use std::path::Path;

#[test]
fn generated_code_is_current() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = qmp_qapi_gen::generate(&repo).unwrap_or_else(|e| panic!("qmp-qapi-gen: {e}"));
    let mut stale = Vec::new();
    for (path, text) in &output.files {
        let committed = std::fs::read_to_string(repo.join(path)).unwrap_or_default();
        if &committed != text {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated code: {}; run `cargo run -p qmp-qapi-gen` and commit the result",
        stale.join(", ")
    );
}

/// Every command and event QEMU 10.0 has links its own entry of the QMP
/// reference (`#command-QMP-<module>.<name>`), not the top of the page.
#[test]
fn reference_links_name_their_entry() {
    use qmp_qapi::Versions;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/generated");
    for (file, kind, table) in [
        ("commands.rs", "command", qmp_qapi::commands::COMMANDS),
        ("events.rs", "event", qmp_qapi::events::EVENTS),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for (name, versions) in table {
            let anchor = format!("qemu-qmp-ref.html#{kind}-QMP-");
            let entry = format!(".{name})");
            let linked = text
                .lines()
                .any(|l| l.contains(&anchor) && l.ends_with(&entry));
            assert_eq!(
                linked,
                versions.contains(Versions::QEMU_10_0),
                "{kind} {name}: reference link"
            );
        }
    }
}
