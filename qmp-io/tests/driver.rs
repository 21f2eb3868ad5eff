//! The drivers against a mock QEMU and against hostile servers: handshake
//! timeouts, disconnects, broken peers. (The adapters' suites cover the real
//! QEMU.)

use core::time::Duration;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use qmp_io::blocking::{Client, GuestAgent};
use qmp_io::mock::MockQemu;
use qmp_io::{Call, Config, Disconnect, Error, HandshakeStep};

fn connect(mock: &MockQemu, config: Config) -> Result<Client, Error> {
    Client::connect(UnixStream::connect(mock.path()).unwrap(), config)
}

/// A listener on a private path, and the path.
fn listener(name: &str) -> (UnixListener, std::path::PathBuf, TempDir) {
    let dir = TempDir::new(name);
    let path = dir.0.join("s.sock");
    (UnixListener::bind(&path).unwrap(), path, dir)
}

/// Accepts a client on `listener` and plays QEMU's handshake (greeting,
/// then the answer to `qmp_capabilities`).
fn accept_and_negotiate(listener: &UnixListener) -> UnixStream {
    let (mut s, _) = listener.accept().unwrap();
    s.write_all(
        b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 9}, \"package\": \"\"}, \"capabilities\": []}}\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("qmp_capabilities"));
    s.write_all(b"{\"return\": {}, \"id\": 0}\r\n").unwrap();
    s
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("qmp-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn connect_times_out_without_a_greeting() {
    let mock = MockQemu::builder().greeting(false).start().unwrap();
    let start = Instant::now();
    let err = connect(
        &mock,
        Config::default().connect_timeout(Duration::from_millis(200)),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disconnected(Disconnect::HandshakeTimeout {
                step: HandshakeStep::Greeting,
                timeout
            }) if timeout == Duration::from_millis(200)
        ),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_second_client_on_a_busy_socket_times_out() {
    let mock = MockQemu::start().unwrap();
    let first = connect(&mock, Config::default()).unwrap();
    let err = connect(
        &mock,
        Config::default().connect_timeout(Duration::from_millis(300)),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disconnected(Disconnect::HandshakeTimeout {
                step: HandshakeStep::Greeting,
                timeout
            }) if timeout == Duration::from_millis(300)
        ),
        "{err:?}"
    );
    // The first connection is unaffected.
    assert!(first.execute_raw("query-status", ()).is_ok());
}

#[test]
fn timed_out_call_leaves_the_connection_usable_and_drops_the_late_reply() {
    let mock = MockQemu::start().unwrap();
    let qmp = connect(&mock, Config::default()).unwrap();
    mock.on_return("query-name", r#"{"name": "late"}"#);
    mock.hold_replies(true);
    let err = qmp
        .call(Call::new("query-name").timeout(Some(Duration::from_millis(100))))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    mock.on_return("query-uuid", r#"{"UUID": "on-time"}"#);
    // Released now: the late query-name reply arrives before query-uuid's.
    mock.hold_replies(false);
    let uuid = qmp.execute_raw("query-uuid", ()).unwrap();
    assert_eq!(uuid.as_str(), r#"{"UUID": "on-time"}"#);
}

#[test]
fn disconnect_fails_pending_calls_and_later_calls_at_once() {
    let mock = MockQemu::start().unwrap();
    let qmp = connect(&mock, Config::default().timeout(None)).unwrap();
    let events = qmp.events();
    mock.hold_replies(true);
    let pending: Vec<_> = (0..5)
        .map(|_| {
            let qmp = qmp.clone();
            std::thread::spawn(move || qmp.execute_raw("query-status", ()))
        })
        .collect();
    while mock.received().len() < 5 {
        std::thread::sleep(Duration::from_millis(5));
    }
    mock.disconnect();
    for p in pending {
        let err = p.join().unwrap().unwrap_err();
        assert!(err.is_disconnected(), "{err:?}");
    }
    assert!(matches!(
        qmp.wait_closed(Some(Duration::from_secs(5))),
        Some(Disconnect::Eof { .. })
    ));
    assert!(
        qmp.execute_raw("query-status", ())
            .unwrap_err()
            .is_disconnected()
    );
    assert!(events.recv().is_none(), "subscribers see the end");
}

#[test]
fn dropping_every_handle_closes_the_connection() {
    let mock = MockQemu::start().unwrap();
    let qmp = connect(&mock, Config::default()).unwrap();
    assert!(mock.wait_negotiated(Duration::from_secs(5)));
    let clone = qmp.clone();
    drop(qmp);
    assert!(clone.execute_raw("query-status", ()).is_ok());
    drop(clone);
    // The mock takes the next client only once the first one is gone.
    let again = connect(
        &mock,
        Config::default().connect_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    assert!(again.execute_raw("query-status", ()).is_ok());
}

/// A server that negotiates, reads one command, answers it with `reply`,
/// then keeps the connection open for `linger`; and a client connected to it.
fn answering_once(
    name: &str,
    reply: &'static [u8],
    linger: Duration,
) -> (Client, std::thread::JoinHandle<()>, TempDir) {
    let (listener, path, dir) = listener(name);
    let server = std::thread::spawn(move || {
        let mut s = accept_and_negotiate(&listener);
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(reply).unwrap();
        std::thread::sleep(linger);
    });
    let qmp = Client::connect(UnixStream::connect(&path).unwrap(), Config::default()).unwrap();
    (qmp, server, dir)
}

/// A server that greets, then sends garbage: every call fails with a
/// protocol error, nothing hangs.
#[test]
fn a_broken_server_fails_calls_with_a_protocol_error() {
    // A reply that is not JSON at all, then silence.
    let (qmp, server, _dir) =
        answering_once("broken", b"{\"return\": \x01}\r\n", Duration::from_secs(2));
    let err = qmp.execute_raw("query-status", ()).unwrap_err();
    assert!(
        matches!(err, Error::Disconnected(Disconnect::Protocol(_))),
        "{err:?}"
    );
    server.join().unwrap();
}

/// A server that dies half way through a reply: the waiting call learns the
/// connection ended in the middle of a message.
#[test]
fn eof_in_the_middle_of_a_reply_says_so() {
    let reply = b"{\"return\": {\"status\": \"runn";
    let (qmp, server, _dir) = answering_once("truncated", reply, Duration::ZERO);
    let err = qmp.execute_raw("query-status", ()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disconnected(Disconnect::Eof { mid_message: true })
        ),
        "{err:?}"
    );
    assert!(matches!(
        qmp.wait_closed(Some(Duration::from_secs(5))),
        Some(Disconnect::Eof { mid_message: true })
    ));
    server.join().unwrap();
}

/// A server whose reply never ends: the size cap turns it into an error for
/// that call, with bounded memory, and the connection goes on.
#[test]
fn an_oversized_reply_fails_only_its_call() {
    let mock = MockQemu::start().unwrap();
    let big = format!("\"{}\"", "x".repeat(2 << 20));
    mock.on_return("query-big", &big);
    let mut config = Config::default();
    config.limits.receive.max_message_size = 1 << 20;
    let qmp = connect(&mock, config).unwrap();
    let err = qmp.execute_raw("query-big", ()).unwrap_err();
    assert!(
        matches!(err, Error::ReplyTooLarge { size, limit: 1_048_576 } if size > 2 << 20),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the reply ({} bytes) is larger than the size limit (1048576 bytes); it was skipped",
            big.len() + "{\"return\": , \"id\": 1}".len()
        )
    );
    assert!(qmp.execute_raw("query-status", ()).is_ok());
}

#[test]
fn fds_on_a_tcp_stream_are_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mock = MockQemu::start().unwrap();
    let mock_path = mock.path().to_owned();
    // Relay tcp <-> the mock's unix socket, so the client runs over tcp.
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let unix = UnixStream::connect(mock_path).unwrap();
        let (mut t2, mut u2) = (tcp.try_clone().unwrap(), unix.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut t2, &mut u2));
        let (mut t, mut u) = (tcp, unix);
        let _ = std::io::copy(&mut u, &mut t);
    });
    let qmp = Client::connect(
        std::net::TcpStream::connect(addr).unwrap(),
        Config::default(),
    )
    .unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsFd;
    let err = qmp.send_fd("x", file.as_fd()).unwrap_err();
    assert!(matches!(err, Error::FdPassingUnsupported), "{err:?}");
    assert!(qmp.execute_raw("query-status", ()).is_ok());
}

/// A server that greets but never answers `qmp_capabilities`: the timeout
/// names that step, with the configured duration.
#[test]
fn a_server_that_never_answers_qmp_capabilities_times_out_naming_it() {
    let (listener, path, _dir) = listener("no-caps");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 10}, \"package\": \"\"}, \"capabilities\": []}}\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    let timeout = Duration::from_millis(300);
    let err = Client::connect(
        UnixStream::connect(&path).unwrap(),
        Config::default().connect_timeout(timeout),
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Disconnected(Disconnect::HandshakeTimeout {
                step: HandshakeStep::Capabilities,
                timeout: t,
            }) if *t == timeout
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no reply to qmp_capabilities"),
        "{err}"
    );
    server.join().unwrap();
}

/// A hostile guest agent that never syncs: connect times out.
#[test]
fn a_guest_agent_that_never_syncs_times_out() {
    let (listener, path, _dir) = listener("qga-silent");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // Stale garbage and a wrong sync reply, never the right one.
        s.write_all(b"\xff{\"return\": 1}\n{\"return\": {}}\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    let err = GuestAgent::connect(
        UnixStream::connect(&path).unwrap(),
        Config::default().connect_timeout(Duration::from_millis(300)),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Disconnected(Disconnect::HandshakeTimeout {
                step: HandshakeStep::GuestSync,
                ..
            })
        ),
        "{err:?}"
    );
    server.join().unwrap();
}

/// The blocking client reads in the calling thread while a call waits; with
/// no call waiting, its background thread still delivers events and notices
/// the end of the connection.
#[test]
fn events_and_the_end_arrive_with_no_call_waiting() {
    let mock = MockQemu::start().unwrap();
    let qmp = connect(&mock, Config::default()).unwrap();
    let events = qmp.events();
    mock.emit_event("BEFORE", None).unwrap();
    let e = events
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert_eq!(e.name(), "BEFORE");
    // A call reads in this thread, then gives the socket back.
    assert!(qmp.execute_raw("query-status", ()).is_ok());
    mock.emit_event("AFTER", Some(r#"{"n": 1}"#)).unwrap();
    let e = events
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert_eq!(e.name(), "AFTER");
    mock.disconnect();
    assert!(matches!(
        qmp.wait_closed(Some(Duration::from_secs(5))),
        Some(Disconnect::Eof { .. })
    ));
    assert!(events.recv().is_none());
}

/// Big events fill a subscriber's byte budget before its length: the oldest
/// are dropped and counted, the newest kept, a reading subscriber gets all.
#[test]
fn a_slow_subscriber_holds_at_most_its_bytes_of_events() {
    const BIG: usize = 100_000;
    let mock = MockQemu::start().unwrap();
    let config = Config::default().event_bytes(3 * BIG + 3 * 64);
    let qmp = connect(&mock, config).unwrap();
    let (slow, reading) = (qmp.events(), qmp.events());
    for n in 0..10 {
        let data = format!("{{\"n\": {n}, \"pad\": \"{}\"}}", "x".repeat(BIG));
        mock.emit_event("BIG", Some(&data)).unwrap();
        let got = reading.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got.unwrap().name(), "BIG");
    }
    let kept: Vec<_> = core::iter::from_fn(|| slow.try_recv()).collect();
    assert_eq!(kept.len(), 4, "{:?}", kept.first());
    assert!(
        matches!(kept[0], Err(qmp_io::Gap::Lagged(7))),
        "{:?}",
        kept[0]
    );
    for (n, event) in (7..10).zip(&kept[1..]) {
        let data: serde_json::Value = event.as_ref().unwrap().decode().unwrap();
        assert_eq!(data["n"], n);
    }
}

/// One event bigger than the whole budget is still delivered, alone.
#[test]
fn an_event_bigger_than_the_budget_is_kept_alone() {
    let mock = MockQemu::start().unwrap();
    let qmp = connect(&mock, Config::default().event_bytes(1_000)).unwrap();
    let slow = qmp.events();
    mock.emit_event("SMALL", None).unwrap();
    let data = format!("{{\"pad\": \"{}\"}}", "x".repeat(10_000));
    mock.emit_event("HUGE", Some(&data)).unwrap();
    // A call reads the socket in this thread: both events are in by its reply.
    assert!(qmp.execute_raw("query-status", ()).is_ok());
    assert!(matches!(slow.try_recv(), Some(Err(qmp_io::Gap::Lagged(1)))));
    assert_eq!(slow.try_recv().unwrap().unwrap().name(), "HUGE");
    assert!(slow.try_recv().is_none());
}

/// An owned event keeps its (unescaped) name, its data and its timestamp,
/// with or without data; every subscriber gets an equal one.
#[test]
fn events_keep_name_data_and_timestamp_for_every_subscriber() {
    let mock = MockQemu::start().unwrap();
    let qmp = connect(&mock, Config::default()).unwrap();
    let (first, second) = (qmp.events(), qmp.events());
    let name = "DEV\"ICE_é";
    mock.emit_event(name, Some(r#"{"device": "d\u00e9v", "n": [1, 2]}"#))
        .unwrap();
    mock.emit_event("BARE", None).unwrap();
    let recv = |s: &qmp_io::Subscription| {
        s.recv_timeout(Duration::from_secs(5))
            .expect("an event")
            .expect("none lost")
    };
    let (a, b) = (recv(&first), recv(&second));
    assert_eq!(a, b);
    assert_eq!(a.name(), name);
    assert_eq!(
        a.data().map(|d| d.as_str()),
        Some(r#"{"device": "d\u00e9v", "n": [1, 2]}"#)
    );
    let data: serde_json::Value = a.decode().unwrap();
    assert_eq!(data["device"], "dév");
    assert!(a.timestamp().is_some_and(|t| t.seconds > 0));
    let debug = format!("{a:?}");
    assert!(debug.contains(r#"name: "DEV\"ICE_é""#), "{debug}");
    let bare = recv(&first);
    assert_eq!(bare, recv(&second));
    assert_eq!((bare.name(), bare.data()), ("BARE", None));
    assert_eq!(
        bare.decode::<serde_json::Value>().unwrap(),
        serde_json::Value::Null
    );
    assert_ne!(a, bare);
}

/// The thread reading for everyone times out: another waiting caller takes
/// over the reading and still gets its own reply, as do all the others.
#[test]
fn a_reading_caller_that_times_out_hands_over_to_the_others() {
    let mock = MockQemu::start().unwrap();
    let qmp = connect(&mock, Config::default().timeout(None)).unwrap();
    for i in 0..8 {
        mock.on_return(&format!("cmd-{i}"), &format!("{i}"));
    }
    mock.hold_replies(true);
    let short = {
        let qmp = qmp.clone();
        std::thread::spawn(move || {
            qmp.call(Call::new("query-status").timeout(Some(Duration::from_millis(300))))
        })
    };
    assert!(
        mock.wait_for_command("query-status", Duration::from_secs(5))
            .is_some()
    );
    let waiting: Vec<_> = (0..8)
        .map(|i| {
            let qmp = qmp.clone();
            std::thread::spawn(move || qmp.execute_raw(&format!("cmd-{i}"), ()))
        })
        .collect();
    for i in 0..8 {
        assert!(
            mock.wait_for_command(&format!("cmd-{i}"), Duration::from_secs(5))
                .is_some()
        );
    }
    let err = short.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    mock.hold_replies(false);
    for (i, w) in waiting.into_iter().enumerate() {
        assert_eq!(w.join().unwrap().unwrap().as_str(), i.to_string());
    }
    assert!(qmp.execute_raw("query-status", ()).is_ok());
}

/// A server that stops reading: a command too big for the socket buffer
/// times out at the call's own deadline instead of blocking the caller in
/// its write, and so does the next call.
/// A server that negotiates, then reads nothing until stopped.
struct Deaf {
    path: std::path::PathBuf,
    stop: std::sync::mpsc::Sender<()>,
    server: std::thread::JoinHandle<()>,
    _dir: TempDir,
}

impl Deaf {
    fn start(name: &str) -> Self {
        let (listener, path, dir) = listener(name);
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let _s = accept_and_negotiate(&listener);
            let _ = stop_rx.recv();
        });
        Deaf {
            path,
            stop,
            server,
            _dir: dir,
        }
    }

    fn connect(&self) -> Client {
        Client::connect(UnixStream::connect(&self.path).unwrap(), Config::default()).unwrap()
    }

    fn stop(self) {
        drop(self.stop);
        self.server.join().unwrap();
    }
}

/// `call` with a 300 ms timeout times out, well before 5 s.
fn times_out_promptly(qmp: &Client, call: Call) {
    let start = Instant::now();
    let err = qmp
        .call(call.timeout(Some(Duration::from_millis(300))))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_write_to_a_server_that_stopped_reading_times_out() {
    let deaf = Deaf::start("deaf");
    let qmp = deaf.connect();
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(16 << 20));
    let file = std::fs::File::open("/dev/null").unwrap();
    // The first carries an fd, so its bytes go with one sendmsg per chunk:
    // that is bounded by the deadline too.
    let with_fd = Call::new("getfd")
        .arguments_text(huge.clone())
        .fd(std::os::fd::AsFd::as_fd(&file))
        .unwrap();
    for call in [
        with_fd,
        Call::new("huge").arguments_text(huge),
        Call::new("query-status"),
    ] {
        times_out_promptly(&qmp, call);
    }
    deaf.stop();
}

#[test]
fn a_call_behind_a_write_with_no_deadline_keeps_its_own() {
    let deaf = Deaf::start("stuck");
    let qmp = deaf.connect();
    // A call with no timeout whose 16 MiB the server never reads: it waits
    // for room in the socket for as long as the connection lasts.
    let stuck = {
        let qmp = qmp.clone();
        std::thread::spawn(move || {
            let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(16 << 20));
            qmp.call(Call::new("huge").arguments_text(huge).timeout(None))
        })
    };
    // Wait until its bytes filled the socket (the session queue is empty
    // once the writer took them).
    std::thread::sleep(Duration::from_millis(200));
    assert!(!stuck.is_finished(), "the stuck call returned early");
    for _ in 0..2 {
        times_out_promptly(&qmp, Call::new("query-status"));
    }
    // Closing ends the stuck write too.
    qmp.close();
    let err = stuck.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err:?}");
    deaf.stop();
}

#[test]
fn an_oob_reply_overtakes_a_held_one() {
    let mock = MockQemu::start().unwrap();
    mock.on_return("slow", "1");
    mock.on_return("migrate-pause", "{}");
    let qmp = connect(&mock, Config::default()).unwrap();
    mock.hold_replies(true);
    let slow = {
        let qmp = qmp.clone();
        std::thread::spawn(move || qmp.execute_raw("slow", ()))
    };
    assert!(
        mock.wait_for_command("slow", Duration::from_secs(5))
            .is_some()
    );
    let paused = qmp.execute_raw_oob("migrate-pause", ()).unwrap();
    assert_eq!(paused.as_str(), "{}");
    assert!(!slow.is_finished(), "the held call was answered early");
    mock.hold_replies(false);
    assert_eq!(slow.join().unwrap().unwrap().as_str(), "1");
}

#[test]
fn bytes_waiting_for_a_server_that_stopped_reading_stay_within_the_transmit_limit() {
    let deaf = Deaf::start("bounded");
    let mut config = Config::default();
    config.limits.max_transmit = 1 << 20;
    let qmp = Client::connect(UnixStream::connect(&deaf.path).unwrap(), config).unwrap();
    let args = format!("{{\"pad\": \"{}\"}}", "x".repeat(256 << 10));
    // Each call times out with its bytes unwritten; once the core holds the
    // limit's worth, the next is refused before it is queued.
    let refused = (0..16).find_map(|_| {
        let call = Call::new("big")
            .arguments_text(args.clone())
            .timeout(Some(Duration::from_millis(50)));
        match qmp.call(call) {
            Err(Error::Timeout(_)) => None,
            other => Some(other),
        }
    });
    assert!(
        matches!(
            refused,
            Some(Err(Error::Usage(qmp_io::UsageError::TransmitFull)))
        ),
        "{refused:?}"
    );
    deaf.stop();
}

/// A listener whose queue of pending connections is full: a plain blocking
/// connect would wait for ever; `unix::connect_blocking` gives up at its
/// timeout, and gets through once the listener accepts one.
#[test]
fn connecting_to_a_full_listener_times_out_then_gets_through() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let dir = TempDir::new("full");
    let path = dir.0.join("full.sock");
    let addr = SocketAddrUnix::new(&path).unwrap();
    let listener = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::bind(&listener, &addr).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    // Fill the queue with connections nobody accepts.
    let mut pending = Vec::new();
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    loop {
        let s =
            rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None).unwrap();
        match rustix::net::connect(&s, &addr) {
            Ok(()) => pending.push(s),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("filling the queue: {e}"),
        }
        assert!(pending.len() < 64, "the queue never filled");
    }
    let start = Instant::now();
    let err = qmp_io::unix::connect_blocking(&path, Duration::from_millis(300)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // Accepting one makes room: a connect that is still trying gets in.
    let accepter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let accepted = rustix::net::accept(&listener).unwrap();
        (listener, accepted)
    });
    let stream = qmp_io::unix::connect_blocking(&path, Duration::from_secs(10)).unwrap();
    drop(accepter.join().unwrap());
    let flags = rustix::fs::fcntl_getfl(&stream).unwrap();
    assert!(
        !flags.contains(rustix::fs::OFlags::NONBLOCK),
        "the stream is left nonblocking"
    );
}

/// A server that answers `qmp_capabilities` without echoing its id: the
/// id-less reply is the answer (nothing else is in flight), so connecting
/// finishes at once instead of at the connect timeout, and an id-less error
/// fails it at once, naming the negotiation.
#[test]
fn an_idless_answer_to_qmp_capabilities_ends_the_handshake_at_once() {
    for (answer, ok) in [
        (&b"{\"return\": {}}\r\n"[..], true),
        (
            &b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n"[..],
            false,
        ),
    ] {
        let (listener, path, _dir) = listener("idless-caps");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 10}, \"package\": \"\"}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).contains("qmp_capabilities"));
            s.write_all(answer).unwrap();
            while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
        });
        let start = Instant::now();
        let result = Client::connect(
            UnixStream::connect(&path).unwrap(),
            Config::default().connect_timeout(Duration::from_secs(30)),
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        match result {
            Ok(qmp) => {
                assert!(ok);
                qmp.close();
            }
            Err(err) => {
                assert!(!ok, "{err:?}");
                assert!(
                    matches!(
                        err,
                        Error::Disconnected(Disconnect::Protocol(
                            qmp_proto::ProtocolError::NegotiationFailed
                        ))
                    ),
                    "{err:?}"
                );
            }
        }
        server.join().unwrap();
    }
}

/// A QMP error reply is data: its class is the core's, owned, and matches
/// by variant; a class this crate does not know is kept by name.
#[test]
fn command_errors_carry_their_class() {
    let mock = MockQemu::start().unwrap();
    let qmp = connect(&mock, Config::default()).unwrap();
    mock.on_error("device_del", "DeviceNotFound", "Device 'x' not found");
    mock.on_error("query-new", "NewInQemu42", "no");
    let err = qmp.execute_raw("device_del", ()).unwrap_err();
    let e = err.command_error().unwrap();
    assert_eq!(e.class, qmp_io::ErrorClass::DeviceNotFound);
    assert_eq!(e.to_string(), "DeviceNotFound: Device 'x' not found");
    let err = qmp.execute_raw("query-new", ()).unwrap_err();
    let e = err.command_error().unwrap();
    assert_eq!(e.class, qmp_io::ErrorClass::Other("NewInQemu42".to_owned()));
    assert_eq!(e.class.as_str(), "NewInQemu42");
}
