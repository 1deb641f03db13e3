//! Each fixture body parses to the events recorded in `tests/golden/<fixture>.json`.
//!
//! After a deliberate change, regenerate the golden files and review the diff:
//! `UPDATE_GOLDEN=1 cargo test -p amocrm-webhook --test golden`

mod support;

use amocrm_webhook::types::AccountId;
use amocrm_webhook::{Parser, WebhookEvent, encode_form, parse_form};
use serde_json::Value;
use support::{describe_batch, fixtures, golden_dir};

#[test]
fn fixtures_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let fixtures = fixtures();
    assert!(fixtures.len() >= 9, "fixtures missing");
    let mut mismatches = Vec::new();
    for (name, body) in &fixtures {
        let batch = parse_form(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let actual = describe_batch(&batch);
        let path = golden_dir().join(format!("{name}.json"));
        if update {
            let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let expected: Value = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(e) => panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                path.display()
            ),
        };
        if actual != expected {
            mismatches.push(format!(
                "{name}:\nexpected {}\nactual   {}",
                serde_json::to_string(&expected).unwrap(),
                serde_json::to_string(&actual).unwrap()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 regenerates):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn fixtures_have_the_expected_event_types() {
    let expected = [
        ("contact_update", vec!["contact.update"]),
        ("lead_add", vec!["lead.add"]),
        ("lead_delete", vec!["lead.delete"]),
        ("lead_status", vec!["lead.status"]),
        ("leads_update_two", vec!["lead.update", "lead.update"]),
        ("message_add", vec!["message.add"]),
        ("note_add_lead", vec!["note.add"]),
        ("talk_add", vec!["conversation.add"]),
        ("unsorted_add", vec!["unsorted.add"]),
    ];
    let fixtures = fixtures();
    for (name, types) in expected {
        let (_, body) = fixtures.iter().find(|(n, _)| n == name).unwrap();
        let batch = parse_form(body).unwrap();
        let actual: Vec<_> = batch.events.iter().map(WebhookEvent::event_type).collect();
        assert_eq!(actual, types, "{name}");
        assert_eq!(batch.account.id, Some(AccountId(29071803)), "{name}");
        assert_eq!(
            batch.account.subdomain.as_deref(),
            Some("geodrive"),
            "{name}"
        );
        assert_eq!(
            batch.account.links.get("self").and_then(Value::as_str),
            Some("https://geodrive.amocrm.ru")
        );
    }
}

#[test]
fn fixtures_survive_serde_and_keep_their_hash() {
    for (name, body) in fixtures() {
        for event in parse_form(&body).unwrap().events {
            let stored = serde_json::to_string(&event).unwrap();
            let loaded: WebhookEvent = serde_json::from_str(&stored).unwrap();
            assert_eq!(loaded, event, "{name}");
            assert_eq!(loaded.event_hash(), event.event_hash(), "{name}");
        }
    }
}

#[test]
fn fixtures_round_trip_through_encoding() {
    for (name, body) in fixtures() {
        let batch = parse_form(&body).unwrap();
        let again = parse_form(encode_form(&batch).as_bytes()).unwrap();
        assert_eq!(again, batch, "{name}");
    }
}

#[test]
fn fixtures_parse_the_same_as_json() {
    let parser = Parser::default();
    for (name, body) in fixtures() {
        let batch = parse_form(&body).unwrap();
        // The same structure as JSON: account, then each section's tree.
        let mut tree = serde_json::Map::new();
        for event in &batch.events {
            let section = tree
                .entry(event.section.clone())
                .or_insert_with(|| Value::Object(Default::default()));
            let items = section
                .as_object_mut()
                .unwrap()
                .entry(event.action.as_str().to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            items.as_array_mut().unwrap().push(event.fields.to_value());
        }
        tree.insert(
            "account".into(),
            serde_json::to_value(&batch.account).unwrap(),
        );
        tree["account"]["_links"] = Value::Object(batch.account.links.clone());
        tree["account"]["id"] = Value::from(batch.account.id.unwrap().get());
        let json = serde_json::to_vec(&tree).unwrap();
        let from_json = parser.parse(Some("application/json"), &json).unwrap();
        assert_eq!(from_json.events, batch.events, "{name}");
        let hashes = |b: &amocrm_webhook::WebhookBatch| {
            b.events
                .iter()
                .map(WebhookEvent::event_hash)
                .collect::<Vec<_>>()
        };
        assert_eq!(hashes(&from_json), hashes(&batch), "{name}");
    }
}
