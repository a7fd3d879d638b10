//! The main job in one command: in a fresh copy of the repository (no virtualenv, no tansu
//! binary in the kafka image's context, no task records), `devstack up --wait` runs the stack's
//! own preparation (tasks, image builds) and brings every service of the top-level stack.yaml to
//! ready; a second run skips every preparation step. The images are built here when the machine
//! has none (on a fresh CI machine, `scripts/test.sh` has built them the same way, through the
//! README's first command, before this runs).

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The repository's files as a fresh checkout has them: tracked, plus new files not ignored.
fn fresh_copy(to: &Path) {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root())
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git ls-files failed");
    for rel in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).unwrap());
        let from = root().join(rel);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let dest = to.join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&from, &dest).unwrap();
    }
}

const APPS: [&str; 9] = [
    "zookeeper",
    "kafka",
    "postgres",
    "qdrant",
    "redis",
    "core-service",
    "celery-worker",
    "ai-service",
    "frontend",
];
const TASKS: [&str; 3] = ["debian-base", "kafka-broker", "venv"];

#[test]
fn a_fresh_checkout_comes_up_with_one_command_and_a_second_run_skips_every_preparation() {
    if !docker_or_skip(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    fresh_copy(dir.path());
    assert!(!dir.path().join("examples/ensurestudy/.venv").exists());
    assert!(!dir.path().join("images/kafka/bin/tansu").exists());
    let project = project("onboard");
    let _teardown = Teardown {
        dir: dir.path().to_path_buf(),
        project: project.clone(),
        files: Vec::new(),
    };
    let state_var = state.path().display().to_string();
    let env = [("XDG_STATE_HOME", state_var.as_str())];

    // First run: `up --wait` prepares what is missing and returns once all is ready.
    let out = devstack_env(
        dir.path(),
        &[
            "-p",
            &project,
            "up",
            "--wait",
            "--free-ports",
            "--no-dashboard",
        ],
        &env,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(dir
        .path()
        .join("examples/ensurestudy/.venv/bin/python")
        .exists());
    let ps = devstack_env(dir.path(), &["-p", &project, "ps", "--json"], &env);
    let ps: Value = serde_json::from_slice(&ps.stdout).expect("ps --json");
    let state_of = |s: &str| -> String {
        ps.as_array()
            .unwrap()
            .iter()
            .find(|v| v["service"] == s)
            .map(|v| v["state"].as_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| panic!("`{s}` not in ps: {ps:#}"))
    };
    for s in APPS {
        assert_eq!(state_of(s), "ready", "{s}: {ps:#}");
    }
    for t in TASKS {
        assert_eq!(state_of(t), "completed", "{t}: {ps:#}");
    }
    let down = devstack_env(dir.path(), &["-p", &project, "down"], &env);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));

    // Second run, in the foreground with events: every task skipped, every image up to date.
    let (mut child, rx) = spawn_up(
        dir.path(),
        &[
            "-p",
            &project,
            "up",
            "--json",
            "--free-ports",
            "--no-dashboard",
        ],
        &env,
    );
    let mut events: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            let done = v["event"]["type"] == "all_ready";
            events.push(v);
            if done {
                break;
            }
        }
    }
    interrupt(&child.0);
    assert_eq!(
        exit_within(&mut child.0, Duration::from_secs(60)),
        Some(130)
    );
    let ready = events
        .iter()
        .find(|v| v["event"]["type"] == "all_ready")
        .unwrap_or_else(|| panic!("not ready on the second run: {events:#?}"));
    assert_eq!(ready["event"]["services"], APPS.len() + TASKS.len());
    for t in TASKS {
        let skipped = events
            .iter()
            .find(|v| v["event"]["type"] == "skipped" && v["service"] == t)
            .unwrap_or_else(|| panic!("task `{t}` was not skipped: {events:#?}"));
        assert!(
            skipped["event"]["after_ms"].as_u64().unwrap() < 1000,
            "{skipped}"
        );
        assert!(
            !events
                .iter()
                .any(|v| v["event"]["type"] == "started" && v["service"] == t),
            "task `{t}` ran"
        );
    }
    let builds: Vec<&Value> = events
        .iter()
        .filter(|v| v["event"]["type"] == "built")
        .collect();
    assert_eq!(builds.len(), 5, "one per infrastructure image: {builds:#?}");
    for b in builds {
        let how = b["event"]["how"].as_str().unwrap();
        // `local`: an image of the same tag that devstack did not build (by
        // scripts/offline-images.sh, say), used as `pull_policy: missing` says.
        assert!(how == "up_to_date" || how == "local", "{b}");
    }
}
