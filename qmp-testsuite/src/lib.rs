//! The integration cases every qmp-rs adapter runs against a real
//! `qemu-system-x86_64`, a real `qemu-ga` and the mock QEMU, written once.
//!
//! The async cases are generic over a [`Harness`] (what differs between tokio
//! and smol: running a future, spawning tasks, sleeping, connecting); the
//! blocking cases drive [`qmp_io::blocking`]. Both share their fixtures
//! ([`fixtures`]) and their checks ([`checks`]), so a case means the same thing
//! for every adapter. An adapter's test file is one macro call:
//!
//! ```ignore
//! qmp_testsuite::async_suite!(MyHarness);
//! // or, for qmp-std:
//! qmp_testsuite::blocking_suite!(MyBlockingHarness);
//! ```
//!
//! The fault-injection suite ([`faults`], one line more:
//! `qmp_testsuite::fault_suite!(async MyHarness)`) runs the same clients
//! against a scripted [`hostile::HostilePeer`] and a QEMU that is frozen and
//! killed, each case in a child process of its own so its memory figures are
//! its own.
//!
//! Each test starts its own QEMU (or qemu-ga, or mock), so they run in
//! parallel. When QEMU is missing a test prints `SKIPPED` and passes, unless
//! `QMP_REQUIRE_PEERS` is set.

use core::future::Future;
use core::net::SocketAddr;
use core::pin::Pin;
use core::time::Duration;
use std::os::unix::net::UnixStream;
use std::path::Path;

use qmp_io::nonblocking::{Client, GuestAgent, Runtime};
use qmp_io::qemu::{Qemu, QemuBuilder};
use qmp_io::{Config, Result};

pub mod async_cases;
pub mod blocking_cases;
pub mod checks;
pub mod faults;
pub mod fixtures;
pub mod generic;
pub mod hostile;
pub mod peers;
pub mod reconnect;
pub mod typed;

/// A spawned task's result, as a future.
pub type Task<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What an async adapter's test file supplies: everything that differs
/// between runtimes. The cases use nothing else of the runtime.
pub trait Harness: 'static {
    /// The runtime the adapter's clients are generic over.
    type Runtime: Runtime;

    /// Runs `future` to completion on a fresh runtime, on this thread.
    fn block_on<F: Future>(future: F) -> F::Output;

    /// Runs `task` concurrently on the runtime; the returned future yields its
    /// output (and panics if the task panicked).
    fn spawn<T: Send + 'static>(task: impl Future<Output = T> + Send + 'static) -> Task<T>;

    /// A future that completes after `duration`.
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send;

    /// The adapter's `connect_unix`.
    fn connect(path: &Path, config: Config) -> impl Future<Output = Result<Client<Self::Runtime>>>;

    /// The adapter's `launch`.
    fn launch(
        qemu: QemuBuilder,
        config: Config,
    ) -> impl Future<Output = Result<(Qemu, Client<Self::Runtime>)>>;

    /// The adapter's `connect_tcp`.
    fn connect_tcp(
        addr: SocketAddr,
        config: Config,
    ) -> impl Future<Output = Result<Client<Self::Runtime>>>;

    /// The adapter's `connect_guest_agent`.
    fn connect_guest_agent(
        path: &Path,
        config: Config,
    ) -> impl Future<Output = Result<GuestAgent<Self::Runtime>>>;

    /// The adapter's `launch_stdio`.
    fn launch_stdio(
        qemu: QemuBuilder,
        config: Config,
    ) -> impl Future<Output = Result<Client<Self::Runtime>>>;

    /// The adapter's `connect_child`.
    fn connect_child(
        command: std::process::Command,
        config: Config,
    ) -> impl Future<Output = Result<Client<Self::Runtime>>>;

    /// Connects a guest agent over a stream that is already open, the way the
    /// adapter takes an open stream.
    fn guest_agent_on(
        stream: UnixStream,
        config: Config,
    ) -> impl Future<Output = Result<GuestAgent<Self::Runtime>>>;
}

/// What a blocking adapter's test file supplies: its ways of connecting.
pub trait BlockingHarness: 'static {
    /// The adapter's `connect_unix`.
    fn connect(path: &Path, config: Config) -> Result<qmp_io::blocking::Client>;

    /// The adapter's `launch`.
    fn launch(qemu: QemuBuilder, config: Config) -> Result<(Qemu, qmp_io::blocking::Client)>;

    /// The adapter's `connect_tcp`.
    fn connect_tcp(addr: SocketAddr, config: Config) -> Result<qmp_io::blocking::Client>;

    /// The adapter's `connect_guest_agent`.
    fn connect_guest_agent(path: &Path, config: Config) -> Result<qmp_io::blocking::GuestAgent>;

    /// Connects a guest agent over a stream that is already open.
    fn guest_agent_on(stream: UnixStream, config: Config) -> Result<qmp_io::blocking::GuestAgent>;

    /// The adapter's `launch_stdio`.
    fn launch_stdio(qemu: QemuBuilder, config: Config) -> Result<qmp_io::blocking::Client>;

    /// The adapter's `connect_child`.
    fn connect_child(
        command: std::process::Command,
        config: Config,
    ) -> Result<qmp_io::blocking::Client>;
}

/// Expands to one `#[test]` per async case, run with harness `$h` (a type
/// implementing [`Harness`]).
#[macro_export]
macro_rules! async_suite {
    ($h:ty) => {
        $crate::__suite!(async, $h);
    };
}

/// Expands to one `#[test]` per blocking case, run with harness `$h` (a type
/// implementing [`BlockingHarness`]).
#[macro_export]
macro_rules! blocking_suite {
    ($h:ty) => {
        $crate::__suite!(blocking, $h);
    };
}

/// The list of cases, kept in one place so both suites have the same ones.
/// The first list needs `qemu-system-x86_64` and runs on QEMU 7.2 and again on
/// QEMU 10.0 (in a module `qemu_10_0`); the second runs once.
#[doc(hidden)]
#[macro_export]
macro_rules! __suite {
    ($mode:ident, $h:ty) => {
        $crate::__suite!(@qemu $mode, $h;
            greeting_and_version,
            query_status_typed_and_raw,
            stop_cont_events,
            concurrent_commands,
            unknown_command,
            oob_commands,
            timeout_on_stopped_qemu,
            killed_qemu_fails_pending_calls,
            drop_frees_the_monitor,
            fd_passing,
            fd_call_behind_a_stuck_one,
            big_reply,
            tcp_monitor,
            child_stdio,
            calls_from_a_foreign_executor,
            through_the_client_trait,
            typed_events
        );
        $crate::__tests!(
            $mode,
            $h,
            V7_2;
            close_ends_a_stuck_write,
            connect_to_a_full_listener,
            guest_agent_exec,
            guest_agent_resync,
            guest_agent_no_reply,
            guest_agent_resync_drops_unsent,
            mock_slow_subscriber_lags,
            mock_deadlines
        );
    };
    (@qemu $mode:ident, $h:ty; $($case:ident),*) => {
        $crate::__tests!($mode, $h, V7_2; $($case),*);
        /// The real-QEMU cases again, on QEMU 10.0.
        mod qemu_10_0 {
            #[allow(unused_imports)]
            use super::*;
            $crate::__tests!($mode, $h, V10_0; $($case),*);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __tests {
    (async, $h:ty, $release:ident; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                $crate::peers::with_qemu($crate::peers::QemuRelease::$release, || {
                    <$h as $crate::Harness>::block_on(
                        $crate::async_cases::$case::<$h>(stringify!($case)),
                    )
                });
            }
        )*
    };
    (blocking, $h:ty, $release:ident; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                $crate::peers::with_qemu($crate::peers::QemuRelease::$release, || {
                    $crate::blocking_cases::$case::<$h>(stringify!($case))
                });
            }
        )*
    };
}
