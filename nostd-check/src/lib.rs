//! Proves that `qmp-proto` builds and links with neither `std` nor `alloc`.
//!
//! This crate is its own workspace and builds as a static library with
//! `panic = "abort"` (see its `Cargo.toml`):
//!
//! ```text
//! cargo build --manifest-path nostd-check/Cargo.toml --release
//! ```
//!
//! - It defines its own `#[panic_handler]`. `std` defines one too, so if
//!   anything in the dependency graph pulls `std` in, the build fails with
//!   "found duplicate lang item `panic_impl`".
//! - If anything needs `alloc`, linking fails with "no global memory allocator
//!   found": there is none here.
//!
//! The exported [`qmp_nostd_check`] keeps the client and framer code alive, so
//! it is really compiled and linked rather than optimised away. CI then links
//! the archive into `main.c` (nothing but libc beside it) and runs it: the
//! session must go as expected without `std`.

#![no_std]
#![no_main]
#![warn(
    missing_docs,
    unreachable_pub,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]

use qmp_proto::framer::{Frame, Framer};
use qmp_proto::{Client, ClientConfig, Fixed, Id, Limits, Output, Reply, Storage};

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// A short QMP session as QEMU sends it: greeting, negotiation reply, a reply
/// and an event.
const TRANSCRIPT: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 8}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n\
{\"return\": {}, \"id\": 0}\r\n\
{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": 1}\r\n\
{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n";

/// What [`qmp_nostd_check`] returns when everything happened as it should.
pub const ALL_SEEN: u32 = 0x7f;

/// Runs a fixed-capacity client and a framer over a transcript and returns a
/// bit for each step that went as expected ([`ALL_SEEN`] when all did).
/// `black_box` hides the input from the optimiser, so the whole state machine
/// is compiled and linked.
#[unsafe(no_mangle)]
pub extern "C" fn qmp_nostd_check() -> u32 {
    let input = core::hint::black_box(TRANSCRIPT);
    drive_client(input) | drive_framer(input)
}

fn drive_client(mut input: &[u8]) -> u32 {
    let mut client = Client::<Fixed<4096, 1024, 8>>::new(ClientConfig::default());
    let mut sent = None;
    let mut seen = 0;
    while !input.is_empty() {
        match client.receive(input) {
            Ok(n) if n > 0 => input = &input[n..],
            _ => return seen,
        }
        seen |= drain(&mut client, &mut sent);
    }
    client.receive_eof();
    seen | drain(&mut client, &mut sent)
}

/// Handles every output (sending `query-status` once greeted) and flushes.
fn drain(client: &mut Client<Fixed<4096, 1024, 8>>, sent: &mut Option<Id>) -> u32 {
    let mut seen = 0;
    while let Some(output) = client.poll_output() {
        let mut greeted = false;
        seen |= match output {
            Output::Greeting(g) if g.version.major == 8 && g.has_capability("oob") => {
                greeted = true;
                1
            }
            Output::Ready { oob: true } => 2,
            Output::Reply {
                id,
                reply: Reply::Return(value),
            } if Some(id) == *sent
                && value
                    .get("status")
                    .and_then(|s| s.as_json_str())
                    .is_some_and(|s| s.eq_str("running")) =>
            {
                4
            }
            Output::Event(e) if e.name.eq_str("STOP") => 8,
            Output::Closed(None) => 16,
            _ => 0,
        };
        if greeted {
            *sent = client.send_command_raw("query-status", None).ok();
            seen |= 32 * u32::from(sent.is_some());
        }
        let n = client.pending_transmit().len();
        if client.advance_transmit(n).is_err() {
            return 0;
        }
    }
    seen
}

fn drive_framer(mut input: &[u8]) -> u32 {
    let mut framer = Framer::<<Fixed<1024, 0, 0> as Storage>::Rx>::new(Limits::default());
    let mut messages = 0;
    while !input.is_empty() {
        let taken = framer.push(input);
        input = &input[taken..];
        while let Some(frame) = framer.next() {
            match frame {
                Frame::Message(_) => messages += 1,
                _ => return 0,
            }
        }
        if taken == 0 {
            return 0;
        }
    }
    if messages == 4 { 64 } else { 0 }
}
