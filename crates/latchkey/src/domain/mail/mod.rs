//! What Latchkey mails and how a message is made: the kinds of message,
//! their links into the front end, the single-use tokens they carry, and
//! the sealed form a message waits in the outbox. Sending is not the
//! domain's: the delivery worker takes sealed messages from the outbox.
//!
//! - [`templates`]: the built-in and overriding templates, and languages.

pub mod templates;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use minijinja::Value;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::secrets::{MasterKey, SecretError, random_b64};
use crate::store::NewMail;
pub use templates::{Rendered, TemplateError, Templates};

/// The label a message is sealed under in the outbox.
const SEAL_LABEL: &str = "mail-outbox";

/// Every message Latchkey sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    VerifyEmail,
    PasswordReset,
    /// To the new address: the link that confirms it.
    EmailChange,
    /// To the old address when a change is asked for: the way back.
    EmailChangeRequested,
    /// To the old address once the change is done: the way back.
    EmailChanged,
    PasswordChanged,
    NewDevice,
    RefreshReuse,
    AccountDisabled,
    /// To an address that has an account, when someone registers it again
    /// while verification is required (the registration looks like a new one).
    AccountExists,
    /// A second factor turned on or off, a recovery code used, new codes made.
    SecondFactor,
    /// `latchkey mail test`.
    Test,
}

impl MailKind {
    pub const ALL: [MailKind; 12] = [
        MailKind::VerifyEmail,
        MailKind::PasswordReset,
        MailKind::EmailChange,
        MailKind::EmailChangeRequested,
        MailKind::EmailChanged,
        MailKind::PasswordChanged,
        MailKind::NewDevice,
        MailKind::RefreshReuse,
        MailKind::AccountDisabled,
        MailKind::AccountExists,
        MailKind::SecondFactor,
        MailKind::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::VerifyEmail => "verify_email",
            MailKind::PasswordReset => "password_reset",
            MailKind::EmailChange => "email_change",
            MailKind::EmailChangeRequested => "email_change_requested",
            MailKind::EmailChanged => "email_changed",
            MailKind::PasswordChanged => "password_changed",
            MailKind::NewDevice => "new_device",
            MailKind::RefreshReuse => "refresh_reuse",
            MailKind::AccountDisabled => "account_disabled",
            MailKind::AccountExists => "account_exists",
            MailKind::SecondFactor => "second_factor",
            MailKind::Test => "test",
        }
    }
}

/// Whether accounts must prove their address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// No verification mail is sent.
    Off,
    /// Sent on registration; signing in does not wait for it.
    #[default]
    Optional,
    /// Sent on registration; signing in is refused until it is done.
    Required,
}

/// The security notices an operator can turn off, one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    NewDevice,
    PasswordChanged,
    EmailChanged,
    RefreshReuse,
    AccountDisabled,
    SecondFactor,
}

impl Notice {
    pub const ALL: [Notice; 6] = [
        Notice::NewDevice,
        Notice::PasswordChanged,
        Notice::EmailChanged,
        Notice::RefreshReuse,
        Notice::AccountDisabled,
        Notice::SecondFactor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Notice::NewDevice => "new_device",
            Notice::PasswordChanged => "password_changed",
            Notice::EmailChanged => "email_changed",
            Notice::RefreshReuse => "refresh_reuse",
            Notice::AccountDisabled => "account_disabled",
            Notice::SecondFactor => "second_factor",
        }
    }
}

/// How mail flows are set up, in seconds where a time.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The front end's base URL, without a trailing slash.
    pub app_url: String,
    pub verification: Verification,
    pub notices: Vec<Notice>,
    pub reset_ttl: i64,
    pub verify_ttl: i64,
    pub email_change_ttl: i64,
    /// How long the old address can undo an email change.
    pub cancel_ttl: i64,
}

/// A message as it waits in the outbox, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Message {
    /// Opens a message sealed by [`Mailer::compose`].
    pub fn open(master: &MasterKey, sealed: &[u8]) -> Result<Message, SecretError> {
        let plain = master.open(SEAL_LABEL, sealed)?;
        serde_json::from_slice(&plain).map_err(|_| SecretError::Malformed)
    }
}

/// A fresh token for a link, and the digest it is stored under.
pub struct LinkToken {
    pub token: String,
    pub digest: String,
}

impl LinkToken {
    /// 256 random bits.
    pub fn new() -> Result<Self, SecretError> {
        let token = random_b64(32)?;
        let digest = digest(&token);
        Ok(Self { token, digest })
    }
}

/// The stored form of a link token: hex SHA-256 (the token is random, so a
/// fast digest is as good as a slow one, and lookups can be by equality).
pub fn digest(token: &str) -> String {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes messages: renders them in the reader's language and seals them.
pub struct Mailer {
    templates: Templates,
    config: MailConfig,
    master: MasterKey,
    /// The front end's host, as messages name the site.
    site: String,
    /// Told when mail is written, so this instance's worker sends it at once.
    wake: Arc<Notify>,
}

impl Mailer {
    pub fn new(
        config: MailConfig,
        templates_dir: Option<&Path>,
        master: MasterKey,
    ) -> Result<Self, TemplateError> {
        let site = url::Url::parse(&config.app_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| config.app_url.clone());
        Ok(Self {
            templates: Templates::load(templates_dir)?,
            config,
            master,
            site,
            wake: Arc::new(Notify::new()),
        })
    }

    /// What the delivery worker waits on.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Tells the delivery worker that mail was written.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn config(&self) -> &MailConfig {
        &self.config
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    pub fn notifies(&self, notice: Notice) -> bool {
        self.config.notices.contains(&notice)
    }

    /// A link into the front end: `{app_url}{path}#token=…`. The token is
    /// in the fragment, which browsers never send to a server or put in a
    /// Referer, so it stays out of access logs.
    pub fn link(&self, path: &str, token: &str) -> String {
        format!("{}{path}#token={token}", self.config.app_url)
    }

    /// The site as messages name it: the front end's host.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The page where a forgotten password is reset (no token: it asks for one).
    pub fn reset_page(&self) -> String {
        format!("{}/forgot-password", self.config.app_url)
    }

    /// Renders `kind` for `to` in `lang` with `values` (plus `site`) and seals it.
    pub fn compose(
        &self,
        kind: MailKind,
        to: &str,
        lang: &str,
        values: Vec<(&'static str, Value)>,
        now: i64,
    ) -> Result<NewMail, ComposeError> {
        let mut context: BTreeMap<&str, Value> = values.into_iter().collect();
        context.insert("site", Value::from(self.site.as_str()));
        let rendered = self.templates.render(kind, lang, context)?;
        let message = Message {
            to: to.to_string(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
        };
        let plain = serde_json::to_vec(&message).map_err(|e| ComposeError::Seal(e.to_string()))?;
        let sealed = self
            .master
            .seal(SEAL_LABEL, &plain)
            .map_err(|e| ComposeError::Seal(e.to_string()))?;
        Ok(NewMail {
            recipient: to.to_string(),
            kind: kind.as_str().to_string(),
            sealed,
            created_at: now,
        })
    }
}

/// Why a message could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("sealing a message: {0}")]
    Seal(String),
}

/// A time as messages show it: `2026-12-04 05:12 UTC`.
pub fn show_time(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}
