//! Reads QEMU's QAPI source schema (`qapi/*.json` of a QEMU checkout) to
//! learn what introspection hides: the name of every type, the exact integer
//! type of every member, and the module each command and event is defined in.
//!
//! Nothing here runs when the catalogue is generated: `--from-source DIR`
//! writes what it learns into the hand-kept tables (`names.txt`, `ints.txt`,
//! `modules.txt`), which are committed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde_json::{Map, Value};

use crate::model::{self, Def, Table, Ty, Version};

/// QAPI's built-in types: introspection shows every integer type as `int`.
const BUILTINS: &[&str] = &[
    "str", "int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "size",
    "number", "bool", "null", "any", "QType",
];

/// The integer types that are not plain `int`/`int64`.
pub(crate) const INT_TYPES: &[&str] = &[
    "int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64", "size",
];

/// Parses one QAPI schema file: a sequence of expressions in Python literal
/// syntax (single-quoted strings, `#` comments, `true`/`false`).
pub(crate) fn parse(text: &str) -> Result<Vec<Value>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip();
        if p.i >= p.s.len() {
            return Ok(out);
        }
        out.push(p.value()?);
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip(&mut self) {
        while let Some(&c) = self.s.get(self.i) {
            if c == b'#' {
                while self.s.get(self.i).is_some_and(|&c| c != b'\n') {
                    self.i += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn err(&self, what: &str) -> String {
        let line = self.s[..self.i.min(self.s.len())]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
            + 1;
        format!("line {line}: {what}")
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.skip();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected `{}`", c as char)))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut map = Map::new();
                loop {
                    self.skip();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(map));
                    }
                    let Value::String(key) = self.value()? else {
                        return Err(self.err("expected a string key"));
                    };
                    self.expect(b':')?;
                    let v = self.value()?;
                    map.insert(key, v);
                    self.skip();
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut list = Vec::new();
                loop {
                    self.skip();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(list));
                    }
                    list.push(self.value()?);
                    self.skip();
                    if self.s.get(self.i) == Some(&b',') {
                        self.i += 1;
                    }
                }
            }
            Some(b'\'') => {
                self.i += 1;
                let start = self.i;
                while self.s.get(self.i).is_some_and(|&c| c != b'\'') {
                    self.i += 1;
                }
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.expect(b'\'')?;
                Ok(Value::String(text))
            }
            _ if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Value::Bool(true))
            }
            _ if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Value::Bool(false))
            }
            _ => Err(self.err("unexpected character")),
        }
    }
}

/// The definitions of one QAPI source tree.
#[derive(Debug, Default)]
pub(crate) struct Source {
    /// Type name -> its definition.
    types: HashMap<String, Value>,
    /// Command name -> its definition.
    commands: HashMap<String, Value>,
    /// Event name -> its definition.
    events: HashMap<String, Value>,
    /// Command or event name -> the module (file stem) that defines it.
    pub(crate) modules: BTreeMap<String, String>,
}

/// Reads every `*.json` in `dir` (a QEMU checkout's `qapi/`).
pub(crate) fn load_dir(dir: &Path) -> Result<Source, String> {
    let mut src = Source::default();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_owned();
        for expr in parse(&text).map_err(|e| format!("{}: {e}", path.display()))? {
            for kind in ["struct", "union", "alternate", "enum", "command", "event"] {
                let Some(name) = expr.get(kind).and_then(Value::as_str) else {
                    continue;
                };
                let name = name.to_owned();
                match kind {
                    "command" => {
                        src.modules.insert(name.clone(), module.clone());
                        src.commands.insert(name, expr.clone());
                    }
                    "event" => {
                        src.modules.insert(name.clone(), module.clone());
                        src.events.insert(name, expr.clone());
                    }
                    _ => {
                        src.types.insert(name, expr.clone());
                    }
                }
            }
        }
    }
    Ok(src)
}

/// A type as the source writes it: a name, or an implicit object (the
/// members of a command's arguments or an event's data written in place).
#[derive(Debug, Clone)]
enum SrcTy<'a> {
    Named(&'a str),
    Implicit(&'a Map<String, Value>),
}

/// `'Foo'`, `['Foo']`, `{'type': 'Foo', 'if': ...}` -> (`Foo`, array depth).
fn type_ref(v: &Value) -> Option<(&str, usize)> {
    match v {
        Value::String(s) => Some((s, 0)),
        Value::Array(a) => type_ref(a.first()?).map(|(s, d)| (s, d + 1)),
        Value::Object(o) => type_ref(o.get("type")?),
        _ => None,
    }
}

impl Source {
    /// The members of an object type, with the base's first:
    /// member name -> its type as written.
    fn members<'a>(&'a self, ty: &SrcTy<'a>, out: &mut BTreeMap<String, &'a Value>) {
        let data = match ty {
            SrcTy::Implicit(m) => Some(*m),
            SrcTy::Named(n) => {
                let Some(def) = self.types.get(*n) else {
                    return;
                };
                match def.get("base") {
                    Some(Value::String(b)) => self.members(&SrcTy::Named(b), out),
                    Some(Value::Object(b)) => self.members(&SrcTy::Implicit(b), out),
                    _ => {}
                }
                if def.get("union").is_some() {
                    None
                } else {
                    def.get("data").and_then(Value::as_object)
                }
            }
        };
        for (k, v) in data.into_iter().flatten() {
            out.insert(k.trim_start_matches('*').to_owned(), v);
        }
    }

    /// What a command's arguments or an event's data is.
    fn data<'a>(&'a self, def: &'a Value) -> Option<SrcTy<'a>> {
        match def.get("data")? {
            Value::String(s) => Some(SrcTy::Named(s)),
            Value::Object(o) => Some(SrcTy::Implicit(o)),
            _ => None,
        }
    }

    /// The JSON kind of a type for matching an alternate's branches.
    fn kind(&self, name: &str, depth: usize) -> &'static str {
        if depth > 0 {
            return "array";
        }
        match name {
            "str" => "str",
            "number" => "number",
            "bool" => "bool",
            "null" => "null",
            n if BUILTINS.contains(&n) => "int",
            n => match self.types.get(n) {
                Some(d) if d.get("enum").is_some() => "enum",
                Some(d) if d.get("alternate").is_some() => "alternate",
                _ => "object",
            },
        }
    }
}

/// Names Rust's prelude gives types.
const PRELUDE: &[&str] = &["String", "Vec", "Box", "Option", "Result"];

/// The Rust name of a QAPI type: QAPI's `String` (an object with one
/// member `str`) would hide Rust's own, so such names take a `Qapi` prefix.
fn rust_name(qapi: &str) -> String {
    if PRELUDE.contains(&qapi) {
        format!("Qapi{qapi}")
    } else {
        qapi.to_owned()
    }
}

/// The QAPI name of a Rust type name, undoing [`rust_name`].
pub(crate) fn qapi_name(rust: &str) -> &str {
    match rust.strip_prefix("Qapi") {
        Some(q) if rust_name(q) == rust => q,
        _ => rust,
    }
}

/// What a walk of one schema version learns.
#[derive(Debug, Default)]
struct Learned {
    /// Generated type name -> QAPI name.
    names: BTreeMap<String, String>,
    /// (generated type name, member) -> QAPI integer type.
    ints: BTreeMap<(String, String), String>,
}

fn loaded_kind(v: &Version, ty: &Ty) -> &'static str {
    match ty {
        Ty::Array(_) => "array",
        Ty::Builtin(b) => match b.as_str() {
            "str" => "str",
            "number" => "number",
            "bool" => "bool",
            "null" => "null",
            "int" => "int",
            _ => "any",
        },
        Ty::Named(n) => match v.types.get(n) {
            Some(Def::Enum { .. }) => "enum",
            Some(Def::Alternate { .. }) => "alternate",
            _ => "object",
        },
    }
}

fn strip(ty: &Ty) -> (&Ty, usize) {
    match ty {
        Ty::Array(t) => {
            let (t, d) = strip(t);
            (t, d + 1)
        }
        t => (t, 0),
    }
}

struct Walk<'a> {
    v: &'a Version,
    src: &'a Source,
    seen: BTreeSet<String>,
    out: Learned,
}

impl<'a> Walk<'a> {
    /// Pairs a generated type with the source type at the same place.
    fn pair(&mut self, loaded: &str, src: SrcTy<'a>) {
        if let SrcTy::Named(n) = src {
            if BUILTINS.contains(&n) || !self.src.types.contains_key(n) {
                return;
            }
            self.out
                .names
                .entry(loaded.to_owned())
                .or_insert_with(|| rust_name(n));
        }
        if !self.seen.insert(loaded.to_owned()) {
            return;
        }
        let Some(def) = self.v.types.get(loaded) else {
            return;
        };
        match def {
            Def::Object {
                members, variants, ..
            } => {
                let mut src_members = BTreeMap::new();
                self.src.members(&src, &mut src_members);
                for m in members {
                    let Some((st, _)) = src_members.get(&m.name).and_then(|v| type_ref(v)) else {
                        continue;
                    };
                    match strip(&m.ty).0 {
                        Ty::Named(n) => self.pair(n, SrcTy::Named(st)),
                        Ty::Builtin(b) if b == "int" && INT_TYPES.contains(&st) => {
                            self.out
                                .ints
                                .insert((loaded.to_owned(), m.name.clone()), st.to_owned());
                        }
                        _ => {}
                    }
                }
                let SrcTy::Named(n) = src else { return };
                let Some(branches) = self.src.types[n]
                    .get("union")
                    .and(self.src.types[n].get("data"))
                    .and_then(Value::as_object)
                else {
                    return;
                };
                for (case, ty) in variants {
                    if let Some((st, 0)) = branches.get(case).and_then(type_ref) {
                        self.pair(ty, SrcTy::Named(st));
                    }
                }
            }
            Def::Alternate { members } => {
                let SrcTy::Named(n) = src else { return };
                let Some(alts) = self.src.types[n].get("data").and_then(Value::as_object) else {
                    return;
                };
                for alt in alts.values() {
                    let Some((st, depth)) = type_ref(alt) else {
                        continue;
                    };
                    let kind = self.src.kind(st, depth);
                    for m in members {
                        if loaded_kind(self.v, m) != kind {
                            continue;
                        }
                        let (inner, d) = strip(m);
                        if let (Ty::Named(ln), true) = (inner, d == depth) {
                            self.pair(ln, SrcTy::Named(st));
                        }
                    }
                }
            }
            Def::Enum { .. } => {}
        }
    }
}

/// Walks one generated schema version against the QAPI source.
fn walk(v: &Version, src: &Source) -> Learned {
    let mut w = Walk {
        v,
        src,
        seen: BTreeSet::new(),
        out: Learned::default(),
    };
    for (name, c) in &v.commands {
        let Some(def) = src.commands.get(name) else {
            continue;
        };
        if let Some(data) = src.data(def) {
            w.pair(&c.args, data);
        }
        if let (Ty::Named(ret), Some((st, _))) =
            (strip(&c.ret).0, def.get("returns").and_then(type_ref))
        {
            w.pair(ret, SrcTy::Named(st));
        }
    }
    for (name, data) in &v.events {
        let Some(def) = src.events.get(name) else {
            continue;
        };
        if let Some(s) = src.data(def) {
            w.pair(data, s);
        }
    }
    w.out
}

/// Is `key` a command's arguments, its result or an event's data?
fn is_root(key: &str) -> bool {
    match key.split_once(['.', '|']) {
        None => true,
        Some((_, rest)) => rest == "ret",
    }
}

/// Does `key` stay the same when more types get their QAPI names: is its
/// owner named by the table, or an implicit object named after its command
/// or event (in `unnamed`)?
fn key_rooted(key: &str, derived: &BTreeSet<&str>, unnamed: &BTreeSet<&str>) -> bool {
    match key.split_once(['.', '|']) {
        _ if is_root(key) => true,
        None => true,
        Some((owner, _)) => !derived.contains(owner) || unnamed.contains(owner),
    }
}

/// What `--from-source` found, as table lines.
#[derive(Debug, Default)]
pub struct Tables {
    /// `key = Name` lines for types the names table does not name yet.
    pub names: Vec<String>,
    /// `Type.member = inttype` lines.
    pub ints: Vec<String>,
    /// `name = module` lines for commands and events.
    pub modules: Vec<String>,
    /// Disagreements between the table and the source, for people.
    pub notes: Vec<String>,
}

/// Learns the tables from QAPI source trees: `dirs` are (the schema version
/// a tree belongs to, or `None` for every version; the tree). Each version
/// is walked against its trees; the first that knows a thing wins.
///
/// Names are found to a fixed point: a type can only be keyed once its
/// parent has its QAPI name, so each round names one more level.
pub(crate) fn learn(
    schemas: &[(&str, Value)],
    table: &Table,
    dirs: &[(Option<&str>, &Path)],
) -> Result<Tables, String> {
    let mut sources = Vec::new();
    for (version, dir) in dirs {
        if version.is_some_and(|v| !schemas.iter().any(|(s, _)| *s == v)) {
            return Err(format!("no captured schema for version {version:?}"));
        }
        sources.push((*version, load_dir(dir)?));
    }
    let sources_of = |version: &str| -> Vec<&Source> {
        sources
            .iter()
            .filter(|(v, _)| v.is_none_or(|v| v == version))
            .map(|(_, s)| s)
            .collect()
    };
    let mut table = table.clone();
    let mut added: Vec<String> = Vec::new();
    let mut notes = BTreeSet::new();
    let mut versions;
    loop {
        versions = schemas
            .iter()
            .map(|(name, s)| {
                let loaded = model::load(s, &table, name).map_err(|e| {
                    // Name the learned lines that gave the clashing name.
                    let keys: Vec<&String> = added
                        .iter()
                        .filter(|l| e.contains(l.rsplit(' ').next().unwrap_or("")))
                        .collect();
                    format!("QEMU {name}: {e} (learned: {keys:?})")
                })?;
                Ok((*name, loaded))
            })
            .collect::<Result<Vec<_>, String>>()?;
        // Every key of every version -> the QAPI name of the type it reaches.
        let keymaps: Vec<BTreeMap<&String, String>> = versions
            .iter()
            .map(|(version, v)| {
                let mut map = BTreeMap::new();
                for src in sources_of(version).into_iter().rev() {
                    for (loaded, qapi) in walk(v, src).names {
                        for k in v.uses.get(&loaded).into_iter().flatten() {
                            map.insert(k, qapi.clone());
                        }
                    }
                }
                map
            })
            .collect();
        let mut new: BTreeMap<String, String> = BTreeMap::new();
        for (i, (version, v)) in versions.iter().enumerate() {
            let derived: BTreeSet<&str> = v.derived.iter().map(|(_, n)| n.as_str()).collect();
            let unnamed: BTreeSet<&str> = v
                .derived
                .iter()
                .filter(|(k, _)| is_root(k) && !k.ends_with(".ret"))
                .map(|(_, n)| n.as_str())
                .collect();
            // One key per QAPI name from each version; two versions may
            // reach the same type by different keys.
            let mut by_name: BTreeMap<String, String> = BTreeMap::new();
            for src in sources_of(version) {
                let learned = walk(v, src);
                for (loaded, qapi) in learned.names {
                    if !derived.contains(loaded.as_str()) {
                        if loaded != qapi && loaded != "Empty" {
                            notes.insert(format!("table names {loaded} what QAPI calls {qapi}"));
                        }
                        continue;
                    }
                    if v.types.contains_key(&qapi) && !derived.contains(qapi.as_str()) {
                        notes.insert(format!("{qapi} would name two types"));
                        continue;
                    }
                    let Some(key) = v.uses[&loaded]
                        .iter()
                        .find(|k| key_rooted(k, &derived, &unnamed))
                    else {
                        continue;
                    };
                    if !table.contains_key(key) {
                        by_name.entry(qapi).or_insert_with(|| key.clone());
                    }
                }
            }
            for (name, key) in by_name {
                // A key that reaches a type of another name in another
                // version: a type QAPI renamed (neither version knows the
                // other's name) takes the newest name in every version;
                // a different type keeps the key to this version.
                let knows = |k: usize, n: &str| {
                    sources_of(versions[k].0)
                        .iter()
                        .any(|s| s.types.contains_key(qapi_name(n)))
                };
                let mut qualify = false;
                let mut newer = false;
                for (j, map) in keymaps.iter().enumerate() {
                    match map.get(&key) {
                        Some(other) if j != i && *other != name => {
                            if knows(i, other) || knows(j, &name) {
                                qualify = true;
                            } else if j > i {
                                newer = true;
                            }
                        }
                        _ => {}
                    }
                }
                if newer && !qualify {
                    continue;
                }
                let key = if qualify {
                    format!("{key}@{version}")
                } else {
                    key
                };
                if !table.contains_key(&key) {
                    new.entry(key).or_insert(name);
                }
            }
        }
        if new.is_empty() {
            break;
        }
        for (key, name) in new {
            added.push(format!("{key} = {name}"));
            table.insert(key, name);
        }
    }
    let mut ints = BTreeMap::new();
    let mut modules = BTreeMap::new();
    for (version, v) in &versions {
        for src in sources_of(version).into_iter().rev() {
            for ((ty, member), int) in walk(v, src).ints {
                ints.insert(format!("{ty}.{member}"), int);
            }
            for name in v.commands.keys().chain(v.events.keys()) {
                if let Some(m) = src.modules.get(name) {
                    modules.insert(name.clone(), m.clone());
                }
            }
        }
    }
    Ok(Tables {
        names: added,
        ints: ints
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect(),
        modules: modules
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect(),
        notes: notes.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qapi_syntax() {
        let text = "# a comment\n{ 'struct': 'Foo', # trailing\n  'data': { 'a': 'uint64', '*b': ['size'],\n            'c': { 'type': 'Bar', 'if': 'X' } } }\n{ 'command': 'go', 'data': 'Foo', 'allow-oob': true }\n";
        let exprs = parse(text).unwrap();
        assert_eq!(exprs.len(), 2);
        assert_eq!(exprs[0]["struct"], "Foo");
        assert_eq!(exprs[0]["data"]["*b"], serde_json::json!(["size"]));
        assert_eq!(exprs[1]["allow-oob"], true);
        let data = exprs[0]["data"].as_object().unwrap();
        assert_eq!(type_ref(&data["*b"]), Some(("size", 1)));
        assert_eq!(type_ref(&data["c"]), Some(("Bar", 0)));
        assert!(parse("{ 'a': }").is_err());
    }

    #[test]
    fn prelude_names_are_prefixed_both_ways() {
        assert_eq!(rust_name("String"), "QapiString");
        assert_eq!(qapi_name("QapiString"), "String");
        assert_eq!(rust_name("StatusInfo"), "StatusInfo");
        assert_eq!(qapi_name("QapiFoo"), "QapiFoo");
    }

    /// Writes a QAPI tree of one module, `demo`, into a fresh folder.
    fn tree(tag: &str, text: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("qmp-qapi-gen-test-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("demo.json"), text).unwrap();
        dir
    }

    #[test]
    fn learns_names_widths_and_modules() {
        use serde_json::json;
        // One command whose result holds an enum, a size and a union; in the
        // newer QEMU the enum is renamed and branch `b` holds another type.
        let schema = |b_type: &str, extra: bool| {
            let mut wrap_b = json!({"name": "5", "meta-type": "object",
                "members": [{"name": "data", "type": "str"}]});
            if extra {
                wrap_b["members"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "extra", "type": "int", "default": null}));
            }
            json!([
                {"name": "query-foo", "meta-type": "command", "arg-type": "0", "ret-type": "1"},
                {"name": "0", "meta-type": "object", "members": []},
                {"name": "1", "meta-type": "object", "members": [
                    {"name": "size", "type": "int"},
                    {"name": "mode", "type": "2"},
                    {"name": "u", "type": "3"}]},
                {"name": "2", "meta-type": "enum", "values": ["a", "b"]},
                {"name": "3", "meta-type": "object",
                    "members": [{"name": "type", "type": "2"}], "tag": "type",
                    "variants": [{"case": "a", "type": "4"}, {"case": "b", "type": b_type}]},
                {"name": "4", "meta-type": "object", "members": [{"name": "data", "type": "str"}]},
                wrap_b
            ])
        };
        let common = "{ 'struct': 'FooInfo', 'data': { 'size': 'size', 'mode': 'MODE', 'u': 'U' } }\n\
            { 'struct': 'Wrap', 'data': { 'data': 'str' } }\n\
            { 'union': 'U', 'base': { 'type': 'MODE' }, 'discriminator': 'type',\n\
              'data': { 'a': 'Wrap', 'b': 'BRANCH' } }\n\
            { 'enum': 'MODE', 'data': [ 'a', 'b' ] }\n\
            { 'command': 'query-foo', 'returns': 'FooInfo' }\n";
        let old = tree(
            "old",
            &common.replace("MODE", "OldMode").replace("BRANCH", "Wrap"),
        );
        let new = tree(
            "new",
            &format!(
                "{}{{ 'struct': 'WrapB', 'data': {{ 'data': 'str', '*extra': 'int' }} }}\n",
                common.replace("MODE", "NewMode").replace("BRANCH", "WrapB")
            ),
        );
        let schemas = [("7.2", schema("4", false)), ("10.0", schema("5", true))];
        let tables = learn(
            &schemas,
            &Table::new(),
            &[(Some("7.2"), old.as_path()), (Some("10.0"), new.as_path())],
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&old);
        let _ = std::fs::remove_dir_all(&new);
        let mut names = tables.names.clone();
        names.sort();
        assert_eq!(
            names,
            [
                "FooInfo.mode = NewMode",
                "FooInfo.u = U",
                "U.type=a = Wrap",
                "U.type=b@10.0 = WrapB",
                "query-foo.ret = FooInfo",
            ]
        );
        assert_eq!(tables.ints, ["FooInfo.size = size"]);
        assert_eq!(tables.modules, ["query-foo = demo"]);
    }
}
