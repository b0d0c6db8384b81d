//! The `latchkey-bench` binary: parse, run, print the table, write the JSON,
//! and exit 1 if any request failed.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use latchkey_bench::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let config = cli.config()?;
    let report = latchkey_bench::run(&config).await?;
    print!("{}", report.table());
    if let Some(path) = &cli.json {
        report.write_json(path)?;
    }
    match report.errors() {
        0 => Ok(ExitCode::SUCCESS),
        n => {
            eprintln!("FAILED: {n} requests failed (see the errors above)");
            Ok(ExitCode::FAILURE)
        }
    }
}
