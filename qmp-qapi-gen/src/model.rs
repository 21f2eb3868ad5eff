//! One captured schema: its masked type names (`"262"`) resolved to readable
//! ones, through the hand-kept table or from where the type is used.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::case::upper_camel;

/// A member's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Ty {
    /// `str`, `int`, `number`, `bool`, `null`, `any`.
    Builtin(String),
    Named(String),
    Array(Box<Ty>),
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) ty: Ty,
    pub(crate) optional: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Def {
    Object {
        members: Vec<Member>,
        tag: Option<String>,
        /// (case, branch type)
        variants: Vec<(String, String)>,
    },
    Enum {
        values: Vec<String>,
    },
    Alternate {
        members: Vec<Ty>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Command {
    /// The argument object's type name.
    pub(crate) args: String,
    pub(crate) ret: Ty,
    pub(crate) oob: bool,
}

/// One schema with readable names.
#[derive(Debug, Default)]
pub(crate) struct Version {
    pub(crate) types: BTreeMap<String, Def>,
    pub(crate) commands: BTreeMap<String, Command>,
    /// Event name -> its data's type name.
    pub(crate) events: BTreeMap<String, String>,
    /// Type name -> the keys it is reached by (`StatusInfo.status`).
    pub(crate) uses: BTreeMap<String, Vec<String>>,
    /// Types named by their use, not by the table: (key, name).
    pub(crate) derived: Vec<(String, String)>,
}

/// The hand-kept table: key -> QAPI name.
pub(crate) type Table = HashMap<String, String>;

/// Parses `key = Name` lines; `#` starts a comment.
pub(crate) fn parse_table(text: &str) -> Result<Table, String> {
    let mut table = Table::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (key, name) = line
            .rsplit_once('=')
            .ok_or_else(|| format!("names table line {}: expected `key = Name`", n + 1))?;
        if table
            .insert(key.trim().to_owned(), name.trim().to_owned())
            .is_some()
        {
            return Err(format!("names table line {}: key repeated", n + 1));
        }
    }
    Ok(table)
}

const BUILTINS: &[&str] = &["str", "int", "number", "bool", "null", "any"];

struct Raw<'a> {
    entries: HashMap<&'a str, &'a Value>,
}

impl<'a> Raw<'a> {
    fn get(&self, name: &str) -> Result<&'a Value, String> {
        self.entries
            .get(name)
            .copied()
            .ok_or_else(|| format!("schema refers to unknown type {name:?}"))
    }

    fn meta(&self, name: &str) -> Result<&'a str, String> {
        Ok(self.get(name)?["meta-type"].as_str().unwrap_or(""))
    }

    /// Strips arrays: `[[262]]` -> 262, depth 2.
    fn element(&self, name: &'a str) -> Result<(&'a str, usize), String> {
        let mut name = name;
        let mut depth = 0;
        while !BUILTINS.contains(&name) && self.meta(name)? == "array" {
            name = self.get(name)?["element-type"].as_str().unwrap_or("");
            depth += 1;
        }
        Ok((name, depth))
    }

    /// The edges out of a type: (label, target masked name) where the label
    /// is appended to the parent's name to make the child's key.
    fn edges(&self, name: &'a str) -> Result<Vec<(String, &'a str)>, String> {
        let v = self.get(name)?;
        let mut out = Vec::new();
        match v["meta-type"].as_str() {
            Some("object") => {
                for m in v["members"].as_array().into_iter().flatten() {
                    let (t, _) = self.element(m["type"].as_str().unwrap_or(""))?;
                    out.push((format!(".{}", m["name"].as_str().unwrap_or("")), t));
                }
                let tag = v["tag"].as_str().unwrap_or("");
                for c in v["variants"].as_array().into_iter().flatten() {
                    let t = c["type"].as_str().unwrap_or("");
                    out.push((format!(".{tag}={}", c["case"].as_str().unwrap_or("")), t));
                }
            }
            Some("alternate") => {
                for m in v["members"].as_array().into_iter().flatten() {
                    let (t, depth) = self.element(m["type"].as_str().unwrap_or(""))?;
                    let kind = if depth > 0 {
                        "array"
                    } else if BUILTINS.contains(&t) {
                        t
                    } else {
                        self.meta(t)?
                    };
                    out.push((format!("|{kind}"), t));
                }
            }
            _ => {}
        }
        Ok(out
            .into_iter()
            .filter(|(_, t)| !BUILTINS.contains(t))
            .collect())
    }
}

/// Loads one schema (of QEMU `version`) and names its types. A table key
/// `key@version` applies to that version only, and before a plain `key`.
pub(crate) fn load(schema: &Value, table: &Table, version: &str) -> Result<Version, String> {
    let list = schema.as_array().ok_or("schema is not a JSON array")?;
    let raw = Raw {
        entries: list
            .iter()
            .filter_map(|e| Some((e["name"].as_str()?, e)))
            .collect(),
    };
    let mut commands: Vec<&Value> = list
        .iter()
        .filter(|e| e["meta-type"] == "command")
        .collect();
    commands.sort_by_key(|e| e["name"].as_str());
    let mut events: Vec<&Value> = list.iter().filter(|e| e["meta-type"] == "event").collect();
    events.sort_by_key(|e| e["name"].as_str());

    // Roots: (key, derived name, masked type). Commands' arguments get the
    // command's own name: most are used nowhere else.
    let mut roots: Vec<(String, String, &str)> = Vec::new();
    for c in &commands {
        let name = c["name"].as_str().unwrap_or("");
        let args = c["arg-type"].as_str().unwrap_or("");
        roots.push((name.to_owned(), upper_camel(name), args));
        let (ret, _) = raw.element(c["ret-type"].as_str().unwrap_or(""))?;
        roots.push((
            format!("{name}.ret"),
            format!("{}Return", upper_camel(name)),
            ret,
        ));
    }
    for e in &events {
        let name = e["name"].as_str().unwrap_or("");
        let data = e["arg-type"].as_str().unwrap_or("");
        roots.push((name.to_owned(), upper_camel(name), data));
    }

    // Every type reachable, in a stable order (breadth first from the roots),
    // and the edges into it.
    let mut order: Vec<&str> = Vec::new();
    let mut incoming: HashMap<&str, Vec<(Option<&str>, String)>> = HashMap::new();
    for (key, _, t) in &roots {
        if BUILTINS.contains(t) {
            continue;
        }
        if !incoming.contains_key(t) {
            order.push(t);
        }
        incoming.entry(t).or_default().push((None, key.clone()));
    }
    let mut i = 0;
    while i < order.len() {
        let parent = order[i];
        for (label, t) in raw.edges(parent)? {
            if !incoming.contains_key(t) {
                order.push(t);
            }
            incoming.entry(t).or_default().push((Some(parent), label));
        }
        i += 1;
    }
    // The empty object stands for "no arguments" / "no result".
    let empty: Vec<&str> = order
        .iter()
        .copied()
        .filter(|t| {
            let v = raw.entries[t];
            v["meta-type"] == "object"
                && v["members"].as_array().is_none_or(|m| m.is_empty())
                && v.get("variants").is_none()
        })
        .collect();

    let mut names: HashMap<&str, String> = HashMap::new();
    let mut taken: Vec<String> = Vec::new();
    // Names made from a use keep clear of every name the table gives, so a
    // table name found later never meets a derived one.
    let mut reserved: Vec<String> = table.values().cloned().collect();
    let mut derived = Vec::new();
    let keys_of = |t: &str, names: &HashMap<&str, String>| -> Vec<String> {
        incoming[t]
            .iter()
            .filter_map(|(parent, label)| match parent {
                None => Some(label.clone()),
                Some(p) => names.get(p).map(|n| format!("{n}{label}")),
            })
            .collect()
    };
    loop {
        // Table names first, to a fixed point: a named parent may name its
        // children.
        let mut changed = true;
        while changed {
            changed = false;
            for t in &order {
                if names.contains_key(t) {
                    continue;
                }
                let keys = keys_of(t, &names);
                let name = keys
                    .iter()
                    .find_map(|k| table.get(&format!("{k}@{version}")))
                    .or_else(|| keys.iter().find_map(|k| table.get(k)));
                if let Some(name) = name {
                    if taken.contains(name) {
                        return Err(format!("names table gives {name} to two types"));
                    }
                    taken.push(name.clone());
                    names.insert(t, name.clone());
                    changed = true;
                }
            }
        }
        // Then the first unnamed type in order is named after its first use.
        let Some(t) = order.iter().copied().find(|t| !names.contains_key(t)) else {
            break;
        };
        let (parent, label) = &incoming[t][0];
        let (key, base) = match parent {
            None => {
                let (_, base, _) = roots.iter().find(|(k, _, _)| k == label).expect("root");
                (label.clone(), base.clone())
            }
            Some(p) => {
                let pn = names.get(p).ok_or("parent unnamed")?;
                let suffix = label.rsplit(['.', '=', '|']).next().unwrap_or("");
                (
                    format!("{pn}{label}"),
                    format!("{pn}{}", upper_camel(suffix)),
                )
            }
        };
        let name = if empty.contains(&t) {
            "Empty".to_owned()
        } else {
            let name = crate::case::unique(base, &mut reserved);
            taken.push(name.clone());
            name
        };
        derived.push((key, name.clone()));
        names.insert(t, name);
    }

    let ty = |t: &str| -> Result<Ty, String> {
        let (e, depth) = raw.element(t)?;
        let mut ty = if BUILTINS.contains(&e) {
            Ty::Builtin(e.to_owned())
        } else {
            Ty::Named(names[e].clone())
        };
        for _ in 0..depth {
            ty = Ty::Array(Box::new(ty));
        }
        Ok(ty)
    };

    let mut out = Version {
        derived,
        ..Version::default()
    };
    for t in &order {
        let name = names[t].clone();
        let v = raw.entries[t];
        let def = match v["meta-type"].as_str() {
            Some("object") => {
                let mut members = Vec::new();
                for m in v["members"].as_array().into_iter().flatten() {
                    members.push(Member {
                        name: m["name"].as_str().unwrap_or("").to_owned(),
                        ty: ty(m["type"].as_str().unwrap_or(""))?,
                        optional: m.get("default").is_some(),
                    });
                }
                let variants = v["variants"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        (
                            c["case"].as_str().unwrap_or("").to_owned(),
                            names[c["type"].as_str().unwrap_or("")].clone(),
                        )
                    })
                    .collect();
                Def::Object {
                    members,
                    tag: v["tag"].as_str().map(str::to_owned),
                    variants,
                }
            }
            Some("enum") => Def::Enum {
                values: v["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
            },
            Some("alternate") => {
                let mut members = Vec::new();
                for m in v["members"].as_array().into_iter().flatten() {
                    members.push(ty(m["type"].as_str().unwrap_or(""))?);
                }
                Def::Alternate { members }
            }
            other => return Err(format!("type {t}: unexpected meta-type {other:?}")),
        };
        out.types.insert(name.clone(), def);
        out.uses.insert(name, keys_of(t, &names));
    }
    for c in &commands {
        let name = c["name"].as_str().unwrap_or("").to_owned();
        let args = names[c["arg-type"].as_str().unwrap_or("")].clone();
        out.commands.insert(
            name,
            Command {
                args,
                ret: ty(c["ret-type"].as_str().unwrap_or(""))?,
                oob: c["allow-oob"].as_bool().unwrap_or(false),
            },
        );
    }
    for e in &events {
        let name = e["name"].as_str().unwrap_or("").to_owned();
        out.events
            .insert(name, names[e["arg-type"].as_str().unwrap_or("")].clone());
    }
    Ok(out)
}
