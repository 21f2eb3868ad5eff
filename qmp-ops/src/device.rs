//! Hot-plug: devices, disks, NICs and character devices, added with rollback
//! and removed once QEMU says they are gone.
//!
//! `device_del` only asks for an unplug: QEMU removes the device when the
//! guest releases it (at once for USB devices, and for PCI ones only with a
//! guest OS that answers the ACPI or PCIe request) and then sends
//! `DEVICE_DELETED`. [`DeviceDel`] completes on that event for the device's
//! id, fails on `DEVICE_UNPLUG_GUEST_ERROR`, and otherwise fails when its
//! deadline passes, saying that the unplug is still pending.

use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use qmp_io::{Call, Event, Json};
use qmp_qapi::commands;
use qmp_qapi::types;

use crate::error::{Cause, OpError};
use crate::execute::Execute;
use crate::op::{Input, Operation, Step, Want};
use crate::sequence::{Action, Sequence};
use crate::wait::Await;

/// How long [`DeviceDel`] waits by default: libvirt waits 5 s for
/// `DEVICE_DELETED` on a live unplug before reporting it as still pending,
/// and a guest that answers at all answers within that.
pub const DEFAULT_UNPLUG_TIMEOUT: Duration = Duration::from_secs(5);

/// `device_del` that completes when the device is gone: on `DEVICE_DELETED`
/// with `data.device` equal to its id. The output is that event (its
/// timestamp says when QEMU removed the device).
///
/// Fails on `DEVICE_UNPLUG_GUEST_ERROR` for the id (the guest refused; the
/// device stays), when the id does not exist (QEMU's `DeviceNotFound`;
/// nothing changed), and when the deadline passes (the unplug request stays
/// pending in QEMU; the device is still present and may go later).
#[derive(Debug)]
pub struct DeviceDel {
    id: String,
    inner: Await,
}

impl DeviceDel {
    /// Unplugs device `id`, waiting up to `timeout` for it to go.
    pub fn new(id: impl Into<String>, timeout: Duration) -> Self {
        let id = id.into();
        let call = Call::command(&commands::DeviceDel { id: id.clone() });
        let wants = vec![
            Want::event("DEVICE_DELETED").data("device", id.as_str()),
            Want::event("DEVICE_UNPLUG_GUEST_ERROR").data("device", id.as_str()),
        ];
        let inner = Await::new(call, wants, timeout).named(format!("device_del {id}"));
        Self { id, inner }
    }
}

impl Operation for DeviceDel {
    type Output = Arc<Event>;

    fn step(&mut self, input: Input, now: Instant) -> Step<Arc<Event>> {
        let id = &self.id;
        self.inner.step(input, now).map_done(|r| {
            Step::Done(match r {
                Ok(done) if done.which == 0 => Ok(done.event),
                Ok(done) => Err(OpError::new(
                    format!("device_del {id}"),
                    "waiting for DEVICE_DELETED",
                    Cause::Event(done.event),
                    format!("device {id} is still present: the guest refused to release it"),
                )),
                Err(e) if matches!(e.cause, Cause::Command(_)) => Err(e),
                Err(e) if matches!(e.cause, Cause::Deadline(_)) => {
                    let left = format!(
                        "unplug of device {id} requested and still pending: the device is \
                         present (QEMU removes it if the guest releases it later)"
                    );
                    Err(e.left(left))
                }
                Err(e) => {
                    let left =
                        format!("unplug of device {id} requested; whether it is gone is not known");
                    Err(e.left(left))
                }
            })
        })
    }
}

/// `device_add` of `device` (one command; nothing to roll back).
pub fn add(device: &commands::DeviceAdd) -> Execute<commands::DeviceAdd> {
    Execute::new(device).named(format!("device_add {}", device_name(device)))
}

fn device_name(device: &commands::DeviceAdd) -> String {
    match &device.id {
        Some(id) => format!("device {id}"),
        None => format!("a {} device", device.driver),
    }
}

fn device_undo(device: &commands::DeviceAdd) -> Option<Call> {
    device
        .id
        .as_ref()
        .map(|id| Call::command(&commands::DeviceDel { id: id.clone() }))
}

/// A disk: `blockdev-add` of `node`, then `device_add` of `device` (whose
/// `drive` property names the node). When `device_add` fails, the node is
/// deleted again with `blockdev-del`; the error says whether that worked.
/// `node` must have a `node-name`, or it could not be rolled back.
pub fn add_disk(node: &types::BlockdevOptions, device: &commands::DeviceAdd) -> Sequence {
    let name = node.node_name.clone().unwrap_or_default();
    let mut node_step = Action::new(
        Call::command(&commands::BlockdevAdd(node.clone())),
        format!("block node {name}"),
    );
    if node.node_name.is_some() {
        node_step = node_step.undo(Call::command(&commands::BlockdevDel {
            node_name: name.clone(),
        }));
    }
    Sequence::new(
        format!("add disk {name}"),
        vec![
            node_step,
            Action::new(Call::command(device), device_name(device)),
        ],
    )
}

/// A NIC: `netdev_add` of `netdev`, `device_add` of `device` (whose `netdev`
/// property names it), then, with `link_up`, `set_link` on the device. A
/// failed step undoes the earlier ones: `device_del` (the unplug request
/// only) and `netdev_del`.
pub fn add_nic(
    netdev: &types::Netdev,
    device: &commands::DeviceAdd,
    link_up: Option<bool>,
) -> Sequence {
    let mut steps = vec![
        Action::new(
            Call::command(&commands::NetdevAdd(netdev.clone())),
            format!("netdev {}", netdev.id),
        )
        .undo(Call::command(&commands::NetdevDel {
            id: netdev.id.clone(),
        })),
    ];
    let mut dev = Action::new(Call::command(device), device_name(device));
    if let Some(undo) = device_undo(device) {
        dev = dev.undo(undo);
    }
    steps.push(dev);
    if let (Some(up), Some(id)) = (link_up, &device.id) {
        let set = commands::SetLink {
            name: id.clone(),
            up,
        };
        steps.push(Action::new(
            Call::command(&set),
            format!("link state of {id}"),
        ));
    }
    Sequence::new(format!("add nic {}", netdev.id), steps)
}

/// `set_link`: a NIC's link up or down (the guest sees the cable plugged
/// or pulled).
pub fn set_link(id: &str, up: bool) -> Execute<commands::SetLink> {
    let set = commands::SetLink {
        name: id.to_owned(),
        up,
    };
    Execute::new(&set).named(format!("set_link {id}"))
}

/// `chardev-add`; the output is QEMU's `ChardevReturn` (the pty path, for
/// a pty backend).
pub fn add_chardev(id: &str, backend: &types::ChardevBackend) -> Execute<commands::ChardevAdd> {
    let add = commands::ChardevAdd {
        id: id.to_owned(),
        backend: backend.clone(),
    };
    Execute::new(&add).named(format!("chardev-add {id}"))
}

/// `chardev-change`: gives chardev `id` a new backend (QEMU keeps the old
/// one if the new one cannot be opened).
pub fn change_chardev(
    id: &str,
    backend: &types::ChardevBackend,
) -> Execute<commands::ChardevChange> {
    let change = commands::ChardevChange {
        id: id.to_owned(),
        backend: backend.clone(),
    };
    Execute::new(&change).named(format!("chardev-change {id}"))
}

/// `chardev-remove`.
pub fn remove_chardev(id: &str) -> Execute<commands::ChardevRemove> {
    let remove = commands::ChardevRemove { id: id.to_owned() };
    Execute::new(&remove).named(format!("chardev-remove {id}"))
}

/// Removes a device and then what backed it: waits for the device to go
/// ([`DeviceDel`]), then sends `then` (`blockdev-del`, `netdev_del`). When the
/// device does not go, the backend is left in place and the error says so.
#[derive(Debug)]
pub struct Remove {
    del: DeviceDel,
    then: Option<Call>,
    backend: String,
    event: Option<Arc<Event>>,
}

impl Remove {
    /// A disk: the device `device_id`, then the block node `node_name`.
    pub fn disk(device_id: &str, node_name: &str, timeout: Duration) -> Self {
        let del = commands::BlockdevDel {
            node_name: node_name.to_owned(),
        };
        Self::new(
            device_id,
            Call::command(&del),
            format!("block node {node_name}"),
            timeout,
        )
    }

    /// A NIC: the device `device_id`, then the netdev `netdev_id`.
    pub fn nic(device_id: &str, netdev_id: &str, timeout: Duration) -> Self {
        let del = commands::NetdevDel {
            id: netdev_id.to_owned(),
        };
        Self::new(
            device_id,
            Call::command(&del),
            format!("netdev {netdev_id}"),
            timeout,
        )
    }

    /// The device `device_id`, then `then`, which removes `backend`.
    pub fn new(device_id: &str, then: Call, backend: String, timeout: Duration) -> Self {
        Self {
            del: DeviceDel::new(device_id, timeout),
            then: Some(then),
            backend,
            event: None,
        }
    }
}

impl Operation for Remove {
    /// The `DEVICE_DELETED` event and the reply to the backend's removal.
    type Output = (Arc<Event>, Json);

    fn step(&mut self, input: Input, now: Instant) -> Step<Self::Output> {
        if let Some(event) = &self.event {
            return match input {
                Input::Reply(Ok(reply)) => Step::Done(Ok((event.clone(), reply))),
                Input::Reply(Err(e)) => Step::Done(Err(OpError::new(
                    format!("remove {}", self.backend),
                    "deleting the backend",
                    Cause::Command(e),
                    format!("the device is gone; {} remains", self.backend),
                ))),
                _ => Step::Wait { deadline: now },
            };
        }
        let (backend, then, slot) = (&self.backend, &mut self.then, &mut self.event);
        self.del
            .step(input, now)
            .map_done(|r| match (r, then.take()) {
                (Ok(event), Some(call)) => {
                    *slot = Some(event);
                    Step::Send { call, watch: None }
                }
                (Ok(_), None) => Step::Done(Err(OpError::new(
                    format!("remove {backend}"),
                    "deleting the backend",
                    Cause::Decode("stepped after the end".into()),
                    "unknown",
                ))),
                (Err(e), _) => {
                    let left = format!("{}; {backend} is kept", e.left);
                    Step::Done(Err(e.left(left)))
                }
            })
    }
}
