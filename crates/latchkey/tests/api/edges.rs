//! The server's edges as a prober meets them: what reaches the logs, the
//! headers of public documents, what the files on disk allow, and how
//! connections and limits hold (docs/security.md, "HTTP").

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn the_jwks_is_public_but_never_offered_with_credentials() {
    let app = spawn_app_with(|s| s.cors_origins = vec!["https://app.example".into()]).await;
    for origin in ["https://evil.example", "https://app.example"] {
        let resp = app
            .client
            .get(app.url("/.well-known/jwks.json"))
            .header("origin", origin)
            .send()
            .await
            .expect("jwks");
        assert_eq!(resp.status(), StatusCode::OK);
        let headers = resp.headers();
        let any_origin = headers
            .get("access-control-allow-origin")
            .is_some_and(|v| v == "*");
        let credentials = headers.contains_key("access-control-allow-credentials");
        assert!(
            !(any_origin && credentials),
            "{origin}: `*` together with credentials: {headers:?}"
        );
    }
}
