//! The HTTP API: one module per resource, each exposing `router()`, merged
//! here with the OpenAPI description and the cross-cutting layers (security
//! headers, body limit, timeout, request ids, tracing, metrics, panics).
//! [`state`] holds what handlers reach and [`error`] the API's one error
//! type; nothing here uses the store except through the domain.

pub mod admin;
pub mod auth;
pub mod browser;
pub mod compat;
pub mod error;
pub mod extract;
pub mod limits;
pub mod me;
pub mod mfa;
pub mod middleware;
pub mod ops;
pub mod pages;
pub mod passkeys;
pub mod recovery;
pub mod resource;
pub mod sessions;
pub mod state;
pub mod wellknown;
pub mod wire;

pub use state::AppState;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use self::error::ApiError;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Latchkey", description = "Self-hosted token authentication server"),
    modifiers(&BearerScheme),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The OpenAPI description of the API, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = routes().split_for_parts();
    api
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(me::router())
        .merge(mfa::router())
        .merge(passkeys::router())
        .merge(recovery::router())
        .merge(sessions::router())
        .merge(wellknown::router())
        .merge(ops::router())
        .merge(resource::router())
        .merge(admin::router())
}

/// The complete application router.
pub fn router(state: AppState) -> Router {
    let (router, api) = routes().split_for_parts();
    let spec = Arc::new(api.to_json().unwrap_or_default());
    let openapi_json = get(move || {
        let spec = spec.clone();
        async move {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                spec.as_str().to_owned(),
            )
                .into_response()
        }
    });
    let mut router = router
        .route("/openapi.json", openapi_json)
        .merge(pages::router());
    if state.djoser {
        router = router.merge(compat::router());
    }
    let router = router
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    middleware::wrap(router, &state).with_state(state)
}
