//! The union of the schemas: every command, event, type, member and enum
//! value, each with the set of QEMUs that have it.

use std::collections::BTreeMap;

use crate::model::{Def, Ty, Version};

/// A set of schema versions, one bit each (bit i = `VERSIONS[i]`).
pub(crate) type Mask = u8;

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) ty: Ty,
    pub(crate) present: Mask,
    /// Optional in these versions.
    pub(crate) optional: Mask,
    /// Its type differed between versions, so it is kept as raw JSON.
    pub(crate) conflict: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Def2 {
    Object {
        members: Vec<Member>,
        tag: Option<String>,
        variants: Vec<(String, String, Mask)>,
    },
    Enum {
        values: Vec<(String, Mask)>,
    },
    Alternate {
        members: Vec<(Ty, Mask)>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Type {
    pub(crate) def: Def2,
    pub(crate) present: Mask,
    pub(crate) uses: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub(crate) args: String,
    pub(crate) ret: Ty,
    pub(crate) oob: bool,
    pub(crate) present: Mask,
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) data: String,
    pub(crate) present: Mask,
}

#[derive(Debug, Default)]
pub(crate) struct Merged {
    pub(crate) types: BTreeMap<String, Type>,
    pub(crate) commands: BTreeMap<String, Command>,
    pub(crate) events: BTreeMap<String, Event>,
    pub(crate) warnings: Vec<String>,
}

fn push_unique<T: PartialEq>(list: &mut Vec<(T, Mask)>, item: T, bit: Mask) {
    match list.iter_mut().find(|(t, _)| *t == item) {
        Some((_, m)) => *m |= bit,
        None => list.push((item, bit)),
    }
}

/// A string member that became an enum (or back) stays typed: open enums
/// take any string.
fn widen(a: &Ty, b: &Ty, versions: &[Version]) -> Option<Ty> {
    let is_enum = |t: &Ty| match t {
        Ty::Named(n) => versions
            .iter()
            .any(|v| matches!(v.types.get(n), Some(Def::Enum { .. }))),
        _ => false,
    };
    let is_str = |t: &Ty| matches!(t, Ty::Builtin(b) if b == "str");
    let shape = |t: &Ty| -> Option<Vec<(String, Ty, bool)>> {
        let Ty::Named(n) = t else { return None };
        versions.iter().find_map(|v| match v.types.get(n) {
            Some(Def::Object {
                members, tag: None, ..
            }) => Some(
                members
                    .iter()
                    .map(|m| (m.name.clone(), m.ty.clone(), m.optional))
                    .collect(),
            ),
            _ => None,
        })
    };
    if let (Ty::Array(x), Ty::Array(y)) = (a, b) {
        return widen(x, y, versions).map(|t| Ty::Array(Box::new(t)));
    }
    if a != b && shape(a).is_some() && shape(a) == shape(b) {
        // The same members under two names (QAPI's `String` became
        // `FdSocketAddress`): the newer name.
        return Some(b.clone());
    }
    if is_str(a) && is_enum(b) {
        Some(b.clone())
    } else if is_enum(a) && is_str(b) {
        Some(a.clone())
    } else {
        None
    }
}

pub(crate) fn merge(versions: &[Version]) -> Merged {
    let mut out = Merged::default();
    for (i, v) in versions.iter().enumerate() {
        let bit: Mask = 1 << i;
        for (name, def) in &v.types {
            let uses = &v.uses[name];
            let entry = out.types.entry(name.clone()).or_insert_with(|| Type {
                def: match def {
                    Def::Object { tag, .. } => Def2::Object {
                        members: Vec::new(),
                        tag: tag.clone(),
                        variants: Vec::new(),
                    },
                    Def::Enum { .. } => Def2::Enum { values: Vec::new() },
                    Def::Alternate { .. } => Def2::Alternate {
                        members: Vec::new(),
                    },
                },
                present: 0,
                uses: Vec::new(),
            });
            entry.present |= bit;
            for u in uses {
                if !entry.uses.contains(u) {
                    entry.uses.push(u.clone());
                }
            }
            match (&mut entry.def, def) {
                (
                    Def2::Object {
                        members,
                        tag,
                        variants,
                    },
                    Def::Object {
                        members: new,
                        tag: new_tag,
                        variants: new_variants,
                    },
                ) => {
                    if tag.is_none() {
                        tag.clone_from(new_tag);
                    } else if new_tag.is_some() && new_tag != tag {
                        out.warnings
                            .push(format!("{name}: tag {tag:?} vs {new_tag:?}; first kept"));
                    }
                    for m in new {
                        match members.iter_mut().find(|x| x.name == m.name) {
                            Some(x) => {
                                x.present |= bit;
                                if m.optional {
                                    x.optional |= bit;
                                }
                                if let Some(t) = widen(&x.ty, &m.ty, versions) {
                                    x.ty = t;
                                } else if x.ty != m.ty {
                                    out.warnings.push(format!(
                                        "{name}.{}: {:?} vs {:?}: kept as raw JSON",
                                        m.name, x.ty, m.ty
                                    ));
                                    x.conflict = true;
                                }
                            }
                            None => members.push(Member {
                                name: m.name.clone(),
                                ty: m.ty.clone(),
                                present: bit,
                                optional: if m.optional { bit } else { 0 },
                                conflict: false,
                            }),
                        }
                    }
                    for (case, t) in new_variants {
                        match variants.iter_mut().find(|(c, _, _)| c == case) {
                            Some((_, old, m)) => {
                                *m |= bit;
                                if old != t {
                                    out.warnings.push(format!(
                                        "{name} case {case}: {old} vs {t}; newer kept"
                                    ));
                                    old.clone_from(t);
                                }
                            }
                            None => variants.push((case.clone(), t.clone(), bit)),
                        }
                    }
                }
                (Def2::Enum { values }, Def::Enum { values: new }) => {
                    for v in new {
                        push_unique(values, v.clone(), bit);
                    }
                }
                (Def2::Alternate { members }, Def::Alternate { members: new }) => {
                    for t in new {
                        push_unique(members, t.clone(), bit);
                    }
                }
                _ => out.warnings.push(format!(
                    "{name}: a different kind of type in QEMU {i}; ignored"
                )),
            }
        }
        for (name, c) in &v.commands {
            match out.commands.get_mut(name) {
                Some(x) => {
                    x.present |= bit;
                    x.oob |= c.oob;
                    if x.args != c.args {
                        out.warnings.push(format!(
                            "{name}: arguments {} vs {}; newer kept",
                            x.args, c.args
                        ));
                        x.args.clone_from(&c.args);
                    }
                    if x.ret != c.ret {
                        out.warnings.push(format!(
                            "{name}: returns {:?} vs {:?}; raw JSON",
                            x.ret, c.ret
                        ));
                        x.ret = Ty::Builtin("any".to_owned());
                    }
                }
                None => {
                    out.commands.insert(
                        name.clone(),
                        Command {
                            args: c.args.clone(),
                            ret: c.ret.clone(),
                            oob: c.oob,
                            present: bit,
                        },
                    );
                }
            }
        }
        for (name, data) in &v.events {
            let e = out.events.entry(name.clone()).or_insert_with(|| Event {
                data: data.clone(),
                present: 0,
            });
            e.present |= bit;
            if &e.data != data {
                out.warnings
                    .push(format!("{name}: data {} vs {data}; newer kept", e.data));
                e.data.clone_from(data);
            }
        }
    }
    out
}
