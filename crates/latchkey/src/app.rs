//! Assembly: opens the store, loads the master key, signing keys and hasher,
//! builds the [`Auth`] service and the router, and serves until shutdown with
//! the background tasks (key reload, pruning) alongside.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::delivery::{Courier, Dispatcher, Transport};
use crate::domain::clock::Clock;
use crate::domain::keys::KeyRing;
use crate::domain::mail::{MailConfig, Mailer};
use crate::domain::password::{Argon2Params, Hasher, PasswordPolicy};
use crate::domain::restore::{self, GuardError, RestoreGuard};
use crate::domain::secrets::MasterKey;
use crate::domain::service::Parts;
use crate::domain::webhooks::WebhookPolicy;
use crate::domain::{Auth, AuthConfig};
use crate::http::AppState;
use crate::store::Store;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;

/// How often each instance re-reads the signing keys.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How long a link to confirm a new address works.
const EMAIL_CHANGE_TTL: i64 = 3600;
/// How long the old address can undo an email change.
const EMAIL_CHANGE_CANCEL_TTL: i64 = 7 * 24 * 3600;
/// How often expired rows are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How often the process gives back memory it no longer needs: histogram
/// samples are folded into their buckets (the recorder keeps every sample
/// until then, so a server nobody scrapes would grow with each request), and
/// Argon2 arenas no hash has used for [`ARGON2_IDLE`] are freed.
const MEMORY_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
const ARGON2_IDLE: Duration = Duration::from_secs(10);

/// A built application, ready to serve or to run admin commands.
pub struct App {
    pub state: AppState,
    pub settings: Settings,
    pub master: MasterKey,
    /// The database, for the admin commands that work below the domain
    /// (export, import) and for tests that look at rows.
    pub store: Arc<dyn Store>,
    /// The mail delivery worker (run by `serve`; `mail test` uses it once).
    pub courier: Arc<Courier>,
    /// The webhook delivery worker (run by `serve`; `webhooks test` uses it once).
    pub dispatcher: Arc<Dispatcher>,
}

/// The domain's mailer and the delivery worker, from the mail settings.
fn mail_parts(
    settings: &Settings,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    master: &MasterKey,
) -> anyhow::Result<(Mailer, Courier)> {
    let m = &settings.mail;
    let app_url = m.app_url.clone().unwrap_or_else(|| settings.issuer.clone());
    let config = MailConfig {
        app_url,
        verification: m.verification,
        notices: m.notices.clone(),
        reset_ttl: m.reset_ttl.as_secs() as i64,
        verify_ttl: m.verification_ttl.as_secs() as i64,
        email_change_ttl: EMAIL_CHANGE_TTL,
        cancel_ttl: EMAIL_CHANGE_CANCEL_TTL,
    };
    let mailer = Mailer::new(config, m.templates.as_deref(), master.clone())
        .context("loading mail templates")?;
    let from = match &m.mail_from {
        Some(from) => from.parse().context("mail_from")?,
        None => {
            let host = url::Url::parse(&settings.issuer)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .filter(|h| h.contains('.') && h.parse::<std::net::IpAddr>().is_err())
                .unwrap_or_else(|| "localhost.localdomain".to_string());
            format!("no-reply@{host}")
                .parse()
                .context("the default mail_from")?
        }
    };
    let transport = match &m.smtp {
        Some(url) => {
            let roots = match &m.smtp_ca_file {
                Some(path) => Some(
                    std::fs::read(path)
                        .with_context(|| format!("reading smtp_ca_file {}", path.display()))?,
                ),
                None => None,
            };
            Transport::smtp(url, m.smtp_timeout, roots.as_deref(), from)
                .map_err(anyhow::Error::msg)?
        }
        None => Transport::folder(settings.data_dir.join("outbox"), from),
    };
    let courier = Courier::new(
        store.clone(),
        clock.clone(),
        master.clone(),
        transport,
        mailer.waker(),
    );
    Ok((mailer, courier))
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
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("latchkey_store_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                    )
                })
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
    open_store_migrating(settings, true).await
}

/// Opens the database and applies the migrations, under PostgreSQL's
/// migration lock unless `lock` is false (SQLite needs none).
pub async fn open_store_migrating(
    settings: &Settings,
    lock: bool,
) -> anyhow::Result<Arc<dyn Store>> {
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
        store.migrate_locking(lock).await.with_context(context)?;
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
            reauth_max_age: settings.reauth_max_age.as_secs() as i64,
            leeway: settings.clock_leeway.as_secs() as i64,
            account_failure_limit: settings.account_failure_limit,
            account_daily_failure_limit: settings.account_daily_failure_limit,
        };
        let (mailer, courier) = mail_parts(&settings, &store, &clock, &master)?;
        let webauthn = match settings.passkeys().map_err(anyhow::Error::msg)? {
            Some((rp_id, origins)) => Some(
                crate::domain::passkeys::relying_party(&rp_id, &origins, &rp_id)
                    .map_err(|e| anyhow::anyhow!("passkeys: {e}"))?,
            ),
            None => None,
        };
        let parts = Parts {
            store: store.clone(),
            clock: clock.clone(),
            keys: Arc::new(keys),
            hasher,
            policy,
            mail: mailer,
            hook_policy: WebhookPolicy {
                allow_private: settings.webhook_allow_private,
            },
            webauthn,
        };
        let auth = Auth::new(parts, &master, config);
        let dispatcher = Dispatcher::new(
            store.clone(),
            clock.clone(),
            master.clone(),
            auth.hook_policy(),
            settings.webhook_retry_window,
            auth.hook_waker(),
        )
        .map_err(anyhow::Error::msg)?;
        let guard = Arc::new(RestoreGuard::open(&settings.data_dir)?);
        let state = AppState::new(Arc::new(auth), guard, metrics, &settings);
        Ok(App {
            state,
            settings,
            master,
            store,
            courier: Arc::new(courier),
            dispatcher: Arc::new(dispatcher),
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
        tracing::info!("mail goes to the {}", self.courier.transport().describe());
        let courier = self.courier.clone();
        let delivery = tokio::spawn(async move { courier.run().await });
        let dispatcher = self.dispatcher.clone();
        let hooks = tokio::spawn(dispatcher.run());
        let router = crate::http::router(self.state.clone());
        tracing::info!(address = %listener.local_addr()?, issuer = %self.settings.issuer, "latchkey is serving");
        let limits = crate::serve::ConnectionLimits {
            header_read_timeout: self.settings.header_read_timeout,
            idle_timeout: self.settings.idle_timeout,
            max_connections: self.settings.max_connections,
            max_connections_per_ip: self.settings.max_connections_per_ip,
        };
        let served = crate::serve::serve(listener, router, limits, shutdown).await;
        background.abort();
        delivery.abort();
        hooks.abort();
        // Records what this instance last saw, for the next start to compare.
        let _ = check_restore(&self.state).await;
        served.context("serving HTTP")
    }
}

/// Creates the data directory, or makes an existing one private (0700): it
/// holds the master key, and on SQLite every password hash.
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making data directory {} private", dir.display()))?;
            tracing::info!(path = %dir.display(), "made the data directory private (0700)");
        }
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
    let result = state.auth.check_restore(&state.guard).await;
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
    // Looks every second (the clock may be a test's); summarises when due.
    let mut summaries = tokio::time::interval(Duration::from_secs(1));
    let mut next_summary = 0;
    let mut memory = tokio::time::interval(MEMORY_UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = memory.tick() => {
                state.metrics.run_upkeep();
                state.auth.release_idle_memory(ARGON2_IDLE);
            }
            _ = summaries.tick() => {
                if state.auth.now() >= next_summary {
                    match state.auth.summarise_throttled().await {
                        Ok(next) => next_summary = next,
                        Err(e) => tracing::warn!(error = %e, "summarising refused logins failed"),
                    }
                }
            }
            _ = guard.tick() => {
                let _ = check_restore(&state).await;
            }
            _ = first_check.tick(), if !state.guard.checked() => {
                let _ = check_restore(&state).await;
            }
            _ = reload.tick() => {
                if let Err(e) = state.auth.reload_keys().await {
                    tracing::warn!(error = %e, "reloading signing keys failed");
                }
            }
            _ = prune.tick() => {
                match state.auth.prune_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(rows = n, "pruned expired rows"),
                    Err(e) => tracing::warn!(error = %e, "pruning failed"),
                }
                state.password_limit.forget_idle();
                state.token_limit.forget_idle();
            }
        }
    }
}
