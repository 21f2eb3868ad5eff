//! The `qmp` binary with `--libvirt DOMAIN --uri URI`, against a real private
//! libvirtd running a real QEMU domain (the daemon qmp-libvirt's tests use,
//! started by `scripts/libvirt.sh`). Skipped with a printed reason without
//! libvirtd or root; fails instead under `QMP_REQUIRE_PEERS=1`.

mod common;
#[path = "../../qmp-libvirt/tests/common/mod.rs"]
mod libvirtd;

use common::{qmp, run};
use serde_json::Value;

#[test]
fn commands_through_libvirt() {
    let Some(peer) = libvirtd::Peer::start("commands_through_libvirt") else {
        return;
    };
    let (uri, domain) = (peer.unix_uri.as_str(), peer.domain.as_str());
    let out = run(
        qmp(&["--libvirt", domain, "--uri", uri, "query-status"]),
        None,
    );
    let status: Value = serde_json::from_str(out.ok().trim()).unwrap();
    assert_eq!(status["status"], "running", "{status}");

    // Over TCP, key=value arguments.
    if let Some(tcp) = &peer.tcp_uri {
        let out = run(
            qmp(&[
                "--libvirt",
                domain,
                "--uri",
                tcp,
                "qom-get",
                "path=/machine",
                "property=type",
            ]),
            None,
        );
        assert_eq!(out.ok().trim(), "\"pc-i440fx-7.2-machine\"");
    }

    // HMP, and a script on stdin.
    let out = run(
        qmp(&["--libvirt", domain, "--uri", uri, "-H", "info status"]),
        None,
    );
    assert!(out.ok().contains("running"), "{}", out.stdout);
    let out = run(
        qmp(&["--libvirt", domain, "--uri", uri]),
        Some("query-name\nstop\ncont\n"),
    );
    assert_eq!(out.ok().lines().count(), 3, "{}", out.stdout);

    // A QMP error exits 1; a missing domain 2, naming it and libvirt's words.
    let out = run(
        qmp(&["--libvirt", domain, "--uri", uri, "no-such-command"]),
        None,
    );
    assert!(out.failed(1).contains("CommandNotFound"), "{}", out.stderr);
    // A refusal is explained by the schema, read through libvirt too.
    let out = run(
        qmp(&[
            "--libvirt",
            domain,
            "--uri",
            uri,
            "qom-get",
            "path=/machine",
        ]),
        None,
    );
    let line = out.failed(1);
    assert!(line.starts_with("qmp: GenericError: "), "{line}");
    assert!(
        line.ends_with(
            "(schema: qom-get: arguments.property: required member `property` is missing)"
        ),
        "{line}"
    );
    let out = run(
        qmp(&[
            "--libvirt",
            "qmp-no-such-domain",
            "--uri",
            uri,
            "query-status",
        ]),
        None,
    );
    let line = out.failed(2);
    assert!(line.contains("qmp-no-such-domain"), "{line}");
    assert!(line.contains("Domain not found"), "{line}");

    // What libvirt cannot carry, at once.
    let out = run(qmp(&["--libvirt", domain, "--uri", uri, "--events"]), None);
    assert!(out.failed(2).contains("--libvirt"), "{}", out.stderr);
}
