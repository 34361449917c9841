//! One OTLP client span per Redis command, exported when the standard
//! variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT`, …, as for the
//! service). Spans get the times the probe saw on the wire; the exporter
//! runs on its own thread.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::connection::Completed;
use crate::ebpf;
use crate::metrics::Peer;

pub struct Spans {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// Wall-clock time at monotonic time zero, for the kernel's timestamps.
    epoch: SystemTime,
}

impl Spans {
    /// `None` unless an OTLP endpoint is configured.
    pub fn from_env() -> anyhow::Result<Option<Spans>> {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        if disabled
            || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("cache-probe");
        }
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("cache-probe");
        let epoch = SystemTime::now() - Duration::from_nanos(ebpf::monotonic_ns());
        Ok(Some(Spans {
            provider,
            tracer,
            epoch,
        }))
    }

    pub fn command(&self, peer: &Peer, server: SocketAddr, done: &Completed) {
        let name = crate::metrics::command_label(&done.command.name);
        let mut attributes = vec![
            KeyValue::new("db.system.name", "redis"),
            KeyValue::new("db.operation.name", name.clone()),
            KeyValue::new("db.query.text", done.command.query_text()),
            KeyValue::new("server.address", server.ip().to_string()),
            KeyValue::new("server.port", i64::from(server.port())),
            KeyValue::new("process.executable.name", peer.service.clone()),
        ];
        if let Some(code) = &done.error {
            attributes.push(KeyValue::new("db.response.status_code", code.clone()));
        }
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_start_time(self.epoch + Duration::from_nanos(done.sent_ns))
            .with_attributes(attributes)
            .start(&self.tracer);
        if let Some(code) = &done.error {
            span.set_status(Status::error(code.clone()));
        }
        span.end_with_timestamp(self.epoch + Duration::from_nanos(done.answered_ns));
    }

    pub fn shutdown(&self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "span exporter did not shut down cleanly");
        }
    }
}
