//! Telemetry: structured logs, OpenTelemetry traces and Prometheus metrics
//! (the HTTP server's, [`http_metrics`]; the cache engine's, [`metrics`]),
//! the spans we emit ([`spans`]), and what "since `/stats/reset`" means
//! ([`since_reset`]).
//!
//! Logs are `tracing` events, pretty for people or JSON for collectors,
//! filtered by `RUST_LOG` (default `info`). Spans are `tracing` spans too; the
//! OpenTelemetry layer turns them into OTLP spans, exported over HTTP when the
//! standard variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`
//! `http/protobuf` or `http/json`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and its argument,
//! `OTEL_BSP_*`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn
//! it off). Without an exporter, spans are not recorded, but every request
//! still gets a trace id (its caller's, from `traceparent`, or a new one) for
//! its log line. The exporter runs on its own thread: a slow or unreachable
//! collector costs requests nothing, and its failures are logged.

pub mod http_metrics;

// The cache engine's metrics, spans and resets.
pub use tiered_cache::telemetry::{metrics, since_reset, spans};

use std::io::IsTerminal;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Chatty dependencies are held at `warn` unless `RUST_LOG` names them (the
/// exporter's own HTTP client included, so exporting never logs itself).
const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,hyper_util=warn,h2=warn,tower=warn,reqwest=warn,opentelemetry_sdk=warn";
/// The OTLP exporter logs every failed batch; [`QuietExporter`] reports them
/// instead, so these stay off unless `RUST_LOG` names them.
const EXPORTER_TARGETS: [&str; 2] = ["opentelemetry_otlp", "opentelemetry-otlp"];

/// Flushes and stops the trace exporter when dropped (at exit).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "trace exporter did not shut down cleanly");
        }
    }
}

/// Installs the global subscriber: logs, and spans for OpenTelemetry.
pub fn init(format: LogFormat) -> Telemetry {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    for target in EXPORTER_TARGETS {
        if !asked.contains(target)
            && let Ok(directive) = format!("{target}=off").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    let exporting = exporting();
    let (provider, exporter_error) = tracer_provider(exporting);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("redis-cache"))
        .with_error_records_to_exceptions(true);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    if let Some(err) = exporter_error {
        tracing::warn!(error = %err, "cannot build the OTLP trace exporter; traces are not exported");
    } else if exporting {
        tracing::info!("exporting traces over OTLP");
    }
    Telemetry {
        // Already installed (tests build several applications in one
        // process): the first provider stays in charge.
        provider: installed.then_some(provider),
    }
}

/// Whether the standard variables ask for traces to be exported.
fn exporting() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn tracer_provider(exporting: bool) -> (SdkTracerProvider, Option<String>) {
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("redis-cache");
    }
    // Unless OTEL_RESOURCE_ATTRIBUTES says otherwise: the version, and an id
    // that tells this process's spans from its replicas'.
    let given = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    let given = |name: &str| {
        given
            .split(',')
            .any(|pair| pair.trim_start().starts_with(name))
    };
    if !given("service.version=") {
        resource =
            resource.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    }
    if !given("service.instance.id=") {
        let id = uuid::Uuid::new_v4().to_string();
        resource = resource.with_attribute(KeyValue::new("service.instance.id", id));
    }
    let builder = SdkTracerProvider::builder().with_resource(resource.build());
    if !exporting {
        // Nothing is recorded, but spans still carry trace ids for the logs.
        return (builder.with_sampler(Sampler::AlwaysOff).build(), None);
    }
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        // The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based,
        // always on), read by the SDK.
        Ok(exporter) => (
            builder
                .with_batch_exporter(QuietExporter::new(exporter))
                .build(),
            None,
        ),
        Err(err) => (
            builder.with_sampler(Sampler::AlwaysOff).build(),
            Some(err.to_string()),
        ),
    }
}

/// Wraps the OTLP exporter so that an unreachable collector is reported
/// once, then at most once a minute with the number of batches lost, instead
/// of an error line per batch for as long as it is down.
#[derive(Debug)]
struct QuietExporter<E> {
    inner: E,
    report: std::sync::Mutex<FailureReport>,
}

#[derive(Debug, Default)]
struct FailureReport {
    failing: bool,
    /// Batches lost since the last line, and when that line was written.
    lost: u64,
    reported_at: Option<std::time::Instant>,
}

impl<E> QuietExporter<E> {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    fn new(inner: E) -> Self {
        QuietExporter {
            inner,
            report: std::sync::Mutex::default(),
        }
    }

    fn record(&self, outcome: &opentelemetry_sdk::error::OTelSdkResult, spans: usize) {
        let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(()) => {
                if report.failing {
                    tracing::info!(lost_batches = report.lost, "span export works again");
                }
                *report = FailureReport::default();
            }
            Err(err) => {
                report.failing = true;
                report.lost += 1;
                if report
                    .reported_at
                    .is_none_or(|at| at.elapsed() >= Self::EVERY)
                {
                    tracing::warn!(error = %err, lost_batches = report.lost, spans, "cannot export spans; they are dropped");
                    report.reported_at = Some(std::time::Instant::now());
                    report.lost = 0;
                }
            }
        }
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for QuietExporter<E>
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let spans = batch.len();
        let outcome = self.inner.export(batch).await;
        self.record(&outcome, spans);
        // Reported here; the batch processor would log every failure again.
        Ok(())
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
