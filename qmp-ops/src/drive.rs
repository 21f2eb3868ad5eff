//! The two drivers, blocking and async, and the engine they share: all the
//! logic (watching, discarding stale events, matching) is in [`Engine`]; a
//! driver only blocks or awaits where the engine says.

use core::future::Future;
use core::pin::pin;
use core::time::Duration;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use qmp_io::{
    AsyncQmp, Call, Config, Event, EventFilter, EventHub, Gap, Json, Qmp, RecvTimeoutError,
    Subscription,
};

use crate::OpError;
use crate::op::{Input, Operation, Step, Want};

/// How the drivers treat events; [`Options::default`] suits a QEMU on the
/// same host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Discard a watched event that QEMU stamped earlier than this much
    /// before its command was sent: it belongs to something older. QEMU
    /// stamps events with the host's wall clock (`g_get_real_time`, the
    /// same `CLOCK_REALTIME` that `SystemTime` reads), so on the same host
    /// the two compare exactly; for a QEMU on another host, allow for the
    /// clocks' difference, or `None` to turn the check off (the
    /// subscription made before the send still keeps older events out).
    /// Events without a clock (`-1`) are never discarded. Default: zero.
    pub clock_skew: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock_skew: Some(Duration::ZERO),
        }
    }
}

impl Options {
    /// Sets [`clock_skew`](Self::clock_skew).
    pub fn clock_skew(mut self, skew: Option<Duration>) -> Self {
        self.clock_skew = skew;
        self
    }
}

/// Events being watched, from the command that asked for them.
struct Watch {
    subscription: Subscription,
    wants: Vec<Want>,
    /// Microseconds since the epoch when the command was about to be sent.
    sent_at: i128,
}

/// What a driver must do.
enum Action<T> {
    Call(Call),
    Wait(Instant),
    Sleep(Duration),
    Done(Result<T, OpError>),
}

/// One running operation and what it watches.
struct Engine<O> {
    op: O,
    watch: Option<Watch>,
    options: Options,
    /// Wanted events discarded as stamped before their command.
    discarded: usize,
}

fn micros_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i128)
}

impl<O: Operation> Engine<O> {
    fn new(op: O, options: Options) -> Self {
        Self {
            op,
            watch: None,
            options,
            discarded: 0,
        }
    }

    /// Steps the operation; `subscribe` is called (before the command goes
    /// out) when it asks to watch new events.
    fn step(
        &mut self,
        input: Input,
        subscribe: impl FnOnce(EventFilter) -> Subscription,
    ) -> Action<O::Output> {
        match self.op.step(input, Instant::now()) {
            Step::Send { call, watch } => {
                if let Some(wants) = watch {
                    // The old subscription goes first: nothing is delivered twice.
                    self.watch = None;
                    if let Some(first) = wants.first() {
                        let filter = wants[1..]
                            .iter()
                            .fold(EventFilter::name(first.name()), |f, w| f.or_name(w.name()));
                        let subscription = subscribe(filter);
                        self.watch = Some(Watch {
                            subscription,
                            wants,
                            sent_at: micros_now(),
                        });
                    }
                }
                Action::Call(call)
            }
            Step::Wait { deadline } => Action::Wait(deadline),
            Step::Sleep(d) => Action::Sleep(d),
            Step::Done(r) => {
                self.watch = None;
                Action::Done(r.map_err(|e| self.explain(e)))
            }
        }
    }

    /// A deadline that passed while wanted events were discarded as older
    /// than their command may be a clock difference, not a slow QEMU: the
    /// error says so.
    fn explain(&self, e: OpError) -> OpError {
        if self.discarded == 0 || !e.is_deadline() {
            return e;
        }
        let left = format!(
            "{}; {} awaited event(s) came stamped before the command and were discarded \
             (if QEMU's clock differs from this host's, see Options::clock_skew)",
            e.left, self.discarded
        );
        e.left(left)
    }

    /// What a received item means to the operation; `None` when it is not
    /// for it (stale, or not one of the wanted events): wait on.
    fn accept(&mut self, item: Option<Result<Arc<Event>, Gap>>) -> Option<Input> {
        let watch = self.watch.as_ref()?;
        let event = match item {
            None => return Some(Input::Closed),
            Some(Err(Gap::Lagged(n))) => return Some(Input::Lagged(n)),
            // A reconnecting client's link dropped: the events the operation
            // waits for may have been lost with it.
            Some(Err(_)) => return Some(Input::Closed),
            Some(Ok(event)) => event,
        };
        if let (Some(skew), Some(t)) = (self.options.clock_skew, event.timestamp())
            && t.seconds >= 0
        {
            let stamped = i128::from(t.seconds) * 1_000_000 + i128::from(t.microseconds);
            if stamped + (skew.as_micros() as i128) < watch.sent_at {
                tracing::debug!(
                    event = event.name(),
                    "discarding an event from before the command"
                );
                if watch.wants.iter().any(|w| w.matches(&event)) {
                    self.discarded += 1;
                }
                return None;
            }
        }
        let which = watch.wants.iter().position(|w| w.matches(&event))?;
        Some(Input::Event(which, event))
    }
}

/// Runs `op` to its end over a blocking client, with the default [`Options`].
///
/// ```no_run
/// # fn demo(qmp: &qmp_std::Client) -> Result<(), qmp_ops::OpError> {
/// use std::time::Duration;
/// qmp_ops::run(qmp, qmp_ops::device::DeviceDel::new("usb1", Duration::from_secs(5)))?;
/// # Ok(()) }
/// ```
pub fn run<O: Operation>(qmp: &impl Qmp, op: O) -> Result<O::Output, OpError> {
    run_with(qmp, op, Options::default())
}

/// Runs `op` to its end over a blocking client.
pub fn run_with<O: Operation>(
    qmp: &impl Qmp,
    op: O,
    options: Options,
) -> Result<O::Output, OpError> {
    let mut engine = Engine::new(op, options);
    let mut input = Input::Start;
    loop {
        input = match engine.step(input, |f| qmp.subscribe(f)) {
            Action::Call(call) => Input::Reply(qmp.call(call)),
            Action::Sleep(d) => {
                std::thread::sleep(d);
                Input::Woke
            }
            Action::Done(r) => return r,
            Action::Wait(deadline) => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(watch) = engine.watch.as_ref().filter(|_| !left.is_zero()) else {
                    std::thread::sleep(left);
                    break Input::Timeout;
                };
                let item = match watch.subscription.recv_timeout(left) {
                    Ok(item) => Some(item),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Closed) => None,
                };
                if let Some(input) = engine.accept(item) {
                    break input;
                }
            },
        };
    }
}

/// A timer for the async driver. Every `qmp_io` runtime is one (the value
/// an async client was connected with, such as `qmp_tokio::Tokio::current()`
/// or `qmp_smol::Smol::global()`).
pub trait Timer: Send + Sync {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

impl<R: qmp_io::nonblocking::Runtime> Timer for R {
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        qmp_io::nonblocking::Runtime::sleep(self, duration)
    }
}

/// Runs `op` to its end over an async client, with the default [`Options`].
/// Dropping the future drops the subscription with it; see each operation
/// for what a drop in the middle leaves in QEMU.
pub async fn run_async<O>(
    qmp: &impl AsyncQmp,
    timer: &impl Timer,
    op: O,
) -> Result<O::Output, OpError>
where
    O: Operation + Send,
    O::Output: Send,
{
    run_async_with(qmp, timer, op, Options::default()).await
}

/// Runs `op` to its end over an async client.
pub async fn run_async_with<O>(
    qmp: &impl AsyncQmp,
    timer: &impl Timer,
    op: O,
    options: Options,
) -> Result<O::Output, OpError>
where
    O: Operation + Send,
    O::Output: Send,
{
    drive_async(qmp, timer, &mut Engine::new(op, options)).await
}

/// Runs `op` to its end over an async client; when the future is dropped
/// before that, what the operation made so far is undone
/// ([`Operation::abandon`]) in a task spawned on `runtime`, with a clone of
/// the client: the steps of a half-done add, a job it started, a guest file
/// handle it opened.
pub async fn run_async_guarded<Q, R, O>(qmp: &Q, runtime: &R, op: O) -> Result<O::Output, OpError>
where
    Q: AsyncQmp + Clone + 'static,
    R: qmp_io::nonblocking::Runtime,
    O: Operation + Send,
    O::Output: Send,
{
    let mut guard = Guard {
        engine: Engine::new(op, Options::default()),
        undo: Some((qmp.clone(), runtime.clone())),
    };
    let result = drive_async(qmp, runtime, &mut guard.engine).await;
    guard.undo = None;
    result
}

/// Undoes an operation whose future was dropped before it was done.
struct Guard<O: Operation, Q: AsyncQmp + 'static, R: qmp_io::nonblocking::Runtime> {
    engine: Engine<O>,
    /// Set while the operation runs.
    undo: Option<(Q, R)>,
}

impl<O: Operation, Q: AsyncQmp + 'static, R: qmp_io::nonblocking::Runtime> Drop for Guard<O, Q, R> {
    fn drop(&mut self) {
        let Some((qmp, runtime)) = self.undo.take() else {
            return;
        };
        self.engine.watch = None;
        let Some(cleanup) = self.engine.op.abandon() else {
            return;
        };
        let timer = runtime.clone();
        runtime.spawn(Box::pin(async move {
            if let Err(e) = run_async(&qmp, &timer, cleanup).await {
                tracing::warn!(error = %e, "undoing a dropped operation failed");
            }
        }));
    }
}

async fn drive_async<O>(
    qmp: &impl AsyncQmp,
    timer: &impl Timer,
    engine: &mut Engine<O>,
) -> Result<O::Output, OpError>
where
    O: Operation + Send,
    O::Output: Send,
{
    let mut input = Input::Start;
    loop {
        input = match engine.step(input, |f| qmp.subscribe(f)) {
            Action::Call(call) => Input::Reply(qmp.call(call).await),
            Action::Sleep(d) => {
                timer.sleep(d).await;
                Input::Woke
            }
            Action::Done(r) => return r,
            Action::Wait(deadline) => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(watch) = engine.watch.as_mut().filter(|_| !left.is_zero()) else {
                    timer.sleep(left).await;
                    break Input::Timeout;
                };
                let next = watch.subscription.next();
                let item = match select(next, pin!(timer.sleep(left))).await {
                    Either::Left((item, _)) => item,
                    Either::Right(_) => continue,
                };
                if let Some(input) = engine.accept(item) {
                    break input;
                }
            },
        };
    }
}

/// A guest-agent client as a [`Qmp`] or [`AsyncQmp`], so the same drivers
/// run guest operations: its [`subscribe`](Qmp::subscribe) gives a
/// subscription that has ended (the agent sends no events). Wrap a
/// reference, or (for [`run_async_guarded`], which keeps a clone) the
/// async client itself.
///
/// ```no_run
/// # fn demo(agent: &qmp_std::GuestAgent) -> Result<(), qmp_ops::OpError> {
/// use qmp_ops::{Agent, guest::Exec};
/// let done = qmp_ops::run(&Agent(agent), Exec::new("/bin/true"))?;
/// assert_eq!(done.exit_code, Some(0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Agent<G>(pub G);

fn no_events() -> Subscription {
    let hub = EventHub::new(&Config::default());
    hub.close();
    hub.subscribe(EventFilter::all())
}

impl Qmp for Agent<&qmp_io::blocking::GuestAgent> {
    fn call(&self, call: Call) -> qmp_io::Result<Json> {
        self.0.call(call)
    }

    fn subscribe(&self, _: EventFilter) -> Subscription {
        no_events()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The async guest-agent client an [`Agent`] holds, by reference or owned.
pub trait AsyncAgent: Send + Sync {
    /// The runtime it runs on.
    type Runtime: qmp_io::nonblocking::Runtime;
    /// The client.
    fn agent(&self) -> &qmp_io::nonblocking::GuestAgent<Self::Runtime>;
}

impl<R: qmp_io::nonblocking::Runtime> AsyncAgent for qmp_io::nonblocking::GuestAgent<R> {
    type Runtime = R;
    fn agent(&self) -> &qmp_io::nonblocking::GuestAgent<R> {
        self
    }
}

impl<R: qmp_io::nonblocking::Runtime> AsyncAgent for &qmp_io::nonblocking::GuestAgent<R> {
    type Runtime = R;
    fn agent(&self) -> &qmp_io::nonblocking::GuestAgent<R> {
        self
    }
}

impl<G: AsyncAgent> AsyncQmp for Agent<G> {
    fn call(&self, call: Call) -> impl Future<Output = qmp_io::Result<Json>> + Send {
        self.0.agent().call(call)
    }

    fn subscribe(&self, _: EventFilter) -> Subscription {
        no_events()
    }

    fn is_closed(&self) -> bool {
        self.0.agent().is_closed()
    }
}

/// A QMP client and a guest-agent client of the same VM as one client, for
/// operations that need both (a guest shutdown seen through QMP): commands
/// named `guest-*` go to the agent, every other command and every
/// subscription to QMP.
///
/// ```no_run
/// # fn demo(qmp: &qmp_std::Client, agent: &qmp_std::GuestAgent) -> Result<(), qmp_ops::OpError> {
/// use std::time::Duration;
/// use qmp_ops::{Agent, WithAgent, guest};
/// let vm = WithAgent(qmp, Agent(agent));
/// qmp_ops::run(&vm, guest::shutdown("powerdown", Duration::from_secs(60)))?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct WithAgent<Q, A>(pub Q, pub A);

fn for_agent(call: &Call) -> bool {
    call.name().starts_with("guest-")
}

impl<Q: Qmp, A: Qmp> Qmp for WithAgent<&Q, A> {
    fn call(&self, call: Call) -> qmp_io::Result<Json> {
        if for_agent(&call) {
            self.1.call(call)
        } else {
            self.0.call(call)
        }
    }

    fn subscribe(&self, filter: EventFilter) -> Subscription {
        self.0.subscribe(filter)
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl<Q: AsyncQmp, A: AsyncQmp> AsyncQmp for WithAgent<&Q, A> {
    fn call(&self, call: Call) -> impl Future<Output = qmp_io::Result<Json>> + Send {
        let agent = for_agent(&call);
        let (qmp, ga) = (self.0, &self.1);
        async move {
            if agent {
                ga.call(call).await
            } else {
                qmp.call(call).await
            }
        }
    }

    fn subscribe(&self, filter: EventFilter) -> Subscription {
        self.0.subscribe(filter)
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}
