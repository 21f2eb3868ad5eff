//! Test bodies written against the [`Qmp`] and [`AsyncQmp`] traits only, so the
//! same body runs over every transport: a QMP socket, a child's stdio, libvirt.
//! Each returns what it saw; the [`checks`](crate::checks) judge it.

use futures_util::StreamExt;
use qmp_io::{AsyncQmp, Json, Qmp, Result};

use crate::checks::Item;
use crate::fixtures::{self, QueryStatus, StatusInfo};

/// What a body saw: `query-status` typed and raw, and the events that `stop`
/// and `cont` raised, as seen by a subscriber filtering on STOP and RESUME.
#[derive(Debug)]
pub struct Seen {
    /// `query-status`, typed.
    pub typed: Result<StatusInfo>,
    /// `query-status`, raw.
    pub raw: Result<Json>,
    /// The first two events after `stop` and `cont`.
    pub events: Vec<Item>,
}

/// Runs the body over a blocking client. Waits at most
/// [`PATIENCE`](fixtures::PATIENCE) for each event.
pub fn status_stop_cont(qmp: &impl Qmp) -> Seen {
    let events = qmp.subscribe(fixtures::stop_resume_filter());
    let typed = qmp.execute(&QueryStatus);
    let raw = qmp.execute_raw("query-status", ());
    crate::checks::ok("stop", qmp.execute_raw("stop", ()));
    crate::checks::ok("cont", qmp.execute_raw("cont", ()));
    let events = (0..2)
        .filter_map(|_| events.recv_timeout(fixtures::PATIENCE).ok())
        .collect();
    Seen { typed, raw, events }
}

/// The same body over an async client; the caller bounds its time.
pub async fn status_stop_cont_async(qmp: &impl AsyncQmp) -> Seen {
    let mut events = qmp.subscribe(fixtures::stop_resume_filter());
    let typed = qmp.execute(&QueryStatus).await;
    let raw = qmp.execute_raw("query-status", ()).await;
    crate::checks::ok("stop", qmp.execute_raw("stop", ()).await);
    crate::checks::ok("cont", qmp.execute_raw("cont", ()).await);
    let mut seen = Vec::with_capacity(2);
    while seen.len() < 2 {
        match events.next().await {
            Some(item) => seen.push(item),
            None => break,
        }
    }
    Seen {
        typed,
        raw,
        events: seen,
    }
}

/// Judges what a body saw.
pub fn check(who: &str, seen: Seen) {
    crate::checks::status(seen.typed, seen.raw);
    crate::checks::stop_then_resume(who, &seen.events);
}
