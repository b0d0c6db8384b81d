//! Mail: the account's life over email, delivered to a real SMTP server
//! (aiosmtpd, from the tests' Python venv, `interop/setup.sh`) or, by
//! default, to `.eml` files in the data directory's outbox folder.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::*;
use crate::tools;

const NEW_PASSWORD: &str = "a whole new passphrase 42";

/// A message as a mail client would read it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    /// How it came: over TLS, and as which SMTP user.
    tls: bool,
    user: Option<String>,
    pub subject: String,
    pub text: String,
    html: String,
}

impl Mail {
    fn parse(raw: &[u8]) -> Mail {
        let parsed = mailparse::parse_mail(raw).expect("a well-formed message");
        let header = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.get_key().eq_ignore_ascii_case(name))
                .map(|h| h.get_value())
                .unwrap_or_default()
        };
        let part = |mime: &str| {
            parsed
                .subparts
                .iter()
                .find(|p| p.ctype.mimetype == mime)
                .map(|p| p.get_body().expect("a decodable part"))
                .unwrap_or_default()
        };
        Mail {
            tls: false,
            user: None,
            to: header("To"),
            subject: header("Subject"),
            text: part("text/plain"),
            html: part("text/html"),
        }
    }

    /// The token of the first link to `path` in the text part.
    fn token(&self, path: &str) -> String {
        let marker = format!("{path}#token=");
        let start = self
            .text
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker} link in {}", self.text))
            + marker.len();
        self.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

/// aiosmtpd on a port of its own, with what it received.
struct SmtpSink {
    port: u16,
    /// With TLS: the certificate of the test CA that signed the server's (PEM).
    cert: Option<PathBuf>,
    child: Child,
    received: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// Starts the server on `port` (0: any), or None when the venv is missing
    /// (a loud skip, or a failure under `LATCHKEY_REQUIRE_ALL=1`).
    async fn start(port: u16) -> Option<SmtpSink> {
        Self::start_with(port, &[]).await
    }

    /// With `--tls starttls|implicit` and `--auth USER:PASSWORD` as `options` say.
    async fn start_with(port: u16, options: &[&str]) -> Option<SmtpSink> {
        let python =
            tools::python_with("aiosmtpd", "the mail tests need a real SMTP server").await?;
        let mut child = Command::new(python)
            .arg(tools::workspace().join("interop/python/smtp_sink.py"))
            .arg(port.to_string())
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start smtp_sink.py");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP server starts")
            .expect("read")
            .expect("a first line");
        let mut words = first
            .strip_prefix("listening on ")
            .unwrap_or_default()
            .split(' ');
        let port = words
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected: {first}"));
        let cert =
            (words.next() == Some("cert")).then(|| PathBuf::from(words.next().unwrap_or_default()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line).expect("json line");
                let data = v["data"].as_str().expect("data").as_bytes().to_vec();
                let mut mail = Mail::parse(&data);
                mail.to = v["to"][0].as_str().unwrap_or_default().to_string();
                mail.tls = v["tls"] == true;
                mail.user = v["user"].as_str().map(str::to_string);
                sink.lock().expect("lock").push(mail);
            }
        });
        Some(SmtpSink {
            port,
            cert,
            child,
            received,
        })
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    fn all(&self) -> Vec<Mail> {
        self.received.lock().expect("lock").clone()
    }

    /// The first message to `to` whose subject contains `subject`, waiting up to 20 s.
    async fn wait_for(&self, to: &str, subject: &str) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .all()
                .into_iter()
                .find(|m| m.to == to && m.subject.contains(subject));
            if let Some(mail) = found {
                return mail;
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {to} about {subject:?}; received: {:?}",
                self.all()
                    .iter()
                    .map(|m| (&m.to, &m.subject))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// The app, delivering to `sink`.
async fn app_mailing(
    sink: &SmtpSink,
    configure: impl FnOnce(&mut latchkey::config::Settings),
) -> TestApp {
    let url = sink.url();
    spawn_app_with(|s| {
        s.mail.smtp = Some(parse_smtp(&url));
        configure(s);
    })
    .await
}

fn parse_smtp(url: &str) -> latchkey::config::SmtpUrl {
    let u = url::Url::parse(url).expect("url");
    latchkey::config::SmtpUrl {
        host: u.host_str().expect("host").to_string(),
        port: u.port().expect("port"),
        tls: latchkey::config::SmtpTls::None,
        username: None,
        password: None,
    }
}

/// Messages written to the outbox folder, parsed, with their files.
pub fn outbox_files(app: &TestApp) -> Vec<(PathBuf, Mail)> {
    let dir = app.settings.data_dir.join("outbox");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    // By message id: `CREATED-ID-KIND.eml`.
    files.sort_by_key(|p| {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let mut parts = name.split('-');
        let created: i64 = parts
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_default();
        let id: i64 = parts
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_default();
        (created, id)
    });
    files
        .into_iter()
        .map(|p| {
            let mail = Mail::parse(&std::fs::read(&p).expect("read eml"));
            (p, mail)
        })
        .collect()
}

async fn wait_for_file(app: &TestApp, to: &str, kind: &str) -> (PathBuf, Mail) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = outbox_files(app).into_iter().find(|(p, m)| {
            m.to.contains(to) && p.to_string_lossy().ends_with(&format!("-{kind}.eml"))
        });
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} mail to {to} in the outbox folder"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ask_reset(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json("/v1/password-reset", json!({ "email": email }))
        .await
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/v1/password-reset/confirm",
        json!({ "token": token, "new_password": password }),
    )
    .await
}

// ---------------------------------------------------------------- out of the box

#[tokio::test]
async fn without_smtp_mail_lands_in_the_outbox_folder_and_its_reset_link_works() {
    let app = spawn_app().await;
    let (email, tokens) = app.new_user().await;
    assert_eq!(ask_reset(&app, &email).await.status(), StatusCode::ACCEPTED);
    let (path, mail) = wait_for_file(&app, &email, "password_reset").await;
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "a message holding a reset link is private"
    );
    assert!(
        mail.subject.starts_with("Reset your password"),
        "{}",
        mail.subject
    );
    assert!(
        mail.html.contains("#token="),
        "the HTML part has the link too"
    );
    let link = format!("{}/reset-password#token=", app.base);
    assert!(
        mail.text.contains(&link),
        "the token travels in the fragment: {}",
        mail.text
    );
    assert!(!mail.text.contains("?token"));

    let token = mail.token("/reset-password");
    assert_eq!(token.len(), 43, "256 random bits");
    assert_eq!(
        confirm_reset(&app, &token, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    // Every session and access token of the user ended.
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&tokens.refresh).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    let fresh = app.login_ok(&email, NEW_PASSWORD).await;
    // The mail proved the address.
    let me: Value = app.me(&fresh.access).await.json().await.expect("json");
    assert_eq!(me["email_verified"], true);
    let kinds = app.event_kinds(&fresh.access).await;
    let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
    assert!(
        kinds.contains(&"password_reset") && kinds.contains(&"password_reset_requested"),
        "{kinds:?}"
    );
    // The notice of the change went out too.
    wait_for_file(&app, &email, "password_changed").await;
}

// ---------------------------------------------------------------- a real SMTP server

#[tokio::test]
async fn smtp_delivers_verification_and_reset_in_the_readers_language() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    let app = app_mailing(&sink, |_| {}).await;
    let email = unique_email();
    let started = Instant::now();
    let resp = app
        .client
        .post(app.url("/v1/register"))
        .header("accept-language", "fr-CA, en;q=0.5")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let tokens = Tokens::from_body(resp.json().await.expect("json"));
    let welcome = sink.wait_for(&email, "Confirmez votre adresse").await;
    let delivered_in = started.elapsed();
    assert!(welcome.html.contains("lang=\"fr\""));
    let me: Value = app.me(&tokens.access).await.json().await.expect("json");
    assert_eq!(me["email_verified"], false);
    let resp = app
        .post_json(
            "/v1/verify-email",
            json!({ "token": welcome.token("/verify-email") }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let user: Value = resp.json().await.expect("json");
    assert_eq!(user["email_verified"], true);

    // The stored locale wins over the request's language.
    let resp = app
        .client
        .post(app.url("/v1/password-reset"))
        .header("accept-language", "en")
        .json(&json!({ "email": email }))
        .send()
        .await
        .expect("reset");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let reset = sink
        .wait_for(&email, "Réinitialisez votre mot de passe")
        .await;
    assert_eq!(
        confirm_reset(&app, &reset.token("/reset-password"), NEW_PASSWORD)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    app.login_ok(&email, NEW_PASSWORD).await;
    println!("registration to verification mail received: {delivered_in:?}");
    sink.stop().await;
}

#[tokio::test]
async fn a_mail_server_that_is_down_delays_mail_which_survives_a_restart_and_never_fails_the_request()
 {
    // A port nothing listens on yet.
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    let app = spawn_app_with(|s| s.mail.smtp = Some(parse_smtp(&url))).await;
    let (email, _) = app.new_user().await;
    assert_eq!(ask_reset(&app, &email).await.status(), StatusCode::ACCEPTED);
    // The attempt failed and is waiting for its retry.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let unsent = app.auth.unsent_mail(100).await.expect("outbox");
        if unsent
            .iter()
            .any(|m| m.kind == "password_reset" && m.last_error.is_some())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempt recorded: {unsent:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server restarts meanwhile: the message waits in the database.
    let home = app.stop().await;
    let Some(sink) = SmtpSink::start(port).await else {
        return;
    };
    let app = spawn_app_in(home, |s| s.mail.smtp = Some(parse_smtp(&url))).await;
    app.clock.advance(31);
    let mail = sink.wait_for(&email, "Reset your password").await;
    assert_eq!(
        confirm_reset(&app, &mail.token("/reset-password"), NEW_PASSWORD)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    sink.stop().await;
}

#[tokio::test]
async fn two_instances_on_one_database_send_each_message_once() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    let url = sink.url();
    let first = app_mailing(&sink, |s| s.mail.notices = vec![]).await;
    let second = spawn_app_in(first.dir.clone(), |s| {
        s.mail.smtp = Some(parse_smtp(&url));
        s.mail.notices = vec![];
    })
    .await;
    let mut emails = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 { &first } else { &second };
        let email = unique_email();
        app.register(&email, PASSWORD).await;
        emails.push(email);
    }
    for email in &emails {
        sink.wait_for(email, "Confirm your email address").await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = sink.all();
    assert_eq!(
        all.len(),
        emails.len(),
        "each message once: {:?}",
        all.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    sink.stop().await;
}

// ---------------------------------------------------------------- TLS and authentication

fn smtp_to(
    sink: &SmtpSink,
    tls: latchkey::config::SmtpTls,
    user: Option<(&str, &str)>,
) -> latchkey::config::SmtpUrl {
    latchkey::config::SmtpUrl {
        // The name the test server's certificate is for.
        host: "localhost".into(),
        port: sink.port,
        tls,
        username: user.map(|(u, _)| u.to_string()),
        password: user.map(|(_, p)| p.to_string().into()),
    }
}

async fn unsent_summary(app: &TestApp) -> Vec<(String, i64, Option<String>)> {
    let unsent = app.auth.unsent_mail(100).await.expect("outbox");
    unsent
        .into_iter()
        .map(|m| (m.kind, m.attempts, m.last_error))
        .collect()
}

/// Waits until the outbox records an attempt at `kind` mail that failed.
async fn failed_attempt(app: &TestApp, kind: &str) -> latchkey::store::MailRecord {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let unsent = app.auth.unsent_mail(100).await.expect("outbox");
        if let Some(m) = unsent
            .into_iter()
            .find(|m| m.kind == kind && m.last_error.is_some())
        {
            return m;
        }
        let seen: Vec<_> = unsent_summary(app).await;
        assert!(
            Instant::now() < deadline,
            "no failed attempt at {kind} mail: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn starttls_and_implicit_tls_with_authentication_deliver_mail() {
    use latchkey::config::SmtpTls;
    for (mode, tls) in [
        ("starttls", SmtpTls::Required),
        ("implicit", SmtpTls::Implicit),
    ] {
        let Some(sink) = SmtpSink::start_with(0, &["--tls", mode, "--auth", "mailer:s3cret"]).await
        else {
            return;
        };
        let url = smtp_to(&sink, tls, Some(("mailer", "s3cret")));
        let ca = sink.cert.clone();
        let app = spawn_app_with(move |s| {
            s.mail.smtp = Some(url);
            s.mail.smtp_ca_file = ca;
        })
        .await;
        let (email, _) = app.new_user().await;
        let mail = sink.wait_for(&email, "Confirm your email address").await;
        assert!(mail.tls, "{mode}: the message came over TLS");
        assert_eq!(mail.user.as_deref(), Some("mailer"), "{mode}: after AUTH");
        sink.stop().await;
    }
}

#[tokio::test]
async fn mail_is_never_sent_without_the_tls_or_credentials_it_needs() {
    use latchkey::config::SmtpTls;
    // STARTTLS is required by default: a server that does not offer it gets nothing.
    let Some(plain) = SmtpSink::start(0).await else {
        return;
    };
    let url = smtp_to(&plain, SmtpTls::Required, None);
    let app = spawn_app_with(move |s| s.mail.smtp = Some(url)).await;
    app.new_user().await;
    let attempt = failed_attempt(&app, "verify_email").await;
    assert!(
        attempt.failed_at.is_none(),
        "tried again later: {attempt:?}"
    );
    assert!(plain.all().is_empty());
    plain.stop().await;

    // A certificate the server presents that nothing vouches for is refused.
    let Some(untrusted) = SmtpSink::start_with(0, &["--tls", "starttls"]).await else {
        return;
    };
    let url = smtp_to(&untrusted, SmtpTls::Required, None);
    let app = spawn_app_with(move |s| s.mail.smtp = Some(url)).await;
    app.new_user().await;
    let attempt = failed_attempt(&app, "verify_email").await;
    assert!(
        attempt
            .last_error
            .unwrap_or_default()
            .to_lowercase()
            .contains("certificate")
    );
    assert!(untrusted.all().is_empty());
    untrusted.stop().await;

    // Wrong credentials are refused for good: the message is given up at once.
    let Some(guarded) =
        SmtpSink::start_with(0, &["--tls", "starttls", "--auth", "mailer:s3cret"]).await
    else {
        return;
    };
    let url = smtp_to(&guarded, SmtpTls::Required, Some(("mailer", "wrong")));
    let ca = guarded.cert.clone();
    let app = spawn_app_with(move |s| {
        s.mail.smtp = Some(url);
        s.mail.smtp_ca_file = ca;
    })
    .await;
    app.new_user().await;
    let attempt = failed_attempt(&app, "verify_email").await;
    assert!(
        attempt.failed_at.is_some(),
        "given up: {:?}",
        attempt.last_error
    );
    assert!(guarded.all().is_empty());
    guarded.stop().await;
}

// ---------------------------------------------------------------- enumeration

#[tokio::test]
async fn reset_requests_look_and_take_the_same_for_known_and_unknown_addresses() {
    let app = spawn_app().await;
    let (known, _) = app.new_user().await;
    let unknown = unique_email();
    let a = fingerprint(ask_reset(&app, &known).await).await;
    let b = fingerprint(ask_reset(&app, &unknown).await).await;
    assert_eq!(a.0, StatusCode::ACCEPTED);
    assert_eq!(a, b);

    let time = |email: String| {
        let app = &app;
        async move {
            let started = Instant::now();
            assert_eq!(ask_reset(app, &email).await.status(), StatusCode::ACCEPTED);
            started.elapsed()
        }
    };
    let (mut k, mut u) = (Vec::new(), Vec::new());
    for round in 0..20 {
        let (first, second) = if round % 2 == 0 {
            (&known, &unknown)
        } else {
            (&unknown, &known)
        };
        let t1 = time(first.clone()).await;
        let t2 = time(second.clone()).await;
        let (tk, tu) = if round % 2 == 0 { (t1, t2) } else { (t2, t1) };
        k.push(tk);
        u.push(tu);
    }
    let (k, u) = (median(&mut k), median(&mut u));
    let tolerance = Duration::from_millis(3).max(k.max(u) * 3 / 10);
    assert!(
        k.abs_diff(u) < tolerance,
        "known addresses take {k:?}, unknown ones {u:?}"
    );
    println!("reset request medians: known {k:?}, unknown {u:?}");
}

/// What a client can tell of an answer: status, headers (but the date and
/// request id) and body.
async fn fingerprint(resp: reqwest::Response) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
    let status = resp.status();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "x-request-id"))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    headers.sort();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn with_required_verification_registering_a_taken_address_looks_like_a_new_one() {
    // 8 MiB hashes (~80 ms in a debug build) dwarf a write more or less.
    let app = spawn_app_with(|s| {
        s.mail.verification = latchkey::domain::mail::Verification::Required;
        s.argon2_memory_kib = 8192;
    })
    .await;
    let taken = unique_email();
    assert_eq!(
        app.register_raw(&taken, PASSWORD).await.status(),
        StatusCode::ACCEPTED
    );
    let again = fingerprint(app.register_raw(&taken, "another good passphrase 9").await).await;
    let fresh = fingerprint(app.register_raw(&unique_email(), PASSWORD).await).await;
    assert_eq!(again.0, StatusCode::ACCEPTED);
    assert_eq!(again, fresh, "a taken address answers as a new one");
    // Its owner is told, and the account is untouched.
    let (_, told) = wait_for_file(&app, &taken, "account_exists").await;
    assert!(
        told.text.contains("already has an account"),
        "{}",
        told.text
    );

    let time = |email: String| {
        let app = &app;
        async move {
            let started = Instant::now();
            let resp = app.register_raw(&email, PASSWORD).await;
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            started.elapsed()
        }
    };
    // Interleaved; the fastest of each series is what the server's own work
    // costs (parallel tests only ever add delay).
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for round in 0..15 {
        if round % 2 == 0 {
            old.push(time(taken.clone()).await);
            new.push(time(unique_email()).await);
        } else {
            new.push(time(unique_email()).await);
            old.push(time(taken.clone()).await);
        }
    }
    let (old, new) = (
        *old.iter().min().expect("samples"),
        *new.iter().min().expect("samples"),
    );
    let tolerance = Duration::from_millis(10).max(old.max(new) * 3 / 10);
    assert!(
        old.abs_diff(new) < tolerance,
        "taken addresses take {old:?}, new ones {new:?}"
    );
    println!("registration, fastest of 15: taken address {old:?}, new address {new:?}");
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

// ---------------------------------------------------------------- tokens

#[tokio::test]
async fn reset_links_are_single_use_expire_and_yield_to_newer_requests_changes_and_logins() {
    let app = spawn_app_with(|s| s.mail.notices = vec![]).await;
    let (email, tokens) = app.new_user().await;
    let refused = |resp: reqwest::Response| async move {
        let (status, code, _) = error_of(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_link")
        );
    };
    let next_link = |n: usize| {
        let app = &app;
        let email = email.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let files: Vec<Mail> = outbox_files(app)
                    .into_iter()
                    .filter(|(p, _)| p.to_string_lossy().ends_with("-password_reset.eml"))
                    .map(|(_, m)| m)
                    .collect();
                if files.len() >= n {
                    assert!(files[n - 1].to.contains(&email));
                    return files[n - 1].token("/reset-password");
                }
                assert!(Instant::now() < deadline, "reset mail {n} never came");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Used once, then refused.
    ask_reset(&app, &email).await;
    let first = next_link(1).await;
    assert_eq!(
        confirm_reset(&app, &first, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    refused(confirm_reset(&app, &first, "yet another passphrase 7").await).await;

    // A newer request replaces the older link.
    ask_reset(&app, &email).await;
    let older = next_link(2).await;
    ask_reset(&app, &email).await;
    let newer = next_link(3).await;
    refused(confirm_reset(&app, &older, "yet another passphrase 7").await).await;

    // Expired after 30 minutes.
    app.clock.advance(30 * 60 + 1);
    refused(confirm_reset(&app, &newer, "yet another passphrase 7").await).await;

    // A password change ends the link.
    let session = app.login_ok(&email, NEW_PASSWORD).await;
    ask_reset(&app, &email).await;
    let before_change = next_link(4).await;
    let resp = app
        .post_auth(
            "/v1/me/password",
            &session.access,
            Some(json!({ "current_password": NEW_PASSWORD, "new_password": "yet another passphrase 7" })),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    refused(confirm_reset(&app, &before_change, NEW_PASSWORD).await).await;

    // So does signing in.
    ask_reset(&app, &email).await;
    let before_login = next_link(5).await;
    app.login_ok(&email, "yet another passphrase 7").await;
    refused(confirm_reset(&app, &before_login, NEW_PASSWORD).await).await;

    // Five mails an hour per address: the sixth request sends nothing.
    ask_reset(&app, &email).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = outbox_files(&app)
        .iter()
        .filter(|(p, _)| p.to_string_lossy().ends_with("-password_reset.eml"))
        .count();
    assert_eq!(sent, 5);
    app.clock.advance(3600);
    ask_reset(&app, &email).await;
    let reset = next_link(6).await;

    // A link of another kind, a made-up token, and an empty one.
    refused(
        app.post_json("/v1/verify-email", json!({ "token": reset }))
            .await,
    )
    .await;
    refused(confirm_reset(&app, &"A".repeat(43), NEW_PASSWORD).await).await;
    refused(confirm_reset(&app, "", NEW_PASSWORD).await).await;
    // A weak password is refused by the policy, and the link still works.
    let (status, code, _) = error_of(confirm_reset(&app, &reset, "password").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "weak_password")
    );
    assert_eq!(
        confirm_reset(&app, &reset, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    drop(tokens);
}

#[tokio::test]
async fn a_link_for_one_account_never_changes_another() {
    let app = spawn_app_with(|s| s.mail.notices = vec![]).await;
    let (ann, _) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    ask_reset(&app, &ann).await;
    let (_, mail) = wait_for_file(&app, &ann, "password_reset").await;
    assert_eq!(
        confirm_reset(&app, &mail.token("/reset-password"), NEW_PASSWORD)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    app.login_ok(&bob, PASSWORD).await;
    app.login_ok(&ann, NEW_PASSWORD).await;
}

// ---------------------------------------------------------------- verification

#[tokio::test]
async fn required_verification_refuses_sign_in_until_the_link_is_followed() {
    let app =
        spawn_app_with(|s| s.mail.verification = latchkey::domain::mail::Verification::Required)
            .await;
    let email = unique_email();
    let resp = app.register_raw(&email, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["verification_required"], true);
    assert!(body.get("access_token").is_none());
    let (status, code, _) = error_of(app.login(&email, PASSWORD).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "email_not_verified")
    );
    // A wrong password answers as for anyone: nothing is revealed.
    let (status, code, _) = error_of(app.login(&email, "not the password 1").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    // A second link by address: the same answer for an unknown address.
    for address in [&email, &unique_email()] {
        let resp = app
            .post_json("/v1/verify-email/request", json!({ "email": address }))
            .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let links = loop {
        let links: Vec<Mail> = outbox_files(&app)
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().ends_with("-verify_email.eml"))
            .map(|(_, m)| m)
            .collect();
        if links.len() == 2 {
            break links;
        }
        assert!(
            Instant::now() < deadline,
            "expected two verification mails, got {}",
            links.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The newer link replaced the first.
    let (status, code, _) = error_of(
        app.post_json(
            "/v1/verify-email",
            json!({ "token": links[0].token("/verify-email") }),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_link")
    );
    let resp = app
        .post_json(
            "/v1/verify-email",
            json!({ "token": links[1].token("/verify-email") }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    app.login_ok(&email, PASSWORD).await;
}

// ---------------------------------------------------------------- email change

#[tokio::test]
async fn an_email_change_is_confirmed_at_the_new_address_and_the_old_one_can_undo_it() {
    let app = spawn_app().await;
    let (old, tokens) = app.new_user().await;
    let new = unique_email();
    let ask = |password: &str| {
        app.post_auth(
            "/v1/me/email",
            &tokens.access,
            Some(json!({ "password": password, "new_email": new })),
        )
    };
    let (status, code, _) = error_of(ask("not the password 1").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "invalid_credentials")
    );
    assert_eq!(ask(PASSWORD).await.status(), StatusCode::ACCEPTED);
    let (_, confirm) = wait_for_file(&app, &new, "email_change").await;
    let (_, warned) = wait_for_file(&app, &old, "email_change_requested").await;
    assert!(warned.text.contains(&new));
    // Nothing changes until the new address confirms.
    app.login_ok(&old, PASSWORD).await;
    let resp = app
        .post_json(
            "/v1/email-change/confirm",
            json!({ "token": confirm.token("/confirm-email") }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let user: Value = resp.json().await.expect("json");
    assert_eq!(user["email"], new.as_str());
    assert_eq!(user["email_verified"], true);
    let session = app.login_ok(&new, PASSWORD).await;
    assert_eq!(
        app.login(&old, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );

    // "This wasn't me", from the notice sent once the change was done.
    let (_, changed) = wait_for_file(&app, &old, "email_changed").await;
    let resp = app
        .post_json(
            "/v1/email-change/cancel",
            json!({ "token": changed.token("/cancel-email-change") }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let user: Value = resp.json().await.expect("json");
    assert_eq!(user["email"], old.as_str());
    assert_eq!(
        app.me(&session.access).await.status(),
        StatusCode::UNAUTHORIZED,
        "every session ended"
    );
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.login_ok(&old, PASSWORD).await;
    // The first notice's link was replaced by the second's.
    let (status, code, _) = error_of(
        app.post_json(
            "/v1/email-change/cancel",
            json!({ "token": warned.token("/cancel-email-change") }),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_link")
    );
}

#[tokio::test]
async fn an_email_change_to_an_address_taken_meanwhile_is_refused_at_confirmation() {
    let app = spawn_app_with(|s| s.mail.notices = vec![]).await;
    let (_, tokens) = app.new_user().await;
    let wanted = unique_email();
    let resp = app
        .post_auth(
            "/v1/me/email",
            &tokens.access,
            Some(json!({ "password": PASSWORD, "new_email": wanted })),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (_, confirm) = wait_for_file(&app, &wanted, "email_change").await;
    app.register(&wanted, PASSWORD).await;
    let (status, code, _) = error_of(
        app.post_json(
            "/v1/email-change/confirm",
            json!({ "token": confirm.token("/confirm-email") }),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "email_taken")
    );
}

// ---------------------------------------------------------------- notices

#[tokio::test]
async fn security_notices_are_mailed_and_each_can_be_turned_off() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    let app = app_mailing(&sink, |_| {}).await;
    let (email, tokens) = app.new_user().await;
    // A sign-in from a device the account has not seen.
    app.login_ok(&email, PASSWORD).await;
    sink.wait_for(&email, "New sign-in").await;
    // A stolen refresh token used after its owner: the session ends.
    let next = app.refresh_ok(&tokens.refresh).await;
    app.clock.advance(60);
    assert_eq!(
        app.refresh(&tokens.refresh).await.status(),
        StatusCode::BAD_REQUEST
    );
    let theft = sink
        .wait_for(&email, "was ended to protect your account")
        .await;
    assert!(
        theft.text.contains("127.0.0.1"),
        "the notice names the ended session's address"
    );
    drop(next);
    // A password change.
    let session = app.login_ok(&email, PASSWORD).await;
    app.post_auth(
        "/v1/me/password",
        &session.access,
        Some(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })),
    )
    .await;
    sink.wait_for(&email, "password on").await;
    // Disabled by an operator.
    assert!(
        app.cli(&["users", "disable", &email], None)
            .status
            .success()
    );
    sink.wait_for(&email, "was disabled").await;

    // Off: nothing but the links a user asks for.
    let quiet = app_mailing(&sink, |s| s.mail.notices = vec![]).await;
    let (email, _) = quiet.new_user().await;
    quiet.login_ok(&email, PASSWORD).await;
    ask_reset(&quiet, &email).await;
    sink.wait_for(&email, "Reset your password").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to_quiet: Vec<String> = sink
        .all()
        .into_iter()
        .filter(|m| m.to == email)
        .map(|m| m.subject)
        .collect();
    assert_eq!(
        to_quiet.len(),
        2,
        "the verification and the reset only: {to_quiet:?}"
    );
    sink.stop().await;
}

// ---------------------------------------------------------------- templates and the CLI

#[tokio::test]
async fn a_templates_folder_overrides_a_message() {
    let templates = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(templates.path().join("en")).expect("mkdir");
    std::fs::write(
        templates.path().join("en/password_reset.txt"),
        "Subject: Your {{ site }} reset\nButton: Go\n\nHi {{ name }}, go to:\n\n{{ link }}\n",
    )
    .expect("write");
    let dir = templates.path().to_path_buf();
    let app = spawn_app_with(move |s| s.mail.templates = Some(dir)).await;
    let (email, _) = app.new_user().await;
    ask_reset(&app, &email).await;
    let (_, mail) = wait_for_file(&app, &email, "password_reset").await;
    assert!(
        mail.subject.starts_with("Your 127.0.0.1 reset"),
        "{}",
        mail.subject
    );
    assert!(mail.html.contains(">Go</a>"), "{}", mail.html);
    mail.token("/reset-password");
}

#[tokio::test]
async fn the_cli_sets_passwords_verifies_addresses_tests_delivery_and_shows_the_outbox() {
    let Some(sink) = SmtpSink::start(0).await else {
        return;
    };
    let app = app_mailing(&sink, |s| s.mail.notices = vec![]).await;
    let (email, tokens) = app.new_user().await;
    // The CLI reads SMTP settings from the environment, as an operator's would.
    let smtp = sink.url();
    let env_cli = |args: &[&str], stdin: Option<&str>| {
        app.cli_env(args, stdin, &[("LATCHKEY_SMTP_URL", smtp.as_str())])
    };
    let out = env_cli(
        &["users", "set-password", &email, "--password-stdin"],
        Some(NEW_PASSWORD),
    );
    assert!(out.status.success(), "{out:?}");
    // The CLI ran on the wall clock; tokens issued after it must not predate it.
    app.catch_up_with_wall_clock();
    assert_eq!(
        app.me(&tokens.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let session = app.login_ok(&email, NEW_PASSWORD).await;
    let out = env_cli(
        &["users", "set-password", &email, "--password-stdin"],
        Some("password"),
    );
    assert!(!out.status.success(), "the password policy applies");

    let out = env_cli(&["users", "verify-email", &email], None);
    assert!(out.status.success(), "{out:?}");
    let me: Value = app.me(&session.access).await.json().await.expect("json");
    assert_eq!(me["email_verified"], true);

    let out = env_cli(&["mail", "test", "ops@example.com"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("delivered"));
    sink.wait_for("ops@example.com", "Test message").await;

    // Given up: a message the server refused for good shows in the outbox.
    sink.stop().await;
    let out = env_cli(&["mail", "test", "ops@example.com"], None);
    assert!(!out.status.success(), "nothing listens any more");
    let out = env_cli(&["mail", "outbox"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("ops@example.com"), "{}", stdout(&out));
}
