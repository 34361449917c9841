//! Admin routes: bearer-token protection and cache warming.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, body, eventually};
use redis_cache::secret::Secret;

both_backends!(
    admin_routes_need_the_bearer_token_when_configured,
    warming_loads_items_without_replacing_them
);

async fn admin_routes_need_the_bearer_token_when_configured(backend: Backend) {
    let app = TestApp::builder(backend)
        .config(|c| c.http.admin_token = Some(Secret::new("correct-horse")))
        .spawn()
        .await;
    let routes = [
        ("/cache/invalidate", json!({ "key": "item:1" })),
        ("/cache/warm", json!({ "limit": 1 })),
        ("/stats/reset", json!({})),
    ];
    for (path, payload) in &routes {
        let anonymous = app.post(path, payload).await;
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            body(anonymous).await["error"],
            "missing or invalid bearer token"
        );
        let app = &app;
        let with_token = |token: &str| {
            let header = format!("Bearer {token}");
            let payload = payload.clone();
            async move {
                app.send_with(
                    Method::POST,
                    path,
                    ("Authorization", &header),
                    Some(payload),
                )
                .await
            }
        };
        let wrong = with_token("correct-horsf").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let right = with_token("correct-horse").await;
        assert_eq!(right.status(), StatusCode::OK, "{path}");
    }
    // Reads stay open.
    assert_eq!(app.get("/stats").await.status(), StatusCode::OK);
    assert_eq!(app.get_item("1").await.status(), StatusCode::OK);
}

async fn warming_loads_items_without_replacing_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put("2", json!({ "stock": 49 })).await;
    let warmed = app.post("/cache/warm", &json!({ "limit": 2 })).await;
    assert_eq!(warmed.status(), StatusCode::OK);
    assert_eq!(
        body(warmed).await,
        json!({ "message": "cache warmed", "read": 2, "loaded": 2, "complete": true })
    );
    // The two most recently updated: 2 (just updated) and 1 (updated 1 h ago).
    assert!(app.redis_get("item:2").await.is_some());
    assert!(app.redis_get("item:1").await.is_some());
    assert!(app.redis_get("item:3").await.is_none());
    let again = body(app.post("/cache/warm", &json!({ "limit": 3 })).await).await;
    assert_eq!(
        again,
        json!({ "message": "cache warmed", "read": 3, "loaded": 1, "complete": true })
    );
    assert_eq!(app.get_item("3").await.headers()["x-cache-status"], "HIT");
    assert_eq!(
        app.post("/cache/warm", &json!({ "limit": 100_001 }))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    let at_start = TestApp::builder(backend)
        .config(|c| c.cache.warm_on_start = 10)
        .spawn()
        .await;
    eventually("items warmed at start", || async {
        at_start.stats().await["total_keys"] == 3
    })
    .await;
    assert_eq!(
        at_start.get_item("1").await.headers()["x-cache-status"],
        "HIT"
    );
}
