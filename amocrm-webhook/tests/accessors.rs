//! Typed accessors services read most: custom fields by id and by code, status, pipeline and
//! price, on the fixtures and on the custom-field shapes real deliveries use.

mod support;

use amocrm_webhook::types::{
    CompanyId, ContactId, CustomFieldId, EnumId, LeadId, NoteId, PipelineId, StatusId, UserId,
};
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
    assert_eq!(event.status_id(), Some(StatusId(142)));
    assert_eq!(event.old_status_id(), Some(StatusId(61208755)));
    assert_eq!(event.pipeline_id(), Some(PipelineId(7401234)));
    assert_eq!(event.old_pipeline_id(), Some(PipelineId(7401234)));
    assert_eq!(event.price(), Some(10500));
}

#[test]
fn lead_status_fixture_custom_fields_by_id() {
    let event = one_event(&fixture("lead_status"));

    let text = event
        .custom_field_by_id(CustomFieldId(771001))
        .expect("text field");
    assert_eq!(text.id, CustomFieldId(771001));
    assert_eq!(text.name.as_deref(), Some("RentProg ID"));
    assert_eq!(text.code, None);
    assert_eq!(text.text(), Some("RP-48213"));
    assert_eq!(text.enum_id(), None);
    assert_eq!(text.unix_seconds(), None);

    let select = event
        .custom_field_by_id(CustomFieldId(771002))
        .expect("select field");
    assert_eq!(select.name.as_deref(), Some("Класс авто"));
    assert_eq!(select.text(), Some("Эконом"));
    assert_eq!(select.enum_id(), Some(EnumId(551201)));
    assert_eq!(select.enum_ids().collect::<Vec<_>>(), [EnumId(551201)]);

    assert_eq!(event.custom_field_by_id(CustomFieldId(771003)), None);
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
    assert_eq!(phone.id, CustomFieldId(640101));
    assert_eq!(phone.name.as_deref(), Some("Телефон"));
    assert_eq!(phone.code.as_deref(), Some("PHONE"));
    // `%2B7` on the wire: the value's literal plus survives decoding.
    assert_eq!(phone.text(), Some("+7 (999) 123-45-67"));
    assert_eq!(phone.enum_id(), Some(EnumId(331001)));

    let email = event.custom_field_by_code("EMAIL").expect("EMAIL");
    assert_eq!(email.id, CustomFieldId(640103));
    assert_eq!(email.text(), Some("ivan.petrov@example.ru"));
    assert_eq!(event.custom_field_by_id(CustomFieldId(640103)), Some(email));

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
    assert_eq!(event.status_id(), Some(StatusId(143)));
    assert_eq!(event.pipeline_id(), Some(PipelineId(7401234)));
    assert_eq!(event.price(), None);
    assert_eq!(event.custom_field_by_id(CustomFieldId(771001)), None);
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
                let first = all.iter().find(|f| f.id == field.id);
                assert_eq!(
                    event.custom_field_by_id(field.id).as_ref(),
                    first,
                    "{name} {}",
                    field.id
                );
                seen += 1;
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
    let date = event
        .custom_field_by_id(CustomFieldId(78))
        .expect("date field");
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
        event
            .custom_field_by_id(CustomFieldId(78))
            .unwrap()
            .unix_seconds(),
        Some(1764000000)
    );
}

#[test]
fn date_that_is_not_a_number_is_none() {
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][id]=78\
         &leads[update][0][custom_fields][0][values][0]=24.11.2025",
    ));
    let date = event.custom_field_by_id(CustomFieldId(78)).unwrap();
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
    assert_eq!(radio.id, CustomFieldId(77));
    assert_eq!(radio.text(), Some("Да"));
    assert_eq!(radio.enum_id(), Some(EnumId(4001)));
    assert_eq!(radio.values.len(), 1);
    assert_eq!(event.custom_field_by_id(CustomFieldId(77)), Some(radio));
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
    let options = event
        .custom_field_by_id(CustomFieldId(79))
        .expect("multiselect");
    assert_eq!(
        options.enum_ids().collect::<Vec<_>>(),
        [EnumId(5001), EnumId(5003), EnumId(5007)]
    );
    assert_eq!(options.enum_id(), Some(EnumId(5001)));
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
    assert_eq!(
        phone.enum_ids().collect::<Vec<_>>(),
        [EnumId(331001), EnumId(331003)]
    );
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
    assert_eq!(
        event.custom_field_by_id(CustomFieldId(91)).unwrap().text(),
        Some("b")
    );
    assert_eq!(
        event.custom_field_by_id(CustomFieldId(90)).unwrap().text(),
        Some("a")
    );
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
    let field = event.custom_field_by_id(CustomFieldId(80)).unwrap();
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
    assert_eq!(event.custom_field_by_id(CustomFieldId(1)), None);
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
    assert_eq!(event.status_id(), Some(StatusId(142)));
    assert_eq!(event.pipeline_id(), Some(PipelineId(7401234)));
    assert_eq!(event.price(), Some(10500));
    assert_eq!(
        event
            .custom_field_by_id(CustomFieldId(771002))
            .unwrap()
            .enum_id(),
        Some(EnumId(551201))
    );
    assert_eq!(
        event
            .custom_field_by_id(CustomFieldId(78))
            .unwrap()
            .unix_seconds(),
        Some(1764000000)
    );
    let radio = event.custom_field_by_code("DELIVERY").unwrap();
    assert_eq!(
        (radio.text(), radio.enum_id()),
        (Some("Да"), Some(EnumId(4001)))
    );
}

#[test]
fn entity_ids_are_typed_by_the_entity() {
    let lead = one_event(&fixture("lead_status"));
    assert_eq!(lead.entity_id_as::<LeadId>(), Some(LeadId(31840021)));
    assert_eq!(lead.entity_id_as::<ContactId>(), None);
    assert_eq!(lead.entity_id_as::<CompanyId>(), None);

    let contact = one_event(&fixture("contact_update"));
    let id: ContactId = contact.entity_id().unwrap().parse().unwrap();
    assert_eq!(contact.entity_id_as::<ContactId>(), Some(id));
    assert_eq!(contact.entity_id_as::<LeadId>(), None);

    let company = one_event(&amo(
        "contacts[add][0][id]=9&contacts[add][0][type]=company",
    ));
    assert_eq!(company.entity_id_as::<CompanyId>(), Some(CompanyId(9)));
    assert_eq!(company.entity_id_as::<ContactId>(), None);

    let note = one_event(&amo(
        "leads[note][0][note][id]=44&leads[note][0][note][element_id]=31840021",
    ));
    assert_eq!(note.entity_id_as::<NoteId>(), Some(NoteId(44)));
    assert_eq!(
        note.entity_id_as::<LeadId>(),
        None,
        "the note's id, not its lead's"
    );

    let unparsable = one_event(&amo("leads[add][0][id]=abc"));
    assert_eq!(unparsable.entity_id(), Some("abc"));
    assert_eq!(unparsable.entity_id_as::<LeadId>(), None);
}

#[test]
fn users_are_typed() {
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][responsible_user_id]=8215487\
         &leads[update][0][created_user_id]=0&leads[update][0][modified_user_id]=x",
    ));
    assert_eq!(event.responsible_user_id(), Some(UserId(8215487)));
    assert_eq!(
        event.created_user_id(),
        Some(UserId(0)),
        "0 is amoCRM itself"
    );
    assert_eq!(event.modified_user_id(), None);
}

#[test]
fn an_enum_that_is_not_a_number_is_its_code() {
    let event = one_event(&amo(
        "contacts[update][0][id]=5&contacts[update][0][custom_fields][0][id]=640101\
         &contacts[update][0][custom_fields][0][code]=PHONE\
         &contacts[update][0][custom_fields][0][values][0][value]=111\
         &contacts[update][0][custom_fields][0][values][0][enum]=WORK",
    ));
    let phone = event.custom_field_by_code("PHONE").unwrap();
    assert_eq!(phone.enum_id(), None);
    assert_eq!(phone.values[0].enum_code.as_deref(), Some("WORK"));
    assert_eq!(phone.text(), Some("111"));
}

#[test]
fn a_field_without_a_numeric_id_is_skipped() {
    let event = one_event(&amo(
        "leads[update][0][id]=1&leads[update][0][custom_fields][0][code]=UTM_SOURCE\
         &leads[update][0][custom_fields][0][values][0][value]=yandex\
         &leads[update][0][custom_fields][1][id]=x&leads[update][0][custom_fields][1][code]=UTM_SOURCE\
         &leads[update][0][custom_fields][2][id]=7&leads[update][0][custom_fields][2][code]=UTM_SOURCE\
         &leads[update][0][custom_fields][2][values][0][value]=google",
    ));
    let ids: Vec<_> = event.custom_fields().iter().map(|f| f.id).collect();
    assert_eq!(ids, [CustomFieldId(7)]);
    let source = event.custom_field_by_code("UTM_SOURCE").unwrap();
    assert_eq!(
        (source.id, source.text()),
        (CustomFieldId(7), Some("google"))
    );
    // The skipped fields are still in the raw tree.
    assert_eq!(
        event
            .field(&["custom_fields", "0", "values", "0", "value"])
            .and_then(|v| v.as_str()),
        Some("yandex")
    );
}
