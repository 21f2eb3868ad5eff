//! Framing and classifying received QMP bytes: our `Framer` against two peers on
//! the same bytes, in the same criterion group.
//!
//! Inputs (the committed real transcripts in `tests/data`):
//! - `qmp-queries`: `qmp-queries.rx` as captured (greeting, then replies; one
//!   of them the 207 KB `query-qmp-schema` reply).
//! - `small-messages`: every event and reply line (greetings left out) of the
//!   other QMP transcripts (`qmp-oob`, `qmp-parse-error`, `qmp-stop-cont`),
//!   concatenated and repeated to at least 256 KiB.
//!
//! Decoders, each of which finds every message and classifies it (greeting,
//! return, error, event, other) and reads its numeric `id`:
//! - `framer/whole`, `framer/64B`, `framer/1B`: `Framer` on `Heap` storage with
//!   `Limits::default()`, fed the whole input, 64-byte and 1-byte pieces. One
//!   framer per benchmark, reused by every iteration (each iteration leaves it
//!   between messages with nothing buffered), so the time is framing, not the
//!   first growth of its buffer.
//! - `serde_json lines`: split on LF, trim CR, parse each line into a
//!   `serde_json::Value`, classify by looking up the keys.
//! - `qapi-rs decode`: what qapi-rs 0.15's QMP stream does for each received
//!   line (`JsonLinesCodec`: memchr for LF, then `serde_json::from_slice` of the
//!   line with its LF): the greeting into `qapi::qmp::QapiCapabilities`, every
//!   later line into `qapi::qmp::QmpMessageAny`. The real crate's types are used.
//!
//! Before timing, the message counts per kind of all decoders (and of every
//! framer feed size) are asserted equal on each input, so all do the same work.

use core::hint::black_box;
use core::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use qmp_proto::framer::{Frame, Framer, IdValue, Kind, Limits};
use qmp_proto::{Heap, Storage};

/// Messages found, per kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    greeting: usize,
    ret: usize,
    error: usize,
    event: usize,
    other: usize,
    /// Sum of the numeric ids seen (a cheap check that ids were read).
    id_sum: u64,
    /// Frames other than messages (framer only; must stay 0 on these inputs).
    not_messages: usize,
}

impl Counts {
    fn messages(&self) -> usize {
        self.greeting + self.ret + self.error + self.event + self.other
    }
}

struct Input {
    name: &'static str,
    bytes: Vec<u8>,
    /// The stream starts with the QMP greeting (qapi-rs decodes it separately).
    greeting_first: bool,
}

fn load(file: &str) -> Vec<u8> {
    let path = format!("{}/../tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn inputs() -> Vec<Input> {
    let mut small_round = Vec::new();
    for file in ["qmp-oob.rx", "qmp-parse-error.rx", "qmp-stop-cont.rx"] {
        for line in load(file).split_inclusive(|&b| b == b'\n') {
            if !line.starts_with(br#"{"QMP""#) {
                small_round.extend_from_slice(line);
            }
        }
    }
    let mut small = Vec::new();
    while small.len() < 256 << 10 {
        small.extend_from_slice(&small_round);
    }
    vec![
        Input {
            name: "qmp-queries",
            bytes: load("qmp-queries.rx"),
            greeting_first: true,
        },
        Input {
            name: "small-messages",
            bytes: small,
            greeting_first: false,
        },
    ]
}

// ---------------------------------------------------------------- our framer

/// The framer of `Heap` storage (its receive buffer grows up to the limit).
type VecBuf = <Heap as Storage>::Rx;

fn drain(framer: &mut Framer<VecBuf>, c: &mut Counts) {
    while let Some(frame) = framer.next() {
        match frame {
            Frame::Message(m) => {
                match black_box(m.kind()) {
                    Kind::Greeting => c.greeting += 1,
                    Kind::Return => c.ret += 1,
                    Kind::Error => c.error += 1,
                    Kind::Event => c.event += 1,
                    _ => c.other += 1,
                }
                if let IdValue::Number(n) = black_box(m.id()) {
                    c.id_sum += n;
                }
            }
            _ => c.not_messages += 1,
        }
    }
}

/// Frames `input` fed in pieces of `chunk` bytes into `framer`, which must be
/// between messages; leaves it between messages with nothing buffered.
fn framer(framer: &mut Framer<VecBuf>, input: &[u8], chunk: usize) -> Counts {
    let mut c = Counts::default();
    for piece in input.chunks(chunk) {
        let mut rest = piece;
        loop {
            let taken = framer.push(rest);
            rest = &rest[taken..];
            drain(framer, &mut c);
            if rest.is_empty() {
                break;
            }
        }
    }
    c
}

fn new_framer() -> Framer<VecBuf> {
    Framer::new(Limits::default())
}

// ---------------------------------------------------------------- peers

/// Lines with their LF (the last one without, if the input does not end in LF),
/// found with memchr as qapi-rs's `JsonLinesCodec` and std's
/// `BufRead::read_until` do.
fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = input;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// Peer 1: a `serde_json::Value` per line, classified by its keys.
fn serde_json_lines(input: &[u8]) -> Counts {
    let mut c = Counts::default();
    for line in lines(input) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).expect("valid JSON line");
        let v = black_box(v);
        if v.get("QMP").is_some() {
            c.greeting += 1;
        } else if v.get("return").is_some() {
            c.ret += 1;
        } else if v.get("error").is_some() {
            c.error += 1;
        } else if v.get("event").is_some() {
            c.event += 1;
        } else {
            c.other += 1;
        }
        if let Some(n) = v.get("id").and_then(serde_json::Value::as_u64) {
            c.id_sum += n;
        }
    }
    c
}

/// Peer 2: qapi-rs's receive path, with its own types (see the module docs).
fn qapi_rs_decode(input: &[u8], greeting_first: bool) -> Counts {
    use qapi::qmp::{QapiCapabilities, QmpMessage, QmpMessageAny};
    use qapi::{Any, Error};

    fn id_of(id: Option<&Any>) -> u64 {
        id.and_then(Any::as_u64).unwrap_or(0)
    }

    let mut c = Counts::default();
    let mut lines = lines(input);
    if greeting_first {
        let line = lines.next().expect("greeting line");
        let caps: QapiCapabilities = serde_json::from_slice(line).expect("greeting");
        black_box(caps);
        c.greeting += 1;
    }
    for line in lines {
        let m: QmpMessageAny = serde_json::from_slice(line).expect("qapi-rs decode");
        match black_box(m) {
            QmpMessage::Event(e) => {
                black_box(e);
                c.event += 1;
            }
            QmpMessage::Response(r) => {
                c.id_sum += id_of(r.id());
                match r.result() {
                    Ok(v) => {
                        black_box(v);
                        c.ret += 1;
                    }
                    Err(Error { .. }) => c.error += 1,
                }
            }
        }
    }
    c
}

// ---------------------------------------------------------------- criterion

fn check_equal_work(input: &Input) {
    let whole = framer(&mut new_framer(), &input.bytes, usize::MAX);
    assert_eq!(
        whole.not_messages, 0,
        "{}: framer saw non-message frames",
        input.name
    );
    assert!(whole.messages() > 0, "{}: no messages", input.name);
    for chunk in [usize::MAX, 64, 1] {
        // Twice through one framer, as in the timed loop.
        let mut f = new_framer();
        for _ in 0..2 {
            let c = framer(&mut f, &input.bytes, chunk);
            assert_eq!(c, whole, "{}: framer fed {chunk}-byte pieces", input.name);
            assert!(
                !f.is_mid_message() && f.buffered() == 0,
                "{}: leftovers",
                input.name
            );
        }
    }
    assert_eq!(
        serde_json_lines(&input.bytes),
        whole,
        "{}: serde_json lines",
        input.name
    );
    assert_eq!(
        qapi_rs_decode(&input.bytes, input.greeting_first),
        whole,
        "{}: qapi-rs decode",
        input.name
    );
    eprintln!(
        "{}: {} bytes, {} messages each ({whole:?})",
        input.name,
        input.bytes.len(),
        whole.messages()
    );
}

fn bench_input(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, input: &Input) {
    let bytes = &input.bytes[..];
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    for (id, chunk) in [
        ("framer/whole", usize::MAX),
        ("framer/64B", 64),
        ("framer/1B", 1),
    ] {
        // One framer per benchmark, reused across iterations (a connection's
        // steady state: its buffer is already allocated).
        let mut f = new_framer();
        group.bench_function(id, |b| b.iter(|| framer(&mut f, black_box(bytes), chunk)));
    }
    group.bench_function("serde_json lines", |b| {
        b.iter(|| serde_json_lines(black_box(bytes)))
    });
    group.bench_function("qapi-rs decode", |b| {
        b.iter(|| qapi_rs_decode(black_box(bytes), input.greeting_first))
    });
}

fn framing(c: &mut Criterion) {
    for input in inputs() {
        check_equal_work(&input);
        let mut group = c.benchmark_group(format!("framing/{}", input.name));
        bench_input(&mut group, &input);
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = framing
}
criterion_main!(benches);
