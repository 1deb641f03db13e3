//! OAuth: code exchange, refresh ahead of expiry and on 401, single flight, persistence order.

mod support;

use std::sync::Arc;
use std::time::Duration;

use amocrm_client::{
    AuthorizationMode, Client, Error, InMemoryTokenStore, JsonFileTokenStore, LeadId, TokenStore,
};
use serde_json::json;
use support::*;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn oauth_client(server: &MockServer, store: Arc<dyn TokenStore>) -> Client {
    builder(server)
        .oauth(oauth_config(), store)
        .build()
        .unwrap()
}

async fn mount_token_endpoint(server: &MockServer, grant: serde_json::Value, expect: u64) {
    Mock::given(method("POST"))
        .and(path("/oauth2/access_token"))
        .and(body_partial_json(grant))
        .and(body_partial_json(json!({
            "client_id": "client-id-123",
            "client_secret": "client-secret-456",
            "redirect_uri": "https://jarvis.example.com/amocrm/oauth"
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("token.json"))
                // Long enough for concurrent callers to pile up behind the refresh.
                .set_delay(Duration::from_millis(100)),
        )
        .expect(expect)
        .mount(server)
        .await;
}

fn refresh_grant(refresh_token: &str) -> serde_json::Value {
    json!({ "grant_type": "refresh_token", "refresh_token": refresh_token })
}

#[tokio::test]
async fn refreshes_once_on_401_saving_the_new_pair_before_retrying() {
    let server = MockServer::start().await;
    let store = Arc::new(JournalStore::new(Some(pair(
        "old-access",
        "old-refresh",
        3600,
    ))));
    let journal = store.journal.clone();
    Mock::given(path("/api/v4/leads/17657"))
        .and(header("authorization", "Bearer old-access"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    mount_token_endpoint(&server, refresh_grant("old-refresh"), 1).await;
    let api_journal = journal.clone();
    Mock::given(path("/api/v4/leads/17657"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(move |_: &Request| {
            api_journal.lock().unwrap().push("api new-access".into());
            json("lead.json")
        })
        .expect(1)
        .mount(&server)
        .await;
    let client = oauth_client(&server, store.clone());

    let lead = client.leads().get(LeadId(17657), &[]).await.unwrap();

    assert_eq!(lead.id, LeadId(17657));
    assert_eq!(
        *journal.lock().unwrap(),
        ["save new-refresh", "api new-access"]
    );
    let saved = store.current().unwrap();
    assert_eq!(saved.access_token.secret(), "new-access");
    assert_eq!(saved.refresh_token.secret(), "new-refresh");
    assert_eq!(saved.expires_in, 86400);
    let usage = client.usage();
    assert_eq!(usage.token_refreshes, 1);
    assert_eq!(usage.count("POST /oauth2/access_token", 200), 1);
    assert_eq!(usage.count("GET /api/v4/leads/{id}", 401), 1);
}

#[tokio::test]
async fn twenty_concurrent_calls_with_an_expired_token_refresh_once() {
    let server = MockServer::start().await;
    let store = Arc::new(JournalStore::new(Some(pair(
        "old-access",
        "old-refresh",
        -10,
    ))));
    mount_token_endpoint(&server, refresh_grant("old-refresh"), 1).await;
    Mock::given(path("/api/v4/leads/17657"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(json("lead.json"))
        .expect(20)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/leads/17657"))
        .and(header("authorization", "Bearer old-access"))
        .respond_with(ResponseTemplate::new(401))
        .expect(0)
        .mount(&server)
        .await;
    let client = oauth_client(&server, store.clone());

    let calls = (0..20).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.leads().get(LeadId(17657), &[]).await })
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap().unwrap();
    }

    assert_eq!(*store.journal.lock().unwrap(), ["save new-refresh"]);
    assert_eq!(client.usage().token_refreshes, 1);
}

#[tokio::test]
async fn refreshes_ahead_of_expiry_within_the_margin() {
    let server = MockServer::start().await;
    // Valid for 30 more seconds of a day-long lifetime: inside the one-minute margin.
    let store = Arc::new(InMemoryTokenStore::new(Some(pair(
        "old-access",
        "old-refresh",
        30,
    ))));
    mount_token_endpoint(&server, refresh_grant("old-refresh"), 1).await;
    Mock::given(path("/api/v4/account"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(json("account.json"))
        .expect(1)
        .mount(&server)
        .await;
    let client = oauth_client(&server, store.clone());
    client.account().get(&[]).await.unwrap();
    assert_eq!(store.get().unwrap().refresh_token.secret(), "new-refresh");
}

#[tokio::test]
async fn a_pair_rotated_by_another_process_is_used_without_refreshing() {
    let server = MockServer::start().await;
    let store = Arc::new(JournalStore::new(Some(pair("access-a", "refresh-a", 3600))));
    mount_token_endpoint(&server, json!({}), 0).await;
    Mock::given(path("/api/v4/account"))
        .and(header("authorization", "Bearer access-a"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/account"))
        .and(header("authorization", "Bearer access-b"))
        .respond_with(json("account.json"))
        .expect(1)
        .mount(&server)
        .await;
    let client = oauth_client(&server, store.clone());
    // Warm the cache with pair A, then let "another process" rotate to B.
    assert_eq!(
        client
            .oauth()
            .unwrap()
            .access_token()
            .await
            .unwrap()
            .secret(),
        "access-a"
    );
    store.set(pair("access-b", "refresh-b", 3600));

    client.account().get(&[]).await.unwrap();

    assert!(
        store.journal.lock().unwrap().is_empty(),
        "no refresh, no save"
    );
}

/// A token answer granting `access`/`refresh` for a day.
fn refresh_answer(from: &str, access: &str, refresh: &str) -> Mock {
    Mock::given(method("POST"))
        .and(path("/oauth2/access_token"))
        .and(body_partial_json(refresh_grant(from)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer",
            "expires_in": 86400,
            "access_token": access,
            "refresh_token": refresh,
        })))
        .expect(1)
}

/// A token endpoint that turns `old-refresh` into `access-1`/`refresh-1`, and a store holding the
/// expired `old-access`/`old-refresh` pair whose next `failing` saves fail (the database is down).
async fn expired_pair_with_failing_saves(failing: u32) -> (MockServer, Arc<JournalStore>) {
    let server = MockServer::start().await;
    let store = Arc::new(JournalStore::new(Some(pair(
        "old-access",
        "old-refresh",
        -10,
    ))));
    *store.failing_saves.lock().unwrap() = failing;
    refresh_answer("old-refresh", "access-1", "refresh-1")
        .mount(&server)
        .await;
    (server, store)
}

/// An OAuth client for tests on tokio's paused clock: no idle-pool timer, so time only jumps
/// when the test advances it or the client sleeps.
fn paused_oauth_client(server: &MockServer, store: Arc<JournalStore>) -> Client {
    let http = reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap();
    builder(server)
        .http_client(http)
        .oauth(oauth_config(), store)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_refreshed_pair_that_could_not_be_saved_is_used_not_the_spent_stored_one() {
    // The database is down for the refresh's save and for the first retry.
    let (server, store) = expired_pair_with_failing_saves(2).await;
    refresh_answer("refresh-1", "access-2", "refresh-2")
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/leads/17657"))
        .and(header("authorization", "Bearer access-1"))
        .respond_with(json("lead.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/account"))
        .and(header("authorization", "Bearer access-1"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/account"))
        .and(header("authorization", "Bearer access-2"))
        .respond_with(json("account.json"))
        .expect(1)
        .mount(&server)
        .await;
    let client = oauth_client(&server, store.clone());

    // The refresh works; its save fails, and the call still goes through with the new token.
    client.leads().get(LeadId(17657), &[]).await.unwrap();
    assert_eq!(
        store.current().unwrap().refresh_token.secret(),
        "old-refresh"
    );
    // The next refresh starts from refresh-1 (in memory), never from the spent old-refresh.
    client.account().get(&[]).await.unwrap();

    assert_eq!(
        *store.journal.lock().unwrap(),
        [
            "failed save refresh-1",
            "failed save refresh-1",
            "save refresh-2"
        ]
    );
    assert_eq!(store.current().unwrap().refresh_token.secret(), "refresh-2");
    assert_eq!(client.usage().token_refreshes, 2);
}

#[tokio::test(start_paused = true)]
async fn a_refreshed_pair_that_could_not_be_saved_is_saved_again_later() {
    let (server, store) = expired_pair_with_failing_saves(1).await;
    Mock::given(path("/api/v4/leads/17657"))
        .and(header("authorization", "Bearer access-1"))
        .respond_with(json("lead.json"))
        .expect(2)
        .mount(&server)
        .await;
    let client = paused_oauth_client(&server, store.clone());

    client.leads().get(LeadId(17657), &[]).await.unwrap();
    assert_eq!(*store.journal.lock().unwrap(), ["failed save refresh-1"]);
    tokio::time::advance(amocrm_client::SAVE_RETRY).await;
    // Any later call saves the pair once the retry is due, without refreshing again.
    client.leads().get(LeadId(17657), &[]).await.unwrap();

    assert_eq!(
        *store.journal.lock().unwrap(),
        ["failed save refresh-1", "save refresh-1"]
    );
    assert_eq!(store.current().unwrap().access_token.secret(), "access-1");
    assert_eq!(client.usage().token_refreshes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_newer_stored_pair_is_adopted_not_overwritten_by_the_pending_one() {
    let (server, store) = expired_pair_with_failing_saves(1).await;
    for (token, calls) in [("access-1", 2), ("access-x", 1)] {
        Mock::given(path("/api/v4/leads/17657"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(json("lead.json"))
            .expect(calls)
            .mount(&server)
            .await;
    }
    let client = paused_oauth_client(&server, store.clone());

    client.leads().get(LeadId(17657), &[]).await.unwrap();
    // Meanwhile an operator re-authorizes (or another process rotates): the store moves on.
    store.set(pair("access-x", "refresh-x", 3600));
    tokio::time::advance(amocrm_client::SAVE_RETRY).await;
    client.leads().get(LeadId(17657), &[]).await.unwrap();
    client.leads().get(LeadId(17657), &[]).await.unwrap();

    assert_eq!(
        *store.journal.lock().unwrap(),
        ["failed save refresh-1"],
        "the pending pair is never written over the newer one"
    );
    assert_eq!(store.current().unwrap().refresh_token.secret(), "refresh-x");
}

#[tokio::test]
async fn save_pending_tokens_saves_now_or_says_it_cannot() {
    let (server, store) = expired_pair_with_failing_saves(2).await;
    Mock::given(path("/api/v4/leads/17657"))
        .and(header("authorization", "Bearer access-1"))
        .respond_with(json("lead.json"))
        .expect(1)
        .mount(&server)
        .await;
    let client = oauth_client(&server, store.clone());
    let oauth = client.oauth().unwrap();
    // Nothing pending yet.
    oauth.save_pending_tokens().await.unwrap();

    client.leads().get(LeadId(17657), &[]).await.unwrap();
    let err = oauth.save_pending_tokens().await.unwrap_err();
    assert!(matches!(err, Error::TokenStore(_)), "{err}");
    oauth.save_pending_tokens().await.unwrap();

    assert_eq!(
        *store.journal.lock().unwrap(),
        [
            "failed save refresh-1",
            "failed save refresh-1",
            "save refresh-1"
        ]
    );
    assert_eq!(store.current().unwrap().refresh_token.secret(), "refresh-1");
}

#[tokio::test]
async fn a_second_401_is_returned_not_refreshed_again() {
    let server = MockServer::start().await;
    let store = Arc::new(InMemoryTokenStore::new(Some(pair(
        "old-access",
        "old-refresh",
        3600,
    ))));
    mount_token_endpoint(&server, refresh_grant("old-refresh"), 1).await;
    Mock::given(path("/api/v4/account"))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;
    let err = oauth_client(&server, store)
        .account()
        .get(&[])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn token_requests_are_never_retried() {
    let server = MockServer::start().await;
    let store = Arc::new(InMemoryTokenStore::new(Some(pair(
        "old-access",
        "old-refresh",
        -1,
    ))));
    Mock::given(path("/oauth2/access_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(fixture("token_error.json")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/oauth2/access_token"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    let client = oauth_client(&server, store);

    let err = client.account().get(&[]).await.unwrap_err();
    match &err {
        Error::TokenRequest {
            grant,
            status,
            detail,
        } => {
            assert_eq!(*grant, "refresh_token");
            assert_eq!(*status, 400);
            assert!(detail.contains("параметров"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("old-refresh") && !text.contains("client-secret"),
        "{text}"
    );

    let err = client.account().get(&[]).await.unwrap_err();
    assert!(
        matches!(err, Error::TokenRequest { status: 503, .. }),
        "{err}"
    );
    assert_eq!(client.usage().requests_to("GET /api/v4/account"), 0);
}

#[tokio::test]
async fn exchange_code_saves_to_a_file_store() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("amocrm-tokens.json");
    mount_token_endpoint(
        &server,
        json!({ "grant_type": "authorization_code", "code": "def502000" }),
        1,
    )
    .await;
    Mock::given(path("/api/v4/account"))
        .and(header("authorization", "Bearer new-access"))
        .respond_with(json("account.json"))
        .expect(1)
        .mount(&server)
        .await;
    let client = oauth_client(&server, Arc::new(JsonFileTokenStore::new(&file)));

    let tokens = client
        .oauth()
        .unwrap()
        .exchange_code("def502000")
        .await
        .unwrap();
    assert_eq!(tokens.refresh_token.secret(), "new-refresh");
    assert!(!format!("{tokens:?}").contains("new-refresh"));

    // A fresh client (another run) finds the pair in the file.
    let client = oauth_client(&server, Arc::new(JsonFileTokenStore::new(&file)));
    client.account().get(&[]).await.unwrap();
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["refresh_token"], "new-refresh");
    assert_eq!(stored["token_type"], "Bearer");
}

#[tokio::test]
async fn without_stored_tokens_calls_fail_before_sending() {
    let server = MockServer::start().await;
    let client = oauth_client(&server, Arc::new(InMemoryTokenStore::default()));
    let err = client.leads().get(LeadId(1), &[]).await.unwrap_err();
    assert!(matches!(err, Error::NoToken), "{err}");
    assert_eq!(client.usage().total_requests(), 0);
}

#[tokio::test]
async fn authorization_url() {
    let client = Client::builder()
        .subdomain("geodrive")
        .oauth(oauth_config(), Arc::new(InMemoryTokenStore::default()))
        .build()
        .unwrap();
    let oauth = client.oauth().unwrap();
    assert_eq!(
        oauth.authorization_url("xyz 1").as_str(),
        "https://www.amocrm.ru/oauth?client_id=client-id-123&state=xyz+1&mode=post_message"
    );
    assert_eq!(
        oauth
            .authorization_url_with_mode("s", AuthorizationMode::Popup)
            .as_str(),
        "https://www.amocrm.ru/oauth?client_id=client-id-123&state=s&mode=popup"
    );
    let kommo = Client::builder()
        .subdomain("geodrive")
        .domain(amocrm_client::Domain::KommoCom)
        .oauth(oauth_config(), Arc::new(InMemoryTokenStore::default()))
        .build()
        .unwrap();
    assert!(
        kommo
            .oauth()
            .unwrap()
            .authorization_url("s")
            .as_str()
            .starts_with("https://www.kommo.com/oauth?")
    );
    let long_lived = Client::builder()
        .subdomain("geodrive")
        .long_lived_token("t")
        .build()
        .unwrap();
    assert!(matches!(long_lived.oauth(), Err(Error::Config(_))));
}
