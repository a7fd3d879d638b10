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

#[test]
fn key_family_snapshots() {
    for family in [
        "healthcheck",
        "networks-secrets",
        "volumes",
        "ports",
        "container-keys",
        "profiles",
        "env-files",
        "extensions",
        "extends",
    ] {
        let text = config_text(&compose_dir(family), &[]);
        insta::assert_snapshot!(format!("family_{family}"), text);
    }
}

#[test]
fn healthcheck_is_the_readiness_probe_unless_ready_names_one() {
    let v = config_json(&compose_dir("healthcheck"), &[]);
    let s = &v["services"];
    assert_eq!(s["db"]["ready"]["probe"], "healthcheck");
    // Long enough for the engine to call it unhealthy: 30s + 10 × (5s + 3s).
    assert_eq!(s["db"]["ready"]["timeout"], "1m 50s");
    assert!(
        s["quiet"].get("ready").is_none(),
        "a disabled check is no probe"
    );
    assert_eq!(
        s["quiet"]["healthcheck"]["test"],
        serde_json::json!(["NONE"])
    );
    assert!(s["probed"]["ready"]["probe"]["redis"].is_object());
    assert_eq!(
        s["app"]["depends_on"],
        serde_json::json!({"db": "ready", "cache": "started", "quiet": "completed"})
    );
    assert_eq!(s["app"]["restart_with"], serde_json::json!(["db"]));
}

#[test]
fn profiles_enable_services_from_flag_or_environment() {
    let dir = compose_dir("profiles");
    let names =
        |v: &Value| -> Vec<String> { v["services"].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(names(&config_json(&dir, &[])), ["web", "db"]);
    assert_eq!(
        names(&config_json(&dir, &["--profile", "debug"])),
        ["web", "db", "adminer"]
    );
    let v = config_json(&dir, &["--profile", "debug,cache"]);
    assert_eq!(names(&v), ["web", "db", "cache", "adminer"]);
    assert_eq!(v["services"]["web"]["depends_on"]["cache"], "started");
    let out = devstack_env(
        &dir,
        &["config", "--json"],
        &[("COMPOSE_PROFILES", "cache")],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(names(&v), ["web", "db", "cache"]);
    // `required: false` drops a dependency whose profile is off.
    assert!(config_json(&dir, &[])["services"]["web"]
        .get("depends_on")
        .is_none());
}

#[test]
fn naming_a_service_switches_on_its_profiles() {
    let dir = compose_dir("profiles");
    // `adminer` (profile `debug`, off) named on the command line runs, with `db`.
    let out = devstack(&dir, &["graph", "--json", "adminer"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["start_order"], serde_json::json!(["db", "adminer"]));
    let out = devstack(&dir, &["render", "compose", "adminer"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("  adminer:\n"), "{}", stdout(&out));
    // Only for the command that names it: the stack itself is unchanged.
    let v = config_json(&dir, &[]);
    assert!(v["services"].get("adminer").is_none(), "{v}");

    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: nginx\n  tool:\n    image: busybox\n    profiles: [debug]\n    depends_on: [helper, web]\n  helper:\n    image: busybox\n    profiles: [debug]\n  report:\n    image: busybox\n    profiles: [reports]\n    depends_on: [data]\n  data:\n    image: postgres\n    profiles: [storage]\n",
    )
    .unwrap();
    // A dependency in the same profile comes with it.
    let out = devstack(dir.path(), &["graph", "--json", "tool"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut order: Vec<String> = serde_json::from_value(v["start_order"].clone()).unwrap();
    order.sort();
    assert_eq!(order, ["helper", "tool", "web"]);
    // One in another profile that is off is refused, naming that profile.
    let out = devstack(dir.path(), &["graph", "report"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("service `report` depends on `data`, which only runs with profile `storage`"),
        "{}",
        stderr(&out)
    );
    let out = devstack(dir.path(), &["--profile", "storage", "graph", "report"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A name that is no service at all is still a usage error.
    let out = devstack(dir.path(), &["graph", "tol"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no service `tol` in the stack"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_dependency_in_an_inactive_profile_is_refused_with_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: nginx\n    depends_on: [db]\n  db:\n    image: postgres\n    profiles: [data]\n",
    )
    .unwrap();
    let out = devstack(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("service `web` depends on `db`, which only runs with profile `data`"),
        "{err}"
    );
    assert!(err.contains("--profile data"), "{err}");
}

#[test]
fn env_precedence_shell_over_env_file_flag_over_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: nginx\n    environment:\n      A: ${A}\n      B: ${B}\n      C: ${C:-default}\n",
    )
    .unwrap();
    fs::write(dir.path().join(".env"), "A=dotenv\nB=dotenv\nC=dotenv\n").unwrap();
    fs::write(dir.path().join("other.env"), "A=flag\nB=flag\n").unwrap();
    let env_of = |args: &[&str], vars: &[(&str, &str)]| {
        let mut all = args.to_vec();
        all.extend(["config", "--json"]);
        let out = devstack_env(dir.path(), &all, vars);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["services"]["web"]["environment"].clone()
    };
    assert_eq!(
        env_of(&[], &[]),
        serde_json::json!({"A": "dotenv", "B": "dotenv", "C": "dotenv"})
    );
    // `--env-file` replaces `.env`: `C` is no longer set there.
    assert_eq!(
        env_of(&["--env-file", "other.env"], &[]),
        serde_json::json!({"A": "flag", "B": "flag", "C": "default"})
    );
    // The shell wins over both.
    assert_eq!(
        env_of(&["--env-file", "other.env"], &[("A", "shell")]),
        serde_json::json!({"A": "shell", "B": "flag", "C": "default"})
    );
    assert_eq!(
        env_of(&[], &[("B", "shell")]),
        serde_json::json!({"A": "dotenv", "B": "shell", "C": "dotenv"})
    );
    let out = devstack(dir.path(), &["--env-file", "nope.env", "validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read env file `nope.env`: no such file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn project_name_from_compose_project_name_in_shell_or_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("My_App");
    fs::create_dir_all(&sub).unwrap();
    fs::write(
        sub.join("compose.yaml"),
        "services:\n  web:\n    image: nginx\n",
    )
    .unwrap();
    let name = |args: &[&str], vars: &[(&str, &str)]| {
        let mut all = args.to_vec();
        all.extend(["config", "--json"]);
        let out = devstack_env(&sub, &all, vars);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["name"].as_str().unwrap().to_string()
    };
    // The folder name is normalised as Compose does.
    assert_eq!(name(&[], &[]), "my_app");
    assert_eq!(
        name(&[], &[("COMPOSE_PROJECT_NAME", "from-shell")]),
        "from-shell"
    );
    fs::write(sub.join(".env"), "COMPOSE_PROJECT_NAME=from-dotenv\n").unwrap();
    assert_eq!(name(&[], &[]), "from-dotenv");
    assert_eq!(
        name(&[], &[("COMPOSE_PROJECT_NAME", "from-shell")]),
        "from-shell"
    );
    assert_eq!(
        name(&["-p", "flag"], &[("COMPOSE_PROJECT_NAME", "x")]),
        "flag"
    );
    // `-p ""` falls back as if not given.
    fs::remove_file(sub.join(".env")).unwrap();
    assert_eq!(name(&["-p", ""], &[]), "my_app");
    for bad in ["-my_project", "www.my.project", "MyProject"] {
        let flag = format!("--project-name={bad}");
        let out = devstack(&sub, &[&flag, "validate"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains(&format!("invalid project name `{bad}`")),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn compose_file_and_separator_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("base.yml"),
        "services:\n  web:\n    image: nginx:1\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("extra.yml"),
        "services:\n  web:\n    image: nginx:2\n",
    )
    .unwrap();
    let image = |vars: &[(&str, &str)]| {
        let out = devstack_env(dir.path(), &["config", "--json"], vars);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["services"]["web"]["image"].as_str().unwrap().to_string()
    };
    assert_eq!(image(&[("COMPOSE_FILE", "base.yml")]), "nginx:1");
    assert_eq!(image(&[("COMPOSE_FILE", "base.yml:extra.yml")]), "nginx:2");
    assert_eq!(
        image(&[
            ("COMPOSE_FILE", "base.yml;extra.yml"),
            ("COMPOSE_PATH_SEPARATOR", ";")
        ]),
        "nginx:2"
    );
}

#[test]
fn compose_variables_from_the_working_folders_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("deploy")).unwrap();
    fs::write(
        dir.path().join("deploy/base.yml"),
        "services:\n  web:\n    image: nginx:1\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("deploy/extra.yml"),
        "services:\n  web:\n    image: nginx:2\n  debug:\n    image: busybox\n    profiles: [debug]\n",
    )
    .unwrap();
    fs::write(
        dir.path().join(".env"),
        "COMPOSE_FILE=deploy/base.yml;deploy/extra.yml\nCOMPOSE_PATH_SEPARATOR=;\nCOMPOSE_PROJECT_NAME=from-workdir\nCOMPOSE_PROFILES=debug\n",
    )
    .unwrap();
    let config = |args: &[&str], vars: &[(&str, &str)]| {
        let mut all = args.to_vec();
        all.extend(["config", "--json"]);
        let out = devstack_env(dir.path(), &all, vars);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let v = config(&[], &[]);
    assert_eq!(v["services"]["web"]["image"], "nginx:2");
    assert_eq!(v["name"], "from-workdir");
    assert!(v["services"].get("debug").is_some(), "{v}");
    // The shell wins over the file.
    let v = config(
        &[],
        &[
            ("COMPOSE_FILE", "deploy/base.yml"),
            ("COMPOSE_PROJECT_NAME", "from-shell"),
        ],
    );
    assert_eq!(v["services"]["web"]["image"], "nginx:1");
    assert_eq!(v["name"], "from-shell");
    assert!(v["services"].get("debug").is_none(), "{v}");
    // `--env-file` replaces the working folder's `.env`.
    fs::write(
        dir.path().join("other.env"),
        "COMPOSE_FILE=deploy/base.yml\n",
    )
    .unwrap();
    let v = config(&["--env-file", "other.env"], &[]);
    assert_eq!(v["services"]["web"]["image"], "nginx:1");
    assert_eq!(v["name"], "deploy");
    // A malformed `.env` there is reported, not read as something else.
    fs::write(dir.path().join(".env"), "COMPOSE_FILE=\"deploy/base.yml\n").unwrap();
    let out = devstack(dir.path(), &["-f", "deploy/base.yml", "validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot parse env file `.env`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn discovery_prefers_stack_yaml_then_compose_names() {
    let dir = tempfile::tempdir().unwrap();
    let found = || {
        let out = devstack(dir.path(), &["validate"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out).split(':').next().unwrap().to_string()
    };
    let svc = "services:\n  web:\n    image: nginx\n";
    fs::write(dir.path().join("docker-compose.yml"), svc).unwrap();
    assert_eq!(found(), "docker-compose.yml");
    fs::write(dir.path().join("docker-compose.yaml"), svc).unwrap();
    assert_eq!(found(), "docker-compose.yaml");
    fs::write(dir.path().join("compose.yml"), svc).unwrap();
    assert_eq!(found(), "compose.yml");
    fs::write(dir.path().join("compose.yaml"), svc).unwrap();
    assert_eq!(found(), "compose.yaml");
    fs::write(dir.path().join("stack.yaml"), svc).unwrap();
    assert_eq!(found(), "stack.yaml");
}

#[test]
fn bare_depends_on_means_started_in_compose_files_and_ready_in_stack_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "services:\n  web:\n    image: nginx\n    depends_on: [db]\n  db:\n    image: postgres\n";
    fs::write(dir.path().join("compose.yaml"), text).unwrap();
    fs::write(dir.path().join("stack.yaml"), text).unwrap();
    let cond = |file: &str| {
        config_json(dir.path(), &["-f", file])["services"]["web"]["depends_on"]["db"].clone()
    };
    assert_eq!(cond("compose.yaml"), "started");
    assert_eq!(cond("stack.yaml"), "ready");
}

#[test]
fn unsupported_compose_keys_are_refused_in_their_own_words_and_the_rest_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "configs:\n  c: { file: ./c.txt }\nservices:\n  web:\n    image: nginx\n    devices: [/dev/fuse]\n    logging: { driver: json-file }\n    imagee: x\n    ports: [\"70000:80\"]\n  api:\n    image: busybox\n    restart: sometimes\n    deploy: { replicas: 2 }\n    depends_on: [nope]\n",
    )
    .unwrap();
    let out = devstack(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for want in [
        "`configs` is a Compose key devstack does not support yet",
        "`devices` is a Compose key devstack does not support yet",
        "`logging` is a Compose key devstack does not support yet",
        "`replicas` is a Compose key devstack does not support yet",
        "README.md#compose-compatibility",
        // A typo still gets its "did you mean", not the Compose refusal.
        "unknown service key `imagee` in `services.web`",
        "did you mean `image`?",
        // The other keys of the same services are still checked.
        "port `70000` is out of range",
        "unknown restart policy `sometimes`",
        "service `api` depends on unknown service `nope`",
        "8 problems in the stack file",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[test]
fn a_malformed_env_file_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: nginx\n    env_file: app.env\n",
    )
    .unwrap();
    fs::write(dir.path().join("app.env"), "A=1\nB=\"never closed\nC=3\n").unwrap();
    let out = devstack(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("malformed_env_file", stderr(&out));
}

#[test]
fn override_files_merge_as_compose_merges() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        r#"services:
  web:
    image: nginx
    environment: [A=1, B=2]
    labels: { team: web }
    ports: ["8080:80"]
    expose: ["3000"]
    volumes: ["./a:/data", "logs:/logs"]
    env_file: [one.env]
    depends_on: [db]
    command: ["serve", "--base"]
  db:
    image: postgres
volumes:
  logs:
  data:
"#,
    )
    .unwrap();
    fs::write(
        dir.path().join("compose.override.yaml"),
        r#"services:
  web:
    environment: { B: "3", C: "4" }
    labels: [tier=front]
    ports: ["8443:443", "8080:80"]
    expose: ["3000", "3001"]
    volumes: ["data:/data"]
    env_file: [two.env]
    depends_on: { db: { condition: service_healthy } }
    command: ["serve", "--override"]
"#,
    )
    .unwrap();
    fs::write(dir.path().join("empty.yaml"), "# nothing to override\n").unwrap();
    fs::write(dir.path().join("one.env"), "FROM_ONE=1\nSHARED=one\n").unwrap();
    fs::write(dir.path().join("two.env"), "SHARED=two\n").unwrap();
    let v = config_json(
        dir.path(),
        &[
            "-f",
            "compose.yaml",
            "-f",
            "compose.override.yaml",
            "-f",
            "empty.yaml",
        ],
    );
    let web = &v["services"]["web"];
    assert_eq!(
        web["environment"],
        serde_json::json!({"A": "1", "B": "3", "C": "4", "FROM_ONE": "1", "SHARED": "two"})
    );
    assert_eq!(
        web["labels"],
        serde_json::json!({"team": "web", "tier": "front"})
    );
    assert_eq!(
        web["ports"],
        serde_json::json!(["127.0.0.1:8080:80", "127.0.0.1:8443:443"])
    );
    assert_eq!(web["expose"], serde_json::json!(["3000", "3001"]));
    // Volumes merge by target: `/data` is replaced, `/logs` kept.
    assert_eq!(web["volumes"][0]["type"], "named");
    assert_eq!(web["volumes"][0]["name"], "data");
    assert_eq!(web["volumes"][1]["target"], "/logs");
    assert_eq!(web["depends_on"]["db"], "ready");
    assert_eq!(web["command"], serde_json::json!(["serve", "--override"]));
}

#[test]
fn extends_and_include_bring_in_services_with_their_own_paths() {
    let dir = compose_dir("extends");
    let v = config_json(&dir, &[]);
    let s = &v["services"];
    assert_eq!(
        s["web"]["environment"],
        serde_json::json!({"LEVEL": "web", "SHARED": "base"})
    );
    assert_eq!(s["web"]["labels"]["tier"], "base");
    // The other file's relative paths are against its own folder.
    assert_eq!(
        s["worker"]["build"]["context"],
        "[ROOT]/tests/fixtures/compose/extends/common/app"
    );
    assert_eq!(s["worker"]["environment"]["FROM_COMMON_ENV"], "1");
    assert_eq!(
        s["worker"]["command"],
        serde_json::json!(["work", "--hard"])
    );
    assert_eq!(
        s["metrics"]["volumes"][0]["source"],
        "[ROOT]/tests/fixtures/compose/extends/included/prometheus.yml"
    );
    assert_eq!(v["volumes"]["tsdb"]["name"], "extends_tsdb");
}

#[test]
fn extends_and_include_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "include:\n  - other.yaml\n  - missing.yaml\nservices:\n  web:\n    extends: { service: bsae }\n  base:\n    image: busybox\n  db:\n    image: postgres\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("other.yaml"),
        "services:\n  db:\n    image: postgres:16\n",
    )
    .unwrap();
    let out = devstack(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for want in [
        "service `web` extends unknown service `bsae`",
        "did you mean `base`?",
        "cannot read `missing.yaml`: no such file",
        "`services.db` is defined both here and in an included file",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[test]
fn extends_and_include_problems_do_not_hide_the_rest_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "include:\n  - missing.yaml\n  - broken.yaml\nservices:\n  web:\n    extends: { service: bsae }\n    ports: [\"70000:80\"]\n  job:\n    extends: { file: bad-base.yaml, service: app }\n    command: run\n  base:\n    image: busybox\n  api:\n    image: nginx\n    restart: sometimes\n    depends_on: [nope]\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("broken.yaml"),
        "services:\n  db:\n    image: postgres\n    imagee: x\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("bad-base.yaml"),
        "services:\n  app:\n    image: [oops\n",
    )
    .unwrap();
    let out = devstack(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for want in [
        // the bad `extends` targets and the bad included files
        "service `web` extends unknown service `bsae`",
        "cannot read `missing.yaml`: no such file",
        "at `include[0]`",
        "invalid YAML: while parsing a flow sequence",
        "╭─[bad-base.yaml:",
        // a good included file's own problem, in that file
        "unknown service key `imagee` in `services.db`",
        "╭─[broken.yaml:4:5]",
        // the rest of the service whose `extends` failed
        "port `70000` is out of range",
        // other services
        "unknown restart policy `sometimes`",
        "service `api` depends on unknown service `nope`",
        "7 problems in the stack file",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    // A service whose base is missing is not taken for a process without `command`.
    assert!(!err.contains("has no `command`"), "{err}");
}

#[test]
fn version_is_ignored_with_a_note_under_verbose() {
    let dir = compose_dir("ensurestudy");
    let out = devstack(&dir, &["-v", "validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`version` is obsolete in Compose files and ignored"),
        "{}",
        stderr(&out)
    );
    let out = devstack(&dir, &["validate"]);
    assert!(!stderr(&out).contains("`version`"), "{}", stderr(&out));
}

#[test]
fn compose_profiles_can_come_from_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: nginx\n  debug:\n    image: busybox\n    profiles: [debug]\n",
    )
    .unwrap();
    fs::write(dir.path().join(".env"), "COMPOSE_PROFILES=debug\n").unwrap();
    let v = config_json(dir.path(), &[]);
    assert!(v["services"].get("debug").is_some(), "{v}");
    assert_eq!(v["profiles"], serde_json::json!(["debug"]));
    // `--profile` replaces the variable.
    let v = config_json(dir.path(), &["--profile", "other"]);
    assert!(v["services"].get("debug").is_none(), "{v}");
}
