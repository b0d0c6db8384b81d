//! Resource-server and admin clients.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Admin;
use crate::domain::ResourceClient;
use crate::domain::clock::rfc3339;
use crate::http::AppState;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::extract::ApiJson;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clients, create_client))
        .routes(routes!(delete_client))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientView {
    pub id: String,
    pub name: String,
    /// May call the admin API.
    pub admin: bool,
    pub created_at: String,
}

impl From<&ResourceClient> for ClientView {
    fn from(c: &ResourceClient) -> Self {
        ClientView {
            id: c.id.clone(),
            name: c.name.clone(),
            admin: c.admin,
            created_at: rfc3339(c.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
}

/// Resource-server and admin clients.
#[utoipa::path(get, path = "/admin/v1/clients", tag = "admin",
    security(("client" = [])), responses(
    (status = 200, body = ClientList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_clients(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<ClientList>> {
    let clients = state.auth.list_clients().await?;
    Ok(Json(ClientList {
        clients: clients.iter().map(ClientView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    pub name: String,
    /// An admin client (default: a resource server).
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedClient {
    pub client: ClientView,
    /// Shown this once; only its hash is kept.
    pub client_secret: String,
}

/// Create a client; its secret is in this answer only.
#[utoipa::path(post, path = "/admin/v1/clients", tag = "admin", request_body = CreateClient,
    security(("client" = [])), responses(
    (status = 201, body = CreatedClient), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_client(
    State(state): State<AppState>,
    Admin(actor): Admin,
    ApiJson(req): ApiJson<CreateClient>,
) -> ApiResult<(StatusCode, Json<CreatedClient>)> {
    let (client, secret) = state.auth.add_client(&req.name, req.admin, &actor).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedClient {
            client: ClientView::from(&client),
            client_secret: secret,
        }),
    ))
}

/// Remove a client's credentials.
#[utoipa::path(delete, path = "/admin/v1/clients/{id}", tag = "admin",
    params(("id" = String, Path, description = "client id")),
    security(("client" = [])), responses(
    (status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_client(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.auth.remove_client(&id, &actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
