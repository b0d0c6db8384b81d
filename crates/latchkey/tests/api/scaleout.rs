//! Several stateless instances on one PostgreSQL database: rotation that
//! cannot fork across instances, revocation, registration races, shared
//! throttles, key rotation, database outages, and moving an installation from
//! the embedded SQLite to PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

use crate::backend::{Backend, TestHome, require_postgres};
use crate::helpers::*;

/// Two instances sharing one fresh PostgreSQL database and master key.
async fn cluster(what: &str) -> Option<(TestApp, TestApp)> {
    if !require_postgres(what) {
        return None;
    }
    let home = Arc::new(TestHome::new(Backend::Postgres).await);
    let a = spawn_app_in(home.clone(), |_| {}).await;
    let b = spawn_app_in(home, |_| {}).await;
    align_clocks(&a, &b);
    Some((a, b))
}

/// Sets both instances' clocks to the same second, as NTP would.
fn align_clocks(a: &TestApp, b: &TestApp) {
    use latchkey::domain::clock::Clock;
    let skew = b.clock.now() - a.clock.now();
    if skew > 0 {
        a.clock.advance(skew);
    } else {
        b.clock.advance(-skew);
    }
}

/// Both instances accept each other's tokens: they share issuer settings.
fn same_issuer(s: &mut latchkey::config::Settings, issuer: &str) {
    s.issuer = issuer.to_string();
    s.audience = issuer.to_string();
}

async fn shared_cluster(what: &str) -> Option<(TestApp, TestApp)> {
    if !require_postgres(what) {
        return None;
    }
    let home = Arc::new(TestHome::new(Backend::Postgres).await);
    let issuer = "http://latchkey.test";
    let a = spawn_app_in(home.clone(), |s| same_issuer(s, issuer)).await;
    let b = spawn_app_in(home, |s| same_issuer(s, issuer)).await;
    align_clocks(&a, &b);
    Some((a, b))
}

#[tokio::test]
async fn concurrent_refreshes_split_across_instances_leave_one_chain() {
    let Some((a, b)) = shared_cluster("multi-instance refresh").await else {
        return;
    };
    let (_, first) = a.new_user().await;
    let apps = Arc::new([a, b]);
    let barrier = Arc::new(Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (apps, barrier, token) = (apps.clone(), barrier.clone(), first.refresh.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let resp = apps[i % 2].refresh(&token).await;
            (resp.status(), resp.text().await.unwrap_or_default())
        }));
    }
    let mut successors = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{body}");
        successors.insert(Tokens::from_body(serde_json::from_str(&body).expect("json")).refresh);
    }
    assert_eq!(successors.len(), 1, "two instances forked the chain");
    let successor = successors.into_iter().next().expect("successor");
    let [a, b] = &*apps;
    let next = b.refresh_ok(&successor).await;
    a.clock.advance(11);
    b.clock.advance(11);
    assert_eq!(
        a.refresh(&first.refresh).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        b.refresh(&next.refresh).await.status(),
        StatusCode::BAD_REQUEST,
        "reuse did not end the one chain"
    );
}

#[tokio::test]
async fn a_session_revoked_on_one_instance_is_refused_by_the_other_at_once() {
    let Some((a, b)) = shared_cluster("multi-instance revocation").await else {
        return;
    };
    let (_, tokens) = a.new_user().await;
    assert_eq!(b.me(&tokens.access).await.status(), StatusCode::OK);
    assert_eq!(
        a.post_auth("/v1/logout", &tokens.access, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        b.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        b.refresh(&tokens.refresh).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_user_registered_on_one_instance_logs_in_on_the_other() {
    let Some((a, b)) = cluster("multi-instance login").await else {
        return;
    };
    let (email, _) = a.new_user().await;
    let tokens = b.login_ok(&email, PASSWORD).await;
    assert_eq!(b.me(&tokens.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn one_email_registered_on_two_instances_at_once_creates_one_account() {
    let Some((a, b)) = cluster("multi-instance registration race").await else {
        return;
    };
    for _ in 0..5 {
        let email = unique_email();
        let (ra, rb) = tokio::join!(
            a.register_raw(&email, PASSWORD),
            b.register_raw(&email, PASSWORD)
        );
        let mut statuses = [ra.status(), rb.status()];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    }
}

#[tokio::test]
async fn the_account_throttle_counts_failures_on_every_instance() {
    let Some((a, b)) = cluster("multi-instance throttle").await else {
        return;
    };
    let (email, _) = a.new_user().await;
    for i in 0..5 {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            app.login(&email, OTHER_PASSWORD).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        a.login(&email, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        b.login(&email, PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

fn kid_of(token: &str) -> String {
    decode_segment(token, 0)["kid"]
        .as_str()
        .expect("kid")
        .to_string()
}

#[tokio::test]
async fn keys_rotated_by_the_cli_are_used_and_published_by_every_instance() {
    let Some((a, b)) = shared_cluster("multi-instance key rotation").await else {
        return;
    };
    let (email, before) = a.new_user().await;
    let old = kid_of(&before.access);
    let out = a.cli(&["keys", "rotate", "--now"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    for app in [&a, &b] {
        let fresh = loop {
            a.catch_up_with_wall_clock();
            b.catch_up_with_wall_clock();
            let t = app.login_ok(&email, PASSWORD).await;
            if kid_of(&t.access) != old {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "an instance kept signing with the old key"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let jwks: serde_json::Value = app
            .get("/.well-known/jwks.json", None)
            .await
            .json()
            .await
            .expect("jwks");
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        assert!(
            kids.contains(&old.as_str()) && kids.contains(&kid_of(&fresh.access).as_str()),
            "{kids:?}"
        );
        for other in [&a, &b] {
            assert_eq!(other.me(&fresh.access).await.status(), StatusCode::OK);
            assert_eq!(other.me(&before.access).await.status(), StatusCode::OK);
        }
    }
}

/// A TCP relay to PostgreSQL that the test can cut and restore, standing in
/// for a database outage.
struct Relay {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, list) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = client.shutdown().await;
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                list.lock().expect("lock").push(task);
            }
        });
        Relay { port, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.conns.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_database_outage_fails_closed_and_the_server_recovers_by_itself() {
    if !require_postgres("database outage") {
        return;
    }
    let home = Arc::new(TestHome::new(Backend::Postgres).await);
    let url = home.database_url().expose().to_string();
    let (host_port, rest) = url
        .trim_start_matches("postgres://")
        .split_once('/')
        .expect("url");
    let (auth, target) = host_port.split_once('@').expect("user@host");
    let relay = Relay::start(target.to_string()).await;
    let relayed = format!("postgres://{auth}@127.0.0.1:{}/{rest}", relay.port);
    let app = spawn_app_in(home, |s| {
        s.database_url = latchkey::config::DatabaseUrl::new(relayed);
    })
    .await;
    let (email, tokens) = app.new_user().await;

    relay.cut();
    let deadline = Instant::now() + Duration::from_secs(20);
    let refresh = app.refresh(&tokens.refresh).await;
    assert!(
        Instant::now() < deadline,
        "a request hung during the outage"
    );
    assert!(refresh.headers().contains_key("retry-after"));
    let (status, code, _) = error_of(refresh).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    );
    assert_eq!(
        app.get("/readyz", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "auth must fail closed"
    );
    let login = app
        .post_json("/v1/login", json!({"email": email, "password": PASSWORD}))
        .await;
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);

    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.get("/readyz", None).await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.refresh_ok(&tokens.refresh).await;
    app.login_ok(&email, PASSWORD).await;
}

/// Pooled connections are not pinged before every statement (that was a
/// second round trip each). A read that meets one the database ended runs
/// again, on a connection checked first (every one is, for a while after one
/// broke); a connection idle for a second is checked before use.
#[tokio::test]
async fn connections_the_database_ended_are_replaced_without_a_failed_request() {
    if !require_postgres("connections ended by the database") {
        return;
    }
    let home = Arc::new(TestHome::new(Backend::Postgres).await);
    let url = home.database_url().expose().to_string();
    let name = url.rsplit('/').next().expect("database name").to_string();
    let app = spawn_app_in(home, |_| {}).await;
    let (email, tokens) = app.new_user().await;
    let ended = async || {
        let mut admin = sqlx::PgConnection::connect(&crate::backend::postgres_admin_url())
            .await
            .expect("connect");
        let count: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
        count
    };
    assert!(ended().await > 0, "the server holds pooled connections");
    let me = app.me(&tokens.access).await;
    assert_eq!(me.status(), StatusCode::OK, "a read is run again");

    ended().await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let tokens = app.refresh_ok(&tokens.refresh).await;
    app.login_ok(&email, PASSWORD).await;
    assert_eq!(app.me(&tokens.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_installation_moved_from_sqlite_to_postgresql_keeps_every_user_and_session() {
    if !require_postgres("SQLite to PostgreSQL migration") {
        return;
    }
    let sqlite_home = Arc::new(TestHome::new(Backend::Sqlite).await);
    let issuer = "http://latchkey.test";
    let old = spawn_app_in(sqlite_home.clone(), |s| same_issuer(s, issuer)).await;
    let (email, tokens) = old.new_user().await;
    let second = old.login_ok(&email, PASSWORD).await;
    let export = sqlite_home.path().join("export.json");
    let out = old.cli(
        &["export", "--output", export.to_str().expect("path")],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    old.stop().await;

    let pg_home = Arc::new(TestHome::new(Backend::Postgres).await);
    std::fs::copy(
        sqlite_home.path().join("master.key"),
        pg_home.path().join("master.key"),
    )
    .expect("copy master key");
    let import = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("--data-dir")
        .arg(pg_home.path())
        .args([
            "--database-url",
            pg_home.database_url().expose(),
            "import",
            "--input",
        ])
        .arg(&export)
        .output()
        .expect("import");
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );

    let new = spawn_app_in(pg_home, |s| same_issuer(s, issuer)).await;
    assert_eq!(
        new.me(&tokens.access).await.status(),
        StatusCode::OK,
        "access token lost"
    );
    new.refresh_ok(&tokens.refresh).await;
    new.refresh_ok(&second.refresh).await;
    new.login_ok(&email, PASSWORD).await;
    let again = new.cli(&["import", "--input", export.to_str().expect("path")], None);
    assert!(
        !again.status.success(),
        "import into a non-empty database must be refused"
    );
}

/// A follower that read the feed while a revocation was still uncommitted
/// must get it once it commits, even though another instance revoked (and
/// committed) a session in the meantime: positions are handed out in commit
/// order, so the later revocation waits for the earlier one.
#[tokio::test]
async fn a_revocation_committing_late_is_never_skipped_by_the_feed() {
    let Some((a, b)) = shared_cluster("the feed under a late commit").await else {
        return;
    };
    let creds = crate::feed::client(&a).await;
    let (_, first) = a.new_user().await;
    let (_, second) = a.new_user().await;
    let user = first.body["user"]["id"].as_str().expect("user id");
    let mut held = sqlx::PgConnection::connect(a.dir.database_url().expose())
        .await
        .expect("connect");
    let mut tx = held.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO revocations (kind, session_id, user_id, revoked_at) VALUES ('session', $1, $2, $3)",
    )
    .bind(&first.session_id)
    .bind(user)
    .bind(a.auth.now())
    .execute(&mut *tx)
    .await
    .expect("insert");
    let reader = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Long past any settling time a feed might wait for.
        b.clock.advance(120);
        let early = crate::feed::page(&b, &creds, "?after=0").await;
        tx.commit().await.expect("commit");
        early
    };
    let (logout, early) = tokio::join!(a.post_auth("/v1/logout", &second.access, None), reader);
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let after = early["next_cursor"].as_i64().expect("cursor");
    let late = crate::feed::page(&b, &creds, &format!("?after={after}")).await;
    let seen: Vec<String> = [&early, &late]
        .iter()
        .flat_map(|p| p["entries"].as_array().expect("entries").clone())
        .filter_map(|e| e["sid"].as_str().map(str::to_string))
        .collect();
    for sid in [&first.session_id, &second.session_id] {
        assert!(seen.contains(sid), "the feed skipped {sid}: {seen:?}");
    }
}
