//! `X-Request-Id`: a caller's id of 1 to 128 visible ASCII characters is
//! echoed and used; anything else (too long, spaces, control or non-ASCII
//! characters, several values) is replaced by a generated UUID, which is
//! what the response, the log line and the span carry.

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::Value;

use crate::helpers::binary::{signal, start_logging};
use crate::helpers::{Backend, Redis, TestApp, TestDatabase, eventually};
use test_support::otlp::{attribute, receiver};

fn is_generated(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|uuid| uuid.get_version_num() == 4)
}

async fn echoed(app: &TestApp, path: &str, ids: &[HeaderValue]) -> String {
    let mut request = app.http.get(app.url(path));
    for id in ids {
        request = request.header("x-request-id", id.clone());
    }
    let response = request.send().await.unwrap();
    let echoed = response.headers().get_all("x-request-id");
    assert_eq!(echoed.iter().count(), 1, "one id in the response");
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_request_id_is_echoed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for id in [
        "a".to_owned(),
        "717f8f60-9dfd-429f-8e87-918c1520e962".to_owned(),
        "client:42/retry#2@edge!~".to_owned(),
        "x".repeat(128),
    ] {
        let value = HeaderValue::from_str(&id).unwrap();
        assert_eq!(echoed(&app, "/items/1", &[value]).await, id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_an_id_gets_a_generated_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let first = echoed(&app, "/items/1", &[]).await;
    let second = echoed(&app, "/items/1", &[]).await;
    assert!(is_generated(&first), "{first}");
    assert_ne!(first, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_or_malformed_request_id_is_replaced_by_a_generated_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let cases: Vec<(&str, Vec<HeaderValue>)> = vec![
        (
            "129 characters",
            vec![HeaderValue::from_str(&"x".repeat(129)).unwrap()],
        ),
        (
            "5,000 characters",
            vec![HeaderValue::from_str(&"x".repeat(5_000)).unwrap()],
        ),
        ("a space", vec![HeaderValue::from_static("two words")]),
        ("a tab", vec![HeaderValue::from_static("tab\there")]),
        (
            "non-ASCII",
            vec![HeaderValue::from_bytes("café".as_bytes()).unwrap()],
        ),
        ("empty", vec![HeaderValue::from_static("")]),
        (
            "two values",
            vec![
                HeaderValue::from_static("one"),
                HeaderValue::from_static("two"),
            ],
        ),
    ];
    for (what, ids) in cases {
        // On answers from a handler, from an error and from the router.
        for path in ["/items/1", "/items/bad!id", "/no/such/route"] {
            let id = echoed(&app, path, &ids).await;
            assert!(is_generated(&id), "{what} on {path}: got {id:?}");
        }
    }
}

/// The log line and the server span carry the id the response carries,
/// never the one refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_id_is_the_one_logged_and_traced() {
    let (endpoint, received) = receiver();
    let redis = Redis::start();
    let database = TestDatabase::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (child, port, logs) = start_logging(
        dir.path(),
        &[
            ("REDIS_URL", redis.url()),
            ("DATABASE_URL", database.url.clone()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    let refused = format!("refused-{}", "x".repeat(5_000));
    let trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/items/1"))
        .header("x-request-id", &refused)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(is_generated(&id), "{id}");

    eventually("the server span reached the receiver", || async {
        received
            .of_trace(trace)
            .iter()
            .any(|span| span["name"] == "GET /items/{id}")
    })
    .await;
    let spans = received.of_trace(trace);
    let server = spans
        .iter()
        .find(|span| span["name"] == "GET /items/{id}")
        .unwrap();
    assert_eq!(
        attribute(server, "request_id").as_deref(),
        Some(id.as_str())
    );

    let line = tokio::task::spawn_blocking(move || {
        while let Ok(line) = logs.recv_timeout(std::time::Duration::from_secs(10)) {
            assert!(
                !line.contains("refused-"),
                "the refused id was logged: {line}"
            );
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if event["message"] == "request" && event["route"] == "/items/{id}" {
                return Some(event);
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("a request log line");
    assert_eq!(line["request_id"], id);
    signal(&child, libc::SIGTERM);
}
