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
//!
//! The shared suite runs its real-QEMU cases on two QEMUs: Debian 12's 7.2
//! (found as above) and 10.0 (`$QMP_QEMU10`, unpacked beside it by
//! `scripts/prepare-qemu10.sh`). [`with_qemu`] picks the one
//! [`require_qemu`] hands out on the current thread.

use core::cell::Cell;
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

/// Environment variable naming the QEMU 10.0 binary.
pub const QEMU10_ENV: &str = "QMP_QEMU10";
/// Environment variable naming QEMU 10.0's firmware folder (its `-L`);
/// default: the `share/qemu` beside the binary's `bin`.
pub const QEMU10_DATA_ENV: &str = "QMP_QEMU10_DATA";

const QEMU10_HINT: &str = "eval \"$(scripts/prepare-qemu10.sh --env)\"";

/// The QEMUs the tests run against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QemuRelease {
    /// Debian 12's QEMU 7.2: `$QMP_QEMU` or `qemu-system-x86_64`.
    #[default]
    V7_2,
    /// QEMU 10.0 from `bookworm-backports`: `$QMP_QEMU10`.
    V10_0,
}

impl QemuRelease {
    /// Both, oldest first.
    pub const ALL: [Self; 2] = [Self::V7_2, Self::V10_0];

    /// "7.2" or "10.0".
    #[must_use]
    pub const fn version(self) -> &'static str {
        match self {
            Self::V7_2 => "7.2",
            Self::V10_0 => "10.0",
        }
    }
}

thread_local! {
    static SELECTED: Cell<QemuRelease> = const { Cell::new(QemuRelease::V7_2) };
}

/// Runs `f` with [`require_qemu`] handing out `release` on this thread, then
/// restores the previous choice (also when `f` panics).
pub fn with_qemu<T>(release: QemuRelease, f: impl FnOnce() -> T) -> T {
    struct Restore(QemuRelease);
    impl Drop for Restore {
        fn drop(&mut self) {
            SELECTED.set(self.0);
        }
    }
    let _restore = Restore(SELECTED.replace(release));
    f()
}

/// The release [`require_qemu`] hands out on this thread.
#[must_use]
pub fn selected_qemu() -> QemuRelease {
    SELECTED.get()
}

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
        report_missing(test, &wanted, INSTALL_HINT, peers_required());
    }
    found
}

/// A [`QemuBuilder`] set to the QEMU selected on this thread by
/// [`with_qemu`] (7.2, found by [`require_program`], unless another was
/// chosen), or `None` (after a `SKIPPED` line) when it is missing.
///
/// # Panics
///
/// If QEMU is missing and `QMP_REQUIRE_PEERS` is set.
#[must_use]
pub fn require_qemu(test: &str) -> Option<QemuBuilder> {
    match selected_qemu() {
        QemuRelease::V7_2 => {
            require_program(test, QEMU_PROGRAM).map(|path| QemuBuilder::new().binary(path))
        }
        QemuRelease::V10_0 => require_qemu10(test),
    }
}

/// A [`QemuBuilder`] for QEMU 10.0: `$QMP_QEMU10`, run with `-L
/// $QMP_QEMU10_DATA`; or `None` (after a `SKIPPED` line naming the variable
/// and the script that sets it) when it is unset or not a file.
///
/// # Panics
///
/// If QEMU 10.0 is missing and `QMP_REQUIRE_PEERS` is set.
#[must_use]
pub fn require_qemu10(test: &str) -> Option<QemuBuilder> {
    let program = std::env::var_os(QEMU10_ENV).filter(|v| !v.is_empty());
    let Some(program) = program.map(PathBuf::from).filter(|p| p.is_file()) else {
        let wanted = match std::env::var_os(QEMU10_ENV).filter(|v| !v.is_empty()) {
            Some(v) => format!("QEMU 10.0 (${QEMU10_ENV}={})", v.to_string_lossy()),
            None => format!("QEMU 10.0 (${QEMU10_ENV} is not set)"),
        };
        report_missing(test, &wanted, QEMU10_HINT, peers_required());
        return None;
    };
    let data = std::env::var_os(QEMU10_DATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| program.join("../../share/qemu"));
    Some(QemuBuilder::new().binary(program).arg("-L").arg(data))
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

fn skip_notice(test: &str, program: &str, hint: &str) -> String {
    format!("SKIPPED {test}: {program} not found (install: {hint})\n")
}

fn report_missing(test: &str, program: &str, hint: &str, required: bool) {
    assert!(
        !required,
        "{test}: {program} not found, and {REQUIRE_PEERS_ENV} is set so the test may not be \
         skipped (install: {hint})"
    );
    // Nowhere better to report a failed write of a notice to stderr.
    let _ = std::io::stderr().write_all(skip_notice(test, program, hint).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISSING: &str = "qmp-rs-no-such-program";

    #[test]
    fn skip_notice_names_test_and_program() {
        assert_eq!(
            skip_notice("my_test", "qemu-ga", INSTALL_HINT),
            "SKIPPED my_test: qemu-ga not found (install: sudo apt-get install -y \
             qemu-system-x86 qemu-guest-agent)\n"
        );
    }

    #[test]
    fn missing_program_is_skipped_when_not_required() {
        report_missing(
            "missing_program_is_skipped_when_not_required",
            MISSING,
            INSTALL_HINT,
            false,
        );
    }

    #[test]
    #[should_panic(expected = "my_test: qmp-rs-no-such-program not found")]
    fn missing_program_panics_when_required() {
        report_missing("my_test", MISSING, INSTALL_HINT, true);
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
    fn the_release_is_chosen_per_thread_and_restored() {
        assert_eq!(selected_qemu(), QemuRelease::V7_2);
        let inner = with_qemu(QemuRelease::V10_0, || {
            let other = std::thread::spawn(selected_qemu).join().unwrap();
            (selected_qemu(), other)
        });
        assert_eq!(inner, (QemuRelease::V10_0, QemuRelease::V7_2));
        assert_eq!(selected_qemu(), QemuRelease::V7_2);
        let panicked = std::panic::catch_unwind(|| {
            with_qemu(QemuRelease::V10_0, || panic!("inside"));
        });
        assert!(panicked.is_err());
        assert_eq!(selected_qemu(), QemuRelease::V7_2);
    }

    #[test]
    fn present_program_is_found() {
        let sh = require_program("present_program_is_found", "sh").unwrap();
        assert!(sh.is_absolute(), "{}", sh.display());
    }
}
