//! Configuration: one typed tree built from flags and environment variables
//! (every flag has a variable), validated once at start. Secrets are held in
//! [`Secret`] and never printed, not even in `--help` or in error messages.

// The flags' doc comments are their `--help` text, written for a terminal
// (`redis://[user:password@]host`, `sqlite:<path>`), not for rustdoc.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Parser, ValueEnum};
use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::cache::{KeyPrefix, L1Config};
pub use crate::catalog::CacheConfig;
use crate::http::server::ServerLimits;
use crate::secret::Secret;
use crate::store::{DEFAULT_DATABASE_URL, DatabaseUrl};

/// Flags and environment variables, exactly as the user typed them.
#[derive(Debug, Parser)]
#[command(
    name = "redis-cache",
    version,
    about = "Item API that reads through a Redis cache, backed by SQLite or PostgreSQL"
)]
pub struct Cli {
    /// HTTP port to listen on (0 picks a free one).
    #[arg(long, env = "SERVER_PORT", default_value_t = 8080)]
    pub server_port: u16,

    /// Address to bind the HTTP listener to.
    #[arg(long, env = "BIND_ADDR", default_value = "0.0.0.0")]
    pub bind_addr: IpAddr,

    /// Redis to cache in: redis://[user:password@]host[:port][/db], rediss:// for
    /// TLS. Wins over REDIS_ADDR and REDIS_PASSWORD. [default: redis://127.0.0.1:6379]
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Redis host:port, as in the original example (used when REDIS_URL is unset).
    #[arg(long, env = "REDIS_ADDR")]
    pub redis_addr: Option<String>,

    /// Redis password to go with REDIS_ADDR.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// PEM file of the CA(s) that signed the Redis server certificate, trusted
    /// instead of the public roots (rediss:// only).
    #[arg(long, env = "REDIS_CA_CERT")]
    pub redis_ca_cert: Option<PathBuf>,

    /// PEM client certificate for mutual TLS with Redis (with REDIS_CLIENT_KEY).
    #[arg(long, env = "REDIS_CLIENT_CERT")]
    pub redis_client_cert: Option<PathBuf>,

    /// PEM private key of REDIS_CLIENT_CERT.
    #[arg(long, env = "REDIS_CLIENT_KEY")]
    pub redis_client_key: Option<PathBuf>,

    /// Per-command Redis timeout; past it the request is answered from the
    /// source of truth (X-Cache-Status: BYPASS).
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "250ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Source of truth: sqlite:<path> (single instance) or postgres://… (several).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Most connections the database pool opens.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// Do not insert the original example's three demo items on first start.
    #[arg(long, env = "NO_DEMO_DATA", value_parser = BoolishValueParser::new(), default_value_t = false, num_args = 0, default_missing_value = "true")]
    pub no_demo_data: bool,

    /// Time to live of cached items (e.g. 30s, 5m, 1h).
    #[arg(long, env = "CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    pub cache_ttl: Duration,

    /// Prefix of every cache key; must end with ':'.
    #[arg(long, env = "CACHE_KEY_PREFIX", default_value = "item:")]
    pub cache_key_prefix: String,

    /// Number of items loaded into Redis at start (most recently updated first).
    #[arg(long, env = "CACHE_WARM", default_value_t = 0)]
    pub cache_warm: u32,

    /// How long an absent id is remembered (404 served from the cache);
    /// 0 turns negative caching off.
    #[arg(long, env = "NEGATIVE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub negative_ttl: Duration,

    /// Random spread of every TTL, as a fraction (0.1 = ±10 %), so keys cached
    /// together do not expire together; 0 turns it off.
    #[arg(long, env = "CACHE_TTL_JITTER", default_value_t = 0.1)]
    pub cache_ttl_jitter: f64,

    /// A hit in the last part of its freshness (as a fraction of its TTL)
    /// refreshes the key once in the background; 0 turns early refresh off.
    #[arg(long, env = "EARLY_REFRESH", default_value_t = 0.1)]
    pub early_refresh: f64,

    /// How long past its freshness a cached value may still be served, marked
    /// STALE, while the source of truth fails; 0 turns fail-safe off.
    #[arg(long, env = "STALE_IF_ERROR", default_value = "10m", value_parser = parse_duration)]
    pub stale_if_error: Duration,

    /// Lifetime of the per-key lease an instance takes in Redis before reading
    /// the source of truth on a miss; a crashed holder's lease expires after it.
    #[arg(long, env = "LEASE_TTL", default_value = "2s", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// Use leases (cross-instance miss coalescing, protection against stale
    /// fills). Only turn off to measure what they buy.
    #[arg(long, env = "CACHE_LEASES", value_parser = BoolishValueParser::new(), default_value_t = true, action = clap::ArgAction::Set)]
    pub cache_leases: bool,

    /// Coalesce concurrent lookups of one id in this process into one load.
    /// Only turn off to measure what it buys.
    #[arg(long, env = "CACHE_COALESCING", value_parser = BoolishValueParser::new(), default_value_t = true, action = clap::ArgAction::Set)]
    pub cache_coalescing: bool,

    /// Bound on one source-of-truth read; past it the read counts as failed
    /// (and a cached value may be served STALE).
    #[arg(long, env = "SOURCE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub source_timeout: Duration,

    /// After a failed source-of-truth read of an id, how long to wait before
    /// trying that id again.
    #[arg(long, env = "FAILSAFE_THROTTLE", default_value = "2s", value_parser = parse_duration)]
    pub failsafe_throttle: Duration,

    /// Longest an instance stays quiet on the invalidation channel: with
    /// nothing to publish it sends a heartbeat. Another instance not heard
    /// from for three heartbeats and 500 ms is taken for lost (near cache
    /// flushed). Set the same on every instance.
    #[arg(long, env = "INVALIDATION_HEARTBEAT", default_value = "1s", value_parser = parse_duration)]
    pub invalidation_heartbeat: Duration,

    /// Consecutive Redis timeouts or connection failures that open the circuit
    /// breaker (Redis is then skipped for a cool-down); 0 turns it off.
    #[arg(long, env = "REDIS_BREAKER_FAILURES", default_value_t = 5)]
    pub redis_breaker_failures: u32,

    /// How long an open breaker skips Redis before one probe is let through.
    #[arg(long, env = "REDIS_BREAKER_COOLDOWN", default_value = "5s", value_parser = parse_duration)]
    pub redis_breaker_cooldown: Duration,

    /// How often an idle Redis connection is checked with PING: a connection
    /// that died silently (network cut, no RST) is replaced after two failed
    /// checks. The invalidation subscription is pinged twice as often (until
    /// its loss is noticed, the near cache may miss invalidations).
    #[arg(long, env = "REDIS_HEALTH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub redis_health_interval: Duration,

    /// Consecutive failures to reach the database that open its circuit
    /// breaker (reads and writes then fail at once for a cool-down);
    /// PostgreSQL only (a SQLite file has no outage to wait out); 0 turns it off.
    #[arg(long, env = "SOURCE_BREAKER_FAILURES", default_value_t = 2)]
    pub source_breaker_failures: u32,

    /// How long an open database breaker refuses before one request probes it.
    #[arg(long, env = "SOURCE_BREAKER_COOLDOWN", default_value = "1s", value_parser = parse_duration)]
    pub source_breaker_cooldown: Duration,

    /// Most items kept in each instance's near cache (L1); 0 turns it off.
    #[arg(long, env = "L1_CAPACITY", default_value_t = 10_000)]
    pub l1_capacity: u64,

    /// Most bytes of items kept in the near cache (e.g. 64MiB, 500KB, 1048576).
    #[arg(long, env = "L1_MAX_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub l1_max_bytes: u64,

    /// Longest an item stays in the near cache (capped at CACHE_TTL).
    #[arg(long, env = "L1_TTL", default_value = "30s", value_parser = parse_duration)]
    pub l1_ttl: Duration,

    /// How often Redis memory and key counts are polled for /metrics (INFO,
    /// and a SCAN of the cache prefix); 0 turns polling off.
    #[arg(long, env = "REDIS_INFO_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub redis_info_interval: Duration,

    /// Artificial latency added to every source-of-truth read, for
    /// demonstrations and benchmarks.
    #[arg(long, env = "SOURCE_DELAY", default_value = "0ms", value_parser = parse_duration)]
    pub source_delay: Duration,

    /// When set, /cache/invalidate, /cache/warm and /stats/reset require
    /// `Authorization: Bearer <token>`.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Most ids accepted by POST /items/batch.
    #[arg(long, env = "BATCH_MAX_IDS", default_value_t = 1000)]
    pub batch_max_ids: usize,

    /// After SIGTERM/SIGINT, how long to keep accepting requests while /readyz
    /// already reports 503, so load balancers stop routing here first.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// How long a client may take to send a request's headers, from its first
    /// byte (from connecting, for a connection's first request).
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_header_timeout: Duration,

    /// How long a client may take to send a request body, from the end of its
    /// headers; past it the answer is 408.
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub http_body_timeout: Duration,

    /// How long a keep-alive connection may wait for its next request (keep
    /// it above the idle timeout of any load balancer in front).
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub http_idle_timeout: Duration,

    /// Most HTTP connections open at once (lowered to what the descriptor
    /// limit allows). At the cap, the connection idle the longest is closed
    /// for a new one; when none is idle, only health endpoints are served.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub http_max_connections: usize,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Name of this instance in /stats and invalidation messages
    /// [default: <hostname>-<random>].
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Log format. The level is set with RUST_LOG (default: info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw)
        .map_err(|_| "expected a duration such as 250ms, 30s or 5m".to_owned())
}

/// A size in bytes: a number with an optional unit (B, KB, MB, GB in powers
/// of 1000; KiB, MiB, GiB in powers of 1024).
fn parse_bytes(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err("expected a size such as 64MiB, 500KB or 1048576".to_owned()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| "expected a size such as 64MiB, 500KB or 1048576".to_owned())
}

/// The validated configuration the application is built from.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub redis: RedisConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub instance_id: String,
    pub log_format: LogFormat,
    /// Zero: no polling.
    pub redis_info_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind: SocketAddr,
    /// Timeouts and the connection cap (before fitting the cap to the
    /// descriptor limit, which `Application::build` does).
    pub limits: ServerLimits,
    pub shutdown_delay: Duration,
    pub shutdown_grace: Duration,
    pub batch_max_ids: usize,
    pub admin_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub target: RedisTarget,
    pub timeout: Duration,
    /// Zero: breaker off.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// Idle connections are pinged this often (the subscription twice as often).
    pub health_interval: Duration,
    /// Certificates for `rediss://` beyond the public roots.
    pub tls: Option<RedisTls>,
}

/// PEM contents read from `REDIS_CA_CERT`, `REDIS_CLIENT_CERT` and `REDIS_CLIENT_KEY`.
#[derive(Clone)]
pub struct RedisTls {
    pub root_cert: Option<Vec<u8>>,
    /// Certificate and private key for mutual TLS.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("custom_ca", &self.root_cert.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl RedisConfig {
    /// The Redis client for these settings (no connection is made yet).
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        let info = self.target.connection_info();
        match &self.tls {
            None => redis::Client::open(info),
            Some(tls) => redis::Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: tls.client.clone().map(|(client_cert, client_key)| {
                        ClientTlsConfig {
                            client_cert,
                            client_key,
                        }
                    }),
                    root_cert: tls.root_cert.clone(),
                },
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub max_connections: u32,
    pub demo_data: bool,
}

/// A bad setting, named by its environment variable, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

fn invalid(variable: &'static str, reason: impl ToString) -> ConfigError {
    ConfigError {
        variable,
        reason: reason.to_string(),
    }
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let redis_target = match (&cli.redis_url, &cli.redis_addr) {
            (Some(url), _) => RedisTarget::from_url(url).map_err(|r| invalid("REDIS_URL", r))?,
            (None, Some(addr)) => RedisTarget::from_addr(addr, cli.redis_password.as_deref())
                .map_err(|r| invalid("REDIS_ADDR", r))?,
            (None, None) => RedisTarget::from_url(DEFAULT_REDIS_URL).expect("default is valid"),
        };
        let in_range = |variable, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                Err(invalid(
                    variable,
                    format!(
                        "must be between {} and {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                ))
            } else {
                Ok(value)
            }
        };
        let redis_tls = redis_tls(&cli, &redis_target)?;
        let ms = Duration::from_millis;
        let redis_timeout = in_range("REDIS_TIMEOUT", cli.redis_timeout, ms(1), ms(60_000))?;
        let cache_ttl = in_range(
            "CACHE_TTL",
            cli.cache_ttl,
            ms(1),
            Duration::from_secs(365 * 86_400),
        )?;
        let source_delay = in_range("SOURCE_DELAY", cli.source_delay, ms(0), ms(60_000))?;
        let source_timeout = in_range(
            "SOURCE_TIMEOUT",
            cli.source_timeout,
            ms(1),
            Duration::from_secs(600),
        )?;
        if source_delay >= source_timeout {
            return Err(invalid(
                "SOURCE_DELAY",
                "must be shorter than SOURCE_TIMEOUT",
            ));
        }
        let year = Duration::from_secs(365 * 86_400);
        let negative_ttl = in_range("NEGATIVE_TTL", cli.negative_ttl, ms(0), year)?;
        let stale_if_error = in_range("STALE_IF_ERROR", cli.stale_if_error, ms(0), year)?;
        let lease_ttl = in_range("LEASE_TTL", cli.lease_ttl, ms(10), ms(600_000))?;
        // A load holds its lease across one source-of-truth read and two
        // Redis round trips; a lease that can expire before that sends other
        // instances to the source of truth too, and refuses the load's fill.
        let longest_load = source_timeout + redis_timeout * 2;
        if lease_ttl < longest_load {
            return Err(invalid(
                "LEASE_TTL",
                format!(
                    "must be at least SOURCE_TIMEOUT + 2 × REDIS_TIMEOUT ({})",
                    humantime::format_duration(longest_load)
                ),
            ));
        }
        let failsafe_throttle = in_range(
            "FAILSAFE_THROTTLE",
            cli.failsafe_throttle,
            ms(0),
            ms(3_600_000),
        )?;
        let heartbeat = in_range(
            "INVALIDATION_HEARTBEAT",
            cli.invalidation_heartbeat,
            ms(50),
            ms(60_000),
        )?;
        let breaker_cooldown = in_range(
            "REDIS_BREAKER_COOLDOWN",
            cli.redis_breaker_cooldown,
            ms(1),
            ms(3_600_000),
        )?;
        let health_interval = in_range(
            "REDIS_HEALTH_INTERVAL",
            cli.redis_health_interval,
            ms(100),
            ms(60_000),
        )?;
        let source_breaker_cooldown = in_range(
            "SOURCE_BREAKER_COOLDOWN",
            cli.source_breaker_cooldown,
            ms(1),
            ms(3_600_000),
        )?;
        let fraction = |variable, value: f64, max: f64| {
            if value.is_finite() && (0.0..=max).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(
                    variable,
                    format!("must be a fraction between 0 and {max}"),
                ))
            }
        };
        if cli.l1_capacity > 0 && cli.l1_max_bytes < 1024 {
            return Err(invalid("L1_MAX_BYTES", "must be at least 1KiB"));
        }
        if cli.l1_capacity > 0 && cli.l1_max_bytes / cli.l1_capacity > u64::from(u32::MAX) {
            return Err(invalid(
                "L1_MAX_BYTES",
                "must be at most 4GiB per item of L1_CAPACITY",
            ));
        }
        let l1 = L1Config {
            capacity: cli.l1_capacity,
            max_bytes: cli.l1_max_bytes,
            ttl: in_range("L1_TTL", cli.l1_ttl, ms(1), year)?.min(cache_ttl),
        };
        let ttl_jitter = fraction("CACHE_TTL_JITTER", cli.cache_ttl_jitter, 0.5)?;
        let early_refresh = fraction("EARLY_REFRESH", cli.early_refresh, 0.5)?;
        if !(1..=100_000).contains(&cli.batch_max_ids) {
            return Err(invalid("BATCH_MAX_IDS", "must be between 1 and 100000"));
        }
        let limits = ServerLimits {
            header_timeout: in_range(
                "HTTP_HEADER_TIMEOUT",
                cli.http_header_timeout,
                ms(100),
                ms(3_600_000),
            )?,
            body_timeout: in_range(
                "HTTP_BODY_TIMEOUT",
                cli.http_body_timeout,
                ms(100),
                ms(3_600_000),
            )?,
            idle_timeout: in_range(
                "HTTP_IDLE_TIMEOUT",
                cli.http_idle_timeout,
                ms(100),
                ms(86_400_000),
            )?,
            max_connections: cli.http_max_connections,
        };
        if !(8..=1_000_000).contains(&limits.max_connections) {
            return Err(invalid(
                "HTTP_MAX_CONNECTIONS",
                "must be between 8 and 1000000",
            ));
        }
        if cli.database_max_connections == 0 {
            return Err(invalid("DATABASE_MAX_CONNECTIONS", "must be at least 1"));
        }
        let admin_token = match cli.admin_token.as_deref() {
            None | Some("") => None,
            Some(token) if token.len() < 8 => {
                return Err(invalid("ADMIN_TOKEN", "must be at least 8 characters"));
            }
            Some(token) => Some(Secret::new(token)),
        };
        let instance_id = match cli.instance_id {
            Some(id) if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) => {
                return Err(invalid(
                    "INSTANCE_ID",
                    "must be 1 to 128 printable characters",
                ));
            }
            Some(id) => id,
            None => default_instance_id(),
        };
        Ok(Config {
            http: HttpConfig {
                bind: SocketAddr::new(cli.bind_addr, cli.server_port),
                limits,
                shutdown_delay: cli.shutdown_delay,
                shutdown_grace: cli.shutdown_grace,
                batch_max_ids: cli.batch_max_ids,
                admin_token,
            },
            redis: RedisConfig {
                target: redis_target,
                timeout: redis_timeout,
                breaker_failures: cli.redis_breaker_failures,
                breaker_cooldown,
                health_interval,
                tls: redis_tls,
            },
            database: DatabaseConfig {
                url: DatabaseUrl::parse(&cli.database_url)
                    .map_err(|r| invalid("DATABASE_URL", r))?,
                max_connections: cli.database_max_connections,
                demo_data: !cli.no_demo_data,
            },
            cache: CacheConfig {
                ttl: cache_ttl,
                prefix: KeyPrefix::parse(&cli.cache_key_prefix)
                    .map_err(|r| invalid("CACHE_KEY_PREFIX", r))?,
                source_delay,
                warm_on_start: cli.cache_warm,
                negative_ttl,
                ttl_jitter,
                early_refresh,
                stale_if_error,
                lease_ttl,
                leases: cli.cache_leases,
                coalescing: cli.cache_coalescing,
                source_timeout,
                failsafe_throttle,
                heartbeat,
                source_breaker_failures: cli.source_breaker_failures,
                source_breaker_cooldown,
                l1,
            },
            instance_id,
            log_format: cli.log_format,
            redis_info_interval: cli.redis_info_interval,
        })
    }
}

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

fn holds_certificates(pem: &[u8]) -> bool {
    let mut found = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        if certificate.is_err() {
            return false;
        }
        found += 1;
    }
    found > 0
}

/// Reads the TLS files named by the user and checks that they fit together
/// and parse, so that a typo fails at start rather than on every reconnect.
fn redis_tls(cli: &Cli, target: &RedisTarget) -> Result<Option<RedisTls>, ConfigError> {
    let read = |variable: &'static str, path: &Option<PathBuf>| {
        path.as_deref()
            .map(|p: &Path| {
                std::fs::read(p)
                    .map_err(|e| invalid(variable, format!("cannot read {}: {e}", p.display())))
            })
            .transpose()
    };
    let root_cert = read("REDIS_CA_CERT", &cli.redis_ca_cert)?;
    let client = match (
        read("REDIS_CLIENT_CERT", &cli.redis_client_cert)?,
        read("REDIS_CLIENT_KEY", &cli.redis_client_key)?,
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "REDIS_CLIENT_KEY",
                "is required with REDIS_CLIENT_CERT",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "REDIS_CLIENT_CERT",
                "is required with REDIS_CLIENT_KEY",
            ));
        }
    };
    if root_cert.is_none() && client.is_none() {
        return Ok(None);
    }
    if !target.is_tls() {
        let variable = if root_cert.is_some() {
            "REDIS_CA_CERT"
        } else {
            "REDIS_CLIENT_CERT"
        };
        return Err(invalid(variable, "only applies to a rediss:// REDIS_URL"));
    }
    if root_cert
        .as_deref()
        .is_some_and(|pem| !holds_certificates(pem))
    {
        return Err(invalid("REDIS_CA_CERT", "holds no valid PEM certificate"));
    }
    if let Some((cert, key)) = &client {
        if !holds_certificates(cert) {
            return Err(invalid(
                "REDIS_CLIENT_CERT",
                "holds no valid PEM certificate",
            ));
        }
        if PrivateKeyDer::from_pem_slice(key).is_err() {
            return Err(invalid(
                "REDIS_CLIENT_KEY",
                "holds no valid PEM private key",
            ));
        }
    }
    let tls = RedisTls { root_cert, client };
    Ok(Some(tls))
}

/// `<hostname>-<6 hex digits>`: the pod name in Kubernetes, made unique per
/// process so that a restarted instance never continues an old sequence.
fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "redis-cache".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..6])
}

/// Where Redis is and how to log in, shown without credentials.
#[derive(Clone)]
pub struct RedisTarget {
    info: ConnectionInfo,
}

impl RedisTarget {
    /// Parses a redis://, rediss:// or redis+unix:// URL; the error never
    /// repeats the input, which may hold a password.
    pub fn from_url(raw: &str) -> Result<Self, &'static str> {
        let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|s| raw.starts_with(s));
        if !scheme_ok {
            return Err("must start with redis://, rediss:// or redis+unix://");
        }
        let info = raw
            .into_connection_info()
            .map_err(|_| "is not a valid Redis URL")?;
        Ok(Self { info })
    }

    /// The original example's `REDIS_ADDR` (`host:port`) and `REDIS_PASSWORD`.
    pub fn from_addr(addr: &str, password: Option<&str>) -> Result<Self, &'static str> {
        const SHAPE: &str = "must be host:port, e.g. localhost:6379";
        let (host, port) = match addr.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => {
                (host, port.parse::<u16>().map_err(|_| SHAPE)?)
            }
            _ => (addr, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(SHAPE);
        }
        let mut info = ConnectionAddr::Tcp(host.to_owned(), port)
            .into_connection_info()
            .map_err(|_| SHAPE)?;
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        Ok(Self { info })
    }

    pub fn connection_info(&self) -> ConnectionInfo {
        self.info.clone()
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.info.addr(), ConnectionAddr::TcpTls { .. })
    }
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => write!(f, "redis://{host}:{port}"),
            ConnectionAddr::TcpTls { host, port, .. } => write!(f, "rediss://{host}:{port}"),
            ConnectionAddr::Unix(path) => write!(f, "redis+unix://{}", path.display()),
            _ => f.write_str("redis://<unknown>"),
        }
    }
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisTarget({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["redis-cache"];
        argv.extend_from_slice(args);
        Config::from_cli(Cli::try_parse_from(argv).expect("flags parse"))
    }

    #[test]
    fn defaults_match_the_original_example() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.http.bind.port(), 8080);
        assert_eq!(config.redis.target.to_string(), "redis://127.0.0.1:6379");
        assert_eq!(config.cache.ttl, Duration::from_secs(300));
        assert_eq!(config.cache.prefix.as_str(), "item:");
        assert_eq!(config.redis.timeout, Duration::from_millis(250));
        assert!(config.database.demo_data);
        assert!(matches!(config.database.url, DatabaseUrl::Sqlite(_)));
    }

    #[test]
    fn the_flags_defaults_are_the_engines() {
        let config = parse(&[]).unwrap();
        let prefix = config.cache.prefix.clone();
        assert_eq!(config.cache, CacheConfig::with_prefix(prefix));
    }

    #[test]
    fn near_cache_sizes_and_ttl() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.cache.l1.capacity, 10_000);
        assert_eq!(config.cache.l1.max_bytes, 64 << 20);
        assert_eq!(config.cache.l1.ttl, Duration::from_secs(30));
        let short = parse(&["--cache-ttl", "10s", "--l1-max-bytes", "500KB"]).unwrap();
        assert_eq!(
            short.cache.l1.ttl,
            Duration::from_secs(10),
            "capped at CACHE_TTL"
        );
        assert_eq!(short.cache.l1.max_bytes, 500_000);
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("99999999999999GiB").is_err());
        assert_eq!(
            parse(&["--l1-max-bytes", "10"]).unwrap_err().variable,
            "L1_MAX_BYTES"
        );
    }

    #[test]
    fn a_lease_must_outlive_the_longest_load() {
        assert!(parse(&[]).is_ok(), "the defaults fit together");
        let err = parse(&["--source-timeout", "2s"]).unwrap_err();
        assert_eq!(err.variable, "LEASE_TTL");
        assert!(err.to_string().contains("2s 500ms"), "{err}");
        assert!(parse(&["--source-timeout", "2s", "--lease-ttl", "3s"]).is_ok());
        assert_eq!(
            parse(&["--early-refresh", "0.6"]).unwrap_err().variable,
            "EARLY_REFRESH"
        );
    }

    #[test]
    fn the_heartbeat_is_a_bounded_setting() {
        assert_eq!(parse(&[]).unwrap().cache.heartbeat, Duration::from_secs(1));
        let fast = parse(&["--invalidation-heartbeat", "200ms"]).unwrap();
        assert_eq!(fast.cache.heartbeat, Duration::from_millis(200));
        for refused in ["10ms", "2m"] {
            let err = parse(&["--invalidation-heartbeat", refused]).unwrap_err();
            assert_eq!(err.variable, "INVALIDATION_HEARTBEAT");
        }
    }
    #[test]
    fn health_checks_and_the_database_breaker_are_bounded_settings() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.redis.health_interval, Duration::from_secs(1));
        assert_eq!(config.cache.source_breaker_failures, 2);
        assert_eq!(config.cache.source_breaker_cooldown, Duration::from_secs(1));
        let set = parse(&[
            "--redis-health-interval",
            "250ms",
            "--source-breaker-failures",
            "0",
            "--source-breaker-cooldown",
            "3s",
        ])
        .unwrap();
        assert_eq!(set.redis.health_interval, Duration::from_millis(250));
        assert_eq!(set.cache.source_breaker_failures, 0);
        assert_eq!(set.cache.source_breaker_cooldown, Duration::from_secs(3));
        for (flag, refused, variable) in [
            ("--redis-health-interval", "10ms", "REDIS_HEALTH_INTERVAL"),
            ("--redis-health-interval", "2m", "REDIS_HEALTH_INTERVAL"),
            ("--source-breaker-cooldown", "0s", "SOURCE_BREAKER_COOLDOWN"),
        ] {
            assert_eq!(parse(&[flag, refused]).unwrap_err().variable, variable);
        }
    }

    #[test]
    fn redis_url_wins_over_the_original_variables() {
        let config = parse(&[
            "--redis-url",
            "redis://u:pw@cache.example:6380/2",
            "--redis-addr",
            "other:1",
        ])
        .unwrap();
        assert_eq!(
            config.redis.target.to_string(),
            "redis://cache.example:6380"
        );
        let settings = config.redis.target.connection_info();
        assert_eq!(settings.redis_settings().db(), 2);
    }

    #[test]
    fn redis_addr_and_password_are_honoured() {
        let config = parse(&["--redis-addr", "cache:6390", "--redis-password", "pw"]).unwrap();
        assert_eq!(config.redis.target.to_string(), "redis://cache:6390");
        let info = config.redis.target.connection_info();
        assert_eq!(info.redis_settings().password(), Some("pw"));
        let config = parse(&["--redis-addr", "cache"]).unwrap();
        assert_eq!(config.redis.target.to_string(), "redis://cache:6379");
        assert!(parse(&["--redis-addr", "cache:notaport"]).is_err());
    }

    #[test]
    fn tls_urls_are_accepted() {
        let config = parse(&["--redis-url", "rediss://cache.example:6380"]).unwrap();
        assert_eq!(
            config.redis.target.to_string(),
            "rediss://cache.example:6380"
        );
    }

    #[test]
    fn errors_name_the_variable_and_never_echo_secrets() {
        let err = parse(&["--redis-url", "http://user:hunter2@x"]).unwrap_err();
        assert_eq!(err.variable, "REDIS_URL");
        assert!(!err.to_string().contains("hunter2"));
        let err = parse(&["--database-url", "mysql://root:hunter2@db/x"]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"));
        assert_eq!(
            parse(&["--cache-key-prefix", "it*m:"])
                .unwrap_err()
                .variable,
            "CACHE_KEY_PREFIX"
        );
        assert_eq!(
            parse(&["--redis-timeout", "0ms"]).unwrap_err().variable,
            "REDIS_TIMEOUT"
        );
        assert_eq!(
            parse(&["--batch-max-ids", "0"]).unwrap_err().variable,
            "BATCH_MAX_IDS"
        );
        assert_eq!(
            parse(&["--admin-token", "short"]).unwrap_err().variable,
            "ADMIN_TOKEN"
        );
    }

    #[test]
    fn durations_use_human_units() {
        let cli = Cli::try_parse_from(["redis-cache", "--cache-ttl", "30s"]).unwrap();
        assert_eq!(cli.cache_ttl, Duration::from_secs(30));
        let err = Cli::try_parse_from(["redis-cache", "--cache-ttl", "soon"]).unwrap_err();
        assert!(err.to_string().contains("expected a duration"));
    }

    #[test]
    fn tls_files_must_exist_fit_together_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let garbage = garbage.to_str().unwrap();
        let tls_url = ["--redis-url", "rediss://cache:6380"];
        let err = |extra: &[&str]| parse(&[&tls_url[..], extra].concat()).unwrap_err().variable;
        assert_eq!(
            err(&["--redis-ca-cert", "/nonexistent/ca.pem"]),
            "REDIS_CA_CERT"
        );
        assert_eq!(err(&["--redis-client-cert", garbage]), "REDIS_CLIENT_KEY");
        assert_eq!(
            err(&[
                "--redis-client-cert",
                garbage,
                "--redis-client-key",
                garbage
            ]),
            "REDIS_CLIENT_CERT"
        );
        assert_eq!(err(&["--redis-client-key", garbage]), "REDIS_CLIENT_CERT");
        assert_eq!(err(&["--redis-ca-cert", garbage]), "REDIS_CA_CERT");
        let plain = parse(&[
            "--redis-url",
            "redis://cache:6379",
            "--redis-ca-cert",
            garbage,
        ]);
        assert_eq!(plain.unwrap_err().variable, "REDIS_CA_CERT");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = parse(&[
            "--redis-url",
            "redis://u:hunter2@h:1",
            "--database-url",
            "postgres://u:hunter3@db/items",
            "--admin-token",
            "hunter4-long",
        ])
        .unwrap();
        let shown = format!("{config:?}");
        for secret in ["hunter2", "hunter3", "hunter4"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
    }
}
