//! The shared integration cases (`qmp-testsuite`) on tokio.

use core::future::Future;
use core::time::Duration;
use std::os::unix::net::UnixStream;
use std::path::Path;

use qmp_testsuite::Task;
use qmp_tokio::{Client, Config, GuestAgent, Result, Tokio};

struct TokioHarness;

impl qmp_testsuite::Harness for TokioHarness {
    type Runtime = Tokio;

    fn block_on<F: Future>(future: F) -> F::Output {
        // Multi-threaded, so spawned tasks really run in parallel with the
        // driver; two workers match the smallest machine the suite runs on.
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("cannot build a tokio runtime")
            .block_on(future)
    }

    fn spawn<T: Send + 'static>(task: impl Future<Output = T> + Send + 'static) -> Task<T> {
        let handle = tokio::spawn(task);
        Box::pin(async move { handle.await.expect("a spawned task failed") })
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }

    fn connect(path: &Path, config: Config) -> impl Future<Output = Result<Client>> {
        qmp_tokio::connect_unix(path, config)
    }

    fn launch(
        qemu: qmp_tokio::QemuBuilder,
        config: Config,
    ) -> impl Future<Output = Result<(qmp_tokio::Qemu, Client)>> {
        qmp_tokio::launch(qemu, config)
    }

    fn connect_tcp(
        addr: core::net::SocketAddr,
        config: Config,
    ) -> impl Future<Output = Result<Client>> {
        qmp_tokio::connect_tcp(addr, config)
    }

    fn launch_stdio(
        qemu: qmp_tokio::QemuBuilder,
        config: Config,
    ) -> impl Future<Output = Result<Client>> {
        qmp_tokio::launch_stdio(qemu, config)
    }

    fn connect_child(
        command: std::process::Command,
        config: Config,
    ) -> impl Future<Output = Result<Client>> {
        qmp_tokio::connect_child(command, config)
    }

    fn connect_guest_agent(
        path: &Path,
        config: Config,
    ) -> impl Future<Output = Result<GuestAgent>> {
        qmp_tokio::connect_guest_agent(path, config)
    }

    async fn guest_agent_on(stream: UnixStream, config: Config) -> Result<GuestAgent> {
        stream.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(stream)?;
        qmp_tokio::guest_agent_on(stream, config).await
    }
}

qmp_testsuite::async_suite!(TokioHarness);
qmp_testsuite::fault_suite!(async TokioHarness);

impl qmp_testsuite::reconnect::ReconnectHarness for TokioHarness {
    fn connect_reconnecting(
        path: &Path,
        config: Config,
        reconnect: qmp_tokio::Reconnect,
    ) -> impl Future<Output = Result<qmp_tokio::Reconnecting>> {
        qmp_tokio::connect_unix_reconnecting(path, config, reconnect)
    }

    fn live_tasks() -> Option<usize> {
        Some(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        )
    }
}

qmp_testsuite::reconnect_suite!(TokioHarness);
