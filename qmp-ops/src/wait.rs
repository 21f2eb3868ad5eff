//! Sending a command and waiting for any of several events it causes, with a
//! deadline: the building block of every operation that completes on an event.

use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use qmp_io::{Call, Event, Json};

use crate::error::{Cause, OpError};
use crate::op::{Input, Operation, Step, Want, deadline};

/// What [`Await`] gives back: the command's reply and the first wanted event.
#[derive(Debug, Clone)]
pub struct Awaited {
    /// The command's `return` value.
    pub reply: Json,
    /// Which [`Want`] matched (its index in the list given to [`Await::new`]).
    pub which: usize,
    /// The event.
    pub event: Arc<Event>,
}

/// Sends a command and waits, until a deadline, for the first of several
/// events.
///
/// The events are subscribed to before the command is sent, so one that
/// QEMU sends at once (in the same read as the reply, or before it) is not
/// missed; and one QEMU stamped before the command was sent is discarded
/// (see [`Options::clock_skew`](crate::Options::clock_skew)), so an old
/// event is never taken for this command's outcome.
///
/// ```no_run
/// # fn demo(qmp: &qmp_std::Client) -> Result<(), qmp_ops::OpError> {
/// use std::time::Duration;
/// use qmp_io::Call;
/// use qmp_ops::{Await, Want};
///
/// let call = Call::new("system_reset");
/// let done = qmp_ops::run(qmp, Await::new(call, vec![Want::event("RESET")], Duration::from_secs(5)))?;
/// assert_eq!(done.event.name(), "RESET");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Await {
    operation: String,
    call: Option<Call>,
    wants: Vec<Want>,
    timeout: Duration,
    deadline: Option<Instant>,
    reply: Option<Json>,
}

impl Await {
    /// Sends `call`, then waits up to `timeout` (counted from the send) for
    /// any of `wants`.
    pub fn new(call: Call, wants: Vec<Want>, timeout: Duration) -> Self {
        Self {
            operation: call.name().to_owned(),
            call: Some(call),
            wants,
            timeout,
            deadline: None,
            reply: None,
        }
    }

    /// Replaces the events waited for.
    pub fn wanting(mut self, wants: Vec<Want>) -> Self {
        self.wants = wants;
        self
    }

    /// Names the operation in errors (default: the command's name).
    pub fn named(mut self, operation: impl Into<String>) -> Self {
        self.operation = operation.into();
        self
    }

    fn waiting_for(&self) -> String {
        let names: Vec<&str> = self.wants.iter().map(Want::name).collect();
        format!("waiting for {}", names.join(" or "))
    }

    fn fail(&self, cause: Cause) -> Step<Awaited> {
        let left = "the command was accepted; its outcome is not known";
        Step::Done(Err(OpError::new(
            &self.operation,
            self.waiting_for(),
            cause,
            left,
        )))
    }
}

/// The error of a command that failed to run: the state it left depends on
/// whether QEMU refused it (nothing changed) or the answer was lost.
pub(crate) fn command_failed(operation: &str, command: &str, e: qmp_io::Error) -> OpError {
    let left = if e.command_error().is_some() {
        "nothing changed (QEMU refused the command)"
    } else {
        "unknown: the command may or may not have run"
    };
    OpError::new(
        operation,
        format!("sending {command}"),
        Cause::Command(e),
        left,
    )
}

impl Operation for Await {
    type Output = Awaited;

    fn step(&mut self, input: Input, now: Instant) -> Step<Awaited> {
        match input {
            Input::Start => match self.call.take() {
                Some(call) => {
                    self.deadline = Some(deadline(now, self.timeout));
                    Step::Send {
                        call,
                        watch: Some(self.wants.clone()),
                    }
                }
                None => self.fail(Cause::Decode("started twice".into())),
            },
            Input::Reply(Ok(reply)) => {
                self.reply = Some(reply);
                Step::Wait {
                    deadline: self.deadline.unwrap_or(now),
                }
            }
            Input::Reply(Err(e)) => {
                Step::Done(Err(command_failed(&self.operation, &self.operation, e)))
            }
            Input::Event(which, event) => match self.reply.take() {
                Some(reply) => Step::Done(Ok(Awaited {
                    reply,
                    which,
                    event,
                })),
                None => self.fail(Cause::Decode("an event before the command was sent".into())),
            },
            Input::Timeout => self.fail(Cause::Deadline(self.timeout)),
            Input::Lagged(n) => self.fail(Cause::Lagged(n)),
            Input::Closed => self.fail(Cause::Closed),
            Input::Woke => Step::Wait {
                deadline: self.deadline.unwrap_or(now),
            },
        }
    }
}
