//! Webhook bodies as amoCRM posts them: PHP `http_build_query` style form encoding.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// PHP's `urlencode` leaves only alphanumerics and `-_.` bare (space becomes `+`).
const PHP_FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// Encodes one key or value the way amoCRM does (`[` → `%5B`, space → `+`, `+` → `%2B`).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, PHP_FORM)
        .to_string()
        .replace("%20", "+")
}

/// Joins `key=value` pairs into one form body.
pub fn form_encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                encode_component(k.as_ref()),
                encode_component(v.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Ordered pairs of one body under construction.
#[derive(Default)]
struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    fn push(&mut self, key: String, value: impl Into<String>) {
        self.pairs.push((key, value.into()));
    }

    /// Pushes `prefix[field]` from a JSON field, as webhooks stringify everything.
    fn field(&mut self, prefix: &str, name: &str, v: Option<&Value>) {
        self.push(format!("{prefix}[{name}]"), scalar(v));
    }

    fn account(&mut self, account_id: u64, subdomain: &str) {
        self.push("account[subdomain]".into(), subdomain);
        self.push("account[id]".into(), account_id.to_string());
        self.push(
            "account[_links][self]".into(),
            format!("https://{subdomain}.amocrm.ru"),
        );
    }

    fn finish(self) -> String {
        form_encode(&self.pairs)
    }
}

fn scalar(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "1" } else { "0" }.to_string(),
        Some(other) => other.to_string(),
    }
}

/// API v4 `custom_fields_values` → webhook `custom_fields[i][...]`.
fn custom_fields(form: &mut Form, prefix: &str, entity: &Value) {
    let Some(fields) = entity.get("custom_fields_values").and_then(Value::as_array) else {
        return;
    };
    for (i, f) in fields.iter().enumerate() {
        let p = format!("{prefix}[custom_fields][{i}]");
        form.field(&p, "id", f.get("field_id"));
        form.field(&p, "name", f.get("field_name"));
        if let Some(code) = f.get("field_code").filter(|c| !c.is_null()) {
            form.field(&p, "code", Some(code));
        }
        let is_date = matches!(
            f.get("field_type").and_then(Value::as_str),
            Some("date" | "date_time" | "birthday")
        );
        let values = f.get("values").and_then(Value::as_array);
        for (j, v) in values.into_iter().flatten().enumerate() {
            if is_date {
                // Real deliveries carry dates as `values[0]=<unix>` with no `[value]` leaf.
                form.push(format!("{p}[values][{j}]"), scalar(v.get("value")));
                continue;
            }
            form.field(&format!("{p}[values][{j}]"), "value", v.get("value"));
            if let Some(e) = v.get("enum_id").filter(|e| !e.is_null()) {
                form.field(&format!("{p}[values][{j}]"), "enum", Some(e));
            }
        }
    }
}

fn push_lead(form: &mut Form, action: &str, index: usize, lead: &Value, account_id: u64) {
    let p = format!("leads[{action}][{index}]");
    let g = |k: &str| lead.get(k);
    form.field(&p, "id", g("id"));
    form.field(&p, "name", g("name"));
    form.field(&p, "status_id", g("status_id"));
    form.field(&p, "price", g("price"));
    form.field(&p, "responsible_user_id", g("responsible_user_id"));
    form.field(&p, "last_modified", g("updated_at"));
    form.field(&p, "modified_user_id", g("updated_by"));
    form.field(&p, "created_user_id", g("created_by"));
    form.field(&p, "date_create", g("created_at"));
    form.field(&p, "pipeline_id", g("pipeline_id"));
    let account = g("account_id").cloned().unwrap_or(account_id.into());
    form.field(&p, "account_id", Some(&account));
    custom_fields(form, &p, lead);
    form.field(&p, "created_at", g("created_at"));
    form.field(&p, "updated_at", g("updated_at"));
    let tags = lead.pointer("/_embedded/tags").and_then(Value::as_array);
    for (i, t) in tags.into_iter().flatten().enumerate() {
        form.field(&format!("{p}[tags][{i}]"), "id", t.get("id"));
        form.field(&format!("{p}[tags][{i}]"), "name", t.get("name"));
    }
    if action == "status" || g("old_status_id").is_some() {
        form.field(&p, "old_status_id", g("old_status_id"));
        form.field(
            &p,
            "old_pipeline_id",
            g("old_pipeline_id").or(g("pipeline_id")),
        );
    }
}

/// One lead event (`leads[{action}][0][...]`) built from an API v4 lead.
///
/// `action` is `add`, `update`, `status`, `restore` or `responsible`. Extra keys
/// `old_status_id`/`old_pipeline_id` on the value (as [`crate::FakeAmo::touch_lead`]
/// returns them) are carried into the body.
pub fn lead_event_body(lead: &Value, action: &str, account_id: u64, subdomain: &str) -> String {
    lead_events_body(std::slice::from_ref(lead), action, account_id, subdomain)
}

/// Several lead events of one action in one body (`leads[update][0]`, `[1]`, ...).
pub fn lead_events_body(leads: &[Value], action: &str, account_id: u64, subdomain: &str) -> String {
    let mut form = Form::default();
    for (i, lead) in leads.iter().enumerate() {
        push_lead(&mut form, action, i, lead, account_id);
    }
    form.account(account_id, subdomain);
    form.finish()
}

/// A contact event (`contacts[{action}][0][...]`) with PHONE/EMAIL fields and
/// `linked_leads_id[<id>][ID]` taken from the contact's `_embedded.leads`.
pub fn contact_event_body(
    contact: &Value,
    action: &str,
    account_id: u64,
    subdomain: &str,
) -> String {
    let mut form = Form::default();
    let p = format!("contacts[{action}][0]");
    let g = |k: &str| contact.get(k);
    form.field(&p, "id", g("id"));
    form.field(&p, "name", g("name"));
    form.field(&p, "responsible_user_id", g("responsible_user_id"));
    form.field(&p, "date_create", g("created_at"));
    form.field(&p, "last_modified", g("updated_at"));
    form.field(&p, "created_user_id", g("created_by"));
    form.field(&p, "modified_user_id", g("updated_by"));
    let account = g("account_id").cloned().unwrap_or(account_id.into());
    form.field(&p, "account_id", Some(&account));
    custom_fields(&mut form, &p, contact);
    let leads = contact
        .pointer("/_embedded/leads")
        .and_then(Value::as_array);
    for l in leads.into_iter().flatten() {
        let id = scalar(l.get("id"));
        form.push(format!("{p}[linked_leads_id][{id}][ID]"), id);
    }
    form.push(format!("{p}[type]"), "contact");
    form.field(&p, "created_at", g("created_at"));
    form.field(&p, "updated_at", g("updated_at"));
    form.account(account_id, subdomain);
    form.finish()
}

/// A bare lead delete, as amoCRM sends it: only `id`, `status_id`, `pipeline_id`.
pub fn delete_lead_body(
    id: u64,
    status_id: u64,
    pipeline_id: u64,
    account_id: u64,
    subdomain: &str,
) -> String {
    let mut form = Form::default();
    form.push("leads[delete][0][id]".into(), id.to_string());
    form.push("leads[delete][0][status_id]".into(), status_id.to_string());
    form.push(
        "leads[delete][0][pipeline_id]".into(),
        pipeline_id.to_string(),
    );
    form.account(account_id, subdomain);
    form.finish()
}

/// A note added to a lead (`leads[note][0][note][...]`), from an API v4 note.
pub fn note_event_body(note: &Value, account_id: u64, subdomain: &str) -> String {
    let mut form = Form::default();
    let p = "leads[note][0][note]";
    let g = |k: &str| note.get(k);
    form.field(p, "id", g("id"));
    // Webhooks use the numeric note types of API v2 (4 = common).
    let note_type = match g("note_type").and_then(Value::as_str) {
        Some("call_in") => "10",
        Some("call_out") => "11",
        Some("service_message") => "25",
        Some("sms_in") => "102",
        Some("sms_out") => "103",
        _ => "4",
    };
    form.push(format!("{p}[note_type]"), note_type);
    form.field(p, "element_id", g("entity_id"));
    form.push(format!("{p}[element_type]"), "2");
    form.field(p, "text", note.pointer("/params/text"));
    form.field(p, "date_create", g("created_at"));
    form.field(p, "created_by", g("created_by"));
    let account = g("account_id").cloned().unwrap_or(account_id.into());
    form.field(p, "account_id", Some(&account));
    let ts = g("updated_at").and_then(Value::as_i64).unwrap_or(0);
    form.push(format!("{p}[timestamp_x]"), format_timestamp(ts));
    form.account(account_id, subdomain);
    form.finish()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), the format notes carry in webhooks.
fn format_timestamp(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant), to avoid a date dependency for one format.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_php() {
        assert_eq!(
            encode_component("leads[add][0][name]"),
            "leads%5Badd%5D%5B0%5D%5Bname%5D"
        );
        assert_eq!(encode_component("+7 (999)"), "%2B7+%28999%29");
        assert_eq!(
            encode_component("Эконом"),
            "%D0%AD%D0%BA%D0%BE%D0%BD%D0%BE%D0%BC"
        );
    }

    #[test]
    fn formats_note_timestamps() {
        assert_eq!(format_timestamp(1_764_008_800), "2025-11-24 18:26:40");
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00");
    }
}
