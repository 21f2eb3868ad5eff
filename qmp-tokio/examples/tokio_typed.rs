//! The README's typed and raw calls side by side, async (tokio; smol alike).
use futures_util::StreamExt;
use qmp_tokio::qapi::{commands, events};
use qmp_tokio::{Config, EventFilter, Qemu};

#[tokio::main]
async fn main() -> Result<(), Box<dyn core::error::Error>> {
    let (_qemu, qmp) = qmp_tokio::launch(Qemu::builder(), Config::default()).await?;

    let status = qmp.execute(&commands::QueryStatus).await?; // typed
    let raw = qmp.execute_raw("query-status", ()).await?; // raw
    println!("{:?} / {raw}", status.status);

    let mut stops = qmp.subscribe(EventFilter::of::<events::Stop>());
    qmp.execute(&commands::Stop).await?; // raw: qmp.execute_raw("stop", ()).await?
    if let Some(event) = stops.next().await {
        let stop: events::Stop = event?.typed()?;
        println!("{stop:?}");
    }
    Ok(())
}
