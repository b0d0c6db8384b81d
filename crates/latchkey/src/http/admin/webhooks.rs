//! Webhook endpoints and their deliveries.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, page_limit, query};
use crate::domain::Actor;
use crate::domain::clock::rfc3339;
use crate::domain::webhooks::Webhook;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::ApiJson;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(delete_webhook))
        .routes(routes!(enable_webhook))
        .routes(routes!(disable_webhook))
        .routes(routes!(test_webhook))
        .routes(routes!(webhook_deliveries))
        .routes(routes!(replay_delivery))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub disabled: bool,
    pub created_at: String,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        WebhookView {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            disabled: w.disabled,
            created_at: rfc3339(w.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// The webhook endpoints.
#[utoipa::path(get, path = "/admin/v1/webhooks", tag = "admin",
    security(("client" = [])), responses(
    (status = 200, body = WebhookList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_webhooks(
    State(state): State<AppState>,
    _admin: Admin,
) -> ApiResult<Json<WebhookList>> {
    let hooks = state.auth.webhooks().await?;
    Ok(Json(WebhookList {
        webhooks: hooks.iter().map(WebhookView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// An https URL (http and private addresses only with `webhook_allow_private`).
    pub url: String,
    /// Event types, e.g. `["user.registered", "session.theft_detected"]`, or `["*"]`.
    pub events: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    pub webhook: WebhookView,
    /// The signing secret (`whsec_…`), shown this once.
    pub secret: String,
}

/// Add a webhook endpoint; its signing secret is in this answer only.
#[utoipa::path(post, path = "/admin/v1/webhooks", tag = "admin", request_body = CreateWebhook,
    security(("client" = [])), responses(
    (status = 201, body = CreatedWebhook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_webhook(
    State(state): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let (hook, secret) = state
        .auth
        .add_webhook(&req.url, &req.events, &actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: WebhookView::from(&hook),
            secret,
        }),
    ))
}

/// Remove a webhook endpoint and its pending deliveries.
#[utoipa::path(delete, path = "/admin/v1/webhooks/{id}", tag = "admin",
    params(("id" = String, Path, description = "webhook id")),
    security(("client" = [])), responses(
    (status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_webhook(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.auth.remove_webhook(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_webhook(
    state: AppState,
    actor: Actor,
    id: String,
    enabled: bool,
) -> ApiResult<Json<WebhookView>> {
    state.auth.set_webhook_enabled(&id, enabled, &actor).await?;
    let hooks = state.auth.webhooks().await?;
    let hook = hooks
        .iter()
        .find(|h| h.id == id)
        .ok_or(ApiError::NotFound)?;
    Ok(Json(WebhookView::from(hook)))
}

/// Enable a webhook endpoint (one disabled by hand or after failing for its
/// whole retry window).
#[utoipa::path(post, path = "/admin/v1/webhooks/{id}/enable", tag = "admin",
    params(("id" = String, Path, description = "webhook id")),
    security(("client" = [])), responses(
    (status = 200, body = WebhookView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn enable_webhook(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookView>> {
    set_webhook(state, actor, id, true).await
}

/// Disable a webhook endpoint; its events wait until it is enabled again.
#[utoipa::path(post, path = "/admin/v1/webhooks/{id}/disable", tag = "admin",
    params(("id" = String, Path, description = "webhook id")),
    security(("client" = [])), responses(
    (status = 200, body = WebhookView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn disable_webhook(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookView>> {
    set_webhook(state, actor, id, false).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestSent {
    /// The `webhook.test` event's id.
    pub event_id: String,
}

/// Send a `webhook.test` event to one endpoint.
#[utoipa::path(post, path = "/admin/v1/webhooks/{id}/test", tag = "admin",
    params(("id" = String, Path, description = "webhook id")),
    security(("client" = [])), responses(
    (status = 202, body = TestSent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn test_webhook(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<TestSent>)> {
    let event_id = state.auth.test_webhook(&id, &actor).await?;
    Ok((StatusCode::ACCEPTED, Json(TestSent { event_id })))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub created_at: String,
    pub attempts: i64,
    /// `delivered`, `failed` (given up) or `pending`.
    pub status: &'static str,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

/// An endpoint's recent deliveries, newest first.
#[utoipa::path(get, path = "/admin/v1/webhooks/{id}/deliveries", tag = "admin",
    params(("id" = String, Path, description = "webhook id"), DeliveriesQuery),
    security(("client" = [])), responses(
    (status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn webhook_deliveries(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<DeliveryList>> {
    let q: DeliveriesQuery = query(raw)?;
    let deliveries = state
        .auth
        .webhook_deliveries(&id, page_limit(q.limit)?)
        .await?;
    let deliveries = deliveries
        .into_iter()
        .map(|d| DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            created_at: rfc3339(d.created_at),
            attempts: d.attempts,
            status: match (d.delivered_at, d.failed_at) {
                (Some(_), _) => "delivered",
                (None, Some(_)) => "failed",
                (None, None) => "pending",
            },
            last_status: d.last_status,
            last_error: d.last_error,
            last_latency_ms: d.last_latency_ms,
        })
        .collect();
    Ok(Json(DeliveryList { deliveries }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// The new delivery's id (the event keeps its id).
    pub delivery_id: i64,
}

/// Send a delivery's event to its endpoint again.
#[utoipa::path(post, path = "/admin/v1/deliveries/{id}/replay", tag = "admin",
    params(("id" = i64, Path, description = "delivery id")),
    security(("client" = [])), responses(
    (status = 202, body = Replayed), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn replay_delivery(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
    let id = id.parse().map_err(|_| ApiError::NotFound)?;
    let delivery_id = state.auth.replay_delivery(id, &actor).await?;
    Ok((StatusCode::ACCEPTED, Json(Replayed { delivery_id })))
}
