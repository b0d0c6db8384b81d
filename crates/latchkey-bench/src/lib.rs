//! latchkey-bench: a load generator for Latchkey and its peers. Virtual users
//! each hold their own session and single-use refresh chain, which is why this
//! is not a stateless tool like oha or wrk.
//!
//! - [`cli`]: the command line, turned into a [`Config`].
//! - [`profile`]: per-server paths and field names, as data.
//! - [`conn`]: one keep-alive HTTP/1.1 connection per virtual user.
//! - [`api`]: the five operations, built and checked through a profile.
//! - [`failure`]: what can go wrong with one request.
//! - [`setup`]: the untimed registration and logins.
//! - [`vu`]: a virtual user and its choice of the next request.
//! - [`scenario`]: the scenarios and their timed closed-loop run.
//! - [`stats`]: per-user latency histograms and failure counts.
//! - [`progress`]: the live progress line.
//! - [`report`]: the results as a table and as JSON.
//! - [`host`]: server memory, git commit, date and cores.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod conn;
pub mod failure;
pub mod host;
pub mod profile;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod setup;
pub mod stats;
pub mod vu;

use std::sync::Arc;

use anyhow::Context;

pub use api::ClientCredentials;
pub use profile::Profile;
pub use report::Report;
pub use scenario::{Scenario, Window};

use crate::api::Api;
use crate::report::{Meta, ScenarioReport};

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL, `http://host:port`.
    pub url: String,
    pub profile: &'static Profile,
    pub scenarios: Vec<Scenario>,
    /// Virtual users, each with its own connection and session.
    pub concurrency: usize,
    /// Accounts registered in set-up; shared round-robin when fewer than
    /// the virtual users.
    pub users: usize,
    pub window: Window,
    /// Needed by `verify` when the profile authenticates a client.
    pub client: Option<ClientCredentials>,
    /// The server's process id, to report its memory.
    pub server_pid: Option<u32>,
    /// Time without load after the last scenario, the server's memory still
    /// sampled (needs `server_pid`): what it gives back once load stops.
    pub settle: std::time::Duration,
    /// Draw the progress line on stderr.
    pub progress: bool,
}

/// Sets up the users, runs each scenario in turn, and reports. Failed requests
/// are in the report ([`Report::errors`]); only a failed set-up is an `Err`.
pub async fn run(config: &Config) -> anyhow::Result<Report> {
    anyhow::ensure!(config.concurrency > 0, "concurrency must be at least 1");
    anyhow::ensure!(config.users > 0, "users must be at least 1");
    let meta = meta(config);
    let api = Arc::new(Api::new(
        &config.url,
        config.profile,
        config.client.as_ref(),
        meta.run_id.clone(),
        config.users as u64,
    )?);
    let mut vus = setup::prepare(&api, config.concurrency, config.users)
        .await
        .context("preparing the bench users")?;
    let sampler = config
        .server_pid
        .map(|pid| host::Sampler::start(pid, config.scenarios.first().map_or("", |s| s.name())));
    let mut scenarios = Vec::new();
    for &scenario in &config.scenarios {
        if let Some(sampler) = &sampler {
            sampler.enter(scenario.name());
        }
        if let Some(reason) = skip_reason(scenario, config) {
            eprintln!("skipping {}: {reason}", scenario.name());
            scenarios.push(ScenarioReport {
                scenario: scenario.name(),
                skipped: Some(reason),
                total: None,
                operations: Vec::new(),
                server_memory: None,
            });
            continue;
        }
        let recorder;
        (vus, recorder) = scenario::run(scenario, vus, &api, config.window, config.progress).await;
        let (total, operations) = recorder.summarize(config.window.duration);
        scenarios.push(ScenarioReport {
            scenario: scenario.name(),
            skipped: None,
            total: Some(total),
            operations,
            server_memory: config.server_pid.and_then(host::memory),
        });
    }
    let (mut memory_timeline, mut settled_memory) = (Vec::new(), None);
    if let Some(sampler) = sampler {
        sampler.enter("settle");
        tokio::time::sleep(config.settle).await;
        settled_memory = config.server_pid.and_then(host::memory);
        memory_timeline = sampler.finish().await;
    }
    Ok(Report {
        meta,
        scenarios,
        memory_timeline,
        settled_memory,
    })
}

fn skip_reason(scenario: Scenario, config: &Config) -> Option<String> {
    (scenario == Scenario::Verify && config.profile.verify_needs_client && config.client.is_none())
        .then(|| {
            "no client credentials (pass --client-id/--client-secret or set \
             LATCHKEY_BENCH_CLIENT_ID/LATCHKEY_BENCH_CLIENT_SECRET; \
             create them with `latchkey clients add bench`)"
                .to_string()
        })
}

fn meta(config: &Config) -> Meta {
    Meta {
        tool: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        url: config.url.clone(),
        profile: config.profile.name,
        concurrency: config.concurrency,
        users: config.users,
        duration_s: config.window.duration.as_secs_f64(),
        warmup_s: config.window.warmup.as_secs_f64(),
        run_id: host::run_id(),
        server_pid: config.server_pid,
        settle_s: config.settle.as_secs_f64(),
        git_commit: host::git_commit(),
        date: host::now(),
        nproc: host::nproc(),
    }
}
