//! PostgreSQL going away under traffic: once it is known to be down, writes
//! are refused at once with a 503 (never a 500, never a wait in the pool's
//! queue), cached items keep being served, and everything works again as
//! soon as the database does.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, body, eventually, header, postgres, sum_of};

async fn metric(app: &TestApp, name: &str, labels: &[&str]) -> f64 {
    sum_of(
        &app.get("/metrics").await.text().await.unwrap(),
        name,
        labels,
    )
}

async fn assert_unavailable(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    assert_eq!(header(&response, "retry-after"), Some("1"), "{what}");
    assert_eq!(
        body(response).await,
        json!({ "error": "source of truth unavailable" }),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_writes_fail_at_once_and_cached_items_are_still_served() {
    let app = TestApp::spawn(Backend::Postgres).await;
    for id in ["1", "2", "3"] {
        assert_eq!(app.get_item(id).await.status(), StatusCode::OK);
    }
    let writes_tried = || async {
        let mut tried = 0.0;
        for operation in ["INSERT", "UPDATE", "DELETE"] {
            let label = format!("db_operation_name=\"{operation}\"");
            tried += metric(
                &app,
                "db_client_operation_duration_seconds_count",
                &[&label],
            )
            .await;
        }
        tried
    };
    let tried_before = writes_tried().await;

    let database = postgres::refuse_connections(&app.database.url).await;
    for round in 0..10 {
        let update = app.put("1", json!({ "stock": round })).await;
        assert_unavailable(update, "PUT").await;
        let create = app
            .create(json!({ "id": format!("new-{round}"), "name": "x" }))
            .await;
        assert_unavailable(create, "POST").await;
        assert_unavailable(app.delete("2").await, "DELETE").await;
        for id in ["1", "2", "3"] {
            let hit = app.get_item(id).await;
            assert_eq!(hit.status(), StatusCode::OK);
            assert_eq!(header(&hit, "x-cache-status"), Some("HIT"));
        }
    }
    // Two failures open the breaker; after that, a probe now and then.
    let tried = writes_tried().await - tried_before;
    let skipped = metric(&app, "redis_cache_source_operations_skipped_total", &[]).await;
    assert!(
        tried <= 6.0,
        "{tried} of 30 writes went to a database known down"
    );
    assert!(skipped >= 24.0, "{skipped} writes refused at once");
    let (status, health) = app.health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["database"], "disconnected");

    postgres::allow_connections(&database).await;
    eventually("a write succeeds once the database is back", || async {
        app.put("1", json!({ "stock": 77 })).await.status() == StatusCode::OK
    })
    .await;
    let item: Value = body(app.get_item("1").await).await;
    assert_eq!(item["stock"], 77, "the write is visible at once");
    assert_eq!(app.health().await.1["database_circuit"], "closed");
}
