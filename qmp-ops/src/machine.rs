//! The machine as a whole: powerdown that waits for `SHUTDOWN`, reset that
//! waits for `RESET`, `set-action`, and reading a ringbuf console.

use core::time::Duration;
use std::time::Instant;

use qmp_io::Call;
use qmp_qapi::commands;
use qmp_qapi::types::DataFormat;

use crate::base64;
use crate::error::{Cause, OpError};
use crate::execute::Execute;
use crate::op::{Input, Operation, Step, Want};
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

/// `balloon` to `bytes` of guest RAM, then waits up to `timeout` for
/// `BALLOON_CHANGE` with `actual` equal to `bytes`. The guest's balloon
/// driver does the work; without one the deadline passes and the error says
/// the target stays set. (QEMU sends `BALLOON_CHANGE` at most once a second.)
pub fn balloon(bytes: i64, timeout: Duration) -> MachineWait {
    let mut op = MachineWait::new(
        Call::command(&commands::Balloon { value: bytes }),
        "BALLOON_CHANGE",
        timeout,
        "the balloon target is set; the guest has not reached it",
    );
    op.inner = op
        .inner
        .wanting(vec![Want::event("BALLOON_CHANGE").data("actual", bytes)]);
    op
}

/// `set-action`: what QEMU does on a guest reboot, shutdown, panic or
/// watchdog expiry.
pub fn set_action(action: &commands::SetAction) -> Execute<commands::SetAction> {
    Execute::new(action)
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
            format: Some(DataFormat::Base64),
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

/// `dump-guest-memory` of the whole guest RAM to `path` (an ELF core), run
/// in the background (`detach`) and completing on `DUMP_COMPLETED`; fails
/// with the event's `error`. QEMU has no way to stop a dump, so the
/// deadline error says it may still be writing.
#[derive(Debug)]
pub struct DumpGuestMemory {
    inner: Await,
    path: String,
}

impl DumpGuestMemory {
    /// Dumps to the host file `path`, waiting up to `timeout`.
    pub fn new(path: &str, timeout: Duration) -> Self {
        let dump = commands::DumpGuestMemory {
            paging: false,
            protocol: format!("file:{path}"),
            detach: Some(true),
            begin: None,
            length: None,
            format: None,
        };
        let inner = Await::new(
            Call::command(&dump),
            vec![Want::event("DUMP_COMPLETED")],
            timeout,
        )
        .named(format!("dump-guest-memory {path}"));
        Self {
            inner,
            path: path.to_owned(),
        }
    }
}

impl Operation for DumpGuestMemory {
    /// The `DUMP_COMPLETED` event (its `result` has the sizes).
    type Output = Awaited;

    fn step(&mut self, input: Input, now: Instant) -> Step<Awaited> {
        let path = &self.path;
        self.inner.step(input, now).map_done(|r| {
            Step::Done(match r {
                Ok(done) => match done.event.decode::<qmp_qapi::events::DumpCompleted>() {
                    Ok(d) if d.error.is_none() => Ok(done),
                    Ok(d) => Err(OpError::new(
                        format!("dump-guest-memory {path}"),
                        "dumping",
                        Cause::Reported(d.error.unwrap_or_default()),
                        format!("the dump failed; {path} may hold part of it"),
                    )),
                    Err(e) => Err(OpError::new(
                        format!("dump-guest-memory {path}"),
                        "reading DUMP_COMPLETED",
                        Cause::Decode(e.to_string()),
                        "the dump ended; its outcome is not known",
                    )),
                },
                Err(e) if matches!(e.cause, Cause::Command(_)) => Err(e),
                Err(e) => {
                    let left = format!("the dump may still be writing {path}");
                    Err(e.left(left))
                }
            })
        })
    }
}

/// `screendump` of the primary console to `path` (PPM; PNG where QEMU has it).
pub fn screendump(path: &str) -> Execute<commands::Screendump> {
    let dump = commands::Screendump {
        filename: path.to_owned(),
        device: None,
        head: None,
        format: None,
    };
    Execute::new(&dump).named(format!("screendump {path}"))
}

/// Plugs a CPU into the first free slot `query-hotpluggable-cpus` lists,
/// as device `id` (the machine needs `-smp N,maxcpus=M` with room). The
/// output is the slot's properties. Unplugging is [`DeviceDel`] of `id`,
/// which needs a guest that lets the CPU go.
///
/// [`DeviceDel`]: crate::device::DeviceDel
#[derive(Debug)]
pub struct AddCpu {
    id: String,
    props: Option<serde_json::Map<String, serde_json::Value>>,
}

impl AddCpu {
    /// A new CPU as device `id`.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            props: None,
        }
    }

    fn fail(
        &self,
        step: &str,
        cause: Cause,
        left: &str,
    ) -> Step<serde_json::Map<String, serde_json::Value>> {
        Step::Done(Err(OpError::new(
            format!("add cpu {}", self.id),
            step,
            cause,
            left,
        )))
    }
}

impl Operation for AddCpu {
    type Output = serde_json::Map<String, serde_json::Value>;

    fn step(&mut self, input: Input, now: Instant) -> Step<Self::Output> {
        let reply = match input {
            Input::Start => {
                return Step::Send {
                    call: Call::command(&commands::QueryHotpluggableCpus),
                    watch: None,
                };
            }
            Input::Reply(reply) => reply,
            _ => return Step::Wait { deadline: now },
        };
        if let Some(props) = self.props.take() {
            return match reply {
                Ok(_) => Step::Done(Ok(props)),
                Err(e) => Step::Done(Err(command_failed(
                    &format!("add cpu {}", self.id),
                    "device_add",
                    e,
                ))),
            };
        }
        let slots: Vec<serde_json::Value> = match reply.map(|j| j.decode()) {
            Ok(Ok(slots)) => slots,
            Ok(Err(e)) => {
                return self.fail(
                    "query-hotpluggable-cpus",
                    Cause::Decode(e.to_string()),
                    "nothing changed",
                );
            }
            Err(e) => {
                return Step::Done(Err(command_failed(
                    &format!("add cpu {}", self.id),
                    "query-hotpluggable-cpus",
                    e,
                )));
            }
        };
        let free = slots.iter().find(|s| s.get("qom-path").is_none());
        let Some((driver, Some(props))) =
            free.map(|s| (s["type"].as_str().unwrap_or(""), s["props"].as_object()))
        else {
            return self.fail(
                "finding a free slot",
                Cause::Reported(format!("no free CPU slot among {}", slots.len())),
                "nothing changed",
            );
        };
        let mut add = props.clone();
        add.insert("driver".into(), driver.into());
        add.insert("id".into(), self.id.clone().into());
        self.props = Some(props.clone());
        Step::Send {
            call: Call::new("device_add").arguments(add),
            watch: None,
        }
    }
}

/// `query-sev-capabilities`: `None` when this QEMU or host has no SEV
/// (QEMU answers with an error then).
#[derive(Debug, Default)]
pub struct SevCapabilities;

impl Operation for SevCapabilities {
    type Output = Option<qmp_qapi::types::SevCapability>;

    fn step(&mut self, input: Input, now: Instant) -> Step<Self::Output> {
        match input {
            Input::Start => Step::Send {
                call: Call::command(&commands::QuerySevCapabilities),
                watch: None,
            },
            Input::Reply(Ok(json)) => Step::Done(json.decode().map(Some).map_err(|e| {
                OpError::new(
                    "query-sev-capabilities",
                    "reading",
                    Cause::Decode(e.to_string()),
                    "nothing changed",
                )
            })),
            Input::Reply(Err(e)) if e.command_error().is_some() => Step::Done(Ok(None)),
            Input::Reply(Err(e)) => Step::Done(Err(command_failed(
                "query-sev-capabilities",
                "query-sev-capabilities",
                e,
            ))),
            _ => Step::Wait { deadline: now },
        }
    }
}
