//! `qmp [TARGET] COMMAND [ARGS]`: one command, its return value on stdout.

use qmp_std::{Disconnect, Error};

use crate::failure::Failure;
use crate::output::{self, Style};
use crate::request::Request;
use crate::target::{Deadline, Peer};

/// The request a command line names: `COMMAND ARGS...`, or with `-H` the
/// whole HMP command line.
pub fn request(hmp: bool, name: &str, args: &[String], oob: bool) -> Result<Request, Failure> {
    let mut request = if hmp {
        let mut line = name.to_owned();
        for arg in args {
            line.push(' ');
            line.push_str(arg);
        }
        Request::hmp(&line)
    } else {
        Request::from_tokens(name, args)?
    };
    request.oob = oob;
    Ok(request)
}

/// Runs `request` and prints its return value (HMP: its text).
pub fn run(
    peer: &Peer,
    request: &Request,
    deadline: &Deadline,
    style: Style,
    hmp: bool,
) -> Result<(), Failure> {
    if hmp {
        peer.monitor("-H (human-monitor-command)")?;
    }
    let reply = peer
        .call(request.call(deadline))
        .map_err(|e| call_failure(e, &request.name, deadline))?;
    if hmp {
        let text = output::hmp_text(reply.as_str());
        if text.is_empty() {
            return Ok(());
        }
        return output::line(&text);
    }
    output::line(&style.format(reply.as_str()))
}

/// A failed call's failure: a timeout that the deadline caused says so.
pub fn call_failure(e: Error, command: &str, deadline: &Deadline) -> Failure {
    match e {
        Error::Timeout(_) if deadline.timeout().is_some() => {
            deadline.expired(&format!("no reply to {command}"))
        }
        Error::Disconnected(Disconnect::HandshakeTimeout { step, .. })
            if deadline.timeout().is_some() =>
        {
            deadline.expired(&step.to_string())
        }
        e => e.into(),
    }
}
