//! The README shows each adapter's example program; this keeps the text there
//! identical to the files CI compiles and clippy checks.

#[test]
fn readme_shows_the_compiled_examples() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    for adapter in ["qmp-std", "qmp-tokio", "qmp-smol"] {
        let name = adapter.trim_start_matches("qmp-");
        for example in ["hello", "typed"] {
            let path = format!("{root}/{adapter}/examples/{name}_{example}.rs");
            // The typed example is shown for qmp-std and qmp-tokio only.
            let Ok(example) = std::fs::read_to_string(&path) else {
                assert_eq!(example, "typed", "{path} is missing");
                continue;
            };
            assert!(
                readme.contains(&format!("```rust\n{example}```")),
                "README.md does not show {path} verbatim"
            );
        }
    }
}
