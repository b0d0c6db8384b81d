//! The scenarios and their timed run: every virtual user drives a closed loop
//! on its own connection until the deadline, recording into its own
//! [`Recorder`]; recorders merge when the scenario ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::Api;
use crate::progress::Progress;
use crate::stats::Recorder;
use crate::vu::VirtualUser;

/// What the virtual users do for the length of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Each request registers a new, unique user.
    Register,
    /// Each request logs an existing user in (a new session).
    Login,
    /// Each request rotates the user's own refresh chain.
    Refresh,
    /// Authenticated GET of the user's profile.
    Me,
    /// Introspection (or verification) of the user's access token.
    Verify,
    /// A weighted mix per user; see [`MIXED`].
    Mixed,
}

/// One request of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Register,
    Login,
    Refresh,
    Me,
    Verify,
}

/// Weights of the `mixed` scenario: a login now and then, refreshes as
/// access tokens age, and mostly authenticated reads.
pub const MIXED: [(Op, u32); 3] = [(Op::Login, 1), (Op::Refresh, 20), (Op::Me, 200)];

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 6] = [
        Scenario::Register,
        Scenario::Login,
        Scenario::Refresh,
        Scenario::Me,
        Scenario::Verify,
        Scenario::Mixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Register => "register",
            Scenario::Login => "login",
            Scenario::Refresh => "refresh",
            Scenario::Me => "me",
            Scenario::Verify => "verify",
            Scenario::Mixed => "mixed",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Register, Op::Login, Op::Refresh, Op::Me, Op::Verify];

    pub fn name(self) -> &'static str {
        match self {
            Op::Register => "register",
            Op::Login => "login",
            Op::Refresh => "refresh",
            Op::Me => "me",
            Op::Verify => "verify",
        }
    }
}

/// How long a scenario runs: a warm-up that is not recorded, then the
/// measured window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub duration: Duration,
}

struct Run {
    scenario: Scenario,
    api: Arc<Api>,
    measure_from: Instant,
    end: Instant,
    progress: Arc<Progress>,
}

/// Runs `scenario` with every virtual user at once; hands the users back
/// (with their advanced chains) and the merged recording.
pub async fn run(
    scenario: Scenario,
    vus: Vec<VirtualUser>,
    api: &Arc<Api>,
    window: Window,
    show_progress: bool,
) -> (Vec<VirtualUser>, Recorder) {
    let start = Instant::now();
    let run = Arc::new(Run {
        scenario,
        api: api.clone(),
        measure_from: start + window.warmup,
        end: start + window.warmup + window.duration,
        progress: Arc::new(Progress::default()),
    });
    let ticker = show_progress.then(|| run.progress.spawn_ticker(scenario.name(), start, window));
    let tasks: Vec<_> = vus
        .into_iter()
        .map(|vu| tokio::spawn(drive(vu, run.clone())))
        .collect();
    let mut vus = Vec::with_capacity(tasks.len());
    let mut merged = Recorder::default();
    for task in tasks {
        match task.await {
            Ok((vu, recorder)) => {
                vus.push(vu);
                merged.merge(recorder);
            }
            // A virtual user's loop has no panicking path; if one appears,
            // the run goes on with fewer users rather than losing the rest.
            Err(e) => eprintln!("a virtual user stopped: {e}"),
        }
    }
    if let Some(ticker) = ticker {
        ticker.abort();
        Progress::clear_line();
    }
    (vus, merged)
}

/// One virtual user's closed loop. Requests count (rate and latency) when
/// they complete inside the measured window, as with wrk: counting only those
/// that also started inside it would leave the first `latency` of the window
/// empty and understate the rate of slow operations. Failures count whenever
/// they happen.
async fn drive(mut vu: VirtualUser, run: Arc<Run>) -> (VirtualUser, Recorder) {
    let mut recorder = Recorder::default();
    while Instant::now() < run.end {
        let op = vu.next_op(run.scenario);
        let started = Instant::now();
        let outcome = vu.perform(op, &run.api).await;
        let finished = Instant::now();
        run.progress.count(outcome.is_err());
        match outcome {
            Ok(()) if finished >= run.measure_from && finished <= run.end => {
                recorder.record(op, finished - started);
            }
            Ok(()) => {}
            Err(failure) => {
                recorder.fail(op, &failure, Some(finished - started));
                // Like a well-behaved client, wait as long as the server asks.
                if let Some(pause) = failure.retry_after() {
                    tokio::time::sleep(pause.min(run.end.saturating_duration_since(finished)))
                        .await;
                }
                // A failed register or login leaves the user's session as it was.
                if !matches!(op, Op::Register | Op::Login)
                    && let Err(failure) = vu.recover(&run.api).await
                {
                    recorder.fail(Op::Login, &failure, None);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    (vu, recorder)
}
