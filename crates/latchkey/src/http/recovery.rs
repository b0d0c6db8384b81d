//! The account's life over email: verifying the address, resetting a
//! forgotten password, changing the address. Links carry their token in
//! the URL fragment; the front end posts it here in the body. See
//! docs/email.md.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiResult, ErrorBody};
use super::extract::{ApiJson, AuthUser, ClientMeta};
use super::wire::UserView;
use crate::http::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_verification))
        .routes(routes!(resend_verification))
        .routes(routes!(confirm_verification))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
        .routes(routes!(request_email_change))
        .routes(routes!(confirm_email_change))
        .routes(routes!(cancel_email_change))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The token from the link's fragment (`#token=…`).
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    pub token: String,
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChange {
    /// The account's current password.
    pub password: String,
    pub new_email: String,
}

/// The one answer to requests that mail a link.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: &'static str,
}

fn accepted() -> Response {
    let body = Accepted { status: "accepted" };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Ask for a verification mail by address (for accounts that cannot sign
/// in before verifying). The same answer, at once, for every address.
#[utoipa::path(post, path = "/v1/verify-email/request", tag = "email", request_body = EmailRequest, responses(
    (status = 202, description = "A link is mailed if the address has an unverified account", body = Accepted),
    (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn request_verification(
    State(state): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<EmailRequest>,
) -> ApiResult<Response> {
    state.password_limit.check(meta.ip)?;
    state.auth.request_verification(&req.email, &meta.client)?;
    Ok(accepted())
}

/// Mail the caller a new verification link.
#[utoipa::path(post, path = "/v1/me/verify-email", tag = "email", security(("bearer" = [])), responses(
    (status = 202, description = "A new link is mailed", body = Accepted),
    (status = 400, description = "Already verified, or verification is off", body = ErrorBody),
    (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn resend_verification(
    State(state): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
) -> ApiResult<Response> {
    state.password_limit.check(meta.ip)?;
    state
        .auth
        .resend_verification(&caller, &meta.client)
        .await?;
    Ok(accepted())
}

/// Verify the address with the token of a verification link.
#[utoipa::path(post, path = "/v1/verify-email", tag = "email", request_body = TokenBody, responses(
    (status = 200, description = "Verified", body = UserView),
    (status = 400, description = "`invalid_link`: unknown, expired or used", body = ErrorBody),
    (status = 429, body = ErrorBody)))]
async fn confirm_verification(
    State(state): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<TokenBody>,
) -> ApiResult<Json<UserView>> {
    state.token_limit.check(meta.ip)?;
    let user = state
        .auth
        .confirm_verification(&req.token, &meta.client)
        .await?;
    Ok(Json(UserView::from(&user)))
}

/// Ask for a password reset link. The same answer, at once, for every address.
#[utoipa::path(post, path = "/v1/password-reset", tag = "email", request_body = EmailRequest, responses(
    (status = 202, description = "A link is mailed if the address has an account", body = Accepted),
    (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn request_reset(
    State(state): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<EmailRequest>,
) -> ApiResult<Response> {
    state.password_limit.check(meta.ip)?;
    state
        .auth
        .request_password_reset(&req.email, &meta.client)?;
    Ok(accepted())
}

/// Set a new password with the token of a reset link. Every session and
/// access token of the account ends.
#[utoipa::path(post, path = "/v1/password-reset/confirm", tag = "email", request_body = ResetConfirm, responses(
    (status = 204, description = "Password set; sign in with it"),
    (status = 400, description = "`invalid_link`: unknown, expired or used", body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn confirm_reset(
    State(state): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<ResetConfirm>,
) -> ApiResult<StatusCode> {
    state.password_limit.check(meta.ip)?;
    state
        .auth
        .confirm_password_reset(&req.token, &req.new_password, &meta.client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Move the account to a new address: a link to it confirms, and the
/// current address is told, with a link that undoes the change.
#[utoipa::path(post, path = "/v1/me/email", tag = "email", request_body = EmailChange, security(("bearer" = [])), responses(
    (status = 202, description = "A confirmation link is mailed to the new address", body = Accepted),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, description = "Wrong password", body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn request_email_change(
    State(state): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<EmailChange>,
) -> ApiResult<Response> {
    state.password_limit.check(meta.ip)?;
    state
        .auth
        .request_email_change(&caller, &req.password, &req.new_email, &meta.client)
        .await?;
    Ok(accepted())
}

/// Confirm a new address with the token of the link sent to it.
#[utoipa::path(post, path = "/v1/email-change/confirm", tag = "email", request_body = TokenBody, responses(
    (status = 200, description = "The account uses the new address", body = UserView),
    (status = 400, description = "`invalid_link`: unknown, expired or used", body = ErrorBody),
    (status = 409, description = "Another account took the address meanwhile", body = ErrorBody),
    (status = 429, body = ErrorBody)))]
async fn confirm_email_change(
    State(state): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<TokenBody>,
) -> ApiResult<Json<UserView>> {
    state.token_limit.check(meta.ip)?;
    let user = state
        .auth
        .confirm_email_change(&req.token, &meta.client)
        .await?;
    Ok(Json(UserView::from(&user)))
}

/// "This wasn't me": undo an email change with the token of the link sent
/// to the old address. The old address comes back and every session ends.
#[utoipa::path(post, path = "/v1/email-change/cancel", tag = "email", request_body = TokenBody, responses(
    (status = 200, description = "The change is undone; every session ended", body = UserView),
    (status = 400, description = "`invalid_link`: unknown, expired or used", body = ErrorBody),
    (status = 429, body = ErrorBody)))]
async fn cancel_email_change(
    State(state): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<TokenBody>,
) -> ApiResult<Json<UserView>> {
    state.token_limit.check(meta.ip)?;
    let user = state
        .auth
        .cancel_email_change(&req.token, &meta.client)
        .await?;
    Ok(Json(UserView::from(&user)))
}
