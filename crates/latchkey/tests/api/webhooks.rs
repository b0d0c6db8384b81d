//! Webhooks: security events delivered to a real receiver that verifies
//! them with the Standard Webhooks library (`standardwebhooks` from PyPI,
//! in the tests' venv: `interop/setup.sh`), and refuses tampered ones.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::*;
use crate::tools;
use latchkey::domain::Actor;

/// `interop/python/webhook_receiver.py` and what it received.
struct Receiver {
    url: String,
    child: Child,
    received: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Receiver {
    async fn start() -> Option<Receiver> {
        Self::start_on(0).await
    }

    /// On `port` (0: any free one).
    async fn start_on(port: u16) -> Option<Receiver> {
        let python =
            tools::python_with("standardwebhooks", "the webhook tests need a receiver").await?;
        let mut child = Command::new(python)
            .arg(tools::workspace().join("interop/python/webhook_receiver.py"))
            .args(["--port", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start webhook_receiver.py");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the receiver starts")
            .expect("read")
            .expect("a first line");
        let port: u16 = first
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected: {first}"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).expect("json line");
                sink.lock().expect("lock").push((Instant::now(), v));
            }
        });
        Some(Receiver {
            url: format!("http://127.0.0.1:{port}/hooks"),
            child,
            received,
        })
    }

    /// Gives the receiver the endpoint's secret.
    async fn trust(&mut self, secret: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{secret}\n").as_bytes())
            .await
            .expect("write secret");
        stdin.flush().await.expect("flush");
    }

    fn all(&self) -> Vec<(Instant, Value)> {
        self.received.lock().expect("lock").clone()
    }

    /// The first verified event of `kind` about `user_id`, waiting up to 20 s.
    async fn wait_for(&self, kind: &str, user_id: &str) -> (Instant, Value) {
        self.wait_where(kind, user_id, |_| true).await
    }

    /// Verified events of `kind` about `user_id` (a JSON value: null for none).
    fn of(&self, kind: &str, user_id: impl Into<Value>) -> Vec<Value> {
        let user_id = user_id.into();
        self.all()
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| {
                v["ok"] == true
                    && v["payload"]["type"] == kind
                    && v["payload"]["data"]["user_id"] == user_id
            })
            .collect()
    }

    /// [`wait_for`](Self::wait_for) an event whose data also satisfies `check`.
    async fn wait_where(
        &self,
        kind: &str,
        user_id: impl Into<Value>,
        check: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        let user_id = user_id.into();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.all().into_iter().find(|(_, v)| {
                v["ok"] == true
                    && v["payload"]["type"] == kind
                    && v["payload"]["data"]["user_id"] == user_id
                    && check(&v["payload"]["data"])
            });
            if let Some(found) = found {
                let schema = &found.1["schema_error"];
                assert!(
                    schema.is_null(),
                    "{kind} does not match its schema: {schema}"
                );
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no such verified {kind} for {user_id}; received: {:?}",
                self.all()
                    .iter()
                    .map(|(_, v)| (&v["ok"], &v["type"], &v["error"]))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn app_with_hooks() -> TestApp {
    spawn_app_with(|s| {
        s.webhook_allow_private = true;
        s.mail.notices = vec![];
        // Reuse counts at once: no clock to move, so signatures carry the real time.
        s.refresh_reuse_grace = Duration::ZERO;
    })
    .await
}

/// The receiver back on `port` (trusting `secret`) and the server restarted
/// on `home`; None after a loud skip.
async fn come_back(
    home: std::sync::Arc<TestHome>,
    port: u16,
    secret: &str,
) -> Option<(Receiver, TestApp)> {
    let mut receiver = Receiver::start_on(port).await?;
    receiver.trust(secret).await;
    let app = spawn_app_in(home, |s| {
        s.webhook_allow_private = true;
        s.mail.notices = vec![];
    })
    .await;
    Some((receiver, app))
}

async fn subscribe(app: &TestApp, receiver: &mut Receiver, events: &str) -> String {
    let (hook, secret) = app
        .auth
        .add_webhook(&receiver.url, &[events.to_string()], &Actor::cli())
        .await
        .expect("add webhook");
    assert!(secret.starts_with("whsec_"));
    receiver.trust(&secret).await;
    hook.id
}

fn user_id(tokens: &Tokens) -> String {
    decode_segment(&tokens.access, 1)["sub"]
        .as_str()
        .expect("sub")
        .to_string()
}

#[tokio::test]
async fn security_events_arrive_signed_and_the_standard_webhooks_library_verifies_them() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let app = app_with_hooks().await;
    subscribe(&app, &mut receiver, "*").await;
    let (email, tokens) = app.new_user().await;
    let id = user_id(&tokens);
    let (_, registered) = receiver.wait_for("user.registered", &id).await;
    assert_eq!(registered["payload"]["data"]["email"], email.as_str());
    assert!(
        registered["id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("msg_")
    );

    let resp = app
        .post_auth(
            "/v1/me/password",
            &tokens.access,
            Some(serde_json::json!({ "current_password": PASSWORD, "new_password": "a whole new passphrase 42" })),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, changed) = receiver.wait_for("user.password_changed", &id).await;
    assert_eq!(changed["payload"]["data"]["reason"], "change");
    let body = changed["body"].as_str().expect("body").to_string();
    assert!(!body.contains("passphrase"), "no secret in a payload");

    // What a receiver must refuse, refused by the library itself.
    let headers = changed["headers"].clone();
    let replay = |body: String, headers: Value| {
        let client = app.client.clone();
        let url = receiver.url.clone();
        async move {
            let mut request = client.post(&url).body(body);
            for name in [
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "content-type",
            ] {
                if let Some(value) = headers[name].as_str() {
                    request = request.header(name, value);
                }
            }
            request.send().await.expect("post").status()
        }
    };
    let tampered = body.replace("\"change\"", "\"reset\"");
    assert_eq!(
        replay(tampered, headers.clone()).await,
        StatusCode::BAD_REQUEST
    );
    let mut old = headers.clone();
    let sent_at: i64 = headers["webhook-timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("timestamp");
    old["webhook-timestamp"] = Value::from((sent_at - 3600).to_string());
    assert_eq!(replay(body.clone(), old).await, StatusCode::BAD_REQUEST);
    let mut forged = headers.clone();
    forged["webhook-signature"] = Value::from("v1,c2lnbmVkIHdpdGggYW5vdGhlciBzZWNyZXQ=");
    assert_eq!(replay(body.clone(), forged).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        replay(body, headers).await,
        StatusCode::NO_CONTENT,
        "the genuine one still verifies"
    );
    let refusals: Vec<String> = receiver
        .all()
        .iter()
        .filter(|(_, v)| v["ok"] == false)
        .map(|(_, v)| v["error"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
}

#[tokio::test]
async fn a_refresh_token_theft_reaches_the_receiver_within_a_second() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let app = app_with_hooks().await;
    subscribe(&app, &mut receiver, "session.theft_detected").await;
    let mut latencies = Vec::new();
    for _ in 0..50 {
        let (_, tokens) = app.new_user().await;
        let id = user_id(&tokens);
        app.refresh_ok(&tokens.refresh).await;
        let detected = Instant::now();
        assert_eq!(
            app.refresh(&tokens.refresh).await.status(),
            StatusCode::BAD_REQUEST
        );
        let (arrived, event) = receiver.wait_for("session.theft_detected", &id).await;
        let data = &event["payload"]["data"];
        assert_eq!(data["session_id"], tokens.session_id.as_str());
        assert_eq!(data["ip"], "127.0.0.1");
        latencies.push(arrived.saturating_duration_since(detected));
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = latencies[latencies.len() - 1];
    println!("theft detected -> receiver: p50 {p50:?}, p99 {p99:?}, max {max:?} (50 thefts)");
    assert!(max < Duration::from_secs(1), "{latencies:?}");
    // Only what it subscribed to.
    assert!(
        receiver
            .all()
            .iter()
            .all(|(_, v)| v["type"] == "session.theft_detected")
    );
}

#[tokio::test]
async fn two_instances_deliver_each_event_once() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let first = app_with_hooks().await;
    let second = spawn_app_in(first.dir.clone(), |s| {
        s.webhook_allow_private = true;
        s.mail.notices = vec![];
    })
    .await;
    subscribe(&first, &mut receiver, "user.registered").await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 { &first } else { &second };
        let (_, tokens) = app.new_user().await;
        ids.push(user_id(&tokens));
    }
    for id in &ids {
        receiver.wait_for("user.registered", id).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = receiver.all();
    assert_eq!(all.len(), ids.len(), "each event once");
}

#[tokio::test]
async fn endpoints_must_be_https_and_public_unless_allowed() {
    let app = spawn_app().await;
    for url in [
        "http://example.com/hooks",
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://[::1]/hooks",
        "https://169.254.169.254/latest",
        "https://user:pw@example.com/hooks",
        "ftp://example.com/hooks",
    ] {
        let refused = app
            .auth
            .add_webhook(url, &["*".to_string()], &Actor::cli())
            .await;
        assert!(refused.is_err(), "{url} was accepted");
    }
    let unknown = app
        .auth
        .add_webhook(
            "https://hooks.example.com/x",
            &["user.nothing".to_string()],
            &Actor::cli(),
        )
        .await;
    assert!(unknown.is_err());
    // A name that resolves to a loopback address is refused when it is called.
    let (hook, _) = app
        .auth
        .add_webhook(
            "https://localhost:9/hooks",
            &["webhook.test".to_string()],
            &Actor::cli(),
        )
        .await
        .expect("a public-looking name is accepted");
    let out = app.cli(&["webhooks", "test", &hook.id], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no address webhooks may call"), "{err}");
}

#[tokio::test]
async fn the_cli_adds_lists_tests_and_removes_endpoints() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let app = spawn_app_with(|s| s.webhook_allow_private = true).await;
    let env_cli =
        |args: &[&str]| app.cli_env(args, None, &[("LATCHKEY_WEBHOOK_ALLOW_PRIVATE", "true")]);
    let out = env_cli(&[
        "webhooks",
        "add",
        &receiver.url,
        "--events",
        "webhook.test,user.registered",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    let (id, secret) = (field("webhook_id"), field("secret"));
    receiver.trust(&secret).await;
    assert!(stdout(&env_cli(&["webhooks", "list"])).contains(&id));
    let out = env_cli(&["webhooks", "test", &id]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("delivered"));
    let deliveries = stdout(&env_cli(&["webhooks", "deliveries", &id]));
    assert!(
        deliveries.contains("webhook.test") && deliveries.contains("delivered"),
        "{deliveries}"
    );
    let first = deliveries
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a delivery id")
        .to_string();
    let out = env_cli(&["webhooks", "replay", &first]);
    assert!(out.status.success(), "{out:?}");
    let deliveries = stdout(&env_cli(&["webhooks", "deliveries", &id]));
    assert_eq!(
        deliveries.matches("webhook.test").count(),
        2,
        "{deliveries}"
    );
    assert!(!env_cli(&["webhooks", "replay", "999999"]).status.success());
    assert!(env_cli(&["webhooks", "remove", &id]).status.success());
    assert!(!stdout(&env_cli(&["webhooks", "list"])).contains(&id));
    // The CLI ran blocking this test's runtime: let the receiver's output be read.
    let deadline = Instant::now() + Duration::from_secs(5);
    while receiver.all().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = receiver.all();
    let (_, verified) = all
        .first()
        .unwrap_or_else(|| panic!("the test event: {deliveries}"));
    assert_eq!(verified["ok"], true);
    while receiver.all().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = receiver.all();
    assert_eq!(all.len(), 2, "the replay arrived");
    assert_eq!(
        all[0].1["id"], all[1].1["id"],
        "a replay keeps the event's id"
    );
}

#[tokio::test]
async fn events_wait_for_a_receiver_that_is_down_through_a_restart_and_arrive_in_order_once() {
    let port = free_port();
    let app = app_with_hooks().await;
    let url = format!("http://127.0.0.1:{port}/hooks");
    let (hook, secret) = app
        .auth
        .add_webhook(
            &url,
            &["user.registered,user.password_changed".to_string()],
            &Actor::cli(),
        )
        .await
        .expect("add webhook");
    let (_, tokens) = app.new_user().await;
    let id = user_id(&tokens);
    let mut access = tokens.access.clone();
    let mut current = PASSWORD.to_string();
    for next in [
        "first new passphrase 11",
        "second new passphrase 22",
        "third new passphrase 33",
    ] {
        let body = serde_json::json!({ "current_password": current, "new_password": next });
        let resp = app.post_auth("/v1/me/password", &access, Some(body)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        access = Tokens::from_body(resp.json().await.expect("json")).access;
        current = next.to_string();
    }
    // Nothing listens: the first delivery fails and the others wait behind it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tried = app
            .auth
            .webhook_deliveries(&hook.id, 10)
            .await
            .expect("deliveries");
        if tried.iter().any(|d| d.last_error.is_some()) {
            let started = tried.iter().filter(|d| d.attempts > 0).count();
            assert_eq!(started, 1, "one at a time per user and endpoint");
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server restarts; the receiver comes back.
    let home = app.stop().await;
    let Some((receiver, app)) = come_back(home, port, &secret).await else {
        return;
    };
    app.clock.advance(13);
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.all().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "got {} of 4",
            receiver.all().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = receiver.all();
    let kinds: Vec<&str> = all
        .iter()
        .map(|(_, v)| v["payload"]["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        [
            "user.registered",
            "user.password_changed",
            "user.password_changed",
            "user.password_changed"
        ],
        "in the order they happened, each once"
    );
    assert!(
        all.iter()
            .all(|(_, v)| v["ok"] == true && v["payload"]["data"]["user_id"] == id.as_str())
    );
    let mut ids: Vec<&str> = all.iter().filter_map(|(_, v)| v["id"].as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "no event twice");
}

#[tokio::test]
async fn second_factor_changes_are_events() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let app = app_with_hooks().await;
    subscribe(&app, &mut receiver, "user.mfa_changed").await;
    let user = crate::mfa::enrolled(&app).await;
    let id = user_id(&user.tokens);
    let (_, enabled) = receiver.wait_for("user.mfa_changed", &id).await;
    assert_eq!(enabled["payload"]["data"]["change"], "enabled");
    let token = crate::mfa::challenge(&app, &user.email).await;
    let proof = serde_json::json!({ "recovery_code": user.codes[0] });
    let resp = crate::mfa::second_step(&app, &token, proof).await;
    assert_eq!(resp.status(), StatusCode::OK);
    receiver
        .wait_where("user.mfa_changed", id.as_str(), |d| {
            d["change"] == "recovery_code_used"
        })
        .await;
}

#[tokio::test]
async fn sign_ins_revocations_deletions_and_key_changes_are_events_too() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let app = app_with_hooks().await;
    subscribe(
        &app,
        &mut receiver,
        "user.login,user.login_failed,session.revoked,user.deleted,key.rotated",
    )
    .await;
    let (email, _) = app.new_user().await;
    let failed = app.login(&email, "not the password 1").await;
    assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
    let session = app.login_ok(&email, PASSWORD).await;
    let id = user_id(&session);
    let (_, refused) = receiver.wait_for("user.login_failed", &id).await;
    assert_eq!(refused["payload"]["data"]["email"], email.as_str());
    let (_, login) = receiver.wait_for("user.login", &id).await;
    assert_eq!(
        login["payload"]["data"]["session_id"],
        session.session_id.as_str()
    );
    let resp = app.post_auth("/v1/logout", &session.access, None).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (_, revoked) = receiver.wait_for("session.revoked", &id).await;
    assert_eq!(revoked["payload"]["data"]["reason"], "logout");
    assert_eq!(
        revoked["payload"]["data"]["session_ids"][0],
        session.session_id.as_str()
    );
    assert!(app.cli(&["users", "delete", &email], None).status.success());
    assert!(app.cli(&["keys", "rotate"], None).status.success());
    // The CLI wrote the events at the wall clock's time: the server's own
    // (test) clock must reach it for them to be due.
    app.catch_up_with_wall_clock();
    receiver.wait_for("user.deleted", &id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !receiver
        .all()
        .iter()
        .any(|(_, v)| v["ok"] == true && v["payload"]["type"] == "key.rotated")
    {
        assert!(Instant::now() < deadline, "no key.rotated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_endpoint_failing_for_its_whole_retry_window_is_disabled_and_the_others_are_told() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let app = spawn_app_with(|s| {
        s.webhook_allow_private = true;
        s.webhook_retry_window = Duration::from_secs(60);
        s.mail.notices = vec![];
    })
    .await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dead_url = format!("http://127.0.0.1:{dead_port}/hooks");
    let (dead, _) = app
        .auth
        .add_webhook(&dead_url, &["user.registered".to_string()], &Actor::cli())
        .await
        .expect("add");
    subscribe(&app, &mut receiver, "webhook.disabled").await;
    app.new_user().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let told = loop {
        app.clock.advance(5);
        let found = receiver
            .all()
            .into_iter()
            .find(|(_, v)| v["ok"] == true && v["payload"]["type"] == "webhook.disabled");
        if let Some((_, told)) = found {
            break told;
        }
        assert!(Instant::now() < deadline, "no webhook.disabled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(told["payload"]["data"]["webhook_id"], dead.id.as_str());
    let hooks = app.auth.webhooks().await.expect("hooks");
    assert!(
        hooks
            .iter()
            .find(|h| h.id == dead.id)
            .expect("hook")
            .disabled
    );
    let out = app.cli(&["webhooks", "enable", &dead.id], None);
    assert!(out.status.success(), "{out:?}");
    let hooks = app.auth.webhooks().await.expect("hooks");
    assert!(
        !hooks
            .iter()
            .find(|h| h.id == dead.id)
            .expect("hook")
            .disabled
    );
}

#[test]
fn every_event_type_has_a_published_schema_and_every_schema_an_event_type() {
    let dir = tools::workspace().join("docs/webhooks");
    let mut published: Vec<String> = std::fs::read_dir(&dir)
        .expect("docs/webhooks")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".schema.json").map(str::to_string))
        .collect();
    published.sort();
    let mut types: Vec<String> = latchkey::domain::webhooks::EVENT_TYPES
        .iter()
        .map(|t| t.to_string())
        .collect();
    types.sort();
    assert_eq!(published, types);
    let guide =
        std::fs::read_to_string(tools::workspace().join("docs/webhooks.md")).expect("guide");
    for t in &types {
        assert!(
            guide.contains(&format!("`{t}`")),
            "docs/webhooks.md does not describe {t}"
        );
    }
}

#[tokio::test]
async fn refused_logins_are_summarised_once_a_minute_not_sent_one_by_one() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let app = app_with_hooks().await;
    subscribe(&app, &mut receiver, "user.login_failed").await;
    let (email, tokens) = app.new_user().await;
    let id = user_id(&tokens);
    let stranger = unique_email();
    // Five wrong passwords are checked, each its own event; then the
    // throttle refuses without checking (the test clock stands still).
    for address in [&email, &stranger] {
        for _ in 0..5 {
            let resp = app.login(address, "not the password 1").await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        }
    }
    for (address, refusals) in [(&email, 20), (&stranger, 4)] {
        for _ in 0..refusals {
            let resp = app.login(address, "not the password 2").await;
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.of("user.login_failed", id.as_str()).len() < 5
        || receiver.of("user.login_failed", Value::Null).len() < 5
    {
        assert!(
            Instant::now() < deadline,
            "the checked failures did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.of("user.login_failed", id.as_str()).len(),
        5,
        "no event per refused attempt"
    );
    // A minute later, one summary per account and one for unknown addresses.
    app.clock.advance(63);
    let (_, summary) = receiver
        .wait_where("user.login_failed", id.as_str(), |d| d["throttled"] == true)
        .await;
    let data = &summary["payload"]["data"];
    assert_eq!(data["attempts"], 20);
    assert_eq!(data["email"], email.as_str());
    assert_eq!(data["ips"], serde_json::json!(["127.0.0.1"]));
    let (_, unknown) = receiver
        .wait_where("user.login_failed", Value::Null, |d| d["throttled"] == true)
        .await;
    assert_eq!(unknown["payload"]["data"]["attempts"], 4);
    assert_eq!(unknown["payload"]["data"]["email"], Value::Null);
    // Nothing new: no summary the next minute; each refusal counted once.
    app.clock.advance(61);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let summaries = |user: Value| {
        receiver
            .of("user.login_failed", user)
            .into_iter()
            .filter(|v| v["payload"]["data"]["throttled"] == true)
            .count()
    };
    assert_eq!(summaries(Value::from(id.as_str())), 1);
    assert_eq!(summaries(Value::Null), 1);
}

#[tokio::test]
async fn a_new_password_or_a_disabled_account_names_every_session_it_ended() {
    let Some(mut receiver) = Receiver::start().await else {
        return;
    };
    let app = app_with_hooks().await;
    subscribe(&app, &mut receiver, "session.revoked,user.disabled").await;
    let (email, first) = app.new_user().await;
    let second = app.login_ok(&email, PASSWORD).await;
    let id = user_id(&first);
    let body = serde_json::json!({
        "current_password": PASSWORD,
        "new_password": "an entirely new passphrase 9",
    });
    let resp = app
        .post_auth("/v1/me/password", &first.access, Some(body))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let third = Tokens::from_body(resp.json().await.expect("json"));
    let (_, changed) = receiver
        .wait_where("session.revoked", id.as_str(), |d| {
            d["reason"] == "password_changed"
        })
        .await;
    let mut ended: Vec<&str> = changed["payload"]["data"]["session_ids"]
        .as_array()
        .expect("session_ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ended.sort();
    let mut expected = [first.session_id.as_str(), second.session_id.as_str()];
    expected.sort();
    assert_eq!(ended, expected);
    assert_eq!(changed["payload"]["data"]["sessions"], 2);
    assert!(
        app.cli(&["users", "disable", &email], None)
            .status
            .success()
    );
    app.catch_up_with_wall_clock();
    let (_, disabled) = receiver.wait_for("user.disabled", &id).await;
    assert_eq!(disabled["payload"]["data"]["sessions_ended"], 1);
    let (_, revoked) = receiver
        .wait_where("session.revoked", id.as_str(), |d| {
            d["reason"] == "user_disabled"
        })
        .await;
    assert_eq!(
        revoked["payload"]["data"]["session_ids"],
        serde_json::json!([third.session_id])
    );
}

#[tokio::test]
async fn an_event_written_before_the_server_was_killed_is_delivered_after_the_restart() {
    let port = free_port();
    let app = app_with_hooks().await;
    let url = format!("http://127.0.0.1:{port}/hooks");
    let (_, secret) = app
        .auth
        .add_webhook(&url, &["user.registered".to_string()], &Actor::cli())
        .await
        .expect("add webhook");
    let settings = app.settings.clone();
    let home = app.stop().await;
    // The real binary serves; nothing listens at the endpoint yet, so the
    // event cannot be delivered before the server dies.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let env = [("LATCHKEY_WEBHOOK_ALLOW_PRIVATE", "true")];
    let mut command = latchkey_command(&home, &settings, &env);
    command
        .args(["serve", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn latchkey serve");
    let client = reqwest::Client::new();
    let body = serde_json::json!({ "email": unique_email(), "password": PASSWORD });
    let mut registered = None;
    for _ in 0..200 {
        match client
            .post(format!("http://{addr}/v1/register"))
            .json(&body)
            .send()
            .await
        {
            Ok(resp) => {
                registered = Some(resp);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let resp = registered.expect("the server never answered");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let tokens = Tokens::from_body(resp.json().await.expect("json"));
    // SIGKILL: no shutdown, no draining, nothing flushed.
    server.kill().await.expect("kill -9");
    let Some((receiver, app)) = come_back(home, port, &secret).await else {
        return;
    };
    // Past the first retry and any lease the killed server held.
    app.clock.advance(70);
    let id = user_id(&tokens);
    receiver.wait_for("user.registered", &id).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.of("user.registered", id.as_str()).len(), 1);
}
