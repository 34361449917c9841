//! The Grafana dashboard and the Prometheus rules in `deploy/` show real
//! data: a real Prometheus (Debian's `prometheus` package) scrapes two
//! instances under a short load and evaluates every expression of the
//! dashboard and of the rules; each must succeed and return series. The
//! rules' own unit tests run with `promtool test rules`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, eventually, free_port, kill_with_parent};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn dashboard() -> Value {
    let text =
        std::fs::read_to_string(deploy().join("grafana/redis-cache-dashboard.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every query of the dashboard's panels.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap().to_owned();
            queries.push((title, target["expr"].as_str().unwrap().to_owned()));
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

/// An alert's condition with its comparison turned into a `bool` one: a
/// series for every input series, 0 or 1, so that an alert that is (rightly)
/// not firing still shows its expression reads real data.
fn as_bool(expr: &str) -> String {
    for op in [" < ", " > ", " == "] {
        if let Some((left, right)) = expr.rsplit_once(op) {
            return format!("{left} {} bool {right}", op.trim());
        }
    }
    panic!("alert without a comparison: {expr}")
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
    assert_eq!(variables, ["datasource", "job", "instance"]);
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
        "Latency p50 / p95 / p99",
        "Redis operations by command",
        "Hits vs misses",
        "Pub/sub messages",
        "Redis memory usage",
        "Invalidation lag p99",
        "Stale, bypass and error rates",
        "Circuit breaker",
    ] {
        assert!(titles.contains(&title), "no panel {title}");
    }
    for (title, expr) in dashboard_queries() {
        assert!(
            expr.contains(r#"job=~"$job""#) && expr.contains(r#"instance=~"$instance""#),
            "{title}: {expr} ignores the service or instance selector"
        );
    }
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

struct Prometheus {
    base: String,
    http: reqwest::Client,
    _child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: redis-cache\n    static_configs: [{{targets: [{}]}}]\n",
            deploy().join("prometheus/rules.yml").display(),
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let mut command = Command::new("prometheus");
        command
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        kill_with_parent(&mut command, libc::SIGKILL);
        let child = command
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/test installs it)");
        Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _child: child,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The result of an instant query, or why there is none.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let answer = self
            .get("/api/v1/query", &[("query", expr)])
            .await
            .ok_or("no answer")?;
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if result.is_empty() {
            return Err("no series".into());
        }
        Ok(result)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_expression_returns_real_series() {
    let a = TestApp::spawn(Backend::Sqlite).await;
    let b = a.peer().spawn().await;
    let prometheus = Prometheus::start(&[a.port(), b.port()]);
    eventually("prometheus scrapes both instances", || async {
        prometheus
            .query(r#"count(up{job="redis-cache"} == 1) == 2"#)
            .await
            .is_ok()
    })
    .await;

    // A short, varied load: hits and misses in both tiers, batches, unknown
    // ids, writes (invalidations flow from a to b), and a few errors.
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(20) {
        let app = if n.is_multiple_of(2) { &a } else { &b };
        app.get_item(["1", "2", "3"][(n % 3) as usize]).await;
        app.get_item(&format!("unknown-{}", n % 7)).await;
        app.batch(&["1", "2", "3", "nope"]).await;
        if n.is_multiple_of(5) {
            a.put("1", json!({ "stock": n })).await;
        }
        if n.is_multiple_of(11) {
            app.get("/items/not%20an%20id").await;
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

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
        let expr = if alert { as_bool(&expr) } else { expr };
        if let Err(why) = prometheus.query(&expr).await {
            failures.push(format!("rule {name}: {why}\n    {expr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "expressions without data:\n{}",
        failures.join("\n")
    );

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
