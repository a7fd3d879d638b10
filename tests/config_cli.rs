//! `validate`, `config` and `graph` on the reference stack and on small stacks.

mod common;

use std::fs;

use common::*;
use serde_json::Value;

#[test]
fn the_reference_stack_validates() {
    let out = devstack(&root(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("12 services (5 containers, 4 processes, 3 tasks)"),
        "{}",
        stdout(&out)
    );
}

fn position(order: &[Value], name: &str) -> usize {
    order
        .iter()
        .position(|v| v == name)
        .unwrap_or_else(|| panic!("{name} in order"))
}

#[test]
fn graph_orders_the_reference_stack() {
    let out = devstack(&root(), &["graph", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let levels = v["levels"].as_array().unwrap();
    let level_of = |name: &str| {
        levels
            .iter()
            .position(|l| l.as_array().unwrap().iter().any(|n| n == name))
            .unwrap()
    };
    for (before, after) in [
        ("zookeeper", "kafka"),
        ("postgres", "core-service"),
        ("redis", "core-service"),
        ("postgres", "celery-worker"),
        ("redis", "celery-worker"),
        ("qdrant", "ai-service"),
        ("core-service", "frontend"),
        ("ai-service", "frontend"),
        ("debian-base", "postgres"),
        ("kafka-broker", "kafka"),
        ("venv", "core-service"),
        ("venv", "ai-service"),
    ] {
        assert!(
            level_of(before) < level_of(after),
            "{before} starts before {after}"
        );
    }
    let start = v["start_order"].as_array().unwrap();
    let stop = v["stop_order"].as_array().unwrap();
    assert!(position(stop, "frontend") < position(stop, "core-service"));
    assert!(position(stop, "kafka") < position(stop, "zookeeper"));
    assert_eq!(start.len(), 12);
}

#[test]
fn graph_of_a_subset_includes_its_dependencies() {
    let out = devstack(&root(), &["graph", "--json", "core-service"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["start_order"],
        serde_json::json!(["debian-base", "venv", "postgres", "redis", "core-service"])
    );
}

#[test]
fn graph_text_and_tree_snapshots() {
    let out = devstack(&root(), &["graph"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!("graph_levels", stdout(&out));
    let out = devstack(&root(), &["graph", "--tree"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!("graph_tree", stdout(&out));
}

#[test]
fn config_masks_secrets_unless_asked() {
    let out = devstack(&root(), &["config", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let v: Value = serde_json::from_str(&text).unwrap();
    let pg = &v["services"]["postgres"];
    assert_eq!(pg["environment"]["POSTGRES_PASSWORD"], "********");
    assert_eq!(pg["environment"]["POSTGRES_USER"], "user");
    assert_eq!(pg["ready"]["probe"]["postgres"]["password"], "********");
    let core = &v["services"]["core-service"];
    assert_eq!(core["environment"]["JWT_SECRET_KEY"], "********");
    // Port references resolve to the published host port; the password in the URL is masked.
    assert_eq!(
        core["environment"]["DATABASE_URL"],
        "postgresql://user:********@127.0.0.1:5432/ensurestudy"
    );
    assert!(!text.contains("dev-only-jwt-secret"));
    assert!(!text.contains(":pass@"));

    let out = devstack(&root(), &["config", "--json", "--show-secrets"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"],
        "pass"
    );
    assert_eq!(
        v["services"]["core-service"]["environment"]["JWT_SECRET_KEY"],
        "dev-only-jwt-secret"
    );
}

#[test]
fn config_yaml_snapshot_of_the_reference_stack() {
    let out = devstack(&root(), &["config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The root folder differs per checkout.
    let text = stdout(&out).replace(&root().display().to_string(), "[ROOT]");
    insta::assert_snapshot!("config_reference_stack", text);
}

#[test]
fn files_merge_in_order() {
    let dir = fixtures().join("valid");
    let out = devstack(
        &dir,
        &[
            "-f",
            "base.yaml",
            "-f",
            "override.yaml",
            "config",
            "--json",
            "--show-secrets",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let db = &v["services"]["db"];
    assert_eq!(db["image"], "postgres:16", "the later file wins per key");
    assert_eq!(db["ports"], serde_json::json!(["127.0.0.1:15432:5432"]));
    assert_eq!(
        db["environment"]["POSTGRES_USER"], "app",
        "keys the overlay does not set stay"
    );
    let api = &v["services"]["api"];
    assert_eq!(api["environment"]["LOG_LEVEL"], "debug");
    assert_eq!(api["environment"]["MODE"], "development");
    assert_eq!(
        api["environment"]["DATABASE_URL"], "postgresql://app:hunter2@127.0.0.1:15432/app",
        "references follow the overlay's host port"
    );
    assert_eq!(api["command"], "./serve --port 8080");
    // The postgres probe takes its login from the container's environment.
    assert_eq!(db["ready"]["probe"]["postgres"]["user"], "app");
}

#[test]
fn environment_and_dotenv_fill_variables() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("stack.yaml"),
        "env_file: .env\nservices:\n  web:\n    command: ./serve\n    environment:\n      A: ${FROM_DOTENV}\n      B: ${FROM_SHELL:-none}\n      C: ${BOTH}\n      D: $$literal\n",
    )
    .unwrap();
    fs::write(dir.path().join(".env"), "FROM_DOTENV=dot\nBOTH=dotenv\n").unwrap();
    let out = devstack_env(
        dir.path(),
        &["config", "--json"],
        &[("FROM_SHELL", "shell"), ("BOTH", "shell")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let env = &v["services"]["web"]["environment"];
    assert_eq!(env["A"], "dot");
    assert_eq!(env["B"], "shell");
    assert_eq!(
        env["C"], "shell",
        "the shell environment wins over .env, as in Compose"
    );
    assert_eq!(env["D"], "$literal");
}

#[test]
fn unset_variable_warns_and_uses_empty() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("stack.yaml"),
        "services:\n  web:\n    command: ./serve ${NOPE}\n",
    )
    .unwrap();
    let out = devstack(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("warning: variable `NOPE` is not set; using an empty string (at `services.web.command`)"), "{}", stderr(&out));
}

#[test]
fn stack_file_is_found_upward_and_paths_are_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("stack.yaml"),
        "name: up\nservices:\n  web:\n    command: ./serve\n    working_dir: app\n",
    )
    .unwrap();
    let deep = dir.path().join("app/src/deeper");
    fs::create_dir_all(&deep).unwrap();
    let out = devstack(&deep, &["config", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "up");
    let wd = v["services"]["web"]["working_dir"].as_str().unwrap();
    assert_eq!(std::path::Path::new(wd), dir.path().join("app"));
}

#[test]
fn project_name_comes_from_flag_then_file_then_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("My_Project");
    fs::create_dir_all(&sub).unwrap();
    fs::write(
        sub.join("stack.yaml"),
        "services:\n  web:\n    command: ./serve\n",
    )
    .unwrap();
    let name = |args: &[&str]| {
        let out = devstack(&sub, args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["name"].as_str().unwrap().to_string()
    };
    assert_eq!(name(&["config", "--json"]), "my_project");
    assert_eq!(name(&["-p", "ci-run-1", "config", "--json"]), "ci-run-1");
    assert_eq!(
        name(&["config", "--json", "-p", "after"]),
        "after",
        "global options work after the subcommand too"
    );
}

#[test]
fn config_services_lists_names() {
    let out = devstack(&root(), &["config", "--services"]);
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "debian-base",
            "kafka-broker",
            "venv",
            "zookeeper",
            "kafka",
            "postgres",
            "qdrant",
            "redis",
            "core-service",
            "celery-worker",
            "ai-service",
            "frontend"
        ]
    );
}

/// `--help` names every exit code devstack uses.
#[test]
fn help_lists_every_exit_code() {
    use devstack::error::exit;
    let out = devstack(&root(), &["--help"]);
    let help = stdout(&out);
    let codes = [
        (exit::OK, "ok"),
        (exit::FAILURE, "failure"),
        (exit::CONFIG, "usage or config error"),
        (exit::DOCKER_UNAVAILABLE, "Docker unavailable"),
        (exit::PORT_CONFLICT, "port conflict"),
        (exit::NOT_READY, "service not ready"),
        (exit::IMAGE_UNAVAILABLE, "image unavailable"),
        (exit::ALREADY_UP, "already up"),
        (exit::BUILD_FAILED, "image build failed"),
        (exit::NOT_RUNNING, "no devstack running"),
        (exit::MISSING_PROGRAM, "a service's program is missing"),
        (exit::SNAPSHOT, "snapshot missing, damaged or badly named"),
        (exit::SHARED, "shared services unavailable or in use"),
        (exit::INTERRUPTED, "interrupted"),
    ];
    for (code, what) in codes {
        assert!(
            help.contains(&format!("{code} {what}")),
            "{code} {what}:\n{help}"
        );
    }
}
