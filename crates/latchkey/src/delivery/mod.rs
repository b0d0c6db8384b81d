//! Delivery: the background worker that takes sealed messages from the
//! outbox and hands them to the transport — an SMTP server, or, when none
//! is configured, the outbox folder in the data directory (one `.eml` file
//! per message). A failed attempt is tried again with growing pauses; a
//! message the server refuses for good, or that fails too often, is given
//! up and shown by `latchkey mail outbox`. Several instances share one
//! outbox: each message is taken by one of them at a time (a lease).

mod hooks;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub use self::hooks::Dispatcher;
pub use self::transport::{Transport, TransportError};
use crate::domain::clock::Clock;
use crate::domain::mail::Message;
use crate::domain::secrets::MasterKey;
use crate::store::{Delivery, MailRecord, Store};

/// Messages taken per look at the outbox.
const BATCH: i64 = 20;
/// How long a taken message is hidden from other instances; longer than
/// a slow SMTP exchange.
const LEASE_SECONDS: i64 = 120;
/// The outbox is looked at this often even when nothing says it changed
/// (another instance may have written to it).
const POLL: Duration = Duration::from_secs(1);
/// Pause after the first failed attempt, doubled each time up to [`MAX_PAUSE`].
const FIRST_PAUSE: i64 = 30;
const MAX_PAUSE: i64 = 3600;
/// Attempts before a message is given up (about three hours of trying).
pub const MAX_ATTEMPTS: i64 = 10;

/// The worker: the outbox, the key its messages are sealed with, and the transport.
pub struct Courier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: MasterKey,
    transport: Transport,
    /// Woken when this instance writes mail, so it goes out at once.
    wake: Arc<Notify>,
}

impl Courier {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: MasterKey,
        transport: Transport,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            clock,
            master,
            transport,
            wake,
        }
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Delivers until the task is dropped.
    pub async fn run(&self) {
        loop {
            match self.deliver_due().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading the mail outbox failed"),
            }
            let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
        }
    }

    /// Takes the messages due now and attempts each once; returns how many.
    pub async fn deliver_due(&self) -> Result<usize, crate::store::StoreError> {
        let now = self.clock.now();
        let due = self
            .store
            .claim_mail(now, now + LEASE_SECONDS, BATCH)
            .await?;
        for mail in &due {
            let outcome = self.attempt(mail).await;
            if let Err(e) = self.store.finish_mail(mail.id, &outcome).await {
                tracing::warn!(error = %e, mail_id = mail.id, "recording a delivery failed; the message may be sent again");
            }
        }
        Ok(due.len())
    }

    async fn attempt(&self, mail: &MailRecord) -> Delivery {
        let started = std::time::Instant::now();
        let result = match &mail.sealed {
            Some(sealed) => match Message::open(&self.master, sealed) {
                Ok(message) => self.transport.send(mail, &message).await,
                Err(e) => Err(TransportError::Permanent(format!(
                    "cannot open the message (was the master key changed?): {e}"
                ))),
            },
            None => Err(TransportError::Permanent(
                "the message has no content".into(),
            )),
        };
        let now = self.clock.now();
        let kind = mail.kind.as_str();
        match result {
            Ok(()) => {
                metrics::counter!("latchkey_mail_sent_total").increment(1);
                metrics::histogram!("latchkey_mail_delivery_seconds")
                    .record(started.elapsed().as_secs_f64());
                tracing::info!(
                    mail_id = mail.id,
                    kind,
                    queued_for_s = now - mail.created_at,
                    "mail sent"
                );
                Delivery::Sent { at: now }
            }
            Err(TransportError::Permanent(error)) => {
                metrics::counter!("latchkey_mail_failed_total").increment(1);
                tracing::error!(mail_id = mail.id, kind, error = %error, "mail refused for good; given up");
                Delivery::Failed { at: now, error }
            }
            Err(TransportError::Transient(error)) if mail.attempts >= MAX_ATTEMPTS => {
                metrics::counter!("latchkey_mail_failed_total").increment(1);
                tracing::error!(mail_id = mail.id, kind, error = %error, attempts = mail.attempts, "mail given up after repeated failures");
                Delivery::Failed { at: now, error }
            }
            Err(TransportError::Transient(error)) => {
                let pause = retry_pause(mail.attempts);
                tracing::warn!(mail_id = mail.id, kind, error = %error, retry_in_s = pause, "mail not sent; will try again");
                Delivery::Retry {
                    at: now + pause,
                    error,
                }
            }
        }
    }
}

/// The pause after attempt number `attempts` failed.
pub fn retry_pause(attempts: i64) -> i64 {
    let doublings = attempts.clamp(1, 20) - 1;
    (FIRST_PAUSE << doublings).min(MAX_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_thirty_seconds_to_an_hour_and_give_up_after_about_three_hours() {
        let pauses: Vec<i64> = (1..MAX_ATTEMPTS).map(retry_pause).collect();
        assert_eq!(pauses[..4], [30, 60, 120, 240]);
        assert!(pauses.iter().all(|p| *p <= MAX_PAUSE));
        let total: i64 = pauses.iter().sum();
        assert!(
            (3 * 3600 - 600..=3 * 3600 + 600).contains(&total),
            "{total} s"
        );
    }
}
