//! Compose files as teams have them: ensureStudy's own `docker-compose.yml` verbatim, one
//! fixture per key family, `.env` precedence, profiles, and the refusal of Compose keys
//! devstack does not read yet.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::Value;

fn compose_dir(name: &str) -> std::path::PathBuf {
    fixtures().join("compose").join(name)
}

/// `config --json` of `dir` with `args` before it, as text with the checkout's path replaced.
fn config_text(dir: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["config", "--json"]);
    let out = devstack(dir, &all);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out).replace(&root().display().to_string(), "[ROOT]")
}

fn config_json(dir: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&config_text(dir, args)).expect("config --json prints JSON")
}

#[test]
fn ensurestudy_compose_file_validates_as_it_is() {
    let dir = compose_dir("ensurestudy");
    let out = devstack(&dir, &["-f", "docker-compose.yml", "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "docker-compose.yml: ok — project `ensurestudy`, 9 services (9 containers, 0 processes)"
    );
    // The two secrets it takes from the environment are unset here: warnings, not errors.
    assert!(
        stderr(&out).contains("variable `JWT_SECRET_KEY` is not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ensurestudy_compose_file_is_found_without_f() {
    let out = devstack(&compose_dir("ensurestudy"), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("docker-compose.yml: ok"));
}

#[test]
fn ensurestudy_config_shows_services_networks_and_volumes() {
    let dir = compose_dir("ensurestudy");
    let v = config_json(&dir, &["-f", "docker-compose.yml"]);
    let names: Vec<&str> = v["services"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        [
            "frontend",
            "core-service",
            "ai-service",
            "celery-worker",
            "postgres",
            "qdrant",
            "redis",
            "kafka",
            "zookeeper"
        ]
    );
    let fe = &v["services"]["frontend"];
    assert_eq!(fe["kind"], "container");
    assert_eq!(fe["image"], "ensurestudy-frontend", "built image name");
    assert_eq!(fe["build"]["dockerfile"], "Dockerfile.dev");
    assert_eq!(
        fe["volumes"][1],
        serde_json::json!({"type": "anonymous", "target": "/app/node_modules"})
    );
    // A bare list in a Compose file means `service_started`.
    assert_eq!(
        v["services"]["core-service"]["depends_on"]["postgres"],
        "started"
    );
    assert_eq!(
        v["volumes"]["postgres_data"]["name"],
        "ensurestudy_postgres_data"
    );
    assert_eq!(
        v["services"]["postgres"]["volumes"][0]["name"],
        "postgres_data"
    );
    // No `networks:` in the file: every service is on the project's default network.
    assert!(v.get("networks").is_none());
    insta::assert_snapshot!(
        "ensurestudy_compose_config",
        config_text(&dir, &["-f", "docker-compose.yml"])
    );
}
