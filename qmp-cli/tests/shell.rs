//! The interactive shell driven through a pseudo-terminal, against a real
//! QEMU: a command and its reply, Tab completion from the live schema, an
//! event arriving while a line is half typed, the schema check, history
//! across two runs, quit.

mod common;

use core::time::Duration;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{QMP, TempDir, TwoMonitors, arg, wait_limited};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

/// How long to wait for something to show on the screen.
const SHOW: Duration = Duration::from_secs(20);

/// `qmp` on a pseudo-terminal: keys in, everything it writes collected.
struct Terminal {
    child: Child,
    input: File,
    screen: Arc<Mutex<Vec<u8>>>,
    /// How much of `screen` earlier waits consumed.
    seen: usize,
}

impl Terminal {
    fn start(args: &[&str], history: &Path) -> Self {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        let slave: OwnedFd = File::options()
            .read(true)
            .write(true)
            .open(name.to_str().expect("pty name"))
            .expect("open the pty")
            .into();
        let child = Command::new(QMP)
            .args(args)
            .env("TERM", "xterm")
            .env("QMP_HISTORY", history)
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("spawn qmp");
        let master = File::from(master);
        let input = master.try_clone().expect("dup");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 4096];
            // EIO once the last holder of the other end is gone.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child,
            input,
            screen,
            seen: 0,
        }
    }

    fn type_keys(&mut self, keys: &str) {
        self.input.write_all(keys.as_bytes()).expect("type");
    }

    /// Waits until `text` shows after what earlier waits consumed; returns
    /// the screen output up to and including it.
    fn wait_for(&mut self, text: &str) -> String {
        let started = Instant::now();
        loop {
            {
                let screen = self.screen.lock().expect("screen");
                let new = String::from_utf8_lossy(&screen[self.seen..]).into_owned();
                if let Some(at) = new.find(text) {
                    self.seen += new[..at + text.len()].len();
                    return new[..at + text.len()].to_owned();
                }
                assert!(
                    started.elapsed() < SHOW,
                    "{text:?} did not show within {SHOW:?}; the screen after the last match: {new:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True when `text` shows after what earlier waits consumed.
    fn shows(&self, text: &str) -> bool {
        let screen = self.screen.lock().expect("screen");
        String::from_utf8_lossy(&screen[self.seen..]).contains(text)
    }

    fn quit(mut self) {
        self.type_keys("quit\r");
        assert_eq!(wait_limited(&mut self.child, SHOW), Some(0));
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn shell_command_completion_event_history_quit() {
    let Some(vm) = TwoMonitors::start("shell_command_completion_event_history_quit") else {
        return;
    };
    let dir = TempDir::new();
    let history = dir.join("state/qmp-history");
    let mut t = Terminal::start(&["--socket", arg(vm.first())], &history);
    t.wait_for("(qmp) ");

    // A command and its reply, pretty on a terminal.
    t.type_keys("query-status\r");
    t.wait_for("\"status\": \"running\"");
    t.wait_for("(qmp) ");

    // Tab completes a command name, then argument names from the schema.
    t.type_keys("blockdev-ad\t");
    t.wait_for("blockdev-add");
    t.type_keys(" dri\t");
    t.wait_for("driver=");
    // ...then the values of the enum.
    t.type_keys("null-c\t");
    t.wait_for("null-co");
    t.type_keys(" node-name=n0 size=1024\r");
    t.wait_for("{}");
    t.wait_for("(qmp) ");

    // An event while a line is half typed: printed above, the line intact.
    t.type_keys("qom-get path=/mach");
    t.wait_for("/mach");
    vm.second_runs("stop");
    let shown = t.wait_for("\"event\":\"STOP\"");
    assert!(!shown.contains("none-machine"), "{shown:?}");
    // The line is drawn again after the event, as it was.
    t.wait_for("qom-get path=/mach");
    t.type_keys("ine property=type\r");
    t.wait_for("\"none-machine\"");
    t.wait_for("(qmp) ");

    // help COMMAND shows its arguments from the schema.
    t.type_keys("help qom-get\r");
    t.wait_for("property: string");

    // Arguments are checked against the schema before anything is sent.
    t.type_keys("blockdev-add driver=null-co node-name=n1 sise=1\r");
    t.wait_for("qmp: not sent: blockdev-add: arguments.sise: no member `sise`; allowed: ");
    t.type_keys("blockdev-add driver=null-cow node-name=n1\r");
    t.wait_for("arguments.driver: \"null-cow\" selects no branch; one of: ");
    t.type_keys("qom-get path=/machine\r");
    t.wait_for("qmp: not sent: qom-get: arguments.property: required member `property` is missing");
    t.wait_for("(qmp) ");

    // A transaction, one action per line.
    t.type_keys("transaction(\r");
    t.wait_for("(transaction) ");
    t.type_keys("abort\r");
    t.wait_for("(transaction) ");
    t.type_keys(")\r");
    t.wait_for("Transaction aborted using Abort action");
    t.wait_for("(qmp) ");
    t.quit();

    let saved = std::fs::read_to_string(&history).expect("history file");
    assert!(saved.contains("query-status"), "{saved}");
    assert!(
        saved.contains("qom-get path=/machine property=type"),
        "{saved}"
    );

    // The second run finds the first one's lines: up arrow, older first.
    let mut t = Terminal::start(&["--socket", arg(vm.first())], &history);
    t.wait_for("(qmp) ");
    t.type_keys("\x1b[A");
    t.wait_for("quit");
    let wanted = "(qmp) qom-get path=/machine property=type";
    for _ in 0..20 {
        if t.shows(wanted) {
            break;
        }
        t.type_keys("\x1b[A");
        std::thread::sleep(Duration::from_millis(100));
    }
    t.wait_for(wanted);
    t.type_keys("\r");
    t.wait_for("\"none-machine\"");
    t.wait_for("(qmp) ");
    // Ctrl-D leaves too.
    t.type_keys("\x04");
    assert_eq!(wait_limited(&mut t.child, SHOW), Some(0));
}
