use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use redis_cache::{Application, Cli, Config, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
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
    telemetry::init(config.log_format);
    let result = match Application::build(config).await {
        Ok(app) => app.run_until(shutdown::signal()).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "redis-cache stopped");
            eprintln!("redis-cache: {err:#}");
            ExitCode::FAILURE
        }
    }
}
