//! The schema of one connection, fetched on request and used to check
//! every call before it is sent.

extern crate std;

use alloc::boxed::Box;
use alloc::sync::Arc;
use std::sync::RwLock;

use qmp_io::{ArgumentCheck, AsyncQmp, CheckError, Qmp};

use super::Schema;

/// The command that answers the schema.
const QUERY: &str = "query-qmp-schema";

/// A connection's live schema: empty until [`load`](Self::load)ed, then
/// the QEMU's own. Clones share it. As an [`ArgumentCheck`] it passes
/// everything until loaded, then validates every call with
/// [`Schema::validate_str`]. It is for QMP connections: a guest agent has
/// no `query-qmp-schema`, and a QMP schema knows none of its commands.
///
/// ```no_run
/// use qmp_qapi::schema::LiveSchema;
/// use qmp_io::{Config, Qmp};
///
/// # fn run(connect: impl Fn(Config) -> qmp_io::Result<qmp_io::blocking::Client>) -> qmp_io::Result<()> {
/// let schema = LiveSchema::new();
/// let qmp = connect(Config::default().check_arguments(schema.clone()))?;
/// schema.load(&qmp)?; // query-qmp-schema, once
/// assert!(schema.get().is_some_and(|s| s.supports("blockdev-add")));
/// // Refused before sending: Error::InvalidArguments, path arguments.sise.
/// let refused = qmp.execute_raw("blockdev-add", serde_json::json!({"driver": "null-co", "sise": 1}));
/// assert!(matches!(refused, Err(qmp_io::Error::InvalidArguments { .. })));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct LiveSchema {
    slot: Arc<RwLock<Option<Arc<Schema>>>>,
}

impl LiveSchema {
    /// An empty slot: every check passes until a schema is loaded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The schema, once loaded.
    pub fn get(&self) -> Option<Arc<Schema>> {
        match self.slot.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `schema` in the slot (replacing any).
    pub fn set(&self, schema: Schema) -> Arc<Schema> {
        let schema = Arc::new(schema);
        match self.slot.write() {
            Ok(mut slot) => *slot = Some(schema.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(schema.clone()),
        }
        schema
    }

    /// The schema: the cached one, or fetched now with `query-qmp-schema`
    /// through `qmp` and cached. A reply that is not a schema is
    /// [`Error::Decode`](qmp_io::Error::Decode).
    pub fn load(&self, qmp: &impl Qmp) -> qmp_io::Result<Arc<Schema>> {
        if let Some(schema) = self.get() {
            return Ok(schema);
        }
        let reply = qmp.execute_raw(QUERY, ())?;
        Ok(self.set(decode(&reply)?))
    }

    /// [`load`](Self::load) for an async client.
    pub async fn load_async(&self, qmp: &impl AsyncQmp) -> qmp_io::Result<Arc<Schema>> {
        if let Some(schema) = self.get() {
            return Ok(schema);
        }
        let reply = qmp.execute_raw(QUERY, ()).await?;
        Ok(self.set(decode(&reply)?))
    }
}

fn decode(reply: &qmp_io::Json) -> qmp_io::Result<Schema> {
    Schema::parse(reply.as_str()).map_err(|e| qmp_io::Error::Decode(Arc::new(e)))
}

impl ArgumentCheck for LiveSchema {
    fn check(&self, command: &str, arguments: Option<&str>) -> Result<(), CheckError> {
        match self.get() {
            Some(schema) => schema
                .validate_str(command, arguments)
                .map_err(|e| Box::new(e) as CheckError),
            None => Ok(()),
        }
    }
}
