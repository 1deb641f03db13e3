//! Generated webhook bodies and the sender.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use fake_amocrm::{
    FakeAmo, FakeConfig, KindMix, SendPlan, contact_event_body, delete_lead_body, lead_event_body,
    note_event_body, send,
};

fn decode(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn assert_wire_form(body: &str) {
    assert!(
        !body.contains('['),
        "brackets must be percent-encoded: {body}"
    );
    assert!(!body.contains(' '));
    assert!(body.is_ascii());
    for pair in body.split('&') {
        assert_eq!(pair.matches('=').count(), 1, "{pair}");
    }
}

fn seeded() -> FakeAmo {
    let fake = FakeAmo::new(FakeConfig::default());
    fake.seed(10, 10, 3);
    fake
}

#[test]
fn lead_body_is_valid_form_encoding_with_the_expected_keys() {
    let fake = seeded();
    let id = fake.lead_ids()[0];
    let lead = fake.touch_lead(id);
    let body = lead_event_body(&lead, "status", 29_071_803, "geodrive");
    assert_wire_form(&body);
    let pairs = decode(&body);
    assert_eq!(
        value(&pairs, "leads[status][0][id]"),
        Some(id.to_string().as_str())
    );
    assert!(
        value(&pairs, "leads[status][0][name]")
            .unwrap()
            .starts_with("Аренда ")
    );
    for key in [
        "status_id",
        "old_status_id",
        "pipeline_id",
        "old_pipeline_id",
        "price",
        "responsible_user_id",
        "updated_at",
        "created_at",
        "last_modified",
        "account_id",
    ] {
        assert!(
            value(&pairs, &format!("leads[status][0][{key}]")).is_some(),
            "missing {key}"
        );
    }
    assert_eq!(
        value(&pairs, "leads[status][0][updated_at]"),
        Some(lead["updated_at"].to_string().as_str())
    );
    assert_eq!(
        value(&pairs, "leads[status][0][custom_fields][0][id]"),
        Some("771001")
    );
    assert_eq!(
        value(&pairs, "leads[status][0][custom_fields][0][name]"),
        Some("RentProg ID")
    );
    assert!(
        value(
            &pairs,
            "leads[status][0][custom_fields][0][values][0][value]"
        )
        .unwrap()
        .starts_with("RP-")
    );
    assert_eq!(value(&pairs, "account[subdomain]"), Some("geodrive"));
    assert_eq!(value(&pairs, "account[id]"), Some("29071803"));
    assert_eq!(
        value(&pairs, "account[_links][self]"),
        Some("https://geodrive.amocrm.ru")
    );
    // The account block comes last, as in the captured bodies.
    assert_eq!(pairs.last().unwrap().0, "account[_links][self]");
}

#[test]
fn select_fields_carry_enum_and_dates_have_no_value_leaf() {
    let fake = seeded();
    let mut saw_enum = false;
    let mut saw_date = false;
    for id in fake.lead_ids() {
        let body = lead_event_body(&fake.lead(id).unwrap(), "update", 1, "x");
        let pairs = decode(&body);
        for (k, v) in &pairs {
            if k.ends_with("[values][0][enum]") {
                assert!(v.starts_with("5512"));
                saw_enum = true;
            }
            if k.ends_with("[values][0]") {
                assert!(v.parse::<i64>().unwrap() > 1_700_000_000);
                saw_date = true;
            }
        }
    }
    assert!(saw_enum && saw_date);
}

#[test]
fn contact_note_and_delete_bodies() {
    let fake = seeded();
    let lead = fake.lead(fake.lead_ids()[0]).unwrap();
    let contact_id = lead["_embedded"]["contacts"][0]["id"].as_u64().unwrap();
    let contact = fake.touch_contact(contact_id);
    let body = contact_event_body(&contact, "update", 29_071_803, "geodrive");
    assert_wire_form(&body);
    let pairs = decode(&body);
    assert_eq!(
        value(&pairs, "contacts[update][0][id]"),
        Some(contact_id.to_string().as_str())
    );
    assert_eq!(value(&pairs, "contacts[update][0][type]"), Some("contact"));
    assert_eq!(
        value(&pairs, "contacts[update][0][custom_fields][0][code]"),
        Some("PHONE")
    );
    assert!(
        value(
            &pairs,
            "contacts[update][0][custom_fields][0][values][0][value]"
        )
        .unwrap()
        .starts_with("+7")
    );
    assert_eq!(
        value(&pairs, "contacts[update][0][custom_fields][1][code]"),
        Some("EMAIL")
    );
    let lead_id = lead["id"].to_string();
    assert_eq!(
        value(
            &pairs,
            &format!("contacts[update][0][linked_leads_id][{lead_id}][ID]")
        ),
        Some(lead_id.as_str())
    );

    let note_id = fake.add_note(lead["id"].as_u64().unwrap(), "Клиент подтвердил бронь");
    let note = fake
        .lead_notes(lead["id"].as_u64().unwrap())
        .into_iter()
        .find(|n| n["id"] == note_id)
        .unwrap();
    let body = note_event_body(&note, 29_071_803, "geodrive");
    assert_wire_form(&body);
    let pairs = decode(&body);
    assert_eq!(
        value(&pairs, "leads[note][0][note][text]"),
        Some("Клиент подтвердил бронь")
    );
    assert_eq!(
        value(&pairs, "leads[note][0][note][element_id]"),
        Some(lead_id.as_str())
    );
    assert_eq!(value(&pairs, "leads[note][0][note][note_type]"), Some("4"));

    let body = delete_lead_body(31_840_025, 143, 7_401_234, 29_071_803, "geodrive");
    assert_eq!(
        body,
        "leads%5Bdelete%5D%5B0%5D%5Bid%5D=31840025&leads%5Bdelete%5D%5B0%5D%5Bstatus_id%5D=143&leads%5Bdelete%5D%5B0%5D%5Bpipeline_id%5D=7401234&account%5Bsubdomain%5D=geodrive&account%5Bid%5D=29071803&account%5B_links%5D%5Bself%5D=https%3A%2F%2Fgeodrive.amocrm.ru"
    );
}

#[test]
fn same_seed_gives_same_leads() {
    let a = seeded();
    let b = seeded();
    assert_eq!(a.lead_ids(), b.lead_ids());
    for id in a.lead_ids() {
        assert_eq!(a.lead(id), b.lead(id));
    }
}

#[derive(Default)]
struct Received {
    bodies: Vec<String>,
    bad_headers: usize,
}

async fn receiver(status: StatusCode) -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let sink = received.clone();
    let app = Router::new().route(
        "/amocrm/webhook/secret",
        post(move |headers: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let mut r = sink.lock().unwrap();
                let ok = headers["content-type"] == "application/x-www-form-urlencoded"
                    && headers["user-agent"] == "amoCRM-Webhooks/3.0"
                    && headers.contains_key("x-amocrm-requestid");
                if !ok {
                    r.bad_headers += 1;
                }
                r.bodies.push(body);
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/amocrm/webhook/secret"), received)
}

#[tokio::test]
async fn sender_posts_unique_bodies_built_from_the_fakes_leads() {
    let (url, received) = receiver(StatusCode::OK).await;
    let fake = FakeAmo::new(FakeConfig::default());
    fake.seed(20, 10, 5);
    let before = fake.lead_ids().len();
    let plan = SendPlan {
        total: Some(60),
        concurrency: 4,
        kind_mix: KindMix::parse(
            "lead_status=3,lead_update=3,lead_add=1,contact_update=1,lead_note=1,lead_delete=1",
        )
        .unwrap(),
        ..SendPlan::new(url)
    };
    let report = send(&plan, &fake).await.unwrap();
    assert_eq!(report.sent, 60);
    assert_eq!(report.acknowledged, 60);
    assert_eq!(report.failed, 0);
    assert_eq!(report.status_counts[&200], 60);
    assert!(report.latency.max_ms >= report.latency.p50_ms);

    let r = received.lock().unwrap();
    assert_eq!(r.bodies.len(), 60);
    assert_eq!(r.bad_headers, 0);
    let unique: HashSet<&String> = r.bodies.iter().collect();
    assert_eq!(unique.len(), 60, "every body is distinct");
    // Updates name leads the fake can serve (deleted ones excepted).
    let deleted: HashSet<String> = r
        .bodies
        .iter()
        .flat_map(|b| decode(b))
        .filter(|(k, _)| k == "leads[delete][0][id]")
        .map(|(_, v)| v)
        .collect();
    for body in &r.bodies {
        let pairs = decode(body);
        assert_eq!(value(&pairs, "account[id]"), Some("29071803"));
        if let Some(id) = value(&pairs, "leads[update][0][id]")
            && !deleted.contains(id)
        {
            assert!(fake.lead(id.parse().unwrap()).is_some());
        }
    }
    let adds = report.by_kind.get("lead_add").copied().unwrap_or(0) as usize;
    let deletes = report.by_kind.get("lead_delete").copied().unwrap_or(0) as usize;
    assert_eq!(fake.lead_ids().len(), before + adds - deletes);
}

#[tokio::test]
async fn sender_paces_and_reports_failures() {
    let (url, received) = receiver(StatusCode::SERVICE_UNAVAILABLE).await;
    let fake = FakeAmo::new(FakeConfig::default());
    fake.seed(10, 10, 1);
    let plan = SendPlan {
        rate_per_second: 50.0,
        duration: Some(Duration::from_millis(400)),
        concurrency: 2,
        ..SendPlan::new(url)
    };
    let report = send(&plan, &fake).await.unwrap();
    assert!((15..=21).contains(&report.sent), "sent {}", report.sent);
    assert_eq!(report.acknowledged, 0);
    assert_eq!(report.failed, report.sent);
    assert_eq!(report.status_counts[&503], report.sent);
    assert!(report.elapsed_secs >= 0.35);
    assert_eq!(received.lock().unwrap().bodies.len() as u64, report.sent);

    // Nobody listening: transport errors, not a panic.
    let plan = SendPlan {
        total: Some(3),
        timeout: Duration::from_secs(1),
        ..SendPlan::new("http://127.0.0.1:9/hook")
    };
    let report = send(&plan, &fake).await.unwrap();
    assert_eq!(report.transport_errors, 3);
    assert_eq!(report.failed, 3);
}
