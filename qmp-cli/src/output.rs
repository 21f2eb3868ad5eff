//! Writing results: JSON on stdout (pretty or compact), one-line messages
//! on stderr.

use std::io::{IsTerminal, Write};

use crate::failure::Failure;
use crate::jsonfmt;

/// How JSON is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Indented, for people.
    Pretty,
    /// One line, for programs.
    Compact,
}

impl Style {
    /// `--pretty` or `--compact` if given, else pretty on a terminal.
    pub fn choose(pretty: bool, compact: bool) -> Self {
        if pretty {
            Style::Pretty
        } else if compact || !std::io::stdout().is_terminal() {
            Style::Compact
        } else {
            Style::Pretty
        }
    }

    /// `json` (valid JSON text) in this style.
    pub fn format(self, json: &str) -> String {
        match self {
            Style::Pretty => jsonfmt::pretty(json),
            Style::Compact => jsonfmt::compact(json),
        }
    }
}

/// Writes `text` and a newline to stdout, and flushes.
pub fn line(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| Failure::other(format!("cannot write to stdout: {e}")))
}

/// Writes `qmp: FAILURE` to stderr, on one line. A failure to write it has
/// nowhere to be reported.
pub fn error_line(failure: &Failure) {
    let _ = writeln!(std::io::stderr().lock(), "qmp: {failure}");
}

/// The text of an HMP reply as the monitor would show it: CR LF as LF, no
/// final line break (the caller adds one), nothing at all for no output.
pub fn hmp_text(json: &str) -> String {
    let text: String = serde_json::from_str(json).unwrap_or_else(|_| json.to_owned());
    text.replace("\r\n", "\n").trim_end_matches('\n').to_owned()
}
