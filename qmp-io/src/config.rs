//! Connection settings shared by every driver.

use core::fmt;
use core::time::Duration;
use std::sync::Arc;

use qmp_proto::ConnectionLimits;

/// A check of a command's arguments before it is sent, such as one against
/// the QEMU's own schema (`qmp_qapi::schema::LiveSchema`). Set it with
/// [`Config::check_arguments`]; a call it refuses fails with
/// [`Error::InvalidArguments`](crate::Error::InvalidArguments) and nothing
/// is written.
///
/// ```
/// use qmp_io::{ArgumentCheck, Config};
///
/// /// Refuses `quit`, whatever its arguments.
/// #[derive(Debug)]
/// struct NoQuit;
///
/// impl ArgumentCheck for NoQuit {
///     fn check(&self, command: &str, _arguments: Option<&str>) -> Result<(), qmp_io::CheckError> {
///         if command == "quit" {
///             return Err("quit is not allowed here".into());
///         }
///         Ok(())
///     }
/// }
///
/// let config = Config::default().check_arguments(NoQuit);
/// # let _ = config;
/// ```
pub trait ArgumentCheck: Send + Sync + fmt::Debug {
    /// Checks `command` with `arguments` (JSON text of one object; `None`
    /// when there are none). The error says what is wrong, for a person.
    fn check(&self, command: &str, arguments: Option<&str>) -> Result<(), CheckError>;
}

/// Why an [`ArgumentCheck`] refused a call: any error (its `Display` is
/// shown; downcast it for details).
pub type CheckError = Box<dyn core::error::Error + Send + Sync>;

/// How a connection behaves. `Config::default()` suits most uses.
///
/// ```
/// use std::time::Duration;
/// let config = qmp_io::Config::default()
///     .timeout(Some(Duration::from_secs(5)))
///     .quiet("ringbuf-read");
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Default per-call timeout (`None`: wait for ever). Default 30 s.
    pub timeout: Option<Duration>,
    /// How long connecting may take, the greeting (or the guest agent's sync)
    /// included. Default 10 s.
    pub connect_timeout: Duration,
    /// Negotiate out-of-band execution when QEMU offers it. Default on.
    pub oob: bool,
    /// Events each subscriber may hold before the oldest are dropped. Default 4096.
    pub event_capacity: usize,
    /// Bytes of event data (names included) each subscriber may hold before
    /// the oldest are dropped; the newest event is always kept. Default 16 MiB.
    pub event_bytes: usize,
    /// Size and table limits of the protocol core. A message over
    /// `limits.receive.max_message_size` is skipped without being stored: a
    /// reply fails its call with
    /// [`Error::ReplyTooLarge`](crate::Error::ReplyTooLarge) and the
    /// connection goes on; an event is dropped (logged at warn level) and
    /// no subscriber sees it, nor a [`Lagged`](crate::Lagged) marker for it.
    /// Nesting deeper than `limits.receive.max_depth` ends the connection
    /// with a protocol error.
    pub limits: ConnectionLimits,
    /// Commands whose bytes and replies are kept out of the debug log.
    pub quiet_commands: Vec<String>,
    /// Checks every command's arguments before it is sent (none by default).
    pub argument_check: Option<Arc<dyn ArgumentCheck>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(10),
            oob: true,
            event_capacity: 4096,
            event_bytes: 16 << 20,
            limits: ConnectionLimits::default(),
            quiet_commands: Vec::new(),
            argument_check: None,
        }
    }
}

impl Config {
    /// Sets the default per-call timeout.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout (greeting included).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Enables or disables out-of-band negotiation.
    pub fn oob(mut self, oob: bool) -> Self {
        self.oob = oob;
        self
    }

    /// Sets each subscriber's queue length.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Sets how many bytes of events each subscriber's queue may hold.
    pub fn event_bytes(mut self, bytes: usize) -> Self {
        self.event_bytes = bytes;
        self
    }

    /// Sets the protocol core's limits.
    pub fn limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Keeps `command` (its bytes and its reply) out of the debug log, such
    /// as `ringbuf-read`, whose data may be large or private.
    pub fn quiet(mut self, command: impl Into<String>) -> Self {
        self.quiet_commands.push(command.into());
        self
    }

    /// Checks every command's arguments with `check` before sending it,
    /// typed and raw, QMP and guest agent alike; a refused call fails with
    /// [`Error::InvalidArguments`](crate::Error::InvalidArguments) and
    /// nothing is written. Typed commands are serialized once more for it.
    pub fn check_arguments(mut self, check: impl ArgumentCheck + 'static) -> Self {
        self.argument_check = Some(Arc::new(check));
        self
    }

    /// Runs the [`ArgumentCheck`], if any, on a call about to be sent.
    pub(crate) fn check(&self, command: &str, arguments: Option<&str>) -> crate::Result<()> {
        match &self.argument_check {
            Some(check) => {
                check
                    .check(command, arguments)
                    .map_err(|reason| crate::Error::InvalidArguments {
                        command: command.to_owned(),
                        reason: Arc::from(reason),
                    })
            }
            None => Ok(()),
        }
    }

    pub(crate) fn is_quiet(&self, command: &str) -> bool {
        self.quiet_commands.iter().any(|c| c == command)
    }
}

/// The instant `timeout` from now; `None` (no deadline) when that is past
/// what `Instant` can hold, so `Duration::MAX` means "for ever".
pub(crate) fn deadline_after(timeout: core::time::Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(timeout)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::blocking::Client;
    use crate::mock::MockQemu;
    use crate::{Call, Error};

    /// Refuses any `size` argument that is not a number, and `quit`.
    #[derive(Debug)]
    struct SizeIsNumber;

    impl ArgumentCheck for SizeIsNumber {
        fn check(&self, command: &str, arguments: Option<&str>) -> Result<(), CheckError> {
            if command == "quit" {
                return Err("quit refused".into());
            }
            let args: serde_json::Value = serde_json::from_str(arguments.unwrap_or("{}"))?;
            match args.get("size") {
                Some(size) if !size.is_number() => {
                    Err(format!("size: {size} is not a number").into())
                }
                _ => Ok(()),
            }
        }
    }

    #[derive(serde::Serialize)]
    struct Resize {
        size: serde_json::Value,
    }

    impl crate::Command for Resize {
        const NAME: &'static str = "block_resize";
        type Returns = serde_json::Value;
    }

    #[test]
    fn a_refused_call_is_never_written() {
        let mock = MockQemu::builder().record(true).start().unwrap();
        mock.on_return("block_resize", "{}");
        let config = Config::default().check_arguments(SizeIsNumber);
        let qmp = Client::connect(UnixStream::connect(mock.path()).unwrap(), config).unwrap();

        let refused = qmp.execute_raw("block_resize", serde_json::json!({"size": "big"}));
        match refused {
            Err(ref e @ Error::InvalidArguments { ref command, .. }) => {
                assert_eq!(command, "block_resize");
                assert_eq!(e.to_string(), "not sent: size: \"big\" is not a number");
            }
            other => panic!("{other:?}"),
        }
        let typed = qmp.execute(&Resize { size: "big".into() });
        assert!(
            matches!(typed, Err(Error::InvalidArguments { .. })),
            "{typed:?}"
        );
        let bare = qmp.call(Call::new("quit").oob());
        assert!(
            matches!(bare, Err(Error::InvalidArguments { .. })),
            "{bare:?}"
        );

        qmp.execute_raw("block_resize", serde_json::json!({"size": 1}))
            .unwrap();
        qmp.execute(&Resize { size: 2.into() }).unwrap();
        let sent: Vec<String> = mock
            .received()
            .into_iter()
            .map(|c| format!("{} {}", c.name, c.arguments.unwrap_or_default()))
            .collect();
        assert_eq!(
            sent,
            [r#"block_resize {"size":1}"#, r#"block_resize {"size":2}"#]
        );
    }
}
