//! The settings as a user meets them: flags, file and defaults.

use super::file::setting_names;
use super::*;
use clap::{CommandFactory as _, FromArgMatches as _, Parser as _};
use std::io::Write as _;

const KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    Serve,
}

/// Settings flags as the CLI parses them, with environment variables
/// switched off: the environment is process-wide and tests run in parallel.
fn flags(argv: &[&str]) -> SettingsArgs {
    let command = Cli::command().mut_args(|arg| arg.env(None::<&'static str>));
    let argv = std::iter::once("latchkey").chain(argv.iter().copied());
    let matches = command.try_get_matches_from(argv).expect("flags parse");
    SettingsArgs::from_arg_matches(&matches).expect("settings args")
}

fn load(args: &SettingsArgs) -> Settings {
    Settings::load(args).expect("settings load")
}

fn load_err(args: &SettingsArgs) -> String {
    Settings::load(args)
        .expect_err("settings are refused")
        .to_string()
}

/// A TOML file, plus flags that point at it (keep the file alive).
fn with_file(toml: &str, argv: &[&str]) -> (tempfile::NamedTempFile, SettingsArgs) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(toml.as_bytes()).expect("write config");
    let mut args = flags(argv);
    args.deployment.config = Some(file.path().to_owned());
    (file, args)
}

#[test]
fn defaults_need_no_configuration() {
    let settings = load(&SettingsArgs::default());
    assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(settings.data_dir, PathBuf::from("./latchkey-data"));
    assert_eq!(
        settings.database_url.expose(),
        "sqlite://./latchkey-data/latchkey.db"
    );
    assert!(settings.database_url.is_sqlite());
    assert_eq!(settings.issuer, "http://127.0.0.1:8080");
    assert_eq!(settings.audience, settings.issuer);
    assert!(settings.master_key.is_none());
    let ttls = (
        settings.access_ttl,
        settings.refresh_idle_ttl,
        settings.session_ttl,
    );
    assert_eq!(ttls, (5 * MINUTE, 7 * DAY, 30 * DAY));
    assert_eq!(settings.refresh_reuse_grace, 10 * SECOND);
    assert_eq!(settings.signing_alg, SigningAlg::EdDSA);
    let argon2 = (
        settings.argon2_memory_kib,
        settings.argon2_iterations,
        settings.argon2_parallelism,
    );
    assert_eq!(argon2, (19_456, 2, 1));
    assert!(settings.hash_concurrency >= 1);
    assert_eq!(settings.hash_queue, 128);
    assert_eq!(settings.clock_leeway, 5 * SECOND);
    assert_eq!(settings.password_min_length, 8);
    assert_eq!(
        (settings.ip_rate_limit, settings.account_failure_limit),
        (60, 5)
    );
    assert!(settings.trusted_proxies.is_empty() && settings.cors_origins.is_empty());
    assert_eq!(settings.log_format, None);
    assert_eq!(settings.request_timeout, 30 * SECOND);
    assert_eq!(settings.db_max_connections, 10);
}

#[test]
fn durations_accept_the_documented_forms() {
    let cases = [
        ("300", 300),
        ("300s", 300),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604_800),
    ];
    for (text, secs) in cases.into_iter().chain([("1h 30m", 5400), (" 0 ", 0)]) {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_secs(secs)),
            "{text}"
        );
    }
    for bad in [
        "abc",
        "-5s",
        "-5",
        "",
        "  ",
        "5 parsecs",
        "99999999999999999999999",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn flags_override_the_file_which_overrides_defaults() {
    let toml = "access_ttl = \"10m\"\nsession_ttl = \"2d\"\nrefresh_idle_ttl = 3600\n";
    let (_file, args) = with_file(toml, &["--access-ttl", "1m"]);
    let settings = load(&args);
    assert_eq!(settings.access_ttl, MINUTE);
    assert_eq!(settings.session_ttl, 2 * DAY);
    assert_eq!(settings.refresh_idle_ttl, HOUR);
    assert_eq!(settings.clock_leeway, 5 * SECOND);
}

#[test]
fn derived_defaults_follow_the_settings_they_come_from() {
    let toml = "listen = \"0.0.0.0:9000\"\n";
    let (_file, args) = with_file(toml, &["--data-dir", "/var/lib/latchkey"]);
    let settings = load(&args);
    assert_eq!(
        settings.database_url.expose(),
        "sqlite:///var/lib/latchkey/latchkey.db"
    );
    assert_eq!(settings.issuer, "http://0.0.0.0:9000");
    assert_eq!(settings.audience, "http://0.0.0.0:9000");

    let settings = load(&flags(&["--issuer", "https://auth.example.com"]));
    assert_eq!(settings.audience, "https://auth.example.com");

    let argv = [
        "--issuer",
        "https://auth.example.com",
        "--audience",
        "api",
        "--database-url",
        "postgres://db/lk",
    ];
    let settings = load(&flags(&argv));
    assert_eq!(
        (settings.issuer.as_str(), settings.audience.as_str()),
        ("https://auth.example.com", "api")
    );
    assert!(!settings.database_url.is_sqlite());
    assert_eq!(settings.data_dir, PathBuf::from("./latchkey-data"));
}

#[test]
fn an_invalid_value_names_the_setting_its_env_var_and_flag() {
    let mut args = SettingsArgs::default();
    args.server.access_ttl = Some("abc".into());
    assert_eq!(
        load_err(&args),
        "invalid value for access_ttl (LATCHKEY_ACCESS_TTL, --access-ttl): \"abc\": \
         expected a duration such as 300, 300s, 5m, 2h or 7d"
    );
    let cases = [
        ("access_ttl", "2h", "must be between 1s and 1h"),
        ("argon2_parallelism", "17", "between 1 and 16"),
        ("argon2_memory_kib", "512", "at least 1024"),
        ("argon2_iterations", "0", "at least 1"),
        ("password_min_length", "129", "between 1 and 128"),
        ("refresh_reuse_grace", "6m", "between 0s and 5m"),
        ("refresh_reuse_grace", "1500ms", "whole number of seconds"),
        ("clock_leeway", "2m", "between 0s and 1m"),
        ("session_ttl", "0", "at least 1s"),
        ("hash_concurrency", "0", "at least 1"),
        ("hash_queue", "-1", "whole number"),
        ("listen", "localhost", "127.0.0.1:8080"),
        ("data_dir", "", "directory"),
        ("signing_alg", "HS256", "EdDSA or ES256"),
        ("log_format", "xml", "pretty, json or auto"),
        ("database_url", "mysql://x/y", "sqlite://"),
        ("database_url", "sqlite://", "names no database"),
        ("audience", "two words", "without spaces"),
        ("db_max_connections", "0", "at least 1"),
        ("request_timeout", "500ms", "at least 1s"),
    ];
    for (setting, value, reason) in cases {
        let message = load_err(&flags(&[&format!("{}={value}", flag_name(setting))]));
        let start = format!(
            "invalid value for {setting} ({}, {}): ",
            env_name(setting),
            flag_name(setting)
        );
        assert!(message.starts_with(&start), "{message}");
        assert!(message.contains(reason), "{message}");
    }
}

#[test]
fn edge_values_inside_the_ranges_are_accepted() {
    let argv = [
        "--refresh-reuse-grace=0",
        "--access-ttl=1h",
        "--ip-rate-limit=0",
        "--account-failure-limit=0",
        "--hash-queue=0",
        "--signing-alg=ES256",
        "--log-format=JSON",
        "--refresh-idle-ttl=30d",
    ];
    let settings = load(&flags(&argv));
    assert_eq!(
        (settings.refresh_reuse_grace, settings.access_ttl),
        (Duration::ZERO, HOUR)
    );
    assert_eq!(
        (
            settings.ip_rate_limit,
            settings.account_failure_limit,
            settings.hash_queue
        ),
        (0, 0, 0)
    );
    assert_eq!(settings.signing_alg, SigningAlg::ES256);
    assert_eq!(settings.log_format, Some(LogFormat::Json));
    assert_eq!(settings.refresh_idle_ttl, settings.session_ttl);
    assert_eq!(load(&flags(&["--log-format", "auto"])).log_format, None);
}

#[test]
fn an_unknown_key_in_the_file_is_refused_by_name() {
    let (file, args) = with_file("acess_ttl = \"5m\"\n", &[]);
    let message = load_err(&args);
    let expected = format!(
        "unknown setting `acess_ttl` in {} (did you mean `access_ttl`?)",
        file.path().display()
    );
    assert_eq!(message, expected);

    let (_file, args) = with_file("LATCHKEY_SESSION_TTL = \"5d\"\n", &[]);
    assert!(load_err(&args).contains("did you mean `session_ttl`"));
    let (_file, args) = with_file("[server]\nlisten = \"0.0.0.0:1\"\n", &[]);
    assert!(load_err(&args).starts_with("unknown setting `server`"));
}

#[test]
fn the_file_takes_integers_strings_and_string_arrays_where_they_fit() {
    let toml = "argon2_memory_kib = 65536\n\
                trusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\"]\n\
                cors_origins = \"https://a.example, https://b.example\"\n";
    let (_file, args) = with_file(toml, &[]);
    let settings = load(&args);
    assert_eq!(settings.argon2_memory_kib, 65_536);
    assert_eq!(settings.trusted_proxies.len(), 2);
    assert_eq!(
        settings.cors_origins,
        ["https://a.example", "https://b.example"]
    );

    let cases = [
        ("access_ttl = true\n", "access_ttl in "),
        ("access_ttl = 1.5\n", "must be a string or an integer"),
        (
            "listen = [\"127.0.0.1:1\"]\n",
            "must be a string or an integer",
        ),
        (
            "trusted_proxies = [1]\n",
            "must be a string or an array of strings",
        ),
        (
            "argon2_iterations = -2\n",
            "invalid value for argon2_iterations",
        ),
    ];
    for (toml, expected) in cases {
        let (_file, args) = with_file(toml, &[]);
        let message = load_err(&args);
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn file_problems_name_the_file_and_never_echo_its_text() {
    let args = flags(&["--config", "/nonexistent/latchkey.toml"]);
    assert_eq!(
        load_err(&args),
        "configuration file /nonexistent/latchkey.toml not found"
    );

    let (file, args) = with_file(
        "listen = \"127.0.0.1:1\"\nmaster_key = hunter2secret\n",
        &[],
    );
    let message = load_err(&args);
    assert!(
        message.contains(&file.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("line 2"), "{message}");
    assert!(!message.contains("hunter2secret"), "{message}");
}

#[test]
fn debug_output_never_shows_secrets() {
    let url = "postgres://latchkey:s3cr3t-pw@db:5432/latchkey?sslmode=require";
    let mut settings = Settings::defaults_in(PathBuf::from("/data"));
    settings.master_key = Some(SecretString::from(KEY));
    settings.database_url = DatabaseUrl::new(url);
    let debug = format!("{settings:?}");
    assert!(
        !debug.contains(KEY) && !debug.contains("s3cr3t-pw"),
        "{debug}"
    );
    assert!(
        debug.contains("postgres://latchkey:***@db:5432/latchkey?sslmode=require"),
        "{debug}"
    );
    assert!(
        debug.contains("master_key: Some(SecretBox<str>([REDACTED]))"),
        "{debug}"
    );
    assert!(debug.contains("access_ttl: 300s"), "{debug}");

    let args = flags(&["--master-key", KEY, "--database-url", url]);
    let debug = format!("{args:?}");
    assert!(
        !debug.contains(KEY) && !debug.contains("s3cr3t-pw"),
        "{debug}"
    );
    let debug = format!("{:?}", load(&args));
    assert!(
        !debug.contains(KEY) && !debug.contains("s3cr3t-pw"),
        "{debug}"
    );
}

#[test]
fn error_messages_never_show_secrets() {
    let message = load_err(&flags(&["--master-key", "c2hvcnQtc2VjcmV0"]));
    assert!(
        message.contains("master_key") && message.contains("32 bytes"),
        "{message}"
    );
    assert!(!message.contains("c2hvcnQtc2VjcmV0"), "{message}");

    let message = load_err(&flags(&["--database-url", "mysql://root:s3cr3t-pw@db/x"]));
    assert!(
        message.contains("database_url") && !message.contains("s3cr3t-pw"),
        "{message}"
    );
}

#[test]
fn database_urls_are_redacted_whole() {
    let cases = [
        ("postgres://user:pw@host/db", "postgres://user:***@host/db"),
        (
            "postgres://user:p/w?x@y@host/db",
            "postgres://user:***@host/db",
        ),
        ("postgres://user@host/db", "postgres://user@host/db"),
        (
            "postgresql://host/db?user=u&password=pw",
            "postgresql://host/db?user=u&password=***",
        ),
        ("sqlite://./data/latchkey.db", "sqlite://./data/latchkey.db"),
    ];
    for (url, redacted) in cases {
        assert_eq!(DatabaseUrl::new(url).to_string(), redacted);
        assert_eq!(
            format!("{:?}", DatabaseUrl::new(url)),
            format!("DatabaseUrl({redacted:?})")
        );
    }
}

#[test]
fn master_keys_must_be_32_bytes_of_base64() {
    let url_safe = KEY.replace('+', "-").replace('/', "_");
    for key in [KEY, url_safe.as_str(), url_safe.trim_end_matches('=')] {
        assert!(
            load(&flags(&["--master-key", key])).master_key.is_some(),
            "{key}"
        );
    }
    let too_long = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEg==";
    for bad in ["", "not base64!", "c2hvcnQtc2VjcmV0", too_long] {
        let message = load_err(&flags(&["--master-key", bad]));
        assert!(
            message.starts_with("invalid value for master_key"),
            "{bad:?}"
        );
    }
}

#[test]
fn trusted_proxies_take_cidrs_and_bare_ips() {
    let args = flags(&[
        "--trusted-proxies",
        "10.0.0.0/8, 192.168.1.7,::1, 172.16.5.4/12",
    ]);
    let nets: Vec<String> = load(&args)
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        nets,
        ["10.0.0.0/8", "192.168.1.7/32", "::1/128", "172.16.0.0/12"]
    );
    for bad in ["10.0.0.0/33", "nope", "10.0.0.0/8;10.1.0.0/16"] {
        let message = load_err(&flags(&["--trusted-proxies", bad]));
        assert!(
            message.starts_with("invalid value for trusted_proxies"),
            "{message}"
        );
        assert!(message.contains("expected a CIDR"), "{message}");
    }
    let (_file, args) = with_file(
        "trusted_proxies = [\"10.0.0.0/8\"]\n",
        &["--trusted-proxies="],
    );
    assert!(
        load(&args).trusted_proxies.is_empty(),
        "an empty flag clears the file's list"
    );
}

#[test]
fn cors_origins_are_exact_scheme_host_port() {
    let args = flags(&[
        "--cors-origins",
        "https://App.Example.com:443,http://localhost:3000,http://[::1]:80",
    ]);
    let origins = load(&args).cors_origins;
    assert_eq!(
        origins,
        [
            "https://app.example.com",
            "http://localhost:3000",
            "http://[::1]"
        ]
    );
    let bad = [
        "*",
        "https://a.example/",
        "https://a.example/app",
        "ftp://a.example",
        "a.example",
        "https://a.example?x=1",
        "https://*.a.example",
        "https://a.example:99999",
        "null",
    ];
    for origin in bad {
        let message = load_err(&flags(&["--cors-origins", origin]));
        assert!(
            message.starts_with("invalid value for cors_origins"),
            "{origin}: {message}"
        );
    }
}

#[test]
fn the_issuer_must_be_an_exact_http_url() {
    let message = load_err(&flags(&["--issuer", "https://auth.example.com/"]));
    assert!(
        message.starts_with("invalid value for issuer") && message.contains("trailing slash"),
        "{message}"
    );
    let bad = [
        "auth.example.com",
        "https://auth.example.com?x",
        "https://auth.example.com#f",
        "https://u:p@auth.example.com",
        "https://",
        "HTTPS://auth.example.com",
    ];
    for issuer in bad {
        assert!(
            load_err(&flags(&["--issuer", issuer])).starts_with("invalid value for issuer"),
            "{issuer}"
        );
    }
    for good in [
        "https://example.com/auth",
        "http://[::1]:8080",
        "https://Auth.Example.com",
    ] {
        assert_eq!(
            load(&flags(&["--issuer", good])).issuer,
            good,
            "iss is kept exactly as written"
        );
    }
}

#[test]
fn an_idle_ttl_longer_than_the_session_is_refused() {
    let message = load_err(&flags(&["--refresh-idle-ttl", "60d"]));
    assert_eq!(
        message,
        "refresh_idle_ttl (60d) must not be longer than session_ttl (30d): \
         a refresh token cannot outlive its session"
    );
}

#[test]
fn every_setting_has_the_flag_and_env_var_its_name_implies() {
    let command = Cli::command();
    command.clone().debug_assert();
    for name in setting_names() {
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == name)
            .expect("an arg per setting");
        assert_eq!(
            arg.get_long().map(|l| format!("--{l}")),
            Some(flag_name(name))
        );
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some(env_name(name).as_str())
        );
        let deployment = ["data_dir", "master_key", "database_url"].contains(&name);
        assert_eq!(arg.is_global_set(), deployment, "{name}");
    }
    let hidden = |id: &str| {
        command
            .get_arguments()
            .any(|a| a.get_id() == id && a.is_hide_env_values_set())
    };
    assert!(hidden("master_key") && hidden("database_url"));
}

#[test]
fn serve_takes_every_setting_and_other_commands_only_where_the_deployment_is() {
    use crate::cli::{Cli as Latchkey, Command as Sub};
    let cli = Latchkey::try_parse_from(["latchkey", "serve", "--access-ttl", "1m"]).expect("serve");
    let Sub::Serve(server) = &cli.command else {
        panic!("not serve: {:?}", cli.command);
    };
    assert_eq!(server.access_ttl.as_deref(), Some("1m"));
    let cli = Latchkey::try_parse_from(["latchkey", "users", "list", "--data-dir", "/srv/lk"])
        .expect("a deployment flag after any subcommand");
    assert_eq!(cli.deployment.data_dir.as_deref(), Some("/srv/lk"));
    assert!(
        Latchkey::try_parse_from(["latchkey", "users", "list", "--access-ttl", "1m"]).is_err(),
        "server settings are not flags of admin commands"
    );

    let help = |path: &[&str]| {
        let mut command = Latchkey::command();
        command.build();
        let mut sub = &mut command;
        for name in path {
            sub = sub.find_subcommand_mut(name).expect("subcommand");
        }
        sub.render_long_help().to_string()
    };
    let clients_add = help(&["clients", "add"]);
    for shown in ["--data-dir", "--database-url", "--master-key", "--config"] {
        assert!(clients_add.contains(shown), "{shown} in:\n{clients_add}");
    }
    assert!(!clients_add.contains("--access-ttl"), "{clients_add}");
    let serve = help(&["serve"]);
    for name in setting_names() {
        assert!(serve.contains(&flag_name(name)), "{name} in:\n{serve}");
    }
}

/// What a file may hold: known and unknown keys with strings, numbers and
/// arrays, or any text at all.
fn config_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let key = prop_oneof![
        proptest::sample::select(setting_names().collect::<Vec<_>>()).prop_map(str::to_owned),
        "[a-z_]{1,24}",
    ];
    let value = prop_oneof![
        "[ -~]{0,40}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        proptest::collection::vec("[ -~]{0,20}", 0..4).prop_map(|v| format!("{v:?}")),
        Just("true".to_owned()),
    ];
    prop_oneof![
        proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect::<String>()
        }),
        any::<String>(),
    ]
}

proptest::proptest! {
    #[test]
    fn any_config_file_loads_or_names_its_problem_without_a_panic(text in config_text()) {
        let path = std::path::Path::new("/etc/latchkey.toml");
        let outcome = file::parse_file(path, &text)
            .and_then(|layer| Settings::from_layer(&file::Reader(&layer)));
        if let Err(e) = outcome {
            proptest::prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn a_database_password_never_shows(
        user in "[a-z]{1,12}",
        password in "[A-Za-z0-9!$%&*()+,;=._~-]{6,24}",
        host in "[a-z]{1,12}(\\.[a-z]{2,6})?",
        query in "(\\?sslmode=(require|disable))?",
    ) {
        proptest::prop_assume!(!user.contains(&password) && !host.contains(&password));
        let url = format!("postgres://{user}:{password}@{host}:5432/db{query}");
        let args = SettingsArgs {
            deployment: DeploymentArgs {
                database_url: Some(url.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let shown = format!("{args:?}");
        proptest::prop_assert!(!shown.contains(&password), "{shown}");
        match Settings::load(&args) {
            Ok(settings) => {
                let debug = format!("{settings:?}");
                proptest::prop_assert!(!debug.contains(&password), "{debug}");
                proptest::prop_assert!(!settings.database_url.redacted().contains(&password));
            }
            Err(e) => proptest::prop_assert!(!e.to_string().contains(&password), "{e}"),
        }
    }
}

#[test]
fn passkeys_take_their_relying_party_from_app_url_or_the_issuer() {
    let party = |argv: &[&str]| load(&flags(argv)).passkeys().expect("passkeys");
    assert_eq!(
        party(&["--issuer", "http://127.0.0.1:8080"]),
        None,
        "no domain"
    );
    assert_eq!(
        party(&[
            "--issuer",
            "https://auth.example.com",
            "--app-url",
            "https://app.example.com",
            "--cors-origins",
            "https://app.example.com,https://elsewhere.test",
        ]),
        Some((
            "app.example.com".to_string(),
            vec!["https://app.example.com".to_string()]
        ))
    );
    assert_eq!(
        party(&[
            "--issuer",
            "https://auth.example.com",
            "--app-url",
            "https://app.example.com",
            "--passkey-rp-id",
            "Example.com",
        ]),
        Some((
            "example.com".to_string(),
            vec![
                "https://auth.example.com".to_string(),
                "https://app.example.com".to_string()
            ]
        ))
    );
    let message = load_err(&flags(&[
        "--issuer",
        "https://auth.example.com",
        "--passkey-rp-id",
        "other.test",
    ]));
    assert!(message.contains("passkey_rp_id other.test"), "{message}");
    let message = load_err(&flags(&[
        "--issuer",
        "https://auth.example.com",
        "--passkey-origins",
        "https://phish.test",
    ]));
    assert!(message.contains("https://phish.test"), "{message}");
    for bad in ["10.0.0.1", "https://example.com", "exa mple.com"] {
        let message = load_err(&flags(&["--passkey-rp-id", bad]));
        assert!(message.contains("passkey_rp_id"), "{bad}: {message}");
    }
}
