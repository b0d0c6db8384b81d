//! Endpoints for resource servers, authenticated with client credentials
//! (HTTP Basic): RFC 7662 introspection and the revocation feed.

use axum::Json;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use latchkey_verify::wire::{Introspection, RevocationPage};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ClientMeta, JsonOrForm};
use crate::domain::ResourceClient;
use crate::http::AppState;

/// Feed entries per page unless `limit` says otherwise.
const DEFAULT_PAGE: i64 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(introspect))
        .routes(routes!(revocations))
}

/// A resource server, authenticated by HTTP Basic client credentials. A
/// failed authentication counts against the caller's token rate limit (an
/// authenticated resource server is not limited).
pub struct ClientAuth(pub ResourceClient);

impl FromRequestParts<AppState> for ClientAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match authenticate(parts, state).await {
            Err(ApiError::InvalidClient) => {
                let meta = ClientMeta::from_request_parts(parts, state).await?;
                state.token_limit.check(meta.ip)?;
                Err(ApiError::InvalidClient)
            }
            other => other.map(ClientAuth),
        }
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<ResourceClient, ApiError> {
    {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let encoded = value
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, rest)| rest.trim())
            .ok_or(ApiError::InvalidClient)?;
        let decoded = STANDARD
            .decode(encoded)
            .map_err(|_| ApiError::InvalidClient)?;
        let text = String::from_utf8(decoded).map_err(|_| ApiError::InvalidClient)?;
        let (id, secret) = text.split_once(':').ok_or(ApiError::InvalidClient)?;
        Ok(state.auth.authenticate_client(id, secret).await?)
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
    ClientAuth(_client): ClientAuth,
    JsonOrForm(req): JsonOrForm<IntrospectRequest>,
) -> ApiResult<Json<Introspection>> {
    let token = req
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::InvalidRequest("token is required".into()))?;
    let _hint = req.token_type_hint;
    let claims = state.auth.introspect(&token).await?;
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
