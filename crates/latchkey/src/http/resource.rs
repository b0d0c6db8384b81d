//! Endpoints for resource servers, authenticated with client credentials
//! (HTTP Basic): RFC 7662 introspection and the revocation feed.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_verify::wire::{Introspection, RevocationPage};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonOrForm, caller_ip};
use crate::domain::{AuthError, ResourceClient};
use crate::http::AppState;

/// Feed entries per page unless `limit` says otherwise.
const DEFAULT_PAGE: i64 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(introspect))
        .routes(routes!(revocations))
}

/// HTTP Basic client credentials as presented, not yet checked. A failed
/// client authentication counts against the caller's token rate limit (an
/// authenticated resource server is not limited).
pub struct ClientCredentials {
    id: String,
    secret: String,
    ip: Option<IpAddr>,
}

impl ClientCredentials {
    /// The answer to a failed client authentication: `401 invalid_client`,
    /// or `429` once the caller's failures pass the token rate limit.
    fn refused(state: &AppState, ip: Option<IpAddr>) -> ApiError {
        match state.token_limit.check(ip) {
            Ok(()) => ApiError::InvalidClient,
            Err(limited) => limited,
        }
    }

    /// `result` as an answer, a failed client authentication counted.
    fn answer<T>(&self, state: &AppState, result: Result<T, AuthError>) -> ApiResult<T> {
        result.map_err(|e| match e {
            AuthError::InvalidClient => Self::refused(state, self.ip),
            other => other.into(),
        })
    }
}

impl FromRequestParts<AppState> for ClientCredentials {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = caller_ip(parts, state);
        let (id, secret) =
            basic_credentials(&parts.headers).ok_or_else(|| Self::refused(state, ip))?;
        Ok(Self { id, secret, ip })
    }
}

/// The id and secret of an `Authorization: Basic` header, if it holds them.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let text = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// A resource server, authenticated by its client credentials.
pub struct ClientAuth(pub ResourceClient);

impl FromRequestParts<AppState> for ClientAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = ClientCredentials::from_request_parts(parts, state).await?;
        let checked = state
            .auth
            .authenticate_client(&presented.id, &presented.secret)
            .await;
        presented.answer(state, checked).map(ClientAuth)
    }
}

/// RFC 7662 introspection request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectRequest {
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
}

/// RFC 7662 token introspection: `{"active": true, ...claims}` for a valid
/// access token of a live session, only `{"active": false}` for anything else.
#[utoipa::path(post, path = "/v1/introspect", tag = "resource servers",
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client" = [])), responses(
    (status = 200, description = "Introspection answer"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn introspect(
    State(state): State<AppState>,
    client: ClientCredentials,
    JsonOrForm(req): JsonOrForm<IntrospectRequest>,
) -> ApiResult<Json<Introspection>> {
    let token = req.token.filter(|t| !t.is_empty());
    let _hint = req.token_type_hint;
    let checked = state
        .auth
        .introspect_for_client(&client.id, &client.secret, token.as_deref())
        .await;
    let claims = client.answer(&state, checked)?;
    Ok(Json(Introspection {
        active: claims.is_some(),
        token_type: claims.as_ref().map(|_| "Bearer".to_string()),
        claims,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The `next_cursor` of the previous page; 0 (default) reads everything still kept.
    pub after: Option<i64>,
    /// Page size, 1 to 10000 (default 1000).
    pub limit: Option<i64>,
}

/// The revocation feed: sessions ended and per-user `not_before` times, in
/// cursor order. `410 cursor_expired` means the cursor is older than what is
/// kept: drop local state and read again from `after=0`.
#[utoipa::path(get, path = "/v1/revocations", tag = "resource servers", params(FeedQuery),
    security(("client" = [])), responses(
    (status = 200, description = "A page of revocations"), (status = 401, body = ErrorBody), (status = 410, body = ErrorBody)))]
async fn revocations(
    State(state): State<AppState>,
    ClientAuth(_client): ClientAuth,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<RevocationPage>> {
    let q: FeedQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::InvalidRequest("after and limit must be integers".into()))?;
    let page = state
        .auth
        .revocation_page(q.after.unwrap_or(0), q.limit.unwrap_or(DEFAULT_PAGE))
        .await?;
    Ok(Json(page))
}
