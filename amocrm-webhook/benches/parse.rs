//! Parsing throughput over the fixture bodies.
//!
//! `cargo bench -p amocrm-webhook --bench parse`
//!
//! Each fixture is measured twice: in bodies per second and in events per second.

use std::path::Path;

use amocrm_webhook::{Parser, parse_form};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "form"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("fixture body"))
        })
        .collect();
    fixtures.sort();
    fixtures
}

fn bench_parse(c: &mut Criterion) {
    let parser = Parser::default();
    let fixtures = fixtures();

    let mut bodies = c.benchmark_group("bodies");
    for (name, body) in &fixtures {
        bodies.throughput(Throughput::Elements(1));
        bodies.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| parser.parse_form(body).expect("fixture parses"))
        });
    }
    bodies.finish();

    let mut events = c.benchmark_group("events");
    for (name, body) in &fixtures {
        let count = parse_form(body).expect("fixture parses").events.len();
        events.throughput(Throughput::Elements(count as u64));
        events.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| parser.parse_form(body).expect("fixture parses"))
        });
    }
    events.finish();

    let mut bytes = c.benchmark_group("bytes");
    let all: Vec<&[u8]> = fixtures.iter().map(|(_, body)| body.as_slice()).collect();
    let total: usize = all.iter().map(|body| body.len()).sum();
    bytes.throughput(Throughput::Bytes(total as u64));
    bytes.bench_function("all_fixtures", |b| {
        b.iter(|| {
            for body in &all {
                parser.parse_form(body).expect("fixture parses");
            }
        })
    });
    bytes.finish();

    let event = &parse_form(&fixtures[0].1).expect("fixture parses").events[0];
    c.bench_function("event_hash", |b| b.iter(|| event.event_hash()));
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
