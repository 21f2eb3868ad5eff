//! Connection settings shared by every driver.

use core::time::Duration;

use qmp_proto::ConnectionLimits;

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
    /// Size and table limits of the protocol core.
    pub limits: ConnectionLimits,
    /// Commands whose bytes and replies are kept out of the debug log.
    pub quiet_commands: Vec<String>,
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

    pub(crate) fn is_quiet(&self, command: &str) -> bool {
        self.quiet_commands.iter().any(|c| c == command)
    }
}

/// The instant `timeout` from now; `None` (no deadline) when that is past
/// what `Instant` can hold, so `Duration::MAX` means "for ever".
pub(crate) fn deadline_after(timeout: core::time::Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(timeout)
}
