//! One typed command as an operation, for composing and for the streams of
//! progress reports.

use std::time::Instant;

use qmp_io::{Call, Command};

use crate::error::{Cause, OpError};
use crate::op::{Input, Operation, Step};
use crate::wait::command_failed;

/// Sends one typed command and decodes its answer.
#[derive(Debug)]
pub struct Execute<C: Command> {
    operation: String,
    call: Option<Call>,
    command: core::marker::PhantomData<fn() -> C>,
}

impl<C: Command> Execute<C> {
    /// Runs `command`.
    pub fn new(command: &C) -> Self {
        Self {
            operation: C::NAME.to_owned(),
            call: Some(Call::command(command)),
            command: core::marker::PhantomData,
        }
    }

    /// Names the operation in errors, such as `chardev-add ring1`.
    pub fn named(mut self, operation: impl Into<String>) -> Self {
        self.operation = operation.into();
        self
    }
}

impl<C: Command> Operation for Execute<C>
where
    C::Returns: serde::de::DeserializeOwned,
{
    type Output = C::Returns;

    fn step(&mut self, input: Input, now: Instant) -> Step<C::Returns> {
        match input {
            Input::Start => match self.call.take() {
                Some(call) => Step::Send { call, watch: None },
                None => Step::Wait { deadline: now },
            },
            Input::Reply(Ok(json)) => Step::Done(json.decode().map_err(|e| {
                OpError::new(
                    C::NAME,
                    "decoding the answer",
                    Cause::Decode(e.to_string()),
                    "nothing changed",
                )
            })),
            Input::Reply(Err(e)) => Step::Done(Err(command_failed(&self.operation, C::NAME, e))),
            _ => Step::Wait { deadline: now },
        }
    }
}
