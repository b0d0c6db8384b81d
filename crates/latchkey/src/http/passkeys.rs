//! Passkeys: the caller's (register, list, rename, remove) and signing in
//! with one, alone or as the second step of a password sign-in. Each
//! ceremony is two calls: options for `navigator.credentials.create()` or
//! `.get()` with a token, then the authenticator's answer with that token.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiResult, ErrorBody};
use super::extract::{ApiJson, AuthUser, ClientMeta};
use super::wire::TokenResponse;
use crate::domain::clock::rfc3339;
use crate::domain::passkeys::{Ceremony, PasskeyRecord};
use crate::http::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, register))
        .routes(routes!(registration_options))
        .routes(routes!(rename, remove))
        .routes(routes!(sign_in_options))
        .routes(routes!(sign_in))
        .routes(routes!(second_factor_options))
}

/// One of the caller's passkeys.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyView {
    /// The credential id (base64url).
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// A synced passkey (it may be copied to the user's other devices).
    pub backup_eligible: bool,
    pub backed_up: bool,
}

impl From<PasskeyRecord> for PasskeyView {
    fn from(p: PasskeyRecord) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: rfc3339(p.created_at),
            last_used_at: p.last_used_at.map(rfc3339),
            backup_eligible: p.backup_eligible,
            backed_up: p.backup_state,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyList {
    pub passkeys: Vec<PasskeyView>,
}

/// A ceremony's options and the token its answer goes back with.
#[derive(Debug, Serialize, ToSchema)]
pub struct CeremonyView {
    /// Send it back with the authenticator's answer (single use, 5 minutes).
    pub token: String,
    /// `{"publicKey": …}` for `navigator.credentials.create()` or `.get()`,
    /// binary fields in base64url (`PublicKeyCredential.parse…OptionsFromJSON`).
    #[schema(value_type = Object)]
    pub options: Value,
}

impl From<Ceremony> for CeremonyView {
    fn from(c: Ceremony) -> Self {
        Self {
            token: c.token,
            options: c.options,
        }
    }
}

/// An authenticator's answer to a ceremony.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAnswer {
    /// The ceremony's `token`.
    pub token: String,
    /// The `PublicKeyCredential` as `toJSON()` gives it.
    #[schema(value_type = Object)]
    pub credential: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPasskey {
    pub token: String,
    #[schema(value_type = Object)]
    pub credential: Value,
    /// What the user calls it (default: the device, e.g. "Chrome 156 on Linux").
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRename {
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeySignIn {
    pub token: String,
    #[schema(value_type = Object)]
    pub credential: Value,
    /// The `device_token` of an earlier sign-in from this device, as for login.
    #[serde(default)]
    pub device_token: Option<String>,
    /// Browser mode: the refresh token is set as an HttpOnly cookie instead.
    #[serde(default)]
    pub cookie: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorOptions {
    /// The `mfa_token` of the password step's answer.
    pub mfa_token: String,
}

/// The caller's passkeys.
#[utoipa::path(get, path = "/v1/passkeys", tag = "passkeys", security(("bearer" = [])), responses(
    (status = 200, body = PasskeyList), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> ApiResult<Json<PasskeyList>> {
    let passkeys = state.auth.passkeys(&caller).await?;
    Ok(Json(PasskeyList {
        passkeys: passkeys.into_iter().map(Into::into).collect(),
    }))
}

/// Options to register a passkey (needs a sign-in within `reauth_max_age`).
#[utoipa::path(post, path = "/v1/passkeys/register/options", tag = "passkeys", security(("bearer" = [])), responses(
    (status = 200, body = CeremonyView), (status = 400, description = "Passkeys are off, or too many", body = ErrorBody),
    (status = 401, body = ErrorBody), (status = 403, description = "`reauthentication_required`", body = ErrorBody)))]
async fn registration_options(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> ApiResult<Json<CeremonyView>> {
    Ok(Json(state.auth.passkey_registration(&caller).await?.into()))
}

/// Register the passkey the authenticator made from the options.
#[utoipa::path(post, path = "/v1/passkeys", tag = "passkeys", request_body = NewPasskey, security(("bearer" = [])), responses(
    (status = 201, body = PasskeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<NewPasskey>,
) -> ApiResult<Response> {
    let passkey = state
        .auth
        .register_passkey(
            &caller,
            &req.token,
            &req.credential,
            req.name.as_deref(),
            &meta.client,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(PasskeyView::from(passkey))).into_response())
}

/// Rename one of the caller's passkeys.
#[utoipa::path(patch, path = "/v1/passkeys/{id}", tag = "passkeys", request_body = PasskeyRename, security(("bearer" = [])), responses(
    (status = 204, description = "Renamed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
async fn rename(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PasskeyRename>,
) -> ApiResult<StatusCode> {
    state.auth.rename_passkey(&caller, &id, &req.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove one of the caller's passkeys (needs a sign-in within `reauth_max_age`).
#[utoipa::path(delete, path = "/v1/passkeys/{id}", tag = "passkeys", security(("bearer" = [])), responses(
    (status = 204, description = "Removed"), (status = 401, body = ErrorBody),
    (status = 403, description = "`reauthentication_required`", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .auth
        .remove_passkey(&caller, &id, &meta.client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Options to sign in with a passkey alone (no address typed: the
/// authenticator offers the passkeys it holds for this site).
#[utoipa::path(post, path = "/v1/login/passkey/options", tag = "auth", responses(
    (status = 200, body = CeremonyView), (status = 400, description = "Passkeys are off", body = ErrorBody),
    (status = 429, body = ErrorBody)))]
async fn sign_in_options(
    State(state): State<AppState>,
    meta: ClientMeta,
) -> ApiResult<Json<CeremonyView>> {
    state.password_limit.check(meta.ip)?;
    Ok(Json(state.auth.passkey_sign_in().await?.into()))
}

/// Sign in with a passkey: a new session for its owner. A passkey whose
/// signature counter went back (a cloned authenticator) is refused.
#[utoipa::path(post, path = "/v1/login/passkey", tag = "auth", request_body = PasskeySignIn, responses(
    (status = 200, description = "Logged in", body = TokenResponse),
    (status = 400, description = "`invalid_grant`: the passkey was refused; `invalid_request`: an unknown or finished ceremony", body = ErrorBody),
    (status = 429, body = ErrorBody)))]
async fn sign_in(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    jar: CookieJar,
    ApiJson(req): ApiJson<PasskeySignIn>,
) -> ApiResult<Response> {
    let browser = super::auth::sign_in_request(&state, &meta, &headers, req.cookie)?;
    let pair = state
        .auth
        .sign_in_with_passkey(
            &req.token,
            &req.credential,
            req.device_token.as_deref(),
            &meta.client,
        )
        .await?;
    let ok = StatusCode::OK;
    Ok(super::auth::respond(&state, jar, browser, pair, None, ok))
}

/// Options for the second step of a password sign-in with one of the
/// account's passkeys (`methods` of the `mfa_required` answer lists
/// `passkey`); the answer goes to `POST /v1/login/mfa` as `passkey`.
#[utoipa::path(post, path = "/v1/login/mfa/passkey/options", tag = "auth", request_body = SecondFactorOptions, responses(
    (status = 200, body = CeremonyView), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn second_factor_options(
    State(state): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<SecondFactorOptions>,
) -> ApiResult<Json<CeremonyView>> {
    state.password_limit.check(meta.ip)?;
    Ok(Json(
        state
            .auth
            .passkey_second_factor(&req.mfa_token)
            .await?
            .into(),
    ))
}
