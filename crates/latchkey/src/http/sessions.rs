//! The caller's sessions (one per logged-in device): list and revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiResult, ErrorBody};
use super::extract::{AuthUser, ClientMeta};
use super::wire::SessionView;
use crate::http::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(delete))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// The caller's live sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])), responses(
    (status = 200, body = SessionList), (status = 401, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> ApiResult<Json<SessionList>> {
    let sessions = state.auth.sessions(&caller).await?;
    let sessions = sessions
        .iter()
        .map(|s| SessionView::new(s, &caller.claims.sid))
        .collect();
    Ok(Json(SessionList { sessions }))
}

/// Revoke one of the caller's sessions; another user's session is not found.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "session id")),
    security(("bearer" = [])), responses(
    (status = 204, description = "Session revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .auth
        .revoke_own_session(&caller, &id, &meta.client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
