//! `qmp [TARGET] --info [--schema]`: the greeting, and a summary of the
//! live schema.
//!
//! Printed as one JSON object: `{"version": {"qemu": {"major", "minor",
//! "micro"}, "package"}, "capabilities": [...], "oob": NEGOTIATED}` (the
//! greeting's own shape, plus whether out-of-band execution was negotiated),
//! and with `--schema` `"schema": {"commands", "events", "types"}` (counts).

use serde::Serialize;

use qmp_std::Client;

use crate::failure::Failure;
use crate::oneshot::call_failure;
use crate::request::Request;
use crate::schema::{Schema, Summary};
use crate::target::Deadline;

#[derive(Serialize)]
struct Info<'a> {
    version: VersionInfo<'a>,
    capabilities: &'a [String],
    oob: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<Summary>,
}

#[derive(Serialize)]
struct VersionInfo<'a> {
    qemu: QemuVersion,
    package: &'a str,
}

#[derive(Serialize)]
struct QemuVersion {
    major: u64,
    minor: u64,
    micro: u64,
}

/// The greeting (and with `schema` the schema's counts) as JSON text.
pub fn info(client: &Client, schema: bool, deadline: &Deadline) -> Result<String, Failure> {
    let greeting = client.greeting();
    let schema = if schema {
        Some(fetch_schema(client, deadline)?.summary())
    } else {
        None
    };
    let info = Info {
        version: VersionInfo {
            qemu: QemuVersion {
                major: greeting.version.major,
                minor: greeting.version.minor,
                micro: greeting.version.micro,
            },
            package: &greeting.package,
        },
        capabilities: &greeting.capabilities,
        oob: greeting.oob,
        schema,
    };
    serde_json::to_string(&info).map_err(Failure::other)
}

/// The command that answers the live schema.
pub const SCHEMA_COMMAND: &str = "query-qmp-schema";

/// Fetches and reads the live schema.
pub fn fetch_schema(client: &Client, deadline: &Deadline) -> Result<Schema, Failure> {
    let reply = schema_reply(client, deadline)?;
    Schema::parse(reply.as_str())
        .map_err(|e| Failure::other(format!("cannot read the reply to {SCHEMA_COMMAND}: {e}")))
}

/// Runs `query-qmp-schema`: its reply, not yet read.
pub fn schema_reply(client: &Client, deadline: &Deadline) -> Result<qmp_std::Json, Failure> {
    let request = Request::from_tokens::<&str>(SCHEMA_COMMAND, &[])?;
    client
        .call(request.call(deadline))
        .map_err(|e| call_failure(e, SCHEMA_COMMAND, deadline))
}
