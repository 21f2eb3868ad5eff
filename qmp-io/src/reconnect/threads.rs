//! The blocking reconnecting client: a supervisor thread per client.

use std::path::Path;
use std::sync::Arc;

use super::{Backoff, Common, LinkState, Now, Reconnect, Step, call_timeout, left_of};
use crate::blocking::Client;
use crate::call::Call;
use crate::config::{Config, deadline_after};
use crate::error::{Disconnect, Error, Result};
use crate::events::{EventFilter, Subscription};
use crate::json::Json;
use crate::session::Greeting;

/// A blocking QMP client that stays attached to a unix socket path across
/// QEMU restarts: the blocking twin of the async
/// [`Reconnecting`](crate::nonblocking::Reconnecting), with the same
/// semantics (backoff, handshake redone, [`Gap`](crate::Gap) markers in subscriptions,
/// [`Error::Reconnecting`] or a wait for calls made while disconnected).
/// Its supervisor is a thread (`qmp-reconnect`); dropping the last clone or
/// [`close`](Self::close) stops it (at the latest once an attempt under
/// way has run its connect timeout).
///
/// `qmp_std::connect_unix_reconnecting` makes one. The first connect is not
/// retried: it fails like `connect_unix`.
#[derive(Clone)]
pub struct Reconnecting {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reconnecting")
            .field("path", &self.shared.core.path)
            .field("state", &self.state())
            .field("reconnects", &self.reconnects())
            .finish()
    }
}

/// What the handles hold: dropping the last one shuts the client down.
struct Shared {
    core: Arc<Inner>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.core.shutdown();
    }
}

/// What the handles and the supervisor share.
type Inner = Common<Client>;

impl Reconnecting {
    /// Connects to the QMP unix socket at `path` and starts the supervisor
    /// thread.
    pub fn connect_unix(path: &Path, config: Config, reconnect: Reconnect) -> Result<Self> {
        let client = Client::connect_with(config.clone(), |timeout| {
            crate::unix::connect_blocking(path, timeout)
        })?;
        let core = Arc::new(Common::new(&client, path, config, reconnect));
        let supervisor = core.clone();
        let spawned = std::thread::Builder::new()
            .name("qmp-reconnect".into())
            .spawn(move || supervise(&supervisor, client));
        let this = Self {
            shared: Arc::new(Shared { core }),
        };
        spawned?;
        Ok(this)
    }

    /// Where the link stands now.
    pub fn state(&self) -> LinkState {
        self.shared.core.link.state()
    }

    /// Waits until the state satisfies `done` (checked now and at every
    /// change), at most `timeout`; false when it did not in time.
    ///
    /// ```no_run
    /// # fn run(qmp: qmp_io::blocking::Reconnecting) {
    /// use std::time::Duration;
    /// use qmp_io::LinkState;
    /// let back = qmp.wait_for(Some(Duration::from_secs(30)), |s| matches!(s, LinkState::Connected));
    /// # let _ = back; }
    /// ```
    pub fn wait_for(
        &self,
        timeout: Option<core::time::Duration>,
        done: impl Fn(&LinkState) -> bool,
    ) -> bool {
        let link = &self.shared.core.link;
        let deadline = timeout.and_then(deadline_after);
        loop {
            // Taken before the state is read: no change slips between.
            let change = link.next_change();
            if done(&link.state()) {
                return true;
            }
            if !change.wait(deadline) {
                return done(&link.state());
            }
        }
    }

    /// How many times the client has reconnected.
    pub fn reconnects(&self) -> u64 {
        self.shared.core.link.reconnects()
    }

    /// The connection of the moment, while connected (for its greeting, or
    /// what only a plain client does; its subscriptions end with it).
    pub fn current(&self) -> Option<Client> {
        self.shared.core.link.current()
    }

    /// The greeting of the connection of the moment, while connected.
    pub fn greeting(&self) -> Option<Greeting> {
        self.current().map(|c| c.greeting().clone())
    }

    /// Runs a [`Call`] on the connection of the moment; while disconnected,
    /// fails or waits as [`Reconnect::calls`] says.
    pub fn call(&self, call: Call) -> Result<Json> {
        let core = &self.shared.core;
        let deadline = call_timeout(&call, &core.config).and_then(deadline_after);
        let mut call = call;
        let mut waited = false;
        loop {
            match core.link.now(core.reconnect.calls) {
                Now::Ready(client) => {
                    if waited {
                        left_of(&mut call, deadline);
                    }
                    return client.call(call);
                }
                Now::Failed(e) => return Err(e),
                Now::Wait(changed, _) => {
                    if !changed.wait(deadline) {
                        let attempts = core.link.attempts();
                        return Err(Error::Reconnecting { attempts });
                    }
                    waited = true;
                }
            }
        }
    }

    /// Runs command `name` with `arguments` (a JSON object, or `()`), as
    /// [`call`](Self::call) does.
    pub fn execute_raw(&self, name: &str, arguments: impl serde::Serialize) -> Result<Json> {
        self.call(Call::new(name).arguments(arguments))
    }

    /// Runs a typed command and decodes its return value.
    pub fn execute<C: qmp_proto::Command>(&self, command: &C) -> Result<C::Returns>
    where
        C::Returns: serde::de::DeserializeOwned,
    {
        crate::call::decode(&self.call(Call::command(command))?)
    }

    /// A subscriber for the events `filter` accepts, across reconnects (see
    /// [`Gap`](crate::Gap) for the markers).
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        self.shared.core.subs.subscribe(filter)
    }

    /// A subscriber for every event, across reconnects.
    pub fn events(&self) -> Subscription {
        self.subscribe(EventFilter::all())
    }

    /// True once the client was closed or gave up.
    pub fn is_closed(&self) -> bool {
        self.shared.core.is_closed()
    }

    /// Stops reconnecting and closes the connection: calls fail with
    /// [`Error::Disconnected`], subscriptions end.
    pub fn close(&self) {
        self.shared.core.shutdown();
    }
}

impl crate::Qmp for Reconnecting {
    fn call(&self, call: Call) -> Result<Json> {
        Reconnecting::call(self, call)
    }

    fn subscribe(&self, filter: EventFilter) -> Subscription {
        Reconnecting::subscribe(self, filter)
    }

    fn is_closed(&self) -> bool {
        Reconnecting::is_closed(self)
    }
}

/// A new connection to the client's path.
fn connect(core: &Inner) -> Result<Client> {
    Client::connect_with(core.config.clone(), |timeout| {
        crate::unix::connect_blocking(&core.path, timeout)
    })
}

/// The supervisor: waits for `client`'s connection to drop, then connects
/// again until it succeeds, gives up, or the client is closed.
fn supervise(core: &Inner, mut client: Client) {
    let mut seed = Backoff::seed();
    loop {
        // Closing the client closes this connection too: the wait ends.
        let since = client.wait_closed(None).unwrap_or(Disconnect::Local);
        drop(client);
        if core.link.stop.is_set() {
            return;
        }
        seed = seed.wrapping_add(1);
        let mut outage = core.dropped(since, seed);
        client = loop {
            let Some(delay) = core.next_attempt(&mut outage) else {
                return;
            };
            // Also checked after the wait: a wait that ended as the client
            // was closed starts no attempt.
            if core.link.stop.wait(deadline_after(delay)) || core.link.stop.is_set() {
                return;
            }
            core.attempting(&mut outage);
            match core.attempted(&mut outage, connect(core)) {
                Step::Up(next) => break next,
                Step::Again => {}
                Step::Stop => return,
            }
        };
    }
}
