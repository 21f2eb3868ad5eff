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

/// A command with per-call options: arguments, out-of-band execution, a
/// timeout that overrides the client's default, and file descriptors to pass
/// with it.
///
/// ```
/// use std::time::Duration;
/// use qmp_io::Call;
/// let call = Call::new("query-block")
///     .timeout(Some(Duration::from_millis(500)));
/// let eject = Call::new("eject").arguments(serde_json::json!({"id": "cd0", "force": true}));
/// # let _ = (call, eject);
/// ```
#[derive(Debug)]
#[must_use]
pub struct Call {
    pub(crate) name: String,
    /// The arguments as JSON text, or why they could not be serialized.
    pub(crate) arguments: core::result::Result<Option<String>, Arc<serde_json::Error>>,
    pub(crate) oob: bool,
    pub(crate) timeout: Option<Option<Duration>>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Call {
    /// A call of command `name` without arguments.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            arguments: Ok(None),
            oob: false,
            timeout: None,
            fds: Vec::new(),
        }
    }

    /// A call of a typed command (its arguments serialized now).
    pub fn command<C: Command>(command: &C) -> Self {
        Self::new(C::NAME).arguments(command)
    }

    /// Sets the arguments: anything that serializes to one JSON object (a
    /// struct, `serde_json::json!({..})`, a map, a `&RawValue` or a [`Json`]
    /// holding an object); `()` or `None` sends none. Serialized now; an
    /// error is returned by the call ([`Error::Encode`]), and a value that is
    /// not an object is refused before sending ([`Error::Usage`]).
    pub fn arguments(mut self, arguments: impl serde::Serialize) -> Self {
        self.arguments = match serde_json::to_string(&arguments) {
            Ok(text) if text == "null" => Ok(None),
            Ok(text) => Ok(Some(text)),
            Err(e) => Err(Arc::new(e)),
        };
        self
    }

    /// Sets the arguments as JSON text, one object (checked before sending).
    pub fn arguments_text(mut self, json: impl Into<String>) -> Self {
        self.arguments = Ok(Some(json.into()));
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

    /// The arguments as JSON text (`None`: none), for transports that carry
    /// whole commands; [`Error::Encode`] when they did not serialize.
    pub fn arguments_json(&self) -> Result<Option<&str>> {
        match &self.arguments {
            Ok(text) => Ok(text.as_deref()),
            Err(e) => Err(Error::Encode(e.clone())),
        }
    }

    /// True when it is to be sent with `exec-oob`.
    pub fn is_oob(&self) -> bool {
        self.oob
    }

    /// The timeout it overrides the client's default with, if any.
    pub fn timeout_override(&self) -> Option<Option<Duration>> {
        self.timeout
    }

    /// How many file descriptors go with it.
    pub fn fd_count(&self) -> usize {
        self.fds.len()
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
    use serde_json::json;

    use crate::call::Call;

    pub(crate) fn getfd(name: &str) -> Call {
        Call::new("getfd").arguments(json!({ "fdname": name }))
    }

    pub(crate) fn closefd(name: &str) -> Call {
        Call::new("closefd").arguments(json!({ "fdname": name }))
    }

    pub(crate) fn add_fd(fdset_id: Option<u64>, opaque: Option<&str>) -> Call {
        #[derive(serde::Serialize)]
        struct AddFd<'a> {
            #[serde(rename = "fdset-id", skip_serializing_if = "Option::is_none")]
            fdset_id: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            opaque: Option<&'a str>,
        }
        Call::new("add-fd").arguments(AddFd { fdset_id, opaque })
    }

    pub(crate) fn remove_fd(fdset_id: u64, fd: Option<i64>) -> Call {
        #[derive(serde::Serialize)]
        struct RemoveFd {
            #[serde(rename = "fdset-id")]
            fdset_id: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            fd: Option<i64>,
        }
        Call::new("remove-fd").arguments(RemoveFd { fdset_id, fd })
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
    let arguments = arguments.map_err(Error::Encode)?;
    session.config.check(&name, arguments.as_deref())?;
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
    check_typed(session, command)?;
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
    let arguments = arguments.map_err(Error::Encode)?;
    session.config.check(&name, arguments.as_deref())?;
    session.submit(&name, fds, |a| {
        a.send_command_raw(&name, arguments.as_deref())
    })
}

/// Queues a typed guest-agent command.
pub(crate) fn submit_agent_typed<C: Command>(
    session: &Session<GuestAgent<Heap>>,
    command: &C,
) -> Result<Submitted> {
    check_typed(session, command)?;
    session.submit(C::NAME, Vec::new(), |a| a.send_command(command))
}

/// Runs the connection's argument check on a typed command, serializing
/// its arguments for it only when there is a check.
fn check_typed<P: Protocol, C: Command>(session: &Session<P>, command: &C) -> Result<()> {
    if session.config.argument_check.is_none() {
        return Ok(());
    }
    let text = serde_json::to_string(command).map_err(|e| Error::Encode(Arc::new(e)))?;
    let arguments = (text != "null").then_some(text.as_str());
    session.config.check(C::NAME, arguments)
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
