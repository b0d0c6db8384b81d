//! JSON shapes of the API's responses, shared by the resource modules.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::agents::device_name;
use crate::domain::clock::rfc3339;
use crate::domain::{Event, Session, TokenPair, User};

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub email_verified: bool,
    /// RFC 3339 time.
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            email_verified: u.email_verified,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// A token response (RFC 6749 §5.1), with the session id and, on
/// registration, the new user.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access-token lifetime in seconds.
    pub expires_in: i64,
    /// Absent in browser (cookie) mode, where it travels only in an HttpOnly cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub session_id: String,
    /// Browser mode only: send it as `X-CSRF-Token` with cookie-based calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserView>,
    /// On login and registration: send it back as `device_token` with the
    /// next login from this device (not a credential; see docs/security.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

impl TokenResponse {
    pub fn new(pair: TokenPair, user: Option<&User>) -> Self {
        TokenResponse {
            access_token: pair.access_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
            refresh_token: Some(pair.refresh_token.expose().to_string()),
            session_id: pair.session_id,
            csrf_token: None,
            user: user.map(UserView::from),
            device_token: pair.device_token,
        }
    }

    /// The browser-mode body: no refresh token, the CSRF token instead.
    pub fn for_browser(pair: TokenPair, user: Option<&User>) -> Self {
        let csrf = pair.csrf_token.clone();
        TokenResponse {
            refresh_token: None,
            csrf_token: Some(csrf),
            ..TokenResponse::new(pair, user)
        }
    }

    /// The response, marked uncacheable as RFC 6749 §5.1 requires.
    pub fn respond(self, status: StatusCode) -> Response {
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

/// One session as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_used_at: String,
    /// When the session ends at the latest (absolute lifetime).
    pub expires_at: String,
    /// The device as people read it, e.g. `Chrome 156 on Linux`, when the
    /// user agent is recognised.
    pub device: Option<String>,
    /// The raw `User-Agent` header the session started with.
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Whether this is the session of the calling access token.
    pub current: bool,
}

impl SessionView {
    pub fn new(s: &Session, current_sid: &str) -> Self {
        SessionView {
            id: s.id.clone(),
            created_at: rfc3339(s.created_at),
            last_used_at: rfc3339(s.last_used_at),
            expires_at: rfc3339(s.expires_at),
            device: s.user_agent.as_deref().and_then(device_name),
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
            current: s.id == current_sid,
        }
    }
}

/// One security event as its user sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: i64,
    /// e.g. `login`, `login_failed`, `refresh_reuse`, `password_changed`.
    pub kind: String,
    pub session_id: Option<String>,
    pub ip: Option<String>,
    /// The device as people read it, e.g. `Chrome 156 on Linux`.
    pub device: Option<String>,
    /// The raw `User-Agent` header.
    pub user_agent: Option<String>,
    pub created_at: String,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        EventView {
            id: e.id,
            kind: e.kind,
            session_id: e.session_id,
            ip: e.ip,
            device: e.user_agent.as_deref().and_then(device_name),
            user_agent: e.user_agent,
            created_at: rfc3339(e.created_at),
        }
    }
}

/// The `next_before` cursor of a page of events asked for `limit` at most:
/// the last id while the page is full, none on the last page.
pub fn next_before(events: &[Event], limit: i64) -> Option<i64> {
    (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten()
}
