//! The caller's second factors: TOTP enrolment, confirmation and removal,
//! and recovery codes. The second step of a sign-in is in `auth`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, AuthUser, ClientMeta};
use crate::domain::mfa::{MfaStatus, Proof};
use crate::http::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(enrol_totp, disable_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(regenerate_codes))
}

/// The second factor a request carries: `code`, `recovery_code` or a
/// passkey's answer, one at most.
pub fn proof<'a>(
    code: Option<&'a str>,
    recovery_code: Option<&'a str>,
    passkey: Option<&'a super::passkeys::PasskeyAnswer>,
) -> Result<Option<Proof<'a>>, ApiError> {
    match (code, recovery_code, passkey) {
        (Some(code), None, None) => Ok(Some(Proof::Totp(code))),
        (None, Some(code), None) => Ok(Some(Proof::RecoveryCode(code))),
        (None, None, Some(p)) => Ok(Some(Proof::Passkey {
            ceremony: &p.token,
            answer: &p.credential,
        })),
        (None, None, None) => Ok(None),
        _ => Err(ApiError::InvalidRequest(
            "send one of `code`, `recovery_code` and `passkey`".into(),
        )),
    }
}

/// The caller's second factors.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaView {
    /// Two-step sign-in with an authenticator app is on.
    pub totp: bool,
    /// An enrolment waits for its first code.
    pub totp_pending: bool,
    /// Recovery codes not used yet.
    pub recovery_codes_left: i64,
}

impl From<MfaStatus> for MfaView {
    fn from(s: MfaStatus) -> Self {
        Self {
            totp: s.totp,
            totp_pending: s.totp_pending,
            recovery_codes_left: s.recovery_codes_left,
        }
    }
}

/// What the authenticator app needs; shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrolmentView {
    /// The secret in base 32, for typing in by hand.
    pub secret: String,
    /// `otpauth://totp/…` (SHA-1, 6 digits, 30 s).
    pub otpauth_uri: String,
    /// The URI as a QR code: an SVG document to show as an image.
    pub qr_svg: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotp {
    /// A code the authenticator app shows now.
    pub code: String,
}

/// Single-use recovery codes; shown once, kept only as digests.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// The caller's second factors.
#[utoipa::path(get, path = "/v1/mfa", tag = "mfa", security(("bearer" = [])), responses(
    (status = 200, body = MfaView), (status = 401, body = ErrorBody)))]
async fn status(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> ApiResult<Json<MfaView>> {
    Ok(Json(state.auth.mfa_status(&caller).await?.into()))
}

/// Start a TOTP enrolment: a new secret for the authenticator app, which
/// counts once `POST /v1/mfa/totp/confirm` gets a first code. Needs a sign-in
/// within `reauth_max_age`; an unconfirmed enrolment is replaced.
#[utoipa::path(post, path = "/v1/mfa/totp", tag = "mfa", security(("bearer" = [])), responses(
    (status = 201, body = TotpEnrolmentView), (status = 401, body = ErrorBody),
    (status = 403, description = "`reauthentication_required`", body = ErrorBody),
    (status = 409, description = "`mfa_enabled`: turn it off first", body = ErrorBody)))]
async fn enrol_totp(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> ApiResult<Response> {
    let e = state.auth.enrol_totp(&caller).await?;
    let body = TotpEnrolmentView {
        secret: e.secret,
        otpauth_uri: e.otpauth_uri,
        qr_svg: e.qr_svg,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Confirm the enrolment with a code from the app: two-step sign-in is on
/// from now, and the answer holds the recovery codes, shown this once.
#[utoipa::path(post, path = "/v1/mfa/totp/confirm", tag = "mfa", request_body = ConfirmTotp, security(("bearer" = [])), responses(
    (status = 200, body = RecoveryCodes), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, description = "`invalid_code`", body = ErrorBody), (status = 409, body = ErrorBody),
    (status = 429, body = ErrorBody)))]
async fn confirm_totp(
    State(state): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<ConfirmTotp>,
) -> ApiResult<Response> {
    let recovery_codes = state
        .auth
        .confirm_totp(&caller, &req.code, &meta.client)
        .await?;
    Ok(Json(RecoveryCodes { recovery_codes }).into_response())
}

/// Turn two-step sign-in off (recovery codes go too). Needs a sign-in
/// within `reauth_max_age`.
#[utoipa::path(delete, path = "/v1/mfa/totp", tag = "mfa", security(("bearer" = [])), responses(
    (status = 204, description = "Off"), (status = 401, body = ErrorBody),
    (status = 403, description = "`reauthentication_required`", body = ErrorBody),
    (status = 404, description = "It was not on", body = ErrorBody)))]
async fn disable_totp(
    State(state): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
) -> ApiResult<StatusCode> {
    state.auth.disable_totp(&caller, &meta.client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New recovery codes; the old ones stop working. Needs a sign-in within
/// `reauth_max_age`.
#[utoipa::path(post, path = "/v1/mfa/recovery-codes", tag = "mfa", security(("bearer" = [])), responses(
    (status = 200, body = RecoveryCodes), (status = 401, body = ErrorBody),
    (status = 403, description = "`reauthentication_required`", body = ErrorBody),
    (status = 404, description = "Two-step sign-in is not on", body = ErrorBody)))]
async fn regenerate_codes(
    State(state): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
) -> ApiResult<Response> {
    let recovery_codes = state
        .auth
        .regenerate_recovery_codes(&caller, &meta.client)
        .await?;
    Ok(Json(RecoveryCodes { recovery_codes }).into_response())
}
