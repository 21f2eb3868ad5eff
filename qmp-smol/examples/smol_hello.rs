//! The README's qmp-smol program: the same API on smol.
use futures_util::StreamExt;
use qmp_smol::{Config, EventFilter, Qemu};
use serde_json::json; // arguments: anything serde serializes

fn main() -> qmp_smol::Result<()> {
    smol::block_on(async {
        // A private QEMU (-machine none); or qmp_smol::connect_unix("/path/qmp.sock", config).
        let (_qemu, qmp) = qmp_smol::launch(Qemu::builder(), Config::default()).await?;
        println!("QEMU {}", qmp.greeting().version);

        let mut events = qmp.subscribe(EventFilter::name("STOP"));
        let (a, b) = smol::future::zip(
            qmp.execute_raw("query-status", ()),
            qmp.execute_raw("qom-get", json!({"path": "/machine", "property": "type"})),
        )
        .await;
        println!("status: {}, machine: {}", a?, b?);

        qmp.execute_raw("stop", ()).await?;
        if let Some(Ok(event)) = events.next().await {
            println!("event: {} at {:?}", event.name(), event.timestamp());
        }
        Ok(())
    })
}
