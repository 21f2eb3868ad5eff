//! The two shapes serde's derive cannot give an open schema: enums that keep
//! a value they do not know, and unions that keep a branch they do not know.

/// An enum of QAPI string values with a catch-all `Other(String)`, so a
/// value a newer QEMU adds still decodes (and encodes back unchanged).
macro_rules! qapi_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this crate does not know, as QEMU sent it.
            Other(alloc::string::String),
        }

        impl $name {
            /// Every value this crate knows.
            pub const VALUES: &'static [&'static str] = &[$($value),*];

            /// The value as QEMU spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $value => Self::$variant, )*
                    other => Self::Other(other.into()),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " string"))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        Ok($name::from(s))
                    }
                }
                d.deserialize_str(Visitor)
            }
        }
    };
}

/// The branches of a flat union, chosen by the tag member `$tag`: data
/// branches (boxed), branches without members, and `Other` keeping an unknown
/// branch's tag and members. It (de)serializes as a JSON object holding the
/// tag and the branch's members, so the union's struct flattens it beside
/// its base members.
macro_rules! qapi_union {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $tag:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $case:literal => $ty:ident, )*
        } {
            $( $(#[$umeta:meta])* $unit:ident = $ucase:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant(alloc::boxed::Box<$ty>), )*
            $( $(#[$umeta])* $unit, )*
            /// A branch this crate does not know: its tag and its members.
            /// The tag is empty when the object had none (a QEMU from
            /// before the type became a union).
            Other {
                /// The tag's value.
                tag: alloc::string::String,
                /// The branch's members.
                data: serde_json::Map<alloc::string::String, serde_json::Value>,
            },
        }

        impl $name {
            /// The tag member's value for this branch.
            pub fn tag(&self) -> &str {
                match self {
                    $( Self::$variant(_) => $case, )*
                    $( Self::$unit => $ucase, )*
                    Self::Other { tag, .. } => tag,
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = match self {
                    $( Self::$variant(v) => $crate::union::to_map::<S, _>(v)?, )*
                    $( Self::$unit => serde_json::Map::new(), )*
                    Self::Other { data, .. } => data.clone(),
                };
                if !self.tag().is_empty() {
                    map.insert($tag.into(), serde_json::Value::String(self.tag().into()));
                }
                serde::Serialize::serialize(&map, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let (tag, map) = $crate::union::split::<D>(d, $tag)?;
                Ok(match tag.as_str() {
                    $( $case => Self::$variant($crate::union::from_map::<D, _>(map)?), )*
                    $( $ucase => Self::$unit, )*
                    _ => Self::Other { tag, data: map },
                })
            }
        }
    };
}
