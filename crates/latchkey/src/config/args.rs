//! The settings as command-line flags, each with its `LATCHKEY_*` variable.
//! Every command reads where the deployment lives ([`DeploymentArgs`]);
//! only `serve` takes the server's settings as flags ([`ServerArgs`]), which
//! the other commands read from the environment and the file alone.

use std::fmt;
use std::path::PathBuf;

use clap::{Args, FromArgMatches as _};

use super::file::shown;

/// Where a deployment's data and secrets are: flattened into the top-level
/// parser and accepted by every subcommand. Each flag is optional, so that
/// an absent one lets the environment, the file or the default decide; clap
/// already gives a flag priority over its environment variable.
#[derive(Args, Default, Clone)]
#[command(next_help_heading = "Deployment")]
pub struct DeploymentArgs {
    /// TOML configuration file
    #[arg(
        long = "config",
        env = "LATCHKEY_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Directory for the embedded database and generated secrets (default ./latchkey-data)
    #[arg(long, env = "LATCHKEY_DATA_DIR", global = true)]
    pub data_dir: Option<String>,
    /// Base64 of 32 bytes encrypting signing keys at rest (default: generated in the data dir)
    #[arg(
        long,
        env = "LATCHKEY_MASTER_KEY",
        global = true,
        hide_env_values = true
    )]
    pub master_key: Option<String>,
    /// sqlite://PATH or postgres://USER:PASSWORD@HOST/DB (default: SQLite in the data dir)
    #[arg(
        long,
        env = "LATCHKEY_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

/// The server's settings, as flags of `serve`.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Server settings")]
pub struct ServerArgs {
    /// Address to serve on (default 127.0.0.1:8080)
    #[arg(long, env = "LATCHKEY_LISTEN")]
    pub listen: Option<String>,
    /// `iss` of tokens and base of metadata URLs, no trailing slash (default http://LISTEN)
    #[arg(long, env = "LATCHKEY_ISSUER")]
    pub issuer: Option<String>,
    /// `aud` of access tokens (default: the issuer)
    #[arg(long, env = "LATCHKEY_AUDIENCE")]
    pub audience: Option<String>,
    /// Access token lifetime, 1s to 1h (default 5m)
    #[arg(long, env = "LATCHKEY_ACCESS_TTL")]
    pub access_ttl: Option<String>,
    /// A refresh token unused this long expires (default 7d)
    #[arg(long, env = "LATCHKEY_REFRESH_IDLE_TTL")]
    pub refresh_idle_ttl: Option<String>,
    /// Absolute session lifetime (default 30d)
    #[arg(long, env = "LATCHKEY_SESSION_TTL")]
    pub session_ttl: Option<String>,
    /// Window in which the previous refresh token gets the same successor, 0 to 5m (default 10s)
    #[arg(long, env = "LATCHKEY_REFRESH_REUSE_GRACE")]
    pub refresh_reuse_grace: Option<String>,
    /// How recent a sign-in or re-authentication must be for sensitive changes (other sessions, second factors, passkeys), 1m to 1d (default 10m)
    #[arg(long, env = "LATCHKEY_REAUTH_MAX_AGE")]
    pub reauth_max_age: Option<String>,
    /// Signing algorithm for new keys: EdDSA or ES256 (default EdDSA)
    #[arg(long, env = "LATCHKEY_SIGNING_ALG")]
    pub signing_alg: Option<String>,
    /// Argon2id memory cost in KiB, at least 1024 (default 19456)
    #[arg(long, env = "LATCHKEY_ARGON2_MEMORY_KIB")]
    pub argon2_memory_kib: Option<String>,
    /// Argon2id iterations, at least 1 (default 2)
    #[arg(long, env = "LATCHKEY_ARGON2_ITERATIONS")]
    pub argon2_iterations: Option<String>,
    /// Argon2id parallelism, 1 to 16 (default 1)
    #[arg(long, env = "LATCHKEY_ARGON2_PARALLELISM")]
    pub argon2_parallelism: Option<String>,
    /// Password hashes computed at once (default: number of cores)
    #[arg(long, env = "LATCHKEY_HASH_CONCURRENCY")]
    pub hash_concurrency: Option<String>,
    /// Password hashes that may wait for a slot before requests are refused (default 128)
    #[arg(long, env = "LATCHKEY_HASH_QUEUE")]
    pub hash_queue: Option<String>,
    /// Tolerated clock skew for exp/nbf/iat, at most 60s (default 5s)
    #[arg(long, env = "LATCHKEY_CLOCK_LEEWAY")]
    pub clock_leeway: Option<String>,
    /// Minimum password length in characters, 1 to 128 (default 8)
    #[arg(long, env = "LATCHKEY_PASSWORD_MIN_LENGTH")]
    pub password_min_length: Option<String>,
    /// Requests that check a password or send mail (register, login, password change, password reset, verification mail) per minute per client IP, 0 = off (default 60)
    #[arg(long, env = "LATCHKEY_IP_RATE_LIMIT")]
    pub ip_rate_limit: Option<String>,
    /// Refresh, logout, revocation and failed introspection requests per minute per client IP, 0 = off (default 600)
    #[arg(long, env = "LATCHKEY_TOKEN_RATE_LIMIT")]
    pub token_rate_limit: Option<String>,
    /// Failed logins per account before throttling, 0 = off (default 5)
    #[arg(long, env = "LATCHKEY_ACCOUNT_FAILURE_LIMIT")]
    pub account_failure_limit: Option<String>,
    /// Failed logins evaluated per account (or known device) per day, 0 = no ceiling (default 50)
    #[arg(long, env = "LATCHKEY_ACCOUNT_DAILY_FAILURE_LIMIT")]
    pub account_daily_failure_limit: Option<String>,
    /// Comma-separated CIDRs or IPs whose X-Forwarded-For is believed (default none)
    #[arg(long, env = "LATCHKEY_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Header the trusted proxies write the client's address into: x-forwarded-for or forwarded (default x-forwarded-for)
    #[arg(long, env = "LATCHKEY_PROXY_HEADER")]
    pub proxy_header: Option<String>,
    /// Comma-separated browser origins allowed with credentials (default none)
    #[arg(long, env = "LATCHKEY_CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// Relying-party id of passkeys: the host of app_url or the issuer, or a domain it belongs to (default: the host of app_url, else of the issuer; passkeys are off when that is an IP address)
    #[arg(long, env = "LATCHKEY_PASSKEY_RP_ID")]
    pub passkey_rp_id: Option<String>,
    /// Comma-separated origins passkey ceremonies may come from, on the relying-party id or its subdomains (default: those of the issuer, app_url and cors_origins that are)
    #[arg(long, env = "LATCHKEY_PASSKEY_ORIGINS")]
    pub passkey_origins: Option<String>,
    /// Log format: pretty, json or auto (default auto: pretty on a TTY, json otherwise)
    #[arg(long, env = "LATCHKEY_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Bearer token that `/metrics` requires, at least 16 characters (default: none, metrics are public)
    #[arg(long, env = "LATCHKEY_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Time limit for one HTTP request, at least 1s (default 30s)
    #[arg(long, env = "LATCHKEY_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// Time from accept to a complete first request head, and for every later head, at least 1s (default 10s)
    #[arg(long, env = "LATCHKEY_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// Time a connection may stay open with no request in flight, at least 1s (default 60s)
    #[arg(long, env = "LATCHKEY_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Open connections at most, at least 1 (default 10000)
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS")]
    pub max_connections: Option<String>,
    /// Open connections per client IP (IPv6: per /64) at most, at least 1 (default 1000)
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<String>,
    /// Size of the database connection pool, at least 1 (default 10)
    #[arg(long, env = "LATCHKEY_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<String>,
    /// Time limit for one database statement on PostgreSQL, at least 1s (default 5s)
    #[arg(long, env = "LATCHKEY_DB_STATEMENT_TIMEOUT")]
    pub db_statement_timeout: Option<String>,
    /// Base URL of the front end that mailed links open, no trailing slash (default: the issuer)
    #[arg(long, env = "LATCHKEY_APP_URL")]
    pub app_url: Option<String>,
    /// smtp://USER:PASSWORD@HOST:PORT (STARTTLS; ?tls=opportunistic|none) or smtps:// (TLS) (default: none, mail is written to DATA_DIR/outbox)
    #[arg(long, env = "LATCHKEY_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Time limit for each exchange with the SMTP server, at least 1s (default 10s)
    #[arg(long, env = "LATCHKEY_SMTP_TIMEOUT")]
    pub smtp_timeout: Option<String>,
    /// PEM file of certificates to trust for the SMTP server besides the public roots (default: none)
    #[arg(long, env = "LATCHKEY_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<String>,
    /// Sender of mail: an address or `Name <address>` (default: no-reply@ the issuer's host)
    #[arg(long, env = "LATCHKEY_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Folder of mail templates over the built-in ones (default: none)
    #[arg(long, env = "LATCHKEY_MAIL_TEMPLATES")]
    pub mail_templates: Option<String>,
    /// Email verification: off, optional or required before signing in (default optional)
    #[arg(long, env = "LATCHKEY_EMAIL_VERIFICATION")]
    pub email_verification: Option<String>,
    /// How long a verification link works, 1m to 30d (default 24h)
    #[arg(long, env = "LATCHKEY_EMAIL_VERIFICATION_TTL")]
    pub email_verification_ttl: Option<String>,
    /// How long a password reset link works, 1m to 1d (default 30m)
    #[arg(long, env = "LATCHKEY_PASSWORD_RESET_TTL")]
    pub password_reset_ttl: Option<String>,
    /// Let webhooks call http:// URLs and private, loopback or link-local addresses: true or false (default false; for development)
    #[arg(long, env = "LATCHKEY_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: Option<String>,
    /// How long a webhook delivery is retried before it is given up, 1m to 7d (default 24h)
    #[arg(long, env = "LATCHKEY_WEBHOOK_RETRY_WINDOW")]
    pub webhook_retry_window: Option<String>,
    /// Other servers' endpoints served as well: djoser (djoser's and simplejwt's under /auth/; default none)
    #[arg(long, env = "LATCHKEY_COMPAT")]
    pub compat: Option<String>,
    /// Security notices mailed: all, none, or a comma-separated list of new_device, password_changed, email_changed, refresh_reuse, account_disabled, second_factor (default all)
    #[arg(long, env = "LATCHKEY_MAIL_NOTICES")]
    pub mail_notices: Option<String>,
}

impl ServerArgs {
    /// The server's settings from their environment variables alone, for
    /// the commands that take no server flags.
    pub fn from_env() -> Result<Self, clap::Error> {
        let command = Self::augment_args(clap::Command::new("latchkey"));
        let matches = command.try_get_matches_from(["latchkey"])?;
        Self::from_arg_matches(&matches)
    }
}

/// Every settings flag and variable a command was given.
#[derive(Args, Default, Clone)]
pub struct SettingsArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl SettingsArgs {
    /// Every setting by its name, which is also its TOML key; the env name and
    /// flag follow from it (a test checks that clap agrees).
    pub(super) fn values(&self) -> [(&'static str, Option<&String>); 50] {
        let (d, s) = (&self.deployment, &self.server);
        [
            ("listen", s.listen.as_ref()),
            ("data_dir", d.data_dir.as_ref()),
            ("master_key", d.master_key.as_ref()),
            ("database_url", d.database_url.as_ref()),
            ("issuer", s.issuer.as_ref()),
            ("audience", s.audience.as_ref()),
            ("access_ttl", s.access_ttl.as_ref()),
            ("refresh_idle_ttl", s.refresh_idle_ttl.as_ref()),
            ("session_ttl", s.session_ttl.as_ref()),
            ("refresh_reuse_grace", s.refresh_reuse_grace.as_ref()),
            ("reauth_max_age", s.reauth_max_age.as_ref()),
            ("signing_alg", s.signing_alg.as_ref()),
            ("argon2_memory_kib", s.argon2_memory_kib.as_ref()),
            ("argon2_iterations", s.argon2_iterations.as_ref()),
            ("argon2_parallelism", s.argon2_parallelism.as_ref()),
            ("hash_concurrency", s.hash_concurrency.as_ref()),
            ("hash_queue", s.hash_queue.as_ref()),
            ("clock_leeway", s.clock_leeway.as_ref()),
            ("password_min_length", s.password_min_length.as_ref()),
            ("ip_rate_limit", s.ip_rate_limit.as_ref()),
            ("token_rate_limit", s.token_rate_limit.as_ref()),
            ("account_failure_limit", s.account_failure_limit.as_ref()),
            (
                "account_daily_failure_limit",
                s.account_daily_failure_limit.as_ref(),
            ),
            ("trusted_proxies", s.trusted_proxies.as_ref()),
            ("proxy_header", s.proxy_header.as_ref()),
            ("cors_origins", s.cors_origins.as_ref()),
            ("passkey_rp_id", s.passkey_rp_id.as_ref()),
            ("passkey_origins", s.passkey_origins.as_ref()),
            ("log_format", s.log_format.as_ref()),
            ("metrics_token", s.metrics_token.as_ref()),
            ("request_timeout", s.request_timeout.as_ref()),
            ("header_read_timeout", s.header_read_timeout.as_ref()),
            ("idle_timeout", s.idle_timeout.as_ref()),
            ("max_connections", s.max_connections.as_ref()),
            ("max_connections_per_ip", s.max_connections_per_ip.as_ref()),
            ("db_max_connections", s.db_max_connections.as_ref()),
            ("db_statement_timeout", s.db_statement_timeout.as_ref()),
            ("app_url", s.app_url.as_ref()),
            ("smtp_url", s.smtp_url.as_ref()),
            ("smtp_timeout", s.smtp_timeout.as_ref()),
            ("smtp_ca_file", s.smtp_ca_file.as_ref()),
            ("mail_from", s.mail_from.as_ref()),
            ("mail_templates", s.mail_templates.as_ref()),
            ("email_verification", s.email_verification.as_ref()),
            ("email_verification_ttl", s.email_verification_ttl.as_ref()),
            ("password_reset_ttl", s.password_reset_ttl.as_ref()),
            ("mail_notices", s.mail_notices.as_ref()),
            ("webhook_allow_private", s.webhook_allow_private.as_ref()),
            ("webhook_retry_window", s.webhook_retry_window.as_ref()),
            ("compat", s.compat.as_ref()),
        ]
    }
}

/// Hand-written so that a logged CLI never shows the master key or the
/// database password.
impl fmt::Debug for DeploymentArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |name, value: &Option<String>| value.as_deref().map(|v| shown(name, v));
        f.debug_struct("DeploymentArgs")
            .field("config", &self.config)
            .field("data_dir", &self.data_dir)
            .field("master_key", &shown("master_key", &self.master_key))
            .field("database_url", &shown("database_url", &self.database_url))
            .finish()
    }
}

impl fmt::Debug for SettingsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("SettingsArgs");
        out.field("config", &self.deployment.config);
        for (name, value) in self.values() {
            out.field(name, &value.map(|v| shown(name, v)));
        }
        out.finish()
    }
}
