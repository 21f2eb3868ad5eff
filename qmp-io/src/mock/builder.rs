//! Configuring and starting a [`MockQemu`].

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use qmp_proto::Version;

use super::server::accept_loop;
use super::{MockQemu, Shared, State};

/// Configures and starts a [`MockQemu`]; see [`MockQemu::builder`].
#[derive(Debug, Clone)]
pub struct MockBuilder {
    pub(super) version: Version,
    pub(super) package: String,
    pub(super) oob: bool,
    pub(super) greeting: bool,
    pub(super) record: bool,
    pub(super) path: Option<PathBuf>,
}

impl MockBuilder {
    /// The QEMU version in the greeting and in `query-version` (default 9.2.0).
    pub fn version(mut self, major: u64, minor: u64, micro: u64) -> Self {
        self.version = Version {
            major,
            minor,
            micro,
        };
        self
    }

    /// The package string in the greeting and in `query-version` (default
    /// empty).
    pub fn package(mut self, package: impl Into<String>) -> Self {
        self.package = package.into();
        self
    }

    /// Offer the `oob` capability (default: yes).
    pub fn oob(mut self, offer: bool) -> Self {
        self.oob = offer;
        self
    }

    /// Greet clients (default: yes). Without a greeting, connections are
    /// accepted and then ignored, to test connect timeouts.
    pub fn greeting(mut self, greet: bool) -> Self {
        self.greeting = greet;
        self
    }

    /// Record received commands for [`MockQemu::received`] (default: yes).
    /// Benchmarks sending millions of commands turn it off to keep memory flat;
    /// [`MockQemu::wait_for_command`] then never finds anything.
    pub fn record(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Listen on this path instead of a fresh private temporary directory.
    /// The socket file is removed on drop; the path must not exist yet.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Binds the socket and starts serving.
    ///
    /// # Errors
    ///
    /// Creating the temporary directory or binding the socket failed.
    pub fn start(self) -> io::Result<MockQemu> {
        let (path, temp_dir) = match self.path {
            Some(path) => (path, None),
            None => {
                let dir = private_temp_dir()?;
                (dir.join("qmp.sock"), Some(dir))
            }
        };
        let listener = match UnixListener::bind(&path) {
            Ok(listener) => listener,
            Err(e) => {
                if let Some(dir) = &temp_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return Err(e);
            }
        };
        let waker = listener.try_clone()?;
        let shared = Arc::new(Shared {
            version: self.version,
            package: self.package,
            oob: self.oob,
            greeting: self.greeting,
            record: self.record,
            scripts: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                running: true,
                ..State::default()
            }),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("qmp-mock".to_owned())
                .spawn(move || accept_loop(&shared, &listener))?
        };
        Ok(MockQemu {
            shared,
            path,
            temp_dir,
            waker,
            thread: Some(thread),
        })
    }
}

/// Creates a fresh directory only this user can enter, under the system's
/// temporary directory.
fn private_temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "qmp-mock-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}
