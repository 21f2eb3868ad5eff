//! The live schema: what one QEMU's `query-qmp-schema` says, read once and
//! asked many times.
//!
//! - [`Schema::supports`], [`Schema::command`], [`Schema::event`]: which
//!   commands and events this QEMU has, their arguments, return and data.
//! - [`Schema::path_exists`] and [`Schema::path_get`]: probing by path, the
//!   way libvirt does it (`"blockdev-add/arg-type/+qcow2/discard-no-unref"`).
//! - [`Schema::validate`]: raw arguments checked before they are sent, with
//!   the JSON path of the first fault.
//! - With the `io` feature, `LiveSchema`: one connection's schema, loaded
//!   on request through any `qmp-io` client and cached, and an
//!   `ArgumentCheck` for `qmp_io::Config::check_arguments`.
//!
//! Introspection hides type names (`"name": "262"`); they never show here:
//! types are reached through the command, event or member that uses them,
//! and described by their JSON type ([`TypeInfo::json_type`],
//! [`TypeInfo`]'s `Display`).
//!
//! ```
//! use qmp_qapi::schema::Schema;
//! # let reply = include_str!("../../schema/qemu-10.0.json");
//! // `reply`: the `return` of query-qmp-schema, as JSON text.
//! let schema = Schema::parse(reply)?;
//! assert!(schema.supports("blockdev-add"));
//! assert!(schema.path_exists("blockdev-add/arg-type/+qcow2/*discard-no-unref"));
//! let args = serde_json::json!({"driver": "null-co", "node-name": "n0", "size": "1M"});
//! let fault = schema.validate("blockdev-add", &args).unwrap_err();
//! assert_eq!(fault.path(), "arguments.size");
//! # Ok::<(), serde_json::Error>(())
//! ```

#[cfg(feature = "io")]
mod live;
mod parse;
mod path;
mod validate;
mod view;

use alloc::vec::Vec;

#[cfg(feature = "io")]
pub use live::LiveSchema;
pub use parse::JsonType;
pub use path::{Found, PROBE_STEPS, ProbeError, ProbeErrorKind};
pub use validate::{Fault, MAX_DEPTH, ValidationError};
pub use view::{CommandInfo, EnumValue, EventInfo, MemberInfo, MetaType, TypeInfo, VariantInfo};

use parse::{Entity, Key, Meta, Tables};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// One QEMU's schema, from its `query-qmp-schema` reply.
///
/// Read it with [`Schema::parse`] (JSON text) or any serde deserializer
/// (`Schema` implements `Deserialize`, so a client's reply decodes straight
/// into it). Entities of a kind this crate does not know are kept and
/// ignored; a type that is named but not described is an error (QEMU's
/// introspection is self-contained).
pub struct Schema {
    tables: Tables,
}

impl core::fmt::Debug for Schema {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Schema")
            .field("commands", &self.commands().count())
            .field("events", &self.events().count())
            .field("types", &self.type_count())
            .finish()
    }
}

impl<'de> serde::Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entities = Vec::<Entity>::deserialize(deserializer)?;
        Tables::new(entities)
            .map(|tables| Schema { tables })
            .map_err(serde::de::Error::custom)
    }
}

impl Schema {
    /// Reads the `return` value of `query-qmp-schema` (a JSON array of
    /// SchemaInfo). The error says what is wrong and where.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// [`parse`](Self::parse) from bytes.
    pub fn from_slice(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// True when this QEMU has command `name`.
    pub fn supports(&self, command: &str) -> bool {
        self.command(command).is_some()
    }

    /// Command `name`: its arguments, return type and features.
    pub fn command(&self, name: &str) -> Option<CommandInfo<'_>> {
        self.named(name, Meta::Command).map(|entity| CommandInfo {
            schema: self,
            entity,
        })
    }

    /// Event `name`: its data and features.
    pub fn event(&self, name: &str) -> Option<EventInfo<'_>> {
        self.named(name, Meta::Event).map(|entity| EventInfo {
            schema: self,
            entity,
        })
    }

    /// Every command, sorted by name.
    pub fn commands(&self) -> impl Iterator<Item = CommandInfo<'_>> + '_ {
        self.sorted(Meta::Command).map(|entity| CommandInfo {
            schema: self,
            entity,
        })
    }

    /// Every event, sorted by name.
    pub fn events(&self) -> impl Iterator<Item = EventInfo<'_>> + '_ {
        self.sorted(Meta::Event).map(|entity| EventInfo {
            schema: self,
            entity,
        })
    }

    /// How many types the schema describes (objects, enums, arrays,
    /// alternates and built-ins).
    pub fn type_count(&self) -> usize {
        self.tables
            .entities
            .iter()
            .filter(|e| {
                matches!(
                    e.meta,
                    Meta::Builtin | Meta::Enum | Meta::Array | Meta::Object | Meta::Alternate
                )
            })
            .count()
    }

    fn named(&self, name: &str, meta: Meta) -> Option<&Entity> {
        let entity = self.entity(self.tables.find_name(name)?);
        (entity.meta == meta).then_some(entity)
    }

    fn sorted(&self, meta: Meta) -> impl Iterator<Item = &Entity> + '_ {
        self.tables
            .by_name
            .iter()
            .map(|i| self.entity(*i))
            .filter(move |e| e.meta == meta)
    }

    fn entity(&self, index: u32) -> &Entity {
        #[allow(clippy::indexing_slicing)] // indices come only from the tables
        &self.tables.entities[index as usize]
    }

    /// The type `key` names (every reference was checked when parsing).
    fn resolve(&self, key: &Key) -> Option<TypeInfo<'_>> {
        self.tables.find(key).map(|i| TypeInfo {
            schema: self,
            entity: self.entity(i),
        })
    }
}
