//! No client can starve the service: slow headers and slow bodies are cut
//! off, idle connections are closed, an oversize body is refused before it
//! is sent, and a flood of connections neither exhausts the descriptors nor
//! keeps other clients (or the health probes) from being served.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::binary::{limit, listening, service_command};
use crate::helpers::{Backend, FillGate, Redis, TestApp, TestDatabase, eventually};

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// Reads one response: its head, and the body its `Content-Length` gives.
/// `None` if the server closed the connection without answering.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().unwrap());
            if received.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&received[..end + 4 + length]).into_owned());
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return (!received.is_empty())
                    .then(|| String::from_utf8_lossy(&received).into_owned());
            }
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether the server has closed `stream` (a read sees the end, or a reset).
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte).await, Ok(0) | Err(_))
}

fn request(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

fn body_of(response: &str) -> Value {
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

/// The value of one sample in `app`'s `/metrics`.
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trickling_in_are_cut_off_and_others_are_served_meanwhile() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.http.limits.header_timeout = Duration::from_millis(500))
        .spawn()
        .await;
    let port = app.port();
    // Each would take 4 s to send its headers, a byte every 100 ms.
    let slow: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = connect(port).await;
                let mut answered = false;
                for byte in request("GET", "/items/1").bytes() {
                    if stream.write_all(&[byte]).await.is_err() {
                        return answered;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                answered = read_response(&mut stream).await.is_some();
                answered
            })
        })
        .collect();
    for _ in 0..10 {
        assert_eq!(app.get_item("1").await.status(), StatusCode::OK);
    }
    for connection in slow {
        assert!(
            !connection.await.unwrap(),
            "a connection whose headers trickled in was answered instead of closed"
        );
    }
    let closed = r#"redis_cache_http_connections_closed_total{reason="header_timeout"}"#;
    assert!(metric(&app, closed).await >= 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.http.limits.header_timeout = Duration::from_millis(300))
        .spawn()
        .await;
    let mut silent = connect(app.port()).await;
    assert!(closed_by_server(&mut silent).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_serve_many_requests_then_close_when_idle() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| {
            c.http.limits.header_timeout = Duration::from_millis(300);
            c.http.limits.idle_timeout = Duration::from_millis(800);
            c.cache.source_delay = Duration::from_millis(600);
        })
        .spawn()
        .await;
    let mut stream = connect(app.port()).await;
    // Spaced by less than the idle timeout but, in all, longer than the
    // header timeout; the first and the last (misses) each take longer
    // than the header timeout: a busy connection is never cut off.
    for path in ["/items/1", "/items/1", "/items/1", "/items/1", "/items/2"] {
        stream
            .write_all(request("GET", path).as_bytes())
            .await
            .unwrap();
        let response = read_response(&mut stream).await.expect("an answer");
        assert_eq!(status_of(&response), 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), closed_by_server(&mut stream));
    assert!(closed.await.unwrap_or(false), "closed once idle");
    // This one, and the test client's own pooled connection.
    let closed = r#"redis_cache_http_connections_closed_total{reason="idle_timeout"}"#;
    assert!(metric(&app, closed).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_too_slowly_is_answered_408_and_the_connection_closed() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| c.http.limits.body_timeout = Duration::from_millis(500))
        .spawn()
        .await;
    let mut stream = connect(app.port()).await;
    let head = "POST /items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(br#"{"name": "#).await.unwrap();
    let response = read_response(&mut stream).await.expect("an answer");
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(response.to_ascii_lowercase().contains("connection: close"));
    assert_eq!(
        body_of(&response),
        serde_json::json!({ "error": "request body not received in time" })
    );
    assert!(closed_by_server(&mut stream).await);
    assert_eq!(app.get_item("1").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut stream = connect(app.port()).await;
        let head = format!(
            "POST /items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{expect}Content-Length: 10000000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let response = read_response(&mut stream).await.expect("an answer");
        assert_eq!(status_of(&response), 413, "{expect}: {response}");
        assert_eq!(body_of(&response)["details"]["limit_bytes"], 65536);
    }
}

/// A client that sends a too-large body whole, without waiting for an answer
/// (no `Expect`), reads its 413, told the connection closes (so that it does
/// not send its next request on it), and the connection then closes
/// cleanly: the server drains what it refused before closing, so the kernel
/// never answers the rest with a reset that could overtake the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_whole_past_the_limit_is_answered_413_not_reset() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body = vec![b' '; 400_000];
    for round in 0..20 {
        let stream = connect(app.port()).await;
        let (mut reader, mut writer) = stream.into_split();
        let head = format!(
            "POST /items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        let sending = tokio::spawn(async move { writer.write_all(&request).await });
        let mut received = Vec::new();
        let read = reader.read_to_end(&mut received).await;
        let response = String::from_utf8_lossy(&received);
        assert!(
            read.is_ok() && response.starts_with("HTTP/1.1 413"),
            "round {round}: {read:?}, {response:?}"
        );
        assert!(
            response
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{response}"
        );
        assert!(
            sending.await.unwrap().is_ok(),
            "round {round}: the body was taken whole"
        );
    }
}

/// With 256 descriptors, 300 connections that send nothing: the ones
/// beyond the cap make room by closing the oldest silent ones, and the
/// other clients are served as usual (the header timeout, a minute here,
/// has no part in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_under_a_low_descriptor_limit_starves_no_one() {
    let redis = Redis::start();
    let database = TestDatabase::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = service_command(
        dir.path(),
        redis.url(),
        &database,
        &[("HTTP_HEADER_TIMEOUT", "60s")],
    );
    limit(&mut command, libc::RLIMIT_NOFILE, 256);
    let (_child, port, _logs) = listening(command.spawn().unwrap());
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(connect(port).await);
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/items/1", "/livez", "/items/2", "/health", "/items/3"] {
        let response = http.get(format!("{base}{path}")).send().await;
        assert_eq!(response.unwrap().status(), StatusCode::OK, "{path}");
    }
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let evicted = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"redis_cache_http_connections_closed_total{reason="evicted"} "#)
        })
        .unwrap();
    assert!(
        evicted.parse::<f64>().unwrap() >= 100.0,
        "evicted {evicted}"
    );
}

/// Every connection busy with a slow request: a new connection still gets
/// its probe answered, anything else a quick 503, and once the slow requests
/// are done everything is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_connection_busy_probes_are_answered_and_the_rest_gets_503() {
    let app = TestApp::builder(Backend::Sqlite)
        .config(|c| {
            c.http.limits.max_connections = 8;
            c.http.limits.idle_timeout = Duration::from_millis(300);
        })
        .spawn()
        .await;
    // Seven slow misses, each on its own connection and held at the gate
    // until the end (not for a fixed delay, which a loaded machine can
    // outlast): every normal slot (the cap less one kept for overload) is
    // busy.
    let slow_ids: Vec<String> = (0..7).map(|n| format!("slow-{n}")).collect();
    let gate = FillGate::install_for(
        &app.catalog,
        &slow_ids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let slow: Vec<_> = (0..7)
        .map(|n| {
            let port = app.port();
            tokio::spawn(async move {
                let mut stream = connect(port).await;
                let path = format!("/items/slow-{n}");
                stream
                    .write_all(request("GET", &path).as_bytes())
                    .await
                    .unwrap();
                status_of(&read_response(&mut stream).await.unwrap())
            })
        })
        .collect();
    // Once the test client's pooled connections have gone idle and closed,
    // only the seven are open.
    eventually(
        "seven connections open, each with a request in flight",
        || async {
            let mut out = redis_cache::telemetry::metrics::Exposition::default();
            app.http_metrics.render_into(&mut out);
            let text = out.finish();
            text.contains("\nhttp_server_active_requests 7\n")
                && text.contains("\nredis_cache_http_open_connections 7\n")
        },
    )
    .await;
    let mut stream = connect(app.port()).await;
    stream
        .write_all(request("GET", "/items/1").as_bytes())
        .await
        .unwrap();
    let refused = read_response(&mut stream).await;
    let refused = refused.expect("an answer");
    assert_eq!(status_of(&refused), 503, "{refused}");
    assert_eq!(
        body_of(&refused),
        serde_json::json!({ "error": "too many open connections" })
    );
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1"));
    for probe in ["/livez", "/health", "/metrics"] {
        let mut stream = connect(app.port()).await;
        stream
            .write_all(request("GET", probe).as_bytes())
            .await
            .unwrap();
        let response = read_response(&mut stream).await.unwrap();
        assert_eq!(status_of(&response), 200, "{probe}: {response}");
    }
    gate.remove();
    for connection in slow {
        assert_eq!(connection.await.unwrap(), 404);
    }
    assert_eq!(app.get_item("1").await.status(), StatusCode::OK);
}
