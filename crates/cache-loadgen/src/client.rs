//! The requests themselves: one HTTP call per operation against the
//! service's API, and the `--prepare` step that creates the items first.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::bail;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::report::Outcome;
use crate::target::Target;
use crate::workload::{Op, item_id};

pub struct Client {
    http: reqwest::Client,
    target: Target,
    key_prefix: String,
    admin_token: Option<String>,
    /// Items this run created and has not deleted yet.
    created: Mutex<Vec<String>>,
    next_new: AtomicU64,
    /// Tells this run's new ids from another's.
    run_tag: String,
}

impl Client {
    pub fn new(
        target: Target,
        connections: usize,
        timeout: Duration,
        key_prefix: String,
        admin_token: Option<String>,
    ) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .timeout(timeout)
            .no_proxy()
            .build()?;
        Ok(Client {
            http,
            target,
            key_prefix,
            admin_token,
            created: Mutex::new(Vec::new()),
            next_new: AtomicU64::new(0),
            run_tag: format!("{:08x}", rand::random::<u32>()),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs `op` about the prepared items `keys` (one, or a batch's).
    pub async fn execute(&self, op: Op, keys: &[usize]) -> Outcome {
        let first = keys.first().copied().unwrap_or(0);
        let (method, path, body) = match op {
            Op::Get => (Method::GET, format!("/items/{}", item_id(first)), None),
            Op::Put => (
                Method::PUT,
                format!("/items/{}", item_id(first)),
                Some(json!({ "stock": first % 100, "price": 1.0 + (first % 1000) as f64 / 100.0 })),
            ),
            Op::Create => {
                let n = self.next_new.fetch_add(1, Ordering::Relaxed);
                let id = format!("lg-new-{}-{n}", self.run_tag);
                self.created
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(id.clone());
                (
                    Method::POST,
                    "/items".to_owned(),
                    Some(
                        json!({ "id": id, "name": "Load test item", "price": 9.99, "category": "load", "stock": 1 }),
                    ),
                )
            }
            Op::Delete => {
                let id = self
                    .created
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop()
                    // None left: an id that never existed (404), so that
                    // the prepared items stay for the reads.
                    .unwrap_or_else(|| format!("lg-none-{}", self.run_tag));
                (Method::DELETE, format!("/items/{id}"), None)
            }
            Op::Batch => {
                let ids: Vec<String> = keys.iter().map(|k| item_id(*k)).collect();
                (
                    Method::POST,
                    "/items/batch".to_owned(),
                    Some(json!({ "ids": ids })),
                )
            }
            Op::InvalidateKey => (
                Method::POST,
                "/cache/invalidate".to_owned(),
                Some(json!({ "key": format!("{}{}", self.key_prefix, item_id(first)) })),
            ),
            Op::InvalidatePattern => (
                Method::POST,
                "/cache/invalidate".to_owned(),
                Some(json!({ "pattern": format!("{}{}*", self.key_prefix, item_id(first)) })),
            ),
        };
        let mut request = self.http.request(method, self.target.url(&path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if matches!(op, Op::InvalidateKey | Op::InvalidatePattern)
            && let Some(token) = &self.admin_token
        {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) => {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let outcome = Outcome::Answered {
                    status: response.status().as_u16(),
                    cache_status: header("x-cache-status"),
                    cache_tier: header("x-cache-tier"),
                };
                // The whole answer: its time counts, and the connection is
                // reused only once the body is read.
                match response.bytes().await {
                    Ok(_) => outcome,
                    Err(err) => Outcome::Failed(describe(&err)),
                }
            }
            Err(err) => Outcome::Failed(describe(&err)),
        }
    }

    /// Creates the items `lg-0` … `lg-{keys-1}` (those that exist are left
    /// as they are), `connections` at a time.
    pub async fn prepare(&self, keys: usize, connections: usize) -> anyhow::Result<()> {
        let next = AtomicUsize::new(0);
        let create = || async {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= keys {
                    return Ok(());
                }
                let body = json!({
                    "id": item_id(index),
                    "name": format!("Item {index}"),
                    "description": "created by cache-loadgen --prepare",
                    "price": 1.0 + (index % 1000) as f64 / 100.0,
                    "category": "load",
                    "stock": index % 100,
                });
                let response = self
                    .http
                    .post(self.target.url("/items"))
                    .json(&body)
                    .send()
                    .await?;
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                if status != StatusCode::CREATED && status != StatusCode::CONFLICT {
                    bail!("preparing {}: {status} {text}", item_id(index));
                }
            }
        };
        let workers: Vec<_> = (0..connections.min(keys).max(1))
            .map(|_| create())
            .collect();
        for outcome in futures::future::join_all(workers).await {
            outcome?;
        }
        Ok(())
    }
}

/// A short, bounded name for a failed request.
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".into()
    } else if err.is_connect() {
        "connect".into()
    } else if err.is_body() || err.is_decode() {
        "body".into()
    } else {
        "transport".into()
    }
}
