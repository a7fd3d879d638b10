//! Control of running containers from another process, against the real Docker engine:
//! `restart` gives a new start of the container and waits for its probe, `stop`/`start`,
//! `exec` into postgres, and the live `ps` with the engine's memory figures.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A stack in a folder of its own, with its own state folder, torn down at the end.
struct Ctl {
    // Dropped first (fields drop in order): `down` runs while the folders still exist.
    _down: Teardown,
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    project: String,
}

impl Ctl {
    fn new(tag: &str, yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stack.yaml"), yaml).unwrap();
        let project = project(tag);
        let _down = Teardown {
            dir: dir.path().into(),
            project: project.clone(),
            files: vec![],
        };
        Ctl {
            _down,
            dir,
            state,
            project,
        }
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("XDG_STATE_HOME", self.state.path().to_str().unwrap())]
    }

    /// `devstack -p PROJECT ARGS…` in the stack's folder.
    fn dev(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["-p", self.project.as_str()];
        all.extend_from_slice(args);
        devstack_env(self.dir.path(), &all, &self.env())
    }

    /// A foreground `devstack -p PROJECT ARGS…` (an `up`), and its lines.
    fn spawn(&self, args: &[&str]) -> (Running, std::sync::mpsc::Receiver<String>) {
        let mut all = vec!["-p", self.project.as_str()];
        all.extend_from_slice(args);
        spawn_up(self.dir.path(), &all, &self.env())
    }
}

#[test]
fn containers_are_restarted_stopped_started_and_exec_reaches_postgres() {
    if !docker_or_skip(&["redis:7-alpine", "postgres:15"]) {
        return;
    }
    let ctl = Ctl::new(
        "ctl",
        "services:\n  db:\n    image: postgres:15\n    environment: { POSTGRES_USER: user, POSTGRES_PASSWORD: pass, POSTGRES_DB: app }\n    ports: [\"5432\"]\n    ready: { postgres: { user: user, password: pass, database: app }, timeout: 90s }\n  cache:\n    image: redis:7-alpine\n    ports: [\"6379\"]\n    ready: { redis: {} }\n",
    );
    let dev = |args: &[&str]| ctl.dev(args);
    let row = |service: &str| -> Value {
        let out = dev(&["ps", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["service"] == service)
            .cloned()
            .unwrap()
    };
    let (mut up, _lines) = ctl.spawn(&["up", "--free-ports"]);
    let ready = dev(&["wait", "--timeout", "120s"]);
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));

    let before = row("cache");
    assert_eq!(before["state"], "ready", "{before}");
    assert!(before["container"].as_str().is_some(), "{before}");
    assert!(
        before["rss_bytes"].as_u64().unwrap() > 0,
        "engine stats: {before}"
    );
    assert_ne!(
        before["ports"][0]["host_port"].as_u64().unwrap(),
        6379,
        "the real (free) host port: {before}"
    );

    let restarted = dev(&["restart", "cache"]);
    assert_eq!(restarted.status.code(), Some(0), "{}", stderr(&restarted));
    let after = row("cache");
    assert_eq!(after["state"], "ready", "{after}");
    assert!(
        after["epoch"].as_u64() > before["epoch"].as_u64(),
        "a new start: {before} → {after}"
    );
    assert!(after["started_at_ms"].as_u64() > before["started_at_ms"].as_u64());
    assert_eq!(after["restarts"], 1);

    let stopped = dev(&["stop", "cache"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", stderr(&stopped));
    assert_eq!(row("cache")["state"], "stopped");
    assert_eq!(
        row("db")["state"],
        "ready",
        "the other service keeps running"
    );
    let started = dev(&["start", "cache"]);
    assert_eq!(started.status.code(), Some(0), "{}", stderr(&started));
    assert_eq!(row("cache")["state"], "ready");

    let exec = dev(&[
        "exec", "db", "--", "psql", "-U", "user", "-d", "app", "-tAc", "select 1",
    ]);
    assert_eq!(exec.status.code(), Some(0), "{}", stderr(&exec));
    assert_eq!(stdout(&exec).trim(), "1");
    let failing = dev(&["exec", "db", "--", "sh", "-c", "exit 4"]);
    assert_eq!(
        failing.status.code(),
        Some(4),
        "the exit code passes through"
    );

    interrupt(&up);
    assert_eq!(exit_within(&mut up, Duration::from_secs(60)), Some(130));
}

/// The engine's `since` is whole seconds: a restart within the second of the last run's
/// output used to show those lines again under the new start, where a `log` probe could match
/// the instance that had stopped.
#[test]
fn a_restarted_container_shows_each_line_once_and_its_log_probe_sees_only_its_own() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let ctl = Ctl::new(
        "relog",
        "services:\n  cache:\n    image: redis:7-alpine\n    ready: { log: \"Ready to accept connections\" }\n  term:\n    image: redis:7-alpine\n    tty: true\n    ready: { log: \"Ready to accept connections\" }\n  early:\n    image: redis:7-alpine\n    command: [sh, -c, \"echo early-bird; exec redis-server\"]\n    ready: { log: early-bird }\n",
    );
    let dev = |args: &[&str]| ctl.dev(args);
    let (mut up, _lines) = ctl.spawn(&["up", "--no-watch"]);
    let ready = dev(&["wait", "--timeout", "120s"]);
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));
    // Each restart comes well within a second of the last run's lines.
    let restarts = 4;
    for _ in 0..restarts {
        for service in ["cache", "early"] {
            let restarted = dev(&["restart", service]);
            assert_eq!(restarted.status.code(), Some(0), "{}", stderr(&restarted));
        }
    }
    let out = dev(&["logs", "--json", "cache", "early"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records: Vec<Value> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let count = |service: &str, needle: &str| {
        records
            .iter()
            .filter(|r| {
                r["service"] == service
                    && r["stream"] == "stdout"
                    && r["text"].as_str().is_some_and(|t| t.contains(needle))
            })
            .count()
    };
    // One per start: redis says each once per run (the positive control: every start's own
    // line is there), none of them twice. Only lines up to each service's probe line are
    // surely written when `restart` returns.
    assert_eq!(
        count("cache", "Ready to accept connections"),
        restarts + 1,
        "{records:#?}"
    );
    assert_eq!(
        count("cache", "Redis is starting"),
        restarts + 1,
        "{records:#?}"
    );
    // A line printed the instant the container starts is there for every start: the engine
    // can stamp it before its own `StartedAt`, so the cut is after the last run's last line,
    // not at this run's start.
    assert_eq!(count("early", "early-bird"), restarts + 1, "{records:#?}");
    // A TTY's raw stream is followed without the engine's timestamps: its lines come as printed.
    let term = dev(&["logs", "--json", "term"]);
    assert_eq!(term.status.code(), Some(0), "{}", stderr(&term));
    let texts: Vec<String> = stdout(&term)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["stream"] == "stdout")
        .filter_map(|r| r["text"].as_str().map(str::to_string))
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Ready to accept connections")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().all(|t| !t.starts_with("20")),
        "no engine timestamp in front: {texts:#?}"
    );
    interrupt(&up);
    assert_eq!(exit_within(&mut up, Duration::from_secs(60)), Some(130));
}
