//! Webhook delivery: takes due deliveries from the outbox, signs each as the
//! Standard Webhooks specification says and POSTs it to its endpoint. A 2xx
//! answer delivers it; anything else is tried again with growing pauses
//! (and jitter) until `webhook_retry_window` has passed since the event.
//! Redirects are not followed, time is bounded, at most 1 KiB of an answer
//! is read, and an endpoint's name must resolve to addresses webhooks may
//! call (no private, loopback or link-local ones unless allowed) — checked
//! at every connection, so a name that changes its address cannot reach
//! inside (SSRF).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use standardwebhooks::Webhook;
use tokio::sync::Semaphore;

use crate::domain::clock::Clock;
use crate::domain::secrets::MasterKey;
use crate::domain::webhooks::{HookWaker, WebhookPolicy, event, open_secret};
use crate::store::{
    Delivery, DeliveryRecord, HookAttempt, Outgoing, Store, StoreError, WebhookRecord,
};

/// Deliveries attempted at once.
const IN_FLIGHT: usize = 20;

/// The endpoints by id.
type Hooks = HashMap<String, WebhookRecord>;
/// How long a taken delivery is hidden from other instances.
const LEASE_SECONDS: i64 = 60;
const POLL: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of an answer read (for the error shown by `webhooks deliveries`).
const MAX_ANSWER: usize = 1024;
const FIRST_PAUSE: i64 = 10;
const MAX_PAUSE: i64 = 3600;

pub struct Dispatcher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: MasterKey,
    policy: WebhookPolicy,
    client: reqwest::Client,
    retry_window: i64,
    wake: HookWaker,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: MasterKey,
        policy: WebhookPolicy,
        retry_window: Duration,
        wake: HookWaker,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .user_agent(concat!("Latchkey-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the webhook client: {e}"))?;
        Ok(Self {
            store,
            clock,
            master,
            policy,
            client,
            retry_window: retry_window.as_secs() as i64,
            wake,
        })
    }

    /// Delivers until the task is dropped: up to [`IN_FLIGHT`] deliveries
    /// at once, each in a task of its own, so a slow endpoint holds up only
    /// its own place, never the others' deliveries.
    pub async fn run(self: Arc<Self>) {
        let places = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let free = places.available_permits();
            if free > 0 {
                match self.claim(free as i64).await {
                    Ok((due, hooks)) => {
                        let claimed = due.len();
                        for delivery in due {
                            let Ok(place) = places.clone().acquire_owned().await else {
                                return;
                            };
                            let me = self.clone();
                            let hooks = hooks.clone();
                            tokio::spawn(async move {
                                me.deliver(&delivery, &hooks).await;
                                drop(place);
                            });
                        }
                        if claimed == free {
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading webhook deliveries failed"),
                }
            }
            let _ = tokio::time::timeout(POLL, self.wake.0.notified()).await;
        }
    }

    /// Takes the deliveries due now and attempts each once, all at once;
    /// returns how many (`latchkey webhooks test` and `replay`).
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let (due, hooks) = self.claim(IN_FLIGHT as i64).await?;
        let attempts = due.iter().map(|d| self.deliver(d, &hooks));
        futures_util::future::join_all(attempts).await;
        Ok(due.len())
    }

    /// Up to `limit` due deliveries, and the endpoints as they are now.
    async fn claim(&self, limit: i64) -> Result<(Vec<DeliveryRecord>, Arc<Hooks>), StoreError> {
        let now = self.clock.now();
        let due = self
            .store
            .claim_deliveries(now, now + LEASE_SECONDS, limit)
            .await?;
        if due.is_empty() {
            return Ok((due, Arc::default()));
        }
        let hooks: Hooks = self
            .store
            .webhooks()
            .await?
            .into_iter()
            .map(|h| (h.id.clone(), h))
            .collect();
        Ok((due, Arc::new(hooks)))
    }

    /// Attempts one delivery and records how it went.
    async fn deliver(&self, delivery: &DeliveryRecord, hooks: &Hooks) {
        let hook = hooks.get(&delivery.webhook_id);
        let attempt = self.attempt(delivery, hook).await;
        if let Err(e) = self.store.finish_delivery(delivery.id, &attempt).await {
            tracing::warn!(error = %e, delivery_id = delivery.id, "recording a webhook delivery failed; it may be sent again");
        }
        if let (Delivery::Failed { error, at }, Some(hook)) = (&attempt.outcome, hook)
            && at - delivery.created_at >= self.retry_window
        {
            self.disable(hook, error).await;
        }
    }

    /// An endpoint that failed for a whole retry window is disabled, with a
    /// log line and a `webhook.disabled` event to the other endpoints.
    async fn disable(&self, hook: &WebhookRecord, error: &str) {
        let now = self.clock.now();
        match self.store.set_webhook_disabled(&hook.id, Some(now)).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, webhook_id = %hook.id, "disabling a failing webhook failed");
                return;
            }
        }
        tracing::error!(webhook_id = %hook.id, url = %hook.url, error = %error, "webhook endpoint disabled: it failed for its whole retry window; `latchkey webhooks enable` turns it back on");
        let data =
            serde_json::json!({ "webhook_id": hook.id, "url": hook.url, "last_error": error });
        let outgoing = Outgoing {
            events: vec![event("webhook.disabled", None, data, now)],
            ..Default::default()
        };
        if let Err(e) = self.store.send(&outgoing).await {
            tracing::warn!(error = %e, "queueing webhook.disabled failed");
        }
    }

    async fn attempt(&self, d: &DeliveryRecord, hook: Option<&WebhookRecord>) -> HookAttempt {
        let started = Instant::now();
        let (status, result) = match hook {
            Some(hook) => self.post(d, hook).await,
            None => (None, Err(Final("the endpoint was removed".into()))),
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        let now = self.clock.now();
        let outcome = match result {
            Ok(()) => {
                metrics::counter!("latchkey_webhook_delivered_total").increment(1);
                Delivery::Sent { at: now }
            }
            Err(Final(error)) => Delivery::Failed { at: now, error },
            Err(Again(error)) if now - d.created_at >= self.retry_window => {
                metrics::counter!("latchkey_webhook_failed_total").increment(1);
                tracing::error!(delivery_id = d.id, webhook_id = %d.webhook_id, error = %error, "webhook delivery given up after its retry window");
                Delivery::Failed { at: now, error }
            }
            Err(Again(error)) => {
                let pause = retry_pause(d.attempts);
                tracing::warn!(delivery_id = d.id, webhook_id = %d.webhook_id, error = %error, retry_in_s = pause, "webhook not delivered; will try again");
                Delivery::Retry {
                    at: now + pause,
                    error,
                }
            }
        };
        HookAttempt {
            outcome,
            status,
            latency_ms,
        }
    }

    async fn post(
        &self,
        d: &DeliveryRecord,
        hook: &WebhookRecord,
    ) -> (Option<i64>, Result<(), Failure>) {
        if hook.disabled_at.is_some() {
            return (None, Err(Final("the endpoint is disabled".into())));
        }
        if let Err(e) = self.policy.check_url(&hook.url) {
            return (None, Err(Final(e)));
        }
        let signer = match open_secret(&self.master, &hook.secret)
            .map_err(|e| e.to_string())
            .and_then(|secret| Webhook::new(&secret).map_err(|e| e.to_string()))
        {
            Ok(signer) => signer,
            Err(e) => {
                return (
                    None,
                    Err(Final(format!("cannot open the endpoint's secret: {e}"))),
                );
            }
        };
        let timestamp = self.clock.now();
        let signature = match signer.sign(&d.event_id, timestamp, d.payload.as_bytes()) {
            Ok(signature) => signature,
            Err(e) => return (None, Err(Final(format!("signing: {e}")))),
        };
        let sent = self
            .client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(d.payload.clone())
            .send()
            .await;
        let mut answer = match sent {
            Ok(answer) => answer,
            Err(e) => return (None, Err(Again(describe(e)))),
        };
        let status = answer.status();
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER {
            match answer.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let code = Some(i64::from(status.as_u16()));
        if status.is_success() {
            return (code, Ok(()));
        }
        let text: String = String::from_utf8_lossy(&body[..body.len().min(200)])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        (
            code,
            Err(Again(format!("the endpoint answered {status}: {text}"))),
        )
    }
}

/// Why an attempt failed: worth trying again, or not.
enum Failure {
    Again(String),
    Final(String),
}
use Failure::{Again, Final};

/// The pause after attempt number `attempts` failed, with up to a fifth of
/// it added at random so that many deliveries failing together spread out.
pub fn retry_pause(attempts: i64) -> i64 {
    let doublings = attempts.clamp(1, 20) - 1;
    let pause = (FIRST_PAUSE << doublings).min(MAX_PAUSE);
    pause + fastrand::i64(0..=pause / 5)
}

/// A transport error without the URL (which the operator knows) and with
/// its cause.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves endpoint names to the addresses webhooks may call only.
struct GuardedResolver {
    policy: WebhookPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.allows(a.ip()))
                .collect();
            if found.is_empty() {
                let error = format!("{host} resolves to no address webhooks may call");
                return Err(error.into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}
