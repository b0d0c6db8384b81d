//! Operational endpoints: liveness, readiness (the database answers) and
//! Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::bearer_token;
use crate::http::AppState;

/// Longest a readiness check waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Ready"), (status = 503, description = "Database unreachable")))]
async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    // Answer within a probe's usual timeout even when the database hangs.
    match tokio::time::timeout(READY_TIMEOUT, state.auth.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable { retry_after: 2 })
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            Err(ApiError::Unavailable { retry_after: 2 })
        }
    }
}

/// Prometheus metrics in the text exposition format; with `metrics_token`
/// set, only for a scraper presenting it as a bearer token.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format"), (status = 401, description = "metrics_token is set and was not presented")))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(expected) = &state.metrics_token {
        let presented = bearer_token(&headers).ok().flatten().unwrap_or_default();
        let matches: bool = presented
            .as_bytes()
            .ct_eq(expected.expose_secret().as_bytes())
            .into();
        if !matches {
            return Err(ApiError::MissingToken);
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response())
}
