//! Typed decode: replies and events into the catalogue's types (qmp-qapi),
//! against the same bytes into `serde_json::Value` and into qapi-rs's
//! generated types (`qapi::qmp`), each input in one criterion group.
//!
//! The bytes are QEMU 7.2's own, captured by `benches/data/typed/capture.sh`
//! (machine `pc`, TCG, five block devices; see that script and `VERSION`).
//!
//! Groups, `Throughput::Bytes` of the decoded input:
//! - `reply/query-status`, `reply/query-block`: the `return` value of the
//!   reply (the bytes a client's `execute` decodes) into `StatusInfo` /
//!   `Vec<BlockInfo>` (ours: `<QueryStatus as Command>::Returns`).
//! - `event-data/STOP|RESUME|DEVICE_DELETED`: an event's `data` into its type.
//!   Ours is `qmp_io::Event::typed::<events::Stop>()` on a received event
//!   (name check included); absent data reads as `{}` for all three.
//! - `event/STOP|RESUME|DEVICE_DELETED`: the whole event line into an enum
//!   over every event. Ours: qmp-proto's framer finds the name and the data,
//!   then `events::Event::try_decode`; qapi-rs: `qapi::qmp::Event` (an
//!   internally tagged serde enum); `Value`: the whole line.
//!
//! Checked before timing: each decode succeeds, and ours and qapi-rs's agree
//! on a few fields.

use core::hint::black_box;

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use qmp_proto::Command;
use qmp_proto::framer::{Frame, Framer, Key, Limits};
use qmp_proto::{Heap, Storage};
use qmp_qapi::commands::{QueryBlock, QueryStatus};
use qmp_qapi::events;
use serde_json::Value;

const QUERY_STATUS: &str = include_str!("../data/typed/query-status.json");
const QUERY_BLOCK: &str = include_str!("../data/typed/query-block.json");
const EVENTS: &str = include_str!("../data/typed/events.json");

type VecBuf = <Heap as Storage>::Rx;

/// The top-level member `key` of the one message `line` holds, as text.
fn member(line: &str, key: Key) -> Option<String> {
    let mut framer: Framer<VecBuf> = Framer::new(Limits::default());
    assert_eq!(framer.push(line.as_bytes()), line.len());
    match framer.next() {
        Some(Frame::Message(m)) => m.get(key).map(|v| v.as_str().to_owned()),
        other => panic!("not one QMP message: {other:?}"),
    }
}

fn group<'a>(c: &'a mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(bytes as u64));
    g
}

/// One reply's `return` value into ours, `Value` and qapi-rs's type `Q`.
fn reply<C, Q>(c: &mut Criterion, name: &str, line: &str, agree: impl Fn(&C::Returns, &Q))
where
    C: Command,
    C::Returns: serde::de::DeserializeOwned,
    Q: serde::de::DeserializeOwned,
{
    let ret = member(line, Key::Return).expect("a return value");
    let ours: C::Returns = serde_json::from_str(&ret).expect("ours decodes");
    let theirs: Q = serde_json::from_str(&ret).expect("qapi-rs decodes");
    agree(&ours, &theirs);
    let mut g = group(c, &format!("reply/{name}"), ret.len());
    g.bench_function("qmp-qapi", |b| {
        b.iter(|| serde_json::from_str::<C::Returns>(black_box(&ret)).unwrap())
    });
    g.bench_function("serde_json::Value", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(&ret)).unwrap())
    });
    g.bench_function("qapi-rs", |b| {
        b.iter(|| serde_json::from_str::<Q>(black_box(&ret)).unwrap())
    });
    g.finish();
}

fn replies(c: &mut Criterion) {
    reply::<QueryStatus, qapi::qmp::StatusInfo>(c, "query-status", QUERY_STATUS, |o, t| {
        assert_eq!((o.running, o.status.as_str()), (t.running, "running"));
    });
    reply::<QueryBlock, Vec<qapi::qmp::BlockInfo>>(c, "query-block", QUERY_BLOCK, |o, t| {
        let ours: Vec<&str> = o.iter().map(|b| b.device.as_str()).collect();
        let theirs: Vec<&str> = t.iter().map(|b| b.device.as_str()).collect();
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 5, "{ours:?}");
    });
}

/// The captured line of event `name`.
fn event_line(name: &str) -> &'static str {
    EVENTS
        .lines()
        .find(|l| member(l, Key::Event).as_deref() == Some(&format!("\"{name}\"")))
        .unwrap_or_else(|| panic!("no {name} in the captured events"))
}

/// One event's data into ours (through a received `qmp_io::Event`), `Value`
/// and qapi-rs's type `Q`; then the whole line into the enums.
fn event<T, Q>(c: &mut Criterion)
where
    T: qmp_proto::EventData,
    Q: serde::de::DeserializeOwned + qapi::Event,
{
    let line = event_line(T::NAME);
    let data = member(line, Key::Data).unwrap_or_else(|| "{}".to_owned());
    let json = qmp_io::Json::parse(data.clone()).expect("data is JSON");
    let received = qmp_io::Event::new(T::NAME, Some(json), None);
    received.typed::<T>().expect("ours decodes");
    serde_json::from_str::<Q>(&data).expect("qapi-rs decodes");

    let mut g = group(c, &format!("event-data/{}", T::NAME), data.len());
    g.bench_function("qmp-qapi", |b| {
        b.iter(|| black_box(&received).typed::<T>().unwrap())
    });
    g.bench_function("serde_json::Value", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(&data)).unwrap())
    });
    g.bench_function("qapi-rs", |b| {
        b.iter(|| serde_json::from_str::<Q>(black_box(&data)).unwrap())
    });
    g.finish();

    let ours = decode_line(&mut Framer::new(Limits::default()), line);
    assert_eq!(ours.name(), T::NAME);
    assert!(!matches!(ours, events::Event::Unknown { .. }), "{ours:?}");
    let theirs: qapi::qmp::Event = serde_json::from_str(line).expect("qapi-rs decodes");
    assert_eq!(qapi_event_name(&theirs), T::NAME);

    let mut g = group(c, &format!("event/{}", T::NAME), line.len());
    let mut framer = Framer::new(Limits::default());
    g.bench_function("qmp-qapi", |b| {
        b.iter(|| decode_line(&mut framer, black_box(line)))
    });
    g.bench_function("serde_json::Value", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(line)).unwrap())
    });
    g.bench_function("qapi-rs", |b| {
        b.iter(|| serde_json::from_str::<qapi::qmp::Event>(black_box(line)).unwrap())
    });
    g.finish();
}

/// What a client does with an event line: frame it (the name and data
/// spans), then decode the data by name.
fn decode_line(framer: &mut Framer<VecBuf>, line: &str) -> events::Event {
    assert_eq!(framer.push(line.as_bytes()), line.len());
    let Some(Frame::Message(m)) = framer.next() else {
        panic!("not one message: {line}")
    };
    let name = m.get(Key::Event).and_then(|n| n.as_json_str()).unwrap();
    let data = m.get(Key::Data).map(|d| d.as_str());
    match name.as_plain() {
        Some(name) => events::Event::try_decode(name, data),
        None => events::Event::try_decode(&name.to_string_lossless(), data),
    }
    .unwrap()
}

fn qapi_event_name(event: &qapi::qmp::Event) -> &'static str {
    match event {
        qapi::qmp::Event::STOP { .. } => "STOP",
        qapi::qmp::Event::RESUME { .. } => "RESUME",
        qapi::qmp::Event::DEVICE_DELETED { .. } => "DEVICE_DELETED",
        _ => "another event",
    }
}

fn all_events(c: &mut Criterion) {
    event::<events::Stop, qapi::qmp::STOP>(c);
    event::<events::Resume, qapi::qmp::RESUME>(c);
    event::<events::DeviceDeleted, qapi::qmp::DEVICE_DELETED>(c);
}

criterion_group!(benches, replies, all_events);
criterion_main!(benches);
