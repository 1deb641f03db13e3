//! Retries, backoff, Retry-After and the shared rate limiter, end to end against a mock.
//!
//! Tests that measure waits run on tokio's paused clock: sleeps complete at once while
//! `tokio::time::Instant` advances, so seconds of backoff cost no real time.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amocrm_client::{
    Client, Error, LeadId, RateLimit, RequestEvent, RequestObserver, RetryPolicy, WebhookSetting,
};
use support::*;
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// No idle-pool timer, so paused time only jumps for the client's own sleeps.
fn paused_http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn retries_after_429_honouring_retry_after() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads/17657"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "2"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/leads/17657"))
        .respond_with(json("lead.json"))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server)
        .http_client(paused_http())
        .retry(RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(10),
        })
        .long_lived_token(TOKEN)
        .build()
        .unwrap();

    let started = Instant::now();
    let lead = client.leads().get(LeadId(17657), &[]).await.unwrap();

    assert_eq!(lead.id, LeadId(17657));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let usage = client.usage();
    assert_eq!(usage.count("GET /api/v4/leads/{id}", 429), 1);
    assert_eq!(usage.count("GET /api/v4/leads/{id}", 200), 1);
    assert_eq!(usage.retries, 1);
}

#[tokio::test]
async fn retry_after_longer_than_max_delay_is_returned_not_waited() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads/1"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .leads()
        .get(LeadId(1), &[])
        .await
        .unwrap_err();
    match err {
        Error::RateLimited { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads/1"))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&server)
        .await;
    let client = builder(&server)
        .retry(fast_retry(2))
        .long_lived_token(TOKEN)
        .build()
        .unwrap();

    let err = client.leads().get(LeadId(1), &[]).await.unwrap_err();

    assert!(matches!(err, Error::Server { status: 503, .. }), "{err}");
    assert!(err.is_retryable());
    let usage = client.usage();
    assert_eq!(usage.count("GET /api/v4/leads/{id}", 503), 3);
    assert_eq!(usage.retries, 2);
}

#[tokio::test]
async fn server_error_then_success() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads/17657"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/leads/17657"))
        .respond_with(json("lead.json"))
        .mount(&server)
        .await;
    let client = client(&server);
    assert!(client.leads().get(LeadId(17657), &[]).await.is_ok());
    assert_eq!(client.usage().total_requests(), 3);
}

#[tokio::test]
async fn writes_are_not_retried_on_server_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/webhooks"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .webhooks()
        .subscribe("https://example.com/hook", &[WebhookSetting::AddLead])
        .await
        .unwrap_err();
    assert!(err.may_have_been_applied(), "{err}");
    assert!(
        matches!(err, Error::MaybeApplied { ref source, .. } if matches!(**source, Error::Server { status: 500, .. }))
    );
}

#[tokio::test]
async fn writes_are_retried_on_429() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v4/webhooks"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v4/webhooks"))
        .respond_with(json("webhook_created.json"))
        .expect(1)
        .mount(&server)
        .await;
    let hook = client(&server)
        .webhooks()
        .subscribe("https://example.com/hook", &[WebhookSetting::AddLead])
        .await
        .unwrap();
    assert_eq!(hook.id.0, 1146394);
}

#[tokio::test]
async fn transport_errors_are_bounded_and_carry_no_url() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::builder()
        .base_url(format!("http://127.0.0.1:{port}"))
        .rate_limit(fast_rate())
        .retry(fast_retry(2))
        .long_lived_token(TOKEN)
        .build()
        .unwrap();

    let err = client
        .leads()
        .get_many(&[LeadId(1)], &[])
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(err.is_retryable());
    let text = format!("{err} {err:?}");
    assert!(!text.contains("filter"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(client.usage().count("GET /api/v4/leads", 0), 3);
}

#[tokio::test(start_paused = true)]
async fn rate_limiter_spaces_requests_across_clones() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads/17657"))
        .respond_with(json("lead.json"))
        .expect(12)
        .mount(&server)
        .await;
    let client = builder(&server)
        .http_client(paused_http())
        .rate_limit(RateLimit {
            per_second: 5,
            per_minute: None,
            per_hour: None,
            guard: Duration::ZERO,
        })
        .long_lived_token(TOKEN)
        .build()
        .unwrap();

    let started = Instant::now();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client.leads().get(LeadId(17657), &[]).await.unwrap();
                started.elapsed()
            })
        })
        .collect();
    let mut finished = Vec::new();
    for task in tasks {
        finished.push(task.await.unwrap());
    }
    finished.sort();

    // Slots are booked when a request asks for one: 5 at once, 5 a second later, 2 after two
    // seconds. (Completion times cannot show this: paused time also jumps while requests are
    // on the wire.)
    let usage = client.usage();
    assert_eq!(usage.rate_limit_waits, 7);
    assert_eq!(usage.rate_limit_wait_time, Duration::from_secs(5 + 2 * 2));
    assert!(finished[11] >= Duration::from_secs(2), "{finished:?}");
    assert_eq!(usage.count("GET /api/v4/leads/{id}", 200), 12);
}

#[tokio::test(start_paused = true)]
async fn minute_budget_is_enforced() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/account"))
        .respond_with(json("account.json"))
        .mount(&server)
        .await;
    let client = builder(&server)
        .http_client(paused_http())
        .rate_limit(RateLimit {
            per_second: 7,
            per_minute: Some(10),
            per_hour: Some(7_000),
            guard: Duration::ZERO,
        })
        .long_lived_token(TOKEN)
        .build()
        .unwrap();

    let started = Instant::now();
    for _ in 0..11 {
        client.account().get(&[]).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, u16)>>);

impl RequestObserver for Recorder {
    fn on_request(&self, event: &RequestEvent<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((event.endpoint.to_owned(), event.status));
    }
}

#[tokio::test]
async fn observer_sees_every_attempt() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v4/leads/17657"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v4/leads/17657"))
        .respond_with(json("lead.json"))
        .mount(&server)
        .await;
    let recorder = Arc::new(Recorder::default());
    let client = builder(&server)
        .observer(recorder.clone())
        .long_lived_token(TOKEN)
        .build()
        .unwrap();
    client.leads().get(LeadId(17657), &[]).await.unwrap();
    assert_eq!(
        *recorder.0.lock().unwrap(),
        [
            ("GET /api/v4/leads/{id}".to_owned(), 500),
            ("GET /api/v4/leads/{id}".to_owned(), 200)
        ]
    );
}
