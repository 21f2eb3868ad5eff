//! The README's qmp-std program: blocking, threads welcome.
use core::time::Duration;
use qmp_std::{Config, EventFilter, Qemu};
use serde_json::json;

fn main() -> qmp_std::Result<()> {
    // A private QEMU (-machine none); or qmp_std::connect_unix("/path/qmp.sock", config).
    let (_qemu, qmp) = qmp_std::launch(Qemu::builder(), Config::default())?;
    println!("QEMU {}", qmp.greeting().version);

    let events = qmp.subscribe(EventFilter::name("STOP").or_name("RESUME"));
    let worker = {
        let qmp = qmp.clone(); // cheap; any thread can call
        std::thread::spawn(move || qmp.execute_raw("query-status", ()))
    };
    println!("status: {}", worker.join().expect("worker")?);
    // Arguments: json!, a struct, a map: anything serde serializes.
    let machine = qmp.execute_raw("qom-get", json!({"path": "/machine", "property": "type"}))?;
    println!("machine: {machine}");

    qmp.execute_raw("stop", ())?;
    qmp.execute_raw("cont", ())?;
    while let Ok(Ok(event)) = events.recv_timeout(Duration::from_secs(1)) {
        println!("event: {}", event.name());
    }
    Ok(())
}
