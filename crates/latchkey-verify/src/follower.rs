//! The revocation follower: reads `GET {issuer}/v1/revocations` on a
//! schedule into a private [`RevocationList`] and publishes immutable
//! snapshots of it that `verify` reads in a few nanoseconds. It must never
//! make `verify` wait: the only lock `verify` touches is held for a hash
//! lookup or a pointer swap, never across an await.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Url;

use crate::claims::Claims;
use crate::fetch::{self, Credentials, FetchError};
use crate::jwks::KeyCache;
use crate::revocations::RevocationList;
use crate::token::VerifyError;
use crate::wire::RevocationPage;

/// Entries asked for per page.
pub(crate) const PAGE_LIMIT: u32 = 1000;

/// A poll reads at most this many pages; a feed that still says `has_more`
/// after that is treated as failing (and so grows stale) rather than
/// letting one poll run forever.
const MAX_PAGES_PER_POLL: usize = 1000;

/// `last_sync_ms` before the first successful poll.
const NEVER: u64 = u64::MAX;

/// The part of the follower that `verify` reads.
#[derive(Debug)]
pub(crate) struct FeedState {
    list: RwLock<Arc<RevocationList>>,
    epoch: Instant,
    /// Milliseconds after `epoch` at which the last fully successful poll
    /// began, or [`NEVER`].
    last_sync_ms: AtomicU64,
    max_staleness: Duration,
    fail_open: bool,
}

impl FeedState {
    /// Refuses claims the feed revoked, and every claim while the feed is
    /// stale unless the verifier fails open.
    pub(crate) fn check(&self, claims: &Claims) -> Result<(), VerifyError> {
        match self.list.read() {
            Ok(list) => list.check(claims)?,
            Err(poisoned) => poisoned.into_inner().check(claims)?,
        }
        if !self.fail_open && self.since_last_sync() > self.max_staleness {
            return Err(VerifyError::RevocationsUnavailable);
        }
        Ok(())
    }

    /// Time since the last fully successful poll began.
    pub(crate) fn since_last_sync(&self) -> Duration {
        match self.last_sync_ms.load(Ordering::Acquire) {
            NEVER => Duration::MAX,
            ms => self
                .epoch
                .elapsed()
                .saturating_sub(Duration::from_millis(ms)),
        }
    }

    /// Whether the feed is older than `max_staleness`.
    pub(crate) fn is_stale(&self) -> bool {
        self.since_last_sync() > self.max_staleness
    }

    /// The list as last published.
    pub(crate) fn snapshot(&self) -> Arc<RevocationList> {
        match self.list.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn publish(&self, list: RevocationList) {
        let fresh = Arc::new(list);
        // The old snapshot is dropped after the lock is released.
        let _old = match self.list.write() {
            Ok(mut guard) => std::mem::replace(&mut *guard, fresh),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh),
        };
    }

    fn mark_synced(&self, poll_began: Instant) {
        let ms = poll_began.saturating_duration_since(self.epoch).as_millis();
        let ms = u64::try_from(ms).unwrap_or(NEVER - 1).min(NEVER - 1);
        self.last_sync_ms.store(ms, Ordering::Release);
    }
}

/// Where and how the feed is read.
#[derive(Debug)]
pub(crate) struct FeedSource {
    pub(crate) url: Url,
    pub(crate) client: reqwest::Client,
    pub(crate) credentials: Credentials,
    pub(crate) leeway: i64,
}

/// The task-side follower: owns the working list.
#[derive(Debug)]
pub(crate) struct Follower {
    source: FeedSource,
    list: RevocationList,
    /// `changes()` of the list last published; `None` forces a publish.
    published: Option<u64>,
    state: Arc<FeedState>,
    failing: bool,
    /// Where withdrawn keys are dropped; weak, so the follower never keeps
    /// a dropped verifier's keys alive.
    keys: std::sync::Weak<KeyCache>,
}

impl Follower {
    /// A follower that has read nothing yet: stale until its first poll.
    pub(crate) fn new(
        source: FeedSource,
        keys: &Arc<KeyCache>,
        max_staleness: Duration,
        fail_open: bool,
    ) -> Self {
        let state = Arc::new(FeedState {
            list: RwLock::new(Arc::new(RevocationList::default())),
            epoch: Instant::now(),
            last_sync_ms: AtomicU64::new(NEVER),
            max_staleness,
            fail_open,
        });
        Self {
            source,
            list: RevocationList::default(),
            published: None,
            state,
            failing: false,
            keys: Arc::downgrade(keys),
        }
    }

    /// What `verify` reads.
    pub(crate) fn state(&self) -> Arc<FeedState> {
        Arc::clone(&self.state)
    }

    /// Reads every page waiting, then publishes what changed. On `410
    /// cursor_expired` it reads the whole feed again from `after=0` into a
    /// fresh list, which replaces the old one only once complete: meanwhile
    /// the old list keeps refusing what it knew, and the feed is not counted
    /// as synced until the fresh list is in place.
    pub(crate) async fn poll(&mut self) -> Result<(), FetchError> {
        let began = Instant::now();
        let mut result = read_pages(&self.source, &mut self.list).await;
        if matches!(&result, Err(e) if e.is_cursor_expired()) && self.list.cursor() != 0 {
            tracing::info!("revocation feed cursor expired; reading the feed again from the start");
            let mut fresh = RevocationList::default();
            result = read_pages(&self.source, &mut fresh).await;
            if result.is_ok() {
                self.list = fresh;
                self.published = None;
            }
        }
        // Pages applied before a failure are kept: entries only ever refuse more.
        if let Some(keys) = self.keys.upgrade() {
            for kid in self.list.withdrawn_keys() {
                keys.withdraw(kid);
            }
        }
        self.list.forget_settled(unix_now(), self.source.leeway);
        if self.published != Some(self.list.changes()) {
            self.state.publish(self.list.clone());
            self.published = Some(self.list.changes());
        }
        result?;
        self.state.mark_synced(began);
        Ok(())
    }

    /// Polls every `interval` until the task is aborted, logging only when
    /// the feed starts or stops failing.
    pub(crate) async fn run(mut self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            // Only this task holds the state: every verifier is gone.
            if Arc::strong_count(&self.state) == 1 {
                return;
            }
            match self.poll().await {
                Ok(()) if self.failing => {
                    self.failing = false;
                    tracing::info!("revocation feed reachable again");
                }
                Ok(()) => {}
                Err(e) if !self.failing => {
                    self.failing = true;
                    tracing::warn!(
                        url = %self.source.url,
                        error = %fetch::chain(&e),
                        "polling the revocation feed failed"
                    );
                }
                Err(e) => {
                    tracing::debug!(error = %fetch::chain(&e), "revocation feed still failing")
                }
            }
        }
    }
}

/// Reads pages from `list.cursor()` until the feed has no more.
async fn read_pages(source: &FeedSource, list: &mut RevocationList) -> Result<(), FetchError> {
    for _ in 0..MAX_PAGES_PER_POLL {
        let mut url = source.url.clone();
        url.query_pairs_mut()
            .append_pair("after", &list.cursor().to_string())
            .append_pair("limit", &PAGE_LIMIT.to_string());
        let page: RevocationPage =
            fetch::get_json(&source.client, url, Some(&source.credentials)).await?;
        list.apply(&page);
        if !page.has_more {
            return Ok(());
        }
    }
    Err(FetchError::Invalid(format!(
        "the feed still had more after {MAX_PAGES_PER_POLL} pages"
    )))
}

/// The wall clock in Unix seconds; a clock before 1970 reads as 0.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
