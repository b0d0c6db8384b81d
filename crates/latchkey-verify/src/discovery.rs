//! Where an issuer's documents live: RFC 8414 discovery of the JWKS, and the
//! revocation feed's address. Metadata that names another issuer is refused
//! (RFC 8414 §3.3), so a misrouted or spoofed document cannot choose the keys.

use reqwest::Url;
use serde::Deserialize;

use crate::builder::SetupError;
use crate::fetch::{self, FetchError};

const WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";

/// The members of the authorization server metadata this crate uses.
#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: String,
}

/// Parses the issuer as the base of every URL, refusing anything but http(s).
pub(crate) fn issuer_url(issuer: &str) -> Result<Url, SetupError> {
    let url = Url::parse(issuer)
        .map_err(|e| SetupError::Config(format!("the issuer is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(SetupError::Config(
            "the issuer must be an http(s) URL without a query".into(),
        ));
    }
    Ok(url)
}

/// `{issuer}{path}`, whatever the issuer's trailing slash.
pub(crate) fn under_issuer(issuer: &str, path: &str) -> Result<Url, SetupError> {
    let base = issuer.trim_end_matches('/');
    Url::parse(&format!("{base}{path}"))
        .map_err(|e| SetupError::Config(format!("cannot build a URL under the issuer: {e}")))
}

/// The metadata addresses to try, in order: the one Latchkey serves under
/// its own base URL, then, for an issuer with a path, the RFC 8414 §3.1 form
/// (well-known segment inserted between host and path).
pub(crate) fn metadata_urls(issuer: &str) -> Result<Vec<Url>, SetupError> {
    let url = issuer_url(issuer)?;
    let mut urls = vec![under_issuer(issuer, WELL_KNOWN)?];
    let path = url.path().trim_end_matches('/');
    if !path.is_empty() {
        let mut rfc = url.clone();
        rfc.set_path(&format!("{WELL_KNOWN}{path}"));
        urls.push(rfc);
    }
    Ok(urls)
}

/// Finds the issuer's JWKS address through its metadata.
pub(crate) async fn jwks_uri(client: &reqwest::Client, issuer: &str) -> Result<Url, SetupError> {
    let mut last = None;
    for url in metadata_urls(issuer)? {
        match fetch::get_json::<Metadata>(client, url.clone(), None).await {
            Ok(metadata) => return checked(metadata, issuer, &url),
            // Not there: the other form may be.
            Err(FetchError::Status { status: 404, .. }) if last.is_none() => {
                last = Some(url);
            }
            Err(source) => {
                return Err(SetupError::Discovery {
                    url: url.to_string(),
                    source,
                });
            }
        }
    }
    let url = last.map(|u| u.to_string()).unwrap_or_default();
    Err(SetupError::Discovery {
        url,
        source: FetchError::Status {
            status: 404,
            code: None,
        },
    })
}

fn checked(metadata: Metadata, issuer: &str, url: &Url) -> Result<Url, SetupError> {
    if metadata.issuer != issuer {
        return Err(SetupError::IssuerMismatch {
            expected: issuer.to_string(),
            found: metadata.issuer,
        });
    }
    let jwks = Url::parse(&metadata.jwks_uri).map_err(|e| SetupError::Discovery {
        url: url.to_string(),
        source: FetchError::Invalid(format!("jwks_uri is not a URL: {e}")),
    })?;
    if !matches!(jwks.scheme(), "http" | "https") {
        return Err(SetupError::Discovery {
            url: url.to_string(),
            source: FetchError::Invalid("jwks_uri is not an http(s) URL".into()),
        });
    }
    Ok(jwks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(urls: Vec<Url>) -> Vec<String> {
        urls.into_iter().map(String::from).collect()
    }

    #[test]
    fn an_issuer_at_a_host_root_has_one_metadata_address() {
        let urls = metadata_urls("https://auth.example.com").map(strings);
        assert_eq!(
            urls.ok(),
            Some(vec![
                "https://auth.example.com/.well-known/oauth-authorization-server".to_string()
            ])
        );
    }

    #[test]
    fn an_issuer_with_a_path_also_tries_the_rfc_8414_form() {
        let urls = metadata_urls("https://example.com/auth/").map(strings);
        assert_eq!(
            urls.ok(),
            Some(vec![
                "https://example.com/auth/.well-known/oauth-authorization-server".to_string(),
                "https://example.com/.well-known/oauth-authorization-server/auth".to_string(),
            ])
        );
    }

    #[test]
    fn only_http_issuers_are_accepted() {
        assert!(issuer_url("ftp://auth.example.com").is_err());
        assert!(issuer_url("auth.example.com").is_err());
        assert!(issuer_url("http://127.0.0.1:8080").is_ok());
    }

    #[test]
    fn metadata_naming_another_issuer_is_refused() {
        let metadata = Metadata {
            issuer: "https://evil.example".into(),
            jwks_uri: "https://evil.example/jwks".into(),
        };
        let url = Url::parse("https://auth.example.com/x").unwrap();
        assert!(matches!(
            checked(metadata, "https://auth.example.com", &url),
            Err(SetupError::IssuerMismatch { .. })
        ));
    }
}
