//! Drives a `qmp_proto::Client` by hand over a blocking `UnixStream`.
//!
//! `cargo run -p qmp-proto --features alloc --example unix_loop [SOCKET]`
//!
//! Without SOCKET it starts `qemu-system-x86_64 -machine none` itself.

use core::time::Duration;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command as Process};
use std::time::Instant;

use qmp_proto::{Client, ClientConfig, Command, Heap, Output, Reply};

/// `query-status`, typed: no arguments, returns a `StatusInfo`.
#[derive(serde::Serialize)]
struct QueryStatus {}

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)] // Printed with Debug.
struct StatusInfo {
    running: bool,
    status: String,
}

impl Command for QueryStatus {
    const NAME: &'static str = "query-status";
    type Returns = StatusInfo;
}

fn main() -> Result<(), Box<dyn core::error::Error>> {
    let (mut stream, mut qemu) = match std::env::args().nth(1) {
        Some(path) => (UnixStream::connect(path)?, None),
        None => {
            let (stream, child) = launch_qemu()?;
            (stream, Some(child))
        }
    };
    let mut client: Client<Heap> = Client::new(ClientConfig::default());
    let mut buf = [0u8; 64 * 1024];
    let mut status = None;
    'session: loop {
        // 1. Read, and feed everything the client takes.
        let n = stream.read(&mut buf)?;
        if n == 0 {
            client.receive_eof();
        }
        let mut input = &buf[..n];
        loop {
            let taken = client.receive(input).unwrap_or(0);
            input = &input[taken..];
            // 2. Drain outputs until None.
            while let Some(output) = client.poll_output() {
                match output {
                    Output::Greeting(g) => println!("QEMU {} ({})", g.version, g.package),
                    Output::Ready { oob } => {
                        println!("negotiated, oob: {oob}");
                        status = Some(client.send_command(&QueryStatus {})?);
                    }
                    Output::Reply {
                        id,
                        reply: Reply::Return(value),
                    } if Some(id) == status => {
                        let info: <QueryStatus as Command>::Returns = value.decode()?;
                        println!("query-status: {info:?}");
                        let _quit = client.send_command_raw("quit", None)?;
                    }
                    Output::Reply { id, reply } => println!("reply {id}: {reply:?}"),
                    Output::Event(event) => println!("event {}", event.name),
                    Output::Closed(error) => {
                        println!("closed: {error:?}");
                        break 'session;
                    }
                    other => println!("{other:?}"),
                }
            }
            if input.is_empty() {
                break;
            }
        }
        // 3. Flush what the client wants to send.
        while !client.pending_transmit().is_empty() {
            let written = stream.write(client.pending_transmit())?;
            client.advance_transmit(written)?;
        }
    }
    if let Some(qemu) = qemu.as_mut() {
        qemu.wait()?;
    }
    Ok(())
}

/// Starts QEMU with a QMP socket in a fresh directory and connects to it.
fn launch_qemu() -> Result<(UnixStream, Child), Box<dyn core::error::Error>> {
    let dir = std::env::temp_dir().join(format!("qmp-proto-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("qmp.sock");
    let child = Process::new("qemu-system-x86_64")
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-machine",
            "none",
            "-qmp",
        ])
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .spawn()
        .map_err(|e| {
            format!("cannot start qemu-system-x86_64 (apt-get install qemu-system-x86): {e}")
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(&socket) {
            Ok(stream) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Ok((stream, child));
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("QEMU did not open {}: {e}", socket.display()).into()),
        }
    }
}
