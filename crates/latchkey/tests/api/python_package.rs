//! The Python package for back ends (`clients/python`): its pytest suite,
//! with real Django REST framework and Flask, against this server.

use crate::helpers::*;
use crate::tools;

#[tokio::test]
async fn the_python_package_verifies_tokens_in_drf_and_flask_and_follows_revocations() {
    let Some(python) = tools::python_with(
        "rest_framework, flask, pytest",
        "the Python package is tested with DRF, Flask and pytest",
    )
    .await
    else {
        return;
    };
    let app = spawn_app().await;
    let out = app.cli(&["clients", "add", "python-api"], None);
    let printed = stdout(&out);
    let field = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {printed}"))
    };
    let (client_id, client_secret) = (field("client_id:"), field("client_secret:"));
    let package = tools::workspace().join("clients/python");
    let run = tokio::process::Command::new(python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "tests",
        ])
        .current_dir(&package)
        .env("PYTHONPATH", package.join("src"))
        .env("LATCHKEY_TEST_ISSUER", &app.settings.issuer)
        .env("LATCHKEY_TEST_AUDIENCE", &app.settings.audience)
        .env("LATCHKEY_TEST_CLIENT_ID", &client_id)
        .env("LATCHKEY_TEST_CLIENT_SECRET", &client_secret)
        .output()
        .await
        .expect("run pytest");
    let report = String::from_utf8_lossy(&run.stdout);
    eprintln!("{report}");
    assert!(
        run.status.success(),
        "the Python package's tests failed:\n{report}{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
