//! No acknowledged write is ever lost: a write answers 2xx only once its
//! commit has returned success, and a write that failed leaves no trace, in
//! the database or in the cache. The commits really fail: the "disk" fills
//! up under SQLite's write-ahead log (a file-size limit on the process),
//! and a deferred constraint refuses the commit itself, on both backends.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::binary::{exit_code, limit, listening, service_command, signal};
use crate::helpers::{Backend, Redis, TestApp, TestDatabase, body, header, sum_of};

/// What the database must hold for an id, going by the answers the client got.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Absent,
    Present { name: String, version: i64 },
}

/// Checks every id of `expected` against what `app` serves.
async fn assert_serves(app: &TestApp, expected: &BTreeMap<String, Expected>, what: &str) {
    for (id, want) in expected {
        let response = app.get_item(id).await;
        match want {
            Expected::Absent => assert_eq!(
                response.status(),
                StatusCode::NOT_FOUND,
                "{what}: {id} must not exist"
            ),
            Expected::Present { name, version } => {
                assert_eq!(response.status(), StatusCode::OK, "{what}: {id} must exist");
                let item = body(response).await;
                assert_eq!(
                    (
                        item["name"].as_str().unwrap(),
                        item["version"].as_i64().unwrap()
                    ),
                    (name.as_str(), *version),
                    "{what}: {id}"
                );
            }
        }
    }
}

/// Every row of a SQLite database file, read without the service: id →
/// (name, version).
async fn sqlite_rows(url: &str) -> BTreeMap<String, (String, i64)> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).unwrap();
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT id, name, version FROM items")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(id, name, version)| (id, (name, version)))
        .collect()
}

/// Room for the schema and a few dozen writes in the write-ahead log.
const DISK_BYTES: u64 = 512 * 1024;

/// A mix of creates, updates and deletes against a SQLite file on a "disk"
/// that fills up: the commits that hit the limit fail when SQLite writes the
/// log at commit time, after the statement has already produced its row.
/// Every write answered 2xx is in the file afterwards, every write answered
/// 503 left nothing, neither in the file nor in Redis, and each refusal is
/// logged once with its cause and counted in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_disk_no_acknowledged_write_is_lost_and_no_refused_one_leaves_a_trace() {
    let redis = Arc::new(Redis::start());
    let database = Arc::new(TestDatabase::new(Backend::Sqlite).await);
    let dir = tempfile::tempdir().unwrap();
    let mut command = service_command(
        dir.path(),
        redis.url(),
        &database,
        &[("NO_DEMO_DATA", "true")],
    );
    limit(&mut command, libc::RLIMIT_FSIZE, DISK_BYTES);
    let (child, port, logs) = listening(command.spawn().unwrap());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");

    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let (mut acknowledged, mut refused, mut refused_in_a_row) = (0, 0, 0);
    for n in 0.. {
        assert!(n < 2_000, "the disk never filled up");
        if refused_in_a_row == 20 {
            break;
        }
        let present: Vec<String> = expected
            .iter()
            .filter(|(_, e)| matches!(e, Expected::Present { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        let (id, response, on_success) = match (n % 4, present.first(), present.last()) {
            (2, _, Some(last)) => {
                let name = format!("updated {n}");
                let url = format!("{base}/items/{last}");
                let response = http.put(url).json(&json!({ "name": name })).send().await;
                (last.clone(), response.unwrap(), Some(name))
            }
            (3, Some(first), _) => {
                let url = format!("{base}/items/{first}");
                let response = http.delete(url).send().await.unwrap();
                (first.clone(), response, None)
            }
            _ => {
                let (id, name) = (format!("w{n}"), format!("created {n}"));
                expected.insert(id.clone(), Expected::Absent);
                let item = json!({ "id": id, "name": name, "price": 1.5, "stock": n });
                let response = http.post(format!("{base}/items")).json(&item).send().await;
                (id, response.unwrap(), Some(name))
            }
        };
        let status = response.status();
        match status {
            StatusCode::CREATED | StatusCode::OK | StatusCode::NO_CONTENT => {
                acknowledged += 1;
                refused_in_a_row = 0;
                let now = match on_success {
                    Some(name) => Expected::Present {
                        name,
                        version: body(response).await["version"].as_i64().unwrap(),
                    },
                    None => Expected::Absent,
                };
                expected.insert(id.clone(), now);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                refused_in_a_row += 1;
                assert!(header(&response, "retry-after").is_some());
                assert_eq!(
                    body(response).await,
                    json!({ "error": "source of truth unavailable" })
                );
            }
            other => panic!("write {n} on {id}: {other} {:?}", response.text().await),
        }
        // Read it back at once, through the caches, which keep what they read.
        let read = http.get(format!("{base}/items/{id}")).send().await.unwrap();
        match &expected[&id] {
            Expected::Absent => assert_eq!(read.status(), StatusCode::NOT_FOUND, "{id}"),
            Expected::Present { version, .. } => {
                assert_eq!(read.status(), StatusCode::OK, "{id}");
                assert_eq!(body(read).await["version"].as_i64(), Some(*version));
            }
        }
    }
    assert!(acknowledged >= 10, "only {acknowledged} writes fitted");

    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let failed_commits = sum_of(
        &metrics,
        "db_client_operation_duration_seconds_count",
        &["db_system_name=\"sqlite\"", "error_type=\"storage\""],
    );
    assert_eq!(failed_commits, refused as f64, "every refusal is counted");
    let answered_503 = sum_of(
        &metrics,
        "http_server_request_duration_seconds_count",
        &["http_response_status_code=\"503\""],
    );
    assert_eq!(answered_503, refused as f64);

    signal(&child, libc::SIGTERM);
    assert_eq!(exit_code(child).await, Some(0));
    let errors: Vec<Value> = logs
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .filter(|event| event["level"] == "ERROR")
        .collect();
    assert_eq!(
        errors.len(),
        refused,
        "each refusal is logged once: {errors:#?}"
    );
    for event in &errors {
        assert_eq!(event["message"], "request failed");
        let cause = event["error"].as_str().unwrap();
        assert!(
            cause.contains("disk I/O error") || cause.contains("disk is full"),
            "the cause is logged: {cause}"
        );
    }

    let rows = sqlite_rows(&database.url).await;
    for (id, want) in &expected {
        let found = rows.get(id).map(|(name, version)| Expected::Present {
            name: name.clone(),
            version: *version,
        });
        assert_eq!(found.unwrap_or(Expected::Absent), *want, "{id} in the file");
    }
    // The same answers from a fresh instance reading through the Redis the
    // full-disk one filled: the cache holds nothing the database does not.
    let fresh = TestApp::builder(Backend::Sqlite)
        .on(redis, database)
        .without_l1()
        .spawn()
        .await;
    assert_serves(&fresh, &expected, "after the disk filled").await;
}

/// Start-up on a full disk stops with one line naming the cause, instead of
/// serving from a database it cannot migrate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_on_a_full_disk_fails_with_the_cause() {
    let redis = Redis::start();
    let database = TestDatabase::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = service_command(
        dir.path(),
        redis.url(),
        &database,
        &[("LOG_FORMAT", "pretty")],
    );
    limit(&mut command, libc::RLIMIT_FSIZE, 4096);
    let out = command
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("sqlite"), "{stderr}");
    assert!(
        stderr.contains("disk I/O error") || stderr.contains("disk is full"),
        "{stderr}"
    );
}

/// Installs, in `app`'s database, a constraint checked only at commit that
/// refuses items named `refused at commit` and the deletion of items named
/// `undeletable`: the statement itself succeeds and returns its row, then the
/// commit fails (PostgreSQL reports it as a full disk).
async fn refuse_some_commits(app: &TestApp) {
    let statements: &[&str] = match app.backend {
        Backend::Sqlite => &[
            "CREATE TABLE commit_guard (id INTEGER PRIMARY KEY)",
            "CREATE TABLE commit_refusal (guard INTEGER REFERENCES commit_guard (id) DEFERRABLE INITIALLY DEFERRED)",
            "CREATE TRIGGER refuse_insert AFTER INSERT ON items WHEN NEW.name = 'refused at commit' BEGIN INSERT INTO commit_refusal VALUES (1); END",
            "CREATE TRIGGER refuse_update AFTER UPDATE ON items WHEN NEW.name = 'refused at commit' BEGIN INSERT INTO commit_refusal VALUES (1); END",
            "CREATE TRIGGER refuse_delete AFTER DELETE ON items WHEN OLD.name = 'undeletable' BEGIN INSERT INTO commit_refusal VALUES (1); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$",
            "CREATE CONSTRAINT TRIGGER refuse_write AFTER INSERT OR UPDATE ON items DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.name = 'refused at commit') EXECUTE FUNCTION refuse_commit()",
            "CREATE CONSTRAINT TRIGGER refuse_delete AFTER DELETE ON items DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.name = 'undeletable') EXECUTE FUNCTION refuse_commit()",
        ],
    };
    let url = &app.database.url;
    for statement in statements {
        let sql = sqlx::AssertSqlSafe(*statement);
        match app.backend {
            Backend::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).unwrap();
                let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }
}

/// Asserts that a write was refused: 503 when the database says it cannot
/// store it (PostgreSQL here), a 4xx for SQLite's constraint error.
async fn assert_refused(backend: Backend, response: reqwest::Response, what: &str) {
    let status = response.status();
    match backend {
        Backend::Postgres => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
            assert_eq!(
                body(response).await,
                json!({ "error": "source of truth unavailable" })
            );
        }
        Backend::Sqlite => assert!(status.is_client_error(), "{what}: {status}"),
    }
}

async fn a_write_refused_at_commit_is_never_acknowledged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    refuse_some_commits(&app).await;
    let mut expected = BTreeMap::new();

    let refused = app
        .create(json!({ "id": "refused", "name": "refused at commit" }))
        .await;
    assert_refused(backend, refused, "create").await;
    expected.insert("refused".to_owned(), Expected::Absent);

    app.create_ok("kept", "kept").await;
    assert_eq!(app.get_item("kept").await.status(), StatusCode::OK);
    let update = app
        .put("kept", json!({ "name": "refused at commit" }))
        .await;
    assert_refused(backend, update, "update").await;
    expected.insert(
        "kept".to_owned(),
        Expected::Present {
            name: "kept".into(),
            version: 1,
        },
    );

    app.create_ok("undeletable", "undeletable").await;
    assert_eq!(app.get_item("undeletable").await.status(), StatusCode::OK);
    assert_refused(backend, app.delete("undeletable").await, "delete").await;
    expected.insert(
        "undeletable".to_owned(),
        Expected::Present {
            name: "undeletable".into(),
            version: 1,
        },
    );

    assert_serves(&app, &expected, "the instance that wrote").await;
    let fresh = app.peer().without_l1().spawn().await;
    assert_serves(&fresh, &expected, "a fresh instance").await;
}

both_backends!(a_write_refused_at_commit_is_never_acknowledged);
