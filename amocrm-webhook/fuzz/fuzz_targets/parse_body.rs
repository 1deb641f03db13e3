//! Any byte string, as a form body, a JSON body or sniffed: never a panic, and whatever a
//! form body parses to encodes back to itself.

#![no_main]

use amocrm_webhook::{Limits, Parser, encode_form};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits reach the limit checks; the defaults reach everything else.
    let small = Parser::new(Limits {
        max_body_bytes: 4096,
        max_keys: 64,
        max_depth: 6,
    });
    for parser in [Parser::default(), small] {
        let _ = parser.parse_json(data);
        let _ = parser.parse(None, data);
        if let Ok(batch) = parser.parse_form(data) {
            for event in &batch.events {
                assert_eq!(event.event_hash().len(), 64);
                let _ = (event.event_type(), event.custom_fields(), event.tags());
                let _ = (event.linked_lead_ids(), event.created_at(), event.price());
            }
            let again = Parser::default()
                .parse_form(encode_form(&batch).as_bytes())
                .expect("an encoded batch parses");
            assert_eq!(again, batch);
        }
    }
});
