//! `qmp [TARGET] --events`: events as JSON lines.
//!
//! Each line is `{"event": NAME, "data": {...}, "timestamp": {"seconds": S,
//! "microseconds": U}}` with QEMU's data as it sent it (`data` left out when
//! the event has none), always one line whatever the output style.
//!
//! The watch ends with status 0 after `--count` events, at the end of the
//! connection, or at `--timeout` when no `--count` was given (the timeout is
//! then simply how long to watch). A `--count` not reached when the timeout
//! strikes or the connection ends is a failure (status 2) saying how many
//! events came. Ctrl-C ends the process as the signal does (status 130 from
//! a shell); the lines already printed are complete.

use qmp_std::{Client, Event, EventFilter, RecvTimeoutError};

use crate::failure::Failure;
use crate::output;
use crate::target::Deadline;

/// Watches events matching `names` (every event when empty) until `count`,
/// the end of the connection or `deadline`.
pub fn watch(
    client: &Client,
    names: &[String],
    count: Option<u64>,
    deadline: &Deadline,
) -> Result<(), Failure> {
    let filter = names
        .iter()
        .fold(EventFilter::all(), |f, name| f.or_name(name.as_str()));
    let events = client.subscribe(filter);
    let mut seen: u64 = 0;
    loop {
        if count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
        let next = match deadline.remaining() {
            Some(left) => events.recv_timeout(left),
            None => events.recv().ok_or(RecvTimeoutError::Closed),
        };
        match next {
            Ok(Ok(event)) => {
                output::line(&event_line(&event))?;
                seen += 1;
            }
            Ok(Err(lagged)) => output::error_line(&Failure::other(lagged)),
            Err(RecvTimeoutError::Timeout) => {
                return match count {
                    None => Ok(()),
                    Some(n) => Err(deadline.expired(&format!("{seen} of {n} events came"))),
                };
            }
            Err(RecvTimeoutError::Closed) => {
                return match count {
                    None => Ok(()),
                    Some(n) => {
                        let why = client
                            .wait_closed(Some(core::time::Duration::ZERO))
                            .map_or_else(|| "the connection ended".to_owned(), |d| d.to_string());
                        Err(Failure::other(format!("{why} after {seen} of {n} events")))
                    }
                };
            }
        }
    }
}

/// One event as a JSON line.
pub fn event_line(event: &Event) -> String {
    let mut line = String::from("{\"event\":");
    line.push_str(&serde_json::Value::from(event.name()).to_string());
    if let Some(data) = event.data() {
        line.push_str(",\"data\":");
        line.push_str(&crate::jsonfmt::compact(data.as_str()));
    }
    if let Some(t) = event.timestamp() {
        line.push_str(&format!(
            ",\"timestamp\":{{\"seconds\":{},\"microseconds\":{}}}",
            t.seconds, t.microseconds
        ));
    }
    line.push('}');
    line
}
