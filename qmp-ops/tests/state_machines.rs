//! The operations as the state machines they are, stepped by hand: the
//! paths a real QEMU takes rarely or never on demand (a guest that refuses
//! an unplug, an undo that fails, an answer that is lost).

use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use qmp_io::{Call, CommandError, ErrorClass, Event, Json};
use qmp_ops::device::DeviceDel;
use qmp_ops::sequence::{Action, Sequence};
use qmp_ops::{Cause, Input, Operation, Step};

fn ok() -> Input {
    Input::Reply(Ok(Json::parse("{}".into()).unwrap()))
}

fn refused(desc: &str) -> Input {
    Input::Reply(Err(qmp_io::Error::Command(CommandError {
        class: ErrorClass::GenericError,
        desc: desc.into(),
    })))
}

fn sent<T: core::fmt::Debug>(step: Step<T>) -> String {
    match step {
        Step::Send { call, .. } => call.name().to_owned(),
        other => panic!("expected a command, got {other:?}"),
    }
}

fn failed<T: core::fmt::Debug>(step: Step<T>) -> qmp_ops::OpError {
    match step {
        Step::Done(Err(e)) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn three_steps() -> Sequence {
    Sequence::new(
        "add",
        vec![
            Action::new(Call::new("a"), "A").undo(Call::new("undo-a")),
            Action::new(Call::new("b"), "B"),
            Action::new(Call::new("c"), "C").undo(Call::new("undo-c")),
            Action::new(Call::new("d"), "D"),
        ],
    )
}

#[test]
fn a_failed_step_undoes_the_earlier_ones_newest_first() {
    let now = Instant::now();
    let mut seq = three_steps();
    assert_eq!(sent(seq.step(Input::Start, now)), "a");
    assert_eq!(sent(seq.step(ok(), now)), "b");
    assert_eq!(sent(seq.step(ok(), now)), "c");
    assert_eq!(sent(seq.step(ok(), now)), "d");
    assert_eq!(sent(seq.step(refused("no"), now)), "undo-c");
    // The undo of C fails; A is still undone, and the error says both.
    assert_eq!(sent(seq.step(refused("busy"), now)), "undo-a");
    let e = failed(seq.step(ok(), now));
    assert_eq!(e.step, "sending d");
    assert_eq!(
        e.left,
        "C remains (undoing it failed: command failed: GenericError: busy); B remains (no undo); A undone"
    );
}

#[test]
fn a_step_whose_answer_is_lost_is_undone_too() {
    let now = Instant::now();
    let mut seq = three_steps();
    assert_eq!(sent(seq.step(Input::Start, now)), "a");
    let lost = Input::Reply(Err(qmp_io::Error::Timeout(Duration::from_secs(1))));
    assert_eq!(sent(seq.step(lost, now)), "undo-a");
    let e = failed(seq.step(ok(), now));
    assert!(e.is_deadline());
    assert_eq!(e.left, "the failed step may have run; A undone");
}

#[test]
fn a_refused_first_step_changes_nothing() {
    let now = Instant::now();
    let mut seq = three_steps();
    sent(seq.step(Input::Start, now));
    let e = failed(seq.step(refused("no"), now));
    assert_eq!(e.left, "nothing changed");
}

fn event(name: &str, data: &str) -> Arc<Event> {
    Arc::new(Event::new(
        name,
        Some(Json::parse(data.into()).unwrap()),
        None,
    ))
}

#[test]
fn an_unplug_the_guest_refuses_fails_with_its_event() {
    let now = Instant::now();
    let mut del = DeviceDel::new("nic1", Duration::from_secs(5));
    match del.step(Input::Start, now) {
        Step::Send {
            call,
            watch: Some(wants),
        } => {
            assert_eq!(call.name(), "device_del");
            let ours = event("DEVICE_DELETED", r#"{"device": "nic1", "path": "/p"}"#);
            let other = event("DEVICE_DELETED", r#"{"device": "nic2", "path": "/q"}"#);
            assert!(wants[0].matches(&ours) && !wants[0].matches(&other));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(del.step(ok(), now), Step::Wait { .. }));
    let refusal = event(
        "DEVICE_UNPLUG_GUEST_ERROR",
        r#"{"device": "nic1", "path": "/p"}"#,
    );
    let e = failed(del.step(Input::Event(1, refusal), now));
    assert!(matches!(e.cause, Cause::Event(_)), "{e}");
    assert_eq!(
        e.left,
        "device nic1 is still present: the guest refused to release it"
    );
}

#[test]
fn lost_events_are_reported_not_waited_out() {
    let now = Instant::now();
    let mut del = DeviceDel::new("usb1", Duration::from_secs(5));
    sent(del.step(Input::Start, now));
    assert!(matches!(del.step(ok(), now), Step::Wait { .. }));
    let e = failed(del.step(Input::Lagged(3), now));
    assert!(matches!(e.cause, Cause::Lagged(3)));
    assert_eq!(
        e.left,
        "unplug of device usb1 requested; whether it is gone is not known"
    );
}

#[test]
fn a_failed_freeze_is_thawed_again() {
    use qmp_ops::guest::{DEFAULT_FREEZE_TIMEOUT, Fsfreeze};
    let now = Instant::now();
    let mut freeze = Fsfreeze::freeze();
    // The freeze goes out with its own long timeout, not the client's.
    match freeze.step(Input::Start, now) {
        Step::Send { call, .. } => assert_eq!(call.name(), "guest-fsfreeze-freeze"),
        other => panic!("{other:?}"),
    }
    let lost = Input::Reply(Err(qmp_io::Error::Timeout(DEFAULT_FREEZE_TIMEOUT)));
    assert_eq!(sent(freeze.step(lost, now)), "guest-fsfreeze-thaw");
    let e = failed(freeze.step(ok(), now));
    assert!(e.is_deadline(), "{e}");
    assert_eq!(e.left, "file systems thawed again");

    let mut freeze = Fsfreeze::freeze();
    sent(freeze.step(Input::Start, now));
    sent(freeze.step(refused("frozen already"), now));
    let e = failed(freeze.step(refused("no"), now));
    assert!(
        e.left
            .starts_with("file systems may be frozen (thaw failed"),
        "{e}"
    );
}
