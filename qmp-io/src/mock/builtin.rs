//! QEMU's own answers to the commands the mock knows without a script:
//! run state, version, and the file descriptor commands, with arguments
//! checked as QEMU's marshallers do.

use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::{Map, Value};

use super::server::Outcome;
use super::{FdsetEntry, MockReply, MockRequest, Shared, lock};

/// QEMU's own answers.
pub(super) fn builtin(shared: &Shared, request: &mut MockRequest) -> Outcome {
    match builtin_reply(shared, request) {
        Ok(outcome) => outcome,
        Err(reply) => reply.into(),
    }
}

fn builtin_reply(shared: &Shared, request: &mut MockRequest) -> Result<Outcome, MockReply> {
    let mut args = Args::parse(request.arguments.as_deref())?;
    let outcome = match request.name.as_str() {
        "query-status" => {
            args.finish()?;
            let running = lock(&shared.state).running;
            MockReply::ret(format!(
                r#"{{"status": "{}", "singlestep": false, "running": {running}}}"#,
                if running { "running" } else { "paused" }
            ))
            .into()
        }
        "stop" => {
            args.finish()?;
            let was_running = core::mem::replace(&mut lock(&shared.state).running, false);
            let mut outcome = Outcome::from(MockReply::empty());
            if was_running {
                outcome.before.push(("STOP", None));
            }
            outcome
        }
        "cont" => {
            args.finish()?;
            let was_running = core::mem::replace(&mut lock(&shared.state).running, true);
            let mut outcome = Outcome::from(MockReply::empty());
            // QEMU reports STOP then RESUME even when already running, "to
            // keep the symmetry" (vm_prepare_start).
            if was_running {
                outcome.before.push(("STOP", None));
            }
            outcome.before.push(("RESUME", None));
            outcome
        }
        "query-version" => {
            args.finish()?;
            let v = shared.version;
            MockReply::ret(format!(
                r#"{{"qemu": {{"micro": {}, "minor": {}, "major": {}}}, "package": {}}}"#,
                v.micro,
                v.minor,
                v.major,
                json_string(&shared.package)
            ))
            .into()
        }
        "quit" => {
            args.finish()?;
            Outcome {
                before: Vec::new(),
                reply: MockReply::empty(),
                after: vec![(
                    "SHUTDOWN",
                    Some(r#"{"guest": false, "reason": "host-qmp-quit"}"#.to_owned()),
                )],
                close: true,
            }
        }
        "getfd" => {
            let name = args.string("fdname")?;
            args.finish()?;
            let fd = take_fd(request)?;
            if name.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(MockReply::generic(
                    "Parameter 'fdname' expects a name not starting with a digit",
                ));
            }
            lock(&shared.state).fd_names.insert(name, fd);
            MockReply::empty().into()
        }
        "closefd" => {
            let name = args.string("fdname")?;
            args.finish()?;
            if lock(&shared.state).fd_names.remove(&name).is_none() {
                return Err(MockReply::generic(format!(
                    "File descriptor named '{name}' not found"
                )));
            }
            MockReply::empty().into()
        }
        "add-fd" => {
            let fdset_id = args.opt_int("fdset-id")?;
            let opaque = args.opt_string("opaque")?;
            args.finish()?;
            let fd = take_fd(request)?;
            let raw = fd.as_raw_fd();
            let mut state = lock(&shared.state);
            // QEMU picks the lowest free id when none is given.
            let id = fdset_id.unwrap_or_else(|| {
                (0..)
                    .find(|id| !state.fdsets.contains_key(id))
                    .unwrap_or_default()
            });
            state
                .fdsets
                .entry(id)
                .or_default()
                .push(FdsetEntry { fd, opaque });
            MockReply::ret(format!(r#"{{"fdset-id": {id}, "fd": {raw}}}"#)).into()
        }
        "remove-fd" => {
            let id = args.int("fdset-id")?;
            let fd = args.opt_int("fd")?;
            args.finish()?;
            let mut state = lock(&shared.state);
            let not_found = || {
                MockReply::generic(match fd {
                    Some(fd) => format!("File descriptor named '{id}:{fd}' not found"),
                    None => format!("File descriptor named '{id}' not found"),
                })
            };
            let set = state.fdsets.get_mut(&id).ok_or_else(not_found)?;
            match fd {
                Some(fd) => {
                    let at = set
                        .iter()
                        .position(|e| i64::from(e.fd.as_raw_fd()) == fd)
                        .ok_or_else(not_found)?;
                    set.remove(at);
                }
                None => set.clear(),
            }
            if set.is_empty() {
                state.fdsets.remove(&id);
            }
            MockReply::empty().into()
        }
        "query-fdsets" => {
            args.finish()?;
            let state = lock(&shared.state);
            let sets: Vec<Value> = state
                .fdsets
                .iter()
                .map(|(id, entries)| {
                    let fds: Vec<Value> = entries
                        .iter()
                        .map(|e| {
                            let mut fd = Map::new();
                            fd.insert("fd".into(), e.fd.as_raw_fd().into());
                            if let Some(opaque) = &e.opaque {
                                fd.insert("opaque".into(), opaque.clone().into());
                            }
                            Value::Object(fd)
                        })
                        .collect();
                    serde_json::json!({"fdset-id": id, "fds": fds})
                })
                .collect();
            MockReply::ret(Value::Array(sets).to_string()).into()
        }
        name => MockReply::error(
            "CommandNotFound",
            format!("The command {name} has not been found"),
        )
        .into(),
    };
    Ok(outcome)
}

/// Takes the first descriptor that came with the command; QEMU closes the
/// rest.
fn take_fd(request: &mut MockRequest) -> Result<OwnedFd, MockReply> {
    let mut fds = core::mem::take(&mut request.fds).into_iter();
    fds.next()
        .ok_or_else(|| MockReply::generic("No file descriptor supplied via SCM_RIGHTS"))
}

/// A command's arguments, checked like QEMU's generated marshallers do.
struct Args(Map<String, Value>);

impl Args {
    fn parse(text: Option<&str>) -> Result<Self, MockReply> {
        match text {
            None => Ok(Args(Map::new())),
            Some(text) => serde_json::from_str(text)
                .map(Args)
                .map_err(|e| MockReply::generic(format!("Invalid arguments: {e}"))),
        }
    }

    fn opt_string(&mut self, key: &str) -> Result<Option<String>, MockReply> {
        match self.0.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid_type(key, "string")),
        }
    }

    fn string(&mut self, key: &str) -> Result<String, MockReply> {
        self.opt_string(key)?.ok_or_else(|| missing(key))
    }

    fn opt_int(&mut self, key: &str) -> Result<Option<i64>, MockReply> {
        match self.0.remove(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| invalid_type(key, "integer")),
        }
    }

    fn int(&mut self, key: &str) -> Result<i64, MockReply> {
        self.opt_int(key)?.ok_or_else(|| missing(key))
    }

    /// Rejects members the command does not take.
    fn finish(&self) -> Result<(), MockReply> {
        match self.0.keys().next() {
            Some(key) => Err(MockReply::generic(format!(
                "Parameter '{key}' is unexpected"
            ))),
            None => Ok(()),
        }
    }
}

fn missing(key: &str) -> MockReply {
    MockReply::generic(format!("Parameter '{key}' is missing"))
}

fn invalid_type(key: &str, expected: &str) -> MockReply {
    MockReply::generic(format!(
        "Invalid parameter type for '{key}', expected: {expected}"
    ))
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}
