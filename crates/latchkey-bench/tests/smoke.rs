//! Smoke runs against the real Latchkey server, started in-process on port 0
//! with cheap hashing and no throttles. They check that the bench and the
//! server agree on every scenario (no failed request) and that failures are
//! reported loudly; they assert nothing about speed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use latchkey::app::App;
use latchkey::config::Settings;
use latchkey::domain::clock::SystemClock;
use latchkey_bench::{ClientCredentials, Config, Report, Scenario, Window, profile};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A server that stops when this is dropped.
struct Server {
    url: String,
    client: ClientCredentials,
    _stop: oneshot::Sender<()>,
}

async fn spawn_server(dir: &Path) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut settings = Settings::defaults_in(dir.to_path_buf());
    settings.listen = addr;
    settings.issuer = format!("http://{addr}");
    settings.audience = settings.issuer.clone();
    settings.argon2_memory_kib = 1024;
    settings.argon2_iterations = 1;
    settings.ip_rate_limit = 0;
    settings.token_rate_limit = 0;
    settings.account_failure_limit = 0;
    let app = App::build(settings, Arc::new(SystemClock))
        .await
        .expect("build the app");
    let (client, secret) = app
        .state
        .auth
        .add_client("bench", false, &latchkey::domain::Actor::cli())
        .await
        .expect("client");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    Server {
        url: format!("http://{addr}"),
        client: ClientCredentials {
            id: client.id,
            secret,
        },
        _stop: stop,
    }
}

fn config(server: &Server, scenarios: &[Scenario], duration: Duration) -> Config {
    Config {
        url: server.url.clone(),
        profile: &profile::LATCHKEY,
        scenarios: scenarios.to_vec(),
        concurrency: 4,
        users: 4,
        window: Window {
            warmup: Duration::from_millis(200),
            duration,
        },
        client: Some(server.client.clone()),
        server_pid: Some(std::process::id()),
        settle: Duration::from_millis(600),
        progress: false,
    }
}

fn requests_of(report: &Report, scenario: Scenario) -> u64 {
    let s = report
        .scenarios
        .iter()
        .find(|s| s.scenario == scenario.name())
        .unwrap_or_else(|| panic!("no {} in the report", scenario.name()));
    s.total.as_ref().map_or(0, |t| t.requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_without_a_failed_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn_server(dir.path()).await;
    let config = config(&server, &Scenario::ALL, Duration::from_secs(1));

    let report = latchkey_bench::run(&config).await.expect("bench run");

    let table = report.table();
    assert_eq!(report.errors(), 0, "{table}");
    for scenario in Scenario::ALL {
        assert!(requests_of(&report, scenario) > 0, "{table}");
    }
    let mixed = report.scenarios.iter().find(|s| s.scenario == "mixed");
    let ops: Vec<_> = mixed
        .expect("mixed ran")
        .operations
        .iter()
        .map(|o| o.operation.as_str())
        .collect();
    assert!(ops.contains(&"me") && ops.contains(&"refresh"), "{table}");
    assert!(report.scenarios.iter().all(|s| s.server_memory.is_some()));
    // Memory is read over the whole run, each reading tagged with its phase,
    // and once more after the settle time.
    let phases: Vec<_> = report.memory_timeline.iter().map(|m| m.phase).collect();
    assert!(
        phases.contains(&"me") && phases.ends_with(&["settle"]),
        "{phases:?}"
    );
    assert!(
        report
            .memory_timeline
            .windows(2)
            .all(|w| w[0].t_s <= w[1].t_s)
    );
    assert!(report.settled_memory.is_some());
    assert!(
        table.contains("server RSS over the run") && table.contains("without load"),
        "{table}"
    );
    let json = serde_json::to_value(&report).expect("JSON");
    assert_eq!(json["meta"]["concurrency"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_without_client_credentials_is_skipped_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn_server(dir.path()).await;
    let mut config = config(&server, &[Scenario::Verify], Duration::from_millis(300));
    config.client = None;

    let report = latchkey_bench::run(&config).await.expect("bench run");

    let verify = &report.scenarios[0];
    let reason = verify.skipped.as_deref().expect("skipped");
    assert!(reason.contains("LATCHKEY_BENCH_CLIENT_ID"), "{reason}");
    assert!(report.table().contains("skipped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_counted_by_status_and_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn_server(dir.path()).await;
    let mut config = config(&server, &[Scenario::Verify], Duration::from_millis(300));
    config.client = Some(ClientCredentials {
        id: server.client.id.clone(),
        secret: "lk_cs_wrong".into(),
    });

    let report = latchkey_bench::run(&config).await.expect("bench run");

    assert!(report.errors() > 0);
    let total = report.scenarios[0].total.as_ref().expect("ran");
    let wrong_client = total.error_breakdown.get("verify: HTTP 401 invalid_client");
    assert!(wrong_client.is_some_and(|n| *n > 0), "{}", report.table());
    assert!(report.table().contains("errors:"));
}

#[tokio::test]
async fn an_unreachable_server_fails_the_set_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let server = Server {
        url: format!("http://{addr}"),
        client: ClientCredentials {
            id: "x".into(),
            secret: "y".into(),
        },
        _stop: oneshot::channel().0,
    };

    let result = latchkey_bench::run(&config(&server, &[Scenario::Me], Duration::ZERO)).await;

    let error = format!("{:#}", result.expect_err("set-up fails"));
    assert!(error.contains("connection"), "{error}");
}
