//! Event fan-out for transports that receive whole events instead of a QMP byte
//! stream (libvirt's monitor events, a test double): the same [`Subscription`]s,
//! filters, bounded queues and lag reports as a socket client's.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::config::Config;
use crate::events::{Event, EventFilter, Queue, Subscribers, Subscription, Wake};

/// Subscribers of one connection whose events arrive whole.
///
/// ```
/// use qmp_io::{Config, Event, EventFilter, EventHub, Json};
///
/// let hub = EventHub::new(&Config::default());
/// let stops = hub.subscribe(EventFilter::name("STOP"));
/// hub.publish(Event::new("RESUME", None, None));
/// hub.publish(Event::new("STOP", Some(Json::parse("{}".into())?), None));
/// assert_eq!(stops.try_recv().unwrap().unwrap().name(), "STOP");
/// assert!(stops.try_recv().is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct EventHub {
    inner: Arc<Hub>,
}

struct Hub {
    capacity: usize,
    max_bytes: usize,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    queues: Vec<Arc<Queue>>,
    closed: bool,
}

impl core::fmt::Debug for Hub {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.lock();
        f.debug_struct("EventHub")
            .field("subscribers", &s.queues.len())
            .field("closed", &s.closed)
            .finish()
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Subscribers for Hub {
    fn unsubscribe(&self, queue: &Arc<Queue>) {
        let mut s = self.lock();
        if let Some(i) = s.queues.iter().position(|q| Arc::ptr_eq(q, queue)) {
            s.queues.swap_remove(i);
        }
    }
}

impl EventHub {
    /// A hub whose subscribers' queues hold what `config` says
    /// ([`event_capacity`](Config::event_capacity) events,
    /// [`event_bytes`](Config::event_bytes) bytes).
    pub fn new(config: &Config) -> Self {
        Self {
            inner: Arc::new(Hub {
                capacity: config.event_capacity,
                max_bytes: config.event_bytes,
                state: Mutex::new(HubState::default()),
            }),
        }
    }

    /// Events matching `filter` from now on; after [`close`](Self::close), a
    /// subscription that ends at once.
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        let mut s = self.inner.lock();
        let registry: Weak<dyn Subscribers> = if s.closed {
            Weak::<Hub>::new()
        } else {
            Arc::<Hub>::downgrade(&self.inner)
        };
        let (c, bytes) = (self.inner.capacity, self.inner.max_bytes);
        let (sub, queue) = Subscription::new(filter, c, bytes, s.closed, registry);
        if !s.closed {
            s.queues.push(queue);
        }
        sub
    }

    /// Hands `event` to every subscriber whose filter matches; a full queue
    /// drops its oldest event and tells its subscriber. Never blocks.
    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let wakes: Vec<(Arc<Queue>, Wake)> = {
            let s = self.inner.lock();
            s.queues
                .iter()
                .filter(|q| q.wants_event(&event))
                .map(|q| (q.clone(), q.push(event.clone())))
                .collect()
        };
        for (q, w) in wakes {
            q.wake(w);
        }
    }

    /// Ends every subscription (after its queued events) and every later one.
    pub fn close(&self) {
        let queues = {
            let mut s = self.inner.lock();
            s.closed = true;
            core::mem::take(&mut s.queues)
        };
        for q in queues {
            let w = q.close();
            q.wake(w);
        }
    }

    /// How many subscriptions are live.
    pub fn subscribers(&self) -> usize {
        self.inner.lock().queues.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Json;

    fn event(name: &str, data: &str) -> Event {
        Event::new(name, Some(Json::parse(data.into()).unwrap()), None)
    }

    #[test]
    fn filters_by_name_and_data_like_a_socket_client() {
        let hub = EventHub::new(&Config::default());
        let disk1 = hub.subscribe(EventFilter::name("DEVICE_DELETED").data_eq("device", "disk1"));
        let all = hub.subscribe(EventFilter::all());
        hub.publish(event(
            "DEVICE_DELETED",
            r#"{"device": "disk2", "path": "/x"}"#,
        ));
        hub.publish(event("DEVICE_DELETED", r#"{"path":"/y","device":"disk1"}"#));
        hub.publish(event("STOP", "{}"));
        let got = disk1.try_recv().unwrap().unwrap();
        assert_eq!(got.decode::<serde_json::Value>().unwrap()["path"], "/y");
        assert!(disk1.try_recv().is_none());
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn json_from_text_is_checked() {
        assert_eq!(
            Json::parse(" {\"a\": [1]} ".into()).unwrap().as_str(),
            "{\"a\": [1]}"
        );
        assert!(Json::parse("{\"a\": ".into()).is_err());
        assert!(Json::parse("1 2".into()).is_err());
    }

    #[test]
    fn a_full_queue_reports_the_lag_and_close_ends_every_subscription() {
        let config = Config {
            event_capacity: 2,
            ..Config::default()
        };
        let hub = EventHub::new(&config);
        let sub = hub.subscribe(EventFilter::all());
        for i in 0..5 {
            hub.publish(event("X", &format!("{{\"n\": {i}}}")));
        }
        assert!(matches!(sub.try_recv(), Some(Err(crate::Gap::Lagged(3)))));
        hub.close();
        assert_eq!(sub.iter().count(), 2);
        assert!(hub.subscribe(EventFilter::all()).recv().is_none());
    }

    #[test]
    fn a_dropped_subscription_leaves_the_hub() {
        let hub = EventHub::new(&Config::default());
        let kept = hub.subscribe(EventFilter::all());
        drop(hub.subscribe(EventFilter::all()));
        assert_eq!(hub.subscribers(), 1);
        drop(kept);
        assert_eq!(hub.subscribers(), 0);
    }
}
