//! The README's typed and raw calls side by side, blocking.
use core::time::Duration;
use qmp_std::qapi::{commands, events, types::RunState};
use qmp_std::{Config, EventFilter, Qemu};
use serde_json::json;

fn main() -> Result<(), Box<dyn core::error::Error>> {
    let (_qemu, qmp) = qmp_std::launch(Qemu::builder(), Config::default())?;

    // Typed: the command is a type, its reply decodes into the return type.
    let status = qmp.execute(&commands::QueryStatus)?;
    // Raw: a name and arguments; the reply is the `return` value as JSON text.
    let raw = qmp.execute_raw("query-status", ())?;
    println!("{:?} / {raw}", status.status);

    let typed = commands::QomGet {
        path: "/machine".into(),
        property: "type".into(),
    };
    let raw = json!({"path": "/machine", "property": "type"});
    println!(
        "{} / {}",
        qmp.execute(&typed)?,
        qmp.execute_raw("qom-get", raw)?
    );

    // Typed events: the filter names the types, `typed` decodes into one.
    let events = qmp.subscribe(EventFilter::of::<events::Stop>().or_of::<events::Resume>());
    qmp.execute(&commands::Stop)?; // raw: qmp.execute_raw("stop", ())?
    assert_eq!(
        qmp.execute(&commands::QueryStatus)?.status,
        RunState::Paused
    );
    qmp.execute(&commands::Cont)?;
    for _ in 0..2 {
        let event = events.recv_timeout(Duration::from_secs(5))??;
        if let Ok(events::Stop {}) = event.typed() {
            println!("STOP at {:?}", event.timestamp());
        }
        // Or the catalogue's enum over every event (unknown ones kept).
        let any: events::Event = event.to_enum();
        println!("{any:?}");
    }
    Ok(())
}
