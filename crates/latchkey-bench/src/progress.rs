//! The live progress line on stderr: counters the virtual users bump, and a
//! ticker that redraws one `\r`-updated line each second. Only for a
//! terminal; the report is the record.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::scenario::Window;

/// Requests and failures so far, warm-up included.
#[derive(Debug, Default)]
pub struct Progress {
    requests: AtomicU64,
    errors: AtomicU64,
}

impl Progress {
    pub fn count(&self, failed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Redraws the line every second until aborted.
    pub fn spawn_ticker(
        self: &Arc<Self>,
        label: &'static str,
        start: Instant,
        window: Window,
    ) -> JoinHandle<()> {
        let progress = self.clone();
        tokio::spawn(async move {
            let second = Duration::from_secs(1);
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
            let mut last = 0;
            loop {
                ticks.tick().await;
                let requests = progress.requests.load(Ordering::Relaxed);
                let errors = progress.errors.load(Ordering::Relaxed);
                let elapsed = start.elapsed();
                let phase = if elapsed < window.warmup {
                    "warm-up"
                } else {
                    "measuring"
                };
                let total = (window.warmup + window.duration).as_secs_f64();
                eprint!(
                    "\r{label:<9} {phase:<9} {:>6.1}s/{total:.0}s  {requests:>10} requests  {:>8} req/s  {errors} errors   ",
                    elapsed.as_secs_f64(),
                    requests - last,
                );
                let _ = std::io::stderr().flush();
                last = requests;
            }
        })
    }

    /// Erases the progress line so the report starts clean.
    pub fn clear_line() {
        eprint!("\r\x1b[2K");
        let _ = std::io::stderr().flush();
    }
}
