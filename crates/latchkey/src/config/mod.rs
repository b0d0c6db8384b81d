//! Settings: turns built-in defaults, the TOML file, `LATCHKEY_*` environment
//! variables and command-line flags into one validated [`Settings`].
//!
//! Every value is checked here, at start-up, so the rest of the server can
//! trust its settings and a typo stops the process instead of being ignored.
//! This module reads only the configuration file: it never opens the database,
//! never touches the data directory (the generated master key is handled
//! elsewhere) and logs nothing, since telemetry is not running yet. Secrets
//! (the master key, the database password) never appear in its `Debug` output
//! or error messages.

//!
//! - [`args`]: the command-line flags (with their environment variables).
//! - [`file`]: the TOML layer, with a suggestion for a misspelt key.
//! - [`validate`]: one parser per kind of value, each naming what it expects.
//! - [`database_url`]: the database URL, which never shows its password.

mod args;
mod database_url;
mod file;
mod mail;
#[cfg(test)]
mod tests;
mod validate;

use std::{net::SocketAddr, num::NonZeroUsize, path::PathBuf, str::FromStr, time::Duration};

use ipnet::IpNet;
use latchkey_verify::SigningAlg;
use secrecy::SecretString;

pub use self::args::{DeploymentArgs, ServerArgs, SettingsArgs};
pub use self::database_url::DatabaseUrl;
use self::database_url::parse_database_url;
use self::file::{Layer, Raw, Reader, did_you_mean, env_name, flag_name, read_file};
pub use self::mail::{MailSettings, SmtpTls, SmtpUrl};
use self::mail::{parse_mailbox, parse_notice, parse_smtp_url, parse_verification};
pub use self::validate::parse_duration;
use self::validate::*;

const DEFAULT_DATA_DIR: &str = "./latchkey-data";
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Settings that hold several values: comma-separated in env and flags, and
/// also an array of strings in the TOML file.
const LIST_SETTINGS: [&str; 5] = [
    "trusted_proxies",
    "cors_origins",
    "mail_notices",
    "compat",
    "passkey_origins",
];
const DURATION_HINT: &str = "expected a duration such as 300, 300s, 5m, 2h or 7d";

/// The validated settings the server runs with. Its `Debug` shows no
/// secret: the master key and the database URL redact themselves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Where the embedded database and generated secrets live.
    pub data_dir: PathBuf,
    /// Base64 of the 32-byte master key; `None` means the generated key file
    /// in the data dir is used.
    pub master_key: Option<SecretString>,
    /// Where the database is.
    pub database_url: DatabaseUrl,
    /// `iss` of tokens, compared exactly by verifiers.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// A refresh token unused this long expires.
    pub refresh_idle_ttl: Duration,
    /// Absolute session lifetime; rotation never extends it.
    pub session_ttl: Duration,
    /// Window in which the previous refresh token gets the same successor.
    pub refresh_reuse_grace: Duration,
    /// How recent the proof of identity must be for sensitive changes.
    pub reauth_max_age: Duration,
    /// Algorithm for newly generated signing keys.
    pub signing_alg: SigningAlg,
    /// Argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// Password hashes computed at once.
    pub hash_concurrency: usize,
    /// Password hashes that may wait for a slot.
    pub hash_queue: usize,
    /// Tolerated clock skew when checking `exp`/`nbf`/`iat`.
    pub clock_leeway: Duration,
    /// Minimum password length in characters.
    pub password_min_length: usize,
    /// Credential requests per minute per client IP; 0 = off.
    pub ip_rate_limit: u32,
    /// Other credential requests per minute per client IP; 0 = off.
    pub token_rate_limit: u32,
    /// Failed logins per account before throttling; 0 = off.
    pub account_failure_limit: u32,
    /// Failed logins evaluated per account, device or session per day; 0 = no ceiling.
    pub account_daily_failure_limit: u32,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The header the trusted proxies write the client's address into.
    pub proxy_header: ProxyHeader,
    /// Browser origins (`scheme://host[:port]`, lower case) allowed with credentials.
    pub cors_origins: Vec<String>,
    /// The passkeys' relying-party id as set (a domain); see [`Settings::passkeys`].
    pub passkey_rp_id: Option<String>,
    /// The origins passkey ceremonies may come from, as set.
    pub passkey_origins: Vec<String>,
    /// `None` = pretty on a TTY, JSON otherwise.
    pub log_format: Option<LogFormat>,
    /// The bearer token `/metrics` requires; `None` leaves it public.
    pub metrics_token: Option<SecretString>,
    /// Time limit for one HTTP request.
    pub request_timeout: Duration,
    /// Time from accept to a complete first request head, and for every later head.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64) at most.
    pub max_connections_per_ip: usize,
    /// Size of the database connection pool.
    pub db_max_connections: u32,
    /// Time limit for one database statement (PostgreSQL).
    pub db_statement_timeout: Duration,
    /// Mail and the flows over it.
    pub mail: MailSettings,
    /// Webhooks may call http:// URLs and private, loopback or link-local
    /// addresses (development and tests only).
    pub webhook_allow_private: bool,
    /// How long a webhook delivery is retried before it is given up.
    pub webhook_retry_window: Duration,
    /// Other servers' URL sets served as well (`djoser`: djoser's and
    /// simplejwt's endpoints under `/auth/`).
    pub compat: Vec<Compat>,
}

/// An API of another server that Latchkey can serve as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// djoser's and djangorestframework-simplejwt's endpoints under `/auth/`.
    Djoser,
}

/// Where trusted proxies put the client's address. Only one is read: a
/// header the proxies do not write could come straight from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, …`
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1, …`
    Forwarded,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Why the settings could not be loaded; every message names the setting or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The passkey settings do not fit the issuer and app_url.
    #[error("invalid passkey settings: {0}")]
    Passkeys(String),
    /// `--config` names a file that does not exist.
    #[error("configuration file {} not found", .path.display())]
    FileNotFound {
        /// The configuration file.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read configuration file {}: {error}", .path.display())]
    FileUnreadable {
        /// The configuration file.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {} is not valid TOML: {detail}", .path.display())]
    FileSyntax {
        /// The configuration file.
        path: PathBuf,
        /// Line, column and parser message, never the offending text,
        /// which could be a secret.
        detail: String,
    },
    /// A key in the file is not a setting.
    #[error("unknown setting `{key}` in {}{}", .path.display(), did_you_mean(*.suggestion))]
    UnknownKey {
        /// The configuration file.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// The setting it was probably meant to be.
        suggestion: Option<&'static str>,
    },
    /// A key in the file holds a TOML type the setting cannot take.
    #[error("{setting} in {} must be {expected}", .path.display())]
    WrongType {
        /// The configuration file.
        path: PathBuf,
        /// The setting.
        setting: &'static str,
        /// The TOML types it takes.
        expected: &'static str,
    },
    /// A value that does not parse or is out of range.
    #[error(
        "invalid value for {setting} ({}, {}): {value:?}: {reason}",
        env_name(setting),
        flag_name(setting)
    )]
    Invalid {
        /// The setting, named as in the TOML file.
        setting: &'static str,
        /// The value as given, or `[redacted]` / the redacted URL for secrets.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A refresh token would outlive the session it belongs to.
    #[error(
        "refresh_idle_ttl ({}) must not be longer than session_ttl ({}): \
         a refresh token cannot outlive its session",
        show_duration(*.idle),
        show_duration(*.session)
    )]
    IdleLongerThanSession {
        /// The configured `refresh_idle_ttl`.
        idle: Duration,
        /// The configured `session_ttl`.
        session: Duration,
    },
}

impl Settings {
    /// Layers, in rising priority: built-in defaults, the TOML file
    /// (`config`), then env/flags (already merged by clap: flag > env).
    pub fn load(args: &SettingsArgs) -> Result<Settings, ConfigError> {
        let mut layer = match &args.deployment.config {
            Some(path) => read_file(path)?,
            None => Layer::new(),
        };
        for (name, value) in args.values() {
            if let Some(value) = value {
                layer.insert(name, Raw::One(value.clone()));
            }
        }
        Settings::from_layer(&Reader(&layer))
    }

    /// The built-in defaults, for a given data directory.
    pub fn defaults_in(data_dir: PathBuf) -> Settings {
        let listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        let issuer = format!("http://{listen}");
        Settings {
            listen,
            database_url: DatabaseUrl::sqlite_in(&data_dir),
            data_dir,
            master_key: None,
            audience: issuer.clone(),
            issuer,
            access_ttl: 5 * MINUTE,
            refresh_idle_ttl: 7 * DAY,
            session_ttl: 30 * DAY,
            refresh_reuse_grace: 10 * SECOND,
            reauth_max_age: 10 * MINUTE,
            signing_alg: SigningAlg::EdDSA,
            // OWASP's minimum for Argon2id: 19 MiB, 2 iterations, 1 lane.
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            hash_queue: 128,
            clock_leeway: 5 * SECOND,
            password_min_length: 8,
            ip_rate_limit: 60,
            token_rate_limit: 600,
            account_failure_limit: 5,
            account_daily_failure_limit: 50,
            trusted_proxies: Vec::new(),
            proxy_header: ProxyHeader::XForwardedFor,
            cors_origins: Vec::new(),
            passkey_rp_id: None,
            passkey_origins: Vec::new(),
            log_format: None,
            metrics_token: None,
            request_timeout: 30 * SECOND,
            header_read_timeout: 10 * SECOND,
            idle_timeout: MINUTE,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            db_max_connections: 10,
            db_statement_timeout: 5 * SECOND,
            mail: MailSettings::default(),
            webhook_allow_private: false,
            webhook_retry_window: DAY,
            compat: Vec::new(),
        }
    }

    /// Derived defaults (database from data dir, issuer from listen, audience
    /// from issuer) are filled in after layering, so moving the data dir alone
    /// moves the database, and setting the issuer alone moves the audience.
    fn from_layer(r: &Reader<'_>) -> Result<Settings, ConfigError> {
        let data_dir = r.opt("data_dir", parse_path)?;
        let mut s = Settings::defaults_in(data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()));
        r.set("listen", &mut s.listen, parse_listen)?;
        s.master_key = r.opt("master_key", parse_master_key)?;
        r.set("database_url", &mut s.database_url, parse_database_url)?;
        s.issuer = r
            .opt("issuer", parse_issuer)?
            .unwrap_or_else(|| format!("http://{}", s.listen));
        s.audience = r
            .opt("audience", parse_audience)?
            .unwrap_or_else(|| s.issuer.clone());
        s.read_tokens(r)?;
        s.read_hashing(r)?;
        s.read_http(r)?;
        s.read_mail(r)?;
        r.set(
            "webhook_allow_private",
            &mut s.webhook_allow_private,
            parse_bool,
        )?;
        r.set(
            "webhook_retry_window",
            &mut s.webhook_retry_window,
            seconds(MINUTE, Some(7 * DAY)),
        )?;
        s.compat = r.list("compat", |v| match v.to_ascii_lowercase().as_str() {
            "djoser" => Ok(Compat::Djoser),
            _ => Err("expected djoser".to_string()),
        })?;
        if s.refresh_idle_ttl > s.session_ttl {
            return Err(ConfigError::IdleLongerThanSession {
                idle: s.refresh_idle_ttl,
                session: s.session_ttl,
            });
        }
        s.passkeys().map_err(ConfigError::Passkeys)?;
        Ok(s)
    }

    /// The relying party passkeys use: its id and the origins ceremonies may
    /// come from. The id is `passkey_rp_id`, else the host of `app_url`,
    /// else the issuer's; it must be that host or a domain it belongs to.
    /// The origins are `passkey_origins`, else those of the issuer, `app_url`
    /// and `cors_origins` that belong to the id. None (passkeys off) when
    /// only IP addresses are at hand: browsers refuse passkeys there.
    pub fn passkeys(&self) -> Result<Option<(String, Vec<String>)>, String> {
        let host = |url: &str| {
            url::Url::parse(url)
                .ok()
                .and_then(|u| u.domain().map(str::to_string))
        };
        let under = |host: &str, id: &str| host == id || host.ends_with(&format!(".{id}"));
        let app = self.mail.app_url.as_deref();
        let hosts: Vec<String> = [app, Some(self.issuer.as_str())]
            .into_iter()
            .flatten()
            .filter_map(host)
            .collect();
        let Some(id) = self
            .passkey_rp_id
            .clone()
            .or_else(|| hosts.first().cloned())
        else {
            return Ok(None);
        };
        if !hosts.iter().any(|h| under(h, &id)) {
            return Err(format!(
                "passkey_rp_id {id} is neither the host of the issuer or app_url nor a domain they belong to"
            ));
        }
        if let Some(stray) = self
            .passkey_origins
            .iter()
            .find(|o| !host(o).is_some_and(|h| under(&h, &id)))
        {
            return Err(format!(
                "passkey_origins: {stray} is not on {id} or one of its subdomains"
            ));
        }
        let origins = match self.passkey_origins.is_empty() {
            false => self.passkey_origins.clone(),
            true => {
                let mut all: Vec<String> = [Some(self.issuer.as_str()), app]
                    .into_iter()
                    .flatten()
                    .map(|u| u.trim_end_matches('/').to_string())
                    .chain(self.cors_origins.iter().cloned())
                    .filter(|o| host(o).is_some_and(|h| under(&h, &id)))
                    .filter_map(|o| parse_origin(&o).ok())
                    .collect();
                all.dedup();
                all
            }
        };
        Ok(Some((id, origins)))
    }

    fn read_tokens(&mut self, r: &Reader<'_>) -> Result<(), ConfigError> {
        r.set(
            "access_ttl",
            &mut self.access_ttl,
            seconds(SECOND, Some(HOUR)),
        )?;
        r.set(
            "refresh_idle_ttl",
            &mut self.refresh_idle_ttl,
            seconds(SECOND, None),
        )?;
        r.set("session_ttl", &mut self.session_ttl, seconds(SECOND, None))?;
        r.set(
            "refresh_reuse_grace",
            &mut self.refresh_reuse_grace,
            seconds(Duration::ZERO, Some(5 * MINUTE)),
        )?;
        r.set(
            "reauth_max_age",
            &mut self.reauth_max_age,
            seconds(MINUTE, Some(DAY)),
        )?;
        r.set(
            "clock_leeway",
            &mut self.clock_leeway,
            seconds(Duration::ZERO, Some(MINUTE)),
        )?;
        r.set("signing_alg", &mut self.signing_alg, SigningAlg::from_str)
    }

    fn read_hashing(&mut self, r: &Reader<'_>) -> Result<(), ConfigError> {
        // 1024 KiB is far above Argon2's own floor of 8 KiB per lane (16 lanes
        // need 128 KiB), so the two limits never conflict.
        r.set(
            "argon2_memory_kib",
            &mut self.argon2_memory_kib,
            number(1024, None),
        )?;
        r.set(
            "argon2_iterations",
            &mut self.argon2_iterations,
            number(1, None),
        )?;
        r.set(
            "argon2_parallelism",
            &mut self.argon2_parallelism,
            number(1, Some(16)),
        )?;
        r.set(
            "hash_concurrency",
            &mut self.hash_concurrency,
            number(1, None),
        )?;
        r.set("hash_queue", &mut self.hash_queue, number(0, None))?;
        r.set(
            "password_min_length",
            &mut self.password_min_length,
            number(1, Some(128)),
        )
    }

    fn read_mail(&mut self, r: &Reader<'_>) -> Result<(), ConfigError> {
        let m = &mut self.mail;
        m.app_url = r.opt("app_url", parse_issuer)?;
        m.smtp = r.opt("smtp_url", parse_smtp_url)?;
        r.set("smtp_timeout", &mut m.smtp_timeout, at_least(SECOND))?;
        m.smtp_ca_file = r.opt("smtp_ca_file", parse_path)?;
        m.mail_from = r.opt("mail_from", parse_mailbox)?;
        m.templates = r.opt("mail_templates", parse_path)?;
        r.set(
            "email_verification",
            &mut m.verification,
            parse_verification,
        )?;
        r.set(
            "email_verification_ttl",
            &mut m.verification_ttl,
            seconds(MINUTE, Some(30 * DAY)),
        )?;
        r.set(
            "password_reset_ttl",
            &mut m.reset_ttl,
            seconds(MINUTE, Some(DAY)),
        )?;
        let notices = r.list("mail_notices", |s| Ok(s.to_ascii_lowercase()))?;
        m.notices = match notices
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => m.notices.clone(),
            ["all"] => crate::domain::mail::Notice::ALL.to_vec(),
            ["none"] => Vec::new(),
            _ => r.list("mail_notices", parse_notice)?,
        };
        Ok(())
    }

    fn read_http(&mut self, r: &Reader<'_>) -> Result<(), ConfigError> {
        r.set("ip_rate_limit", &mut self.ip_rate_limit, number(0, None))?;
        r.set(
            "token_rate_limit",
            &mut self.token_rate_limit,
            number(0, None),
        )?;
        r.set(
            "account_failure_limit",
            &mut self.account_failure_limit,
            number(0, None),
        )?;
        r.set(
            "account_daily_failure_limit",
            &mut self.account_daily_failure_limit,
            number(0, None),
        )?;
        self.trusted_proxies = r.list("trusted_proxies", parse_proxy)?;
        r.set("proxy_header", &mut self.proxy_header, parse_proxy_header)?;
        self.cors_origins = r.list("cors_origins", parse_origin)?;
        self.passkey_rp_id = r.opt("passkey_rp_id", parse_rp_id)?;
        self.passkey_origins = r.list("passkey_origins", parse_origin)?;
        r.set("log_format", &mut self.log_format, parse_log_format)?;
        self.metrics_token = r.opt("metrics_token", parse_metrics_token)?;
        r.set(
            "request_timeout",
            &mut self.request_timeout,
            at_least(SECOND),
        )?;
        r.set(
            "header_read_timeout",
            &mut self.header_read_timeout,
            at_least(SECOND),
        )?;
        r.set("idle_timeout", &mut self.idle_timeout, at_least(SECOND))?;
        r.set(
            "max_connections",
            &mut self.max_connections,
            number(1, None),
        )?;
        r.set(
            "max_connections_per_ip",
            &mut self.max_connections_per_ip,
            number(1, None),
        )?;
        r.set(
            "db_max_connections",
            &mut self.db_max_connections,
            number(1, None),
        )?;
        r.set(
            "db_statement_timeout",
            &mut self.db_statement_timeout,
            at_least(SECOND),
        )
    }
}
