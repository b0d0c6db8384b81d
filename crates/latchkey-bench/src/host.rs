//! Facts about the machine and the server process for the report: memory of
//! the server from `/proc` (once, or sampled over the run), the git commit,
//! the date, the core count. Each is best effort: a fact that cannot be read
//! is left out, never invented.

use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The server's resident memory, in KiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the peak resident size since the process started.
    pub peak_rss_kib: u64,
}

/// Reads `/proc/<pid>/status` (Linux).
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_rss_kib: field("VmHWM:")?,
    })
}

/// How often [`Sampler`] reads the server's memory.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// The server's resident memory at one moment of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemorySample {
    /// Seconds since the first scenario began.
    pub t_s: f64,
    /// What the bench was doing: a scenario's name, or `settle` after the
    /// last one.
    pub phase: &'static str,
    pub rss_kib: u64,
}

/// Reads the server's VmRSS every [`SAMPLE_EVERY`] in the background, each
/// reading tagged with the phase the run is in.
pub struct Sampler {
    phase: Arc<Mutex<&'static str>>,
    task: tokio::task::JoinHandle<Vec<MemorySample>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Sampler {
    pub fn start(pid: u32, phase: &'static str) -> Sampler {
        let phase = Arc::new(Mutex::new(phase));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let current = Arc::clone(&phase);
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let Some(m) = memory(pid) else { break };
                samples.push(MemorySample {
                    t_s: start.elapsed().as_secs_f64(),
                    phase: *current.lock().unwrap_or_else(PoisonError::into_inner),
                    rss_kib: m.rss_kib,
                });
            }
            samples
        });
        Sampler { phase, task, stop }
    }

    /// Tags the readings from now on with `phase`.
    pub fn enter(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    /// Stops sampling and returns the readings, oldest first.
    pub async fn finish(self) -> Vec<MemorySample> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// `git rev-parse --short HEAD` in the current directory, if that works.
pub fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}

/// Cores this process may use (what `nproc` prints).
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Now, RFC 3339 in UTC, to the second.
pub fn now() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// A short id that keeps this run's emails apart from every other run's.
pub fn run_id() -> String {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!(
        "{:x}{:x}",
        (nanos as u64) & 0xff_ffff_ffff,
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_of_this_process_is_read_from_proc() {
        let m = memory(std::process::id()).unwrap();
        assert!(m.rss_kib > 0 && m.peak_rss_kib >= m.rss_kib);
        assert!(memory(u32::MAX).is_none());
    }
}
