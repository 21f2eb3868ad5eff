//! Reading events: names compared without decoding when they have no escapes
//! and decoded when they do, timestamps in QEMU's spelling and any other, and
//! the server refusing bad event data before anything is queued.

use qmp_proto::{Client, ClientConfig, Heap, Output, Server, ServerConfig, Timestamp, UsageError};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n{\"return\": {}, \"id\": 0}\r\n";

fn ready() -> Client<Heap> {
    let mut client = Client::new(ClientConfig::default());
    let mut rest = GREETING;
    while !rest.is_empty() {
        let n = client.receive(rest).expect("greeting");
        rest = &rest[n..];
        while client.poll_output().is_some() {}
    }
    client
}

/// What the client makes of one event message: the name compared with
/// `names` (in order), and the timestamp.
fn read(message: &str, names: &[&str]) -> (Vec<bool>, Option<Timestamp>) {
    let mut client = ready();
    let line = format!("{message}\r\n");
    assert_eq!(client.receive(line.as_bytes()), Ok(line.len()));
    let mut seen = None;
    while let Some(output) = client.poll_output() {
        if let Output::Event(e) = output {
            let eq = names.iter().map(|n| e.name.eq_str(n)).collect();
            seen = Some((eq, e.timestamp));
        }
    }
    seen.unwrap_or_else(|| panic!("no event from {message}"))
}

#[test]
fn event_names_compare_by_their_decoded_characters() {
    let (eq, _) = read(
        r#"{"event": "STOP"}"#,
        &["STOP", "STO", "STOPS", "stop", ""],
    );
    assert_eq!(eq, [true, false, false, false, false]);
    // Escaped: equal to the decoded text, never to the escaped spelling.
    let (eq, _) = read(
        r#"{"event": "A\"B\u0043\n"}"#,
        &["A\"BC\n", r#"A\"B\u0043\n"#, "A\"BC", "A\"BC\nD"],
    );
    assert_eq!(eq, [true, false, false, false]);
    // A surrogate pair: 12 raw bytes decoding to one 4-byte character.
    let (eq, _) = read(r#"{"event": "\ud83d\ude00"}"#, &["😀", "\u{FFFD}"]);
    assert_eq!(eq, [true, false]);
}

#[test]
fn timestamps_are_read_whatever_the_member_order() {
    let both = Some(Timestamp {
        seconds: -1,
        microseconds: 42,
    });
    for message in [
        r#"{"event": "X", "timestamp": {"seconds": -1, "microseconds": 42}}"#,
        r#"{"timestamp": {"microseconds": 42, "seconds": -1}, "event": "X"}"#,
        r#"{"event": "X", "timestamp": {"other": [1, {"seconds": 5}], "microseconds": 42, "seconds": -1}}"#,
        // The first of a repeated key counts.
        r#"{"event": "X", "timestamp": {"seconds": -1, "seconds": 7, "microseconds": 42}}"#,
        r#"{"event": "X", "timestamp": {"seconds":-1,"microseconds":42}}"#,
        r#"{"event": "X", "timestamp": {"seconds": -1, "microseconds": 42, "x": {"y": 1}}}"#,
    ] {
        assert_eq!(read(message, &[]).1, both, "{message}");
    }
    // Integers to the edges of i64, in QEMU's member order (read without a
    // walk) and the other (read with one).
    let both_orders = |seconds: &str, microseconds: &str| {
        [
            format!(r#"{{"seconds": {seconds}, "microseconds": {microseconds}}}"#),
            format!(r#"{{"microseconds": {microseconds}, "seconds": {seconds}}}"#),
        ]
        .map(|t| format!(r#"{{"event": "X", "timestamp": {t}}}"#))
    };
    for (seconds, microseconds) in [
        ("9223372036854775807", "-9223372036854775808"),
        ("0", "-0"),
        ("1234567890123456789", "999999"),
    ] {
        let want = Some(Timestamp {
            seconds: seconds.parse().unwrap(),
            microseconds: microseconds.parse().unwrap(),
        });
        for message in both_orders(seconds, microseconds) {
            assert_eq!(read(&message, &[]).1, want, "{message}");
        }
    }
    for seconds in [
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "123456789012345678901",
        "01",
        "1e3",
    ] {
        for message in both_orders(seconds, "0") {
            assert_eq!(read(&message, &[]).1, None, "{message}");
        }
    }
    for message in [
        r#"{"event": "X"}"#,
        r#"{"event": "X", "timestamp": {"seconds": 1}}"#,
        r#"{"event": "X", "timestamp": {"seconds": 1, "microseconds": 1.5}}"#,
        r#"{"event": "X", "timestamp": {"seconds": "1", "microseconds": 1}}"#,
        // A bad first value is not replaced by a later good one.
        r#"{"event": "X", "timestamp": {"seconds": null, "seconds": 1, "microseconds": 1}}"#,
        r#"{"event": "X", "timestamp": [1, 2]}"#,
    ] {
        assert_eq!(read(message, &[]).1, None, "{message}");
    }
}

#[test]
fn send_event_refuses_bad_data_and_queues_nothing() {
    let mut server = Server::<Heap>::new(ServerConfig::default());
    let ts = Timestamp {
        seconds: 1,
        microseconds: 2,
    };
    let before = server.pending_transmit().to_vec();
    assert_eq!(
        server.send_event("X", Some("[1]"), ts),
        Err(UsageError::ArgumentsNotAnObject)
    );
    for bad in ["{\"a\": }", "{\"a\": 1} {}", "{\"a\": 1", "{} trailing"] {
        assert!(
            matches!(
                server.send_event("X", Some(bad), ts),
                Err(UsageError::InvalidArguments(_))
            ),
            "{bad}"
        );
    }
    // The data sits one level below the message: 1023 levels fit, 1024 not.
    let deep = |levels: usize| "{\"a\": ".repeat(levels - 1) + "{}" + &"}".repeat(levels - 1);
    assert!(matches!(
        server.send_event("X", Some(&deep(1024)), ts),
        Err(UsageError::InvalidArguments(_))
    ));
    assert_eq!(server.pending_transmit(), &before[..], "nothing queued");
    server
        .send_event("X\"Y", Some(&deep(1023)), ts)
        .expect("1023 levels of data");
    // What was queued (after the greeting) reads back as one event.
    let sent = String::from_utf8(server.pending_transmit().to_vec()).expect("UTF-8");
    let event = sent.lines().last().expect("the event's line");
    assert!(event.starts_with("{\"timestamp\""), "{event}");
    let (eq, read_ts) = read(event, &["X\"Y"]);
    assert_eq!((eq, read_ts), (vec![true], Some(ts)));
    // Names are escaped to ASCII: controls, quotes, DEL and every non-ASCII
    // character (a surrogate pair beyond the BMP).
    let name = "a\u{1}\"\\\u{7f} é€😀z";
    server.send_event(name, None, ts).expect("any name");
    let sent = String::from_utf8(server.pending_transmit().to_vec()).expect("UTF-8");
    let event = sent.lines().last().expect("the event's line");
    assert!(event.is_ascii(), "{event}");
    assert!(
        event.contains(r#""a\u0001\u0022\u005c\u007f \u00e9\u20ac\ud83d\ude00z""#),
        "{event}"
    );
    assert_eq!(read(event, &[name]).0, [true]);
}
