//! The fault-injection suite: what a client does when its peer is hostile,
//! wedged or dies. Every case runs on every adapter, QMP and (where the fault
//! applies to it) the guest agent, against a [`HostilePeer`](crate::hostile::HostilePeer)
//! or a real QEMU that is frozen and killed.
//!
//! An adapter's test file adds one line:
//!
//! ```ignore
//! qmp_testsuite::fault_suite!(async MyHarness);
//! // or, for qmp-std:
//! qmp_testsuite::fault_suite!(blocking MyBlockingHarness);
//! ```
//!
//! The macro installs [`Counting`] as the test binary's global allocator, and
//! runs each case in a child process of its own (the test binary again, with
//! only that case): the cases that measure memory or CPU time see nothing of
//! the tests running beside them.
//!
//! Each case asserts the exact error, that calls, clients and subscribers the
//! fault does not concern were not disturbed, and, where the peer sends much,
//! that the client's memory grew by no more than a bound set by its limits,
//! far below what the peer sent.

pub mod cases;
mod target;

use core::time::Duration;
use std::path::Path;

pub use counting::{Counting, Memory, live_bytes, peak_bytes, reset_peak};
pub use target::{Async, Blocking, Local, Target};

#[allow(unsafe_code)]
mod counting;

/// The size cap of the fault cases' connections: small, so that a reply a
/// hundred times over it is cheap to send.
pub const CAP: usize = 1 << 20;

/// The environment variable that tells a child process which case to run.
const CHILD: &str = "QMP_FAULT_CASE";

/// The time a case's child process may take before it is killed.
const CHILD_PATIENCE: Duration = Duration::from_secs(90);

/// Runs `case` (named `name`, as the test harness names it) in a child
/// process of its own, or, in that child, runs it.
///
/// # Panics
///
/// When the case fails, or its child process cannot be run.
pub fn isolated(name: &str, case: impl FnOnce()) {
    if std::env::var(CHILD).is_ok_and(|n| n == name) {
        assert!(
            Memory::installed(),
            "the fault suite needs its counting allocator: use fault_suite!"
        );
        case();
        println!("{}", passed(name));
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = std::env::temp_dir();
    let log = |what: &str| {
        let path = dir.join(format!(
            "qmp-fault-{}-{}.{what}",
            std::process::id(),
            name.replace("::", "-")
        ));
        (std::fs::File::create(&path).expect("a log file"), path)
    };
    let (out, out_path) = log("out");
    let (err, err_path) = log("err");
    let mut child = std::process::Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("running the test binary again");
    let deadline = std::time::Instant::now() + CHILD_PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the case") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let _ = std::fs::remove_file(path);
        text
    };
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    print!("{stdout}");
    eprint!("{stderr}");
    match status {
        Some(status) if status.success() && stdout.contains(&passed(name)) => {}
        Some(status) => panic!("fault case {name} failed ({status})"),
        None => panic!("fault case {name} took longer than {CHILD_PATIENCE:?}"),
    }
}

fn passed(name: &str) -> String {
    format!("fault case {name}: passed")
}

/// Expands to the test binary's global allocator ([`Counting`]) and one
/// `#[test]` per fault case, each run in a child process of its own: `async H`
/// for a [`Harness`](crate::Harness), `blocking H` for a
/// [`BlockingHarness`](crate::BlockingHarness).
#[macro_export]
macro_rules! fault_suite {
    (async $h:ty) => {
        $crate::__fault_suite!($crate::faults::Async<$h>);
    };
    (blocking $h:ty) => {
        $crate::__fault_suite!($crate::faults::Blocking<$h>);
    };
}

/// The list of fault cases.
#[doc(hidden)]
#[macro_export]
macro_rules! __fault_suite {
    ($t:ty) => {
        $crate::__fault_tests!(
            $t;
            stall_mid_reply,
            agent_stall_mid_reply,
            close_mid_reply,
            agent_close_mid_reply,
            endless_reply,
            agent_endless_reply,
            endless_handshake,
            slowloris_reply,
            agent_slowloris_reply,
            deep_nesting,
            agent_deep_nesting,
            reply_over_the_cap,
            agent_reply_over_the_cap,
            event_flood,
            big_event_flood,
            flood_while_writing,
            garbage_input,
            unknown_ids,
            agent_unknown_ids,
            second_greeting,
            invalid_utf8,
            agent_invalid_utf8,
            capabilities_without_id,
            frozen_and_killed_qemu,
            frozen_and_killed_agent;
            // Again on QEMU 10.0: the cases whose peer is a real QEMU.
            frozen_and_killed_qemu
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __fault_tests {
    ($t:ty; $($case:ident),*; $($real:ident),*) => {
        #[global_allocator]
        static FAULT_SUITE_ALLOCATOR: $crate::faults::Counting = $crate::faults::Counting;

        mod faults {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::faults::isolated(concat!("faults::", stringify!($case)), || {
                        <$t as $crate::faults::Target>::run(
                            $crate::faults::cases::$case::<$t>(stringify!($case)),
                        )
                    });
                }
            )*

            mod qemu_10_0 {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $real() {
                        $crate::faults::isolated(concat!("faults::qemu_10_0::", stringify!($real)), || {
                            $crate::peers::with_qemu($crate::peers::QemuRelease::V10_0, || {
                                <$t as $crate::faults::Target>::run(
                                    $crate::faults::cases::$real::<$t>(stringify!($real)),
                                )
                            })
                        });
                    }
                )*
            }
        }
    };
}
