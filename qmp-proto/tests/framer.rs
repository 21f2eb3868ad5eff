//! Framer behaviour: splitting, classification, limits, recovery.

use qmp_proto::buffer::{FixedBuf, VecBuf};
use qmp_proto::framer::{Frame, FrameError, Framer, IdValue, Key, Kind, Limits};

mod common;
use common::transcript;

/// What the framer produced, owned, so runs with different chunking compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Message(Kind, IdValue, Vec<u8>),
    Sentinel,
    Oversized(Kind, IdValue, usize),
    Error(FrameError),
}

fn run<B: qmp_proto::buffer::Buffer>(limits: Limits, input: &[u8], chunk: usize) -> Vec<Seen> {
    let mut framer: Framer<B> = Framer::new(limits);
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        let mut rest = piece;
        loop {
            let n = framer.push(rest);
            rest = &rest[n..];
            while let Some(frame) = framer.next() {
                out.push(match frame {
                    Frame::Message(m) => Seen::Message(m.kind(), m.id(), m.bytes().to_vec()),
                    Frame::Sentinel => Seen::Sentinel,
                    Frame::Oversized { kind, id, size } => Seen::Oversized(kind, id, size),
                    Frame::Error(e) => Seen::Error(e),
                });
            }
            if rest.is_empty() {
                break;
            }
        }
    }
    out
}

fn heap(input: &[u8], chunk: usize) -> Vec<Seen> {
    run::<VecBuf>(Limits::default(), input, chunk)
}

#[test]
fn transcripts_frame_identically_whole_and_split() {
    for name in [
        "qmp-queries",
        "qmp-stop-cont",
        "qmp-oob",
        "qmp-parse-error",
        "qga-sync",
        "qga-stale",
    ] {
        let rx = transcript(name, "rx");
        let whole = heap(&rx, usize::MAX);
        assert!(whole.len() >= 3, "{name}: {whole:?}");
        assert!(!whole.iter().any(|s| matches!(s, Seen::Error(_))), "{name}");
        for chunk in [1, 2, 7, 64, 4096] {
            assert_eq!(heap(&rx, chunk), whole, "{name} in chunks of {chunk}");
        }
    }
}

#[test]
fn queries_transcript_is_classified() {
    let out = heap(&transcript("qmp-queries", "rx"), usize::MAX);
    assert!(matches!(
        out[0],
        Seen::Message(Kind::Greeting, IdValue::Absent, _)
    ));
    let ids: Vec<u64> = out[1..]
        .iter()
        .map(|s| match s {
            Seen::Message(Kind::Return | Kind::Error, IdValue::Number(n), _) => *n,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, (0..=15).collect::<Vec<_>>());
}
