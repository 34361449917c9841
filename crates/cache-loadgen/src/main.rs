//! `cache-loadgen`: parses the command line and runs (see the crate docs).

use std::process::ExitCode;

use cache_loadgen::{Cli, Config};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_cli(cli).await {
        Ok(config) => config,
        Err(err) => {
            eprintln!("cache-loadgen: {err:#}");
            return ExitCode::from(2);
        }
    };
    let (json, max_error_rate) = (config.json, config.max_error_rate);
    let report = match cache_loadgen::execute(config).await {
        Ok(report) => report,
        Err(err) => {
            eprintln!("cache-loadgen: {err:#}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serialises")
        );
    } else {
        print!("{}", report.text());
    }
    if report.error_rate > max_error_rate {
        eprintln!(
            "cache-loadgen: error rate {:.3} % is above --max-error-rate {:.3} %",
            report.error_rate * 100.0,
            max_error_rate * 100.0
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
