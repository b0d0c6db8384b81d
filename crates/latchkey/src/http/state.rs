//! What every handler can reach: the domain service, the restore guard, the
//! HTTP-level policies, and the per-IP limiter on credential requests.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;

use super::browser::BrowserPolicy;
use super::error::ApiError;
use crate::config::{ProxyHeader, Settings};
use crate::domain::Auth;
use crate::domain::restore::RestoreGuard;

#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Auth>,
    pub metrics: PrometheusHandle,
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub proxy_header: ProxyHeader,
    pub cors_origins: Arc<Vec<String>>,
    pub request_timeout: Duration,
    pub browser: Arc<BrowserPolicy>,
    pub guard: Arc<RestoreGuard>,
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

impl AppState {
    pub fn new(
        auth: Arc<Auth>,
        guard: Arc<RestoreGuard>,
        metrics: PrometheusHandle,
        settings: &Settings,
    ) -> Self {
        let limiter = NonZeroU32::new(settings.ip_rate_limit)
            .map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))));
        AppState {
            auth,
            metrics,
            trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
            proxy_header: settings.proxy_header,
            cors_origins: Arc::new(settings.cors_origins.clone()),
            request_timeout: settings.request_timeout,
            browser: Arc::new(BrowserPolicy::new(&settings.issuer, &settings.cors_origins)),
            guard,
            limiter,
        }
    }

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
