//! Contract tests of every write: exact method, path and JSON body as amoCRM documents them,
//! chunking, `request_id` matching, validation errors and the retry rules of writes.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use amocrm_client::{
    CallParams, CatalogElementId, CatalogId, Client, CompanyId, CompanyInput, ComplexLead,
    ContactId, ContactInput, CustomFieldId, CustomFieldInput, CustomFieldValue, EntityType, Error,
    LeadId, LeadInput, LegalEntity, LinkTarget, LinksFilter, LossReasonId, Method, NoteContent,
    NoteId, NoteInput, PipelineId, StatusId, TagId, TagInput, TagsFilter, TaskId, TaskInput,
    TaskTypeId, TasksFilter, UserId,
};
use serde_json::{Value, json};
use support::*;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn hal(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "application/hal+json")
        .set_body_json(body)
}

/// Answers a batch POST like amoCRM: one `{id, request_id}` per item sent, ids counting up.
struct Created {
    key: &'static str,
    next_id: AtomicUsize,
}

impl Created {
    fn new(key: &'static str, first: usize) -> Self {
        Created {
            key,
            next_id: AtomicUsize::new(first),
        }
    }
}

impl Respond for Created {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let items: Vec<Value> = serde_json::from_slice(&request.body).unwrap();
        let answered: Vec<Value> = items
            .iter()
            .map(|item| {
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                json!({"id": id, "request_id": item["request_id"], "_links": {"self": {"href": "x"}}})
            })
            .collect();
        hal(json!({"_links": {}, "_embedded": {self.key: answered}}))
    }
}

fn bodies(requests: &[Request]) -> Vec<Value> {
    requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn create_leads_sends_documented_body_and_matches_ids() {
    let server = MockServer::start().await;
    let expected = json!([
        {
            "name": "Rent: BMW X5",
            "price": 45000,
            "status_id": 2030,
            "pipeline_id": 1113,
            "responsible_user_id": 321123,
            "created_by": 0,
            "custom_fields_values": [
                {"field_id": 3, "values": [{"value": "X5"}]},
                {"field_id": 4, "values": [{"enum_id": 4035}]},
                {"field_id": 5, "values": [{"value": 1588241643}]},
                {"field_id": 6, "values": [{"value": true}]},
                {"field_id": 7, "values": [{"value": 12.5}]},
                {"field_id": 8, "values": [{"catalog_id": 5103, "catalog_element_id": 3}]},
                {"field_code": "ADDRESS", "values": [{"value": "Lenina 1", "subtype": "address_line_1"}]},
                {"field_id": 9, "values": [{"value": {"name": "OOO Romashka", "vat_id": "7700000000"}}]},
                {"field_id": 10, "values": null}
            ],
            "_embedded": {"tags": [{"id": 7}, {"name": "website"}]},
            "request_id": "0"
        },
        {"name": "Second", "request_id": "1"}
    ]);
    Mock::given(method("POST"))
        .and(path("/api/v4/leads"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_json(&expected))
        .respond_with(hal(json!({"_embedded": {"leads": [
            {"id": 501, "request_id": "1", "_links": {}},
            {"id": 500, "request_id": "0", "_links": {}}
        ]}})))
        .expect(1)
        .mount(&server)
        .await;

    let mut legal = LegalEntity::new("OOO Romashka");
    legal.vat_id = Some("7700000000".into());
    let written = client(&server)
        .leads()
        .create([
            LeadInput::new()
                .name("Rent: BMW X5")
                .price(45_000)
                .status(PipelineId(1113), StatusId(2030))
                .responsible_user(UserId(321123))
                .created_by(UserId(0))
                .custom_field(CustomFieldInput::new(
                    CustomFieldId(3),
                    [CustomFieldValue::text("X5")],
                ))
                .custom_field(CustomFieldInput::new(
                    CustomFieldId(4),
                    [CustomFieldValue::enum_id(4035)],
                ))
                .custom_field(CustomFieldInput::new(
                    CustomFieldId(5),
                    [CustomFieldValue::timestamp(1588241643)],
                ))
                .custom_field(CustomFieldInput::new(
                    CustomFieldId(6),
                    [CustomFieldValue::checkbox(true)],
                ))
                .custom_field(CustomFieldInput::new(
                    CustomFieldId(7),
                    [CustomFieldValue::numeric(12.5)],
                ))
                .custom_field(CustomFieldInput::new(
                    CustomFieldId(8),
                    [CustomFieldValue::chained_list(5103, 3)],
                ))
                .custom_field(CustomFieldInput::new(
                    "ADDRESS",
                    [CustomFieldValue::smart_address(
                        "address_line_1",
                        "Lenina 1",
                    )],
                ))
                .custom_field(CustomFieldInput::new(
                    CustomFieldId(9),
                    [CustomFieldValue::legal_entity(legal)],
                ))
                .custom_field(CustomFieldInput::clear(CustomFieldId(10)))
                .tags([TagId(7).into(), "website".into()] as [amocrm_client::TagRef; 2]),
            LeadInput::new().name("Second"),
        ])
        .send()
        .await
        .unwrap();

    assert_eq!(written.len(), 2);
    assert_eq!((written[0].index, written[0].id), (0, LeadId(500)));
    assert_eq!((written[1].index, written[1].id), (1, LeadId(501)));
    assert_eq!(written[0].request_id.as_deref(), Some("0"));
}

#[tokio::test]
async fn a_hundred_and_twenty_leads_go_as_three_requests_of_fifty() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/leads"))
        .respond_with(Created::new("leads", 1000))
        .expect(3)
        .mount(&server)
        .await;

    let leads = (0..120).map(|i| LeadInput::new().name(format!("lead {i}")));
    let written = client(&server).leads().create(leads).send().await.unwrap();

    let sizes: Vec<usize> = bodies(&server.received_requests().await.unwrap())
        .iter()
        .map(|b| b.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![50, 50, 20]);
    assert_eq!(written.len(), 120);
    for (i, item) in written.iter().enumerate() {
        assert_eq!(item.index, i);
        assert_eq!(item.id, LeadId(1000 + i as u64));
        assert_eq!(item.request_id.as_deref(), Some(i.to_string().as_str()));
    }
}

#[tokio::test]
async fn chunk_size_is_capped_at_250() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/contacts"))
        .respond_with(Created::new("contacts", 1))
        .expect(2)
        .mount(&server)
        .await;

    let contacts = (0..300).map(|i| ContactInput::new().name(format!("c{i}")));
    let written = client(&server)
        .contacts()
        .create(contacts)
        .chunk_size(1000)
        .send()
        .await
        .unwrap();

    let sizes: Vec<usize> = bodies(&server.received_requests().await.unwrap())
        .iter()
        .map(|b| b.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![250, 50]);
    assert_eq!(written[299].id, ContactId(300));
}

#[tokio::test]
async fn validation_errors_name_the_callers_item_and_field() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/leads"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("content-type", "application/problem+json")
                .set_body_json(json!({
                    "validation-errors": [{"request_id": "1", "errors": [{
                        "code": "NotSupportedChoice",
                        "path": "custom_fields_values.0.values.0.enum_id",
                        "detail": "The value you selected is not a valid choice."
                    }]}],
                    "title": "Bad Request", "type": "https://httpstatus.es/400",
                    "status": 400, "detail": "Request validation failed"
                })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let err = client(&server)
        .leads()
        .create([
            LeadInput::new().name("fine"),
            LeadInput::new().custom_field(CustomFieldInput::new(
                CustomFieldId(4),
                [CustomFieldValue::enum_id(1)],
            )),
        ])
        .send()
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Validation { .. }), "{err}");
    let errors = err.validation_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].index, Some(1));
    assert_eq!(
        errors[0].path.as_deref(),
        Some("custom_fields_values.0.values.0.enum_id")
    );
    assert!(!err.may_have_been_applied());
}

#[tokio::test]
async fn a_failing_later_chunk_reports_what_was_written() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/leads"))
        .respond_with(Created::new("leads", 10))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/leads"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "validation-errors": [{"request_id": "3", "errors": [{"code": "X", "path": "name", "detail": "bad"}]}],
            "detail": "Request validation failed"
        })))
        .expect(1)
        .mount(&server)
        .await;

    let err = client(&server)
        .leads()
        .create((0..4).map(|i| LeadInput::new().name(format!("{i}"))))
        .chunk_size(2)
        .send()
        .await
        .unwrap_err();

    let Error::PartiallyWritten { written, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(written.len(), 2);
    assert_eq!((written[1].index, written[1].id), (1, 11));
    assert_eq!(err.validation_errors()[0].index, Some(3));
    assert!(err.may_have_been_applied());
}

#[tokio::test]
async fn a_post_is_not_retried_on_500_and_may_have_been_applied() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/tasks"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;

    let due = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let err = client(&server)
        .tasks()
        .create([TaskInput::new("call", due)])
        .send()
        .await
        .unwrap_err();

    assert!(err.may_have_been_applied(), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(err.status(), Some(500));
    let Error::MaybeApplied { source, .. } = &err else {
        panic!("{err}");
    };
    assert!(matches!(**source, Error::Server { status: 500, .. }));
}

/// A server that reads each request and closes the connection without answering.
async fn dropping_server() -> (String, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buffer = vec![0u8; 65536];
            // Read the request head (and what body arrived), then hang up.
            let _ = socket.read(&mut buffer).await;
            drop(socket);
        }
    });
    (format!("http://{address}"), seen)
}

#[tokio::test]
async fn a_post_whose_connection_drops_is_not_retried() {
    let (base, seen) = dropping_server().await;
    let client = Client::builder()
        .base_url(base)
        .rate_limit(fast_rate())
        .retry(fast_retry(3))
        .long_lived_token(TOKEN)
        .build()
        .unwrap();

    let err = client
        .notes(EntityType::Leads)
        .create([NoteInput::new(LeadId(1), NoteContent::common("hi"))])
        .send()
        .await
        .unwrap_err();

    assert!(err.may_have_been_applied(), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "one attempt only");
    assert_eq!(client.usage().count("POST /api/v4/leads/notes", 0), 1);
}

#[tokio::test]
async fn a_patch_whose_connection_drops_is_retried() {
    let (base, seen) = dropping_server().await;
    let client = Client::builder()
        .base_url(base)
        .rate_limit(fast_rate())
        .retry(fast_retry(2))
        .long_lived_token(TOKEN)
        .build()
        .unwrap();

    let err = client
        .leads()
        .update(LeadId(1), LeadInput::new().price(1))
        .send()
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(!err.may_have_been_applied());
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_patch_is_retried_after_500() {
    let server = MockServer::start().await;
    let body = json!({"status_id": 142, "pipeline_id": 1113, "closed_at": 1700000000});
    Mock::given(method("PATCH"))
        .and(path("/api/v4/leads/17657"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/leads/17657"))
        .and(body_json(&body))
        .respond_with(hal(
            json!({"id": 17657, "updated_at": 1700000001, "_links": {}}),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    let written = client
        .leads()
        .update(
            LeadId(17657),
            LeadInput::new()
                .status(PipelineId(1113), StatusId(142))
                .closed_at(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(written.id, LeadId(17657));
    assert_eq!(written.updated_at, Some(1700000001));
    assert_eq!(client.usage().retries, 1);
    assert_eq!(client.usage().count("PATCH /api/v4/leads/{id}", 502), 1);
}

#[tokio::test]
async fn batch_update_sends_ids_and_tag_changes() {
    let server = MockServer::start().await;
    let expected = json!([
        {"id": 1, "status_id": 143, "loss_reason_id": 55, "tags_to_delete": [{"name": "hot"}], "request_id": "0"},
        {"id": 2, "name": "renamed", "updated_by": 5, "tags_to_add": [{"id": 9}, {"name": "vip"}], "request_id": "1"}
    ]);
    Mock::given(method("PATCH"))
        .and(path("/api/v4/leads"))
        .and(body_json(&expected))
        .respond_with(hal(json!({"_embedded": {"leads": [
            {"id": 2, "updated_at": 20, "_links": {}},
            {"id": 1, "updated_at": 10, "_links": {}}
        ]}})))
        .expect(1)
        .mount(&server)
        .await;

    let written = client(&server)
        .leads()
        .update_many([
            (
                LeadId(1),
                LeadInput::new()
                    .status_id(StatusId(143))
                    .loss_reason(LossReasonId(55))
                    .remove_tag("hot"),
            ),
            (
                LeadId(2),
                LeadInput::new()
                    .name("renamed")
                    .updated_by(UserId(5))
                    .add_tag(TagId(9))
                    .add_tag("vip"),
            ),
        ])
        .send()
        .await
        .unwrap();

    // No request_id in the answer: matched by id.
    assert_eq!(
        (written[0].index, written[0].id, written[0].updated_at),
        (0, LeadId(1), Some(10))
    );
    assert_eq!((written[1].index, written[1].id), (1, LeadId(2)));
}

#[tokio::test]
async fn contacts_and_companies_update() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/contacts/7"))
        .and(body_json(json!({
            "first_name": "Ivan",
            "custom_fields_values": [{"field_code": "EMAIL", "values": [{"value": "i@example.com", "enum_code": "WORK"}]}]
        })))
        .respond_with(hal(json!({"id": 7, "updated_at": 3})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/companies"))
        .and(body_json(
            json!([{"id": 8, "name": "ACME", "responsible_user_id": 2, "request_id": "0"}]),
        ))
        .respond_with(hal(
            json!({"_embedded": {"companies": [{"id": 8, "request_id": "0"}]}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let contact = client
        .contacts()
        .update(
            ContactId(7),
            ContactInput::new()
                .first_name("Ivan")
                .custom_field(CustomFieldInput::new(
                    "EMAIL",
                    [CustomFieldValue::multitext("WORK", "i@example.com")],
                )),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(contact.id, ContactId(7));
    let companies = client
        .companies()
        .update_many([(
            CompanyId(8),
            CompanyInput::new().name("ACME").responsible_user(UserId(2)),
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(companies[0].id, CompanyId(8));
}

#[tokio::test]
async fn complex_add_sends_lead_contact_and_company_and_reads_merges() {
    let server = MockServer::start().await;
    let expected = json!([
        {
            "name": "Website order",
            "price": 45000,
            "_embedded": {
                "tags": [{"name": "website"}],
                "contacts": [{
                    "first_name": "Ivan",
                    "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+79990001122", "enum_code": "MOB"}]}]
                }],
                "companies": [{"name": "ACME"}]
            },
            "request_id": "0"
        },
        {"name": "Duplicate", "_embedded": {"contacts": [{"name": "Ivan"}]}, "request_id": "1"},
        {"name": "Twin", "request_id": "2"}
    ]);
    Mock::given(method("POST"))
        .and(path("/api/v4/leads/complex"))
        .and(body_json(&expected))
        .respond_with(hal(json!([
            {"id": 9774766, "contact_id": 12117258, "company_id": 12117260, "request_id": ["0"], "merged": false},
            {"id": 9774767, "contact_id": 12117259, "company_id": null, "request_id": ["1", "2"], "merged": true}
        ])))
        .expect(1)
        .mount(&server)
        .await;

    let created =
        client(&server)
            .leads()
            .create_complex([
                ComplexLead::new(
                    LeadInput::new()
                        .name("Website order")
                        .price(45_000)
                        .tags(["website"]),
                )
                .contact(ContactInput::new().first_name("Ivan").custom_field(
                    CustomFieldInput::new(
                        "PHONE",
                        [CustomFieldValue::multitext("MOB", "+79990001122")],
                    ),
                ))
                .company(CompanyInput::new().name("ACME")),
                ComplexLead::new(LeadInput::new().name("Duplicate"))
                    .contact(ContactInput::new().name("Ivan")),
                ComplexLead::new(LeadInput::new().name("Twin")),
            ])
            .send()
            .await
            .unwrap();

    assert_eq!(created.len(), 2);
    assert_eq!(created[0].indices, vec![0]);
    assert_eq!(created[0].lead_id, LeadId(9774766));
    assert_eq!(created[0].contact_id, Some(ContactId(12117258)));
    assert_eq!(created[0].company_id, Some(CompanyId(12117260)));
    assert!(!created[0].merged);
    assert_eq!(created[1].indices, vec![1, 2]);
    assert_eq!(created[1].company_id, None);
    assert!(created[1].merged);
}

#[tokio::test]
async fn complex_add_takes_at_most_fifty_a_request() {
    let server = MockServer::start().await;
    struct ComplexAnswer(AtomicUsize);
    impl Respond for ComplexAnswer {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let items: Vec<Value> = serde_json::from_slice(&request.body).unwrap();
            let answer: Vec<Value> = items
                .iter()
                .map(|item| {
                    let id = self.0.fetch_add(1, Ordering::SeqCst);
                    json!({"id": id, "contact_id": 0, "company_id": 0, "request_id": [item["request_id"]], "merged": false})
                })
                .collect();
            hal(Value::Array(answer))
        }
    }
    Mock::given(method("POST"))
        .and(path("/api/v4/leads/complex"))
        .respond_with(ComplexAnswer(AtomicUsize::new(1)))
        .expect(2)
        .mount(&server)
        .await;

    let created = client(&server)
        .leads()
        .create_complex((0..60).map(|i| ComplexLead::new(LeadInput::new().name(format!("{i}")))))
        .chunk_size(500)
        .send()
        .await
        .unwrap();

    let sizes: Vec<usize> = bodies(&server.received_requests().await.unwrap())
        .iter()
        .map(|b| b.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![50, 10]);
    assert_eq!(created.len(), 60);
    assert_eq!(created[59].indices, vec![59]);
    assert_eq!(created[59].lead_id, LeadId(60));
    assert_eq!(created[0].contact_id, None, "0 means none");
}

#[tokio::test]
async fn notes_of_every_type_update_and_pin() {
    let server = MockServer::start().await;
    let expected = json!([
        {"entity_id": 17657, "note_type": "common", "params": {"text": "hello"}, "request_id": "0"},
        {"entity_id": 17657, "note_type": "call_in", "params": {
            "uniq": "8f52d38a", "duration": 60, "source": "onlinePBX",
            "link": "https://example.com/call.mp3", "phone": "+79990001122"
        }, "request_id": "1"},
        {"entity_id": 17657, "note_type": "call_out", "params": {
            "uniq": "u2", "duration": 5, "source": "pbx", "phone": "+7", "call_result": "no answer", "call_status": 6
        }, "created_by": 3, "request_id": "2"},
        {"entity_id": 17657, "note_type": "service_message", "params": {"service": "Jarvis", "text": "synced"}, "request_id": "3"},
        {"entity_id": 17657, "note_type": "extended_service_message", "params": {"service": "Jarvis", "text": "long"}, "request_id": "4"},
        {"entity_id": 17657, "note_type": "sms_in", "params": {"text": "yes", "phone": "+7999"}, "request_id": "5"},
        {"entity_id": 17657, "note_type": "sms_out", "params": {"text": "ok", "phone": "+7999"}, "request_id": "6"},
        {"entity_id": 17657, "note_type": "geolocation", "params": {"text": "here", "address": "Moscow", "longitude": "37.6", "latitude": "55.7"}, "request_id": "7"},
        {"entity_id": 17657, "note_type": "attachment", "params": {"file_uuid": "f-1", "file_name": "contract.pdf", "version_uuid": "v-1"}, "request_id": "8"},
        {"entity_id": 17657, "note_type": "message_cashier", "params": {"status": "created", "text": "receipt"}, "request_id": "9"}
    ]);
    Mock::given(method("POST"))
        .and(path("/api/v4/leads/notes"))
        .and(body_json(&expected))
        .respond_with(Created::new("notes", 100))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/contacts/notes/5"))
        .and(body_json(
            json!({"note_type": "common", "params": {"text": "fixed"}}),
        ))
        .respond_with(hal(json!({"id": 5, "entity_id": 9, "updated_at": 1})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/leads/notes/100/pin"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let lead = LeadId(17657);
    let text = |t: &str| t.to_owned();

    let written = client
        .notes(EntityType::Leads)
        .create([
            NoteInput::new(lead, NoteContent::common("hello")),
            NoteInput::new(
                lead,
                NoteContent::CallIn(
                    CallParams::new("8f52d38a", "+79990001122", 60, "onlinePBX")
                        .link("https://example.com/call.mp3"),
                ),
            ),
            NoteInput::new(
                lead,
                NoteContent::CallOut(
                    CallParams::new("u2", "+7", 5, "pbx")
                        .result("no answer")
                        .status(6),
                ),
            )
            .created_by(UserId(3)),
            NoteInput::new(lead, NoteContent::service_message("Jarvis", "synced")),
            NoteInput::new(
                lead,
                NoteContent::ExtendedServiceMessage {
                    service: text("Jarvis"),
                    text: text("long"),
                },
            ),
            NoteInput::new(
                lead,
                NoteContent::SmsIn {
                    text: text("yes"),
                    phone: text("+7999"),
                },
            ),
            NoteInput::new(
                lead,
                NoteContent::SmsOut {
                    text: text("ok"),
                    phone: text("+7999"),
                },
            ),
            NoteInput::new(
                lead,
                NoteContent::Geolocation {
                    text: text("here"),
                    address: text("Moscow"),
                    longitude: text("37.6"),
                    latitude: text("55.7"),
                },
            ),
            NoteInput::new(
                lead,
                NoteContent::Attachment {
                    file_uuid: text("f-1"),
                    version_uuid: Some(text("v-1")),
                    file_name: text("contract.pdf"),
                },
            ),
            NoteInput::new(
                lead,
                NoteContent::MessageCashier {
                    status: text("created"),
                    text: text("receipt"),
                },
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(written.len(), 10);
    assert_eq!(written[9].id, NoteId(109));

    let updated = client
        .notes(EntityType::Contacts)
        .update(NoteId(5), NoteInput::content(NoteContent::common("fixed")))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.id, NoteId(5));
    client
        .notes(EntityType::Leads)
        .pin(NoteId(100))
        .await
        .unwrap();
}

#[tokio::test]
async fn tasks_list_get_create_and_complete() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/tasks"))
        .and(query_is(
            "filter[responsible_user_id][]=5&filter[is_completed]=0&filter[task_type][]=1\
             &filter[entity_type]=leads&filter[entity_id][]=17657\
             &filter[updated_at][from]=1700000000&limit=250&page=1",
        ))
        .respond_with(hal(json!({"_page": 1, "_embedded": {"tasks": [{
            "id": 4745251, "created_by": 3, "updated_by": 3, "created_at": 1575364000,
            "updated_at": 1575364851, "responsible_user_id": 5, "group_id": 0,
            "entity_id": 17657, "entity_type": "leads", "duration": 0, "is_completed": false,
            "task_type_id": 1, "text": "Call back", "result": [], "complete_till": 1575665940,
            "account_id": 321321, "_links": {}
        }]}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/tasks/4745251"))
        .respond_with(hal(
            json!({"id": 4745251, "is_completed": true, "text": "Call back",
            "result": {"text": "Done"}, "task_type_id": 2, "custom": 1}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/tasks"))
        .and(body_json(json!([{
            "text": "Confirm the delivery", "complete_till": 1700003600, "task_type_id": 2,
            "entity_id": 17657, "entity_type": "leads", "responsible_user_id": 5,
            "duration": 1800, "request_id": "0"
        }])))
        .respond_with(Created::new("tasks", 7))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/tasks/7"))
        .and(body_json(
            json!({"is_completed": true, "result": {"text": "Delivered"}}),
        ))
        .respond_with(hal(json!({"id": 7, "updated_at": 1700003700})))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let tasks = client
        .tasks()
        .list(TasksFilter {
            responsible_user_ids: vec![UserId(5)],
            is_completed: Some(false),
            task_types: vec![TaskTypeId::CALL],
            entity_type: Some(EntityType::Leads),
            entity_ids: vec![17657],
            updated_at: Some(amocrm_client::TimeRange {
                from: Some(1_700_000_000),
                to: None,
            }),
            ..TasksFilter::default()
        })
        .all()
        .await
        .unwrap();
    assert_eq!(tasks[0].id, TaskId(4745251));
    assert_eq!(tasks[0].result.as_ref().and_then(|r| r.text.clone()), None);
    assert_eq!(tasks[0].entity_id, Some(17657));
    let task = client.tasks().get(TaskId(4745251)).await.unwrap();
    assert_eq!(task.result.as_ref().unwrap().text.as_deref(), Some("Done"));
    assert_eq!(task.raw()["custom"], 1, "unknown fields kept");

    let due = chrono::DateTime::from_timestamp(1_700_003_600, 0).unwrap();
    let created = client
        .tasks()
        .create([TaskInput::new("Confirm the delivery", due)
            .task_type(TaskTypeId::MEETING)
            .for_entity(LeadId(17657))
            .responsible_user(UserId(5))
            .duration(1800)])
        .send()
        .await
        .unwrap();
    assert_eq!(created[0].id, TaskId(7));
    let done = client
        .tasks()
        .complete(created[0].id, "Delivered")
        .send()
        .await
        .unwrap();
    assert_eq!(done.updated_at, Some(1700003700));
}

#[tokio::test]
async fn links_link_unlink_and_list() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/leads/17657/link"))
        .and(body_json(json!([
            {"to_entity_id": 10, "to_entity_type": "contacts", "metadata": {"is_main": true}},
            {"to_entity_id": 11, "to_entity_type": "companies"},
            {"to_entity_id": 555, "to_entity_type": "catalog_elements", "metadata": {"catalog_id": 1026, "quantity": 2}}
        ])))
        .respond_with(hal(json!({"_total_items": 1, "_embedded": {"links": [
            {"entity_id": 17657, "entity_type": "leads", "to_entity_id": 10, "to_entity_type": "contacts", "metadata": {"main_contact": true}}
        ]}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/leads/17657/unlink"))
        .and(body_json(
            json!([{"to_entity_id": 11, "to_entity_type": "companies"}]),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/contacts/link"))
        .and(body_json(json!([{"entity_id": 10, "to_entity_id": 17657, "to_entity_type": "leads"}])))
        .respond_with(hal(json!({"_embedded": {"links": [
            {"entity_id": 10, "entity_type": "contacts", "to_entity_id": 17657, "to_entity_type": "leads"}
        ]}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads/17657/links"))
        .respond_with(hal(json!({"_embedded": {"links": [
            {"entity_id": 17657, "entity_type": "leads", "to_entity_id": 10, "to_entity_type": "contacts", "metadata": null}
        ]}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads/links"))
        .and(query_is(
            "filter[entity_id][]=1&filter[entity_id][]=2&filter[to_entity_type]=contacts&page=1",
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let links = client.links(EntityType::Leads);

    let made = links
        .link(
            17657,
            [
                LinkTarget::main_contact(ContactId(10)),
                LinkTarget::company(CompanyId(11)),
                LinkTarget::catalog_element(CatalogId(1026), CatalogElementId(555), 2.0),
            ],
        )
        .await
        .unwrap();
    assert_eq!(made[0].to_entity_id, 10);
    links
        .unlink(17657, [LinkTarget::company(CompanyId(11))])
        .await
        .unwrap();
    let reverse = client
        .links(EntityType::Contacts)
        .link_many([(10, LinkTarget::lead(LeadId(17657)))])
        .await
        .unwrap();
    assert_eq!(reverse[0].entity_type, "contacts");
    assert_eq!(links.of(17657).await.unwrap().len(), 1);
    let none = links
        .list(LinksFilter {
            entity_ids: vec![1, 2],
            to_entity_type: Some("contacts".into()),
            ..LinksFilter::default()
        })
        .all()
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn tags_list_and_create() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/leads/tags"))
        .and(query_is("filter[name]=vip&limit=250&page=1"))
        .respond_with(hal(
            json!({"_page": 1, "_embedded": {"tags": [{"id": 9, "name": "vip", "color": null}]}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/leads/tags"))
        .and(body_json(json!([
            {"name": "hot", "color": "DDEBB5", "request_id": "0"},
            {"name": "cold", "request_id": "1"}
        ])))
        .respond_with(Created::new("tags", 20))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let tags = client.tags(EntityType::Leads);

    let found = tags
        .list(TagsFilter {
            name: Some("vip".into()),
            ..TagsFilter::default()
        })
        .all()
        .await
        .unwrap();
    assert_eq!(found[0].id, TagId(9));
    let created = tags
        .create([TagInput::new("hot").color("DDEBB5"), TagInput::new("cold")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![TagId(20), TagId(21)]
    );
}

#[tokio::test]
async fn the_escape_hatch_shares_auth_counters_and_error_mapping() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/catalogs"))
        .and(query_is("limit=50"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(hal(
            json!({"_embedded": {"catalogs": [{"id": 1026, "name": "Products"}]}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/leads/17657/link"))
        .and(body_json(
            json!([{"to_entity_id": 10, "to_entity_type": "contacts"}]),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/api/v4/leads/pipelines/5"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/catalogs"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    #[derive(serde::Deserialize)]
    struct Catalogs {
        #[serde(rename = "_embedded")]
        embedded: Value,
    }
    let catalogs: Catalogs = client
        .request(Method::GET, "/api/v4/catalogs")
        .query("limit", 50)
        .send()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(catalogs.embedded["catalogs"][0]["id"], 1026);
    let linked: Option<Value> = client
        .request(Method::POST, "api/v4/leads/17657/link")
        .json(&json!([{"to_entity_id": 10, "to_entity_type": "contacts"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(linked, None, "204");
    let missing = client
        .request(Method::DELETE, "/api/v4/leads/pipelines/5")
        .send::<Value>()
        .await
        .unwrap_err();
    assert!(
        matches!(missing, Error::NotFound { ref endpoint } if endpoint == "DELETE /api/v4/leads/pipelines/{id}")
    );
    let failed = client
        .request(Method::POST, "/api/v4/catalogs")
        .json(&json!([{"name": "x"}]))
        .send::<Value>()
        .await
        .unwrap_err();
    assert!(
        failed.may_have_been_applied(),
        "POST not retried on 503: {failed}"
    );
    assert!(
        client
            .request(Method::GET, "https://evil.example.com/api/v4/leads")
            .send::<Value>()
            .await
            .is_err()
    );

    let usage = client.usage();
    assert_eq!(usage.count("GET /api/v4/catalogs", 200), 1);
    assert_eq!(usage.count("POST /api/v4/leads/{id}/link", 204), 1);
    assert_eq!(usage.count("POST /api/v4/catalogs", 503), 1);
}

#[tokio::test]
async fn chained_list_values_are_read_and_written_back() {
    let server = MockServer::start().await;
    let field = json!({
        "field_id": 8, "field_name": "Model", "field_code": null, "field_type": "chained_list",
        "values": [{"catalog_id": 5103, "catalog_element_id": 3, "value": null}]
    });
    Mock::given(method("GET"))
        .and(path("/api/v4/leads/1"))
        .respond_with(hal(
            json!({"id": 1, "name": "x", "custom_fields_values": [field]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v4/leads/2"))
        .and(body_json(json!({"custom_fields_values": [
            {"field_id": 8, "values": [{"catalog_id": 5103, "catalog_element_id": 3}]}
        ]})))
        .respond_with(hal(json!({"id": 2, "updated_at": 5})))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    let lead = client.leads().get(LeadId(1), &[]).await.unwrap();
    let chained = lead.custom_field(CustomFieldId(8)).unwrap();
    assert_eq!(
        chained.first().unwrap().catalog_element(),
        Some((CatalogId(5103), CatalogElementId(3)))
    );
    client
        .leads()
        .update(LeadId(2), LeadInput::new().custom_field(chained.into()))
        .send()
        .await
        .unwrap();
}
