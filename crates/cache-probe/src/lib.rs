//! # cache-probe
//!
//! Zero-code observation of Redis traffic with eBPF: what any process sends
//! to and receives from Redis, read off its syscalls, parsed as RESP, and
//! exported as Prometheus metrics and OTLP spans.
//!
//! ## Layout
//!
//! - [`ebpf`]: the kernel side's loader and the only `unsafe` code: checks,
//!   loading, process selection, draining the ring buffer.
//! - [`resp`]: RESP2/RESP3 parsing of byte streams with holes.
//! - [`commands`]: command names as `INFO commandstats` has them, keys, reads.
//! - [`connection`]: one connection's commands paired with their replies.

pub mod commands;
pub mod connection;
pub mod ebpf;
pub mod resp;
