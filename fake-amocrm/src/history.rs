//! Changing leads and contacts the way a real account's history does (reopen, clear a field, switch
//! the main contact, move to another pipeline, delete, restore), each change answering the webhook
//! body amoCRM sends for it.
//!
//! Every change takes its time `at` (Unix seconds), which becomes the entity's `updated_at`, so a
//! caller controls the clock: several changes within one second, as amoCRM allows, or strictly
//! increasing times. Deleted entities go to a trash: the API no longer shows them, a restore brings
//! them back with a new `updated_at`. A change of an unknown (or, for edits, deleted) entity answers
//! `None`.

use serde_json::{Value, json};

use crate::form::{contact_event_body, delete_lead_body, form_encode, lead_event_body};
use crate::{FakeAmo, lock};

/// A second pipeline leads can move to, and its stages (then the system won/lost stages).
pub const SECOND_PIPELINE_ID: u64 = 7_402_001;
pub const SECOND_PIPELINE_STATUSES: [u64; 4] = [61_300_101, 61_300_104, 142, 143];

/// amoCRM's closed stages: "won" and "lost".
fn is_closed(status_id: u64) -> bool {
    status_id == 142 || status_id == 143
}

impl FakeAmo {
    fn lead_body(&self, lead: &Value, action: &str) -> String {
        let config = self.config();
        lead_event_body(lead, action, config.account_id, &config.subdomain)
    }

    fn contact_body(&self, contact: &Value, action: &str) -> String {
        let config = self.config();
        contact_event_body(contact, action, config.account_id, &config.subdomain)
    }

    /// Edits a lead with `edit` at `at` and answers the `update` body.
    pub fn update_lead(&self, id: u64, at: i64, edit: impl FnOnce(&mut Value)) -> Option<String> {
        let lead = {
            let mut store = lock(&self.inner.store);
            let mut lead = store.leads.get(&id)?.clone();
            edit(&mut lead);
            lead["id"] = id.into();
            lead["updated_at"] = at.into();
            store.upsert_lead(lead.clone());
            lead
        };
        Some(self.lead_body(&lead, "update"))
    }

    /// Moves a lead to `status_id` of `pipeline_id` at `at` and answers the `status` body (with
    /// `old_status_id`/`old_pipeline_id`). Entering a closed stage sets `closed_at`; leaving it
    /// (a reopen) clears it.
    pub fn move_lead(&self, id: u64, pipeline_id: u64, status_id: u64, at: i64) -> Option<String> {
        let lead = {
            let mut store = lock(&self.inner.store);
            let mut lead = store.leads.get(&id)?.clone();
            let old_status = lead["status_id"].clone();
            let old_pipeline = lead["pipeline_id"].clone();
            lead["status_id"] = status_id.into();
            lead["pipeline_id"] = pipeline_id.into();
            lead["updated_at"] = at.into();
            lead["closed_at"] = if is_closed(status_id) {
                at.into()
            } else {
                Value::Null
            };
            store.upsert_lead(lead.clone());
            lead["old_status_id"] = old_status;
            lead["old_pipeline_id"] = old_pipeline;
            lead
        };
        Some(self.lead_body(&lead, "status"))
    }

    /// Sets a lead's custom field (an API v4 `custom_fields_values` entry, replacing the one with
    /// the same `field_id`) at `at`; answers the `update` body.
    pub fn set_lead_field(&self, id: u64, field: Value, at: i64) -> Option<String> {
        self.update_lead(id, at, |lead| set_field(lead, field))
    }

    /// Empties a lead's custom field at `at` (amoCRM then leaves it out; with no field left,
    /// `custom_fields_values` is `null`); answers the `update` body.
    pub fn clear_lead_field(&self, id: u64, field_id: u64, at: i64) -> Option<String> {
        self.update_lead(id, at, |lead| clear_field(lead, field_id))
    }

    /// Makes `contact_id` the lead's only, main contact, or leaves it without contacts (`None`),
    /// at `at`; answers the `update` body.
    pub fn set_main_contact(&self, id: u64, contact_id: Option<u64>, at: i64) -> Option<String> {
        self.update_lead(id, at, |lead| {
            let contacts: Vec<Value> = contact_id
                .map(|c| json!({"id": c, "is_main": true}))
                .into_iter()
                .collect();
            lead["_embedded"]["contacts"] = Value::Array(contacts);
        })
    }

    /// Moves a lead to the trash and answers the bare `delete` body (no `updated_at`).
    pub fn trash_lead(&self, id: u64) -> Option<String> {
        let lead = {
            let mut store = lock(&self.inner.store);
            let lead = store.remove_lead(id)?;
            store.trash_leads.insert(id, lead.clone());
            lead
        };
        let config = self.config();
        Some(delete_lead_body(
            id,
            lead["status_id"].as_u64().unwrap_or_default(),
            lead["pipeline_id"].as_u64().unwrap_or_default(),
            config.account_id,
            &config.subdomain,
        ))
    }

    /// Brings a lead back from the trash at `at` and answers the `restore` body.
    pub fn restore_lead(&self, id: u64, at: i64) -> Option<String> {
        let lead = {
            let mut store = lock(&self.inner.store);
            let mut lead = store.trash_leads.remove(&id)?;
            lead["updated_at"] = at.into();
            store.upsert_lead(lead.clone());
            lead
        };
        Some(self.lead_body(&lead, "restore"))
    }

    /// A lead in the trash, as it was when deleted.
    pub fn trashed_lead(&self, id: u64) -> Option<Value> {
        lock(&self.inner.store).trash_leads.get(&id).cloned()
    }

    /// Edits a contact with `edit` at `at` and answers the `update` body.
    pub fn update_contact(
        &self,
        id: u64,
        at: i64,
        edit: impl FnOnce(&mut Value),
    ) -> Option<String> {
        let contact = {
            let mut store = lock(&self.inner.store);
            let mut contact = store.contacts.get(&id)?.clone();
            edit(&mut contact);
            contact["id"] = id.into();
            contact["updated_at"] = at.into();
            store.upsert_contact(contact.clone());
            with_leads(contact, store.leads_of_contact(id))
        };
        Some(self.contact_body(&contact, "update"))
    }

    /// Sets a contact's custom field (replacing the one with the same `field_id`) at `at`.
    pub fn set_contact_field(&self, id: u64, field: Value, at: i64) -> Option<String> {
        self.update_contact(id, at, |contact| set_field(contact, field))
    }

    /// Empties a contact's custom field at `at`.
    pub fn clear_contact_field(&self, id: u64, field_id: u64, at: i64) -> Option<String> {
        self.update_contact(id, at, |contact| clear_field(contact, field_id))
    }

    /// The contact as an `add` body (as amoCRM sent it when the contact was created).
    pub fn contact_add_body(&self, id: u64) -> Option<String> {
        let contact = {
            let store = lock(&self.inner.store);
            with_leads(store.contacts.get(&id)?.clone(), store.leads_of_contact(id))
        };
        Some(self.contact_body(&contact, "add"))
    }

    /// The lead as an `add` body (as amoCRM sent it when the lead was created).
    pub fn lead_add_body(&self, id: u64) -> Option<String> {
        let lead = lock(&self.inner.store).leads.get(&id)?.clone();
        Some(self.lead_body(&lead, "add"))
    }

    /// Moves a contact to the trash and answers the bare `delete` body (`id` and `type`).
    pub fn trash_contact(&self, id: u64) -> Option<String> {
        {
            let mut store = lock(&self.inner.store);
            let contact = store.contacts.remove(&id)?;
            store.trash_contacts.insert(id, contact);
        }
        let config = self.config();
        let pairs = [
            ("contacts[delete][0][id]".to_owned(), id.to_string()),
            ("contacts[delete][0][type]".to_owned(), "contact".to_owned()),
            ("account[subdomain]".to_owned(), config.subdomain.clone()),
            ("account[id]".to_owned(), config.account_id.to_string()),
            (
                "account[_links][self]".to_owned(),
                format!("https://{}.amocrm.ru", config.subdomain),
            ),
        ];
        Some(form_encode(&pairs))
    }

    /// Brings a contact back from the trash at `at` and answers the `restore` body.
    pub fn restore_contact(&self, id: u64, at: i64) -> Option<String> {
        let contact = {
            let mut store = lock(&self.inner.store);
            let mut contact = store.trash_contacts.remove(&id)?;
            contact["updated_at"] = at.into();
            store.upsert_contact(contact.clone());
            with_leads(contact, store.leads_of_contact(id))
        };
        Some(self.contact_body(&contact, "restore"))
    }

    /// A contact in the trash, as it was when deleted.
    pub fn trashed_contact(&self, id: u64) -> Option<Value> {
        lock(&self.inner.store).trash_contacts.get(&id).cloned()
    }

    /// Ids of the leads in the trash.
    pub fn trashed_lead_ids(&self) -> Vec<u64> {
        lock(&self.inner.store)
            .trash_leads
            .keys()
            .copied()
            .collect()
    }

    /// Ids of the contacts in the trash.
    pub fn trashed_contact_ids(&self) -> Vec<u64> {
        lock(&self.inner.store)
            .trash_contacts
            .keys()
            .copied()
            .collect()
    }
}

fn with_leads(mut contact: Value, leads: Vec<u64>) -> Value {
    contact["_embedded"]["leads"] = leads.iter().map(|l| json!({ "id": l })).collect();
    contact
}

fn set_field(entity: &mut Value, field: Value) {
    let field_id = field["field_id"].as_u64();
    let mut fields = match entity["custom_fields_values"].take() {
        Value::Array(fields) => fields,
        _ => Vec::new(),
    };
    match fields
        .iter_mut()
        .find(|f| f["field_id"].as_u64() == field_id)
    {
        Some(existing) => *existing = field,
        None => fields.push(field),
    }
    entity["custom_fields_values"] = Value::Array(fields);
}

fn clear_field(entity: &mut Value, field_id: u64) {
    let mut fields = match entity["custom_fields_values"].take() {
        Value::Array(fields) => fields,
        _ => Vec::new(),
    };
    fields.retain(|f| f["field_id"].as_u64() != Some(field_id));
    entity["custom_fields_values"] = if fields.is_empty() {
        Value::Null
    } else {
        Value::Array(fields)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeConfig;

    fn decoded(body: &str) -> String {
        body.split('&')
            .map(|pair| {
                let pair = pair.replace('+', " ");
                percent_encoding::percent_decode_str(&pair)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn reopen_clears_closed_at_and_the_body_says_where_it_came_from() {
        let fake = FakeAmo::new(FakeConfig::default());
        fake.seed(1, 1, 7);
        let id = fake.lead_ids()[0];
        fake.move_lead(id, crate::PIPELINE_ID, 142, 1_800_000_000)
            .unwrap();
        assert_eq!(fake.lead(id).unwrap()["closed_at"], 1_800_000_000);
        let body = decoded(
            &fake
                .move_lead(
                    id,
                    SECOND_PIPELINE_ID,
                    SECOND_PIPELINE_STATUSES[0],
                    1_800_000_001,
                )
                .unwrap(),
        );
        let lead = fake.lead(id).unwrap();
        assert_eq!(lead["closed_at"], Value::Null);
        assert_eq!(lead["pipeline_id"], SECOND_PIPELINE_ID);
        assert!(
            body.contains("leads[status][0][old_status_id]=142"),
            "{body}"
        );
        assert!(body.contains(&format!(
            "leads[status][0][pipeline_id]={SECOND_PIPELINE_ID}"
        )));
        assert!(body.contains("leads[status][0][updated_at]=1800000001"));
    }

    #[test]
    fn cleared_fields_leave_the_body_and_the_api() {
        let fake = FakeAmo::new(FakeConfig::default());
        fake.seed(1, 1, 7);
        let id = fake.lead_ids()[0];
        for field in [crate::FIELD_RENTPROG_ID, crate::FIELD_CAR_CLASS, 771_003] {
            fake.clear_lead_field(id, field, 1_800_000_000);
        }
        assert_eq!(fake.lead(id).unwrap()["custom_fields_values"], Value::Null);
        let body = decoded(&fake.clear_lead_field(id, 1, 1_800_000_001).unwrap());
        assert!(!body.contains("custom_fields"), "{body}");
        fake.set_lead_field(
            id,
            json!({"field_id": crate::FIELD_RENTPROG_ID, "field_name": "RentProg ID",
                   "field_code": null, "field_type": "text", "values": [{"value": "RP-1"}]}),
            1_800_000_002,
        );
        let body = decoded(&fake.lead_add_body(id).unwrap());
        assert!(
            body.contains("[custom_fields][0][values][0][value]=RP-1"),
            "{body}"
        );
    }

    #[test]
    fn delete_and_restore_go_through_the_trash() {
        let fake = FakeAmo::new(FakeConfig::default());
        fake.seed(1, 2, 7);
        let id = fake.lead_ids()[0];
        let contact = fake.contact_ids()[1];
        fake.set_main_contact(id, Some(contact), 1_800_000_000)
            .unwrap();
        let body = decoded(&fake.trash_lead(id).unwrap());
        assert!(
            body.starts_with(&format!("leads[delete][0][id]={id}")),
            "{body}"
        );
        assert!(!body.contains("updated_at"));
        assert_eq!(fake.lead(id), None);
        assert_eq!(fake.trashed_lead_ids(), [id]);
        assert_eq!(fake.update_lead(id, 1_800_000_001, |_| ()), None);
        let body = decoded(&fake.restore_lead(id, 1_800_000_005).unwrap());
        assert!(
            body.contains("leads[restore][0][updated_at]=1800000005"),
            "{body}"
        );
        let lead = fake.lead(id).unwrap();
        assert_eq!(lead["_embedded"]["contacts"][0]["id"], contact);
        assert_eq!(fake.trashed_lead(id), None);

        let body = decoded(&fake.trash_contact(contact).unwrap());
        assert!(body.contains("contacts[delete][0][type]=contact"), "{body}");
        assert_eq!(fake.contact(contact), None);
        let body = decoded(&fake.restore_contact(contact, 1_800_000_009).unwrap());
        assert!(
            body.contains(&format!("linked_leads_id][{id}][ID]={id}")),
            "{body}"
        );
        assert!(body.contains("contacts[restore][0][updated_at]=1800000009"));
    }
}
