//! The pages the binary serves itself, static files built into it that call
//! the API of the same origin under a Content-Security-Policy allowing only
//! their own script and style: the pages mailed links open when the operator
//! has no front end of their own (`app_url` unset, so links point at
//! Latchkey): verify an address, reset a forgotten password, confirm or undo
//! an email change; and the admin console at `/admin`.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::http::AppState;

const HTML: &str = include_str!("pages/account.html");
const SCRIPT: &str = include_str!("pages/account.js");
const STYLE: &str = include_str!("pages/account.css");
const CONSOLE_HTML: &str = include_str!("console/index.html");
const CONSOLE_SCRIPT: &str = include_str!("console/console.js");
const CONSOLE_STYLE: &str = include_str!("console/console.css");

/// Only this origin's script, style and API; no inline code, no framing.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The paths the mailed links use (see `domain::mail::Mailer::link`).
pub const LINK_PATHS: [&str; 5] = [
    "/verify-email",
    "/reset-password",
    "/forgot-password",
    "/confirm-email",
    "/cancel-email-change",
];

pub fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route(
            "/account/account.js",
            get(|| page("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/account/account.css",
            get(|| page("text/css; charset=utf-8", STYLE)),
        )
        .route(
            "/admin",
            get(|| page("text/html; charset=utf-8", CONSOLE_HTML)),
        )
        .route(
            "/admin/console.js",
            get(|| page("text/javascript; charset=utf-8", CONSOLE_SCRIPT)),
        )
        .route(
            "/admin/console.css",
            get(|| page("text/css; charset=utf-8", CONSOLE_STYLE)),
        );
    for path in LINK_PATHS {
        router = router.route(path, get(|| page("text/html; charset=utf-8", HTML)));
    }
    router
}

async fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
}
