//! A closed-loop webhook sender as light as `pgbench`'s client, so that the figures measure the
//! service rather than the load generator: each sender keeps one HTTP/1.1 keep-alive connection
//! (hyper's client connection, nothing pooled or shared), and bodies come from a set of templates
//! made once from the fake's data, each request writing a fresh `updated_at` into its template, so
//! every body is a distinct event (stored, never a duplicate) without building it from scratch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fake_amocrm::{FakeAmo, SendReport, contact_event_body, lead_event_body, summarize};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A body with the digits of its first `updated_at` value cut out.
struct Template {
    head: Vec<u8>,
    updated_at: u64,
    tail: Vec<u8>,
}

impl Template {
    fn parse(body: &str) -> Option<Template> {
        let at = ["%5Bupdated_at%5D=", "[updated_at]="]
            .iter()
            .find_map(|key| body.find(key).map(|i| i + key.len()))?;
        let digits = body[at..].bytes().take_while(u8::is_ascii_digit).count();
        Some(Template {
            head: body.as_bytes()[..at].to_vec(),
            updated_at: body[at..at + digits].parse().ok()?,
            tail: body.as_bytes()[at + digits..].to_vec(),
        })
    }

    /// The body with `updated_at` moved `offset` seconds on.
    fn render(&self, offset: u64) -> Bytes {
        let value = (self.updated_at + offset).to_string();
        let mut body = Vec::with_capacity(self.head.len() + value.len() + self.tail.len());
        body.extend_from_slice(&self.head);
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(&self.tail);
        body.into()
    }
}

/// Templates in the ingest mix (lead_status 4 : lead_update 4 : lead_add 1 : contact_update 1).
pub struct Bodies {
    templates: Vec<Template>,
    next: AtomicU64,
}

impl Bodies {
    pub fn from_fake(fake: &FakeAmo, count: usize) -> anyhow::Result<Bodies> {
        let config = fake.config();
        let (account, subdomain) = (config.account_id, config.subdomain.clone());
        let leads = fake.lead_ids();
        let contacts = fake.contact_ids();
        let mut templates = Vec::with_capacity(count);
        for i in 0..count {
            let body = match i % 10 {
                0..=3 => lead_event_body(
                    &fake.touch_lead(leads[i % leads.len()]),
                    "status",
                    account,
                    &subdomain,
                ),
                4..=7 => lead_event_body(
                    &fake.touch_lead(leads[(i * 7) % leads.len()]),
                    "update",
                    account,
                    &subdomain,
                ),
                8 => lead_event_body(&fake.create_lead(), "add", account, &subdomain),
                _ => contact_event_body(
                    &fake.touch_contact(contacts[i % contacts.len()]),
                    "update",
                    account,
                    &subdomain,
                ),
            };
            templates.push(Template::parse(&body).context("a body without updated_at")?);
        }
        Ok(Bodies {
            templates,
            next: AtomicU64::new(0),
        })
    }

    /// The next body: a template in turn, with an `updated_at` no other body has had.
    fn next(&self) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let template = &self.templates[(n % self.templates.len() as u64) as usize];
        // Every body gets a distinct offset: two bodies never share template and time.
        template.render(1 + n)
    }
}

/// Sends for `duration` (or `total` bodies, whichever ends first) from `senders` closed-loop
/// senders, each on its own connection. Latency is from the request's first byte to the whole answer.
pub async fn send(
    url: &str,
    bodies: Arc<Bodies>,
    senders: usize,
    duration: Option<Duration>,
    total: Option<u64>,
) -> anyhow::Result<SendReport> {
    let uri: hyper::Uri = url.parse().context("webhook URL")?;
    let authority = uri.authority().context("URL without host")?.clone();
    let path = uri.path().to_owned();
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let budget = Arc::new(AtomicU64::new(total.unwrap_or(u64::MAX)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders.max(1) {
        let (bodies, budget) = (bodies.clone(), budget.clone());
        let (authority, path) = (authority.clone(), path.clone());
        tasks.spawn(async move {
            let stream = TcpStream::connect(authority.as_str()).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let mut outcomes: Vec<(Option<u16>, Duration)> = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                        left.checked_sub(1)
                    })
                    .is_err()
                {
                    break;
                }
                let request = hyper::Request::post(path.as_str())
                    .header(hyper::header::HOST, authority.as_str())
                    .header(
                        hyper::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(Full::new(bodies.next()))?;
                let t0 = Instant::now();
                let status = match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.into_body().collect().await;
                        Some(status)
                    }
                    Err(_) => None,
                };
                outcomes.push((status, t0.elapsed()));
                if status.is_none() {
                    break;
                }
            }
            anyhow::Ok(outcomes)
        });
    }
    let mut report = SendReport::default();
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        for (status, took) in done?? {
            latencies.push(took);
            report.sent += 1;
            match status {
                Some(s) => {
                    *report.status_counts.entry(s).or_default() += 1;
                    if (200..300).contains(&s) {
                        report.acknowledged += 1;
                    } else {
                        report.failed += 1;
                    }
                }
                None => {
                    report.transport_errors += 1;
                    report.failed += 1;
                }
            }
        }
    }
    report.elapsed_secs = start.elapsed().as_secs_f64();
    report.achieved_rate = report.sent as f64 / report.elapsed_secs.max(f64::EPSILON);
    report.latency = summarize(&mut latencies);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_is_a_distinct_event() {
        let fake = crate::ingest::body_source();
        let bodies = Bodies::from_fake(&fake, 20).unwrap();
        let parser = amocrm_webhook::Parser::default();
        let mut hashes = std::collections::HashSet::new();
        for _ in 0..100 {
            let body = bodies.next();
            let batch = parser
                .parse(Some("application/x-www-form-urlencoded"), &body)
                .expect("a template renders a valid body");
            assert_eq!(batch.events.len(), 1);
            assert!(hashes.insert(batch.events[0].event_hash()));
        }
    }
}
