//! Traces over OTLP: a small OTLP/HTTP (JSON) receiver collects what the
//! binary exports, and the span tree of a request is checked: the server
//! span continuing the caller's `traceparent`, the cache lookup, the Redis
//! commands, the source-of-truth query, the fill, and the invalidation on
//! writes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::binary::{signal, start, start_logging};
use crate::helpers::{Backend, Redis, TestDatabase, eventually};
use test_support::otlp::{attribute, receiver};

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn one<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one span {name:?} in {:#?}", names(spans));
    found[0]
}

fn names(spans: &[Value]) -> Vec<String> {
    spans
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn is_child(child: &Value, parent: &Value) -> bool {
    child["parentSpanId"] == parent["spanId"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_and_a_write_are_traced_end_to_end() {
    let (endpoint, received) = receiver();
    let redis = Redis::start();
    let database = TestDatabase::new(Backend::Sqlite).await;
    let (child, port) = start(&[
        ("REDIS_URL", redis.url()),
        ("DATABASE_URL", database.url.clone()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
        ("OTEL_SERVICE_NAME", "catalogue".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let miss = http
        .get(format!("{base}/items/1"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(miss.headers()["x-cache-status"], "MISS");

    eventually("the miss's fill reached the receiver", || async {
        named(&received.of_trace(caller_trace), "fill under leases").len() == 1
    })
    .await;
    let spans = received.of_trace(caller_trace);
    let server = one(&spans, "GET /items/{id}");
    assert_eq!(
        server["parentSpanId"], caller_span,
        "continues the caller's trace"
    );
    assert_eq!(server["kind"], 2, "SERVER");
    assert_eq!(server["service"], "catalogue");
    assert_eq!(
        attribute(server, "http.route").as_deref(),
        Some("/items/{id}")
    );
    assert_eq!(
        attribute(server, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attribute(server, "http.response.status_code").as_deref(),
        Some("200")
    );

    let lookup = one(&spans, "cache lookup");
    assert!(is_child(lookup, server));
    assert_eq!(attribute(lookup, "cache.status").as_deref(), Some("MISS"));
    let get = one(&spans, "GET");
    assert!(is_child(get, lookup));
    assert_eq!(get["kind"], 3, "CLIENT");
    assert_eq!(attribute(get, "db.system.name").as_deref(), Some("redis"));
    assert_eq!(attribute(get, "db.operation.name").as_deref(), Some("GET"));
    assert_eq!(
        attribute(get, "db.query.text").as_deref(),
        Some("GET item:1")
    );
    let load = one(&spans, "cache load");
    assert!(is_child(load, lookup));
    for name in ["take leases", "SELECT items", "fill under leases"] {
        assert!(is_child(one(&spans, name), load), "{name} under the load");
    }
    let select = one(&spans, "SELECT items");
    assert_eq!(
        attribute(select, "db.system.name").as_deref(),
        Some("sqlite")
    );
    assert_eq!(
        attribute(select, "db.operation.name").as_deref(),
        Some("SELECT")
    );

    // A write: the update, the delete in Redis and the publication.
    let write_trace = "0af7651916cd43dd8448eb211c80319c";
    let put = http
        .put(format!("{base}/items/1"))
        .header(
            "traceparent",
            format!("00-{write_trace}-b7ad6b7169203331-01"),
        )
        .json(&json!({ "stock": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    eventually("the write's publication reached the receiver", || async {
        named(&received.of_trace(write_trace), "cache:invalidate publish").len() == 1
    })
    .await;
    let spans = received.of_trace(write_trace);
    let server = one(&spans, "PUT /items/{id}");
    for name in ["UPDATE items", "BATCH UNLINK", "cache:invalidate publish"] {
        assert!(
            is_child(one(&spans, name), server),
            "{name} under the request"
        );
    }
    let publish = one(&spans, "cache:invalidate publish");
    assert_eq!(publish["kind"], 4, "PRODUCER");
    // The PUBLISH itself, sent by the instance's outbox task, is in the
    // write's trace, under its producer span.
    eventually("the PUBLISH reached the receiver", || async {
        named(&received.of_trace(write_trace), "PUBLISH").len() == 1
    })
    .await;
    let spans = received.of_trace(write_trace);
    let sent = one(&spans, "PUBLISH");
    assert!(is_child(sent, one(&spans, "cache:invalidate publish")));
    assert_eq!(
        attribute(sent, "db.query.text").as_deref(),
        Some("PUBLISH cache:invalidate")
    );
    assert_eq!(
        attribute(sent, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert!(attribute(sent, "server.port").is_some());
    assert_eq!(
        attribute(publish, "messaging.destination.name").as_deref(),
        Some("cache:invalidate")
    );

    // Keys, never values.
    let everything = serde_json::to_string(&received.spans()).unwrap();
    assert!(
        !everything.contains("Laptop Pro"),
        "an item value reached a span"
    );
    signal(&child, libc::SIGTERM);
}

/// A collector that does not answer costs requests nothing, and says so in
/// the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_logged_not_fatal() {
    let redis = Redis::start();
    let database = TestDatabase::new(Backend::Sqlite).await;
    let nothing_there = format!("http://127.0.0.1:{}", crate::helpers::free_port());
    let dir = tempfile::tempdir().unwrap();
    let (child, port, logs) = start_logging(
        dir.path(),
        &[
            ("REDIS_URL", redis.url()),
            ("DATABASE_URL", database.url.clone()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", nothing_there),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            // The default filter, as in production.
            ("RUST_LOG", "info".into()),
        ],
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..20 {
        let response = http
            .get(format!("http://127.0.0.1:{port}/items/2"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let export_failures = |logs: &std::sync::mpsc::Receiver<String>, wait: std::time::Duration| {
        let mut found = Vec::new();
        while let Ok(line) = logs.recv_timeout(wait) {
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if matches!(event["level"].as_str(), Some("WARN" | "ERROR"))
                && line.to_lowercase().contains("export")
            {
                found.push(line);
                break;
            }
        }
        found
    };
    // The log lines as they come, for up to 10 s.
    let (first, logs) = tokio::task::spawn_blocking(move || {
        (
            export_failures(&logs, std::time::Duration::from_secs(10)),
            logs,
        )
    })
    .await
    .unwrap();
    assert_eq!(first.len(), 1, "an export failure is logged");
    // More batches fail (one every 100 ms while requests come), but the
    // failure is not logged again for every one of them.
    let more = tokio::spawn({
        let http = http.clone();
        async move {
            for _ in 0..30 {
                let _ = http
                    .get(format!("http://127.0.0.1:{port}/items/2"))
                    .send()
                    .await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    });
    let again = tokio::task::spawn_blocking(move || {
        export_failures(&logs, std::time::Duration::from_secs(2))
    })
    .await
    .unwrap();
    more.await.unwrap();
    assert!(again.is_empty(), "logged again at once: {again:?}");
    signal(&child, libc::SIGTERM);
}
