//! How a run of `qmp` fails, and the exit status each failure gives.

use core::fmt;

use qmp_std::{CommandError, Error};

/// Exit status: a command returned a QMP error.
pub const EXIT_COMMAND: u8 = 1;
/// Exit status: anything else went wrong (usage, connection, protocol,
/// timeout).
pub const EXIT_OTHER: u8 = 2;

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// QEMU (or the agent) answered with an error reply: exit status 1.
    Command(CommandError),
    /// QEMU refused the arguments, and its live schema says where they are
    /// wrong (a JSON path and what was expected): exit status 1.
    Explained(CommandError, String),
    /// Anything else: exit status 2, with this message.
    Other(String),
}

impl Failure {
    /// A failure that is not a QMP error reply.
    pub fn other(message: impl fmt::Display) -> Self {
        Failure::Other(message.to_string())
    }

    /// The exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Command(_) | Failure::Explained(..) => EXIT_COMMAND,
            Failure::Other(_) => EXIT_OTHER,
        }
    }
}

impl fmt::Display for Failure {
    /// One line: the class and description of a QMP error, or the message,
    /// with any line breaks of a quoted child's stderr folded in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Failure::Command(e) => format!("{}: {}", e.class, e.desc),
            Failure::Explained(e, why) => format!("{}: {} (schema: {why})", e.class, e.desc),
            Failure::Other(message) => message.clone(),
        };
        f.write_str(&one_line(&text))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Command(e) => Failure::Command(e),
            e => Failure::Other(e.to_string()),
        }
    }
}

impl From<crate::args::ArgError> for Failure {
    fn from(e: crate::args::ArgError) -> Self {
        Failure::other(e)
    }
}

/// Folds a message onto one line: a line break after a colon becomes a
/// space, any other one ` | `.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.trim().lines().map(str::trim).enumerate() {
        if line.is_empty() {
            continue;
        }
        if i > 0 {
            out.push_str(if out.ends_with(':') { " " } else { " | " });
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        assert_eq!(
            one_line("QEMU exited; its stderr ended with:\nqemu: bad\nqemu: worse\n"),
            "QEMU exited; its stderr ended with: qemu: bad | qemu: worse"
        );
        let f = Failure::Command(CommandError {
            class: qmp_std::ErrorClass::GenericError,
            desc: "two\nlines".into(),
        });
        assert_eq!(f.to_string(), "GenericError: two | lines");
        assert_eq!(f.exit_code(), 1);
        assert_eq!(Failure::other("x").exit_code(), 2);
    }
}
