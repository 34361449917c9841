# syntax=docker/dockerfile:1
# The service. Build from the repository root:
#   docker build -f deploy/docker/redis-cache.Dockerfile -t ghcr.io/redis-cache/redis-cache:0.1.0 .

FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
# Dependencies first, in their own layer: built against placeholder sources,
# so that a change to our code does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates/redis-cache/Cargo.toml crates/redis-cache/
COPY crates/tiered-cache/Cargo.toml crates/tiered-cache/
COPY crates/prometheus-text/Cargo.toml crates/prometheus-text/
COPY crates/cache-loadgen/Cargo.toml crates/cache-loadgen/
COPY crates/cache-probe/Cargo.toml crates/cache-probe/
COPY crates/test-support/Cargo.toml crates/test-support/
COPY deploy/docker/placeholders.sh deploy/docker/
RUN sh deploy/docker/placeholders.sh \
    && cargo build --release --locked -p redis-cache \
    && sh deploy/docker/placeholders.sh --remove
# Our sources, made newer than the placeholders' build so cargo rebuilds them.
COPY crates crates
RUN find crates -type f -exec touch {} + \
    && cargo build --release --locked -p redis-cache \
    && mkdir -p out/data \
    && cp target/release/redis-cache out/

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=builder /src/out/redis-cache /usr/local/bin/redis-cache
# The SQLite file lives here by default; mount a volume on it, or use
# PostgreSQL (DATABASE_URL) when several instances share the data.
COPY --from=builder --chown=65532:65532 /src/out/data /data
USER 65532:65532
WORKDIR /data
ENV SERVER_PORT=8080 \
    BIND_ADDR=0.0.0.0 \
    DATABASE_URL=sqlite:/data/items.db \
    LOG_FORMAT=json
EXPOSE 8080
# No shell or curl in this image: the binary asks /readyz itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/redis-cache", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/redis-cache"]
