//! The live schema: QEMU 10.0's `query-qmp-schema` reply (the captured
//! 230 KiB, a JSON array of SchemaInfo) read into `qmp_qapi::schema::Schema`,
//! against `serde_json::from_str::<serde_json::Value>` of the same bytes, in
//! one group; then `Schema::validate` of a `blockdev-add` argument object
//! (qcow2 over a file node, with the common members).
//!
//! Checked, not assumed: the schema read has QEMU 10.0's 233 commands, and
//! the arguments pass validation (a failing check would stop early and
//! measure nothing).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qmp_qapi::schema::Schema;
use serde_json::json;

const REPLY: &str = include_str!("../../qmp-qapi/schema/qemu-10.0.json");

fn parse(c: &mut Criterion) {
    assert_eq!(Schema::parse(REPLY).unwrap().commands().count(), 233);
    let mut group = c.benchmark_group("query-qmp-schema");
    group.throughput(Throughput::Bytes(REPLY.len() as u64));
    group.bench_function("qmp-qapi Schema", |b| {
        b.iter(|| Schema::parse(core::hint::black_box(REPLY)).unwrap());
    });
    group.bench_function("serde_json Value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(core::hint::black_box(REPLY)).unwrap());
    });
    group.finish();
}

fn validate(c: &mut Criterion) {
    let schema = Schema::parse(REPLY).unwrap();
    let args = json!({
        "driver": "qcow2", "node-name": "disk0", "read-only": false, "discard": "unmap",
        "cache": {"direct": true, "no-flush": false}, "detect-zeroes": "unmap",
        "lazy-refcounts": true, "cache-clean-interval": 600, "l2-cache-size": 1048576,
        "file": {"driver": "file", "node-name": "disk0-file", "filename": "/var/lib/disk0.qcow2",
                 "aio": "threads", "locking": "auto"},
        "backing": null
    });
    schema.validate("blockdev-add", &args).unwrap();
    let mut group = c.benchmark_group("validate");
    group.bench_function("blockdev-add qcow2", |b| {
        b.iter(|| {
            schema
                .validate("blockdev-add", core::hint::black_box(&args))
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, parse, validate);
criterion_main!(benches);
