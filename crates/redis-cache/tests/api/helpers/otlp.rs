//! A small OTLP/HTTP (JSON) receiver that collects the spans a service
//! exports.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Spans received, flattened: one JSON object per span.
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
    let export: Value = serde_json::from_slice(&body).expect("OTLP JSON");
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

/// An OTLP/HTTP receiver on a free port; returns its endpoint.
pub async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, received)
}

/// The value of attribute `key` (as a string, whatever its type).
pub fn attribute(holder: &Value, key: &str) -> Option<String> {
    holder["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| {
            let value = &a["value"];
            value["stringValue"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string())
        })
}
