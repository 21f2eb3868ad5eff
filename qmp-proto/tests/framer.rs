//! Framer behaviour: splitting, classification, limits, recovery.

use qmp_proto::{Fixed, Heap, Storage};

/// A framer's receive buffer, named through the storage that holds it.
type HeapRx = <Heap as Storage>::Rx;
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

fn run<S: Storage>(limits: Limits, input: &[u8], chunk: usize) -> Vec<Seen> {
    let mut framer: Framer<S::Rx> = Framer::new(limits);
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
    run::<Heap>(Limits::default(), input, chunk)
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

#[test]
fn fixed_buffer_skips_the_schema_reply_but_keeps_its_id() {
    let rx = transcript("qmp-queries", "rx");
    let whole = heap(&rx, usize::MAX);
    for chunk in [1, 100, 4096] {
        let fixed = run::<Fixed<4096, 0, 0>>(Limits::default(), &rx, chunk);
        assert_eq!(fixed.len(), whole.len());
        for (f, h) in fixed.iter().zip(&whole) {
            match (f, h) {
                (Seen::Oversized(kind, id, size), Seen::Message(k, i, bytes)) => {
                    assert_eq!((kind, id, *size), (k, i, bytes.len()));
                    assert!(*size > 4096);
                }
                _ => assert_eq!(f, h),
            }
        }
        // query-machines (id 9), query-cpu-definitions (10) and
        // query-qmp-schema (12) exceed 4 KiB.
        let skipped: Vec<_> = fixed
            .iter()
            .filter_map(|f| match f {
                Seen::Oversized(_, IdValue::Number(n), _) => Some(*n),
                _ => None,
            })
            .collect();
        assert!(skipped.contains(&12), "{skipped:?}");
    }
}

#[test]
fn spans_point_at_top_level_values() {
    let input = br#"{"event": "STOP", "data": {"id": [1, {"return": 2}]}, "timestamp": {"seconds": 1, "microseconds": 2}, "x\"": 3, "id": 7}"#;
    let out = heap(input, usize::MAX);
    let Seen::Message(Kind::Event, IdValue::Number(7), bytes) = &out[0] else {
        panic!("{out:?}")
    };
    let mut framer: Framer<HeapRx> = Framer::new(Limits::default());
    let _ = framer.push(bytes);
    let Some(Frame::Message(m)) = framer.next() else {
        panic!()
    };
    assert_eq!(m.get(Key::Event).unwrap().as_str(), "\"STOP\"");
    assert_eq!(
        m.get(Key::Data).unwrap().as_str(),
        r#"{"id": [1, {"return": 2}]}"#
    );
    assert_eq!(
        m.get(Key::Timestamp)
            .unwrap()
            .get("microseconds")
            .unwrap()
            .as_u64(),
        Some(2)
    );
    assert!(
        m.get(Key::Return).is_none(),
        "nested keys are not top-level"
    );
    assert!(m.has_other_keys());
}

#[test]
fn syntax_errors_recover_at_the_next_line_or_sentinel() {
    let out = heap(
        b"{\"a\": tru e}\n{\"b\": 1}\xff{\"c\": \"\xff{\"d\": 2}",
        usize::MAX,
    );
    assert!(
        matches!(
            out[0],
            Seen::Error(FrameError::UnexpectedByte { byte: b'e' })
        ),
        "{out:?}"
    );
    assert!(
        matches!(&out[1], Seen::Message(Kind::Unknown, IdValue::Absent, b) if b == b"{\"b\": 1}")
    );
    assert_eq!(out[2], Seen::Sentinel);
    // A 0xFF inside a string is invalid, and the framer restarts at it.
    assert_eq!(out[3], Seen::Error(FrameError::InvalidUtf8));
    assert_eq!(out[4], Seen::Sentinel);
    assert!(matches!(&out[5], Seen::Message(_, _, b) if b == b"{\"d\": 2}"));
}

#[test]
fn pretty_printed_lf_only_and_unseparated_messages() {
    // As QEMU writes with `-mon ...,pretty=on`: one message over many lines.
    let pretty = b"{\n    \"return\": {\n        \"status\": \"running\",\n        \"running\": true\n    },\n    \"id\": 1\n}\n";
    let unseparated =
        b"{\"return\": {}, \"id\": 2}{\"event\": \"STOP\"}\t{\"return\": [], \"id\": 3}";
    let mut input = pretty.to_vec();
    input.extend_from_slice(unseparated);
    input.extend_from_slice(b"\n\n\r\n{\"return\": 4, \"id\": 4}\n");
    let whole = heap(&input, usize::MAX);
    let summary: Vec<(Kind, IdValue)> = whole
        .iter()
        .map(|s| match s {
            Seen::Message(kind, id, _) => (*kind, *id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Kind::Return, IdValue::Number(1)),
            (Kind::Return, IdValue::Number(2)),
            (Kind::Event, IdValue::Absent),
            (Kind::Return, IdValue::Number(3)),
            (Kind::Return, IdValue::Number(4)),
        ]
    );
    assert_eq!(
        whole[0],
        Seen::Message(
            Kind::Return,
            IdValue::Number(1),
            pretty[..pretty.len() - 1].to_vec()
        )
    );
    for chunk in [1, 2, 3, 5, 8, 13] {
        assert_eq!(heap(&input, chunk), whole);
    }
}
