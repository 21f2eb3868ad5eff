//! The command line: every form `qmp` accepts, with the text of `qmp --help`.

use std::path::PathBuf;

use clap::{Args, Parser};

const AFTER_HELP: &str = "\
Forms:
  qmp [TARGET] COMMAND [ARGS]...   run one command, print its return value as JSON
  qmp [TARGET] --events [--count N] [--filter NAME]... [--timeout SECS]
                                   print events as JSON lines
  qmp [TARGET] --info [--schema]   print the greeting (and a summary of the schema)
  qmp [TARGET]                     a shell when stdin is a terminal; else read one
                                   command per line and print one reply per line

ARGS: one JSON object, or key=value pairs. A value is JSON when it parses as
JSON (numbers, true, false, null, \"strings\", objects, arrays), else a string.
Dotted keys nest: file.driver=qcow2 file.filename=x gives
{\"file\":{\"driver\":\"qcow2\",\"filename\":\"x\"}}.

TARGET: --socket PATH, --tcp HOST:PORT, --qga PATH, --stdio COMMAND -- CHILD...
(a child process speaking QMP on its stdin and stdout), or none: a private
QEMU (qemu-system-x86_64 -machine none, plus --launch-args) runs for the length
of the call.

Scripts (stdin not a terminal): one command per line (NAME ARGS, NAME {JSON},
{\"execute\": ...}, # comments, transaction( ... )), one reply line each:
{\"return\": ...} or {\"error\": {\"class\": ..., \"desc\": ...}}.
Shell (stdin a terminal): Tab completes commands, arguments and enum values
from the live schema; arguments are checked before sending; events show as
they arrive; help [COMMAND]; quit or Ctrl-D. History: $QMP_HISTORY, else
$XDG_STATE_HOME/qmp/history, else ~/.local/state/qmp/history.

Exit status: 0 success; 1 a command returned a QMP error (class and description
on stderr); 2 anything else (usage, connection, protocol, timeout), one line on
stderr.

Examples:
  qmp query-status
  qmp --socket /run/vm.qmp blockdev-add driver=null-co node-name=n0 size=1048576
  qmp --socket /run/vm.qmp --events --filter STOP --count 1 --timeout 30
  qmp --qga /run/vm.qga guest-info
  qmp -H info version
  qmp --stdio query-status -- qemu-system-x86_64 -machine none -qmp stdio -display none -nodefaults";

/// `qmp`: QEMU Machine Protocol and guest agent commands, event watching and
/// an interactive shell.
#[derive(Debug, Parser)]
#[command(name = "qmp", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Where the monitor is.
    #[command(flatten)]
    pub target: Target,

    /// Print the events QEMU sends, one JSON line each, instead of running a
    /// command. Ends after --count events, at the end of the connection, at
    /// --timeout (exit 0 when no --count was given) or on Ctrl-C.
    #[arg(long, conflicts_with_all = ["info", "hmp", "command"])]
    pub events: bool,

    /// With --events: stop after N events (exit 2 if --timeout or the end of
    /// the connection comes first).
    #[arg(long, value_name = "N", requires = "events")]
    pub count: Option<u64>,

    /// With --events: only events called NAME (repeat for several).
    #[arg(long, value_name = "NAME", requires = "events")]
    pub filter: Vec<String>,

    /// Print the greeting (version, capabilities) instead of running a command.
    #[arg(long, conflicts_with_all = ["hmp", "command"])]
    pub info: bool,

    /// With --info: add a summary of the live schema (query-qmp-schema).
    #[arg(long, requires = "info")]
    pub schema: bool,

    /// Bound the whole call (connecting, launching QEMU and the command or the
    /// event watch) to SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<core::time::Duration>,

    /// Send commands with exec-oob (the monitor must offer the oob capability).
    #[arg(long)]
    pub oob: bool,

    /// Human monitor: COMMAND and ARGS are one HMP command line, run through
    /// human-monitor-command; its text output is printed as it is.
    #[arg(short = 'H', long)]
    pub hmp: bool,

    /// Indented JSON (the default on a terminal).
    #[arg(long, conflicts_with = "compact")]
    pub pretty: bool,

    /// One-line JSON (the default when stdout is not a terminal).
    #[arg(long)]
    pub compact: bool,

    /// With --libvirt: the libvirt URI (qemu:///system, qemu+tcp://HOST/system,
    /// qemu:///system?socket=PATH).
    #[arg(long, value_name = "URI", requires = "libvirt")]
    pub uri: Option<String>,

    /// The command to run, then its arguments: one JSON object, or key=value
    /// pairs.
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,

    /// With --stdio: the child process and its arguments, after `--`.
    #[arg(last = true, value_name = "CHILD")]
    pub child: Vec<String>,
}

/// Where the monitor is; at most one of these. None: launch a private QEMU.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct Target {
    /// A QMP unix socket (QEMU's -qmp unix:PATH,server=on).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// A QMP tcp socket (QEMU's -qmp tcp:HOST:PORT,server=on).
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,

    /// A guest agent's unix socket (qemu-ga, or QEMU's virtio-serial chardev);
    /// synchronised with guest-sync-delimited on connect.
    #[arg(long, value_name = "PATH")]
    pub qga: Option<PathBuf>,

    /// Run the child given after `--` and speak QMP with it on its stdin and
    /// stdout (QEMU with -qmp stdio, or ssh HOST socat - UNIX-CONNECT:PATH).
    #[arg(long, requires = "child")]
    pub stdio: bool,

    /// A domain that libvirt runs (its name): commands go through libvirtd's
    /// RPC (see --uri).
    #[arg(long, value_name = "DOMAIN")]
    pub libvirt: Option<String>,

    /// Extra arguments for the private QEMU launched when no target is given,
    /// split at whitespace (-m 256 -device virtio-rng-pci).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub launch_args: Option<String>,
}

fn parse_secs(text: &str) -> Result<core::time::Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    core::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{text}` is not a duration (0 or more seconds)"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(core::iter::once("qmp").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn forms() {
        let c = parse(&["--socket", "/s", "blockdev-add", "a=1", "b.c=2"]).unwrap();
        assert_eq!(c.command, ["blockdev-add", "a=1", "b.c=2"]);
        assert_eq!(c.target.socket.as_deref(), Some("/s".as_ref()));

        let c = parse(&["--stdio", "query-status", "--", "qemu", "-qmp", "stdio"]).unwrap();
        assert!(c.target.stdio);
        assert_eq!(c.command, ["query-status"]);
        assert_eq!(c.child, ["qemu", "-qmp", "stdio"]);

        let c = parse(&[
            "--events", "--count", "2", "--filter", "STOP", "--filter", "RESUME",
        ]);
        assert_eq!(c.unwrap().filter, ["STOP", "RESUME"]);
        assert!(parse(&["--launch-args", "-m 256", "query-status"]).is_ok());
        let c = parse(&["--libvirt", "vm1", "query-status"]).unwrap();
        assert_eq!(c.target.libvirt.as_deref(), Some("vm1"));
        assert_eq!(c.uri, None);
        let c = parse(&["--libvirt", "vm1", "--uri", "qemu+tcp://h/system", "x"]).unwrap();
        assert_eq!(c.uri.as_deref(), Some("qemu+tcp://h/system"));
        assert_eq!(
            parse(&["--timeout", "1.5", "x"]).unwrap().timeout,
            Some(core::time::Duration::from_millis(1500))
        );
    }

    #[test]
    fn mistakes() {
        assert!(parse(&["--socket", "/s", "--tcp", "h:1"]).is_err());
        assert!(parse(&["--socket", "/s", "--libvirt", "vm1", "x"]).is_err());
        assert!(parse(&["--uri", "qemu:///system", "x"]).is_err());
        assert!(parse(&["--count", "1"]).is_err());
        assert!(parse(&["--schema"]).is_err());
        assert!(parse(&["--stdio", "x"]).is_err());
        assert!(parse(&["--timeout", "-1", "x"]).is_err());
        assert!(parse(&["--timeout", "nan", "x"]).is_err());
        assert!(parse(&["--pretty", "--compact", "x"]).is_err());
        assert!(parse(&["--events", "query-status"]).is_err());
        assert!(parse(&["--info", "query-status"]).is_err());
    }
}
