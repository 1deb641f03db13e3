//! Every endpoint's path, query encoding, headers and decoding, against documented bodies.

mod support;

use amocrm_client::{
    CompanyId, ContactId, ContactWith, CustomFieldId, CustomFieldsExt, EntityType, EnumId, Error,
    EventId, EventType, EventsFilter, FieldType, LeadId, LeadWith, LeadsFilter, NoteType,
    NotesFilter, Order, OrderField, PipelineId, StatusId, TimeRange, UserId, WebhookSetting,
};
use futures::TryStreamExt;
use serde_json::json;
use support::*;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn get_lead_sends_token_and_with_and_keeps_raw_json() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads/17657"))
        .and(query_is("with=contacts,loss_reason"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(json("lead.json"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let lead = client
        .leads()
        .get(LeadId(17657), &[LeadWith::Contacts, LeadWith::LossReason])
        .await
        .unwrap();

    assert_eq!(lead.id, LeadId(17657));
    assert_eq!(lead.name, "Тестовая сделка");
    assert_eq!(lead.price, Some(25000));
    assert_eq!(lead.status_id, Some(StatusId(2030)));
    assert_eq!(lead.pipeline_id, Some(PipelineId(1113)));
    assert_eq!(lead.responsible_user_id, Some(UserId(321123)));
    assert_eq!(lead.updated_at, Some(1588241643));
    assert_eq!(lead.closed_at, None);
    assert!(!lead.is_deleted);
    assert_eq!(
        lead.contact_ids(),
        vec![ContactId(7143621), ContactId(7143599)],
        "main contact first"
    );
    assert_eq!(lead.main_contact_id(), Some(ContactId(7143621)));
    assert_eq!(lead.embedded.companies[0].id, CompanyId(40401297));
    assert_eq!(lead.embedded.tags[0].name, "Тег для примера");

    let tariff = lead.custom_field_by_code("tariff").unwrap();
    assert_eq!(tariff.field_type, Some(FieldType::Select));
    assert_eq!(tariff.first().unwrap().enum_id, Some(EnumId(4035)));
    assert_eq!(tariff.first_text().as_deref(), Some("Премиум"));
    let date = lead.custom_field(CustomFieldId(1278898021)).unwrap();
    assert_eq!(date.first_text().as_deref(), Some("2020-05-08"));
    assert!(lead.custom_fields_values.field(CustomFieldId(1)).is_none());

    // The raw JSON is exactly what was sent, unknown fields included.
    assert_eq!(lead.raw(), &fixture("lead.json"));
    assert_eq!(lead.raw()["is_price_modified_by_robot"], json!(false));
    assert_eq!(serde_json::to_value(&lead).unwrap(), fixture("lead.json"));

    let usage = client.usage();
    assert_eq!(usage.count("GET /api/v4/leads/{id}", 200), 1);
    assert_eq!(usage.total_requests(), 1);
}

#[tokio::test]
async fn missing_lead_is_not_found_for_404_and_204() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads/1"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/leads/2"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let client = client(&server);

    let err = client.leads().get(LeadId(1), &[]).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { endpoint } if endpoint == "GET /api/v4/leads/{id}"),
        "{err}"
    );
    assert!(matches!(
        client.leads().get(LeadId(2), &[]).await,
        Err(Error::NotFound { .. })
    ));
    assert!(client.leads().find(LeadId(1), &[]).await.unwrap().is_none());
    assert!(client.leads().find(LeadId(2), &[]).await.unwrap().is_none());
    let usage = client.usage();
    assert_eq!(usage.count("GET /api/v4/leads/{id}", 404), 2);
    assert_eq!(usage.count("GET /api/v4/leads/{id}", 204), 2);
}

#[tokio::test]
async fn get_many_encodes_ids_as_php_array() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads"))
        .and(query_is(
            "filter[id][]=1&filter[id][]=2&with=contacts&limit=250&page=1",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(leads_page([1, 2])))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    // Duplicates are asked for once.
    let leads = client
        .leads()
        .get_many(&[LeadId(1), LeadId(2), LeadId(1)], &[LeadWith::Contacts])
        .await
        .unwrap();
    assert_eq!(
        leads.iter().map(|l| l.id).collect::<Vec<_>>(),
        [LeadId(1), LeadId(2)]
    );
}

#[tokio::test]
async fn get_many_of_600_ids_takes_3_requests() {
    let server = MockServer::start().await;
    for (count, first) in [(250usize, 1u64), (250, 251), (100, 501)] {
        Mock::given(path("/api/v4/leads"))
            .and(IdCount(count))
            .and(query_param("filter[id][]", first.to_string()))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(leads_page(first..first + count as u64)),
            )
            .expect(1)
            .mount(&server)
            .await;
    }
    let client = client(&server);
    let ids: Vec<LeadId> = (1..=600).map(LeadId).collect();

    let leads = client.leads().get_many(&ids, &[]).await.unwrap();

    assert_eq!(leads.len(), 600);
    assert_eq!(client.usage().count("GET /api/v4/leads", 200), 3);
}

#[tokio::test]
async fn get_many_with_no_match_is_empty_on_204() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let leads = client(&server)
        .leads()
        .get_many(&[LeadId(9)], &[])
        .await
        .unwrap();
    assert!(leads.is_empty());
    assert!(
        client(&server)
            .leads()
            .get_many(&[], &[])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn list_streams_three_pages() {
    let server = MockServer::start().await;
    for page in 1..=3 {
        Mock::given(path("/api/v4/leads"))
            .and(query_is(&format!(
                "filter[updated_at][from]=1585299171&with=contacts&order[updated_at]=asc&limit=2&page={page}"
            )))
            .respond_with(json(&format!("leads_page{page}.json")))
            // Page 2 is fetched again below on its own.
            .expect(if page == 2 { 2 } else { 1 })
            .mount(&server)
            .await;
    }
    let client = client(&server);
    let filter = LeadsFilter {
        updated_at: Some(TimeRange {
            from: Some(1585299171),
            to: None,
        }),
        with: vec![LeadWith::Contacts],
        order: Some(Order::ascending(OrderField::UpdatedAt)),
        limit: Some(2),
        ..LeadsFilter::default()
    };

    let leads: Vec<_> = client
        .leads()
        .list(filter.clone())
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        leads.iter().map(|l| l.id.0).collect::<Vec<_>>(),
        [19619001, 19619002, 19619003, 19619004, 19619005]
    );
    assert_eq!(leads[0].main_contact_id(), Some(ContactId(3001)));

    let second = client.leads().list(filter).page(2).await.unwrap();
    assert_eq!(second.page, 2);
    assert!(second.has_next);
    assert_eq!(second.items.len(), 2);
}

#[tokio::test]
async fn list_ends_on_204() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads"))
        .and(query_param("page", "1"))
        .respond_with(json("leads_page1.json"))
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/leads"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    // The stream owns its client, so it can run on another task.
    let list = client(&server).leads().list(LeadsFilter::default());
    let leads = tokio::spawn(list.all()).await.unwrap().unwrap();
    assert_eq!(leads.len(), 2);
}

#[tokio::test]
async fn leads_filter_encodes_statuses_and_search() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads"))
        .and(query_is(
            "filter[id][]=5&query=%D0%98%D0%B2%D0%B0%D0%BD%20%2B7&filter[pipeline_id][]=3104455\
             &filter[statuses][0][pipeline_id]=3104455&filter[statuses][0][status_id]=142\
             &filter[responsible_user_id][]=504141&filter[created_at][from]=1&filter[created_at][to]=2\
             &filter[price][from]=1000&limit=250&page=1",
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let filter = LeadsFilter {
        ids: vec![LeadId(5)],
        query: Some("Иван +7".into()),
        pipeline_ids: vec![PipelineId(3104455)],
        statuses: vec![(PipelineId(3104455), StatusId(142))],
        responsible_user_ids: vec![UserId(504141)],
        created_at: Some(TimeRange {
            from: Some(1),
            to: Some(2),
        }),
        extra: vec![("filter[price][from]".into(), "1000".into())],
        ..LeadsFilter::default()
    };
    let page = client(&server).leads().list(filter).page(1).await.unwrap();
    assert!(page.items.is_empty());
}

#[tokio::test]
async fn contacts_get_many_and_phones() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/contacts"))
        .and(query_is(
            "filter[id][]=7143599&filter[id][]=7143621&with=leads&limit=250&page=1",
        ))
        .respond_with(json("contacts.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/contacts/7143599"))
        .and(query_is(""))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("contacts.json")["_embedded"]["contacts"][0].clone()),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let contacts = client
        .contacts()
        .get_many(
            &[ContactId(7143599), ContactId(7143621)],
            &[ContactWith::Leads],
        )
        .await
        .unwrap();
    assert_eq!(contacts.len(), 2);
    let ivan = &contacts[0];
    assert_eq!(ivan.name, "Иван Иванов");
    assert_eq!(ivan.first_name.as_deref(), Some("Иван"));
    assert_eq!(ivan.last_name.as_deref(), Some("Иванов"));
    assert_eq!(ivan.phones(), ["+79123456789", "+79001112233"]);
    assert_eq!(ivan.emails(), ["ivan@example.com"]);
    let phone = ivan.custom_field_by_code("PHONE").unwrap();
    assert_eq!(phone.values[1].enum_code.as_deref(), Some("MOB"));
    assert!(contacts[1].custom_fields_values.is_none());
    assert!(contacts[1].phones().is_empty());

    let one = client
        .contacts()
        .get(ContactId(7143599), &[])
        .await
        .unwrap();
    assert_eq!(&one, ivan);
}

#[tokio::test]
async fn companies_get_many() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/companies"))
        .and(query_is("filter[id][]=40401297&limit=250&page=1"))
        .respond_with(json("companies.json"))
        .expect(1)
        .mount(&server)
        .await;
    let companies = client(&server)
        .companies()
        .get_many(&[CompanyId(40401297)], &[])
        .await
        .unwrap();
    assert_eq!(companies[0].name, "ООО Пример");
}

#[tokio::test]
async fn notes_by_filter_and_per_entity() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads/notes"))
        .and(query_is(
            "filter[entity_id][]=26050863&filter[note_type][]=common&filter[note_type][]=call_in&limit=250&page=1",
        ))
        .respond_with(json("notes.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/contacts/7143599/notes"))
        .and(query_is("limit=250&page=1"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let notes = client
        .notes(EntityType::Leads)
        .list(NotesFilter {
            entity_ids: vec![26050863],
            note_types: vec![NoteType::Common, NoteType::CallIn],
            ..NotesFilter::default()
        })
        .all()
        .await
        .unwrap();
    assert_eq!(notes.len(), 3);
    assert_eq!(notes[0].note_type, NoteType::Common);
    assert_eq!(notes[0].text(), Some("Текст примечания"));
    assert_eq!(notes[1].params["phone"], "+79999999999");
    assert_eq!(notes[2].note_type, NoteType::ExtendedServiceMessage);

    let none = client
        .notes(EntityType::Contacts)
        .for_entity(7143599, NotesFilter::default())
        .all()
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        client.usage().count("GET /api/v4/contacts/{id}/notes", 204),
        1
    );
}

#[tokio::test]
async fn events_feed_filters() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/events"))
        .and(query_is(
            "filter[type][]=lead_status_changed&filter[type][]=lead_added&filter[entity][]=lead\
             &filter[created_at][from]=1592566000&limit=100&page=1",
        ))
        .respond_with(json("events.json"))
        .expect(1)
        .mount(&server)
        .await;
    let events = client(&server)
        .events()
        .list(EventsFilter {
            types: vec![EventType::LeadStatusChanged, EventType::LeadAdded],
            entities: vec!["lead".into()],
            created_at: Some(TimeRange {
                from: Some(1592566000),
                to: None,
            }),
            ..EventsFilter::default()
        })
        .all()
        .await
        .unwrap();
    assert_eq!(events[0].id, EventId("01pz58t6p04mc7vhgm57gfq4fk".into()));
    assert_eq!(events[0].event_type, EventType::LeadStatusChanged);
    assert_eq!(events[0].value_after[0]["lead_status"]["id"], 142);
    assert_eq!(
        events[1].event_type,
        EventType::Other("custom_field_1278898021_value_changed".into())
    );
}

#[tokio::test]
async fn webhooks_list_subscribe_unsubscribe() {
    let server = MockServer::start().await;
    let destination = "https://jarvis.example.com/amocrm/webhook/s3cr3t";
    Mock::given(method("GET"))
        .and(path("/api/v4/webhooks"))
        .and(query_is(""))
        .respond_with(json("webhooks.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/webhooks"))
        .and(body_json(json!({
            "destination": destination,
            "settings": ["add_lead", "update_lead", "status_lead", "note_lead"]
        })))
        .respond_with(json("webhook_created.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/v4/webhooks"))
        .and(body_json(json!({ "destination": destination })))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let hooks = client.webhooks().list().await.unwrap();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0].destination, "https://webhook-uri.com");
    assert_eq!(hooks[0].settings, [WebhookSetting::AddTask]);
    assert!(hooks[1].disabled);

    let created = client
        .webhooks()
        .subscribe(
            destination,
            &[
                WebhookSetting::AddLead,
                WebhookSetting::UpdateLead,
                WebhookSetting::StatusLead,
                WebhookSetting::NoteLead,
            ],
        )
        .await
        .unwrap();
    assert_eq!(created.destination, destination);
    assert_eq!(created.settings.len(), 4);

    client.webhooks().unsubscribe(destination).await.unwrap();
    let usage = client.usage();
    assert_eq!(usage.count("POST /api/v4/webhooks", 200), 1);
    assert_eq!(usage.count("DELETE /api/v4/webhooks", 204), 1);
}

#[tokio::test]
async fn webhook_find_by_destination() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/webhooks"))
        .and(query_is(
            "filter[destination]=https%3A%2F%2Fwebhook-uri.com",
        ))
        .respond_with(json("webhooks.json"))
        .expect(1)
        .mount(&server)
        .await;
    let hook = client(&server)
        .webhooks()
        .find("https://webhook-uri.com")
        .await
        .unwrap();
    assert_eq!(hook.unwrap().id.0, 839656);
}

#[tokio::test]
async fn account_custom_fields_pipelines_users() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/account"))
        .and(query_is("with=amojo_id,version"))
        .respond_with(json("account.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/leads/custom_fields"))
        .and(query_is("limit=50&page=1"))
        .respond_with(json("custom_fields.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/leads/pipelines"))
        .respond_with(json("pipelines.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/users"))
        .and(query_is("with=role&limit=250&page=1"))
        .respond_with(json("users.json"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let account = client
        .account()
        .get(&[
            amocrm_client::AccountWith::AmojoId,
            amocrm_client::AccountWith::Version,
        ])
        .await
        .unwrap();
    assert_eq!(account.subdomain, "example");
    assert_eq!(account.currency.as_deref(), Some("RUB"));

    let fields = client
        .custom_fields(EntityType::Leads)
        .list()
        .all()
        .await
        .unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[0].field_type, Some(FieldType::Select));
    assert_eq!(fields[0].enum_value(EnumId(4037)).unwrap().value, "Базовый");
    assert!(fields[1].enums.is_empty());

    let pipelines = client.pipelines().list().await.unwrap();
    assert_eq!(pipelines[0].name, "Воронка");
    assert_eq!(pipelines[0].statuses().len(), 4);
    assert_eq!(
        pipelines[0]
            .status(amocrm_client::Status::WON)
            .unwrap()
            .name,
        "Успешно реализовано"
    );

    let users = client
        .users()
        .list(&[amocrm_client::UserWith::Role])
        .all()
        .await
        .unwrap();
    assert_eq!(users[0].email.as_deref(), Some("example@example.com"));
    assert_eq!(users[0].rights["is_active"], true);
}

#[tokio::test]
async fn errors_are_typed() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads/400"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/problem+json")
                .set_body_json(fixture("error_400.json")),
        )
        .mount(&server)
        .await;
    for status in [401u16, 402, 403] {
        Mock::given(path(format!("/api/v4/leads/{status}")))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "title": "Forbidden", "type": "https://httpstatus.es/403", "status": status,
                "detail": "Access denied"
            })))
            .mount(&server)
            .await;
    }
    Mock::given(path("/api/v4/leads/500"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"id\": \"not a number\"}"))
        .mount(&server)
        .await;
    let client = client(&server);
    let get = |id| {
        let client = client.clone();
        async move { client.leads().get(LeadId(id), &[]).await.unwrap_err() }
    };

    match get(400).await {
        Error::Validation {
            endpoint,
            detail,
            errors,
        } => {
            assert_eq!(endpoint, "GET /api/v4/leads/{id}");
            assert_eq!(detail, "Request validation failed");
            assert_eq!(
                errors[0].path.as_deref(),
                Some("custom_fields_values.0.field_id")
            );
            assert_eq!(errors[0].code.as_deref(), Some("NotSupportedChoice"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(get(401).await, Error::Unauthorized { .. }));
    assert!(matches!(get(402).await, Error::PaymentRequired { .. }));
    let forbidden = get(403).await;
    assert!(matches!(&forbidden, Error::Forbidden { detail, .. } if detail == "Access denied"));
    assert!(!forbidden.is_retryable());
    let decode = get(500).await;
    assert!(
        matches!(&decode, Error::Decode { endpoint, .. } if endpoint == "GET /api/v4/leads/{id}")
    );
    assert!(!decode.to_string().contains(TOKEN));
}
