//! What Tab offers in the shell, from the live schema: command names first,
//! then the command's argument names followed by `=` (dotted paths into
//! nested objects; once a union's tag is typed, only the members of the
//! branch it selects), and after `key=` the values of an enum (or `true`
//! and `false`).

use crate::schema::Schema;

/// Words of the shell itself, completed with the command names.
pub const SHELL_WORDS: &[&str] = &["help", "quit", "exit", "transaction("];

/// Candidates for completing `line` at byte `pos`: the byte where the
/// replaced text starts, and the replacements, sorted. Inside a transaction
/// the first word is an action name.
pub fn complete(
    schema: &Schema,
    line: &str,
    pos: usize,
    in_transaction: bool,
) -> (usize, Vec<String>) {
    let Some(before) = line.get(..pos) else {
        return (pos, Vec::new());
    };
    let start = before.rfind(char::is_whitespace).map_or(0, |i| {
        i + before[i..].chars().next().map_or(1, char::len_utf8)
    });
    let word = &before[start..];
    let earlier: Vec<&str> = before[..start].split_whitespace().collect();
    let mut out: Vec<String> = match earlier.as_slice() {
        [] if in_transaction => schema
            .transaction_actions()
            .into_iter()
            .chain(core::iter::once(")".to_owned()))
            .filter(|n| n.starts_with(word))
            .collect(),
        [] => schema
            .command_names()
            .chain(SHELL_WORDS.iter().copied())
            .filter(|n| n.starts_with(word))
            .map(str::to_owned)
            .collect(),
        ["help"] => schema
            .command_names()
            .filter(|n| n.starts_with(word))
            .map(str::to_owned)
            .collect(),
        [command, given @ ..] if !in_transaction => {
            if let Some((key, value)) = word.split_once('=') {
                let at = start + key.len() + 1;
                let mut values: Vec<String> = schema
                    .values(command, key)
                    .into_iter()
                    .filter(|v| v.starts_with(value))
                    .collect();
                values.sort();
                values.dedup();
                return (at, values);
            }
            let given: Vec<(&str, &str)> = given.iter().filter_map(|t| t.split_once('=')).collect();
            schema
                .arguments_given(command, &given)
                .into_iter()
                .map(|(path, _)| path)
                .filter(|p| p.starts_with(word) && !given.iter().any(|(k, _)| k == p))
                .map(|p| format!("{p}="))
                .collect()
        }
        _ => Vec::new(),
    };
    out.sort();
    out.dedup();
    (start, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse(
            r#"[
            {"name": "blockdev-add", "meta-type": "command", "arg-type": "1"},
            {"name": "block-resize", "meta-type": "command", "arg-type": "0"},
            {"name": "transaction", "meta-type": "command", "arg-type": "5"},
            {"name": "0", "meta-type": "object", "members": []},
            {"name": "1", "meta-type": "object", "members": [
                {"name": "driver", "type": "2"}, {"name": "node-name", "type": "str"},
                {"name": "file", "type": "3", "default": null}]},
            {"name": "2", "meta-type": "enum", "values": ["null-co", "null-aio", "qcow2"]},
            {"name": "3", "meta-type": "object", "members": [{"name": "filename", "type": "str"}]},
            {"name": "5", "meta-type": "object", "members": [{"name": "actions", "type": "6"}]},
            {"name": "6", "meta-type": "array", "element-type": "7"},
            {"name": "7", "meta-type": "object", "members": [{"name": "type", "type": "8"}]},
            {"name": "8", "meta-type": "enum", "values": ["abort", "block-dirty-bitmap-add"]},
            {"name": "u", "meta-type": "command", "arg-type": "9"},
            {"name": "9", "meta-type": "object", "tag": "kind",
             "members": [{"name": "kind", "type": "10"}],
             "variants": [{"case": "a", "type": "11"}, {"case": "b", "type": "12"}]},
            {"name": "10", "meta-type": "enum", "values": ["a", "b"]},
            {"name": "11", "meta-type": "object", "members": [{"name": "alpha", "type": "str"}]},
            {"name": "12", "meta-type": "object", "members": [{"name": "beta", "type": "str"}]},
            {"name": "str", "meta-type": "builtin", "json-type": "string"}
        ]"#,
        )
        .unwrap()
    }

    fn at_end(line: &str) -> (usize, Vec<String>) {
        complete(&schema(), line, line.len(), false)
    }

    #[test]
    fn command_names() {
        assert_eq!(
            at_end("bl"),
            (0, vec!["block-resize".into(), "blockdev-add".into()])
        );
        assert_eq!(at_end("he").1, ["help"]);
        assert_eq!(at_end("help blockd"), (5, vec!["blockdev-add".into()]));
    }

    #[test]
    fn argument_names_and_values() {
        assert_eq!(
            at_end("blockdev-add "),
            (
                13,
                vec![
                    "driver=".into(),
                    "file.filename=".into(),
                    "file=".into(),
                    "node-name=".into()
                ]
            )
        );
        assert_eq!(
            at_end("blockdev-add driver=null-co f").1,
            ["file.filename=", "file="]
        );
        assert_eq!(
            at_end("blockdev-add driver=null-co dr").1,
            Vec::<String>::new()
        );
        assert_eq!(
            at_end("blockdev-add driver=nu"),
            (20, vec!["null-aio".into(), "null-co".into()])
        );
        assert!(at_end("nope x").1.is_empty());
    }

    #[test]
    fn a_union_offers_the_branch_its_tag_selects() {
        assert_eq!(at_end("u ").1, ["alpha=", "beta=", "kind="]);
        assert_eq!(at_end("u kind=a ").1, ["alpha="]);
        assert_eq!(at_end("u kind=b b").1, ["beta="]);
        // A tag value without a branch: the common members only.
        assert!(at_end("u kind=c ").1.is_empty());
    }

    #[test]
    fn transaction_actions() {
        let s = schema();
        assert_eq!(complete(&s, "a", 1, true).1, ["abort"]);
        assert_eq!(
            complete(&s, "", 0, true).1,
            [")", "abort", "block-dirty-bitmap-add"]
        );
    }

    #[test]
    fn odd_positions() {
        let s = schema();
        assert!(complete(&s, "é", 1, false).1.is_empty());
        assert!(complete(&s, "x", 9, false).1.is_empty());
        let _ = complete(&s, "a\u{2003}b", 4, false);
    }
}
