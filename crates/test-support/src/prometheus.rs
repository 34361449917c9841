//! A Prometheus server of the test's own: scraping the given targets every
//! second, evaluating the given rule files, answering on a free port.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{free_port, kill_with_parent};

pub struct Prometheus {
    base: String,
    http: reqwest::Client,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (ports on 127.0.0.1) as job
    /// `job`, every second, with `rule_files` evaluated as often. Returns
    /// at once: ask [`Prometheus::query`] until it answers.
    pub fn start(job: &str, targets: &[u16], rule_files: &[&Path]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let quoted = |items: Vec<String>| {
            items
                .iter()
                .map(|item| format!("\"{item}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let targets = quoted(targets.iter().map(|p| format!("127.0.0.1:{p}")).collect());
        let rules = quoted(rule_files.iter().map(|f| f.display().to_string()).collect());
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules}]\n\
             scrape_configs:\n  - job_name: {job}\n    static_configs: [{{targets: [{targets}]}}]\n"
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = free_port();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_file.display()))
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
            child,
            _dir: dir,
        }
    }

    /// A GET of the HTTP API, its JSON answer; `None` while it is not up.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The series an instant query returns, or why there are none.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
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

    /// The values of an instant query's series, or why there are none.
    pub async fn values(&self, expr: &str) -> Result<Vec<f64>, String> {
        let series = self.query(expr).await?;
        Ok(series
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse().ok())
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
