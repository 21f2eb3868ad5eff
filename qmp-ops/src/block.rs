//! Block jobs (mirror, commit, stream, image creation) and a handle to wait
//! for them: [`Job`] with [`wait_ready`](Job::wait_ready),
//! [`wait`](Job::wait), [`complete`](Job::complete),
//! [`cancel`](Job::cancel) and [`progress`](Job::progress).
//!
//! The jobs started here are not auto-dismissed, so that their final state
//! and error can be read after they conclude; [`Job::wait`] reads them and
//! dismisses the job. A wait that reaches its deadline cancels the job and
//! dismisses it, unless told not to, and says so in its error.

use core::time::Duration;
use std::time::Instant;

use qmp_io::{Call, Json};
use qmp_qapi::commands;
use qmp_qapi::types::{JobInfo, JobStatus};
use serde_json::json;

use crate::error::{Cause, OpError};
use crate::execute::Execute;
use crate::op::{Input, Operation, Step, Want, deadline};
use crate::sequence::{Action, Chain, Link, Sequence, ignore_failure, link};
use crate::wait::command_failed;

/// How long a job that timed out is given to conclude once cancelled.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// Default deadline of [`create_qcow2`]'s creation jobs: Proxmox gives
/// block-job commands 10 minutes.
pub const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(600);

/// A job, by its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Job {
    id: String,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// The job's id.
    pub id: String,
    /// Its last status (`concluded` for a job that ended, `ready` for
    /// [`Job::wait_ready`]).
    pub status: JobStatus,
    /// Bytes done and to do, as last reported.
    pub progress: (i64, i64),
}

impl Job {
    /// The job with id `id` (one that was started elsewhere, or will be).
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into() }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sends `command`, which starts this job (such as the call from
    /// [`mirror`]); then wait with [`wait_ready`](Self::wait_ready) or
    /// [`wait`](Self::wait), which ask for its state first, so no change is
    /// missed in between.
    pub fn start(&self, command: Call) -> Sequence {
        let made = format!("job {}", self.id);
        Sequence::new(
            format!("start job {}", self.id),
            vec![Action::new(command, made)],
        )
    }

    /// Sends `command`, which starts this job, and waits up to `timeout` for
    /// the job to conclude (see [`wait`](Self::wait)). The job's events are
    /// watched from before the command is sent.
    pub fn run(&self, command: Call, timeout: Duration) -> JobWait {
        JobWait::new(&self.id, Some(command), JobStatus::Concluded, timeout)
    }

    /// Waits up to `timeout` for the job to be `ready` (a mirror, or a commit
    /// of the active layer, in sync); fails if it concludes first.
    pub fn wait_ready(&self, timeout: Duration) -> JobWait {
        JobWait::new(&self.id, None, JobStatus::Ready, timeout)
    }

    /// Waits up to `timeout` for the job to conclude, reads its error, and
    /// dismisses it: success only when it concluded without an error.
    pub fn wait(&self, timeout: Duration) -> JobWait {
        JobWait::new(&self.id, None, JobStatus::Concluded, timeout)
    }

    /// `job-complete`: a ready job switches over and concludes.
    pub fn complete(&self) -> Execute<commands::JobComplete> {
        let complete = commands::JobComplete {
            id: self.id.clone(),
        };
        Execute::new(&complete).named(format!("job-complete {}", self.id))
    }

    /// `job-cancel`: follow with [`wait`](Self::wait), which then fails with
    /// the job's "cancelled" error.
    pub fn cancel(&self) -> Execute<commands::JobCancel> {
        let cancel = commands::JobCancel {
            id: self.id.clone(),
        };
        Execute::new(&cancel).named(format!("job-cancel {}", self.id))
    }

    /// The job's state now, from `query-jobs`.
    pub fn progress(&self) -> JobProgress {
        JobProgress {
            id: self.id.clone(),
        }
    }
}

fn query_jobs() -> Call {
    Call::command(&commands::QueryJobs)
}

fn find(json: &Json, id: &str) -> Result<Option<JobInfo>, Cause> {
    let jobs: Vec<JobInfo> = json
        .decode()
        .map_err(|e| Cause::Decode(format!("query-jobs: {e}")))?;
    Ok(jobs.into_iter().find(|j| j.id == id))
}

/// [`Job::progress`]: the job's `query-jobs` entry.
#[derive(Debug)]
pub struct JobProgress {
    id: String,
}

impl Operation for JobProgress {
    type Output = JobInfo;

    fn step(&mut self, input: Input, now: Instant) -> Step<JobInfo> {
        let op = format!("query-jobs {}", self.id);
        match input {
            Input::Start => Step::Send {
                call: query_jobs(),
                watch: None,
            },
            Input::Reply(Err(e)) => Step::Done(Err(command_failed(&op, "query-jobs", e))),
            Input::Reply(Ok(json)) => Step::Done(match find(&json, &self.id) {
                Ok(Some(info)) => Ok(info),
                Ok(None) => Err(OpError::new(
                    op,
                    "finding the job",
                    Cause::Reported(format!("QEMU has no job {}", self.id)),
                    "nothing changed",
                )),
                Err(cause) => Err(OpError::new(
                    op,
                    "reading query-jobs",
                    cause,
                    "nothing changed",
                )),
            }),
            _ => Step::Wait { deadline: now },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The starting command, or `query-jobs`, is on its way.
    Asking,
    /// Watching `JOB_STATUS_CHANGE`.
    Watching,
    /// `job-cancel` after the deadline.
    Cancelling,
    /// `query-jobs` after `concluded`, for the error.
    Reading,
    /// `job-dismiss`.
    Dismissing,
}

/// Waits for a job to reach a status: `ready` ([`Job::wait_ready`]) or
/// `concluded` ([`Job::wait`], [`Job::run`]). Built by [`Job`].
#[derive(Debug)]
pub struct JobWait {
    id: String,
    start: Option<Call>,
    /// The first command in flight is the one that starts the job.
    starting: bool,
    /// This wait sent the command that started the job.
    started_here: bool,
    target: JobStatus,
    timeout: Duration,
    cancel_on_timeout: bool,
    deadline: Option<Instant>,
    phase: Phase,
    status: JobStatus,
    progress: (i64, i64),
    /// The failure to report once the job is dismissed.
    failure: Option<(String, Cause)>,
    /// The deadline passed and the job was cancelled.
    timed_out: bool,
}

impl JobWait {
    fn new(id: &str, start: Option<Call>, target: JobStatus, timeout: Duration) -> Self {
        Self {
            id: id.to_owned(),
            start,
            starting: false,
            started_here: false,
            target,
            timeout,
            cancel_on_timeout: true,
            deadline: None,
            phase: Phase::Asking,
            status: JobStatus::Undefined,
            progress: (0, 0),
            failure: None,
            timed_out: false,
        }
    }

    /// Whether to cancel and dismiss the job when the deadline passes
    /// (default: yes). When not, the job keeps running and the error says so.
    pub fn cancel_on_timeout(mut self, cancel: bool) -> Self {
        self.cancel_on_timeout = cancel;
        self
    }

    fn operation(&self) -> String {
        format!("job {}", self.id)
    }

    fn waiting(&self) -> String {
        format!("waiting for {}", self.target.as_str())
    }

    fn wait(&self, now: Instant) -> Step<JobOutcome> {
        Step::Wait {
            deadline: self.deadline.unwrap_or(now),
        }
    }

    fn outcome(&self) -> JobOutcome {
        JobOutcome {
            id: self.id.clone(),
            status: self.status.clone(),
            progress: self.progress,
        }
    }

    fn send(&mut self, phase: Phase, call: Call) -> Step<JobOutcome> {
        self.phase = phase;
        Step::Send { call, watch: None }
    }

    /// The job is now in `status`.
    fn seen(&mut self, status: JobStatus, now: Instant) -> Step<JobOutcome> {
        self.status = status.clone();
        match status {
            JobStatus::Concluded => self.send(Phase::Reading, query_jobs()),
            JobStatus::Null => Step::Done(Err(OpError::new(
                self.operation(),
                self.waiting(),
                Cause::Reported("the job was dismissed by someone else".into()),
                "the job is gone; its outcome is not known",
            ))),
            s if s == self.target && !self.timed_out => Step::Done(Ok(self.outcome())),
            _ => {
                self.phase = Phase::Watching;
                self.wait(now)
            }
        }
    }

    fn done_after_dismiss(&mut self, dismissed: Result<(), qmp_io::Error>) -> Step<JobOutcome> {
        let id = &self.id;
        let dismissed = match dismissed {
            Ok(()) => format!("job {id} concluded and was dismissed"),
            Err(e) => format!("job {id} concluded; dismissing it failed ({e})"),
        };
        match self.failure.take() {
            None if self.target == JobStatus::Concluded => Step::Done(Ok(self.outcome())),
            None => Step::Done(Err(OpError::new(
                self.operation(),
                self.waiting(),
                Cause::Reported(format!(
                    "the job concluded before it was {}",
                    self.target.as_str()
                )),
                dismissed,
            ))),
            Some((step, cause)) => {
                let left = if self.timed_out {
                    format!("job {id} was cancelled; {dismissed}")
                } else {
                    dismissed
                };
                Step::Done(Err(OpError::new(self.operation(), step, cause, left)))
            }
        }
    }

    fn on_reply(&mut self, reply: qmp_io::Result<Json>, now: Instant) -> Step<JobOutcome> {
        let op = self.operation();
        match (self.phase, reply) {
            (Phase::Asking, Err(e)) => {
                let what = if self.starting {
                    "starting the job"
                } else {
                    "query-jobs"
                };
                Step::Done(Err(command_failed(&op, what, e)))
            }
            (Phase::Asking, Ok(json)) if !self.starting => match find(&json, &self.id) {
                Ok(Some(info)) => {
                    self.progress = (info.current_progress, info.total_progress);
                    self.seen(info.status, now)
                }
                Ok(None) => Step::Done(Err(OpError::new(
                    op,
                    "finding the job",
                    Cause::Reported(format!("QEMU has no job {}", self.id)),
                    "nothing changed",
                ))),
                Err(cause) => Step::Done(Err(OpError::new(op, "query-jobs", cause, "unknown"))),
            },
            (Phase::Asking, Ok(_)) => {
                self.starting = false;
                self.phase = Phase::Watching;
                self.wait(now)
            }
            (Phase::Cancelling, Err(e)) => Step::Done(Err(OpError::new(
                op,
                self.waiting(),
                Cause::Deadline(self.timeout),
                format!(
                    "job {} is still {} (job-cancel failed: {e})",
                    self.id,
                    self.status.as_str()
                ),
            ))),
            (Phase::Cancelling, Ok(_)) => {
                self.phase = Phase::Watching;
                self.wait(now)
            }
            (Phase::Reading, reply) => {
                let info = reply
                    .map_err(Cause::Command)
                    .and_then(|json| find(&json, &self.id));
                match info {
                    Ok(Some(info)) => {
                        self.progress = (info.current_progress, info.total_progress);
                        if let Some(error) = info.error {
                            self.failure
                                .get_or_insert(("running".into(), Cause::Reported(error)));
                        }
                    }
                    Ok(None) => {}
                    Err(cause) => {
                        self.failure
                            .get_or_insert(("reading the job's error".into(), cause));
                    }
                }
                let dismiss = commands::JobDismiss {
                    id: self.id.clone(),
                };
                self.send(Phase::Dismissing, Call::command(&dismiss))
            }
            (Phase::Dismissing, reply) => self.done_after_dismiss(reply.map(drop)),
            (Phase::Watching, _) => self.wait(now),
        }
    }

    fn on_deadline(&mut self, now: Instant) -> Step<JobOutcome> {
        let status = self.status.as_str().to_owned();
        if !self.cancel_on_timeout || self.timed_out {
            let left = if self.timed_out {
                format!("job {} was cancelled and is still {status}", self.id)
            } else {
                format!("job {} is still {status}", self.id)
            };
            return Step::Done(Err(OpError::new(
                self.operation(),
                self.waiting(),
                Cause::Deadline(self.timeout),
                left,
            )));
        }
        self.timed_out = true;
        self.failure = Some((self.waiting(), Cause::Deadline(self.timeout)));
        self.deadline = Some(deadline(now, CANCEL_GRACE));
        let cancel = commands::JobCancel {
            id: self.id.clone(),
        };
        self.send(Phase::Cancelling, Call::command(&cancel))
    }
}

impl Operation for JobWait {
    type Output = JobOutcome;

    /// A job this wait started ([`Job::run`]) is cancelled and dismissed; a
    /// job it only watched is left to its owner.
    fn abandon(&mut self) -> Option<Link> {
        if !self.started_here || self.phase == Phase::Dismissing {
            return None;
        }
        let job = Job::new(self.id.clone());
        let cancel = ignore_failure(job.cancel());
        let dismiss = ignore_failure(job.wait(CANCEL_GRACE).cancel_on_timeout(false));
        Some(Box::new(Chain::new(
            format!("cancel job {}", self.id),
            vec![("cancel".into(), cancel), ("dismiss".into(), dismiss)],
        )))
    }

    fn step(&mut self, input: Input, now: Instant) -> Step<JobOutcome> {
        match input {
            Input::Start => {
                self.deadline = Some(deadline(now, self.timeout));
                self.starting = self.start.is_some();
                self.started_here = self.starting;
                let call = self.start.take().unwrap_or_else(query_jobs);
                Step::Send {
                    call,
                    watch: Some(vec![
                        Want::event("JOB_STATUS_CHANGE").data("id", self.id.as_str()),
                    ]),
                }
            }
            Input::Reply(reply) => self.on_reply(reply, now),
            Input::Event(_, event) => match event.decode::<qmp_qapi::events::JobStatusChange>() {
                Ok(change) => self.seen(change.status, now),
                Err(_) => self.wait(now),
            },
            // Events were lost: ask for the state instead.
            Input::Lagged(_) => {
                self.starting = false;
                self.send(Phase::Asking, query_jobs())
            }
            Input::Timeout => self.on_deadline(now),
            Input::Closed => Step::Done(Err(OpError::new(
                self.operation(),
                self.waiting(),
                Cause::Closed,
                format!(
                    "job {} was {} when the connection ended",
                    self.id,
                    self.status.as_str()
                ),
            ))),
            _ => self.wait(now),
        }
    }
}

/// A mirror of `device` to the node `target` (`sync: full`, not
/// auto-dismissed): send the call, then [`Job::wait_ready`] (in sync),
/// [`Job::complete`] and [`Job::wait`].
pub fn mirror(job_id: &str, device: &str, target: &str) -> (Job, Call) {
    let command = json!({
        "job-id": job_id, "device": device, "target": target, "sync": "full",
        "auto-dismiss": false,
    });
    (
        Job::new(job_id),
        typed_call::<commands::BlockdevMirror>(command),
    )
}

/// A stream into `device` (the top node) from its backing chain.
pub fn stream(job_id: &str, device: &str) -> (Job, Call) {
    let command = json!({"job-id": job_id, "device": device, "auto-dismiss": false});
    (
        Job::new(job_id),
        typed_call::<commands::BlockStream>(command),
    )
}

/// A commit of `device`'s top layer into its backing node (`ready` when the
/// top is the active layer; then complete it).
pub fn commit(job_id: &str, device: &str) -> (Job, Call) {
    let command = json!({"job-id": job_id, "device": device, "auto-dismiss": false});
    (
        Job::new(job_id),
        typed_call::<commands::BlockCommit>(command),
    )
}

/// The call of typed command `C` built from `arguments`, checked against
/// the catalogue's type. The arguments go out as given when the typed value
/// would not say the same (a `null` the type cannot hold, such as
/// `"backing": null`, or members the type does not know): QEMU judges them.
pub(crate) fn typed_call<C>(arguments: serde_json::Value) -> Call
where
    C: qmp_io::Command + serde::de::DeserializeOwned + serde::Serialize,
{
    match serde_json::from_value::<C>(arguments.clone()) {
        Ok(command) if serde_json::to_value(&command).ok().as_ref() == Some(&arguments) => {
            Call::command(&command)
        }
        _ => {
            tracing::debug!(command = C::NAME, "arguments sent as given, not as typed");
            Call::new(C::NAME).arguments(arguments)
        }
    }
}

/// A link that runs `blockdev-create` with `options` as job `job_id`.
fn create_link(job_id: String, options: serde_json::Value, what: String) -> (String, Link) {
    let call =
        typed_call::<commands::BlockdevCreate>(json!({"job-id": job_id, "options": options}));
    (
        what,
        link(Job::new(job_id).run(call, DEFAULT_CREATE_TIMEOUT)),
    )
}

/// A link that opens node `node` with `blockdev-add` of `options`.
fn open_link(node: &str, options: serde_json::Value) -> (String, Link) {
    let what = format!("block node {node}");
    let add = Action::new(typed_call::<commands::BlockdevAdd>(options), what.clone());
    (
        what,
        link(Sequence::new(format!("blockdev-add {node}"), vec![add])),
    )
}

/// A raw image of `size` bytes at `path` on the host, created with a
/// `blockdev-create` job and opened as node `node` (format `raw`).
pub fn create_raw(path: &str, size: u64, node: &str) -> Chain {
    let file = json!({"driver": "file", "filename": path, "size": size});
    let open = json!({
        "driver": "raw", "node-name": node,
        "file": {"driver": "file", "filename": path},
    });
    Chain::new(
        format!("create raw {path}"),
        vec![
            create_link(format!("create-{node}"), file, format!("file {path}")),
            open_link(node, open),
        ],
    )
}

/// The image a new one is layered over: its path, its open node and its
/// format (`qcow2`, `raw`).
#[derive(Debug, Clone, Copy)]
pub struct Backing<'a> {
    /// Where the backing file is.
    pub path: &'a str,
    /// The node it is open as (empty: open the new image without it).
    pub node: &'a str,
    /// Its format.
    pub format: &'a str,
}

/// A qcow2 image of `size` bytes at `path` on the host, created with two
/// `blockdev-create` jobs (the file, then the format), and opened as node
/// `node` (its file as `node-file`), over `backing` if given.
pub fn create_qcow2(path: &str, size: u64, node: &str, backing: Option<Backing<'_>>) -> Chain {
    let file_node = format!("{node}-file");
    let file = json!({"driver": "file", "filename": path, "size": 0});
    let open_file = json!({"driver": "file", "node-name": file_node, "filename": path});
    let mut qcow2 = json!({"driver": "qcow2", "file": file_node, "size": size});
    let mut open = json!({"driver": "qcow2", "node-name": node, "file": file_node});
    if let Some(b) = backing {
        qcow2["backing-file"] = b.path.into();
        qcow2["backing-fmt"] = b.format.into();
        // No node: opened without its backing file, as a snapshot overlay
        // must be.
        open["backing"] = if b.node.is_empty() {
            serde_json::Value::Null
        } else {
            b.node.into()
        };
    }
    Chain::new(
        format!("create qcow2 {path}"),
        vec![
            create_link(format!("create-{file_node}"), file, format!("file {path}")),
            open_link(&file_node, open_file),
            create_link(
                format!("create-{node}"),
                qcow2,
                format!("qcow2 format in {path}"),
            ),
            open_link(node, open),
        ],
    )
}

/// An external snapshot: a new qcow2 overlay at `path` over `node` (created
/// with `blockdev-create`, opened as `overlay` without a backing node), then
/// `blockdev-snapshot`, which makes it the top of `node`'s chain.
pub fn snapshot(
    node: &str,
    node_path: &str,
    node_format: &str,
    path: &str,
    size: u64,
    overlay: &str,
) -> Chain {
    let backing = Backing {
        path: node_path,
        node: "",
        format: node_format,
    };
    let snapshot =
        typed_call::<commands::BlockdevSnapshot>(json!({"node": node, "overlay": overlay}));
    let what = format!("snapshot of {node} in {overlay}");
    let take = Action::new(snapshot, what.clone());
    Chain::new(
        format!("snapshot {node}"),
        vec![
            (
                format!("overlay {path}"),
                link(create_qcow2(path, size, overlay, Some(backing))),
            ),
            (
                what,
                link(Sequence::new(
                    format!("blockdev-snapshot {node}"),
                    vec![take],
                )),
            ),
        ],
    )
}

/// `block-dirty-bitmap-add` of a persistent-or-not bitmap `name` on `node`.
pub fn add_bitmap(node: &str, name: &str, persistent: bool) -> Sequence {
    let add = typed_call::<commands::BlockDirtyBitmapAdd>(
        json!({"node": node, "name": name, "persistent": persistent}),
    );
    Sequence::new(
        format!("block-dirty-bitmap-add {node} {name}"),
        vec![Action::new(add, format!("bitmap {name} on {node}"))],
    )
}

/// `block-dirty-bitmap-remove`.
pub fn remove_bitmap(node: &str, name: &str) -> Sequence {
    let remove =
        typed_call::<commands::BlockDirtyBitmapRemove>(json!({"node": node, "name": name}));
    Sequence::new(
        format!("block-dirty-bitmap-remove {node} {name}"),
        vec![Action::new(remove, format!("bitmap {name} on {node}"))],
    )
}
