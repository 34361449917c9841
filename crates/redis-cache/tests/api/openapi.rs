//! The OpenAPI document describes the API as it is: every route the service
//! answers, and only those; real responses validate against the documented
//! schemas, with their status codes and headers documented; and `/docs`
//! works with no internet access.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, body, header};

/// What the router serves, by method and path template.
const ROUTES: [(&str, &str); 14] = [
    ("get", "/items/{id}"),
    ("put", "/items/{id}"),
    ("patch", "/items/{id}"),
    ("delete", "/items/{id}"),
    ("post", "/items"),
    ("post", "/items/batch"),
    ("post", "/cache/invalidate"),
    ("post", "/cache/warm"),
    ("get", "/stats"),
    ("post", "/stats/reset"),
    ("get", "/health"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // Each is really served: neither "no such route" nor "method not allowed".
    for (method, path) in ROUTES {
        let url = app.url(&path.replace("{id}", "1"));
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .http
            .request(method.clone(), url)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer = response.text().await.unwrap();
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && !answer.contains("route not found"),
            "{method} {path} is documented but not served: {status} {answer}"
        );
    }
}

/// Validates `instance` against the documented schema `name`.
fn conforms(doc: &Value, name: &str, instance: &Value) {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{instance:#}");
}

/// The documented response of `method path` for `status`.
fn documented_response<'a>(
    doc: &'a Value,
    method: &str,
    path: &str,
    status: StatusCode,
) -> &'a Value {
    let response = &doc["paths"][path][method]["responses"][status.as_str()];
    assert!(
        !response.is_null(),
        "{method} {path} does not document {status}"
    );
    response
}

/// Checks a real response: its status is documented for the route, its body
/// validates against the documented schema, and its documented headers are
/// there.
async fn check(doc: &Value, method: &str, path: &str, response: reqwest::Response) -> Value {
    let status = response.status();
    let documented = documented_response(doc, method, path, status).clone();
    for (name, spec) in documented["headers"].as_object().into_iter().flatten() {
        let optional = spec["required"] == false
            && spec["schema"]["type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("null")));
        let always = !optional && !["X-Cache-Tier", "Age", "Retry-After"].contains(&name.as_str());
        if always {
            assert!(
                header(&response, name).is_some(),
                "{method} {path} {status}: no {name} header"
            );
        }
    }
    let answer = response.text().await.unwrap();
    let content = &documented["content"];
    if let Some(reference) = content["application/json"]["schema"]["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        let value: Value = serde_json::from_str(&answer).unwrap();
        conforms(doc, name, &value);
        value
    } else {
        Value::String(answer)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_match_the_document() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = document(&app).await;

    let item = check(&doc, "get", "/items/{id}", app.get_item("1").await).await;
    assert_eq!(item["name"], "Laptop Pro");
    check(&doc, "get", "/items/{id}", app.get_item("1").await).await;
    check(&doc, "get", "/items/{id}", app.get_item("ghost").await).await;
    check(&doc, "get", "/items/{id}", app.get_item("not ok").await).await;
    let not_modified = app
        .send_with(Method::GET, "/items/1", ("If-None-Match", "\"1\""), None)
        .await;
    check(&doc, "get", "/items/{id}", not_modified).await;

    let created = app
        .create(json!({ "id": "doc-1", "name": "Documented", "price": 2.5, "stock": 3 }))
        .await;
    check(&doc, "post", "/items", created).await;
    check(
        &doc,
        "post",
        "/items",
        app.create(json!({ "id": "doc-1", "name": "Again" })).await,
    )
    .await;
    check(
        &doc,
        "post",
        "/items",
        app.create(json!({ "price": -1 })).await,
    )
    .await;
    check(
        &doc,
        "put",
        "/items/{id}",
        app.put("doc-1", json!({ "stock": 4 })).await,
    )
    .await;
    check(
        &doc,
        "put",
        "/items/{id}",
        app.put("nope", json!({ "stock": 4 })).await,
    )
    .await;
    let stale_match = app
        .send_with(
            Method::PUT,
            "/items/doc-1",
            ("If-Match", "\"1\""),
            Some(json!({ "stock": 5 })),
        )
        .await;
    check(&doc, "put", "/items/{id}", stale_match).await;
    check(
        &doc,
        "post",
        "/items/batch",
        app.batch(&["1", "2", "nope"]).await,
    )
    .await;
    check(
        &doc,
        "post",
        "/items/batch",
        app.post("/items/batch", &json!({})).await,
    )
    .await;
    check(
        &doc,
        "post",
        "/cache/invalidate",
        app.invalidate(json!({ "key": "item:1" })).await,
    )
    .await;
    check(
        &doc,
        "post",
        "/cache/invalidate",
        app.invalidate(json!({ "pattern": "*" })).await,
    )
    .await;
    check(
        &doc,
        "post",
        "/cache/warm",
        app.post("/cache/warm", &json!({ "limit": 10 })).await,
    )
    .await;
    check(&doc, "get", "/stats", app.get("/stats").await).await;
    check(
        &doc,
        "post",
        "/stats/reset",
        app.post("/stats/reset", &json!({})).await,
    )
    .await;
    check(&doc, "get", "/health", app.get("/health").await).await;
    check(&doc, "get", "/livez", app.get("/livez").await).await;
    check(&doc, "get", "/readyz", app.get("/readyz").await).await;
    check(&doc, "get", "/metrics", app.get("/metrics").await).await;
    check(&doc, "delete", "/items/{id}", app.delete("doc-1").await).await;
    check(&doc, "delete", "/items/{id}", app.delete("doc-1").await).await;

    let get = &doc["paths"]["/items/{id}"]["get"]["responses"]["200"]["headers"];
    for name in ["X-Cache-Status", "X-Cache-Tier", "ETag"] {
        assert!(!get[name].is_null(), "GET /items/{{id}} documents {name}");
    }
}

/// The interactive docs load their assets from the service itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_work_offline() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let assets: Vec<String> = html
        .split(['"', '\''])
        .filter(|part| {
            [".js", ".css", ".png"]
                .iter()
                .any(|ext| part.ends_with(ext))
        })
        .map(str::to_owned)
        .collect();
    assert!(assets.len() >= 3, "{assets:?}");
    for asset in &assets {
        assert!(!asset.contains("://"), "{asset} is fetched from elsewhere");
        let url = format!("/docs/{}", asset.trim_start_matches("./"));
        assert_eq!(app.get(&url).await.status(), StatusCode::OK, "{url}");
    }
    let initializer = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"));
    assert!(!initializer.contains("https://"), "no remote document");
}
