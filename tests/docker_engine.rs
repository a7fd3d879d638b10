//! The live engine against the real Docker engine: an aborted start-up leaves no container
//! running, and a container killed from outside after start-up is handled by the service's
//! `restart:` policy like a crashed process. Assertions read `up --json` events.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SECS_60: Duration = Duration::from_secs(60);

fn running_containers(project: &str) -> Vec<String> {
    let o = Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=org.devstack.project={project}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn is(v: &Value, kind: &str, service: &str) -> bool {
    v["event"]["type"] == kind && v["service"] == service
}

struct Events {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<Value>,
    raw: Vec<String>,
}

impl Events {
    /// The first event of `kind` about `service` from event number `from` on (seen or to come).
    fn wait_from(&mut self, from: usize, kind: &str, service: &str, within: Duration) -> Value {
        if let Some(v) = self.seen.iter().skip(from).find(|v| is(v, kind, service)) {
            return v.clone();
        }
        self.wait(kind, service, within)
    }

    fn wait(&mut self, kind: &str, service: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.rx.recv_timeout(left.min(Duration::from_millis(100))) else {
                continue;
            };
            self.raw.push(line.clone());
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                self.seen.push(v.clone());
                if is(&v, kind, service) {
                    return v;
                }
            }
        }
        panic!(
            "no `{kind}` of `{service}` within {within:?}:\n{}",
            self.raw.join("\n")
        );
    }
}

#[test]
fn an_aborted_startup_leaves_no_container_running() {
    if !docker_or_skip(&["postgres:15", "redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let project = project("abort");
    let _down = Teardown {
        dir: dir.path().to_path_buf(),
        project: project.clone(),
        files: Vec::new(),
    };
    fs::write(
        dir.path().join("stack.yaml"),
        format!(
            "services:\n  postgres:\n    image: postgres:15\n    environment: {{ POSTGRES_USER: user, POSTGRES_PASSWORD: pass, POSTGRES_DB: db }}\n    ports: [\"{}:5432\"]\n  redis:\n    image: redis:7-alpine\n    ports: [\"{}:6379\"]\n  broken:\n    command: sh -c \"exit 3\"\n    ready: {{ log: never }}\n    watch: false\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let out = devstack_env(
        dir.path(),
        &["-p", &project, "up", "--wait"],
        &[("XDG_STATE_HOME", &state.path().display().to_string())],
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("service `broken` did not become ready"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        running_containers(&project),
        Vec::<String>::new(),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_container_killed_from_outside_follows_its_restart_policy_and_the_rest_keeps_running() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let project = project("docker-kill");
    let _down = Teardown {
        dir: dir.path().to_path_buf(),
        project: project.clone(),
        files: Vec::new(),
    };
    fs::write(
        dir.path().join("stack.yaml"),
        format!(
            "services:\n  again:\n    image: redis:7-alpine\n    ports: [\"{}:6379\"]\n    ready: {{ redis: {{}} }}\n    restart: on-failure\n  once:\n    image: redis:7-alpine\n    ports: [\"{}:6379\"]\n    ready: {{ redis: {{}} }}\n    restart: \"no\"\n  app:\n    command: python3 -c \"import time; print('app up', flush=True); time.sleep(600)\"\n    ready: {{ log: app up }}\n    watch: false\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let state_var = state.path().display().to_string();
    let (mut child, rx) = spawn_up(
        dir.path(),
        &["-p", &project, "up", "--json"],
        &[("XDG_STATE_HOME", &state_var)],
    );
    let mut ev = Events {
        rx,
        seen: Vec::new(),
        raw: Vec::new(),
    };
    let container = |ev: &mut Events, s: &str| {
        ev.wait_from(0, "started", s, SECS_60)["event"]["container"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let again = container(&mut ev, "again");
    let once = container(&mut ev, "once");
    let app = ev.wait_from(0, "started", "app", SECS_60)["event"]["pid"]
        .as_u64()
        .unwrap();
    for s in ["app", "again", "once"] {
        ev.wait_from(0, "ready", s, SECS_60);
    }

    assert!(Command::new("docker")
        .args(["kill", &again])
        .status()
        .unwrap()
        .success());
    let exited = ev.wait("exited", "again", SECS_60);
    assert_eq!(exited["event"]["code"], 137);
    ev.wait("backoff", "again", SECS_60);
    let restarted = ev.wait("started", "again", SECS_60);
    assert_eq!(
        restarted["event"]["container"],
        again.as_str(),
        "the same container"
    );
    ev.wait("ready", "again", SECS_60);

    assert!(Command::new("docker")
        .args(["kill", &once])
        .status()
        .unwrap()
        .success());
    ev.wait("exited", "once", SECS_60);
    let crashed = ev.wait("state", "once", SECS_60);
    assert_eq!(crashed["event"]["state"]["state"], "crashed", "{crashed}");
    assert!(
        fs::metadata(format!("/proc/{app}")).is_ok(),
        "the process service keeps running"
    );
    assert!(!ev
        .seen
        .iter()
        .any(|v| is(v, "stopped", "app") || is(v, "backoff", "once")));

    interrupt(&child);
    assert_eq!(exit_within(&mut child, SECS_60), Some(130));
}
