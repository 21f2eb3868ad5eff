//! The typed decode bench's comparisons (`benches/typed.rs`) counted in
//! instructions instead of time: on a machine shared with other builds the
//! wall-clock ratios of a few hundred nanoseconds swing by ±30% from run to
//! run, while instruction counts do not move.
//!
//! `cargo run --profile bench -p qmp-benches --example typed_instructions`
//! runs itself under `valgrind --tool=cachegrind` twice per decode (1,000
//! and 11,000 iterations) and prints the instructions per decode of the
//! difference, with the ratios `Value / ours` and `qapi-rs / ours` (above
//! 1: ours executes fewer). With arguments `DECODE PEER N` it is the child:
//! it runs one decode N times.
//!
//! The inputs are the bench's captured bytes (`benches/data/typed`): the
//! replies' `return` values and the events' `data`, the groups where the
//! peers are close. (In the whole-line `event/` groups qapi-rs's internally
//! tagged enum is slower by a factor well outside the noise.)

use core::hint::black_box;
use std::process::Command;

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

const QUERY_STATUS: &str = include_str!("../data/typed/query-status.json");
const QUERY_BLOCK: &str = include_str!("../data/typed/query-block.json");
const EVENTS: &str = include_str!("../data/typed/events.json");

const PEERS: [&str; 3] = ["qmp-qapi", "serde_json::Value", "qapi-rs"];

/// The top-level members a reply or an event line has, borrowed.
#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(rename = "return", borrow)]
    ret: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    event: Option<String>,
}

fn message(line: &str) -> Message<'_> {
    serde_json::from_str(line).expect("a captured message")
}

fn event_line(name: &str) -> &'static str {
    EVENTS
        .lines()
        .find(|l| message(l).event.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in the captured events"))
}

/// Decodes `input` `n` times as `T`.
fn repeat<T: DeserializeOwned>(input: &str, n: usize) {
    for _ in 0..n {
        black_box(serde_json::from_str::<T>(black_box(input)).unwrap());
    }
}

/// A decode of the bench: its input, and one way to run it `n` times per peer.
struct Decode {
    name: &'static str,
    input: fn() -> String,
    peers: [fn(&str, usize); 3],
}

fn reply(line: &str) -> String {
    message(line).ret.expect("a return value").get().to_owned()
}

fn data(name: &str) -> String {
    message(event_line(name))
        .data
        .map_or_else(|| "{}".to_owned(), |d| d.get().to_owned())
}

/// A [`Decode`] of `$input` into ours (`$ours`), `Value` and qapi-rs's `$theirs`.
macro_rules! decode {
    ($name:literal, $input:expr, $ours:ty, $theirs:ty) => {
        Decode {
            name: $name,
            input: || $input,
            peers: [repeat::<$ours>, repeat::<Value>, repeat::<$theirs>],
        }
    };
}

fn decodes() -> Vec<Decode> {
    use qmp_qapi::{events, types};
    vec![
        decode!(
            "reply/query-status",
            reply(QUERY_STATUS),
            types::StatusInfo,
            qapi::qmp::StatusInfo
        ),
        decode!(
            "reply/query-block",
            reply(QUERY_BLOCK),
            Vec<types::BlockInfo>,
            Vec<qapi::qmp::BlockInfo>
        ),
        // An open enum (`Other(String)` keeps unknown values) against a
        // closed serde enum, on a value both know.
        decode!(
            "value/RunState",
            "\"running\"".to_owned(),
            types::RunState,
            qapi::qmp::RunState
        ),
        decode!(
            "event-data/STOP",
            data("STOP"),
            events::Stop,
            qapi::qmp::STOP
        ),
        decode!(
            "event-data/RESUME",
            data("RESUME"),
            events::Resume,
            qapi::qmp::RESUME
        ),
        decode!(
            "event-data/DEVICE_DELETED",
            data("DEVICE_DELETED"),
            events::DeviceDeleted,
            qapi::qmp::DEVICE_DELETED
        ),
    ]
}

/// Instructions the child executes for `n` decodes.
fn instructions(decode: &str, peer: usize, n: usize) -> u64 {
    let me = std::env::current_exe().expect("this program");
    let out = Command::new("valgrind")
        .args(["--tool=cachegrind", "--cache-sim=no"])
        .arg("--cachegrind-out-file=/dev/null")
        .arg(me)
        .args([decode, &peer.to_string(), &n.to_string()])
        .output()
        .expect("valgrind (apt-get install valgrind)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{decode} {peer}: {text}");
    // `==PID== I   refs:      1,234,567`
    let refs = text
        .lines()
        .find_map(|l| l.split_once("I   refs:").map(|(_, n)| n))
        .unwrap_or_else(|| panic!("no instruction count from valgrind: {text}"));
    let digits: String = refs.chars().filter(char::is_ascii_digit).collect();
    digits.parse().expect("a count")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let decodes = decodes();
    if let [name, peer, n] = args.as_slice() {
        let decode = decodes.iter().find(|d| d.name == name).expect("a decode");
        let input = (decode.input)();
        decode.peers[peer.parse::<usize>().expect("a peer")](&input, n.parse().expect("a count"));
        return;
    }
    println!(
        "{:28} {:>10} {:>10} {:>10}  Value/ours  qapi-rs/ours",
        "instructions per decode", PEERS[0], PEERS[1], PEERS[2]
    );
    for d in &decodes {
        let per: Vec<f64> = (0..PEERS.len())
            .map(|p| {
                (instructions(d.name, p, 11_000) - instructions(d.name, p, 1_000)) as f64 / 1e4
            })
            .collect();
        println!(
            "{:28} {:>10.0} {:>10.0} {:>10.0}  {:>10.2}  {:>12.2}",
            d.name,
            per[0],
            per[1],
            per[2],
            per[1] / per[0],
            per[2] / per[0]
        );
    }
}
