//! The report: every number of a run, serialised as JSON as it is, and
//! rendered as a table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::host::{Memory, MemorySample};

#[derive(Debug, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub scenarios: Vec<ScenarioReport>,
    /// The server's memory every half second, when `--pid` is given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub memory_timeline: Vec<MemorySample>,
    /// The server's memory after the settle time that followed the last
    /// scenario, when `--pid` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_memory: Option<Memory>,
}

/// The run's parameters and where it ran.
#[derive(Debug, Serialize)]
pub struct Meta {
    pub tool: &'static str,
    pub version: &'static str,
    pub url: String,
    pub profile: &'static str,
    pub concurrency: usize,
    pub users: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub run_id: String,
    pub server_pid: Option<u32>,
    pub settle_s: f64,
    pub git_commit: Option<String>,
    pub date: String,
    pub nproc: usize,
}

#[derive(Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    /// Why the scenario did not run, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// All operations together.
    pub total: Option<OpReport>,
    /// One row per operation the scenario used.
    pub operations: Vec<OpReport>,
    /// The server's memory right after the scenario, when `--pid` is given.
    pub server_memory: Option<Memory>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub operation: String,
    /// Successful requests completed inside the measured window.
    pub requests: u64,
    pub rps: f64,
    pub latency_ms: Latency,
    /// Failed requests, warm-up included.
    pub errors: u64,
    pub error_breakdown: BTreeMap<String, u64>,
    /// How quickly the failed requests were answered (e.g. shed with 503
    /// under overload), when any failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_latency_ms: Option<Latency>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Report {
    /// Failed requests over every scenario.
    pub fn errors(&self) -> u64 {
        self.scenarios
            .iter()
            .filter_map(|s| s.total.as_ref())
            .map(|t| t.errors)
            .sum()
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).context("serialising the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The table for stdout, with a breakdown of errors below it.
    pub fn table(&self) -> String {
        let mut out = self.heading();
        let _ = writeln!(
            out,
            "{:<9} {:<9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>9}",
            "scenario",
            "operation",
            "requests",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "errors",
            "rss MiB",
            "peak MiB"
        );
        for s in &self.scenarios {
            s.rows(&mut out);
        }
        self.memory_lines(&mut out);
        let failures: Vec<_> = self.scenarios.iter().flat_map(|s| s.failures()).collect();
        if !failures.is_empty() {
            out.push_str("\nerrors:\n");
            for (scenario, kind, n) in failures {
                let _ = writeln!(out, "  {scenario:<9} {kind}  ×{n}");
            }
            for s in &self.scenarios {
                for op in &s.operations {
                    if let Some(l) = &op.failed_latency_ms {
                        let _ = writeln!(
                            out,
                            "  {:<9} {} failures answered in p50 {:.3} / p99 {:.3} / max {:.3} ms",
                            s.scenario, op.operation, l.p50, l.p99, l.max
                        );
                    }
                }
            }
        }
        out
    }

    /// The server's memory over the run: per phase, the lowest, highest
    /// and last reading.
    fn memory_lines(&self, out: &mut String) {
        if self.memory_timeline.is_empty() {
            return;
        }
        out.push_str("\nserver RSS over the run, MiB (min / max / last, read every 0.5 s):\n");
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut rest = self.memory_timeline.as_slice();
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|m| m.phase == first.phase).count();
            let (phase, tail) = rest.split_at(n);
            let kib = phase.iter().map(|m| m.rss_kib);
            let (min, max) = (kib.clone().min().unwrap_or(0), kib.max().unwrap_or(0));
            let last = phase.last().map_or(0, |m| m.rss_kib);
            let _ = writeln!(
                out,
                "  {:<9} {:>7.1} / {:>7.1} / {:>7.1}   ({:.1}–{:.1} s)",
                first.phase,
                mib(min),
                mib(max),
                mib(last),
                first.t_s,
                phase.last().map_or(first.t_s, |m| m.t_s)
            );
            rest = tail;
        }
        if let Some(m) = &self.settled_memory {
            let _ = writeln!(
                out,
                "  after {} s without load: {:.1} MiB",
                self.meta.settle_s,
                mib(m.rss_kib)
            );
        }
    }

    fn heading(&self) -> String {
        let m = &self.meta;
        format!(
            "latchkey-bench · {} · profile {} · concurrency {} · {} users · {}s (+{}s warm-up) · nproc {} · {} · {}\n\n",
            m.url,
            m.profile,
            m.concurrency,
            m.users,
            m.duration_s,
            m.warmup_s,
            m.nproc,
            m.git_commit.as_deref().unwrap_or("no commit"),
            m.date
        )
    }
}

impl ScenarioReport {
    fn rows(&self, out: &mut String) {
        if let Some(reason) = &self.skipped {
            let _ = writeln!(out, "{:<9} skipped: {reason}", self.scenario);
            return;
        }
        let Some(total) = &self.total else { return };
        let mib = |f: fn(&Memory) -> u64| {
            self.server_memory
                .as_ref()
                .map_or("-".to_string(), |m| format!("{:.1}", f(m) as f64 / 1024.0))
        };
        let (rss, peak) = (mib(|m| m.rss_kib), mib(|m| m.peak_rss_kib));
        if let [only] = self.operations.as_slice() {
            write_row(out, self.scenario, only, &rss, &peak);
            return;
        }
        write_row(out, self.scenario, total, &rss, &peak);
        for op in &self.operations {
            write_row(out, "", op, "", "");
        }
    }

    fn failures(&self) -> impl Iterator<Item = (&'static str, &String, &u64)> + '_ {
        self.total
            .iter()
            .flat_map(|t| &t.error_breakdown)
            .map(|(kind, n)| (self.scenario, kind, n))
    }
}

fn write_row(out: &mut String, scenario: &str, op: &OpReport, rss: &str, peak: &str) {
    let l = &op.latency_ms;
    let _ = writeln!(
        out,
        "{scenario:<9} {:<9} {:>9} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7} {rss:>8} {peak:>9}",
        op.operation, op.requests, op.rps, l.p50, l.p90, l.p99, l.max, op.errors
    );
}
