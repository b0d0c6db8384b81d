//! Spawns the real application on port 0 with its own data directory and a
//! manual clock, and offers typed request helpers. Every test gets a fresh
//! app; nothing is shared between tests.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey::app::App;
use latchkey::config::Settings;
use latchkey::domain::Auth;
use latchkey::domain::clock::{Clock, ManualClock, SystemClock};
use latchkey::domain::secrets::MasterKey;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub use crate::backend::{Backend, TestHome, backend};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A password that passes the policy.
pub const PASSWORD: &str = "violet kettle harbour";
pub const OTHER_PASSWORD: &str = "amber lantern meadow";

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub auth: Arc<Auth>,
    pub settings: Settings,
    pub dir: Arc<TestHome>,
    pub guard: Arc<latchkey::domain::restore::RestoreGuard>,
    /// The app's database, for grey-box checks below the domain.
    pub store: Arc<dyn latchkey::store::Store>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The tokens of a token response.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub body: Value,
}

impl Tokens {
    pub fn from_body(body: Value) -> Self {
        let text = |k: &str| {
            body[k]
                .as_str()
                .unwrap_or_else(|| panic!("token response lacks {k}: {body}"))
                .to_string()
        };
        Tokens {
            access: text("access_token"),
            refresh: text("refresh_token"),
            session_id: text("session_id"),
            body: body.clone(),
        }
    }
}

/// Settings every test starts from: cheap hashing, no per-IP limit, the
/// home's database.
pub fn test_settings(home: &TestHome) -> Settings {
    let mut s = Settings::defaults_in(home.path().to_path_buf());
    s.database_url = home.database_url();
    s.db_max_connections = 5;
    s.argon2_memory_kib = 1024;
    s.argon2_iterations = 1;
    s.argon2_parallelism = 1;
    s.hash_concurrency = 2;
    s.ip_rate_limit = 0;
    s.token_rate_limit = 0;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an app on a fresh home (data directory and database) of the
/// backend under test.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let home = Arc::new(TestHome::new(backend()).await);
    spawn_app_in(home, configure).await
}

/// Starts an app on an existing home (e.g. to test restarts, or a second
/// instance on the same database).
pub async fn spawn_app_in(home: Arc<TestHome>, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut settings = test_settings(&home);
    settings.listen = addr;
    settings.issuer = format!("http://{addr}");
    settings.audience = settings.issuer.clone();
    configure(&mut settings);
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let app = App::build(settings.clone(), clock.clone())
        .await
        .expect("build app");
    let auth = app.state.auth.clone();
    let guard = app.state.guard.clone();
    let store = app.store.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder().build().expect("client"),
        clock,
        auth,
        settings,
        dir: home,
        guard,
        store,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// Runs the real `latchkey` binary on `home` with the settings an app had.
pub fn cli_in(home: &TestHome, settings: &Settings, args: &[&str], stdin: Option<&str>) -> Output {
    cli_in_env(home, settings, args, stdin, &[])
}

/// [`cli_in`], with more settings in the environment, as an operator's
/// shell would give them.
pub fn cli_in_env(
    home: &TestHome,
    settings: &Settings,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = latchkey_command(home, settings, env);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn latchkey");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("latchkey output")
}

/// The real `latchkey` binary, on `home` with `settings`' database and
/// `env` added, as an operator's shell would run it.
pub fn latchkey_command(home: &TestHome, settings: &Settings, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.arg("--data-dir").arg(home.path());
    cmd.args(["--database-url", settings.database_url.expose()]);
    // Server settings reach admin commands through the environment.
    cmd.env("LATCHKEY_ARGON2_MEMORY_KIB", "1024")
        .env("LATCHKEY_ARGON2_ITERATIONS", "1")
        .env("LATCHKEY_ISSUER", &settings.issuer);
    cmd.env("RUST_LOG", "warn").env_remove("LATCHKEY_CONFIG");
    cmd.envs(env.iter().copied());
    cmd
}

/// A port that was free a moment ago (nothing listens on it yet).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The standard output of a command that must have succeeded.
pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `kid` in an access token's header.
pub fn kid_of(token: &str) -> String {
    decode_segment(token, 0)["kid"]
        .as_str()
        .expect("kid")
        .to_string()
}

/// The kids an app's JWKS publishes.
pub async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app
        .get("/.well-known/jwks.json", None)
        .await
        .json()
        .await
        .expect("jwks");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// An email no other test uses.
pub fn unique_email() -> String {
    format!(
        "user{}-{}@example.com",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Status, error code and body of an error response.
pub async fn error_of(resp: Response) -> (StatusCode, String, Value) {
    let status = resp.status();
    let body: Value = resp.json().await.expect("error body is JSON");
    let code = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_string();
    assert!(
        body["error_description"].is_string(),
        "no error_description in {body}"
    );
    (status, code, body)
}

/// Asserts an error answer's status and code, and that its description
/// mentions `words`.
pub async fn assert_refused(resp: Response, status: StatusCode, code: &str, words: &str) {
    let (got, got_code, body) = error_of(resp).await;
    assert_eq!((got, got_code.as_str()), (status, code), "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains(words), "no \"{words}\" in {body}");
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Option<Value>) -> Response {
        let mut req = self.client.post(self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }

    pub async fn delete_auth(&self, path: &str, token: &str) -> Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn register_raw(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/v1/register",
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers a fresh user and returns their first tokens.
    pub async fn register(&self, email: &str, password: &str) -> Tokens {
        let resp = self.register_raw(email, password).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "register failed");
        Tokens::from_body(resp.json().await.expect("json"))
    }

    /// Registers a fresh user with a unique email; returns (email, tokens).
    pub async fn new_user(&self) -> (String, Tokens) {
        let email = unique_email();
        let tokens = self.register(&email, PASSWORD).await;
        (email, tokens)
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json("/v1/login", json!({"email": email, "password": password}))
            .await
    }

    /// Sends every body to `POST /v1/login` at once and returns the answers
    /// as they came; each must come within 30 s (none may hang in the
    /// hashing queue).
    pub async fn logins_at_once(&self, bodies: impl IntoIterator<Item = Value>) -> Vec<Response> {
        let mut logins = tokio::task::JoinSet::new();
        for body in bodies {
            let send = self.client.post(self.url("/v1/login")).json(&body).send();
            logins.spawn(async move {
                tokio::time::timeout(std::time::Duration::from_secs(30), send)
                    .await
                    .expect("no hang")
                    .expect("request")
            });
        }
        logins.join_all().await
    }

    pub async fn login_ok(&self, email: &str, password: &str) -> Tokens {
        let resp = self.login(email, password).await;
        assert_eq!(resp.status(), StatusCode::OK, "login failed");
        Tokens::from_body(resp.json().await.expect("json"))
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_form(
            "/v1/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    pub async fn refresh_ok(&self, refresh_token: &str) -> Tokens {
        let resp = self.refresh(refresh_token).await;
        assert_eq!(resp.status(), StatusCode::OK, "refresh failed");
        Tokens::from_body(resp.json().await.expect("json"))
    }

    pub async fn me(&self, access: &str) -> Response {
        self.get("/v1/me", Some(access)).await
    }

    /// Stops the server gracefully and returns its home.
    pub async fn stop(mut self) -> Arc<TestHome> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
        self.dir.clone()
    }

    /// The kinds of the security events `GET /v1/me/events` shows the holder of `access`.
    pub async fn event_kinds(&self, access: &str) -> Vec<String> {
        let events: Value = self
            .get("/v1/me/events", Some(access))
            .await
            .json()
            .await
            .expect("events");
        events["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["kind"].as_str().map(str::to_string))
            .collect()
    }

    /// Moves the app's clock up to the wall clock, which the CLI (a separate
    /// process) uses, so their records order as they would in production.
    pub fn catch_up_with_wall_clock(&self) {
        let lag = SystemClock.now() - self.clock.now();
        if lag > 0 {
            self.clock.advance(lag);
        }
    }

    /// Runs the real `latchkey` binary on this app's data directory.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        cli_in(&self.dir, &self.settings, args, stdin)
    }

    pub fn cli_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        cli_in_env(&self.dir, &self.settings, args, stdin, env)
    }

    /// Claims that would pass every check, for tests that forge tokens.
    pub fn valid_claims(&self, tokens: &Tokens) -> Value {
        let payload = decode_segment(&tokens.access, 1);
        let now = self.clock.now();
        json!({
            "iss": self.settings.issuer, "sub": payload["sub"], "aud": self.settings.audience,
            "exp": now + 300, "iat": now, "jti": "forged-jti", "sid": payload["sid"], "client_id": "latchkey",
        })
    }

    /// The header of a genuine access token.
    pub fn valid_header(&self, tokens: &Tokens) -> Value {
        decode_segment(&tokens.access, 0)
    }

    /// The deployment's master key, from its data directory.
    pub fn master(&self) -> MasterKey {
        MasterKey::load_or_create(None, self.dir.path()).expect("master key")
    }

    /// The real signature over an arbitrary signing input, made with this
    /// deployment's current signing key (as an attacker holding it could).
    pub async fn sign_input(&self, input: &str) -> String {
        let keys = self.store.signing_keys().await.expect("keys");
        let current = keys
            .iter()
            .rev()
            .find(|k| k.retired_at.is_none())
            .expect("signing key");
        let pkcs8 = self
            .master()
            .open(&current.kid, &current.private_key)
            .expect("open key");
        let (key, alg) = match current.alg.as_str() {
            "EdDSA" => (
                jsonwebtoken::EncodingKey::from_ed_der(&pkcs8),
                jsonwebtoken::Algorithm::EdDSA,
            ),
            _ => (
                jsonwebtoken::EncodingKey::from_ec_der(&pkcs8),
                jsonwebtoken::Algorithm::ES256,
            ),
        };
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).expect("sign")
    }

    /// Signs arbitrary header and payload bytes with the real current key.
    pub async fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = self.sign_input(&message).await;
        format!("{message}.{signature}")
    }

    /// Signs JSON header and claims with the real key.
    pub async fn sign_json(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
            .await
    }

    /// Every row of the app's database, whatever the backend, for grey-box checks.
    pub async fn rows(&self) -> latchkey::store::Snapshot {
        self.store.export().await.expect("export")
    }
}

/// The decoded JSON of segment `i` of a JWT.
pub fn decode_segment(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).expect("segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).expect("b64")).expect("json")
}
