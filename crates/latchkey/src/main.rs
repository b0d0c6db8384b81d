//! The `latchkey` binary: parse the command line, load settings, set up
//! logging, then serve or run an admin command.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use latchkey::app::App;
use latchkey::cli::{Cli, Command, run_admin};
use latchkey::config::Settings;
use latchkey::domain::clock::SystemClock;

/// jemalloc with its background threads: 20–30 % more refreshes, `me` and
/// introspections a second than glibc's allocator on the same box (measured
/// back to back, docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.settings_args()?)?;
    latchkey::telemetry::init(settings.log_format);
    match cli.command {
        Command::Serve(_) => serve(settings).await,
        other => run_admin(other, settings).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let app = App::build(settings, Arc::new(SystemClock)).await?;
    app.serve(listener, shutdown_signal()).await
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
