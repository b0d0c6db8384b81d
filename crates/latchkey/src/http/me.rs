//! The caller's own account: profile, security events and password change.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, AuthUser, ClientMeta};
use super::wire::{EventView, TokenResponse, UserView, next_before};
use crate::domain::clock::rfc3339;
use crate::http::AppState;

/// Events returned per page unless `limit` says otherwise.
const DEFAULT_EVENTS: i64 = 50;
const MAX_EVENTS: i64 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(events))
        .routes(routes!(change_password))
        .routes(routes!(reauthenticate))
}

/// The caller's profile.
#[utoipa::path(get, path = "/v1/me", tag = "account", security(("bearer" = [])), responses(
    (status = 200, body = UserView), (status = 401, body = ErrorBody)))]
async fn me(AuthUser(caller): AuthUser) -> Json<UserView> {
    Json(UserView::from(&caller.user()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events with an id below this one (the `next_before` of the previous page).
    pub before: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<EventView>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// The caller's security events, newest first.
#[utoipa::path(get, path = "/v1/me/events", tag = "account", params(EventsQuery), security(("bearer" = [])), responses(
    (status = 200, body = EventsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<EventsPage>> {
    let q: EventsQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::InvalidRequest(format!("invalid query: {e}")))?;
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and {MAX_EVENTS}"
        )));
    }
    let records = state.auth.events(&caller, q.before, limit).await?;
    Ok(Json(EventsPage {
        next_before: next_before(&records, limit),
        events: records.into_iter().map(EventView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
    /// Browser mode: the fresh session's refresh token is set as a cookie.
    #[serde(default)]
    pub cookie: Option<bool>,
}

/// Change the password: every session ends and a fresh one is returned.
#[utoipa::path(post, path = "/v1/me/password", tag = "account", request_body = PasswordChange, security(("bearer" = [])), responses(
    (status = 200, description = "Changed; tokens of a fresh session", body = TokenResponse),
    (status = 401, body = ErrorBody), (status = 403, description = "Wrong current password", body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: axum::http::HeaderMap,
    jar: axum_extra::extract::cookie::CookieJar,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<Response> {
    let browser = super::auth::sign_in_request(&state, &meta, &headers, req.cookie)?;
    let pair = state
        .auth
        .change_password(
            &caller,
            &req.current_password,
            &req.new_password,
            &meta.client,
        )
        .await?;
    if browser {
        return Ok(state
            .browser
            .respond(jar, pair, None, state.auth.now(), StatusCode::OK));
    }
    Ok(TokenResponse::new(pair, None).respond(StatusCode::OK))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reauthenticate {
    pub password: String,
    /// With two-step sign-in on: a code from the authenticator app…
    #[serde(default)]
    pub code: Option<String>,
    /// …or a recovery code (spent).
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// A fresh access token of the same session after a re-authentication.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReauthenticatedToken {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_in: i64,
    pub session_id: String,
    /// RFC 3339 time of this proof, also the token's `auth_time` claim.
    pub auth_time: String,
}

/// Prove the password again (step-up): the session's `auth_time` becomes now
/// and a fresh access token carries it; no new session, no new refresh token.
/// Revoking other sessions, logging out everywhere and changing second
/// factors need a proof younger than `reauth_max_age`. An account with
/// two-step sign-in sends its code (or a recovery code) too.
#[utoipa::path(post, path = "/v1/reauthenticate", tag = "account", request_body = Reauthenticate, security(("bearer" = [])), responses(
    (status = 200, body = ReauthenticatedToken), (status = 401, body = ErrorBody),
    (status = 400, description = "Two-step sign-in is on and no code was sent", body = ErrorBody),
    (status = 403, description = "Wrong password (`invalid_credentials`) or code (`invalid_code`)", body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn reauthenticate(
    State(state): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<Reauthenticate>,
) -> ApiResult<Response> {
    state.password_limit.check(meta.ip)?;
    let done = state
        .auth
        .reauthenticate(
            &caller,
            &req.password,
            super::mfa::proof(req.code.as_deref(), req.recovery_code.as_deref(), None)?,
            &meta.client,
        )
        .await?;
    let body = ReauthenticatedToken {
        access_token: done.access_token,
        token_type: "Bearer",
        expires_in: done.expires_in,
        session_id: done.session_id,
        auth_time: rfc3339(done.auth_time),
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
