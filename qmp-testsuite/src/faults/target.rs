//! One face for the async and the blocking clients, so each fault case is
//! written once: calls start at once and are awaited later, whatever the
//! client.

use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Poll, Waker};
use core::time::Duration;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use qmp_io::{Call, Config, Disconnect, EventFilter, Greeting, Json, Result, Subscription};

use crate::{BlockingHarness, Harness, Task};

/// A future that need not be `Send` (a connect in progress).
pub type Local<T> = Pin<Box<dyn Future<Output = T>>>;

/// What the fault cases need of a client, async or blocking.
pub trait Target: 'static {
    /// The QMP client.
    type Qmp: Clone + Send + Sync + core::fmt::Debug + 'static;
    /// The guest-agent client.
    type Agent: Clone + Send + Sync + core::fmt::Debug + 'static;

    /// Runs a case to its end on this thread.
    fn run(case: impl Future<Output = ()>);
    /// Connects a QMP client to the socket at `path`.
    fn connect(path: PathBuf, config: Config) -> Local<Result<Self::Qmp>>;
    /// Connects a guest-agent client to the socket at `path`.
    fn connect_agent(path: PathBuf, config: Config) -> Local<Result<Self::Agent>>;
    /// Starts a call; the task yields its result.
    fn call(qmp: &Self::Qmp, call: Call) -> Task<Result<Json>>;
    /// Starts a guest-agent call; the task yields its result.
    fn agent_call(agent: &Self::Agent, call: Call) -> Task<Result<Json>>;
    /// Completes when the connection is over, with the reason.
    fn closed(qmp: &Self::Qmp) -> Task<Disconnect>;
    /// Completes when the guest-agent connection is over, with the reason.
    fn agent_closed(agent: &Self::Agent) -> Task<Disconnect>;
    /// True once the connection is over.
    fn is_closed(qmp: &Self::Qmp) -> bool;
    /// Subscribes to events.
    fn subscribe(qmp: &Self::Qmp, filter: EventFilter) -> Subscription;
    /// The greeting.
    fn greeting(qmp: &Self::Qmp) -> Greeting;
    /// Whether oob was negotiated.
    fn oob_enabled(qmp: &Self::Qmp) -> bool;
    /// Completes after `duration`.
    fn sleep(duration: Duration) -> Task<()>;
}

/// The async clients of the adapter whose [`Harness`] is `H`.
#[derive(Debug)]
pub struct Async<H>(PhantomData<H>);

type AsyncQmp<H> = qmp_io::nonblocking::Client<<H as Harness>::Runtime>;
type AsyncAgent<H> = qmp_io::nonblocking::GuestAgent<<H as Harness>::Runtime>;

impl<H: Harness> Target for Async<H> {
    type Qmp = AsyncQmp<H>;
    type Agent = AsyncAgent<H>;

    fn run(case: impl Future<Output = ()>) {
        H::block_on(case);
    }

    fn connect(path: PathBuf, config: Config) -> Local<Result<Self::Qmp>> {
        Box::pin(async move { H::connect(&path, config).await })
    }

    fn connect_agent(path: PathBuf, config: Config) -> Local<Result<Self::Agent>> {
        Box::pin(async move { H::connect_guest_agent(&path, config).await })
    }

    fn call(qmp: &Self::Qmp, call: Call) -> Task<Result<Json>> {
        let qmp = qmp.clone();
        H::spawn(async move { qmp.call(call).await })
    }

    fn agent_call(agent: &Self::Agent, call: Call) -> Task<Result<Json>> {
        let agent = agent.clone();
        H::spawn(async move { agent.call(call).await })
    }

    fn closed(qmp: &Self::Qmp) -> Task<Disconnect> {
        let qmp = qmp.clone();
        H::spawn(async move { qmp.closed().await })
    }

    fn agent_closed(agent: &Self::Agent) -> Task<Disconnect> {
        let agent = agent.clone();
        H::spawn(async move { agent.closed().await })
    }

    fn is_closed(qmp: &Self::Qmp) -> bool {
        qmp.is_closed()
    }

    fn subscribe(qmp: &Self::Qmp, filter: EventFilter) -> Subscription {
        qmp.subscribe(filter)
    }

    fn greeting(qmp: &Self::Qmp) -> Greeting {
        qmp.greeting().clone()
    }

    fn oob_enabled(qmp: &Self::Qmp) -> bool {
        qmp.oob_enabled()
    }

    fn sleep(duration: Duration) -> Task<()> {
        H::spawn(H::sleep(duration))
    }
}

/// The blocking clients of the adapter whose [`BlockingHarness`] is `B`: each
/// call runs on a thread of its own, the case on `futures-executor`.
#[derive(Debug)]
pub struct Blocking<B>(PhantomData<B>);

impl<B: BlockingHarness> Target for Blocking<B> {
    type Qmp = qmp_io::blocking::Client;
    type Agent = qmp_io::blocking::GuestAgent;

    fn run(case: impl Future<Output = ()>) {
        futures_executor::block_on(case);
    }

    fn connect(path: PathBuf, config: Config) -> Local<Result<Self::Qmp>> {
        on_thread(move || B::connect(&path, config))
    }

    fn connect_agent(path: PathBuf, config: Config) -> Local<Result<Self::Agent>> {
        on_thread(move || B::connect_guest_agent(&path, config))
    }

    fn call(qmp: &Self::Qmp, call: Call) -> Task<Result<Json>> {
        let qmp = qmp.clone();
        on_thread(move || qmp.call(call))
    }

    fn agent_call(agent: &Self::Agent, call: Call) -> Task<Result<Json>> {
        let agent = agent.clone();
        on_thread(move || agent.call(call))
    }

    fn closed(qmp: &Self::Qmp) -> Task<Disconnect> {
        let qmp = qmp.clone();
        on_thread(move || qmp.wait_closed(None).unwrap_or(Disconnect::Local))
    }

    fn agent_closed(agent: &Self::Agent) -> Task<Disconnect> {
        let agent = agent.clone();
        on_thread(move || agent.wait_closed(None).unwrap_or(Disconnect::Local))
    }

    fn is_closed(qmp: &Self::Qmp) -> bool {
        qmp.is_closed()
    }

    fn subscribe(qmp: &Self::Qmp, filter: EventFilter) -> Subscription {
        qmp.subscribe(filter)
    }

    fn greeting(qmp: &Self::Qmp) -> Greeting {
        qmp.greeting().clone()
    }

    fn oob_enabled(qmp: &Self::Qmp) -> bool {
        qmp.oob_enabled()
    }

    fn sleep(duration: Duration) -> Task<()> {
        on_thread(move || std::thread::sleep(duration))
    }
}

/// What a thread leaves for the future awaiting it.
type Outcome<T> = Option<std::thread::Result<T>>;

/// Runs `work` on a thread of its own; the future yields its result (and
/// panics if it panicked).
fn on_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Task<T> {
    let cell: Arc<Mutex<(Outcome<T>, Option<Waker>)>> = Arc::new(Mutex::new((None, None)));
    let filled = cell.clone();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(core::panic::AssertUnwindSafe(work));
        let waker = {
            let mut cell = filled.lock().unwrap_or_else(PoisonError::into_inner);
            cell.0 = Some(outcome);
            cell.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    });
    Box::pin(core::future::poll_fn(move |cx| {
        let mut cell = cell.lock().unwrap_or_else(PoisonError::into_inner);
        match cell.0.take() {
            Some(Ok(value)) => Poll::Ready(value),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => {
                cell.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }))
}
