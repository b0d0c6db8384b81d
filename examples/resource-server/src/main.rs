//! Runs the example API. Settings come from the environment:
//! `LATCHKEY_ISSUER` (the Latchkey server, e.g. `http://127.0.0.1:8080`),
//! `LATCHKEY_CLIENT_ID` / `LATCHKEY_CLIENT_SECRET` (from `latchkey clients add`),
//! `API_AUDIENCE` (default: the issuer) and `LISTEN` (default `127.0.0.1:3000`).

use anyhow::Context;
use latchkey_verify::Verifier;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let issuer = var("LATCHKEY_ISSUER")?;
    let audience = std::env::var("API_AUDIENCE").unwrap_or_else(|_| issuer.clone());
    let verifier = Verifier::builder(issuer)
        .audience(audience)
        .revocation_feed(var("LATCHKEY_CLIENT_ID")?, var("LATCHKEY_CLIENT_SECRET")?)
        .build()
        .await
        .context("setting up token verification")?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("resource server listening on http://{listen}");
    axum::serve(listener, resource_server::router(verifier)).await?;
    Ok(())
}
