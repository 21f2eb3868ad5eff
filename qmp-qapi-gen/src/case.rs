//! Turning QAPI names into Rust identifiers.

/// `query-status`, `DEVICE_DELETED`, `qcow2` -> `QueryStatus`, `DeviceDeleted`, `Qcow2`.
pub(crate) fn upper_camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    let mut prev_digit = false;
    let all_upper = !name.chars().any(|c| c.is_ascii_lowercase());
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            upper = true;
            continue;
        }
        if c.is_ascii_digit() && prev_digit && upper && !out.is_empty() {
            // `2.0` stays readable as `2_0`.
            out.push('_');
        }
        if upper {
            out.push(c.to_ascii_uppercase());
        } else if all_upper {
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
        upper = false;
        prev_digit = c.is_ascii_digit();
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// `node-name`, `cpuIndex`, `type` -> `node_name`, `cpu_index`, `type_`.
pub(crate) fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        } else {
            out.push('_');
            prev_lower = false;
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// Makes `name` unique among `taken` by appending a number.
pub(crate) fn unique(name: String, taken: &mut Vec<String>) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{name}{n}");
        n += 1;
    }
    taken.push(candidate.clone());
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(upper_camel("query-status"), "QueryStatus");
        assert_eq!(upper_camel("DEVICE_DELETED"), "DeviceDeleted");
        assert_eq!(upper_camel("x-query-usernet"), "XQueryUsernet");
        assert_eq!(upper_camel("2.0"), "V2_0");
        assert_eq!(upper_camel("qcow2"), "Qcow2");
        assert_eq!(snake("node-name"), "node_name");
        assert_eq!(snake("cpuIndex"), "cpu_index");
        assert_eq!(snake("type"), "type_");
        assert_eq!(snake("iops_rd"), "iops_rd");
    }
}
