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
        peer.monitor("-H (human-monitor-command)")?;
    }
    let reply = match peer.call(request.call(deadline)) {
        Ok(reply) => reply,
        Err(e) => {
            let failure = call_failure(e, &request.name, deadline);
            return Err(if hmp {
                failure
            } else {
                explain(peer, request, deadline, failure)
            });
        }
    };
    if hmp {
        let text = output::hmp_text(reply.as_str());
        if text.is_empty() {
            return Ok(());
        }
        return output::line(&text);
    }
    output::line(&style.format(reply.as_str()))
}

/// Explains a refusal by QEMU's live schema: when QEMU refused the command
/// as a `GenericError` (its reply names no path), the schema (`query-qmp-schema`, fetched
/// only now, so a call that succeeds costs nothing more) says which member
/// is wrong and what it allows. A peer without introspection (a guest
/// agent, or one that refuses `query-qmp-schema`), a schema this cannot
/// read, a schema that finds nothing wrong, or any trouble fetching it
/// leaves QEMU's own answer as it was. Over libvirt the schema comes
/// through libvirt like the command did.
pub fn explain(peer: &Peer, request: &Request, deadline: &Deadline, failure: Failure) -> Failure {
    let Failure::Command(error) = &failure else {
        return failure;
    };
    if matches!(peer, Peer::Qga(_)) {
        return failure;
    }
    // QEMU reports bad arguments as GenericError; other classes (no such
    // command, no such device) already say what is wrong.
    if error.class != qmp_std::ErrorClass::GenericError
        || request.name == crate::info::SCHEMA_COMMAND
    {
        return failure;
    }
    let Ok(schema_request) = Request::from_tokens::<&str>(crate::info::SCHEMA_COMMAND, &[]) else {
        return failure;
    };
    let Ok(reply) = peer.call(schema_request.call(deadline)) else {
        return failure;
    };
    let Ok(schema) = Schema::parse(reply.as_str()) else {
        return failure;
    };
    match schema.check(&request.name, &request.arguments) {
        Err(mistake) => Failure::Explained(error.clone(), mistake.to_string()),
        Ok(()) => failure,
    }
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
