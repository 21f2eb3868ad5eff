//! `qmp [TARGET] COMMAND [ARGS]`: one command, its return value on stdout.

use qmp_std::{Disconnect, Error};

use crate::failure::Failure;
use crate::output::{self, Style};
use crate::request::Request;
use crate::schema::Schema;
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
        peer.qmp("-H (human-monitor-command)")?;
    } else {
        check(peer, request, deadline)?;
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

/// Checks `request` against the QEMU's live schema before it is sent (one
/// `query-qmp-schema` first): a mistake is reported by its JSON path and
/// nothing is sent. A peer without introspection (a guest agent, or one
/// that refuses `query-qmp-schema`), or whose schema this cannot read, is
/// not checked: it answers for itself. A failure of the connection while
/// fetching the schema is the run's failure.
pub fn check(peer: &Peer, request: &Request, deadline: &Deadline) -> Result<(), Failure> {
    let Peer::Qmp(client) = peer else {
        return Ok(());
    };
    if request.name == "query-qmp-schema" {
        return Ok(());
    }
    let reply = match crate::info::schema_reply(client, deadline) {
        Ok(reply) => reply,
        Err(Failure::Command(_)) => return Ok(()),
        Err(failure) => return Err(failure),
    };
    let Ok(schema) = Schema::parse(reply.as_str()) else {
        return Ok(());
    };
    schema
        .check(&request.name, &request.arguments)
        .map_err(|mistake| Failure::other(format!("not sent: {mistake}")))
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
