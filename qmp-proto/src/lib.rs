#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// No panic reachable from peer input: outside tests, every index, slice and
// arithmetic step is checked, or allowed on its line with the reason it
// cannot fail.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]
#![doc = include_str!("../README.md")]

#[cfg(feature = "alloc")]
extern crate alloc;

mod buffer;
mod client;
mod command;
mod error;
pub mod framer;
mod guest_agent;
pub mod json;
mod link;
pub mod server;

#[cfg(feature = "alloc")]
pub use buffer::Heap;
pub use buffer::{Fixed, Storage};
pub use client::{Client, ClientConfig, Event, Greeting, Output, Reply, Timestamp, Version};
pub use command::{Command, Empty, EventData, EventEnum, Id};
pub use error::{Error, ErrorClass, ProtocolError, QmpError, UsageError};
pub use framer::{Kind, Limits, RawMessage};
pub use guest_agent::{AgentOutput, GuestAgent, NO_REPLY_COMMANDS, sends_no_reply};
pub use json::{DecodeError, JsonStr, RawJson};
pub use link::ConnectionLimits;
pub use server::{Server, ServerConfig, ServerOutput};

/// Tests of the build without `alloc`: serde-json-core for typed commands and
/// replies, fixed storage. (The integration tests cover the `alloc` build.)
#[cfg(all(test, not(feature = "alloc")))]
mod no_alloc_tests {
    use crate::{
        Client, ClientConfig, Command, Fixed, Output, Reply, Server, ServerConfig, ServerOutput,
    };

    #[derive(serde::Serialize)]
    struct Balloon {
        value: u64,
    }

    impl Command for Balloon {
        const NAME: &'static str = "balloon";
        type Returns = crate::Empty;
    }

    #[derive(serde::Serialize)]
    struct QueryStatus;

    impl Command for QueryStatus {
        const NAME: &'static str = "query-status";
        type Returns = ();
    }

    #[derive(serde::Deserialize, PartialEq, Debug)]
    struct StatusInfo<'a> {
        running: bool,
        status: &'a str,
    }

    type Small = Fixed<1024, 512, 4>;

    fn pump(client: &mut Client<Small>, server: &mut Server<Small>) {
        let n = server.pending_transmit().len();
        assert_eq!(client.receive(server.pending_transmit()), Ok(n));
        server.advance_transmit(n).unwrap();
        let n = client.pending_transmit().len();
        assert_eq!(server.receive(client.pending_transmit()), Ok(n));
        client.advance_transmit(n).unwrap();
    }

    #[test]
    fn typed_commands_and_replies_without_alloc() {
        let mut client: Client<Small> = Client::new(ClientConfig::default());
        let mut server: Server<Small> = Server::new(ServerConfig::default());
        pump(&mut client, &mut server);
        assert!(
            matches!(client.poll_output(), Some(Output::Greeting(g)) if g.has_capability("oob"))
        );
        let balloon = client.send_command(&Balloon { value: 1 << 30 }).unwrap();
        let status = client.send_command(&QueryStatus).unwrap();
        assert!(client.pending_transmit().ends_with(
            b"{\"execute\":\"balloon\",\"arguments\":{\"value\":1073741824},\"id\":1}\r\n\
              {\"execute\":\"query-status\",\"id\":2}\r\n"
        ));
        pump(&mut client, &mut server);
        assert!(matches!(
            server.poll_output(),
            Some(ServerOutput::Negotiated { oob: true })
        ));
        let Some(ServerOutput::Command(req)) = server.poll_output() else {
            panic!()
        };
        assert!(req.name.eq_str("balloon"));
        assert_eq!(
            req.arguments
                .and_then(|a| a.get("value"))
                .and_then(|v| v.as_u64()),
            Some(1 << 30)
        );
        let to_balloon = req.reply_to;
        let Some(ServerOutput::Command(req)) = server.poll_output() else {
            panic!()
        };
        let to_status = req.reply_to;
        server
            .reply_return(&to_status, "{\"status\": \"paused\", \"running\": false}")
            .unwrap();
        server
            .reply_error(
                &to_balloon,
                "DeviceNotActive",
                "No balloon device has been activated",
            )
            .unwrap();
        pump(&mut client, &mut server);
        assert!(matches!(
            client.poll_output(),
            Some(Output::Ready { oob: true })
        ));
        match client.poll_output() {
            Some(Output::Reply {
                id,
                reply: Reply::Return(value),
            }) => {
                assert_eq!(id, status);
                let info: StatusInfo<'_> = value.decode().unwrap();
                assert_eq!(
                    info,
                    StatusInfo {
                        running: false,
                        status: "paused"
                    }
                );
                assert!(value.decode::<u64>().is_err());
            }
            other => panic!("{other:?}"),
        }
        match client.poll_output() {
            Some(Output::Reply {
                id,
                reply: Reply::Error(e),
            }) => {
                assert_eq!(id, balloon);
                assert_eq!(e.class, crate::ErrorClass::DeviceNotActive);
            }
            other => panic!("{other:?}"),
        }
        assert!(client.poll_output().is_none());
    }
}
