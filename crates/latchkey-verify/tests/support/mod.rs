//! A small fake Latchkey for the verifier's tests: RFC 8414 metadata, a JWKS
//! the test can rotate, and a scripted revocation feed, on 127.0.0.1:0, with
//! counters of every request it answers; keys and tokens in `keys.rs`.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use latchkey_verify::wire::{RevocationEntry, RevocationPage};
use serde::Deserialize;
use serde_json::json;

mod keys;
pub use keys::{Signer, claims, now};

/// Polls `future` once: a warm verifier must be ready at once, never
/// waiting on anything.
pub fn ready_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a warm verifier waited on something"),
    }
}

pub const CLIENT_ID: &str = "orders-api";
pub const CLIENT_SECRET: &str = "lk_cs_test-secret";
pub const RETENTION: i64 = 300;
/// A `max_staleness` for the tests that wait for a feed to go stale.
pub const STALE_SOON: Duration = Duration::from_millis(400);

/// What the fake serves, and what it has been asked.
#[derive(Default)]
pub struct FakeState {
    pub issuer: String,
    pub metadata_issuer: Mutex<Option<String>>,
    pub jwks: Mutex<Vec<Jwk>>,
    pub entries: Mutex<Vec<RevocationEntry>>,
    /// `after` values in `1..oldest_cursor` answer 410 cursor_expired.
    pub oldest_cursor: AtomicI64,
    /// Entries per page (pagination is exercised with small pages).
    pub page_size: AtomicUsize,
    /// Re-send the last entries before `after` on every page.
    pub repeat: AtomicBool,
    pub feed_down: AtomicBool,
    pub requests: AtomicUsize,
    pub jwks_requests: AtomicUsize,
    pub feed_requests: AtomicUsize,
    pub gone_responses: AtomicUsize,
}

impl FakeState {
    pub fn next_cursor(&self) -> i64 {
        let entries = self.entries.lock().unwrap();
        entries.last().map_or(0, |e| e.cursor()) + 1
    }

    pub fn revoke_session(&self, sub: &str, sid: &str) {
        let cursor = self.next_cursor();
        let entry = RevocationEntry::Session {
            cursor,
            sid: sid.into(),
            sub: sub.into(),
            revoked_at: now(),
        };
        self.entries.lock().unwrap().push(entry);
    }

    pub fn revoke_user(&self, sub: &str, not_before: i64) {
        let cursor = self.next_cursor();
        let entry = RevocationEntry::User {
            cursor,
            sub: sub.into(),
            not_before,
            revoked_at: now(),
        };
        self.entries.lock().unwrap().push(entry);
    }

    pub fn withdraw_key(&self, kid: &str) {
        let cursor = self.next_cursor();
        let entry = RevocationEntry::Key {
            cursor,
            kid: kid.into(),
            revoked_at: now(),
        };
        self.entries.lock().unwrap().push(entry);
    }

    pub fn publish(&self, signer: &Signer) {
        self.jwks.lock().unwrap().push(signer.jwk.clone());
    }

    pub fn count(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// A running fake Latchkey; stops when dropped.
pub struct FakeLatchkey {
    pub issuer: String,
    pub state: Arc<FakeState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLatchkey {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeLatchkey {
    pub async fn spawn(signers: &[&Signer]) -> Self {
        Self::spawn_with(signers, None).await
    }

    /// Serves https with `tls` (its certificate names `localhost`).
    pub async fn spawn_tls(signers: &[&Signer], tls: Arc<rustls::ServerConfig>) -> Self {
        Self::spawn_with(signers, Some(tls)).await
    }

    async fn spawn_with(signers: &[&Signer], tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let issuer = match tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let state = Arc::new(FakeState {
            issuer: issuer.clone(),
            oldest_cursor: AtomicI64::new(0),
            page_size: AtomicUsize::new(2),
            ..Default::default()
        });
        for signer in signers {
            state.publish(signer);
        }
        let app = Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/v1/revocations", get(revocations))
            .layer(middleware::from_fn_with_state(state.clone(), count))
            .with_state(state.clone());
        let server = match tls {
            None => tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            }),
            Some(tls) => tokio::spawn(serve_tls(listener, app, tls)),
        };
        Self {
            issuer,
            state,
            server,
        }
    }

    /// A builder for this issuer following its feed, polling every 50 ms;
    /// stale after 3 s, so that a slow machine does not fail tests that are
    /// not about staleness ([`STALE_SOON`] is for those that are).
    pub fn builder(&self) -> latchkey_verify::VerifierBuilder {
        latchkey_verify::Verifier::builder(&self.issuer)
            .revocation_feed(CLIENT_ID, CLIENT_SECRET)
            .poll_interval(Duration::from_millis(50))
            .max_staleness(Duration::from_secs(3))
    }

    pub fn requests(&self) -> usize {
        FakeState::count(&self.state.requests)
    }

    pub fn jwks_requests(&self) -> usize {
        FakeState::count(&self.state.jwks_requests)
    }

    pub fn feed_requests(&self) -> usize {
        FakeState::count(&self.state.feed_requests)
    }
}

/// Serves `app` over TLS, one task per connection; failed handshakes (an
/// untrusting client hangs up) are dropped.
async fn serve_tls(listener: tokio::net::TcpListener, app: Router, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

async fn count(State(state): State<Arc<FakeState>>, request: Request, next: Next) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

async fn metadata(State(state): State<Arc<FakeState>>) -> Json<serde_json::Value> {
    let issuer = state.metadata_issuer.lock().unwrap().clone();
    let issuer = issuer.unwrap_or_else(|| state.issuer.clone());
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/.well-known/jwks.json", state.issuer),
        "token_endpoint": format!("{}/v1/token", state.issuer),
        "id_token_signing_alg_values_supported": ["EdDSA", "ES256"],
    }))
}

async fn jwks(State(state): State<Arc<FakeState>>) -> Json<JwkSet> {
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    Json(JwkSet {
        keys: state.jwks.lock().unwrap().clone(),
    })
}

#[derive(Deserialize)]
struct FeedQuery {
    after: i64,
    limit: usize,
}

fn error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({ "error": code, "error_description": code })),
    )
        .into_response()
}

async fn revocations(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Response {
    state.feed_requests.fetch_add(1, Ordering::SeqCst);
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if state.feed_down.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    }
    if q.after > 0 && q.after < state.oldest_cursor.load(Ordering::SeqCst) {
        state.gone_responses.fetch_add(1, Ordering::SeqCst);
        return error(StatusCode::GONE, "cursor_expired");
    }
    // Like the real server, re-send a few entries before `after` when asked.
    let repeats = match state.repeat.load(Ordering::SeqCst) {
        true => q.after - 3,
        false => q.after,
    };
    let size = q.limit.min(state.page_size.load(Ordering::SeqCst));
    let entries = state.entries.lock().unwrap();
    let fresh = entries.iter().filter(|e| e.cursor() > q.after).take(size);
    let page: Vec<RevocationEntry> = entries
        .iter()
        .filter(|e| e.cursor() > repeats && e.cursor() <= q.after)
        .chain(fresh)
        .cloned()
        .collect();
    let next_cursor = page.last().map_or(q.after, |e| e.cursor()).max(q.after);
    let has_more = entries.iter().any(|e| e.cursor() > next_cursor);
    Json(RevocationPage {
        entries: page,
        next_cursor,
        has_more,
        retention_seconds: RETENTION,
    })
    .into_response()
}

/// Waits until `check` holds, for at most 5 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
