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

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    num::NonZeroUsize,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use ipnet::IpNet;
use latchkey_verify::SigningAlg;
use secrecy::{ExposeSecret, SecretString, zeroize::Zeroizing};

const DEFAULT_DATA_DIR: &str = "./latchkey-data";
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Settings that hold several values: comma-separated in env and flags, and
/// also an array of strings in the TOML file.
const LIST_SETTINGS: [&str; 2] = ["trusted_proxies", "cors_origins"];
const DURATION_HINT: &str = "expected a duration such as 300, 300s, 5m, 2h or 7d";

/// Settings flags, flattened into the top-level parser and accepted by every
/// subcommand. Each is optional so that an absent flag lets the environment,
/// the file or the default decide; clap already gives a flag priority over its
/// environment variable.
#[derive(clap::Args, Default, Clone)]
#[command(next_help_heading = "Settings")]
pub struct SettingsArgs {
    /// TOML configuration file
    #[arg(
        long = "config",
        env = "LATCHKEY_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Address to serve on (default 127.0.0.1:8080)
    #[arg(long, env = "LATCHKEY_LISTEN", global = true)]
    pub listen: Option<String>,
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
    /// `iss` of tokens and base of metadata URLs, no trailing slash (default http://LISTEN)
    #[arg(long, env = "LATCHKEY_ISSUER", global = true)]
    pub issuer: Option<String>,
    /// `aud` of access tokens (default: the issuer)
    #[arg(long, env = "LATCHKEY_AUDIENCE", global = true)]
    pub audience: Option<String>,
    /// Access token lifetime, 1s to 1h (default 5m)
    #[arg(long, env = "LATCHKEY_ACCESS_TTL", global = true)]
    pub access_ttl: Option<String>,
    /// A refresh token unused this long expires (default 7d)
    #[arg(long, env = "LATCHKEY_REFRESH_IDLE_TTL", global = true)]
    pub refresh_idle_ttl: Option<String>,
    /// Absolute session lifetime (default 30d)
    #[arg(long, env = "LATCHKEY_SESSION_TTL", global = true)]
    pub session_ttl: Option<String>,
    /// Window in which the previous refresh token gets the same successor, 0 to 5m (default 10s)
    #[arg(long, env = "LATCHKEY_REFRESH_REUSE_GRACE", global = true)]
    pub refresh_reuse_grace: Option<String>,
    /// Signing algorithm for new keys: EdDSA or ES256 (default EdDSA)
    #[arg(long, env = "LATCHKEY_SIGNING_ALG", global = true)]
    pub signing_alg: Option<String>,
    /// Argon2id memory cost in KiB, at least 1024 (default 19456)
    #[arg(long, env = "LATCHKEY_ARGON2_MEMORY_KIB", global = true)]
    pub argon2_memory_kib: Option<String>,
    /// Argon2id iterations, at least 1 (default 2)
    #[arg(long, env = "LATCHKEY_ARGON2_ITERATIONS", global = true)]
    pub argon2_iterations: Option<String>,
    /// Argon2id parallelism, 1 to 16 (default 1)
    #[arg(long, env = "LATCHKEY_ARGON2_PARALLELISM", global = true)]
    pub argon2_parallelism: Option<String>,
    /// Password hashes computed at once (default: number of cores)
    #[arg(long, env = "LATCHKEY_HASH_CONCURRENCY", global = true)]
    pub hash_concurrency: Option<String>,
    /// Password hashes that may wait for a slot before requests are refused (default 128)
    #[arg(long, env = "LATCHKEY_HASH_QUEUE", global = true)]
    pub hash_queue: Option<String>,
    /// Tolerated clock skew for exp/nbf/iat, at most 60s (default 5s)
    #[arg(long, env = "LATCHKEY_CLOCK_LEEWAY", global = true)]
    pub clock_leeway: Option<String>,
    /// Minimum password length in characters, 1 to 128 (default 8)
    #[arg(long, env = "LATCHKEY_PASSWORD_MIN_LENGTH", global = true)]
    pub password_min_length: Option<String>,
    /// Register/login requests per minute per client IP, 0 = off (default 60)
    #[arg(long, env = "LATCHKEY_IP_RATE_LIMIT", global = true)]
    pub ip_rate_limit: Option<String>,
    /// Failed logins per account before throttling, 0 = off (default 5)
    #[arg(long, env = "LATCHKEY_ACCOUNT_FAILURE_LIMIT", global = true)]
    pub account_failure_limit: Option<String>,
    /// Failed logins evaluated per account (or known device) per day, 0 = no ceiling (default 50)
    #[arg(long, env = "LATCHKEY_ACCOUNT_DAILY_FAILURE_LIMIT", global = true)]
    pub account_daily_failure_limit: Option<String>,
    /// Comma-separated CIDRs or IPs whose X-Forwarded-For is believed (default none)
    #[arg(long, env = "LATCHKEY_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    /// Comma-separated browser origins allowed with credentials (default none)
    #[arg(long, env = "LATCHKEY_CORS_ORIGINS", global = true)]
    pub cors_origins: Option<String>,
    /// Log format: pretty, json or auto (default auto: pretty on a TTY, json otherwise)
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// Time limit for one HTTP request, at least 1s (default 30s)
    #[arg(long, env = "LATCHKEY_REQUEST_TIMEOUT", global = true)]
    pub request_timeout: Option<String>,
    /// Size of the database connection pool, at least 1 (default 10)
    #[arg(long, env = "LATCHKEY_DB_MAX_CONNECTIONS", global = true)]
    pub db_max_connections: Option<String>,
    /// Time limit for one database statement on PostgreSQL, at least 1s (default 5s)
    #[arg(long, env = "LATCHKEY_DB_STATEMENT_TIMEOUT", global = true)]
    pub db_statement_timeout: Option<String>,
}

impl SettingsArgs {
    /// Every setting by its name, which is also its TOML key; the env name and
    /// flag follow from it (a test checks that clap agrees).
    fn values(&self) -> [(&'static str, Option<&String>); 27] {
        [
            ("listen", self.listen.as_ref()),
            ("data_dir", self.data_dir.as_ref()),
            ("master_key", self.master_key.as_ref()),
            ("database_url", self.database_url.as_ref()),
            ("issuer", self.issuer.as_ref()),
            ("audience", self.audience.as_ref()),
            ("access_ttl", self.access_ttl.as_ref()),
            ("refresh_idle_ttl", self.refresh_idle_ttl.as_ref()),
            ("session_ttl", self.session_ttl.as_ref()),
            ("refresh_reuse_grace", self.refresh_reuse_grace.as_ref()),
            ("signing_alg", self.signing_alg.as_ref()),
            ("argon2_memory_kib", self.argon2_memory_kib.as_ref()),
            ("argon2_iterations", self.argon2_iterations.as_ref()),
            ("argon2_parallelism", self.argon2_parallelism.as_ref()),
            ("hash_concurrency", self.hash_concurrency.as_ref()),
            ("hash_queue", self.hash_queue.as_ref()),
            ("clock_leeway", self.clock_leeway.as_ref()),
            ("password_min_length", self.password_min_length.as_ref()),
            ("ip_rate_limit", self.ip_rate_limit.as_ref()),
            ("account_failure_limit", self.account_failure_limit.as_ref()),
            (
                "account_daily_failure_limit",
                self.account_daily_failure_limit.as_ref(),
            ),
            ("trusted_proxies", self.trusted_proxies.as_ref()),
            ("cors_origins", self.cors_origins.as_ref()),
            ("log_format", self.log_format.as_ref()),
            ("request_timeout", self.request_timeout.as_ref()),
            ("db_max_connections", self.db_max_connections.as_ref()),
            ("db_statement_timeout", self.db_statement_timeout.as_ref()),
        ]
    }
}

/// Hand-written so that a logged CLI never shows the master key or the
/// database password.
impl fmt::Debug for SettingsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("SettingsArgs");
        out.field("config", &self.config);
        for (name, value) in self.values() {
            out.field(name, &value.map(|v| shown(name, v)));
        }
        out.finish()
    }
}

/// The validated settings the server runs with.
#[derive(Clone)]
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
    /// Failed logins per account before throttling; 0 = off.
    pub account_failure_limit: u32,
    /// Failed logins evaluated per account, device or session per day; 0 = no ceiling.
    pub account_daily_failure_limit: u32,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Browser origins (`scheme://host[:port]`, lower case) allowed with credentials.
    pub cors_origins: Vec<String>,
    /// `None` = pretty on a TTY, JSON otherwise.
    pub log_format: Option<LogFormat>,
    /// Time limit for one HTTP request.
    pub request_timeout: Duration,
    /// Size of the database connection pool.
    pub db_max_connections: u32,
    /// Time limit for one database statement (PostgreSQL).
    pub db_statement_timeout: Duration,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A database URL whose `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    /// Wraps a URL as given; [`Settings::load`] is what validates one.
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }

    /// The full URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether this is the embedded SQLite database.
    pub fn is_sqlite(&self) -> bool {
        scheme_of(self.expose()).eq_ignore_ascii_case("sqlite")
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(self.expose())
    }

    fn sqlite_in(data_dir: &Path) -> Self {
        Self::new(format!(
            "sqlite://{}",
            data_dir.join("latchkey.db").display()
        ))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Why the settings could not be loaded; every message names the setting or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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
    /// (`args.config`), then env/flags (already merged by clap: flag > env).
    pub fn load(args: &SettingsArgs) -> Result<Settings, ConfigError> {
        let mut layer = match &args.config {
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
            account_failure_limit: 5,
            account_daily_failure_limit: 50,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            log_format: None,
            request_timeout: 30 * SECOND,
            db_max_connections: 10,
            db_statement_timeout: 5 * SECOND,
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
        if s.refresh_idle_ttl > s.session_ttl {
            return Err(ConfigError::IdleLongerThanSession {
                idle: s.refresh_idle_ttl,
                session: s.session_ttl,
            });
        }
        Ok(s)
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

    fn read_http(&mut self, r: &Reader<'_>) -> Result<(), ConfigError> {
        r.set("ip_rate_limit", &mut self.ip_rate_limit, number(0, None))?;
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
        self.cors_origins = r.list("cors_origins", parse_origin)?;
        r.set("log_format", &mut self.log_format, parse_log_format)?;
        r.set(
            "request_timeout",
            &mut self.request_timeout,
            at_least(SECOND),
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

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "[redacted]"),
            )
            .field("database_url", &self.database_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_idle_ttl", &self.refresh_idle_ttl)
            .field("session_ttl", &self.session_ttl)
            .field("refresh_reuse_grace", &self.refresh_reuse_grace)
            .field("signing_alg", &self.signing_alg)
            .field("argon2_memory_kib", &self.argon2_memory_kib)
            .field("argon2_iterations", &self.argon2_iterations)
            .field("argon2_parallelism", &self.argon2_parallelism)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("hash_queue", &self.hash_queue)
            .field("clock_leeway", &self.clock_leeway)
            .field("password_min_length", &self.password_min_length)
            .field("ip_rate_limit", &self.ip_rate_limit)
            .field("account_failure_limit", &self.account_failure_limit)
            .field(
                "account_daily_failure_limit",
                &self.account_daily_failure_limit,
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("cors_origins", &self.cors_origins)
            .field("log_format", &self.log_format)
            .field("request_timeout", &self.request_timeout)
            .field("db_max_connections", &self.db_max_connections)
            .field("db_statement_timeout", &self.db_statement_timeout)
            .finish()
    }
}

/// Parses `300` (seconds), `300s`, `5m`, `2h`, `7d` and other humantime forms
/// such as `1h 30m`; refuses empty, negative and malformed input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| "too large".to_owned());
    }
    humantime::parse_duration(s).map_err(|_| DURATION_HINT.to_owned())
}

/// Shows a duration in the units people write (`7d`, `5m`, `90s`), not
/// humantime's months of 30.44 days.
fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 || d.subsec_nanos() != 0 {
        return humantime::format_duration(d).to_string();
    }
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let (size, suffix) = units
        .into_iter()
        .find(|(size, _)| secs.is_multiple_of(*size))
        .unwrap_or((1, "s"));
    format!("{}{suffix}", secs / size)
}

/// One setting's raw text from the file or the command line.
enum Raw {
    One(String),
    Many(Vec<String>),
}

type Layer = BTreeMap<&'static str, Raw>;

fn setting_names() -> impl Iterator<Item = &'static str> {
    let names = SettingsArgs::default().values().map(|(name, _)| name);
    names.into_iter()
}

fn read_file(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => ConfigError::FileNotFound {
            path: path.to_owned(),
        },
        _ => ConfigError::FileUnreadable {
            path: path.to_owned(),
            error,
        },
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|error| ConfigError::FileSyntax {
        path: path.to_owned(),
        detail: syntax_detail(&text, &error),
    })?;
    table
        .into_iter()
        .map(|(key, value)| file_entry(path, key, value))
        .collect()
}

/// Position and message only: the parser's own rendering quotes the line,
/// which may hold the master key or a database password.
fn syntax_detail(text: &str, error: &toml::de::Error) -> String {
    let Some(start) = error.span().map(|span| span.start.min(text.len())) else {
        return error.message().to_owned();
    };
    let before = text.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {}", error.message())
}

fn file_entry(
    path: &Path,
    key: String,
    value: toml::Value,
) -> Result<(&'static str, Raw), ConfigError> {
    let Some(name) = setting_names().find(|name| *name == key) else {
        let suggestion = closest_setting(&key);
        return Err(ConfigError::UnknownKey {
            path: path.to_owned(),
            key,
            suggestion,
        });
    };
    let is_list = LIST_SETTINGS.contains(&name);
    let wrong_type = || ConfigError::WrongType {
        path: path.to_owned(),
        setting: name,
        expected: if is_list {
            "a string or an array of strings"
        } else {
            "a string or an integer"
        },
    };
    let raw = match value {
        toml::Value::String(s) => Raw::One(s),
        toml::Value::Integer(i) if !is_list => Raw::One(i.to_string()),
        toml::Value::Array(items) if is_list => Raw::Many(
            items
                .into_iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or_else(wrong_type))
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(wrong_type()),
    };
    Ok((name, raw))
}

/// Suggests the setting a misspelt key probably meant, including keys
/// written as environment variable names.
fn closest_setting(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    let key = lower.strip_prefix("latchkey_").unwrap_or(&lower);
    setting_names()
        .map(|name| (edit_distance(key, name), name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn did_you_mean(suggestion: Option<&'static str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn env_name(setting: &str) -> String {
    format!("LATCHKEY_{}", setting.to_ascii_uppercase())
}

fn flag_name(setting: &str) -> String {
    format!("--{}", setting.replace('_', "-"))
}

/// A value as it may be shown in errors and `Debug`.
fn shown(setting: &str, value: &str) -> String {
    match setting {
        "master_key" => "[redacted]".to_owned(),
        "database_url" => redact_url(value),
        _ => value.to_owned(),
    }
}

/// Looks settings up in the merged layer and parses them, naming the
/// setting in every error.
struct Reader<'a>(&'a Layer);

impl Reader<'_> {
    fn opt<T>(
        &self,
        setting: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let invalid = |value: &str, reason| ConfigError::Invalid {
            setting,
            value: shown(setting, value),
            reason,
        };
        match self.0.get(setting) {
            None => Ok(None),
            Some(Raw::One(text)) => parse(text.trim())
                .map(Some)
                .map_err(|reason| invalid(text, reason)),
            Some(Raw::Many(_)) => Err(invalid("[…]", "expected a single value".to_owned())),
        }
    }

    /// Overwrites `target` (a default) when the setting is given.
    fn set<T>(
        &self,
        setting: &'static str,
        target: &mut T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.opt(setting, parse)? {
            *target = value;
        }
        Ok(())
    }

    /// A list: comma-separated text, or an array from the file; absent = empty.
    fn list<T>(
        &self,
        setting: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        let items: Vec<&str> = match self.0.get(setting) {
            None => Vec::new(),
            Some(Raw::One(text)) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect(),
            Some(Raw::Many(items)) => items.iter().map(|s| s.trim()).collect(),
        };
        items
            .into_iter()
            .map(|item| {
                parse(item).map_err(|reason| ConfigError::Invalid {
                    setting,
                    value: item.to_owned(),
                    reason,
                })
            })
            .collect()
    }
}

fn check_range<T: PartialOrd + Copy>(
    value: T,
    min: T,
    max: Option<T>,
    show: impl Fn(T) -> String,
) -> Result<T, String> {
    match max {
        Some(max) if value < min || value > max => {
            Err(format!("must be between {} and {}", show(min), show(max)))
        }
        None if value < min => Err(format!("must be at least {}", show(min))),
        _ => Ok(value),
    }
}

/// A duration in whole seconds: these settings become JWT times and
/// timestamps counted in seconds, where a fraction would be silently dropped.
fn seconds(min: Duration, max: Option<Duration>) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| {
        let d = parse_duration(s)?;
        if d.subsec_nanos() != 0 {
            return Err("must be a whole number of seconds".to_owned());
        }
        check_range(d, min, max, show_duration)
    }
}

fn at_least(min: Duration) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| check_range(parse_duration(s)?, min, None, show_duration)
}

fn number<T>(min: T, max: Option<T>) -> impl Fn(&str) -> Result<T, String>
where
    T: FromStr + PartialOrd + Copy + fmt::Display,
{
    move |s| {
        let n = s
            .parse::<T>()
            .map_err(|_| "expected a non-negative whole number".to_owned())?;
        check_range(n, min, max, |n| n.to_string())
    }
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("expected a directory path".to_owned());
    }
    Ok(PathBuf::from(s))
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        "expected an IP address and port such as 127.0.0.1:8080 or [::]:8080".to_owned()
    })
}

/// The same rule as the master-key reader in `domain::secrets`, so a key
/// accepted here is never refused later: standard base64, or URL-safe with or
/// without padding, of exactly 32 bytes.
fn parse_master_key(s: &str) -> Result<SecretString, String> {
    let bytes = STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .map(Zeroizing::new);
    match bytes {
        Ok(bytes) if bytes.len() == 32 => Ok(SecretString::from(s.to_owned())),
        _ => Err(
            "expected base64 of exactly 32 bytes (create one with `openssl rand -base64 32`)"
                .to_owned(),
        ),
    }
}

fn parse_database_url(s: &str) -> Result<DatabaseUrl, String> {
    let scheme = scheme_of(s).to_ascii_lowercase();
    let rest = s.split_once("://").map_or("", |(_, rest)| rest);
    if !["sqlite", "postgres", "postgresql"].contains(&scheme.as_str()) || !s.contains("://") {
        return Err("expected sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE".to_owned());
    }
    if rest.is_empty() {
        return Err("the URL names no database".to_owned());
    }
    Ok(DatabaseUrl::new(s))
}

fn parse_issuer(s: &str) -> Result<String, String> {
    let (_, _, path) = split_http_url(s)?;
    if path.ends_with('/') {
        // Verifiers compare `iss` byte for byte, so one spelling must be chosen.
        return Err(
            "must not end with '/': iss is compared exactly, write it without the trailing slash"
                .to_owned(),
        );
    }
    Ok(s.to_owned())
}

fn parse_audience(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return Err("expected a non-empty value without spaces".to_owned());
    }
    Ok(s.to_owned())
}

/// Browsers send `Origin` in lower case and without a default port, so the
/// configured value is normalised the same way to compare equal.
fn parse_origin(s: &str) -> Result<String, String> {
    if s == "*" {
        return Err("\"*\" is not allowed with credentials: list each origin".to_owned());
    }
    let lower = s.to_ascii_lowercase();
    let (scheme, authority, path) = split_http_url(&lower)?;
    if !path.is_empty() {
        return Err("an origin is scheme://host[:port], with no path or trailing slash".to_owned());
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Ok(format!("{scheme}://{authority}"))
}

/// Splits an absolute http(s) URL into scheme, authority and path, refusing
/// user info, queries, fragments and malformed hosts or ports.
fn split_http_url(s: &str) -> Result<(&str, &str, &str), String> {
    let (scheme, rest) = s
        .split_once("://")
        .filter(|(scheme, _)| *scheme == "http" || *scheme == "https")
        .ok_or("expected an http:// or https:// URL such as https://auth.example.com")?;
    if s.contains(['?', '#', '@']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain user info, a query, a fragment or spaces".to_owned());
    }
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    check_authority(authority)?;
    Ok((scheme, authority, path))
}

fn check_authority(authority: &str) -> Result<(), String> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("unclosed '[' in host")?;
            addr.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "invalid IPv6 address")?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or("invalid port")?),
            };
            (addr, port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_ok = authority.starts_with('[')
        || (!host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
    if !host_ok {
        return Err(format!("invalid host {host:?}"));
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err("invalid port".to_owned());
    }
    Ok(())
}

fn parse_proxy(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| "expected a CIDR such as 10.0.0.0/8 or an IP address".to_owned())
}

fn parse_log_format(s: &str) -> Result<Option<LogFormat>, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => Ok(None),
        "pretty" => Ok(Some(LogFormat::Pretty)),
        "json" => Ok(Some(LogFormat::Json)),
        _ => Err("expected pretty, json or auto".to_owned()),
    }
}

fn scheme_of(url: &str) -> &str {
    url.split_once(':').map_or("", |(scheme, _)| scheme)
}

/// Hides the password in the user info and in any `password`-like query
/// parameter. The user info is taken up to the last '@' so that a password
/// containing an unescaped '/', '?' or '@' is still hidden whole; this can
/// over-redact an odd URL, which is the safe direction.
fn redact_url(url: &str) -> String {
    let hidden_userinfo = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    };
    let Some((base, query)) = hidden_userinfo.split_once('?') else {
        return hidden_userinfo;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => format!("{key}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, FromArgMatches as _, Parser as _};
    use std::io::Write as _;

    const KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        settings: SettingsArgs,
        #[command(subcommand)]
        command: Option<Command>,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        Serve,
    }

    /// Settings flags as the CLI parses them, with environment variables
    /// switched off: the environment is process-wide and tests run in parallel.
    fn flags(argv: &[&str]) -> SettingsArgs {
        let command = Cli::command().mut_args(|arg| arg.env(None::<&'static str>));
        let argv = std::iter::once("latchkey").chain(argv.iter().copied());
        let matches = command.try_get_matches_from(argv).expect("flags parse");
        SettingsArgs::from_arg_matches(&matches).expect("settings args")
    }

    fn load(args: &SettingsArgs) -> Settings {
        Settings::load(args).expect("settings load")
    }

    fn load_err(args: &SettingsArgs) -> String {
        Settings::load(args)
            .expect_err("settings are refused")
            .to_string()
    }

    /// A TOML file, plus flags that point at it (keep the file alive).
    fn with_file(toml: &str, argv: &[&str]) -> (tempfile::NamedTempFile, SettingsArgs) {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(toml.as_bytes()).expect("write config");
        let mut args = flags(argv);
        args.config = Some(file.path().to_owned());
        (file, args)
    }

    #[test]
    fn defaults_need_no_configuration() {
        let settings = load(&SettingsArgs::default());
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.data_dir, PathBuf::from("./latchkey-data"));
        assert_eq!(
            settings.database_url.expose(),
            "sqlite://./latchkey-data/latchkey.db"
        );
        assert!(settings.database_url.is_sqlite());
        assert_eq!(settings.issuer, "http://127.0.0.1:8080");
        assert_eq!(settings.audience, settings.issuer);
        assert!(settings.master_key.is_none());
        let ttls = (
            settings.access_ttl,
            settings.refresh_idle_ttl,
            settings.session_ttl,
        );
        assert_eq!(ttls, (5 * MINUTE, 7 * DAY, 30 * DAY));
        assert_eq!(settings.refresh_reuse_grace, 10 * SECOND);
        assert_eq!(settings.signing_alg, SigningAlg::EdDSA);
        let argon2 = (
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
        );
        assert_eq!(argon2, (19_456, 2, 1));
        assert!(settings.hash_concurrency >= 1);
        assert_eq!(settings.hash_queue, 128);
        assert_eq!(settings.clock_leeway, 5 * SECOND);
        assert_eq!(settings.password_min_length, 8);
        assert_eq!(
            (settings.ip_rate_limit, settings.account_failure_limit),
            (60, 5)
        );
        assert!(settings.trusted_proxies.is_empty() && settings.cors_origins.is_empty());
        assert_eq!(settings.log_format, None);
        assert_eq!(settings.request_timeout, 30 * SECOND);
        assert_eq!(settings.db_max_connections, 10);
    }

    #[test]
    fn durations_accept_the_documented_forms() {
        let cases = [
            ("300", 300),
            ("300s", 300),
            ("5m", 300),
            ("2h", 7200),
            ("7d", 604_800),
        ];
        for (text, secs) in cases.into_iter().chain([("1h 30m", 5400), (" 0 ", 0)]) {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in [
            "abc",
            "-5s",
            "-5",
            "",
            "  ",
            "5 parsecs",
            "99999999999999999999999",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let toml = "access_ttl = \"10m\"\nsession_ttl = \"2d\"\nrefresh_idle_ttl = 3600\n";
        let (_file, args) = with_file(toml, &["--access-ttl", "1m"]);
        let settings = load(&args);
        assert_eq!(settings.access_ttl, MINUTE);
        assert_eq!(settings.session_ttl, 2 * DAY);
        assert_eq!(settings.refresh_idle_ttl, HOUR);
        assert_eq!(settings.clock_leeway, 5 * SECOND);
    }

    #[test]
    fn derived_defaults_follow_the_settings_they_come_from() {
        let toml = "listen = \"0.0.0.0:9000\"\n";
        let (_file, args) = with_file(toml, &["--data-dir", "/var/lib/latchkey"]);
        let settings = load(&args);
        assert_eq!(
            settings.database_url.expose(),
            "sqlite:///var/lib/latchkey/latchkey.db"
        );
        assert_eq!(settings.issuer, "http://0.0.0.0:9000");
        assert_eq!(settings.audience, "http://0.0.0.0:9000");

        let settings = load(&flags(&["--issuer", "https://auth.example.com"]));
        assert_eq!(settings.audience, "https://auth.example.com");

        let argv = [
            "--issuer",
            "https://auth.example.com",
            "--audience",
            "api",
            "--database-url",
            "postgres://db/lk",
        ];
        let settings = load(&flags(&argv));
        assert_eq!(
            (settings.issuer.as_str(), settings.audience.as_str()),
            ("https://auth.example.com", "api")
        );
        assert!(!settings.database_url.is_sqlite());
        assert_eq!(settings.data_dir, PathBuf::from("./latchkey-data"));
    }

    #[test]
    fn an_invalid_value_names_the_setting_its_env_var_and_flag() {
        let args = SettingsArgs {
            access_ttl: Some("abc".into()),
            ..Default::default()
        };
        assert_eq!(
            load_err(&args),
            "invalid value for access_ttl (LATCHKEY_ACCESS_TTL, --access-ttl): \"abc\": \
             expected a duration such as 300, 300s, 5m, 2h or 7d"
        );
        let cases = [
            ("access_ttl", "2h", "must be between 1s and 1h"),
            ("argon2_parallelism", "17", "between 1 and 16"),
            ("argon2_memory_kib", "512", "at least 1024"),
            ("argon2_iterations", "0", "at least 1"),
            ("password_min_length", "129", "between 1 and 128"),
            ("refresh_reuse_grace", "6m", "between 0s and 5m"),
            ("refresh_reuse_grace", "1500ms", "whole number of seconds"),
            ("clock_leeway", "2m", "between 0s and 1m"),
            ("session_ttl", "0", "at least 1s"),
            ("hash_concurrency", "0", "at least 1"),
            ("hash_queue", "-1", "whole number"),
            ("listen", "localhost", "127.0.0.1:8080"),
            ("data_dir", "", "directory"),
            ("signing_alg", "HS256", "EdDSA or ES256"),
            ("log_format", "xml", "pretty, json or auto"),
            ("database_url", "mysql://x/y", "sqlite://"),
            ("database_url", "sqlite://", "names no database"),
            ("audience", "two words", "without spaces"),
            ("db_max_connections", "0", "at least 1"),
            ("request_timeout", "500ms", "at least 1s"),
        ];
        for (setting, value, reason) in cases {
            let message = load_err(&flags(&[&format!("{}={value}", flag_name(setting))]));
            let start = format!(
                "invalid value for {setting} ({}, {}): ",
                env_name(setting),
                flag_name(setting)
            );
            assert!(message.starts_with(&start), "{message}");
            assert!(message.contains(reason), "{message}");
        }
    }

    #[test]
    fn edge_values_inside_the_ranges_are_accepted() {
        let argv = [
            "--refresh-reuse-grace=0",
            "--access-ttl=1h",
            "--ip-rate-limit=0",
            "--account-failure-limit=0",
            "--hash-queue=0",
            "--signing-alg=ES256",
            "--log-format=JSON",
            "--refresh-idle-ttl=30d",
        ];
        let settings = load(&flags(&argv));
        assert_eq!(
            (settings.refresh_reuse_grace, settings.access_ttl),
            (Duration::ZERO, HOUR)
        );
        assert_eq!(
            (
                settings.ip_rate_limit,
                settings.account_failure_limit,
                settings.hash_queue
            ),
            (0, 0, 0)
        );
        assert_eq!(settings.signing_alg, SigningAlg::ES256);
        assert_eq!(settings.log_format, Some(LogFormat::Json));
        assert_eq!(settings.refresh_idle_ttl, settings.session_ttl);
        assert_eq!(load(&flags(&["--log-format", "auto"])).log_format, None);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused_by_name() {
        let (file, args) = with_file("acess_ttl = \"5m\"\n", &[]);
        let message = load_err(&args);
        let expected = format!(
            "unknown setting `acess_ttl` in {} (did you mean `access_ttl`?)",
            file.path().display()
        );
        assert_eq!(message, expected);

        let (_file, args) = with_file("LATCHKEY_SESSION_TTL = \"5d\"\n", &[]);
        assert!(load_err(&args).contains("did you mean `session_ttl`"));
        let (_file, args) = with_file("[server]\nlisten = \"0.0.0.0:1\"\n", &[]);
        assert!(load_err(&args).starts_with("unknown setting `server`"));
    }

    #[test]
    fn the_file_takes_integers_strings_and_string_arrays_where_they_fit() {
        let toml = "argon2_memory_kib = 65536\n\
                    trusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\"]\n\
                    cors_origins = \"https://a.example, https://b.example\"\n";
        let (_file, args) = with_file(toml, &[]);
        let settings = load(&args);
        assert_eq!(settings.argon2_memory_kib, 65_536);
        assert_eq!(settings.trusted_proxies.len(), 2);
        assert_eq!(
            settings.cors_origins,
            ["https://a.example", "https://b.example"]
        );

        let cases = [
            ("access_ttl = true\n", "access_ttl in "),
            ("access_ttl = 1.5\n", "must be a string or an integer"),
            (
                "listen = [\"127.0.0.1:1\"]\n",
                "must be a string or an integer",
            ),
            (
                "trusted_proxies = [1]\n",
                "must be a string or an array of strings",
            ),
            (
                "argon2_iterations = -2\n",
                "invalid value for argon2_iterations",
            ),
        ];
        for (toml, expected) in cases {
            let (_file, args) = with_file(toml, &[]);
            let message = load_err(&args);
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn file_problems_name_the_file_and_never_echo_its_text() {
        let args = flags(&["--config", "/nonexistent/latchkey.toml"]);
        assert_eq!(
            load_err(&args),
            "configuration file /nonexistent/latchkey.toml not found"
        );

        let (file, args) = with_file(
            "listen = \"127.0.0.1:1\"\nmaster_key = hunter2secret\n",
            &[],
        );
        let message = load_err(&args);
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
        assert!(!message.contains("hunter2secret"), "{message}");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let url = "postgres://latchkey:s3cr3t-pw@db:5432/latchkey?sslmode=require";
        let mut settings = Settings::defaults_in(PathBuf::from("/data"));
        settings.master_key = Some(SecretString::from(KEY));
        settings.database_url = DatabaseUrl::new(url);
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains(KEY) && !debug.contains("s3cr3t-pw"),
            "{debug}"
        );
        assert!(
            debug.contains("postgres://latchkey:***@db:5432/latchkey?sslmode=require"),
            "{debug}"
        );
        assert!(
            debug.contains("master_key: Some(\"[redacted]\")"),
            "{debug}"
        );
        assert!(debug.contains("access_ttl: 300s"), "{debug}");

        let args = flags(&["--master-key", KEY, "--database-url", url]);
        let debug = format!("{args:?}");
        assert!(
            !debug.contains(KEY) && !debug.contains("s3cr3t-pw"),
            "{debug}"
        );
        let debug = format!("{:?}", load(&args));
        assert!(
            !debug.contains(KEY) && !debug.contains("s3cr3t-pw"),
            "{debug}"
        );
    }

    #[test]
    fn error_messages_never_show_secrets() {
        let message = load_err(&flags(&["--master-key", "c2hvcnQtc2VjcmV0"]));
        assert!(
            message.contains("master_key") && message.contains("32 bytes"),
            "{message}"
        );
        assert!(!message.contains("c2hvcnQtc2VjcmV0"), "{message}");

        let message = load_err(&flags(&["--database-url", "mysql://root:s3cr3t-pw@db/x"]));
        assert!(
            message.contains("database_url") && !message.contains("s3cr3t-pw"),
            "{message}"
        );
    }

    #[test]
    fn database_urls_are_redacted_whole() {
        let cases = [
            ("postgres://user:pw@host/db", "postgres://user:***@host/db"),
            (
                "postgres://user:p/w?x@y@host/db",
                "postgres://user:***@host/db",
            ),
            ("postgres://user@host/db", "postgres://user@host/db"),
            (
                "postgresql://host/db?user=u&password=pw",
                "postgresql://host/db?user=u&password=***",
            ),
            ("sqlite://./data/latchkey.db", "sqlite://./data/latchkey.db"),
        ];
        for (url, redacted) in cases {
            assert_eq!(DatabaseUrl::new(url).to_string(), redacted);
            assert_eq!(
                format!("{:?}", DatabaseUrl::new(url)),
                format!("DatabaseUrl({redacted:?})")
            );
        }
    }

    #[test]
    fn master_keys_must_be_32_bytes_of_base64() {
        let url_safe = KEY.replace('+', "-").replace('/', "_");
        for key in [KEY, url_safe.as_str(), url_safe.trim_end_matches('=')] {
            assert!(
                load(&flags(&["--master-key", key])).master_key.is_some(),
                "{key}"
            );
        }
        let too_long = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEg==";
        for bad in ["", "not base64!", "c2hvcnQtc2VjcmV0", too_long] {
            let message = load_err(&flags(&["--master-key", bad]));
            assert!(
                message.starts_with("invalid value for master_key"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn trusted_proxies_take_cidrs_and_bare_ips() {
        let args = flags(&[
            "--trusted-proxies",
            "10.0.0.0/8, 192.168.1.7,::1, 172.16.5.4/12",
        ]);
        let nets: Vec<String> = load(&args)
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            nets,
            ["10.0.0.0/8", "192.168.1.7/32", "::1/128", "172.16.0.0/12"]
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/8;10.1.0.0/16"] {
            let message = load_err(&flags(&["--trusted-proxies", bad]));
            assert!(
                message.starts_with("invalid value for trusted_proxies"),
                "{message}"
            );
            assert!(message.contains("expected a CIDR"), "{message}");
        }
        let (_file, args) = with_file(
            "trusted_proxies = [\"10.0.0.0/8\"]\n",
            &["--trusted-proxies="],
        );
        assert!(
            load(&args).trusted_proxies.is_empty(),
            "an empty flag clears the file's list"
        );
    }

    #[test]
    fn cors_origins_are_exact_scheme_host_port() {
        let args = flags(&[
            "--cors-origins",
            "https://App.Example.com:443,http://localhost:3000,http://[::1]:80",
        ]);
        let origins = load(&args).cors_origins;
        assert_eq!(
            origins,
            [
                "https://app.example.com",
                "http://localhost:3000",
                "http://[::1]"
            ]
        );
        let bad = [
            "*",
            "https://a.example/",
            "https://a.example/app",
            "ftp://a.example",
            "a.example",
            "https://a.example?x=1",
            "https://*.a.example",
            "https://a.example:99999",
            "null",
        ];
        for origin in bad {
            let message = load_err(&flags(&["--cors-origins", origin]));
            assert!(
                message.starts_with("invalid value for cors_origins"),
                "{origin}: {message}"
            );
        }
    }

    #[test]
    fn the_issuer_must_be_an_exact_http_url() {
        let message = load_err(&flags(&["--issuer", "https://auth.example.com/"]));
        assert!(
            message.starts_with("invalid value for issuer") && message.contains("trailing slash"),
            "{message}"
        );
        let bad = [
            "auth.example.com",
            "https://auth.example.com?x",
            "https://auth.example.com#f",
            "https://u:p@auth.example.com",
            "https://",
            "HTTPS://auth.example.com",
        ];
        for issuer in bad {
            assert!(
                load_err(&flags(&["--issuer", issuer])).starts_with("invalid value for issuer"),
                "{issuer}"
            );
        }
        for good in [
            "https://example.com/auth",
            "http://[::1]:8080",
            "https://Auth.Example.com",
        ] {
            assert_eq!(
                load(&flags(&["--issuer", good])).issuer,
                good,
                "iss is kept exactly as written"
            );
        }
    }

    #[test]
    fn an_idle_ttl_longer_than_the_session_is_refused() {
        let message = load_err(&flags(&["--refresh-idle-ttl", "60d"]));
        assert_eq!(
            message,
            "refresh_idle_ttl (60d) must not be longer than session_ttl (30d): \
             a refresh token cannot outlive its session"
        );
    }

    #[test]
    fn every_setting_has_the_flag_and_env_var_its_name_implies() {
        let command = Cli::command();
        command.clone().debug_assert();
        for name in setting_names() {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == name)
                .expect("an arg per setting");
            assert_eq!(
                arg.get_long().map(|l| format!("--{l}")),
                Some(flag_name(name))
            );
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(env_name(name).as_str())
            );
            assert!(arg.is_global_set(), "{name}");
        }
        let hidden = |id: &str| {
            command
                .get_arguments()
                .any(|a| a.get_id() == id && a.is_hide_env_values_set())
        };
        assert!(hidden("master_key") && hidden("database_url"));
    }

    #[test]
    fn settings_flags_are_accepted_after_a_subcommand() {
        let cli = Cli::try_parse_from(["latchkey", "serve", "--access-ttl", "1m"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Serve)));
        assert_eq!(cli.settings.access_ttl.as_deref(), Some("1m"));
    }
}
