//! Property tests: no input panics; generated events survive encoding, JSON and serde;
//! the hash ignores key order and sees every value.

use amocrm_webhook::types::AccountId;
use amocrm_webhook::{
    Account, Parser, WebhookBatch, WebhookEvent, encode_form, parse_form, parse_json,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const SECTIONS: &[&str] = &[
    "leads",
    "contacts",
    "companies",
    "customers",
    "tasks",
    "unsorted",
    "talk",
    "message",
    "widgets",
];
const ACTIONS: &[&str] = &[
    "add", "update", "delete", "restore", "status", "note", "merge",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_]{1,10}",
        1 => "[а-яё ]{1,6}",
        // Ids used as keys, as in `linked_leads_id[10701093]`: numeric but never a dense list.
        1 => (1000u64..100_000_000).prop_map(|id| id.to_string()),
        1 => Just("type".to_owned()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,12}",
        Just("company".to_owned()),
        Just("a&amp;b %2B+".to_owned()),
    ]
    .prop_map(Value::String)
}

/// Trees in the shape parsing produces: no empty containers, lists as arrays.
fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Value::Array),
            object(inner),
        ]
    })
}

fn object(inner: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::vec((name(), inner), 1..6)
        .prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

fn account() -> impl Strategy<Value = Account> {
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of("[a-z0-9-]{1,12}"),
        any::<bool>(),
    )
        .prop_map(|(id, subdomain, with_links)| {
            let mut account = Account {
                id: id.map(AccountId),
                subdomain: subdomain.clone(),
                ..Account::default()
            };
            if with_links {
                account.links.insert(
                    "self".into(),
                    json!(format!(
                        "https://{}.amocrm.ru",
                        subdomain.unwrap_or_default()
                    )),
                );
            }
            account
        })
}

fn batch() -> impl Strategy<Value = WebhookBatch> {
    let item = (
        prop::sample::select(SECTIONS),
        prop::sample::select(ACTIONS),
        object(tree()),
    );
    (account(), prop::collection::vec(item, 1..6)).prop_map(|(account, items)| {
        let events = items
            .into_iter()
            .map(|(section, action, fields)| WebhookEvent::new(&account, section, action, fields))
            .collect();
        WebhookBatch {
            account,
            events,
            unparsed: Map::new(),
        }
    })
}

/// The order parsing reads events in: by section, then action, each in first-seen order.
fn grouped(events: &[WebhookEvent]) -> Vec<WebhookEvent> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    let mut sections: Vec<&str> = Vec::new();
    for event in events {
        if !sections.contains(&event.section.as_str()) {
            sections.push(&event.section);
        }
        let key = (event.section.as_str(), event.action.as_str());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut out = Vec::new();
    for section in sections {
        for key in keys.iter().filter(|(s, _)| *s == section) {
            out.extend(
                events
                    .iter()
                    .filter(|e| (e.section.as_str(), e.action.as_str()) == *key)
                    .cloned(),
            );
        }
    }
    out
}

fn as_json_body(batch: &WebhookBatch) -> Vec<u8> {
    let mut root = Map::new();
    for event in grouped(&batch.events) {
        let section = root
            .entry(event.section.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        let items = section
            .as_object_mut()
            .unwrap()
            .entry(event.action.as_str().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        items.as_array_mut().unwrap().push(event.fields.to_value());
    }
    let mut account = Map::new();
    if let Some(id) = batch.account.id {
        account.insert("id".into(), json!(id));
    }
    if let Some(subdomain) = &batch.account.subdomain {
        account.insert("subdomain".into(), json!(subdomain));
    }
    if !batch.account.links.is_empty() {
        account.insert("_links".into(), Value::Object(batch.account.links.clone()));
    }
    if !account.is_empty() {
        root.insert("account".into(), Value::Object(account));
    }
    serde_json::to_vec(&root).unwrap()
}

/// Rebuilds every object with its keys reversed.
fn reverse_keys(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .rev()
                .map(|(k, v)| (k.clone(), reverse_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(reverse_keys).collect()),
        leaf => leaf.clone(),
    }
}

/// Appends `suffix` to the `n`-th leaf (depth first), if there is one.
fn change_leaf(value: &mut Value, n: &mut usize, suffix: &str) -> bool {
    match value {
        Value::String(text) => {
            if *n == 0 {
                text.push_str(suffix);
                return true;
            }
            *n -= 1;
            false
        }
        Value::Array(items) => items.iter_mut().any(|v| change_leaf(v, n, suffix)),
        Value::Object(object) => object.values_mut().any(|v| change_leaf(v, n, suffix)),
        _ => false,
    }
}

fn body_fragments() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop::sample::select(vec![
        "%5B", "%5D", "[", "]", "&", "=", "%", "+", "%2", "%FF", "%C3", "%D0%98", "a", "0",
        "99999999", "leads", "contacts", "note", "add", "id", "account", "type", "company", "{",
        "}", "\"", ":", ",", " ",
    ]);
    prop::collection::vec(fragment, 0..80).prop_map(|parts| parts.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let parser = Parser::default();
        let _ = parser.parse_form(&body);
        let _ = parser.parse_json(&body);
        let _ = parser.parse(None, &body);
    }

    #[test]
    fn arbitrary_bracket_soup_never_panics(body in body_fragments(), depth in 1usize..6, keys in 1usize..20) {
        let parser = Parser::new(amocrm_webhook::Limits { max_body_bytes: 4096, max_keys: keys, max_depth: depth });
        let _ = parser.parse(None, &body);
        let results = [parser.parse_form(&body), Parser::default().parse_form(&body)];
        for batch in results.into_iter().flatten() {
            for event in &batch.events {
                prop_assert_eq!(event.event_hash().len(), 64);
                let _ = (event.custom_fields(), event.tags(), event.linked_lead_ids(), event.event_type());
            }
            // Whatever a form body parsed to re-encodes to the same batch.
            let again = parse_form(encode_form(&batch).as_bytes()).unwrap();
            prop_assert_eq!(again, batch);
        }
    }

    #[test]
    fn generated_events_round_trip_through_form_encoding(batch in batch()) {
        let body = encode_form(&batch);
        let parsed = parse_form(body.as_bytes()).unwrap();
        prop_assert_eq!(&parsed.account, &batch.account);
        prop_assert_eq!(parsed.events, grouped(&batch.events));
    }

    #[test]
    fn generated_events_round_trip_through_json(batch in batch()) {
        let parsed = parse_json(&as_json_body(&batch)).unwrap();
        prop_assert_eq!(&parsed.account, &batch.account);
        prop_assert_eq!(parsed.events, grouped(&batch.events));
    }

    #[test]
    fn serde_round_trip_keeps_event_and_hash(batch in batch()) {
        for event in &batch.events {
            let loaded: WebhookEvent = serde_json::from_str(&serde_json::to_string(event).unwrap()).unwrap();
            prop_assert_eq!(&loaded, event);
            prop_assert_eq!(loaded.event_hash(), event.event_hash());
        }
        let loaded: WebhookBatch = serde_json::from_str(&serde_json::to_string(&batch).unwrap()).unwrap();
        prop_assert_eq!(loaded, batch);
    }

    #[test]
    fn hash_ignores_key_order(batch in batch()) {
        for event in &batch.events {
            let mut reordered = event.clone();
            reordered.fields = reverse_keys(&event.fields.to_value()).into();
            prop_assert_eq!(reordered.event_hash(), event.event_hash());
            // And the reordered form body parses to the same hash.
            let reparsed = parse_form(encode_form(&WebhookBatch {
                account: batch.account.clone(),
                events: vec![reordered],
                unparsed: Map::new(),
            }).as_bytes()).unwrap();
            prop_assert_eq!(reparsed.events[0].event_hash(), event.event_hash());
        }
    }

    #[test]
    fn any_changed_value_changes_the_hash(batch in batch(), pick in any::<prop::sample::Index>(), suffix in "[a-z\"\\\\,:]{1,3}") {
        let event = &batch.events[0];
        let leaves = {
            let mut count = usize::MAX;
            let mut probe = event.fields.to_value();
            // Count leaves by asking for one past the end.
            change_leaf(&mut probe, &mut count, "");
            usize::MAX - count
        };
        let mut n = pick.index(leaves.max(1));
        let mut changed = event.clone();
        let mut fields = event.fields.to_value();
        prop_assume!(change_leaf(&mut fields, &mut n, &suffix));
        changed.fields = fields.into();
        prop_assert_ne!(changed.event_hash(), event.event_hash());

        let mut other_account = event.clone();
        other_account.account_id = Some(AccountId(
            event.account_id.map_or(0, |id| id.get().wrapping_add(1)),
        ));
        prop_assert_ne!(other_account.event_hash(), event.event_hash());
    }

    #[test]
    fn distinct_events_of_one_body_have_distinct_hashes(batch in batch()) {
        let parsed = parse_form(encode_form(&batch).as_bytes()).unwrap();
        for (i, a) in parsed.events.iter().enumerate() {
            for b in &parsed.events[i + 1..] {
                prop_assert_eq!(a == b, a.event_hash() == b.event_hash());
            }
        }
    }
}
