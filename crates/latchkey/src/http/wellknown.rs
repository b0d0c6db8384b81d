//! Public discovery documents: the JWKS (RFC 7517) and the authorization
//! server metadata (RFC 8414).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;

/// How long verifiers may cache the JWKS. A rotated-in key is published
/// `KEY_PUBLISH_LEAD` (two minutes) before it signs, longer than this, so
/// verifiers holding a cached copy meet it before any token it signed (a key
/// rotated with `--now` signs at once: verifiers refetch on an unknown `kid`).
const JWKS_MAX_AGE: &str = "public, max-age=60";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(metadata))
}

/// Public signing keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery", responses((status = 200, description = "JWK set")))]
async fn jwks(State(state): State<AppState>) -> Response {
    // Re-read (at most once a second) so a key rotated in or withdrawn from
    // any host is reflected now, not at the next periodic reload.
    let body = state.auth.jwks().await;
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        body.as_str().to_owned(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(JWKS_MAX_AGE),
    );
    // Public keys may be fetched by any page, but never with credentials.
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// OAuth 2.0 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery", responses((status = 200, description = "RFC 8414 metadata")))]
async fn metadata(State(state): State<AppState>) -> Response {
    let issuer = &state.auth.config().issuer;
    let doc: Value = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/v1/token"),
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["refresh_token"],
        // Required by RFC 8414 and never empty. Latchkey has no authorization
        // endpoint: `none` (OAuth 2.0 Multiple Response Type Encoding
        // Practices) says no response type issues anything here.
        "response_types_supported": ["none"],
        "revocation_endpoint": format!("{issuer}/v1/revoke"),
        "revocation_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint": format!("{issuer}/v1/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "service_documentation": format!("{issuer}/openapi.json"),
    });
    let mut response = Json(doc).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
