//! One call, from the caller's side: what to send, and waiting for the answer
//! in a way that abandons the command when the caller gives up.

use core::time::Duration;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use qmp_proto::{Client, Command, GuestAgent, Heap, Id};

use crate::error::{Error, Result};
use crate::json::Json;
use crate::session::{Answer, Protocol, Session, Submitted};
use crate::slot::Slot;

/// A command with per-call options: raw JSON arguments, out-of-band
/// execution, a timeout that overrides the client's default, and file
/// descriptors to pass with it.
///
/// ```
/// use std::time::Duration;
/// use qmp_io::Call;
/// let call = Call::new("query-block")
///     .timeout(Some(Duration::from_millis(500)));
/// # let _ = call;
/// ```
#[derive(Debug)]
#[must_use]
pub struct Call {
    pub(crate) name: String,
    pub(crate) arguments: Option<String>,
    pub(crate) oob: bool,
    pub(crate) timeout: Option<Option<Duration>>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Call {
    /// A call of command `name` without arguments.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            arguments: None,
            oob: false,
            timeout: None,
            fds: Vec::new(),
        }
    }

    /// A call of command `name` with optional raw JSON arguments.
    pub(crate) fn raw(name: &str, arguments: Option<&str>) -> Self {
        let call = Self::new(name);
        match arguments {
            Some(a) => call.arguments(a),
            None => call,
        }
    }

    /// A call of a typed command (its arguments serialized now).
    pub fn command<C: Command>(command: &C) -> Result<Self> {
        let args = serde_json::to_string(command).map_err(|e| Error::Decode(Arc::new(e)))?;
        Ok(Self::raw(
            C::NAME,
            (args != "null").then_some(args.as_str()),
        ))
    }

    /// Sets the arguments: one JSON object, as text (checked before sending).
    pub fn arguments(mut self, json: impl Into<String>) -> Self {
        self.arguments = Some(json.into());
        self
    }

    /// Sends it with `exec-oob` (needs oob negotiated).
    pub fn oob(mut self) -> Self {
        self.oob = true;
        self
    }

    /// Overrides the client's default timeout (`None`: no timeout).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Passes a duplicate of `fd` with the command's bytes (SCM_RIGHTS).
    pub fn fd(self, fd: BorrowedFd<'_>) -> io::Result<Self> {
        Ok(self.owned_fd(fd.try_clone_to_owned()?))
    }

    /// Passes `fd` with the command's bytes (closed here once sent).
    pub fn owned_fd(mut self, fd: OwnedFd) -> Self {
        self.fds.push(fd);
        self
    }

    /// The command name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What `add-fd` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
pub struct AddFdInfo {
    /// The fd set the descriptor went into (use as `/dev/fdset/ID`).
    #[serde(rename = "fdset-id")]
    pub fdset_id: u64,
    /// The descriptor's number inside QEMU.
    pub fd: i64,
}

/// The arguments of the fd commands, built once for every driver.
pub(crate) mod fd_args {
    use crate::call::Call;

    fn string(s: &str) -> String {
        serde_json::Value::from(s).to_string()
    }

    pub(crate) fn getfd(name: &str) -> Call {
        Call::new("getfd").arguments(format!("{{\"fdname\":{}}}", string(name)))
    }

    pub(crate) fn closefd(name: &str) -> Call {
        Call::new("closefd").arguments(format!("{{\"fdname\":{}}}", string(name)))
    }

    pub(crate) fn add_fd(fdset_id: Option<u64>, opaque: Option<&str>) -> Call {
        let mut args = serde_json::Map::new();
        if let Some(id) = fdset_id {
            args.insert("fdset-id".into(), id.into());
        }
        if let Some(o) = opaque {
            args.insert("opaque".into(), o.into());
        }
        Call::new("add-fd").arguments(serde_json::Value::Object(args).to_string())
    }

    pub(crate) fn remove_fd(fdset_id: u64, fd: Option<i64>) -> Call {
        let args = match fd {
            Some(fd) => format!("{{\"fdset-id\":{fdset_id},\"fd\":{fd}}}"),
            None => format!("{{\"fdset-id\":{fdset_id}}}"),
        };
        Call::new("remove-fd").arguments(args)
    }
}

/// Queues a QMP call.
pub(crate) fn submit_qmp(session: &Session<Client<Heap>>, call: Call) -> Result<Submitted> {
    let Call {
        name,
        arguments,
        oob,
        fds,
        ..
    } = call;
    session.submit(&name, fds, |c| {
        let args = arguments.as_deref();
        if oob {
            c.send_command_raw_oob(&name, args).map(Some)
        } else {
            c.send_command_raw(&name, args).map(Some)
        }
    })
}

/// Queues a typed QMP command without an intermediate string.
pub(crate) fn submit_qmp_typed<C: Command>(
    session: &Session<Client<Heap>>,
    command: &C,
    oob: bool,
) -> Result<Submitted> {
    session.submit(C::NAME, Vec::new(), |c| {
        if oob {
            c.send_command_oob(command).map(Some)
        } else {
            c.send_command(command).map(Some)
        }
    })
}

/// Queues a guest-agent call (`None` id: the agent sends no reply).
pub(crate) fn submit_agent(session: &Session<GuestAgent<Heap>>, call: Call) -> Result<Submitted> {
    if call.oob {
        return Err(Error::Usage(qmp_proto::UsageError::OobNotNegotiated));
    }
    let Call {
        name,
        arguments,
        fds,
        ..
    } = call;
    session.submit(&name, fds, |a| {
        a.send_command_raw(&name, arguments.as_deref())
    })
}

/// Queues a typed guest-agent command.
pub(crate) fn submit_agent_typed<C: Command>(
    session: &Session<GuestAgent<Heap>>,
    command: &C,
) -> Result<Submitted> {
    session.submit(C::NAME, Vec::new(), |a| a.send_command(command))
}

/// Refuses fds that `call` cannot pass, before it waits for its turn to: on
/// a connection that cannot pass any, or more than one message carries.
pub(crate) fn check_fds(call: &Call, can_pass: bool) -> Result<()> {
    if !can_pass {
        return Err(Error::FdPassingUnsupported);
    }
    if call.fds.len() > crate::fd::MAX_FDS_PER_MESSAGE {
        return Err(Error::TooManyFds {
            count: call.fds.len(),
        });
    }
    Ok(())
}

/// The caller's side of a queued command. Dropping it before the answer came
/// abandons the command, so its late reply is dropped, never misdelivered.
pub(crate) struct Waiting<'a, P: Protocol> {
    session: &'a Session<P>,
    id: Option<Id>,
    pub(crate) slot: Arc<Slot<Answer>>,
}

impl<'a, P: Protocol> Waiting<'a, P> {
    pub(crate) fn new(session: &'a Session<P>, submitted: Submitted) -> Self {
        Self {
            session,
            id: submitted.id,
            slot: submitted.slot,
        }
    }

    /// Turns what the wait produced into the call's result: `None` means the
    /// timeout struck first.
    pub(crate) fn finish(
        mut self,
        answer: Option<Answer>,
        timeout: Option<Duration>,
    ) -> Result<Json> {
        match answer {
            Some(answer) => {
                self.id = None;
                answer
            }
            None => {
                if let Some(id) = self.id.take() {
                    self.session.abandon(id);
                }
                Err(Error::Timeout(timeout.unwrap_or_default()))
            }
        }
    }
}

impl<P: Protocol> Drop for Waiting<'_, P> {
    fn drop(&mut self) {
        if let Some(id) = self.id
            && !self.slot.is_filled()
        {
            self.session.abandon(id);
        }
    }
}

/// Decodes a typed command's return value.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(json: &Json) -> Result<T> {
    json.decode().map_err(|e| Error::Decode(Arc::new(e)))
}
