//! The mail settings: where links point, how mail leaves (an SMTP server,
//! or the outbox folder when none is set), and which flows and notices run.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::mail::{Notice, Verification};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte (port 465).
    Implicit,
    /// `smtp://` (default): STARTTLS, and the message is not sent without it.
    Required,
    /// `smtp://…?tls=opportunistic`: STARTTLS when the server offers it.
    Opportunistic,
    /// `smtp://…?tls=none`: plain text, for a relay on the same host.
    None,
}

/// A parsed `smtp_url`; its `Debug` hides the password.
#[derive(Clone)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl SmtpUrl {
    /// The password, for the transport only.
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(|p| p.expose_secret())
    }
}

/// Mail and the flows over it.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// The front end's base URL that links open; `None` = the issuer.
    pub app_url: Option<String>,
    /// The SMTP server; `None` writes each message to the outbox folder.
    pub smtp: Option<SmtpUrl>,
    /// Time limit for connecting to and talking with the SMTP server.
    pub smtp_timeout: Duration,
    /// A PEM file of certificates trusted for the SMTP server besides the
    /// public roots (a relay with a private CA).
    pub smtp_ca_file: Option<PathBuf>,
    /// The sender (`Name <address>` or an address); `None` = no-reply at the issuer's host.
    pub mail_from: Option<String>,
    /// A folder of templates over the built-in ones.
    pub templates: Option<PathBuf>,
    pub verification: Verification,
    /// How long a verification link works.
    pub verification_ttl: Duration,
    /// How long a password reset link works.
    pub reset_ttl: Duration,
    /// The security notices sent.
    pub notices: Vec<Notice>,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            app_url: None,
            smtp: None,
            smtp_timeout: Duration::from_secs(10),
            smtp_ca_file: None,
            mail_from: None,
            templates: None,
            verification: Verification::Optional,
            verification_ttl: Duration::from_secs(24 * 3600),
            reset_ttl: Duration::from_secs(30 * 60),
            notices: Notice::ALL.to_vec(),
        }
    }
}

pub(super) fn parse_smtp_url(s: &str) -> Result<SmtpUrl, String> {
    let url = url::Url::parse(s)
        .map_err(|e| format!("expected smtp://HOST[:PORT] or smtps://HOST[:PORT] ({e})"))?;
    let implicit = match url.scheme() {
        "smtps" => true,
        "smtp" => false,
        other => {
            return Err(format!(
                "unsupported scheme {other:?}: use smtp:// (STARTTLS) or smtps:// (TLS)"
            ));
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL names no host")?
        .trim_matches(['[', ']'])
        .to_string();
    let mut tls = if implicit {
        SmtpTls::Implicit
    } else {
        SmtpTls::Required
    };
    for (key, value) in url.query_pairs() {
        match (key.as_ref(), value.as_ref(), implicit) {
            ("tls", "required", false) => tls = SmtpTls::Required,
            ("tls", "opportunistic", false) => tls = SmtpTls::Opportunistic,
            ("tls", "none", false) => tls = SmtpTls::None,
            ("tls", _, true) => {
                return Err("smtps:// is always TLS; tls= applies to smtp://".into());
            }
            ("tls", other, _) => {
                return Err(format!(
                    "tls={other:?}: expected required, opportunistic or none"
                ));
            }
            (other, _, _) => return Err(format!("unknown parameter {other:?}: only tls= is read")),
        }
    }
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| "the user or password is not valid percent-encoded UTF-8".to_string())
    };
    let username = Some(url.username())
        .filter(|u| !u.is_empty())
        .map(decode)
        .transpose()?;
    let password = url
        .password()
        .map(decode)
        .transpose()?
        .map(SecretString::from);
    Ok(SmtpUrl {
        port: url.port().unwrap_or(if implicit { 465 } else { 587 }),
        host,
        tls,
        username,
        password,
    })
}

pub(super) fn parse_mailbox(s: &str) -> Result<String, String> {
    s.parse::<lettre::message::Mailbox>()
        .map(|m| m.to_string())
        .map_err(|e| format!("expected an address or `Name <address>` ({e})"))
}

pub(super) fn parse_verification(s: &str) -> Result<Verification, String> {
    match s.to_ascii_lowercase().as_str() {
        "off" => Ok(Verification::Off),
        "optional" => Ok(Verification::Optional),
        "required" => Ok(Verification::Required),
        _ => Err("expected off, optional or required".into()),
    }
}

/// One notice by name; `all` and `none` are read by the caller.
pub(super) fn parse_notice(s: &str) -> Result<Notice, String> {
    Notice::ALL
        .into_iter()
        .find(|n| n.as_str() == s.to_ascii_lowercase())
        .ok_or_else(|| {
            let names: Vec<&str> = Notice::ALL.iter().map(|n| n.as_str()).collect();
            format!("expected all, none or a list of: {}", names.join(", "))
        })
}
