//! Latency and failure accounting. Each virtual user records into its own
//! [`Recorder`], so the hot path shares nothing; recorders merge at the end
//! and only then become report rows.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::failure::Failure;
use crate::report::{Latency, OpReport};
use crate::scenario::Op;

/// Latencies (µs) and failures, per operation.
#[derive(Default)]
pub struct Recorder {
    ops: [OpRecord; Op::ALL.len()],
}

#[derive(Default)]
struct OpRecord {
    /// Created on first use: most scenarios touch one or two operations.
    latency: Option<Histogram<u64>>,
    failures: BTreeMap<String, u64>,
    /// How long the failed requests took to be answered (a shed request
    /// should be refused quickly).
    failed_latency: Option<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    // Auto-resizing, so memory follows the latencies actually seen.
    Histogram::new(3).expect("3 significant figures is a valid precision")
}

impl Recorder {
    pub fn record(&mut self, op: Op, latency: Duration) {
        record_into(&mut self.ops[op as usize].latency, latency);
    }

    /// Counts a failure and, when known, how long it took to arrive.
    pub fn fail(&mut self, op: Op, failure: &Failure, latency: Option<Duration>) {
        let record = &mut self.ops[op as usize];
        *record.failures.entry(failure.to_string()).or_default() += 1;
        if let Some(latency) = latency {
            record_into(&mut record.failed_latency, latency);
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        for (mine, theirs) in self.ops.iter_mut().zip(other.ops) {
            if let Some(h) = theirs.latency {
                let _ = mine.latency.get_or_insert_with(histogram).add(&h);
            }
            if let Some(h) = theirs.failed_latency {
                let _ = mine.failed_latency.get_or_insert_with(histogram).add(&h);
            }
            for (kind, n) in theirs.failures {
                *mine.failures.entry(kind).or_default() += n;
            }
        }
    }

    /// One row per operation used, and the whole scenario's row; rates are
    /// over the measured `window`.
    pub fn summarize(&self, window: Duration) -> (OpReport, Vec<OpReport>) {
        let mut all = histogram();
        let mut all_failures = BTreeMap::new();
        let mut rows = Vec::new();
        for (op, record) in Op::ALL.into_iter().zip(&self.ops) {
            if record.latency.is_none() && record.failures.is_empty() {
                continue;
            }
            if let Some(h) = &record.latency {
                let _ = all.add(h);
            }
            for (kind, n) in &record.failures {
                all_failures.insert(format!("{}: {kind}", op.name()), *n);
            }
            let h = record.latency.clone().unwrap_or_else(histogram);
            let mut op_row = row(op.name(), &h, record.failures.clone(), window);
            op_row.failed_latency_ms = record.failed_latency.as_ref().map(latency);
            rows.push(op_row);
        }
        (row("all", &all, all_failures, window), rows)
    }
}

fn row(
    operation: &str,
    h: &Histogram<u64>,
    failures: BTreeMap<String, u64>,
    window: Duration,
) -> OpReport {
    let seconds = window.as_secs_f64();
    OpReport {
        operation: operation.to_string(),
        requests: h.len(),
        rps: if seconds > 0.0 {
            h.len() as f64 / seconds
        } else {
            0.0
        },
        latency_ms: latency(h),
        errors: failures.values().sum(),
        error_breakdown: failures,
        failed_latency_ms: None,
    }
}

fn latency(h: &Histogram<u64>) -> Latency {
    let ms = |micros: u64| micros as f64 / 1000.0;
    Latency {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

fn record_into(slot: &mut Option<Histogram<u64>>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    // An auto-resizing histogram fails only beyond its u64 range.
    let _ = slot.get_or_insert_with(histogram).record(micros.max(1));
}
