//! Benchmarks for qmp-proto; the code is in `benches/` (run with
//! `cargo bench -p qmp-benches`). Each measures our code against a peer on the
//! same bytes. This library is empty.
