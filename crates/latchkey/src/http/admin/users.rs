//! Users and their sessions.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, page_limit, query};
use crate::domain::User;
use crate::domain::clock::rfc3339;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::ApiJson;
use crate::http::wire::SessionView;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(show_user, delete_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(set_password))
        .routes(routes!(verify_email))
        .routes(routes!(reset_second_factors))
        .routes(routes!(user_sessions, revoke_user_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_all_sessions))
}

/// A user as an administrator sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUser {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub email_verified: bool,
    pub disabled: bool,
    /// RFC 3339 time.
    pub created_at: String,
    /// On `GET /admin/v1/users/{user}`: two-step sign-in (authenticator app) is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub two_step: Option<bool>,
    /// On `GET /admin/v1/users/{user}`: passkeys held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passkeys: Option<usize>,
}

impl From<&User> for AdminUser {
    fn from(u: &User) -> Self {
        AdminUser {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            email_verified: u.email_verified,
            disabled: u.disabled,
            created_at: rfc3339(u.created_at),
            two_step: None,
            passkeys: None,
        }
    }
}

fn user(u: User) -> Json<AdminUser> {
    Json(AdminUser::from(&u))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    /// Only users whose address starts with this (case-insensitive).
    pub email: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// Users to skip (the `next_offset` of the previous page).
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<AdminUser>,
    /// Pass as `offset` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<i64>,
}

/// Users by creation time, optionally those whose address starts with `email`.
#[utoipa::path(get, path = "/admin/v1/users", tag = "admin", params(UsersQuery),
    security(("client" = [])), responses(
    (status = 200, body = UserPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<UserPage>> {
    let q: UsersQuery = query(raw)?;
    let limit = page_limit(q.limit)?;
    let offset = q.offset.unwrap_or(0).max(0);
    let email = q.email.unwrap_or_default();
    let users = state.auth.list_users(limit, offset, &email).await?;
    let next_offset = (users.len() as i64 == limit).then_some(offset + limit);
    Ok(Json(UserPage {
        users: users.iter().map(AdminUser::from).collect(),
        next_offset,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    /// Checked against the password policy.
    pub password: String,
    pub name: Option<String>,
}

/// Create a user (no session is started).
#[utoipa::path(post, path = "/admin/v1/users", tag = "admin", request_body = CreateUser,
    security(("client" = [])), responses(
    (status = 201, body = AdminUser), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<AdminUser>)> {
    let created = state
        .auth
        .add_user(&req.email, &req.password, req.name.as_deref(), &actor)
        .await?;
    Ok((StatusCode::CREATED, user(created)))
}

/// One user, by id or email.
#[utoipa::path(get, path = "/admin/v1/users/{user}", tag = "admin",
    params(("user" = String, Path, description = "user id or email")),
    security(("client" = [])), responses(
    (status = 200, body = AdminUser), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_user(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<AdminUser>> {
    let found = state.auth.find_user(&id).await?.ok_or(ApiError::NotFound)?;
    let (two_step, passkeys) = state.auth.second_factors_of(&found.id).await?;
    Ok(Json(AdminUser {
        two_step: Some(two_step),
        passkeys: Some(passkeys),
        ..AdminUser::from(&found)
    }))
}

/// Delete a user and their sessions; their tokens stop working at once.
#[utoipa::path(delete, path = "/admin/v1/users/{user}", tag = "admin",
    params(("user" = String, Path, description = "user id or email")),
    security(("client" = [])), responses(
    (status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_user(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.auth.delete_user(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disable a user and end all their sessions.
#[utoipa::path(post, path = "/admin/v1/users/{user}/disable", tag = "admin",
    params(("user" = String, Path, description = "user id or email")),
    security(("client" = [])), responses(
    (status = 200, body = AdminUser), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn disable_user(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<AdminUser>> {
    Ok(user(state.auth.disable_user(&id, &actor).await?))
}

/// Enable a disabled user.
#[utoipa::path(post, path = "/admin/v1/users/{user}/enable", tag = "admin",
    params(("user" = String, Path, description = "user id or email")),
    security(("client" = [])), responses(
    (status = 200, body = AdminUser), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn enable_user(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<AdminUser>> {
    Ok(user(state.auth.enable_user(&id, &actor).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    pub password: String,
}

/// Set a user's password (under the password policy); every session of the
/// user ends.
#[utoipa::path(post, path = "/admin/v1/users/{user}/password", tag = "admin",
    params(("user" = String, Path, description = "user id or email")), request_body = SetPassword,
    security(("client" = [])), responses(
    (status = 200, body = AdminUser), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_password(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetPassword>,
) -> ApiResult<Json<AdminUser>> {
    Ok(user(
        state.auth.set_password(&id, &req.password, &actor).await?,
    ))
}

/// Mark a user's address verified.
#[utoipa::path(post, path = "/admin/v1/users/{user}/verify-email", tag = "admin",
    params(("user" = String, Path, description = "user id or email")),
    security(("client" = [])), responses(
    (status = 200, body = AdminUser), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn verify_email(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<AdminUser>> {
    Ok(user(state.auth.verify_email(&id, &actor).await?))
}

/// What a reset of second factors removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecondFactorsReset {
    pub user: AdminUser,
    /// The authenticator app (with its recovery codes) was set up and is gone.
    pub totp_removed: bool,
    pub passkeys_removed: usize,
}

/// Remove a user's second factors (authenticator app, recovery codes,
/// passkeys), for one who lost them: the password alone signs in again,
/// and the user is told.
#[utoipa::path(delete, path = "/admin/v1/users/{user}/mfa", tag = "admin",
    params(("user" = String, Path, description = "user id or email")),
    security(("client" = [])), responses(
    (status = 200, body = SecondFactorsReset), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn reset_second_factors(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<SecondFactorsReset>> {
    let (reset, totp_removed, passkeys_removed) =
        state.auth.reset_second_factors(&id, &actor).await?;
    Ok(Json(SecondFactorsReset {
        user: user(reset).0,
        totp_removed,
        passkeys_removed,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminSessions {
    pub user: AdminUser,
    pub sessions: Vec<SessionView>,
}

/// A user's live sessions, newest first.
#[utoipa::path(get, path = "/admin/v1/users/{user}/sessions", tag = "admin",
    params(("user" = String, Path, description = "user id or email")),
    security(("client" = [])), responses(
    (status = 200, body = AdminSessions), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn user_sessions(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<AdminSessions>> {
    let (owner, sessions) = state.auth.user_sessions(&id).await?;
    Ok(Json(AdminSessions {
        user: AdminUser::from(&owner),
        sessions: sessions.iter().map(|s| SessionView::new(s, "")).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// How many sessions ended.
    pub revoked: u64,
}

/// Revoke every session of a user.
#[utoipa::path(delete, path = "/admin/v1/users/{user}/sessions", tag = "admin",
    params(("user" = String, Path, description = "user id or email")),
    security(("client" = [])), responses(
    (status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_user_sessions(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Revoked>> {
    let revoked = state.auth.admin_revoke_sessions(&id, None, &actor).await?;
    Ok(Json(Revoked { revoked }))
}

/// Revoke one session of a user.
#[utoipa::path(delete, path = "/admin/v1/users/{user}/sessions/{session}", tag = "admin",
    params(("user" = String, Path, description = "user id or email"), ("session" = String, Path, description = "session id")),
    security(("client" = [])), responses(
    (status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_session(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path((id, session)): Path<(String, String)>,
) -> ApiResult<Json<Revoked>> {
    let revoked = state
        .auth
        .admin_revoke_sessions(&id, Some(&session), &actor)
        .await?;
    Ok(Json(Revoked { revoked }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeAll {
    /// Must be `true`: every user is signed out.
    pub confirm: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedAll {
    pub sessions: u64,
    pub users: u64,
}

/// Revoke every session of every user and refuse every access token issued
/// so far (the step after restoring a backup). Needs `{"confirm": true}`.
#[utoipa::path(post, path = "/admin/v1/sessions/revoke-all", tag = "admin", request_body = RevokeAll,
    security(("client" = [])), responses(
    (status = 200, body = RevokedAll), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn revoke_all_sessions(
    State(state): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<RevokeAll>,
) -> ApiResult<Json<RevokedAll>> {
    if !req.confirm {
        return Err(ApiError::InvalidRequest(
            "send {\"confirm\": true} to sign every user out".into(),
        ));
    }
    let (sessions, users) = state.auth.revoke_everything(&actor).await?;
    state
        .auth
        .check_restore(&state.guard)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(RevokedAll { sessions, users }))
}
