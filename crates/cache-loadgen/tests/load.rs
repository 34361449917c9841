//! `cache-loadgen` against the real service (in this process, on a private
//! Redis and SQLite): a mixed run, a stall that must show in the
//! latencies, and the exit codes.

use std::process::Command;
use std::time::Duration;

use cache_loadgen::Report;
use test_support::{Redis, Service, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The service on a Redis of its own, serving until dropped.
async fn service() -> (Service, Redis) {
    let redis = Redis::start();
    (Service::start(&redis.url(), &[]).await, redis)
}

/// Runs the binary (off the runtime: it blocks); its report, stderr and
/// exit code.
async fn loadgen(args: Vec<String>) -> (Option<Report>, String, i32) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_cache-loadgen"))
            .args(&args)
            .args(["--json", "--quiet"])
            .output()
            .unwrap();
        let report = serde_json::from_slice(&output.stdout).ok();
        (
            report,
            String::from_utf8_lossy(&output.stderr).into_owned(),
            output.status.code().unwrap_or(-1),
        )
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_meets_its_rate_and_sees_the_cache() {
    let (service, _redis) = service().await;
    let target = format!("http://127.0.0.1:{}", service.port());
    let (report, stderr, code) = loadgen(args(&[
        "--target",
        &target,
        "--prepare",
        "--keys",
        "200",
        "--zipf",
        "0.99",
        "--rate",
        "300",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--connections",
        "8",
        "--mix",
        "get=70,put=10,batch=5,create=5,delete=5,invalidate-key=3,invalidate-pattern=2",
        "--batch-size",
        "20",
        "--seed",
        "7",
    ]))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let report = report.expect("a JSON report");
    // Open loop: what was scheduled was sent and answered.
    assert!(
        (880..=920).contains(&report.scheduled),
        "{}",
        report.scheduled
    );
    assert_eq!(report.requests, report.scheduled);
    assert_eq!(report.unfinished, 0);
    assert!(
        (report.achieved_rate - 300.0).abs() < 15.0,
        "{}",
        report.achieved_rate
    );
    assert_eq!(report.error_rate, 0.0);
    for op in [
        "get",
        "put",
        "batch",
        "create",
        "delete",
        "invalidate-key",
        "invalidate-pattern",
    ] {
        assert!(
            report.ops.contains_key(op),
            "no {op} in {:?}",
            report.ops.keys()
        );
    }
    let get = &report.ops["get"];
    assert_eq!(
        get.statuses.get("200").copied(),
        Some(get.requests),
        "{:?}",
        get.statuses
    );
    assert_eq!(
        report.ops["create"].statuses.get("201").copied(),
        Some(report.ops["create"].requests)
    );
    assert!(get.latency_ms.p50 <= get.latency_ms.p99 && get.latency_ms.p99 <= get.latency_ms.max);
    // Zipf over prepared, warmed-up items: mostly hits, from both tiers.
    let hit_rate = report.client_hit_rate.unwrap();
    assert!(hit_rate > 0.6, "{hit_rate}");
    assert!(get.cache_tiers.contains_key("L1"), "{:?}", get.cache_tiers);
}

/// A pausable TCP relay to `to`: while paused it forwards nothing.
async fn relay(to: u16, paused: watch::Receiver<bool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let outbound = tokio::net::TcpStream::connect(("127.0.0.1", to))
                .await
                .unwrap();
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pipe(ri, wo, paused.clone()));
            tokio::spawn(pipe(ro, wi, paused.clone()));
        }
    });
    port
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|paused| !paused).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// The service stops answering for a second in the middle of the run.
/// Every request due during the stall waited for it: their latencies, from
/// their due times, fill the top of the distribution. A closed-loop tool
/// would have sent only a connection's worth of requests during the stall
/// and reported a p99 near the normal one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_service_shows_in_every_request_due_meanwhile() {
    let (service, _redis) = service().await;
    let (pause, paused) = watch::channel(false);
    let port = relay(service.port(), paused).await;
    let target = format!("http://127.0.0.1:{port}");
    let run = tokio::spawn(loadgen(args(&[
        "--target",
        &target,
        "--prepare",
        "--keys",
        "50",
        "--rate",
        "200",
        "--duration",
        "4s",
        "--connections",
        "4",
        "--mix",
        "get=1",
        "--seed",
        "1",
    ])));
    // --prepare takes a moment; the stall starts well into the run.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    pause.send_replace(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    pause.send_replace(false);
    let (report, stderr, code) = run.await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    let report = report.unwrap();
    assert_eq!(report.requests, report.scheduled, "none dropped");
    let latency = &report.latency_ms;
    // About a quarter of the requests were due during the stall, waiting
    // from 1 s down to nothing: the p99 is near the stall, the p90 well
    // above normal.
    assert!(latency.p99 >= 800.0, "{latency:?}");
    assert!(latency.p90 >= 200.0, "{latency:?}");
    assert!(latency.max >= 950.0 && latency.max < 2000.0, "{latency:?}");
    assert!(
        latency.p50 < 100.0,
        "most requests were not affected: {latency:?}"
    );
}

#[tokio::test]
async fn exit_codes_say_what_went_wrong() {
    // Nothing listens there: every request fails, above --max-error-rate.
    let nothing = format!("http://127.0.0.1:{}", free_port());
    let (report, stderr, code) = loadgen(args(&[
        "--target",
        &nothing,
        "--rate",
        "50",
        "--duration",
        "1s",
    ]))
    .await;
    assert_eq!(code, 1, "{stderr}");
    let report = report.unwrap();
    assert_eq!(report.error_rate, 1.0);
    assert!(
        report.ops["get"].errors.contains_key("connect"),
        "{:?}",
        report.ops["get"].errors
    );
    assert!(stderr.contains("above --max-error-rate"), "{stderr}");

    // Another machine, without --allow-remote: refused before any request.
    let (report, stderr, code) = loadgen(args(&[
        "--target",
        "http://192.0.2.1:8080",
        "--duration",
        "1s",
    ]))
    .await;
    assert_eq!((report.is_none(), code), (true, 2));
    assert!(stderr.contains("--allow-remote"), "{stderr}");
    let (_, stderr, code) = loadgen(args(&["--rate", "0"])).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("--rate"), "{stderr}");
}
