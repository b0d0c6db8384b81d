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

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o777
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[tokio::test]
async fn the_data_directory_and_every_file_in_it_are_private() {
    if backend() != Backend::Sqlite {
        return;
    }
    let home = std::sync::Arc::new(TestHome::new(Backend::Sqlite).await);
    // A directory made beforehand by an operator, with the usual umask.
    set_mode(home.path(), 0o755);
    let app = spawn_app_in(home.clone(), |_| {}).await;
    app.new_user().await;
    assert_eq!(mode(home.path()), 0o700, "the data directory");
    for entry in std::fs::read_dir(home.path()).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert!(
        home.path().join("latchkey.db-wal").exists(),
        "WAL checked too"
    );
}

#[tokio::test]
async fn a_master_key_others_can_read_stops_the_server_with_the_fix() {
    let home = std::sync::Arc::new(TestHome::new(backend()).await);
    drop(spawn_app_in(home.clone(), |_| {}).await.stop().await);
    let key = home.path().join("master.key");
    set_mode(&key, 0o644);
    let settings = test_settings(&home);
    let clock = std::sync::Arc::new(latchkey::domain::clock::SystemClock);
    let refused = latchkey::app::App::build(settings, clock).await;
    let message = format!("{:#}", refused.err().expect("refused to start"));
    assert!(
        message.contains(&key.display().to_string()) && message.contains("chmod 600"),
        "{message}"
    );
}

#[tokio::test]
async fn a_bad_forwarded_entry_left_of_the_client_does_not_make_it_the_proxy() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await;
    let resp = app
        .client
        .post(app.url("/v1/register"))
        .header("x-forwarded-for", "garbage, 2.2.2.2")
        .json(&serde_json::json!({"email": unique_email(), "password": PASSWORD}))
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let tokens = Tokens::from_body(resp.json().await.expect("json"));
    let events: serde_json::Value = app
        .get("/v1/me/events", Some(&tokens.access))
        .await
        .json()
        .await
        .expect("events");
    assert_eq!(events["events"][0]["ip"], "2.2.2.2", "{events}");
}

#[tokio::test]
async fn every_credential_endpoint_has_a_per_ip_limit() {
    let app = spawn_app_with(|s| s.token_rate_limit = 5).await;
    for _ in 0..5 {
        let resp = app.refresh("lk_rt_garbage").await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    let limited = app.refresh("lk_rt_garbage").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    let (status, code, _) = error_of(limited).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    // The same bucket covers logout, revocation and failed client authentication.
    let logout = app
        .post_json(
            "/v1/logout",
            serde_json::json!({"refresh_token": "lk_rt_x"}),
        )
        .await;
    assert_eq!(logout.status(), StatusCode::TOO_MANY_REQUESTS);
    let revoke = app.post_form("/v1/revoke", &[("token", "x")]).await;
    assert_eq!(revoke.status(), StatusCode::TOO_MANY_REQUESTS);
    let introspect = app
        .client
        .post(app.url("/v1/introspect"))
        .basic_auth("lk_client_nobody", Some("wrong"))
        .form(&[("token", "x")])
        .send()
        .await
        .expect("introspect");
    assert_eq!(introspect.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn metric_labels_come_from_closed_sets_whatever_the_requests() {
    let app = spawn_app().await;
    for n in 0..40 {
        let method =
            reqwest::Method::from_bytes(format!("INVENTED{n}").as_bytes()).expect("method");
        let resp = app
            .client
            .request(method, app.url(&format!("/no/such/path/{n}")))
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let long = reqwest::Method::from_bytes("X".repeat(4096).as_bytes()).expect("method");
    let resp = app
        .client
        .request(long, app.url("/v1/me"))
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_client_error());
    let text = app
        .get("/metrics", None)
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        !text.contains("INVENTED") && !text.contains("XXXX"),
        "unbounded labels"
    );
    assert!(!text.contains("/no/such/path"), "raw paths as labels");
    assert!(
        text.contains("method=\"other\""),
        "unknown methods are `other`"
    );
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let app = spawn_app_with(|s| s.metrics_token = Some("scrape-secret-0123456789".into())).await;
    let anonymous = app.get("/metrics", None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = app.get("/metrics", Some("nope")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let scraper = app.get("/metrics", Some("scrape-secret-0123456789")).await;
    assert_eq!(scraper.status(), StatusCode::OK);
}

#[tokio::test]
async fn silent_connections_are_capped_per_client_and_closed_by_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|s| {
        s.header_read_timeout = std::time::Duration::from_secs(1);
        s.max_connections_per_ip = 100;
    })
    .await;
    // A thousand connections from one address that never finish a request
    // head: half send nothing, half the start of an HTTP/2 preface.
    let mut silent = Vec::new();
    for n in 0..1000 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind");
        let mut stream = socket.connect(app.addr).await.expect("connect");
        if n % 2 == 1 {
            stream
                .write_all(b"PRI * HTTP/2.0\r\n")
                .await
                .expect("preface");
        }
        silent.push(stream);
    }
    // Meanwhile another client is served as usual.
    for _ in 0..20 {
        let resp =
            tokio::time::timeout(std::time::Duration::from_secs(5), app.get("/healthz", None))
                .await
                .expect("answered while the silent connections are open");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // Every silent connection is closed: those over the cap at once, the
    // rest by the deadline.
    let mut buf = [0u8; 64];
    for (n, stream) in silent.iter_mut().enumerate() {
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("connection {n} still open"));
        assert!(matches!(read, Ok(0) | Err(_)), "connection {n}: {read:?}");
    }
}

#[tokio::test]
async fn a_keep_alive_connection_idle_too_long_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Only the idle timeout may close it here: the header deadline is longer
    // than the test waits.
    let app = spawn_app_with(|s| {
        s.idle_timeout = std::time::Duration::from_secs(1);
        s.header_read_timeout = std::time::Duration::from_secs(60);
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("closed after the idle timeout");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}

#[tokio::test]
async fn look_alike_emails_and_hidden_characters_in_names_are_refused() {
    let app = spawn_app().await;
    let cyrillic_e = "ada@exampl\u{435}.com";
    let resp = app.register_raw(cyrillic_e, PASSWORD).await;
    let (status, code, _) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    for name in ["Ada\u{202E}nimda", "Ada\u{200B}", "Ada\u{2066}x"] {
        let resp = app
            .post_json(
                "/v1/register",
                serde_json::json!({"email": unique_email(), "password": PASSWORD, "name": name}),
            )
            .await;
        let (status, code, _) = error_of(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{name:?}"
        );
    }
    // Persian names need the zero-width non-joiner.
    let resp = app
        .post_json(
            "/v1/register",
            serde_json::json!({"email": unique_email(), "password": PASSWORD, "name": "\u{645}\u{6cc}\u{200c}\u{631}\u{648}\u{645}"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn the_cli_never_prints_hidden_characters_raw() {
    let app = spawn_app().await;
    // A name stored before names were checked, as an old version could.
    let (email, _) = app.new_user().await;
    let rows = app.rows().await;
    let mut user = rows
        .users
        .into_iter()
        .find(|u| u.email == email)
        .expect("user");
    app.store
        .delete_user(&user.id, 0, &latchkey::store::Outgoing::default())
        .await
        .expect("delete");
    user.name = Some("Ada\u{202E}nimda\u{1b}[31m".into());
    let nothing = latchkey::store::Outgoing::default();
    app.store
        .insert_user(&user, &nothing)
        .await
        .expect("insert");
    let out = stdout(&app.cli(&["users", "show", &email], None));
    assert!(
        !out.contains('\u{202E}') && !out.contains('\u{1b}'),
        "{out:?}"
    );
    assert!(
        out.contains("\\u{202e}") && out.contains("\\u{1b}"),
        "{out}"
    );
}

/// A small tmpfs of its own, unmounted on drop: a disk that can really fill.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    /// Mounts one, or says why it cannot (mounting needs root).
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallDisk(dir))
    }

    /// Fills what is left with a file; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.0.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 16 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.write_all(&[0u8; 512]);
        path
    }
}

/// An app whose data directory and database are on a small disk of their
/// own, or None (said loudly; a failure under `LATCHKEY_REQUIRE_ALL=1`)
/// where mounting one is not allowed.
async fn app_on_small_disk(what: &str) -> Option<(SmallDisk, TestApp)> {
    let disk = match SmallDisk::mount("4m") {
        Ok(disk) => disk,
        Err(why) => {
            let what = format!("{what} needs a tmpfs mount (root): {why}");
            if std::env::var("LATCHKEY_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("{what}");
            }
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {what}\n");
            return None;
        }
    };
    let dir = disk.0.path().to_path_buf();
    let app = spawn_app_with(|s| {
        s.data_dir = dir.clone();
        s.database_url = latchkey::config::DatabaseUrl::new(format!(
            "sqlite://{}",
            dir.join("latchkey.db").display()
        ));
    })
    .await;
    app.new_user().await;
    Some((disk, app))
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_is_an_outage_that_ends_by_itself() {
    if backend() != Backend::Sqlite {
        return;
    }
    let Some((disk, app)) = app_on_small_disk("the full-disk test").await else {
        return;
    };
    let filler = disk.fill();
    let mut outage = None;
    for _ in 0..200 {
        let resp = app.register_raw(&unique_email(), PASSWORD).await;
        let status = resp.status();
        assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR,
            "a full disk answered 500"
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            outage = Some(resp);
            break;
        }
    }
    let resp = outage.expect("a full disk stopped registrations");
    assert!(resp.headers().contains_key("retry-after"));
    let (_, code, _) = error_of(resp).await;
    assert_eq!(code, "temporarily_unavailable");
    assert_eq!(
        app.get("/readyz", None).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Space comes back: so does the service, with nothing restarted.
    std::fs::remove_file(filler).expect("free the disk");
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    let resp = app.register_raw(&unique_email(), PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}
