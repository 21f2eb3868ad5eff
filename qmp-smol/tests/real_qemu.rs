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

    fn launch(
        qemu: qmp_smol::QemuBuilder,
        config: Config,
    ) -> impl Future<Output = Result<(qmp_smol::Qemu, Client)>> {
        qmp_smol::launch(qemu, config)
    }

    fn connect_tcp(
        addr: core::net::SocketAddr,
        config: Config,
    ) -> impl Future<Output = Result<Client>> {
        qmp_smol::connect_tcp(addr, config)
    }

    fn launch_stdio(
        qemu: qmp_smol::QemuBuilder,
        config: Config,
    ) -> impl Future<Output = Result<Client>> {
        qmp_smol::launch_stdio(qemu, config)
    }

    fn connect_child(
        command: std::process::Command,
        config: Config,
    ) -> impl Future<Output = Result<Client>> {
        qmp_smol::connect_child(command, config)
    }

    fn connect_guest_agent(
        path: &Path,
        config: Config,
    ) -> impl Future<Output = Result<GuestAgent>> {
        qmp_smol::connect_guest_agent(path, config)
    }

    async fn guest_agent_on(stream: UnixStream, config: Config) -> Result<GuestAgent> {
        let stream = smol::net::unix::UnixStream::try_from(stream)?;
        qmp_smol::guest_agent_on(stream, config).await
    }
}

qmp_testsuite::async_suite!(SmolHarness);
qmp_testsuite::fault_suite!(async SmolHarness);

impl qmp_testsuite::reconnect::ReconnectHarness for SmolHarness {
    fn connect_reconnecting(
        path: &Path,
        config: Config,
        reconnect: qmp_smol::Reconnect,
    ) -> impl Future<Output = Result<qmp_smol::Reconnecting>> {
        qmp_smol::connect_unix_reconnecting(path, config, reconnect)
    }

    fn live_tasks() -> Option<usize> {
        // smol's global executor does not count its tasks.
        None
    }
}

qmp_testsuite::reconnect_suite!(SmolHarness);

/// `Smol::on` puts the connection task on the given executor: while nobody
/// runs that executor the handshake cannot happen; run by the calling thread,
/// the client works.
#[test]
fn a_client_on_an_executor_of_ours_runs_there() {
    let Some(builder) =
        qmp_testsuite::peers::require_qemu("a_client_on_an_executor_of_ours_runs_there")
    else {
        return;
    };
    let qemu = builder.spawn().unwrap();
    let connect = |executor: &std::sync::Arc<smol::Executor<'static>>, config: Config| {
        let stream = UnixStream::connect(qemu.qmp_path()).unwrap();
        let stream = smol::net::unix::UnixStream::try_from(stream).unwrap();
        let on = Smol::on(executor.clone());
        Client::connect(on, qmp_smol::Stream::into_transport(stream), config)
    };

    let idle = std::sync::Arc::new(smol::Executor::new());
    let config = Config::default().connect_timeout(Duration::from_millis(300));
    let err = smol::block_on(connect(&idle, config)).unwrap_err();
    assert!(
        matches!(
            err,
            qmp_smol::Error::Disconnected(qmp_smol::Disconnect::HandshakeTimeout {
                step: qmp_smol::HandshakeStep::Greeting,
                ..
            })
        ),
        "{err:?}"
    );
    // Dropping the executor drops the task and its socket, freeing QEMU's
    // monitor for the next client.
    drop(idle);

    let ex = std::sync::Arc::new(smol::Executor::new());
    let status = smol::block_on(ex.run(async {
        let qmp = connect(&ex, Config::default()).await?;
        qmp.execute_raw("query-status", ()).await
    }))
    .unwrap();
    assert!(status.as_str().contains("\"status\""), "{status:?}");
}
