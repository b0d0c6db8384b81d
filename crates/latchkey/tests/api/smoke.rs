use crate::helpers::*;
use reqwest::StatusCode;

#[tokio::test]
async fn registered_user_can_read_their_profile_and_refresh() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    let me: serde_json::Value = app.me(&tokens.access).await.json().await.expect("json");
    assert_eq!(me["email"], email.as_str());
    let next = app.refresh_ok(&tokens.refresh).await;
    assert_ne!(next.refresh, tokens.refresh);
    assert_eq!(app.me(&next.access).await.status(), StatusCode::OK);
    let cli = app.cli(&["users", "list"], None);
    assert!(
        String::from_utf8_lossy(&cli.stdout).contains(&email),
        "{cli:?}"
    );
    app.stop().await;
}
