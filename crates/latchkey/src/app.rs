//! Assembly: opens the store, loads the master key, signing keys and hasher,
//! builds the [`Auth`] service and the router, and serves until shutdown with
//! the background tasks (key reload, pruning) alongside.

use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::domain::clock::Clock;
use crate::domain::keys::KeyRing;
use crate::domain::password::{Argon2Params, Hasher, PasswordPolicy};
use crate::domain::restore::{self, GuardError, RestoreGuard};
use crate::domain::secrets::MasterKey;
use crate::domain::{Auth, AuthConfig};
use crate::error::ApiError;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{PruneBefore, Store};

/// How often each instance re-reads the signing keys.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How often expired rows are pruned, and how many per kind at a time.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
const PRUNE_BATCH: i64 = 500;
/// How long audit events are kept.
const EVENT_RETENTION: i64 = 90 * 24 * 3600;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Auth>,
    pub metrics: PrometheusHandle,
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub cors_origins: Arc<Vec<String>>,
    pub request_timeout: Duration,
    pub browser: Arc<crate::http::browser::BrowserPolicy>,
    pub guard: Arc<RestoreGuard>,
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

impl AppState {
    /// Applies the per-IP limit on credential requests.
    pub fn limit_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let (Some(limiter), Some(ip)) = (&self.limiter, ip) else {
            return Ok(());
        };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::RateLimited {
                retry_after: wait.as_secs().max(1),
            }
        })
    }
}

/// A built application, ready to serve or to run admin commands.
pub struct App {
    pub state: AppState,
    pub settings: Settings,
    pub master: MasterKey,
}

/// The process-wide Prometheus recorder (metrics macros use one global).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed, e.g. by an embedding program.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Opens the configured database and applies migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let url = settings.database_url.expose();
    let context = || format!("opening database {}", settings.database_url.redacted());
    if settings.database_url.is_sqlite() {
        let store = SqliteStore::connect(url, settings.db_max_connections)
            .await
            .with_context(context)?;
        store.migrate().await.with_context(context)?;
        Ok(Arc::new(store))
    } else {
        let store = PgStore::connect(
            url,
            settings.db_max_connections,
            settings.db_statement_timeout,
        )
        .await
        .with_context(context)?;
        store.migrate().await.with_context(context)?;
        Ok(Arc::new(store))
    }
}

impl App {
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let metrics = metrics_handle();
        create_private_dir(&settings.data_dir)?;
        let store = open_store(&settings).await?;
        let master = MasterKey::load_or_create(settings.master_key.as_ref(), &settings.data_dir)?;
        let keys = KeyRing::open(
            store.as_ref(),
            master.clone(),
            settings.signing_alg,
            clock.now(),
        )
        .await
        .context("loading signing keys")?;
        let params = Argon2Params {
            memory_kib: settings.argon2_memory_kib,
            iterations: settings.argon2_iterations,
            parallelism: settings.argon2_parallelism,
        };
        let hasher = Hasher::new(params, settings.hash_concurrency, settings.hash_queue)?;
        let policy = PasswordPolicy {
            min_length: settings.password_min_length,
        };
        let config = AuthConfig {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            access_ttl: settings.access_ttl.as_secs() as i64,
            refresh_idle_ttl: settings.refresh_idle_ttl.as_secs() as i64,
            session_ttl: settings.session_ttl.as_secs() as i64,
            reuse_grace: settings.refresh_reuse_grace.as_secs() as i64,
            leeway: settings.clock_leeway.as_secs() as i64,
            account_failure_limit: settings.account_failure_limit,
            account_daily_failure_limit: settings.account_daily_failure_limit,
        };
        let auth = Auth::new(
            store,
            clock,
            Arc::new(keys),
            hasher,
            policy,
            &master,
            config,
        );
        let limiter = NonZeroU32::new(settings.ip_rate_limit)
            .map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))));
        let state = AppState {
            auth: Arc::new(auth),
            metrics,
            trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
            cors_origins: Arc::new(settings.cors_origins.clone()),
            request_timeout: settings.request_timeout,
            browser: Arc::new(crate::http::browser::BrowserPolicy::new(
                &settings.issuer,
                &settings.cors_origins,
            )),
            guard: Arc::new(RestoreGuard::open(&settings.data_dir)?),
            limiter,
        };
        Ok(App {
            state,
            settings,
            master,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then drains in-flight
    /// requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // A restored database is refused before anything is served; an
        // unreachable one is checked again in the background meanwhile.
        if let Err(e @ GuardError::Restored { .. }) = check_restore(&self.state).await {
            return Err(e.into());
        }
        let background = tokio::spawn(background_tasks(self.state.clone()));
        let router = crate::http::router(self.state.clone());
        tracing::info!(address = %listener.local_addr()?, issuer = %self.settings.issuer, "latchkey is serving");
        let served = crate::serve::serve(listener, router, shutdown).await;
        background.abort();
        // Records what this instance last saw, for the next start to compare.
        let _ = check_restore(&self.state).await;
        served.context("serving HTTP")
    }
}

fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

/// Runs the restore guard's check, logging what it finds.
async fn check_restore(state: &AppState) -> Result<(), GuardError> {
    let result = state.guard.check(state.auth.store.as_ref()).await;
    match &result {
        Ok(()) => {}
        Err(e @ GuardError::Restored { .. }) => tracing::error!("{e}"),
        Err(e) => tracing::warn!(error = %e, "checking the restore guard failed"),
    }
    result
}

async fn background_tasks(state: AppState) {
    let mut reload = tokio::time::interval(KEY_RELOAD_INTERVAL);
    let mut prune = tokio::time::interval(PRUNE_INTERVAL);
    let mut guard = tokio::time::interval(restore::CHECK_INTERVAL);
    // An unchecked guard (the database was unreachable at start) is retried sooner.
    let mut first_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = guard.tick() => {
                let _ = check_restore(&state).await;
            }
            _ = first_check.tick(), if !state.guard.checked() => {
                let _ = check_restore(&state).await;
            }
            _ = reload.tick() => {
                let auth = &state.auth;
                if let Err(e) = auth.keys.reload(auth.store.as_ref(), auth.now()).await {
                    tracing::warn!(error = %e, "reloading signing keys failed");
                }
            }
            _ = prune.tick() => {
                prune_once(&state.auth).await;
                state.auth.hasher.release_idle_memory(PRUNE_INTERVAL);
            }
        }
    }
}

/// Deletes expired sessions, old revocations, events and throttles, and keys
/// whose tokens can no longer be valid.
pub async fn prune_once(auth: &Auth) {
    let now = auth.now();
    let keep_revocations = auth.revocation_retention();
    let before = PruneBefore {
        sessions: now - keep_revocations,
        revocations: now - keep_revocations,
        events: now - EVENT_RETENTION,
        throttles: now - 24 * 3600,
        keys: now,
    };
    match auth.store.prune(before, PRUNE_BATCH).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(rows = n, "pruned expired rows"),
        Err(e) => tracing::warn!(error = %e, "pruning failed"),
    }
}
