//! Reconnecting clients: a QMP client that stays attached to a unix socket
//! path across QEMU restarts, as a layer over the plain clients, which do
//! not pay for it.
//!
//! A supervisor (a task for the async client, a thread for the blocking one)
//! waits for the connection to drop, then connects again with bounded
//! exponential backoff and jitter, redoing the handshake each time (greeting,
//! then `qmp_capabilities` with the same capabilities). Subscriptions belong
//! to the reconnecting client, not to one connection: each new connection
//! takes them over, with a [`Gap::Reconnected`] marker first; a
//! [`Gap::Disconnected`] marker follows the last event of the connection
//! that dropped.
//!
//! Here: the settings, the backoff, the link state the handles and the
//! supervisor share, and the subscriptions. The async client is in `tasks`,
//! the blocking one in `threads`.

pub(crate) mod tasks;
pub(crate) mod threads;

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use qmp_proto::{Client as Core, Heap};

use crate::config::Config;
use crate::error::{Disconnect, Error};
use crate::events::{EventFilter, Gap, Queue, Subscribers, Subscription, Wake};
use crate::session::Session;
use crate::slot::Latch;

/// The session of one QMP connection, whichever driver runs it.
type QmpSession = Session<Core<Heap>>;

/// What a call made while a reconnecting client is disconnected does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WhileReconnecting {
    /// Fails at once with [`Error::Reconnecting`]; nothing is sent. The
    /// default: the caller decides what to do.
    #[default]
    FailFast,
    /// Waits for the reconnect, within the call's timeout (the wait counts
    /// against it), then runs; [`Error::Reconnecting`] when the timeout
    /// passes first. A call without a timeout waits as long as it takes.
    Wait,
}

/// How a reconnecting client reconnects (`connect_unix_reconnecting` in the
/// adapters). The connection settings are the [`Config`] beside it.
///
/// The delay before attempt `n` (from 0) is drawn at random between half of
/// `min_delay * 2^n` and all of it, capped at `max_delay` and never below
/// `min_delay`; the first attempt waits too, so a QEMU on its way down is
/// not hammered.
///
/// ```
/// use std::time::Duration;
/// use qmp_io::{Reconnect, WhileReconnecting};
///
/// let reconnect = Reconnect::default()
///     .delays(Duration::from_millis(50), Duration::from_secs(2))
///     .give_up_after(Some(20))
///     .calls(WhileReconnecting::Wait);
/// # let _ = reconnect;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// The shortest delay before an attempt. Default 100 ms.
    pub min_delay: Duration,
    /// The longest delay before an attempt. Default 5 s.
    pub max_delay: Duration,
    /// Attempts in a row after which the client gives up (its state becomes
    /// [`LinkState::GaveUp`], its calls fail and its subscriptions end);
    /// `None`, the default, tries for ever.
    pub give_up_after: Option<u32>,
    /// What calls do while the client is disconnected.
    pub calls: WhileReconnecting,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            give_up_after: None,
            calls: WhileReconnecting::FailFast,
        }
    }
}

impl Reconnect {
    /// Sets the shortest and the longest delay before an attempt (a `max`
    /// below `min` counts as `min`).
    pub fn delays(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max;
        self
    }

    /// Gives up after `attempts` failed attempts in a row (`None`: never).
    pub fn give_up_after(mut self, attempts: Option<u32>) -> Self {
        self.give_up_after = attempts;
        self
    }

    /// Sets what calls do while the client is disconnected.
    pub fn calls(mut self, calls: WhileReconnecting) -> Self {
        self.calls = calls;
        self
    }
}

/// The link of a reconnecting client, as its `state()` reports it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LinkState {
    /// Connected; calls go through.
    Connected,
    /// The connection dropped; the client is trying again.
    Reconnecting {
        /// Attempts made so far.
        attempts: u32,
        /// Why the connection dropped.
        since: Disconnect,
    },
    /// The client made [`Reconnect::give_up_after`] attempts and stopped:
    /// calls fail with [`Error::Disconnected`] and subscriptions have ended.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why the connection dropped.
        since: Disconnect,
        /// Why the last attempt failed.
        last_error: Error,
    },
    /// The client was closed (or every handle dropped); it does not
    /// reconnect.
    Closed,
}

/// The delays between attempts: exponential, bounded, with jitter from a
/// xorshift generator seeded per client (no dependency for randomness).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    /// The delay the next attempt is drawn under.
    base: Duration,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(reconnect: &Reconnect, seed: u64) -> Self {
        let min = reconnect.min_delay;
        let max = reconnect.max_delay.max(min);
        Self {
            min,
            max,
            base: min,
            // xorshift never leaves zero.
            rng: seed | 1,
        }
    }

    /// A seed that differs between clients and runs: the clock, mixed with a
    /// counter so two clients started at once still differ.
    pub(crate) fn seed() -> u64 {
        static CLIENTS: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = CLIENTS.fetch_add(1, Ordering::Relaxed);
        now ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The delay before the next attempt, in `[min, max]`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = base.saturating_mul(2).min(self.max);
        let half = base.checked_div(2).unwrap_or_default();
        let span = u64::try_from(base.saturating_sub(half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = self
            .random()
            .checked_rem(span.saturating_add(1))
            .unwrap_or(0);
        half.saturating_add(Duration::from_nanos(jitter))
            .clamp(self.min, self.max)
    }
}

/// What a call finds when it looks at the link.
pub(crate) enum Now<C> {
    /// Connected: run the call on this client.
    Ready(C),
    /// Reconnecting, and calls wait: this latch is set at the next change.
    Wait(Arc<Latch>, u32),
    /// The call fails with this.
    Failed(Error),
}

struct LinkInner<C> {
    current: Option<C>,
    state: LinkState,
    /// Set (and replaced) at every change of state.
    changed: Arc<Latch>,
}

/// The state the handles and the supervisor share; `C` is the plain client.
pub(crate) struct Link<C> {
    inner: Mutex<LinkInner<C>>,
    reconnects: AtomicU64,
    /// Set when the client is closed or its last handle dropped: the
    /// supervisor stops.
    pub(crate) stop: Latch,
}

impl<C: Plain> Link<C> {
    pub(crate) fn new(client: C) -> Self {
        Self {
            inner: Mutex::new(LinkInner {
                current: Some(client),
                state: LinkState::Connected,
                changed: Arc::new(Latch::new()),
            }),
            reconnects: AtomicU64::new(0),
            stop: Latch::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkInner<C>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves to `state`, with `current` as the client, and wakes the calls
    /// waiting for a change; unless the client is closed (`Err` gives
    /// `current` back then). With `stop`, closes it. The stop latch is
    /// read and set under the lock: a connection installed as the client
    /// closes is never left open.
    fn change(
        &self,
        state: LinkState,
        current: Option<C>,
        stop: bool,
    ) -> Result<Option<C>, Option<C>> {
        let (old, changed) = {
            let mut inner = self.lock();
            if self.stop.is_set() {
                return Err(current);
            }
            if stop {
                self.stop.set();
            }
            inner.state = state;
            let old = core::mem::replace(&mut inner.current, current);
            let changed = core::mem::replace(&mut inner.changed, Arc::new(Latch::new()));
            (old, changed)
        };
        changed.set();
        Ok(old)
    }

    pub(crate) fn state(&self) -> LinkState {
        self.lock().state.clone()
    }

    /// A latch set at the next change of state.
    pub(crate) fn next_change(&self) -> Arc<Latch> {
        self.lock().changed.clone()
    }

    pub(crate) fn current(&self) -> Option<C> {
        self.lock().current.clone()
    }

    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Where a call stands, given what calls do while reconnecting.
    pub(crate) fn now(&self, calls: WhileReconnecting) -> Now<C> {
        let inner = self.lock();
        match (&inner.state, &inner.current) {
            // Dropped, and the supervisor is about to say so: the call
            // counts as made while reconnecting.
            (LinkState::Connected, Some(client)) if client.session().is_closed() => match calls {
                WhileReconnecting::Wait => Now::Wait(inner.changed.clone(), 0),
                _ => Now::Failed(Error::Reconnecting { attempts: 0 }),
            },
            (LinkState::Connected, Some(client)) => Now::Ready(client.clone()),
            (LinkState::Reconnecting { attempts, .. }, _) => match calls {
                WhileReconnecting::Wait => Now::Wait(inner.changed.clone(), *attempts),
                _ => Now::Failed(Error::Reconnecting {
                    attempts: *attempts,
                }),
            },
            (LinkState::GaveUp { since, .. }, _) => Now::Failed(Error::Disconnected(since.clone())),
            _ => Now::Failed(Error::Disconnected(Disconnect::Local)),
        }
    }

    /// The attempts made so far, while reconnecting.
    pub(crate) fn attempts(&self) -> u32 {
        match self.lock().state {
            LinkState::Reconnecting { attempts, .. } => attempts,
            _ => 0,
        }
    }

    /// The connection dropped for `since`; unless the client is closed.
    pub(crate) fn dropped(&self, since: Disconnect) {
        let _ = self.change(LinkState::Reconnecting { attempts: 0, since }, None, false);
    }

    /// `attempts` attempts were made: a change too (of the count).
    pub(crate) fn attempted(&self, attempts: u32) {
        let changed = {
            let mut inner = self.lock();
            let LinkState::Reconnecting { attempts: a, .. } = &mut inner.state else {
                return;
            };
            *a = attempts;
            core::mem::replace(&mut inner.changed, Arc::new(Latch::new()))
        };
        changed.set();
    }

    /// The supervisor gave up.
    pub(crate) fn gave_up(&self, attempts: u32, since: Disconnect, last_error: Error) {
        let state = LinkState::GaveUp {
            attempts,
            since,
            last_error,
        };
        let _ = self.change(state, None, false);
    }

    /// A new connection is up: calls go to `client`. False when the client
    /// was closed meanwhile (the caller closes `client`).
    pub(crate) fn installed(&self, client: C) -> bool {
        // Counted first: whoever sees the new state sees the count too.
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        if self
            .change(LinkState::Connected, Some(client), false)
            .is_ok()
        {
            return true;
        }
        self.reconnects.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Closes for good: the supervisor stops; returns the client to close.
    pub(crate) fn shutdown(&self) -> Option<C> {
        self.change(LinkState::Closed, None, true).ok().flatten()
    }
}

/// What the layer needs of a plain client, blocking or async.
pub(crate) trait Plain: Clone {
    /// Its connection's session.
    fn session(&self) -> &Arc<QmpSession>;
    /// Closes its connection.
    fn close(&self);
}

impl Plain for crate::blocking::Client {
    fn session(&self) -> &Arc<QmpSession> {
        crate::blocking::Client::session(self)
    }

    fn close(&self) {
        crate::blocking::Client::close(self);
    }
}

impl<R: crate::nonblocking::Runtime> Plain for crate::nonblocking::Client<R> {
    fn session(&self) -> &Arc<QmpSession> {
        crate::nonblocking::Client::session(self)
    }

    fn close(&self) {
        crate::nonblocking::Client::close(self);
    }
}

/// What both reconnecting clients are made of, whatever runs their
/// supervisor.
pub(crate) struct Common<C> {
    pub(crate) link: Link<C>,
    pub(crate) subs: Arc<Subs>,
    pub(crate) path: std::path::PathBuf,
    pub(crate) config: Config,
    pub(crate) reconnect: Reconnect,
}

impl<C: Plain> Common<C> {
    /// Takes over `client`, the first connection to `path`.
    pub(crate) fn new(
        client: &C,
        path: &std::path::Path,
        config: Config,
        reconnect: Reconnect,
    ) -> Self {
        let subs = Subs::new(&config);
        // Closed already: the supervisor sees it and reconnects.
        let _ = subs.attach(client.session(), None);
        Self {
            link: Link::new(client.clone()),
            subs,
            path: path.to_owned(),
            config,
            reconnect,
        }
    }

    /// Closes for good: the supervisor stops, subscriptions end.
    pub(crate) fn shutdown(&self) {
        if let Some(client) = self.link.shutdown() {
            client.close();
        }
        self.subs.close();
    }

    /// True once closed or given up.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(
            self.link.state(),
            LinkState::Closed | LinkState::GaveUp { .. }
        )
    }

    /// The connection dropped for `since`: subscribers are told, calls
    /// see the client reconnecting. The outage to see through.
    pub(crate) fn dropped(&self, since: Disconnect, seed: u64) -> Outage {
        tracing::debug!(path = %self.path.display(), reason = %since, "connection dropped, reconnecting");
        self.subs.detach(&since);
        self.link.dropped(since.clone());
        Outage {
            backoff: Backoff::new(&self.reconnect, seed),
            attempts: 0,
            last_error: Error::Disconnected(since.clone()),
            since,
        }
    }

    /// The delay before the next attempt of `outage`; `None` when the
    /// client gives up (done here: calls fail, subscriptions end).
    pub(crate) fn next_attempt(&self, outage: &mut Outage) -> Option<Duration> {
        if self
            .reconnect
            .give_up_after
            .is_some_and(|limit| outage.attempts >= limit)
        {
            tracing::debug!(path = %self.path.display(), attempts = outage.attempts, error = %outage.last_error, "giving up reconnecting");
            let last_error = core::mem::replace(&mut outage.last_error, Error::Discarded);
            self.link
                .gave_up(outage.attempts, outage.since.clone(), last_error);
            self.subs.close();
            return None;
        }
        Some(outage.backoff.next_delay())
    }

    /// An attempt of `outage` starts.
    pub(crate) fn attempting(&self, outage: &mut Outage) {
        outage.attempts = outage.attempts.saturating_add(1);
        self.link.attempted(outage.attempts);
    }

    /// An attempt of `outage` ended with `result`: the client to watch once
    /// it is installed ([`Step::Up`]), or what to do next.
    pub(crate) fn attempted(&self, outage: &mut Outage, result: crate::Result<C>) -> Step<C> {
        match result {
            Ok(client) => {
                let reconnects = self.link.reconnects().saturating_add(1);
                let mark = Gap::Reconnected { reconnects };
                if self.subs.attach(client.session(), Some(mark)) {
                    if self.link.installed(client.clone()) {
                        tracing::debug!(path = %self.path.display(), attempts = outage.attempts, reconnects, "reconnected");
                        return Step::Up(client);
                    }
                    client.close();
                    return Step::Stop;
                }
                // It dropped already, or the client was closed.
                outage.last_error = client.session().closed_error();
            }
            Err(e) => outage.last_error = e,
        }
        if self.link.stop.is_set() {
            Step::Stop
        } else {
            Step::Again
        }
    }
}

/// One outage: from a drop to the next connection (or giving up).
pub(crate) struct Outage {
    backoff: Backoff,
    attempts: u32,
    since: Disconnect,
    last_error: Error,
}

/// What the supervisor does after an attempt.
pub(crate) enum Step<C> {
    /// Connected and installed: watch this client.
    Up(C),
    /// Wait and try again.
    Again,
    /// The client was closed: stop.
    Stop,
}

/// The subscriptions of a reconnecting client: registered here, and with
/// the session of the connection of the moment.
pub(crate) struct Subs {
    capacity: usize,
    max_bytes: usize,
    inner: Mutex<SubsInner>,
}

#[derive(Default)]
struct SubsInner {
    queues: Vec<Arc<Queue>>,
    session: Option<Weak<QmpSession>>,
    closed: bool,
}

impl Subs {
    pub(crate) fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            capacity: config.event_capacity,
            max_bytes: config.event_bytes,
            inner: Mutex::new(SubsInner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SubsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A subscription that lives as long as the client, whatever its
    /// connection of the moment.
    pub(crate) fn subscribe(self: &Arc<Self>, filter: EventFilter) -> Subscription {
        let mut inner = self.lock();
        let closed = inner.closed;
        let registry: Weak<dyn Subscribers> = if closed {
            Weak::<Self>::new()
        } else {
            Arc::<Self>::downgrade(self)
        };
        let (sub, queue) =
            Subscription::new(filter, self.capacity, self.max_bytes, closed, registry);
        if !closed {
            if let Some(session) = inner.session.as_ref().and_then(Weak::upgrade) {
                // A session already closed takes nothing: the next one will.
                let _ = session.adopt(core::slice::from_ref(&queue), None);
            }
            inner.queues.push(queue);
        }
        sub
    }

    /// The subscriptions move to `session`, `mark` first. False when it
    /// (or the client) is already closed.
    pub(crate) fn attach(&self, session: &Arc<QmpSession>, mark: Option<Gap>) -> bool {
        let mut inner = self.lock();
        if inner.closed || !session.adopt(&inner.queues, mark.as_ref()) {
            return false;
        }
        inner.session = Some(Arc::downgrade(session));
        true
    }

    /// The connection dropped for `reason`: every subscriber is told, after
    /// the last event of that connection.
    pub(crate) fn detach(&self, reason: &Disconnect) {
        let reason = Arc::new(reason.clone());
        let wakes: Vec<(Arc<Queue>, Wake)> = {
            let mut inner = self.lock();
            inner.session = None;
            inner
                .queues
                .iter()
                .map(|q| (q.clone(), q.push_mark(Gap::Disconnected(reason.clone()))))
                .collect()
        };
        for (q, w) in wakes {
            q.wake(w);
        }
    }

    /// Ends every subscription (after what it has queued) and every later one.
    pub(crate) fn close(&self) {
        let queues = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.session = None;
            core::mem::take(&mut inner.queues)
        };
        for q in queues {
            let w = q.close();
            q.wake(w);
        }
    }
}

impl Subscribers for Subs {
    fn unsubscribe(&self, queue: &Arc<Queue>) {
        let mut inner = self.lock();
        if let Some(i) = inner.queues.iter().position(|q| Arc::ptr_eq(q, queue)) {
            inner.queues.swap_remove(i);
        }
        if let Some(session) = inner.session.as_ref().and_then(Weak::upgrade) {
            session.unsubscribe(queue);
        }
    }
}

/// The call's deadline, from its own timeout or the client's.
pub(crate) fn call_timeout(call: &crate::Call, config: &Config) -> Option<Duration> {
    call.timeout.unwrap_or(config.timeout)
}

/// A call that waited for the reconnect gets what is left of its timeout.
pub(crate) fn left_of(call: &mut crate::Call, deadline: Option<std::time::Instant>) {
    let now = std::time::Instant::now();
    call.timeout = Some(deadline.map(|d| d.saturating_duration_since(now)));
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::blocking::Reconnecting;
    use crate::mock::MockQemu;
    use crate::{Call, RecvTimeoutError};

    const WAIT: Duration = Duration::from_secs(10);

    fn next(events: &Subscription) -> Result<Arc<crate::Event>, Gap> {
        match events.recv_timeout(WAIT) {
            Ok(item) => item,
            Err(RecvTimeoutError::Closed) => panic!("the subscription ended"),
            Err(RecvTimeoutError::Timeout) => panic!("nothing within {WAIT:?}"),
        }
    }

    /// The subscribers the session of the client's connection holds.
    fn in_session(qmp: &Reconnecting) -> usize {
        let current = qmp.current().expect("connected");
        Plain::session(&current).subscriber_count()
    }

    /// Against the mock, which goes on accepting after it drops a client:
    /// markers around the drop, the handshake redone (oob again), events
    /// and calls on the new connection, subscriptions made or dropped while
    /// disconnected follow, and nothing is left in a session.
    #[test]
    fn a_dropped_connection_is_replaced_and_subscriptions_follow() {
        let mock = MockQemu::start().unwrap();
        // Long enough to subscribe and unsubscribe while disconnected.
        let slow = Duration::from_millis(500);
        let settings = Reconnect::default().delays(slow, slow);
        let qmp = Reconnecting::connect_unix(mock.path(), Config::default(), settings).unwrap();
        let all = qmp.events();
        let dropped = qmp.events();
        assert_eq!(in_session(&qmp), 2);
        mock.emit_event("FIRST", None).unwrap();
        assert_eq!(next(&all).unwrap().name(), "FIRST");

        mock.disconnect();
        let dropped_seen = |s: &LinkState| matches!(s, LinkState::Reconnecting { .. });
        assert!(qmp.wait_for(Some(WAIT), dropped_seen), "{:?}", qmp.state());
        let late = qmp.subscribe(EventFilter::name("SECOND"));
        drop(dropped);
        assert!(matches!(next(&all), Err(Gap::Disconnected(_))));
        assert!(matches!(
            next(&all),
            Err(Gap::Reconnected { reconnects: 1 })
        ));
        assert!(!qmp.wait_for(Some(Duration::ZERO), |s| matches!(s, LinkState::Closed)));
        assert!(qmp.wait_for(Some(WAIT), |s| matches!(s, LinkState::Connected)));
        assert_eq!(mock.connections(), 2);
        assert!(qmp.greeting().unwrap().oob);
        qmp.call(Call::new("query-status").oob()).unwrap();
        assert_eq!(
            in_session(&qmp),
            2,
            "the late subscription in, the dropped one out"
        );

        mock.emit_event("SECOND", None).unwrap();
        assert_eq!(next(&all).unwrap().name(), "SECOND");
        // Subscribed while disconnected: the markers of the next reconnect
        // only, then the events.
        assert!(matches!(
            next(&late),
            Err(Gap::Reconnected { reconnects: 1 })
        ));
        assert_eq!(next(&late).unwrap().name(), "SECOND");
        drop(late);
        assert_eq!(in_session(&qmp), 1);
        assert_eq!(qmp.reconnects(), 1);

        qmp.close();
        assert!(
            all.recv_timeout(WAIT)
                .is_err_and(|e| e == RecvTimeoutError::Closed)
        );
        assert!(matches!(
            qmp.execute_raw("query-status", ()),
            Err(Error::Disconnected(Disconnect::Local))
        ));
    }

    #[test]
    fn backoff_grows_within_its_bounds_with_jitter() {
        let min = Duration::from_millis(10);
        let max = Duration::from_millis(300);
        let reconnect = Reconnect::default().delays(min, max);
        let mut seen = std::collections::HashSet::new();
        for seed in 0..50u64 {
            let mut backoff = Backoff::new(&reconnect, seed.wrapping_mul(7919));
            let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
            for (n, d) in delays.iter().enumerate() {
                assert!((min..=max).contains(d), "attempt {n}: {d:?}");
                // Attempt n draws under min * 2^n (capped): at least half of it.
                let base = min.saturating_mul(1 << n).min(max);
                assert!(
                    *d >= base / 2 && *d <= base,
                    "attempt {n}: {d:?} under {base:?}"
                );
            }
            // By then the base is at the cap: at least half of it.
            assert!(delays[11] >= max / 2);
            seen.insert(delays[11]);
        }
        assert!(seen.len() > 10, "jitter varies between seeds: {seen:?}");
    }

    #[test]
    fn backoff_takes_odd_settings() {
        let d = Duration::from_millis(40);
        let mut fixed = Backoff::new(&Reconnect::default().delays(d, d), 3);
        assert!((0..5).all(|_| fixed.next_delay() == d));
        // max below min counts as min; zero delays stay zero.
        let mut inverted = Backoff::new(&Reconnect::default().delays(d, Duration::ZERO), 3);
        assert_eq!(inverted.next_delay(), d);
        let mut zero = Backoff::new(
            &Reconnect::default().delays(Duration::ZERO, Duration::ZERO),
            0,
        );
        assert_eq!(zero.next_delay(), Duration::ZERO);
        let huge = Reconnect::default().delays(Duration::MAX, Duration::MAX);
        assert_eq!(Backoff::new(&huge, 9).next_delay(), Duration::MAX);
    }
}
