//! Fuzz target `cli`: the `qmp` command's argument syntax (qmp-cli's `args`
//! and the shell's line syntax) under hostile input.
//!
//! Input layout: `[mode] [text...]`, the text read as UTF-8 (invalid bytes
//! become U+FFFD).
//!
//! - `mode & 1 == 0`: `text` split at NUL bytes is the argument list as the
//!   shell hands it to `qmp CMD ARGS...` (empty text: no arguments), parsed
//!   with `args::parse_args`.
//! - `mode & 1 == 1`: `text` is one line of the interactive shell: split
//!   with `line::tokenize` and parsed with `line::parse_command`.
//!
//! Checked, besides that nothing panics or stalls:
//! - the outcome is the one the documented rules give, worked out here
//!   independently (paths in sets, not the parser's tree): one token
//!   starting with `{` is a JSON object or an error; otherwise every token
//!   is `key=value`, the key's dot-separated parts (at most
//!   `MAX_KEY_PARTS`, none empty) name a path, a path is given once and is
//!   never also a prefix of another; the first token breaking a rule is the
//!   error's token, with the reason for that rule;
//! - on success the object holds exactly the tokens' paths: the value at
//!   each is the token's value as JSON when it parses, else the text; every
//!   other member is an object on the way to one of them;
//! - the object prints as JSON that reads back (depth unbounded) equal;
//!   nesting is bounded by the dotted parts plus serde_json's own limit;
//! - a line without quotes or brackets splits exactly at whitespace, and
//!   `parse_command` gives the first token as the name and the rest parsed
//!   as above.
//!
//! `QMP_FUZZ_DEBUG=1` prints the tokens and the outcome.

#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use qmp_cli::args::{self, ArgError, MAX_KEY_PARTS};
use qmp_cli::line;
use serde_json::{Map, Value};

/// How deep serde_json nests a value it reads (its recursion limit is 128;
/// one more for the outermost container).
const JSON_DEPTH: usize = 129;

/// Why the first bad token is refused, by the documented rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    NotAnObject,
    NotJson,
    NoEquals,
    TooManyParts,
    EmptyPart,
    Twice,
    UnderAValue,
    OverDottedKeys,
}

impl Rule {
    /// A word of the parser's reason that only this rule's reason has.
    fn word(self) -> &'static str {
        match self {
            Rule::NotAnObject => "not a JSON object",
            Rule::NotJson => "not valid JSON",
            Rule::NoEquals => "key=value",
            Rule::TooManyParts => "too many dotted parts",
            Rule::EmptyPart => "empty",
            Rule::Twice => "given twice",
            Rule::UnderAValue => "earlier value",
            Rule::OverDottedKeys => "earlier dotted keys",
        }
    }
}

/// A value as the docs define it: JSON when it parses, else the text.
fn value_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// What the rules give for `tokens`: the paths with their value text, or
/// the index of the first bad token and its rule.
enum Expected<'a> {
    Object(Map<String, Value>),
    Pairs(HashMap<Vec<&'a str>, &'a str>),
    Refused(usize, Rule),
}

fn expected(tokens: &[String]) -> Expected<'_> {
    if let [only] = tokens
        && only.trim_start().starts_with('{')
    {
        return match serde_json::from_str::<Value>(only) {
            Ok(Value::Object(map)) => Expected::Object(map),
            Ok(_) => Expected::Refused(0, Rule::NotAnObject),
            Err(_) => Expected::Refused(0, Rule::NotJson),
        };
    }
    let mut leaves: HashMap<Vec<&str>, &str> = HashMap::new();
    let mut inner: HashSet<Vec<&str>> = HashSet::new();
    for (i, token) in tokens.iter().enumerate() {
        let Some((key, value)) = token.split_once('=') else {
            return Expected::Refused(i, Rule::NoEquals);
        };
        let parts: Vec<&str> = key.split('.').collect();
        let rule = if parts.len() > MAX_KEY_PARTS {
            Some(Rule::TooManyParts)
        } else if parts.iter().any(|p| p.is_empty()) {
            Some(Rule::EmptyPart)
        } else if (1..parts.len()).any(|n| leaves.contains_key(&parts[..n])) {
            Some(Rule::UnderAValue)
        } else if leaves.contains_key(&parts) {
            Some(Rule::Twice)
        } else if inner.contains(&parts) {
            Some(Rule::OverDottedKeys)
        } else {
            None
        };
        if let Some(rule) = rule {
            return Expected::Refused(i, rule);
        }
        for n in 1..parts.len() {
            inner.insert(parts[..n].to_vec());
        }
        leaves.insert(parts, value);
    }
    Expected::Pairs(leaves)
}

/// The depth of `v`: 0 for a scalar, 1 for a container of scalars.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Walks `map` at `path`: members are the tokens' paths (with their
/// values) or objects on the way to them. Returns how many paths it found.
fn walk<'a>(
    map: &'a Map<String, Value>,
    path: &mut Vec<&'a str>,
    leaves: &HashMap<Vec<&str>, &str>,
) -> usize {
    let mut found = 0;
    for (key, value) in map {
        path.push(key);
        if let Some(text) = leaves.get(path.as_slice()) {
            assert_eq!(*value, value_of(text), "the value at {path:?}");
            found += 1;
        } else {
            let Value::Object(members) = value else {
                panic!("{path:?} is no token's path and not an object: {value}");
            };
            assert!(!members.is_empty(), "an empty object at {path:?}");
            found += walk(members, path, leaves);
        }
        path.pop();
    }
    found
}

/// Prints `map` and reads it back.
fn round_trip(map: &Map<String, Value>) {
    let deep = 1 + map.values().map(depth).max().unwrap_or(0);
    assert!(deep <= MAX_KEY_PARTS + JSON_DEPTH, "nested {deep} deep");
    let text = serde_json::to_string(map).expect("a Map prints");
    let mut de = serde_json::Deserializer::from_str(&text);
    de.disable_recursion_limit();
    let back = <Map<String, Value> as serde::Deserialize>::deserialize(&mut de)
        .unwrap_or_else(|e| panic!("printed arguments do not read back: {e}: {text}"));
    de.end().expect("nothing after the object");
    assert_eq!(&back, map, "printed as {text}");
}

fn check_args(tokens: &[String], got: &Result<Map<String, Value>, ArgError>) {
    match (expected(tokens), got) {
        (Expected::Object(want), Ok(map)) => {
            assert_eq!(*map, want);
            round_trip(map);
        }
        (Expected::Pairs(leaves), Ok(map)) => {
            let found = walk(map, &mut Vec::new(), &leaves);
            assert_eq!(found, leaves.len(), "paths in the object");
            round_trip(map);
        }
        (Expected::Refused(i, rule), Err(e)) => {
            assert_eq!(e.token, tokens[i], "the token at fault ({rule:?})");
            assert!(e.why.contains(rule.word()), "{rule:?} but: {e}");
            assert!(e.to_string().contains(&tokens[i]), "{e}");
        }
        (Expected::Refused(i, rule), Ok(map)) => {
            panic!("token {i} breaks {rule:?} but was accepted: {map:?}")
        }
        (_, Err(e)) => panic!("refused, though every rule holds: {e}"),
    }
}

fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("QMP_FUZZ_DEBUG").is_some())
}

fn run_args(text: &str) {
    let tokens: Vec<String> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('\0').map(str::to_owned).collect()
    };
    let got = args::parse_args(&tokens);
    if debug() {
        eprintln!("tokens {tokens:?}\n-> {got:?}");
    }
    check_args(&tokens, &got);
}

fn run_line(text: &str) {
    let tokens = line::tokenize(text);
    let command = line::parse_command(text);
    if debug() {
        eprintln!("line {text:?}\ntokens {tokens:?}\n-> {command:?}");
    }
    if text.starts_with('{') {
        // A whole JSON request: only its arguments are checked.
        if let Ok(request) = &command {
            round_trip(&request.arguments);
        }
        return;
    }
    let tokens = match tokens {
        Ok(tokens) => tokens,
        Err(e) => {
            assert!(e.why.contains("quote"), "{e}");
            assert_eq!(command.unwrap_err(), e);
            return;
        }
    };
    if !text.contains(['"', '\'', '{', '}', '[', ']']) {
        let words: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(tokens, words, "a plain line splits at whitespace");
    }
    let Some((name, rest)) = tokens.split_first() else {
        assert_eq!(command.unwrap_err().why, "no command");
        return;
    };
    if let Ok(request) = &command {
        assert_eq!(&request.name, name);
        assert!(!request.oob);
    }
    check_args(rest, &command.map(|r| r.arguments));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    if mode & 1 == 0 {
        run_args(&text);
    } else {
        run_line(&text);
    }
});
