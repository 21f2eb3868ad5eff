#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc = include_str!("../README.md")]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod buffer;
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
pub use command::{Command, Empty, Id};
pub use error::{Error, ErrorClass, ProtocolError, QmpError, UsageError};
pub use framer::{Kind, Limits, RawMessage};
pub use guest_agent::{AgentOutput, GuestAgent, NO_REPLY_COMMANDS, sends_no_reply};
pub use json::{DecodeError, JsonStr, RawJson};
pub use link::ConnectionLimits;
pub use server::{Server, ServerConfig, ServerOutput};
