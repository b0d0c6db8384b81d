//! The tools beyond cargo that some tests drive (PyJWT and jose for the
//! interop tests, playwright-core and Chromium for the browser test) are
//! installed on first use by the repository's own scripts, `interop/setup.sh`
//! and `clients/js/setup.sh`: at most once per test process, and under a
//! file lock so that test processes running at once do not install over
//! each other. A script that fails (no registry in reach, no root for
//! apt-get) leaves the tool missing, and the test skips loudly, or fails
//! under `LATCHKEY_REQUIRE_ALL=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio::sync::OnceCell;

/// Runs `script` (relative to the workspace) once per process; the result
/// is the script's own account of a failure.
pub async fn install(script: &'static str) -> Result<(), String> {
    static INTEROP: OnceCell<Result<(), String>> = OnceCell::const_new();
    static BROWSER: OnceCell<Result<(), String>> = OnceCell::const_new();
    let cell = if script.starts_with("interop/") {
        &INTEROP
    } else {
        &BROWSER
    };
    cell.get_or_init(|| async move {
        tokio::task::spawn_blocking(move || run_locked(script))
            .await
            .unwrap_or_else(|e| Err(format!("{script} panicked: {e}")))
    })
    .await
    .clone()
}

pub fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2);
    root.expect("workspace root").to_path_buf()
}

fn run_locked(script: &str) -> Result<(), String> {
    let root = workspace();
    let lock_dir = root.join("target");
    std::fs::create_dir_all(&lock_dir).map_err(|e| format!("create {lock_dir:?}: {e}"))?;
    // Past the harness's output capture: an install takes a while.
    let _ = writeln!(std::io::stderr(), "*** installing test tools: {script}");
    // flock(1) holds the lock for the script's run; where it is missing the
    // script runs unlocked (it is idempotent, only slower when raced).
    let out = Command::new("bash")
        .args([
            "-c",
            r#"exec 9>"$1"; command -v flock >/dev/null && flock 9; bash "$2""#,
            "setup",
        ])
        .arg(lock_dir.join("test-tools.lock"))
        .arg(root.join(script))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{script} failed ({}): {}",
        out.status,
        tail.join(" / ")
    ))
}

/// The tests' Python (`interop/python/.venv`) once it can import `module`,
/// installed by `interop/setup.sh` on first use; None after a loud skip, or
/// a panic under `LATCHKEY_REQUIRE_ALL=1`, when it cannot.
pub async fn python_with(module: &str, why: &str) -> Option<PathBuf> {
    venv_with("interop/python/.venv", module, why).await
}

/// The Python of the djoser + simplejwt peer (`bench/peer/.venv`, which
/// `interop/setup.sh` makes too), as [`python_with`] gives the tests' own.
pub async fn peer_python(why: &str) -> Option<PathBuf> {
    venv_with("bench/peer/.venv", "djoser, bcrypt, psycopg", why).await
}

async fn venv_with(venv: &str, module: &str, why: &str) -> Option<PathBuf> {
    let program = workspace().join(venv).join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&program) {
        return Some(program);
    }
    let installed = install("interop/setup.sh").await;
    if ready(&program) {
        return Some(program);
    }
    let reason = format!(
        "{module} is not installed in {} ({installed:?})",
        program.display()
    );
    if std::env::var("LATCHKEY_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{why}: {reason}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {why}: {reason}.\n*** interop/setup.sh installs it.\n"
    );
    None
}
