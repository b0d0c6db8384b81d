//! The login throttle: how failed password checks slow further guesses.
//!
//! It counts *failures*, not attempts. An attempt takes a place before its
//! password is checked (so fifty guesses sent at once are never all
//! evaluated) and gives it back with its outcome; a correct password is
//! never refused because other correct logins were in flight — it waits for
//! them instead. Counters are kept per key: the account's email for devices
//! it has not seen, each known device on its own (so strangers cannot lock
//! the owner out), and each session for password changes. Besides the
//! growing delays, a daily ceiling bounds the failures evaluated per key,
//! however long an attacker keeps retrying. See docs/security.md.
//!
//! The rules are pure functions of a row and the time; [`Auth`] applies them
//! through the store, which serialises steps on one key across instances.

use std::time::{Duration, Instant};

use super::events::EventKind;
use super::password::Ticket;
use super::{Auth, AuthError, Client};
use crate::store::ThrottleRecord;

/// The length of the window the daily ceiling counts in.
pub const DAY: i64 = 24 * 3600;
/// How long a place taken for an attempt lasts unless its outcome settles it
/// sooner: only an instance that died mid-attempt leaves one to lapse.
const LEASE_SECONDS: i64 = 60;
/// How long an attempt waits for the attempts in flight on its key to settle
/// before it is refused.
const WAIT_FOR_PLACE: Duration = Duration::from_secs(5);
/// First pause between looks while waiting, doubled up to [`WAIT_STEP_MAX`].
const WAIT_STEP: Duration = Duration::from_millis(10);
const WAIT_STEP_MAX: Duration = Duration::from_millis(80);

/// How the throttle of one key grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed before delays start.
    pub free_failures: i64,
    /// First delay in seconds, doubled for each further failure.
    pub base_delay: i64,
    /// Longest delay in seconds.
    pub max_delay: i64,
    /// Failures evaluated per day at most; 0 = no ceiling.
    pub daily_failures: i64,
}

/// What an attempt on a key may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Check the password.
    Evaluate,
    /// Every place is held by attempts in flight: ask again shortly.
    Wait,
    /// Refused until `until`.
    Blocked { until: i64 },
}

/// How an evaluated attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Not judged (hashing failed): gives the place back, counts nothing.
    Abandoned,
}

impl ThrottlePolicy {
    pub fn decide(&self, row: &ThrottleRecord, now: i64) -> Decision {
        if row.blocked_until > now {
            return Decision::Blocked {
                until: row.blocked_until,
            };
        }
        let pending = pending(row, now);
        if self.daily_failures > 0 && day_failures(row, now) + pending >= self.daily_failures {
            return match pending {
                0 => Decision::Blocked {
                    until: row.day_started_at + DAY,
                },
                _ => Decision::Wait,
            };
        }
        // Past the free failures, one attempt at a time.
        let places = (self.free_failures - row.failures).max(1);
        if pending >= places {
            Decision::Wait
        } else {
            Decision::Evaluate
        }
    }

    /// The row after an attempt took a place (when [`decide`](Self::decide)
    /// says `Evaluate`; otherwise unchanged).
    pub fn reserve(&self, row: &ThrottleRecord, now: i64) -> ThrottleRecord {
        if self.decide(row, now) != Decision::Evaluate {
            return row.clone();
        }
        ThrottleRecord {
            pending: pending(row, now) + 1,
            pending_until: now + LEASE_SECONDS,
            updated_at: now,
            ..row.clone()
        }
    }

    /// The row after an attempt that held a place ended with `outcome`.
    pub fn settle(&self, row: &ThrottleRecord, now: i64, outcome: Outcome) -> ThrottleRecord {
        let mut next = ThrottleRecord {
            pending: (pending(row, now) - 1).max(0),
            updated_at: now,
            ..row.clone()
        };
        match outcome {
            Outcome::Abandoned => {}
            Outcome::Succeeded => {
                next.failures = 0;
                next.blocked_until = 0;
            }
            Outcome::Failed => {
                // A day starts with its first failure.
                if row.day_failures == 0 || now >= row.day_started_at + DAY {
                    next.day_started_at = now;
                    next.day_failures = 0;
                }
                next.day_failures += 1;
                next.failures += 1;
                if next.failures >= self.free_failures {
                    let doublings = (next.failures - self.free_failures).min(30);
                    let delay = (self.base_delay << doublings).min(self.max_delay);
                    next.blocked_until = next.blocked_until.max(now + delay);
                }
                if self.daily_failures > 0 && next.day_failures >= self.daily_failures {
                    next.blocked_until = next.blocked_until.max(next.day_started_at + DAY);
                }
            }
        }
        next
    }
}

/// Places held by attempts in flight whose lease has not lapsed.
fn pending(row: &ThrottleRecord, now: i64) -> i64 {
    if row.pending_until > now {
        row.pending
    } else {
        0
    }
}

/// Failures counted in the current day.
fn day_failures(row: &ThrottleRecord, now: i64) -> i64 {
    if now < row.day_started_at + DAY {
        row.day_failures
    } else {
        0
    }
}

/// The throttle key of a login from a device not known to the account.
pub fn account_key(email_normalized: &str) -> String {
    email_normalized.to_string()
}

/// The throttle key of a login from a device that signed in before.
pub fn device_key(device_id: &str) -> String {
    format!("device:{device_id}")
}

const CODE_PREFIX: &str = "mfa:";
/// Wrong second-factor codes evaluated per account and day at most, however
/// high `account_daily_failure_limit` is: a guess is right with odds of at
/// most 3 in 10^6 (see docs/security.md).
pub const CODE_DAILY_FAILURES: i64 = 10;

/// The throttle key of the second-factor codes of one account.
pub fn code_key(user_id: &str) -> String {
    format!("{CODE_PREFIX}{user_id}")
}

/// The throttle key of password changes made from one session.
pub fn session_key(session_id: &str) -> String {
    format!("session:{session_id}")
}

/// A place taken for one attempt; give it back with [`Auth::judge`].
#[must_use]
pub(super) struct Attempt {
    key: Option<String>,
}

impl Auth {
    /// The policy of `key`: second-factor codes (keys made by
    /// [`code_key`]) have a daily ceiling of at most [`CODE_DAILY_FAILURES`].
    pub(super) fn throttle_policy(&self, key: &str) -> Option<ThrottlePolicy> {
        let daily = i64::from(self.config.account_daily_failure_limit);
        let daily = match key.starts_with(CODE_PREFIX) {
            true if daily == 0 => CODE_DAILY_FAILURES,
            true => daily.min(CODE_DAILY_FAILURES),
            false => daily,
        };
        (self.config.account_failure_limit > 0).then(|| ThrottlePolicy {
            free_failures: i64::from(self.config.account_failure_limit),
            base_delay: 1,
            max_delay: 15 * 60,
            daily_failures: daily,
        })
    }

    /// Takes a place for one attempt on `key`, waiting a little while other
    /// attempts hold them all; refused (429) while the key is blocked. The
    /// hashing `ticket` is given up while waiting — the attempts being waited
    /// for may need its slot to finish — and taken again (or refused with
    /// 503) before a place is.
    pub(super) async fn begin_attempt(
        &self,
        key: String,
        user_id: Option<&str>,
        client: &Client,
        ticket: Ticket,
    ) -> Result<(Attempt, Ticket), AuthError> {
        let Some(policy) = self.throttle_policy(&key) else {
            return Ok((Attempt { key: None }, ticket));
        };
        let deadline = Instant::now() + WAIT_FOR_PLACE;
        let (mut ticket, mut pause) = (Some(ticket), WAIT_STEP);
        loop {
            let held = match ticket.take() {
                Some(t) => t,
                None => self.hasher.ticket()?,
            };
            let now = self.now();
            let before = self
                .store
                .step_throttle(&key, &move |row| policy.reserve(row, now))
                .await?;
            let until = match policy.decide(&before, now) {
                Decision::Evaluate => return Ok((Attempt { key: Some(key) }, held)),
                Decision::Blocked { until } => until,
                Decision::Wait if Instant::now() >= deadline => now + 1,
                Decision::Wait => {
                    drop(held);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(WAIT_STEP_MAX);
                    continue;
                }
            };
            self.audit(EventKind::LoginThrottled, user_id, None, client)
                .await;
            metrics::counter!("latchkey_logins_total", "result" => "throttled").increment(1);
            return Err(AuthError::Throttled {
                retry_after: (until - now).max(1) as u64,
            });
        }
    }

    /// Runs the password check of `attempt` and settles its place with the
    /// outcome: a failure counts, a success clears the key's failures.
    pub(super) async fn judge<E>(
        &self,
        attempt: Attempt,
        check: impl Future<Output = Result<bool, E>>,
    ) -> Result<bool, AuthError>
    where
        AuthError: From<E>,
    {
        let result = check.await;
        let outcome = match &result {
            Ok(true) => Outcome::Succeeded,
            Ok(false) => Outcome::Failed,
            Err(_) => Outcome::Abandoned,
        };
        if let Some((key, policy)) = attempt
            .key
            .and_then(|k| self.throttle_policy(&k).map(|p| (k, p)))
        {
            let now = self.now();
            self.store
                .step_throttle(&key, &move |row| policy.settle(row, now, outcome))
                .await?;
        }
        Ok(result?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        free_failures: 5,
        base_delay: 1,
        max_delay: 900,
        daily_failures: 50,
    };

    fn fresh() -> ThrottleRecord {
        ThrottleRecord {
            key: "k".into(),
            ..ThrottleRecord::default()
        }
    }

    fn fail(row: &ThrottleRecord, now: i64) -> ThrottleRecord {
        assert_eq!(POLICY.decide(row, now), Decision::Evaluate);
        POLICY.settle(&POLICY.reserve(row, now), now, Outcome::Failed)
    }

    #[test]
    fn places_in_flight_never_exceed_the_free_failures_left() {
        let mut row = fresh();
        for _ in 0..5 {
            row = POLICY.reserve(&row, 100);
        }
        assert_eq!(row.pending, 5);
        assert_eq!(POLICY.decide(&row, 100), Decision::Wait);
        let row = POLICY.settle(&row, 100, Outcome::Succeeded);
        assert_eq!(POLICY.decide(&row, 100), Decision::Evaluate);
    }

    #[test]
    fn a_success_clears_the_failures_but_not_the_day() {
        let mut row = fresh();
        for _ in 0..3 {
            row = fail(&row, 100);
        }
        let row = POLICY.settle(&POLICY.reserve(&row, 100), 100, Outcome::Succeeded);
        assert_eq!((row.failures, row.day_failures, row.pending), (0, 3, 0));
    }

    #[test]
    fn delays_start_after_the_free_failures_double_and_are_capped() {
        let mut row = fresh();
        let mut now = 1_000;
        let mut delays = Vec::new();
        for _ in 0..20 {
            row = fail(&row, now);
            if row.blocked_until > now {
                delays.push(row.blocked_until - now);
                now = row.blocked_until;
            }
        }
        assert_eq!(&delays[..4], &[1, 2, 4, 8]);
        assert_eq!(*delays.last().unwrap_or(&0), 900);
    }

    #[test]
    fn the_daily_ceiling_blocks_until_the_day_is_over_whatever_the_delays() {
        let mut row = fresh();
        let start = 10_000;
        let mut now = start;
        let mut evaluated = 0;
        while now < start + DAY {
            match POLICY.decide(&row, now) {
                Decision::Evaluate => {
                    row = fail(&row, now);
                    evaluated += 1;
                }
                Decision::Blocked { until } => now = until,
                Decision::Wait => unreachable!("nothing is in flight"),
            }
        }
        assert_eq!(evaluated, 50);
        assert_eq!(
            POLICY.decide(&row, start + DAY),
            Decision::Evaluate,
            "a new day, a new budget"
        );
    }

    #[test]
    fn a_lapsed_lease_gives_its_place_back() {
        let mut row = fresh();
        for _ in 0..5 {
            row = POLICY.reserve(&row, 100);
        }
        assert_eq!(POLICY.decide(&row, 100 + LEASE_SECONDS), Decision::Evaluate);
    }
}
