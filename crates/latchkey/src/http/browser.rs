//! Browser (cookie) mode: the refresh token travels only in an HttpOnly,
//! Secure, SameSite=Strict cookie scoped to `/v1`; requests that rely on it
//! must come from an allowed origin and carry the session's CSRF token
//! (signed double submit: the token is an HMAC of the session id, so a
//! planted cookie or a made-up header value never matches).

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::error::ApiError;
use super::wire::TokenResponse;
use crate::domain::{TokenPair, User};

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
const REFRESH_PATH: &str = "/v1";

/// Cookie names and who may use them, derived from the settings.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    /// The refresh-token cookie (`__Secure-lk_rt` on https issuers).
    pub refresh_cookie: &'static str,
    /// The readable CSRF cookie (`__Host-lk_csrf` on https issuers).
    pub csrf_cookie: &'static str,
    /// Origins whose requests may use the cookie: the configured CORS
    /// origins and the issuer's own.
    pub allowed_origins: Vec<String>,
    /// Cookie mode needs https, except on a loopback issuer (development).
    pub enabled: bool,
}

impl BrowserPolicy {
    pub fn new(issuer: &str, cors_origins: &[String]) -> Self {
        let https = issuer.starts_with("https://");
        let own = origin_of(issuer);
        let host = own.split("://").nth(1).unwrap_or_default();
        let loopback = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .any(|h| host == *h || host.starts_with(&format!("{h}:")));
        let mut allowed_origins = cors_origins.to_vec();
        allowed_origins.push(own);
        BrowserPolicy {
            refresh_cookie: if https { "__Secure-lk_rt" } else { "lk_rt" },
            csrf_cookie: if https { "__Host-lk_csrf" } else { "lk_csrf" },
            allowed_origins,
            enabled: https || loopback,
        }
    }

    /// Refuses cookie-mode requests from other sites or unlisted origins.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.enabled {
            return Err(ApiError::InvalidRequest(
                "cookie mode needs an https issuer (or a loopback one, for development)".into(),
            ));
        }
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if text("sec-fetch-site") == Some("cross-site") {
            return Err(ApiError::CsrfFailed(
                "cross-site requests cannot use the session cookie".into(),
            ));
        }
        match text("origin") {
            Some(origin)
                if !self
                    .allowed_origins
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(origin)) =>
            {
                Err(ApiError::CsrfFailed(
                    "this origin may not use the session cookie".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The refresh token from the cookie, if any.
    pub fn refresh_token(&self, jar: &CookieJar) -> Option<String> {
        jar.get(self.refresh_cookie)
            .map(|c| c.value().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Refuses a cookie-authenticated request without the session's CSRF token.
    pub fn check_csrf(
        &self,
        auth: &crate::domain::Auth,
        headers: &HeaderMap,
        refresh: &str,
    ) -> Result<(), ApiError> {
        self.check_origin(headers)?;
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if presented.is_empty() || !auth.csrf_matches(refresh, presented) {
            return Err(ApiError::CsrfFailed(
                "missing or invalid X-CSRF-Token".into(),
            ));
        }
        Ok(())
    }

    /// A token response for a browser: the refresh token in its cookie, the
    /// CSRF token in the body and in a readable cookie.
    pub fn respond(
        &self,
        jar: CookieJar,
        pair: TokenPair,
        user: Option<&User>,
        now: i64,
        status: StatusCode,
    ) -> Response {
        let max_age = time::Duration::seconds((pair.session_expires_at - now).max(0));
        let refresh = Cookie::build((self.refresh_cookie, pair.refresh_token.expose().to_string()))
            .http_only(true)
            .secure(true)
            .same_site(SameSite::Strict)
            .path(REFRESH_PATH)
            .max_age(max_age);
        let csrf = Cookie::build((self.csrf_cookie, pair.csrf_token.clone()))
            .secure(true)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(max_age);
        let jar = jar.add(refresh).add(csrf);
        (jar, TokenResponse::for_browser(pair, user).respond(status)).into_response()
    }

    /// Expires both cookies.
    pub fn clear(&self, jar: CookieJar) -> CookieJar {
        let gone = |name: &'static str, path: &'static str, http_only: bool| {
            Cookie::build((name, ""))
                .http_only(http_only)
                .secure(true)
                .same_site(SameSite::Strict)
                .path(path)
                .max_age(time::Duration::ZERO)
        };
        jar.add(gone(self.refresh_cookie, REFRESH_PATH, true))
            .add(gone(self.csrf_cookie, "/", false))
    }

    /// An error answer that also expires the cookies (the session is over).
    pub fn clear_on_error(&self, jar: CookieJar, error: ApiError) -> Response {
        (self.clear(jar), error).into_response()
    }
}

/// `scheme://host[:port]` of a URL, lower-cased.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{authority}").to_ascii_lowercase()
}

/// Whether the request named a cookie-mode login.
pub fn wants_cookie(flag: Option<bool>) -> bool {
    flag == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_enablement_follow_the_issuer() {
        let https = BrowserPolicy::new("https://auth.example.com/base", &[]);
        assert_eq!(
            (https.refresh_cookie, https.csrf_cookie, https.enabled),
            ("__Secure-lk_rt", "__Host-lk_csrf", true)
        );
        assert_eq!(
            https.allowed_origins,
            vec!["https://auth.example.com".to_string()]
        );
        assert!(BrowserPolicy::new("http://127.0.0.1:8080", &[]).enabled);
        assert!(BrowserPolicy::new("http://localhost:8080", &[]).enabled);
        assert!(!BrowserPolicy::new("http://auth.example.com", &[]).enabled);
        assert!(!BrowserPolicy::new("http://localhost.evil.com", &[]).enabled);
    }

    #[test]
    fn only_listed_same_site_origins_pass() {
        let p = BrowserPolicy::new(
            "https://auth.example.com",
            &["https://app.example.com".into()],
        );
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().expect("value"));
            }
            p.check_origin(&h)
        };
        assert!(with(&[]).is_ok());
        assert!(with(&[("origin", "https://app.example.com")]).is_ok());
        assert!(with(&[("origin", "https://auth.example.com")]).is_ok());
        for bad in [
            "https://evil.com",
            "null",
            "https://app.example.com.evil.com",
            "http://app.example.com",
        ] {
            assert!(with(&[("origin", bad)]).is_err(), "{bad}");
        }
        assert!(
            with(&[
                ("origin", "https://app.example.com"),
                ("sec-fetch-site", "cross-site")
            ])
            .is_err()
        );
    }
}
