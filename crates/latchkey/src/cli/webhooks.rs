//! `latchkey webhooks`: the operator's endpoints and their deliveries.

use anyhow::bail;
use clap::Subcommand;

use super::explain;
use crate::app::App;
use crate::domain::Actor;
use crate::domain::text::printable;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Add an endpoint; prints its id and signing secret (shown this once).
    Add {
        url: String,
        /// Comma-separated event types, or * for all (see docs/webhooks.md).
        #[arg(long)]
        events: String,
    },
    /// List the endpoints.
    List,
    /// Remove an endpoint and its deliveries.
    Remove { id: String },
    /// Turn an endpoint back on (one disabled after failing for its whole retry window).
    Enable { id: String },
    /// Stop delivering to an endpoint (what is due meanwhile is given up).
    Disable { id: String },
    /// Send a webhook.test event to an endpoint now and report its answer.
    Test { id: String },
    /// Send a delivery's event again (same event id), e.g. after the receiver was fixed.
    Replay { delivery: i64 },
    /// An endpoint's recent deliveries, newest first.
    Deliveries {
        id: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

pub async fn run(cmd: WebhooksCommand, app: &App) -> anyhow::Result<()> {
    let auth = &app.state.auth;
    match cmd {
        WebhooksCommand::Add { url, events } => {
            let (hook, secret) = auth
                .add_webhook(&url, &[events], &Actor::cli())
                .await
                .map_err(explain)?;
            println!("webhook_id: {}", hook.id);
            println!("secret: {secret}");
            println!("events: {}", hook.events.join(" "));
            println!("(the secret is shown once: verify deliveries with it, docs/webhooks.md)");
        }
        WebhooksCommand::List => {
            println!("{:<36}  {:<8}  {:<40}  EVENTS", "ID", "STATE", "URL");
            for h in auth.webhooks().await.map_err(explain)? {
                let state = if h.disabled { "disabled" } else { "enabled" };
                println!(
                    "{:<36}  {:<8}  {:<40}  {}",
                    h.id,
                    state,
                    printable(&h.url),
                    h.events.join(" ")
                );
            }
        }
        WebhooksCommand::Enable { id } => {
            auth.set_webhook_enabled(&id, true, &Actor::cli())
                .await
                .map_err(explain)?;
            println!("enabled {id}");
        }
        WebhooksCommand::Disable { id } => {
            auth.set_webhook_enabled(&id, false, &Actor::cli())
                .await
                .map_err(explain)?;
            println!("disabled {id}");
        }
        WebhooksCommand::Remove { id } => {
            auth.remove_webhook(&id, &Actor::cli())
                .await
                .map_err(explain)?;
            println!("removed {id}");
        }
        WebhooksCommand::Test { id } => {
            let event_id = auth
                .test_webhook(&id, &Actor::cli())
                .await
                .map_err(explain)?;
            app.dispatcher.deliver_due().await?;
            let sent = auth.webhook_deliveries(&id, 20).await.map_err(explain)?;
            match sent.iter().find(|d| d.event_id == event_id) {
                Some(d) if d.delivered_at.is_some() => println!(
                    "delivered {event_id}: {} in {} ms",
                    d.last_status.unwrap_or_default(),
                    d.last_latency_ms.unwrap_or_default()
                ),
                Some(d) => bail!(
                    "not delivered: {}",
                    printable(d.last_error.as_deref().unwrap_or("no answer yet"))
                ),
                None => bail!("the test event was not queued"),
            }
        }
        WebhooksCommand::Replay { delivery } => {
            let again = auth
                .replay_delivery(delivery, &Actor::cli())
                .await
                .map_err(explain)?;
            app.dispatcher.deliver_due().await?;
            println!("delivery {delivery} queued again as delivery {again}");
        }
        WebhooksCommand::Deliveries { id, limit } => {
            println!(
                "{:<8}  {:<26}  {:<24}  {:<9}  {:<6}  {:<7}  {:<8}  LAST ERROR",
                "ID", "EVENT", "TYPE", "STATE", "STATUS", "MS", "TRIES"
            );
            for d in auth.webhook_deliveries(&id, limit).await.map_err(explain)? {
                let state = match (d.delivered_at, d.failed_at) {
                    (Some(_), _) => "delivered",
                    (_, Some(_)) => "given up",
                    _ => "pending",
                };
                println!(
                    "{:<8}  {:<26}  {:<24}  {:<9}  {:<6}  {:<7}  {:<8}  {}",
                    d.id,
                    d.event_id,
                    d.event_type,
                    state,
                    d.last_status.map_or("-".into(), |s| s.to_string()),
                    d.last_latency_ms.map_or("-".into(), |s| s.to_string()),
                    d.attempts,
                    printable(d.last_error.as_deref().unwrap_or("-"))
                );
            }
        }
    }
    Ok(())
}
