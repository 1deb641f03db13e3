//! Shapes seen in real deliveries (see the crate docs), each parsed without losing data.

mod support;

use amocrm_webhook::types::{
    AccountId, CompanyId, CustomFieldId, EnumId, LeadId, PipelineId, StatusId, TagId, UserId,
};
use amocrm_webhook::{Action, CustomFieldValue, Entity, WebhookEvent, parse_form};
use serde_json::json;
use support::amo;

fn one_event(readable: &str) -> WebhookEvent {
    let batch = parse_form(&amo(readable)).unwrap();
    assert_eq!(batch.events.len(), 1, "{readable}");
    batch.events.into_iter().next().unwrap()
}

fn values(pairs: &[(Option<&str>, Option<u64>)]) -> Vec<CustomFieldValue> {
    let batch = parse_form(&amo(&format!(
        "leads[add][0][id]=1&leads[add][0][custom_fields][0][id]=9&{}",
        pairs
            .iter()
            .enumerate()
            .map(|(i, (value, enum_id))| {
                let mut parts = Vec::new();
                if let Some(value) = value {
                    parts.push(format!(
                        "leads[add][0][custom_fields][0][values][{i}][value]={value}"
                    ));
                }
                if let Some(enum_id) = enum_id {
                    parts.push(format!(
                        "leads[add][0][custom_fields][0][values][{i}][enum]={enum_id}"
                    ));
                }
                parts.join("&")
            })
            .collect::<Vec<_>>()
            .join("&")
    )))
    .unwrap();
    batch.events[0].custom_fields().remove(0).values
}

#[test]
fn sparse_numeric_keys_stay_keys_in_first_seen_order() {
    let event = one_event(
        "contacts[update][0][id]=5&contacts[update][0][linked_leads_id][99999999][ID]=99999999\
         &contacts[update][0][linked_leads_id][10701093][ID]=10701093\
         &contacts[update][0][linked_leads_id][31840021][ID]=31840021",
    );
    assert_eq!(
        event.linked_lead_ids(),
        [LeadId(99999999), LeadId(10701093), LeadId(31840021)]
    );
    let keys: Vec<_> = event.fields.to_value()["linked_leads_id"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["99999999", "10701093", "31840021"]);
}

#[test]
fn skipped_and_unordered_indices_keep_every_item() {
    let batch = parse_form(&amo(
        "leads[update][3][id]=3&leads[update][0][id]=0&leads[update][7][id]=7",
    ))
    .unwrap();
    let ids: Vec<_> = batch
        .events
        .iter()
        .map(|e| e.entity_id().unwrap())
        .collect();
    assert_eq!(ids, ["3", "0", "7"]);

    let batch = parse_form(&amo("leads[update][1][id]=b&leads[update][0][id]=a")).unwrap();
    let ids: Vec<_> = batch
        .events
        .iter()
        .map(|e| e.entity_id().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"], "dense indices are read in index order");
}

#[test]
fn empty_brackets_append() {
    let event =
        one_event("leads[add][][id]=1&leads[add][0][tags][][name]=a&leads[add][0][tags][][name]=b");
    // `[]` then `[0]` address the same first item.
    let names: Vec<_> = event.tags().into_iter().map(|t| t.name.unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(event.entity_id(), Some("1"));
}

#[test]
fn repeated_empty_brackets_under_one_parent_make_new_items() {
    let event = one_event(
        "leads[add][0][id]=1&leads[add][0][tags][][id]=1&leads[add][0][tags][][name]=a\
         &leads[add][0][tags][][id]=2",
    );
    assert_eq!(
        event.fields.to_value()["tags"],
        json!([{"id": "1"}, {"name": "a"}, {"id": "2"}])
    );
}

#[test]
fn keys_sharing_a_prefix_and_keys_that_do_not() {
    // The parser reuses the parents of the previous key; these keys look alike but differ.
    let event = one_event(
        "leads[add][0][a][x]=1&leads[add][0][a][y]=2&leads[add][0][ab][x]=3\
         &leads[add][0][a]=4&leads[add][0][a][x][z]=5&leads[add][0][a]%5bx%5d=6",
    );
    assert_eq!(
        event.fields,
        json!({"a": {"x": {"": "6", "z": "5"}, "y": "2", "": "4"}, "ab": {"x": "3"}})
    );
}

#[test]
fn scalar_and_parent_keep_both() {
    let event = one_event("leads[add][0][id]=1&leads[add][0][x]=top&leads[add][0][x][y]=child");
    assert_eq!(
        event.fields.to_value()["x"],
        json!({"": "top", "y": "child"})
    );
    let event = one_event("leads[add][0][id]=1&leads[add][0][x][y]=child&leads[add][0][x]=top");
    assert_eq!(
        event.fields.to_value()["x"],
        json!({"y": "child", "": "top"})
    );
}

#[test]
fn radio_value_object_without_index() {
    let event = one_event(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][id]=77\
         &leads[update][0][custom_fields][0][values][value]=Yes\
         &leads[update][0][custom_fields][0][values][enum]=4001",
    );
    let field = &event.custom_fields()[0];
    assert_eq!(field.id, CustomFieldId(77));
    assert_eq!(field.values.len(), 1);
    assert_eq!(field.values[0].as_str(), Some("Yes"));
    assert_eq!(field.values[0].enum_id, Some(EnumId(4001)));
}

#[test]
fn date_field_is_a_bare_value() {
    let event = one_event(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][id]=78\
         &leads[update][0][custom_fields][0][values][0]=1764000000",
    );
    let field = &event.custom_fields()[0];
    assert_eq!(field.values.len(), 1);
    assert_eq!(field.values[0].as_str(), Some("1764000000"));
    assert_eq!(field.values[0].enum_id, None);
}

#[test]
fn multiselect_repeats_enum() {
    let values = values(&[(None, Some(1)), (None, Some(2)), (Some("x"), Some(3))]);
    let enums: Vec<_> = values.iter().map(|v| v.enum_id.unwrap().get()).collect();
    assert_eq!(enums, [1, 2, 3]);
    assert_eq!(values[2].as_str(), Some("x"));
}

#[test]
fn html_escapes_and_double_encoding_are_kept() {
    let event = one_event("leads[add][0][id]=1&leads[add][0][name]=A+%26amp%3B+B+%252B+C%2B");
    assert_eq!(event.name(), Some("A &amp; B %2B C+"));
}

#[test]
fn account_block_first_or_last() {
    let last = parse_form(&amo(
        "leads[add][0][id]=1&account[id]=5&account[subdomain]=x",
    ))
    .unwrap();
    let first = parse_form(&amo(
        "account[id]=5&account[subdomain]=x&leads[add][0][id]=1",
    ))
    .unwrap();
    assert_eq!(first, last);
    assert_eq!(first.events[0].account_id(), Some(AccountId(5)));
    assert_eq!(first.events[0].subdomain.as_deref(), Some("x"));
    assert_eq!(first.events[0].event_hash(), last.events[0].event_hash());
}

#[test]
fn account_with_only_a_subdomain() {
    let batch = parse_form(&amo("leads[add][0][id]=1&account[subdomain]=old")).unwrap();
    assert_eq!(batch.account.id, None);
    assert_eq!(batch.account.subdomain.as_deref(), Some("old"));
    assert_eq!(batch.events[0].account_id(), None);
    assert_eq!(batch.events[0].subdomain.as_deref(), Some("old"));
}

#[test]
fn account_id_falls_back_to_the_event_field() {
    let event = one_event("leads[add][0][id]=1&leads[add][0][account_id]=42");
    assert_eq!(event.account_id(), Some(AccountId(42)));
}

#[test]
fn odd_account_values_are_kept() {
    let batch = parse_form(&amo("leads[add][0][id]=1&account[id]=abc&account[extra]=z")).unwrap();
    assert_eq!(batch.account.id, None);
    assert_eq!(
        batch.account.extra,
        *json!({"id": "abc", "extra": "z"}).as_object().unwrap()
    );
}

#[test]
fn empty_values_are_none_in_accessors_but_kept_in_fields() {
    let event = one_event(
        "leads[update][0][id]=1&leads[update][0][name]=&leads[update][0][price]=\
         &leads[update][0][old_status_id]=&leads[update][0][responsible_user_id]=0",
    );
    assert_eq!(event.name(), None);
    assert_eq!(event.price(), None);
    assert_eq!(event.old_status_id(), None);
    assert_eq!(event.responsible_user_id(), Some(UserId(0)));
    assert_eq!(event.fields.to_value()["name"], "");
    assert_eq!(event.fields.to_value()["price"], "");
}

#[test]
fn key_without_equals_is_an_empty_value() {
    let event = one_event("leads[add][0][id]=1&leads[add][0][name]");
    assert_eq!(event.fields.to_value()["name"], "");
}

#[test]
fn unsorted_uses_uid_when_there_is_no_id() {
    let event = one_event(
        "unsorted[add][0][uid]=c8f1a5e27d114c559a6e2b1f0e9d3a10&unsorted[add][0][source]=form",
    );
    assert_eq!(event.entity, Entity::Unsorted);
    assert_eq!(event.entity_id(), Some("c8f1a5e27d114c559a6e2b1f0e9d3a10"));
}

#[test]
fn unsorted_delete_with_accept_result() {
    let event = one_event(
        "unsorted[delete][0][uid]=abc&unsorted[delete][0][action]=accept\
         &unsorted[delete][0][accept_result][leads][0]=31840026\
         &unsorted[delete][0][accept_result][contacts][0]=52110077",
    );
    assert_eq!(event.event_type(), "unsorted.delete");
    assert_eq!(event.entity_id(), Some("abc"));
    assert_eq!(
        event
            .field(&["accept_result", "leads", "0"])
            .and_then(|f| f.as_str()),
        Some("31840026")
    );
}

#[test]
fn talk_with_talk_id_only() {
    let event = one_event("talk[update][0][talk_id]=8841&talk[update][0][is_read]=1");
    assert_eq!(event.event_type(), "conversation.update");
    assert_eq!(event.entity_id(), Some("8841"));
    assert_eq!(event.talk_id(), Some(8841));
}

#[test]
fn message_without_any_entity_id() {
    let event = one_event(
        "message[add][0][chat_id]=6c1c&message[add][0][text]=hi&message[add][0][origin]=widget",
    );
    assert_eq!(event.event_type(), "message.add");
    assert_eq!(event.entity_id(), None);
    assert_eq!(event.chat_id(), Some("6c1c"));
    assert_eq!(event.element_id(), None);
}

#[test]
fn companies_under_contacts() {
    for action in ["add", "update", "restore", "delete"] {
        let event = one_event(&format!(
            "contacts[{action}][0][id]=7&contacts[{action}][0][type]=company"
        ));
        assert_eq!(event.entity, Entity::Company);
        assert_eq!(event.event_type(), format!("company.{action}"));
    }
    let event = one_event("companies[update][0][id]=7");
    assert_eq!(event.event_type(), "company.update");
    let event = one_event("contacts[delete][0][id]=7&contacts[delete][0][type]=contact");
    assert_eq!(event.event_type(), "contact.delete");
}

#[test]
fn notes_on_leads_contacts_and_companies() {
    let lead = one_event(
        "leads[note][0][note][id]=1&leads[note][0][note][element_id]=5&leads[note][0][note][element_type]=2",
    );
    assert_eq!(
        lead.entity,
        Entity::Note {
            parent: Box::new(Entity::Lead)
        }
    );
    assert_eq!(lead.action, Action::Note);
    assert_eq!(lead.event_type(), "note.add");
    assert_eq!(lead.entity_id(), Some("1"));
    assert_eq!(lead.element_id(), Some(5));

    let contact =
        one_event("contacts[note][0][note][id]=2&contacts[note][0][note][element_type]=1");
    assert_eq!(
        contact.entity,
        Entity::Note {
            parent: Box::new(Entity::Contact)
        }
    );

    let sibling = one_event("contacts[note][0][note][id]=3&contacts[note][0][type]=company");
    assert_eq!(
        sibling.entity,
        Entity::Note {
            parent: Box::new(Entity::Company)
        }
    );
    let by_element =
        one_event("contacts[note][0][note][id]=4&contacts[note][0][note][element_type]=3");
    assert_eq!(
        by_element.entity,
        Entity::Note {
            parent: Box::new(Entity::Company)
        }
    );
}

#[test]
fn note_without_id_and_with_text_dates() {
    let event = one_event(
        "leads[note][0][note][text]=hi&leads[note][0][note][date_create]=2025-11-24+18%3A26%3A40",
    );
    assert_eq!(event.entity_id(), None);
    assert_eq!(event.created_at(), None);
    assert_eq!(event.text("date_create"), Some("2025-11-24 18:26:40"));
}

#[test]
fn unknown_sections_and_actions_are_kept() {
    let batch = parse_form(&amo(
        "widgets[install][0][code]=w&leads[merge][0][id]=9&tasks[delete][0][id]=4\
         &customers[add][0][id]=1&catalogs[update][0][id]=2",
    ))
    .unwrap();
    let types: Vec<_> = batch.events.iter().map(WebhookEvent::event_type).collect();
    assert_eq!(
        types,
        [
            "widgets.install",
            "lead.merge",
            "task.delete",
            "customer.add",
            "catalog.update"
        ]
    );
    assert_eq!(batch.events[0].entity, Entity::Other("widgets".into()));
    assert_eq!(batch.events[1].action, Action::Other("merge".into()));
}

#[test]
fn non_event_keys_are_kept_in_unparsed() {
    let batch = parse_form(&amo("foo=1&leads[weird]=2&leads[add][0][id]=3")).unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!(
        serde_json::Value::Object(batch.unparsed),
        json!({"foo": "1", "leads": {"weird": "2"}})
    );
}

#[test]
fn several_sections_in_one_body() {
    let batch = parse_form(&amo(
        "leads[status][0][id]=1&leads[status][1][id]=2&contacts[update][0][id]=3\
         &leads[responsible][0][id]=1&account[id]=9",
    ))
    .unwrap();
    let types: Vec<_> = batch.events.iter().map(WebhookEvent::event_type).collect();
    assert_eq!(
        types,
        [
            "lead.status",
            "lead.status",
            "lead.responsible",
            "contact.update"
        ]
    );
    let hashes: std::collections::HashSet<_> =
        batch.events.iter().map(WebhookEvent::event_hash).collect();
    assert_eq!(hashes.len(), 4);
}

#[test]
fn identical_items_share_a_hash_and_others_do_not() {
    let batch = parse_form(&amo(
        "leads[add][0][id]=1&leads[add][1][id]=1&leads[add][2][id]=2",
    ))
    .unwrap();
    let hashes: Vec<_> = batch.events.iter().map(WebhookEvent::event_hash).collect();
    assert_eq!(hashes[0], hashes[1]);
    assert_ne!(hashes[0], hashes[2]);
}

#[test]
fn hash_ignores_key_order_but_not_values() {
    let a = one_event("leads[add][0][id]=1&leads[add][0][name]=x&leads[add][0][tags][0][id]=5");
    let b = one_event("leads[add][0][tags][0][id]=5&leads[add][0][name]=x&leads[add][0][id]=1");
    assert_eq!(a.event_hash(), b.event_hash());
    let c = one_event("leads[add][0][id]=1&leads[add][0][name]=y&leads[add][0][tags][0][id]=5");
    assert_ne!(a.event_hash(), c.event_hash());
    let d = one_event(
        "leads[update][0][id]=1&leads[update][0][name]=x&leads[update][0][tags][0][id]=5",
    );
    assert_ne!(a.event_hash(), d.event_hash());
}

#[test]
fn hash_separates_look_alike_trees() {
    // Without quoting these could serialize alike.
    let a = one_event("leads[add][0][a]=b%22%2C%22c&leads[add][0][id]=1");
    let b = one_event("leads[add][0][a]=b&leads[add][0][c]=&leads[add][0][id]=1");
    assert_ne!(a.event_hash(), b.event_hash());
    let c = one_event("leads[add][0][x][y]=1");
    let e = one_event("leads[add][0][x]=%7B%22y%22%3A%221%22%7D");
    assert_ne!(c.event_hash(), e.event_hash());
}

#[test]
fn typed_accessors() {
    let event = one_event(
        "leads[status][0][id]=1&leads[status][0][name]=N&leads[status][0][status_id]=142\
         &leads[status][0][old_status_id]=7&leads[status][0][pipeline_id]=3\
         &leads[status][0][old_pipeline_id]=2&leads[status][0][price]=-5\
         &leads[status][0][responsible_user_id]=11&leads[status][0][date_create]=100\
         &leads[status][0][last_modified]=200&leads[status][0][tags][0][id]=1\
         &leads[status][0][tags][0][name]=vip&leads[status][0][linked_company_id]=77\
         &leads[status][0][created_user_id]=12&leads[status][0][modified_user_id]=13",
    );
    assert_eq!(event.id_u64(), Some(1));
    assert_eq!(event.name(), Some("N"));
    assert_eq!(event.status_id(), Some(StatusId::WON));
    assert_eq!(event.old_status_id(), Some(StatusId(7)));
    assert_eq!(event.pipeline_id(), Some(PipelineId(3)));
    assert_eq!(event.old_pipeline_id(), Some(PipelineId(2)));
    assert_eq!(event.price(), Some(-5));
    assert_eq!(event.responsible_user_id(), Some(UserId(11)));
    assert_eq!(event.created_user_id(), Some(UserId(12)));
    assert_eq!(event.modified_user_id(), Some(UserId(13)));
    assert_eq!(event.created_at(), Some(100));
    assert_eq!(event.updated_at(), Some(200));
    assert_eq!(event.linked_company_id(), Some(CompanyId(77)));
    let tags = event.tags();
    assert_eq!(
        (tags[0].id, tags[0].name.as_deref()),
        (Some(TagId(1)), Some("vip"))
    );
    assert_eq!(
        event.field(&["tags", "0", "name"]).and_then(|f| f.as_str()),
        Some("vip")
    );
    assert_eq!(event.field(&["tags", "1"]), None);

    let event = one_event(
        "leads[add][0][created_at]=5&leads[add][0][date_create]=1&leads[add][0][updated_at]=6&leads[add][0][last_modified]=2",
    );
    assert_eq!((event.created_at(), event.updated_at()), (Some(5), Some(6)));
    let event = one_event("leads[add][0][tags]=a,+b");
    let names: Vec<_> = event.tags().into_iter().map(|t| t.name.unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn bare_delete_events() {
    let lead = one_event(
        "leads[delete][0][id]=1&leads[delete][0][status_id]=143&leads[delete][0][pipeline_id]=2",
    );
    assert_eq!(lead.updated_at(), None);
    let task = one_event("tasks[delete][0][id]=4");
    assert_eq!(task.event_type(), "task.delete");
    assert_eq!(task.entity_id(), Some("4"));
}

#[test]
fn content_type_dispatch() {
    let parser = amocrm_webhook::Parser::default();
    let form = amo("leads[add][0][id]=1");
    let json = br#"  {"leads":{"add":[{"id":1}]}}"#;
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        Some("Application/X-WWW-Form-Urlencoded"),
        None,
    ] {
        assert_eq!(parser.parse(content_type, &form).unwrap().events.len(), 1);
    }
    for content_type in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        None,
    ] {
        let batch = parser.parse(content_type, json).unwrap();
        assert_eq!(batch.events[0].entity_id(), Some("1"));
    }
}

#[test]
fn an_item_that_is_a_scalar_or_a_list_becomes_an_object() {
    let batch = parse_form(&amo(
        "leads[add][0]=7&leads[add][1][1]=b&leads[add][1][0]=a",
    ))
    .unwrap();
    assert_eq!(batch.events[0].fields, json!({"": "7"}));
    assert_eq!(batch.events[1].fields, json!({"0": "a", "1": "b"}));
    let keys: Vec<_> = batch.events[1]
        .fields
        .entries()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(keys, [Some("0"), Some("1")]);
    // The same items as JSON give the same events.
    let json = br#"{"leads":{"add":[{"":"7"},{"0":"a","1":"b"}]}}"#;
    let from_json = amocrm_webhook::parse_json(json).unwrap();
    assert_eq!(from_json.events, batch.events);
}
