//! Views into a [`Schema`]: commands, events, types, members. They borrow
//! the schema and never show the masked type names.

use core::fmt;

use super::Schema;
use super::parse::{Entity, JsonType, Member, Meta, Variant};

/// How deep [`TypeInfo`]'s `Display` describes nested types.
const DESCRIBE_DEPTH: usize = 3;
/// How many types [`TypeInfo`]'s `Display` describes at most: alternates
/// branch at every level, and a hostile one could have thousands of branches.
const DESCRIBE_TYPES: usize = 64;

/// A command of the schema.
#[derive(Clone, Copy)]
pub struct CommandInfo<'a> {
    pub(super) schema: &'a Schema,
    pub(super) entity: &'a Entity,
}

impl<'a> CommandInfo<'a> {
    /// Its name.
    pub fn name(&self) -> &'a str {
        self.entity.name.as_str().unwrap_or_default()
    }

    /// The type of its `arguments` (an object, a union, or the empty object).
    pub fn arguments(&self) -> Option<TypeInfo<'a>> {
        self.schema.resolve(self.entity.arg_type.as_ref()?)
    }

    /// The type of its `return` value.
    pub fn returns(&self) -> Option<TypeInfo<'a>> {
        self.schema.resolve(self.entity.ret_type.as_ref()?)
    }

    /// True when it may be sent with `exec-oob`.
    pub fn allow_oob(&self) -> bool {
        self.entity.allow_oob
    }

    /// Its features (`deprecated`, `unstable`, ...).
    pub fn features(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.entity.features.iter().map(|f| &**f)
    }
}

impl fmt::Debug for CommandInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandInfo")
            .field("name", &self.name())
            .finish()
    }
}

/// An event of the schema.
#[derive(Clone, Copy)]
pub struct EventInfo<'a> {
    pub(super) schema: &'a Schema,
    pub(super) entity: &'a Entity,
}

impl<'a> EventInfo<'a> {
    /// Its name.
    pub fn name(&self) -> &'a str {
        self.entity.name.as_str().unwrap_or_default()
    }

    /// The type of its `data`.
    pub fn data(&self) -> Option<TypeInfo<'a>> {
        self.schema.resolve(self.entity.arg_type.as_ref()?)
    }

    /// Its features.
    pub fn features(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.entity.features.iter().map(|f| &**f)
    }
}

impl fmt::Debug for EventInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventInfo")
            .field("name", &self.name())
            .finish()
    }
}

/// What kind of type a [`TypeInfo`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetaType {
    /// A built-in JSON type (`int`, `str`, `bool`, `number`, `null`, `any`).
    Builtin(JsonType),
    /// An enum: a string from a fixed list.
    Enum,
    /// An array.
    Array,
    /// An object; a union when it has a tag and branches.
    Object,
    /// One of several types, told apart by JSON type.
    Alternate,
    /// A meta-type this crate does not know (a newer QEMU's); accepts anything.
    Unknown,
}

/// A type of the schema, reached through a command, an event or a member.
#[derive(Clone, Copy)]
pub struct TypeInfo<'a> {
    pub(super) schema: &'a Schema,
    pub(super) entity: &'a Entity,
}

impl<'a> TypeInfo<'a> {
    /// What kind of type it is.
    pub fn meta_type(&self) -> MetaType {
        match self.entity.meta {
            Meta::Builtin => MetaType::Builtin(self.entity.json.unwrap_or(JsonType::Value)),
            Meta::Enum => MetaType::Enum,
            Meta::Array => MetaType::Array,
            Meta::Object => MetaType::Object,
            Meta::Alternate => MetaType::Alternate,
            Meta::Command | Meta::Event | Meta::Other => MetaType::Unknown,
        }
    }

    /// The JSON type its values have; `None` for an alternate (one of its
    /// branches' types) and `Some(Value)` for anything.
    pub fn json_type(&self) -> Option<JsonType> {
        Some(match self.meta_type() {
            MetaType::Builtin(json) => json,
            MetaType::Enum => JsonType::String,
            MetaType::Array => JsonType::Array,
            MetaType::Object => JsonType::Object,
            MetaType::Alternate => return None,
            MetaType::Unknown => JsonType::Value,
        })
    }

    /// The type's features.
    pub fn features(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.entity.features.iter().map(|f| &**f)
    }

    /// An object's members (a union's common members; the branches add
    /// theirs, see [`variants`](Self::variants)). Empty for other types.
    pub fn members(&self) -> impl Iterator<Item = MemberInfo<'a>> + 'a {
        let schema = self.schema;
        let members: &'a [Member] = match self.entity.meta {
            Meta::Object => &self.entity.members,
            _ => &[],
        };
        members
            .iter()
            .map(move |member| MemberInfo { schema, member })
    }

    /// An object's member `name` (common members only).
    pub fn member(&self, name: &str) -> Option<MemberInfo<'a>> {
        self.members().find(|m| m.name() == name)
    }

    /// A union's tag: the member whose value picks the branch.
    pub fn tag(&self) -> Option<&'a str> {
        match self.entity.meta {
            Meta::Object => self.entity.tag.as_deref(),
            _ => None,
        }
    }

    /// A union's branches.
    pub fn variants(&self) -> impl Iterator<Item = VariantInfo<'a>> + 'a {
        let schema = self.schema;
        let variants: &'a [Variant] = match self.entity.meta {
            Meta::Object => &self.entity.variants,
            _ => &[],
        };
        variants
            .iter()
            .map(move |variant| VariantInfo { schema, variant })
    }

    /// A union's branch for tag value `case`.
    pub fn variant(&self, case: &str) -> Option<VariantInfo<'a>> {
        self.variants().find(|v| v.case() == case)
    }

    /// An enum's values, with their features.
    pub fn values(&self) -> impl Iterator<Item = EnumValue<'a>> + 'a {
        let members: &'a [Member] = match self.entity.meta {
            Meta::Enum => &self.entity.members,
            _ => &[],
        };
        members.iter().map(|member| EnumValue { member })
    }

    /// An array's element type.
    pub fn element(&self) -> Option<TypeInfo<'a>> {
        match self.entity.meta {
            Meta::Array => self.schema.resolve(self.entity.element.as_ref()?),
            _ => None,
        }
    }

    /// An alternate's branches.
    pub fn branches(&self) -> impl Iterator<Item = TypeInfo<'a>> + 'a {
        let schema = self.schema;
        let members: &'a [Member] = match self.entity.meta {
            Meta::Alternate => &self.entity.members,
            _ => &[],
        };
        members
            .iter()
            .filter_map(move |m| schema.resolve(m.ty.as_ref()?))
    }

    /// True when both views are the same type.
    pub fn same(&self, other: &TypeInfo<'_>) -> bool {
        core::ptr::eq(self.entity, other.entity)
    }

    fn describe(
        &self,
        f: &mut fmt::Formatter<'_>,
        depth: usize,
        budget: &mut usize,
    ) -> fmt::Result {
        // Every call spends from the budget, also one that only says "...".
        *budget = budget.saturating_sub(1);
        if depth > DESCRIBE_DEPTH || *budget == 0 {
            return f.write_str("...");
        }
        match self.meta_type() {
            MetaType::Builtin(JsonType::Value) => f.write_str("any"),
            MetaType::Builtin(json) => write!(f, "{json}"),
            MetaType::Enum => {
                f.write_str("one of ")?;
                for (i, v) in self.values().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(v.name())?;
                }
                Ok(())
            }
            MetaType::Array => match self.element() {
                Some(element) => {
                    f.write_str("[")?;
                    element.describe(f, depth.saturating_add(1), budget)?;
                    f.write_str("]")
                }
                None => f.write_str("array"),
            },
            MetaType::Alternate => {
                for (i, branch) in self.branches().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    if *budget == 0 {
                        return f.write_str("...");
                    }
                    branch.describe(f, depth.saturating_add(1), budget)?;
                }
                Ok(())
            }
            MetaType::Object => f.write_str("object"),
            MetaType::Unknown => f.write_str("any"),
        }
    }
}

/// A short description: built-ins by JSON type (`int`, `string`), enums
/// with their values (`one of a, b`), arrays as `[T]`, alternates as
/// `A | B`, objects as `object`.
impl fmt::Display for TypeInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f, 0, &mut DESCRIBE_TYPES.clone())
    }
}

impl fmt::Debug for TypeInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypeInfo")
            .field("meta_type", &self.meta_type())
            .finish()
    }
}

/// A member of an object.
#[derive(Clone, Copy)]
pub struct MemberInfo<'a> {
    schema: &'a Schema,
    member: &'a Member,
}

impl<'a> MemberInfo<'a> {
    /// Its name.
    pub fn name(&self) -> &'a str {
        self.member.name.as_deref().unwrap_or_default()
    }

    /// True when it may be left out.
    pub fn optional(&self) -> bool {
        self.member.default
    }

    /// Its type.
    pub fn ty(&self) -> Option<TypeInfo<'a>> {
        self.schema.resolve(self.member.ty.as_ref()?)
    }

    /// Its features.
    pub fn features(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.member.features.iter().map(|f| &**f)
    }
}

impl fmt::Debug for MemberInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberInfo")
            .field("name", &self.name())
            .field("optional", &self.optional())
            .finish()
    }
}

/// A branch of a union: the tag value that picks it, and its members' type.
#[derive(Clone, Copy)]
pub struct VariantInfo<'a> {
    schema: &'a Schema,
    variant: &'a Variant,
}

impl<'a> VariantInfo<'a> {
    /// The tag value that picks it.
    pub fn case(&self) -> &'a str {
        &self.variant.case
    }

    /// The object type of the members it adds.
    pub fn ty(&self) -> Option<TypeInfo<'a>> {
        self.schema.resolve(&self.variant.ty)
    }
}

impl fmt::Debug for VariantInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VariantInfo")
            .field("case", &self.case())
            .finish()
    }
}

/// A value of an enum.
#[derive(Clone, Copy)]
pub struct EnumValue<'a> {
    member: &'a Member,
}

impl<'a> EnumValue<'a> {
    /// The value.
    pub fn name(&self) -> &'a str {
        self.member.name.as_deref().unwrap_or_default()
    }

    /// Its features (`deprecated`, ...).
    pub fn features(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.member.features.iter().map(|f| &**f)
    }
}

impl fmt::Debug for EnumValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnumValue")
            .field("name", &self.name())
            .finish()
    }
}
