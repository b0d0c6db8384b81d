//! Webhooks: the operator's endpoints, and the security events delivered
//! to them, signed as the Standard Webhooks specification says
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,…`, secrets
//! `whsec_…`). An event is written with the change it reports (the outbox),
//! one delivery per subscribed endpoint; the delivery worker sends them.
//! See docs/webhooks.md.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

use super::events::EventKind;
use super::secrets::{MasterKey, SecretError, random};
use super::{Actor, Auth, AuthError};
use crate::store::{
    DeliveryRecord, EndedEvents, EventTally, NewWebhookEvent, Outgoing, RevokeReason, WebhookRecord,
};

/// The label endpoint secrets are sealed under.
const SEAL_LABEL: &str = "webhook-secret";
/// Most endpoints; each event costs a delivery row per endpoint.
const MAX_WEBHOOKS: usize = 20;

/// Every event type, as subscribed to and sent.
pub const EVENT_TYPES: [&str; 15] = [
    "user.registered",
    "user.login",
    "user.login_failed",
    "user.password_changed",
    "user.email_verified",
    "user.email_changed",
    "user.disabled",
    "user.deleted",
    "user.mfa_changed",
    "session.revoked",
    "session.theft_detected",
    "key.rotated",
    "key.revoked",
    "webhook.disabled",
    "webhook.test",
];

/// How often the attempts refused by the login throttle are summarised.
pub const THROTTLED_SUMMARY_PERIOD: i64 = 60;
/// How long after its time an event is counted (its row may still be
/// committing).
const SUMMARY_LAG: i64 = 2;
/// Addresses named in one summary at most, the busiest first.
const SUMMARY_IPS: usize = 10;

/// Who may be called: https only, and never a private, loopback or
/// link-local address — unless the operator allows them (development).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookPolicy {
    pub allow_private: bool,
}

impl WebhookPolicy {
    /// Whether an address may be called.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// Checks an endpoint URL: https (or http where private addresses are
    /// allowed), a host, no credentials, and no literal address it may not call.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            "http" => return Err("webhook URLs must be https".into()),
            other => return Err(format!("unsupported scheme {other:?}")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials do not belong in a webhook URL".into());
        }
        let host = url.host_str().ok_or("the URL names no host")?;
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>()
            && !self.allows(ip)
        {
            return Err(format!("{ip} is a private, loopback or link-local address"));
        }
        Ok(url)
    }
}

/// Whether `ip` is an address on the public internet.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
                || v4.octets()[0] >= 224)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}

/// An endpoint as the operator sees it.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: i64,
    pub disabled: bool,
}

impl From<&WebhookRecord> for Webhook {
    fn from(r: &WebhookRecord) -> Self {
        Webhook {
            id: r.id.clone(),
            url: r.url.clone(),
            events: r.events.split(' ').map(str::to_string).collect(),
            created_at: r.created_at,
            disabled: r.disabled_at.is_some(),
        }
    }
}

/// The signing secret of an endpoint, opened.
pub fn open_secret(master: &MasterKey, sealed: &[u8]) -> Result<String, SecretError> {
    let plain = master.open(SEAL_LABEL, sealed)?;
    String::from_utf8(plain).map_err(|_| SecretError::Malformed)
}

/// What the delivery worker is woken with.
#[derive(Clone, Default)]
pub struct HookWaker(pub Arc<Notify>);

impl Auth {
    /// Adds an endpoint for `events` (`*` for all); returns it and its
    /// secret, which is shown this once.
    pub async fn add_webhook(
        &self,
        url: &str,
        events: &[String],
        actor: &Actor,
    ) -> Result<(Webhook, String), AuthError> {
        let url = self
            .hook_policy
            .check_url(url)
            .map_err(AuthError::InvalidRequest)?;
        let events = check_events(events)?;
        if self.store.webhooks().await?.len() >= MAX_WEBHOOKS {
            return Err(AuthError::InvalidRequest(format!(
                "at most {MAX_WEBHOOKS} webhooks"
            )));
        }
        let mut key = [0u8; 32];
        random(&mut key)?;
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let record = WebhookRecord {
            id: format!("wh_{}", Uuid::now_v7().simple()),
            url: url.to_string(),
            events: events.join(" "),
            secret: self.master.seal(SEAL_LABEL, secret.as_bytes())?,
            created_at: self.now(),
            disabled_at: None,
        };
        self.store.insert_webhook(&record).await?;
        let detail = Some(format!(
            "{} {} for {}",
            record.id, record.url, record.events
        ));
        self.audit_admin(actor, EventKind::WebhookAdded, None, None, detail)
            .await;
        Ok((Webhook::from(&record), secret))
    }

    pub async fn webhooks(&self) -> Result<Vec<Webhook>, AuthError> {
        Ok(self
            .store
            .webhooks()
            .await?
            .iter()
            .map(Webhook::from)
            .collect())
    }

    pub async fn remove_webhook(&self, id: &str, actor: &Actor) -> Result<(), AuthError> {
        if !self.store.delete_webhook(id).await? {
            return Err(AuthError::NotFound);
        }
        let detail = Some(format!("webhook {id}"));
        self.audit_admin(actor, EventKind::WebhookRemoved, None, None, detail)
            .await;
        Ok(())
    }

    /// An endpoint's recent deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, AuthError> {
        Ok(self.store.deliveries(id, limit).await?)
    }

    /// Sends a delivery's event to its endpoint again (same event id).
    pub async fn replay_delivery(&self, id: i64, actor: &Actor) -> Result<i64, AuthError> {
        let again = self
            .store
            .replay_delivery(id, self.now())
            .await?
            .ok_or(AuthError::NotFound)?;
        self.hooks_wake.0.notify_one();
        let detail = Some(format!("delivery {id} sent again as {again}"));
        self.audit_admin(actor, EventKind::DeliveryReplayed, None, None, detail)
            .await;
        Ok(again)
    }

    /// Sends a `webhook.test` event to one endpoint.
    pub async fn test_webhook(&self, id: &str, actor: &Actor) -> Result<String, AuthError> {
        if !self.store.webhooks().await?.iter().any(|h| h.id == id) {
            return Err(AuthError::NotFound);
        }
        let mut event = self.hook_event("webhook.test", None, json!({ "webhook_id": id }));
        event.only_to = Some(id.to_string());
        let event_id = event.id.clone();
        let outgoing = Outgoing {
            events: vec![event],
            ..Default::default()
        };
        self.post(&outgoing).await?;
        let detail = Some(format!("webhook {id}: event {event_id}"));
        self.audit_admin(actor, EventKind::WebhookTested, None, None, detail)
            .await;
        Ok(event_id)
    }

    /// A webhook event of `kind` about `user_id`, now.
    pub(super) fn hook_event(
        &self,
        kind: &str,
        user_id: Option<&str>,
        data: Value,
    ) -> NewWebhookEvent {
        event(kind, user_id, data, self.now())
    }

    /// Enables an endpoint again (one disabled after failing for its whole
    /// retry window, or by hand) or disables it.
    pub async fn set_webhook_enabled(
        &self,
        id: &str,
        enabled: bool,
        actor: &Actor,
    ) -> Result<bool, AuthError> {
        if !self.store.webhooks().await?.iter().any(|h| h.id == id) {
            return Err(AuthError::NotFound);
        }
        let at = (!enabled).then(|| self.now());
        let changed = self.store.set_webhook_disabled(id, at).await?;
        let kind = match enabled {
            true => EventKind::WebhookEnabled,
            false => EventKind::WebhookDisabled,
        };
        let detail = Some(format!("webhook {id}"));
        self.audit_admin(actor, kind, None, None, detail).await;
        Ok(changed)
    }

    /// An outgoing of the one event `kind` about `user_id`, now.
    pub(super) fn news(&self, kind: &str, user_id: Option<&str>, data: Value) -> Outgoing {
        Outgoing {
            events: vec![self.hook_event(kind, user_id, data)],
            ..Default::default()
        }
    }

    /// What tells the webhooks which sessions of `user_id` a change ended
    /// and why: one `session.revoked` naming them, built by the store in
    /// the change's transaction (nothing when the user had none).
    pub(super) fn sessions_ended(&self, user_id: &str, reason: RevokeReason) -> EndedEvents {
        let (user_id, now) = (user_id.to_string(), self.now());
        EndedEvents(Arc::new(move |ids: &[String]| {
            if ids.is_empty() {
                return Vec::new();
            }
            let data = json!({
                "user_id": user_id,
                "session_ids": ids,
                "sessions": ids.len(),
                "reason": reason.as_str(),
            });
            vec![event("session.revoked", Some(&user_id), data, now)]
        }))
    }

    /// Tells the delivery workers that `outgoing` was written.
    pub(super) fn written(&self, outgoing: &Outgoing) {
        if !outgoing.mails.is_empty() {
            self.mail.wake();
        }
        if outgoing.has_events() {
            self.hooks_wake.0.notify_one();
        }
    }

    /// Sends the attempts the login throttle refused — one summary a period
    /// per account, and one for addresses without an account — instead of
    /// one event per attempt (an attacker's guesses can arrive by the
    /// thousand). Returns when the next summary is due.
    pub async fn summarise_throttled(&self) -> Result<i64, AuthError> {
        let now = self.now();
        let until = now - SUMMARY_LAG;
        let build = move |counts: &[EventTally], from: i64| Outgoing {
            events: throttled_summaries(counts, from, until, now),
            ..Default::default()
        };
        let position = self
            .store
            .tally_events(
                EventKind::LoginThrottled.as_str(),
                until - THROTTLED_SUMMARY_PERIOD,
                until,
                THROTTLED_SUMMARY_PERIOD,
                &build,
            )
            .await?;
        if position == until {
            self.hooks_wake.0.notify_one();
        }
        Ok(position + THROTTLED_SUMMARY_PERIOD + SUMMARY_LAG)
    }

    /// What the webhook delivery worker waits on.
    pub fn hook_waker(&self) -> HookWaker {
        self.hooks_wake.clone()
    }

    pub fn hook_policy(&self) -> WebhookPolicy {
        self.hook_policy
    }
}

/// One `user.login_failed` per user (and one for unknown addresses) from
/// the counts of refused attempts between `from` and `until`.
fn throttled_summaries(
    counts: &[EventTally],
    from: i64,
    until: i64,
    now: i64,
) -> Vec<NewWebhookEvent> {
    let mut by_user: BTreeMap<Option<&str>, Vec<&EventTally>> = BTreeMap::new();
    for count in counts {
        by_user
            .entry(count.user_id.as_deref())
            .or_default()
            .push(count);
    }
    by_user
        .into_iter()
        .map(|(user_id, mut rows)| {
            rows.sort_by_key(|r| std::cmp::Reverse(r.count));
            let ips: Vec<&str> = rows
                .iter()
                .filter_map(|r| r.ip.as_deref())
                .take(SUMMARY_IPS)
                .collect();
            let data = json!({
                "user_id": user_id,
                "email": rows[0].email,
                "ip": null,
                "device": null,
                "throttled": true,
                "attempts": rows.iter().map(|r| r.count).sum::<i64>(),
                "first_at": super::clock::rfc3339(rows.iter().map(|r| r.first_at).min().unwrap_or(from)),
                "last_at": super::clock::rfc3339(rows.iter().map(|r| r.last_at).max().unwrap_or(until)),
                "window": {
                    "from": super::clock::rfc3339(from),
                    "until": super::clock::rfc3339(until),
                },
                "ips": ips,
            });
            event("user.login_failed", user_id, data, now)
        })
        .collect()
}

/// A webhook event of `kind` about `user_id` at `now`, as sent: the
/// Standard Webhooks envelope `{"type", "timestamp", "data"}`.
pub fn event(kind: &str, user_id: Option<&str>, data: Value, now: i64) -> NewWebhookEvent {
    let payload = json!({
        "type": kind,
        "timestamp": super::clock::rfc3339(now),
        "data": data,
    });
    NewWebhookEvent {
        id: format!("msg_{}", Uuid::now_v7().simple()),
        kind: kind.to_string(),
        user_id: user_id.map(str::to_string),
        payload: payload.to_string(),
        created_at: now,
        only_to: None,
    }
}

fn check_events(events: &[String]) -> Result<Vec<String>, AuthError> {
    let events: Vec<String> = events
        .iter()
        .flat_map(|e| e.split(','))
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if events.is_empty() {
        return Err(AuthError::InvalidRequest(
            "name the events to send, or * for all".into(),
        ));
    }
    if events.iter().any(|e| e == "*") {
        return Ok(vec!["*".to_string()]);
    }
    if let Some(unknown) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
        return Err(AuthError::InvalidRequest(format!(
            "unknown event {unknown:?}; one of {}",
            EVENT_TYPES.join(", ")
        )));
    }
    Ok(events)
}
