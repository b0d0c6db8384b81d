//! Cookie mode in a real browser: runs `clients/js/test/browser.test.mjs`
//! (headless Chromium driven by playwright-core) against a real server, the
//! example SPA on an allowed origin and the same files on a foreign one, and
//! the client's unit tests (`clients/js/test/client.test.mjs`) with it. The
//! browser and playwright-core are installed on first use by
//! `clients/js/setup.sh`; should that fail, the test skips loudly, or fails
//! under `LATCHKEY_REQUIRE_ALL=1`. It runs on
//! the default backend only: the browser exercises HTTP, not the store.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use latchkey::domain::clock::{Clock, ManualClock, SystemClock};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::*;
use crate::tools::{self, workspace};

/// How long the whole browser suite may take (it aims at well under a minute).
const SUITE_TIMEOUT: Duration = Duration::from_secs(150);
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test]
async fn the_example_spa_keeps_its_session_safe_in_a_real_browser() {
    if backend() != Backend::Sqlite {
        return;
    }
    if !browser_tools_ready().await {
        return;
    }
    let (app, spa, spa_url) = app_and_spa().await;
    let _clock = follow_wall_clock(app.clock.clone());
    let (foreign, foreign_url) = static_server("localhost", 0, &app.base)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let artifacts = workspace().join("target").join("browser-artifacts");
    let outbox = app.settings.data_dir.join("outbox");
    let files = [
        "clients/js/test/client.test.mjs",
        "clients/js/test/package.test.mjs",
        "clients/js/test/browser.test.mjs",
    ];
    let output = run_suite(
        &files,
        &[
            ("LATCHKEY_URL", app.base.as_str()),
            ("SPA_URL", spa_url.as_str()),
            ("FOREIGN_URL", foreign_url.as_str()),
            ("ARTIFACTS_DIR", &artifacts.to_string_lossy()),
            ("OUTBOX_DIR", &outbox.to_string_lossy()),
        ],
    )
    .await;
    drop((spa, foreign));

    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "browser suite failed ({}):\n{report}",
        output.status
    );
    // Shown with --nocapture: the suite's account, two-tab race findings included.
    println!("{report}\nartifacts: {}", artifacts.display());
}

/// The admin console (`/admin`) in Chromium: `clients/js/test/console.test.mjs`
/// signs in with an admin client, finds a user signed in on two devices,
/// revokes a session, disables and enables the user; the server then shows
/// what was done, by whom.
#[tokio::test]
async fn the_admin_console_works_in_a_real_browser() {
    if backend() != Backend::Sqlite {
        return;
    }
    if !browser_tools_ready().await {
        return;
    }
    let app = spawn_app().await;
    let _clock = follow_wall_clock(app.clock.clone());
    let (admin_id, admin_secret) = crate::admin::admin_client(&app, "console");
    let (resource_id, resource_secret) = crate::feed::client(&app).await;
    let (email, first) = app.new_user().await;
    let second = app.login_ok(&email, PASSWORD).await;

    let artifacts = workspace().join("target").join("browser-artifacts");
    let output = run_suite(
        &["clients/js/test/console.test.mjs"],
        &[
            ("LATCHKEY_URL", app.base.as_str()),
            ("ADMIN_ID", &admin_id),
            ("ADMIN_SECRET", &admin_secret),
            ("RESOURCE_ID", &resource_id),
            ("RESOURCE_SECRET", &resource_secret),
            ("USER_EMAIL", &email),
            ("ARTIFACTS_DIR", &artifacts.to_string_lossy()),
        ],
    )
    .await;
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "console suite failed:\n{report}");
    assert!(!report.contains("# skipped 1"), "{report}");

    // What the clicks did, seen by the server.
    for tokens in [&first, &second] {
        assert_eq!(app.me(&tokens.access).await.status(), 401);
    }
    app.login_ok(&email, PASSWORD).await;
    let mine = app.login_ok(&email, PASSWORD).await;
    let kinds = app.event_kinds(&mine.access).await;
    for kind in ["session_revoked", "user_disabled", "user_enabled"] {
        assert!(
            kinds.contains(&kind.to_string()),
            "{kind} missing: {kinds:?}"
        );
    }
    println!("{report}\nscreenshots: {}", artifacts.display());
}

/// Passkeys in Chromium with a virtual authenticator, through the example
/// SPA (`clients/js/test/passkeys.test.mjs`): register, sign in alone and as
/// the second step, a clone refused, removal. Passkeys need a domain, so the
/// server and the SPA are on `localhost` here; the server then shows what
/// happened.
#[tokio::test]
async fn passkeys_work_in_a_real_browser() {
    if backend() != Backend::Sqlite {
        return;
    }
    if !browser_tools_ready().await {
        return;
    }
    let spa_port = free_port();
    let spa_origin = format!("http://localhost:{spa_port}");
    let app = spawn_app_with(|s| {
        s.issuer = format!("http://localhost:{}", s.listen.port());
        s.audience = s.issuer.clone();
        s.cors_origins = vec![spa_origin.clone()];
        s.mail.app_url = Some(spa_origin.clone());
    })
    .await;
    let _clock = follow_wall_clock(app.clock.clone());
    let latchkey = app.settings.issuer.clone();
    let (spa, spa_url) = static_server("localhost", spa_port, &latchkey)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spa_url, spa_origin);
    let (email, _) = app.new_user().await;

    let artifacts = workspace().join("target").join("browser-artifacts");
    let output = run_suite(
        &["clients/js/test/passkeys.test.mjs"],
        &[
            ("LATCHKEY_URL", latchkey.as_str()),
            ("SPA_URL", spa_url.as_str()),
            ("USER_EMAIL", &email),
            ("ARTIFACTS_DIR", &artifacts.to_string_lossy()),
        ],
    )
    .await;
    drop(spa);
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "passkey suite failed:\n{report}");
    assert!(!report.contains("# skipped"), "{report}");

    let rows = app.rows().await;
    let user = rows.users.iter().find(|u| u.email == email).expect("user");
    let kinds: Vec<&str> = rows
        .events
        .iter()
        .filter(|e| e.user_id.as_deref() == Some(user.id.as_str()))
        .map(|e| e.kind.as_str())
        .collect();
    for kind in [
        "passkey_added",
        "passkey_clone_suspected",
        "passkey_removed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    assert!(rows.passkeys.is_empty(), "removed");
    println!("{report}\nscreenshots: {}", artifacts.display());
}

fn chromium() -> PathBuf {
    std::env::var_os("LATCHKEY_CHROMIUM").map_or_else(|| DEFAULT_CHROMIUM.into(), PathBuf::from)
}

/// Whether node, playwright-core and Chromium are installed, installing them
/// with `clients/js/setup.sh` when they are not. When that fails, says so
/// loudly (past the test harness's capture) — or panics under
/// `LATCHKEY_REQUIRE_ALL=1`.
async fn browser_tools_ready() -> bool {
    let mut missing = missing_browser_tools().await;
    let mut setup = Ok(());
    if !missing.is_empty() {
        setup = tools::install("clients/js/setup.sh").await;
        missing = missing_browser_tools().await;
    }
    if missing.is_empty() {
        return true;
    }
    let mut what = format!("the browser test needs {}", missing.join(", "));
    if let Err(e) = setup {
        what.push_str(&format!(" ({e})"));
    }
    if std::env::var("LATCHKEY_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{what}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {what}.\n*** clients/js/setup.sh installs them (npm ci for playwright-core; apt-get install chromium).\n"
    );
    false
}

async fn missing_browser_tools() -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await;
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node (Node.js 20 or later)".to_string());
    }
    let playwright = workspace().join("clients/js/node_modules/playwright-core/package.json");
    if !playwright.exists() {
        missing.push(playwright.display().to_string());
    }
    if !chromium().exists() {
        missing.push(chromium().display().to_string());
    }
    missing
}

/// The app with the SPA's origin in its CORS list, and the SPA's server.
/// The origin must be listed before the app starts, so the SPA's port is
/// picked first; should another process take it meanwhile, both start over.
async fn app_and_spa() -> (TestApp, Child, String) {
    let mut last_error = String::new();
    for _ in 0..3 {
        let spa_port = free_port();
        let spa_origin = format!("http://127.0.0.1:{spa_port}");
        let app = spawn_app_with(|s| {
            s.cors_origins = vec![spa_origin.clone()];
            // Mailed links open the SPA's pages.
            s.mail.app_url = Some(spa_origin.clone());
        })
        .await;
        match static_server("127.0.0.1", spa_port, &app.base).await {
            Ok((spa, url)) => {
                assert_eq!(url, spa_origin);
                return (app, spa, url);
            }
            Err(e) => last_error = e,
        }
    }
    panic!("could not start the SPA server: {last_error}");
}

/// Keeps the app's manual clock on the wall clock while the browser runs, so
/// token lifetimes, the reuse grace window and authenticator-app time steps
/// pass as they would in production. A thread of its own, not a task: on a
/// busy machine the test's runtime may run it late, and a server clock a
/// second behind the browser's refuses a code of the step that just began.
fn follow_wall_clock(clock: Arc<ManualClock>) -> StopOnDrop {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let lag = SystemClock.now() - clock.now();
            if lag > 0 {
                clock.advance(lag);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    StopOnDrop(stop)
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts `examples/spa/serve.mjs`; returns it (killed on drop) and its URL.
async fn static_server(host: &str, port: u16, latchkey: &str) -> Result<(Child, String), String> {
    let mut child = Command::new("node")
        .arg(workspace().join("examples/spa/serve.mjs"))
        .args([
            "--host",
            host,
            "--port",
            &port.to_string(),
            "--latchkey",
            latchkey,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start node examples/spa/serve.mjs");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| "serve.mjs did not start within 10 s".to_string())?
        .map_err(|e| format!("reading serve.mjs output: {e}"))?
        .ok_or_else(|| format!("serve.mjs exited before listening on port {port}"))?;
    let url = line
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected serve.mjs output: {line}"))?;
    Ok((child, url.to_string()))
}

/// Runs the browser suite with `env`; kills its whole process group (node,
/// the test file's process, Chromium) if it outlives [`SUITE_TIMEOUT`].
async fn run_suite(files: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-reporter=spec"])
        .args(files)
        .current_dir(workspace())
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .env("LATCHKEY_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().expect("start node --test");
    let group = child.id().expect("pid");
    match tokio::time::timeout(SUITE_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("browser suite output"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
            panic!("the browser suite did not finish within {SUITE_TIMEOUT:?}");
        }
    }
}
