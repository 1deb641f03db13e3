//! The fake's write endpoints, driven through `amocrm-client`: every change is visible to
//! later reads, and refusals come in amoCRM's shape.

use amocrm_client::{
    CatalogElementId, CatalogId, Client, CompanyId, CompanyInput, ComplexLead, ContactId,
    ContactInput, CustomFieldId, CustomFieldInput, CustomFieldValue, EntityType, Error, LeadId,
    LeadInput, LeadWith, LinkTarget, NoteContent, NoteInput, NotesFilter, PipelineId, RateLimit,
    StatusId, TagInput, TagsFilter, TaskInput, TasksFilter,
};
use fake_amocrm::{FakeAmo, FakeConfig, PIPELINE_ID, STATUSES};

async fn started() -> (FakeAmo, Client) {
    let fake = FakeAmo::new(FakeConfig {
        rate_per_second: None,
        long_lived_token: Some("fake-token".into()),
        ..FakeConfig::default()
    });
    fake.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = Client::builder()
        .base_url(fake.base_url().unwrap())
        .long_lived_token("fake-token")
        .rate_limit(RateLimit {
            per_second: 10_000,
            per_minute: None,
            per_hour: None,
            guard: std::time::Duration::ZERO,
        })
        .build()
        .unwrap();
    (fake, client)
}

#[tokio::test]
async fn complex_add_creates_a_linked_lead_contact_and_company() {
    let (_fake, client) = started().await;

    let created = client
        .leads()
        .create_complex([ComplexLead::new(
            LeadInput::new()
                .name("Website order")
                .price(45_000)
                .tags(["website"]),
        )
        .contact(
            ContactInput::new()
                .first_name("Ivan")
                .last_name("Petrov")
                .custom_field(CustomFieldInput::new(
                    "PHONE",
                    [CustomFieldValue::multitext("MOB", "+79990001122")],
                )),
        )
        .company(CompanyInput::new().name("ACME"))])
        .send()
        .await
        .unwrap();

    let item = &created[0];
    assert_eq!(item.indices, vec![0]);
    assert!(!item.merged);
    let lead = client
        .leads()
        .get(item.lead_id, &[LeadWith::Contacts])
        .await
        .unwrap();
    assert_eq!(lead.name, "Website order");
    assert_eq!(lead.price, Some(45_000));
    assert_eq!(lead.main_contact_id(), item.contact_id);
    assert_eq!(lead.embedded.companies[0].id, item.company_id.unwrap());
    assert_eq!(lead.embedded.tags[0].name, "website");
    let contact = client
        .contacts()
        .get(
            item.contact_id.unwrap(),
            &[amocrm_client::ContactWith::Leads],
        )
        .await
        .unwrap();
    assert_eq!(contact.name, "Ivan Petrov");
    assert_eq!(contact.phones(), vec!["+79990001122"]);
    assert_eq!(contact.embedded.leads[0].id, item.lead_id);
    let company = client
        .companies()
        .get(item.company_id.unwrap(), &[])
        .await
        .unwrap();
    assert_eq!(company.name, "ACME");
    assert_eq!(company.embedded.contacts[0].id, item.contact_id.unwrap());
}

#[tokio::test]
async fn a_lead_is_created_moved_noted_and_its_fields_changed() {
    let (_fake, client) = started().await;
    let written = client
        .leads()
        .create([
            LeadInput::new()
                .name("Rent")
                .custom_field(CustomFieldInput::new(
                    CustomFieldId(771_001),
                    [CustomFieldValue::text("R-1")],
                ))
                .custom_field(CustomFieldInput::new(
                    CustomFieldId(771_009),
                    [CustomFieldValue::chained_list(5103, 3)],
                )),
            LeadInput::new().name("Other"),
        ])
        .send()
        .await
        .unwrap();
    let id = written[0].id;
    assert_eq!(written[1].index, 1);

    let next = StatusId(STATUSES[1]);
    let moved = client
        .leads()
        .update(
            id,
            LeadInput::new()
                .status(PipelineId(PIPELINE_ID), next)
                .custom_field(CustomFieldInput::clear(CustomFieldId(771_001)))
                .add_tag("vip"),
        )
        .send()
        .await
        .unwrap();
    let lead = client.leads().get(id, &[]).await.unwrap();
    assert_eq!(lead.status_id, Some(next));
    assert_eq!(lead.updated_at, moved.updated_at);
    assert!(
        lead.custom_field(CustomFieldId(771_001)).is_none(),
        "cleared"
    );
    let chained = lead.custom_field(CustomFieldId(771_009)).unwrap();
    assert_eq!(
        chained.first().unwrap().catalog_element(),
        Some((CatalogId(5103), CatalogElementId(3)))
    );
    assert_eq!(lead.embedded.tags[0].name, "vip");

    let won = client
        .leads()
        .update_many([(
            id,
            LeadInput::new().status_id(StatusId(142)).remove_tag("vip"),
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(won[0].id, id);
    let lead = client.leads().get(id, &[]).await.unwrap();
    assert!(lead.closed_at.is_some(), "won leads are closed");
    assert!(lead.embedded.tags.is_empty());

    let notes = client.notes(EntityType::Leads);
    let note = notes
        .create([NoteInput::new(
            id,
            NoteContent::common("Moved after the call"),
        )])
        .send()
        .await
        .unwrap();
    notes.pin(note[0].id).await.unwrap();
    notes
        .update(
            note[0].id,
            NoteInput::content(NoteContent::common("Moved after a call")),
        )
        .send()
        .await
        .unwrap();
    let listed = notes
        .for_entity(id.0, NotesFilter::default())
        .all()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].text(), Some("Moved after a call"));
    assert_eq!(listed[0].raw()["is_pinned"], true);
}

#[tokio::test]
async fn refusals_name_the_item_and_field() {
    let (_fake, client) = started().await;
    let written = client
        .leads()
        .create([LeadInput::new().name("a")])
        .send()
        .await
        .unwrap();

    let err = client
        .leads()
        .update_many([
            (written[0].id, LeadInput::new().name("fine")),
            (LeadId(1), LeadInput::new().name("missing")),
        ])
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err}");
    assert_eq!(err.validation_errors()[0].index, Some(1));
    assert_eq!(err.validation_errors()[0].path.as_deref(), Some("id"));

    let err = client
        .contacts()
        .create([
            ContactInput::new().name("ok"),
            ContactInput::new()
                .custom_field(CustomFieldInput::new("NOPE", [CustomFieldValue::text("x")])),
        ])
        .send()
        .await
        .unwrap_err();
    let refused = &err.validation_errors()[0];
    assert_eq!(refused.index, Some(1));
    assert_eq!(
        refused.path.as_deref(),
        Some("custom_fields_values.0.field_code")
    );
    assert!(
        client
            .contacts()
            .find(ContactId(52_110_001), &[])
            .await
            .unwrap()
            .is_none(),
        "nothing was written"
    );
}

#[tokio::test]
async fn tasks_are_created_listed_and_completed() {
    let (_fake, client) = started().await;
    let lead = client
        .leads()
        .create([LeadInput::new().name("Delivery")])
        .send()
        .await
        .unwrap()[0]
        .id;
    let due = chrono::Utc::now() + chrono::Duration::hours(2);
    let tasks = client
        .tasks()
        .create([
            TaskInput::new("Call the client", due).for_entity(lead),
            TaskInput::new("Unrelated", due),
        ])
        .send()
        .await
        .unwrap();

    let open = client
        .tasks()
        .list(TasksFilter {
            entity_type: Some(EntityType::Leads),
            entity_ids: vec![lead.0],
            is_completed: Some(false),
            ..TasksFilter::default()
        })
        .all()
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, tasks[0].id);
    assert_eq!(open[0].complete_till, Some(due.timestamp()));

    client
        .tasks()
        .complete(tasks[0].id, "Spoke, delivery confirmed")
        .send()
        .await
        .unwrap();
    let done = client.tasks().get(tasks[0].id).await.unwrap();
    assert!(done.is_completed);
    assert_eq!(
        done.result.unwrap().text.as_deref(),
        Some("Spoke, delivery confirmed")
    );
    let still_open = client
        .tasks()
        .list(TasksFilter {
            is_completed: Some(false),
            ..TasksFilter::default()
        })
        .all()
        .await
        .unwrap();
    assert_eq!(still_open.len(), 1);
    assert_eq!(still_open[0].id, tasks[1].id);
}

#[tokio::test]
async fn links_and_tags() {
    let (_fake, client) = started().await;
    let lead = client
        .leads()
        .create([LeadInput::new().name("L")])
        .send()
        .await
        .unwrap()[0]
        .id;
    let contact = client
        .contacts()
        .create([ContactInput::new().name("C")])
        .send()
        .await
        .unwrap()[0]
        .id;
    let company = client
        .companies()
        .create([CompanyInput::new().name("Co")])
        .send()
        .await
        .unwrap()[0]
        .id;

    let links = client.links(EntityType::Leads);
    links
        .link(
            lead.0,
            [
                LinkTarget::main_contact(contact),
                LinkTarget::company(company),
            ],
        )
        .await
        .unwrap();
    let read = client
        .leads()
        .get(lead, &[LeadWith::Contacts])
        .await
        .unwrap();
    assert_eq!(read.main_contact_id(), Some(contact));
    assert_eq!(read.embedded.companies[0].id, company);
    let listed = links.of(lead.0).await.unwrap();
    assert_eq!(listed.len(), 2);
    let from_contact = client
        .links(EntityType::Contacts)
        .of(contact.0)
        .await
        .unwrap();
    assert!(
        from_contact
            .iter()
            .any(|l| l.to_entity_type == "leads" && l.to_entity_id == lead.0)
    );

    links
        .unlink(lead.0, [LinkTarget::contact(contact)])
        .await
        .unwrap();
    let read = client
        .leads()
        .get(lead, &[LeadWith::Contacts])
        .await
        .unwrap();
    assert!(read.embedded.contacts.is_empty());
    assert_eq!(
        client
            .companies()
            .get(CompanyId(company.0), &[])
            .await
            .unwrap()
            .embedded
            .leads[0]
            .id,
        lead
    );

    let tags = client.tags(EntityType::Leads);
    let made = tags
        .create([TagInput::new("hot").color("DDEBB5")])
        .send()
        .await
        .unwrap();
    client
        .leads()
        .update(
            lead,
            LeadInput::new().add_tag(made[0].id).add_tag("new one"),
        )
        .send()
        .await
        .unwrap();
    let all = tags.list(TagsFilter::default()).all().await.unwrap();
    assert_eq!(
        all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["hot", "new one"]
    );
    let hot = tags
        .list(TagsFilter {
            name: Some("HOT".into()),
            ..TagsFilter::default()
        })
        .all()
        .await
        .unwrap();
    assert_eq!(hot[0].color.as_deref(), Some("DDEBB5"));
    let read = client.leads().get(lead, &[]).await.unwrap();
    assert_eq!(read.embedded.tags.len(), 2);
}
