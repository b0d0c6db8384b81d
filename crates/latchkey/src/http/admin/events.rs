//! Every user's security events, searched.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Admin, page_limit, query};
use crate::domain::Event;
use crate::domain::clock::parse_time;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::wire::{EventView, next_before};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

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
    #[serde(flatten)]
    pub event: EventView,
    pub user_id: Option<String>,
    pub detail: Option<String>,
    /// Who acted, for an operator's action: `cli` or `client:ID`.
    pub actor: Option<String>,
}

impl From<Event> for AdminEvent {
    fn from(mut e: Event) -> Self {
        AdminEvent {
            user_id: e.user_id.take(),
            detail: e.detail.take(),
            actor: e.actor.take(),
            event: EventView::from(e),
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
    Ok(Json(AdminEventPage {
        next_before: next_before(&events, limit),
        events: events.into_iter().map(AdminEvent::from).collect(),
    }))
}
