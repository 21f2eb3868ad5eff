//! One command to send: its name and arguments, from a command line, a line
//! of a script or the shell, or a whole JSON request.

use serde_json::{Map, Value};

use qmp_std::Call;

use crate::args::{self, ArgError};
use crate::target::Deadline;

/// The HMP pass-through command.
pub const HMP_COMMAND: &str = "human-monitor-command";

/// A command and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command name.
    pub name: String,
    /// Its arguments (sent only when not empty).
    pub arguments: Map<String, Value>,
    /// Sent with `exec-oob`.
    pub oob: bool,
}

impl Request {
    /// `NAME ARGS...`: ARGS one JSON object or `key=value` pairs.
    pub fn from_tokens<S: AsRef<str>>(name: &str, args: &[S]) -> Result<Self, ArgError> {
        Ok(Self {
            name: name.to_owned(),
            arguments: args::parse_args(args)?,
            oob: false,
        })
    }

    /// An HMP command line, run through `human-monitor-command`.
    pub fn hmp(command_line: &str) -> Self {
        let mut arguments = Map::new();
        arguments.insert("command-line".to_owned(), Value::from(command_line));
        Self {
            name: HMP_COMMAND.to_owned(),
            arguments,
            oob: false,
        }
    }

    /// A whole QMP request, as QEMU reads it: `{"execute": NAME,
    /// "arguments": {...}}` or `{"exec-oob": ...}` (an `id` is ignored: the
    /// client numbers its commands itself).
    pub fn from_json(text: &str) -> Result<Self, ArgError> {
        let bad = |why| ArgError {
            token: text.to_owned(),
            why,
        };
        let mut object = args::parse_object(text)?;
        let (name, oob) = match (object.remove("execute"), object.remove("exec-oob")) {
            (Some(Value::String(name)), None) => (name, false),
            (None, Some(Value::String(name))) => (name, true),
            (None, None) => return Err(bad("has neither \"execute\" nor \"exec-oob\"")),
            _ => return Err(bad("needs one command name, a string")),
        };
        let arguments = match object.remove("arguments") {
            None => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(bad("\"arguments\" is not an object")),
        };
        object.remove("id");
        if let Some(key) = object.keys().next() {
            return Err(ArgError {
                token: key.clone(),
                why: "is not a member of a QMP request",
            });
        }
        Ok(Self {
            name,
            arguments,
            oob,
        })
    }

    /// The call to make, bounded by what is left of `deadline`.
    pub fn call(&self, deadline: &Deadline) -> Call {
        let mut call = Call::new(self.name.as_str());
        if !self.arguments.is_empty() {
            call = call.arguments(&self.arguments);
        }
        if self.oob {
            call = call.oob();
        }
        if let Some(left) = deadline.remaining() {
            call = call.timeout(Some(left));
        }
        call
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn whole_requests() {
        let r = Request::from_json(r#"{"execute": "stop", "id": 7}"#).unwrap();
        assert_eq!(
            (r.name.as_str(), r.oob, r.arguments.len()),
            ("stop", false, 0)
        );
        let r = Request::from_json(r#"{"exec-oob": "x", "arguments": {"a": 1}}"#).unwrap();
        assert!(r.oob);
        assert_eq!(Value::Object(r.arguments), json!({"a": 1}));
        for bad in [
            r#"{"arguments": {}}"#,
            r#"{"execute": 1}"#,
            r#"{"execute": "a", "exec-oob": "b"}"#,
            r#"{"execute": "a", "arguments": []}"#,
            r#"{"execute": "a", "extra": 1}"#,
            "[]",
        ] {
            assert!(Request::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hmp_wraps_the_line() {
        let r = Request::hmp("info status");
        assert_eq!(r.name, HMP_COMMAND);
        assert_eq!(
            Value::Object(r.arguments),
            json!({"command-line": "info status"})
        );
    }
}
