//! The admin API, `/admin/v1/…`: what the `latchkey` command does on the
//! server's machine, over HTTP for admin clients (HTTP Basic client
//! credentials of a client made with `latchkey clients add NAME --admin`).
//! User tokens are never accepted here. Every handler calls the same domain
//! function as the command, which records the action with the acting client.

use axum::Json;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ClientMeta, OptionalBody};
use super::resource::ClientAuth;
use super::wire::SessionView;
use crate::domain::agents::device_name;
use crate::domain::clock::{parse_time, rfc3339};
use crate::domain::keys::KeyInfo;
use crate::domain::webhooks::Webhook;
use crate::domain::{Actor, Event, ResourceClient, User};
use crate::http::AppState;

/// Users or events per page unless `limit` says otherwise.
const DEFAULT_PAGE: i64 = 50;
/// Longest page.
const MAX_PAGE: i64 = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(show_user, delete_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(set_password))
        .routes(routes!(verify_email))
        .routes(routes!(user_sessions, revoke_user_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_all_sessions))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
        .routes(routes!(list_events))
        .routes(routes!(list_clients, create_client))
        .routes(routes!(delete_client))
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(delete_webhook))
        .routes(routes!(enable_webhook))
        .routes(routes!(disable_webhook))
        .routes(routes!(test_webhook))
        .routes(routes!(webhook_deliveries))
        .routes(routes!(replay_delivery))
}

/// An admin client, authenticated by HTTP Basic client credentials. A
/// resource-server client is refused with `403 forbidden`; wrong
/// credentials count against the caller's token rate limit. Requests a
/// browser made for another site are refused too: a browser that once took
/// the credentials in its own Basic prompt would attach them to a forged
/// form post.
pub struct Admin(pub Actor);

/// Whether a browser sent this request for a page of another origin
/// (`Sec-Fetch-Site`, or else an `Origin` naming another host than `Host`).
/// Scripts and command-line tools send neither header.
fn from_another_site(parts: &Parts) -> bool {
    let text = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return !matches!(site, "same-origin" | "none");
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, rest)| rest) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if from_another_site(parts) {
            return Err(ApiError::Forbidden(
                "the admin API answers no request made for another site's page".into(),
            ));
        }
        let ClientAuth(client) = ClientAuth::from_request_parts(parts, state).await?;
        if !client.admin {
            return Err(ApiError::Forbidden(
                "this client is not an admin client (latchkey clients add NAME --admin)".into(),
            ));
        }
        let meta = ClientMeta::from_request_parts(parts, state).await?;
        Ok(Admin(Actor::client(&client, meta.client)))
    }
}

/// Reads a query string into `T`, refusing unknown or malformed fields.
fn query<T: DeserializeOwned>(raw: Option<String>) -> ApiResult<T> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::InvalidRequest(format!("invalid query: {e}")))
}

fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(limit)
}

// Users.

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
    Ok(user(found))
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
    state.auth.disable_user(&id, &actor).await?;
    show_user(State(state), Admin(actor), Path(id)).await
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
    state.auth.enable_user(&id, &actor).await?;
    show_user(State(state), Admin(actor), Path(id)).await
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

// Sessions.

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

// Signing keys.

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    pub created_at: String,
    /// When it starts signing.
    pub activates_at: String,
    pub retired_at: Option<String>,
    /// When it leaves the JWKS.
    pub expires_at: Option<String>,
    /// `signing`, `pending`, `active` (published) or `retired`.
    pub state: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

fn key_view(k: &KeyInfo, signing: &str, now: i64) -> KeyView {
    let state = match () {
        _ if k.kid == signing => "signing",
        _ if k.activates_at > now => "pending",
        _ if k.retired_at.is_some_and(|r| r <= now) => "retired",
        _ => "active",
    };
    KeyView {
        kid: k.kid.clone(),
        alg: k.alg.clone(),
        created_at: rfc3339(k.created_at),
        activates_at: rfc3339(k.activates_at),
        retired_at: k.retired_at.map(rfc3339),
        expires_at: k.expires_at.map(rfc3339),
        state,
    }
}

/// The signing keys, published and retired.
#[utoipa::path(get, path = "/admin/v1/keys", tag = "admin",
    security(("client" = [])), responses(
    (status = 200, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_keys(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<KeyList>> {
    let (signing, now) = (state.auth.signing_kid(), state.auth.now());
    let keys = state.auth.list_keys().await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(|k| key_view(k, &signing, now)).collect(),
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Sign with the new key at once instead of after two minutes (for
    /// emergencies: verifiers with a cached JWKS refetch on the unknown kid).
    #[serde(default)]
    pub immediately: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rotated {
    pub kid: String,
    /// When the new key starts signing.
    pub activates_at: String,
}

/// Publish a new signing key, which signs after two minutes.
#[utoipa::path(post, path = "/admin/v1/keys/rotate", tag = "admin", request_body = Option<RotateKey>,
    security(("client" = [])), responses(
    (status = 200, body = Rotated), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn rotate_key(
    State(state): State<AppState>,
    Admin(actor): Admin,
    OptionalBody(req): OptionalBody<RotateKey>,
) -> ApiResult<Json<Rotated>> {
    let immediately = req.unwrap_or_default().immediately;
    let (kid, from) = state
        .auth
        .rotate_keys(state.signing_alg, immediately, &actor)
        .await?;
    Ok(Json(Rotated {
        kid,
        activates_at: rfc3339(from),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRevoked {
    /// The key that signs instead, when the revoked one was signing.
    pub replaced_by: Option<String>,
}

/// Withdraw a leaked key: it leaves the JWKS and its tokens are refused.
#[utoipa::path(post, path = "/admin/v1/keys/{kid}/revoke", tag = "admin",
    params(("kid" = String, Path, description = "key id")),
    security(("client" = [])), responses(
    (status = 200, body = KeyRevoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(state): State<AppState>,
    Admin(actor): Admin,
    Path(kid): Path<String>,
) -> ApiResult<Json<KeyRevoked>> {
    let replaced_by = state
        .auth
        .withdraw_key(state.signing_alg, &kid, &actor)
        .await?;
    Ok(Json(KeyRevoked { replaced_by }))
}

// Events.

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this user's events (id or email).
    pub user: Option<String>,
    /// Only events of this kind, e.g. `login_failed`.
    pub kind: Option<String>,
    /// From this time: RFC 3339 or Unix seconds.
    pub since: Option<String>,
    /// Before this time: RFC 3339 or Unix seconds.
    pub until: Option<String>,
    /// Only events with an id below this one (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

/// A security event, as an administrator sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminEvent {
    pub id: i64,
    pub user_id: Option<String>,
    pub kind: String,
    pub session_id: Option<String>,
    pub ip: Option<String>,
    /// The device as people read it, e.g. `Chrome 156 on Linux`.
    pub device: Option<String>,
    /// The raw `User-Agent` header.
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    /// Who acted, for an operator's action: `cli` or `client:ID`.
    pub actor: Option<String>,
    pub created_at: String,
}

impl From<Event> for AdminEvent {
    fn from(e: Event) -> Self {
        AdminEvent {
            id: e.id,
            user_id: e.user_id,
            kind: e.kind,
            session_id: e.session_id,
            ip: e.ip,
            device: e.user_agent.as_deref().and_then(device_name),
            user_agent: e.user_agent,
            detail: e.detail,
            actor: e.actor,
            created_at: rfc3339(e.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminEventPage {
    pub events: Vec<AdminEvent>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

fn time_param(name: &str, value: Option<String>) -> ApiResult<Option<i64>> {
    value
        .map(|v| {
            parse_time(&v).ok_or_else(|| {
                ApiError::InvalidRequest(format!("{name} must be an RFC 3339 time or Unix seconds"))
            })
        })
        .transpose()
}

/// Security events of every user, newest first, by user, kind and time.
#[utoipa::path(get, path = "/admin/v1/events", tag = "admin", params(EventsQuery),
    security(("client" = [])), responses(
    (status = 200, body = AdminEventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_events(
    State(state): State<AppState>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<AdminEventPage>> {
    let q: EventsQuery = query(raw)?;
    let limit = page_limit(q.limit)?;
    let user_id = match q.user.filter(|u| !u.is_empty()) {
        // A deleted user's events stay under their id.
        Some(u) => Some(state.auth.find_user(&u).await?.map_or(u, |found| found.id)),
        None => None,
    };
    let search = crate::domain::EventQuery {
        user_id,
        kind: q.kind.filter(|k| !k.is_empty()),
        since: time_param("since", q.since)?,
        until: time_param("until", q.until)?,
        before: q.before,
        limit,
    };
    let events = state.auth.search_events(&search).await?;
    let next_before = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(AdminEventPage {
        events: events.into_iter().map(AdminEvent::from).collect(),
        next_before,
    }))
}

// Clients.

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

// Webhooks.

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
