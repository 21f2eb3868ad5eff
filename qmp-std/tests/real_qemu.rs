//! The shared integration cases (`qmp-testsuite`) on the blocking client.

use std::os::unix::net::UnixStream;
use std::path::Path;

use qmp_std::{Client, Config, GuestAgent, Result};

struct Std;

impl qmp_testsuite::BlockingHarness for Std {
    fn connect(path: &Path, config: Config) -> Result<Client> {
        qmp_std::connect_unix(path, config)
    }

    fn launch(qemu: qmp_std::QemuBuilder, config: Config) -> Result<(qmp_std::Qemu, Client)> {
        qmp_std::launch(qemu, config)
    }

    fn connect_tcp(addr: core::net::SocketAddr, config: Config) -> Result<Client> {
        qmp_std::connect_tcp(addr, config)
    }

    fn connect_guest_agent(path: &Path, config: Config) -> Result<GuestAgent> {
        qmp_std::connect_guest_agent(path, config)
    }

    fn guest_agent_on(stream: UnixStream, config: Config) -> Result<GuestAgent> {
        qmp_std::guest_agent_on(stream, config)
    }

    fn launch_stdio(qemu: qmp_std::QemuBuilder, config: Config) -> Result<Client> {
        qmp_std::launch_stdio(qemu, config)
    }

    fn connect_child(command: std::process::Command, config: Config) -> Result<Client> {
        qmp_std::connect_child(command, config)
    }
}

qmp_testsuite::blocking_suite!(Std);
qmp_testsuite::fault_suite!(blocking Std);

impl qmp_testsuite::reconnect::BlockingReconnectHarness for Std {
    fn connect_reconnecting(
        path: &Path,
        config: Config,
        reconnect: qmp_std::Reconnect,
    ) -> Result<qmp_std::Reconnecting> {
        qmp_std::connect_unix_reconnecting(path, config, reconnect)
    }
}

qmp_testsuite::blocking_reconnect_suite!(Std);
