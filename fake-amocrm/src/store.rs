//! In-memory entities, kept in API v4 shape without `_links` (those depend on the host asked).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entity {
    Leads,
    Contacts,
}

impl Entity {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Entity::Leads => "leads",
            Entity::Contacts => "contacts",
        }
    }
}

pub(crate) const FIRST_LEAD_ID: u64 = 31_840_001;
pub(crate) const FIRST_CONTACT_ID: u64 = 52_110_001;
const FIRST_NOTE_ID: u64 = 190_021_001;

pub(crate) struct Store {
    pub leads: BTreeMap<u64, Value>,
    pub contacts: BTreeMap<u64, Value>,
    pub notes: BTreeMap<u64, (Entity, Value)>,
    /// contact id → ids of leads that link it, for `with=leads` and contact webhooks.
    contact_leads: HashMap<u64, BTreeSet<u64>>,
    pub webhooks: Vec<Value>,
    /// Deleted leads and contacts (amoCRM's trash): the API no longer shows them; a restore brings
    /// them back.
    pub trash_leads: BTreeMap<u64, Value>,
    pub trash_contacts: BTreeMap<u64, Value>,
    pub next_lead: u64,
    pub next_contact: u64,
    pub next_note: u64,
    pub next_webhook: u64,
    pub rng: StdRng,
    /// Companies, tasks and tags made through the write endpoints.
    pub writes: crate::writes::WriteState,
}

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            leads: BTreeMap::new(),
            contacts: BTreeMap::new(),
            notes: BTreeMap::new(),
            contact_leads: HashMap::new(),
            webhooks: Vec::new(),
            trash_leads: BTreeMap::new(),
            trash_contacts: BTreeMap::new(),
            next_lead: FIRST_LEAD_ID,
            next_contact: FIRST_CONTACT_ID,
            next_note: FIRST_NOTE_ID,
            next_webhook: 1,
            rng: StdRng::seed_from_u64(0),
            writes: crate::writes::WriteState::default(),
        }
    }

    pub(crate) fn upsert_lead(&mut self, mut lead: Value) -> u64 {
        let id = take_id(&mut lead, &mut self.next_lead);
        if let Some(obj) = lead.as_object_mut() {
            obj.remove("_links");
            // Sender-side extras describing the change, not part of the lead itself.
            obj.remove("old_status_id");
            obj.remove("old_pipeline_id");
        }
        let embedded = embedded_mut(&mut lead);
        for key in ["tags", "companies", "contacts"] {
            let entry = embedded.entry(key).or_insert_with(|| json!([]));
            if entry.is_null() {
                *entry = json!([]);
            }
        }
        if let Some(contacts) = embedded.get_mut("contacts").and_then(Value::as_array_mut) {
            for c in contacts.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("_links");
            }
        }
        self.unlink_lead(id);
        for cid in contact_ids(&lead) {
            self.contact_leads.entry(cid).or_default().insert(id);
        }
        self.leads.insert(id, lead);
        id
    }

    pub(crate) fn remove_lead(&mut self, id: u64) -> Option<Value> {
        self.unlink_lead(id);
        self.notes
            .retain(|_, (e, n)| !(*e == Entity::Leads && n["entity_id"].as_u64() == Some(id)));
        self.leads.remove(&id)
    }

    fn unlink_lead(&mut self, id: u64) {
        if let Some(old) = self.leads.get(&id) {
            for cid in contact_ids(old) {
                if let Some(set) = self.contact_leads.get_mut(&cid) {
                    set.remove(&id);
                }
            }
        }
    }

    pub(crate) fn upsert_contact(&mut self, mut contact: Value) -> u64 {
        let id = take_id(&mut contact, &mut self.next_contact);
        if let Some(obj) = contact.as_object_mut() {
            obj.remove("_links");
        }
        let embedded = embedded_mut(&mut contact);
        // Linked leads are derived from the leads, never stored twice.
        embedded.remove("leads");
        for key in ["tags", "companies"] {
            embedded.entry(key).or_insert_with(|| json!([]));
        }
        self.contacts.insert(id, contact);
        id
    }

    pub(crate) fn add_note(&mut self, entity: Entity, mut note: Value) -> u64 {
        let id = take_id(&mut note, &mut self.next_note);
        self.notes.insert(id, (entity, note));
        id
    }

    pub(crate) fn leads_of_contact(&self, id: u64) -> Vec<u64> {
        self.contact_leads
            .get(&id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    pub(crate) fn render_lead(&self, id: u64, base: &str, with_contacts: bool) -> Option<Value> {
        let mut lead = self.leads.get(&id)?.clone();
        set_self_link(&mut lead, format!("{base}/api/v4/leads/{id}"));
        let embedded = embedded_mut(&mut lead);
        if with_contacts {
            if let Some(list) = embedded.get_mut("contacts").and_then(Value::as_array_mut) {
                for c in list.iter_mut() {
                    let cid = c["id"].as_u64().unwrap_or_default();
                    set_self_link(c, format!("{base}/api/v4/contacts/{cid}"));
                }
            }
        } else {
            embedded.remove("contacts");
        }
        Some(lead)
    }

    pub(crate) fn render_contact(&self, id: u64, base: &str, with_leads: bool) -> Option<Value> {
        let mut contact = self.contacts.get(&id)?.clone();
        set_self_link(&mut contact, format!("{base}/api/v4/contacts/{id}"));
        if with_leads {
            let leads: Vec<Value> = self
                .leads_of_contact(id)
                .into_iter()
                .map(|lid| json!({"id": lid, "_links": {"self": {"href": format!("{base}/api/v4/leads/{lid}")}}}))
                .collect();
            embedded_mut(&mut contact).insert("leads".into(), Value::Array(leads));
        }
        Some(contact)
    }

    pub(crate) fn render_note(&self, id: u64, base: &str) -> Option<Value> {
        let (entity, note) = self.notes.get(&id)?;
        let mut note = note.clone();
        let eid = note["entity_id"].as_u64().unwrap_or_default();
        set_self_link(
            &mut note,
            format!("{base}/api/v4/{}/{eid}/notes/{id}", entity.path()),
        );
        Some(note)
    }
}

fn take_id(v: &mut Value, next: &mut u64) -> u64 {
    let id = v.get("id").and_then(Value::as_u64).unwrap_or(*next);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("id".into(), id.into());
    }
    *next = (*next).max(id + 1);
    id
}

pub(crate) fn contact_ids(lead: &Value) -> Vec<u64> {
    lead.pointer("/_embedded/contacts")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(|c| c["id"].as_u64()).collect())
        .unwrap_or_default()
}

fn embedded_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    let obj = v.as_object_mut().expect("made an object above");
    let entry = obj.entry("_embedded").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("made an object above")
}

fn set_self_link(v: &mut Value, href: String) {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("_links".into(), json!({"self": {"href": href}}));
    }
}
