//! The `latchkey-bench` command line, turned into a [`Config`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::Config;
use crate::api::ClientCredentials;
use crate::profile::{self, Profile};
use crate::scenario::{Scenario, Window};

/// Drives a running server through load scenarios and reports throughput,
/// latency, errors and the server's memory.
#[derive(Debug, Parser)]
#[command(name = "latchkey-bench", version)]
pub struct Cli {
    /// Base URL of the server (plain HTTP).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// register, login, refresh, me, verify, mixed, or all; several may be
    /// given comma-separated.
    #[arg(long, default_value = "all", value_parser = parse_scenarios)]
    pub scenario: Scenarios,
    /// Virtual users, each on its own keep-alive connection.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Measured time per scenario (`10`, `10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before each scenario's window.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Accounts to register in set-up [default: the concurrency].
    #[arg(long)]
    pub users: Option<usize>,
    /// Also write every number as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Process id of the server, to report its memory (VmRSS, VmHWM) after
    /// each scenario and every half second over the run.
    #[arg(long)]
    pub pid: Option<u32>,
    /// With --pid: time without load after the last scenario, the server's
    /// memory still sampled (`15s`), to see what it gives back.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub settle: Duration,
    /// The server's conventions: latchkey or simplejwt (djoser + simplejwt).
    #[arg(long, default_value = "latchkey", value_parser = parse_profile)]
    pub profile: &'static Profile,
    /// Client id for the `verify` scenario (`latchkey clients add bench`).
    #[arg(long, env = "LATCHKEY_BENCH_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Client secret for the `verify` scenario.
    #[arg(long, env = "LATCHKEY_BENCH_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
}

/// The scenarios chosen, in order.
#[derive(Debug, Clone)]
pub struct Scenarios(pub Vec<Scenario>);

impl Cli {
    pub fn config(&self) -> anyhow::Result<Config> {
        let client = match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) => Some(ClientCredentials {
                id: id.clone(),
                secret: secret.clone(),
            }),
            (None, None) => None,
            _ => anyhow::bail!("--client-id and --client-secret go together"),
        };
        Ok(Config {
            url: self.url.clone(),
            profile: self.profile,
            scenarios: self.scenario.0.clone(),
            concurrency: self.concurrency,
            users: self.users.unwrap_or(self.concurrency),
            window: Window {
                warmup: self.warmup,
                duration: self.duration,
            },
            client,
            server_pid: self.pid,
            settle: self.settle,
            progress: std::io::stderr().is_terminal(),
        })
    }
}

fn parse_scenarios(s: &str) -> Result<Scenarios, String> {
    if s == "all" {
        return Ok(Scenarios(Scenario::ALL.to_vec()));
    }
    s.split(',')
        .map(|name| {
            Scenario::from_name(name.trim()).ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {name:?}; choose from {}, all",
                    names.join(", ")
                )
            })
        })
        .collect::<Result<_, _>>()
        .map(Scenarios)
}

fn parse_profile(s: &str) -> Result<&'static Profile, String> {
    profile::by_name(s).ok_or_else(|| {
        let names: Vec<_> = profile::PROFILES.iter().map(|p| p.name).collect();
        format!("unknown profile {s:?}; choose from {}", names.join(", "))
    })
}

/// Plain seconds (`10`) or a humantime duration (`10s`, `1m30s`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_all_or_a_comma_separated_list() {
        assert_eq!(parse_scenarios("all").unwrap().0, Scenario::ALL);
        let some = parse_scenarios("refresh, me").unwrap().0;
        assert_eq!(some, [Scenario::Refresh, Scenario::Me]);
        assert!(parse_scenarios("refresh,nap").unwrap_err().contains("nap"));
    }

    #[test]
    fn durations_are_plain_seconds_or_humantime() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn users_default_to_the_concurrency() {
        let cli = Cli::try_parse_from(["latchkey-bench", "--concurrency", "8"]).unwrap();
        let config = cli.config().unwrap();
        assert_eq!((config.users, config.concurrency), (8, 8));
        assert_eq!(config.profile.name, "latchkey");
        assert_eq!(config.window.duration, Duration::from_secs(10));
    }

    #[test]
    fn a_client_id_without_its_secret_is_refused() {
        let cli = Cli::try_parse_from(["latchkey-bench", "--client-id", "c"]).unwrap();
        if std::env::var_os("LATCHKEY_BENCH_CLIENT_SECRET").is_none() {
            assert!(cli.config().is_err());
        }
    }
}
