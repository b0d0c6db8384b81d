//! HTTP plumbing shared by discovery, the key cache and the revocation
//! follower: bounded GETs of JSON documents, nothing more. It never retries
//! (its callers' schedules do), never follows a header's advice, and never
//! lets the client secret reach a `Debug` or a log.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

/// Every request gives up after this long, so a hung server shows up as a
/// failed poll (and, eventually, a stale feed) rather than a stuck task.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest document read; metadata, key sets and feed pages are far
/// smaller, and a misdirected URL must not make us buffer without limit.
const MAX_BODY: usize = 8 << 20;

/// Why a document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request could not be sent or its answer not read: connection,
    /// TLS, or the request timed out.
    #[error("HTTP request failed")]
    Transport(#[source] reqwest::Error),
    /// The server answered with an unexpected status; `code` is the `error`
    /// member of its JSON body, when there was one.
    #[error("unexpected HTTP status {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The `error` member of the body, when present.
        code: Option<String>,
    },
    /// The body is larger than any document this crate expects.
    #[error("response larger than {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// The body is not the document expected.
    #[error("unexpected response: {0}")]
    Invalid(String),
    /// The request took longer than allowed.
    #[error("timed out")]
    TimedOut,
}

impl FetchError {
    /// Whether this is the feed's `410 Gone` with error `cursor_expired`.
    pub(crate) fn is_cursor_expired(&self) -> bool {
        matches!(self, FetchError::Status { status: 410, code: Some(c) } if c == "cursor_expired")
    }
}

/// A resource server's client id and secret, sent as HTTP Basic auth.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) id: String,
    pub(crate) secret: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The client used when the builder was given none.
pub(crate) fn default_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("latchkey-verify/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// GETs `url` and decodes its JSON body, refusing any status but 200.
pub(crate) async fn get_json<T: DeserializeOwned>(
    client: &reqwest::Client,
    url: reqwest::Url,
    credentials: Option<&Credentials>,
) -> Result<T, FetchError> {
    get_json_cached(client, url, credentials)
        .await
        .map(|(body, _)| body)
}

/// [`get_json`], with the `max-age` of the answer's `Cache-Control`, if any.
pub(crate) async fn get_json_cached<T: DeserializeOwned>(
    client: &reqwest::Client,
    url: reqwest::Url,
    credentials: Option<&Credentials>,
) -> Result<(T, Option<Duration>), FetchError> {
    let mut request = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(REQUEST_TIMEOUT);
    if let Some(c) = credentials {
        request = request.basic_auth(&c.id, Some(c.secret.expose_secret()));
    }
    let mut response = request.send().await.map_err(transport)?;
    let max_age = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let status = response.status();
    let body = read_capped(&mut response).await?;
    if status != reqwest::StatusCode::OK {
        return Err(FetchError::Status {
            status: status.as_u16(),
            code: error_code(&body),
        });
    }
    let body = serde_json::from_slice(&body).map_err(|e| FetchError::Invalid(e.to_string()))?;
    Ok((body, max_age))
}

/// The `max-age` directive of a `Cache-Control` value (`no-store` and
/// `no-cache` read as 0).
pub(crate) fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').map(str::trim).find_map(|d| {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return Some(Duration::ZERO);
        }
        d.strip_prefix("max-age=")?
            .trim_matches('"')
            .parse()
            .ok()
            .map(Duration::from_secs)
    })
}

async fn read_capped(response: &mut reqwest::Response) -> Result<Vec<u8>, FetchError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(FetchError::TooLarge { limit: MAX_BODY });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::TooLarge { limit: MAX_BODY });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::TimedOut
    } else {
        FetchError::Transport(e)
    }
}

/// The `error` member of an RFC 6749-style error body, if it is one.
fn error_code(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let code = serde_json::from_slice::<ErrorBody>(body).ok()?.error;
    // Only a short, plain code is worth keeping (it ends up in logs).
    (code.len() <= 64 && code.bytes().all(|b| b.is_ascii_graphic())).then_some(code)
}

/// An error and its sources on one line, for logs.
pub(crate) fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_json_bodies_only() {
        assert_eq!(
            error_code(br#"{"error":"cursor_expired"}"#).as_deref(),
            Some("cursor_expired")
        );
        assert_eq!(error_code(b"<html>gone</html>"), None);
        assert_eq!(error_code(br#"{"error":"has space"}"#), None);
    }

    #[test]
    fn only_a_410_cursor_expired_asks_for_a_resync() {
        let gone = |code: &str| FetchError::Status {
            status: 410,
            code: Some(code.into()),
        };
        assert!(gone("cursor_expired").is_cursor_expired());
        assert!(!gone("other").is_cursor_expired());
        let not_found = FetchError::Status {
            status: 404,
            code: Some("cursor_expired".into()),
        };
        assert!(!not_found.is_cursor_expired());
    }

    #[test]
    fn credentials_never_show_their_secret() {
        let c = Credentials {
            id: "api".into(),
            secret: SecretString::from("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
