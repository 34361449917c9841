//! Bad input of every kind gets a 4xx with a JSON error body, never a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, body};

both_backends!(bad_input_is_a_clear_4xx_json_error);

/// One malformed request and the status it must get.
struct Case {
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: StatusCode,
}

fn case(method: Method, path: &'static str, body: impl Into<Vec<u8>>, status: StatusCode) -> Case {
    Case {
        method,
        path,
        content_type: Some("application/json"),
        body: body.into(),
        status,
    }
}

fn json_case(method: Method, path: &'static str, body: Value, status: StatusCode) -> Case {
    case(method, path, body.to_string(), status)
}

async fn bad_input_is_a_clear_4xx_json_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    use Method as M;
    use StatusCode as S;
    let long = |n: usize| "x".repeat(n);
    let mut cases = vec![
        // ids in the path
        case(M::GET, "/items/a*b", "", S::BAD_REQUEST),
        case(M::GET, "/items/a%3Ab", "", S::BAD_REQUEST),
        case(M::GET, "/items/a%2Fb", "", S::BAD_REQUEST),
        case(M::GET, "/items/%E2%9C%93", "", S::BAD_REQUEST),
        case(M::GET, "/items/%FF", "", S::BAD_REQUEST),
        case(M::GET, "/items/a%20b", "", S::BAD_REQUEST),
        case(M::DELETE, "/items/[x]", "", S::BAD_REQUEST),
        // bodies that are not JSON, or not declared as JSON
        case(M::POST, "/items", "{\"name\": ", S::BAD_REQUEST),
        case(M::POST, "/items", "", S::BAD_REQUEST),
        case(M::POST, "/items", "[1,2]", S::BAD_REQUEST),
        case(M::POST, "/items", "{\"name\":\"a\"} {}", S::BAD_REQUEST),
        Case {
            content_type: Some("text/plain"),
            ..case(
                M::POST,
                "/items",
                "{\"name\":\"a\"}",
                S::UNSUPPORTED_MEDIA_TYPE,
            )
        },
        Case {
            content_type: Some("application/x-www-form-urlencoded"),
            ..case(M::POST, "/items/batch", "ids=1", S::UNSUPPORTED_MEDIA_TYPE)
        },
        // field validation on create
        json_case(M::POST, "/items", json!({}), S::BAD_REQUEST),
        json_case(M::POST, "/items", json!({ "name": "" }), S::BAD_REQUEST),
        json_case(
            M::POST,
            "/items",
            json!({ "name": long(201) }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "name": "a", "description": long(2001) }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "name": "a", "category": long(101) }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "name": "a", "price": -1 }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "name": "a", "price": "12" }),
            S::BAD_REQUEST,
        ),
        case(
            M::POST,
            "/items",
            "{\"name\":\"a\",\"price\":1e999}",
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "name": "a", "stock": -1 }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "name": "a", "stock": 1.5 }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "name": "a", "stock": 1e30 }),
            S::BAD_REQUEST,
        ),
        json_case(M::POST, "/items", json!({ "name": 5 }), S::BAD_REQUEST),
        json_case(
            M::POST,
            "/items",
            json!({ "name": "nul\u{0}" }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::PUT,
            "/items/1",
            json!({ "description": "\u{0}" }),
            S::BAD_REQUEST,
        ),
        // dot segments: clients strip them from URLs, so such an item could
        // be created but never read
        json_case(
            M::POST,
            "/items",
            json!({ "id": ".", "name": "a" }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "id": "..", "name": "a" }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "id": "a b", "name": "a" }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "id": long(65), "name": "a" }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items",
            json!({ "id": 7, "name": "a" }),
            S::BAD_REQUEST,
        ),
        // updates
        json_case(M::PUT, "/items/1", json!({ "price": -5 }), S::BAD_REQUEST),
        json_case(M::PUT, "/items/1", json!({ "id": "2" }), S::BAD_REQUEST),
        json_case(
            M::PATCH,
            "/items/1",
            json!({ "name": "   " }),
            S::BAD_REQUEST,
        ),
        json_case(M::PUT, "/items/1", json!("string"), S::BAD_REQUEST),
        // batch
        json_case(M::POST, "/items/batch", json!({}), S::BAD_REQUEST),
        json_case(
            M::POST,
            "/items/batch",
            json!({ "ids": null }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items/batch",
            json!({ "ids": "1" }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items/batch",
            json!({ "ids": [1, 2] }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items/batch",
            json!({ "ids": ["1", "*"] }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/items/batch",
            json!({ "ids": [""] }),
            S::BAD_REQUEST,
        ),
        // cache administration
        json_case(
            M::POST,
            "/cache/invalidate",
            json!({ "key": 1 }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/cache/warm",
            json!({ "limit": -1 }),
            S::BAD_REQUEST,
        ),
        json_case(
            M::POST,
            "/cache/warm",
            json!({ "limit": "all" }),
            S::BAD_REQUEST,
        ),
        // routing
        case(M::GET, "/nowhere", "", S::NOT_FOUND),
        case(M::GET, "/items", "", S::METHOD_NOT_ALLOWED),
        case(M::DELETE, "/stats", "", S::METHOD_NOT_ALLOWED),
        case(M::GET, "/items/batch", "", S::METHOD_NOT_ALLOWED),
        json_case(
            M::POST,
            "/items",
            json!({ "id": "batch", "name": "a" }),
            S::BAD_REQUEST,
        ),
        // size
        case(
            M::POST,
            "/items",
            vec![b' '; 64 * 1024 + 1],
            S::PAYLOAD_TOO_LARGE,
        ),
    ];
    let big_name = format!("{{\"name\":\"{}\"}}", long(70_000));
    cases.push(case(M::POST, "/items", big_name, S::PAYLOAD_TOO_LARGE));

    for case in cases {
        let mut request = app
            .http
            .request(case.method.clone(), app.url(case.path))
            .body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let what = format!(
            "{} {} {:?}",
            case.method,
            case.path,
            String::from_utf8_lossy(&case.body[..case.body.len().min(60)])
        );
        assert_eq!(response.status(), case.status, "{what}");
        let allow = response.headers().get("allow").cloned();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{what}"
        );
        let error = body(response).await;
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {error}"
        );
        if case.status == S::METHOD_NOT_ALLOWED {
            assert!(allow.is_some(), "{what}: 405 must list the allowed methods");
        }
    }

    // Validation errors name the field.
    let error = body(app.create(json!({ "name": "a", "stock": -1 })).await).await;
    assert_eq!(error["error"], "invalid item");
    assert_eq!(error["details"]["field"], "stock");
    let error = body(app.create(json!({ "name": "a", "stock": 1.5 })).await).await;
    assert_eq!(error["details"]["field"], "stock");
    // Nothing invalid was stored.
    assert_eq!(body(app.get_item("1").await).await["price"], 1299.99);
    let created = app.batch(&["a", "a*b"]).await;
    assert_eq!(created.status(), S::BAD_REQUEST);
}

/// The body is judged before the precondition: a request that could never
/// succeed is a 400 whatever its `If-Match` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_body_is_a_400_even_with_a_failing_precondition() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for if_match in ["null", "\"999\"", "W/\"1\""] {
        let response = app
            .send_with(
                Method::PUT,
                "/items/1",
                ("If-Match", if_match),
                Some(json!({ "price": -1 })),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "If-Match: {if_match}"
        );
        assert_eq!(body(response).await["details"]["field"], "price");
    }
    let valid = app
        .send_with(
            Method::PUT,
            "/items/1",
            ("If-Match", "null"),
            Some(json!({ "price": 1 })),
        )
        .await;
    assert_eq!(valid.status(), StatusCode::PRECONDITION_FAILED);
}
