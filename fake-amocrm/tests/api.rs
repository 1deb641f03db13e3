//! The fake's HTTP API as a client sees it.

use std::collections::BTreeSet;
use std::time::Duration;

use fake_amocrm::{FIELD_RENTPROG_ID, Failure, FakeAmo, FakeConfig, TokenPair};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn unlimited() -> FakeConfig {
    FakeConfig {
        rate_per_second: None,
        ..FakeConfig::default()
    }
}

async fn started(config: FakeConfig, leads: usize, contacts: usize) -> (FakeAmo, String, String) {
    let fake = FakeAmo::new(config);
    fake.seed(leads, contacts, 7);
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

fn ids_of(body: &Value, key: &str) -> BTreeSet<u64> {
    body["_embedded"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn filter_by_ids_answers_exactly_those_leads() {
    let (fake, base, token) = started(unlimited(), 20, 10).await;
    let ids = fake.lead_ids();
    let (a, b, c) = (ids[2], ids[5], ids[11]);
    let url = format!(
        "{base}/api/v4/leads?filter%5Bid%5D%5B%5D={a}&filter[id][]={b}&filter[id][]={c}&filter[id][]=999&with=contacts&limit=250&page=1"
    );
    let resp = get(&url, &token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/hal+json"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(ids_of(&body, "leads"), BTreeSet::from([a, b, c]));
    assert_eq!(body["_page"], 1);
    assert!(
        body["_links"]["self"]["href"]
            .as_str()
            .unwrap()
            .starts_with(&base)
    );
    assert!(body["_links"].get("next").is_none());
    for lead in body["_embedded"]["leads"].as_array().unwrap() {
        let contacts = lead["_embedded"]["contacts"].as_array().unwrap();
        assert_eq!(contacts[0]["is_main"], true);
        assert!(
            contacts[0]["_links"]["self"]["href"]
                .as_str()
                .unwrap()
                .contains("/api/v4/contacts/")
        );
        let rp = lead["custom_fields_values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field_id"] == FIELD_RENTPROG_ID)
            .unwrap();
        assert!(
            rp["values"][0]["value"]
                .as_str()
                .unwrap()
                .starts_with("RP-")
        );
        assert!(lead["updated_at"].as_i64().unwrap() > 1_700_000_000);
        assert_eq!(
            lead["_links"]["self"]["href"],
            format!("{base}/api/v4/leads/{}", lead["id"])
        );
    }

    // Other spellings of the same filter.
    let body: Value = get(&format!("{base}/api/v4/leads?filter[id]={a}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids_of(&body, "leads"), BTreeSet::from([a]));
    assert!(
        body["_embedded"]["leads"][0]["_embedded"]
            .get("contacts")
            .is_none()
    );
    let body: Value = get(
        &format!("{base}/api/v4/leads?filter[id][0]={a}&filter[id][1]={b}"),
        &token,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids_of(&body, "leads"), BTreeSet::from([a, b]));

    // Contacts alike.
    let cids = fake.contact_ids();
    let body: Value = get(
        &format!(
            "{base}/api/v4/contacts?filter[id][]={}&filter[id][]={}",
            cids[0], cids[1]
        ),
        &token,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        ids_of(&body, "contacts"),
        BTreeSet::from([cids[0], cids[1]])
    );
    let codes: Vec<&str> = body["_embedded"]["contacts"][0]["custom_fields_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["PHONE", "EMAIL"]);
}

#[tokio::test]
async fn nothing_matching_is_204_with_empty_body() {
    let (_fake, base, token) = started(unlimited(), 5, 5).await;
    for path in [
        "/api/v4/leads?filter[id][]=1",
        "/api/v4/contacts?filter[id][]=1",
        "/api/v4/leads/notes?filter[entity_id][]=1",
        "/api/v4/leads?page=99",
    ] {
        let resp = get(&format!("{base}{path}"), &token).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{path}");
        assert!(resp.bytes().await.unwrap().is_empty(), "{path}");
    }
    let resp = get(&format!("{base}/api/v4/leads?filter[id][]=abc"), &token).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pagination_follows_next_links() {
    let (fake, base, token) = started(unlimited(), 120, 10).await;
    let mut url = format!("{base}/api/v4/leads?limit=50");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = get(&url, &token).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        pages += 1;
        assert_eq!(body["_page"], pages);
        seen.extend(ids_of(&body, "leads"));
        match body["_links"]["next"]["href"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, fake.lead_ids());
    let resp = get(&format!("{base}/api/v4/leads?limit=50&page=4"), &token).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // The limit is capped at 250 as documented.
    let body: Value = get(&format!("{base}/api/v4/leads?limit=1000"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["_embedded"]["leads"].as_array().unwrap().len(), 120);
}

#[tokio::test]
async fn entities_by_id_and_notes() {
    let (fake, base, token) = started(unlimited(), 10, 5).await;
    let id = fake.lead_ids()[0];
    let resp = get(&format!("{base}/api/v4/leads/{id}?with=contacts"), &token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let lead: Value = resp.json().await.unwrap();
    assert_eq!(lead["id"], id);
    let contact_id = lead["_embedded"]["contacts"][0]["id"].as_u64().unwrap();

    let contact: Value = get(
        &format!("{base}/api/v4/contacts/{contact_id}?with=leads"),
        &token,
    )
    .await
    .json()
    .await
    .unwrap();
    let linked: Vec<u64> = contact["_embedded"]["leads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    assert!(linked.contains(&id));

    assert_eq!(
        get(&format!("{base}/api/v4/leads/1"), &token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&format!("{base}/api/v4/contacts/1"), &token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let note_id = fake.add_note(id, "Клиент перезвонит");
    for url in [
        format!("{base}/api/v4/leads/{id}/notes"),
        format!("{base}/api/v4/leads/notes?filter[entity_id][]={id}"),
    ] {
        let body: Value = get(&url, &token).await.json().await.unwrap();
        let notes = body["_embedded"]["notes"].as_array().unwrap();
        let note = notes.iter().find(|n| n["id"] == note_id).unwrap();
        assert_eq!(note["entity_id"], id);
        assert_eq!(note["note_type"], "common");
        assert_eq!(note["params"]["text"], "Клиент перезвонит");
        assert!(notes.iter().all(|n| n["entity_id"] == id));
    }
}

#[tokio::test]
async fn rate_limiter_answers_429_past_7_per_second() {
    let (fake, base, token) = started(FakeConfig::default(), 3, 3).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v4/account");
    // Spawned together so the ten requests arrive within one window.
    let handles: Vec<_> = (0..10)
        .map(|_| tokio::spawn(client.get(&url).bearer_auth(&token).send()))
        .collect();
    let mut responses = Vec::new();
    for h in handles {
        responses.push(h.await.unwrap().unwrap());
    }
    let ok = responses
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    let limited: Vec<_> = responses
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(ok, 7);
    assert_eq!(limited.len(), 3);
    assert!(limited.iter().all(|r| r.headers()["retry-after"] == "1"));
    assert_eq!(fake.requests().rate_limited, 3);
    // OAuth is outside the limit.
    let resp = client
        .post(format!("{base}/oauth2/access_token"))
        .json(&json!({"grant_type": "authorization_code", "code": "c1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

async fn token_request(base: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/oauth2/access_token"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_refused() {
    let (fake, base, _) = started(unlimited(), 1, 1).await;
    let exchange = json!({"client_id": "x", "client_secret": "y", "redirect_uri": "http://localhost", "grant_type": "authorization_code", "code": "abc"});
    let resp = token_request(&base, exchange.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let first: TokenPair = resp.json().await.unwrap();
    assert_eq!(first.token_type, "Bearer");
    assert_eq!(first.expires_in, 86_400);
    assert_eq!(first.access_token.split('.').count(), 3);
    // A code works once.
    assert_eq!(
        token_request(&base, exchange).await.status(),
        StatusCode::BAD_REQUEST
    );

    let refresh = |t: &str| json!({"grant_type": "refresh_token", "refresh_token": t});
    let resp = token_request(&base, refresh(&first.refresh_token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let second: TokenPair = resp.json().await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);

    let resp = token_request(&base, refresh(&first.refresh_token)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["hint"], "Token has been revoked");

    let resp = get(&format!("{base}/api/v4/account"), &second.access_token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let log = fake.requests();
    assert_eq!(log.code_exchanges, 2);
    assert_eq!(log.token_refreshes, 2);
}

#[tokio::test]
async fn expired_tokens_answer_401_and_refresh_still_works() {
    let config = FakeConfig {
        long_lived_token: Some("long-lived".into()),
        ..unlimited()
    };
    let (fake, base, _) = started(config, 2, 2).await;
    let pair = fake.issue_tokens();
    let url = format!("{base}/api/v4/leads/{}", fake.lead_ids()[0]);
    assert_eq!(get(&url, &pair.access_token).await.status(), StatusCode::OK);
    assert_eq!(
        get(&url, "nonsense").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        reqwest::get(&url).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    fake.expire_tokens();
    let resp = get(&url, &pair.access_token).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&url, "long-lived").await.status(), StatusCode::OK);

    let resp = token_request(
        &base,
        json!({"grant_type": "refresh_token", "refresh_token": pair.refresh_token}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let fresh: TokenPair = resp.json().await.unwrap();
    assert_eq!(
        get(&url, &fresh.access_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn short_lived_tokens_expire_by_time() {
    let config = FakeConfig {
        token_lifetime: Duration::from_millis(300),
        ..unlimited()
    };
    let (fake, base, token) = started(config, 1, 1).await;
    let url = format!("{base}/api/v4/leads/{}", fake.lead_ids()[0]);
    assert_eq!(get(&url, &token).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&url, &token).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn failure_modes_return_the_status_then_recover() {
    let (fake, base, token) = started(unlimited(), 2, 2).await;
    let url = format!("{base}/api/v4/leads");
    fake.set_failure(Failure::Status {
        status: 503,
        count: Some(2),
    });
    for _ in 0..2 {
        let resp = get(&url, &token).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
    }
    assert_eq!(get(&url, &token).await.status(), StatusCode::OK);
    assert_eq!(fake.failure(), Failure::None);

    fake.set_failure(Failure::Status {
        status: 500,
        count: None,
    });
    for _ in 0..3 {
        assert_eq!(
            get(&url, &token).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    // OAuth fails too: a failing server fails everything.
    assert_eq!(
        token_request(
            &base,
            json!({"grant_type": "authorization_code", "code": "z"})
        )
        .await
        .status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );

    fake.set_failure(Failure::Down);
    let fresh = reqwest::Client::new();
    let err = fresh.get(&url).bearer_auth(&token).send().await;
    match err {
        Err(_) => {}
        Ok(resp) => assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE),
    }
    fake.set_failure(Failure::None);
    assert_eq!(get(&url, &token).await.status(), StatusCode::OK);

    fake.set_latency(Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    assert_eq!(get(&url, &token).await.status(), StatusCode::OK);
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn counters_count_every_request() {
    let config = FakeConfig {
        rate_per_second: Some(2),
        ..FakeConfig::default()
    };
    let (fake, base, token) = started(config, 3, 3).await;
    let id = fake.lead_ids()[0];
    get(&format!("{base}/api/v4/leads/{id}"), &token).await;
    get(&format!("{base}/api/v4/leads/1"), &token).await;
    get(&format!("{base}/api/v4/leads?filter[id][]={id}"), &token).await; // 429
    get(&format!("{base}/nowhere"), &token).await;
    fake.set_failure(Failure::Status {
        status: 502,
        count: Some(1),
    });
    get(&format!("{base}/api/v4/contacts"), &token).await;
    // Control endpoints are not counted.
    reqwest::get(format!("{base}/__fake/stats")).await.unwrap();

    let log = fake.requests();
    assert_eq!(log.total, 5);
    assert_eq!(log.route("GET /api/v4/leads/{id}"), 2);
    assert_eq!(log.route("GET /api/v4/leads"), 1);
    assert_eq!(log.route("GET /api/v4/contacts"), 1);
    assert_eq!(log.route("GET /nowhere"), 1);
    assert_eq!(log.status(200), 1);
    assert_eq!(log.status(404), 2);
    assert_eq!(log.status(429), 1);
    assert_eq!(log.status(502), 1);
    assert_eq!(log.rate_limited, 1);

    let stats: Value = reqwest::get(format!("{base}/__fake/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"], 5);
    assert_eq!(stats["by_status"]["404"], 2);

    fake.reset_counters();
    assert_eq!(fake.requests().total, 0);
}

#[tokio::test]
async fn control_endpoints_drive_faults() {
    let (fake, base, token) = started(unlimited(), 2, 2).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v4/account");
    let resp = client
        .post(format!("{base}/__fake/fail"))
        .json(&json!({"status": 429, "count": 1}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let resp = get(&url, &token).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(get(&url, &token).await.status(), StatusCode::OK);

    client
        .post(format!("{base}/__fake/expire-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&url, &token).await.status(), StatusCode::UNAUTHORIZED);

    client
        .post(format!("{base}/__fake/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(fake.requests().total, 0);

    let id = fake.lead_ids()[0];
    let before = fake.lead(id).unwrap();
    let touched: Value = client
        .post(format!("{base}/__fake/touch/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(touched["updated_at"].as_i64() > before["updated_at"].as_i64());
    assert_eq!(touched["old_status_id"], before["status_id"]);
    assert_ne!(touched["status_id"], before["status_id"]);
}

#[tokio::test]
async fn webhook_subscriptions_are_stored() {
    let (fake, base, token) = started(unlimited(), 1, 1).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v4/webhooks");
    assert_eq!(get(&url, &token).await.status(), StatusCode::NO_CONTENT);
    let resp = client
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"destination": "https://example.org/hook", "settings": ["add_lead", "status_lead"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = get(&url, &token).await.json().await.unwrap();
    assert_eq!(
        body["_embedded"]["webhooks"][0]["destination"],
        "https://example.org/hook"
    );
    assert_eq!(
        body["_embedded"]["webhooks"][0]["settings"][1],
        "status_lead"
    );
    assert_eq!(fake.webhooks().len(), 1);
    let resp = client
        .delete(&url)
        .bearer_auth(&token)
        .json(&json!({"destination": "https://example.org/hook"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(fake.webhooks().is_empty());
}
