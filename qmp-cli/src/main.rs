//! `qmp`: see `qmp --help` and the crate documentation of `qmp_cli`.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(qmp_cli::run(std::env::args_os()))
}
