//! Our hand-written metrics registry against `prometheus-client`, on what
//! the service does with it: one HTTP request observed (its method, matched
//! route and status as labels, its duration in a histogram with our
//! buckets), and one scrape of 60 such series. Both registries are
//! per-instance; the question is whether ours is worth keeping.
//!
//! `cargo bench -p redis-cache --bench registry`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use redis_cache::telemetry::http_metrics::HttpMetrics;
use redis_cache::telemetry::metrics::{Exposition, LATENCY_BUCKETS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    http_request_method: &'static str,
    http_route: String,
    http_response_status_code: u16,
    url_scheme: &'static str,
}

fn client_family() -> Family<RequestLabels, Histogram> {
    Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS.iter().copied()))
}

/// The 60 series a scrape renders: 3 routes, 4 methods, 5 statuses.
fn series() -> Vec<(&'static str, &'static str, u16)> {
    let mut all = Vec::new();
    for route in ["/items/{id}", "/items", "/items/batch"] {
        for method in ["GET", "PUT", "POST", "DELETE"] {
            for status in [200, 201, 304, 404, 503] {
                all.push((method, route, status));
            }
        }
    }
    all
}

fn bench(c: &mut Criterion) {
    let took = Duration::from_micros(420);
    let mut group = c.benchmark_group("one request observed");
    let ours = HttpMetrics::default();
    group.bench_function("ours", |b| {
        b.iter(|| ours.http_request("GET", Some("/items/{id}"), 200, took))
    });
    let family = client_family();
    group.bench_function("prometheus-client", |b| {
        b.iter(|| {
            family
                .get_or_create(&RequestLabels {
                    http_request_method: "GET",
                    http_route: "/items/{id}".to_owned(),
                    http_response_status_code: 200,
                    url_scheme: "http",
                })
                .observe(took.as_secs_f64())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("scrape of 60 series");
    let ours = HttpMetrics::default();
    let family = client_family();
    for (method, route, status) in series() {
        ours.http_request(method, Some(route), status, took);
        family
            .get_or_create(&RequestLabels {
                http_request_method: method,
                http_route: route.to_owned(),
                http_response_status_code: status,
                url_scheme: "http",
            })
            .observe(took.as_secs_f64());
    }
    group.bench_function("ours", |b| {
        b.iter(|| {
            let mut out = Exposition::default();
            ours.render_into(&mut out);
            out.finish()
        })
    });
    let mut registry = Registry::default();
    registry.register(
        "http_server_request_duration_seconds",
        "Duration of HTTP server requests.",
        family,
    );
    group.bench_function("prometheus-client", |b| {
        b.iter(|| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
