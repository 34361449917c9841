# syntax=docker/dockerfile:1
# The load generator. Build from the repository root:
#   docker build -f deploy/docker/cache-loadgen.Dockerfile -t ghcr.io/redis-cache/cache-loadgen:0.1.0 .
# It refuses targets other than loopback unless given --allow-remote, which
# a container pointed at another service needs.

FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates/redis-cache/Cargo.toml crates/redis-cache/
COPY crates/tiered-cache/Cargo.toml crates/tiered-cache/
COPY crates/prometheus-text/Cargo.toml crates/prometheus-text/
COPY crates/cache-loadgen/Cargo.toml crates/cache-loadgen/
COPY crates/cache-probe/Cargo.toml crates/cache-probe/
COPY crates/test-support/Cargo.toml crates/test-support/
COPY deploy/docker/placeholders.sh deploy/docker/
RUN sh deploy/docker/placeholders.sh \
    && cargo build --release --locked -p cache-loadgen \
    && sh deploy/docker/placeholders.sh --remove
COPY crates crates
RUN find crates -type f -exec touch {} + \
    && cargo build --release --locked -p cache-loadgen \
    && mkdir -p out \
    && cp target/release/cache-loadgen out/

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=builder /src/out/cache-loadgen /usr/local/bin/cache-loadgen
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/cache-loadgen"]
CMD ["--help"]
