//! Cross-cutting layers: security headers on every response, a request
//! timeout answered in the API's error shape, per-route latency metrics,
//! request ids, panic recovery, and tracing that never records credentials.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use super::error::ApiError;
use crate::http::AppState;

const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-frame-options", "DENY"),
];

/// Wraps the router in every cross-cutting layer.
pub fn wrap(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let request_id = HeaderName::from_static("x-request-id");
    let mut router = router
        .layer(middleware::from_fn_with_state(state.clone(), restore_gate))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn(record_metrics))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    // Nothing of the API runs in a browser; the built-in pages set their own
    // policy, which allows their script (see `pages`).
    router = router.layer(SetResponseHeaderLayer::if_not_present(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ));
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    if let Some(cors) = cors(state) {
        // Outside the CORS layer, which adds its credentials header to every
        // response, also to a public document's `*`.
        router = router
            .layer(cors)
            .layer(middleware::map_response(never_any_origin_with_credentials));
    }
    router
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(SetSensitiveHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            header::SET_COOKIE,
        ]))
}

/// The span of one request: its method and path, never the query string,
/// where a client may have put a token.
fn request_span(request: &Request) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        version = ?request.version(),
    )
}

/// While the restore guard has not passed (a restored database, or none
/// checked yet), only liveness and metrics are answered: everything else
/// could hand out or accept tokens the restored database wrongly revives.
async fn restore_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if state.guard.serving() || path == "/healthz" || path == "/metrics" {
        return next.run(request).await;
    }
    ApiError::Unavailable { retry_after: 10 }.into_response()
}

/// A response open to any origin (the JWKS) is never one a browser may read
/// with credentials: the two headers together are what CORS forbids.
async fn never_any_origin_with_credentials(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if headers
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_some_and(|v| v == "*")
    {
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    response
}

fn cors(state: &AppState) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = state
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    (!origins.is_empty()).then(|| {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-csrf-token"),
            ])
            .max_age(Duration::from_secs(600))
    })
}

async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable { retry_after: 1 }.into_response(),
    }
}

/// A method as a metric label: the standard ones by name, anything else
/// `other`, so that invented methods cannot add series without end.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |(_, name)| name)
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("latchkey_http_request_duration_seconds", "route" => route, "method" => method, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}
