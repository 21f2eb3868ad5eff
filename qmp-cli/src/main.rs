//! `qmp`: see `qmp --help` and the crate documentation.

fn main() {}
