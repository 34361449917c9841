//! # cache-probe
//!
//! Zero-code observation of Redis traffic with eBPF: what any process sends
//! to and receives from Redis, read off its socket sends and receives,
//! parsed as RESP, and exported as Prometheus metrics and OTLP spans.
//!
//! ## Layout
//!
//! - [`ebpf`]: the kernel side's loader and the only `unsafe` code: checks,
//!   loading, process selection, draining the ring buffer.
//! - [`resp`]: RESP2/RESP3 parsing of byte streams with holes.
//! - [`commands`]: command names as `INFO commandstats` has them, keys, reads.
//! - [`connection`]: one connection's commands paired with their replies.
//! - [`tracker`]: sockets, the side that counts, observations to metrics.
//! - [`discover`]: processes and sockets already there, from `/proc`.
//! - [`metrics`], [`spans`], [`info`]: what is exported.
//!
//! ## Life of a command
//!
//! A client writes `GET k` to a socket on a Redis port. The kernel program
//! on the socket layer's send tracepoint copies the bytes, once sent, into
//! the ring buffer; the probe drains it every 10 ms. The [`tracker::Tracker`] finds (or opens) the
//! socket's [`connection::Connection`], which parses the bytes into a
//! command and queues it; when the reply arrives on the same socket, the
//! command is completed (a nil reply: a miss) and counted, timed, and, with
//! OTLP configured, exported as a span.

pub mod commands;
pub mod connection;
pub mod discover;
pub mod ebpf;
mod fnv;
pub mod info;
pub mod metrics;
pub mod resp;
pub mod spans;
pub mod tracker;
