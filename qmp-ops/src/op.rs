//! The sans-IO shape of an operation: a state machine that says what to do
//! next, and what the drivers tell it back.

use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use qmp_io::{Call, Event, Json};

use crate::error::OpError;

/// An event an operation waits for: a name and, optionally, members of its
/// `data` that must have given values (compared as JSON values).
///
/// ```
/// use qmp_ops::Want;
/// let gone = Want::event("DEVICE_DELETED").data("device", "usb1");
/// # let _ = gone;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    name: String,
    data: Vec<(String, serde_json::Value)>,
}

impl Want {
    /// Any event called `name`.
    pub fn event(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            data: Vec::new(),
        }
    }

    /// Only events whose `data.key` equals `value` (all such conditions hold).
    pub fn data(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.data.push((key.into(), value.into()));
        self
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when `event` is one of these.
    pub fn matches(&self, event: &Event) -> bool {
        if event.name() != self.name {
            return false;
        }
        if self.data.is_empty() {
            return true;
        }
        let Ok(serde_json::Value::Object(data)) = event.decode::<serde_json::Value>() else {
            return false;
        };
        self.data.iter().all(|(k, v)| data.get(k) == Some(v))
    }
}

/// What an operation asks its driver to do next.
#[derive(Debug)]
#[must_use]
pub enum Step<T> {
    /// Send `call`; the next input is [`Input::Reply`]. With `watch`, the
    /// driver first replaces the events being watched by these (an empty list
    /// stops watching), subscribing before the command goes out so that no
    /// event it causes is missed, and discarding any event QEMU stamped
    /// before the command was sent.
    Send {
        /// The command.
        call: Call,
        /// Events to watch from this command on (`None`: keep the current ones).
        watch: Option<Vec<Want>>,
    },
    /// Wait for one of the watched events until `deadline`; the next input
    /// is [`Input::Event`], [`Input::Lagged`], [`Input::Timeout`] or
    /// [`Input::Closed`].
    Wait {
        /// When to give up waiting.
        deadline: Instant,
    },
    /// Sleep for this long (a polling interval); the next input is [`Input::Woke`].
    Sleep(Duration),
    /// Finished: the result, or the error with the state it left.
    Done(Result<T, OpError>),
}

impl<T> Step<T> {
    /// The same step for an operation with another output; `Done` goes to `done`.
    pub fn map_done<U>(self, done: impl FnOnce(Result<T, OpError>) -> Step<U>) -> Step<U> {
        match self {
            Step::Send { call, watch } => Step::Send { call, watch },
            Step::Wait { deadline } => Step::Wait { deadline },
            Step::Sleep(d) => Step::Sleep(d),
            Step::Done(r) => done(r),
        }
    }
}

/// What a driver tells an operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// The first input of every operation.
    Start,
    /// The answer to the last [`Step::Send`].
    Reply(qmp_io::Result<Json>),
    /// A watched event: which [`Want`] (its index in the watch list) it matched.
    Event(usize, Arc<Event>),
    /// The subscription fell behind and this many events were lost: one of
    /// them may have been a watched one.
    Lagged(u64),
    /// The deadline of the last [`Step::Wait`] passed.
    Timeout,
    /// The connection ended while waiting.
    Closed,
    /// The [`Step::Sleep`] is over.
    Woke,
}

/// A VM operation, driven by [`run`](crate::run) (blocking) or
/// [`run_async`](crate::run_async) (any async runtime).
///
/// It never performs I/O or reads a clock itself: the driver calls
/// [`step`](Self::step) with the input and the current time, does what the
/// returned [`Step`] says, and calls again with the outcome, until
/// [`Step::Done`].
pub trait Operation {
    /// What the operation gives back when it succeeds.
    type Output;

    /// The next step, given what happened since the last one.
    fn step(&mut self, input: Input, now: Instant) -> Step<Self::Output>;

    /// What undoes the work done so far, for a driver that gives up on the
    /// operation before it is done (a dropped future): the steps already
    /// made, newest first, the job it started, the handle it opened. `None`
    /// when there is nothing QEMU lets undo.
    fn abandon(&mut self) -> Option<Cleanup> {
        None
    }
}

/// An operation run only for its effect: what [`Operation::abandon`] gives.
pub type Cleanup = Box<dyn Operation<Output = ()> + Send>;

impl<O: Operation + ?Sized> Operation for Box<O> {
    type Output = O::Output;

    fn step(&mut self, input: Input, now: Instant) -> Step<O::Output> {
        (**self).step(input, now)
    }

    fn abandon(&mut self) -> Option<Cleanup> {
        (**self).abandon()
    }
}

/// `now + timeout`, or far enough in the future to mean "for ever" when that
/// overflows.
pub(crate) fn deadline(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
