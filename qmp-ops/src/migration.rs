//! Outgoing migration that waits for its outcome: it ends only in
//! `completed`, `failed` or `cancelled`, or at its deadline (after which it
//! is cancelled, so the source keeps the VM, and the error says so).
//!
//! The `events` migration capability is turned on first, so each `MIGRATION`
//! status change wakes the wait at once; `query-migrate` is also polled
//! (every [`POLL`]) for progress, and because it is the one answer that
//! carries the error text.

use core::time::Duration;
use std::time::Instant;

use qmp_io::{Call, Json};
use qmp_qapi::commands;
use qmp_qapi::types::{MigrationInfo, MigrationStatus};
use serde_json::json;

use crate::error::{Cause, OpError};
use crate::execute::Execute;
use crate::op::{Input, Operation, Step, Want, deadline};
use crate::wait::command_failed;

/// How often `query-migrate` is polled while waiting.
pub const POLL: Duration = Duration::from_millis(200);

/// How long a migration cancelled at its deadline is given to stop.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `migrate-set-capabilities events=on`.
    Capabilities,
    /// The command that starts (or cancels) the migration.
    Starting,
    /// `query-migrate`.
    Querying,
    /// Waiting for a `MIGRATION` event or the next poll.
    Waiting,
    /// `migrate_cancel` after the deadline.
    Cancelling,
}

/// What [`Migration::on_progress`] calls.
type OnProgress = Box<dyn FnMut(&MigrationInfo) + Send>;

/// Migration progress and outcome, as `query-migrate` reports it.
pub type Progress = MigrationInfo;

/// Sends a migration command (or none, to wait for one already running)
/// and waits for its final state. Build it with [`migrate`], [`wait`] or
/// [`cancel`].
pub struct Migration {
    operation: String,
    start: Option<Call>,
    timeout: Duration,
    deadline: Option<Instant>,
    phase: Phase,
    /// What `query-migrate` said last.
    last: Option<MigrationInfo>,
    /// The deadline passed and `migrate_cancel` was sent.
    cancelled: bool,
    /// This operation is a cancel: `cancelled` is its success.
    cancelling: bool,
    /// This operation sent the command that started (or cancelled) it.
    started_here: bool,
    /// The incoming side: there is nothing to cancel at the deadline.
    incoming: bool,
    /// A status to stop at, besides the final ones (`pre-switchover`,
    /// `device`).
    until: Option<MigrationStatus>,
    /// Told of every `query-migrate` answer while waiting.
    on_progress: Option<OnProgress>,
}

impl core::fmt::Debug for Migration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Migration")
            .field("operation", &self.operation)
            .field("phase", &self.phase)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

/// `migrate` to `uri` (`unix:PATH`, `tcp:HOST:PORT`, `exec:COMMAND`),
/// waiting up to `timeout` for it to end.
pub fn migrate(uri: &str, timeout: Duration) -> Migration {
    let command = commands::Migrate {
        uri: Some(uri.to_owned()),
        blk: None,
        inc: None,
        detach: None,
        resume: None,
        channels: None,
    };
    Migration::new(
        format!("migrate to {uri}"),
        Some(Call::command(&command)),
        timeout,
    )
}

/// On a target QEMU started with `-incoming defer`: `migrate-incoming` on
/// `uri` (such as `unix:PATH`), then waits up to `timeout` for the incoming
/// migration to complete. The deadline error says the target is still
/// waiting (an incoming migration cannot be cancelled; quit the target).
pub fn incoming(uri: &str, timeout: Duration) -> Migration {
    let call = Call::new("migrate-incoming").arguments(json!({"uri": uri}));
    let mut op = Migration::new(format!("incoming migration on {uri}"), Some(call), timeout);
    op.incoming = true;
    op
}

/// On a target already listening (`-incoming URI`, or after [`incoming`]
/// reached its deadline): waits up to `timeout` for the incoming migration
/// to arrive and complete.
pub fn wait_incoming(timeout: Duration) -> Migration {
    let mut op = Migration::new("incoming migration".to_owned(), None, timeout);
    op.incoming = true;
    op
}

/// Waits up to `timeout` for the migration already under way to end.
pub fn wait(timeout: Duration) -> Migration {
    Migration::new("migration".to_owned(), None, timeout)
}

/// `migrate_cancel`, then waits up to `timeout` for the migration to end:
/// `Ok` with status `cancelled` (or `completed`, if it finished first).
pub fn cancel(timeout: Duration) -> Migration {
    let mut op = Migration::new(
        "migrate_cancel".to_owned(),
        Some(Call::command(&commands::MigrateCancel)),
        timeout,
    );
    op.cancelling = true;
    op
}

/// `migrate-continue` from the paused `state` (`pre-switchover` or
/// `device`), for a migration stopped there by [`Migration::until`].
pub fn resume(state: MigrationStatus) -> crate::sequence::Sequence {
    let name = format!("migrate-continue {}", state.as_str());
    let call = Call::command(&commands::MigrateContinue { state });
    crate::sequence::Sequence::new(
        name,
        vec![crate::sequence::Action::new(
            call,
            "the migration's next phase",
        )],
    )
}

/// The current `query-migrate`.
pub fn progress() -> Execute<commands::QueryMigrate> {
    Execute::new(&commands::QueryMigrate)
}

/// True once a migration with this status can change no more.
pub fn is_final(info: &MigrationInfo) -> bool {
    matches!(
        info.status,
        Some(MigrationStatus::Completed | MigrationStatus::Failed | MigrationStatus::Cancelled)
    )
}

/// Progress as a stream: `query-migrate` now and then every `every`,
/// ending after the first final report (or the first error).
pub fn progress_stream<'a>(
    qmp: &'a impl qmp_io::AsyncQmp,
    timer: &'a impl crate::Timer,
    every: Duration,
) -> impl futures_util::Stream<Item = Result<MigrationInfo, OpError>> + 'a {
    futures_util::stream::unfold(Some(true), move |state| async move {
        let first = state?;
        if !first {
            timer.sleep(every).await;
        }
        let report = crate::run_async(qmp, timer, progress()).await;
        let more = matches!(&report, Ok(info) if !is_final(info));
        Some((report, more.then_some(false)))
    })
}

/// Progress as an iterator: `query-migrate` now and then every `every`,
/// ending after the first final report (or the first error).
pub fn progress_iter(
    qmp: &impl qmp_io::Qmp,
    every: Duration,
) -> impl Iterator<Item = Result<MigrationInfo, OpError>> + '_ {
    let mut state = Some(true);
    core::iter::from_fn(move || {
        let first = state?;
        if !first {
            std::thread::sleep(every);
        }
        let report = crate::run(qmp, progress());
        let more = matches!(&report, Ok(info) if !is_final(info));
        state = more.then_some(false);
        Some(report)
    })
}

impl Migration {
    fn new(operation: String, start: Option<Call>, timeout: Duration) -> Self {
        Self {
            operation,
            start,
            timeout,
            deadline: None,
            phase: Phase::Capabilities,
            last: None,
            cancelled: false,
            cancelling: false,
            started_here: false,
            incoming: false,
            until: None,
            on_progress: None,
        }
    }

    /// Also ends, successfully, when the migration reaches `status`: the
    /// `pre-switchover` or `device` pause that the `pause-before-switchover`
    /// capability adds. Resume it with [`resume`], then [`wait`].
    pub fn until(mut self, status: MigrationStatus) -> Self {
        self.until = Some(status);
        self
    }

    /// Calls `f` with every `query-migrate` answer while waiting: a stream
    /// of progress reports, one per poll or status change.
    pub fn on_progress(mut self, f: impl FnMut(&MigrationInfo) + Send + 'static) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    fn status(&self) -> &str {
        self.last
            .as_ref()
            .and_then(|i| i.status.as_ref())
            .map_or("unknown", |s| s.as_str())
    }

    fn send(&mut self, phase: Phase, call: Call) -> Step<MigrationInfo> {
        self.phase = phase;
        Step::Send { call, watch: None }
    }

    fn poll(&mut self, now: Instant) -> Step<MigrationInfo> {
        self.phase = Phase::Waiting;
        let end = self.deadline.unwrap_or(now);
        Step::Wait {
            deadline: end.min(now + POLL),
        }
    }

    fn fail(&self, step: &str, cause: Cause, left: String) -> Step<MigrationInfo> {
        Step::Done(Err(OpError::new(&self.operation, step, cause, left)))
    }

    /// A `query-migrate` answer.
    fn answered(&mut self, json: &Json, now: Instant) -> Step<MigrationInfo> {
        let info: MigrationInfo = match json.decode() {
            Ok(info) => info,
            Err(e) => {
                let left = format!("the migration is {}", self.status());
                return self.fail("query-migrate", Cause::Decode(e.to_string()), left);
            }
        };
        if let Some(f) = &mut self.on_progress {
            f(&info);
        }
        let status = info.status.clone();
        let error = info.error_desc.clone();
        self.last = Some(info);
        match status {
            Some(s) if Some(&s) == self.until.as_ref() => match self.last.take() {
                Some(info) => Step::Done(Ok(info)),
                None => self.poll(now),
            },
            Some(MigrationStatus::Completed) => match self.last.take() {
                Some(info) => Step::Done(Ok(info)),
                None => self.poll(now),
            },
            Some(MigrationStatus::Failed) => self.fail(
                "migrating",
                Cause::Reported(error.unwrap_or_else(|| "the migration failed".into())),
                "the migration failed; the source VM is still here".into(),
            ),
            Some(MigrationStatus::Cancelled) if self.cancelling => match self.last.take() {
                Some(info) => Step::Done(Ok(info)),
                None => self.poll(now),
            },
            Some(MigrationStatus::Cancelled) => {
                let (step, cause) = if self.cancelled {
                    ("waiting for the end", Cause::Deadline(self.timeout))
                } else {
                    (
                        "migrating",
                        Cause::Reported("the migration was cancelled".into()),
                    )
                };
                self.fail(
                    step,
                    cause,
                    "the migration was cancelled; the source VM is still here".into(),
                )
            }
            Some(MigrationStatus::None) | None if !self.started_here && !self.incoming => self
                .fail(
                    "waiting for the end",
                    Cause::Reported("no migration has been started".into()),
                    "nothing changed".into(),
                ),
            _ if now >= self.deadline.unwrap_or(now) => self.on_deadline(now),
            _ => self.poll(now),
        }
    }

    fn on_deadline(&mut self, now: Instant) -> Step<MigrationInfo> {
        if self.incoming {
            let left = format!("the target is still waiting ({})", self.status());
            return self.fail("waiting for the end", Cause::Deadline(self.timeout), left);
        }
        if self.cancelled {
            let left = format!(
                "migrate_cancel was sent; the migration is still {}",
                self.status()
            );
            return self.fail("waiting for the end", Cause::Deadline(self.timeout), left);
        }
        self.cancelled = true;
        self.deadline = Some(deadline(now, CANCEL_GRACE));
        self.send(Phase::Cancelling, Call::command(&commands::MigrateCancel))
    }
}

impl Operation for Migration {
    type Output = MigrationInfo;

    /// A migration this operation started is cancelled.
    fn abandon(&mut self) -> Option<crate::op::Cleanup> {
        if !self.started_here || self.cancelling || self.cancelled || self.incoming {
            return None;
        }
        Some(crate::sequence::ignore_failure(cancel(CANCEL_GRACE)))
    }

    fn step(&mut self, input: Input, now: Instant) -> Step<MigrationInfo> {
        match (self.phase, input) {
            (_, Input::Start) => {
                self.deadline = Some(deadline(now, self.timeout));
                let events = json!({"capabilities": [{"capability": "events", "state": true}]});
                let call = Call::new("migrate-set-capabilities").arguments(events);
                self.phase = Phase::Capabilities;
                Step::Send {
                    call,
                    watch: Some(vec![Want::event("MIGRATION")]),
                }
            }
            (Phase::Capabilities, Input::Reply(_)) => match self.start.take() {
                Some(call) => {
                    self.started_here = true;
                    self.send(Phase::Starting, call)
                }
                None => self.send(Phase::Querying, Call::command(&commands::QueryMigrate)),
            },
            (Phase::Starting, Input::Reply(Err(e))) => {
                Step::Done(Err(command_failed(&self.operation, "starting", e)))
            }
            (Phase::Starting | Phase::Cancelling, Input::Reply(Ok(_))) => {
                self.send(Phase::Querying, Call::command(&commands::QueryMigrate))
            }
            (Phase::Cancelling, Input::Reply(Err(e))) => {
                let left = format!(
                    "the migration is still {} (migrate_cancel failed)",
                    self.status()
                );
                self.fail("cancelling at the deadline", Cause::Command(e), left)
            }
            (Phase::Querying, Input::Reply(Ok(json))) => self.answered(&json, now),
            (Phase::Querying, Input::Reply(Err(e))) => {
                let left = format!("the migration was {} when last seen", self.status());
                self.fail("query-migrate", Cause::Command(e), left)
            }
            (Phase::Waiting, Input::Closed) => {
                let left = format!(
                    "the migration was {} when the connection ended",
                    self.status()
                );
                self.fail("waiting for the end", Cause::Closed, left)
            }
            (Phase::Waiting, _) => {
                self.send(Phase::Querying, Call::command(&commands::QueryMigrate))
            }
            (_, _) => self.poll(now),
        }
    }
}
