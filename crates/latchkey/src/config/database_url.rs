//! The database URL: validated, and never shown with its password.

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

/// A database URL whose `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct DatabaseUrl(pub(super) SecretString);

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

    pub(super) fn sqlite_in(data_dir: &Path) -> Self {
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

pub(super) fn parse_database_url(s: &str) -> Result<DatabaseUrl, String> {
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

pub(super) fn scheme_of(url: &str) -> &str {
    url.split_once(':').map_or("", |(scheme, _)| scheme)
}

/// Hides the password in the user info and in any `password`-like query
/// parameter. The user info is taken up to the last '@' so that a password
/// containing an unescaped '/', '?' or '@' is still hidden whole; this can
/// over-redact an odd URL, which is the safe direction.
pub(super) fn redact_url(url: &str) -> String {
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
