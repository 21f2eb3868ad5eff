//! Several commands run in order, each with the command that undoes it: when
//! one fails, the steps already made are undone, newest first.

use std::collections::VecDeque;
use std::time::Instant;

use qmp_io::{Call, Json};

use crate::error::{Cause, OpError};
use crate::op::{Input, Operation, Step};
use crate::wait::command_failed;

/// One step of a [`Sequence`]: a command and, optionally, the command that
/// undoes it.
#[derive(Debug)]
pub struct Action {
    command: String,
    call: Option<Call>,
    undo: Option<Call>,
    /// What the step leaves when it is not undone, such as `block node disk0`.
    made: String,
}

impl Action {
    /// A step that cannot be undone (or need not be).
    pub fn new(call: Call, made: impl Into<String>) -> Self {
        Self {
            command: call.name().to_owned(),
            call: Some(call),
            undo: None,
            made: made.into(),
        }
    }

    /// Undoes the step with `undo` if a later step fails.
    pub fn undo(mut self, undo: Call) -> Self {
        self.undo = Some(undo);
        self
    }
}

/// Commands in order; when one fails, the undo commands of the steps before
/// it run newest first, and the error says what each left.
///
/// ```no_run
/// # fn demo(qmp: &qmp_std::Client) -> Result<(), qmp_ops::OpError> {
/// use qmp_io::Call;
/// use qmp_ops::sequence::{Action, Sequence};
/// use serde_json::json;
///
/// let node = json!({"driver": "null-co", "node-name": "n1"});
/// let seq = Sequence::new("add n1", vec![
///     Action::new(Call::new("blockdev-add").arguments(node), "block node n1")
///         .undo(Call::new("blockdev-del").arguments(json!({"node-name": "n1"}))),
///     Action::new(Call::new("device_add").arguments(json!({"driver": "no-such"})), "device"),
/// ]);
/// let err = qmp_ops::run(qmp, seq).unwrap_err();
/// assert!(err.left.contains("undone"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sequence {
    operation: String,
    todo: VecDeque<Action>,
    /// Steps made, with their undo commands.
    made: Vec<Action>,
    replies: Vec<Json>,
    /// The failure being rolled back, and what the rollback did so far.
    failed: Option<(OpError, Vec<String>)>,
    undoing: Option<String>,
}

impl Sequence {
    /// Runs `actions` in order, as the operation `operation`.
    pub fn new(operation: impl Into<String>, actions: Vec<Action>) -> Self {
        Self {
            operation: operation.into(),
            todo: actions.into(),
            made: Vec::new(),
            replies: Vec::new(),
            failed: None,
            undoing: None,
        }
    }

    fn next(&mut self) -> Step<Vec<Json>> {
        if self.failed.is_some() {
            return self.undo_next();
        }
        match self.todo.pop_front() {
            Some(mut action) => {
                let call = action.call.take();
                self.made.push(action);
                match call {
                    Some(call) => Step::Send { call, watch: None },
                    None => self.next(),
                }
            }
            None => Step::Done(Ok(core::mem::take(&mut self.replies))),
        }
    }

    fn undo_next(&mut self) -> Step<Vec<Json>> {
        while let Some(action) = self.made.pop() {
            let Some(undo) = action.undo else {
                if let Some((_, notes)) = &mut self.failed {
                    notes.push(format!("{} remains (no undo)", action.made));
                }
                continue;
            };
            self.undoing = Some(action.made);
            return Step::Send {
                call: undo,
                watch: None,
            };
        }
        let Some((error, notes)) = self.failed.take() else {
            return Step::Done(Err(OpError::new(
                &self.operation,
                "rolling back",
                Cause::Decode("nothing to roll back".into()),
                "unknown",
            )));
        };
        let left = if notes.is_empty() {
            "nothing changed".to_owned()
        } else {
            notes.join("; ")
        };
        Step::Done(Err(error.left(left)))
    }

    fn on_reply(&mut self, reply: qmp_io::Result<Json>) -> Step<Vec<Json>> {
        if let Some(what) = self.undoing.take() {
            let note = match reply {
                Ok(_) => format!("{what} undone"),
                Err(e) => format!("{what} remains (undoing it failed: {e})"),
            };
            if let Some((_, notes)) = &mut self.failed {
                notes.push(note);
            }
            return self.undo_next();
        }
        match reply {
            Ok(json) => {
                self.replies.push(json);
                self.next()
            }
            Err(e) => {
                // The failed step itself: refused, it changed nothing; lost,
                // it may have run and is undone too.
                let Some(action) = self.made.pop() else {
                    return self.next();
                };
                let refused = e.command_error().is_some();
                let error = command_failed(&self.operation, &action.command, e);
                let mut notes = Vec::new();
                if !refused {
                    self.made.push(action);
                    notes.push("the failed step may have run".to_owned());
                }
                self.failed = Some((error, notes));
                self.undo_next()
            }
        }
    }
}

impl Operation for Sequence {
    type Output = Vec<Json>;

    fn step(&mut self, input: Input, _now: Instant) -> Step<Vec<Json>> {
        match input {
            Input::Reply(reply) => self.on_reply(reply),
            _ => self.next(),
        }
    }

    /// The undo commands of the steps made (the one in flight included: it
    /// may have run), newest first.
    fn abandon(&mut self) -> Option<Link> {
        let undo: Vec<Action> = core::mem::take(&mut self.made)
            .into_iter()
            .rev()
            .filter_map(|a| {
                let made = a.made;
                a.undo.map(|call| Action::new(call, made))
            })
            .collect();
        if undo.is_empty() {
            return None;
        }
        // Each undo is independent of the others: one failing must not
        // stop the rest.
        let links = undo
            .into_iter()
            .map(|a| {
                let what = format!("undo of {}", a.made);
                let op = Sequence::new(what.clone(), vec![a]);
                (what, ignore_failure(op))
            })
            .collect();
        Some(Box::new(Chain::new(
            format!("undo {}", self.operation),
            links,
        )))
    }
}

/// Runs `op` and counts its failure as done: a best-effort undo.
pub(crate) fn ignore_failure<O>(op: O) -> Link
where
    O: Operation + Send + 'static,
{
    Box::new(IgnoreFailure(op))
}

/// Runs an operation and counts its failure as done (a best-effort undo).
struct IgnoreFailure<O>(O);

impl<O: Operation> Operation for IgnoreFailure<O> {
    type Output = ();

    fn step(&mut self, input: Input, now: Instant) -> Step<()> {
        self.0.step(input, now).map_done(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "an undo failed");
            }
            Step::Done(Ok(()))
        })
    }
}

/// An operation whose output is not needed, boxed, for a [`Chain`].
pub type Link = crate::op::Cleanup;

/// Runs `op` and drops its output: a [`Link`] of a [`Chain`].
pub fn link<O>(op: O) -> Link
where
    O: Operation + Send + 'static,
{
    Box::new(Discard(op))
}

struct Discard<O>(O);

impl<O: Operation> Operation for Discard<O> {
    type Output = ();

    fn step(&mut self, input: Input, now: Instant) -> Step<()> {
        self.0
            .step(input, now)
            .map_done(|r| Step::Done(r.map(drop)))
    }
}

/// Operations run one after the other; the first failure ends the chain,
/// and its error lists what the earlier links made.
pub struct Chain {
    operation: String,
    links: VecDeque<(String, Link)>,
    current: Option<(String, Link)>,
    made: Vec<String>,
}

impl core::fmt::Debug for Chain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Chain")
            .field("operation", &self.operation)
            .field("made", &self.made)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// Runs `links` in order; each is named by what it makes, for errors.
    pub fn new(operation: impl Into<String>, links: Vec<(String, Link)>) -> Self {
        Self {
            operation: operation.into(),
            links: links.into(),
            current: None,
            made: Vec::new(),
        }
    }
}

impl Operation for Chain {
    type Output = ();

    fn step(&mut self, mut input: Input, now: Instant) -> Step<()> {
        loop {
            let Some((what, op)) = &mut self.current else {
                match self.links.pop_front() {
                    Some(next) => {
                        self.current = Some(next);
                        input = Input::Start;
                        continue;
                    }
                    None => return Step::Done(Ok(())),
                }
            };
            match op.step(input, now) {
                Step::Done(Ok(())) => {
                    self.made.push(core::mem::take(what));
                    self.current = None;
                    input = Input::Start;
                }
                Step::Done(Err(e)) => {
                    let left = if self.made.is_empty() {
                        e.left.clone()
                    } else {
                        format!(
                            "{}; made before it and kept: {}",
                            e.left,
                            self.made.join(", ")
                        )
                    };
                    let e = OpError {
                        operation: format!("{}: {}", self.operation, e.operation),
                        ..e
                    };
                    return Step::Done(Err(e.left(left)));
                }
                other => return other,
            }
        }
    }

    /// What the link under way made; the links before it are kept, as
    /// they are when the chain fails.
    fn abandon(&mut self) -> Option<Link> {
        self.current.as_mut().and_then(|(_, op)| op.abandon())
    }
}
