//! Telemetry: structured logs, OpenTelemetry traces and Prometheus metrics
//! ([`metrics`]).
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

pub mod metrics;

use std::io::IsTerminal;

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
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
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
        Ok(exporter) => (builder.with_batch_exporter(exporter).build(), None),
        Err(err) => (
            builder.with_sampler(Sampler::AlwaysOff).build(),
            Some(err.to_string()),
        ),
    }
}
