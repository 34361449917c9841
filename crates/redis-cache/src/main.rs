//! `redis-cache`: the process. `redis-cache healthcheck` probes a running
//! instance (for container health checks); anything else parses the
//! configuration and runs the service until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use redis_cache::shutdown::Signals;
use redis_cache::{Application, Cli, Config, telemetry};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("healthcheck") {
        return redis_cache::healthcheck::run(&args[2..]);
    }
    serve()
}

#[tokio::main]
async fn serve() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        Err(err) => {
            // One line naming the flag and its variable, never a usage dump.
            let rendered = err.to_string();
            let line = rendered.lines().next().unwrap_or_default();
            eprintln!("redis-cache: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("redis-cache: {err}");
            return ExitCode::from(2);
        }
    };
    // Flushes the trace exporter when main returns.
    let _telemetry = telemetry::init(config.log_format);
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(err) => return fail(anyhow::Error::new(err).context("cannot install signal handlers")),
    };
    // Start-up can wait on the database; a signal meanwhile is a clean stop.
    let app = tokio::select! {
        app = Application::build(config) => app,
        name = signals.recv() => {
            tracing::info!(signal = name, "stopped during start-up");
            return ExitCode::SUCCESS;
        }
    };
    match app {
        Ok(app) => match app.run_until(signals.shutdown()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(err),
        },
        Err(err) => fail(err),
    }
}

fn fail(err: anyhow::Error) -> ExitCode {
    tracing::error!(error = format!("{err:#}"), "redis-cache stopped");
    eprintln!("redis-cache: {err:#}");
    ExitCode::FAILURE
}
