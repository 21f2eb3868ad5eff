//! The line syntax of the shell and of scripts read from stdin.
//!
//! A line is one of:
//! - empty, or a comment starting with `#`: nothing to do;
//! - a whole QMP request, `{"execute": NAME, "arguments": {...}}` (or
//!   `exec-oob`);
//! - `NAME ARGS`: ARGS one JSON object or `key=value` pairs (see
//!   [`args`](crate::args)). Tokens are split at whitespace outside double
//!   quotes, single quotes and brackets: `a="x y"` and `b={"c": [1, 2]}` are
//!   one token each. Double quotes stay part of the value (it is JSON), single
//!   quotes are removed (`f='a b'` is the string `a b`);
//! - `transaction(`: the lines after it, one action each (`NAME ARGS`), up to a
//!   line `)`, make one `transaction` command whose actions are `{"type":
//!   NAME, "data": ARGS}`, as in qmp-shell;
//! - in HMP mode (`-H`) any other line is an HMP command line.

use serde_json::{Map, Value};

use crate::args::ArgError;
use crate::request::Request;

/// Actions in one transaction at most; more is a mistake, not a command.
const MAX_ACTIONS: usize = 4096;

/// Splits `line` into tokens: whitespace separates them outside quotes and
/// brackets.
pub fn tokenize(line: &str) -> Result<Vec<String>, ArgError> {
    let mut tokens = Vec::new();
    let mut token = String::new();
    let mut started = false;
    let mut depth = 0usize;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                started = true;
                token.push(c);
                let mut escaped = false;
                let mut closed = false;
                for c in chars.by_ref() {
                    token.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(unterminated(line));
                }
            }
            '\'' if depth == 0 => {
                started = true;
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '\'' {
                        closed = true;
                        break;
                    }
                    token.push(c);
                }
                if !closed {
                    return Err(unterminated(line));
                }
            }
            '{' | '[' => {
                started = true;
                depth += 1;
                token.push(c);
            }
            '}' | ']' => {
                started = true;
                depth = depth.saturating_sub(1);
                token.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if started {
                    tokens.push(core::mem::take(&mut token));
                    started = false;
                }
            }
            c => {
                started = true;
                token.push(c);
            }
        }
    }
    if started {
        tokens.push(token);
    }
    Ok(tokens)
}

fn unterminated(line: &str) -> ArgError {
    ArgError {
        token: line.to_owned(),
        why: "has a quote that is not closed",
    }
}

/// What a line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Nothing: an empty line, a comment, or a line added to a transaction.
    Nothing,
    /// A command to send.
    Request(Request),
}

/// Reads lines, remembering an open transaction between them.
#[derive(Debug, Default)]
pub struct LineReader {
    /// HMP mode: lines are HMP command lines.
    pub hmp: bool,
    transaction: Option<Vec<Value>>,
}

impl LineReader {
    /// A reader; `hmp` for HMP mode.
    pub fn new(hmp: bool) -> Self {
        Self {
            hmp,
            transaction: None,
        }
    }

    /// True while a `transaction(` waits for its `)`.
    pub fn in_transaction(&self) -> bool {
        self.transaction.is_some()
    }

    /// Reads one line. A mistake inside a transaction drops the whole
    /// transaction.
    pub fn feed(&mut self, line: &str) -> Result<Parsed, ArgError> {
        let text = line.trim();
        if let Some(actions) = &mut self.transaction {
            if text == ")" {
                let actions = core::mem::take(actions);
                self.transaction = None;
                let mut arguments = Map::new();
                arguments.insert("actions".to_owned(), Value::Array(actions));
                return Ok(Parsed::Request(Request {
                    name: "transaction".to_owned(),
                    arguments,
                    oob: false,
                }));
            }
            if text.is_empty() || text.starts_with('#') {
                return Ok(Parsed::Nothing);
            }
            let action = match parse_command(text) {
                Ok(r) => r,
                Err(e) => {
                    self.transaction = None;
                    return Err(e);
                }
            };
            if actions.len() >= MAX_ACTIONS {
                self.transaction = None;
                return Err(ArgError {
                    token: text.to_owned(),
                    why: "one action too many for a transaction",
                });
            }
            let mut entry = Map::new();
            entry.insert("type".to_owned(), Value::from(action.name));
            entry.insert("data".to_owned(), Value::Object(action.arguments));
            actions.push(Value::Object(entry));
            return Ok(Parsed::Nothing);
        }
        if text.is_empty() || text.starts_with('#') {
            return Ok(Parsed::Nothing);
        }
        if text == "transaction(" {
            self.transaction = Some(Vec::new());
            return Ok(Parsed::Nothing);
        }
        if self.hmp && !text.starts_with('{') {
            return Ok(Parsed::Request(Request::hmp(text)));
        }
        parse_command(text).map(Parsed::Request)
    }
}

/// `NAME ARGS` or a whole JSON request.
pub fn parse_command(text: &str) -> Result<Request, ArgError> {
    if text.starts_with('{') {
        return Request::from_json(text);
    }
    let tokens = tokenize(text)?;
    let Some((name, args)) = tokens.split_first() else {
        return Err(ArgError {
            token: text.to_owned(),
            why: "no command",
        });
    };
    Request::from_tokens(name, args)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn request(line: &str) -> Request {
        match LineReader::new(false).feed(line).unwrap() {
            Parsed::Request(r) => r,
            Parsed::Nothing => panic!("nothing for {line}"),
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(
            tokenize(r#"  cmd a="x y" b={"c": [1, 2]}  f='a b' g=[1, "]"] "#).unwrap(),
            [
                "cmd",
                "a=\"x y\"",
                "b={\"c\": [1, 2]}",
                "f=a b",
                "g=[1, \"]\"]"
            ]
        );
        assert!(tokenize("a=\"open").is_err());
        assert!(tokenize("a='open").is_err());
        assert_eq!(tokenize("").unwrap(), Vec::<String>::new());
        assert_eq!(tokenize("e=''").unwrap(), ["e="]);
    }

    #[test]
    fn lines() {
        let r = request(r#"blockdev-add driver=null-co node-name="n 0" file.size=1"#);
        assert_eq!(r.name, "blockdev-add");
        assert_eq!(
            Value::Object(r.arguments),
            json!({"driver": "null-co", "node-name": "n 0", "file": {"size": 1}})
        );
        let r = request(r#"qom-get {"path": "/machine", "property": "type"}"#);
        assert_eq!(
            Value::Object(r.arguments),
            json!({"path": "/machine", "property": "type"})
        );
        assert_eq!(request(r#"{"execute": "stop"}"#).name, "stop");
        let mut reader = LineReader::new(false);
        assert_eq!(reader.feed("  # comment").unwrap(), Parsed::Nothing);
        assert_eq!(reader.feed("").unwrap(), Parsed::Nothing);
        assert!(reader.feed("cmd nokey").is_err());
    }

    #[test]
    fn hmp_lines() {
        let mut reader = LineReader::new(true);
        let Parsed::Request(r) = reader.feed("info status").unwrap() else {
            panic!()
        };
        assert_eq!(
            Value::Object(r.arguments),
            json!({"command-line": "info status"})
        );
    }

    #[test]
    fn transactions() {
        let mut reader = LineReader::new(false);
        assert_eq!(reader.feed("transaction(").unwrap(), Parsed::Nothing);
        assert!(reader.in_transaction());
        reader
            .feed("block-dirty-bitmap-add node=n0 name=b0")
            .unwrap();
        reader.feed("# a comment").unwrap();
        reader.feed("abort").unwrap();
        let Parsed::Request(r) = reader.feed(")").unwrap() else {
            panic!()
        };
        assert!(!reader.in_transaction());
        assert_eq!(r.name, "transaction");
        assert_eq!(
            Value::Object(r.arguments),
            json!({"actions": [
                {"type": "block-dirty-bitmap-add", "data": {"node": "n0", "name": "b0"}},
                {"type": "abort", "data": {}}
            ]})
        );
        reader.feed("transaction(").unwrap();
        assert!(reader.feed("x nokey").is_err());
        assert!(!reader.in_transaction(), "a mistake drops the transaction");
    }

    proptest! {
        #[test]
        fn any_line_gives_a_result(lines in prop::collection::vec(".{0,40}", 0..8)) {
            let mut reader = LineReader::new(false);
            for line in &lines {
                let _ = reader.feed(line);
            }
        }
    }
}
