//! The `qmp` command: QEMU Machine Protocol and guest agent commands from the
//! command line, event watching, and an interactive shell.
//!
//! The binary is a thin `main` over [`run`]; the modules are public so their
//! parts (argument syntax, output formatting, the shell's line syntax) are
//! documented and tested on their own.
//!
//! Exit status: 0 success; 1 a command returned a QMP error (its class and
//! description on stderr); 2 anything else, with one line on stderr
//! starting with `qmp: `.
#![deny(missing_docs)]

pub mod args;
pub mod cli;
pub mod complete;
pub mod events;
pub mod failure;
pub mod info;
pub mod jsonfmt;
pub mod line;
pub mod oneshot;
pub mod output;
pub mod request;
pub mod schema;
pub mod script;
pub mod shell;
pub mod target;

use core::sync::atomic::AtomicU32;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;

use clap::Parser;

use crate::cli::Cli;
use crate::failure::{EXIT_OTHER, Failure};
use crate::target::Deadline;

/// Runs `qmp` with the command line `argv` (program name first) and returns
/// its exit status. Never panics on any input.
pub fn run<I, T>(argv: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    match run_cli(&cli) {
        Ok(code) => code,
        Err(failure) => {
            output::error_line(&failure);
            failure.exit_code()
        }
    }
}

/// `--help` and `--version` as clap prints them; a usage mistake as one line.
fn clap_exit(e: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return u8::try_from(e.exit_code()).unwrap_or(EXIT_OTHER);
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("bad usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    output::error_line(&Failure::other(format!("{first} (see qmp --help)")));
    EXIT_OTHER
}

fn run_cli(cli: &Cli) -> Result<u8, Failure> {
    if !cli.child.is_empty() && !cli.target.stdio {
        return Err(Failure::other(
            "arguments after `--` are the child of --stdio, which was not given",
        ));
    }
    let deadline = Deadline::after(cli.timeout);
    let qemu_pid = Arc::new(AtomicU32::new(0));
    deadline.arm_watchdog(qemu_pid.clone());
    let style = output::Style::choose(cli.pretty, cli.compact);

    if let Some((name, args)) = cli.command.split_first() {
        // Arguments are checked before anything is launched or connected.
        let request = oneshot::request(cli.hmp, name, args, cli.oob)?;
        let session = target::connect(cli, &deadline, &qemu_pid)?;
        oneshot::run(&session.peer, &request, &deadline, style, cli.hmp)?;
        return Ok(0);
    }
    if cli.hmp && (cli.events || cli.info) {
        return Err(Failure::other(
            "-H runs HMP commands; it does not go with --events or --info",
        ));
    }
    let session = target::connect(cli, &deadline, &qemu_pid)?;
    if cli.events {
        let client = session.peer.qmp("--events")?;
        events::watch(client, &cli.filter, cli.count, &deadline)?;
        return Ok(0);
    }
    if cli.info {
        let client = session.peer.qmp("--info")?;
        let text = info::info(client, cli.schema, &deadline)?;
        output::line(&style.format(&text))?;
        return Ok(0);
    }
    if std::io::stdin().is_terminal() {
        return shell::run(&session.peer, cli.hmp, cli.oob, &deadline);
    }
    script::run(
        &session.peer,
        std::io::stdin().lock(),
        cli.hmp,
        cli.oob,
        &deadline,
    )
}
