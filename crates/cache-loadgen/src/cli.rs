//! The command line, parsed by clap and checked once into a [`Config`].

use std::time::Duration;

use anyhow::bail;
use clap::Parser;

use crate::schedule::{Pattern, Profile};
use crate::target::Target;
use crate::workload::Mix;

/// Open-loop load for the redis-cache service: requests are sent at the
/// pattern's rate whatever the service does, and each latency is measured
/// from the request's scheduled time.
#[derive(Debug, Parser)]
#[command(name = "cache-loadgen", version)]
pub struct Cli {
    /// Base URL of the service.
    #[arg(long, env = "LOADGEN_TARGET", default_value = "http://127.0.0.1:8080")]
    pub target: String,

    /// Allow a target that is not this machine.
    #[arg(long)]
    pub allow_remote: bool,

    /// Measured time (after the warm-up); the run stops by itself.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Time at the starting rate before measuring (sent, not recorded).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// How the rate moves: constant; spike (--max-rate for the middle
    /// fifth); ramp (--rate to --max-rate); step (five steps up to
    /// --max-rate); wave (to --max-rate and back, twice).
    #[arg(long, value_enum, default_value_t = Pattern::Constant)]
    pub pattern: Pattern,

    /// Requests per second (the starting rate of a pattern).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// The highest rate of a pattern [default: twice --rate].
    #[arg(long)]
    pub max_rate: Option<f64>,

    /// Connections to the service (requests in flight at most).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,

    /// Operation weights: get, put, create, delete, batch, invalidate-key,
    /// invalidate-pattern.
    #[arg(long, default_value = "get=80,put=20")]
    pub mix: Mix,

    /// Ids per batch request.
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,

    /// Items the requests are about: lg-0 … lg-{N-1}.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,

    /// Zipf exponent of the key choice (0.99: a few keys get most requests);
    /// 0 is uniform.
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,

    /// Create the items first (through the API, in parallel; existing ones
    /// are kept).
    #[arg(long)]
    pub prepare: bool,

    /// The service's CACHE_KEY_PREFIX, for invalidations.
    #[arg(long, default_value = "item:")]
    pub key_prefix: String,

    /// The service's ADMIN_TOKEN, sent with invalidations.
    #[arg(long, env = "LOADGEN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// A request not answered within this is counted as failed.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Seed of the operation and key choices [default: random].
    #[arg(long)]
    pub seed: Option<u64>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Exit with status 1 when failed requests and 5xx answers exceed this
    /// fraction of all requests.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,

    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// A checked [`Cli`].
#[derive(Debug)]
pub struct Config {
    pub target: Target,
    pub profile: Profile,
    pub pattern_name: String,
    pub connections: usize,
    pub mix: Mix,
    pub batch_size: usize,
    pub keys: usize,
    pub zipf: f64,
    pub prepare: bool,
    pub key_prefix: String,
    pub admin_token: Option<String>,
    pub timeout: Duration,
    pub seed: u64,
    pub json: bool,
    pub max_error_rate: f64,
    pub show_progress: bool,
}

impl Config {
    pub async fn from_cli(cli: Cli) -> anyhow::Result<Config> {
        let rate_ok = |r: f64| r.is_finite() && r > 0.0 && r <= 1e7;
        let max_rate = cli.max_rate.unwrap_or(cli.rate * 2.0);
        if !rate_ok(cli.rate) || !rate_ok(max_rate) {
            bail!("--rate and --max-rate must be above 0 (and at most 10 million)");
        }
        if cli.duration.is_zero() {
            bail!("--duration must be above 0");
        }
        if !(1..=10_000).contains(&cli.connections) {
            bail!("--connections must be between 1 and 10000");
        }
        if !(1..=10_000_000).contains(&cli.keys) {
            bail!("--keys must be between 1 and 10 million");
        }
        if !(1..=1000).contains(&cli.batch_size) {
            bail!("--batch-size must be between 1 and 1000");
        }
        if !cli.zipf.is_finite() || !(0.0..=10.0).contains(&cli.zipf) {
            bail!("--zipf must be between 0 and 10");
        }
        if !(0.0..=1.0).contains(&cli.max_error_rate) {
            bail!("--max-error-rate is a fraction between 0 and 1");
        }
        if cli.timeout.is_zero() {
            bail!("--timeout must be above 0");
        }
        Ok(Config {
            target: Target::parse(&cli.target, cli.allow_remote).await?,
            profile: Profile {
                pattern: cli.pattern,
                rate: cli.rate,
                max_rate,
                warmup: cli.warmup,
                duration: cli.duration,
            },
            pattern_name: format!("{:?}", cli.pattern).to_lowercase(),
            connections: cli.connections,
            mix: cli.mix,
            batch_size: cli.batch_size,
            keys: cli.keys,
            zipf: cli.zipf,
            prepare: cli.prepare,
            key_prefix: cli.key_prefix,
            admin_token: cli.admin_token,
            timeout: cli.timeout,
            seed: cli.seed.unwrap_or_else(rand::random),
            json: cli.json,
            max_error_rate: cli.max_error_rate,
            show_progress: !cli.quiet,
        })
    }
}
