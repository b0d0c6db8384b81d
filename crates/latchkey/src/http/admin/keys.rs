//! Signing keys: list, rotate, revoke.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Admin;
use crate::domain::clock::rfc3339;
use crate::domain::keys::KeyInfo;
use crate::http::AppState;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::OptionalBody;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    pub created_at: String,
    /// When it starts signing.
    pub activates_at: String,
    pub retired_at: Option<String>,
    /// When it leaves the JWKS.
    pub expires_at: Option<String>,
    /// `signing`, `pending`, `active` (published) or `retired`.
    pub state: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

fn key_view(k: &KeyInfo, signing: &str, now: i64) -> KeyView {
    let state = match () {
        _ if k.kid == signing => "signing",
        _ if k.activates_at > now => "pending",
        _ if k.retired_at.is_some_and(|r| r <= now) => "retired",
        _ => "active",
    };
    KeyView {
        kid: k.kid.clone(),
        alg: k.alg.clone(),
        created_at: rfc3339(k.created_at),
        activates_at: rfc3339(k.activates_at),
        retired_at: k.retired_at.map(rfc3339),
        expires_at: k.expires_at.map(rfc3339),
        state,
    }
}

/// The signing keys, published and retired.
#[utoipa::path(get, path = "/admin/v1/keys", tag = "admin",
    security(("client" = [])), responses(
    (status = 200, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_keys(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<KeyList>> {
    let (signing, now) = (state.auth.signing_kid(), state.auth.now());
    let keys = state.auth.list_keys().await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(|k| key_view(k, &signing, now)).collect(),
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Sign with the new key at once instead of after two minutes (for
    /// emergencies: verifiers with a cached JWKS refetch on the unknown kid).
    #[serde(default)]
    pub immediately: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rotated {
    pub kid: String,
    /// When the new key starts signing.
    pub activates_at: String,
}

/// Publish a new signing key, which signs after two minutes.
#[utoipa::path(post, path = "/admin/v1/keys/rotate", tag = "admin", request_body = Option<RotateKey>,
    security(("client" = [])), responses(
    (status = 200, body = Rotated), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn rotate_key(
    State(state): State<AppState>,
    Admin(actor): Admin,
    OptionalBody(req): OptionalBody<RotateKey>,
) -> ApiResult<Json<Rotated>> {
    let immediately = req.unwrap_or_default().immediately;
    let (kid, from) = state
        .auth
        .rotate_keys(state.signing_alg, immediately, &actor)
        .await?;
    Ok(Json(Rotated {
        kid,
        activates_at: rfc3339(from),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRevoked {
    /// The key that signs instead, when the revoked one was signing.
    pub replaced_by: Option<String>,
}

/// Withdraw a leaked key: it leaves the JWKS and its tokens are refused.
#[utoipa::path(post, path = "/admin/v1/keys/{kid}/revoke", tag = "admin",
    params(("kid" = String, Path, description = "key id")),
    security(("client" = [])), responses(
    (status = 200, body = KeyRevoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(kid): Path<String>,
) -> ApiResult<Json<KeyRevoked>> {
    let replaced_by = state
        .auth
        .withdraw_key(state.signing_alg, &kid, &actor)
        .await?;
    Ok(Json(KeyRevoked { replaced_by }))
}
