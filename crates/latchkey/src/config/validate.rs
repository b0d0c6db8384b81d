//! One parser per kind of setting value; each error says what was expected.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ipnet::IpNet;
use secrecy::{SecretString, zeroize::Zeroizing};
use url::{Host, Url};

use super::{DURATION_HINT, LogFormat, ProxyHeader};

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
pub(super) fn show_duration(d: Duration) -> String {
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

pub(super) fn check_range<T: PartialOrd + Copy>(
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
pub(super) fn seconds(
    min: Duration,
    max: Option<Duration>,
) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| {
        let d = parse_duration(s)?;
        if d.subsec_nanos() != 0 {
            return Err("must be a whole number of seconds".to_owned());
        }
        check_range(d, min, max, show_duration)
    }
}

pub(super) fn at_least(min: Duration) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| check_range(parse_duration(s)?, min, None, show_duration)
}

pub(super) fn number<T>(min: T, max: Option<T>) -> impl Fn(&str) -> Result<T, String>
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

pub(super) fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("expected a directory path".to_owned());
    }
    Ok(PathBuf::from(s))
}

pub(super) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        "expected an IP address and port such as 127.0.0.1:8080 or [::]:8080".to_owned()
    })
}

/// The same rule as the master-key reader in `domain::secrets`, so a key
/// accepted here is never refused later: standard base64, or URL-safe with or
/// without padding, of exactly 32 bytes.
pub(super) fn parse_master_key(s: &str) -> Result<SecretString, String> {
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

pub(super) fn parse_issuer(s: &str) -> Result<String, String> {
    http_url(s)?;
    if s.ends_with('/') {
        // Verifiers compare `iss` byte for byte, so one spelling must be chosen.
        return Err(
            "must not end with '/': iss is compared exactly, write it without the trailing slash"
                .to_owned(),
        );
    }
    Ok(s.to_owned())
}

pub(super) fn parse_audience(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return Err("expected a non-empty value without spaces".to_owned());
    }
    Ok(s.to_owned())
}

/// Browsers send `Origin` in lower case and without a default port, so the
/// configured value is normalised the same way to compare equal.
/// A relying-party id: a domain name, lower case, not an IP address.
pub(super) fn parse_rp_id(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let domain = url::Url::parse(&format!("https://{lower}/"))
        .ok()
        .and_then(|u| u.domain().map(str::to_string));
    match domain {
        Some(d) if d == lower && !d.ends_with('.') => Ok(d),
        _ => Err("expected a domain name such as example.com (not an address or URL)".to_owned()),
    }
}

pub(super) fn parse_origin(s: &str) -> Result<String, String> {
    if s == "*" {
        return Err("\"*\" is not allowed with credentials: list each origin".to_owned());
    }
    let lower = s.to_ascii_lowercase();
    let url = http_url(&lower)?;
    if lower
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'))
    {
        return Err("an origin is scheme://host[:port], with no path or trailing slash".to_owned());
    }
    Ok(url.origin().ascii_serialization())
}

/// An absolute http(s) URL, parsed by the url crate, whose host is a plain
/// name or an IP address, with no user info, query or fragment. The checks
/// before parsing refuse what the parser would quietly repair (an upper-case
/// scheme, embedded spaces or tabs).
fn http_url(s: &str) -> Result<Url, String> {
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err(
            "expected an http:// or https:// URL such as https://auth.example.com".to_owned(),
        );
    }
    if s.contains(['?', '#', '@']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain user info, a query, a fragment or spaces".to_owned());
    }
    let url = Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
    match url.host() {
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => Ok(url),
        Some(Host::Domain(name))
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) =>
        {
            Ok(url)
        }
        Some(Host::Domain(name)) => Err(format!("invalid host {name:?}")),
        None => Err("the URL names no host".to_owned()),
    }
}

pub(super) fn parse_proxy(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| "expected a CIDR such as 10.0.0.0/8 or an IP address".to_owned())
}

pub(super) fn parse_proxy_header(s: &str) -> Result<ProxyHeader, String> {
    match s.to_ascii_lowercase().as_str() {
        "x-forwarded-for" => Ok(ProxyHeader::XForwardedFor),
        "forwarded" => Ok(ProxyHeader::Forwarded),
        _ => Err("expected x-forwarded-for or forwarded".to_owned()),
    }
}

/// A token a scraper sends; long enough not to be guessed, and free of
/// spaces (it travels in an `Authorization` header).
pub(super) fn parse_metrics_token(s: &str) -> Result<SecretString, String> {
    if s.chars().count() < 16 || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err("expected at least 16 printable characters without spaces".to_owned());
    }
    Ok(SecretString::from(s.to_owned()))
}

pub(super) fn parse_log_format(s: &str) -> Result<Option<LogFormat>, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => Ok(None),
        "pretty" => Ok(Some(LogFormat::Pretty)),
        "json" => Ok(Some(LogFormat::Json)),
        _ => Err("expected pretty, json or auto".to_owned()),
    }
}

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}
