//! `cache-loadgen`: open-loop load for the redis-cache service, with
//! latencies that tell the truth.
//!
//! # Layout
//!
//! - [`cli`]: the command line, checked into a [`cli::Config`].
//! - [`target`]: the service's base URL, this machine only unless allowed.
//! - [`schedule`]: rate patterns (`constant`, `spike`, `ramp`, `step`,
//!   `wave`) and the send times they produce.
//! - [`workload`]: the operation mix and key choice (uniform or Zipf).
//! - [`client`]: one HTTP request per operation, and `--prepare`.
//! - [`run`]: the engine: a scheduler that sends on time, connections that
//!   take requests from its queue, latency from each request's due time.
//! - [`report`]: HDR histograms per operation, statuses, cache statuses,
//!   text and JSON.
//! - [`progress`]: the live line on stderr.
//!
//! # One request
//!
//! The scheduler computes its due time from the pattern, picks its
//! operation and items, sleeps until it is due and queues it; a free
//! connection takes it, sends it, reads the whole answer, and records the
//! time from due to done with its status and `X-Cache-Status`.

pub mod cli;
pub mod client;
pub mod progress;
pub mod report;
pub mod run;
pub mod schedule;
pub mod target;
pub mod workload;

use std::sync::Arc;

pub use cli::{Cli, Config};
pub use report::Report;

/// Prepares if asked, runs the load, and returns its report.
pub async fn execute(config: Config) -> anyhow::Result<Report> {
    let client = Arc::new(client::Client::new(
        config.target.clone(),
        config.connections,
        config.timeout,
        config.key_prefix.clone(),
        config.admin_token.clone(),
    )?);
    if config.prepare {
        let started = std::time::Instant::now();
        client.prepare(config.keys, config.connections).await?;
        if config.show_progress {
            eprintln!(
                "prepared {} items in {:.1} s",
                config.keys,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let progress = config
        .show_progress
        .then(|| progress::Progress::new(config.profile.total()));
    let options = run::Options {
        profile: config.profile,
        workload: run::Workload {
            mix: config.mix,
            keys: workload::Keys::new(config.keys, config.zipf),
            batch_size: config.batch_size,
            seed: config.seed,
        },
        connections: config.connections,
        drain: config.timeout + std::time::Duration::from_secs(1),
        pattern_name: config.pattern_name,
    };
    Ok(run::run(client, options, progress).await)
}
