//! axum integration: the [`Authenticated`] extractor and the [`VerifyLayer`]
//! middleware. Both read `Authorization: Bearer`, verify with a
//! [`Verifier`], and answer failures as RFC 6750 §3 asks. Neither ever lets a
//! request that carries a bad token through as anonymous.
//!
//! | situation | status | `WWW-Authenticate` | body `error` |
//! |---|---|---|---|
//! | no bearer token | 401 | `Bearer realm="api"` | `invalid_token` (as the Latchkey server answers) |
//! | token refused | 401 | `Bearer realm="api", error="invalid_token", error_description="…"` | `invalid_token` |
//! | feed stale, fail-closed | 503 + `Retry-After` | — | `temporarily_unavailable` |
//!
//! A stale revocation feed is the resource server's trouble, not the
//! token's: answering 401 would make clients throw away good tokens (or log
//! their user out), so it is a 503 instead.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::axum::Json;
use ::axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use ::axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use ::axum::http::request::Parts;
use ::axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use ::axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::claims::Claims;
use crate::token::VerifyError;
use crate::verifier::Verifier;

/// The claims of a request's verified bearer token.
///
/// The [`Verifier`] comes from the router's state through [`FromRef`]: give
/// your state type an `impl FromRef<AppState> for Verifier` (or use the
/// verifier itself as the state). A missing or refused token rejects the
/// request with an [`AuthRejection`].
///
/// For routes that also serve anonymous callers, extract
/// `Option<Authenticated>`: it is `None` when the request carries no bearer
/// token, but a request that carries a bad one is still rejected (it is
/// never downgraded to anonymous, the mistake realworld-axum's
/// `MaybeAuthUser` exists to avoid).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Claims);

impl<S> FromRequestParts<S> for Authenticated
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        authenticate(&verifier, &parts.headers)
            .await
            .map(Authenticated)
    }
}

impl<S> OptionalFromRequestParts<S> for Authenticated
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if bearer_token(&parts.headers)?.is_none() {
            return Ok(None);
        }
        let verifier = Verifier::from_ref(state);
        authenticate(&verifier, &parts.headers)
            .await
            .map(|claims| Some(Authenticated(claims)))
    }
}

/// Why a request was not authenticated; answers as described in the
/// [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRejection {
    /// The request carries no bearer token.
    Missing,
    /// The token (or the `Authorization` header carrying it) was refused.
    Invalid(VerifyError),
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let (status, code, description) = match &self {
            AuthRejection::Missing => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "a bearer access token is required",
            ),
            AuthRejection::Invalid(VerifyError::RevocationsUnavailable) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "token revocation status is unavailable; try again shortly",
            ),
            AuthRejection::Invalid(e) => (StatusCode::UNAUTHORIZED, "invalid_token", describe(e)),
        };
        let body = serde_json::json!({ "error": code, "error_description": description });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            AuthRejection::Missing => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="api""#),
                );
            }
            AuthRejection::Invalid(VerifyError::RevocationsUnavailable) => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            AuthRejection::Invalid(_) => {
                let challenge = format!(
                    r#"Bearer realm="api", error="invalid_token", error_description="{description}""#
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(WWW_AUTHENTICATE, value);
                }
            }
        }
        response
    }
}

/// What the bearer is told about a refused token: enough to act on (refresh
/// an expired token, sign in again after a revocation), nothing that helps
/// forge one. Every text is a plain quoted-string, safe in a header.
fn describe(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::Expired => "the access token has expired",
        VerifyError::Revoked => "the access token has been revoked",
        VerifyError::Issuer | VerifyError::Audience | VerifyError::NotYetValid => {
            "the access token is not valid here"
        }
        VerifyError::RevocationsUnavailable => "token revocation status is unavailable",
        VerifyError::Malformed(_)
        | VerifyError::Header(_)
        | VerifyError::UnknownKey
        | VerifyError::BadSignature
        | VerifyError::Claims
        | VerifyError::TooLongLived => "the access token is invalid",
    }
}

/// The bearer token of a request: `None` without an `Authorization` header
/// or with another scheme; refused when the header is repeated, not text,
/// or says `Bearer` without exactly one token.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthRejection> {
    let malformed = |why| Err(AuthRejection::Invalid(VerifyError::Malformed(why)));
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return malformed("more than one Authorization header");
    }
    let Ok(value) = value.to_str() else {
        return malformed("Authorization header is not text");
    };
    let value = value.trim_matches(' ');
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    // Auth schemes compare case-insensitively (RFC 9110 §11.1).
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return malformed("expected exactly one bearer token");
    }
    Ok(Some(token))
}

/// Reads and verifies the bearer token of a request.
async fn authenticate(verifier: &Verifier, headers: &HeaderMap) -> Result<Claims, AuthRejection> {
    let token = bearer_token(headers)?.ok_or(AuthRejection::Missing)?;
    verifier.verify(token).await.map_err(AuthRejection::Invalid)
}

/// A tower [`Layer`] that lets through only requests with a valid bearer
/// token, inserting its [`Claims`] into the request extensions (read them
/// with `Extension<Claims>`); others get the answers of [`AuthRejection`].
///
/// ```no_run
/// # async fn example(verifier: latchkey_verify::Verifier) {
/// use axum::{Extension, Router, routing::get};
/// use latchkey_verify::{Claims, axum::VerifyLayer};
///
/// async fn orders(Extension(claims): Extension<Claims>) -> String {
///     format!("orders of {}", claims.sub)
/// }
///
/// let app: Router = Router::new()
///     .route("/orders", get(orders))
///     .layer(VerifyLayer::new(verifier));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    verifier: Verifier,
}

impl VerifyLayer {
    /// A layer verifying with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`VerifyLayer`] wraps around an inner service.
#[derive(Debug, Clone)]
pub struct VerifyService<S> {
    inner: S,
    verifier: Verifier,
}

/// The future of [`VerifyService`].
pub type VerifyFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S, B> Service<Request<B>> for VerifyService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = VerifyFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            match authenticate(&verifier, request.headers()).await {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
        ] {
            assert_eq!(bearer_token(&headers(&[value])), Ok(Some("abc.def.ghi")));
        }
    }

    #[test]
    fn no_header_or_another_scheme_is_no_token() {
        assert_eq!(bearer_token(&headers(&[])), Ok(None));
        assert_eq!(bearer_token(&headers(&["Basic dXNlcjpwYXNz"])), Ok(None));
    }

    #[test]
    fn a_malformed_bearer_header_is_an_invalid_token() {
        for bad in [&["Bearer"][..], &["Bearer a b"], &["Bearer a", "Bearer b"]] {
            assert!(matches!(
                bearer_token(&headers(bad)),
                Err(AuthRejection::Invalid(VerifyError::Malformed(_)))
            ));
        }
    }
}
