//! The shared integration cases (`qmp-testsuite`) on smol.

use core::future::Future;
use core::time::Duration;
use std::os::unix::net::UnixStream;
use std::path::Path;

use qmp_smol::{Client, Config, GuestAgent, Result, Smol};
use qmp_testsuite::Task;

struct SmolHarness;

impl qmp_testsuite::Harness for SmolHarness {
    type Runtime = Smol;

    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }

    fn spawn<T: Send + 'static>(task: impl Future<Output = T> + Send + 'static) -> Task<T> {
        Box::pin(smol::spawn(task))
    }

    async fn sleep(duration: Duration) {
        smol::Timer::after(duration).await;
    }

    fn connect(path: &Path, config: Config) -> impl Future<Output = Result<Client>> {
        qmp_smol::connect_unix(path, config)
    }

    fn connect_guest_agent(
        path: &Path,
        config: Config,
    ) -> impl Future<Output = Result<GuestAgent>> {
        qmp_smol::connect_guest_agent(path, config)
    }

    async fn guest_agent_on(stream: UnixStream, config: Config) -> Result<GuestAgent> {
        let transport = qmp_smol::unix_transport(stream)?;
        GuestAgent::connect(Smol, transport, config).await
    }
}

qmp_testsuite::async_suite!(SmolHarness);
