//! Reformatting JSON text as QEMU sent it: pretty (indented) or compact (no
//! whitespace), keeping member order and number spelling as they were.
//!
//! The input is text the protocol core already checked to be JSON, so this
//! only moves whitespace: it never parses numbers or reorders keys (a
//! `serde_json::Value` would sort them). On text that is not JSON it still
//! ends, producing something of the same length order, never panicking.

/// Where a character stands: inside a JSON string (its quotes included) or
/// not. Both formatters move only what is outside.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// True when `c`, the next character, belongs to a string.
    fn step(&mut self, c: char) -> bool {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.inside = false;
            }
            true
        } else {
            self.inside = c == '"';
            self.inside
        }
    }
}

/// The text without whitespace outside strings.
pub fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut strings = Strings::default();
    for c in json.chars() {
        if strings.step(c) || !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The text indented by two spaces per level, `"key": value` with one space,
/// empty objects and arrays kept as `{}` and `[]`.
pub fn pretty(json: &str) -> String {
    let compact = compact(json);
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut strings = Strings::default();
    let mut chars = compact.chars().peekable();
    while let Some(c) = chars.next() {
        if strings.step(c) {
            out.push(c);
            continue;
        }
        match c {
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    #[test]
    fn compact_keeps_strings_and_order() {
        let qemu = r#"{"return": {"status": "running", "singlestep": false, "running": true, "s": "a , b: \"c\" "}}"#;
        assert_eq!(
            compact(qemu),
            r#"{"return":{"status":"running","singlestep":false,"running":true,"s":"a , b: \"c\" "}}"#
        );
    }

    #[test]
    fn pretty_indents() {
        assert_eq!(
            pretty(r#"{"b": 1, "a": [1, {}, []], "c": {"d": "x\\"}}"#),
            "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {},\n    []\n  ],\n  \"c\": {\n    \"d\": \"x\\\\\"\n  }\n}"
        );
        assert_eq!(pretty("{}"), "{}");
        assert_eq!(pretty("\"s\""), "\"s\"");
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in ["}}}]]", "\"unterminated", "{{{{", "\\", ""] {
            let _ = pretty(s);
            let _ = compact(s);
        }
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
            ".{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reformatting_keeps_the_value(v in json()) {
            let text = serde_json::to_string_pretty(&v).unwrap();
            let c = compact(&text);
            prop_assert_eq!(&c, &serde_json::to_string(&v).unwrap());
            prop_assert_eq!(pretty(&text), text.clone());
            prop_assert_eq!(pretty(&c), text);
        }

        #[test]
        fn any_text_is_handled(s in ".{0,40}") {
            let _ = pretty(&s);
            let _ = compact(&s);
        }
    }
}
