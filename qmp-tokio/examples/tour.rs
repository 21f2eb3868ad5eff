//! A tour of the client: launches a private QEMU (or connects to the QMP
//! socket given as the first argument), prints the greeting and
//! `query-status`, stops and continues the VM, and prints the events it saw.
//!
//! ```text
//! cargo run --release -p qmp-tokio --example tour [-- /path/to/qmp.sock]
//! ```

use core::time::Duration;

use futures_util::StreamExt;
use qmp_tokio::{Command, Config, EventFilter, Qemu};
use serde_json::json;

/// `query-status`, typed.
#[derive(serde::Serialize)]
struct QueryStatus {}

#[derive(Debug, serde::Deserialize)]
struct StatusInfo {
    status: String,
    running: bool,
}

impl Command for QueryStatus {
    const NAME: &'static str = "query-status";
    type Returns = StatusInfo;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn core::error::Error>> {
    let config = Config::default().timeout(Some(Duration::from_secs(5)));
    // Keep the launched QEMU alive until the end: dropping it kills it.
    let (_qemu, qmp) = match std::env::args().nth(1) {
        Some(path) => (None, qmp_tokio::connect_unix(path, config).await?),
        None => {
            let (qemu, qmp) = qmp_tokio::launch(Qemu::builder(), config).await?;
            println!(
                "launched QEMU (pid {}) at {}",
                qemu.pid(),
                qemu.qmp_path().display()
            );
            (Some(qemu), qmp)
        }
    };

    let greeting = qmp.greeting();
    println!(
        "greeting: QEMU {} ({}), capabilities {:?}, oob negotiated: {}",
        greeting.version, greeting.package, greeting.capabilities, greeting.oob
    );

    let status = qmp.execute(&QueryStatus {}).await?;
    println!(
        "query-status: {} (running: {})",
        status.status, status.running
    );

    // Arguments are anything serde serializes: json!, a struct, a map.
    let machine = qmp
        .execute_raw("qom-get", json!({"path": "/machine", "property": "type"}))
        .await?;
    println!("qom-get /machine type: {machine}");

    let mut events = qmp.subscribe(EventFilter::name("STOP").or_name("RESUME"));
    qmp.execute_raw("stop", ()).await?;
    println!("after stop: {}", qmp.execute(&QueryStatus {}).await?.status);
    qmp.execute_raw("cont", ()).await?;
    println!("after cont: {}", qmp.execute(&QueryStatus {}).await?.status);

    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(Ok(event))) => {
                let ts = event
                    .timestamp()
                    .map(|t| format!("{}.{:06}", t.seconds, t.microseconds));
                println!("event: {} at {}", event.name(), ts.unwrap_or_default());
            }
            Ok(Some(Err(lagged))) => println!("{lagged}"),
            Ok(None) => break,
            Err(_) => {
                println!("no more events within 5 s");
                break;
            }
        }
    }

    match qmp.execute_raw("no-such-command", ()).await {
        Err(qmp_tokio::Error::Command(e)) => println!("an error reply is data: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    // The same client over QEMU's stdio: no socket file at all.
    let stdio = qmp_tokio::launch_stdio(Qemu::builder(), Config::default()).await?;
    println!(
        "over stdio: QEMU {}, {}",
        stdio.greeting().version,
        stdio.execute_raw("query-status", ()).await?
    );
    Ok(())
}
