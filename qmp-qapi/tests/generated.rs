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
