//! The untimed set-up: registers the bench users, then logs every virtual
//! user in on its own connection so each holds its own session. Users are
//! shared round-robin when there are fewer users than virtual users.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use tokio::task::JoinSet;

use crate::api::Api;
use crate::conn::Connection;
use crate::failure::Failure;
use crate::vu::VirtualUser;

/// Registers `users` users and logs `concurrency` virtual users in.
pub async fn prepare(
    api: &Arc<Api>,
    concurrency: usize,
    users: usize,
) -> anyhow::Result<Vec<VirtualUser>> {
    let conns = register_all(api, concurrency, users).await?;
    login_all(api, conns, users).await
}

/// Virtual user `id` registers users `id`, `id + concurrency`, … on its own
/// connection, so registration runs at the bench's concurrency.
async fn register_all(
    api: &Arc<Api>,
    concurrency: usize,
    users: usize,
) -> anyhow::Result<Vec<Connection>> {
    let mut tasks = JoinSet::new();
    for id in 0..concurrency {
        let api = api.clone();
        tasks.spawn(async move {
            let mut conn = Connection::new(api.target());
            for n in (id..users).step_by(concurrency) {
                let email = api.email(n as u64);
                let deadline = Instant::now() + PATIENCE;
                let registered = loop {
                    let outcome = api.register(&mut conn, &email).await;
                    if !retry(&outcome, deadline).await {
                        break outcome;
                    }
                };
                registered.map_err(|f| explain(f, "registering", &email))?;
            }
            Ok((id, conn))
        });
    }
    join_in_order(tasks).await
}

async fn login_all(
    api: &Arc<Api>,
    conns: Vec<Connection>,
    users: usize,
) -> anyhow::Result<Vec<VirtualUser>> {
    let concurrency = conns.len();
    let mut tasks = JoinSet::new();
    for (id, mut conn) in conns.into_iter().enumerate() {
        let api = api.clone();
        tasks.spawn(async move {
            let logins = logins_of(&api, id, concurrency, users);
            let deadline = Instant::now() + PATIENCE;
            let tokens = loop {
                let outcome = api.login(&mut conn, &logins[0], None).await;
                if !retry(&outcome, deadline).await {
                    break outcome;
                }
            };
            let tokens = tokens.map_err(|f| explain(f, "logging in", &logins[0]))?;
            Ok((id, VirtualUser::new(id, conn, logins, tokens)))
        });
    }
    join_in_order(tasks).await
}

/// The users virtual user `id` logs in as: its own share when there are
/// enough users, else one it shares with others.
fn logins_of(api: &Api, id: usize, concurrency: usize, users: usize) -> Vec<String> {
    if users >= concurrency {
        (id..users)
            .step_by(concurrency)
            .map(|n| api.email(n as u64))
            .collect()
    } else {
        vec![api.email((id % users) as u64)]
    }
}

async fn join_in_order<T: 'static>(
    mut tasks: JoinSet<anyhow::Result<(usize, T)>>,
) -> anyhow::Result<Vec<T>> {
    let mut done = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        done.push(joined.context("a set-up task stopped")??);
    }
    done.sort_by_key(|(id, _)| *id);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// Set-up requests refused with 503 (the server's hashing queue is full,
/// as it is when the bench runs beyond its capacity on purpose) are tried
/// again after a pause, for up to this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// Whether to try again: after a 503 before `deadline`, once it has paused.
async fn retry<T>(outcome: &Result<T, Failure>, deadline: Instant) -> bool {
    let overloaded = matches!(outcome, Err(Failure::Status { status: 503, .. }));
    if overloaded && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        return true;
    }
    false
}

fn explain(failure: Failure, doing: &str, email: &str) -> anyhow::Error {
    let hint = if failure.is_throttle() {
        " — the server is throttling: start it with --ip-rate-limit 0 --token-rate-limit 0 \
         --account-failure-limit 0, or lower --concurrency"
    } else {
        ""
    };
    anyhow!("set-up failed {doing} {email}: {failure}{hint}")
}
