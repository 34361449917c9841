//! `cache-probe`: wires the kernel programs, the tracker and the HTTP
//! endpoint together (see the crate documentation).

use std::collections::HashSet;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use cache_probe::ebpf::{self, Probe, Selection};
use cache_probe::metrics::Metrics;
use cache_probe::spans::Spans;
use cache_probe::tracker::Tracker;
use cache_probe::{discover, info};
use clap::Parser;

/// Zero-code observation of Redis traffic with eBPF: RESP on the wire of any
/// process, as Prometheus metrics and OTLP spans. Needs root (or CAP_BPF and
/// CAP_PERFMON) and a kernel with BTF.
#[derive(Debug, Parser)]
#[command(name = "cache-probe", version)]
struct Cli {
    /// Follow this process (repeatable). Without --pid, every process that
    /// talks to a Redis port is followed, from now on and already connected.
    #[arg(long = "pid", env = "PROBE_PIDS", value_delimiter = ',')]
    pids: Vec<u32>,

    /// Follow only processes with this name (as in /proc/<pid>/comm).
    #[arg(long, env = "PROBE_COMM")]
    comm: Option<String>,

    /// Server port to treat as Redis (repeatable).
    #[arg(
        long = "redis-port",
        env = "PROBE_REDIS_PORTS",
        value_delimiter = ',',
        default_value = "6379"
    )]
    redis_ports: Vec<u16>,

    /// Where to serve /metrics.
    #[arg(long, env = "PROBE_METRICS_ADDR", default_value = "0.0.0.0:9464")]
    metrics_addr: SocketAddr,

    /// Name to report as service_name instead of the process name.
    #[arg(long, env = "PROBE_SERVICE_NAME")]
    service_name: Option<String>,

    /// Poll the Redis servers seen for their key count and memory (INFO).
    #[arg(long, env = "PROBE_POLL_INFO", default_value_t = false)]
    poll_info: bool,

    /// How often --poll-info polls.
    #[arg(long, env = "PROBE_POLL_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,

    /// How often the ring buffer is drained (no per-event wake-ups).
    #[arg(long, env = "PROBE_DRAIN_INTERVAL", default_value = "10ms", value_parser = humantime::parse_duration)]
    drain_interval: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cache-probe: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.redis_ports.is_empty() {
        anyhow::bail!("--redis-port: at least one port is needed");
    }
    ebpf::preflight()?;
    let metrics = Arc::new(Metrics::default());
    let spans = Spans::from_env()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    // The kernel side lives on one thread: libbpf objects are not Send.
    let plan = cli_selection(&cli);
    let worker = {
        let (metrics, stop) = (metrics.clone(), stop.clone());
        std::thread::spawn(move || follow(plan, metrics, spans, stop, ready_tx))
    };
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(err),
        Err(_) => anyhow::bail!("the probe stopped while starting"),
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let served = runtime.block_on(serve(
        cli.metrics_addr,
        cli.poll_info.then_some(cli.poll_interval),
        metrics,
    ));
    stop.store(true, Ordering::Relaxed);
    let followed = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?;
    served.and(followed)
}

struct Plan {
    ports: Vec<u16>,
    pids: Vec<u32>,
    comm: Option<String>,
    service_name: Option<String>,
    drain_interval: Duration,
}

fn cli_selection(cli: &Cli) -> Plan {
    Plan {
        ports: cli.redis_ports.clone(),
        pids: cli.pids.clone(),
        comm: cli.comm.clone(),
        service_name: cli.service_name.clone(),
        drain_interval: cli.drain_interval,
    }
}

/// Loads the programs, selects processes, then drains and tracks until
/// `stop`.
fn follow(
    plan: Plan,
    metrics: Arc<Metrics>,
    spans: Option<Spans>,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let discovering = plan.pids.is_empty();
    let object = Box::leak(Box::new(MaybeUninit::uninit()));
    let selection = Selection {
        ports: &plan.ports,
        discover: discovering,
        comm: plan.comm.as_deref(),
    };
    let probe = match Probe::load(object, &selection) {
        Ok(probe) => probe,
        Err(err) => {
            let _ = ready.send(Err(err));
            return Ok(());
        }
    };
    // Processes already connected (or listening) when we start.
    let mut initial: HashSet<u32> = plan.pids.iter().copied().collect();
    if discovering {
        initial.extend(discover::redis_processes(&plan.ports, plan.comm.as_deref()));
        initial.remove(&std::process::id());
    }
    for pid in &initial {
        if let Err(err) = probe.select(*pid) {
            let _ = ready.send(Err(err));
            return Ok(());
        }
    }
    let listeners = discover::listening_ports(&plan.ports, &initial);
    for port in &listeners {
        if let Err(err) = probe.add_listener(*port) {
            let _ = ready.send(Err(err));
            return Ok(());
        }
    }
    tracing::info!(
        processes = initial.len(),
        ports = ?plan.ports,
        discovering,
        "probe attached"
    );
    let _ = ready.send(Ok(()));
    let mut tracker = Tracker::new(
        plan.ports.clone(),
        plan.service_name.clone(),
        listeners,
        metrics.clone(),
        spans,
    );
    let mut counted_at = Instant::now();
    let drained = probe.drain(
        plan.drain_interval,
        |batch| tracker.handle_batch(batch),
        |probe| {
            if counted_at.elapsed() >= Duration::from_secs(1) {
                counted_at = Instant::now();
                let kernel = probe.counters();
                let p = &metrics.probe;
                p.events.store(kernel.events, Ordering::Relaxed);
                p.bytes.store(kernel.bytes, Ordering::Relaxed);
                p.lost.store(kernel.lost, Ordering::Relaxed);
                p.truncated.store(kernel.truncated, Ordering::Relaxed);
                p.processes
                    .store(probe.followed() as u64, Ordering::Relaxed);
            }
            !stop.load(Ordering::Relaxed)
        },
    );
    tracker.finish();
    drained
}

async fn serve(
    addr: SocketAddr,
    poll: Option<Duration>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    if let Some(every) = poll {
        tokio::spawn(info::poll(metrics.clone(), every));
    }
    let app = Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>| async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("signal handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
    Ok(())
}

/// Parsing allocates small values for every command seen; mimalloc's
/// per-thread free lists halve what the system allocator costs there
/// (measured with `perf`: malloc and free were a quarter of the probe's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
