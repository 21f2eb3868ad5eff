//! The interactive shell: `qmp [TARGET]` with a terminal on stdin.
//!
//! Lines are read as described in [`line`](crate::line) (commands, whole
//! JSON requests, `transaction(` ... `)`, HMP lines with `-H`), plus the
//! shell's own words: `help` (the shell's syntax and the command names),
//! `help COMMAND` (its arguments from the live schema), `quit` / `exit` /
//! Ctrl-D to leave; Ctrl-C drops the line (and an open transaction).
//!
//! Before a command is sent its arguments are checked against the live
//! schema: an unknown member (with the allowed names), a missing one, a value
//! of the wrong type or an enum value not allowed (with the allowed values)
//! is reported by its JSON path and nothing is sent. A whole JSON request
//! (`{"execute": ...}`) is sent unchecked.
//!
//! Replies are printed as pretty JSON on stdout, QMP errors as `qmp: CLASS:
//! DESC` on stderr. Events are printed as JSON lines as they arrive, above
//! the line being typed, which stays as it was (rustyline's external
//! printer). Tab completes command names, argument names and enum values
//! from the live schema (`query-qmp-schema`; for a guest agent, the command
//! names of `guest-info`).
//!
//! History is kept in `$QMP_HISTORY`, else `$XDG_STATE_HOME/qmp/history`,
//! else `~/.local/state/qmp/history` (1000 lines; a failure to read or write
//! it is reported once and the shell goes on).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};

use qmp_std::Error;

use crate::complete::complete;
use crate::events::event_line;
use crate::failure::{EXIT_OTHER, Failure};
use crate::line::{LineReader, Parsed};
use crate::oneshot::call_failure;
use crate::output::{self, Style};
use crate::schema::Schema;
use crate::target::{Deadline, Peer};

/// Lines of history kept.
const HISTORY_LINES: usize = 1000;

/// Environment variable naming the history file.
pub const HISTORY_ENV: &str = "QMP_HISTORY";

/// The history file: `$QMP_HISTORY`, else under `$XDG_STATE_HOME`, else
/// under `~/.local/state`; `None` when none of these is set.
pub fn history_path() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = var(HISTORY_ENV) {
        return Some(PathBuf::from(path));
    }
    let state = var("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".local/state")))?;
    Some(state.join("qmp").join("history"))
}

/// The editor's helper: completion from the schema; the rest is default.
struct ShellHelper {
    schema: Arc<Schema>,
    in_transaction: bool,
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(complete(&self.schema, line, pos, self.in_transaction))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

/// The schema to complete from: QMP's introspection, or a guest agent's
/// command list. Empty (no completion) when it cannot be had.
fn load_schema(peer: &Peer, deadline: &Deadline) -> Schema {
    let loaded = match peer {
        Peer::Qmp(client) => crate::info::fetch_schema(client, deadline),
        // No completion over libvirt yet.
        Peer::Libvirt(_) => Ok(Schema::default()),
        Peer::Qga(agent) => agent
            .execute_raw("guest-info", ())
            .map_err(Failure::from)
            .and_then(|info| {
                let info: serde_json::Value = info.decode().map_err(Failure::other)?;
                let names = info["supported_commands"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned));
                Ok(Schema::from_command_names(names))
            }),
    };
    loaded.unwrap_or_else(|e| {
        output::error_line(&Failure::other(format!(
            "no completion: cannot read the schema: {e}"
        )));
        Schema::default()
    })
}

/// The text of `help` without a command.
fn general_help(schema: &Schema) -> String {
    let mut text = String::from(
        "Commands: NAME key=value... (dotted keys nest: file.driver=qcow2), NAME {JSON}, \
         or {\"execute\": NAME, \"arguments\": {...}}.\n\
         transaction( starts a transaction: one action per line, then ).\n\
         help COMMAND shows its arguments; quit, exit or Ctrl-D leaves; Tab completes.\n",
    );
    let names: Vec<&str> = schema.command_names().collect();
    if !names.is_empty() {
        text.push_str("\nCommands of this QEMU:\n");
        let mut width = 0;
        for name in names {
            if width + name.len() + 1 > 78 {
                text.push('\n');
                width = 0;
            }
            if width > 0 {
                text.push(' ');
                width += 1;
            }
            text.push_str(name);
            width += name.len();
        }
    }
    text
}

/// Runs the shell until `quit`, Ctrl-D or the end of the connection; returns
/// the exit status (2 when the connection ended under it).
pub fn run(peer: &Peer, hmp: bool, oob: bool, deadline: &Deadline) -> Result<u8, Failure> {
    let schema = Arc::new(if hmp {
        Schema::default()
    } else {
        load_schema(peer, deadline)
    });
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .completion_type(rustyline::CompletionType::List)
        .max_history_size(HISTORY_LINES)
        .map_err(Failure::other)?
        .history_ignore_dups(true)
        .map_err(Failure::other)?
        .build();
    let mut editor: Editor<ShellHelper, DefaultHistory> =
        Editor::with_config(config).map_err(|e| Failure::other(format!("no terminal: {e}")))?;
    editor.set_helper(Some(ShellHelper {
        schema: schema.clone(),
        in_transaction: false,
    }));
    let history = history_path();
    if let Some(path) = &history
        && path.exists()
        && let Err(e) = editor.load_history(path)
    {
        warn_history(path, &e);
    }
    if let Peer::Qmp(client) = peer {
        start_event_printer(&mut editor, client);
    }
    let status = read_loop(&mut editor, peer, &schema, hmp, oob, deadline);
    if let Some(path) = &history {
        save_history(&mut editor, path);
    }
    status
}

fn read_loop(
    editor: &mut Editor<ShellHelper, DefaultHistory>,
    peer: &Peer,
    schema: &Schema,
    hmp: bool,
    oob: bool,
    deadline: &Deadline,
) -> Result<u8, Failure> {
    let mut reader = LineReader::new(hmp);
    loop {
        let prompt = match (reader.in_transaction(), hmp) {
            (true, _) => "(transaction) ",
            (false, true) => "(hmp) ",
            (false, false) => "(qmp) ",
        };
        if let Some(helper) = editor.helper_mut() {
            helper.in_transaction = reader.in_transaction();
        }
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                reader = LineReader::new(hmp);
                continue;
            }
            Err(ReadlineError::Eof) => return Ok(0),
            Err(e) => return Err(Failure::other(format!("cannot read the terminal: {e}"))),
        };
        let text = line.trim();
        if !text.is_empty() {
            let _ = editor.add_history_entry(text);
        }
        if !reader.in_transaction() {
            match text.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["quit"] | ["exit"] => return Ok(0),
                ["help"] => {
                    output::line(&general_help(schema))?;
                    continue;
                }
                ["help", command] => {
                    match schema.help(command) {
                        Some(help) => output::line(&help)?,
                        None => output::error_line(&Failure::other(format!(
                            "{command}: not a command of this QEMU's schema"
                        ))),
                    }
                    continue;
                }
                _ => {}
            }
        }
        let mut request = match reader.feed(&line) {
            Ok(Parsed::Nothing) => continue,
            Ok(Parsed::Request(r)) => r,
            Err(e) => {
                output::error_line(&Failure::other(e));
                continue;
            }
        };
        request.oob |= oob;
        // A whole JSON request is sent as typed: the way past a check that
        // is wrong about this QEMU.
        let checked = !(hmp || line.trim_start().starts_with('{'));
        if checked && let Err(mistake) = schema.check(&request.name, &request.arguments) {
            output::error_line(&Failure::other(format!("not sent: {mistake}")));
            continue;
        }
        match peer.call(request.call(deadline)) {
            Ok(reply) if request.name == crate::request::HMP_COMMAND && hmp => {
                let text = output::hmp_text(reply.as_str());
                if !text.is_empty() {
                    output::line(&text)?;
                }
            }
            Ok(reply) => output::line(&Style::Pretty.format(reply.as_str()))?,
            Err(e @ Error::Disconnected(_)) => {
                output::error_line(&Failure::from(e));
                return Ok(EXIT_OTHER);
            }
            Err(e) => {
                let failure = call_failure(e, &request.name, deadline);
                output::error_line(&failure);
                if deadline.remaining().is_some_and(|left| left.is_zero()) {
                    return Ok(EXIT_OTHER);
                }
            }
        }
    }
}

/// Prints events as they come, above the line being typed.
fn start_event_printer(editor: &mut Editor<ShellHelper, DefaultHistory>, client: &qmp_std::Client) {
    let events = client.events();
    let mut printer = match editor.create_external_printer() {
        Ok(printer) => Some(printer),
        Err(e) => {
            output::error_line(&Failure::other(format!(
                "events will not be shown while typing: {e}"
            )));
            None
        }
    };
    let spawned = std::thread::Builder::new()
        .name("qmp-events".to_owned())
        .spawn(move || {
            for event in events.iter() {
                let text = match event {
                    Ok(event) => event_line(&event),
                    Err(lagged) => format!("qmp: {lagged}"),
                };
                let printed = printer
                    .as_mut()
                    .is_some_and(|p| p.print(format!("{text}\n")).is_ok());
                if !printed {
                    let _ = output::line(&text);
                }
            }
        });
    if let Err(e) = spawned {
        output::error_line(&Failure::other(format!("events will not be shown: {e}")));
    }
}

fn save_history(editor: &mut Editor<ShellHelper, DefaultHistory>, path: &std::path::Path) {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        warn_history(path, &e);
        return;
    }
    if let Err(e) = editor.save_history(path) {
        warn_history(path, &e);
    }
}

fn warn_history(path: &std::path::Path, e: &dyn core::fmt::Display) {
    output::error_line(&Failure::other(format!(
        "history file {}: {e}",
        path.display()
    )));
}
