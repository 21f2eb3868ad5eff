//! The `qmp` command: QEMU Machine Protocol and guest agent commands from the
//! command line, event watching, and an interactive shell.
//!
//! The binary is a thin `main` over [`run`]; the modules are public so their
//! parts (argument syntax, output formatting) are documented and tested on
//! their own.
#![deny(missing_docs)]

pub mod args;
