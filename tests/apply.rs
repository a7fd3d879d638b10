//! The stack file is live, end to end with real processes and the built binary: an edit of
//! `stack.yaml` while `up` runs changes only what it changes (pids read from `ps --json`, the
//! plan from `up --json`'s typed events and `apply --json`), an invalid edit changes nothing
//! and is shown, and `devstack apply` plans and applies from another terminal.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const STACK: &str = r#"services:
  api:
    command: sh -c 'echo "$$LOG_LEVEL" > api.env; echo api up; exec sleep 600'
    environment: { LOG_LEVEL: info }
    ready: { log: "api up" }
  worker:
    command: sh -c 'echo worker up; exec sleep 600'
    ready: { log: "worker up" }
  web:
    command: sh -c 'echo web up; exec sleep 600'
    depends_on: [api]
    ready: { log: "web up" }
"#;

struct Live {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
    project: String,
}

impl Live {
    fn new(tag: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stack.yaml"), STACK).unwrap();
        Live {
            dir,
            state: tempfile::tempdir().unwrap(),
            project: project(tag),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![("XDG_STATE_HOME", self.state.path().to_str().unwrap())]
    }

    fn dev(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["-p", &self.project];
        all.extend_from_slice(args);
        devstack_env(self.path(), &all, &self.env())
    }

    fn up(&self, extra: &[&str]) -> (Running, std::sync::mpsc::Receiver<String>) {
        let mut args = vec!["-p", &self.project, "up", "--json", "--no-watch"];
        args.extend_from_slice(extra);
        spawn_up(self.path(), &args, &self.env())
    }

    fn edit(&self, from: &str, to: &str) {
        let file = self.path().join("stack.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(from), "`{from}` is not in the stack file");
        std::fs::write(&file, text.replacen(from, to, 1)).unwrap();
    }

    fn ps(&self) -> Vec<Value> {
        let out = self.dev(&["ps", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
            .as_array()
            .unwrap()
            .clone()
    }

    fn pid(&self, service: &str) -> Option<u64> {
        self.ps()
            .into_iter()
            .find(|r| r["service"] == service)
            .and_then(|r| r["pid"].as_u64())
    }

    fn wait_all(&self) {
        let out = self.dev(&["wait", "--timeout", "60s"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

fn until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {within:?}");
}

/// The next typed `config_applied` event on `up --json`'s output: (service, action, causes).
fn next_plan(rx: &std::sync::mpsc::Receiver<String>) -> Vec<(String, String, Vec<String>)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v["event"]["type"] == "config_applied" {
                return v["event"]["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let causes = c["causes"]
                            .as_array()
                            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                            .unwrap_or_default();
                        (
                            c["service"].as_str().unwrap().to_string(),
                            c["action"].as_str().unwrap().to_string(),
                            causes,
                        )
                    })
                    .collect();
            }
        }
        seen.push(line);
    }
    panic!("no config_applied event; got:\n{}", seen.join("\n"));
}

fn action_of<'a>(plan: &'a [(String, String, Vec<String>)], service: &str) -> &'a str {
    &plan.iter().find(|c| c.0 == service).expect("in the plan").1
}

#[test]
fn an_edited_environment_restarts_only_its_service_and_the_process_sees_it() {
    let s = Live::new("apply-env");
    let (mut up, rx) = s.up(&[]);
    s.wait_all();
    let before: Vec<Option<u64>> = ["api", "worker", "web"].map(|x| s.pid(x)).to_vec();
    assert!(before.iter().all(Option::is_some), "{before:?}");

    s.edit("LOG_LEVEL: info", "LOG_LEVEL: debug");
    let plan = next_plan(&rx);
    assert_eq!(
        plan.iter().find(|c| c.0 == "api").unwrap(),
        &(
            "api".to_string(),
            "restart".to_string(),
            vec!["environment.LOG_LEVEL".to_string()]
        )
    );
    assert_eq!(action_of(&plan, "worker"), "unchanged");
    assert_eq!(action_of(&plan, "web"), "unchanged");
    until(
        "api runs again with its new environment",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(s.path().join("api.env")).is_ok_and(|t| t.trim() == "debug")
                && s.pid("api").is_some_and(|p| Some(p) != before[0])
        },
    );
    s.wait_all();
    assert_eq!(s.pid("worker"), before[1], "worker was not touched");
    assert_eq!(s.pid("web"), before[2], "web was not touched");

    interrupt(&up.0);
    assert_eq!(exit_within(&mut up.0, Duration::from_secs(20)), Some(130));
}

#[test]
fn services_added_and_removed_invalid_edits_refused_then_a_valid_one_applies() {
    let s = Live::new("apply-live");
    let (mut up, rx) = s.up(&[]);
    s.wait_all();
    let api = s.pid("api");
    let worker = s.pid("worker").unwrap();

    // Added: started and ready; nothing else bounces.
    let text = std::fs::read_to_string(s.path().join("stack.yaml")).unwrap();
    std::fs::write(
        s.path().join("stack.yaml"),
        format!("{text}  beat:\n    command: sh -c 'echo beat up; exec sleep 600'\n    ready: {{ log: \"beat up\" }}\n"),
    )
    .unwrap();
    let plan = next_plan(&rx);
    assert_eq!(action_of(&plan, "beat"), "start");
    let out = s.dev(&["wait", "beat", "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(s.pid("api"), api);

    // Removed: stopped and gone from ps; the others keep their pids.
    s.edit(
        "  worker:\n    command: sh -c 'echo worker up; exec sleep 600'\n    ready: { log: \"worker up\" }\n",
        "",
    );
    let plan = next_plan(&rx);
    assert_eq!(action_of(&plan, "worker"), "stop");
    until("worker gone", Duration::from_secs(20), || {
        s.ps().iter().all(|r| r["service"] != "worker")
    });
    assert!(
        !std::path::Path::new(&format!("/proc/{worker}")).exists() || {
            // A zombie is not a live process.
            std::fs::read_to_string(format!("/proc/{worker}/stat")).is_ok_and(|t| t.contains(") Z"))
        }
    );
    assert_eq!(s.pid("api"), api);

    // Invalid: nothing changes; the located error is in `ps --json` until a valid edit.
    s.edit(
        "    ready: { log: \"api up\" }\n",
        "    ready: { log: \"api up\" }\n    ports: [\"notaport\"]\n",
    );
    until(
        "the config error shows in ps",
        Duration::from_secs(20),
        || {
            s.ps().iter().all(|r| {
                r["config_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("stack.yaml:") && e.contains("notaport"))
            })
        },
    );
    let out = s.dev(&["apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(s.pid("api"), api, "an invalid edit bounced nothing");

    // A valid edit applies, and clears the error (positive control for the above).
    s.edit("    ports: [\"notaport\"]\n", "");
    s.edit("LOG_LEVEL: info", "LOG_LEVEL: warn");
    let plan = next_plan(&rx);
    assert_eq!(action_of(&plan, "api"), "restart");
    until("api restarted", Duration::from_secs(20), || {
        s.pid("api").is_some_and(|p| Some(p) != api)
    });
    assert!(s.ps().iter().all(|r| r.get("config_error").is_none()));

    interrupt(&up.0);
    assert_eq!(exit_within(&mut up.0, Duration::from_secs(20)), Some(130));
}

#[test]
fn apply_from_another_terminal_plans_applies_and_a_no_op_bounces_nothing() {
    let s = Live::new("apply-cmd");
    // Not following the file by itself: only `apply` applies.
    let (mut up, _rx) = s.up(&["--no-watch-config"]);
    s.wait_all();
    let before: Vec<Option<u64>> = ["api", "worker", "web"].map(|x| s.pid(x)).to_vec();

    // A save that changes nothing: a comment, keys in another order.
    let text = std::fs::read_to_string(s.path().join("stack.yaml")).unwrap();
    std::fs::write(
        s.path().join("stack.yaml"),
        format!(
            "# saved again\n{}",
            text.replace(
                "    environment: { LOG_LEVEL: info }\n    ready: { log: \"api up\" }",
                "    ready: { log: \"api up\" }\n    environment: { LOG_LEVEL: info }",
            )
        ),
    )
    .unwrap();
    let out = s.dev(&["apply", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["outcome"], "applied");
    assert!(
        answer["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] == "unchanged"),
        "{answer}"
    );

    // A real edit: the dry run plans it and changes nothing; apply carries it out.
    s.edit("LOG_LEVEL: info", "LOG_LEVEL: debug");
    let out = s.dev(&["apply", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["dry_run"], true);
    let api = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "api")
        .unwrap()
        .clone();
    assert_eq!(api["action"], "restart", "{plan}");
    assert_eq!(api["causes"][0], "environment.LOG_LEVEL");
    assert_eq!(s.pid("api"), before[0], "a dry run changes nothing");

    let out = s.dev(&["apply", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    until("api restarted by apply", Duration::from_secs(20), || {
        s.pid("api").is_some_and(|p| Some(p) != before[0])
    });
    s.wait_all();
    assert_eq!(s.pid("worker"), before[1]);
    assert_eq!(s.pid("web"), before[2]);

    interrupt(&up.0);
    assert_eq!(exit_within(&mut up.0, Duration::from_secs(20)), Some(130));
    // Nothing runs: exit 9.
    let out = s.dev(&["apply"]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
}

#[test]
fn a_new_port_held_by_another_program_refuses_the_whole_change() {
    let s = Live::new("apply-port");
    let (mut up, _rx) = s.up(&["--no-watch-config"]);
    s.wait_all();
    let api = s.pid("api");
    // A real listener holds the port the edit asks for.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    s.edit(
        "LOG_LEVEL: info }",
        &format!("LOG_LEVEL: debug }}\n    ports: [\"{port}:{port}\"]"),
    );
    let out = s.dev(&["apply", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["outcome"], "refused", "{answer}");
    assert!(answer["reason"]
        .as_str()
        .unwrap()
        .contains(&port.to_string()));
    assert_eq!(
        s.pid("api"),
        api,
        "nothing changed, not even the environment"
    );
    // Freed: the same change applies (positive control).
    drop(holder);
    let out = s.dev(&["apply", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    until("api restarted", Duration::from_secs(20), || {
        s.pid("api").is_some_and(|p| Some(p) != api)
    });
    interrupt(&up.0);
    assert_eq!(exit_within(&mut up.0, Duration::from_secs(20)), Some(130));
}

#[test]
fn containers_follow_the_file_recreated_when_changed_removed_with_their_volumes_kept() {
    if !docker_or_skip(&["redis:7-alpine"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let project = project("apply-docker");
    let port = free_port();
    std::fs::write(
        dir.path().join("stack.yaml"),
        format!(
            r#"services:
  redis:
    image: redis:7-alpine
    ports: ["{port}:6379"]
    environment: {{ MODE: a }}
    volumes: [data:/data]
    ready: {{ tcp: 6379 }}
  app:
    command: sh -c 'echo app up; exec sleep 600'
    ready: {{ log: "app up" }}
volumes:
  data: {{}}
"#
        ),
    )
    .unwrap();
    let _teardown = Teardown {
        dir: dir.path().to_path_buf(),
        project: project.clone(),
        files: Vec::new(),
    };
    let env = [("XDG_STATE_HOME", state.path().to_str().unwrap())];
    let dev = |args: &[&str]| {
        let mut all = vec!["-p", project.as_str()];
        all.extend_from_slice(args);
        devstack_env(dir.path(), &all, &env)
    };
    let row = |service: &str| -> Option<Value> {
        let out = dev(&["ps", "--json"]);
        let rows: Value = serde_json::from_slice(&out.stdout).ok()?;
        rows.as_array()?
            .iter()
            .find(|r| r["service"] == service)
            .cloned()
    };
    let (mut up, rx) = spawn_up(
        dir.path(),
        &["-p", &project, "up", "--json", "--no-watch"],
        &env,
    );
    let out = dev(&["wait", "--timeout", "120s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = row("redis").unwrap()["container"]
        .as_str()
        .unwrap()
        .to_string();
    let app = row("app").unwrap()["pid"].as_u64();

    let file = dir.path().join("stack.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("MODE: a", "MODE: b")).unwrap();
    let plan = next_plan(&rx);
    assert_eq!(
        plan.iter().find(|c| c.0 == "redis").unwrap(),
        &(
            "redis".to_string(),
            "recreate".to_string(),
            vec!["environment.MODE".to_string()]
        )
    );
    assert_eq!(action_of(&plan, "app"), "unchanged");
    until("redis recreated and ready", Duration::from_secs(60), || {
        row("redis").is_some_and(|r| {
            r["state"] == "ready" && r["container"].as_str().is_some_and(|c| c != first)
        })
    });
    let inspect = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .Config.Env}}{{println .}}{{end}}",
            &format!("{project}-redis"),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("MODE=b"));
    assert_eq!(row("app").unwrap()["pid"].as_u64(), app, "app untouched");

    // Removed from the file: stopped and removed; its named volume stays.
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("  redis:").unwrap();
    let end = text.find("  app:").unwrap();
    std::fs::write(&file, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let plan = next_plan(&rx);
    assert_eq!(action_of(&plan, "redis"), "stop");
    until(
        "the redis container is gone",
        Duration::from_secs(60),
        || {
            !std::process::Command::new("docker")
                .args(["inspect", &format!("{project}-redis")])
                .output()
                .unwrap()
                .status
                .success()
        },
    );
    let volume = std::process::Command::new("docker")
        .args(["volume", "inspect", &format!("{project}_data")])
        .output()
        .unwrap();
    assert!(volume.status.success(), "the named volume is kept");
    assert_eq!(row("app").unwrap()["pid"].as_u64(), app, "app untouched");

    interrupt(&up.0);
    assert_eq!(exit_within(&mut up.0, Duration::from_secs(60)), Some(130));
}

#[test]
fn an_edit_of_dot_env_or_of_an_env_file_applies_like_one_of_the_stack_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let project = project("apply-env-files");
    std::fs::write(dir.path().join(".env"), "LEVEL=info\n").unwrap();
    std::fs::write(dir.path().join("worker.env"), "QUEUE=a\n").unwrap();
    std::fs::write(
        dir.path().join("stack.yaml"),
        r#"services:
  api:
    command: sh -c 'echo "$$LOG_LEVEL" > api.env; echo api up; exec sleep 600'
    environment: { LOG_LEVEL: "${LEVEL}" }
    ready: { log: "api up" }
  worker:
    command: sh -c 'echo "$$QUEUE" > worker.out; echo worker up; exec sleep 600'
    env_file: [worker.env]
    ready: { log: "worker up" }
"#,
    )
    .unwrap();
    let env = [("XDG_STATE_HOME", state.path().to_str().unwrap())];
    let (mut up, rx) = spawn_up(
        dir.path(),
        &["-p", &project, "up", "--json", "--no-watch"],
        &env,
    );
    let out = devstack_env(
        dir.path(),
        &["-p", &project, "wait", "--timeout", "60s"],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    std::fs::write(dir.path().join(".env"), "LEVEL=debug\n").unwrap();
    let plan = next_plan(&rx);
    assert_eq!(
        plan.iter().find(|c| c.0 == "api").unwrap().2,
        ["environment.LOG_LEVEL"]
    );
    assert_eq!(action_of(&plan, "worker"), "unchanged");
    until("api sees the new .env", Duration::from_secs(20), || {
        std::fs::read_to_string(dir.path().join("api.env")).is_ok_and(|t| t.trim() == "debug")
    });

    std::fs::write(dir.path().join("worker.env"), "QUEUE=b\n").unwrap();
    let plan = next_plan(&rx);
    assert_eq!(action_of(&plan, "worker"), "restart");
    assert_eq!(action_of(&plan, "api"), "unchanged");
    until(
        "worker sees its new env_file",
        Duration::from_secs(20),
        || std::fs::read_to_string(dir.path().join("worker.out")).is_ok_and(|t| t.trim() == "b"),
    );

    interrupt(&up.0);
    assert_eq!(exit_within(&mut up.0, Duration::from_secs(20)), Some(130));
}

#[test]
fn a_file_saved_half_written_stops_nothing_and_the_full_save_bounces_nothing() {
    let s = Live::new("apply-half");
    let (mut up, rx) = s.up(&[]);
    s.wait_all();
    let before: Vec<Option<u64>> = ["api", "worker", "web"].map(|x| s.pid(x)).to_vec();
    // An editor's truncate, seen on its own: the files are invalid for a moment.
    let file = s.path().join("stack.yaml");
    std::fs::write(&file, &STACK[..STACK.len() / 2]).unwrap();
    until("the half file is reported", Duration::from_secs(20), || {
        s.ps().iter().all(|r| r["config_error"].is_string())
    });
    assert_eq!(
        ["api", "worker", "web"].map(|x| s.pid(x)).to_vec(),
        before,
        "nothing stopped"
    );
    // Then the write of the whole (unchanged) file: valid again, nothing bounces.
    std::fs::write(&file, STACK).unwrap();
    let plan = next_plan(&rx);
    assert!(plan.iter().all(|c| c.1 == "unchanged"), "{plan:?}");
    assert!(s.ps().iter().all(|r| r.get("config_error").is_none()));
    assert_eq!(["api", "worker", "web"].map(|x| s.pid(x)).to_vec(), before);
    interrupt(&up.0);
    assert_eq!(exit_within(&mut up.0, Duration::from_secs(20)), Some(130));
}
