//! The README's qmp-tokio program: many tasks, one connection.
use futures_util::StreamExt;
use qmp_tokio::{Call, Config, EventFilter, Qemu};
use serde_json::json;

#[tokio::main]
async fn main() -> qmp_tokio::Result<()> {
    // A private QEMU (-machine none); or qmp_tokio::connect_unix("/path/qmp.sock", config).
    let (_qemu, qmp) = qmp_tokio::launch(Qemu::builder(), Config::default()).await?;
    println!("QEMU {}", qmp.greeting().version);

    let mut events = qmp.subscribe(EventFilter::name("STOP"));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let qmp = qmp.clone(); // cheap, Send + Sync
            tokio::spawn(async move { qmp.execute_raw("query-status", ()).await })
        })
        .collect();
    for task in tasks {
        println!("status: {}", task.await.expect("task")?);
    }

    let hmp = json!({"command-line": "info version"}); // any Serialize as arguments
    println!("{}", qmp.execute_raw("human-monitor-command", hmp).await?);
    let short = Call::new("stop").timeout(Some(core::time::Duration::from_secs(2)));
    qmp.call(short).await?;
    println!(
        "event: {:?}",
        events.next().await.map(|e| e.map(|e| e.name().to_owned()))
    );
    Ok(())
}
