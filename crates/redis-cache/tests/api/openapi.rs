//! The OpenAPI document describes the API as it is. The router registers
//! every route from its description, so the two list the same paths; these
//! tests hold the rest against the running service, deriving what to try
//! from the document itself:
//!
//! - each documented path serves its documented methods, and every other
//!   method is a 405 whose `Allow` lists exactly those;
//! - each operation is driven into every status it can give: its example
//!   request, bad path parameters, unknown ids, conditional headers,
//!   malformed, non-JSON and oversize bodies, a missing or wrong token, and
//!   the same requests with Redis down, with the source of truth down and
//!   with it broken. Each answer's status must be documented for that
//!   operation, each header it carries documented for that status (and each
//!   documented header present), its media type documented and its body
//!   valid against the documented schema;
//! - every documented status was seen;
//! - `/docs` works with no internet access.

use std::collections::BTreeSet;

use redis_cache::http::BODY_LIMIT;
use redis_cache::secret::Secret;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Backend, TestApp, eventually, postgres};

const TOKEN: &str = "openapi-test-token";

/// For each operation, a request it answers normally on a fresh instance
/// with the demo data: operation id, path, JSON body. Reads name distinct
/// ids: after a failed read an id is not retried for a while, and answers
/// 503 whatever the failure was.
const EXAMPLES: [(&str, &str, Option<&str>); 18] = [
    ("fetch", "/items/1", None),
    ("create", "/items", Some(r#"{"name": "Documented"}"#)),
    ("update", "/items/1", Some(r#"{"stock": 4}"#)),
    ("update_patch", "/items/1", Some(r#"{"stock": 5}"#)),
    ("remove", "/items/3", None),
    ("batch", "/items/batch", Some(r#"{"ids": ["2", "ghost"]}"#)),
    (
        "invalidate",
        "/cache/invalidate",
        Some(r#"{"key": "item:1"}"#),
    ),
    ("warm", "/cache/warm", Some(r#"{"limit": 10}"#)),
    ("stats", "/stats", None),
    ("reset", "/stats/reset", None),
    ("health", "/health", None),
    ("livez", "/livez", None),
    ("readyz", "/readyz", None),
    ("metrics", "/metrics", None),
    ("document", "/openapi.json", None),
    ("docs", "/docs", None),
    ("docs_page", "/docs/", None),
    ("docs_file", "/docs/swagger-ui.css", None),
];

/// Path parameter values that name nothing valid, or nothing there.
const PATH_PROBES: [(&str, &[&str]); 2] = [
    ("id", &["bad!id", "%FF", "ghost"]),
    ("file", &["no-such-file.js", "%FF"]),
];

/// Values of documented request headers worth sending.
const HEADER_PROBES: [(&str, &str); 3] = [
    ("If-Match", "\"999\""),
    ("If-Match", "\"1\", \"2\""),
    ("If-None-Match", "*"),
];

/// Bodies that a route refuses for what they say, not for how.
const BODY_PROBES: [(&str, &str); 5] = [
    ("create", r#"{"id": "1", "name": "Taken"}"#),
    ("create", r#"{"price": -1}"#),
    ("batch", r#"{}"#),
    ("invalidate", r#"{"pattern": "other:*"}"#),
    ("warm", r#"{"limit": 1000000}"#),
];

/// Documented statuses no test can cause, and why.
const NEVER_SEEN: [(&str, u16); 2] = [
    // Swagger UI's files are compiled in; serving one fails only if the
    // build is broken.
    ("docs_page", 500),
    ("docs_file", 500),
];

/// Headers that describe the message, not the API.
const TRANSPORT_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "date",
    "transfer-encoding",
    "connection",
];

const METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
];

struct Document(Value);

#[derive(Clone)]
struct Operation {
    id: String,
    method: Method,
    path: String,
    spec: Value,
}

impl Operation {
    fn example(&self) -> (&'static str, Option<&'static str>) {
        let (_, path, body) = EXAMPLES
            .iter()
            .find(|(id, ..)| *id == self.id)
            .unwrap_or_else(|| panic!("no example request for operation {}", self.id));
        (path, *body)
    }

    fn is_admin(&self) -> bool {
        self.spec["security"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|requirement| requirement.get("admin_token").is_some())
    }

    fn takes_body(&self) -> bool {
        !self.spec["requestBody"].is_null()
    }
}

impl Document {
    async fn of(app: &TestApp) -> Self {
        let response = app.get("/openapi.json").await;
        assert_eq!(response.status(), StatusCode::OK);
        Self(response.json().await.unwrap())
    }

    fn operations(&self) -> Vec<Operation> {
        let mut operations = Vec::new();
        for (path, item) in self.0["paths"].as_object().unwrap() {
            for (method, spec) in item.as_object().unwrap() {
                operations.push(Operation {
                    id: spec["operationId"].as_str().unwrap().to_owned(),
                    method: Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    path: path.clone(),
                    spec: spec.clone(),
                });
            }
        }
        operations
    }

    /// `value`, or what it refers to.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').unwrap();
                let target = self
                    .0
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference} does not resolve"));
                self.resolve(target)
            }
            None => value,
        }
    }

    /// The parameters of `operation` (references resolved).
    fn parameters<'a>(&'a self, operation: &'a Operation) -> Vec<&'a Value> {
        operation.spec["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| self.resolve(p))
            .collect()
    }

    fn documents_header(&self, operation: &Operation, name: &str) -> bool {
        self.parameters(operation)
            .iter()
            .any(|p| p["in"] == "header" && p["name"].as_str().unwrap().eq_ignore_ascii_case(name))
    }

    /// Validates `instance` against `schema`, which may refer to components.
    fn conforms(&self, schema: &Value, instance: &Value, context: &str) {
        let mut root = schema.clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["components"] = self.0["components"].clone();
        let validator = jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("{context}: schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{context}: {errors:?}\n{instance:#}");
    }
}

/// A request to send for an operation.
struct Probe {
    what: String,
    path: String,
    method: Method,
    headers: Vec<(&'static str, String)>,
    body: Option<(&'static str, Vec<u8>)>,
}

impl Probe {
    fn example(operation: &Operation) -> Self {
        let (path, body) = operation.example();
        let mut probe = Self {
            what: "example".into(),
            path: path.into(),
            method: operation.method.clone(),
            headers: Vec::new(),
            body: None,
        };
        if let Some(body) = body {
            probe = probe.body("application/json", body.as_bytes().to_vec());
        }
        if operation.is_admin() {
            probe = probe.header("authorization", format!("Bearer {TOKEN}"));
        }
        probe
    }

    fn what(mut self, what: impl Into<String>) -> Self {
        self.what = what.into();
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name, value.into()));
        self
    }

    fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    fn body(mut self, content_type: &'static str, bytes: Vec<u8>) -> Self {
        self.body = Some((content_type, bytes));
        self
    }
}

/// Sends probes and checks each answer against the document; remembers
/// which statuses each operation gave.
struct Prober<'a> {
    document: &'a Document,
    http: reqwest::Client,
    seen: &'a mut BTreeSet<(String, u16)>,
}

impl<'a> Prober<'a> {
    fn new(document: &'a Document, seen: &'a mut BTreeSet<(String, u16)>) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            document,
            http,
            seen,
        }
    }

    async fn send(&mut self, app: &TestApp, probe: &Probe) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = self
            .http
            .request(probe.method.clone(), app.url(&probe.path));
        for (name, value) in &probe.headers {
            request = request.header(*name, value);
        }
        if let Some((content_type, bytes)) = &probe.body {
            request = request
                .header("content-type", *content_type)
                .body(bytes.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap().to_vec();
        (status, headers, body)
    }

    /// Sends `probe` for `operation` and checks the answer; returns its status.
    async fn check(&mut self, app: &TestApp, operation: &Operation, probe: Probe) -> StatusCode {
        let (status, headers, body) = self.send(app, &probe).await;
        let context = format!(
            "{} {} ({}, {}) answered {status}",
            operation.method, operation.path, operation.id, probe.what
        );
        check_answer(
            self.document,
            operation,
            &probe.method,
            status,
            &headers,
            &body,
            &context,
        );
        self.seen.insert((operation.id.clone(), status.as_u16()));
        status
    }
}

/// The answer's status, headers, media type and body are documented.
fn check_answer(
    document: &Document,
    operation: &Operation,
    method: &Method,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    context: &str,
) {
    let documented = &operation.spec["responses"][status.as_str()];
    assert!(!documented.is_null(), "{context}: status not documented");
    let documented = document.resolve(documented);
    let documented_headers: Vec<(&String, &Value)> = documented["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, spec)| (name, document.resolve(spec)))
        .collect();
    for name in headers.keys() {
        if TRANSPORT_HEADERS.contains(&name.as_str()) {
            continue;
        }
        assert!(
            documented_headers
                .iter()
                .any(|(documented, _)| documented.eq_ignore_ascii_case(name.as_str())),
            "{context}: header {name} not documented"
        );
    }
    for (name, spec) in &documented_headers {
        let optional = spec["schema"]["type"]
            .as_array()
            .is_some_and(|types| types.contains(&json!("null")));
        assert!(
            optional || headers.contains_key(name.as_str()),
            "{context}: documented header {name} missing"
        );
    }

    let content = documented["content"].as_object();
    let Some(content) = content.filter(|c| !c.is_empty()) else {
        assert!(body.is_empty(), "{context}: a body, and none documented");
        return;
    };
    let media_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(essence)
        .unwrap_or_else(|| panic!("{context}: no Content-Type"));
    let (_, spec) = content
        .iter()
        .find(|(documented, _)| essence(documented) == media_type)
        .unwrap_or_else(|| panic!("{context}: media type {media_type} not documented"));
    if media_type == "application/json"
        && *method != Method::HEAD
        && let Some(schema) = spec.get("schema")
    {
        let value: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{context}: body is not JSON: {e}"));
        document.conforms(schema, &value, context);
    }
}

fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_ascii_lowercase()
}

/// `template` with each `{param}` replaced as `value` says, other
/// segments kept from `example`.
fn fill(template: &str, example: &str, param: &str, value: &str) -> String {
    template
        .split('/')
        .zip(example.split('/'))
        .map(|(t, e)| {
            if t == format!("{{{param}}}") {
                value
            } else {
                e
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn path_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// Sends every operation's example request.
async fn examples(prober: &mut Prober<'_>, app: &TestApp, operations: &[Operation]) {
    for operation in operations {
        prober
            .check(app, operation, Probe::example(operation))
            .await;
    }
}

fn admin_app() -> crate::helpers::TestAppBuilder {
    TestApp::builder(Backend::Sqlite).config(|c| c.http.admin_token = Some(Secret::new(TOKEN)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_covers_every_example_and_parameter() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let document = Document::of(&app).await;
    assert!(document.0["openapi"].as_str().unwrap().starts_with("3.1"));
    let operations = document.operations();
    let documented: BTreeSet<&str> = operations.iter().map(|o| o.id.as_str()).collect();
    let examples: BTreeSet<&str> = EXAMPLES.iter().map(|(id, ..)| *id).collect();
    assert_eq!(documented, examples, "one example per operation");
    for operation in &operations {
        let (path, _) = operation.example();
        let segments = |p: &str| p.split('/').count();
        assert_eq!(segments(path), segments(&operation.path), "{path}");
        for param in path_params(&operation.path) {
            assert!(
                PATH_PROBES.iter().any(|(name, _)| *name == param),
                "no probe for path parameter {param}"
            );
        }
        for name in ["X-Request-Id", "traceparent"] {
            assert!(
                document.documents_header(operation, name),
                "{} does not document {name}",
                operation.id
            );
        }
    }
    for path in ["/openapi.json", "/docs", "/docs/", "/docs/{file}"] {
        assert!(
            !document.0["paths"][path].is_null(),
            "{path} is not documented"
        );
    }
}

/// Every documented method of every documented path is served, and no
/// other: those give a documented 405 whose `Allow` lists the documented
/// ones (with HEAD, which every GET also answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_path_serves_exactly_its_documented_methods() {
    let app = admin_app().spawn().await;
    let document = Document::of(&app).await;
    let mut seen = BTreeSet::new();
    let mut prober = Prober::new(&document, &mut seen);
    check_methods(&mut prober, &app, &document.operations()).await;
}

async fn check_methods(prober: &mut Prober<'_>, app: &TestApp, operations: &[Operation]) {
    let paths: BTreeSet<&str> = operations.iter().map(|o| o.path.as_str()).collect();
    for path in paths {
        let on_path: Vec<&Operation> = operations.iter().filter(|o| o.path == path).collect();
        let mut allowed: BTreeSet<String> = on_path.iter().map(|o| o.method.to_string()).collect();
        if allowed.contains("GET") {
            allowed.insert("HEAD".into());
        }
        for operation in &on_path {
            let (status, _, body) = prober.send(app, &Probe::example(operation)).await;
            let body = String::from_utf8_lossy(&body);
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && !body.contains("route not found"),
                "{} {path} is documented but not served: {status} {body}",
                operation.method
            );
        }
        let (example_path, _) = on_path[0].example();
        for method in METHODS {
            if allowed.contains(method.as_str()) {
                continue;
            }
            let probe = Probe {
                method: method.clone(),
                ..Probe::example(on_path[0])
            };
            let (status, headers, body) = prober.send(app, &probe).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {example_path}"
            );
            let allow: BTreeSet<String> = headers["allow"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert_eq!(allow, allowed, "Allow of {path}");
            for operation in &on_path {
                let context = format!("{method} {example_path} (405 for {})", operation.id);
                check_answer(
                    prober.document,
                    operation,
                    &method,
                    status,
                    &headers,
                    &body,
                    &context,
                );
                prober.seen.insert((operation.id.clone(), status.as_u16()));
            }
        }
    }
}

/// The statuses each route gives for what a client can get wrong, and for
/// each outage it can meet, are documented with their headers; and every
/// documented status is one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_status_a_route_can_give_is_documented_with_its_headers() {
    let mut seen = BTreeSet::new();

    // Everything up, an admin token set: what clients can get wrong.
    let app = admin_app().spawn().await;
    let document = Document::of(&app).await;
    let operations = document.operations();
    let mut prober = Prober::new(&document, &mut seen);
    check_methods(&mut prober, &app, &operations).await;
    for operation in &operations {
        let status = prober
            .check(&app, operation, Probe::example(operation))
            .await;
        assert!(!status.is_server_error(), "{}: {status}", operation.id);
        let (example_path, _) = operation.example();

        if operation.is_admin() {
            for (what, probe) in [
                (
                    "no token",
                    Probe::example(operation).without_header("authorization"),
                ),
                (
                    "wrong token",
                    Probe::example(operation).header("authorization", "Bearer wrong-token"),
                ),
            ] {
                let status = prober.check(&app, operation, probe.what(what)).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: {what}", operation.id);
            }
        }
        for param in path_params(&operation.path) {
            let (_, values) = PATH_PROBES.iter().find(|(name, _)| *name == param).unwrap();
            for value in *values {
                let mut probe = Probe::example(operation).what(format!("{{{param}}} = {value}"));
                probe.path = fill(&operation.path, example_path, param, value);
                let status = prober.check(&app, operation, probe).await;
                assert!(
                    status.is_client_error(),
                    "{}: {param} {value}",
                    operation.id
                );
            }
        }
        for (name, value) in HEADER_PROBES {
            if document.documents_header(operation, name) {
                let probe = Probe::example(operation)
                    .header(name, value)
                    .what(format!("{name}: {value}"));
                prober.check(&app, operation, probe).await;
            }
        }
        if operation.takes_body() {
            for (what, content_type, bytes, expected) in [
                (
                    "malformed JSON",
                    "application/json",
                    b"{\"name\": ".to_vec(),
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "not JSON",
                    "text/plain",
                    b"name=x".to_vec(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ),
                (
                    "oversize",
                    "application/json",
                    format!("{{\"name\": \"{}\"}}", "x".repeat(BODY_LIMIT)).into_bytes(),
                    StatusCode::PAYLOAD_TOO_LARGE,
                ),
            ] {
                let probe = Probe::example(operation)
                    .body(content_type, bytes)
                    .what(what);
                let status = prober.check(&app, operation, probe).await;
                assert_eq!(status, expected, "{}: {what}", operation.id);
            }
        }
        for (id, body) in BODY_PROBES {
            if id == operation.id {
                let probe = Probe::example(operation)
                    .body("application/json", body.as_bytes().to_vec())
                    .what(body);
                prober.check(&app, operation, probe).await;
            }
        }
    }
    drop(app);

    // Redis down: answers come from the source of truth, or say why not.
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.redis.kill();
    eventually("the service sees Redis down", || async {
        app.health().await.1["redis"] == "disconnected"
    })
    .await;
    let mut prober = Prober::new(&document, &mut seen);
    examples(&mut prober, &app, &operations).await;
    drop(app);

    // The source of truth down: nothing cached can be answered.
    let app = TestApp::spawn(Backend::Postgres).await;
    let database = postgres::refuse_connections(&app.database.url).await;
    let mut prober = Prober::new(&document, &mut seen);
    examples(&mut prober, &app, &operations).await;
    postgres::allow_connections(&database).await;
    drop(app);

    // The source of truth reachable but broken: its table is gone.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut sqlite = sqlx::SqliteConnection::connect(&app.database.url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE items")
        .execute(&mut sqlite)
        .await
        .unwrap();
    let mut prober = Prober::new(&document, &mut seen);
    examples(&mut prober, &app, &operations).await;
    drop(app);

    for (id, status) in [
        ("fetch", 503),
        ("fetch", 500),
        ("warm", 503),
        ("invalidate", 202),
        ("health", 503),
    ] {
        assert!(
            seen.contains(&(id.to_owned(), status)),
            "the outages were not met: {id} never gave {status}"
        );
    }
    let mut unseen = Vec::new();
    for operation in &operations {
        for status in operation.spec["responses"].as_object().unwrap().keys() {
            let status: u16 = status.parse().unwrap();
            let key = (operation.id.clone(), status);
            if !seen.contains(&key) && !NEVER_SEEN.contains(&(operation.id.as_str(), status)) {
                unseen.push(key);
            }
        }
    }
    assert!(unseen.is_empty(), "documented but never seen: {unseen:?}");
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
