//! The Grafana dashboard and the Prometheus rules in `deploy/` show real
//! data: a real Prometheus (Debian's `prometheus` package) scrapes two
//! instances under a short load with real faults (the source of truth
//! refusing connections, Redis frozen, then killed) and evaluates every
//! expression of the dashboard and every condition of the rules; each must
//! succeed and return series. The rules' own unit tests run with
//! `promtool test rules`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use redis_cache::Config;
use serde_json::{Value, json};

use crate::helpers::{Backend, Prometheus, TestApp, eventually, postgres};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(deploy().join("grafana/redis-cache-dashboard.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every query of the dashboard's panels about the service. The "Redis on
/// the wire" row (`obi_*` series) is cache-probe's, proven by its own tests
/// against a real probe (`crates/cache-probe/tests/wire/dashboard.rs`).
fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap().to_owned();
            let expr = target["expr"].as_str().unwrap().to_owned();
            if !expr.contains("obi_") {
                queries.push((title, expr));
            }
        }
    }
    queries
}

/// `(name, expression, is an alert)` of every rule, read line by line (the
/// rules file keeps each expression on one line).
fn rules() -> Vec<(String, String, bool)> {
    let text = std::fs::read_to_string(deploy().join("prometheus/rules.yml")).unwrap();
    let mut rules = Vec::new();
    let mut current: Option<(String, bool)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- record: ") {
            current = Some((name.to_owned(), false));
        } else if let Some(name) = line.strip_prefix("- alert: ") {
            current = Some((name.to_owned(), true));
        } else if let Some(expr) = line.strip_prefix("expr: ") {
            let (name, alert) = current.take().expect("expr after record or alert");
            rules.push((name, expr.to_owned(), alert));
        }
    }
    rules
}

/// The conditions of an alert, each as an expression that returns a series
/// for every input series, 0 or 1, so that an alert that is (rightly) not
/// firing still shows that every part of it reads real data: the operands of
/// `and`, `unless` and `or` taken apart (without their `on (…)`), the
/// comparison of each made a `bool` one, and `absent(x)` replaced by `x`.
fn conditions(expr: &str) -> Vec<String> {
    split_top_level(expr, &[" and ", " unless ", " or "])
        .into_iter()
        .map(|part| {
            let part = without_matching(part.trim());
            let part = part
                .strip_prefix("absent(")
                .and_then(|inner| inner.strip_suffix(')'))
                .unwrap_or(part);
            let comparisons = [" == ", " != ", " >= ", " <= ", " > ", " < "];
            let (at, op) = comparisons
                .iter()
                .flat_map(|op| top_level(part, op).into_iter().map(move |at| (at, *op)))
                .max()
                .unwrap_or_else(|| panic!("alert condition without a comparison: {part}"));
            let (left, right) = (&part[..at], &part[at + op.len()..]);
            format!("{left} {} bool {right}", op.trim())
        })
        .collect()
}

/// Byte offsets of `needle` in `expr` outside brackets and quoted strings.
fn top_level(expr: &str, needle: &str) -> Vec<usize> {
    let (mut depth, mut quoted, mut found) = (0i32, false, Vec::new());
    for (at, c) in expr.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted => depth -= 1,
            _ if !quoted && depth == 0 && expr[at..].starts_with(needle) => found.push(at),
            _ => {}
        }
    }
    found
}

fn split_top_level<'a>(expr: &'a str, operators: &[&str]) -> Vec<&'a str> {
    let mut cuts: Vec<(usize, usize)> = operators
        .iter()
        .flat_map(|op| top_level(expr, op).into_iter().map(|at| (at, op.len())))
        .collect();
    cuts.sort();
    let (mut parts, mut from) = (Vec::new(), 0);
    for (at, len) in cuts {
        parts.push(&expr[from..at]);
        from = at + len;
    }
    parts.push(&expr[from..]);
    parts
}

/// `on (job) x` or `ignoring (tier) x` → `x`.
fn without_matching(operand: &str) -> &str {
    for keyword in ["on", "ignoring"] {
        if let Some(rest) = operand.strip_prefix(keyword)
            && rest.trim_start().starts_with('(')
        {
            let close = rest.find(')').expect("a closed label list");
            return rest[close + 1..].trim_start();
        }
    }
    operand
}

#[test]
fn alert_conditions_are_taken_apart_and_made_bool() {
    assert_eq!(
        conditions("x:ratio < 0.5 and on (job) sum by (job) (rate(y[5m])) > 1"),
        ["x:ratio < bool 0.5", "sum by (job) (rate(y[5m])) > bool 1"]
    );
    assert_eq!(
        conditions(r#"absent(up{job="redis-cache"} == 1)"#),
        [r#"up{job="redis-cache"} == bool 1"#]
    );
    assert_eq!(
        conditions(r#"max by (job) (x{state="open and shut"}) == 1"#),
        [r#"max by (job) (x{state="open and shut"}) == bool 1"#]
    );
}

fn panel<'a>(dashboard: &'a Value, title: &str) -> &'a Value {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title}"))
}

fn exprs(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["expr"].as_str().unwrap())
        .collect()
}

#[test]
fn the_dashboard_has_variables_and_every_panel_queries_prometheus() {
    let dashboard = dashboard();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        variables,
        ["datasource", "job", "instance", "probe_job", "client"]
    );
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .map(|p| {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(!p["targets"].as_array().unwrap().is_empty());
            p["title"].as_str().unwrap()
        })
        .collect();
    // The original's panels, and ours.
    for title in [
        "Operations/s",
        "Cache hit rate",
        "Total cached keys",
        "Item latency p50 / p95 / p99",
        "Redis operations by command",
        "Hits vs misses",
        "Pub/sub messages",
        "Redis memory usage",
        "Invalidation lag p99",
        "Stale, bypass and error rates",
        "Circuit breaker",
        "Admin and probe latency p99",
        "Fills, early refreshes and negative hits",
        "HTTP 5xx",
        "HTTP 4xx",
        "Pending invalidations",
        "Redis errors",
        "Skipped Redis operations",
        "Source-of-truth errors",
    ] {
        assert!(titles.contains(&title), "no panel {title}");
    }
    for (title, expr) in dashboard_queries() {
        assert!(
            expr.contains(r#"job=~"$job""#) && expr.contains(r#"instance=~"$instance""#),
            "{title}: {expr} ignores the service or instance selector"
        );
        // A bare `max()` mixes services, each with its own Redis; a `max by
        // (state)` mixes instances, showing a circuit open and closed at once.
        assert!(
            !expr.contains("max(") && !expr.contains("max by (state)"),
            "{title}: {expr} mixes services or instances"
        );
    }
}

#[test]
fn item_latency_leaves_out_probes_and_admin_routes() {
    let dashboard = dashboard();
    for expr in exprs(panel(&dashboard, "Item latency p50 / p95 / p99")) {
        assert!(expr.contains(r#"http_route=~"/items.*""#), "{expr}");
    }
    for expr in exprs(panel(&dashboard, "Admin and probe latency p99")) {
        assert!(expr.contains(r#"http_route!~"/items.*""#), "{expr}");
    }
    let rules = rules();
    let (_, p99, _) = rules
        .iter()
        .find(|(name, _, _)| name == "redis_cache:item_request_duration_seconds:p99_5m")
        .expect("the item p99 recording rule");
    assert!(p99.contains(r#"http_route=~"/items.*""#), "{p99}");
}

#[test]
fn circuit_breaker_is_shown_per_instance_with_named_states() {
    let dashboard = dashboard();
    let circuit = panel(&dashboard, "Circuit breaker");
    assert_eq!(circuit["type"], "state-timeline");
    assert!(exprs(circuit)[0].contains("by (job, instance)"));
    let mapped = &circuit["fieldConfig"]["defaults"]["mappings"][0]["options"];
    for (value, text) in [("0", "closed"), ("1", "half open"), ("2", "open")] {
        assert_eq!(mapped[value]["text"], text);
    }
}

#[test]
fn an_unlimited_maxmemory_reads_no_limit() {
    let dashboard = dashboard();
    let memory = panel(&dashboard, "Redis memory usage");
    let max_ref = memory["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .contains("redis_memory_max_bytes")
        })
        .unwrap()["refId"]
        .clone();
    let override_ = memory["fieldConfig"]["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["matcher"]["id"] == "byFrameRefID" && o["matcher"]["options"] == max_ref)
        .expect("an override for maxmemory");
    assert_eq!(
        override_["properties"][0]["value"][0]["options"]["0"]["text"],
        "no limit"
    );
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    for args in [
        vec!["check", "rules", "rules.yml"],
        vec!["test", "rules", "rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(deploy().join("prometheus"))
            .output()
            .expect("promtool (Debian package prometheus; scripts/test installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Values that age in seconds, so that hot keys are refreshed early and an
/// outage of the source of truth serves some of them stale; a short breaker
/// cool-down and fail-safe throttle, so that the faults below end quickly.
fn short_lived(config: &mut Config) {
    config.cache.ttl = Duration::from_secs(3);
    config.cache.ttl_jitter = 0.0;
    config.cache.early_refresh = 0.5;
    config.cache.source_timeout = Duration::from_secs(1);
    config.cache.failsafe_throttle = Duration::from_secs(1);
    config.redis.breaker_cooldown = Duration::from_secs(1);
}

/// One round of ordinary traffic: hits and misses in both tiers, batches,
/// unknown ids (404s, then negative hits), writes whose invalidations flow
/// from a to b, bad requests, admin calls.
async fn ordinary_round(a: &TestApp, b: &TestApp, n: u64) {
    let app = if n.is_multiple_of(2) { a } else { b };
    app.get_item(["1", "2", "3"][(n % 3) as usize]).await;
    app.get_item(&format!("unknown-{}", n % 7)).await;
    app.batch(&["1", "2", "3", "nope"]).await;
    if n.is_multiple_of(5) {
        a.put("1", json!({ "stock": n })).await;
    }
    if n.is_multiple_of(11) {
        app.get("/items/not%20an%20id").await;
        app.invalidate(json!({ "key": "item:2" })).await;
        app.stats().await;
    }
}

async fn ordinary_traffic(a: &TestApp, b: &TestApp, n: &mut u64, lasting: Duration) {
    let started = Instant::now();
    while started.elapsed() < lasting {
        ordinary_round(a, b, *n).await;
        *n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_expression_returns_real_series() {
    // PostgreSQL, the source of truth shared by several instances: one whose
    // outage a test can cause.
    let a = TestApp::builder(Backend::Postgres)
        .config(short_lived)
        .spawn()
        .await;
    let b = a.peer().config(short_lived).spawn().await;
    let rule_file = deploy().join("prometheus/rules.yml");
    let prometheus = Prometheus::start("redis-cache", &[a.port(), b.port()], &[&rule_file]);
    eventually("prometheus scrapes both instances", || async {
        prometheus
            .query(r#"count(up{job="redis-cache"} == 1) == 2"#)
            .await
            .is_ok()
    })
    .await;
    let mut n = 0u64;
    ordinary_traffic(&a, &b, &mut n, Duration::from_secs(8)).await;

    // The source of truth refuses connections: cached items are served
    // (stale once their freshness ends), others get 503, writes fail.
    let database = postgres::refuse_connections(&a.database.url).await;
    let started = Instant::now();
    let mut uncached = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let app = if uncached % 2 == 0 { &a } else { &b };
        app.get_item(["1", "2", "3"][uncached % 3]).await;
        app.get_item(&format!("uncached-{uncached}")).await;
        app.put("2", json!({ "stock": uncached })).await;
        uncached += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    postgres::allow_connections(&database).await;
    ordinary_traffic(&a, &b, &mut n, Duration::from_secs(2)).await;

    // Redis freezes: lookups that need it time out until each instance's
    // circuit opens; later ones skip Redis. Then it thaws.
    a.redis.pause();
    let waiting: Vec<_> = (0..8)
        .flat_map(|i| {
            [
                a.spawn_get(&format!("frozen-{i}")),
                b.spawn_get(&format!("frozen-{i}")),
            ]
        })
        .collect();
    for lookup in waiting {
        lookup.await.unwrap();
    }
    let started = Instant::now();
    let mut turned_away = 0;
    while started.elapsed() < Duration::from_secs(2) {
        a.get_item(&format!("turned-away-{turned_away}")).await;
        b.get_item(&format!("turned-away-{turned_away}")).await;
        turned_away += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.redis.resume();
    a.wait_until_cache_ready().await;
    b.wait_until_cache_ready().await;

    // Redis dies: lookups skip it, and the deletes of writes wait until it
    // is back (empty).
    a.redis.kill();
    let started = Instant::now();
    let mut written = 0;
    while started.elapsed() < Duration::from_secs(3) {
        a.put("3", json!({ "stock": written })).await;
        b.get_item(["1", "2", "3"][written % 3]).await;
        written += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.redis.restart();
    a.wait_until_cache_ready().await;
    b.wait_until_cache_ready().await;
    eventually("the deferred deletes are applied", || async {
        a.stat("pending_invalidations").await == 0
    })
    .await;
    ordinary_traffic(&a, &b, &mut n, Duration::from_secs(8)).await;

    let mut failures = Vec::new();
    let concrete = |expr: &str| {
        expr.replace("$job", "redis-cache")
            .replace("$instance", ".*")
            .replace("$__rate_interval", "15s")
    };
    for (title, expr) in dashboard_queries() {
        let expr = concrete(&expr);
        if let Err(why) = prometheus.query(&expr).await {
            failures.push(format!("panel {title:?}: {why}\n    {expr}"));
        }
    }
    for (name, expr, alert) in rules() {
        let exprs = if alert { conditions(&expr) } else { vec![expr] };
        for expr in exprs {
            if let Err(why) = prometheus.query(&expr).await {
                failures.push(format!("rule {name}: {why}\n    {expr}"));
            }
        }
    }
    // The load did move what the new panels and alerts watch: not only do
    // the series exist, the faults above are in them.
    for (what, expr) in [
        (
            "Redis commands failed",
            r#"sum(db_client_operation_duration_seconds_count{job="redis-cache",db_system_name="redis",error_type!=""}) > 0"#,
        ),
        (
            "source-of-truth queries failed",
            r#"sum(db_client_operation_duration_seconds_count{job="redis-cache",db_system_name="postgresql",error_type!=""}) > 0"#,
        ),
        (
            "operations were turned away by an open circuit",
            r#"sum(redis_cache_redis_operations_skipped_total{job="redis-cache",reason="circuit_open"}) > 0"#,
        ),
        (
            "operations were skipped while disconnected",
            r#"sum(redis_cache_redis_operations_skipped_total{job="redis-cache",reason="disconnected"}) > 0"#,
        ),
        (
            "a circuit was scraped open",
            r#"max(max_over_time(redis_cache_circuit_breaker_state{job="redis-cache",state="open"}[10m])) == 1"#,
        ),
        (
            "invalidations were scraped pending",
            r#"max(max_over_time(redis_cache_pending_invalidations{job="redis-cache"}[10m])) > 0"#,
        ),
        (
            "values were filled",
            r#"sum(redis_cache_fills_total{job="redis-cache"}) > 0"#,
        ),
        (
            "hot keys were refreshed early",
            r#"sum(redis_cache_early_refreshes_total{job="redis-cache"}) > 0"#,
        ),
        (
            "absences were served from the cache",
            r#"sum(redis_cache_negative_hits_total{job="redis-cache"}) > 0"#,
        ),
        (
            "lookups were served stale, bypassing Redis, or failed",
            r#"count(sum by (result) (redis_cache_lookups_total{job="redis-cache",result=~"stale|bypass|error"}) > 0) == 3"#,
        ),
        (
            "item requests failed with 5xx",
            r#"sum(http_server_request_duration_seconds_count{job="redis-cache",http_route=~"/items.*",http_response_status_code=~"5.."}) > 0"#,
        ),
        (
            "unknown items got 404",
            r#"sum(http_server_request_duration_seconds_count{job="redis-cache",http_route="/items/{id}",http_response_status_code="404"}) > 0"#,
        ),
    ] {
        if let Err(why) = prometheus.query(expr).await {
            failures.push(format!("{what}? {why}\n    {expr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "expressions without data:\n{}",
        failures.join("\n")
    );

    // The circuit breaker panel: one state per instance, each one it names.
    let circuit = panel(&dashboard(), "Circuit breaker").clone();
    let states = prometheus
        .query(&concrete(exprs(&circuit)[0]))
        .await
        .unwrap();
    assert_eq!(states.len(), 2, "{states:?}");
    let mapped = &circuit["fieldConfig"]["defaults"]["mappings"][0]["options"];
    for state in states {
        let value = state["value"][1].as_str().unwrap();
        assert!(mapped[value]["text"].is_string(), "{state}");
    }

    // Prometheus itself evaluated every rule without an error.
    let rules = prometheus.get("/api/v1/rules", &[]).await.unwrap();
    let evaluated: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(evaluated.len(), self::rules().len());
    for rule in evaluated {
        assert_eq!(rule["health"], "ok", "{rule:#}");
    }
}
