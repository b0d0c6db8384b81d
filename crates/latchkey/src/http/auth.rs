//! Credential and token endpoints: register, login, the OAuth token endpoint
//! (refresh grant only), logout, logout-all and RFC 7009 revocation.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::browser::wants_cookie;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, AuthUser, ClientMeta, JsonOrForm, OptionalBody, bearer_token};
use super::wire::TokenResponse;
use crate::domain::mfa::SignIn;
use crate::domain::{AuthError, TokenPair, User};
use crate::http::AppState;
use axum_extra::extract::cookie::CookieJar;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(login_mfa))
        .routes(routes!(token))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(revoke))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The language of the user's mail, a BCP 47 tag such as `fr` or
    /// `pt-BR` (default: the request's `Accept-Language`).
    #[serde(default)]
    pub locale: Option<String>,
    /// Browser mode: the refresh token is set as an HttpOnly cookie instead.
    #[serde(default)]
    pub cookie: Option<bool>,
}

/// The answer to a registration when the address must be verified before
/// signing in: no account details and no tokens, the same whether the
/// address was new or already had an account.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingVerification {
    /// Always `true`: a link was mailed to the address (or its owner told).
    pub verification_required: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The `device_token` of an earlier login from this device: its failed
    /// attempts are then throttled apart from strangers'.
    #[serde(default)]
    pub device_token: Option<String>,
    /// Browser mode: the refresh token is set as an HttpOnly cookie instead.
    #[serde(default)]
    pub cookie: Option<bool>,
}

/// The second step of a sign-in: the challenge and one second factor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginMfaRequest {
    /// The `mfa_token` of the password step's answer.
    pub mfa_token: String,
    /// A code from the authenticator app…
    #[serde(default)]
    pub code: Option<String>,
    /// …or one of the recovery codes (spent)…
    #[serde(default)]
    pub recovery_code: Option<String>,
    /// …or a passkey's answer to `POST /v1/login/mfa/passkey/options`.
    #[serde(default)]
    pub passkey: Option<super::passkeys::PasskeyAnswer>,
    /// Browser mode: the refresh token is set as an HttpOnly cookie instead.
    #[serde(default)]
    pub cookie: Option<bool>,
}

/// The password step's answer for an account with two-step sign-in: the
/// error shape, plus the challenge to present with the code.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaRequired {
    /// Always `mfa_required`.
    pub error: &'static str,
    pub error_description: &'static str,
    /// Single use; only from this device (user agent); send it to `POST /v1/login/mfa`.
    pub mfa_token: String,
    /// Seconds the challenge lasts.
    pub expires_in: i64,
    /// What the second step takes: `totp`, `recovery_code`, and `passkey`
    /// when the account has one.
    pub methods: Vec<&'static str>,
}

/// RFC 6749 §6 refresh request; other OAuth parameters are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub refresh_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    pub refresh_token: Option<String>,
}

/// RFC 7009 revocation request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RevokeRequest {
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
}

/// Create an account and its first session (with `email_verification =
/// required`: the account only, until its address is verified).
#[utoipa::path(post, path = "/v1/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, description = "Account created", body = TokenResponse),
    (status = 202, description = "With email_verification = required: a link is mailed; sign in once it is followed. The same answer when the address already has an account", body = PendingVerification),
    (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
    (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    jar: CookieJar,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<Response> {
    let browser = sign_in_request(&state, &meta, &headers, req.cookie)?;
    let registered = state
        .auth
        .register(
            &req.email,
            &req.password,
            req.name.as_deref(),
            req.locale.as_deref(),
            &meta.client,
        )
        .await?;
    let Some((user, pair)) = registered else {
        let body = PendingVerification {
            verification_required: true,
        };
        return Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response());
    };
    Ok(respond(
        &state,
        jar,
        browser,
        pair,
        Some(&user),
        StatusCode::CREATED,
    ))
}

/// The checks before a request that checks credentials and starts a
/// session: in browser mode (`cookie`), the page's origin; the per-IP limit.
/// Whether it is browser mode.
pub(super) fn sign_in_request(
    state: &AppState,
    meta: &ClientMeta,
    headers: &HeaderMap,
    cookie: Option<bool>,
) -> ApiResult<bool> {
    let browser = wants_cookie(cookie);
    if browser {
        state.browser.check_origin(headers)?;
    }
    state.password_limit.check(meta.ip)?;
    Ok(browser)
}

/// A token response in the mode the client asked for.
pub(super) fn respond(
    state: &AppState,
    jar: CookieJar,
    browser: bool,
    pair: TokenPair,
    user: Option<&User>,
    status: StatusCode,
) -> Response {
    if browser {
        state
            .browser
            .respond(jar, pair, user, state.auth.now(), status)
    } else {
        TokenResponse::new(pair, user).respond(status)
    }
}

/// Log in with email and password (first-party login, not the OAuth password
/// grant). An account with two-step sign-in gets `403 mfa_required` and a
/// challenge for `POST /v1/login/mfa` instead of tokens.
#[utoipa::path(post, path = "/v1/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, description = "Logged in", body = TokenResponse),
    (status = 400, description = "Unknown user, wrong password or disabled account (one answer for all)", body = ErrorBody),
    (status = 403, description = "`mfa_required`: the password was right and a second factor is owed (body: MfaRequired); or browser mode from a foreign origin", body = MfaRequired),
    (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    jar: CookieJar,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let browser = sign_in_request(&state, &meta, &headers, req.cookie)?;
    let signed_in = state
        .auth
        .login(
            &req.email,
            &req.password,
            req.device_token.as_deref(),
            &meta.client,
        )
        .await?;
    let challenge = match signed_in {
        SignIn::Done(pair) => return Ok(respond(&state, jar, browser, pair, None, StatusCode::OK)),
        SignIn::SecondFactor(challenge) => challenge,
    };
    let body = MfaRequired {
        error: "mfa_required",
        error_description: "the password is right; this account also needs a code from its authenticator app or a recovery code: POST /v1/login/mfa",
        mfa_token: challenge.token,
        expires_in: challenge.expires_in,
        methods: challenge.methods,
    };
    Ok((StatusCode::FORBIDDEN, axum::Json(body)).into_response())
}

/// The second step of a sign-in with two-step sign-in on: the password
/// step's `mfa_token` and a code from the authenticator app (or a recovery
/// code) start the session. A challenge lasts five minutes, takes five
/// codes, and only from the device that passed the password step.
#[utoipa::path(post, path = "/v1/login/mfa", tag = "auth", request_body = LoginMfaRequest, responses(
    (status = 200, description = "Logged in", body = TokenResponse),
    (status = 400, description = "`invalid_grant`: the challenge is unknown, expired, used up or from another device; sign in again", body = ErrorBody),
    (status = 403, description = "`invalid_code`: wrong, expired or already used code; try again", body = ErrorBody),
    (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn login_mfa(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    jar: CookieJar,
    ApiJson(req): ApiJson<LoginMfaRequest>,
) -> ApiResult<Response> {
    let browser = sign_in_request(&state, &meta, &headers, req.cookie)?;
    let proof = super::mfa::proof(
        req.code.as_deref(),
        req.recovery_code.as_deref(),
        req.passkey.as_ref(),
    )?
    .ok_or_else(|| {
        ApiError::InvalidRequest("`code`, `recovery_code` or `passkey` is required".into())
    })?;
    let pair = state
        .auth
        .complete_sign_in(&req.mfa_token, proof, &meta.client)
        .await?;
    Ok(respond(&state, jar, browser, pair, None, StatusCode::OK))
}

/// OAuth 2.0 token endpoint: `grant_type=refresh_token` rotates the refresh
/// token, taken from the body or, in browser mode, from the cookie (then the
/// `X-CSRF-Token` header is required).
#[utoipa::path(post, path = "/v1/token", tag = "auth", request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"), responses(
    (status = 200, body = TokenResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn token(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    jar: CookieJar,
    JsonOrForm(req): JsonOrForm<TokenRequest>,
) -> ApiResult<Response> {
    state.token_limit.check(meta.ip)?;
    match req.grant_type.as_deref() {
        Some("refresh_token") => {}
        Some(_) => return Err(ApiError::UnsupportedGrantType),
        None => return Err(ApiError::InvalidRequest("grant_type is required".into())),
    }
    if let Some(refresh) = req.refresh_token.filter(|t| !t.is_empty()) {
        let pair = state.auth.refresh(&refresh, &meta.client).await?;
        return Ok(TokenResponse::new(pair, None).respond(StatusCode::OK));
    }
    let refresh = state
        .browser
        .refresh_token(&jar)
        .ok_or_else(|| ApiError::InvalidRequest("refresh_token is required".into()))?;
    state.browser.check_csrf(&state.auth, &headers, &refresh)?;
    match state.auth.refresh(&refresh, &meta.client).await {
        Ok(pair) => Ok(state
            .browser
            .respond(jar, pair, None, state.auth.now(), StatusCode::OK)),
        // The session is over (expired, revoked, reused): drop its cookies.
        Err(e @ AuthError::InvalidGrant(_)) => Ok(state.browser.clear_on_error(jar, e.into())),
        Err(e) => Err(e.into()),
    }
}

/// End one session, named by its refresh token (body, or the browser-mode
/// cookie with `X-CSRF-Token`) or by a bearer access token. Idempotent; the
/// browser-mode cookies are cleared.
#[utoipa::path(post, path = "/v1/logout", tag = "auth", request_body(content = LogoutRequest, description = "optional when a bearer token or the cookie is sent"), responses(
    (status = 204, description = "Session ended (or already ended)"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    jar: CookieJar,
    OptionalBody(body): OptionalBody<LogoutRequest>,
) -> ApiResult<Response> {
    state.token_limit.check(meta.ip)?;
    let refresh = body.and_then(|b| b.refresh_token).filter(|t| !t.is_empty());
    match (bearer_token(&headers)?, refresh) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "send either a refresh token or a bearer token, not both".into(),
            ));
        }
        (Some(token), None) => {
            let caller = state.auth.authenticate(token).await?;
            state.auth.logout(&caller, &meta.client).await?;
        }
        (None, Some(refresh)) => state.auth.logout_refresh(&refresh, &meta.client).await?,
        (None, None) => {
            let refresh = state.browser.refresh_token(&jar).ok_or_else(|| {
                ApiError::InvalidRequest("a refresh token or a bearer token is required".into())
            })?;
            state.browser.check_csrf(&state.auth, &headers, &refresh)?;
            state.auth.logout_refresh(&refresh, &meta.client).await?;
        }
    }
    Ok((state.browser.clear(jar), StatusCode::NO_CONTENT).into_response())
}

/// End every session of the caller (browser-mode cookies are cleared).
#[utoipa::path(post, path = "/v1/logout-all", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "All sessions ended"), (status = 401, body = ErrorBody)))]
async fn logout_all(
    State(state): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    AuthUser(caller): AuthUser,
) -> ApiResult<Response> {
    state.auth.logout_all(&caller, &meta.client).await?;
    Ok((state.browser.clear(jar), StatusCode::NO_CONTENT).into_response())
}

/// RFC 7009 token revocation: the token's session ends; unknown tokens are accepted silently.
#[utoipa::path(post, path = "/v1/revoke", tag = "auth", request_body(content = RevokeRequest, content_type = "application/x-www-form-urlencoded"), responses(
    (status = 200, description = "Revoked, or nothing to revoke"), (status = 400, body = ErrorBody)))]
async fn revoke(
    State(state): State<AppState>,
    meta: ClientMeta,
    JsonOrForm(req): JsonOrForm<RevokeRequest>,
) -> ApiResult<Response> {
    state.token_limit.check(meta.ip)?;
    let token = req
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::InvalidRequest("token is required".into()))?;
    let _hint = req.token_type_hint;
    state.auth.revoke_token(&token, &meta.client).await?;
    Ok(StatusCode::OK.into_response())
}
