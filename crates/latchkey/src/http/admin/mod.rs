//! The admin API, `/admin/v1/…`: what the `latchkey` command does on the
//! server's machine, over HTTP for admin clients (HTTP Basic client
//! credentials of a client made with `latchkey clients add NAME --admin`).
//! User tokens are never accepted here. Every handler calls the same domain
//! function as the command, which records the action with the acting client.
//! One module per resource; here the authentication and the query helpers
//! they share.

mod clients;
mod events;
mod keys;
mod users;
mod webhooks;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use super::error::{ApiError, ApiResult};
use super::extract::ClientMeta;
use super::resource::ClientAuth;
use crate::domain::Actor;
use crate::http::AppState;

/// Users or events per page unless `limit` says otherwise.
const DEFAULT_PAGE: i64 = 50;
/// Longest page.
const MAX_PAGE: i64 = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(users::router())
        .merge(keys::router())
        .merge(events::router())
        .merge(clients::router())
        .merge(webhooks::router())
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
pub(super) fn query<T: DeserializeOwned>(raw: Option<String>) -> ApiResult<T> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::InvalidRequest(format!("invalid query: {e}")))
}

pub(super) fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(limit)
}
