//! Compose's `pre_start` init containers against the real Docker engine (issue 24): they share
//! the service's volumes, run before it starts, once per definition, and a failing one fails
//! `up --wait` and leaves nothing half started. Every test has its own project.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

const IMAGE: &str = "devstack/debian-base:bookworm";

fn docker(args: &[&str]) -> (bool, String) {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn up(dir: &Path, files: &[&str], project: &str) -> Output {
    let mut args: Vec<&str> = Vec::new();
    for f in files {
        args.extend(["-f", f]);
    }
    args.extend(["-p", project, "up", "--wait"]);
    devstack(dir, &args)
}

/// A `pre_start` step writes into a named volume that the service reads when it starts; a
/// second `up` runs no step (one line in the volume's log), a changed step runs again.
#[test]
fn pre_start_prepares_the_volume_once_per_definition() {
    if !docker_or_skip(&[IMAGE]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: [sh, -c, \"cp /data/seed /tmp/seen && exec sleep 600\"]\n    volumes: [\"data:/data\"]\n    pre_start:\n      - command: [sh, -c, \"echo $$RUN >> /data/runs && echo $$WORD > /data/seed\"]\n        environment: {{RUN: first, WORD: hello}}\nvolumes:\n  data: {{}}\n"
        ),
    )
    .unwrap();
    fs::write(
        dir.path().join("changed.yaml"),
        "services:\n  web:\n    pre_start: !override\n      - command: [sh, -c, \"echo $$RUN >> /data/runs && echo $$WORD > /data/seed\"]\n        environment: {RUN: second, WORD: again}\n",
    )
    .unwrap();
    let project = project("prestart");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec!["compose.yaml".into()],
    };
    let web = format!("{project}-web");
    let read = |path: &str| {
        let (ok, text) = docker(&["exec", &web, "cat", path]);
        assert!(ok, "{path}: {text}");
        text
    };

    let out = up(dir.path(), &["compose.yaml"], &project);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("pre_start step 1"), "{err}");
    assert_eq!(
        read("/tmp/seen"),
        "hello\n",
        "the service read what the step wrote"
    );
    assert_eq!(read("/data/runs"), "first\n");

    let out = up(dir.path(), &["compose.yaml"], &project);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("running already, config unchanged"), "{err}");
    assert!(!err.contains("pre_start step"), "{err}");
    assert_eq!(
        read("/data/runs"),
        "first\n",
        "a warm up runs no step again"
    );

    let files = ["compose.yaml", "changed.yaml"];
    let out = up(dir.path(), &files, &project);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("config changed: recreated"), "{err}");
    assert_eq!(read("/data/runs"), "first\nsecond\n", "a changed step runs");
    assert_eq!(read("/tmp/seen"), "again\n");

    let out = up(dir.path(), &files, &project);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(read("/data/runs"), "first\nsecond\n");
    let (ok, names) = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={project}-web-pre_start"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(
        ok && names.trim().is_empty(),
        "init containers are removed: {names}"
    );
}

/// A failing `pre_start` step fails `up --wait` with its exit code and last lines, runs no later
/// step, and leaves no container of the service (nor an init container) behind.
#[test]
fn a_failing_pre_start_fails_up_and_leaves_nothing_half_started() {
    if !docker_or_skip(&[IMAGE]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("out")).unwrap();
    fs::write(
        dir.path().join("compose.yaml"),
        format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: [sleep, \"600\"]\n    volumes: [\"./out:/out\"]\n    pre_start:\n      - command: [sh, -c, \"echo preparing; echo cannot reach the database >&2; exit 7\"]\n      - command: [touch, /out/second-step-ran]\n"
        ),
    )
    .unwrap();
    let project = project("prestart-fail");
    let _down = Teardown {
        dir: dir.path().into(),
        project: project.clone(),
        files: vec!["compose.yaml".into()],
    };
    let out = up(dir.path(), &["compose.yaml"], &project);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("pre_start step 1 `sh -c echo preparing; echo cannot reach the database >&2; exit 7` exited with 7")
            && err.contains("cannot reach the database"),
        "{err}"
    );
    assert!(
        err.contains("lines of `web`:"),
        "the step's output is the service's, shown with the failure: {err}"
    );
    assert!(
        !dir.path().join("out/second-step-ran").exists(),
        "no step after the failing one runs"
    );
    let (containers, _) = leftovers(&project);
    assert!(
        containers.is_empty(),
        "neither the service's container nor an init container is left: {containers:?}"
    );
}
