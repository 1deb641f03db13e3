//! Parses one fixture many times, for instruction counts under callgrind:
//! `parse_loop <fixture> <iterations> [hash]`.

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "lead_status".to_owned());
    let iterations: usize = args.next().map_or(10_000, |n| n.parse().expect("a count"));
    let hash = args.next().is_some_and(|a| a == "hash");
    let path = format!("{}/tests/fixtures/{name}.form", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(path).expect("fixture body");
    let parser = amocrm_webhook::Parser::default();
    for _ in 0..iterations {
        let batch = parser.parse_form(black_box(&body)).expect("fixture parses");
        if hash {
            for event in &batch.events {
                black_box(event.event_hash());
            }
        }
        black_box(batch);
    }
}
