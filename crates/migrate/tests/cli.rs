//! The `migrate` binary's contract without a database: `--help`, `--list`,
//! a refused configuration (exit 2) and an unreachable server (exit 1, named).

#![cfg(test)]

use std::process::Command;

fn migrate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migrate"));
    // The test's own environment may point at the local stack; these tests choose.
    for name in ["CONFIG_FILE", "CLICKHOUSE_URL", "CLICKHOUSE_HOST", "CLICKHOUSE_PORT", "DATABASE_URL", "POSTGRES_URL"]
    {
        cmd.env_remove(name);
    }
    cmd
}

#[test]
fn help_names_the_configuration() {
    let out = migrate().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["--config", "--only", "CLICKHOUSE_URL", "DATABASE_URL", "MIGRATE__CLICKHOUSE__URL", "Exit status"] {
        assert!(text.contains(needle), "--help lacks {needle}: {text}");
    }
}

#[test]
fn list_prints_the_embedded_migrations_without_connecting() {
    let out = migrate().arg("--list").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let expected =
        service_kit::migrate::clickhouse_migrations().len() + service_kit::migrate::postgres_migrations().len();
    assert_eq!(lines.len(), expected, "{text}");
    assert!(lines[0].starts_with("clickhouse\t1\t0001_events\t"), "{text}");
    assert!(text.contains("postgres\t1\t0001_video_catalog\t"), "{text}");
}

#[test]
fn an_unknown_key_is_refused_with_exit_2() {
    let out = migrate().env("MIGRATE__CLICKHOUSE__DATABSE", "x").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clickhouse.databse") && err.contains("clickhouse.database"), "{err}");
}

#[test]
fn an_unreachable_server_fails_with_exit_1_naming_it() {
    // Port 9 on loopback: nothing listens (discard), the connection is refused at once.
    let out = migrate().args(["--only", "clickhouse"]).env("CLICKHOUSE_URL", "http://127.0.0.1:9").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("applying ClickHouse migrations (http://127.0.0.1:9"), "{err}");
}

#[test]
fn a_missing_config_file_is_refused_with_exit_2() {
    let out = migrate().args(["--config", "/nonexistent/migrate.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/migrate.toml"));
}
