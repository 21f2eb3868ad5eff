//! `qmp [TARGET]` with stdin not a terminal: one command per line in, one
//! reply per line out, for scripts.
//!
//! Lines are read as in the shell (see [`line`](crate::line)). Every command
//! prints exactly one line on stdout, so replies match commands by position:
//! `{"return": VALUE}`, or `{"error": {"class": CLASS, "desc": DESC}}` for a
//! QMP error reply, as QEMU sends them. A line `qmp` cannot read prints
//! `{"error": {"class": "UsageError", "desc": ...}}` (a class QEMU never
//! sends) and the script goes on. Comments, empty lines and the lines inside
//! a transaction print nothing; the transaction prints one reply at its `)`.
//!
//! Exit status: 0 when every command succeeded, 1 when some returned a QMP
//! error, 2 when a line could not be read, or at once (after a `qmp: ` line
//! on stderr) when the connection is lost or the `--timeout` strikes. A
//! transaction still open at the end of input is a usage mistake (status 2).

use std::io::BufRead;

use qmp_std::Error;

use crate::failure::{EXIT_COMMAND, EXIT_OTHER, Failure};
use crate::jsonfmt;
use crate::line::{LineReader, Parsed};
use crate::oneshot::call_failure;
use crate::output;
use crate::target::{Deadline, Peer};

/// Runs the commands of `input` and returns the exit status.
pub fn run(
    peer: &Peer,
    input: impl BufRead,
    hmp: bool,
    oob: bool,
    deadline: &Deadline,
) -> Result<u8, Failure> {
    let mut reader = LineReader::new(hmp);
    let mut status = 0u8;
    for line in input.lines() {
        let line = line.map_err(|e| Failure::other(format!("cannot read stdin: {e}")))?;
        let mut request = match reader.feed(&line) {
            Ok(Parsed::Nothing) => continue,
            Ok(Parsed::Request(r)) => r,
            Err(e) => {
                output::line(&usage_error_line(&e.to_string()))?;
                status = status.max(EXIT_OTHER);
                continue;
            }
        };
        request.oob |= oob;
        match peer.call(request.call(deadline)) {
            Ok(value) => {
                output::line(&format!(
                    "{{\"return\":{}}}",
                    jsonfmt::compact(value.as_str())
                ))?;
            }
            Err(Error::Command(e)) => {
                let error =
                    serde_json::json!({"error": {"class": e.class.as_str(), "desc": e.desc}});
                output::line(&error.to_string())?;
                status = status.max(EXIT_COMMAND);
            }
            Err(e @ (Error::Usage(_) | Error::Encode(_))) => {
                output::line(&usage_error_line(&e.to_string()))?;
                status = status.max(EXIT_OTHER);
            }
            Err(e) => return Err(call_failure(e, &request.name, deadline)),
        }
    }
    if reader.in_transaction() {
        output::error_line(&Failure::other(
            "the input ended inside a transaction( without its closing `)`; it was not sent",
        ));
        status = status.max(EXIT_OTHER);
    }
    Ok(status)
}

/// The reply line for a line `qmp` could not read or send.
fn usage_error_line(desc: &str) -> String {
    serde_json::json!({"error": {"class": "UsageError", "desc": desc}}).to_string()
}
