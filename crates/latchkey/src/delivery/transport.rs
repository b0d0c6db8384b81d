//! Where messages go: an SMTP server through lettre, or `.eml` files in a
//! folder that any mail client opens.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentTransferEncoding;
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{SmtpTls, SmtpUrl};
use crate::domain::mail::Message;
use crate::store::MailRecord;

/// Why an attempt failed, and whether another could succeed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

pub enum Transport {
    Smtp {
        mailer: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        /// `host:port`, for logs.
        server: String,
    },
    Folder {
        dir: PathBuf,
        from: Mailbox,
    },
}

impl Transport {
    /// A transport to the server of `url`, trusting the certificates of
    /// `extra_roots` (PEM) besides the public roots.
    pub fn smtp(
        url: &SmtpUrl,
        timeout: Duration,
        extra_roots: Option<&[u8]>,
        from: Mailbox,
    ) -> Result<Self, String> {
        let host = url.host.as_str();
        let roots = match extra_roots {
            Some(pem) => split_pem(pem)
                .iter()
                .map(|one| Certificate::from_pem(one).map_err(|e| format!("smtp_ca_file: {e}")))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        if extra_roots.is_some() && roots.is_empty() {
            return Err("smtp_ca_file holds no PEM certificate".into());
        }
        let tls = |host: &str| {
            roots
                .iter()
                .fold(TlsParameters::builder(host.to_string()), |b, cert| {
                    b.add_root_certificate(cert.clone())
                })
                .build()
                .map_err(|e| e.to_string())
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(url.port);
        let builder = match url.tls {
            SmtpTls::Implicit => builder.tls(Tls::Wrapper(tls(host)?)),
            SmtpTls::Required => builder.tls(Tls::Required(tls(host)?)),
            SmtpTls::Opportunistic => builder.tls(Tls::Opportunistic(tls(host)?)),
            SmtpTls::None => builder.tls(Tls::None),
        };
        let builder = builder.timeout(Some(timeout));
        let builder = match (&url.username, url.password()) {
            (Some(user), password) => builder.credentials(Credentials::new(
                user.clone(),
                password.unwrap_or_default().to_string(),
            )),
            (None, _) => builder,
        };
        Ok(Transport::Smtp {
            mailer: builder.build(),
            from,
            server: format!("{}:{}", url.host, url.port),
        })
    }

    pub fn folder(dir: PathBuf, from: Mailbox) -> Self {
        Transport::Folder { dir, from }
    }

    /// What the transport is, for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp { server, .. } => format!("SMTP server {server}"),
            Transport::Folder { dir, .. } => format!("outbox folder {}", dir.display()),
        }
    }

    pub async fn send(&self, mail: &MailRecord, message: &Message) -> Result<(), TransportError> {
        let from = match self {
            Transport::Smtp { from, .. } | Transport::Folder { from, .. } => from.clone(),
        };
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|e| TransportError::Permanent(format!("invalid recipient: {e}")))?;
        // A file is read as it is: its text stays unencoded (8bit), so a
        // link can be copied from it. Over SMTP lettre picks the encoding.
        let parts = match self {
            Transport::Folder { .. } => MultiPart::alternative()
                .singlepart(SinglePart::plain(readable(&message.text)))
                .singlepart(SinglePart::html(readable(&message.html))),
            Transport::Smtp { .. } => {
                MultiPart::alternative_plain_html(message.text.clone(), message.html.clone())
            }
        };
        let email = lettre::Message::builder()
            .from(from)
            .to(to)
            .subject(message.subject.as_str())
            .multipart(parts)
            .map_err(|e| TransportError::Permanent(format!("building the message: {e}")))?;
        match self {
            Transport::Smtp { mailer, .. } => mailer.send(email).await.map(drop).map_err(|e| {
                if e.is_permanent() {
                    TransportError::Permanent(e.to_string())
                } else {
                    TransportError::Transient(e.to_string())
                }
            }),
            Transport::Folder { dir, .. } => {
                let name = format!("{}-{}-{}.eml", mail.created_at, mail.id, mail.kind);
                let path = dir.join(name);
                write_private(&path, &email.formatted()).map_err(|e| {
                    TransportError::Transient(format!("writing {}: {e}", path.display()))
                })?;
                tracing::info!(path = %path.display(), kind = %mail.kind, "mail written to the outbox folder (no smtp_url is set)");
                Ok(())
            }
        }
    }
}

/// Each `-----BEGIN CERTIFICATE-----` block of a PEM file, on its own.
fn split_pem(pem: &[u8]) -> Vec<Vec<u8>> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    text.split_inclusive(END)
        .filter(|block| block.contains("-----BEGIN CERTIFICATE-----"))
        .map(|block| block.trim().as_bytes().to_vec())
        .collect()
}

/// `text` unencoded: `8bit` where its lines are short enough, else
/// `binary` (RFC 2045's name for unencoded text with long lines, which a
/// file, unlike an SMTP hop, carries as it is).
fn readable(text: &str) -> Body {
    Body::new_with_encoding(text.to_string(), ContentTransferEncoding::EightBit)
        .or_else(|text| Body::new_with_encoding(text, ContentTransferEncoding::Binary))
        .unwrap_or_else(Body::new)
}

/// Writes `bytes` to `path` readable by the owner only (a message can hold
/// a link that signs in or resets a password), whole or not at all.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let partial = path.with_extension("eml.partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}
