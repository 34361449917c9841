//! The spans the cache engine emits, one constructor per kind, so that
//! OpenTelemetry's attribute names are spelled in one place: the database
//! client spans (the source of truth, Redis) and the invalidation channel's
//! producer and consumer. Fields known only later are declared empty here
//! and recorded by the caller. It takes plain values, so that the modules
//! that emit spans need not be known here. (The HTTP server span is the
//! service's, in `redis_cache::http::trace`.)

use tracing::Span;
use tracing::field::Empty;

/// One operation on the source of truth (`system`, `sqlite` or
/// `postgresql`), on its `collection` (`SELECT`, `INSERT`, …); a read
/// records how many `ids` it asked for.
pub fn source_of_truth(system: &str, collection: &str, operation: &'static str) -> Span {
    let summary = format!("{operation} {collection}");
    tracing::info_span!(
        "source of truth",
        otel.name = summary.as_str(),
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = system,
        db.operation.name = operation,
        db.collection.name = collection,
        db.query.summary = summary.as_str(),
        ids = Empty,
        error.type = Empty,
    )
}

/// One Redis round trip: `name` the command (`GET`, `MGET`, `EVALSHA`),
/// `summary` a fixed description of what it does (empty when the command
/// says it all; never caller input), `batch_size` the commands in it when
/// more than one; `server` is the host, the port (none for a Unix socket)
/// and the database number. The caller records `db.query.text` and the
/// summary.
pub fn redis_client(
    name: &'static str,
    summary: &'static str,
    batch_size: Option<u64>,
    (host, port, database): (&str, Option<i64>, &str),
) -> Span {
    tracing::info_span!(
        "redis",
        otel.name = if summary.is_empty() { name } else { summary },
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = "redis",
        db.operation.name = name,
        db.operation.batch.size = batch_size,
        db.query.summary = Empty,
        db.query.text = Empty,
        db.namespace = database,
        server.address = host,
        server.port = port,
        error.type = Empty,
    )
}

/// Publishing one invalidation of `key` and/or `pattern` on `channel`.
pub fn invalidation_publish(channel: &str, key: Option<&str>, pattern: Option<&str>) -> Span {
    tracing::info_span!(
        "invalidation publish",
        otel.name = "cache:invalidate publish",
        otel.kind = "producer",
        messaging.system = "redis",
        messaging.operation.type = "send",
        messaging.destination.name = channel,
        cache.key = key,
        cache.pattern = pattern,
    )
}

/// Applying an invalidation announced by another publisher (a plain
/// `PUBLISH`, the original example): a root span, as the message carries no
/// trace context.
pub fn invalidation_announced() -> Span {
    tracing::info_span!(
        parent: None,
        "announced invalidation",
        otel.name = "cache:invalidate process",
        otel.kind = "consumer",
    )
}

/// Marks the span failed, with the conventions' `error.type`.
pub fn failed(span: &Span, error_type: &str) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}
