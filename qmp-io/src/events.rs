//! Event fan-out: any number of subscribers, each with a filter and a bounded
//! queue. The reader never waits for a subscriber: a full queue drops its
//! oldest event and counts it, and the subscriber is told how many it lost.

use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use qmp_proto::{EventData, EventEnum, Timestamp};

use crate::error::Disconnect;
use crate::json::Json;

/// Distinct event names remembered for sharing.
const MAX_INTERNED_NAMES: usize = 64;

/// Disconnect and reconnect markers a subscriber's queue holds; past it the
/// oldest is dropped (a later marker says the same: events were lost), so a
/// link that flaps while nobody reads costs bounded memory.
const MAX_MARKS: usize = 64;

/// An event, owned: `{"event": NAME, "data": {...}, "timestamp": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    name: Arc<str>,
    data: Option<Json>,
    timestamp: Option<Timestamp>,
}

impl Event {
    /// Copies `event`; `names` interns the names, so a stream of events costs
    /// no allocation per name.
    pub(crate) fn from_proto(event: &qmp_proto::Event<'_>, names: &mut Vec<Arc<str>>) -> Self {
        let name = match names.iter().find(|n| event.name.eq_str(n)) {
            Some(n) => n.clone(),
            None => {
                let n: Arc<str> = event.name.to_string_lossless().into();
                // QEMU has a few dozen event names; a hostile peer may invent
                // more, so the table stays bounded.
                if names.len() < MAX_INTERNED_NAMES {
                    names.push(n.clone());
                }
                n
            }
        };
        Self {
            name,
            data: event.data.map(Json::copy),
            timestamp: event.timestamp,
        }
    }

    /// An event from its parts, for transports that receive events whole
    /// (see [`EventHub`](crate::EventHub)).
    pub fn new(name: &str, data: Option<Json>, timestamp: Option<Timestamp>) -> Self {
        Self {
            name: name.into(),
            data,
            timestamp,
        }
    }

    /// The event name, such as `STOP` or `DEVICE_DELETED`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `data` member as raw JSON, if the event has one.
    pub fn data(&self) -> Option<&Json> {
        self.data.as_ref()
    }

    /// Decodes `data` into `T` (`T` = `serde_json::Value` works too). An event
    /// without data decodes from `null`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.as_ref().map_or("null", Json::as_str))
    }

    /// True when this is the event `T` types (its name is `T::NAME`).
    pub fn is<T: EventData>(&self) -> bool {
        *self.name == *T::NAME
    }

    /// Decodes the event into its typed data `T` (such as
    /// `qmp_qapi::events::Stop`). An event without data reads as `{}`, the
    /// way QEMU leaves `data` out of events that have no members.
    ///
    /// Fails with [`Error::Event`](crate::Error::Event) when the event is not
    /// `T::NAME`, or when its data does not decode into `T` (the error names
    /// the event and where in its data decoding stopped).
    ///
    /// ```
    /// use qmp_io::{Event, EventData, Json};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct DeviceDeleted {
    ///     device: Option<String>,
    /// }
    /// impl EventData for DeviceDeleted {
    ///     const NAME: &'static str = "DEVICE_DELETED";
    /// }
    ///
    /// let data = Json::parse(r#"{"device": "disk1", "path": "/machine/peripheral/disk1"}"#.into())?;
    /// let event = Event::new("DEVICE_DELETED", Some(data), None);
    /// assert_eq!(event.typed::<DeviceDeleted>()?.device.as_deref(), Some("disk1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn typed<T: EventData>(&self) -> crate::Result<T> {
        // Built only on failure: the success path stays a name compare and
        // the decode.
        let error = |error: Option<serde_json::Error>, path: String| EventDecodeError {
            event: self.name.clone(),
            expected: T::NAME,
            error: error.map(Arc::new),
            path,
        };
        if !self.is::<T>() {
            return Err(error(None, String::new()).into());
        }
        let text = self.data.as_ref().map_or("{}", Json::as_str);
        serde_json::from_str(text).map_err(|e| {
            let path = path_at(text, offset_of(text, e.line(), e.column()));
            error(Some(e), path).into()
        })
    }

    /// The event as a member of the enum `E` over many events, such as
    /// `qmp_qapi::events::Event`; never fails (`E` keeps what it does not
    /// know in a catch-all).
    pub fn to_enum<E: EventEnum>(&self) -> E {
        E::decode_event(&self.name, self.data.as_ref().map(Json::as_str))
    }

    /// When QEMU says the event happened.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// What the event counts for in a subscriber's byte budget: its name and
    /// its data.
    fn size(&self) -> usize {
        self.name
            .len()
            .saturating_add(self.data.as_ref().map_or(0, |d| d.as_str().len()))
    }
}

/// Why [`Event::typed`] could not give the typed event: the event is
/// another one, or its data does not fit the type.
#[derive(Debug, Clone)]
pub struct EventDecodeError {
    event: Arc<str>,
    expected: &'static str,
    error: Option<Arc<serde_json::Error>>,
    /// Where in the event decoding stopped (`data.info.slot`).
    path: String,
}

impl EventDecodeError {
    /// The name of the event that was received.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The name of the event the type is for.
    pub fn expected(&self) -> &'static str {
        self.expected
    }

    /// Whether the event was another one (rather than its data not fitting).
    pub fn is_other_event(&self) -> bool {
        self.error.is_none()
    }

    /// The JSON path in the event of the value where decoding its data
    /// stopped, such as `data.info.slot` or `data.list[2]` (`data` for the
    /// whole of it); empty when the event was another one.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// One step of a JSON path while [`path_at`] walks a document.
enum Step {
    /// In an object: the key of the member being read, if one was read.
    Member(Option<String>),
    /// In an array: the element's index.
    Element(usize),
}

/// The JSON path (from `data`) of the innermost value that byte `at` of the
/// JSON document `text` lies in. Runs only on the error path: a decode error
/// tells where (line and column), and this turns that into a path a person
/// can read.
fn path_at(text: &str, at: usize) -> String {
    let bytes = text.as_bytes();
    let mut steps: Vec<Step> = Vec::new();
    let mut i = 0;
    // i stays within bytes.len() + 2: no step can overflow.
    while let Some(&byte) = bytes.get(i).filter(|_| i < at) {
        match byte {
            b'{' => steps.push(Step::Member(None)),
            b'[' => steps.push(Step::Element(0)),
            b'}' | b']' => {
                steps.pop();
            }
            b',' => match steps.last_mut() {
                Some(Step::Element(n)) => *n = n.saturating_add(1),
                Some(Step::Member(key)) => *key = None,
                None => {}
            },
            b'"' => {
                let start = i.saturating_add(1);
                i = start;
                while let Some(&b) = bytes.get(i).filter(|&&b| b != b'"') {
                    i = i.saturating_add(if b == b'\\' { 2 } else { 1 });
                }
                if let Some(Step::Member(key @ None)) = steps.last_mut() {
                    let raw = text.get(start..i.min(text.len())).unwrap_or("");
                    *key = Some(serde_json::from_str(&format!("\"{raw}\"")).unwrap_or_default());
                }
            }
            _ => {}
        }
        i = i.saturating_add(1);
    }
    // At the end of an object or array (a missing member, too few
    // elements), the fault is the container's, not its last member's.
    if matches!(bytes.get(at), Some(b'}' | b']')) {
        match steps.last_mut() {
            Some(Step::Member(key)) => *key = None,
            Some(Step::Element(_)) => {
                steps.pop();
                steps.push(Step::Member(None));
            }
            None => {}
        }
    }
    let mut path = String::from("data");
    for step in &steps {
        match step {
            Step::Member(Some(key)) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Member(None) => {}
            Step::Element(n) => path.push_str(&format!("[{n}]")),
        }
    }
    path
}

/// The byte offset of serde_json's 1-based `line` and `column` in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    line_start.saturating_add(column.saturating_sub(1))
}

impl core::fmt::Display for EventDecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.error {
            None => write!(
                f,
                "event {} is not {}, the event asked for",
                self.event, self.expected
            ),
            Some(e) => write!(
                f,
                "cannot decode the data of event {} at {}: {e}",
                self.event, self.path
            ),
        }
    }
}

impl core::error::Error for EventDecodeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.error
            .as_deref()
            .map(|e| e as &(dyn core::error::Error + 'static))
    }
}

/// Which events a subscriber wants.
///
/// ```
/// use qmp_io::EventFilter;
/// // Only DEVICE_DELETED for device "disk1" (the way Incus watches a device).
/// let filter = EventFilter::name("DEVICE_DELETED").data_eq("device", "disk1");
/// # let _ = filter;
/// ```
///
/// With typed events (any [`EventData`], such as the types of
/// `qmp_qapi::events`), the type names the event:
///
/// ```
/// use qmp_io::{EventData, EventFilter};
///
/// #[derive(serde::Deserialize)]
/// struct Stop {}
/// impl EventData for Stop {
///     const NAME: &'static str = "STOP";
/// }
/// #[derive(serde::Deserialize)]
/// struct Resume {}
/// impl EventData for Resume {
///     const NAME: &'static str = "RESUME";
/// }
///
/// let filter = EventFilter::of::<Stop>().or_of::<Resume>();
/// assert_eq!(filter, EventFilter::name("STOP").or_name("RESUME"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    names: Vec<String>,
    data: Vec<(String, String)>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Events called `name` (add more with [`or_name`](Self::or_name)).
    pub fn name(name: impl Into<String>) -> Self {
        Self::all().or_name(name)
    }

    /// Also accept events called `name`.
    pub fn or_name(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// Events of the typed event `T` (add more with [`or_of`](Self::or_of)
    /// or [`or_name`](Self::or_name)); receive them as `T` with
    /// [`Event::typed`].
    pub fn of<T: EventData>() -> Self {
        Self::name(T::NAME)
    }

    /// Also accept the typed event `T`.
    pub fn or_of<T: EventData>(self) -> Self {
        self.or_name(T::NAME)
    }

    /// Events whose `data` has member `key` equal to `value` (a JSON string
    /// compared after unescaping, or any other JSON value compared as text,
    /// such as `true` or `3`). Several conditions must all hold.
    pub fn data_eq(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data.push((key.into(), value.into()));
        self
    }

    /// The same test as [`matches`](Self::matches), on an owned event (whose
    /// data is parsed here: only transports that receive whole events use it).
    pub(crate) fn matches_event(&self, event: &Event) -> bool {
        if !self.names.is_empty() && !self.names.iter().any(|n| n == event.name()) {
            return false;
        }
        if self.data.is_empty() {
            return true;
        }
        type Members<'a> =
            std::collections::BTreeMap<std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue>;
        let Some(Ok(members)) = event
            .data
            .as_ref()
            .map(|d| serde_json::from_str::<Members<'_>>(d.as_str()))
        else {
            return false;
        };
        self.data.iter().all(|(key, want)| {
            let Some(v) = members.get(key.as_str()) else {
                return false;
            };
            match serde_json::from_str::<std::borrow::Cow<'_, str>>(v.get()) {
                Ok(s) => s == want.as_str(),
                Err(_) => v.get() == want,
            }
        })
    }

    pub(crate) fn matches(&self, event: &qmp_proto::Event<'_>) -> bool {
        if !self.names.is_empty() && !self.names.iter().any(|n| event.name.eq_str(n)) {
            return false;
        }
        self.data.iter().all(|(key, want)| {
            let Some(v) = event.data.and_then(|d| d.get(key)) else {
                return false;
            };
            match v.as_json_str() {
                Some(s) => s.eq_str(want),
                None => v.as_str() == want,
            }
        })
    }
}

/// Why events may be missing from a subscription at this point: what a
/// [`Subscription`] yields as `Err` between its events. None of these ends
/// the subscription; it ends (`None`) when its client is closed or gives up.
///
/// ```
/// use qmp_io::{Event, Gap};
///
/// fn show(item: Result<std::sync::Arc<Event>, Gap>) {
///     match item {
///         Ok(event) => println!("{}", event.name()),
///         Err(Gap::Lagged(n)) => println!("{n} events dropped: read faster"),
///         Err(Gap::Reconnected { reconnects }) => {
///             println!("connection {reconnects} is up: re-read the state")
///         }
///         Err(gap) => println!("{gap}"),
///     }
/// }
/// # show(Err(Gap::Lagged(1)));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Gap {
    /// The subscriber fell behind and this many events were dropped from its
    /// queue (the oldest ones). Delivered before the events that followed
    /// them.
    Lagged(u64),
    /// The connection to QEMU dropped, for this reason (reconnecting clients
    /// only: a plain client's subscriptions end instead). Delivered after
    /// the last event of that connection. (Behind an `Arc`, so every item of
    /// every subscription stays as small as an event.)
    Disconnected(Arc<Disconnect>),
    /// A reconnecting client is connected again, for the `reconnects`-th
    /// time. Events QEMU sent between the [`Disconnected`](Self::Disconnected)
    /// before it and this are lost (QEMU may even be a new process, with a
    /// new state): re-read what matters. Delivered before the first event of
    /// the new connection.
    Reconnected {
        /// How many times the client has reconnected, this time included.
        reconnects: u64,
    },
    /// QEMU sent an event larger than the connection's size limit
    /// (`Config::limits`, `max_message_size`): it was skipped unread, so which
    /// event it was is unknown and every subscriber gets this, where the
    /// event would have been. Nothing else was lost.
    TooLarge {
        /// The event's size in bytes (`u32::MAX` for that or more).
        size: u32,
        /// The limit it was over, in bytes.
        limit: u32,
    },
}

impl core::fmt::Display for Gap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Gap::Lagged(n) => write!(f, "{n} events were lost because the subscriber fell behind"),
            Gap::Disconnected(reason) => write!(
                f,
                "the connection dropped ({reason}); events are lost until it is back"
            ),
            Gap::Reconnected { reconnects } => write!(
                f,
                "reconnected (reconnect {reconnects}); events sent while disconnected are lost"
            ),
            Gap::TooLarge { size, limit } => write!(
                f,
                "an event of {size} bytes was dropped unread: over the size limit of {limit} bytes (Config::limits)"
            ),
        }
    }
}

impl core::error::Error for Gap {}

/// What [`Subscription::recv_timeout`] reports when no event came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time.
    Timeout,
    /// The connection is over and every queued event was delivered.
    Closed,
}

impl core::fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => "no event within the timeout",
            RecvTimeoutError::Closed => "the connection is over and every event was received",
        })
    }
}

impl core::error::Error for RecvTimeoutError {}

struct QueueState {
    items: VecDeque<Arc<Event>>,
    /// The [`Event::size`] of `items` together.
    bytes: usize,
    lost: u64,
    closed: bool,
    waker: Option<Waker>,
    sleeping: bool,
    /// Events pushed so far, dropped ones included: where markers go.
    pushed: u64,
    /// Markers (reconnecting clients only), each after the number of events
    /// pushed before it. Empty, and never allocated, for other clients.
    marks: VecDeque<(u64, Gap)>,
}

/// One subscriber's queue, shared by the reader (pushing) and the subscriber.
pub(crate) struct Queue {
    filter: EventFilter,
    capacity: usize,
    max_bytes: usize,
    state: Mutex<QueueState>,
    cv: Condvar,
}

/// Where subscribers' queues are registered (a session): a subscription
/// takes its queue out when it drops, so the reader neither keeps nor fills
/// a queue nobody reads.
pub(crate) trait Subscribers: Send + Sync {
    fn unsubscribe(&self, queue: &Arc<Queue>);
}

/// What the reader must do after pushing.
pub(crate) enum Wake {
    None,
    Thread,
    Task(Waker),
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events queued and not yet received.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.lock().items.len()
    }

    pub(crate) fn wants(&self, event: &qmp_proto::Event<'_>) -> bool {
        self.filter.matches(event)
    }

    pub(crate) fn wants_event(&self, event: &Event) -> bool {
        self.filter.matches_event(event)
    }

    /// Queues `event`, dropping the oldest while the queue is over its length
    /// or its bytes (the newest always stays). Returns who to wake; the
    /// caller wakes after it has pushed the whole batch.
    pub(crate) fn push(&self, event: Arc<Event>) -> Wake {
        let size = event.size();
        let mut s = self.lock();
        while s.items.len() >= self.capacity || s.bytes.saturating_add(size) > self.max_bytes {
            let Some(old) = s.items.pop_front() else {
                break;
            };
            // bytes is the sum of the queued events' sizes.
            s.bytes = s.bytes.saturating_sub(old.size());
            s.lost = s.lost.saturating_add(1);
        }
        s.bytes = s.bytes.saturating_add(size);
        s.items.push_back(event);
        s.pushed = s.pushed.wrapping_add(1);
        Self::take_wake(&mut s)
    }

    /// Queues `gap` after the events pushed so far (at most [`MAX_MARKS`]:
    /// the oldest goes). Returns who to wake, like [`push`](Self::push).
    pub(crate) fn push_mark(&self, gap: Gap) -> Wake {
        let mut s = self.lock();
        if s.marks.len() >= MAX_MARKS {
            s.marks.pop_front();
        }
        let at = s.pushed;
        s.marks.push_back((at, gap));
        Self::take_wake(&mut s)
    }

    fn take_wake(s: &mut QueueState) -> Wake {
        if let Some(w) = s.waker.take() {
            Wake::Task(w)
        } else if s.sleeping {
            s.sleeping = false;
            Wake::Thread
        } else {
            Wake::None
        }
    }

    pub(crate) fn wake(&self, wake: Wake) {
        match wake {
            Wake::None => {}
            Wake::Thread => self.cv.notify_all(),
            Wake::Task(w) => w.wake(),
        }
    }

    /// Marks the end of events; returns who to wake, like [`push`](Self::push).
    pub(crate) fn close(&self) -> Wake {
        let mut s = self.lock();
        s.closed = true;
        Self::take_wake(&mut s)
    }

    fn pop(s: &mut QueueState) -> Option<Result<Arc<Event>, Gap>> {
        if s.lost > 0 {
            let lost = core::mem::take(&mut s.lost);
            return Some(Err(Gap::Lagged(lost)));
        }
        if let Some((at, _)) = s.marks.front() {
            // The number of the oldest queued event: a marker pushed before
            // it comes out first.
            let next = s.pushed.wrapping_sub(s.items.len() as u64);
            if *at <= next {
                return s.marks.pop_front().map(|(_, gap)| Err(gap));
            }
        }
        let event = s.items.pop_front()?;
        s.bytes = s.bytes.saturating_sub(event.size());
        Some(Ok(event))
    }
}

/// A stream of events for one subscriber.
///
/// Blocking code calls [`recv`](Self::recv) / [`recv_timeout`](Self::recv_timeout)
/// or [`iter`](Self::iter); async code uses it as a `futures_core::Stream`. Both yield
/// `Err(Gap::Lagged(n))` when `n` events were dropped because this subscriber fell
/// behind (and, for a reconnecting client, [`Gap::Disconnected`] and
/// [`Gap::Reconnected`] around an outage), and end when the connection is
/// over (after the queued events).
/// Dropping it unsubscribes.
pub struct Subscription {
    queue: Arc<Queue>,
    /// Where the queue is registered; weak, so a subscription kept after the
    /// connection ended does not keep the session.
    registry: Weak<dyn Subscribers>,
}

impl core::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.queue.filter)
            .field("capacity", &self.queue.capacity)
            .finish()
    }
}

impl Subscription {
    /// A subscription and its queue, which the caller registers with
    /// `registry` (when `closed`, nowhere: it only reports the end).
    pub(crate) fn new(
        filter: EventFilter,
        capacity: usize,
        max_bytes: usize,
        closed: bool,
        registry: Weak<dyn Subscribers>,
    ) -> (Self, Arc<Queue>) {
        let queue = Arc::new(Queue {
            filter,
            capacity: capacity.max(1),
            max_bytes,
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                bytes: 0,
                lost: 0,
                closed,
                waker: None,
                sleeping: false,
                pushed: 0,
                marks: VecDeque::new(),
            }),
            cv: Condvar::new(),
        });
        (
            Self {
                queue: queue.clone(),
                registry,
            },
            queue,
        )
    }

    #[cfg(test)]
    pub(crate) fn queue(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// The next event without waiting: `None` when nothing is queued.
    pub fn try_recv(&self) -> Option<Result<Arc<Event>, Gap>> {
        Queue::pop(&mut self.queue.lock())
    }

    /// Blocks for the next event; `None` once the connection is over and the
    /// queue is empty.
    #[inline]
    pub fn recv(&self) -> Option<Result<Arc<Event>, Gap>> {
        self.recv_until(None).ok()
    }

    /// Blocks for the next event, at most `timeout`.
    pub fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Result<Arc<Event>, Gap>, RecvTimeoutError> {
        self.recv_until(crate::config::deadline_after(timeout))
    }

    fn recv_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Result<Arc<Event>, Gap>, RecvTimeoutError> {
        let q = &self.queue;
        let mut s = q.lock();
        loop {
            if let Some(item) = Queue::pop(&mut s) {
                return Ok(item);
            }
            if s.closed {
                return Err(RecvTimeoutError::Closed);
            }
            s.sleeping = true;
            s = match deadline {
                None => q.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        s.sleeping = false;
                        return Err(RecvTimeoutError::Timeout);
                    }
                    q.cv.wait_timeout(s, d.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// A blocking iterator over the events (ends with the connection). Async
    /// code uses the `Stream` implementation instead.
    pub fn iter(&self) -> impl Iterator<Item = Result<Arc<Event>, Gap>> + '_ {
        core::iter::from_fn(|| self.recv())
    }

    /// Everything queued now, without waiting; panics on a lag report.
    #[cfg(test)]
    fn iter_ready(&self) -> impl Iterator<Item = Arc<Event>> + '_ {
        core::iter::from_fn(|| self.try_recv().map(|e| e.unwrap()))
    }

    /// Events queued and not yet received.
    pub fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// True when no event is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.unsubscribe(&self.queue);
        }
    }
}

impl futures_core::Stream for Subscription {
    type Item = Result<Arc<Event>, Gap>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut s = self.queue.lock();
        if let Some(item) = Queue::pop(&mut s) {
            return Poll::Ready(Some(item));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Error, EventHub};

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Stop {}
    impl EventData for Stop {
        const NAME: &'static str = "STOP";
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct DeviceDeleted {
        device: Option<String>,
        path: String,
    }
    impl EventData for DeviceDeleted {
        const NAME: &'static str = "DEVICE_DELETED";
    }

    fn event(name: &str, data: Option<&str>) -> Event {
        Event::new(name, data.map(|d| Json::parse(d.into()).unwrap()), None)
    }

    fn decode_error<T: EventData + core::fmt::Debug>(event: &Event) -> EventDecodeError {
        match event.typed::<T>() {
            Err(Error::Event(e)) => *e,
            other => panic!("expected an event decode error, got {other:?}"),
        }
    }

    #[test]
    fn typed_filters_combine_with_names_and_data() {
        let hub = EventHub::new(&Config::default());
        let typed = hub.subscribe(EventFilter::of::<Stop>().or_of::<DeviceDeleted>());
        let mixed = hub.subscribe(EventFilter::of::<Stop>().or_name("RESUME"));
        let disk1 = hub.subscribe(EventFilter::of::<DeviceDeleted>().data_eq("device", "disk1"));
        hub.publish(event("RESUME", None));
        hub.publish(event("STOP", None));
        hub.publish(event(
            "DEVICE_DELETED",
            Some(r#"{"device":"disk2","path":"/b"}"#),
        ));
        hub.publish(event(
            "DEVICE_DELETED",
            Some(r#"{"device":"disk1","path":"/a"}"#),
        ));

        let names: Vec<String> = typed.iter_ready().map(|e| e.name().into()).collect();
        assert_eq!(names, ["STOP", "DEVICE_DELETED", "DEVICE_DELETED"]);
        let names: Vec<String> = mixed.iter_ready().map(|e| e.name().into()).collect();
        assert_eq!(names, ["RESUME", "STOP"]);
        let only = disk1.try_recv().unwrap().unwrap();
        assert_eq!(
            only.typed::<DeviceDeleted>().unwrap(),
            DeviceDeleted {
                device: Some("disk1".into()),
                path: "/a".into()
            }
        );
        assert!(disk1.try_recv().is_none());
    }

    struct Nobody;
    impl Subscribers for Nobody {
        fn unsubscribe(&self, _: &Arc<Queue>) {}
    }

    fn names(sub: &Subscription) -> Vec<String> {
        core::iter::from_fn(|| sub.try_recv())
            .map(|item| match item {
                Ok(e) => e.name().to_owned(),
                Err(Gap::Lagged(n)) => format!("lagged {n}"),
                Err(Gap::Disconnected(_)) => "disconnected".to_owned(),
                Err(Gap::Reconnected { reconnects }) => format!("reconnected {reconnects}"),
                Err(Gap::TooLarge { size, limit }) => format!("too large {size} {limit}"),
            })
            .collect()
    }

    /// What every subscriber receives per event stays two words, as it was
    /// before the markers: the plain clients do not pay for them.
    #[test]
    fn an_item_stays_two_words() {
        let size = core::mem::size_of::<Option<Result<Arc<Event>, Gap>>>();
        assert!(size <= 16, "an item is {size} bytes");
    }

    #[test]
    fn markers_come_out_where_they_were_pushed_and_stay_bounded() {
        let (sub, q) = Subscription::new(
            EventFilter::all(),
            3,
            usize::MAX,
            false,
            Weak::<Nobody>::new(),
        );
        q.push(Arc::new(event("A", None)));
        q.push_mark(Gap::Disconnected(Arc::new(crate::Disconnect::Local)));
        q.push_mark(Gap::Reconnected { reconnects: 1 });
        q.push(Arc::new(event("B", None)));
        assert_eq!(names(&sub), ["A", "disconnected", "reconnected 1", "B"]);

        // A lag is told first; a marker stays after the events before it.
        for name in ["C", "D", "E"] {
            q.push(Arc::new(event(name, None)));
        }
        q.push_mark(Gap::Reconnected { reconnects: 2 });
        q.push(Arc::new(event("F", None)));
        assert_eq!(names(&sub), ["lagged 1", "D", "E", "reconnected 2", "F"]);

        // Nobody reading while the link flaps: the oldest markers go.
        for n in 0..(MAX_MARKS as u64 + 10) {
            q.push_mark(Gap::Reconnected { reconnects: n });
        }
        let marks = names(&sub);
        assert_eq!(marks.len(), MAX_MARKS);
        assert_eq!(marks[0], "reconnected 10");
        // The end comes after the markers.
        q.close();
        q.push_mark(Gap::Reconnected { reconnects: 99 });
        assert!(matches!(
            sub.recv(),
            Some(Err(Gap::Reconnected { reconnects: 99 }))
        ));
        assert!(sub.recv().is_none());
    }

    /// What an enum over events gets from [`Event::to_enum`].
    #[derive(Debug, PartialEq)]
    struct Parts(String, Option<String>);
    impl EventEnum for Parts {
        fn decode_event(name: &str, data: Option<&str>) -> Self {
            Parts(name.into(), data.map(Into::into))
        }
    }

    #[test]
    fn to_enum_gets_the_name_and_the_raw_data() {
        let dd = event("DEVICE_DELETED", Some(r#"{"path": "/a"}"#));
        let want = Parts("DEVICE_DELETED".into(), Some(r#"{"path": "/a"}"#.into()));
        assert_eq!(dd.to_enum::<Parts>(), want);
        assert_eq!(
            event("STOP", None).to_enum::<Parts>(),
            Parts("STOP".into(), None)
        );
    }

    #[test]
    fn an_event_without_data_decodes_as_an_empty_object() {
        let stop = event("STOP", None);
        assert!(stop.is::<Stop>());
        assert!(!stop.is::<DeviceDeleted>());
        assert_eq!(stop.typed::<Stop>().unwrap(), Stop {});
        // QEMU 7.2 and 10.0 send `"data": {}` for some events without members.
        assert_eq!(event("STOP", Some("{}")).typed::<Stop>().unwrap(), Stop {});
    }

    #[test]
    fn decode_errors_name_the_event_and_the_fault() {
        let e = decode_error::<DeviceDeleted>(&event("STOP", None));
        assert!(e.is_other_event());
        assert_eq!((e.event(), e.expected()), ("STOP", "DEVICE_DELETED"));
        assert_eq!(
            Error::from(e).to_string(),
            "event STOP is not DEVICE_DELETED, the event asked for"
        );

        let bad = event("DEVICE_DELETED", Some(r#"{"device": "disk1", "path": 7}"#));
        let e = decode_error::<DeviceDeleted>(&bad);
        assert!(!e.is_other_event());
        let text = Error::from(e.clone()).to_string();
        assert!(
            text.starts_with(
                "cannot decode the data of event DEVICE_DELETED at data.path: invalid type: integer `7`"
            ),
            "{text}"
        );
        assert!(core::error::Error::source(&e).is_some());

        let e = decode_error::<DeviceDeleted>(&event("DEVICE_DELETED", None));
        assert!(e.to_string().contains("missing field `path`"), "{e}");
        assert_eq!(e.path(), "data");
    }

    /// Data nested as deep as the framer lets through (1024) reaches the
    /// client whole; decoding it stops at serde_json's recursion limit with
    /// an error and a path, not a stack overflow.
    #[test]
    fn deeply_nested_data_fails_to_decode_with_a_bounded_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Deep {
            path: serde_json::Value,
        }
        impl EventData for Deep {
            const NAME: &'static str = "DEEP";
        }
        let mock = crate::mock::MockQemu::start().unwrap();
        let stream = std::os::unix::net::UnixStream::connect(mock.path()).unwrap();
        let qmp = crate::blocking::Client::connect(stream, Config::default()).unwrap();
        let events = qmp.subscribe(EventFilter::of::<Deep>());
        let depth = 1000;
        let data = format!(r#"{{"path": {}{}}}"#, "[".repeat(depth), "]".repeat(depth));
        mock.emit_event("DEEP", Some(&data)).unwrap();
        let deep = events
            .recv_timeout(Duration::from_secs(20))
            .unwrap()
            .unwrap();
        assert_eq!(deep.data().unwrap().as_str().len(), data.len());
        let e = decode_error::<Deep>(&deep);
        assert!(e.to_string().contains("recursion limit exceeded"), "{e}");
        // serde_json stops about 128 levels down: the path leads there, no
        // further (the data is 1000 deep).
        let levels = e.path().matches("[0]").count();
        assert!(e.path().starts_with("data.path[0]"), "{e}");
        assert!((100..=128).contains(&levels), "{levels} levels: {e}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Nested {
        info: Info,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Info {
        slots: Vec<Slot>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Slot {
        id: String,
        size: u64,
    }
    impl EventData for Nested {
        const NAME: &'static str = "NESTED";
    }

    /// The path finder runs on peer data at whatever offset a decode error
    /// names: cut-off strings and escapes, and offsets past the end, stay in
    /// bounds.
    #[test]
    fn path_at_any_offset_of_any_text() {
        for text in [
            "",
            "\"",
            "\"\\",
            "{\"a\\",
            "[[,,",
            "{\"k\": [\"\\\"",
            "}}]]",
        ] {
            for at in [0, 1, 2, text.len(), usize::MAX] {
                let path = path_at(text, at);
                assert!(path.starts_with("data"), "{text:?} at {at}: {path}");
            }
        }
        assert_eq!(path_at("[1, 2, [3", usize::MAX), "data[2][0]");
        assert_eq!(offset_of("ab\ncd", 2, 2), 4);
        assert_eq!(offset_of("ab", usize::MAX, usize::MAX), usize::MAX);
    }

    #[test]
    fn decode_errors_give_the_json_path() {
        let cases = [
            (
                r#"{"info": {"slots": [{"id": "a", "size": 1}, {"id": "b", "size": -1}]}}"#,
                "data.info.slots[1].size",
            ),
            (
                r#"{"x": [1, {"y": "]"}], "info": {"slots": [{"id": 5, "size": 1}]}}"#,
                "data.info.slots[0].id",
            ),
            (
                "{\"info\":\n {\"slo\\\"ts\": 1,\n \"slots\": {}}}",
                "data.info.slots",
            ),
            (
                r#"{"info": {"slots": [{"id": "a"}]}}"#,
                "data.info.slots[0]",
            ),
            (r#"{"info": 3}"#, "data.info"),
        ];
        for (data, path) in cases {
            let e = decode_error::<Nested>(&event("NESTED", Some(data)));
            assert_eq!(e.path(), path, "{data}: {e}");
            assert!(e.to_string().contains(&format!(" at {path}: ")), "{e}");
        }
    }
}
