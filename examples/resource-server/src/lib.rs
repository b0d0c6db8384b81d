//! An example API protected by `latchkey-verify`: every route but `/health`
//! needs a Latchkey access token, verified offline against the published keys
//! and refused within seconds of its session ending, thanks to the revocation
//! feed the verifier follows. No request calls the auth server.

use axum::routing::get;
use axum::{Json, Router};
use latchkey_verify::Verifier;
use latchkey_verify::axum::Authenticated;
use serde_json::{Value, json};

/// The API's routes; the verifier is the router's state.
pub fn router(verifier: Verifier) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/orders", get(orders))
        .with_state(verifier)
}

/// The caller's orders: the user id comes from the verified token.
async fn orders(Authenticated(claims): Authenticated) -> Json<Value> {
    Json(json!({
        "user": claims.sub,
        "session": claims.sid,
        "orders": [{"id": 1, "item": "kettle"}],
    }))
}
