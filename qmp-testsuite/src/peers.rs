//! Skipping tests that need a real QEMU or qemu-ga when it is missing, loudly.
//!
//! A test that cannot find its peer prints a `SKIPPED` line and returns. Where
//! skipping is not acceptable (CI), setting `QMP_REQUIRE_PEERS` turns the skip
//! into a failure.
//!
//! ```no_run
//! // In a #[test] function:
//! let Some(builder) = qmp_testsuite::peers::require_qemu("talks_to_qemu") else {
//!     return;
//! };
//! let qemu = builder.spawn().unwrap();
//! # drop(qemu);
//! ```

use std::io::Write;
use std::path::PathBuf;

use qmp_io::qemu::{
    GUEST_AGENT_PROGRAM, GuestAgentBuilder, QEMU_PROGRAM, QemuBuilder, env_override, locate,
    override_var,
};

/// Environment variable that makes a missing peer fail the test instead of
/// skipping it. Any value other than empty or `0` counts as set.
pub const REQUIRE_PEERS_ENV: &str = "QMP_REQUIRE_PEERS";

const INSTALL_HINT: &str = "sudo apt-get install -y qemu-system-x86 qemu-guest-agent";

/// Finds `program` for the test named `test`, or reports that it is missing.
///
/// The lookup is the one [`qmp_io::qemu`] uses to launch: for
/// `qemu-system-x86_64` and `qemu-ga`, `$QMP_QEMU` and `$QMP_QEMU_GA` override
/// the name; then `PATH`, `/usr/sbin` and `/usr/local/sbin` are searched.
///
/// When the program is missing, this writes a `SKIPPED` line to stderr and
/// returns `None`. The line is written directly rather than with `eprintln!`,
/// which libtest captures, so it shows even when the test passes.
///
/// # Panics
///
/// If the program is missing and `QMP_REQUIRE_PEERS` is set.
#[must_use]
pub fn require_program(test: &str, program: &str) -> Option<PathBuf> {
    let found = locate(program);
    if found.is_none() {
        // Name the override too: a stale one is the likely cause of the miss.
        let wanted = match override_var(program).zip(env_override(program)) {
            Some((var, value)) => format!("{program} (${var}={})", value.to_string_lossy()),
            None => program.to_owned(),
        };
        report_missing(test, &wanted, peers_required());
    }
    found
}

/// A [`QemuBuilder`] set to the QEMU found by [`require_program`], or `None`
/// (after a `SKIPPED` line) when there is none.
///
/// # Panics
///
/// If QEMU is missing and `QMP_REQUIRE_PEERS` is set.
#[must_use]
pub fn require_qemu(test: &str) -> Option<QemuBuilder> {
    require_program(test, QEMU_PROGRAM).map(|path| QemuBuilder::new().binary(path))
}

/// A [`GuestAgentBuilder`] set to the qemu-ga found by [`require_program`], or
/// `None` (after a `SKIPPED` line) when there is none.
///
/// # Panics
///
/// If qemu-ga is missing and `QMP_REQUIRE_PEERS` is set.
#[must_use]
pub fn require_guest_agent(test: &str) -> Option<GuestAgentBuilder> {
    require_program(test, GUEST_AGENT_PROGRAM).map(|path| GuestAgentBuilder::new().binary(path))
}

fn peers_required() -> bool {
    std::env::var_os(REQUIRE_PEERS_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

fn skip_notice(test: &str, program: &str) -> String {
    format!("SKIPPED {test}: {program} not found (install: {INSTALL_HINT})\n")
}

fn report_missing(test: &str, program: &str, required: bool) {
    assert!(
        !required,
        "{test}: {program} not found, and {REQUIRE_PEERS_ENV} is set so the test may not be \
         skipped (install: {INSTALL_HINT})"
    );
    // Nowhere better to report a failed write of a notice to stderr.
    let _ = std::io::stderr().write_all(skip_notice(test, program).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISSING: &str = "qmp-rs-no-such-program";

    #[test]
    fn skip_notice_names_test_and_program() {
        assert_eq!(
            skip_notice("my_test", "qemu-ga"),
            "SKIPPED my_test: qemu-ga not found (install: sudo apt-get install -y \
             qemu-system-x86 qemu-guest-agent)\n"
        );
    }

    #[test]
    fn missing_program_is_skipped_when_not_required() {
        report_missing(
            "missing_program_is_skipped_when_not_required",
            MISSING,
            false,
        );
    }

    #[test]
    #[should_panic(expected = "my_test: qmp-rs-no-such-program not found")]
    fn missing_program_panics_when_required() {
        report_missing("my_test", MISSING, true);
    }

    #[test]
    fn require_program_follows_the_environment() {
        // Tests may not set environment variables (that needs unsafe code), so
        // check whichever behaviour the current environment asks for.
        let outcome = std::panic::catch_unwind(|| {
            require_program("require_program_follows_the_environment", MISSING)
        });
        if peers_required() {
            assert!(
                outcome.is_err(),
                "a missing peer must fail under {REQUIRE_PEERS_ENV}"
            );
        } else {
            assert_eq!(outcome.ok(), Some(None));
        }
    }

    #[test]
    fn present_program_is_found() {
        let sh = require_program("present_program_is_found", "sh").unwrap();
        assert!(sh.is_absolute(), "{}", sh.display());
    }
}
