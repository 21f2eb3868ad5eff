//! The async reconnecting client: a supervisor task per client.

use core::future::Future;
use core::pin::pin;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{Either, select};

use super::{Backoff, Common, LinkState, Now, Reconnect, Step, call_timeout, left_of};
use crate::call::Call;
use crate::config::{Config, deadline_after};
use crate::error::{Error, Result};
use crate::events::{EventFilter, Subscription};
use crate::json::Json;
use crate::nonblocking::{Client, Reactor};
use crate::session::Greeting;

/// An async QMP client that stays attached to a unix socket path across QEMU
/// restarts: when the connection drops it connects again, with bounded
/// exponential backoff and jitter, and redoes the handshake (the same
/// capabilities). Cheap to clone; dropping the last clone (or
/// [`close`](Self::close)) stops the reconnecting and closes the connection.
///
/// - Calls pending when the connection drops fail with
///   [`Error::Disconnected`] (whether they ran is unknown). Calls made while
///   disconnected fail with [`Error::Reconnecting`], or wait for the
///   reconnect within their timeout: [`Reconnect::calls`].
/// - Subscriptions outlive connections: each gets [`Gap::Disconnected`](crate::Gap::Disconnected)
///   after the last event of a connection that dropped and
///   [`Gap::Reconnected`](crate::Gap::Reconnected) before the first event of the next one; events
///   in between are lost. They end when the client is closed or gives up.
/// - [`state`](Self::state) and [`reconnects`](Self::reconnects) tell where
///   it stands.
///
/// The adapters' `connect_unix_reconnecting` makes one. The first connect is
/// not retried: it fails like `connect_unix`.
pub struct Reconnecting<R: Reactor> {
    shared: Arc<Shared<R>>,
}

impl<R: Reactor> Clone for Reconnecting<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<R: Reactor> core::fmt::Debug for Reconnecting<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reconnecting")
            .field("path", &self.shared.core.common.path)
            .field("state", &self.state())
            .field("reconnects", &self.reconnects())
            .finish()
    }
}

/// What the handles hold: dropping the last one shuts the client down.
struct Shared<R: Reactor> {
    core: Arc<Inner<R>>,
}

impl<R: Reactor> Drop for Shared<R> {
    fn drop(&mut self) {
        self.core.shutdown();
    }
}

/// What the handles and the supervisor share.
struct Inner<R: Reactor> {
    common: Common<Client<R>>,
    runtime: R,
}

impl<R: Reactor> Inner<R> {
    fn shutdown(&self) {
        self.common.shutdown();
    }

    /// Runs `work` unless the client is closed first (`None` then, also
    /// when it was closed as `work` finished: no attempt starts after).
    async fn unless_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let stop = &self.common.link.stop;
        if stop.is_set() {
            return None;
        }
        match select(pin!(work), stop.wait_async()).await {
            Either::Left((done, _)) if !stop.is_set() => Some(done),
            _ => None,
        }
    }
}

impl<R: Reactor> Reconnecting<R> {
    /// Connects to the QMP unix socket at `path` (like
    /// [`Client::connect_unix`]) and starts the supervisor task on `runtime`.
    pub async fn connect_unix(
        runtime: R,
        path: &Path,
        config: Config,
        reconnect: Reconnect,
    ) -> Result<Self> {
        let client = Client::connect_unix(runtime.clone(), path, config.clone()).await?;
        let core = Arc::new(Inner {
            common: Common::new(&client, path, config, reconnect),
            runtime: runtime.clone(),
        });
        runtime.spawn(Box::pin(supervise(core.clone(), client)));
        Ok(Self {
            shared: Arc::new(Shared { core }),
        })
    }

    /// Where the link stands now.
    pub fn state(&self) -> LinkState {
        self.shared.core.common.link.state()
    }

    /// Completes once the state satisfies `done` (checked now and at every
    /// change); put your runtime's timeout around it.
    pub async fn wait_for(&self, done: impl Fn(&LinkState) -> bool) {
        let link = &self.shared.core.common.link;
        loop {
            // Taken before the state is read: no change slips between.
            let change = link.next_change();
            if done(&link.state()) {
                return;
            }
            change.wait_async().await;
        }
    }

    /// How many times the client has reconnected.
    pub fn reconnects(&self) -> u64 {
        self.shared.core.common.link.reconnects()
    }

    /// The connection of the moment, while connected (for its greeting, or
    /// what only a plain client does; its subscriptions end with it).
    pub fn current(&self) -> Option<Client<R>> {
        self.shared.core.common.link.current()
    }

    /// The greeting of the connection of the moment, while connected.
    pub fn greeting(&self) -> Option<Greeting> {
        self.current().map(|c| c.greeting().clone())
    }

    /// Runs a [`Call`] on the connection of the moment; while disconnected,
    /// fails or waits as [`Reconnect::calls`] says.
    pub async fn call(&self, call: Call) -> Result<Json> {
        let core = &self.shared.core.common;
        let timeout = call_timeout(&call, &core.config);
        let deadline = timeout.and_then(deadline_after);
        let mut call = call;
        let mut waited = false;
        loop {
            match core.link.now(core.reconnect.calls) {
                Now::Ready(client) => {
                    if waited {
                        left_of(&mut call, deadline);
                    }
                    return client.call(call).await;
                }
                Now::Failed(e) => return Err(e),
                Now::Wait(changed, attempts) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    let change = changed.wait_async();
                    match left {
                        None => change.await,
                        Some(left) if left.is_zero() => {
                            return Err(Error::Reconnecting { attempts });
                        }
                        Some(left) => {
                            let sleep = self.shared.core.runtime.sleep(left);
                            if let Either::Right(_) = select(change, pin!(sleep)).await {
                                let attempts = core.link.attempts();
                                return Err(Error::Reconnecting { attempts });
                            }
                        }
                    }
                    waited = true;
                }
            }
        }
    }

    /// Runs command `name` with `arguments` (a JSON object, or `()`), as
    /// [`call`](Self::call) does.
    pub async fn execute_raw(&self, name: &str, arguments: impl serde::Serialize) -> Result<Json> {
        self.call(Call::new(name).arguments(arguments)).await
    }

    /// Runs a typed command and decodes its return value.
    pub async fn execute<C: qmp_proto::Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        crate::call::decode(&self.call(Call::command(command)).await?)
    }

    /// A subscriber for the events `filter` accepts, across reconnects
    /// (a `Stream`; see [`Gap`](crate::Gap) for the markers).
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        self.shared.core.common.subs.subscribe(filter)
    }

    /// A subscriber for every event, across reconnects.
    pub fn events(&self) -> Subscription {
        self.subscribe(EventFilter::all())
    }

    /// True once the client was closed or gave up.
    pub fn is_closed(&self) -> bool {
        self.shared.core.common.is_closed()
    }

    /// Stops reconnecting and closes the connection: calls fail with
    /// [`Error::Disconnected`], subscriptions end.
    pub fn close(&self) {
        self.shared.core.shutdown();
    }
}

impl<R: Reactor> crate::AsyncQmp for Reconnecting<R> {
    fn call(&self, call: Call) -> impl Future<Output = Result<Json>> + Send {
        Reconnecting::call(self, call)
    }

    fn subscribe(&self, filter: EventFilter) -> Subscription {
        Reconnecting::subscribe(self, filter)
    }

    fn is_closed(&self) -> bool {
        Reconnecting::is_closed(self)
    }
}

/// The supervisor: waits for `client`'s connection to drop, then connects
/// again until it succeeds, gives up, or the client is closed.
async fn supervise<R: Reactor>(core: Arc<Inner<R>>, mut client: Client<R>) {
    let common = &core.common;
    let mut seed = Backoff::seed();
    loop {
        let Some(since) = core.unless_stopped(client.closed()).await else {
            return;
        };
        drop(client);
        if common.link.stop.is_set() {
            return;
        }
        seed = seed.wrapping_add(1);
        let mut outage = common.dropped(since, seed);
        client = loop {
            let Some(delay) = common.next_attempt(&mut outage) else {
                return;
            };
            if core
                .unless_stopped(core.runtime.sleep(delay))
                .await
                .is_none()
            {
                return;
            }
            common.attempting(&mut outage);
            let connecting =
                Client::connect_unix(core.runtime.clone(), &common.path, common.config.clone());
            let Some(result) = core.unless_stopped(connecting).await else {
                return;
            };
            match common.attempted(&mut outage, result) {
                Step::Up(next) => break next,
                Step::Again => {}
                Step::Stop => return,
            }
        };
    }
}
