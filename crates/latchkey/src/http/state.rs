//! What every handler can reach: the domain service, the restore guard, the
//! HTTP-level policies, and the per-IP limits on credential requests.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;

use super::browser::BrowserPolicy;
use super::limits::IpLimiter;
use crate::config::{ProxyHeader, Settings};
use crate::domain::Auth;
use crate::domain::restore::RestoreGuard;

/// What every handler shares, behind one `Arc`: axum clones the state for
/// each extractor that asks for it, and one reference count is one atomic
/// operation instead of one per field (all of them contended across cores).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub auth: Arc<Auth>,
    pub metrics: PrometheusHandle,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub proxy_header: ProxyHeader,
    pub cors_origins: Vec<String>,
    pub request_timeout: Duration,
    pub browser: BrowserPolicy,
    pub guard: Arc<RestoreGuard>,
    /// Requests that check a password, per client.
    pub password_limit: IpLimiter,
    /// The other credential requests (refresh, logout, revocation, failed
    /// client authentication), per client.
    pub token_limit: IpLimiter,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<SecretString>,
    /// djoser's and simplejwt's endpoints are served too.
    pub djoser: bool,
    /// The algorithm of keys rotated in through the admin API.
    pub signing_alg: latchkey_verify::SigningAlg,
}

impl AppState {
    pub fn new(
        auth: Arc<Auth>,
        guard: Arc<RestoreGuard>,
        metrics: PrometheusHandle,
        settings: &Settings,
    ) -> Self {
        AppState(Arc::new(Shared {
            auth,
            metrics,
            trusted_proxies: settings.trusted_proxies.clone(),
            proxy_header: settings.proxy_header,
            cors_origins: settings.cors_origins.clone(),
            request_timeout: settings.request_timeout,
            browser: BrowserPolicy::new(&settings.issuer, &settings.cors_origins),
            guard,
            password_limit: IpLimiter::per_minute(settings.ip_rate_limit),
            token_limit: IpLimiter::per_minute(settings.token_rate_limit),
            metrics_token: settings.metrics_token.clone(),
            djoser: settings.compat.contains(&crate::config::Compat::Djoser),
            signing_alg: settings.signing_alg,
        }))
    }
}
