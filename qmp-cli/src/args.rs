//! Command arguments as people type them: one JSON object, or qmp-shell's
//! `key=value` pairs.
//!
//! A value is parsed as JSON when it is valid JSON (numbers, `true`, `false`,
//! `null`, strings in double quotes, objects, arrays), else taken as a
//! string. Dotted keys build nested objects: `file.driver=qcow2
//! file.filename=x` gives `{"file":{"driver":"qcow2","filename":"x"}}`, and
//! `a.b=1 c=2` gives `{"a":{"b":1},"c":2}` (qmp-shell nests `c` inside `a`).
//! A repeated key, a token without `=`, an empty key part, or a key that is
//! both a value and an object (`a=1 a.b=2`) is a usage error naming the token.

use core::fmt;

use serde_json::{Map, Value};

/// Parts of one dotted key at most. serde_json reads JSON nested 128 deep at
/// most, and building or printing deeper values recurses: a key of a
/// hundred thousand dots must be an error, not a stack overflow.
pub const MAX_KEY_PARTS: usize = 100;

/// A mistake in typed arguments, naming the token at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// The token as typed.
    pub token: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "argument `{}`: {}", self.token, self.why)
    }
}

impl core::error::Error for ArgError {}

fn err(token: &str, why: &'static str) -> ArgError {
    ArgError {
        token: token.to_owned(),
        why,
    }
}

/// A value as typed: JSON when it parses as JSON, else the text itself.
pub fn parse_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Parses the arguments of one command: nothing, one JSON object (a single
/// token starting with `{`), or `key=value` tokens.
pub fn parse_args<S: AsRef<str>>(tokens: &[S]) -> Result<Map<String, Value>, ArgError> {
    if let [only] = tokens
        && only.as_ref().trim_start().starts_with('{')
    {
        return parse_object(only.as_ref());
    }
    parse_pairs(tokens)
}

/// Parses `text` as one JSON object.
pub fn parse_object(text: &str) -> Result<Map<String, Value>, ArgError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(err(text, "is not a JSON object")),
        Err(_) => Err(err(text, "is not valid JSON")),
    }
}

/// What dotted keys build before it becomes JSON: a value typed whole, or an
/// object made of dotted keys (only these may get more keys).
enum Node {
    Leaf(Value),
    Branch(Vec<(String, Node)>),
}

impl Node {
    fn into_value(self) -> Value {
        match self {
            Node::Leaf(v) => v,
            Node::Branch(members) => Value::Object(
                members
                    .into_iter()
                    .map(|(k, n)| (k, n.into_value()))
                    .collect(),
            ),
        }
    }
}

/// Parses `key=value` tokens.
fn parse_pairs<S: AsRef<str>>(tokens: &[S]) -> Result<Map<String, Value>, ArgError> {
    let mut root = Vec::new();
    for token in tokens {
        insert_pair(&mut root, token.as_ref())?;
    }
    Ok(root.into_iter().map(|(k, n)| (k, n.into_value())).collect())
}

/// Adds one `key=value` token to `members`.
fn insert_pair(members: &mut Vec<(String, Node)>, token: &str) -> Result<(), ArgError> {
    let Some((key, value)) = token.split_once('=') else {
        return Err(err(token, "expected key=value"));
    };
    let parts: Vec<&str> = key.split('.').take(MAX_KEY_PARTS + 1).collect();
    if parts.len() > MAX_KEY_PARTS {
        return Err(err(token, "too many dotted parts in the key (at most 100)"));
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err(token, "empty key, or an empty part of a dotted key"));
    }
    let Some((last, parents)) = parts.split_last() else {
        return Err(err(token, "empty key"));
    };
    let mut node = members;
    for part in parents {
        let at = match node.iter().position(|(k, _)| k == part) {
            Some(at) => at,
            None => {
                node.push(((*part).to_owned(), Node::Branch(Vec::new())));
                node.len() - 1
            }
        };
        node = match &mut node[at].1 {
            Node::Branch(children) => children,
            Node::Leaf(_) => {
                return Err(err(
                    token,
                    "conflicts with an earlier value of the same key",
                ));
            }
        };
    }
    match node.iter().find(|(k, _)| k == last) {
        Some((_, Node::Leaf(_))) => Err(err(token, "the key is given twice")),
        Some((_, Node::Branch(_))) => Err(err(
            token,
            "conflicts with earlier dotted keys under the same key",
        )),
        None => {
            node.push(((*last).to_owned(), Node::Leaf(parse_value(value))));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn parse(tokens: &[&str]) -> Result<Value, ArgError> {
        parse_args(tokens).map(Value::Object)
    }

    #[test]
    fn values_are_json_when_they_parse() {
        assert_eq!(
            parse(&["n=1", "f=1.5", "t=true", "z=null", "s=abc", "q=\"1\"", "e="]).unwrap(),
            json!({"n": 1, "f": 1.5, "t": true, "z": null, "s": "abc", "q": "1", "e": ""})
        );
        assert_eq!(
            parse(&["a=[1,\"x\"]", "o={\"k\": {}}", "bad={x}"]).unwrap(),
            json!({"a": [1, "x"], "o": {"k": {}}, "bad": "{x}"})
        );
        assert_eq!(parse(&["v=a=b"]).unwrap(), json!({"v": "a=b"}));
    }

    /// A number is sent as the f64 nearest to what was typed: printed, it
    /// reads back as itself (serde_json's default float parser can be one
    /// unit in the last place off on these).
    #[test]
    fn numbers_are_sent_as_typed() {
        for typed in [
            "118446744073709551616",
            "1.1844674407370955e+20",
            "0.1",
            "2.2250738585072014e-308",
        ] {
            let value = parse_value(typed);
            let printed = value.to_string();
            assert_eq!(parse_value(&printed), value, "{typed} printed as {printed}");
            let exact: f64 = typed.parse().unwrap();
            assert_eq!(value.as_f64(), Some(exact), "{typed}");
        }
    }

    #[test]
    fn dotted_keys_nest_only_what_they_name() {
        assert_eq!(
            parse(&["a.b=1", "c=2"]).unwrap(),
            json!({"a": {"b": 1}, "c": 2})
        );
        assert_eq!(
            parse(&["file.driver=qcow2", "file.filename=x", "node-name=d0"]).unwrap(),
            json!({"file": {"driver": "qcow2", "filename": "x"}, "node-name": "d0"})
        );
        assert_eq!(
            parse(&["a.b.c=1", "a.d=2", "a.b.e=3"]).unwrap(),
            json!({"a": {"b": {"c": 1, "e": 3}, "d": 2}})
        );
    }

    #[test]
    fn mistakes_name_the_token() {
        let e = parse(&["a=1", "a=2"]).unwrap_err();
        assert_eq!(e.token, "a=2");
        assert!(e.to_string().contains("given twice"), "{e}");
        assert_eq!(parse(&["a=1", "nokey"]).unwrap_err().token, "nokey");
        assert_eq!(parse(&["a=1", "a.b=2"]).unwrap_err().token, "a.b=2");
        assert_eq!(parse(&["a.b=2", "a=1"]).unwrap_err().token, "a=1");
        assert_eq!(parse(&["a.b=1", "a.b=2"]).unwrap_err().token, "a.b=2");
        assert_eq!(parse(&["a={}", "a.b=2"]).unwrap_err().token, "a.b=2");
        for bad in ["=1", ".a=1", "a.=1", "a..b=1"] {
            assert_eq!(parse(&[bad]).unwrap_err().token, bad);
        }
    }

    #[test]
    fn deep_keys_are_refused_not_overflowed() {
        let deep = format!("{}=1", vec!["a"; 100_000].join("."));
        assert!(
            parse(&[deep.as_str()])
                .unwrap_err()
                .why
                .contains("dotted parts")
        );
        let ok = format!("{}=1", vec!["a"; MAX_KEY_PARTS].join("."));
        assert!(parse(&[ok.as_str()]).is_ok());
    }

    #[test]
    fn one_json_object() {
        assert_eq!(
            parse(&[r#"{"a": {"b": [1]}}"#]).unwrap(),
            json!({"a": {"b": [1]}})
        );
        assert!(parse(&["{nope"]).unwrap_err().why.contains("JSON"));
        assert!(parse_object("[1]").unwrap_err().why.contains("object"));
        assert_eq!(parse(&[]).unwrap(), json!({}));
    }

    /// A key part: no dot, no `=`, not empty.
    fn key() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9-]{0,6}"
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
            ".{0,12}".prop_map(Value::from),
            prop::collection::vec(any::<u8>(), 0..3).prop_map(|v| json!(v)),
        ]
    }

    /// Objects whose every member is a leaf or a non-empty object: what
    /// dotted keys can express.
    fn tree() -> impl Strategy<Value = Map<String, Value>> {
        let leaf_map = prop::collection::btree_map(key(), leaf(), 1..4);
        leaf_map
            .prop_map(|m| m.into_iter().collect::<Map<String, Value>>())
            .prop_recursive(3, 24, 4, |inner| {
                prop::collection::btree_map(
                    key(),
                    prop_oneof![leaf(), inner.prop_map(Value::Object)],
                    1..4,
                )
                .prop_map(|m| m.into_iter().collect())
            })
    }

    fn flatten(prefix: &str, map: &Map<String, Value>, out: &mut Vec<String>) {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(inner) => flatten(&key, inner, out),
                leaf => out.push(format!("{key}={leaf}")),
            }
        }
    }

    proptest! {
        #[test]
        fn dotted_keys_rebuild_any_tree(tree in tree(), seed in any::<u64>()) {
            let mut tokens = Vec::new();
            flatten("", &tree, &mut tokens);
            // Any order of the tokens gives the same object.
            let n = tokens.len();
            if n > 1 {
                tokens.rotate_left(usize::try_from(seed % n as u64).unwrap_or(0));
            }
            prop_assert_eq!(parse_args(&tokens).unwrap(), tree);
        }

        #[test]
        fn a_repeated_token_is_refused(tree in tree()) {
            let mut tokens = Vec::new();
            flatten("", &tree, &mut tokens);
            let again = tokens[0].clone();
            tokens.push(again.clone());
            prop_assert_eq!(parse_args(&tokens).unwrap_err().token, again);
        }

        #[test]
        fn any_input_gives_a_result(tokens in prop::collection::vec(".{0,20}", 0..6)) {
            let _ = parse_args(&tokens);
        }

        #[test]
        fn plain_strings_stay_strings(s in "[a-zA-Z_/][a-zA-Z0-9_/:,.-]{0,20}") {
            prop_assume!(!matches!(s.as_str(), "true" | "false" | "null"));
            prop_assert_eq!(parse_value(&s), Value::String(s.clone()));
        }
    }
}
