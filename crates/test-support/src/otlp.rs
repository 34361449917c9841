//! An OTLP/HTTP (JSON encoding) traces receiver of the test's own: collects
//! every span exported to it, flattened out of its resource and scope.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

/// Spans received so far: one JSON object per span, with the exporting
/// resource's `service.name` added as `service`.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Value>>>);

impl Received {
    pub fn spans(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    pub fn of_trace(&self, trace_id: &str) -> Vec<Value> {
        self.spans()
            .into_iter()
            .filter(|span| span["traceId"].as_str() == Some(trace_id))
            .collect()
    }
}

async fn receive(State(received): State<Received>, body: Bytes) -> StatusCode {
    let Ok(export) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut spans = received.0.lock().unwrap();
    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
        let service = attribute(&resource["resource"], "service.name");
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let mut span = span.clone();
                span["service"] = json!(service);
                spans.push(span);
            }
        }
    }
    StatusCode::OK
}

/// Starts a receiver on a free port, served from a thread of its own (so
/// tests with and without a runtime can use it); returns the endpoint to
/// give exporters (`OTEL_EXPORTER_OTLP_ENDPOINT`) and what it receives.
pub fn receiver() -> (String, Received) {
    let received = Received::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await
        })
    });
    (endpoint, received)
}

/// The value of attribute `key` of a span or resource: a string as it is,
/// any other type as its OTLP JSON (`{"intValue":"200"}`), so that a test
/// comparing it with text checks its type too.
pub fn attribute(holder: &Value, key: &str) -> Option<String> {
    let value = value_of(holder, key)?;
    Some(
        value["stringValue"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned),
    )
}

/// The value of integer attribute `key` (OTLP JSON sends 64-bit integers
/// as strings); `None` when it is absent or of another type.
pub fn int_attribute(holder: &Value, key: &str) -> Option<i64> {
    value_of(holder, key)?["intValue"].as_str()?.parse().ok()
}

fn value_of<'a>(holder: &'a Value, key: &str) -> Option<&'a Value> {
    let attributes = holder["attributes"].as_array()?;
    Some(&attributes.iter().find(|a| a["key"] == key)?["value"])
}
