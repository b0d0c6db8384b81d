//! Verification of Latchkey access tokens, for Latchkey itself and for the
//! API back ends (resource servers) that accept its tokens.
//!
//! A [`Verifier`] checks every token offline: the signature against the
//! issuer's published keys (JWKS, cached and refreshed in the background),
//! the header and claims strictly (RFC 9068 profile, RFC 8725 practices), and
//! — when it follows the issuer's revocation feed — whether the session was
//! revoked or the user logged out everywhere, within seconds of it
//! happening. No request waits on the issuer once the verifier is built.
//!
//! # Example
//!
//! Discover the keys of an issuer, follow its revocation feed with client
//! credentials made by `latchkey clients add orders-api`, and protect an
//! axum route (feature `axum`):
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::extract::FromRef;
//! use axum::{Json, Router, routing::get};
//! use latchkey_verify::Verifier;
//! use latchkey_verify::axum::Authenticated;
//!
//! #[derive(Clone)]
//! struct AppState {
//!     verifier: Verifier,
//! }
//!
//! // `Authenticated` finds the verifier in the state through `FromRef`.
//! impl FromRef<AppState> for Verifier {
//!     fn from_ref(state: &AppState) -> Verifier {
//!         state.verifier.clone()
//!     }
//! }
//!
//! // Answers 401 with `WWW-Authenticate: Bearer …` unless the request
//! // carries a valid, unrevoked access token.
//! async fn me(Authenticated(claims): Authenticated) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "user": claims.sub, "session": claims.sid }))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let verifier = Verifier::builder("https://auth.example.com")
//!         .audience("https://api.example.com")
//!         .revocation_feed("orders-api", std::env::var("LATCHKEY_CLIENT_SECRET")?)
//!         .poll_interval(Duration::from_secs(2))
//!         .max_staleness(Duration::from_secs(30))
//!         .build()
//!         .await?;
//!
//!     let app = Router::new()
//!         .route("/me", get(me))
//!         .with_state(AppState { verifier });
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! - `remote` (default): the [`Verifier`], with RFC 8414 discovery, the JWKS
//!   cache and the revocation follower, over reqwest (plain HTTP or rustls).
//! - `axum`: the [`axum::Authenticated`] extractor and the
//!   [`axum::VerifyLayer`] tower layer.
//!
//! Without features, only the pure parts remain: [`token::verify`] and the
//! types it needs, as the Latchkey server itself uses them.
//!
//! # Modules
//!
//! - [`cache`]: remembers verified tokens, so one presented again skips its signature check.
//! - [`claims`]: the access-token claims (RFC 9068 profile).
//! - [`keys`]: public verification keys and their JWK form.
//! - [`token`]: the strict JWS parser and verifier every access token goes through.
//! - [`wire`]: the revocation feed and introspection answers, as exchanged with the server.
//! - `verifier`, `builder` (feature `remote`): [`Verifier`] and [`VerifierBuilder`].
//! - `discovery`, `jwks`, `follower`, `revocations`, `fetch` (private): metadata,
//!   the key cache, the feed follower, the revocation list, HTTP plumbing.
//! - [`axum`] (feature `axum`): the extractor and the layer.
#![warn(missing_docs)]

pub mod cache;
pub mod claims;
pub mod keys;
pub mod token;
pub mod wire;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "remote")]
mod builder;
#[cfg(feature = "remote")]
mod discovery;
#[cfg(feature = "remote")]
mod fetch;
#[cfg(feature = "remote")]
mod follower;
#[cfg(feature = "remote")]
mod jwks;
#[cfg(feature = "remote")]
mod revocations;
#[cfg(feature = "remote")]
mod verifier;

pub use cache::VerifiedTokens;
pub use claims::Claims;
pub use jsonwebtoken::jwk::JwkSet;
pub use keys::{KeySet, SigningAlg, VerifyKey};
pub use token::{Rules, VerifyError, verify};

#[cfg(feature = "remote")]
pub use builder::{MAX_LEEWAY, SetupError, VerifierBuilder};
#[cfg(feature = "remote")]
pub use fetch::FetchError;
#[cfg(feature = "remote")]
pub use verifier::{FeedStatus, Status, Verifier};
