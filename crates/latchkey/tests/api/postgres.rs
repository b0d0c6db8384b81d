//! The whole suite once more on PostgreSQL: this test re-runs the test binary
//! with `LATCHKEY_TEST_BACKEND=postgres`, so every other test also proves its
//! behaviour on the scale-out backend, each in its own fresh database.

use std::io::Write;
use std::process::Command;

use crate::backend::{Backend, backend, require_postgres};

#[test]
fn the_whole_suite_passes_on_postgresql() {
    if backend() == Backend::Postgres
        || !require_postgres("the PostgreSQL run of the integration suite")
    {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    // The PostgreSQL run skips itself and the tests that need PostgreSQL
    // whatever the backend (they already run in this process).
    let output = Command::new(exe)
        .args(["--skip", "postgres::", "--skip", "scaleout::"])
        .env("LATCHKEY_TEST_BACKEND", "postgres")
        .output()
        .expect("run the suite on PostgreSQL");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect::<Vec<_>>()
        .join("\n");
    // Past the harness's output capture, so the log shows what ran.
    let _ = writeln!(std::io::stderr(), "PostgreSQL run of the suite: {summary}");
    assert!(
        output.status.success(),
        "the suite failed on PostgreSQL:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        summary.contains(" passed;"),
        "the PostgreSQL run ran nothing:\n{stdout}"
    );
}
