//! `latchkey mail`: send a test message through the configured transport,
//! and look at (and retry) what the outbox has not delivered.

use anyhow::bail;
use clap::Subcommand;

use super::explain;
use crate::app::App;
use crate::domain::clock::rfc3339;
use crate::domain::text::printable;

/// Most messages `mail outbox` lists.
const OUTBOX_LIMIT: i64 = 200;

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Queue a test message to ADDRESS and try to deliver it now, reporting
    /// what the SMTP server (or the outbox folder) answered.
    Test { address: String },
    /// List the messages not delivered yet: waiting for a retry, or given up.
    Outbox {
        /// Make every message given up due again.
        #[arg(long)]
        retry: bool,
    },
}

pub async fn run(cmd: MailCommand, app: &App) -> anyhow::Result<()> {
    let auth = &app.state.auth;
    match cmd {
        MailCommand::Test { address } => {
            auth.send_test_mail(&address).await.map_err(explain)?;
            app.courier.deliver_due().await?;
            let unsent = auth.unsent_mail(OUTBOX_LIMIT).await.map_err(explain)?;
            let mine = unsent
                .iter()
                .rev()
                .find(|m| m.kind == "test" && m.recipient == address);
            match mine {
                None => println!(
                    "test message delivered to {} through the {}",
                    printable(&address),
                    app.courier.transport().describe()
                ),
                Some(m) => bail!(
                    "the test message was not delivered through the {}: {}",
                    app.courier.transport().describe(),
                    m.last_error.as_deref().unwrap_or("no answer yet")
                ),
            }
        }
        MailCommand::Outbox { retry } => {
            if retry {
                let n = auth.retry_failed_mail().await.map_err(explain)?;
                println!("{n} message(s) given up are due again");
            }
            println!(
                "{:<8}  {:<24}  {:<32}  {:<8}  {:<20}  LAST ERROR",
                "ID", "KIND", "TO", "TRIES", "STATE"
            );
            for m in auth.unsent_mail(OUTBOX_LIMIT).await.map_err(explain)? {
                let state = match m.failed_at {
                    Some(at) => format!("given up {}", rfc3339(at)),
                    None => format!("next {}", rfc3339(m.next_attempt_at)),
                };
                println!(
                    "{:<8}  {:<24}  {:<32}  {:<8}  {:<20}  {}",
                    m.id,
                    m.kind,
                    printable(&m.recipient),
                    m.attempts,
                    state,
                    printable(m.last_error.as_deref().unwrap_or("-"))
                );
            }
        }
    }
    Ok(())
}
