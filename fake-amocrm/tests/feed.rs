//! The events feed and webhook delivery: every change is an event in the documented shape, pages
//! of 100 newest first with the documented filters, and a webhook that fails too often is switched off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::http::StatusCode;
use axum::routing::post;
use fake_amocrm::{FakeAmo, FakeConfig};
use serde_json::{Value, json};

async fn started() -> (FakeAmo, String, String) {
    let fake = FakeAmo::new(FakeConfig {
        rate_per_second: None,
        ..FakeConfig::default()
    });
    fake.seed(30, 10, 3);
    fake.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = fake.base_url().unwrap();
    let token = fake.issue_tokens().access_token;
    (fake, base, token)
}

async fn get(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn changes_are_recorded_as_documented_events() {
    let (fake, base, token) = started().await;
    assert!(fake.feed_events().is_empty(), "seeding records nothing");
    let lead = fake.lead_ids()[0];
    let before = fake.lead(lead).unwrap();
    let after = fake.touch_lead(lead);
    let created = fake.create_lead();
    let contact = fake.contact_ids()[0];
    fake.rename_contact(contact, "Новое имя");
    fake.delete_lead(created["id"].as_u64().unwrap());

    let body: Value = get(&format!("{base}/api/v4/events"), &token)
        .await
        .json()
        .await
        .unwrap();
    let events = body["_embedded"]["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    // Newest first.
    assert_eq!(types[0], "lead_deleted");
    assert_eq!(types[1], "name_field_changed");
    assert_eq!(types[2], "lead_added");
    assert!(types.contains(&"lead_status_changed"));
    let status = events
        .iter()
        .find(|e| e["type"] == "lead_status_changed")
        .unwrap();
    assert_eq!(status["entity_id"], lead);
    assert_eq!(status["entity_type"], "lead");
    assert_eq!(
        status["value_before"][0]["lead_status"]["id"],
        before["status_id"]
    );
    assert_eq!(
        status["value_after"][0]["lead_status"]["id"],
        after["status_id"]
    );
    for event in events {
        for key in [
            "id",
            "type",
            "entity_id",
            "entity_type",
            "created_by",
            "created_at",
        ] {
            assert!(!event[key].is_null(), "{key} missing in {event}");
        }
        assert_eq!(event["id"].as_str().unwrap().len(), 26);
    }
    let renamed = events
        .iter()
        .find(|e| e["type"] == "name_field_changed")
        .unwrap();
    assert_eq!(
        renamed["value_after"][0]["name_field_value"]["name"],
        "Новое имя"
    );
}

#[tokio::test]
async fn the_feed_pages_by_100_and_filters() {
    let (fake, base, token) = started().await;
    let ids = fake.lead_ids();
    for _ in 0..9 {
        for id in &ids[..25] {
            fake.touch_lead(*id);
        }
    }
    let total = fake.feed_events().len();
    assert!(total >= 225, "{total}");
    let mut seen = 0;
    let mut page = 1;
    loop {
        let resp = get(
            &format!("{base}/api/v4/events?filter[type][]=lead_status_changed&filter[type][]=sale_field_changed&limit=250&page={page}"),
            &token,
        )
        .await;
        if resp.status() == StatusCode::NO_CONTENT {
            break;
        }
        let body: Value = resp.json().await.unwrap();
        let n = body["_embedded"]["events"].as_array().unwrap().len();
        assert!(n <= 100, "a page holds at most 100 events");
        seen += n;
        if body["_links"]["next"].is_null() {
            break;
        }
        page += 1;
    }
    assert_eq!(seen, total);

    let only = get(
        &format!("{base}/api/v4/events?filter[entity][]=lead&filter[entity_id][]={}&filter[type][]=sale_field_changed", ids[0]),
        &token,
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    for event in only["_embedded"]["events"].as_array().unwrap() {
        assert_eq!(event["entity_id"], ids[0]);
        assert_eq!(event["type"], "sale_field_changed");
    }
    let future = fake_amocrm_now() + 3600;
    let resp = get(
        &format!("{base}/api/v4/events?filter[created_at][from]={future}"),
        &token,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

fn fake_amocrm_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn failing_deliveries_switch_a_webhook_off_until_subscribed_again() {
    let (fake, base, token) = started().await;
    let received = Arc::new(AtomicU32::new(0));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (r, f) = (received.clone(), failing.clone());
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let (r, f) = (r.clone(), f.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                if f.load(Ordering::SeqCst) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let destination = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let subscribe = || {
        reqwest::Client::new()
            .post(format!("{base}/api/v4/webhooks"))
            .bearer_auth(&token)
            .json(&json!({"destination": destination, "settings": ["update_lead"]}))
            .send()
    };
    assert_eq!(subscribe().await.unwrap().status(), StatusCode::CREATED);

    fake.set_disable_after(3);
    for _ in 0..4 {
        assert_eq!(fake.deliver("leads[update][0][id]=1").await.failed, 1);
    }
    assert_eq!(fake.webhooks()[0]["disabled"], true);
    let skipped = fake.deliver("leads[update][0][id]=1").await;
    assert_eq!(skipped.skipped, 1);
    assert_eq!(
        received.load(Ordering::SeqCst),
        4,
        "nothing is sent to a disabled webhook"
    );

    failing.store(false, Ordering::SeqCst);
    subscribe().await.unwrap();
    assert_eq!(fake.webhooks()[0]["disabled"], false);
    assert_eq!(fake.deliver("leads[update][0][id]=1").await.accepted, 1);

    fake.set_delivering(false);
    assert_eq!(fake.deliver("leads[update][0][id]=1").await.skipped, 1);
    assert_eq!(received.load(Ordering::SeqCst), 5);
    fake.set_delivering(true);
    assert!(fake.disable_webhook(&destination));
    assert_eq!(fake.deliver("leads[update][0][id]=1").await.skipped, 1);
}
