//! The probe's user-space cost per command, without the kernel: events as
//! the ring buffer hands them over (a server's receive of a request burst,
//! then its send of the replies) through [`Tracker::handle_batch`], which
//! parses, pairs, classifies and counts them. The traffic is what
//! `redis-benchmark -t set,get -d 64` sends, one command per syscall and 16
//! per syscall (`-P 16`); `scripts/bench probe` measures the same traffic
//! end to end.
//!
//! `cargo bench -p cache-probe --bench pipeline`

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use cache_probe::ebpf::{Batch, DIR_RECV, DIR_SEND, EVENT_DATA, Ends, Event};
use cache_probe::metrics::Metrics;
use cache_probe::tracker::Tracker;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// The probe's allocator (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVER: &str = "127.0.0.1:6379";
const CLIENT: &str = "127.0.0.1:40000";

/// `depth` commands, SET and GET alternating, and their replies.
fn traffic(depth: usize) -> (Vec<u8>, Vec<u8>) {
    let value = "x".repeat(64);
    let (mut requests, mut replies) = (Vec::new(), Vec::new());
    for i in 0..depth {
        let key = format!("key:{:012}", i * 7919 % 100_000);
        if i % 2 == 0 {
            requests.extend(
                format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$64\r\n{value}\r\n",
                    key.len()
                )
                .bytes(),
            );
            replies.extend(b"+OK\r\n");
        } else {
            requests.extend(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).bytes());
            replies.extend(format!("$64\r\n{value}\r\n").bytes());
        }
    }
    (requests, replies)
}

fn event(direction: u32, data: &[u8], at: u64) -> Event {
    Event {
        timestamp_ns: at,
        cookie: 7,
        kind: EVENT_DATA,
        direction,
        length: data.len() as u32,
        offset: 0,
        last: true,
        ends: Ends::new(SERVER.parse().unwrap(), CLIENT.parse().unwrap()),
        ..Event::default()
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("server side, per command");
    for depth in [1, 16] {
        let (requests, replies) = traffic(depth.max(2));
        let (requests, replies) = if depth == 1 {
            // One SET and one GET, each its own round trip.
            let (set_end, ok_end) = (requests.iter().rposition(|&b| b == b'*').unwrap(), 5);
            (
                vec![requests[..set_end].to_vec(), requests[set_end..].to_vec()],
                vec![replies[..ok_end].to_vec(), replies[ok_end..].to_vec()],
            )
        } else {
            (vec![requests], vec![replies])
        };
        let server: SocketAddr = SERVER.parse().unwrap();
        let mut tracker = Tracker::new(
            vec![server.port()],
            Some("bench".into()),
            HashSet::from([server.port()]),
            Arc::new(Metrics::default()),
            None,
        );
        let commands = if depth == 1 { 2 } else { depth };
        group.throughput(Throughput::Elements(commands as u64));
        let mut at = 0;
        group.bench_function(format!("pipeline depth {depth}"), |b| {
            b.iter_batched_ref(
                || {
                    at += 1000;
                    let mut batch = Batch::default();
                    for (q, r) in requests.iter().zip(&replies) {
                        batch.push(event(DIR_RECV, q, at), q);
                        batch.push(event(DIR_SEND, r, at + 10), r);
                    }
                    batch
                },
                |batch| tracker.handle_batch(batch),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
