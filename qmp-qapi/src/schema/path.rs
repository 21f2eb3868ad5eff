//! Probing the schema by path, with libvirt's query syntax
//! (`virQEMUQAPISchemaPathGet` in libvirt's `src/qemu/qemu_qapi.c`).
//!
//! A query is components separated by `/`:
//!
//! - first, a command or event name;
//! - then `arg-type` (a command's arguments, an event's data) or `ret-type`
//!   (a command's return value);
//! - then, into an object: `name` selects member `name`; `*name` selects it
//!   only if it is optional; `+case` selects the union branch for tag value
//!   `case`;
//! - arrays are passed through to their element type; alternates are tried
//!   branch by branch, the first that answers wins;
//! - last, optionally, a test: `^value` (the enum has `value`), `^value/$f`
//!   (that enum value has feature `f`), `!json` (the built-in has JSON type
//!   `json`: `string`, `int`, `number`, `boolean`, `null`, `value`), `$f`
//!   (the command, event or object has feature `f`).
//!
//! A component that starts with anything but an ASCII letter has that first
//! character taken as its modifier: a name that starts with a digit is
//! written with a leading space (`" 9p"`).

use alloc::string::{String, ToString};
use core::fmt;

use super::Schema;
use super::parse::{Entity, Meta};
use super::view::{CommandInfo, EventInfo, MemberInfo, TypeInfo};

/// Steps one query may take through the schema at most: a well-formed
/// schema needs a few dozen; a schema whose types contain each other
/// through alternates could otherwise be walked for ever.
pub const PROBE_STEPS: usize = 1000;

/// What a query found.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Found<'a> {
    /// The query named a command and nothing more.
    Command(CommandInfo<'a>),
    /// The query named an event and nothing more.
    Event(EventInfo<'a>),
    /// The query ended on a member: its name, optionality, type, features.
    Member(MemberInfo<'a>),
    /// The query ended on a type (the arguments', a branch's, an array's
    /// element).
    Type(TypeInfo<'a>),
    /// The query ended with a test (`^value`, `!json`, `$feature`) that holds.
    Holds,
}

/// A query that cannot be answered: malformed, or a schema that loops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    /// The whole query.
    pub query: String,
    /// What is wrong.
    pub kind: ProbeErrorKind,
}

/// What is wrong with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeErrorKind {
    /// The query is empty.
    Empty,
    /// A test (`^`, `!`, `$`) that must end the query is followed by more.
    NotLast {
        /// The test component.
        component: String,
    },
    /// The walk took more than [`PROBE_STEPS`] steps.
    TooManySteps,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProbeErrorKind::Empty => f.write_str("empty schema query"),
            ProbeErrorKind::NotLast { component } => write!(
                f,
                "schema query `{}`: `{component}` is a test and must be its last component",
                self.query
            ),
            ProbeErrorKind::TooManySteps => write!(
                f,
                "schema query `{}`: more than {PROBE_STEPS} steps (the schema's types loop)",
                self.query
            ),
        }
    }
}

impl core::error::Error for ProbeError {}

/// A component split into its modifier (when it starts with a non-letter)
/// and the name after it.
fn split(component: &str) -> (Option<char>, &str) {
    match component.chars().next() {
        Some(c) if !c.is_ascii_alphabetic() => (Some(c), &component[c.len_utf8()..]),
        _ => (None, component),
    }
}

fn has_feature<'f>(
    mut features: impl Iterator<Item = &'f str>,
    name: &str,
) -> Option<Found<'static>> {
    features.any(|f| f == name).then_some(Found::Holds)
}

type Step<'a> = Result<Option<Found<'a>>, ProbeErrorKind>;

impl Schema {
    /// True when `query` finds something: a member, a branch, a type, or a
    /// test that holds. A malformed query is `false`; see
    /// [`path_get`](Self::path_get) for the reason. The syntax is libvirt's
    /// (see below).
    ///
    /// ```
    /// # let schema = qmp_qapi::schema::Schema::parse(include_str!("../../schema/qemu-10.0.json")).unwrap();
    /// assert!(schema.path_exists("blockdev-add/arg-type/+qcow2/discard-no-unref"));
    /// assert!(schema.path_exists("query-status/ret-type/status/^running"));
    /// assert!(schema.path_exists("blockdev-add/arg-type/node-name/!string"));
    /// assert!(!schema.path_exists("blockdev-add/arg-type/+qcow2/no-such-member"));
    /// ```
    ///
    /// Query syntax: components separated by `/`. First a command or event
    /// name; then `arg-type` (arguments, or an event's data) or `ret-type`
    /// (return value); then into objects: `name` (member), `*name` (member,
    /// only if optional), `+case` (union branch); arrays pass through to
    /// their element, alternates try each branch. A query may end with a
    /// test: `^value` (enum value; `^value/$feature` for its feature),
    /// `!json` (JSON type of a built-in: `string`, `int`, `number`,
    /// `boolean`, `null`, `value`), `$feature` (of a command, event or
    /// object). A name starting with a non-letter is written after a space.
    pub fn path_exists(&self, query: &str) -> bool {
        matches!(self.path_get(query), Ok(Some(_)))
    }

    /// What `query` finds (`None`: nothing), or why it cannot be answered.
    /// The syntax is [`path_exists`](Self::path_exists)'s.
    pub fn path_get(&self, query: &str) -> Result<Option<Found<'_>>, ProbeError> {
        let error = |kind| ProbeError {
            query: query.to_string(),
            kind,
        };
        if query.is_empty() {
            return Err(error(ProbeErrorKind::Empty));
        }
        let mut components = query.split('/');
        let first = components.next().unwrap_or_default();
        let rest: alloc::vec::Vec<&str> = components.collect();
        let Some(index) = self.tables.find_name(first) else {
            return Ok(None);
        };
        let entity = self.entity(index);
        let mut steps = 0;
        self.top(entity, &rest, &mut steps).map_err(error)
    }

    fn top<'a>(&'a self, entity: &'a Entity, rest: &[&str], steps: &mut usize) -> Step<'a> {
        let (is_command, found) = match entity.meta {
            Meta::Command => (
                true,
                Found::Command(CommandInfo {
                    schema: self,
                    entity,
                }),
            ),
            Meta::Event => (
                false,
                Found::Event(EventInfo {
                    schema: self,
                    entity,
                }),
            ),
            _ => return Ok(None),
        };
        let Some((component, rest)) = rest.split_first() else {
            return Ok(Some(found));
        };
        match split(component) {
            (Some('$'), feature) => {
                last(component, rest)?;
                Ok(has_feature(entity.features.iter().map(|f| &**f), feature))
            }
            (Some(_), _) => Ok(None),
            (None, "arg-type") => match entity.arg_type.as_ref().and_then(|k| self.resolve(k)) {
                Some(ty) => self.walk(ty, rest, steps),
                None => Ok(None),
            },
            (None, "ret-type") if is_command => {
                match entity.ret_type.as_ref().and_then(|k| self.resolve(k)) {
                    Some(ty) => self.walk(ty, rest, steps),
                    None => Ok(None),
                }
            }
            (None, _) => Ok(None),
        }
    }

    fn walk<'a>(&'a self, ty: TypeInfo<'a>, rest: &[&str], steps: &mut usize) -> Step<'a> {
        *steps = steps.saturating_add(1);
        if *steps > PROBE_STEPS {
            return Err(ProbeErrorKind::TooManySteps);
        }
        let Some((component, after)) = rest.split_first() else {
            return Ok(Some(Found::Type(ty)));
        };
        let (modifier, name) = split(component);
        match ty.entity.meta {
            Meta::Array => match ty.element() {
                Some(element) => self.walk(element, rest, steps),
                None => Ok(None),
            },
            Meta::Alternate => {
                for branch in ty.branches() {
                    let found = self.walk(branch, rest, steps)?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                Ok(None)
            }
            Meta::Object => match modifier {
                Some('^' | '!') => Ok(None),
                Some('$') => {
                    last(component, after)?;
                    Ok(has_feature(ty.features(), name))
                }
                Some('+') => match ty.variant(name).and_then(|v| v.ty()) {
                    Some(branch) => self.walk(branch, after, steps),
                    None => Ok(None),
                },
                _ => match ty.member(name) {
                    Some(m) if modifier == Some('*') && !m.optional() => Ok(None),
                    Some(m) if after.is_empty() => Ok(Some(Found::Member(m))),
                    Some(m) => match m.ty() {
                        Some(member_ty) => self.walk(member_ty, after, steps),
                        None => Ok(None),
                    },
                    None => Ok(None),
                },
            },
            Meta::Enum => {
                if modifier != Some('^') {
                    return Ok(None);
                }
                let feature = match after {
                    [] => None,
                    [f] => match split(f) {
                        (Some('$'), feature) => Some(feature),
                        _ => return Err(not_last(component)),
                    },
                    _ => return Err(not_last(component)),
                };
                let Some(value) = ty.values().find(|v| v.name() == name) else {
                    return Ok(None);
                };
                Ok(match feature {
                    Some(feature) => has_feature(value.features(), feature),
                    None => Some(Found::Holds),
                })
            }
            Meta::Builtin => {
                if modifier != Some('!') {
                    return Ok(None);
                }
                last(component, after)?;
                let json = ty.json_type().map_or("value", |j| j.name());
                Ok((json == name).then_some(Found::Holds))
            }
            Meta::Command | Meta::Event | Meta::Other => Ok(None),
        }
    }
}

fn not_last(component: &str) -> ProbeErrorKind {
    ProbeErrorKind::NotLast {
        component: component.to_string(),
    }
}

fn last(component: &str, after: &[&str]) -> Result<(), ProbeErrorKind> {
    if after.is_empty() {
        Ok(())
    } else {
        Err(not_last(component))
    }
}
