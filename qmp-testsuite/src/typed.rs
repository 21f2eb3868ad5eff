//! Typed commands and typed events from the catalogue (`qmp-qapi`), through
//! the [`Qmp`] and [`AsyncQmp`] traits only, so the same body runs over every
//! transport. A subscriber filtering with
//! `EventFilter::of::<Stop>().or_of::<Resume>()` must get exactly the STOP
//! and RESUME that the typed `stop` and `cont` raise, decodable as their
//! types, and not the RESET that a typed `system_reset` raises (which an
//! unfiltered subscriber sees, so the event did happen).

use std::sync::Arc;

use futures_util::StreamExt;
use qmp_io::{AsyncQmp, Empty, Error, Event, EventFilter, Json, Qmp, Result, Subscription};
use qmp_qapi::commands;
use qmp_qapi::events::{self, Resume, Stop};
use qmp_qapi::types::ShutdownCause;

use crate::checks::{Item, ok};
use crate::fixtures::PATIENCE;

/// The filter under test.
pub fn stop_or_resume() -> EventFilter {
    EventFilter::of::<Stop>().or_of::<Resume>()
}

/// The events an unfiltered subscriber must see before the body stops
/// waiting: the unrelated one, and the two the filter lets through.
const ALL_OF: [&str; 3] = ["RESET", "STOP", "RESUME"];

/// What a typed body saw.
#[derive(Debug)]
pub struct TypedSeen {
    /// The typed `system_reset`, `stop` and `cont`, in that order.
    pub replies: [Result<Empty>; 3],
    /// What the typed subscriber received: the first two events.
    pub typed: Vec<Item>,
    /// What an unfiltered subscriber received, until it had RESET, STOP and
    /// RESUME (or its wait ran out).
    pub all: Vec<Item>,
    /// What the typed subscriber still had queued after that: nothing, or
    /// the filter let an unrelated event through.
    pub left: Option<Item>,
}

fn has_all(items: &[Item]) -> bool {
    ALL_OF
        .iter()
        .all(|name| items.iter().flatten().any(|e| e.name() == *name))
}

/// Runs the body over a blocking client. Waits at most [`PATIENCE`] for
/// each event.
pub fn stop_cont_typed(qmp: &impl Qmp) -> TypedSeen {
    let typed = qmp.subscribe(stop_or_resume());
    let all = qmp.subscribe(EventFilter::all());
    let replies = [
        qmp.execute(&commands::SystemReset),
        qmp.execute(&commands::Stop),
        qmp.execute(&commands::Cont),
    ];
    let mut seen_all = Vec::new();
    while !has_all(&seen_all) {
        match all.recv_timeout(PATIENCE) {
            Ok(item) => seen_all.push(item),
            Err(_) => break,
        }
    }
    let seen_typed = (0..2)
        .filter_map(|_| typed.recv_timeout(PATIENCE).ok())
        .collect();
    TypedSeen {
        replies,
        typed: seen_typed,
        all: seen_all,
        left: typed.try_recv(),
    }
}

/// The same body over an async client; the caller bounds its time.
pub async fn stop_cont_typed_async(qmp: &impl AsyncQmp) -> TypedSeen {
    let mut typed = qmp.subscribe(stop_or_resume());
    let mut all = qmp.subscribe(EventFilter::all());
    let replies = [
        qmp.execute(&commands::SystemReset).await,
        qmp.execute(&commands::Stop).await,
        qmp.execute(&commands::Cont).await,
    ];
    let mut seen_all = Vec::new();
    while !has_all(&seen_all) {
        match all.next().await {
            Some(item) => seen_all.push(item),
            None => break,
        }
    }
    let seen_typed = take(&mut typed, 2).await;
    TypedSeen {
        replies,
        typed: seen_typed,
        all: seen_all,
        left: typed.try_recv(),
    }
}

async fn take(events: &mut Subscription, n: usize) -> Vec<Item> {
    let mut items = Vec::with_capacity(n);
    while items.len() < n {
        match events.next().await {
            Some(item) => items.push(item),
            None => break,
        }
    }
    items
}

fn events_of(who: &str, what: &str, items: Vec<Item>) -> Vec<Arc<Event>> {
    items
        .into_iter()
        .map(|e| e.unwrap_or_else(|l| panic!("{who}: {what}: {l}")))
        .collect()
}

/// The catalogue's `Event` enum from a received event: decoding must not
/// fail, and `to_enum` (which never fails) must give the same.
fn catalogued(event: &Event) -> events::Event {
    let typed = events::Event::try_decode(event.name(), event.data().map(Json::as_str))
        .unwrap_or_else(|e| panic!("{} does not decode into events::Event: {e}", event.name()));
    assert_eq!(event.to_enum::<events::Event>(), typed);
    typed
}

/// Judges what a typed body saw.
///
/// # Panics
///
/// On the first thing that is not as it should be, naming `who`.
pub fn check_typed(who: &str, seen: TypedSeen) {
    let [reset, stop, cont] = seen.replies;
    ok("system_reset", reset);
    ok("stop", stop);
    ok("cont", cont);

    let all = events_of(who, "unfiltered", seen.all);
    let names: Vec<&str> = all.iter().map(|e| e.name()).collect();
    assert!(
        ALL_OF.iter().all(|n| names.contains(n)),
        "{who}: the unfiltered subscriber saw {names:?}, not all of {ALL_OF:?}"
    );
    let reset = all.iter().find(|e| e.name() == "RESET").unwrap();
    match catalogued(reset) {
        events::Event::Reset(r) => {
            assert!(!r.guest, "{who}: {r:?}");
            assert_eq!(r.reason, ShutdownCause::HostQmpSystemReset, "{who}");
        }
        other => panic!("{who}: RESET decoded as {other:?}"),
    }

    let typed = events_of(who, "typed", seen.typed);
    let names: Vec<&str> = typed.iter().map(|e| e.name()).collect();
    assert_eq!(names, ["STOP", "RESUME"], "{who}: the typed subscriber");
    let (stop, resume) = (&typed[0], &typed[1]);
    assert!(stop.is::<Stop>() && resume.is::<Resume>(), "{who}");
    assert_eq!(ok("STOP as events::Stop", stop.typed::<Stop>()), Stop {});
    assert_eq!(
        ok("RESUME as events::Resume", resume.typed::<Resume>()),
        Resume {}
    );
    assert!(matches!(catalogued(stop), events::Event::Stop(_)), "{who}");
    assert!(
        matches!(catalogued(resume), events::Event::Resume(_)),
        "{who}"
    );
    match stop.typed::<Resume>() {
        Err(Error::Event(e)) => {
            assert!(e.is_other_event(), "{who}: {e}");
            assert_eq!((e.event(), e.expected()), ("STOP", "RESUME"), "{who}");
        }
        other => panic!("{who}: STOP as events::Resume gave {other:?}"),
    }

    assert!(
        seen.left.is_none(),
        "{who}: the typed filter let through {:?}",
        seen.left
    );
}
