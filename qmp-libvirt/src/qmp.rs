//! The QMP side of the libvirt clients: a [`Call`] as the command text libvirt
//! carries, libvirt's reply text as a [`qmp_io::Result`], monitor events as
//! [`Event`]s, and libvirt's errors as [`qmp_io::Error`]s.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use std::io;

use qmp_io::{Call, CommandError, Disconnect, ErrorClass, Event, Json, Timestamp, UsageError};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Error, UsageError as LibvirtUsage};
use crate::wire::MonitorEvent;

/// The transport's name in "not supported over ..." errors.
pub(crate) const TRANSPORT: &str = "libvirt";

/// The command text for `DOMAIN_MONITOR_COMMAND`: `{"execute": NAME,
/// "arguments": {...}}` without an `id` (libvirt adds its own and refuses
/// ours). What libvirt cannot carry is refused before anything is sent.
pub(crate) fn command_text(call: &Call) -> qmp_io::Result<String> {
    let unsupported = |feature| qmp_io::Error::Unsupported {
        feature,
        transport: TRANSPORT,
    };
    if call.is_oob() {
        return Err(unsupported("exec-oob"));
    }
    if call.fd_count() > 0 {
        return Err(unsupported("passing file descriptors"));
    }
    let name = call.name();
    if name.starts_with("guest-") {
        // libvirt reaches QEMU's monitor here, not the guest agent.
        return Err(unsupported("a guest agent command"));
    }
    let valid = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(UsageError::InvalidCommandName.into());
    }
    Ok(match call.arguments_json()? {
        None => format!(r#"{{"execute":"{name}"}}"#),
        Some(text) => {
            let object = serde_json::from_str::<&RawValue>(text)
                .ok()
                .filter(|raw| raw.get().starts_with('{'))
                .ok_or(UsageError::ArgumentsNotAnObject)?;
            format!(r#"{{"execute":"{name}","arguments":{}}}"#, object.get())
        }
    })
}

#[derive(Deserialize)]
struct ReplyText<'a> {
    #[serde(rename = "return", borrow, default)]
    ret: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorText>,
}

#[derive(Deserialize)]
struct ErrorText {
    class: String,
    desc: String,
}

/// QEMU's reply as libvirt passed it on: the `return` value, or the QMP
/// error as [`qmp_io::Error::Command`], like a socket client's.
pub(crate) fn reply(text: &str) -> qmp_io::Result<Json> {
    let decode = |e| qmp_io::Error::Decode(Arc::new(e));
    let reply: ReplyText<'_> = serde_json::from_str(text).map_err(decode)?;
    match (reply.error, reply.ret) {
        (Some(e), _) => Err(qmp_io::Error::Command(CommandError {
            class: ErrorClass::from_name(e.class),
            desc: e.desc,
        })),
        (None, Some(ret)) => Json::parse(ret.get().to_string()).map_err(decode),
        (None, None) => Err(decode(serde::de::Error::custom(
            "libvirt's monitor reply has neither \"return\" nor \"error\"",
        ))),
    }
}

/// The text of a monitor command's reply.
pub(crate) fn monitor_text(r: crate::conn::Reply) -> qmp_io::Result<String> {
    match r {
        crate::conn::Reply::Monitor(text) => Ok(text),
        _ => Err(unexpected()),
    }
}

/// The callback id of an event registration's reply.
pub(crate) fn callback_id(r: crate::conn::Reply) -> qmp_io::Result<i32> {
    match r {
        crate::conn::Reply::EventRegistered { callback_id } => Ok(callback_id),
        _ => Err(unexpected()),
    }
}

/// Remembers a domain's new event registration, forgetting dropped ones.
pub(crate) fn remember<T>(
    domains: &mut alloc::collections::BTreeMap<crate::wire::Uuid, alloc::sync::Weak<T>>,
    uuid: crate::wire::Uuid,
    events: &Arc<T>,
) {
    domains.retain(|_, r| r.strong_count() > 0);
    domains.insert(uuid, Arc::downgrade(events));
}

/// libvirtd answered a call with another kind of result.
pub(crate) fn unexpected() -> qmp_io::Error {
    qmp_io::Error::Transport(Arc::new(Error::Protocol(
        crate::error::ProtocolError::UnexpectedReply,
    )))
}

/// A monitor event as the subscription API's [`Event`]. Data that is not
/// JSON (libvirt checks it; a hostile daemon might not) is dropped, the
/// event kept.
pub(crate) fn event_of(e: MonitorEvent) -> Event {
    let data = e.details.and_then(|d| Json::parse(d).ok());
    let timestamp = Timestamp {
        seconds: e.seconds,
        microseconds: i64::from(e.micros),
    };
    Event::new(&e.event, data, Some(timestamp))
}

/// Why the connection ended, from the connection's closing error.
pub(crate) fn disconnect_of(error: Option<&Error>) -> Disconnect {
    match error {
        None => Disconnect::Local,
        Some(Error::Disconnected) => Disconnect::Eof { mid_message: false },
        Some(e) => Disconnect::Io(Arc::new(io::Error::new(
            io::ErrorKind::InvalidData,
            e.clone(),
        ))),
    }
}

/// A libvirt-side error as the shared client API's error. libvirt's own
/// answers (no such domain, not running, read-only) are
/// [`qmp_io::Error::Transport`] holding the [`Error`].
pub(crate) fn to_qmp_error(e: Error) -> qmp_io::Error {
    match e {
        Error::Disconnected => qmp_io::Error::Disconnected(Disconnect::Eof { mid_message: false }),
        Error::Protocol(_) => qmp_io::Error::Disconnected(disconnect_of(Some(&e))),
        Error::Usage(LibvirtUsage::Closed) => qmp_io::Error::Disconnected(Disconnect::Local),
        Error::Usage(LibvirtUsage::MessageTooLarge { .. } | LibvirtUsage::StringTooLong { .. }) => {
            qmp_io::Error::Usage(UsageError::CommandTooLarge)
        }
        Error::Usage(LibvirtUsage::TooManyCalls { .. }) => {
            qmp_io::Error::Usage(UsageError::TooManyPending)
        }
        other => qmp_io::Error::Transport(Arc::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_becomes_a_command_without_id() {
        let call = Call::new("query-status");
        assert_eq!(
            command_text(&call).unwrap(),
            r#"{"execute":"query-status"}"#
        );
        let call = Call::new("stop").arguments(serde_json::json!({"a": [1]}));
        assert_eq!(
            command_text(&call).unwrap(),
            r#"{"execute":"stop","arguments":{"a":[1]}}"#
        );
        let call = Call::new("x").arguments_text(" { \"b\" : 2 } ");
        assert_eq!(
            command_text(&call).unwrap(),
            r#"{"execute":"x","arguments":{ "b" : 2 }}"#
        );
    }

    #[test]
    fn what_libvirt_cannot_carry_is_refused_before_sending() {
        let refused = |call: Call| command_text(&call).unwrap_err().to_string();
        assert_eq!(
            refused(Call::new("query-status").oob()),
            "exec-oob is not supported over libvirt"
        );
        let fd = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            refused(Call::new("getfd").owned_fd(fd.into())),
            "passing file descriptors is not supported over libvirt"
        );
        assert_eq!(
            refused(Call::new("guest-ping")),
            "a guest agent command is not supported over libvirt"
        );
        assert!(matches!(
            command_text(&Call::new("bad\"name")),
            Err(qmp_io::Error::Usage(UsageError::InvalidCommandName))
        ));
        for args in ["[1]", "{\"a\":", "1 2", "\"s\""] {
            assert!(
                matches!(
                    command_text(&Call::new("x").arguments_text(args)),
                    Err(qmp_io::Error::Usage(UsageError::ArgumentsNotAnObject))
                ),
                "{args}"
            );
        }
    }

    #[test]
    fn replies_are_return_values_or_command_errors() {
        let ok = reply(r#"{"return": {"status": "running"}, "id": "libvirt-7"}"#).unwrap();
        assert_eq!(ok.as_str(), r#"{"status": "running"}"#);
        let err = reply(
            r#"{"id":"libvirt-8","error":{"class":"CommandNotFound","desc":"The command nope has not been found"}}"#,
        )
        .unwrap_err();
        let e = err.command_error().expect("a QMP error");
        assert_eq!(e.class, ErrorClass::CommandNotFound);
        assert_eq!(e.desc, "The command nope has not been found");
        let other = reply(r#"{"error":{"class":"Brandnew","desc":"d"}}"#).unwrap_err();
        assert_eq!(
            other.command_error().unwrap().class,
            ErrorClass::Other("Brandnew".into())
        );
        for bad in [
            "",
            "{",
            "[]",
            r#"{"id":"libvirt-1"}"#,
            r#"{"error":{"class":1}}"#,
        ] {
            assert!(matches!(reply(bad), Err(qmp_io::Error::Decode(_))), "{bad}");
        }
    }

    #[test]
    fn events_keep_their_timestamp_and_data() {
        let e = event_of(MonitorEvent {
            callback_id: 1,
            domain: crate::wire::Domain {
                name: "vm".into(),
                uuid: crate::wire::Uuid([0; 16]),
                id: 1,
            },
            event: "STOP".into(),
            seconds: 1_796_329_200,
            micros: 238_661,
            details: Some("{\"reason\": \"x\"}".into()),
        });
        assert_eq!(e.name(), "STOP");
        assert_eq!(e.data().unwrap().as_str(), "{\"reason\": \"x\"}");
        let t = e.timestamp().unwrap();
        assert_eq!((t.seconds, t.microseconds), (1_796_329_200, 238_661));
    }

    #[test]
    fn libvirt_errors_say_whose_fault() {
        assert!(to_qmp_error(Error::Disconnected).is_disconnected());
        assert!(matches!(
            to_qmp_error(Error::Usage(LibvirtUsage::StringTooLong { len: 9, max: 8 })),
            qmp_io::Error::Usage(UsageError::CommandTooLarge)
        ));
        let remote = crate::wire::RemoteError {
            code: crate::error::code::NO_DOMAIN,
            message: Some("Domain not found: no domain with matching name 'x'".into()),
            ..Default::default()
        };
        let e = to_qmp_error(Error::Libvirt(remote.into()));
        assert!(e.to_string().contains("Domain not found"), "{e}");
        let qmp_io::Error::Transport(inner) = &e else {
            panic!("{e:?}")
        };
        let kind = inner.downcast_ref::<Error>().and_then(Error::kind);
        assert_eq!(kind, Some(crate::error::ErrorKind::NoDomain));
    }
}
