//! `cache-probe` against real Redis traffic, compared with what Redis itself
//! counted. Each test runs its own `redis-server` and its own probe; the
//! probe loads BPF programs, so these tests need root (`scripts/test` runs
//! them as root).

mod benchmark;
mod clients;
mod connections;
mod dashboard;
mod helpers;
mod latency;
mod namespaces;
mod polling;
mod selection;
mod service;
mod sessions;
mod spans;
