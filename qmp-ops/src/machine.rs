//! The machine as a whole: powerdown that waits for `SHUTDOWN`, reset that
//! waits for `RESET`, `set-action`, and reading a ringbuf console.

use core::time::Duration;
use std::time::Instant;

use qmp_io::Call;
use qmp_qapi::commands;
use qmp_qapi::types::RingbufReadFormat;

use crate::base64;
use crate::error::{Cause, OpError};
use crate::op::{Input, Operation, Step, Want};
use crate::sequence::{Action, Sequence};
use crate::wait::{Await, Awaited, command_failed};

/// How long [`powerdown`] waits by default: 60 s, OpenStack Nova's
/// `shutdown_timeout` for a clean shutdown before it destroys the VM
/// (`libvirt-guests` is more patient, `SHUTDOWN_TIMEOUT=300`).
pub const DEFAULT_POWERDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// `system_powerdown` (the ACPI power button), then waits up to `timeout`
/// for `SHUTDOWN`. Without a guest OS that handles the button, the deadline
/// passes and the error says the VM is still running.
pub fn powerdown(timeout: Duration) -> MachineWait {
    MachineWait::new(
        Call::command(&commands::SystemPowerdown),
        "SHUTDOWN",
        timeout,
        "powerdown requested; the guest has not shut down and the VM is still running",
    )
}

/// `system_reset`, then waits up to `timeout` for `RESET`.
pub fn reset(timeout: Duration) -> MachineWait {
    MachineWait::new(
        Call::command(&commands::SystemReset),
        "RESET",
        timeout,
        "reset requested; QEMU did not report it",
    )
}

/// `set-action`: what QEMU does on a guest reboot, shutdown, panic or
/// watchdog expiry.
pub fn set_action(action: &commands::SetAction) -> Sequence {
    Sequence::new(
        "set-action",
        vec![Action::new(Call::command(action), "the new actions")],
    )
}

/// A command that completes on an event: [`powerdown`], [`reset`].
#[derive(Debug)]
pub struct MachineWait {
    inner: Await,
    pending: &'static str,
}

impl MachineWait {
    fn new(call: Call, event: &str, timeout: Duration, pending: &'static str) -> Self {
        Self {
            inner: Await::new(call, vec![Want::event(event)], timeout),
            pending,
        }
    }
}

impl Operation for MachineWait {
    type Output = Awaited;

    fn step(&mut self, input: Input, now: Instant) -> Step<Awaited> {
        let pending = self.pending;
        self.inner.step(input, now).map_done(|r| {
            Step::Done(r.map_err(|e| match e.cause {
                Cause::Command(_) => e,
                _ => e.left(pending),
            }))
        })
    }
}

/// Reads up to `size` bytes from a ringbuf chardev (a serial console),
/// taking them out of the buffer: `ringbuf-read` in base64, so every byte
/// comes back as it was, repeated until `size` bytes came or the buffer is
/// empty. The output may be shorter than `size`, never longer.
#[derive(Debug)]
pub struct RingbufRead {
    device: String,
    size: usize,
    data: Vec<u8>,
}

impl RingbufRead {
    /// Reads at most `size` bytes from chardev `device`.
    pub fn new(device: impl Into<String>, size: usize) -> Self {
        Self {
            device: device.into(),
            size,
            data: Vec::new(),
        }
    }

    fn next(&mut self) -> Step<Vec<u8>> {
        let left = self.size - self.data.len();
        if left == 0 {
            return Step::Done(Ok(core::mem::take(&mut self.data)));
        }
        let read = commands::RingbufRead {
            device: self.device.clone(),
            size: i64::try_from(left).unwrap_or(i64::MAX),
            format: Some(RingbufReadFormat::Base64),
        };
        Step::Send {
            call: Call::command(&read),
            watch: None,
        }
    }

    fn fail(&self, cause: Cause) -> Step<Vec<u8>> {
        let left = format!("{} bytes were taken out of the buffer", self.data.len());
        let op = format!("ringbuf-read {}", self.device);
        Step::Done(Err(OpError::new(op, "reading", cause, left)))
    }
}

impl Operation for RingbufRead {
    type Output = Vec<u8>;

    fn step(&mut self, input: Input, now: Instant) -> Step<Vec<u8>> {
        let json = match input {
            Input::Start => return self.next(),
            Input::Reply(Ok(json)) => json,
            Input::Reply(Err(e)) if self.data.is_empty() => {
                let op = format!("ringbuf-read {}", self.device);
                return Step::Done(Err(command_failed(&op, "ringbuf-read", e)));
            }
            Input::Reply(Err(e)) => return self.fail(Cause::Command(e)),
            _ => return Step::Wait { deadline: now },
        };
        let text: String = match json.decode() {
            Ok(text) => text,
            Err(e) => return self.fail(Cause::Decode(e.to_string())),
        };
        // The buffer holds what QEMU's ringbuf was given; a hostile or
        // broken peer may still send more than asked for.
        let room = self.size - self.data.len();
        if base64::decoded_capacity(text.len()) > room + 2 {
            let why = format!("{} base64 characters for {room} bytes", text.len());
            return self.fail(Cause::Reported(why));
        }
        let before = self.data.len();
        if let Err(e) = base64::decode_into(&text, &mut self.data) {
            return self.fail(Cause::Decode(e.to_string()));
        }
        if self.data.len() > self.size {
            self.data.truncate(before);
            return self.fail(Cause::Reported(format!(
                "more than the {room} bytes asked for"
            )));
        }
        if self.data.len() == before {
            return Step::Done(Ok(core::mem::take(&mut self.data)));
        }
        self.next()
    }
}
