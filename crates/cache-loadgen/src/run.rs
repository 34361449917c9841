//! The engine. One task sends requests on time, whatever happens to the
//! ones already sent (open loop): each request is due at a time fixed by
//! the rate pattern, waits in a queue for a free connection if none is, and
//! its latency is measured from that due time. A service that stalls for a
//! second therefore shows a second of latency on every request due during
//! the stall, not on the few that happened to be in flight (the coordinated
//! omission of closed-loop tools).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;

use crate::client::Client;
use crate::progress::Progress;
use crate::report::{Recorder, Report, RunFacts};
use crate::schedule::Profile;
use crate::workload::{Keys, Mix, Op};

/// One request, due at `due`.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub op: Op,
    /// Prepared items it is about (a batch has several).
    pub keys: Vec<usize>,
    pub due: Instant,
    /// False during the warm-up: sent, not recorded.
    pub measured: bool,
}

/// What the jobs are made of.
pub struct Workload {
    pub mix: Mix,
    pub keys: Keys,
    pub batch_size: usize,
    pub seed: u64,
}

/// Sends `profile`'s jobs to `queue`, each at its due time (by the tokio
/// clock, so tests can run it on a paused one). Returns how many were due
/// in the measured part.
pub async fn schedule(
    profile: &Profile,
    workload: &Workload,
    start: Instant,
    queue: async_channel::Sender<Job>,
) -> u64 {
    let mut rng = SmallRng::seed_from_u64(workload.seed);
    let mut measured = 0;
    for offset in profile.send_times() {
        let due = start + offset;
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let op = workload.mix.pick(&mut rng);
        // A batch is a page of consecutive items, all distinct (as many as
        // there are).
        let first = workload.keys.pick(&mut rng);
        let count = if op == Op::Batch {
            workload.batch_size
        } else {
            1
        };
        let keys = (0..count.min(workload.keys.count()))
            .map(|i| (first + i) % workload.keys.count())
            .collect();
        let in_measure = offset >= profile.warmup;
        measured += u64::from(in_measure);
        let job = Job {
            op,
            keys,
            due,
            measured: in_measure,
        };
        if queue.send(job).await.is_err() {
            break;
        }
    }
    measured
}

pub struct Options {
    pub profile: Profile,
    pub workload: Workload,
    pub connections: usize,
    /// How long requests still in flight at the end are waited for.
    pub drain: Duration,
    pub pattern_name: String,
}

/// Runs the load and reports on its measured part.
pub async fn run(client: Arc<Client>, options: Options, progress: Option<Progress>) -> Report {
    let (queue, jobs) = async_channel::unbounded::<Job>();
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let recorded = Arc::new(AtomicU64::new(0));
    // Answered before the end of the measured time: the achieved rate.
    let in_window = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let window_end = start + options.profile.total();
    let progress = progress.map(Arc::new);
    let workers: Vec<_> = (0..options.connections)
        .map(|_| {
            let (client, jobs, recorder, recorded, in_window, progress) = (
                client.clone(),
                jobs.clone(),
                recorder.clone(),
                recorded.clone(),
                in_window.clone(),
                progress.clone(),
            );
            tokio::spawn(async move {
                while let Ok(job) = jobs.recv().await {
                    let outcome = client.execute(job.op, &job.keys).await;
                    let latency = job.due.elapsed();
                    if let Some(progress) = &progress {
                        progress.record(latency, &outcome);
                    }
                    if job.measured {
                        recorder
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .record(job.op, latency, &outcome);
                        recorded.fetch_add(1, Ordering::Relaxed);
                        if Instant::now() <= window_end {
                            in_window.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let ticker = progress
        .clone()
        .map(|progress| tokio::spawn(async move { progress.run().await }));
    let scheduled = schedule(&options.profile, &options.workload, start, queue).await;
    // The queue is closed: workers finish what is left, within the drain.
    let finished = tokio::time::timeout(options.drain, futures::future::join_all(workers)).await;
    if finished.is_err() {
        jobs.close();
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(progress) = &progress {
        progress.finish();
    }
    let recorded = recorded.load(Ordering::Relaxed);
    recorder
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .report(RunFacts {
            target: client_target(&client),
            pattern: options.pattern_name,
            measured: options.profile.duration,
            warmup: options.profile.warmup,
            connections: options.connections,
            scheduled,
            unfinished: scheduled.saturating_sub(recorded),
            answered_in_time: in_window.load(Ordering::Relaxed),
        })
}

fn client_target(client: &Client) -> String {
    client.target().base().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Pattern;

    /// On tokio's paused clock, every job reaches the queue exactly at its
    /// due time, and each second holds the pattern's rate.
    #[tokio::test(start_paused = true)]
    async fn jobs_are_sent_on_time_at_the_pattern_rate() {
        for pattern in [Pattern::Constant, Pattern::Ramp, Pattern::Wave] {
            let profile = Profile {
                pattern,
                rate: 500.0,
                max_rate: 2000.0,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(4),
            };
            let workload = Workload {
                mix: "get=80,batch=20".parse().unwrap(),
                keys: Keys::new(100, 0.99),
                batch_size: 5,
                seed: 42,
            };
            let (queue, jobs) = async_channel::unbounded();
            let start = Instant::now();
            let received = tokio::spawn(async move {
                let mut received = Vec::new();
                while let Ok(job) = jobs.recv().await {
                    received.push((Instant::now(), job));
                }
                received
            });
            let measured = schedule(&profile, &workload, start, queue).await;
            let received = received.await.unwrap();
            // Sent when due: at most the clock's 1 ms granularity late.
            for (at, job) in &received {
                assert!(*at >= job.due && *at - job.due <= Duration::from_millis(1));
                let expected = if job.op == Op::Batch { 5 } else { 1 };
                assert_eq!(job.keys.len(), expected);
            }
            let second = Duration::from_secs(1);
            for s in 0..5u32 {
                let (from, to) = (second * s, second * (s + 1));
                let sent = received
                    .iter()
                    .filter(|(_, job)| job.due - start >= from && job.due - start < to)
                    .count() as f64;
                let expected = profile.expected(from, to);
                assert!(
                    (sent - expected).abs() <= expected * 0.01 + 1.0,
                    "{pattern:?} second {s}: {sent} vs {expected}"
                );
            }
            let warm = received.iter().filter(|(_, job)| !job.measured).count();
            assert!((499..=501).contains(&warm), "{warm} in the warm-up second");
            assert_eq!(measured as usize, received.len() - warm);
        }
    }
}
