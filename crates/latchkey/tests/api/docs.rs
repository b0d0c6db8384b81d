//! The documentation against the code, so they cannot drift apart:
//! docs/cli.md is the binary's own `--help` for every command,
//! docs/configuration.md lists exactly the settings the binary takes, and
//! docs/operations.md every metric the code records.
//! `LATCHKEY_UPDATE_DOCS=1` rewrites docs/cli.md from the binary.

use std::collections::BTreeSet;
use std::process::Command;

use crate::tools::workspace;

/// `latchkey ARGS --help`, with no LATCHKEY_ variable set (clap shows their values).
fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .arg("--help")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run latchkey --help");
    assert!(out.status.success(), "latchkey {args:?} --help failed");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// The subcommands a help text lists, `help` aside.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path, depth first: `[]`, `["serve"]`, `["users"]`, `["users", "add"]`…
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = vec![];
    let mut stack = vec![vec![]];
    while let Some(path) = stack.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let children = subcommands(&help(&args));
        for child in children.into_iter().rev() {
            let mut next = path.clone();
            next.push(child);
            stack.push(next);
        }
        paths.push(path);
    }
    paths
}

fn cli_reference() -> String {
    let mut doc = String::from(
        "# Command line\n\n\
         Every command's `--help`, as the binary prints it. Settings (the options under\n\
         *Deployment* and *Server settings*) are explained in\n\
         [configuration.md](configuration.md); the admin commands have an HTTP twin in the\n\
         [admin API](api.md#admin-api). This page is generated and checked by the test\n\
         suite (`crates/latchkey/tests/api/docs.rs`); `LATCHKEY_UPDATE_DOCS=1 cargo test -p\n\
         latchkey --test api -- docs::` rewrites it after a change to the commands.\n",
    );
    for path in command_paths() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let title = std::iter::once("latchkey")
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        doc.push_str(&format!("\n## `{title}`\n\n```text\n{}```\n", help(&args)));
    }
    doc
}

#[test]
fn the_cli_reference_is_the_binarys_own_help() {
    let path = workspace().join("docs/cli.md");
    let generated = cli_reference();
    if std::env::var("LATCHKEY_UPDATE_DOCS").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).expect("write docs/cli.md");
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == generated,
        "docs/cli.md differs from the binary's --help; run \
         LATCHKEY_UPDATE_DOCS=1 cargo test -p latchkey --test api -- docs:: and commit it"
    );
}

/// `(flag, environment variable)` of every option the help texts show.
fn help_settings(text: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut flag = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            flag = rest.split([' ', '<']).next().map(|f| format!("--{f}"));
        }
        if let (Some(f), Some(i)) = (&flag, line.find("[env: ")) {
            let env = line[i + 6..]
                .split(['=', ']'])
                .next()
                .unwrap_or_default()
                .to_string();
            found.insert((f.clone(), env));
            flag = None;
        }
    }
    found
}

/// `(flag, environment variable)` of every row of the settings tables.
fn documented_settings(doc: &str) -> BTreeSet<(String, String)> {
    doc.lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let strip = |c: &str| c.trim_matches('`').to_string();
            let (env, flag) = (cells.get(2)?, cells.get(3)?);
            (env.starts_with("`LATCHKEY_") && flag.starts_with("`--"))
                .then(|| (strip(flag), strip(env)))
        })
        .collect()
}

#[test]
fn the_configuration_reference_lists_exactly_the_settings_the_binary_takes() {
    let doc = std::fs::read_to_string(workspace().join("docs/configuration.md")).expect("doc");
    let documented = documented_settings(&doc);
    let mut taken = help_settings(&help(&["serve"]));
    taken.extend(help_settings(&help(&[])));
    // The file that holds the settings is not one of them; the page names it.
    let file = ("--config".to_string(), "LATCHKEY_CONFIG".to_string());
    assert!(taken.remove(&file), "{taken:?}");
    assert!(doc.contains("`--config FILE` or `LATCHKEY_CONFIG`"));
    let undocumented: Vec<_> = taken.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&taken).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "settings missing from docs/configuration.md: {undocumented:?}; \
         documented but not taken by the binary: {unknown:?}"
    );
    assert!(taken.len() > 30, "the help was read: {taken:?}");
}

/// Names of the metrics recorded anywhere in the server's source.
fn recorded_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![workspace().join("crates/latchkey/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for macro_name in ["counter!(", "histogram!(", "gauge!("] {
                for (i, _) in text.match_indices(macro_name) {
                    let rest = text[i + macro_name.len()..].trim_start();
                    if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                        names.insert(name.to_string());
                    }
                }
            }
        }
    }
    names
}

#[test]
fn every_metric_the_code_records_is_documented_and_no_other() {
    let doc = std::fs::read_to_string(workspace().join("docs/operations.md")).expect("doc");
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `latchkey_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("latchkey_{name}"))
        .collect();
    let recorded = recorded_metrics();
    assert!(recorded.len() > 10, "{recorded:?}");
    assert_eq!(documented, recorded, "docs/operations.md against the code");
}
