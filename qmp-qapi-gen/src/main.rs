//! `cargo run -p qmp-qapi-gen [-- --check] [-- --derived]`: regenerates
//! `qmp-qapi/src/generated/` (or, with `--check`, fails if it is stale).
//! `--derived` lists the types the names table does not name, with the key
//! to add to `qmp-qapi-gen/names.txt` to name them.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        for (key, name) in &output.derived {
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
