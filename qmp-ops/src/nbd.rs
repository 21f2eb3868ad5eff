//! NBD: serving nodes to other programs. [`serve`] starts the server (if
//! asked) and adds an export, undoing the server when the export fails;
//! [`unexport`] deletes an export and waits for `BLOCK_EXPORT_DELETED`,
//! which QEMU sends only once every client has let go.

use core::time::Duration;

use qmp_io::Call;
use qmp_qapi::commands;
use serde_json::json;

use crate::op::Want;
use crate::sequence::{Action, Sequence};
use crate::wait::Await;

/// An NBD server on the unix socket `path` (`nbd-server-start`, undone
/// with `nbd-server-stop` if the export fails) exporting `node` as `name`
/// with export id `id`, read-only unless `writable`.
pub fn serve(path: &str, id: &str, node: &str, name: &str, writable: bool) -> Sequence {
    let start = json!({"addr": {"type": "unix", "data": {"path": path}}});
    let start = crate::block::typed_call::<commands::NbdServerStart>(start);
    let export = json!({
        "type": "nbd", "id": id, "node-name": node, "name": name, "writable": writable,
    });
    let export = crate::block::typed_call::<commands::BlockExportAdd>(export);
    Sequence::new(
        format!("nbd export {name}"),
        vec![
            Action::new(start, format!("the NBD server on {path}"))
                .undo(Call::command(&commands::NbdServerStop)),
            Action::new(export, format!("export {id}")),
        ],
    )
}

/// `block-export-del` of export `id`, completing on its
/// `BLOCK_EXPORT_DELETED` (QEMU deletes an export only when its clients are
/// gone); then stop the server with [`stop_server`] if it serves nothing else.
pub fn unexport(id: &str, timeout: Duration) -> Await {
    let del = commands::BlockExportDel {
        id: id.to_owned(),
        mode: None,
    };
    Await::new(
        Call::command(&del),
        vec![Want::event("BLOCK_EXPORT_DELETED").data("id", id)],
        timeout,
    )
    .named(format!("block-export-del {id}"))
}

/// `nbd-server-stop`.
pub fn stop_server() -> crate::Execute<commands::NbdServerStop> {
    crate::Execute::new(&commands::NbdServerStop)
}
