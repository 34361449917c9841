# syntax=docker/dockerfile:1
# The eBPF probe. Build from the repository root:
#   docker build -f deploy/docker/cache-probe.Dockerfile -t ghcr.io/redis-cache/cache-probe:0.1.0 .
# Unlike the other images it runs as root, and must be run privileged (it
# loads BPF programs, attaches tracepoints, may mount tracefs and reads
# other processes' /proc entries) in the host's PID namespace.

FROM rust:1.95.0-bookworm AS builder
# clang compiles the BPF programs; libelf and zlib are what the vendored
# libbpf links against.
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libelf-dev zlib1g-dev linux-libc-dev make pkg-config \
    && rm -rf /var/lib/apt/lists/*
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
    && cargo build --release --locked -p cache-probe \
    && sh deploy/docker/placeholders.sh --remove
COPY crates crates
RUN find crates -type f -exec touch {} + \
    && cargo build --release --locked -p cache-probe \
    && mkdir -p out \
    && cp target/release/cache-probe out/

FROM debian:bookworm-20251229-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libelf1 zlib1g \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/out/cache-probe /usr/local/bin/cache-probe
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/cache-probe"]
