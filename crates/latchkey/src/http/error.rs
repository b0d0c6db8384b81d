//! The one error type of the HTTP API and its one JSON shape,
//! `{"error": "<code>", "error_description": "<sentence>"}`. Internal details
//! are logged here and never shown to a client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::AuthError;

/// The realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "latchkey";

#[derive(Debug)]
pub enum ApiError {
    InvalidRequest(String),
    InvalidGrant(String),
    UnsupportedGrantType,
    /// A bearer token was presented and is not acceptable.
    InvalidToken(String),
    /// No bearer token at all: a bare challenge (RFC 6750 §3.1).
    MissingToken,
    /// A cookie-mode request without a valid CSRF token or from a foreign origin.
    CsrfFailed(String),
    /// Resource-server credentials missing or wrong (RFC 6749 §5.2).
    InvalidClient,
    InvalidCredentials,
    /// Authenticated, but not allowed to do this (a resource-server client
    /// calling the admin API).
    Forbidden(String),
    /// A change beyond this device needs a recent proof of identity.
    ReauthenticationRequired(String),
    /// A second-factor code that is wrong, expired or already used.
    InvalidCode,
    /// Enrolling a second factor that is already on.
    MfaEnabled,
    /// A mailed link's token that is unknown, expired or used.
    InvalidLink,
    /// The password was right; the address still has to be verified.
    EmailNotVerified,
    NotFound,
    MethodNotAllowed,
    EmailTaken,
    /// A revocation-feed cursor older than what is kept.
    CursorExpired,
    UnsupportedMediaType,
    PayloadTooLarge,
    WeakPassword(String),
    RateLimited {
        retry_after: u64,
    },
    Unavailable {
        retry_after: u64,
    },
    Internal(String),
}

/// The error body, as documented in the OpenAPI description.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub error: &'static str,
    /// Human-readable explanation.
    pub error_description: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_)
            | ApiError::InvalidGrant(_)
            | ApiError::UnsupportedGrantType
            | ApiError::InvalidLink => StatusCode::BAD_REQUEST,
            ApiError::InvalidToken(_) | ApiError::MissingToken | ApiError::InvalidClient => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::CsrfFailed(_)
            | ApiError::InvalidCredentials
            | ApiError::EmailNotVerified
            | ApiError::Forbidden(_)
            | ApiError::ReauthenticationRequired(_)
            | ApiError::InvalidCode => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::EmailTaken | ApiError::MfaEnabled => StatusCode::CONFLICT,
            ApiError::CursorExpired => StatusCode::GONE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::WeakPassword(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidGrant(_) => "invalid_grant",
            ApiError::UnsupportedGrantType => "unsupported_grant_type",
            ApiError::InvalidToken(_) | ApiError::MissingToken => "invalid_token",
            ApiError::CsrfFailed(_) => "csrf_failed",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::ReauthenticationRequired(_) => "reauthentication_required",
            ApiError::InvalidCode => "invalid_code",
            ApiError::MfaEnabled => "mfa_enabled",
            ApiError::InvalidClient => "invalid_client",
            ApiError::CursorExpired => "cursor_expired",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidLink => "invalid_link",
            ApiError::EmailNotVerified => "email_not_verified",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::EmailTaken => "email_taken",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::WeakPassword(_) => "weak_password",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable { .. } => "temporarily_unavailable",
            ApiError::Internal(_) => "server_error",
        }
    }

    fn description(&self) -> String {
        match self {
            ApiError::InvalidRequest(m)
            | ApiError::InvalidGrant(m)
            | ApiError::InvalidToken(m)
            | ApiError::CsrfFailed(m)
            | ApiError::Forbidden(m)
            | ApiError::ReauthenticationRequired(m)
            | ApiError::WeakPassword(m) => m.clone(),
            ApiError::UnsupportedGrantType => "only the refresh_token grant is supported".into(),
            ApiError::MissingToken => "a bearer access token is required".into(),
            ApiError::InvalidCredentials => "the current password is wrong".into(),
            ApiError::InvalidLink => AuthError::InvalidLink.to_string(),
            ApiError::InvalidCode => AuthError::WrongCode.to_string(),
            ApiError::MfaEnabled => AuthError::MfaEnabled.to_string(),
            ApiError::EmailNotVerified => AuthError::EmailNotVerified.to_string(),
            ApiError::InvalidClient => "client authentication failed".into(),
            ApiError::CursorExpired => {
                "the cursor is older than the revocations kept; drop local state and read again from after=0".into()
            }
            ApiError::NotFound => "no such resource".into(),
            ApiError::MethodNotAllowed => "method not allowed on this resource".into(),
            ApiError::EmailTaken => "an account with this email already exists".into(),
            ApiError::UnsupportedMediaType => {
                "unsupported content type; send application/json".into()
            }
            ApiError::PayloadTooLarge => "request body too large".into(),
            ApiError::RateLimited { .. } => "too many requests; retry later".into(),
            ApiError::Unavailable { .. } => {
                "the service is temporarily unavailable; retry later".into()
            }
            ApiError::Internal(_) => "internal server error".into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidRequest(m) => ApiError::InvalidRequest(m),
            AuthError::InvalidGrant(m) => ApiError::InvalidGrant(m.into()),
            AuthError::EmailTaken => ApiError::EmailTaken,
            AuthError::WeakPassword(m) => ApiError::WeakPassword(m),
            AuthError::InvalidCredentials => ApiError::InvalidCredentials,
            AuthError::InvalidLink => ApiError::InvalidLink,
            AuthError::EmailNotVerified => ApiError::EmailNotVerified,
            AuthError::InvalidToken(m) => ApiError::InvalidToken(m.into()),
            AuthError::NotFound => ApiError::NotFound,
            AuthError::InvalidClient => ApiError::InvalidClient,
            AuthError::CursorExpired => ApiError::CursorExpired,
            e @ AuthError::ReauthenticationRequired { .. } => {
                ApiError::ReauthenticationRequired(e.to_string())
            }
            AuthError::WrongCode => ApiError::InvalidCode,
            AuthError::MfaEnabled => ApiError::MfaEnabled,
            AuthError::Throttled { retry_after } => ApiError::RateLimited { retry_after },
            AuthError::Busy { retry_after } => ApiError::Unavailable { retry_after },
            AuthError::Unavailable(m) => {
                tracing::warn!(error = %m, "storage unavailable");
                ApiError::Unavailable { retry_after: 2 }
            }
            AuthError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let status = self.status();
        let description = self.description();
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.code(),
                error_description: description.clone(),
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            ApiError::MissingToken => {
                let challenge = format!("Bearer realm=\"{REALM}\"");
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
                );
            }
            ApiError::InvalidClient => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"latchkey\""),
                );
            }
            ApiError::InvalidToken(_) => {
                let challenge = format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""
                );
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge)
                        .unwrap_or(HeaderValue::from_static("Bearer error=\"invalid_token\"")),
                );
            }
            ApiError::RateLimited { retry_after } | ApiError::Unavailable { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
