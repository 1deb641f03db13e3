//! Typed accessors services read most: custom fields by id and by code, status, pipeline and
//! price, on the fixtures and on the custom-field shapes real deliveries use.

mod support;

use amocrm_webhook::{WebhookEvent, parse_form, parse_json};
use serde_json::json;
use support::{amo, fixture, fixtures};

fn one_event(body: &[u8]) -> WebhookEvent {
    let batch = parse_form(body).unwrap();
    assert_eq!(batch.events.len(), 1);
    batch.events.into_iter().next().unwrap()
}

#[test]
fn lead_status_fixture_status_pipeline_and_price() {
    let event = one_event(&fixture("lead_status"));
    assert_eq!(event.status_id(), Some(142));
    assert_eq!(event.old_status_id(), Some(61208755));
    assert_eq!(event.pipeline_id(), Some(7401234));
    assert_eq!(event.old_pipeline_id(), Some(7401234));
    assert_eq!(event.price(), Some(10500));
}

#[test]
fn lead_status_fixture_custom_fields_by_id() {
    let event = one_event(&fixture("lead_status"));

    let text = event.custom_field_by_id(771001).expect("text field");
    assert_eq!(text.id, Some(771001));
    assert_eq!(text.name.as_deref(), Some("RentProg ID"));
    assert_eq!(text.code, None);
    assert_eq!(text.text(), Some("RP-48213"));
    assert_eq!(text.enum_id(), None);
    assert_eq!(text.unix_seconds(), None);

    let select = event.custom_field_by_id(771002).expect("select field");
    assert_eq!(select.name.as_deref(), Some("Класс авто"));
    assert_eq!(select.text(), Some("Эконом"));
    assert_eq!(select.enum_id(), Some(551201));
    assert_eq!(select.enum_ids().collect::<Vec<_>>(), [551201]);

    assert_eq!(event.custom_field_by_id(771003), None);
    assert_eq!(
        event.custom_field_by_code("PHONE"),
        None,
        "lead fields have no code"
    );
}

#[test]
fn contact_update_fixture_custom_fields_by_code() {
    let event = one_event(&fixture("contact_update"));

    let phone = event.custom_field_by_code("PHONE").expect("PHONE");
    assert_eq!(phone.id, Some(640101));
    assert_eq!(phone.name.as_deref(), Some("Телефон"));
    assert_eq!(phone.code.as_deref(), Some("PHONE"));
    // `%2B7` on the wire: the value's literal plus survives decoding.
    assert_eq!(phone.text(), Some("+7 (999) 123-45-67"));
    assert_eq!(phone.enum_id(), Some(331001));

    let email = event.custom_field_by_code("EMAIL").expect("EMAIL");
    assert_eq!(email.id, Some(640103));
    assert_eq!(email.text(), Some("ivan.petrov@example.ru"));
    assert_eq!(event.custom_field_by_id(640103), Some(email));

    assert_eq!(
        event.custom_field_by_code("phone"),
        None,
        "codes compare exactly"
    );
    assert_eq!(event.custom_field_by_code("IM"), None);
    assert_eq!(event.custom_field_by_code(""), None);
}

#[test]
fn delete_carries_status_and_pipeline_only() {
    let event = one_event(&fixture("lead_delete"));
    assert_eq!(event.status_id(), Some(143));
    assert_eq!(event.pipeline_id(), Some(7401234));
    assert_eq!(event.price(), None);
    assert_eq!(event.custom_field_by_id(771001), None);
    assert_eq!(event.custom_field_by_code("PHONE"), None);
}

#[test]
fn lookups_agree_with_custom_fields_on_every_fixture() {
    let mut seen = 0;
    for (name, body) in fixtures() {
        let batch = parse_form(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        for event in &batch.events {
            let all = event.custom_fields();
            for field in &all {
                if let Some(id) = field.id {
                    let first = all.iter().find(|f| f.id == Some(id));
                    assert_eq!(event.custom_field_by_id(id).as_ref(), first, "{name} {id}");
                    seen += 1;
                }
                if let Some(code) = &field.code {
                    let first = all.iter().find(|f| f.code.as_ref() == Some(code));
                    assert_eq!(event.custom_field_by_code(code).as_ref(), first, "{name}");
                }
            }
        }
    }
    assert!(seen >= 10, "the fixtures carry custom fields ({seen} seen)");
}

#[test]
fn date_field_is_unix_seconds_without_a_value_leaf() {
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][id]=78\
         &leads[update][0][custom_fields][0][name]=Дата+выдачи\
         &leads[update][0][custom_fields][0][values][0]=1764000000",
    ));
    let date = event.custom_field_by_id(78).expect("date field");
    assert_eq!(date.name.as_deref(), Some("Дата выдачи"));
    assert_eq!(date.unix_seconds(), Some(1764000000));
    assert_eq!(date.text(), Some("1764000000"));
    assert_eq!(date.enum_id(), None);

    // The same field with a `[value]` leaf reads the same.
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][id]=78\
         &leads[update][0][custom_fields][0][values][0][value]=1764000000",
    ));
    assert_eq!(
        event.custom_field_by_id(78).unwrap().unix_seconds(),
        Some(1764000000)
    );
}

#[test]
fn date_that_is_not_a_number_is_none() {
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][id]=78\
         &leads[update][0][custom_fields][0][values][0]=24.11.2025",
    ));
    let date = event.custom_field_by_id(78).unwrap();
    assert_eq!(date.unix_seconds(), None);
    assert_eq!(date.text(), Some("24.11.2025"), "the text is still there");
}

#[test]
fn radio_value_object_without_index() {
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][id]=77\
         &leads[update][0][custom_fields][0][code]=DELIVERY\
         &leads[update][0][custom_fields][0][values][value]=Да\
         &leads[update][0][custom_fields][0][values][enum]=4001",
    ));
    let radio = event.custom_field_by_code("DELIVERY").expect("radio field");
    assert_eq!(radio.id, Some(77));
    assert_eq!(radio.text(), Some("Да"));
    assert_eq!(radio.enum_id(), Some(4001));
    assert_eq!(radio.values.len(), 1);
    assert_eq!(event.custom_field_by_id(77), Some(radio));
}

#[test]
fn multiselect_repeats_enum() {
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][id]=79\
         &leads[update][0][custom_fields][0][values][0][enum]=5001\
         &leads[update][0][custom_fields][0][values][1][enum]=5003\
         &leads[update][0][custom_fields][0][values][2][value]=GPS\
         &leads[update][0][custom_fields][0][values][2][enum]=5007",
    ));
    let options = event.custom_field_by_id(79).expect("multiselect");
    assert_eq!(options.enum_ids().collect::<Vec<_>>(), [5001, 5003, 5007]);
    assert_eq!(options.enum_id(), Some(5001));
    assert_eq!(options.texts().collect::<Vec<_>>(), ["GPS"]);
    assert_eq!(
        options.text(),
        Some("GPS"),
        "the first value that has a text"
    );
}

#[test]
fn multitext_keeps_every_value() {
    let event = one_event(&amo(
        "contacts[update][0][id]=5&contacts[update][0][custom_fields][0][id]=640101\
         &contacts[update][0][custom_fields][0][code]=PHONE\
         &contacts[update][0][custom_fields][0][values][0][value]=111\
         &contacts[update][0][custom_fields][0][values][0][enum]=331001\
         &contacts[update][0][custom_fields][0][values][1][value]=222\
         &contacts[update][0][custom_fields][0][values][1][enum]=331003",
    ));
    let phone = event.custom_field_by_code("PHONE").unwrap();
    assert_eq!(phone.texts().collect::<Vec<_>>(), ["111", "222"]);
    assert_eq!(phone.enum_ids().collect::<Vec<_>>(), [331001, 331003]);
}

#[test]
fn sparse_field_indices_are_found() {
    // Not keyed 0..n, so the fields stay an object keyed by index.
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][custom_fields][3][id]=90\
         &leads[update][0][custom_fields][3][values][0][value]=a\
         &leads[update][0][custom_fields][7][id]=91\
         &leads[update][0][custom_fields][7][values][0][value]=b",
    ));
    assert_eq!(event.custom_field_by_id(91).unwrap().text(), Some("b"));
    assert_eq!(event.custom_field_by_id(90).unwrap().text(), Some("a"));
}

#[test]
fn repeated_id_gives_the_first_and_empty_values_are_none() {
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][id]=80\
         &leads[update][0][custom_fields][0][code]=\
         &leads[update][0][custom_fields][0][values][0][value]=\
         &leads[update][0][custom_fields][1][id]=80\
         &leads[update][0][custom_fields][1][values][0][value]=second",
    ));
    let field = event.custom_field_by_id(80).unwrap();
    assert_eq!(field.code, None);
    assert_eq!(field.text(), None, "an empty value has no text");
    assert_eq!(field.unix_seconds(), None);
    assert_eq!(event.custom_field_by_code(""), None);
}

#[test]
fn empty_or_unparsable_numbers_are_none() {
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][status_id]=&leads[update][0][pipeline_id]=x\
         &leads[update][0][price]=12.5",
    ));
    assert_eq!(event.status_id(), None);
    assert_eq!(event.pipeline_id(), None);
    assert_eq!(event.price(), None);
    assert_eq!(event.custom_field_by_id(1), None);
}

#[test]
fn json_bodies_read_the_same() {
    let body = json!({
        "leads": {"status": [{
            "id": 31840021,
            "status_id": 142,
            "pipeline_id": 7401234,
            "price": 10500,
            "custom_fields": [
                {"id": 771002, "name": "Класс авто", "values": [{"value": "Эконом", "enum": 551201}]},
                {"id": 78, "values": [1764000000]},
                {"id": 77, "code": "DELIVERY", "values": {"value": "Да", "enum": 4001}}
            ]
        }]},
        "account": {"id": 29071803, "subdomain": "geodrive"}
    });
    let batch = parse_json(body.to_string().as_bytes()).unwrap();
    let event = &batch.events[0];
    assert_eq!(event.status_id(), Some(142));
    assert_eq!(event.pipeline_id(), Some(7401234));
    assert_eq!(event.price(), Some(10500));
    assert_eq!(
        event.custom_field_by_id(771002).unwrap().enum_id(),
        Some(551201)
    );
    assert_eq!(
        event.custom_field_by_id(78).unwrap().unix_seconds(),
        Some(1764000000)
    );
    let radio = event.custom_field_by_code("DELIVERY").unwrap();
    assert_eq!((radio.text(), radio.enum_id()), (Some("Да"), Some(4001)));
}
